#include "vm/pager.h"

#include <pthread.h>

#include <algorithm>
#include <cassert>

#include "absl/strings/str_format.h"
#include "vm/vm.h"

namespace ptmpfs::vm {

Pager::Pager(Vm& vm, uint64_t low_water, uint64_t high_water)
    : vm_(vm), low_water_(low_water), high_water_(high_water) {}

Pager::~Pager() { StopThread(); }

void Pager::StartThread() {
  absl::MutexLock lock(&thread_mu_);
  if (thread_.joinable()) return;
  stop_ = false;
  thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "ptmpfs-pager");  // for top -H and perf
    ThreadMain();
  });
}

void Pager::StopThread() {
  {
    absl::MutexLock lock(&thread_mu_);
    if (!thread_.joinable()) return;
    stop_ = true;
  }
  thread_.join();
  thread_ = std::thread();
}

void Pager::MaybeWake() {
  if (vm_.frames().free_count() >= low_water_) return;
  // One wake-up per pager pass: later faults see the flag and skip the lock.
  if (wake_pending_.exchange(true, std::memory_order_relaxed)) return;
  absl::MutexLock lock(&thread_mu_);
  wake_ = true;
}

void Pager::Refill() {
  if (thread_running_.load(std::memory_order_relaxed)) return;
  if (!refilling_.exchange(true, std::memory_order_acquire)) {
    const uint64_t free = vm_.frames().free_count();
    if (free < high_water_) ReclaimClean(high_water_ - free);
    refilling_.store(false, std::memory_order_release);
  }
  MaybeWake();
}

void Pager::ThreadMain() {
  for (;;) {
    {
      absl::MutexLock lock(&thread_mu_);
      thread_mu_.Await(absl::Condition(
          +[](Pager* pager) ABSL_EXCLUSIVE_LOCKS_REQUIRED(pager->thread_mu_) {
            return pager->wake_ || pager->stop_;
          },
          this));
      if (stop_) return;
      wake_ = false;
    }
    thread_running_.store(true, std::memory_order_relaxed);
    wake_pending_.store(false, std::memory_order_relaxed);
    while (vm_.frames().free_count() < high_water_) {
      if (Reclaim(high_water_ - vm_.frames().free_count()) == 0) break;
    }
    thread_running_.store(false, std::memory_order_relaxed);
    if (vm_.frame_waiters_.load(std::memory_order_relaxed) != 0) vm_.NotifyFrameWaiters();
    if (vm_.swap() != nullptr) vm_.swap()->DropFreedPages();
  }
}

uint64_t Pager::active_count() const {
  absl::MutexLock lock(&queue_mu_);
  return active_.count;
}

uint64_t Pager::inactive_count() const {
  absl::MutexLock lock(&queue_mu_);
  return inactive_.count;
}

Pager::Queue& Pager::QueueOf(FrameQueue which) {
  assert(which != FrameQueue::kNone);
  return which == FrameQueue::kActive ? active_ : inactive_;
}

void Pager::PushTail(Queue& queue, FrameQueue which, FrameNumber frame) {
  FrameDesc& desc = vm_.frames().desc(frame);
  assert(desc.queue.load(std::memory_order_relaxed) == FrameQueue::kNone);
  desc.queue.store(which, std::memory_order_relaxed);
  desc.next = kNoFrame;
  desc.prev = queue.tail;
  if (queue.tail != kNoFrame) {
    vm_.frames().desc(queue.tail).next = frame;
  } else {
    queue.head = frame;
  }
  queue.tail = frame;
  ++queue.count;
}

void Pager::Unlink(FrameNumber frame) {
  FrameDesc& desc = vm_.frames().desc(frame);
  FrameQueue which = desc.queue.load(std::memory_order_relaxed);
  if (which == FrameQueue::kNone) return;
  Queue& queue = QueueOf(which);
  if (desc.prev != kNoFrame) {
    vm_.frames().desc(desc.prev).next = desc.next;
  } else {
    queue.head = desc.next;
  }
  if (desc.next != kNoFrame) {
    vm_.frames().desc(desc.next).prev = desc.prev;
  } else {
    queue.tail = desc.prev;
  }
  desc.prev = desc.next = kNoFrame;
  desc.queue.store(FrameQueue::kNone, std::memory_order_relaxed);
  --queue.count;
}

