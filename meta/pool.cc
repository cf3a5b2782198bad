#include "meta/pool.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cassert>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <tuple>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "vm/frames.h"
#include "vm/page_table.h"

namespace ptmpfs::meta {

namespace {

using PageNumber = uint32_t;  // page index within the submap
constexpr PageNumber kNoPage = UINT32_MAX;

// Headers are grouped in chunks of this many consecutive pages: small enough that a
// pool's last, partly used chunk is little slack (one chunk of 64-byte items is
// 1.3 KiB), large enough that the table of chunks is a fraction of a byte per page.
constexpr uint32_t kPagesPerChunk = 64;

// Get() looks at the PTEs of this many pages at the head of a list for a resident
// one: a handful of lock-free loads, never a walk of the list.
constexpr int kResidencyProbes = 4;

// Get() gives back at most this many excess empty pages per call, so a Get after a
// mass Put does not pay for all of them (Reap() gives back the rest).
constexpr int kGiveBackPerGet = 8;
// Reap() gives back pages in batches of this many, releasing the mutex in between.
constexpr int kGiveBackBatch = 64;

enum class PageState : uint8_t { kAbsent, kFull, kPartial, kEmpty };

// The resident header of one pool page (the bitmap lives beside it in its chunk).
struct PageHeader {
  PageNumber prev = kNoPage;  // links of the partial or empty list
  PageNumber next = kNoPage;
  uint16_t in_use = 0;  // items handed out
  PageState state = PageState::kAbsent;
};
static_assert(sizeof(PageHeader) == 12);

// Divides an offset within a page by the item size with a multiply and a shift:
// with m = ceil(2^32 / d) = (2^32 + e) / d, 0 <= e < d, floor(n * m / 2^32) is
// floor(n / d) whenever n * e < 2^32; n < 2^15 (pages are at most 32 KiB) and
// e < d <= 2^15 make that so.
constexpr uint64_t SlotReciprocal(uint32_t item_size) {
  return ((uint64_t{1} << 32) + item_size - 1) / item_size;
}
static_assert((vm::kPageSize << vm::kMaxOrder) <= (1 << 15), "SlotOf's proof needs n, e < 2^15");
// A page's count of items (at least 8 bytes each) fits PageHeader::in_use.
static_assert((vm::kPageSize << vm::kMaxOrder) / 8 <= UINT16_MAX);

}  // namespace

struct Pool::Impl {
  // Headers and bitmaps of kPagesPerChunk consecutive pages.
  struct Chunk {
    std::array<PageHeader, kPagesPerChunk> headers;
    uint32_t pages = 0;                  // headers not kAbsent
    std::unique_ptr<uint64_t[]> bitmap;  // words_per_page words per page
  };
  // An intrusive doubly linked list of pages through their headers.
  struct List {
    PageNumber head = kNoPage;
    PageNumber tail = kNoPage;
    uint64_t count = 0;
  };

  Impl(vm::Map& map, uint32_t item_size, uint32_t items_per_page, uint32_t empty_pages_kept)
      : map(map),
        base(map.base()),
        page_shift(std::countr_zero(map.page_bytes())),
        page_mask(map.page_bytes() - 1),
        item_size(item_size),
        items_per_page(items_per_page),
        words_per_page((items_per_page + 63) / 64),
        slot_reciprocal(SlotReciprocal(item_size)),
        empty_pages_kept(empty_pages_kept),
        max_pages(static_cast<PageNumber>(
            std::min<uint64_t>(map.size() >> std::countr_zero(map.page_bytes()), kNoPage))) {}

  // ---- Immutable after construction (read without mu) ----
  vm::Map& map;
  const uint64_t base;
  const int page_shift;
  const uint64_t page_mask;
  const uint32_t item_size;
  const uint32_t items_per_page;
  const uint32_t words_per_page;
  const uint64_t slot_reciprocal;
  const uint32_t empty_pages_kept;
  const PageNumber max_pages;  // the submap's

