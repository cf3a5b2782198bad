#include "vm/vm.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "vm/pager.h"

namespace ptmpfs::vm {

namespace {

uint64_t Clamp(uint64_t value, uint64_t low, uint64_t high) {
  return std::min(std::max(value, low), high);
}

}  // namespace

Vm::Vm(const VmOptions& options) : options_(options) {}

absl::StatusOr<std::unique_ptr<Vm>> Vm::Create(const VmOptions& options) {
  std::unique_ptr<Vm> vm(new Vm(options));
  absl::StatusOr<std::unique_ptr<Frames>> frames = Frames::Create(options.ram_bytes / kPageSize);
  if (!frames.ok()) return frames.status();
  vm->frames_ = *std::move(frames);
  const uint64_t frame_count = vm->frames_->count();
  if (!options.noswap) {
    absl::StatusOr<std::unique_ptr<Swap>> swap = Swap::Open(options.swap);
    if (!swap.ok()) return swap.status();
    vm->swap_ = *std::move(swap);
  }
  // Slack: frames left out of the capacity, so that with every charged page in use
  // and the frames full, at least this many slots are free for the pager's clusters
  // (accounting.h): a sixteenth of the budget, at least one largest page. Without
  // swap nothing is written out, and the slack only keeps frames for migration.
  const uint64_t slack = vm->swap_ != nullptr ? Clamp(frame_count / 16, 1 << kMaxOrder, 4096)
                                              : Clamp(frame_count / 64, 4, 1024);
  // Reserve for operations that free space: 1/256 of the capacity, at least 8 pages
  // (a directory split plus the pages its unlink path faults).
  const uint64_t capacity_estimate =
      frame_count - slack + (vm->swap_ != nullptr ? vm->swap_->slot_count() : 0);
  vm->accounting_ = std::make_unique<Accounting>(frame_count - slack, vm->swap_.get(),
                                                 Clamp(capacity_estimate / 256, 8, 4096));
  // Wired cap: at least a quarter of the frames (and one largest page) stay
  // unwired, so the pager and migration always have pages to work with.
  vm->wired_cap_ = frame_count - std::max<uint64_t>(frame_count / 4, 1 << kMaxOrder);
  // Watermarks: the pager thread wakes below 1/64 of the frames and frees up to
  // twice that, and at least kMinWakeBatch frames more, so that it runs once per
  // many faults rather than every few (a wake-up costs a futex call each side).
  // The low one is also at least a largest window (kMaxWindowPages), up to an
  // eighth of the frames (and at least 2): a writer that maps a window larger than
  // the free frames writes dirty pages out itself, on its own thread, where the
  // pager thread would have written them beside it. Measured with ram=6M (1,536
  // frames; the low watermark was 24): sequential 1 MiB writes of a 256 MiB file
  // 900-931 -> 1,223-1,233 MiB/s; metadata ten times the budget: 6-18% more
  // page-ins, the same rates. Budgets from 64 MiB up are unchanged.
  const uint64_t window_room = std::max<uint64_t>(2, std::min(kMaxWindowPages, frame_count / 8));
  const uint64_t low_water = Clamp(frame_count / 64, window_room, 4096);
  const uint64_t high_water =
      std::min(low_water + std::max(low_water, Pager::kMinWakeBatch), frame_count / 2);
  vm->pager_ = std::make_unique<Pager>(*vm, low_water, high_water);
  if (options.start_pager_thread) vm->pager_->StartThread();
  return vm;
}

Vm::~Vm() {
  if (pager_ != nullptr) pager_->StopThread();
}

StatsSnapshot Vm::ReadStats() const {
  StatsSnapshot s;
  s.total_frames = frames_->count();
  s.free_frames = frames_->free_count();
  s.resident_frames = s.total_frames - s.free_frames;
  int64_t wired = wired_count_.Total();
  s.wired_frames = wired > 0 ? static_cast<uint64_t>(wired) : 0;
  s.charged_pages = accounting_->charged();
  s.capacity_pages = accounting_->capacity();
  if (swap_ != nullptr) {
    s.swap_slots_used = swap_->slots_in_use();
    s.swap_slots_total = swap_->slot_count();
    s.swap_slots_backed = swap_->backed_slots();
    s.checksum_failures = swap_->checksum_failures();
  }
  s.faults = stats_.faults.load(std::memory_order_relaxed);
  s.zero_fills = stats_.zero_fills.load(std::memory_order_relaxed);
  s.pageins = stats_.pageins.load(std::memory_order_relaxed);
  s.pageouts = stats_.pageouts.load(std::memory_order_relaxed);
  s.pageout_ios = stats_.pageout_ios.load(std::memory_order_relaxed);
  s.pagein_ios = stats_.pagein_ios.load(std::memory_order_relaxed);
  s.clean_evictions = stats_.clean_evictions.load(std::memory_order_relaxed);
  s.migrations = stats_.migrations.load(std::memory_order_relaxed);
  s.pin_waits = stats_.pin_waits.load(std::memory_order_relaxed);
  return s;
}

uint64_t Vm::WaitNotBusy(Entry& entry) {
  uint64_t pte = entry.load(std::memory_order_acquire);
  while (Pte::IsBusy(pte)) {
    entry.wait(pte, std::memory_order_acquire);
    pte = entry.load(std::memory_order_acquire);
  }
  return pte;
}

absl::Status Vm::AllocatePages(PageTable& table, PageIndex first, uint64_t count,
                               bool from_reserve) {
  // Create every entry first, so that nothing can fail after the charge.
  uint64_t absent = 0;
  for (PageIndex index = first; index < first + count; ++index) {
    absl::StatusOr<Entry*> entry = table.FindOrCreate(index);
    if (!entry.ok()) return entry.status();
    if ((*entry)->load(std::memory_order_acquire) == Pte::kNone) ++absent;
  }
  if (absent == 0) return absl::OkStatus();
  const uint64_t frames = absent * table.frames_per_page();
  absl::Status charged =
      from_reserve ? accounting_->ChargeFromReserve(frames) : accounting_->Charge(frames);
  if (!charged.ok()) return charged;
  uint64_t installed = 0;
  for (PageIndex index = first; index < first + count; ++index) {
    Entry* entry = table.Find(index);
    uint64_t expected = Pte::kNone;
    installed += entry->compare_exchange_strong(expected, Pte::Make(Pte::kZero),
                                                std::memory_order_release);
  }
  // A racing allocation of the same pages installed some of them: its charge
  // covers those.
  if (installed < absent) accounting_->Uncharge((absent - installed) * table.frames_per_page());
  return absl::OkStatus();
}

void Vm::FreePages(PageTable& table, PageIndex first, uint64_t count) {
  uint64_t freed_pages = 0;
  table.ForEachPopulated(first, first + count, [&](PageIndex, Entry& entry) {
    for (;;) {
      uint64_t pte = WaitNotBusy(entry);
      if (pte == Pte::kNone) return;
      if (!entry.compare_exchange_weak(pte, pte | Pte::kBusy, std::memory_order_acq_rel)) continue;
      ReleasePage(table, pte, Pte::KindOf(pte) == Pte::kResident
                                  ? static_cast<FrameNumber>(Pte::Payload(pte))
                                  : kNoFrame);
      entry.store(Pte::kNone, std::memory_order_release);
      entry.notify_all();
      ++freed_pages;
      return;
    }
  });
  if (freed_pages > 0) {
    accounting_->Uncharge(freed_pages * table.frames_per_page());
    if (frame_waiters_.load(std::memory_order_relaxed) != 0) NotifyFrameWaiters();
  }
}

void Vm::ReleasePage(PageTable& table, uint64_t pte, FrameNumber frame) {
  const uint64_t slots = table.frames_per_page();
  switch (Pte::KindOf(pte)) {
    case Pte::kResident: {
      pager_->Remove(frame);
      uint64_t slot = frames_->desc(frame).swap_slot;
      if (slot != kNoSlot) swap_->FreeSlots(slot, slots);
      frames_->Free(frame, table.page_order());
      break;
    }
    case Pte::kSwapped:
      swap_->FreeSlots(Pte::Payload(pte), slots);
      break;
    case Pte::kZero:
    case Pte::kNone:
      break;
  }
}

absl::StatusOr<FrameNumber> Vm::WireSlow(PageTable& table, PageIndex index, Access access) {
  for (;;) {
    Entry* entry = table.Find(index);
    if (entry == nullptr) {
      return absl::NotFoundError(absl::StrFormat("page %d is not allocated", index));
    }
    uint64_t pte = entry->load(std::memory_order_acquire);
    if (Pte::IsBusy(pte)) {
      WaitNotBusy(*entry);
      continue;
    }
    switch (Pte::KindOf(pte)) {
      case Pte::kNone:
        return absl::NotFoundError(absl::StrFormat("page %d is not allocated", index));
      case Pte::kResident: {
        FrameNumber frame = static_cast<FrameNumber>(Pte::Payload(pte));
        if (TryWireResident(*entry, frame, access)) return frame;
        continue;
      }
      case Pte::kZero:
      case Pte::kSwapped:
        if (!entry->compare_exchange_strong(pte, pte | Pte::kBusy, std::memory_order_acq_rel)) {
          continue;
        }
        return FaultIn(table, index, *entry, pte, access);
    }
  }
}

absl::StatusOr<FrameNumber> Vm::FaultIn(PageTable& table, PageIndex index, Entry& entry,
                                        uint64_t pte, Access access) {
  Stats::Bump(stats_.faults);
  auto give_up = [&](absl::Status status) {
    entry.store(pte, std::memory_order_release);
    entry.notify_all();
    return status;
  };
  if (absl::Status capped = WaitForWiredCap(); !capped.ok()) return give_up(capped);
  const int order = table.page_order();
  const uint64_t frames_per_page = table.frames_per_page();
  absl::StatusOr<FrameNumber> allocated = AllocFrames(order);
  if (!allocated.ok()) return give_up(allocated.status());
  const FrameNumber frame = *allocated;
  char* const base = frames_->Address(frame);

  uint64_t kept_slot = kNoSlot;
  bool dirty = IsWrite(access);
  if (Pte::KindOf(pte) == Pte::kSwapped && access == Access::kOverwrite) {
    // Every byte is about to be written: the copy in swap is not read. Its slot stays
    // the page's, to be rewritten or freed when the (dirty) page is next paged out,
    // as for a page read in and then written (pager.h, invariant 3).
    kept_slot = Pte::Payload(pte);
  } else if (Pte::KindOf(pte) == Pte::kSwapped) {
    kept_slot = Pte::Payload(pte);
    void* pages[1 << kMaxOrder];
    for (uint64_t i = 0; i < frames_per_page; ++i) pages[i] = base + i * kPageSize;
    absl::Status read = swap_->Read(kept_slot, pages, static_cast<int>(frames_per_page));
    if (!read.ok()) {
      frames_->Free(frame, order);
      if (absl::IsDataLoss(read)) Stats::Bump(stats_.checksum_failures);
      return give_up(read);
    }
    Stats::Bump(stats_.pageins, frames_per_page);
    Stats::Bump(stats_.pagein_ios);
  } else {
    if (access != Access::kOverwrite) memset(base, 0, frames_per_page * kPageSize);
    Stats::Bump(stats_.zero_fills);
  }

  FrameDesc& head = frames_->desc(frame);
  head.owner = &table;
  head.index = index;
  head.entry = &entry;
  head.swap_slot = kept_slot;
  head.order = static_cast<uint8_t>(order);
  head.state.store(FrameState::kPage, std::memory_order_relaxed);
  for (uint64_t i = 1; i < frames_per_page; ++i) {
    frames_->desc(frame + i).state.store(FrameState::kPageTail, std::memory_order_relaxed);
  }
  // Wired before it is published, so no eviction can take it from under us.
  if (head.wire_count.fetch_add(1, std::memory_order_seq_cst) == 0) wired_count_.Add(1);
  pager_->Activate(frame);
  entry.store(Pte::Make(Pte::kResident, frame) | Pte::kReferenced | (dirty ? Pte::kDirty : 0),
              std::memory_order_release);
  entry.notify_all();
  return frame;
}

int Vm::WireSwappedRun(PageTable& table, PageIndex first, int count, FrameNumber* frames) {
  assert(table.page_order() == 0 && count <= kMaxReadAround);
  if (swap_ == nullptr) return 0;
  count = std::min(count, kMaxReadAround);
  Entry* entries[kMaxReadAround];
  uint64_t ptes[kMaxReadAround];
  uint64_t first_slot = 0;
  int taken = 0;
  // Busy page by page, as WireSlow takes one; the run ends where the slots stop
  // following each other.
  for (; taken < count; ++taken) {
    Entry* entry = table.Find(first + taken);
    if (entry == nullptr) break;
    uint64_t pte = entry->load(std::memory_order_acquire);
    if (Pte::IsBusy(pte) || Pte::KindOf(pte) != Pte::kSwapped) break;
    if (taken > 0 && Pte::Payload(pte) != first_slot + taken) break;
    if (!entry->compare_exchange_strong(pte, pte | Pte::kBusy, std::memory_order_acq_rel)) break;
    if (taken == 0) first_slot = Pte::Payload(pte);
    entries[taken] = entry;
    ptes[taken] = pte;
  }
  auto give_back = [&](int from) {
    for (int i = from; i < taken; ++i) {
      entries[i]->store(ptes[i], std::memory_order_release);
      entries[i]->notify_all();
    }
  };
  int framed = 0;
  if (taken >= 2 && WaitForWiredCap().ok()) {
    for (; framed < taken; ++framed) {
      // The first page is wanted now and may reclaim or wait as any fault does; the
      // pages after it are a guess, which takes only frames that are free, so that no
      // one waits on their busy bits for a write-out or a frame.
      std::optional<FrameNumber> frame;
      if (framed > 0) {
        frame = TakeFreeFrames(0);
      } else if (absl::StatusOr<FrameNumber> wanted = AllocFrames(0); wanted.ok()) {
        frame = *wanted;
      }
      if (!frame.has_value()) break;
      frames[framed] = *frame;
    }
  }
  give_back(framed);
  taken = framed;
  void* pages[kMaxReadAround];
  for (int i = 0; i < taken; ++i) pages[i] = frames_->Address(frames[i]);
  const bool read =
      taken >= 2 && swap_->Read(first_slot, pages, taken, /*count_failures=*/false).ok();
  if (!read) {
    for (int i = 0; i < taken; ++i) frames_->Free(frames[i], 0);
    give_back(0);
    return taken >= 2 ? -1 : 0;
  }
  Stats::Bump(stats_.faults, static_cast<uint64_t>(taken));
  Stats::Bump(stats_.pageins, static_cast<uint64_t>(taken));
  Stats::Bump(stats_.pagein_ios);
  for (int i = 0; i < taken; ++i) {
    // As FaultIn installs a page read back: clean, its slot kept, wired, then published.
    FrameDesc& desc = frames_->desc(frames[i]);
    desc.owner = &table;
    desc.index = first + static_cast<PageIndex>(i);
    desc.entry = entries[i];
    desc.swap_slot = first_slot + static_cast<uint64_t>(i);
    desc.order = 0;
    desc.state.store(FrameState::kPage, std::memory_order_relaxed);
    if (desc.wire_count.fetch_add(1, std::memory_order_seq_cst) == 0) wired_count_.Add(1);
  }
  pager_->ActivateRun(absl::MakeConstSpan(frames, static_cast<size_t>(taken)));
  for (int i = 0; i < taken; ++i) {
    entries[i]->store(Pte::Make(Pte::kResident, frames[i]) | Pte::kReferenced,
                      std::memory_order_release);
    entries[i]->notify_all();
  }
  return taken;
}

absl::Status Vm::WaitForWiredCap() {
  // Wired frames are resident: while fewer frames than the cap hold pages, the cap
  // cannot be reached, and the per-thread counts need not be summed.
  if (frames_->count() - frames_->free_count() < wired_cap_) return absl::OkStatus();
  if (wired_count_.Total() < static_cast<int64_t>(wired_cap_)) return absl::OkStatus();
  Stats::Bump(stats_.pin_waits);
  const absl::Time deadline = absl::Now() + absl::Milliseconds(options_.frame_wait_ms);
  frame_waiters_.fetch_add(1, std::memory_order_seq_cst);
  absl::MutexLock lock(&frame_wait_mu_);
  bool capped = true;
  while ((capped = wired_count_.Total() >= static_cast<int64_t>(wired_cap_)) &&
         absl::Now() < deadline) {
    frame_wait_cv_.WaitWithDeadline(&frame_wait_mu_, deadline);
  }
  frame_waiters_.fetch_sub(1, std::memory_order_relaxed);
  if (!capped) return absl::OkStatus();
  return absl::ResourceExhaustedError(absl::StrFormat(
      "%d frames wired, at the cap of %d: no page could be brought in", wired_cap_, wired_cap_));
}

void Vm::NotifyFrameWaiters() {
  absl::MutexLock lock(&frame_wait_mu_);
  frame_wait_cv_.SignalAll();
}

std::optional<FrameNumber> Vm::TakeFreeFrames(int order) {
  std::optional<FrameNumber> frame = frames_->Alloc(order);
  if (!frame.has_value()) return std::nullopt;
  if (frames_->free_count() < pager_->low_water()) pager_->Refill();
  frames_->Populate(*frame);
  return frame;
}

absl::StatusOr<FrameNumber> Vm::AllocFrames(int order) {
  const uint64_t run = uint64_t{1} << order;
  absl::Time deadline = absl::InfinitePast();
  for (;;) {
    if (std::optional<FrameNumber> frame = TakeFreeFrames(order)) return *frame;
    if (order > 0 && frames_->free_count() >= run) {
      if (std::optional<FrameNumber> frame = MigrateForRun(order)) return *frame;
    }
    if (pager_->Reclaim(std::max(run, pager_->low_water())) > 0) continue;
    // Nothing could be evicted: every resident page is wired or busy. Wait for an
    // unpin or a free, bounded (invariant 4).
    const absl::Time now = absl::Now();
    if (deadline == absl::InfinitePast()) {
      deadline = now + absl::Milliseconds(options_.frame_wait_ms);
      Stats::Bump(stats_.pin_waits);
    } else if (now >= deadline) {
      return absl::ResourceExhaustedError(absl::StrFormat(
          "no frame for a page of %d KiB: every resident page is pinned", run * kPageSize / 1024));
    }
    frame_waiters_.fetch_add(1, std::memory_order_seq_cst);
    {
      absl::MutexLock lock(&frame_wait_mu_);
      // The wake-up may have come before we waited: a short bounded wait, then the
      // loop looks again.
      frame_wait_cv_.WaitWithTimeout(&frame_wait_mu_, absl::Milliseconds(10));
    }
    frame_waiters_.fetch_sub(1, std::memory_order_relaxed);
  }
}

}  // namespace ptmpfs::vm
