// pager: decides which resident pages leave RAM, and writes them out.
//
// Theory (UVM's pagedaemon, simplified). Every resident page's head frame is on one
// of two queues. New and re-referenced pages go to the tail of the active queue; the
// pager moves pages from the active head to the inactive tail, clearing their
// referenced bit, to keep about a third of the pages inactive. A page at the
// inactive head that was referenced since gets a second chance (back to active);
// one that was not is evicted:
//   - clean, with a copy in swap: the entry becomes kSwapped, no I/O;
//   - clean, never written (a zero-fill page): the entry becomes kZero, no I/O;
//     clean pages that follow at the inactive head are taken with it, up to
//     kMaxCluster, and their frames are freed under one lock;
//   - dirty: it is written out together with its dirty, unwired following
//     neighbours of the same page table (up to kMaxCluster pages, one pwritev into a
//     run of neighbouring slots), then becomes kSwapped. The run is the slots the
//     pages kept, when they kept neighbouring ones in order (a file rewritten in
//     place): the host then rewrites cached pages of the swap file rather than
//     allocating new ones and dropping the old. Otherwise it is a new run, and
//     the slots they kept are freed.
// A thread whose frame allocation leaves free frames below the low watermark refills
// them to the high one itself while the inactive head is clean (Refill): evicting a
// clean page costs no I/O, far less than waking the thread (measured: a futex wake-up
// of the idle pager thread cost about 8 us here, a clean eviction under 0.1 us). When
// the head is dirty it wakes the pager thread, which writes clusters out and stops at
// the high watermark; a thread that cannot get a frame at all reclaims directly (same
// code). After each pass the thread drops freed swap slots' pages from the host page
// cache (Swap::DropFreedPages).
//
// Invariants.
//  1. Wired and busy pages are never evicted; a page is taken for eviction only by
//     setting its busy bit while its wire count is seen zero (vm.h, invariant 1).
//  2. A frame is on a queue iff it heads a resident page that is not busy with a
//     fault, an eviction or a free.
//  3. A dirty page's old slot, if it kept one, is freed or rewritten when it is
//     written again; a clean page's slot is kept until it is dirtied and written.
//
// Locking. queue_mu_ guards the queues and the links of frames on them; busy bits
// are taken under it only by compare-and-swap (never waited on). I/O happens with
// no lock held. Lock order: queue_mu_ -> Frames::mu_.
#ifndef PTMPFS_VM_PAGER_H_
#define PTMPFS_VM_PAGER_H_

#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "vm/frames.h"
#include "vm/page_table.h"

namespace ptmpfs::vm {

class Vm;

class Pager {
 public:
  // 256 KiB per pwritev. Besides saving syscalls, the size decides how the host caches
  // the swap file: a buffered write creates page-cache folios as large as the write
  // (aligned), and a later 4 KiB read of a slot costs less in a large folio (one radix
  // level less, shared folio metadata). Measured here, random 4 KiB preads of a
  // cached file cost 860 ns written in 64 KiB writes, 660 ns in 256 KiB writes, 645 ns
  // in 1 MiB writes; 256 KiB (order 6: one radix node's worth) gets nearly all of it.
  static constexpr int kMaxCluster = 64;
  // Frames the pager thread frees per wake-up beyond the low watermark, at least
  // (vm.cc): a wake-up costs a futex call each side, so it is amortised over many faults.
  static constexpr uint64_t kMinWakeBatch = 32;

  Pager(Vm& vm, uint64_t low_water, uint64_t high_water);
  ~Pager();  // stops the thread
  Pager(const Pager&) = delete;
  Pager& operator=(const Pager&) = delete;

  void StartThread();
  void StopThread();
  // Wakes the pager thread if free frames are below the low watermark.
  void MaybeWake();
  // Called after a frame allocation that left free frames below the low watermark:
  // evicts clean pages from the inactive head up to the high watermark (one thread at
  // a time; the others go on), then wakes the pager thread if that was not enough.
  // Does nothing while the pager thread is in a pass: it is refilling already.
  void Refill();

  // Evicts pages until `target_frames` frames were freed or nothing more can be;
  // returns the frames freed. Called by the pager thread and by direct reclaim.
  uint64_t Reclaim(uint64_t target_frames);
  // As Reclaim, but evicts only clean pages, and stops at a dirty page at the
  // inactive head (its write is the pager thread's work).
  uint64_t ReclaimClean(uint64_t target_frames);