  mutable absl::Mutex mu;
  // Page numbers: the pool places its pages in its submap itself (Map::AllocAt), so
  // a page costs no vmem boundary tag. Numbers below next_fresh that were given back
  // are reused first (last given back, first reused).
  PageNumber next_fresh ABSL_GUARDED_BY(mu) = 0;
  std::vector<PageNumber> given_back ABSL_GUARDED_BY(mu);
  std::vector<std::unique_ptr<Chunk>> chunks ABSL_GUARDED_BY(mu);  // null: no page held
  List partial ABSL_GUARDED_BY(mu);
  List empty ABSL_GUARDED_BY(mu);
  uint64_t pages ABSL_GUARDED_BY(mu) = 0;
  uint64_t items ABSL_GUARDED_BY(mu) = 0;

  uint64_t chunk_bytes() const {
    return sizeof(Chunk) + sizeof(uint64_t) * words_per_page * kPagesPerChunk;
  }
  uint32_t SlotOf(uint64_t offset_in_page) const {
    return static_cast<uint32_t>((offset_in_page * slot_reciprocal) >> 32);
  }
  Addr PageAddress(PageNumber page) const { return base + (uint64_t{page} << page_shift); }
  Addr ItemAddress(PageNumber page, uint32_t slot) const {
    return PageAddress(page) + uint64_t{slot} * item_size;
  }

