// dir_index: the B+tree of a directory's entries (theory in dir_index.h).
//
// The file reads in the order of an operation: node layout; descent and the family
// scan that every operation by name starts with; Lookup and Walk; Insert, whose slow
// path (a full leaf) plans bottom up, allocates and pins, and only then changes
// anything; Remove, which plans the same way but never allocates; Destroy; Verify.
//
// Rebalancing (a split, a share with a sibling, a merge, a borrow) always goes the
// same way: gather the entries of the nodes involved, in key order, into a buffer on
// the stack, add or drop what the operation adds or drops, and scatter them evenly
// over the nodes that remain; the parent's separators are then the first keys of
// those nodes. One mechanism for every case keeps the cases few and checkable.
#include "meta/dir_index.h"

#include <xxhash.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cassert>
#include <cstring>
#include <type_traits>
#include <utility>

#include "absl/strings/str_format.h"

namespace ptmpfs::meta {
namespace {

using vm::Access;
using NodePin = vm::Pin<char>;

// ---- Node layout -------------------------------------------------------------------

struct NodeHeader {
  uint16_t count;  // entries (leaf) or children (inner)
  uint8_t level;   // 0 for a leaf; an inner node's children are at level - 1
  uint8_t magic;   // kNodeMagic: catches an address that does not hold a node
  uint32_t bytes;  // the size the node was allocated with
};
constexpr uint32_t kHeaderBytes = sizeof(NodeHeader);
static_assert(kHeaderBytes == 8);
constexpr uint8_t kNodeMagic = 0xD7;

// A leaf entry but its cookie, which sits in the leaf's key array.
struct LeafSlot {
  Addr node;
  uint8_t name_length;  // 1..kMaxName
  uint8_t type;
  // The name if name_length <= kInlineName; else its first 8 bytes hold the address
  // of the kmem blob holding the name (unaligned: read with memcpy).
  char name[DirIndex::kInlineName];
};
static_assert(sizeof(LeafSlot) == 48 && alignof(LeafSlot) == 8, "a leaf entry is 56 bytes");

constexpr uint64_t kFamilyMask = (uint64_t{1} << DirIndex::kCollisionBits) - 1;
constexpr uint32_t kAllSlotsTaken = (uint32_t{1} << (kFamilyMask + 1)) - 1;
// The largest cookie: cookie + 1, the offset after it, must be a positive off_t.
constexpr uint64_t kMaxCookie = (uint64_t{1} << 63) - 2;
constexpr uint64_t kNoBound = UINT64_MAX;  // above every cookie

// With every node but the root at least a quarter full (18 entries, 63 children), a
// tree of height 12 would hold over 2 * 63^10 * 18 > 2^64 entries: cookies run out
// first, so no tree is taller.
constexpr uint32_t kMaxHeight = 12;

// A first root leaf has room for two entries (kmem's 128-byte class), a first inner
// root for four children (80 bytes): most directories are small.
constexpr uint32_t kFirstLeafEntries = 2;
constexpr uint32_t kFirstRootChildren = 4;

// A view of a node: keys[capacity] then payloads[capacity] after the header. The
// capacity follows from the node's size, so a root that grows changes its layout
// (and is copied element by element).
template <typename Payload>
class NodeView {
 public:
  static constexpr uint32_t kElementBytes = sizeof(uint64_t) + sizeof(Payload);
  static constexpr uint32_t Capacity(uint32_t bytes) {
    return (bytes - kHeaderBytes) / kElementBytes;
  }
  static constexpr uint32_t kMaxCapacity = Capacity(DirIndex::kNodeBytes);
  // Invariant 2: a node but the root keeps at least a quarter of its capacity.
  static constexpr uint32_t kMinCount = kMaxCapacity / 4;
  // Two siblings merge when they fit in three quarters of a node: the merged node
  // has room, so the next insert does not split it again at once.
  static constexpr uint32_t kMergeLimit = kMaxCapacity * 3 / 4;

  NodeView(char* base, uint32_t bytes) : base_(base), capacity_(Capacity(bytes)) {
    assert(reinterpret_cast<uintptr_t>(base) % alignof(uint64_t) == 0);
  }

  NodeHeader& header() const { return *reinterpret_cast<NodeHeader*>(base_); }
  uint32_t count() const { return header().count; }
  uint32_t capacity() const { return capacity_; }
  bool full() const { return count() >= capacity_; }
  uint64_t* keys() const { return reinterpret_cast<uint64_t*>(base_ + kHeaderBytes); }
  Payload* payloads() const {
    return reinterpret_cast<Payload*>(base_ + kHeaderBytes + capacity_ * sizeof(uint64_t));
  }

  // Changes go through the pointers: a view is const, the node it shows is not.
  void Init(uint32_t bytes, uint32_t level) const {
    header() = NodeHeader{0, static_cast<uint8_t>(level), kNodeMagic, bytes};
  }
  void InsertAt(uint32_t index, uint64_t key, const Payload& payload) const {
    assert(index <= count() && count() < capacity_);
    const uint32_t tail = count() - index;
    std::memmove(keys() + index + 1, keys() + index, tail * sizeof(uint64_t));
    std::memmove(payloads() + index + 1, payloads() + index, tail * sizeof(Payload));
    keys()[index] = key;
    payloads()[index] = payload;
    ++header().count;
  }
  void EraseAt(uint32_t index) const {
    assert(index < count());
    const uint32_t tail = count() - index - 1;
    std::memmove(keys() + index, keys() + index + 1, tail * sizeof(uint64_t));
    std::memmove(payloads() + index, payloads() + index + 1, tail * sizeof(Payload));
    --header().count;
  }

