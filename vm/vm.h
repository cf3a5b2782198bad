// vm: the memory system as a whole, and the life of a page.
//
// Theory. A Vm owns the RAM budget (frames), the swap file, the accounting of
// space, the pager and the statistics. Page tables (of submaps and anonymous
// objects) hold entries; the Vm moves a page through its states:
//
//     kNone --AllocatePages (charge)--> kZero --Wire: FaultIn (zero fill)--+
//       ^                                 ^                                |
//       |                                 | Pager: clean, no swap copy     v
//       +--FreePages (uncharge)--- any    +--------------------------- kResident
//                                         +--Pager: clean, copy kept --  |  ^
//                                         v                           |  |  |
//                                     kSwapped --Wire: FaultIn (read, verify)+  |
//                                         ^                                    |
//                                         +--Pager: dirty, cluster written ----+
//
// Each arrow is taken by the one thread that set the entry's busy bit; others wait
// for it to clear (std::atomic wait). Migration keeps the entry kResident and
// changes only its frame, also under the busy bit.
//
// Invariants.
//  1. A page with wire_count > 0 stays in its frame (invariant 3 of frames.h).
//     The pin fast path (Wire) raises the count, then re-reads the entry; the pager
//     sets busy, then reads the count. With both orders sequentially consistent, at
//     least one of them sees the other and backs off.
//  2. A frame of a resident page is on a pager queue, except while busy.
//  3. Pages are charged to Accounting from kNone->kZero until ->kNone (invariant 4
//     of DESIGN.md), 2^page_order frames per page.
//  4. Wired frames stay below wired_cap(): a fault beyond it waits (bounded) for an
//     unpin, and fails with ResourceExhausted if none comes: never a deadlock.
//
// Locking. Lock order: an entry's busy bit -> pager queue lock -> frames lock.
// Waiting on a busy bit happens with no lock held. Accounting and swap locks are
// leaves. The fast path takes no lock at all.
#ifndef PTMPFS_VM_VM_H_
#define PTMPFS_VM_VM_H_

#include <atomic>
#include <cstdint>
#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "vm/accounting.h"
#include "vm/frames.h"
#include "vm/page_table.h"
#include "vm/stats.h"
#include "vm/swap.h"
#include "vm/wired_count.h"

namespace ptmpfs::vm {

class Pager;

struct VmOptions {
  uint64_t ram_bytes = 64 << 20;  // rounded down to frames; at least kMinFrames
  bool noswap = false;            // no backing file: out of frames is ENOSPC
  SwapOptions swap;               // ignored with noswap
  // How long a fault waits for a frame or for the wired cap before it fails.
  int frame_wait_ms = 5000;
  bool start_pager_thread = true;  // tests drive Reclaim() by hand without it
};

// kOverwrite is kWrite with a promise: the caller writes every byte of the page
// before anyone can read it, so a page faulted in as zero-fill is not zeroed first
// (the frame's old bytes are never seen) and one in swap is not read back. UbcWindow::Map(kWrite) asks for it on the
// pages its range wholly covers.
enum class Access { kRead, kWrite, kOverwrite };

inline bool IsWrite(Access access) { return access != Access::kRead; }

class Vm {
 public:
  static absl::StatusOr<std::unique_ptr<Vm>> Create(const VmOptions& options);
  ~Vm();
  Vm(const Vm&) = delete;
  Vm& operator=(const Vm&) = delete;

  Frames& frames() { return *frames_; }
  Swap* swap() { return swap_.get(); }
  Accounting& accounting() { return *accounting_; }
  Pager& pager() { return *pager_; }
  Stats& stats() { return stats_; }
  StatsSnapshot ReadStats() const;
  uint64_t wired_cap() const { return wired_cap_; }
  int64_t wired_frames() const { return wired_count_.Total(); }

  // Charges and marks kZero the pages [first, first+count) of `table` that are kNone.
  // ResourceExhausted (no space) before any change if they do not fit.
  // `from_reserve` lets operations that free space dip into the reserve.
  absl::Status AllocatePages(PageTable& table, PageIndex first, uint64_t count,
                             bool from_reserve = false);
  // Frees the pages of [first, first+count): frames and swap slots go back, the
  // pages are uncharged and become kNone. Never reads a page from swap.
  // REQUIRES: no pin on these pages (the caller's lock excludes them).
  void FreePages(PageTable& table, PageIndex first, uint64_t count);

