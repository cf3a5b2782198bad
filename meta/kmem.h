// kmem: variable-size blobs over pools of size classes.
//
// Theory. Names longer than fit inline, symlink targets (up to 4095 bytes) and
// xattr values (up to 64 KiB) are blobs. A blob up to kMaxItem bytes is one item of
// the smallest size class that holds it, so it is one pointer under one pin: classes
// up to 1 KiB use pools of 4 KiB pages, larger ones pools of 16 KiB pages on aligned
// runs of frames (vm/frames.h), so that a 3 KiB or 16 KiB item wastes little and is
// still contiguous. Items never straddle pages (a pool's slots are whole items).
// A blob larger than kMaxItem spans several items: chunks of kMaxItem bytes (the
// last one of its own class) and an index item that lists the chunks' addresses.
// Nothing of a blob lives on the heap. The classes and their waste are listed and
// justified in kmem.cc.
//
// Invariants.
//  1. Every address Alloc() returns lies in exactly one class's pool; Free() finds
//     the pool from the size the caller passes, Pin() from the address alone (binary
//     search over the pools' ranges, a small resident array fixed at Create()).
//  2. Free() and FreeBlob() never fault, block on I/O or allocate (they Put items),
//     except FreeBlob of a multi-item blob, which pins its index item to find the
//     chunks (DESIGN.md invariant 3 allows reading what is being freed).
//  3. StoreBlob allocates every item before it copies a byte; if any allocation or
//     pin fails, everything it allocated is freed: a blob is stored whole or not at
//     all.
//
// Locking. Each pool locks itself; Kmem has no lock of its own (its class table and
// range array are immutable after Create()).
#ifndef PTMPFS_META_KMEM_H_
#define PTMPFS_META_KMEM_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "meta/pool.h"
#include "vm/address_space.h"

namespace ptmpfs::meta {

class Kmem {
 public:
  static constexpr size_t kMaxItem = 16 << 10;  // one contiguous item, one pin
  static constexpr size_t kMaxBlob = 1 << 20;   // multi-item blobs up to this

  // Carves one pageable submap per size class out of `space`.
  static absl::StatusOr<std::unique_ptr<Kmem>> Create(vm::Map& space);
  ~Kmem();

  // One item of at least `bytes`, not zeroed. ResourceExhausted (ENOSPC) when no
  // page can be charged. REQUIRES: 0 < bytes <= kMaxItem (InvalidArgument otherwise).
  absl::StatusOr<Addr> Alloc(size_t bytes, bool from_reserve = false);
  // REQUIRES: `item` came from Alloc(bytes) with this size (any size of the same class).
  void Free(Addr item, size_t bytes);
  // Pins the item at `item` as chars: the whole item (ClassSize of its Alloc) is
  // addressable through the pointer, contiguous.
  absl::StatusOr<vm::Pin<char>> Pin(Addr item, vm::Access access);

  // Blobs of any size up to kMaxBlob: one item up to kMaxItem, else chunks + index.
  // An empty blob is one item of the smallest class (a non-null address, to be
  // freed like any other: empty and absent stay distinct). InvalidArgument beyond
  // kMaxBlob; ResourceExhausted when space runs out (as Alloc); DataLoss or
  // ResourceExhausted from a pin (as Map::Pin). On error nothing is left allocated
  // (invariant 3).
  absl::StatusOr<Addr> StoreBlob(absl::string_view bytes, bool from_reserve = false);
  // Copies the blob (stored with `length` bytes) into `out`, one pin at a time.
  // Errors as Map::Pin (DataLoss for a page that failed its checksum).
  absl::Status LoadBlob(Addr blob, size_t length, char* out);
  // Frees the blob stored with `length` bytes. If the index of a multi-item blob
  // cannot be read (EIO), its chunks are leaked, never freed blindly.
  void FreeBlob(Addr blob, size_t length);

  // The size class that Alloc(bytes) uses, in bytes. REQUIRES: bytes <= kMaxItem
  // (0 counts as 1).
  static size_t ClassSize(size_t bytes);
  // Every class, ascending.
  static std::vector<size_t> ClassSizes();

  // Gives back the pools' empty pages beyond each pool's kept count (or beyond
  // `keep` per pool); returns the pages given back.
  uint64_t Reap();
  uint64_t Reap(uint32_t keep);

  uint64_t pages_in_use() const;       // pool pages over all classes
  uint64_t page_bytes_in_use() const;  // their bytes
  uint64_t items_in_use() const;       // items over all classes
  uint64_t bookkeeping_bytes() const;

 private:
  // A pool's address range, for PoolOf.
  struct PoolRange {
    Addr base;
    Pool* pool;
  };

  Kmem() = default;
  static size_t ClassIndex(size_t bytes);
  Pool& PoolOf(Addr item) const;
  // Frees the items of a multi-item blob whose chunk addresses are known.
  void FreeChunks(const Addr* chunks, size_t chunk_count, size_t length);

  std::vector<std::unique_ptr<Pool>> pools_;  // one per class, in class order
  std::vector<PoolRange> ranges_;             // sorted by base
};

}  // namespace ptmpfs::meta

#endif  // PTMPFS_META_KMEM_H_
