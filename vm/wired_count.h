// wired_count: how many frames are wired (wire count > 0), counted without a
// shared cache line on the pin fast path.
//
// Each thread adds its 0->1 and 1->0 wire transitions to a counter slot of its own
// (relaxed load and store: one writer per slot); the total is the sum of the slots,
// read on the fault path only, where the wired cap is enforced. A pin released on
// another thread than took it leaves one slot above and another below: the sum is
// still right.
//
// Locking. registry_mu_ serialises registration (a thread's first use of a counter);
// Total() takes no lock: slots form a list that only grows at its head, each published
// with a release store of head_ after it is built. Slots live as long as the counter.
#ifndef PTMPFS_VM_WIRED_COUNT_H_
#define PTMPFS_VM_WIRED_COUNT_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace ptmpfs::vm {

class WiredCount {
 public:
  WiredCount();
  WiredCount(const WiredCount&) = delete;
  WiredCount& operator=(const WiredCount&) = delete;

  void Add(int64_t delta) {
    std::atomic<int64_t>& slot = ThisThreadSlot();
    slot.store(slot.load(std::memory_order_relaxed) + delta, std::memory_order_relaxed);
  }
  // The sum over every thread; exact once the threads' stores are visible.
  int64_t Total() const;

 private:
  struct alignas(64) Slot {
    std::atomic<int64_t> count{0};
    const Slot* next = nullptr;  // set before the slot is published, then never changed
  };
  struct ThreadCache {
    uint64_t owner_id = 0;
    std::atomic<int64_t>* slot = nullptr;
  };
  static constinit thread_local ThreadCache cache_;  // constinit: no TLS init call per pin

  std::atomic<int64_t>& ThisThreadSlot() {
    if (cache_.owner_id == id_) [[likely]] return *cache_.slot;
    return RegisterThisThread();
  }
  std::atomic<int64_t>& RegisterThisThread();

  const uint64_t id_;  // unique per counter, never reused, so a stale cache never matches
  mutable absl::Mutex registry_mu_;
  std::vector<std::unique_ptr<Slot>> slots_ ABSL_GUARDED_BY(registry_mu_);  // owns them
  std::atomic<const Slot*> head_{nullptr};  // the list Total() walks; written under registry_mu_
  absl::flat_hash_map<std::thread::id, Slot*> slot_of_thread_ ABSL_GUARDED_BY(registry_mu_);
};

}  // namespace ptmpfs::vm

#endif  // PTMPFS_VM_WIRED_COUNT_H_