  // The chunk of `page`, or null if no page of that chunk is held.
  Chunk* ChunkOf(PageNumber page) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    const uint64_t index = page / kPagesPerChunk;
    return index < chunks.size() ? chunks[index].get() : nullptr;
  }
  PageHeader& Header(PageNumber page) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    Chunk* chunk = ChunkOf(page);
    assert(chunk != nullptr);
    return chunk->headers[page % kPagesPerChunk];
  }
  uint64_t* Bitmap(PageNumber page) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    Chunk* chunk = ChunkOf(page);
    assert(chunk != nullptr);
    return &chunk->bitmap[uint64_t{page % kPagesPerChunk} * words_per_page];
  }

  // True if the page is in a frame now: taking an item from it costs no fault.
  // A hint (the pager may evict it a moment later); lock-free.
  bool Resident(PageNumber page) const {
    const vm::Entry* entry = map.page_table().Find(page);
    return entry != nullptr && vm::Pte::IsResidentIdle(entry->load(std::memory_order_relaxed));
  }

  // ---- Lists ----
  void PushHead(List& list, PageNumber page) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    PageHeader& header = Header(page);
    header.prev = kNoPage;
    header.next = list.head;
    if (list.head != kNoPage) {
      Header(list.head).prev = page;
    } else {
      list.tail = page;
    }
    list.head = page;
    ++list.count;
  }
  void Unlink(List& list, PageNumber page) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    PageHeader& header = Header(page);
    assert(list.count > 0);
    if (header.prev != kNoPage) {
      Header(header.prev).next = header.next;
    } else {
      assert(list.head == page);
      list.head = header.next;
    }
    if (header.next != kNoPage) {
      Header(header.next).prev = header.prev;
    } else {
      assert(list.tail == page);
      list.tail = header.prev;
    }
    header.prev = header.next = kNoPage;
    --list.count;
  }

  // The first resident page among the first kResidencyProbes of `list`, moved to
  // the head so the next Get finds it at once; kNoPage if none is resident.
  PageNumber FindResident(List& list) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    PageNumber page = list.head;
    for (int probe = 0; probe < kResidencyProbes && page != kNoPage; ++probe) {
      if (Resident(page)) {
        if (page != list.head) {
          Unlink(list, page);
          PushHead(list, page);
        }
        return page;
      }
      page = Header(page).next;
    }
    return kNoPage;
  }

  // The page the next item comes from, best first: a resident partly full page, a
  // resident empty page, a cold partly full page (filling its holes keeps pages
  // few; its fault happens when the caller pins the item), a cold empty page.
  // kNoPage if the pool has no free slot at all.
  PageNumber ChoosePage() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    if (PageNumber page = FindResident(partial); page != kNoPage) return page;
    if (PageNumber page = FindResident(empty); page != kNoPage) return page;
    if (partial.head != kNoPage) return partial.head;
    return empty.head;
  }

  // Hands out the first free slot of `page`, which must have one.
  Addr TakeSlot(PageNumber page) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    PageHeader& header = Header(page);
    assert(header.state == PageState::kPartial || header.state == PageState::kEmpty);
    uint64_t* words = Bitmap(page);
    uint32_t word = 0;
    while (words[word] == ~uint64_t{0}) ++word;  // padding bits are set: stops in range
    assert(word < words_per_page);
    const int bit = std::countr_one(words[word]);
    words[word] |= uint64_t{1} << bit;
    const uint32_t slot = word * 64 + bit;
    assert(slot < items_per_page);
    if (header.state == PageState::kEmpty) {
      Unlink(empty, page);
      header.state = PageState::kPartial;
      PushHead(partial, page);
    }
    ++header.in_use;
    ++items;
    if (header.in_use == items_per_page) {
      Unlink(partial, page);
      header.state = PageState::kFull;
    }
    return ItemAddress(page, slot);
  }

  // Installs a header for a page just allocated from the map, with no item out.
  void InstallPage(PageNumber page) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    const uint64_t chunk_index = page / kPagesPerChunk;
    if (chunk_index >= chunks.size()) chunks.resize(chunk_index + 1);
    std::unique_ptr<Chunk>& chunk = chunks[chunk_index];
    if (chunk == nullptr) {
      chunk = std::make_unique<Chunk>();
      chunk->bitmap = std::make_unique<uint64_t[]>(uint64_t{words_per_page} * kPagesPerChunk);
    }
    PageHeader& header = chunk->headers[page % kPagesPerChunk];
    assert(header.state == PageState::kAbsent);
    header = PageHeader{};
    header.state = PageState::kEmpty;
    uint64_t* words = Bitmap(page);
    for (uint32_t word = 0; word < words_per_page; ++word) words[word] = 0;
    // Padding bits past the last slot stay set: TakeSlot never finds them free.
    if (const uint32_t used = items_per_page % 64; used != 0) {
      words[words_per_page - 1] = ~uint64_t{0} << used;
    }
    ++chunk->pages;
    ++pages;
    PushHead(empty, page);
  }

  // Takes up to `max` empty pages beyond `keep` off the empty list, coldest first
  // (the tail: emptied longest ago), forgets them, and stores their addresses in
  // `out` for the caller to give back with mu released. Returns how many.
  int DetachExcessEmpty(uint64_t keep, Addr* out, int max) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    int detached = 0;
    while (empty.count > keep && detached < max) {
      const PageNumber page = empty.tail;
      Unlink(empty, page);
      Header(page).state = PageState::kAbsent;
      --pages;
      const uint64_t chunk_index = page / kPagesPerChunk;
      if (--chunks[chunk_index]->pages == 0) chunks[chunk_index].reset();
      out[detached++] = PageAddress(page);
    }
    return detached;
  }

  // Frees pages detached by DetachExcessEmpty: frames, swap slots, address space.
  // REQUIRES: mu not held (Map::Free may wait for a page being paged out).
  // Their numbers become reusable only once the pages are freed.
  void GiveBack(const Addr* pages_to_free, int count) ABSL_LOCKS_EXCLUDED(mu) {
    if (count == 0) return;
    for (int i = 0; i < count; ++i) map.FreeAt(pages_to_free[i], map.page_bytes());
    absl::MutexLock lock(&mu);
    for (int i = 0; i < count; ++i) {
      given_back.push_back(static_cast<PageNumber>((pages_to_free[i] - base) >> page_shift));
    }
  }

  // The slow path of Get: a new page from the map, its first item handed out.
  absl::StatusOr<Addr> GetFromNewPage(bool from_reserve) ABSL_LOCKS_EXCLUDED(mu) {
    PageNumber page;
    {
      absl::MutexLock lock(&mu);
      if (!given_back.empty()) {
        page = given_back.back();
        given_back.pop_back();
      } else if (next_fresh < max_pages) {
        page = next_fresh++;
      } else {
        return absl::ResourceExhaustedError(
            absl::StrFormat("pool %s: all %d pages of its submap are in use", map.name(),
                            max_pages));
      }
    }
    // The number is this thread's alone until it is installed or handed back.
    absl::Status placed = map.AllocAt(PageAddress(page), map.page_bytes(), from_reserve);
    absl::MutexLock lock(&mu);
    if (!placed.ok()) {
      given_back.push_back(page);
      return placed;
    }
    InstallPage(page);
    return TakeSlot(page);
  }
};

