#include "vm/frames.h"

#include <sys/mman.h>

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_format.h"

namespace ptmpfs::vm {

absl::StatusOr<std::unique_ptr<Frames>> Frames::Create(uint64_t frame_count) {
  if (frame_count < kMinFrames) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "RAM budget of %d KiB is below the minimum of %d KiB (%d frames of 4 KiB)",
        frame_count * kPageSize / 1024, kMinFrames * kPageSize / 1024, kMinFrames));
  }
  if (frame_count >= kNoFrame) {
    return absl::InvalidArgumentError("RAM budget too large: at most 2^32 - 1 frames");
  }
  void* base = mmap(nullptr, frame_count * kPageSize, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (base == MAP_FAILED) {
    return absl::ResourceExhaustedError(
        absl::StrFormat("cannot map a RAM budget of %d frames: %s", frame_count, strerror(errno)));
  }
  madvise(base, frame_count * kPageSize, MADV_DONTDUMP);
  // No MADV_HUGEPAGE. Measured on this project's machine (a VM whose free memory goes
  // back to its host): the first touch of a huge page after the host took it back ran
  // at 0.4-0.75 GiB/s against 3 GiB/s for 4 KiB pages, so a first write into fresh
  // frames ran at 0.35 GB/s; and random page-ins were no faster with huge pages
  // (2.19 vs 2.12 GB/s). Populate() takes the memory in 2 MiB steps, ahead of use.
  return std::unique_ptr<Frames>(new Frames(static_cast<char*>(base), frame_count));
}

Frames::Frames(char* base, uint64_t count)
    : base_(base),
      count_(count),
      descs_(new FrameDesc[count]),
      populator_(std::make_unique<Populator>(base, count * kPageSize)) {
  absl::MutexLock lock(&mu_);
  for (FrameNumber& head : free_head_) head = kNoFrame;
  // Carve the region into the largest aligned runs that fit, bottom-up: the lists are
  // LIFO, so never-used frames are handed out from the top down (populator.h).
  for (uint64_t frame = 0; frame < count_;) {
    int order = kMaxOrder;
    while (order > 0 && ((frame & ((uint64_t{1} << order) - 1)) != 0 ||
                         frame + (uint64_t{1} << order) > count_)) {
      --order;
    }
    FreeLocked(static_cast<FrameNumber>(frame), order);
    frame += uint64_t{1} << order;
  }
}

Frames::~Frames() {
  populator_.reset();
  munmap(base_, count_ * kPageSize);
}

void Frames::PushFree(FrameNumber head, int order) {
  FrameDesc& desc = descs_[head];
  desc.state.store(FrameState::kFree, std::memory_order_relaxed);
  desc.order = static_cast<uint8_t>(order);
  desc.prev = kNoFrame;
  desc.next = free_head_[order];
  if (desc.next != kNoFrame) descs_[desc.next].prev = head;
  free_head_[order] = head;
}

void Frames::UnlinkFree(FrameNumber head, int order) {
  FrameDesc& desc = descs_[head];
  assert(desc.state.load(std::memory_order_relaxed) == FrameState::kFree && desc.order == order);
  if (desc.prev != kNoFrame) {
    descs_[desc.prev].next = desc.next;
  } else {
    free_head_[order] = desc.next;
  }
  if (desc.next != kNoFrame) descs_[desc.next].prev = desc.prev;
  desc.prev = desc.next = kNoFrame;
}

std::optional<FrameNumber> Frames::Alloc(int order) {
  assert(order >= 0 && order <= kMaxOrder);
  absl::MutexLock lock(&mu_);
  return AllocLocked(order);
}

std::optional<FrameNumber> Frames::AllocLocked(int order) {
  int found = order;
  while (found <= kMaxOrder && free_head_[found] == kNoFrame) ++found;
  if (found > kMaxOrder) return std::nullopt;
  FrameNumber head = free_head_[found];
  UnlinkFree(head, found);
  // Split: the upper halves go back on the lower lists.
  while (found > order) {
    --found;
    FrameNumber upper = head + (FrameNumber{1} << found);
    for (FrameNumber f = upper + 1; f < upper + (FrameNumber{1} << found); ++f) {
      descs_[f].state.store(FrameState::kFreeTail, std::memory_order_relaxed);
    }
    PushFree(upper, found);
  }
  for (FrameNumber f = head; f < head + (FrameNumber{1} << order); ++f) {
    descs_[f].state.store(FrameState::kReserved, std::memory_order_relaxed);
    descs_[f].order = 0;
  }
  descs_[head].order = static_cast<uint8_t>(order);
  free_count_.store(free_count_.load(std::memory_order_relaxed) - (uint64_t{1} << order),
                    std::memory_order_relaxed);
  return head;
}

void Frames::Free(FrameNumber first, int order) {
  absl::MutexLock lock(&mu_);
  FreeLocked(first, order);
}

void Frames::Free(absl::Span<const FrameNumber> firsts, int order) {
  absl::MutexLock lock(&mu_);
  for (FrameNumber first : firsts) FreeLocked(first, order);
}

