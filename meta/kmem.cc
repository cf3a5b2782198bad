#include "meta/kmem.h"

#include <algorithm>
#include <array>
#include <cassert>
#include <cstring>

#include "absl/strings/str_format.h"

namespace ptmpfs::meta {

namespace {

// The size classes. A class's cost per item is page_bytes / items_per_page, so each
// class is the largest multiple of 8 that still fits its number of items per page
// (e.g. 5456 = 16384 / 3 rounded down to 8): a smaller class with the same count
// would cost as much and hold less. Successive classes are close enough that a
// request just above a class wastes at most ~20% of its item's share of the page
// (the worst: 1024 -> 817 bytes, 20.2%; 4096 -> 3273, 20.1%), the tail of every
// page at most 2.3% (160-byte items: 25 per page, 96 bytes left). Exceptions, by
// arithmetic rather than choice: below 32 bytes the 8-byte granule dominates (17
// bytes in a 24-byte item, 7 bytes lost), and above 5456 a 16 KiB page holds 2
// items or 1, so 5457..8192 bytes waste up to 33% and 8193..16384 up to 50%
// whatever the classes; such blobs are rare (large xattr values), and a blob above
// kMaxItem pays it only on its last chunk.
//
// Up to 1 KiB the items come from 4 KiB pages (at most 4 to a page, tails under
// 2.3%); above, from 16 KiB pages on aligned runs, which hold 13 items of 1256 bytes
// where a 4 KiB page would hold 3 of 1360 with 17% of it unused. The exception is
// 4096: one item fills a 4 KiB page exactly, and directory nodes, the commonest
// items of that size, then wire and fault one frame each instead of four.
struct SizeClass {
  uint32_t size;
  int page_order;
};
constexpr std::array<SizeClass, 35> kClasses = {{
    {16, 0},   {24, 0},   {32, 0},   {40, 0},   {48, 0},   {56, 0},   {64, 0},
    {80, 0},   {96, 0},   {112, 0},  {128, 0},  {160, 0},  {192, 0},  {224, 0},
    {256, 0},  {288, 0},  {336, 0},  {408, 0},  {448, 0},  {512, 0},  {584, 0},
    {680, 0},  {816, 0},  {1024, 0}, {1256, 2}, {1488, 2}, {1816, 2}, {2048, 2},
    {2336, 2}, {2728, 2}, {3272, 2}, {4096, 0}, {5456, 2}, {8192, 2}, {16384, 2},
}};
static_assert(kClasses.back().size == Kmem::kMaxItem);

constexpr bool ClassesAreSortedAndPacked() {
  for (size_t i = 0; i < kClasses.size(); ++i) {
    const uint64_t page = vm::kPageSize << kClasses[i].page_order;
    if (kClasses[i].size % 8 != 0 || kClasses[i].size > page) return false;
    if (i > 0 && kClasses[i].size <= kClasses[i - 1].size) return false;
    // Packed: one more byte (to the next multiple of 8) would lose an item per page.
    if (page / (kClasses[i].size + 8) == page / kClasses[i].size) return false;
  }
  return true;
}
static_assert(ClassesAreSortedAndPacked());

// Empty pages each pool keeps for reuse: two 4 KiB pages, one 16 KiB page, so all
// classes together keep at most 25 * 8 + 10 * 16 = 360 KiB of idle pages.
uint32_t EmptyPagesKept(int page_order) { return page_order == 0 ? 2 : 1; }

// A blob above kMaxItem: chunks of kMaxItem, the last of what remains.
constexpr size_t kMaxChunks = Kmem::kMaxBlob / Kmem::kMaxItem;
size_t ChunkCount(size_t length) { return (length + Kmem::kMaxItem - 1) / Kmem::kMaxItem; }
size_t ChunkBytes(size_t length, size_t chunk) {
  return std::min(Kmem::kMaxItem, length - chunk * Kmem::kMaxItem);
}

}  // namespace

absl::StatusOr<std::unique_ptr<Kmem>> Kmem::Create(vm::Map& space) {
  std::unique_ptr<Kmem> kmem(new Kmem());
  for (const SizeClass& size_class : kClasses) {
    Pool::Options options;
    options.name = absl::StrFormat("kmem-%d", size_class.size);
    options.item_size = size_class.size;
    options.page_order = size_class.page_order;
    options.empty_pages_kept = EmptyPagesKept(size_class.page_order);
    absl::StatusOr<std::unique_ptr<Pool>> pool = Pool::Create(space, options);
    if (!pool.ok()) return pool.status();
    kmem->ranges_.push_back({(*pool)->map().base(), pool->get()});
    kmem->pools_.push_back(*std::move(pool));
  }
  std::sort(kmem->ranges_.begin(), kmem->ranges_.end(),
            [](const PoolRange& a, const PoolRange& b) { return a.base < b.base; });
  return kmem;
}

Kmem::~Kmem() = default;

size_t Kmem::ClassIndex(size_t bytes) {
  assert(bytes <= kMaxItem);
  const auto found = std::lower_bound(
      kClasses.begin(), kClasses.end(), bytes,
      [](const SizeClass& size_class, size_t wanted) { return size_class.size < wanted; });
  return static_cast<size_t>(found - kClasses.begin());
}

size_t Kmem::ClassSize(size_t bytes) { return kClasses[ClassIndex(bytes)].size; }

std::vector<size_t> Kmem::ClassSizes() {
  std::vector<size_t> sizes;
  for (const SizeClass& size_class : kClasses) sizes.push_back(size_class.size);
  return sizes;
}

Pool& Kmem::PoolOf(Addr item) const {
  // The last range starting at or below `item`; pools' submaps are disjoint.
  const auto after =
      std::upper_bound(ranges_.begin(), ranges_.end(), item,
                       [](Addr address, const PoolRange& range) { return address < range.base; });
  assert(after != ranges_.begin());
  Pool& pool = *std::prev(after)->pool;
  assert(pool.Contains(item));
  return pool;
}

absl::StatusOr<Addr> Kmem::Alloc(size_t bytes, bool from_reserve) {
  if (bytes == 0 || bytes > kMaxItem) {
    return absl::InvalidArgumentError(
        absl::StrFormat("kmem: item of %d bytes is outside (0, %d]", bytes, kMaxItem));
  }
  return pools_[ClassIndex(bytes)]->Get(from_reserve);
}

void Kmem::Free(Addr item, size_t bytes) {
  assert(bytes > 0 && bytes <= kMaxItem);
  Pool& pool = *pools_[ClassIndex(bytes)];
  assert(&pool == &PoolOf(item));
  pool.Put(item);
}

absl::StatusOr<vm::Pin<char>> Kmem::Pin(Addr item, vm::Access access) {
  return PoolOf(item).Pin<char>(item, access);
}

absl::StatusOr<Addr> Kmem::StoreBlob(absl::string_view bytes, bool from_reserve) {
  const size_t length = bytes.size();
  if (length > kMaxBlob) {
    return absl::InvalidArgumentError(
        absl::StrFormat("kmem: blob of %d bytes is over %d", length, kMaxBlob));
  }
  if (length <= kMaxItem) {
    absl::StatusOr<Addr> item = Alloc(std::max<size_t>(length, 1), from_reserve);
    if (!item.ok()) return item.status();
    if (length == 0) return *item;
    absl::StatusOr<vm::Pin<char>> pin = Pin(*item, vm::Access::kWrite);
    if (!pin.ok()) {
      Free(*item, length);
      return pin.status();
    }
    std::memcpy(pin->get(), bytes.data(), length);
    return *item;
  }

  // Every item first (invariant 3), then the copies, one pin at a time.
  const size_t chunk_count = ChunkCount(length);
  Addr chunks[kMaxChunks];
  for (size_t chunk = 0; chunk < chunk_count; ++chunk) {
    absl::StatusOr<Addr> item = Alloc(ChunkBytes(length, chunk), from_reserve);
    if (!item.ok()) {
      FreeChunks(chunks, chunk, length);
      return item.status();
    }
    chunks[chunk] = *item;
  }
  const size_t index_bytes = chunk_count * sizeof(Addr);
  absl::StatusOr<Addr> index = Alloc(index_bytes, from_reserve);
  if (!index.ok()) {
    FreeChunks(chunks, chunk_count, length);
    return index.status();
  }
  absl::Status copied = [&]() -> absl::Status {
    {
      absl::StatusOr<vm::Pin<char>> pin = Pin(*index, vm::Access::kWrite);
      if (!pin.ok()) return pin.status();
      std::memcpy(pin->get(), chunks, index_bytes);
    }
    for (size_t chunk = 0; chunk < chunk_count; ++chunk) {
      absl::StatusOr<vm::Pin<char>> pin = Pin(chunks[chunk], vm::Access::kWrite);
      if (!pin.ok()) return pin.status();
      std::memcpy(pin->get(), bytes.data() + chunk * kMaxItem, ChunkBytes(length, chunk));
    }
    return absl::OkStatus();
  }();
  if (!copied.ok()) {
    FreeChunks(chunks, chunk_count, length);
    Free(*index, index_bytes);
    return copied;
  }
  return *index;
}

absl::Status Kmem::LoadBlob(Addr blob, size_t length, char* out) {
  assert(length <= kMaxBlob);
  if (length <= kMaxItem) {
    if (length == 0) return absl::OkStatus();
    absl::StatusOr<vm::Pin<char>> pin = Pin(blob, vm::Access::kRead);
    if (!pin.ok()) return pin.status();
    std::memcpy(out, pin->get(), length);
    return absl::OkStatus();
  }
  const size_t chunk_count = ChunkCount(length);
  Addr chunks[kMaxChunks];
  {
    absl::StatusOr<vm::Pin<char>> pin = Pin(blob, vm::Access::kRead);
    if (!pin.ok()) return pin.status();
    std::memcpy(chunks, pin->get(), chunk_count * sizeof(Addr));
  }
  for (size_t chunk = 0; chunk < chunk_count; ++chunk) {
    absl::StatusOr<vm::Pin<char>> pin = Pin(chunks[chunk], vm::Access::kRead);
    if (!pin.ok()) return pin.status();
    std::memcpy(out + chunk * kMaxItem, pin->get(), ChunkBytes(length, chunk));
  }
  return absl::OkStatus();
}

void Kmem::FreeBlob(Addr blob, size_t length) {
  assert(length <= kMaxBlob);
  if (length <= kMaxItem) {
    Free(blob, std::max<size_t>(length, 1));
    return;
  }
  const size_t chunk_count = ChunkCount(length);
  Addr chunks[kMaxChunks];
  {
    absl::StatusOr<vm::Pin<char>> pin = Pin(blob, vm::Access::kRead);
    if (!pin.ok()) {
      // The chunks' addresses are lost with the index page: leak them rather than
      // free items someone else may hold.
      Free(blob, chunk_count * sizeof(Addr));
      return;
    }
    std::memcpy(chunks, pin->get(), chunk_count * sizeof(Addr));
  }
  FreeChunks(chunks, chunk_count, length);
  Free(blob, chunk_count * sizeof(Addr));
}

void Kmem::FreeChunks(const Addr* chunks, size_t chunk_count, size_t length) {
  for (size_t chunk = 0; chunk < chunk_count; ++chunk) {
    Free(chunks[chunk], ChunkBytes(length, chunk));
  }
}

uint64_t Kmem::Reap() {
  uint64_t given_back = 0;
  for (const std::unique_ptr<Pool>& pool : pools_) given_back += pool->Reap();
  return given_back;
}

uint64_t Kmem::Reap(uint32_t keep) {
  uint64_t given_back = 0;
  for (const std::unique_ptr<Pool>& pool : pools_) given_back += pool->Reap(keep);
  return given_back;
}

uint64_t Kmem::pages_in_use() const {
  uint64_t pages = 0;
  for (const std::unique_ptr<Pool>& pool : pools_) pages += pool->pages_in_use();
  return pages;
}

uint64_t Kmem::page_bytes_in_use() const {
  uint64_t bytes = 0;
  for (const std::unique_ptr<Pool>& pool : pools_)
    bytes += pool->pages_in_use() * pool->page_bytes();
  return bytes;
}

uint64_t Kmem::items_in_use() const {
  uint64_t items = 0;
  for (const std::unique_ptr<Pool>& pool : pools_) items += pool->items_in_use();
  return items;
}

uint64_t Kmem::bookkeeping_bytes() const {
  uint64_t bytes = sizeof(Kmem) + pools_.capacity() * sizeof(pools_[0]) +
                   ranges_.capacity() * sizeof(ranges_[0]);
  for (const std::unique_ptr<Pool>& pool : pools_)
    bytes += sizeof(Pool) + pool->bookkeeping_bytes();
  return bytes;
}

}  // namespace ptmpfs::meta