absl::StatusOr<std::unique_ptr<Pool>> Pool::Create(vm::Map& space, const Options& options) {
  if (options.page_order < 0 || options.page_order > vm::kMaxOrder) {
    return absl::InvalidArgumentError(
        absl::StrFormat("pool %s: page order %d out of range", options.name, options.page_order));
  }
  const uint64_t page_bytes = vm::kPageSize << options.page_order;
  if (options.item_size == 0 || options.item_size % 8 != 0 || options.item_size > page_bytes) {
    return absl::InvalidArgumentError(
        absl::StrFormat("pool %s: item size %d is not a multiple of 8 in (0, %d]", options.name,
                        options.item_size, page_bytes));
  }
  if (options.max_bytes == 0 || options.max_bytes / page_bytes >= kNoPage) {
    return absl::InvalidArgumentError(
        absl::StrFormat("pool %s: max_bytes %d must be at least a page and under 2^32 pages",
                        options.name, options.max_bytes));
  }
  absl::StatusOr<std::unique_ptr<vm::Map>> map =
      space.Suballoc(options.name, options.max_bytes, options.page_order, /*pageable=*/true);
  if (!map.ok()) return map.status();
  return std::unique_ptr<Pool>(new Pool(*std::move(map), options));
}

Pool::Pool(std::unique_ptr<vm::Map> map, const Options& options)
    : map_(std::move(map)),
      item_size_(options.item_size),
      items_per_page_(static_cast<uint32_t>(map_->page_bytes() / options.item_size)),
      impl_(std::make_unique<Impl>(*map_, item_size_, items_per_page_, options.empty_pages_kept)) {}

// The map's destructor frees every page still allocated, kept or not.
Pool::~Pool() = default;

absl::StatusOr<Addr> Pool::Get(bool from_reserve) {
  Impl& impl = *impl_;
  Addr item = kNullAddr;
  Addr excess[kGiveBackPerGet];
  int excess_count;
  {
    absl::MutexLock lock(&impl.mu);
    if (const PageNumber page = impl.ChoosePage(); page != kNoPage) item = impl.TakeSlot(page);
    excess_count = impl.DetachExcessEmpty(impl.empty_pages_kept, excess, kGiveBackPerGet);
  }
  impl.GiveBack(excess, excess_count);
  if (item != kNullAddr) return item;
  return impl.GetFromNewPage(from_reserve);
}

