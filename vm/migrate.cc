// Migration: making an aligned run of free frames by moving pages, not by paging
// out more (seeds 002 and 004). When enough frames are free but scattered, the
// block of 2^order frames that needs the fewest moves is chosen; its free frames
// are taken out of the allocator, and each page in it is copied to a free frame
// elsewhere. The page's entry keeps its kind and bits: only the frame behind the
// virtual address changes, so the owner never notices.
#include <cstring>

#include "vm/pager.h"
#include "vm/vm.h"

namespace ptmpfs::vm {

std::optional<FrameNumber> Vm::MigrateForRun(int order) {
  auto movable = [this](FrameNumber frame) {
    const FrameDesc& desc = frames_->desc(frame);
    return desc.queue.load(std::memory_order_relaxed) != FrameQueue::kNone &&
           desc.wire_count.load(std::memory_order_relaxed) == 0;
  };
  std::optional<FrameNumber> block = frames_->ReserveRunForMigration(order, movable);
  if (!block.has_value()) return std::nullopt;
  const FrameNumber run = FrameNumber{1} << order;
  bool complete = true;
  for (FrameNumber frame = *block; frame < *block + run; ++frame) {
    if (frames_->desc(frame).state.load(std::memory_order_relaxed) == FrameState::kReserved) {
      continue;
    }
    if (!pager_->MigrateFrame(frame)) {
      complete = false;
      break;
    }
  }
  if (!complete) {
    // Give back what was reserved or vacated; the pages still in the block stay.
    for (FrameNumber frame = *block; frame < *block + run; ++frame) {
      if (frames_->desc(frame).state.load(std::memory_order_relaxed) == FrameState::kReserved) {
        frames_->Free(frame, 0);
      }
    }
    return std::nullopt;
  }
  frames_->desc(*block).order = static_cast<uint8_t>(order);
  return block;
}

bool Pager::MigrateFrame(FrameNumber source) {
  Frames& frames = vm_.frames();
  absl::MutexLock lock(&queue_mu_);
  FrameDesc& from = frames.desc(source);
  // On a queue, the owner and index are stable (pager.h, invariant 2).
  if (from.queue.load(std::memory_order_relaxed) == FrameQueue::kNone ||
      from.state.load(std::memory_order_relaxed) != FrameState::kPage || from.order != 0) {
    return false;
  }
  Entry* entry = from.entry;
  uint64_t pte = entry->load(std::memory_order_acquire);
  if (!Pte::IsResidentIdle(pte) || Pte::Payload(pte) != source) return false;
  if (!entry->compare_exchange_strong(pte, pte | Pte::kBusy, std::memory_order_seq_cst)) {
    return false;
  }
  auto release = [&](uint64_t value) {
    entry->store(value, std::memory_order_release);
    entry->notify_all();
  };
  if (from.wire_count.load(std::memory_order_seq_cst) != 0) {
    // A pin got in first and may have set the dirty bit since the snapshot: clear
    // only the busy bit (vm.h, invariant 1).
    entry->fetch_and(~Pte::kBusy, std::memory_order_release);
    entry->notify_all();
    return false;
  }
  std::optional<FrameNumber> dest = frames.Alloc(0);
  if (!dest.has_value()) {
    release(pte);
    return false;
  }
  memcpy(frames.Address(*dest), frames.Address(source), kPageSize);
  FrameDesc& to = frames.desc(*dest);
  to.owner = from.owner;
  to.index = from.index;
  to.entry = from.entry;
  to.swap_slot = from.swap_slot;
  to.order = 0;
  to.state.store(FrameState::kPage, std::memory_order_relaxed);
  ReplaceInQueue(source, *dest);
  from.owner = nullptr;
  from.entry = nullptr;
  from.swap_slot = kNoSlot;
  from.state.store(FrameState::kReserved, std::memory_order_relaxed);
  release(Pte::Make(Pte::kResident, *dest) | (pte & (Pte::kReferenced | Pte::kDirty)));
  Stats::Bump(vm_.stats().migrations);
  return true;
}

}  // namespace ptmpfs::vm