void Pager::ReplaceInQueue(FrameNumber from, FrameNumber to) {
  FrameDesc& old_desc = vm_.frames().desc(from);
  FrameDesc& new_desc = vm_.frames().desc(to);
  FrameQueue which = old_desc.queue.load(std::memory_order_relaxed);
  assert(which != FrameQueue::kNone);
  Queue& queue = QueueOf(which);
  new_desc.prev = old_desc.prev;
  new_desc.next = old_desc.next;
  new_desc.queue.store(which, std::memory_order_relaxed);
  if (new_desc.prev != kNoFrame) {
    vm_.frames().desc(new_desc.prev).next = to;
  } else {
    queue.head = to;
  }
  if (new_desc.next != kNoFrame) {
    vm_.frames().desc(new_desc.next).prev = to;
  } else {
    queue.tail = to;
  }
  old_desc.prev = old_desc.next = kNoFrame;
  old_desc.queue.store(FrameQueue::kNone, std::memory_order_relaxed);
}

void Pager::Activate(FrameNumber head) {
  absl::MutexLock lock(&queue_mu_);
  PushTail(active_, FrameQueue::kActive, head);
}

void Pager::ActivateRun(absl::Span<const FrameNumber> heads) {
  absl::MutexLock lock(&queue_mu_);
  for (FrameNumber head : heads) PushTail(active_, FrameQueue::kActive, head);
}

void Pager::Remove(FrameNumber head) {
  absl::MutexLock lock(&queue_mu_);
  Unlink(head);
}

// Keeps about a third of the queued pages inactive. Deactivation clears the
// referenced bit, so a page still in use shows it again before it reaches the
// inactive head and gets its second chance there.
void Pager::BalanceQueues() {
  // A bounded batch per call keeps the queue lock's hold time short.
  for (int moved = 0; moved < 64 && active_.head != kNoFrame &&
                      inactive_.count * 3 < active_.count + inactive_.count;
       ++moved) {
    FrameNumber frame = active_.head;
    FrameDesc& desc = vm_.frames().desc(frame);
    Unlink(frame);
    desc.entry->fetch_and(~Pte::kReferenced, std::memory_order_relaxed);
    PushTail(inactive_, FrameQueue::kInactive, frame);
  }
}

bool Pager::TryTake(FrameNumber frame, Victim* victim) {
  FrameDesc& desc = vm_.frames().desc(frame);
  Entry* entry = desc.entry;
  assert(entry != nullptr && entry == desc.owner->Find(desc.index));
  uint64_t pte = entry->load(std::memory_order_acquire);
  auto keep = [&] {
    Unlink(frame);
    PushTail(active_, FrameQueue::kActive, frame);
    return false;
  };
  if (!Pte::IsResidentIdle(pte) || Pte::Payload(pte) != frame) return keep();
  if (desc.wire_count.load(std::memory_order_relaxed) != 0) return keep();
  if ((pte & Pte::kReferenced) != 0) {  // second chance
    entry->fetch_and(~Pte::kReferenced, std::memory_order_relaxed);
    return keep();
  }
  if (!entry->compare_exchange_strong(pte, pte | Pte::kBusy, std::memory_order_seq_cst)) {
    return keep();
  }
  // vm.h, invariant 1: busy is set, now the wire count decides.
  if (desc.wire_count.load(std::memory_order_seq_cst) != 0) {
    entry->fetch_and(~Pte::kBusy, std::memory_order_release);
    entry->notify_all();
    return keep();
  }
  Unlink(frame);
  *victim = Victim{desc.owner, desc.index, entry, pte, frame};
  return true;
}

