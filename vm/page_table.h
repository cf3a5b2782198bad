// page_table: a radix tree from page index to page-table entry (PTE).
//
// Theory. One implementation indexes both a submap of the address space (index =
// page number within the submap) and an anonymous object (index = page number within
// the file). An entry is one 64-bit word (see Pte below): nothing, zero-fill on
// demand, a resident frame, or a swap slot, with busy, referenced and dirty bits.
// A table's pages are 2^page_order frames each (a submap of 16 KiB pool pages has
// order 2); the entry of such a page names the first of its frames or slots.
//
// Indices below kDirectEntries live in the table object itself, so a small file
// costs no radix node at all; the rest live in a tree of 128-entry nodes whose
// height grows with the largest index inserted. Sparse and huge indices (2^40)
// cost nodes only along populated paths.
//
// Invariants.
//  1. An entry's address never changes while the table lives: the pager and pins
//     find the same std::atomic for an index however the tree grows. Nodes are freed
//     only by the destructor.
//  2. Changing an entry from or to kResident happens only with its busy bit held
//     (see vm.h for the page life cycle); the referenced and dirty bits may be set by
//     any pin holder with fetch_or.
//
// Locking. Find() takes no lock: nodes and the root are published with release
// stores and read with acquire loads. FindOrCreate() serialises growth on grow_mu_.
#ifndef PTMPFS_VM_PAGE_TABLE_H_
#define PTMPFS_VM_PAGE_TABLE_H_

#include <atomic>
#include <cstdint>

#include "absl/base/thread_annotations.h"
#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"

namespace ptmpfs::vm {

using PageIndex = uint64_t;
using Entry = std::atomic<uint64_t>;

// The encoding of one entry.
//   bits 0-1  kind: kNone, kZero, kResident, kSwapped
//   bit  2    busy: a fault, pageout, migration or free owns the entry; others wait
//   bit  3    referenced: set by pins, cleared by the pager (second chance)
//   bit  4    dirty: the frame differs from any swap copy (set by pins for write)
//   bits 8-63 frame number (kResident) or first swap slot (kSwapped)
struct Pte {
  enum Kind : uint64_t { kNone = 0, kZero = 1, kResident = 2, kSwapped = 3 };
  static constexpr uint64_t kKindMask = 3;
  static constexpr uint64_t kBusy = 1 << 2;
  static constexpr uint64_t kReferenced = 1 << 3;
  static constexpr uint64_t kDirty = 1 << 4;
  static constexpr int kPayloadShift = 8;

  static constexpr Kind KindOf(uint64_t pte) { return static_cast<Kind>(pte & kKindMask); }
  static constexpr uint64_t Payload(uint64_t pte) { return pte >> kPayloadShift; }
  static constexpr bool IsBusy(uint64_t pte) { return (pte & kBusy) != 0; }
  static constexpr uint64_t Make(Kind kind, uint64_t payload = 0) {
    return kind | (payload << kPayloadShift);
  }
  // A resident entry no one owns: the pin fast path may take it.
  static constexpr bool IsResidentIdle(uint64_t pte) {
    return (pte & (kKindMask | kBusy)) == kResident;
  }
};

class PageTable {
 public:
  static constexpr int kDirectEntries = 4;
  static constexpr int kBitsPerLevel = 7;
  static constexpr int kFanout = 1 << kBitsPerLevel;
  static constexpr int kMaxHeight = 9;  // 4 + 63 bits of index

  explicit PageTable(int page_order) : page_order_(page_order) {}
  ~PageTable();
  PageTable(const PageTable&) = delete;
  PageTable& operator=(const PageTable&) = delete;

  int page_order() const { return page_order_; }
  uint64_t frames_per_page() const { return uint64_t{1} << page_order_; }

  // The entry for `index`, or nullptr when no node holds it (the entry is kNone).
  // Lock-free; the fast path of every pin.
  Entry* Find(PageIndex index) const {
    if (index < kDirectEntries) return &direct_[index];
    uintptr_t root = root_.load(std::memory_order_acquire);
    int height = static_cast<int>(root & kHeightMask);
    if (height == 0 || (index >> (kBitsPerLevel * height)) != 0) return nullptr;
    Node* node = reinterpret_cast<Node*>(root & ~kHeightMask);
    for (int level = height - 1; level > 0; --level) {
      uint64_t child = node->slot[(index >> (kBitsPerLevel * level)) & (kFanout - 1)].load(
          std::memory_order_acquire);
      if (child == 0) return nullptr;
      node = reinterpret_cast<Node*>(child);
    }
    return &node->slot[index & (kFanout - 1)];
  }

  // The entry for `index`, creating the nodes on its path. ResourceExhausted only if
  // the heap is out of memory.
  absl::StatusOr<Entry*> FindOrCreate(PageIndex index);

  // The smallest index >= `from` and < `end` whose entry is not kNone, skipping
  // absent subtrees without visiting them; `end` if there is none.
  PageIndex NextPopulated(PageIndex from, PageIndex end) const;

  // Calls visit(index, entry) for every entry in [from, end) that is not kNone, in
  // index order. The entry may change meanwhile; callers coordinate via busy bits.
  void ForEachPopulated(PageIndex from, PageIndex end,
                        absl::FunctionRef<void(PageIndex, Entry&)> visit) const;

  // Heap bytes held by radix nodes (resident bookkeeping).
  uint64_t node_bytes() const { return node_count_.load(std::memory_order_relaxed) * sizeof(Node); }

 private:
  struct alignas(64) Node {
    Entry slot[kFanout];  // leaf: entries; inner: child Node* (0: absent)
  };
  static constexpr uintptr_t kHeightMask = 63;  // nodes are 64-byte aligned

  PageIndex NextPopulatedIn(const Node* node, int level, PageIndex node_base, PageIndex from,
                            PageIndex end) const;
  static void FreeSubtree(Node* node, int level);

  const int page_order_;
  mutable Entry direct_[kDirectEntries] = {};
  std::atomic<uintptr_t> root_{0};  // Node* | height; written under grow_mu_
  std::atomic<uint64_t> node_count_{0};
  absl::Mutex grow_mu_;
};

}  // namespace ptmpfs::vm

#endif  // PTMPFS_VM_PAGE_TABLE_H_