void Pool::Put(Addr item) {
  Impl& impl = *impl_;
  const uint64_t offset = item - impl.base;
  const PageNumber page = static_cast<PageNumber>(offset >> impl.page_shift);
  const uint32_t slot = impl.SlotOf(offset & impl.page_mask);
  const bool slot_start = Contains(item) &&
                          (offset & impl.page_mask) == uint64_t{slot} * item_size_ &&
                          slot < items_per_page_;
  const uint64_t mask = uint64_t{1} << (slot % 64);

  absl::MutexLock lock(&impl.mu);
  Impl::Chunk* chunk = impl.ChunkOf(page);
  uint64_t* word = slot_start && chunk != nullptr ? &impl.Bitmap(page)[slot / 64] : nullptr;
  if (word == nullptr || (*word & mask) == 0 ||
      chunk->headers[page % kPagesPerChunk].state == PageState::kAbsent) [[unlikely]] {
    // Freeing an item twice, or an address that is no item, would hand one item to
    // two owners later: stop here, where the culprit is on the stack.
    std::fprintf(stderr, "pool %s: Put of item %#llx that is not handed out\n",
                 map_->name().c_str(), static_cast<unsigned long long>(item));
    std::abort();
  }
  *word &= ~mask;
  PageHeader& header = chunk->headers[page % kPagesPerChunk];
  --header.in_use;
  --impl.items;
  if (header.state == PageState::kFull) {
    // A full page is on no list; it joins the head of one, where Get looks first.
    header.state = header.in_use == 0 ? PageState::kEmpty : PageState::kPartial;
    impl.PushHead(header.in_use == 0 ? impl.empty : impl.partial, page);
  } else if (header.in_use == 0) {
    impl.Unlink(impl.partial, page);
    header.state = PageState::kEmpty;
    impl.PushHead(impl.empty, page);
  }
}

uint64_t Pool::Reap() { return Reap(impl_->empty_pages_kept); }

uint64_t Pool::Reap(uint32_t keep) {
  Impl& impl = *impl_;
  uint64_t given_back = 0;
  for (;;) {
    Addr batch[kGiveBackBatch];
    int count;
    {
      absl::MutexLock lock(&impl.mu);
      count = impl.DetachExcessEmpty(keep, batch, kGiveBackBatch);
    }
    impl.GiveBack(batch, count);
    given_back += count;
    if (count < kGiveBackBatch) return given_back;
  }
}

uint64_t Pool::Number(Addr item) const {
  const Impl& impl = *impl_;
  assert(Contains(item));
  const uint64_t offset = item - impl.base;
  const uint32_t slot = impl.SlotOf(offset & impl.page_mask);
  assert((offset & impl.page_mask) == uint64_t{slot} * item_size_);
  return (offset >> impl.page_shift) * items_per_page_ + slot;
}

Addr Pool::AddressOf(uint64_t number) const {
  const Impl& impl = *impl_;
  const uint64_t page = number / items_per_page_;
  const uint64_t slot = number % items_per_page_;
  assert((page << impl.page_shift) < map_->size());
  return impl.base + (page << impl.page_shift) + slot * item_size_;
}

bool Pool::IsLive(Addr item) const {
  const Impl& impl = *impl_;
  if (!Contains(item)) return false;
  const uint64_t offset = item - impl.base;
  const uint64_t offset_in_page = offset & impl.page_mask;
  const uint32_t slot = impl.SlotOf(offset_in_page);
  if (offset_in_page != uint64_t{slot} * item_size_ || slot >= items_per_page_) return false;
  const PageNumber page = static_cast<PageNumber>(offset >> impl.page_shift);
  absl::MutexLock lock(&impl.mu);
  const Impl::Chunk* chunk = impl.ChunkOf(page);
  if (chunk == nullptr || chunk->headers[page % kPagesPerChunk].state == PageState::kAbsent) {
    return false;
  }
  const uint64_t word =
      chunk->bitmap[uint64_t{page % kPagesPerChunk} * impl.words_per_page + slot / 64];
  return (word >> (slot % 64) & 1) != 0;
}

uint64_t Pool::pages_in_use() const {
  absl::MutexLock lock(&impl_->mu);
  return impl_->pages;
}

uint64_t Pool::empty_pages() const {
  absl::MutexLock lock(&impl_->mu);
  return impl_->empty.count;
}

uint64_t Pool::items_in_use() const {
  absl::MutexLock lock(&impl_->mu);
  return impl_->items;
}