void Frames::FreeLocked(FrameNumber first, int order) {
  assert((first & ((FrameNumber{1} << order) - 1)) == 0);
  free_count_.store(free_count_.load(std::memory_order_relaxed) + (uint64_t{1} << order),
                    std::memory_order_relaxed);
  for (FrameNumber f = first; f < first + (FrameNumber{1} << order); ++f) {
    FrameDesc& desc = descs_[f];
    desc.state.store(FrameState::kFreeTail, std::memory_order_relaxed);
    desc.owner = nullptr;
    desc.entry = nullptr;
    desc.swap_slot = kNoSlot;
    desc.order = 0;
  }
  // Coalesce with the buddy while it is a free run of the same order.
  while (order < kMaxOrder) {
    FrameNumber buddy = first ^ (FrameNumber{1} << order);
    if (uint64_t{buddy} + (uint64_t{1} << order) > count_) break;
    const FrameDesc& other = descs_[buddy];
    if (other.state.load(std::memory_order_relaxed) != FrameState::kFree || other.order != order) {
      break;
    }
    UnlinkFree(buddy, order);
    descs_[buddy].state.store(FrameState::kFreeTail, std::memory_order_relaxed);
    first = first < buddy ? first : buddy;
    ++order;
  }
  PushFree(first, order);
}

FrameNumber Frames::FreeRunHead(FrameNumber frame) const {
  for (int order = 0; order <= kMaxOrder; ++order) {
    FrameNumber head = frame & ~((FrameNumber{1} << order) - 1);
    const FrameDesc& desc = descs_[head];
    if (desc.state.load(std::memory_order_relaxed) == FrameState::kFree &&
        head + (FrameNumber{1} << desc.order) > frame) {
      return head;
    }
  }
  assert(false && "frame is not inside a free run");
  return kNoFrame;
}

std::optional<FrameNumber> Frames::ReserveRunForMigration(
    int order, absl::FunctionRef<bool(FrameNumber)> movable) {
  absl::MutexLock lock(&mu_);
  if (auto run = AllocLocked(order)) return run;
  // No free run of this order or larger exists, so every free run inside an aligned
  // block of this order is smaller than the block and wholly inside it (buddies are
  // aligned). Pick the block that needs the fewest moves.
  const FrameNumber run_frames = FrameNumber{1} << order;
  FrameNumber best = kNoFrame;
  uint32_t best_moves = run_frames;
  for (FrameNumber block = 0; uint64_t{block} + run_frames <= count_; block += run_frames) {
    uint32_t moves = 0;
    bool usable = true;
    for (FrameNumber f = block; f < block + run_frames && usable; ++f) {
      FrameState state = descs_[f].state.load(std::memory_order_relaxed);
      if (state == FrameState::kFree || state == FrameState::kFreeTail) continue;
      usable = state == FrameState::kPage && descs_[f].order == 0 && movable(f);
      ++moves;
    }
    if (usable && moves < best_moves) {
      best = block;
      best_moves = moves;
    }
  }
  if (best == kNoFrame) return std::nullopt;
  for (FrameNumber f = best; f < best + run_frames;) {
    FrameState state = descs_[f].state.load(std::memory_order_relaxed);
    if (state != FrameState::kFree && state != FrameState::kFreeTail) {
      ++f;
      continue;
    }
    FrameNumber head = FreeRunHead(f);
    int run_order = descs_[head].order;
    UnlinkFree(head, run_order);
    for (FrameNumber g = head; g < head + (FrameNumber{1} << run_order); ++g) {
      descs_[g].state.store(FrameState::kReserved, std::memory_order_relaxed);
      descs_[g].order = 0;
    }
    free_count_.store(free_count_.load(std::memory_order_relaxed) - (uint64_t{1} << run_order),
                      std::memory_order_relaxed);
    f = head + (FrameNumber{1} << run_order);
  }
  return best;
}

absl::Status Frames::CheckConsistency() const {
  absl::MutexLock lock(&mu_);
  uint64_t listed = 0;
  for (int order = 0; order <= kMaxOrder; ++order) {
    FrameNumber prev = kNoFrame;
    for (FrameNumber head = free_head_[order]; head != kNoFrame; head = descs_[head].next) {
      const FrameDesc& desc = descs_[head];
      if (desc.state.load(std::memory_order_relaxed) != FrameState::kFree || desc.order != order ||
          desc.prev != prev || (head & ((FrameNumber{1} << order) - 1)) != 0) {
        return absl::InternalError(absl::StrFormat("free list %d corrupt at frame %d", order, head));
      }
      for (FrameNumber f = head + 1; f < head + (FrameNumber{1} << order); ++f) {
        if (descs_[f].state.load(std::memory_order_relaxed) != FrameState::kFreeTail) {
          return absl::InternalError(absl::StrFormat("frame %d inside free run is not free", f));
        }
      }
      listed += uint64_t{1} << order;
      prev = head;
    }
  }
  if (listed != free_count_.load(std::memory_order_relaxed)) {
    return absl::InternalError(absl::StrFormat("free lists hold %d frames, count says %d", listed,
                                               free_count_.load(std::memory_order_relaxed)));
  }
  return absl::OkStatus();
}

}  // namespace ptmpfs::vm
