#include "vm/page_table.h"

#include <cassert>
#include <new>

namespace ptmpfs::vm {

PageTable::~PageTable() {
  uintptr_t root = root_.load(std::memory_order_relaxed);
  int height = static_cast<int>(root & kHeightMask);
  if (height > 0) FreeSubtree(reinterpret_cast<Node*>(root & ~kHeightMask), height - 1);
}

void PageTable::FreeSubtree(Node* node, int level) {
  if (level > 0) {
    for (Entry& slot : node->slot) {
      uint64_t child = slot.load(std::memory_order_relaxed);
      if (child != 0) FreeSubtree(reinterpret_cast<Node*>(child), level - 1);
    }
  }
  delete node;
}

absl::StatusOr<Entry*> PageTable::FindOrCreate(PageIndex index) {
  if (Entry* entry = Find(index)) return entry;
  absl::MutexLock lock(&grow_mu_);
  uintptr_t root = root_.load(std::memory_order_relaxed);
  int height = static_cast<int>(root & kHeightMask);
  Node* top = reinterpret_cast<Node*>(root & ~kHeightMask);
  if (height == 0) {
    // An empty tree starts at the height `index` needs, not with a chain of roots.
    height = 1;
    while ((index >> (kBitsPerLevel * height)) != 0) ++height;
    top = new (std::nothrow) Node{};
    if (top == nullptr) return absl::ResourceExhaustedError("page table: out of memory");
    node_count_.fetch_add(1, std::memory_order_relaxed);
    root_.store(reinterpret_cast<uintptr_t>(top) | height, std::memory_order_release);
  }
  // Grow the tree upward until `index` fits: the old root becomes child 0 of a new
  // root, so existing entries keep their addresses (invariant 1).
  while ((index >> (kBitsPerLevel * height)) != 0) {
    Node* grown = new (std::nothrow) Node{};
    if (grown == nullptr) return absl::ResourceExhaustedError("page table: out of memory");
    node_count_.fetch_add(1, std::memory_order_relaxed);
    grown->slot[0].store(reinterpret_cast<uint64_t>(top), std::memory_order_relaxed);
    top = grown;
    ++height;
    assert(height <= kMaxHeight);
    root_.store(reinterpret_cast<uintptr_t>(top) | height, std::memory_order_release);
  }
  Node* node = top;
  for (int level = height - 1; level > 0; --level) {
    Entry& slot = node->slot[(index >> (kBitsPerLevel * level)) & (kFanout - 1)];
    uint64_t child = slot.load(std::memory_order_relaxed);
    if (child == 0) {
      Node* fresh = new (std::nothrow) Node{};
      if (fresh == nullptr) return absl::ResourceExhaustedError("page table: out of memory");
      node_count_.fetch_add(1, std::memory_order_relaxed);
      child = reinterpret_cast<uint64_t>(fresh);
      slot.store(child, std::memory_order_release);
    }
    node = reinterpret_cast<Node*>(child);
  }
  return &node->slot[index & (kFanout - 1)];
}

PageIndex PageTable::NextPopulated(PageIndex from, PageIndex end) const {
  for (; from < end && from < kDirectEntries; ++from) {
    if (direct_[from].load(std::memory_order_acquire) != 0) return from;
  }
  if (from >= end) return end;
  uintptr_t root = root_.load(std::memory_order_acquire);
  int height = static_cast<int>(root & kHeightMask);
  if (height == 0) return end;
  if ((from >> (kBitsPerLevel * height)) != 0) return end;
  return NextPopulatedIn(reinterpret_cast<Node*>(root & ~kHeightMask), height - 1, 0, from, end);
}

PageIndex PageTable::NextPopulatedIn(const Node* node, int level, PageIndex node_base,
                                     PageIndex from, PageIndex end) const {
  const int shift = kBitsPerLevel * level;
  const PageIndex span = PageIndex{1} << shift;
  int first = from > node_base ? static_cast<int>((from - node_base) >> shift) : 0;
  for (int i = first; i < kFanout; ++i) {
    PageIndex base = node_base + static_cast<PageIndex>(i) * span;
    if (base >= end) return end;
    uint64_t word = node->slot[i].load(std::memory_order_acquire);
    if (word == 0) continue;
    if (level == 0) {
      if (base >= from && base >= kDirectEntries) return base;
      continue;
    }
    PageIndex found = NextPopulatedIn(reinterpret_cast<const Node*>(word), level - 1, base,
                                      from > base ? from : base, end);
    if (found < end) return found;
  }
  return end;
}

void PageTable::ForEachPopulated(PageIndex from, PageIndex end,
                                 absl::FunctionRef<void(PageIndex, Entry&)> visit) const {
  for (PageIndex index = NextPopulated(from, end); index < end;
       index = NextPopulated(index + 1, end)) {
    Entry* entry = Find(index);
    if (entry != nullptr && entry->load(std::memory_order_acquire) != 0) visit(index, *entry);
  }
}

}  // namespace ptmpfs::vm