void Pager::GatherCluster(std::vector<Victim>& cluster) {
  const Victim first = cluster.front();
  for (PageIndex index = first.index + 1; cluster.size() < kMaxCluster; ++index) {
    Entry* entry = first.table->Find(index);
    if (entry == nullptr) break;
    uint64_t pte = entry->load(std::memory_order_acquire);
    // A referenced neighbour goes too: one write for the run is worth more than the
    // chance that it is used again soon (UVM clusters the same way).
    if (!Pte::IsResidentIdle(pte) || (pte & Pte::kDirty) == 0) break;
    FrameNumber frame = static_cast<FrameNumber>(Pte::Payload(pte));
    FrameDesc& desc = vm_.frames().desc(frame);
    if (desc.queue.load(std::memory_order_relaxed) == FrameQueue::kNone ||
        desc.wire_count.load(std::memory_order_relaxed) != 0) {
      break;
    }
    if (!entry->compare_exchange_strong(pte, pte | Pte::kBusy, std::memory_order_seq_cst)) break;
    if (desc.wire_count.load(std::memory_order_seq_cst) != 0) {
      entry->fetch_and(~Pte::kBusy, std::memory_order_release);
      entry->notify_all();
      break;
    }
    Unlink(frame);
    cluster.push_back(Victim{first.table, index, entry, pte, frame});
  }
}

void Pager::Restore(const Victim& victim) {
  {
    absl::MutexLock lock(&queue_mu_);
    PushTail(active_, FrameQueue::kActive, victim.frame);
  }
  victim.entry->store(victim.pte, std::memory_order_release);
  victim.entry->notify_all();
}

void Pager::GatherClean(std::vector<Victim>& batch, uint64_t target_frames,
                        uint64_t& scan_budget) {
  while (batch.size() < kMaxCluster && scan_budget > 0) {
    if (!batch.empty() && batch.size() * batch.front().table->frames_per_page() >= target_frames) {
      break;
    }
    const FrameNumber frame = inactive_.head;
    if (frame == kNoFrame) break;
    const FrameDesc& desc = vm_.frames().desc(frame);
    if (!batch.empty() && desc.owner->page_order() != batch.front().table->page_order()) break;
    // A dirty page ends the batch where it is: it goes out in a cluster of its own.
    if (HeadIsDirty()) break;
    --scan_budget;
    Victim victim;
    if (!TryTake(frame, &victim)) continue;  // referenced or wired: moved to active
    if ((victim.pte & Pte::kDirty) != 0) {   // dirtied since the look above
      PushTail(active_, FrameQueue::kActive, frame);
      victim.entry->store(victim.pte, std::memory_order_release);
      victim.entry->notify_all();
      break;
    }
    batch.push_back(victim);
  }
}

bool Pager::HeadIsDirty() const {
  const FrameNumber frame = inactive_.head;
  if (frame == kNoFrame) return false;
  const FrameDesc& desc = vm_.frames().desc(frame);
  return (desc.entry->load(std::memory_order_relaxed) & Pte::kDirty) != 0;
}

uint64_t Pager::EvictClean(absl::Span<const Victim> batch) {
  FrameNumber frames[kMaxCluster];
  assert(batch.size() <= kMaxCluster);
  for (size_t i = 0; i < batch.size(); ++i) {
    const Victim& victim = batch[i];
    const uint64_t slot = vm_.frames().desc(victim.frame).swap_slot;
    // Clean with a copy in swap: point at the copy. Clean with none: never written
    // since it was zero-filled, so it is zero-fill again.
    victim.entry->store(slot != kNoSlot ? Pte::Make(Pte::kSwapped, slot) : Pte::Make(Pte::kZero),
                        std::memory_order_release);
    victim.entry->notify_all();
    frames[i] = victim.frame;
  }
  vm_.frames().Free(absl::MakeConstSpan(frames, batch.size()), batch.front().table->page_order());
  Stats::Bump(vm_.stats().clean_evictions, batch.size());
  return batch.size() * batch.front().table->frames_per_page();
}

