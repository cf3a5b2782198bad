// swap_slots: which slots of the swap file are in use, one bit per slot.
//
// Theory. The pager writes a cluster of neighbouring pages into a run of
// neighbouring slots, but the pages then live separate lives: one is read back and
// dirtied, one is punched, one is freed with its file, each at its own time, so a
// run is freed slot by slot. A vmem arena records an allocation as one segment and
// would have to split it (allocating a boundary tag) on such a partial free, or keep
// a tag per slot (about 56 bytes per 4 KiB slot). A bitmap frees any sub-range
// without allocating, for one bit per slot. Runs are found next-fit from a cursor,
// a 64-bit word at a time. A run of n > 1 slots starts at a multiple of min(2^k >= n,
// 64) where such a place is free: the host caches a buffered write in page-cache folios
// as large as the write's alignment allows, and 4 KiB reads of a large folio are
// cheaper (pager.h, kMaxCluster); elsewhere when none is.
//
// A group is the 64 slots of one bitmap word (256 KiB of the file). A group that
// becomes wholly free is remembered until TakeFreedGroups() hands it out (swap.h: its
// pages are then dropped from the host page cache) or an allocation uses it again.
//
// Only backed slots are allocatable: Grow() extends the allocatable prefix after the
// swap file's blocks behind it have been allocated (swap.h, invariant 1).
//
// Invariants.
//  1. A set bit is an allocated slot; used_ counts the set bits.
//  2. No bit at or beyond limit_ is ever set.
//  3. A group's bit in freed_groups_ is set only while the group is wholly free.
//
// Locking. mu_ guards everything; Free() takes it and does nothing else (it never
// allocates, faults or waits for I/O).
#ifndef PTMPFS_VM_SWAP_SLOTS_H_
#define PTMPFS_VM_SWAP_SLOTS_H_

#include <atomic>
#include <cstdint>
#include <memory>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace ptmpfs::vm {

class SwapSlots {
 public:
  // Room for `capacity` slots, none allocatable until Grow().
  explicit SwapSlots(uint64_t capacity);

  // Makes slots [0, limit) allocatable. REQUIRES: limit <= capacity, non-decreasing.
  void Grow(uint64_t limit);
  // The first of `count` free neighbouring slots, now allocated. ResourceExhausted
  // when no such run exists below the limit.
  absl::StatusOr<uint64_t> Alloc(uint64_t count);
  // REQUIRES: every slot of [first, first+count) is allocated.
  void Free(uint64_t first, uint64_t count);

  static constexpr uint64_t kGroupSlots = 64;
  // Takes up to `max_groups` groups that became wholly free since they were last
  // taken and are still free, in increasing order, into `groups` (group g is slots
  // [g * kGroupSlots, (g + 1) * kGroupSlots)); returns how many. Cheap when none is.
  size_t TakeFreedGroups(uint64_t* groups, size_t max_groups);

  bool IsAllocated(uint64_t slot) const;
  uint64_t used() const { return used_.load(std::memory_order_relaxed); }
  uint64_t limit() const { return limit_.load(std::memory_order_relaxed); }
  uint64_t capacity() const { return capacity_; }

 private:
  bool RunIsFree(uint64_t first, uint64_t count) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The first run of `count` free slots below `limit` at a multiple of `align` (a power
  // of two up to 64), next fit from the cursor; limit if there is none.
  uint64_t FindRun(uint64_t count, uint64_t align, uint64_t limit) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SetRun(uint64_t first, uint64_t count, bool value) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const uint64_t capacity_;
  mutable absl::Mutex mu_;
  std::unique_ptr<uint64_t[]> bits_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<uint64_t[]> freed_groups_ ABSL_GUARDED_BY(mu_);  // one bit per group
  uint64_t cursor_ ABSL_GUARDED_BY(mu_) = 0;
  std::atomic<uint64_t> freed_group_count_{0};  // set bits of freed_groups_; written under mu_
  std::atomic<uint64_t> limit_{0};  // written under mu_
  std::atomic<uint64_t> used_{0};   // written under mu_
};

}  // namespace ptmpfs::vm

#endif  // PTMPFS_VM_SWAP_SLOTS_H_
