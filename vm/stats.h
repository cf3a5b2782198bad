// stats: counters of the memory system, one struct, cheap to read from any thread.
//
// Counters are relaxed atomics bumped on slow paths only (faults, pageouts,
// migrations); nothing on the pin fast path writes here. A snapshot is a plain copy
// whose fields may be from slightly different instants.
#ifndef PTMPFS_VM_STATS_H_
#define PTMPFS_VM_STATS_H_

#include <atomic>
#include <cstdint>

namespace ptmpfs::vm {

struct StatsSnapshot {
  uint64_t total_frames = 0;
  uint64_t resident_frames = 0;  // holding pages (total - free)
  uint64_t free_frames = 0;
  uint64_t wired_frames = 0;
  uint64_t charged_pages = 0;  // pageable pages reserved (accounting)
  uint64_t capacity_pages = 0;
  uint64_t swap_slots_used = 0;
  uint64_t swap_slots_total = 0;
  uint64_t swap_slots_backed = 0;
  uint64_t faults = 0;           // slow-path pins that had to bring a page in
  uint64_t zero_fills = 0;       // first touches
  uint64_t pageins = 0;          // pages read back from swap
  uint64_t pageouts = 0;         // pages written to swap
  uint64_t pageout_ios = 0;      // pwritev calls (pageouts / pageout_ios = cluster size)
  uint64_t pagein_ios = 0;       // reads from swap (pageins / pagein_ios: read-around)
  uint64_t clean_evictions = 0;  // pages evicted without a write
  uint64_t migrations = 0;       // frames moved to make an aligned run
  uint64_t checksum_failures = 0;
  uint64_t pin_waits = 0;        // pins that waited on the wired cap or for a frame
};

struct Stats {
  std::atomic<uint64_t> faults{0};
  std::atomic<uint64_t> zero_fills{0};
  std::atomic<uint64_t> pageins{0};
  std::atomic<uint64_t> pageouts{0};
  std::atomic<uint64_t> pageout_ios{0};
  std::atomic<uint64_t> pagein_ios{0};
  std::atomic<uint64_t> clean_evictions{0};
  std::atomic<uint64_t> migrations{0};
  std::atomic<uint64_t> checksum_failures{0};
  std::atomic<uint64_t> pin_waits{0};

  static void Bump(std::atomic<uint64_t>& counter, uint64_t by = 1) {
    counter.fetch_add(by, std::memory_order_relaxed);
  }
};

}  // namespace ptmpfs::vm

#endif  // PTMPFS_VM_STATS_H_
