#include "vm/swap_slots.h"

#include <algorithm>
#include <bit>
#include <cassert>

#include "absl/strings/str_format.h"

namespace ptmpfs::vm {

SwapSlots::SwapSlots(uint64_t capacity)
    : capacity_(capacity),
      bits_(new uint64_t[(capacity + 63) / 64]()),
      freed_groups_(new uint64_t[((capacity + 63) / 64 + 63) / 64]()) {}

void SwapSlots::Grow(uint64_t limit) {
  absl::MutexLock lock(&mu_);
  assert(limit <= capacity_ && limit >= limit_.load(std::memory_order_relaxed));
  limit_.store(limit, std::memory_order_relaxed);
}

bool SwapSlots::IsAllocated(uint64_t slot) const {
  absl::MutexLock lock(&mu_);
  return (bits_[slot / 64] >> (slot % 64)) & 1;
}

namespace {

// The bits of [first, first + count) that lie in the word holding `first`, and how
// many there are.
uint64_t WordMask(uint64_t first, uint64_t count, uint64_t* bits_in_word) {
  const uint64_t bit = first % 64;
  const uint64_t n = std::min<uint64_t>(64 - bit, count);
  *bits_in_word = n;
  return (n == 64 ? ~uint64_t{0} : (uint64_t{1} << n) - 1) << bit;
}

}  // namespace

bool SwapSlots::RunIsFree(uint64_t first, uint64_t count) const {
  for (uint64_t slot = first, n = 0; slot < first + count; slot += n) {
    if ((bits_[slot / 64] & WordMask(slot, first + count - slot, &n)) != 0) return false;
  }
  return true;
}

void SwapSlots::SetRun(uint64_t first, uint64_t count, bool value) {
  for (uint64_t slot = first, n = 0; slot < first + count; slot += n) {
    const uint64_t word = slot / 64;
    const uint64_t mask = WordMask(slot, first + count - slot, &n);
    assert((bits_[word] & mask) == (value ? 0 : mask));
    const uint64_t group_bit = uint64_t{1} << (word % 64);
    if (value) {
      bits_[word] |= mask;
      if ((freed_groups_[word / 64] & group_bit) != 0) {  // invariant 3
        freed_groups_[word / 64] &= ~group_bit;
        freed_group_count_.store(freed_group_count_.load(std::memory_order_relaxed) - 1,
                                 std::memory_order_relaxed);
      }
    } else {
      bits_[word] &= ~mask;
      if (bits_[word] == 0 && (freed_groups_[word / 64] & group_bit) == 0) {
        freed_groups_[word / 64] |= group_bit;
        freed_group_count_.store(freed_group_count_.load(std::memory_order_relaxed) + 1,
                                 std::memory_order_relaxed);
      }
    }
  }
}

uint64_t SwapSlots::FindRun(uint64_t count, uint64_t align, uint64_t limit) const {
  const uint64_t start = ((cursor_ < limit ? cursor_ : 0) + align - 1) & ~(align - 1);
  bool wrapped = false;
  for (uint64_t slot = start;;) {
    if (slot + count > limit) {
      if (wrapped) return limit;
      wrapped = true;
      slot = 0;
    }
    if (wrapped && slot >= start) return limit;
    // Whole words of ones are skipped at once (align divides 64, so this keeps it).
    if (slot % 64 == 0 && bits_[slot / 64] == ~uint64_t{0}) {
      slot += 64;
      continue;
    }
    if (RunIsFree(slot, count)) return slot;
    slot += align;
  }
}

size_t SwapSlots::TakeFreedGroups(uint64_t* groups, size_t max_groups) {
  if (freed_group_count_.load(std::memory_order_relaxed) == 0) return 0;
  absl::MutexLock lock(&mu_);
  size_t taken = 0;
  const uint64_t words = ((capacity_ + 63) / 64 + 63) / 64;
  for (uint64_t word = 0; word < words && taken < max_groups; ++word) {
    while (freed_groups_[word] != 0 && taken < max_groups) {
      const int bit = std::countr_zero(freed_groups_[word]);
      freed_groups_[word] &= freed_groups_[word] - 1;
      groups[taken++] = word * 64 + bit;
    }
  }
  freed_group_count_.store(freed_group_count_.load(std::memory_order_relaxed) - taken,
                           std::memory_order_relaxed);
  return taken;
}

absl::StatusOr<uint64_t> SwapSlots::Alloc(uint64_t count) {
  absl::MutexLock lock(&mu_);
  const uint64_t limit = limit_.load(std::memory_order_relaxed);
  const uint64_t used = used_.load(std::memory_order_relaxed);
  if (count == 0 || used + count > limit) {
    return absl::ResourceExhaustedError(
        absl::StrFormat("swap full: %d of %d slots in use, %d asked", used, limit, count));
  }
  // Aligned first (see the header), then anywhere.
  const uint64_t align = std::min<uint64_t>(std::bit_ceil(count), 64);
  uint64_t slot = FindRun(count, align, limit);
  if (slot == limit && align > 1) slot = FindRun(count, 1, limit);
  if (slot != limit) {
    SetRun(slot, count, true);
    used_.store(used + count, std::memory_order_relaxed);
    cursor_ = slot + count;
    return slot;
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