  // Wires the page: faults it in if it is not resident, marks it referenced (and
  // dirty for kWrite), and returns its first frame. The fast path (resident page)
  // takes no lock. Errors: NotFound (page not allocated), DataLoss (swap checksum,
  // EIO), ResourceExhausted (no frame within frame_wait_ms).
  absl::StatusOr<FrameNumber> Wire(PageTable& table, PageIndex index, Access access) {
    if (Entry* entry = table.Find(index)) [[likely]] {
      uint64_t pte = entry->load(std::memory_order_acquire);
      if (Pte::IsResidentIdle(pte)) [[likely]] {
        FrameNumber frame = static_cast<FrameNumber>(Pte::Payload(pte));
        if (TryWireResident(*entry, frame, access)) [[likely]] return frame;
      }
    }
    return WireSlow(table, index, access);
  }
  void Unwire(FrameNumber frame) {
    if (frames_->desc(frame).wire_count.fetch_sub(1, std::memory_order_release) == 1) {
      wired_count_.Add(-1);
      if (frame_waiters_.load(std::memory_order_relaxed) != 0) [[unlikely]] NotifyFrameWaiters();
    }
  }

  // Wires `frame` if `entry` still maps it, resident and idle: the fast path of Wire
  // for callers that remember a translation (UBC window cache). false otherwise.
  bool TryWire(Entry& entry, FrameNumber frame, Access access) {
    return TryWireResident(entry, frame, access);
  }

  // The most pages a UBC window wires at once (UbcWindow::kMaxPages): FUSE's largest
  // write, 1 MiB, at an offset that is not page-aligned. The pager's low watermark
  // keeps room for one (vm.cc).
  static constexpr uint64_t kMaxWindowPages = 257;

  // Read-around for UBC windows: wires for reading up to `count` (at most
  // kMaxReadAround) pages from `first` of a table of order 0 that are in swap in
  // consecutive slots, as they were paged out together, with one read for them all.
  // Returns how many it wired, their frames in `frames`: the run ends at the first
  // page that is not the next slot's, is busy or finds no frame. 0 when it did
  // nothing (a run shorter than two), -1 when the read failed: either way the caller
  // wires page by page, which also reports any error for the one page it concerns
  // (and after -1 had better not read around again, or one bad slot is read anew
  // for each page before it).
  static constexpr int kMaxReadAround = 32;
  int WireSwappedRun(PageTable& table, PageIndex first, int count, FrameNumber* frames);

  // Waits for the entry's busy bit to clear; returns the entry's value then.
  static uint64_t WaitNotBusy(Entry& entry);

  // Migration: frees an aligned run of 2^order frames by moving unwired pages out of
  // the best block (seeds 002, 004). Returns the run, kReserved; nullopt if no block
  // can be cleared.
  std::optional<FrameNumber> MigrateForRun(int order);

 private:
  friend class Pager;
  explicit Vm(const VmOptions& options);

  bool TryWireResident(Entry& entry, FrameNumber frame, Access access) {
    FrameDesc& desc = frames_->desc(frame);
    if (desc.wire_count.fetch_add(1, std::memory_order_seq_cst) == 0) wired_count_.Add(1);
    uint64_t pte = entry.load(std::memory_order_seq_cst);
    if (Pte::IsResidentIdle(pte) && Pte::Payload(pte) == frame) [[likely]] {
      const uint64_t wanted = Pte::kReferenced | (IsWrite(access) ? Pte::kDirty : 0);
      if ((pte & wanted) != wanted) entry.fetch_or(wanted, std::memory_order_relaxed);
      return true;
    }
    Unwire(frame);  // the page moved or is being evicted: take the slow path
    return false;
  }

  absl::StatusOr<FrameNumber> WireSlow(PageTable& table, PageIndex index, Access access);
  // REQUIRES: the entry is busy, held by this thread, and kZero or kSwapped.
  absl::StatusOr<FrameNumber> FaultIn(PageTable& table, PageIndex index, Entry& entry,
                                      uint64_t pte, Access access);
  // A run of 2^order frames in state kReserved: from the free lists, by migration,
  // or after reclaim; waits at most frame_wait_ms.
  absl::StatusOr<FrameNumber> AllocFrames(int order);
  // A run that is free now (refilling free frames from clean pages below the low
  // watermark, as every allocation does); nullopt rather than reclaim or wait.
  std::optional<FrameNumber> TakeFreeFrames(int order);
  absl::Status WaitForWiredCap();
  void NotifyFrameWaiters();
  // Releases the frames and slot of a page whose entry this thread holds busy.
  void ReleasePage(PageTable& table, uint64_t pte, FrameNumber frame_if_resident);

  const VmOptions options_;
  std::unique_ptr<Frames> frames_;
  std::unique_ptr<Swap> swap_;
  std::unique_ptr<Accounting> accounting_;
  std::unique_ptr<Pager> pager_;
  uint64_t wired_cap_ = 0;
  WiredCount wired_count_;
  Stats stats_;

  // Threads waiting for a frame or for the wired cap. Unwire and page frees notify.
  std::atomic<int> frame_waiters_{0};
  absl::Mutex frame_wait_mu_;
  absl::CondVar frame_wait_cv_;
};

}  // namespace ptmpfs::vm

#endif  // PTMPFS_VM_VM_H_