uint64_t Pager::KeptRun(absl::Span<const Victim> cluster, uint64_t slots_per_page) const {
  const uint64_t first = vm_.frames().desc(cluster.front().frame).swap_slot;
  if (first == kNoSlot) return kNoSlot;
  for (size_t i = 1; i < cluster.size(); ++i) {
    if (vm_.frames().desc(cluster[i].frame).swap_slot != first + i * slots_per_page) {
      return kNoSlot;
    }
  }
  return first;
}

uint64_t Pager::PageOutCluster(std::vector<Victim>& cluster) {
  Swap* swap = vm_.swap();
  const int order = cluster.front().table->page_order();
  const uint64_t slots_per_page = uint64_t{1} << order;
  const uint64_t total_slots = cluster.size() * slots_per_page;
  // A cluster whose pages kept neighbouring slots, in order (a file rewritten in
  // place, read back with read-around), goes back into them: no slot is allocated or
  // freed, and the host rewrites page-cache pages it already has instead of
  // allocating new ones and dropping the old (Swap::DropFreedPages).
  const uint64_t kept = KeptRun(cluster, slots_per_page);
  absl::StatusOr<uint64_t> run = kept != kNoSlot ? kept : swap->AllocSlots(total_slots);
  if (!run.ok() && swap->backed_slots() < swap->slot_count()) {
    // Slots kept by clean resident pages can outrun the accounting's backing.
    if (swap->EnsureBacked(swap->slots_in_use() + total_slots).ok()) {
      run = swap->AllocSlots(total_slots);
    }
  }
  if (!run.ok()) {
    // No run of neighbouring slots: each page goes alone, into the slot it kept if
    // it has one. Pages that find no slot stay resident.
    uint64_t freed = 0;
    for (size_t i = 0; i < cluster.size(); ++i) {
      std::vector<Victim> single{cluster[i]};
      FrameDesc& desc = vm_.frames().desc(cluster[i].frame);
      absl::StatusOr<uint64_t> slot = desc.swap_slot != kNoSlot
                                          ? absl::StatusOr<uint64_t>(desc.swap_slot)
                                          : swap->AllocSlots(slots_per_page);
      if (!slot.ok()) {
        Restore(cluster[i]);
        continue;
      }
      desc.swap_slot = kNoSlot;
      void* pages[1 << kMaxOrder];
      for (uint64_t f = 0; f < slots_per_page; ++f) {
        pages[f] = vm_.frames().Address(cluster[i].frame + static_cast<FrameNumber>(f));
      }
      if (!swap->Write(*slot, pages, static_cast<int>(slots_per_page)).ok()) {
        swap->FreeSlots(*slot, slots_per_page);
        Restore(cluster[i]);
        continue;
      }
      Stats::Bump(vm_.stats().pageout_ios);
      Stats::Bump(vm_.stats().pageouts, slots_per_page);
      cluster[i].entry->store(Pte::Make(Pte::kSwapped, *slot), std::memory_order_release);
      cluster[i].entry->notify_all();
      vm_.frames().Free(cluster[i].frame, order);
      freed += slots_per_page;
    }
    return freed;
  }

  std::vector<void*> pages;
  pages.reserve(total_slots);
  for (const Victim& victim : cluster) {
    for (uint64_t f = 0; f < slots_per_page; ++f) {
      pages.push_back(vm_.frames().Address(victim.frame + static_cast<FrameNumber>(f)));
    }
  }
  absl::Status written = swap->Write(*run, pages.data(), static_cast<int>(total_slots));
  if (!written.ok()) {
    absl::FPrintF(stderr, "ptmpfs: pageout of %d pages failed: %s\n", cluster.size(),
                  written.ToString());
    // Slots kept in place stay the pages' (stale now, and rewritten or freed when
    // the pages next go out, as invariant 3 says of any dirty page's slot).
    if (kept == kNoSlot) swap->FreeSlots(*run, total_slots);
    for (const Victim& victim : cluster) Restore(victim);
    return 0;
  }
  Stats::Bump(vm_.stats().pageout_ios);
  Stats::Bump(vm_.stats().pageouts, total_slots);
  FrameNumber frames[kMaxCluster];
  assert(cluster.size() <= kMaxCluster);
  for (size_t i = 0; i < cluster.size(); ++i) {
    const Victim& victim = cluster[i];
    FrameDesc& desc = vm_.frames().desc(victim.frame);
    // Invariant 3: the copy the page kept is stale now; the new one replaces it.
    if (desc.swap_slot != kNoSlot && kept == kNoSlot) {
      swap->FreeSlots(desc.swap_slot, slots_per_page);
    }
    victim.entry->store(Pte::Make(Pte::kSwapped, *run + i * slots_per_page),
                        std::memory_order_release);
    victim.entry->notify_all();
    frames[i] = victim.frame;
  }
  vm_.frames().Free(absl::MakeConstSpan(frames, cluster.size()), order);
  return total_slots;
}

