// address_space: maps of pageable virtual addresses, and submaps carved from them.
//
// Theory (UVM's kernel_map and uvm_km_suballoc; seed 000). ptmpfs's metadata lives
// at addresses of a private 64-bit space that no hardware translates: a Map's
// addresses come from its vmem arena (allocation of address space), and its page
// table says where each page is (fault handling) — the two concerns are separate
// (seed 001). A submap is a range of its parent reserved once, generously (only
// touched pages cost), with its own arena, page table and page size: meta/'s pools
// of 4 KiB pages and of 16 KiB pages each have one. A pageable submap's pages go to
// swap under pressure; a wired one's are resident and wired from Alloc to Free.
//
// Invariants.
//  1. A map's range lies inside its parent's and is disjoint from its siblings'.
//  2. Every page of an allocated range is charged (vm.h, invariant 3) from Alloc
//     until Free; addresses outside allocated ranges have no page.
//  3. A Map outlives its submaps and every pin on it.
//
// Locking. The arena and the page table lock themselves; pins take no map lock.
#ifndef PTMPFS_VM_ADDRESS_SPACE_H_
#define PTMPFS_VM_ADDRESS_SPACE_H_

#include <atomic>
#include <cassert>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "vm/page_table.h"
#include "vm/pin.h"
#include "vm/vm.h"
#include "vm/vmem.h"

namespace ptmpfs::vm {

class Map {
 public:
  // The whole address space: [base, base + size), pages of one frame. base must
  // not be 0 (0 is everyone's null address).
  static absl::StatusOr<std::unique_ptr<Map>> CreateAddressSpace(Vm& vm, uint64_t base,
                                                                 uint64_t size);
  // Frees every page still allocated and gives the range back to the parent.
  // REQUIRES: no pins and no submaps left.
  ~Map();
  Map(const Map&) = delete;
  Map& operator=(const Map&) = delete;

  // A submap of `size` bytes (rounded up to its page size) with pages of
  // 2^page_order frames. ResourceExhausted when this map has no such range left.
  absl::StatusOr<std::unique_ptr<Map>> Suballoc(std::string name, uint64_t size, int page_order,
                                                bool pageable);

  // Allocates `bytes` (rounded up to pages) of address space and charges its pages,
  // zero-filled on demand (wired maps: resident now). ResourceExhausted when the
  // range or the space (ENOSPC) is short; nothing is left allocated then.
  absl::StatusOr<uint64_t> Alloc(uint64_t bytes, bool from_reserve = false);
  // Frees the pages (frames and swap slots, no page-in) and the range.
  // REQUIRES: [address, address+bytes) came from Alloc with this size; no pins on it.
  void Free(uint64_t address, uint64_t bytes);

  // For a pageable map whose owner numbers its pages itself (a meta/ pool): as Alloc,
  // but at `address` (page-aligned), without the arena, so a page costs no boundary
  // tag (a tag and its hash bucket are about 70 bytes: 3x a pool's whole header for
  // the page). The owner never uses Alloc or Free on such a map, never places a range
  // it holds already, and frees what it placed with FreeAt.
  absl::Status AllocAt(uint64_t address, uint64_t bytes, bool from_reserve = false);
  void FreeAt(uint64_t address, uint64_t bytes);

  // Pins the T at `address`. REQUIRES: the T lies within one page of an allocated
  // range. Errors as Vm::Wire (DataLoss for a page that failed its checksum).
  template <typename T>
  absl::StatusOr<Pin<T>> Pin(uint64_t address, Access access) {
    assert(Contains(address) && ((address - base_) & page_mask_) + sizeof(T) <= page_bytes_);
    absl::StatusOr<FrameNumber> frame = vm_.Wire(table_, (address - base_) >> page_shift_, access);
    if (!frame.ok()) return frame.status();
    return vm::Pin<T>(&vm_, *frame,
                      reinterpret_cast<T*>(vm_.frames().Address(*frame) +
                                           ((address - base_) & page_mask_)));
  }

  bool Contains(uint64_t address) const { return address - base_ < size_; }
  uint64_t base() const { return base_; }
  uint64_t size() const { return size_; }
  uint64_t page_bytes() const { return page_bytes_; }
  bool pageable() const { return pageable_; }
  const std::string& name() const { return name_; }
  Vm& vm() const { return vm_; }
  uint64_t allocated_bytes() const {
    return arena_.InUseBytes() + placed_bytes_.load(std::memory_order_relaxed);
  }
  const PageTable& page_table() const { return table_; }

 private:
  Map(Vm& vm, Map* parent, std::string name, uint64_t base, uint64_t size, int page_order,
      bool pageable);

  Vm& vm_;
  Map* const parent_;  // null for the address space
  const std::string name_;
  const uint64_t base_;
  const uint64_t size_;
  const int page_shift_;
  const uint64_t page_bytes_;
  const uint64_t page_mask_;
  const bool pageable_;
  Vmem arena_;
  PageTable table_;
  std::atomic<uint64_t> placed_bytes_{0};  // by AllocAt, less FreeAt
};

}  // namespace ptmpfs::vm

#endif  // PTMPFS_VM_ADDRESS_SPACE_H_
