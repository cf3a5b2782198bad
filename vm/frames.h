// frames: the RAM budget, as one mapped region of 4 KiB frames with a descriptor
// each, and a buddy allocator of aligned runs of 2^order frames.
//
// Theory. The budget is mmap'ed once (MADV_DONTDUMP: cached metadata has no place
// in a core dump) and never grows; every byte of pageable memory that is resident
// sits in one of its frames. A frame's descriptor says what holds it: free (on a
// buddy free list), the head of a page of some page table (owner, index: the
// reverse map that eviction and migration follow from a frame to its entry), a tail
// of such a page, or reserved (taken out of the allocator by migration). Pages of
// 2^order frames (pool pages of 16 KiB, blobs larger than a frame) need aligned
// runs; the buddy allocator keeps free runs of each order up to kMaxOrder, splits
// larger ones and coalesces buddies on free.
//
// Invariants.
//  1. A frame is on at most one list: a buddy free list (guarded by mu_) or one of
//     the pager's queues (guarded by the pager's queue lock). The links are shared.
//  2. A free run of order k starts at a multiple of 2^k frames; its head has state
//     kFree and order k, its other frames state kFreeTail.
//  3. wire_count > 0 keeps a page resident and in its frame: the pager and
//     migration skip it. wire_count may be raised for an instant by a pin racing an
//     eviction of the same frame (see Vm::Wire); nothing asserts it is zero.
//
// Locking. mu_ guards the free lists and the states of free frames. Lock order:
// the pager's queue lock may be held while taking mu_, never the reverse.
#ifndef PTMPFS_VM_FRAMES_H_
#define PTMPFS_VM_FRAMES_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>

#include "absl/base/thread_annotations.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "vm/page_table.h"
#include "vm/populator.h"

namespace ptmpfs::vm {

inline constexpr uint64_t kPageSize = 4096;
inline constexpr int kPageShift = 12;
// Largest run: 2^3 frames = 32 KiB (pool pages of 16 KiB need order 2).
inline constexpr int kMaxOrder = 3;
// The smallest budget that works: a model test's 16 frames. Below it the wired cap
// and the pager's free target leave nothing to page with (see Vm::Create).
inline constexpr uint64_t kMinFrames = 16;

using FrameNumber = uint32_t;
inline constexpr FrameNumber kNoFrame = UINT32_MAX;
inline constexpr uint64_t kNoSlot = UINT64_MAX;

enum class FrameState : uint8_t {
  kFree,      // head of a free run (buddy free list)
  kFreeTail,  // inside a free run
  kPage,      // head of a page of a page table; owner/index/swap_slot valid
  kPageTail,  // inside a page of order > 0
  kReserved,  // allocated but not yet installed, or held by migration
};

enum class FrameQueue : uint8_t { kNone, kActive, kInactive };

// One cache line each: every pin and unpin writes wire_count, and two threads
// pinning neighbouring frames must not share a line (measured: 2-thread pins at 1.0x
// the one-thread time aligned, about 2x packed at 40 bytes). 64 bytes per 4 KiB
// frame is 1.6% of the budget.
struct alignas(64) FrameDesc {
  std::atomic<uint32_t> wire_count{0};  // invariant 3
  // mu_ while free; otherwise the page's busy bit. Atomic (relaxed) because
  // migration reads it under mu_ alone, as a hint it re-checks.
  std::atomic<FrameState> state{FrameState::kFree};
  uint8_t order = 0;  // of the run or page this frame heads
  // Written under the pager's queue lock; read as a hint by migration.
  std::atomic<FrameQueue> queue{FrameQueue::kNone};
  FrameNumber prev = kNoFrame;           // free list (mu_) or pager queue links
  FrameNumber next = kNoFrame;
  PageTable* owner = nullptr;  // reverse map, valid in kPage; set under the busy bit
  PageIndex index = 0;
  // The page's entry in owner, as owner->Find(index) returns it (entries never move:
  // page_table.h, invariant 1): the pager's look at a frame walks no radix tree.
  Entry* entry = nullptr;
  uint64_t swap_slot = kNoSlot;  // a clean copy kept in swap (first slot of the page)
};

class Frames {
 public:
  // Maps `frame_count` frames. InvalidArgument below kMinFrames.
  static absl::StatusOr<std::unique_ptr<Frames>> Create(uint64_t frame_count);
  ~Frames();
  Frames(const Frames&) = delete;
  Frames& operator=(const Frames&) = delete;

  uint64_t count() const { return count_; }
  char* Address(FrameNumber frame) const { return base_ + (uint64_t{frame} << kPageShift); }

  // Called with a frame just allocated, before it is first written: its memory is
  // taken from the host now if it never was, and that of the frames to be handed out
  // next is taken ahead on the populator's thread (populator.h).
  void Populate(FrameNumber frame) { populator_->Touch(Address(frame)); }
  FrameNumber FrameOf(const void* address) const {
    return static_cast<FrameNumber>((static_cast<const char*>(address) - base_) >> kPageShift);
  }
  FrameDesc& desc(FrameNumber frame) const { return descs_[frame]; }
  uint64_t free_count() const { return free_count_.load(std::memory_order_relaxed); }

  // An aligned run of 2^order frames in state kReserved, or nullopt if none is free.
  std::optional<FrameNumber> Alloc(int order);
  // Returns a run of 2^order frames (any state but free) to the free lists,
  // coalescing with free buddies. Never allocates, never blocks but on mu_.
  void Free(FrameNumber first, int order);
  // As Free, for runs of the same order, under one acquisition of mu_ (the pager's
  // batches of evicted pages).
  void Free(absl::Span<const FrameNumber> firsts, int order);

  // For migration: finds an aligned run of 2^order frames each of which is free or
  // accepted by `movable` (called under mu_ for frames in kPage state; it must not
  // block), takes the free ones out of the free lists (state kReserved) and returns
  // the run's first frame. nullopt if no such run exists.
  std::optional<FrameNumber> ReserveRunForMigration(int order,
                                                    absl::FunctionRef<bool(FrameNumber)> movable);

  // Checks the free lists against the descriptors (tests).
  absl::Status CheckConsistency() const;

 private:
  Frames(char* base, uint64_t count);
  void PushFree(FrameNumber head, int order) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void UnlinkFree(FrameNumber head, int order) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void FreeLocked(FrameNumber first, int order) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  std::optional<FrameNumber> AllocLocked(int order) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The head of the free run containing `frame`, which must be free.
  FrameNumber FreeRunHead(FrameNumber frame) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  char* const base_;
  const uint64_t count_;
  std::unique_ptr<FrameDesc[]> descs_;
  std::unique_ptr<Populator> populator_;  // stopped before the region is unmapped
  mutable absl::Mutex mu_;
  FrameNumber free_head_[kMaxOrder + 1] ABSL_GUARDED_BY(mu_);
  std::atomic<uint64_t> free_count_{0};  // written under mu_
};

}  // namespace ptmpfs::vm

#endif  // PTMPFS_VM_FRAMES_H_