uint64_t Pager::Reclaim(uint64_t target_frames) {
  uint64_t freed = 0;
  uint64_t scan_budget;
  {
    absl::MutexLock lock(&queue_mu_);
    scan_budget = 2 * (active_.count + inactive_.count) + 16;
  }
  // After a failed write the pass writes nothing more (the next one tries again):
  // the swap file is likely to fail the next cluster too, and clean pages can still
  // be evicted.
  bool can_write = vm_.swap() != nullptr;
  std::vector<Victim> cluster;
  cluster.reserve(kMaxCluster);
  while (freed < target_frames) {
    cluster.clear();
    {
      absl::MutexLock lock(&queue_mu_);
      while (cluster.empty() && scan_budget > 0) {
        --scan_budget;
        BalanceQueues();
        FrameNumber frame = inactive_.head;
        if (frame == kNoFrame) frame = active_.head;
        if (frame == kNoFrame) break;
        Victim victim;
        if (!TryTake(frame, &victim)) continue;
        const bool clean = (victim.pte & Pte::kDirty) == 0;
        if (!clean && !can_write) {
          // noswap, or a write failed: a written page has nowhere to go.
          victim.entry->store(victim.pte, std::memory_order_release);
          victim.entry->notify_all();
          PushTail(active_, FrameQueue::kActive, frame);
          continue;
        }
        cluster.push_back(victim);
        if (!clean) {
          GatherCluster(cluster);
        } else {
          GatherClean(cluster, target_frames - freed, scan_budget);
        }
      }
    }
    if (cluster.empty()) break;
    if ((cluster.front().pte & Pte::kDirty) == 0) {
      freed += EvictClean(cluster);
    } else {
      const uint64_t written = PageOutCluster(cluster);
      if (written == 0) can_write = false;
      freed += written;
    }
  }
  if (freed > 0 && vm_.frame_waiters_.load(std::memory_order_relaxed) != 0) {
    vm_.NotifyFrameWaiters();
  }
  return freed;
}

uint64_t Pager::ReclaimClean(uint64_t target_frames) {
  uint64_t freed = 0;
  std::vector<Victim> batch;
  batch.reserve(kMaxCluster);
  while (freed < target_frames) {
    batch.clear();
    {
      absl::MutexLock lock(&queue_mu_);
      // A dirty head stays where it is until the pager thread writes it: balancing
      // would only move active pages behind it.
      if (HeadIsDirty()) break;
      BalanceQueues();
      uint64_t scan_budget = 2 * kMaxCluster;
      GatherClean(batch, target_frames - freed, scan_budget);
    }
    if (batch.empty()) break;
    freed += EvictClean(batch);
  }
  if (freed > 0 && vm_.frame_waiters_.load(std::memory_order_relaxed) != 0) {
    vm_.NotifyFrameWaiters();
  }
  return freed;
}

}  // namespace ptmpfs::vm