 private:
  char* base_;
  uint32_t capacity_;
};

using LeafView = NodeView<LeafSlot>;
using InnerView = NodeView<Addr>;
static_assert(LeafView::kMaxCapacity == 73 && InnerView::kMaxCapacity == 255);
static_assert(LeafView::kMinCount == 18 && InnerView::kMinCount == 63);

// The smallest node size (a kmem class, at most kNodeBytes) with room for `elements`.
template <typename Payload>
uint32_t NodeBytesFor(uint32_t elements) {
  const size_t wanted = kHeaderBytes + size_t{elements} * NodeView<Payload>::kElementBytes;
  if (wanted >= DirIndex::kNodeBytes) return DirIndex::kNodeBytes;
  return static_cast<uint32_t>(std::min(Kmem::ClassSize(wanted), DirIndex::kNodeBytes));
}

// The size a full root of `bytes` grows to: half as many elements again (at least
// one more), so the copies cost O(1) an insert.
template <typename Payload>
uint32_t GrownBytes(uint32_t bytes) {
  const uint32_t capacity = NodeView<Payload>::Capacity(bytes);
  return NodeBytesFor<Payload>(std::max(capacity + 1, capacity + capacity / 2));
}

// ---- Gather and scatter ------------------------------------------------------------

template <typename Payload>
struct Element {
  uint64_t key;
  Payload payload;
};

// Room for two full nodes and one more element: the most any rebalancing moves.
template <typename Payload>
using Elements = std::array<Element<Payload>, 2 * NodeView<Payload>::kMaxCapacity + 1>;

// Appends the node's elements at elements[at...]; returns the new end.
template <typename Payload>
uint32_t Gather(const NodeView<Payload>& node, Elements<Payload>& elements, uint32_t at) {
  assert(at + node.count() <= elements.size());
  for (uint32_t i = 0; i < node.count(); ++i) {
    elements[at + i] = Element<Payload>{node.keys()[i], node.payloads()[i]};
  }
  return at + node.count();
}

// Inserts `element` at elements[at], shifting the rest; returns the new end.
template <typename Payload>
uint32_t InsertElement(Elements<Payload>& elements, uint32_t end, uint32_t at,
                       const Element<Payload>& element) {
  assert(at <= end && end < elements.size());
  std::copy_backward(elements.begin() + at, elements.begin() + end, elements.begin() + end + 1);
  elements[at] = element;
  return end + 1;
}

// Spreads elements[0, end) evenly over `nodes`, in order.
template <typename Payload>
void Scatter(const Elements<Payload>& elements, uint32_t end,
             std::initializer_list<NodeView<Payload>> nodes) {
  const uint32_t parts = static_cast<uint32_t>(nodes.size());
  uint32_t next = 0;
  uint32_t part = 0;
  for (const NodeView<Payload>& node : nodes) {
    const uint32_t share = end / parts + (part < end % parts ? 1 : 0);
    assert(share <= node.capacity());
    for (uint32_t i = 0; i < share; ++i) {
      node.keys()[i] = elements[next + i].key;
      node.payloads()[i] = elements[next + i].payload;
    }
    node.header().count = static_cast<uint16_t>(share);
    next += share;
    ++part;
  }
  assert(next == end);
}

// ---- Names -------------------------------------------------------------------------

Addr BlobOf(const LeafSlot& slot) {
  Addr blob;
  std::memcpy(&blob, slot.name, sizeof blob);
  return blob;
}

absl::StatusOr<bool> LongNameEquals(Kmem& kmem, const LeafSlot& slot, absl::string_view name) {
  char stored[DirIndex::kMaxName];
  if (absl::Status status = kmem.LoadBlob(BlobOf(slot), name.size(), stored); !status.ok()) {
    return status;
  }
  return std::memcmp(stored, name.data(), name.size()) == 0;
}

// Compares in place: an inline name is never copied.
inline absl::StatusOr<bool> NameEquals(Kmem& kmem, const LeafSlot& slot, absl::string_view name) {
  if (slot.name_length != name.size()) return false;
  if (name.size() <= DirIndex::kInlineName) {
    return std::memcmp(slot.name, name.data(), name.size()) == 0;
  }
  return LongNameEquals(kmem, slot, name);
}

// The slot's name: in place if inline, else loaded into `buffer` (kMaxName bytes).
absl::StatusOr<absl::string_view> NameOf(Kmem& kmem, const LeafSlot& slot, char* buffer) {
  if (slot.name_length <= DirIndex::kInlineName) {
    return absl::string_view(slot.name, slot.name_length);
  }
  if (absl::Status status = kmem.LoadBlob(BlobOf(slot), slot.name_length, buffer); !status.ok()) {
    return status;
  }
  return absl::string_view(buffer, slot.name_length);
}

// A slot for a new entry; a long name goes to a blob now (the caller frees it if the
// insert fails).
absl::StatusOr<LeafSlot> MakeSlot(Kmem& kmem, absl::string_view name, Addr node, uint8_t type) {
  LeafSlot slot{};
  slot.node = node;
  slot.name_length = static_cast<uint8_t>(name.size());
  slot.type = type;
  if (name.size() <= DirIndex::kInlineName) {
    std::memcpy(slot.name, name.data(), name.size());
    return slot;
  }
  absl::StatusOr<Addr> blob = kmem.StoreBlob(name);
  if (!blob.ok()) return blob.status();
  std::memcpy(slot.name, &*blob, sizeof(Addr));
  return slot;
}

void FreeName(Kmem& kmem, const LeafSlot& slot) {
  if (slot.name_length > DirIndex::kInlineName) kmem.FreeBlob(BlobOf(slot), slot.name_length);
}

DirEntryInfo InfoOf(const LeafSlot& slot, uint64_t cookie) {
  return DirEntryInfo{slot.node, slot.type, cookie};
}

// Without a message: negative lookups are frequent (every create starts with one), and
// a message would cost an allocation each.
absl::Status NotFound() { return absl::NotFoundError(""); }

// ---- Search within a node ------------------------------------------------------------

// Keys are hashes, spread evenly over a node's range [lo, hi): the position of a key
// is about (key - lo) / (hi - lo) of the way along. Probing there first and galloping
// outwards reads one or two cache lines of keys where a binary search over 73 or 255
// keys reads five to eight (a lookup's time goes to cache misses, not compares).
// Crowded or skewed keys only make the gallop longer: it is still O(log n).
uint32_t Guess(uint64_t key, uint64_t lo, uint64_t hi, uint32_t begin, uint32_t end) {
  hi = std::min(hi, uint64_t{1} << 63);  // kNoBound: keys are below 2^63
  if (key <= lo) return begin;
  if (key >= hi) return end;
  const double fraction = static_cast<double>(key - lo) / static_cast<double>(hi - lo);
  return std::min(end, begin + static_cast<uint32_t>(fraction * (end - begin)));
}

// The first index in [begin, end) whose key is not go_right(key) (end if none), for
// keys partitioned by go_right, searching from `guess` outwards.
template <typename GoRight>
uint32_t SearchFrom(const uint64_t* keys, uint32_t begin, uint32_t end, uint32_t guess,
                    GoRight go_right) {
  assert(begin <= guess && guess <= end);
  uint32_t left = begin;  // the answer lies in [left, right]
  uint32_t right = end;
  if (guess < end && go_right(keys[guess])) {
    left = guess + 1;
    for (uint32_t step = 1; left + step - 1 < end; step *= 2) {
      const uint32_t probe = left + step - 1;
      if (!go_right(keys[probe])) {
        right = probe;
        break;
      }
      left = probe + 1;
    }
  } else {
    right = guess;
    for (uint32_t step = 1; right >= begin + step; step *= 2) {
      const uint32_t probe = right - step;
      if (go_right(keys[probe])) {
        left = probe + 1;
        break;
      }
      right = probe;
    }
  }
  return static_cast<uint32_t>(std::partition_point(keys + left, keys + right, go_right) - keys);
}

// The first entry of a leaf whose cookie is >= key.
uint32_t LeafLowerBound(const LeafView& leaf, uint64_t key, uint64_t lo, uint64_t hi) {
  const uint32_t count = leaf.count();
  return SearchFrom(leaf.keys(), 0, count, Guess(key, lo, hi, 0, count),
                    [key](uint64_t cookie) { return cookie < key; });
}

// The child of an inner node whose range holds key: the last whose lower bound is
// <= key (keys[0] is not a bound: child 0 takes everything below keys[1]).
uint32_t InnerChild(const InnerView& inner, uint64_t key, uint64_t lo, uint64_t hi) {
  const uint32_t count = inner.count();
  return SearchFrom(inner.keys(), 1, count, Guess(key, lo, hi, 1, count),
                    [key](uint64_t bound) { return bound <= key; }) -
         1;
}

// Starts loading the cache lines a search of this node will read, before the header
// is read: the keys about where `key` should be (the count is not known yet: assume
// the node is as full as nodes usually are).
template <typename Payload>
void PrefetchNear(const char* node, uint32_t bytes, uint64_t key, uint64_t lo, uint64_t hi) {
  const uint32_t capacity = NodeView<Payload>::Capacity(bytes);
  const uint32_t expected = Guess(key, lo, hi, 0, capacity * 7 / 8);
  const char* keys = node + kHeaderBytes;
  __builtin_prefetch(keys + sizeof(uint64_t) * (expected >= 4 ? expected - 4 : 0));
  __builtin_prefetch(keys + sizeof(uint64_t) * std::min(expected + 4, capacity - 1));
}

// ---- Descent -----------------------------------------------------------------------

struct PathLevel {
  Addr address = kNullAddr;
  uint32_t bytes = 0;
  uint32_t index = 0;  // inner: the child taken; leaf: the entry's position
  NodePin pin;         // mutating operations hold every level; others the leaf only
};

// The nodes from the root (level[0]) down to the leaf that holds a key.
struct Path {
  uint32_t height = 0;
  uint64_t lo = 0;         // the leaf holds keys in [lo, hi)
  uint64_t hi = kNoBound;  //
  std::array<PathLevel, kMaxHeight> level;

