// populator: takes the frame region's memory from the host ahead of its first use,
// on a thread of its own.
//
// Theory. The region (frames.h) is mapped once and the host gives it memory page by
// page as it is first written: a page fault and a zeroed page each, about 1.3 us per
// 4 KiB on this project's machine, which a first write into fresh frames paid inline
// (fs_bench: a 1 MiB write spent a third of its time there). Asking for a whole chunk
// at once (MADV_POPULATE_WRITE, 2 MiB) is cheaper per page, and doing it before the
// chunk is needed, on the other CPU, takes it off the write path altogether.
//
// Frames hands out never-used frames from the top of the region down (its free lists
// are LIFO and the region is carved bottom-up), so when a chunk is first used, the
// next ones to be needed are those just below it. The first Touch() of a chunk
// populates it at once if nobody has, then asks the thread for the kAheadChunks
// below; so as writes move down, the thread stays that far ahead of them. A guess that
// is wrong (frames freed and reused out of order) costs nothing but memory taken
// early: the region is the budget, and it is used in full sooner or later.
//
// Invariants.
//  1. A chunk is populated at most once: whoever claims it (the compare-and-swap of
//     its flag from 0 to 1) populates it; nobody waits for it. A frame written while
//     its chunk is being populated is simply faulted in by the kernel, as it would be
//     without us: populating present pages changes nothing.
//  2. Memory is taken only ahead of use: at most kAheadChunks chunks (16 MiB) beyond
//     the lowest chunk Touch() has seen.
//
// Locking. Touch's fast path is one relaxed load (of the chunk's touched flag). mu_ guards the request to the
// thread; population itself happens with no lock held.
#ifndef PTMPFS_VM_POPULATOR_H_
#define PTMPFS_VM_POPULATOR_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace ptmpfs::vm {

class Populator {
 public:
  static constexpr uint64_t kChunkBytes = 2 << 20;
  static constexpr uint64_t kAheadChunks = 8;

  // Over [base, base + bytes); starts the thread.
  Populator(char* base, uint64_t bytes);
  ~Populator();  // stops and joins the thread
  Populator(const Populator&) = delete;
  Populator& operator=(const Populator&) = delete;

  // Called with an address about to be written for the first time in a while (a
  // frame just allocated).
  void Touch(const char* address) {
    const uint64_t chunk = static_cast<uint64_t>(address - base_) / kChunkBytes;
    if (!touched_[chunk].load(std::memory_order_relaxed)) [[unlikely]] TouchSlow(chunk);
  }

  // Waits until the thread has nothing left to do (tests).
  void WaitIdle();
  // Chunks populated so far, by either side (tests, stats).
  uint64_t populated_chunks() const { return populated_.load(std::memory_order_relaxed); }

 private:
  static constexpr uint64_t kNoChunk = UINT64_MAX;

  void TouchSlow(uint64_t chunk);
  // Claims `chunk` (invariant 1) and, if this call won it, populates it.
  void ClaimAndPopulate(uint64_t chunk);
  void Run();

  char* const base_;
  const uint64_t bytes_;
  const uint64_t chunks_;
  std::unique_ptr<std::atomic<bool>[]> claimed_;  // populated, or being, by someone
  // Seen by Touch: the first Touch of a chunk asks for the chunks below it, also when
  // the thread populated it already, so the thread stays ahead of the writes.
  std::unique_ptr<std::atomic<bool>[]> touched_;
  std::atomic<uint64_t> populated_{0};

  absl::Mutex mu_;
  uint64_t wanted_below_ ABSL_GUARDED_BY(mu_) = kNoChunk;  // populate the chunks below it
  bool busy_ ABSL_GUARDED_BY(mu_) = false;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace ptmpfs::vm

#endif  // PTMPFS_VM_POPULATOR_H_
