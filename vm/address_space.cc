#include "vm/address_space.h"

#include <vector>

#include "absl/strings/str_format.h"

namespace ptmpfs::vm {

namespace {

Vmem::Options ArenaOptions(const std::string& name, uint64_t page_bytes) {
  Vmem::Options options;
  options.name = name;
  options.quantum = page_bytes;
  // Pools take and give back single pages all the time: cache up to 4 pages.
  options.qcache_max = 4 * page_bytes;
  return options;
}

}  // namespace

Map::Map(Vm& vm, Map* parent, std::string name, uint64_t base, uint64_t size, int page_order,
         bool pageable)
    : vm_(vm),
      parent_(parent),
      name_(std::move(name)),
      base_(base),
      size_(size),
      page_shift_(kPageShift + page_order),
      page_bytes_(uint64_t{1} << page_shift_),
      page_mask_(page_bytes_ - 1),
      pageable_(pageable),
      arena_(ArenaOptions(name_, page_bytes_)),
      table_(page_order) {}

absl::StatusOr<std::unique_ptr<Map>> Map::CreateAddressSpace(Vm& vm, uint64_t base,
                                                             uint64_t size) {
  if (base == 0 || (base & (kPageSize - 1)) != 0 || size == 0 || (size & (kPageSize - 1)) != 0) {
    return absl::InvalidArgumentError("address space must be page-aligned, non-empty, not at 0");
  }
  std::unique_ptr<Map> map(new Map(vm, nullptr, "address space", base, size, 0, true));
  if (absl::Status added = map->arena_.AddSpan(base, size); !added.ok()) return added;
  return map;
}

absl::StatusOr<std::unique_ptr<Map>> Map::Suballoc(std::string name, uint64_t size,
                                                   int page_order, bool pageable) {
  if (page_order < 0 || page_order > kMaxOrder) {
    return absl::InvalidArgumentError(absl::StrFormat("page order %d out of range", page_order));
  }
  const uint64_t page = kPageSize << page_order;
  size = (size + page - 1) & ~(page - 1);
  absl::StatusOr<uint64_t> base = arena_.XAlloc(size, std::max(page, page_bytes_));
  if (!base.ok()) return base.status();
  std::unique_ptr<Map> map(new Map(vm_, this, std::move(name), *base, size, page_order, pageable));
  if (absl::Status added = map->arena_.AddSpan(*base, size); !added.ok()) {
    arena_.Free(*base, size);
    return added;
  }
  return map;
}

Map::~Map() {
  // Pages still allocated are freed with the map; wired ones drop their wire first.
  if (!pageable_) {
    table_.ForEachPopulated(0, size_ >> page_shift_, [&](PageIndex, Entry& entry) {
      uint64_t pte = entry.load(std::memory_order_acquire);
      if (Pte::KindOf(pte) == Pte::kResident) {
        vm_.Unwire(static_cast<FrameNumber>(Pte::Payload(pte)));
      }
    });
  }
  vm_.FreePages(table_, 0, size_ >> page_shift_);
  if (parent_ != nullptr) parent_->arena_.Free(base_, size_);
}

absl::StatusOr<uint64_t> Map::Alloc(uint64_t bytes, bool from_reserve) {
  bytes = (bytes + page_mask_) & ~page_mask_;
  absl::StatusOr<uint64_t> address = arena_.Alloc(bytes);
  if (!address.ok()) return address.status();
  const PageIndex first = (*address - base_) >> page_shift_;
  const uint64_t pages = bytes >> page_shift_;
  if (absl::Status charged = vm_.AllocatePages(table_, first, pages, from_reserve);
      !charged.ok()) {
    arena_.Free(*address, bytes);
    return charged;
  }
  if (!pageable_) {
    // Wired: bring every page in now and keep the wire until Free.
    for (PageIndex index = first; index < first + pages; ++index) {
      absl::StatusOr<FrameNumber> frame = vm_.Wire(table_, index, Access::kWrite);
      if (!frame.ok()) {
        for (PageIndex undo = first; undo < index; ++undo) {
          uint64_t pte = table_.Find(undo)->load(std::memory_order_acquire);
          vm_.Unwire(static_cast<FrameNumber>(Pte::Payload(pte)));
        }
        vm_.FreePages(table_, first, pages);
        arena_.Free(*address, bytes);
        return frame.status();
      }
    }
  }
  return *address;
}

void Map::Free(uint64_t address, uint64_t bytes) {
  bytes = (bytes + page_mask_) & ~page_mask_;
  assert(Contains(address) && bytes <= size_ - (address - base_));
  const PageIndex first = (address - base_) >> page_shift_;
  const uint64_t pages = bytes >> page_shift_;
  if (!pageable_) {
    for (PageIndex index = first; index < first + pages; ++index) {
      uint64_t pte = table_.Find(index)->load(std::memory_order_acquire);
      vm_.Unwire(static_cast<FrameNumber>(Pte::Payload(pte)));
    }
  }
  vm_.FreePages(table_, first, pages);
  arena_.Free(address, bytes);
}

absl::Status Map::AllocAt(uint64_t address, uint64_t bytes, bool from_reserve) {
  assert(pageable_ && ((address - base_) & page_mask_) == 0);
  bytes = (bytes + page_mask_) & ~page_mask_;
  if (!Contains(address) || bytes > size_ - (address - base_)) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "%s: no room for %d bytes at offset %d of %d", name_, bytes, address - base_, size_));
  }
  absl::Status charged =
      vm_.AllocatePages(table_, (address - base_) >> page_shift_, bytes >> page_shift_,
                        from_reserve);
  if (charged.ok()) placed_bytes_.fetch_add(bytes, std::memory_order_relaxed);
  return charged;
}

void Map::FreeAt(uint64_t address, uint64_t bytes) {
  bytes = (bytes + page_mask_) & ~page_mask_;
  assert(pageable_ && Contains(address) && bytes <= size_ - (address - base_));
  vm_.FreePages(table_, (address - base_) >> page_shift_, bytes >> page_shift_);
  placed_bytes_.fetch_sub(bytes, std::memory_order_relaxed);
}

}  // namespace ptmpfs::vm
