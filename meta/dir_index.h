// dir_index: a directory's entries, in a B+tree of pageable nodes keyed by a hash
// of the name.
//
// Theory. Each entry has a cookie: a 63-bit value derived from the xxh3-64 hash of
// its name (the hash's upper 63 bits with the low kCollisionBits bits clear form the
// name's family), its low kCollisionBits bits chosen at insert as the smallest not
// taken by another name of the same family. The tree is ordered by cookie. Lookup
// hashes the name once and searches its family (at most 2^kCollisionBits keys,
// usually one); readdir walks in cookie order, and a readdir offset is simply the
// next cookie to return. Because an entry's cookie never changes while it lives, an
// offset stays valid however the directory changes meanwhile: an entry neither added
// nor removed during a walk is returned exactly once, and a walk resumed from any
// offset it returned continues correctly. (Linux tmpfs has had stable offsets since
// 6.6.) A family that already holds 2^kCollisionBits names refuses another with
// ResourceExhausted: with 59 bits of hash that takes ~2^55 names in one directory.
//
// Nodes. Every node is a kmem item: an 8-byte header (count, level, size) and then
// its keys in one sorted array, its payloads in another, so that binary search
// reads only keys.
//   leaf:  cookie[cap] | slot[cap]; a slot is 48 bytes (node address, name length,
//          type, and the name inline up to kInlineName bytes, else the address of a
//          kmem blob holding it): 56 bytes an entry, 73 entries in 4 KiB.
//   inner: cookie[cap] | child[cap]; cookie[i] is a lower bound of child i's keys
//          (cookie[0] is not used: the parent's separator bounds it): 255 children.
// Non-root nodes are always kNodeBytes. The root is sized by DirRoot.root_bytes: a
// directory's first insert makes a root leaf of the smallest kmem class holding two
// entries (128 bytes), which grows through the size classes (by half again each
// time: allocate, copy, free) up to kNodeBytes, then splits; a new inner root starts
// small and grows the same way. An empty directory has no node at all.
//
// Fill. Hashes make inserts land at random, where a plain 1-into-2 split leaves
// leaves ~69% full (ln 2). A full leaf first shares entries with a sibling that has
// room; when both neighbours are full it splits 2-into-3 with one of them, so a leaf
// is born two thirds full (B*-tree): leaves stay ~80% full, ~70 bytes an entry.
// Inner nodes (a few bytes an entry) split 1-into-2. Remove merges a leaf or inner
// node that falls below a quarter full with a sibling when the two fit in three
// quarters of a node, else borrows from that sibling so both end above a quarter.
// Millions of entries in one directory are normal: height 3 holds up to 4.7 million
// entries, height 4 over a billion.
//
// The root's address, height, size and entry count live in a DirRoot that the
// caller keeps (inside the directory's node): entry count and emptiness are O(1).
//
// Invariants.
//  1. Cookies are unique in a directory, at least kFirstCookie, at most 2^63 - 2
//     (so that the offset after the last one, cookie + 1, is a positive off_t).
//  2. Every node but the root is at least a quarter full (leaves 18 of 73 entries,
//     inner nodes 63 of 255 children); an inner root has at least two children;
//     every path from root to leaf has the same length.
//  3. A mutating operation takes every pin and allocation it may need (node splits,
//     a grown root, a name blob) before its first change, so an error
//     (ResourceExhausted, DataLoss) leaves the tree unchanged. Remove never needs
//     to allocate: merging frees nodes, borrowing moves entries; a root leaf left a
//     quarter full moves to a smaller item only if kmem can spare one at once.
//
// Locking. None inside: the caller holds the directory's lock, shared for Lookup,
// Walk and Verify, exclusive for Insert, Remove, Replace and Destroy. Lookup and
// Walk hold at most two pins at a time (a node, and a long name's blob); Insert and
// Remove hold the path from root to leaf, plus a sibling and the nodes being made
// (at most 2 * height + 2 while splitting, each pin wiring one 16 KiB pool page).
#ifndef PTMPFS_META_DIR_INDEX_H_
#define PTMPFS_META_DIR_INDEX_H_

#include <cstddef>
#include <cstdint>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "meta/kmem.h"