  PathLevel& leaf() { return level[height - 1]; }
  void ReleasePins() {
    for (PathLevel& each : level) each.pin.Release();
  }
};

// Descends from the root to the leaf whose range holds `key`, recording the path, and
// leaves the leaf pinned with `leaf_access` and its index at the first key >= `key`.
// With keep_pins every inner node stays pinned (for reading); without, a parent is
// released before its child is pinned.
// => REQUIRES: the directory is not empty.
absl::Status Descend(Kmem& kmem, const DirRoot& dir, uint64_t key, Access leaf_access,
                     bool keep_pins, Path& path) {
  assert(dir.root != kNullAddr && dir.height >= 1 && dir.height <= kMaxHeight);
  path.ReleasePins();  // a second descent (family across leaves) starts afresh
  path.height = dir.height;
  path.lo = 0;
  path.hi = kNoBound;
  Addr address = dir.root;
  uint32_t bytes = dir.root_bytes;
  for (uint32_t depth = 0;; ++depth) {
    PathLevel& level = path.level[depth];
    level.address = address;
    level.bytes = bytes;
    const bool is_leaf = depth + 1 == dir.height;
    absl::StatusOr<NodePin> pin = kmem.Pin(address, is_leaf ? leaf_access : Access::kRead);
    if (!pin.ok()) return pin.status();
    level.pin = *std::move(pin);
    if (is_leaf) {
      PrefetchNear<LeafSlot>(level.pin.get(), bytes, key, path.lo, path.hi);
    } else {
      PrefetchNear<Addr>(level.pin.get(), bytes, key, path.lo, path.hi);
    }
    assert(reinterpret_cast<NodeHeader*>(level.pin.get())->magic == kNodeMagic);
    assert(reinterpret_cast<NodeHeader*>(level.pin.get())->level == dir.height - 1 - depth);
    if (is_leaf) {
      const LeafView leaf(level.pin.get(), bytes);
      level.index = LeafLowerBound(leaf, key, path.lo, path.hi);
      // The slot is read next (by a lookup): start loading it.
      __builtin_prefetch(leaf.payloads() + level.index);
      __builtin_prefetch(reinterpret_cast<const char*>(leaf.payloads() + level.index) +
                         sizeof(LeafSlot) - 1);
      return absl::OkStatus();
    }
    const InnerView inner(level.pin.get(), bytes);
    const uint64_t* keys = inner.keys();
    const uint32_t count = inner.count();
    const uint32_t index = InnerChild(inner, key, path.lo, path.hi);
    level.index = index;
    if (index > 0) path.lo = keys[index];
    if (index + 1 < count) path.hi = keys[index + 1];
    address = inner.payloads()[index];
    bytes = DirIndex::kNodeBytes;
    if (!keep_pins) level.pin.Release();
  }
}

// The result of scanning a name's family.
struct FamilyScan {
  bool found = false;
  uint32_t taken = 0;  // bit s set: cookie family + s is taken (or out of bounds)
};

// Bits of the slots whose cookie would break invariant 1 (only the first and the
// last family have any).
uint32_t ForbiddenSlots(uint64_t family) {
  if (family >= DirIndex::kFirstCookie && family + kFamilyMask <= kMaxCookie) return 0;
  uint32_t forbidden = 0;
  for (uint64_t slot = 0; slot <= kFamilyMask; ++slot) {
    const uint64_t cookie = family + slot;
    if (cookie < DirIndex::kFirstCookie || cookie > kMaxCookie) forbidden |= uint32_t{1} << slot;
  }
  return forbidden;
}

// Searches the family's cookies for `name`. Found: the path leads to the entry's leaf
// and leaf().index is the entry. Not found: scan.taken says which cookies are in use,
// and the path leads to the leaf where the family's cookies would be (the last one
// scanned). The family's range crosses into a next leaf rarely; then this descends
// again from the next leaf's lower bound.
absl::Status ScanFamily(Kmem& kmem, const DirRoot& dir, absl::string_view name, uint64_t family,
                        Access leaf_access, bool keep_pins, Path& path, FamilyScan& scan) {
  const uint64_t last = family + kFamilyMask;
  scan.found = false;
  scan.taken = ForbiddenSlots(family);
  uint64_t key = family;
  for (;;) {
    if (absl::Status status = Descend(kmem, dir, key, leaf_access, keep_pins, path); !status.ok()) {
      return status;
    }
    PathLevel& level = path.leaf();
    const LeafView leaf(level.pin.get(), level.bytes);
    const uint64_t* keys = leaf.keys();
    const uint32_t count = leaf.count();
    uint32_t i = level.index;
    for (; i < count && keys[i] <= last; ++i) {
      scan.taken |= uint32_t{1} << (keys[i] - family);
      absl::StatusOr<bool> equal = NameEquals(kmem, leaf.payloads()[i], name);
      if (!equal.ok()) return equal.status();
      if (*equal) {
        level.index = i;
        scan.found = true;
        return absl::OkStatus();
      }
    }
    if (i < count || path.hi > last) return absl::OkStatus();
    key = path.hi;  // the family goes on in the next leaf
  }
}

// ---- Insert: the slow path ----------------------------------------------------------

// What an operation does to the node at one depth of its path.
enum class Step : uint8_t {
  kNone,
  kInPlace,    // insert or erase within the node
  kShare,      // leaf: spread the entries over the leaf and a sibling with room
  kSplit,      // leaf: 2 full leaves into 3; inner: 1 full node into 2
  kGrowRoot,   // copy the root into a bigger node
  kSplitRoot,  // split the root into 2 under a new root
  kMerge,      // merge with a sibling; the parent loses a child
  kBorrow,     // spread the entries over the node and a sibling
  kCollapse,   // the root has one child left, which becomes the root
};

// A node an insert makes: allocated and pinned before the first change.
struct FreshNode {
  Addr address = kNullAddr;
  uint32_t bytes = 0;
  NodePin pin;
};

absl::Status AllocateNode(Kmem& kmem, uint32_t bytes, FreshNode& node) {
  absl::StatusOr<Addr> address = kmem.Alloc(bytes);
  if (!address.ok()) return address.status();
  assert(*address % alignof(uint64_t) == 0);
  absl::StatusOr<NodePin> pin = kmem.Pin(*address, Access::kWrite);
  if (!pin.ok()) {
    kmem.Free(*address, bytes);
    return pin.status();
  }
  node.address = *address;
  node.bytes = bytes;
  node.pin = *std::move(pin);
  return absl::OkStatus();
}

void FreeFreshNode(Kmem& kmem, FreshNode& node) {
  if (node.address == kNullAddr) return;
  node.pin.Release();
  kmem.Free(node.address, node.bytes);
  node.address = kNullAddr;
}

// Makes `root` an inner root over two children.
void MakeRoot(FreshNode& root, uint32_t level, Addr left, Addr right, uint64_t separator) {
  InnerView view(root.pin.get(), root.bytes);
  view.Init(root.bytes, level);
  view.keys()[0] = 0;  // not a bound
  view.payloads()[0] = left;
  view.keys()[1] = separator;
  view.payloads()[1] = right;
  view.header().count = 2;
}

// Replaces the pin on a path node by one for writing, so the page is dirtied.
absl::Status PinForWrite(Kmem& kmem, PathLevel& level) {
  absl::StatusOr<NodePin> pin = kmem.Pin(level.address, Access::kWrite);
  if (!pin.ok()) return pin.status();
  level.pin = *std::move(pin);
  return absl::OkStatus();
}

// Inserts (cookie, slot) at path.leaf().index of a full leaf.
// => REQUIRES: path from Descend with keep_pins, the leaf pinned for writing.
absl::Status InsertIntoFullLeaf(Kmem& kmem, DirRoot& dir, Path& path, uint64_t cookie,
                                const LeafSlot& slot) {
  const uint32_t leaf_depth = path.height - 1;
  std::array<Step, kMaxHeight> step{};
  std::array<FreshNode, kMaxHeight> fresh;  // a split's new node, or the grown root at 0
  FreshNode new_root;
  Addr sibling = kNullAddr;  // the leaf's sibling, for kShare and kSplit
  NodePin sibling_pin;
  bool sibling_left = false;

  // 1. Plan, bottom up, changing nothing. `top` is the highest depth that changes.
  uint32_t top = leaf_depth;
  bool adds_child = false;
  if (leaf_depth == 0) {
    step[0] = dir.root_bytes < DirIndex::kNodeBytes ? Step::kGrowRoot : Step::kSplitRoot;
  } else {
    const PathLevel& parent = path.level[leaf_depth - 1];
    const InnerView parent_view(parent.pin.get(), parent.bytes);
    for (const bool left : {true, false}) {
      if (left ? parent.index == 0 : parent.index + 1 >= parent_view.count()) continue;
      const Addr address = parent_view.payloads()[left ? parent.index - 1 : parent.index + 1];
      absl::StatusOr<NodePin> pin = kmem.Pin(address, Access::kRead);
      if (!pin.ok()) return pin.status();
      const bool has_room = !LeafView(pin->get(), DirIndex::kNodeBytes).full();
      if (has_room || !sibling_pin) {
        sibling = address;
        sibling_pin = *std::move(pin);
        sibling_left = left;
      }
      if (has_room) {
        step[leaf_depth] = Step::kShare;
        break;
      }
    }
    assert(sibling_pin);  // a parent has two children at least
    if (step[leaf_depth] != Step::kShare) {
      step[leaf_depth] = Step::kSplit;
      adds_child = true;
    }
    top = leaf_depth - 1;
  }
  for (uint32_t depth = leaf_depth; adds_child;) {
    --depth;
    top = depth;
    const InnerView node(path.level[depth].pin.get(), path.level[depth].bytes);
    if (!node.full()) {
      step[depth] = Step::kInPlace;
      adds_child = false;
    } else if (depth > 0) {
      step[depth] = Step::kSplit;
    } else {
      step[0] = dir.root_bytes < DirIndex::kNodeBytes ? Step::kGrowRoot : Step::kSplitRoot;
      adds_child = false;
    }
  }
  if (step[0] == Step::kSplitRoot && dir.height == kMaxHeight) {
    return absl::ResourceExhaustedError("directory index at its maximum height");
  }

  // 2. Allocate and pin everything the change needs (invariant 3).
  auto undo = [&](absl::Status status) {
    for (FreshNode& node : fresh) FreeFreshNode(kmem, node);
    FreeFreshNode(kmem, new_root);
    return status;
  };
  for (uint32_t depth = top; depth <= leaf_depth; ++depth) {
    uint32_t bytes = 0;
    if (step[depth] == Step::kSplit || step[depth] == Step::kSplitRoot) {
      bytes = DirIndex::kNodeBytes;
    } else if (step[depth] == Step::kGrowRoot) {
      bytes = depth == leaf_depth ? GrownBytes<LeafSlot>(dir.root_bytes)
                                  : GrownBytes<Addr>(dir.root_bytes);
    }
    if (bytes == 0) continue;
    if (absl::Status status = AllocateNode(kmem, bytes, fresh[depth]); !status.ok()) {
      return undo(status);
    }
  }
  if (step[0] == Step::kSplitRoot) {
    if (absl::Status status = AllocateNode(kmem, NodeBytesFor<Addr>(kFirstRootChildren), new_root);
        !status.ok()) {
      return undo(status);
    }
  }
  if (sibling != kNullAddr) {
    absl::StatusOr<NodePin> pin = kmem.Pin(sibling, Access::kWrite);
    if (!pin.ok()) return undo(pin.status());
    sibling_pin = *std::move(pin);
  }
  for (uint32_t depth = top; depth < leaf_depth; ++depth) {
    if (step[depth] == Step::kGrowRoot) continue;  // only read, then freed
    if (absl::Status status = PinForWrite(kmem, path.level[depth]); !status.ok()) {
      return undo(status);
    }
  }

  // 3. Change the tree; nothing can fail from here on.
  Addr retired = kNullAddr;  // the old root after kGrowRoot, freed once unpinned
  uint32_t retired_bytes = 0;
  uint64_t pending_key = 0;  // a child for the next level up to take, at pending_index
  Addr pending_child = kNullAddr;
  uint32_t pending_index = 0;
  {
    Elements<LeafSlot> elements;
    PathLevel& level = path.level[leaf_depth];
    const LeafView leaf(level.pin.get(), level.bytes);
    const Element<LeafSlot> added{cookie, slot};
    switch (step[leaf_depth]) {
      case Step::kGrowRoot: {
        uint32_t end = Gather(leaf, elements, 0);
        end = InsertElement(elements, end, level.index, added);
        LeafView grown(fresh[0].pin.get(), fresh[0].bytes);
        grown.Init(fresh[0].bytes, 0);
        Scatter(elements, end, {grown});
        retired = dir.root;
        retired_bytes = dir.root_bytes;
        dir.root = fresh[0].address;
        dir.root_bytes = fresh[0].bytes;
        break;
      }
      case Step::kSplitRoot: {
        uint32_t end = Gather(leaf, elements, 0);
        end = InsertElement(elements, end, level.index, added);
        LeafView right(fresh[0].pin.get(), fresh[0].bytes);
        right.Init(fresh[0].bytes, 0);
        Scatter(elements, end, {leaf, right});
        MakeRoot(new_root, 1, dir.root, fresh[0].address, right.keys()[0]);
        dir.root = new_root.address;
        dir.root_bytes = new_root.bytes;
        dir.height = 2;
        break;
      }
      case Step::kShare:
      case Step::kSplit: {
        PathLevel& parent = path.level[leaf_depth - 1];
        const InnerView parent_view(parent.pin.get(), parent.bytes);
        const LeafView neighbour(sibling_pin.get(), DirIndex::kNodeBytes);
        const LeafView& first = sibling_left ? neighbour : leaf;
        const LeafView& second = sibling_left ? leaf : neighbour;
        const uint32_t second_index = parent.index + (sibling_left ? 0 : 1);
        uint32_t end = Gather(first, elements, 0);
        const uint32_t at = sibling_left ? end + level.index : level.index;
        end = Gather(second, elements, end);
        end = InsertElement(elements, end, at, added);
        if (step[leaf_depth] == Step::kShare) {
          Scatter(elements, end, {first, second});
        } else {
          LeafView third(fresh[leaf_depth].pin.get(), fresh[leaf_depth].bytes);
          third.Init(fresh[leaf_depth].bytes, 0);
          Scatter(elements, end, {first, second, third});
          pending_key = third.keys()[0];
          pending_child = fresh[leaf_depth].address;
          pending_index = second_index + 1;
        }
        parent_view.keys()[second_index] = second.keys()[0];
        break;
      }
      default:
        assert(false);
    }
  }
  Elements<Addr> elements;
  for (uint32_t depth = leaf_depth; pending_child != kNullAddr;) {
    --depth;
    PathLevel& level = path.level[depth];
    InnerView node(level.pin.get(), level.bytes);
    const uint32_t node_level = node.header().level;
    const Element<Addr> added{pending_key, pending_child};
    pending_child = kNullAddr;
    switch (step[depth]) {
      case Step::kInPlace:
        node.InsertAt(pending_index, added.key, added.payload);
        break;
      case Step::kGrowRoot: {
        uint32_t end = Gather(node, elements, 0);
        end = InsertElement(elements, end, pending_index, added);
        InnerView grown(fresh[0].pin.get(), fresh[0].bytes);
        grown.Init(fresh[0].bytes, node_level);
        Scatter(elements, end, {grown});
        retired = dir.root;
        retired_bytes = dir.root_bytes;
        dir.root = fresh[0].address;
        dir.root_bytes = fresh[0].bytes;
        break;
      }
      case Step::kSplit:
      case Step::kSplitRoot: {
        uint32_t end = Gather(node, elements, 0);
        end = InsertElement(elements, end, pending_index, added);
        InnerView right(fresh[depth].pin.get(), fresh[depth].bytes);
        right.Init(fresh[depth].bytes, node_level);
        Scatter(elements, end, {node, right});
        if (step[depth] == Step::kSplit) {
          pending_key = right.keys()[0];
          pending_child = fresh[depth].address;
          pending_index = path.level[depth - 1].index + 1;
        } else {
          MakeRoot(new_root, node_level + 1, dir.root, fresh[0].address, right.keys()[0]);
          dir.root = new_root.address;
          dir.root_bytes = new_root.bytes;
          ++dir.height;
        }
        break;
      }
      default:
        assert(false);
    }
  }

  path.ReleasePins();
  if (retired != kNullAddr) kmem.Free(retired, retired_bytes);
  return absl::OkStatus();
}

// ---- Remove --------------------------------------------------------------------------

// Spreads the elements of two adjacent siblings over `first` alone (merge) or over
// both (borrow), and updates the separator in the parent for a borrow. An inner
// node's keys[0] is not a bound, so the second's first key comes from the parent.
template <typename Payload>
void Rebalance(const NodeView<Payload>& first, const NodeView<Payload>& second,
               const InnerView& parent, uint32_t second_index, bool merge) {
  Elements<Payload> elements;
  uint32_t end = Gather(first, elements, 0);
  const uint32_t second_start = end;
  end = Gather(second, elements, end);
  if constexpr (std::is_same_v<Payload, Addr>) {
    elements[second_start].key = parent.keys()[second_index];
  }
  if (merge) {
    Scatter(elements, end, {first});
  } else {
    Scatter(elements, end, {first, second});
    parent.keys()[second_index] = second.keys()[0];
  }
}

// A root leaf left a quarter full shrinks to half its size, if kmem can spare the
// smaller node now; else it stays as it is (Remove never needs to allocate).
void MaybeShrinkRootLeaf(Kmem& kmem, DirRoot& dir, Path& path) {
  PathLevel& level = path.level[0];
  const LeafView leaf(level.pin.get(), level.bytes);
  if (leaf.count() * 4 > leaf.capacity()) return;
  const uint32_t bytes = NodeBytesFor<LeafSlot>(std::max(leaf.count() * 2, kFirstLeafEntries));
  if (bytes >= dir.root_bytes) return;
  FreshNode smaller;
  if (!AllocateNode(kmem, bytes, smaller).ok()) return;
  LeafView view(smaller.pin.get(), bytes);
  view.Init(bytes, 0);
  Elements<LeafSlot> elements;
  Scatter(elements, Gather(leaf, elements, 0), {view});
  path.ReleasePins();
  smaller.pin.Release();
  kmem.Free(dir.root, dir.root_bytes);
  dir.root = smaller.address;
  dir.root_bytes = bytes;
}

// Erases the entry at path.leaf().index, rebalancing upward.
// => REQUIRES: path from Descend with keep_pins, the leaf pinned for writing.
absl::Status RemoveFromTree(Kmem& kmem, DirRoot& dir, Path& path) {
  const uint32_t leaf_depth = path.height - 1;
  PathLevel& leaf_level = path.leaf();
  const LeafView leaf(leaf_level.pin.get(), leaf_level.bytes);
  if (leaf_depth == 0) {
    leaf.EraseAt(leaf_level.index);
    if (leaf.count() == 0) {
      path.ReleasePins();
      kmem.Free(dir.root, dir.root_bytes);
      dir = DirRoot{};
    } else {
      MaybeShrinkRootLeaf(kmem, dir, path);
    }
    return absl::OkStatus();
  }

  // 1. Plan, bottom up, taking the pins of the siblings involved.
  std::array<Step, kMaxHeight> step{};
  std::array<NodePin, kMaxHeight> sibling_pin;
  std::array<bool, kMaxHeight> sibling_left{};
  uint32_t depth = leaf_depth;
  uint32_t count_after = leaf.count() - 1;
  uint32_t top = depth;
  for (;;) {
    if (depth == 0) {
      step[0] = count_after == 1 ? Step::kCollapse : Step::kInPlace;
      top = 0;
      break;
    }
    const bool is_leaf = depth == leaf_depth;
    if (count_after >= (is_leaf ? LeafView::kMinCount : InnerView::kMinCount)) {
      step[depth] = Step::kInPlace;
      top = depth;
      break;
    }
    const PathLevel& parent = path.level[depth - 1];
    const InnerView parent_view(parent.pin.get(), parent.bytes);
    const bool left = parent.index > 0;
    absl::StatusOr<NodePin> pin = kmem.Pin(
        parent_view.payloads()[left ? parent.index - 1 : parent.index + 1], Access::kWrite);
    if (!pin.ok()) return pin.status();
    const uint32_t sibling_count = reinterpret_cast<const NodeHeader*>(pin->get())->count;
    sibling_pin[depth] = *std::move(pin);
    sibling_left[depth] = left;
    if (count_after + sibling_count <= (is_leaf ? LeafView::kMergeLimit : InnerView::kMergeLimit)) {
      step[depth] = Step::kMerge;
      count_after = parent_view.count() - 1;
      --depth;
      continue;
    }
    step[depth] = Step::kBorrow;
    top = depth - 1;
    break;
  }
  for (uint32_t d = top; d < leaf_depth; ++d) {
    if (step[d] == Step::kCollapse) continue;  // only read, then freed
    if (absl::Status status = PinForWrite(kmem, path.level[d]); !status.ok()) return status;
  }

  // 2. Change the tree; nothing can fail from here on.
  std::array<Addr, kMaxHeight> retired{};  // merged-away nodes (and an old root)
  std::array<uint32_t, kMaxHeight> retired_bytes{};
  uint32_t retired_count = 0;
  uint32_t erase_index = leaf_level.index;
  for (depth = leaf_depth;; --depth) {
    PathLevel& level = path.level[depth];
    const bool is_leaf = depth == leaf_depth;
    if (step[depth] == Step::kCollapse) {
      // The root's two children became one: it is the root now. The old root was
      // pinned only to read (it is freed, not changed).
      const InnerView root(level.pin.get(), level.bytes);
      assert(root.count() == 2 && erase_index == 1);
      retired[retired_count] = dir.root;
      retired_bytes[retired_count++] = dir.root_bytes;
      dir.root = root.payloads()[0];
      dir.root_bytes = DirIndex::kNodeBytes;
      --dir.height;
      break;
    }
    if (is_leaf) {
      leaf.EraseAt(erase_index);
    } else {
      InnerView(level.pin.get(), level.bytes).EraseAt(erase_index);
    }
    if (step[depth] == Step::kInPlace) break;
    const PathLevel& parent = path.level[depth - 1];
    const InnerView parent_view(parent.pin.get(), parent.bytes);
    const bool left = sibling_left[depth];
    const uint32_t second_index = parent.index + (left ? 0 : 1);
    char* const first = left ? sibling_pin[depth].get() : level.pin.get();
    char* const second = left ? level.pin.get() : sibling_pin[depth].get();
    const bool merge = step[depth] == Step::kMerge;
    if (is_leaf) {
      Rebalance(LeafView(first, DirIndex::kNodeBytes), LeafView(second, DirIndex::kNodeBytes),
                parent_view, second_index, merge);
    } else {
      Rebalance(InnerView(first, DirIndex::kNodeBytes), InnerView(second, DirIndex::kNodeBytes),
                parent_view, second_index, merge);
    }
    if (!merge) break;
    retired[retired_count] = parent_view.payloads()[second_index];
    retired_bytes[retired_count++] = DirIndex::kNodeBytes;
    erase_index = second_index;
  }

  path.ReleasePins();
  for (NodePin& pin : sibling_pin) pin.Release();
  for (uint32_t i = 0; i < retired_count; ++i) kmem.Free(retired[i], retired_bytes[i]);
  return absl::OkStatus();
}

// ---- Destroy and Verify ------------------------------------------------------------

void DestroyNode(Kmem& kmem, Addr address, uint32_t bytes, uint32_t level) {
  {
    absl::StatusOr<NodePin> pin = kmem.Pin(address, Access::kRead);
    if (!pin.ok()) return;  // unreadable: leak it and what hangs below it
    if (level == 0) {
      // Blobs are freed under the pin: FreeBlob of a one-item blob only Puts it.
      const LeafView leaf(pin->get(), bytes);
      for (uint32_t i = 0; i < leaf.count(); ++i) FreeName(kmem, leaf.payloads()[i]);
    } else {
      const InnerView inner(pin->get(), bytes);
      std::array<Addr, InnerView::kMaxCapacity> children;
      const uint32_t count = inner.count();
      std::copy_n(inner.payloads(), count, children.begin());
      pin->Release();
      for (uint32_t i = 0; i < count; ++i) {
        DestroyNode(kmem, children[i], DirIndex::kNodeBytes, level - 1);
      }
    }
  }
  kmem.Free(address, bytes);
}

absl::Status Broken(const std::string& what, Addr address) {
  return absl::InternalError(absl::StrFormat("directory index node %#x: %s", address, what));
}

absl::Status VerifyNode(Kmem& kmem, DirIndex::NameHash hash, Addr address, uint32_t bytes,
                        uint32_t level, uint64_t lo, uint64_t hi, bool is_root, DirShape& shape) {
  absl::StatusOr<NodePin> pin = kmem.Pin(address, Access::kRead);
  if (!pin.ok()) return pin.status();
  const NodeHeader& header = *reinterpret_cast<const NodeHeader*>(pin->get());
  if (header.magic != kNodeMagic) return Broken("bad magic", address);
  if (header.level != level) return Broken(absl::StrFormat("level %d", header.level), address);
  if (header.bytes != bytes) return Broken(absl::StrFormat("size %d", header.bytes), address);
  if (!is_root && bytes != DirIndex::kNodeBytes) return Broken("small non-root", address);
  shape.node_bytes += Kmem::ClassSize(bytes);
  if (level == 0) {
    const LeafView leaf(pin->get(), bytes);
    const uint32_t count = leaf.count();
    if (count > leaf.capacity() || count == 0 || (!is_root && count < LeafView::kMinCount)) {
      return Broken(absl::StrFormat("leaf holds %d of %d", count, leaf.capacity()), address);
    }
    ++shape.leaves;
    shape.leaf_slots += leaf.capacity();
    shape.entries += count;
    char buffer[DirIndex::kMaxName];
    for (uint32_t i = 0; i < count; ++i) {
      const uint64_t cookie = leaf.keys()[i];
      if (cookie < lo || cookie >= hi || (i > 0 && cookie <= leaf.keys()[i - 1]) ||
          cookie < DirIndex::kFirstCookie || cookie > kMaxCookie) {
        return Broken(absl::StrFormat("cookie %#x out of order or bounds", cookie), address);
      }
      const LeafSlot& slot = leaf.payloads()[i];
      if (slot.name_length == 0) return Broken("empty name", address);
      if (slot.name_length > DirIndex::kInlineName) ++shape.blobs;
      absl::StatusOr<absl::string_view> name = NameOf(kmem, slot, buffer);
      if (!name.ok()) return name.status();
      if (((hash(*name) >> 1) & ~kFamilyMask) != (cookie & ~kFamilyMask)) {
        return Broken(absl::StrFormat("\"%s\" is not in the family of %#x", *name, cookie),
                      address);
      }
    }
    return absl::OkStatus();
  }
  const InnerView inner(pin->get(), bytes);
  const uint32_t count = inner.count();
  if (count > inner.capacity() || count < (is_root ? 2 : InnerView::kMinCount)) {
    return Broken(absl::StrFormat("inner node holds %d of %d", count, inner.capacity()), address);
  }
  ++shape.inner_nodes;
  std::array<uint64_t, InnerView::kMaxCapacity + 1> bounds;
  std::array<Addr, InnerView::kMaxCapacity> children;
  bounds[0] = lo;
  for (uint32_t i = 1; i < count; ++i) {
    bounds[i] = inner.keys()[i];
    if (bounds[i] <= bounds[i - 1] || bounds[i] >= hi) {
      return Broken(absl::StrFormat("separator %#x out of order or bounds", bounds[i]), address);
    }
  }
  bounds[count] = hi;
  std::copy_n(inner.payloads(), count, children.begin());
  pin->Release();  // at most two pins at a time, whatever the height
  for (uint32_t i = 0; i < count; ++i) {
    if (absl::Status status = VerifyNode(kmem, hash, children[i], DirIndex::kNodeBytes, level - 1,
                                         bounds[i], bounds[i + 1], false, shape);
        !status.ok()) {
      return status;
    }
  }
  return absl::OkStatus();
}

uint64_t Xxh3(absl::string_view name) { return XXH3_64bits(name.data(), name.size()); }

}  // namespace

// ---- The public operations -----------------------------------------------------------

DirIndex::DirIndex(Kmem& kmem, NameHash hash)
    : kmem_(kmem), hash_(hash != nullptr ? hash : &Xxh3) {}

uint64_t DirIndex::Family(absl::string_view name) { return (Xxh3(name) >> 1) & ~kFamilyMask; }

uint64_t DirIndex::FamilyOf(absl::string_view name) const {
  return (hash_(name) >> 1) & ~kFamilyMask;
}

absl::StatusOr<DirEntryInfo> DirIndex::Lookup(const DirRoot& dir, absl::string_view name) const {
  if (dir.root == kNullAddr || name.empty() || name.size() > kMaxName) return NotFound();
  Path path;
  FamilyScan scan;
  if (absl::Status status =
          ScanFamily(kmem_, dir, name, FamilyOf(name), Access::kRead, false, path, scan);
      !status.ok()) {
    return status;
  }
  if (!scan.found) return NotFound();
  const LeafView leaf(path.leaf().pin.get(), path.leaf().bytes);
  return InfoOf(leaf.payloads()[path.leaf().index], leaf.keys()[path.leaf().index]);
}

absl::Status DirIndex::Walk(
    const DirRoot& dir, uint64_t from,
    absl::FunctionRef<bool(absl::string_view name, const DirEntryInfo& entry)> emit) const {
  char buffer[kMaxName];
  // One leaf per descent: a walk holds no pin between leaves, and the next leaf is
  // found again from the root by its lower bound (height pins a leaf, ~60 entries).
  for (uint64_t key = from; dir.root != kNullAddr;) {
    Path path;
    if (absl::Status status = Descend(kmem_, dir, key, Access::kRead, false, path); !status.ok()) {
      return status;
    }
    const LeafView leaf(path.leaf().pin.get(), path.leaf().bytes);
    for (uint32_t i = path.leaf().index; i < leaf.count(); ++i) {
      const LeafSlot& slot = leaf.payloads()[i];
      absl::StatusOr<absl::string_view> name = NameOf(kmem_, slot, buffer);
      if (!name.ok()) return name.status();
      if (!emit(*name, InfoOf(slot, leaf.keys()[i]))) return absl::OkStatus();
    }
    if (path.hi == kNoBound) break;
    key = path.hi;
  }
  return absl::OkStatus();
}

absl::StatusOr<DirEntryInfo> DirIndex::Insert(DirRoot& dir, absl::string_view name, Addr node,
                                              uint8_t type) {
  if (name.empty() || name.size() > kMaxName) {
    return absl::InvalidArgumentError(
        absl::StrFormat("a name is 1 to %d bytes, not %d", kMaxName, name.size()));
  }
  const uint64_t family = FamilyOf(name);
  if (dir.root == kNullAddr) {
    const uint64_t cookie = family + std::countr_one(ForbiddenSlots(family));
    absl::StatusOr<LeafSlot> slot = MakeSlot(kmem_, name, node, type);
    if (!slot.ok()) return slot.status();
    FreshNode root;
    const uint32_t bytes = NodeBytesFor<LeafSlot>(kFirstLeafEntries);
    if (absl::Status status = AllocateNode(kmem_, bytes, root); !status.ok()) {
      FreeName(kmem_, *slot);
      return status;
    }
    LeafView leaf(root.pin.get(), bytes);
    leaf.Init(bytes, 0);
    leaf.InsertAt(0, cookie, *slot);
    dir = DirRoot{root.address, 1, bytes, 1};
    return InfoOf(*slot, cookie);
  }

  Path path;
  FamilyScan scan;
  if (absl::Status status = ScanFamily(kmem_, dir, name, family, Access::kWrite, true, path, scan);
      !status.ok()) {
    return status;
  }
  if (scan.found) return absl::AlreadyExistsError("directory entry exists");
  if (scan.taken == kAllSlotsTaken) {
    return absl::ResourceExhaustedError(
        absl::StrFormat("%d names in this directory share the hash family %#x of the new name",
                        1 << kCollisionBits, family));
  }
  const uint64_t cookie = family + std::countr_one(scan.taken);
  if (cookie < path.lo || cookie >= path.hi) {
    // The family crossed leaves and the free cookie lies in another one (rare).
    if (absl::Status status = Descend(kmem_, dir, cookie, Access::kWrite, true, path);
        !status.ok()) {
      return status;
    }
  } else {
    const LeafView leaf(path.leaf().pin.get(), path.leaf().bytes);
    path.leaf().index = static_cast<uint32_t>(
        std::lower_bound(leaf.keys(), leaf.keys() + leaf.count(), cookie) - leaf.keys());
  }

  absl::StatusOr<LeafSlot> slot = MakeSlot(kmem_, name, node, type);
  if (!slot.ok()) return slot.status();
  LeafView leaf(path.leaf().pin.get(), path.leaf().bytes);
  if (!leaf.full()) [[likely]] {
    leaf.InsertAt(path.leaf().index, cookie, *slot);
  } else if (absl::Status status = InsertIntoFullLeaf(kmem_, dir, path, cookie, *slot);
             !status.ok()) {
    path.ReleasePins();
    FreeName(kmem_, *slot);
    return status;
  }
  ++dir.count;
  return InfoOf(*slot, cookie);
}

absl::StatusOr<DirEntryInfo> DirIndex::Remove(DirRoot& dir, absl::string_view name) {
  if (dir.root == kNullAddr || name.empty() || name.size() > kMaxName) return NotFound();
  Path path;
  FamilyScan scan;
  if (absl::Status status =
          ScanFamily(kmem_, dir, name, FamilyOf(name), Access::kWrite, true, path, scan);
      !status.ok()) {
    return status;
  }
  if (!scan.found) return NotFound();
  const LeafView leaf(path.leaf().pin.get(), path.leaf().bytes);
  const LeafSlot slot = leaf.payloads()[path.leaf().index];
  const DirEntryInfo info = InfoOf(slot, leaf.keys()[path.leaf().index]);
  if (absl::Status status = RemoveFromTree(kmem_, dir, path); !status.ok()) return status;
  path.ReleasePins();
  if (dir.root != kNullAddr) --dir.count;
  FreeName(kmem_, slot);
  return info;
}

absl::Status DirIndex::Replace(DirRoot& dir, absl::string_view name, Addr node, uint8_t type) {
  if (dir.root == kNullAddr || name.empty() || name.size() > kMaxName) return NotFound();
  Path path;
  FamilyScan scan;
  if (absl::Status status =
          ScanFamily(kmem_, dir, name, FamilyOf(name), Access::kWrite, false, path, scan);
      !status.ok()) {
    return status;
  }
  if (!scan.found) return NotFound();
  LeafSlot& slot = LeafView(path.leaf().pin.get(), path.leaf().bytes).payloads()[path.leaf().index];
  slot.node = node;
  slot.type = type;
  return absl::OkStatus();
}

void DirIndex::Destroy(DirRoot& dir) {
  if (dir.root != kNullAddr) DestroyNode(kmem_, dir.root, dir.root_bytes, dir.height - 1);
  dir = DirRoot{};
}

absl::StatusOr<DirShape> DirIndex::Verify(const DirRoot& dir) const {
  DirShape shape;
  if (dir.root == kNullAddr) {
    if (dir.height != 0 || dir.count != 0 || dir.root_bytes != 0) {
      return absl::InternalError("an empty directory index with a height, size or count");
    }
    return shape;
  }
  if (dir.height < 1 || dir.height > kMaxHeight || dir.root_bytes > kNodeBytes ||
      dir.root_bytes < NodeBytesFor<Addr>(1)) {
    return absl::InternalError(
        absl::StrFormat("directory index root of height %d, %d bytes", dir.height, dir.root_bytes));
  }
  shape.height = dir.height;
  if (absl::Status status = VerifyNode(kmem_, hash_, dir.root, dir.root_bytes, dir.height - 1, 0,
                                       kNoBound, true, shape);
      !status.ok()) {
    return status;
  }
  if (shape.entries != dir.count) {
    return absl::InternalError(
        absl::StrFormat("directory index holds %d entries, counts %d", shape.entries, dir.count));
  }
  return shape;
}

}  // namespace ptmpfs::meta
