#include "vm/anon_object.h"

#include <algorithm>
#include <cassert>
#include <cstring>

#include "absl/strings/str_format.h"
#include "vm/ubc_window.h"

namespace ptmpfs::vm {

namespace {

constexpr uint64_t kPageMask = kPageSize - 1;

PageIndex PageOf(uint64_t offset) { return offset >> kPageShift; }
// The first page at or after `offset`; no overflow for any uint64_t.
PageIndex PageCeil(uint64_t offset) {
  return (offset >> kPageShift) + ((offset & kPageMask) != 0 ? 1 : 0);
}

// Generations are never reused (anon_object.h, invariant 4); 2^64 draws will not
// happen in the life of a process.
std::atomic<uint64_t> next_generation{1};
uint64_t NewGeneration() { return next_generation.fetch_add(1, std::memory_order_relaxed); }

absl::Status CheckRange(uint64_t offset, uint64_t length) {
  if (offset > AnonObject::kMaxBytes || length > AnonObject::kMaxBytes - offset) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "range of %d bytes at %d ends past the largest file (2^63 bytes)", length, offset));
  }
  return absl::OkStatus();
}

}  // namespace

AnonObject::AnonObject(Vm& vm, WindowCache* window_cache)
    : vm_(vm), window_cache_(window_cache), table_(0), generation_(NewGeneration()) {}

AnonObject::~AnonObject() { vm_.FreePages(table_, 0, kMaxPages); }

absl::Status AnonObject::Allocate(uint64_t offset, uint64_t length) {
  if (absl::Status valid = CheckRange(offset, length); !valid.ok()) return valid;
  if (length == 0) return absl::OkStatus();
  const PageIndex first = PageOf(offset);
  const PageIndex end = PageCeil(offset + length);
  return AllocateRange(first, end, (end - first) - CountPopulated(first, end));
}

absl::Status AnonObject::AllocateRange(PageIndex first, PageIndex end, uint64_t holes) {
  assert(first <= end && end <= kMaxPages);
  if (holes == 0) return absl::OkStatus();
  // Vm::AllocatePages creates every entry before it charges. Refuse at once what
  // cannot fit, so that a huge fallocate that fails grows no radix node.
  const Accounting& accounting = vm_.accounting();
  const uint64_t limit = accounting.capacity() - accounting.reserve();
  const uint64_t charged = accounting.charged();
  if (charged >= limit || holes > limit - charged) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "no space: %d pages charged, %d more asked, capacity %d", charged, holes, limit));
  }
  if (absl::Status allocated = vm_.AllocatePages(table_, first, end - first); !allocated.ok()) {
    return allocated;
  }
  allocated_pages_.fetch_add(holes, std::memory_order_relaxed);
  return absl::OkStatus();
}

void AnonObject::FreeRange(PageIndex first, PageIndex end) {
  assert(first <= end && end <= kMaxPages);
  const uint64_t populated = CountPopulated(first, end);
  if (populated == 0) return;
  vm_.FreePages(table_, first, end - first);
  allocated_pages_.fetch_sub(populated, std::memory_order_relaxed);
  generation_.store(NewGeneration(), std::memory_order_relaxed);
}

uint64_t AnonObject::CountPopulated(PageIndex first, PageIndex end) const {
  uint64_t populated = 0;
  table_.ForEachPopulated(first, end, [&](PageIndex, Entry&) { ++populated; });
  return populated;
}

absl::Status AnonObject::Punch(uint64_t offset, uint64_t length) {
  if (absl::Status valid = CheckRange(offset, length); !valid.ok()) return valid;
  if (length == 0) return absl::OkStatus();
  const uint64_t end = offset + length;
  const PageIndex first_whole = PageCeil(offset);
  const PageIndex end_whole = PageOf(end);
  PartialPage parts[2];
  size_t part_count = 0;
  if (first_whole > end_whole) {
    // Inside one page, touching neither of its boundaries.
    parts[part_count++] = PartialPage{PageOf(offset), static_cast<uint32_t>(offset & kPageMask),
                                      static_cast<uint32_t>(end & kPageMask)};
  } else {
    if ((offset & kPageMask) != 0) {
      parts[part_count++] = PartialPage{PageOf(offset), static_cast<uint32_t>(offset & kPageMask),
                                        static_cast<uint32_t>(kPageSize)};
    }
    if ((end & kPageMask) != 0) {
      parts[part_count++] = PartialPage{PageOf(end), 0, static_cast<uint32_t>(end & kPageMask)};
    }
  }
  // Edges first: they are the only step that can fail (invariant 3).
  if (absl::Status zeroed = ZeroPartialPages(absl::MakeConstSpan(parts, part_count));
      !zeroed.ok()) {
    return zeroed;
  }
  if (first_whole < end_whole) FreeRange(first_whole, end_whole);
  return absl::OkStatus();
}

