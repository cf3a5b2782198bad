#include "vm/swap_slots.h"

#include <bit>
#include <cassert>

#include "absl/strings/str_format.h"

namespace ptmpfs::vm {

SwapSlots::SwapSlots(uint64_t capacity)
    : capacity_(capacity), bits_(new uint64_t[(capacity + 63) / 64]()) {}

void SwapSlots::Grow(uint64_t limit) {
  absl::MutexLock lock(&mu_);
  assert(limit <= capacity_ && limit >= limit_.load(std::memory_order_relaxed));
  limit_.store(limit, std::memory_order_relaxed);
}

bool SwapSlots::IsAllocated(uint64_t slot) const {
  absl::MutexLock lock(&mu_);
  return (bits_[slot / 64] >> (slot % 64)) & 1;
}

bool SwapSlots::RunIsFree(uint64_t first, uint64_t count) const {
  for (uint64_t slot = first; slot < first + count; ++slot) {
    if ((bits_[slot / 64] >> (slot % 64)) & 1) return false;
  }
  return true;
}

void SwapSlots::SetRun(uint64_t first, uint64_t count, bool value) {
  for (uint64_t slot = first; slot < first + count; ++slot) {
    const uint64_t bit = uint64_t{1} << (slot % 64);
    assert(((bits_[slot / 64] & bit) != 0) != value);
    if (value) {
      bits_[slot / 64] |= bit;
    } else {
      bits_[slot / 64] &= ~bit;
    }
  }
}

absl::StatusOr<uint64_t> SwapSlots::Alloc(uint64_t count) {
  absl::MutexLock lock(&mu_);
  const uint64_t limit = limit_.load(std::memory_order_relaxed);
  const uint64_t used = used_.load(std::memory_order_relaxed);
  if (count == 0 || used + count > limit) {
    return absl::ResourceExhaustedError(
        absl::StrFormat("swap full: %d of %d slots in use, %d asked", used, limit, count));
  }
  // Next fit: scan from the cursor to the limit, then from 0 to the cursor. Whole
  // words of ones are skipped at once.
  uint64_t scanned = 0;
  uint64_t slot = cursor_ < limit ? cursor_ : 0;
  while (scanned < limit + count) {
    if (slot + count > limit) {
      scanned += limit - slot;
      slot = 0;
      continue;
    }
    if (slot % 64 == 0 && bits_[slot / 64] == ~uint64_t{0}) {
      slot += 64;
      scanned += 64;
      continue;
    }
    if ((bits_[slot / 64] >> (slot % 64)) & 1) {
      ++slot;
      ++scanned;
      continue;
    }
    if (RunIsFree(slot, count)) {
      SetRun(slot, count, true);
      used_.store(used + count, std::memory_order_relaxed);
      cursor_ = slot + count;
      return slot;
    }
    ++slot;
    ++scanned;
  }
  return absl::ResourceExhaustedError(
      absl::StrFormat("swap fragmented: no run of %d free slots among %d", count, limit - used));
}

void SwapSlots::Free(uint64_t first, uint64_t count) {
  absl::MutexLock lock(&mu_);
  assert(first + count <= limit_.load(std::memory_order_relaxed));
  SetRun(first, count, false);
  used_.store(used_.load(std::memory_order_relaxed) - count, std::memory_order_relaxed);
}

}  // namespace ptmpfs::vm
