// accounting: space is reserved before it is used (DESIGN.md, invariant 4).
//
// Theory. Every pageable page is charged when it is allocated, against a capacity
// of usable frames plus swap slots. So ENOSPC is returned by the allocation that
// asked for space, never discovered later by the pager. The capacity leaves out a
// slack of frames: when every charged page is in use and the frames are full, at
// least `slack` slots are free, so the pager can always write a cluster out.
// A reserve below the capacity is kept for operations that free space (unlink,
// truncate, punch) but must first allocate or fault (a directory page split, say):
// Charge() stops at capacity - reserve, ChargeFromReserve() at capacity.
// When charges grow past the frames, the swap file is backed (fallocate) ahead of
// them, so a slot's blocks exist before the pager needs it.
//
// Locking. mu_ guards the counters; it may be held while backing the swap file
// (fallocate), and is taken with no other vm lock held.
#ifndef PTMPFS_VM_ACCOUNTING_H_
#define PTMPFS_VM_ACCOUNTING_H_

#include <atomic>
#include <cstdint>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"

namespace ptmpfs::vm {

class Swap;

class Accounting {
 public:
  // `frame_pages`: frames pageable pages may use; `swap` may be null (noswap).
  Accounting(uint64_t frame_pages, Swap* swap, uint64_t reserve_pages);

  // ResourceExhausted ("no space") when `pages` more would pass capacity - reserve,
  // or when the swap file cannot be backed.
  absl::Status Charge(uint64_t pages);
  // As Charge, but may use the reserve: for operations that free space.
  absl::Status ChargeFromReserve(uint64_t pages);
  void Uncharge(uint64_t pages);

  uint64_t charged() const { return charged_.load(std::memory_order_relaxed); }
  uint64_t capacity() const { return capacity_; }
  uint64_t reserve() const { return reserve_; }

 private:
  absl::Status ChargeUpTo(uint64_t pages, uint64_t limit);

  const uint64_t frame_pages_;
  Swap* const swap_;
  const uint64_t capacity_;
  const uint64_t reserve_;
  absl::Mutex mu_;
  std::atomic<uint64_t> charged_{0};  // written under mu_
};

}  // namespace ptmpfs::vm

#endif  // PTMPFS_VM_ACCOUNTING_H_