uint64_t Pool::bookkeeping_bytes() const {
  const Impl& impl = *impl_;
  absl::MutexLock lock(&impl.mu);
  uint64_t bytes = sizeof(Impl) + impl.chunks.capacity() * sizeof(impl.chunks[0]);
  for (const std::unique_ptr<Impl::Chunk>& chunk : impl.chunks) {
    if (chunk != nullptr) bytes += impl.chunk_bytes();
  }
  return bytes;
}

absl::Status Pool::CheckConsistency() const {
  const Impl& impl = *impl_;
  absl::MutexLock lock(&impl.mu);
  auto failure = [&](const std::string& what, uint64_t page) {
    return absl::InternalError(absl::StrFormat("pool %s: page %d: %s", map_->name(), page, what));
  };
  uint64_t pages = 0, items = 0, partial = 0, empty = 0;
  for (uint64_t chunk_index = 0; chunk_index < impl.chunks.size(); ++chunk_index) {
    const Impl::Chunk* chunk = impl.chunks[chunk_index].get();
    if (chunk == nullptr) continue;
    uint32_t chunk_pages = 0;
    for (uint32_t i = 0; i < kPagesPerChunk; ++i) {
      const PageHeader& header = chunk->headers[i];
      const uint64_t page = chunk_index * kPagesPerChunk + i;
      if (header.state == PageState::kAbsent) continue;
      ++chunk_pages;
      const uint64_t* words = &chunk->bitmap[uint64_t{i} * impl.words_per_page];
      uint32_t set = 0;
      for (uint32_t word = 0; word < impl.words_per_page; ++word) set += std::popcount(words[word]);
      const uint32_t padding = impl.words_per_page * 64 - items_per_page_;
      if (padding != 0 && (~words[impl.words_per_page - 1] >> (64 - padding)) != 0) {
        return failure("padding bits not set", page);
      }
      if (set - padding != header.in_use) return failure("bitmap disagrees with count", page);
      const PageState expected = header.in_use == 0                 ? PageState::kEmpty
                                 : header.in_use == items_per_page_ ? PageState::kFull
                                                                    : PageState::kPartial;
      if (header.state != expected) return failure("state disagrees with count", page);
      const vm::Entry* entry = map_->page_table().Find(page);
      if (entry == nullptr || entry->load(std::memory_order_relaxed) == vm::Pte::kNone) {
        return failure("held but not allocated in the map", page);
      }
      ++pages;
      items += header.in_use;
      partial += header.state == PageState::kPartial;
      empty += header.state == PageState::kEmpty;
    }
    if (chunk_pages != chunk->pages || chunk_pages == 0) {
      return failure("chunk page count is wrong", chunk_index * kPagesPerChunk);
    }
  }
  if (pages != impl.pages || items != impl.items) {
    return absl::InternalError(absl::StrFormat("pool %s: counted %d pages %d items, kept %d %d",
                                               map_->name(), pages, items, impl.pages, impl.items));
  }
  for (const auto& [list, state, count] : {std::tuple(&impl.partial, PageState::kPartial, partial),
                                           std::tuple(&impl.empty, PageState::kEmpty, empty)}) {
    uint64_t length = 0;
    PageNumber previous = kNoPage;
    for (PageNumber page = list->head; page != kNoPage;) {
      const Impl::Chunk* chunk = impl.ChunkOf(page);
      if (chunk == nullptr) return failure("listed but has no header", page);
      const PageHeader& header = chunk->headers[page % kPagesPerChunk];
      if (header.state != state) return failure("on the wrong list", page);
      if (header.prev != previous) return failure("bad back link", page);
      if (++length > count) return failure("list longer than its pages", page);
      previous = page;
      page = header.next;
    }
    if (length != count || list->count != count || list->tail != previous) {
      return absl::InternalError(absl::StrFormat("pool %s: list of %d pages has %d, counts %d",
                                                 map_->name(), count, length, list->count));
    }
  }
  return absl::OkStatus();
}

}  // namespace ptmpfs::meta
