#include "vm/wired_count.h"

namespace ptmpfs::vm {

namespace {
std::atomic<uint64_t> next_counter_id{1};
}  // namespace

constinit thread_local WiredCount::ThreadCache WiredCount::cache_;

WiredCount::WiredCount() : id_(next_counter_id.fetch_add(1, std::memory_order_relaxed)) {}

std::atomic<int64_t>& WiredCount::RegisterThisThread() {
  // The cache holds one counter; a thread that alternates between counters (tests
  // with several Vms) finds its slot again here: one slot per thread per counter.
  absl::MutexLock lock(&registry_mu_);
  Slot*& slot = slot_of_thread_[std::this_thread::get_id()];
  if (slot == nullptr) {
    slots_.push_back(std::make_unique<Slot>());
    slot = slots_.back().get();
    slot->next = head_.load(std::memory_order_relaxed);
    head_.store(slot, std::memory_order_release);
  }
  cache_.owner_id = id_;
  cache_.slot = &slot->count;
  return *cache_.slot;
}

int64_t WiredCount::Total() const {
  // Lock-free: it runs on every fault once the frames are full (Vm::WaitForWiredCap).
  int64_t total = 0;
  for (const Slot* slot = head_.load(std::memory_order_acquire); slot != nullptr;
       slot = slot->next) {
    total += slot->count.load(std::memory_order_relaxed);
  }
  return total;
}

}  // namespace ptmpfs::vm