  // Queue membership (REQUIRES: the caller holds the page's busy bit).
  void Activate(FrameNumber head);  // puts a newly resident page on the active tail
  void ActivateRun(absl::Span<const FrameNumber> heads);  // the same, one lock for all
  void Remove(FrameNumber head);    // takes a page off whatever queue holds it
  // Migration (migrate.cc): moves the unwired order-0 page in `source` to a free
  // frame outside it; the entry keeps its kind and bits, only the frame changes.
  // false if the page is wired, busy, no longer there, or no frame is free.
  bool MigrateFrame(FrameNumber source);

  uint64_t low_water() const { return low_water_; }
  uint64_t high_water() const { return high_water_; }
  uint64_t active_count() const;
  uint64_t inactive_count() const;

 private:
  struct Queue {
    FrameNumber head = kNoFrame;
    FrameNumber tail = kNoFrame;
    uint64_t count = 0;
  };
  // A page taken for eviction: its entry is busy and it is off the queues.
  struct Victim {
    PageTable* table;
    PageIndex index;
    Entry* entry;
    uint64_t pte;  // as it was when taken, without the busy bit
    FrameNumber frame;
  };

  void PushTail(Queue& queue, FrameQueue which, FrameNumber frame)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(queue_mu_);
  void Unlink(FrameNumber frame) ABSL_EXCLUSIVE_LOCKS_REQUIRED(queue_mu_);
  // Puts `to` where `from` is in its queue.
  void ReplaceInQueue(FrameNumber from, FrameNumber to) ABSL_EXCLUSIVE_LOCKS_REQUIRED(queue_mu_);
  Queue& QueueOf(FrameQueue which) ABSL_EXCLUSIVE_LOCKS_REQUIRED(queue_mu_);
  void BalanceQueues() ABSL_EXCLUSIVE_LOCKS_REQUIRED(queue_mu_);
  // Takes the page in `frame` busy if it can be evicted now.
  bool TryTake(FrameNumber frame, Victim* victim) ABSL_EXCLUSIVE_LOCKS_REQUIRED(queue_mu_);
  // Adds the dirty neighbours after `first` in its table to `cluster`.
  void GatherCluster(std::vector<Victim>& cluster) ABSL_EXCLUSIVE_LOCKS_REQUIRED(queue_mu_);
  // Adds to `batch` the clean pages at the inactive head that can be evicted now, all of
  // the page order of its first, until it holds `target_frames` frames or kMaxCluster
  // pages; stops at a dirty page. `batch` may start empty.
  void GatherClean(std::vector<Victim>& batch, uint64_t target_frames, uint64_t& scan_budget)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(queue_mu_);
  // The page at the inactive head is dirty (false when the queue is empty).
  bool HeadIsDirty() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(queue_mu_);
  // Evicts clean pages of one page order; returns the frames freed.
  uint64_t EvictClean(absl::Span<const Victim> batch);
  // The first slot of the run the cluster's pages kept, when they kept neighbouring
  // slots in order (each page its own slots_per_page); kNoSlot otherwise.
  uint64_t KeptRun(absl::Span<const Victim> cluster, uint64_t slots_per_page) const;
  // Writes a cluster out; returns frames freed (0 and pages restored on failure).
  uint64_t PageOutCluster(std::vector<Victim>& cluster);
  void Restore(const Victim& victim);
  void ThreadMain();

  Vm& vm_;
  const uint64_t low_water_;
  const uint64_t high_water_;

  mutable absl::Mutex queue_mu_;
  Queue active_ ABSL_GUARDED_BY(queue_mu_);
  Queue inactive_ ABSL_GUARDED_BY(queue_mu_);

  absl::Mutex thread_mu_;
  bool wake_ ABSL_GUARDED_BY(thread_mu_) = false;
  bool stop_ ABSL_GUARDED_BY(thread_mu_) = false;
  std::atomic<bool> wake_pending_{false};  // set by MaybeWake, cleared by the thread
  std::atomic<bool> refilling_{false};     // a thread is in Refill
  std::atomic<bool> thread_running_{false};  // the pager thread is in a pass
  std::thread thread_;
};

}  // namespace ptmpfs::vm

#endif  // PTMPFS_VM_PAGER_H_
