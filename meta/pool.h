// pool: fixed-size items in pool pages of pageable memory (seeds 000 and 003).
//
// Theory. A pool hands out items of one size from pool pages that live in a
// pageable submap of its own. Each page's header (free bitmap, count of items in
// use, list links) is kept OFF the page, in resident memory, so getting an item
// never faults a page in to find a free slot, and putting one never faults, never
// blocks and never allocates: it clears a bit (seed 003: pool_put must not block).
// Empty pages are given back lazily, by the allocation path or by Reap(), releasing
// their address space, frames and swap slots (Map::Free). Two page sizes: one
// frame, or four frames on an aligned contiguous run (order 2), so that large items
// waste little and are still one pointer under one pin.
// Allocation prefers partly full pages that are resident, so a burst of creates does
// not fault in cold pages just to fill their holes: it looks at the PTE of the first
// few pages of the partly-full list (never walks the list), then at the kept empty
// pages, and only then takes a cold page (one fault, later, when the item is
// pinned) before it allocates a new one.
//
// Items are not zeroed by Get(): an item on a new page reads as zeros (pages are
// zero-filled on demand), a reused one holds whatever its last owner left.
//
// An item's address is its identity: Number(addr) and AddressOf(number) convert
// between it and a dense item number in O(1) with no table (inode numbers come
// from this): number = page_index * items_per_page + slot, where page_index is the
// page's number within the submap.
//
// Bookkeeping (pool.cc). Headers live in chunks of 64 consecutive pages, allocated
// when Get() installs the first page of a chunk and freed when the last page of a
// chunk is given back (both in Get/Reap, never in Put). A page costs
// 12 + 8 * ceil(items_per_page / 64) bytes (links, count, state; bitmap) plus its
// share of its chunk and of the chunk table, under 1 byte: measured, 21 bytes per
// page for items of 64 bytes or more (0.51% of a 4 KiB page, 0.13% of a 16 KiB one),
// 29 for 32-byte items (0.71%); by arithmetic 44 for 16-byte items (1.1%), 76 for
// 8-byte ones (1.9%). The submap's page table (vm/, about 9 bytes per page) is not
// counted here. The pool numbers its pages itself and places them in its submap with
// Map::AllocAt, not through the submap's vmem arena, whose boundary tag and hash
// bucket per allocated page (about 70 bytes) cost more than the rest together; a
// number given back waits for reuse on a stack (4 bytes per page given back).
//
// Invariants.
//  1. A header is installed for every page of the submap that the pool holds
//     (full, partly full, or empty and kept); its bitmap has a bit set for each item
//     handed out (and for the padding bits past items_per_page), and its count is
//     the number of items handed out; items_in_use() is their sum.
//  2. A partly full page is on the partial list, an empty one on the empty list, a
//     full one on neither. Lists are intrusive (links in the headers), so moving a
//     page between them allocates nothing.
//  3. Bookkeeping is resident and proportional to pages: a few bytes per page, never
//     per item beyond one bit.
//  4. Put() touches only resident bookkeeping; Map::Alloc and Map::Free (which may
//     wait for a page's busy bit, i.e. for I/O) are called with mu_ released.
//
// Locking. One mutex per pool guards headers and lists; held briefly, never across
// a fault, I/O, Map::Alloc or Map::Free. Pins of items take no pool lock. The pool
// mutex is a leaf with respect to vm/ locks except the page table's lock-free Find.
#ifndef PTMPFS_META_POOL_H_
#define PTMPFS_META_POOL_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "vm/address_space.h"
#include "vm/pin.h"

namespace ptmpfs::meta {

// An address in the pageable address space; 0 is null.
using Addr = uint64_t;
inline constexpr Addr kNullAddr = 0;

class Pool {
 public:
  struct Options {
    std::string name;
    uint32_t item_size = 64;                 // multiple of 8, at most the page size
    int page_order = 0;                      // 0: 4 KiB pages; 2: 16 KiB pages on aligned runs
    uint64_t max_bytes = uint64_t{1} << 36;  // address space reserved; only used pages cost
    uint32_t empty_pages_kept = 2;           // empty pages kept for reuse before giving back
  };

  // Carves the pool's submap out of `space`. InvalidArgument for an item size that
  // is 0, not a multiple of 8 or larger than a page, a page order beyond
  // vm::kMaxOrder, or a max_bytes of 2^32 pages or more.
  static absl::StatusOr<std::unique_ptr<Pool>> Create(vm::Map& space, const Options& options);
  // Frees every page still held (items still out are freed with them).
  // REQUIRES: no pins on items.
  ~Pool();

  // An item, zero-filled only if its page is new (callers initialise items).
  // ResourceExhausted (ENOSPC) when no page can be charged; `from_reserve` lets
  // operations that free space dip into the accounting reserve. May give back a
  // few excess empty pages first. Never faults.
  absl::StatusOr<Addr> Get(bool from_reserve = false);
  // Returns an item. Never faults, blocks on I/O or allocates (invariant 4).
  // REQUIRES: `item` came from Get() and is not pinned. A Put of an item that is not
  // handed out aborts (it would give one item to two owners).
  void Put(Addr item);
  // Gives back empty pages beyond empty_pages_kept (or beyond `keep`); returns how
  // many were given back.
  uint64_t Reap();
  uint64_t Reap(uint32_t keep);

  // REQUIRES: `item` is live and the T lies within its page.
  template <typename T>
  absl::StatusOr<vm::Pin<T>> Pin(Addr item, vm::Access access) {
    return map_->Pin<T>(item, access);
  }

  // Dense numbering of item slots, O(1) both ways, no table.
  // REQUIRES (Number): Contains(item) and item is the start of a slot.
  uint64_t Number(Addr item) const;
  // REQUIRES: number < (max_bytes / page_bytes) * items_per_page.
  Addr AddressOf(uint64_t number) const;
  // True if `item` is the address of an item slot of this pool that is handed out
  // (for handles that may name freed items: they must not be pinned). Never pins,
  // never faults; takes the pool mutex.
  bool IsLive(Addr item) const;

  // Item slots the pool's address range has room for: numbers run below this.
  uint64_t item_capacity() const { return map_->size() / map_->page_bytes() * items_per_page_; }
  uint32_t item_size() const { return item_size_; }
  uint32_t items_per_page() const { return items_per_page_; }
  uint64_t page_bytes() const { return map_->page_bytes(); }
  uint64_t pages_in_use() const;  // pages held: full, partly full and empty kept
  uint64_t empty_pages() const;   // of which empty (given back by Get/Reap)
  uint64_t items_in_use() const;
  uint64_t bookkeeping_bytes() const;  // resident bytes of headers and lists
  // Checks invariants 1 and 2 by walking every header and list (tests): Internal
  // with the reason on the first violation.
  absl::Status CheckConsistency() const;
  vm::Map& map() { return *map_; }
  bool Contains(Addr address) const { return map_->Contains(address); }

 private:
  struct Impl;
  Pool(std::unique_ptr<vm::Map> map, const Options& options);
  std::unique_ptr<vm::Map> map_;
  const uint32_t item_size_;
  const uint32_t items_per_page_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ptmpfs::meta

#endif  // PTMPFS_META_POOL_H_