namespace ptmpfs::meta {

// Kept by the caller inside the directory's node. All zero is an empty directory.
struct DirRoot {
  Addr root = kNullAddr;    // root node; kNullAddr when empty
  uint32_t height = 0;      // 0 when empty; 1 when the root is a leaf
  uint32_t root_bytes = 0;  // size the root node was allocated with (it grows)
  uint64_t count = 0;       // entries
};

struct DirEntryInfo {
  Addr node = kNullAddr;
  uint8_t type = 0;  // DT_* of the entry
  uint64_t cookie = 0;
};

// The shape of a tree, from Verify: for tests, benchmarks and debugging.
struct DirShape {
  uint32_t height = 0;
  uint64_t entries = 0;
  uint64_t leaves = 0;
  uint64_t inner_nodes = 0;
  uint64_t leaf_slots = 0;  // entries the leaves could hold: entries / leaf_slots is the fill
  uint64_t node_bytes = 0;  // kmem bytes of all nodes (their class sizes)
  uint64_t blobs = 0;       // names kept in kmem blobs
};

class DirIndex {
 public:
  static constexpr int kCollisionBits = 4;
  static constexpr uint64_t kFirstCookie = 3;  // 0: start; 1 and 2: "." and ".."
  static constexpr size_t kMaxName = 255;
  // Names up to this length are kept in the leaf; longer ones in a kmem blob. 38
  // makes a leaf entry 56 bytes (8 cookie + 48 slot), and holds most real names.
  static constexpr size_t kInlineName = 38;
  static constexpr size_t kNodeBytes = 4096;

  // A hash of names. Only tests pass one (to force collisions); otherwise xxh3-64.
  using NameHash = uint64_t (*)(absl::string_view name);

  explicit DirIndex(Kmem& kmem) : DirIndex(kmem, nullptr) {}
  // For tests only: names hash with `hash` (xxh3-64 when null). An index must always
  // be opened with the hash its entries were inserted with.
  DirIndex(Kmem& kmem, NameHash hash);

  // NotFound if absent (and for a name that could not be an entry: empty or longer
  // than kMaxName).
  absl::StatusOr<DirEntryInfo> Lookup(const DirRoot& dir, absl::string_view name) const;
  // AlreadyExists if present; InvalidArgument for an empty name or one longer than
  // kMaxName; ResourceExhausted (ENOSPC) with the tree unchanged, when space is short
  // or the name's family is full.
  absl::StatusOr<DirEntryInfo> Insert(DirRoot& dir, absl::string_view name, Addr node,
                                      uint8_t type);
  // Removes and returns the entry. NotFound if absent. Never needs to allocate.
  absl::StatusOr<DirEntryInfo> Remove(DirRoot& dir, absl::string_view name);
  // Points an existing entry at another node (rename over an existing name), keeping
  // its cookie. NotFound if absent.
  absl::Status Replace(DirRoot& dir, absl::string_view name, Addr node, uint8_t type);
  // Calls emit(name, entry) for each entry with cookie >= from, in cookie order,
  // until emit returns false or the entries end. The next offset to resume at is
  // entry.cookie + 1. `name` is valid only during the call; emit must not change
  // the directory (the caller holds its lock).
  absl::Status Walk(
      const DirRoot& dir, uint64_t from,
      absl::FunctionRef<bool(absl::string_view name, const DirEntryInfo& entry)> emit) const;
  // Frees every node and name blob; the directory becomes empty. A node whose page
  // cannot be read (DataLoss) is leaked with what hangs below it, never guessed at.
  void Destroy(DirRoot& dir);

  // Checks every invariant above (order, bounds, fill, counts, each name in its
  // cookie's family) by reading the whole tree, and returns its shape. Internal
  // (with a message) for a broken tree. O(entries): for tests and debugging.
  absl::StatusOr<DirShape> Verify(const DirRoot& dir) const;

  // The cookie family of a name under xxh3-64: its hash with the collision bits clear.
  static uint64_t Family(absl::string_view name);

 private:
  uint64_t FamilyOf(absl::string_view name) const;

  Kmem& kmem_;
  const NameHash hash_;  // never null
};

}  // namespace ptmpfs::meta

#endif  // PTMPFS_META_DIR_INDEX_H_