absl::Status AnonObject::Truncate(uint64_t new_size) {
  if (absl::Status valid = CheckRange(new_size, 0); !valid.ok()) return valid;
  if ((new_size & kPageMask) != 0) {
    const PartialPage tail{PageOf(new_size), static_cast<uint32_t>(new_size & kPageMask),
                           static_cast<uint32_t>(kPageSize)};
    if (absl::Status zeroed = ZeroPartialPages(absl::MakeConstSpan(&tail, 1)); !zeroed.ok()) {
      return zeroed;
    }
  }
  FreeRange(PageCeil(new_size), kMaxPages);
  return absl::OkStatus();
}

absl::Status AnonObject::ZeroPartialPages(absl::Span<const PartialPage> parts) {
  assert(parts.size() <= 2);
  // Every window first: a page that fails to come in leaves the others unzeroed
  // (their windows release clean on return).
  UbcWindow windows[2];
  for (size_t i = 0; i < parts.size(); ++i) {
    assert(parts[i].from < parts[i].to && parts[i].to <= kPageSize);
    const Entry* entry = table_.Find(parts[i].page);
    const uint64_t pte = entry != nullptr ? entry->load(std::memory_order_acquire) : Pte::kNone;
    // A hole and an untouched zero-fill page already read as zeros: nothing to fault.
    if (Pte::KindOf(pte) == Pte::kNone) continue;
    if (Pte::KindOf(pte) == Pte::kZero && !Pte::IsBusy(pte)) continue;
    absl::StatusOr<UbcWindow> window =
        UbcWindow::Map(*this, (parts[i].page << kPageShift) + parts[i].from,
                       parts[i].to - parts[i].from, Access::kWrite);
    if (!window.ok()) return window.status();
    windows[i] = *std::move(window);
  }
  for (UbcWindow& window : windows) {
    if (!window.mapped()) continue;
    for (const iovec& piece : window.iovecs()) memset(piece.iov_base, 0, piece.iov_len);
    window.Release(/*dirty=*/true);
  }
  return absl::OkStatus();
}

uint64_t AnonObject::NextData(uint64_t from, uint64_t end) const {
  if (from >= end) return end;
  const PageIndex end_page = PageCeil(end);
  const PageIndex data = table_.NextPopulated(PageOf(from), end_page);
  if (data >= end_page) return end;
  // data < end_page, so data's first byte lies below end.
  return std::max(from, data << kPageShift);
}

uint64_t AnonObject::NextHole(uint64_t from, uint64_t end) const {
  if (from >= end) return end;
  const PageIndex end_page = PageCeil(end);
  // The first hole ends the walk, so its cost is one lookup per page of data crossed.
  for (PageIndex page = PageOf(from); page < end_page; ++page) {
    const Entry* entry = table_.Find(page);
    if (entry == nullptr || entry->load(std::memory_order_acquire) == Pte::kNone) {
      return std::min(end, std::max(from, page << kPageShift));
    }
  }
  return end;
}

uint64_t AnonObject::CopyWindowPages() const {
  return std::clamp<uint64_t>(vm_.wired_cap() / 4, 1, UbcWindow::kMaxPages - 1);
}

absl::Status AnonObject::Read(uint64_t offset, void* buffer, uint64_t length) {
  if (absl::Status valid = CheckRange(offset, length); !valid.ok()) return valid;
  char* out = static_cast<char*>(buffer);
  const uint64_t window_pages = CopyWindowPages();
  while (length > 0) {
    const uint64_t chunk =
        std::min(length, ((PageOf(offset) + window_pages) << kPageShift) - offset);
    absl::StatusOr<UbcWindow> window = UbcWindow::Map(*this, offset, chunk, Access::kRead);
    if (!window.ok()) return window.status();
    window->CopyOut(out);
    window->Release(/*dirty=*/false);
    out += chunk;
    offset += chunk;
    length -= chunk;
  }
  return absl::OkStatus();
}

absl::Status AnonObject::Write(uint64_t offset, const void* buffer, uint64_t length) {
  // Space for the whole range first (DESIGN.md, invariant 4); the windows then find
  // no hole left to allocate.
  if (absl::Status allocated = Allocate(offset, length); !allocated.ok()) return allocated;
  const char* in = static_cast<const char*>(buffer);
  const uint64_t window_pages = CopyWindowPages();
  while (length > 0) {
    const uint64_t chunk =
        std::min(length, ((PageOf(offset) + window_pages) << kPageShift) - offset);
    absl::StatusOr<UbcWindow> window = UbcWindow::Map(*this, offset, chunk, Access::kWrite);
    if (!window.ok()) return window.status();
    window->CopyIn(in);
    window->Release(/*dirty=*/true);
    in += chunk;
    offset += chunk;
    length -= chunk;
  }
  return absl::OkStatus();
}

}  // namespace ptmpfs::vm
