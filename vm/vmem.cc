// vmem: see vmem.h for the theory. This file is the implementation, in this order:
//
//  1. Boundary tags and their reserve (Bt*): every span and segment is a tag; tags
//     are carved from heap slabs on the allocation side only, kept on a spare list,
//     and never given back to the heap until the arena is destroyed.
//  2. The segment list: all tags of the arena on one doubly linked list, each span's
//     tag followed by its segments in address order. A segment's neighbours on this
//     list are its neighbours in the address space unless they are a span tag, which
//     is what makes coalescing O(1) and keeps it from crossing spans. Span tags are
//     also on a span list, in the same order as on the segment list (both append
//     and both remove), so a span's last segment is the one before the next span.
//  3. Free lists (Freelist*): 64 doubly linked lists, list k holding free segments of
//     [2^k, 2^(k+1)) bytes, and a bitmap of the nonempty ones.
//  4. The allocated-segment index (Hash*): an intrusive chained hash table from
//     start address to tag, so that Free() finds a segment without allocating. Only
//     the allocation side grows the bucket array; Free() only unlinks.
//  5. Allocation (fit, carve, import), freeing (coalesce, return of a span),
//     quantum caches (Qc*), the consistency check and the public interface.

#include "vm/vmem.h"

#include <algorithm>
#include <bit>
#include <cassert>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <mutex>
#include <new>
#include <set>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"

namespace ptmpfs::vm {
namespace {

// The reserve of spare tags that every allocation tops up before it changes
// anything, so that no step after the first change can fail. The worst case for one
// allocation is an import followed by a carve from the middle of a segment:
//   import: a span tag and a tag for the span's one free segment       2
//   carve:  a free tag for the head (alignment padding) and one for
//           the tail left over after the allocated piece               2
// Free() takes no tag (it frees a whole segment; coalescing returns tags) and an
// import's source keeps its own reserve, so 4 covers everything done under one lock.
constexpr int kTagReserve = 4;

// Tags come from the heap in slabs of this many: 64 tags of 56 bytes is 3.5 KiB, one
// heap call per 64 segments, and under a page so a slab never needs a huge block.
constexpr int kTagsPerSlab = 64;

// One free list per bit of a 64-bit size.
constexpr int kFreeLists = 64;

// The allocated-segment index starts with this many buckets and doubles whenever it
// holds more segments than buckets, so a chain averages at most one tag.
constexpr uint64_t kInitialHashBuckets = 16;

// A quantum cache holds at most this many ranges of its size and is refilled with
// half that many at once: after a refill it can absorb as many frees as it serves
// allocations before it touches the arena again, and one refill amortises the arena
// lock over 16 allocations.
constexpr int kQCacheCapacity = 32;
constexpr int kQCacheFillBatch = kQCacheCapacity / 2;

// The lock of a quantum cache. It is a leaf, held for one push or pop (or to copy the
// stack out), so it needs no more than a futex word: an uncontended absl::Mutex
// Lock+Unlock costs 17 ns here, 40 ns with Debian's absl, whose deadlock detection is
// on by default, which is more than the rest of a cached Alloc+Free together. It is
// annotated like absl::Mutex so that the thread-safety analysis still checks its use.
class ABSL_LOCKABLE LeafLock {
 public:
  void Lock() ABSL_EXCLUSIVE_LOCK_FUNCTION() { mu_.lock(); }
  void Unlock() ABSL_UNLOCK_FUNCTION() { mu_.unlock(); }

 private:
  std::mutex mu_;
};

class ABSL_SCOPED_LOCKABLE LeafLockHolder {
 public:
  explicit LeafLockHolder(LeafLock* lock) ABSL_EXCLUSIVE_LOCK_FUNCTION(lock) : lock_(lock) {
    lock_->Lock();
  }
  ~LeafLockHolder() ABSL_UNLOCK_FUNCTION() { lock_->Unlock(); }
  LeafLockHolder(const LeafLockHolder&) = delete;
  LeafLockHolder& operator=(const LeafLockHolder&) = delete;

 private:
  LeafLock* const lock_;
};

enum class TagType : uint8_t {
  kSentinel,      // head of the segment list or of the span list
  kSpan,          // a span added by AddSpan
  kImportedSpan,  // a span imported from the source, returned when wholly free
  kFree,          // a free segment, on a free list
  kAllocated,     // an allocated segment, in the hash index
  kSpare,         // on the reserve
};

// A boundary tag describes a span or a segment [start, start+size).
struct BoundaryTag {
  uint64_t start;
  uint64_t size;
  // The segment list, which holds every span and segment tag.
  BoundaryTag* seg_prev;
  BoundaryTag* seg_next;
  // Free segment: its free list (doubly linked, nullptr ends). Allocated segment: its
  // hash chain (link_next only). Span tag: the span list. Spare tag: the reserve.
  BoundaryTag* link_prev;
  BoundaryTag* link_next;
  TagType type;

  uint64_t end() const { return start + size; }
};

struct TagSlab {
  TagSlab* next;
  BoundaryTag tags[kTagsPerSlab];
};

int FloorLog2(uint64_t x) { return 63 - std::countl_zero(x); }

// 64 when x > 2^63.
int CeilLog2(uint64_t x) { return x <= 1 ? 0 : 64 - std::countl_zero(x - 1); }

bool IsPowerOfTwo(uint64_t x) { return x != 0 && (x & (x - 1)) == 0; }

// Rounds x up to a multiple of the power of two `align`; false on overflow.
bool RoundUp(uint64_t x, uint64_t align, uint64_t* rounded) {
  if (x > std::numeric_limits<uint64_t>::max() - (align - 1)) return false;
  *rounded = (x + align - 1) & ~(align - 1);
  return true;
}

// Whether a free segment can hold `size` bytes starting at a multiple of `align`.
bool SegmentFits(const BoundaryTag* seg, uint64_t size, uint64_t align) {
  const uint64_t misalignment = seg->start & (align - 1);
  const uint64_t padding = misalignment == 0 ? 0 : align - misalignment;
  return padding < seg->size && seg->size - padding >= size;
}

[[noreturn]] void FreePanic(const std::string& arena, uint64_t addr, uint64_t size,
                            const char* why) {
  std::fprintf(stderr, "vmem %s: Free(%#llx, %#llx): %s\n", arena.c_str(),
               static_cast<unsigned long long>(addr), static_cast<unsigned long long>(size), why);
  std::abort();
}

}  // namespace

struct Vmem::Impl {
  // A stack of allocated ranges of one size. Aligned to a cache line so that threads
  // using neighbouring sizes do not share one.
  struct alignas(64) QuantumCache {
    LeafLock mu;
    int count ABSL_GUARDED_BY(mu) = 0;
    uint64_t ranges[kQCacheCapacity] ABSL_GUARDED_BY(mu);
  };

  explicit Impl(Options options);
  ~Impl();

  // Allocation: the slow path (segment lists), draining the caches and retrying once
  // if the arena is short.
  absl::StatusOr<uint64_t> XAllocReaping(uint64_t size, uint64_t align, Vmem::Fit fit)
      ABSL_LOCKS_EXCLUDED(mu);
  absl::StatusOr<uint64_t> XAllocLocked(uint64_t size, uint64_t align, Vmem::Fit fit)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  BoundaryTag* FindFitLocked(uint64_t size, uint64_t align, Vmem::Fit fit)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  absl::StatusOr<BoundaryTag*> ImportLocked(uint64_t size, uint64_t align)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  uint64_t CarveLocked(BoundaryTag* seg, uint64_t size, uint64_t align)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  BoundaryTag* AddSpanLocked(uint64_t base, uint64_t size, TagType span_type)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  BoundaryTag* LastSegmentLocked(BoundaryTag* span) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  void ExtendSpanUpLocked(BoundaryTag* span, uint64_t size) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  void ExtendSpanDownLocked(BoundaryTag* span, uint64_t base, uint64_t size)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  void FreeLocked(uint64_t addr, uint64_t size) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);

  // Quantum caches.
  QuantumCache& qc_for(uint64_t size) { return qcaches[(size - 1) >> quantum_shift]; }
  absl::StatusOr<uint64_t> QcAllocSlow(QuantumCache& cache, uint64_t size, Vmem::Fit fit)
      ABSL_LOCKS_EXCLUDED(mu, cache.mu);
  void QcReapAll() ABSL_LOCKS_EXCLUDED(mu);

  // Boundary tags.
  bool BtRefillReserveLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  BoundaryTag* BtGetLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  void BtPutLocked(BoundaryTag* tag) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  static void SegInsertAfter(BoundaryTag* pos, BoundaryTag* tag);
  static void SegRemove(BoundaryTag* tag);

  // Free lists.
  void FreelistInsertLocked(BoundaryTag* seg) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  void FreelistRemoveLocked(BoundaryTag* seg) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);

  // Allocated-segment index.
  uint64_t HashBucketLocked(uint64_t addr) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  bool HashMaybeGrowLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  void HashInsertLocked(BoundaryTag* seg) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  BoundaryTag* HashFindLocked(uint64_t addr) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);
  BoundaryTag* HashRemoveLocked(uint64_t addr) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);

  absl::Status CheckLocked(const std::vector<std::pair<uint64_t, uint64_t>>& cached) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);

  // Immutable after construction.
  const std::string name;
  const uint64_t quantum;
  const int quantum_shift;
  const uint64_t qcache_max;  // 0, or a multiple of quantum <= kMaxQuantumCaches*quantum
  Vmem* const source;
  const uint64_t import_quantum;
  std::unique_ptr<QuantumCache[]> qcaches;  // qcache_max / quantum of them

  mutable absl::Mutex mu;  // before the source's mutexes
  // Sentinels: the segment list and the span list (span tags linked by link_*).
  BoundaryTag segments ABSL_GUARDED_BY(mu);
  BoundaryTag spans ABSL_GUARDED_BY(mu);
  BoundaryTag* free_lists[kFreeLists] ABSL_GUARDED_BY(mu) = {};
  uint64_t free_list_map ABSL_GUARDED_BY(mu) = 0;  // bit k: free_lists[k] nonempty
  std::unique_ptr<BoundaryTag*[]> hash_buckets ABSL_GUARDED_BY(mu);
  int hash_shift ABSL_GUARDED_BY(mu) = 0;  // 64 - log2(bucket count)
  uint64_t hash_bucket_count ABSL_GUARDED_BY(mu) = 0;
  uint64_t allocated_segments ABSL_GUARDED_BY(mu) = 0;
  BoundaryTag* spare_tags ABSL_GUARDED_BY(mu) = nullptr;
  int spare_tag_count ABSL_GUARDED_BY(mu) = 0;
  TagSlab* slabs ABSL_GUARDED_BY(mu) = nullptr;
  uint64_t slab_count ABSL_GUARDED_BY(mu) = 0;
  uint64_t total_bytes ABSL_GUARDED_BY(mu) = 0;
  uint64_t in_use_bytes ABSL_GUARDED_BY(mu) = 0;
};

Vmem::Impl::Impl(Options options)
    : name(std::move(options.name)),
      quantum(options.quantum),
      quantum_shift(std::countr_zero(options.quantum)),
      qcache_max(std::min(options.qcache_max & ~(options.quantum - 1),
                          kMaxQuantumCaches * options.quantum)),
      source(options.source),
      import_quantum(options.import_quantum == 0 ? options.quantum : options.import_quantum) {
  assert(IsPowerOfTwo(quantum));
  assert(IsPowerOfTwo(import_quantum) && import_quantum >= quantum);
  if (qcache_max != 0) qcaches.reset(new QuantumCache[qcache_max >> quantum_shift]);
  absl::MutexLock lock(&mu);
  for (BoundaryTag* sentinel : {&segments, &spans}) {
    *sentinel = BoundaryTag{};
    sentinel->type = TagType::kSentinel;
    sentinel->seg_prev = sentinel->seg_next = sentinel;
    sentinel->link_prev = sentinel->link_next = sentinel;
  }
}

Vmem::Impl::~Impl() {
  QcReapAll();
  absl::MutexLock lock(&mu);
  for (BoundaryTag* span = spans.link_next; span != &spans; span = span->link_next) {
    if (span->type == TagType::kImportedSpan) source->Free(span->start, span->size);
  }
  while (slabs != nullptr) delete std::exchange(slabs, slabs->next);
}

// ---- Boundary tags ----

// Tops the reserve up to kTagReserve. False, with nothing changed but the reserve, if
// the heap is out of memory.
bool Vmem::Impl::BtRefillReserveLocked() {
  while (spare_tag_count < kTagReserve) {
    TagSlab* slab = new (std::nothrow) TagSlab;
    if (slab == nullptr) return false;
    slab->next = slabs;
    slabs = slab;
    ++slab_count;
    for (BoundaryTag& tag : slab->tags) BtPutLocked(&tag);
  }
  return true;
}

BoundaryTag* Vmem::Impl::BtGetLocked() {
  assert(spare_tag_count > 0 && "the allocation side did not refill the reserve");
  BoundaryTag* tag = spare_tags;
  spare_tags = tag->link_next;
  --spare_tag_count;
  return tag;
}

void Vmem::Impl::BtPutLocked(BoundaryTag* tag) {
  tag->type = TagType::kSpare;
  tag->link_next = spare_tags;
  spare_tags = tag;
  ++spare_tag_count;
}

void Vmem::Impl::SegInsertAfter(BoundaryTag* pos, BoundaryTag* tag) {
  tag->seg_prev = pos;
  tag->seg_next = pos->seg_next;
  pos->seg_next->seg_prev = tag;
  pos->seg_next = tag;
}

void Vmem::Impl::SegRemove(BoundaryTag* tag) {
  tag->seg_prev->seg_next = tag->seg_next;
  tag->seg_next->seg_prev = tag->seg_prev;
}

// ---- Free lists ----

void Vmem::Impl::FreelistInsertLocked(BoundaryTag* seg) {
  assert(seg->type == TagType::kFree && seg->size != 0);
  const int list = FloorLog2(seg->size);
  seg->link_prev = nullptr;
  seg->link_next = free_lists[list];
  if (seg->link_next != nullptr) seg->link_next->link_prev = seg;
  free_lists[list] = seg;
  free_list_map |= uint64_t{1} << list;
}

// => seg is on the free list of its current size: remove it before resizing it.
void Vmem::Impl::FreelistRemoveLocked(BoundaryTag* seg) {
  assert(seg->type == TagType::kFree);
  const int list = FloorLog2(seg->size);
  if (seg->link_prev != nullptr) {
    seg->link_prev->link_next = seg->link_next;
  } else {
    assert(free_lists[list] == seg);
    free_lists[list] = seg->link_next;
    if (seg->link_next == nullptr) free_list_map &= ~(uint64_t{1} << list);
  }
  if (seg->link_next != nullptr) seg->link_next->link_prev = seg->link_prev;
}

// ---- Allocated-segment index ----

uint64_t Vmem::Impl::HashBucketLocked(uint64_t addr) const {
  // Fibonacci hashing of the quantum number: consecutive ranges spread evenly.
  return ((addr >> quantum_shift) * 0x9E3779B97F4A7C15ull) >> hash_shift;
}

// Best effort: with no memory for a bigger array the chains just grow longer. False
// only if there is no array at all.
bool Vmem::Impl::HashMaybeGrowLocked() {
  if (allocated_segments < hash_bucket_count) return true;
  const uint64_t new_count = hash_bucket_count == 0 ? kInitialHashBuckets : hash_bucket_count * 2;
  std::unique_ptr<BoundaryTag*[]> new_buckets(new (std::nothrow) BoundaryTag*[new_count]());
  if (new_buckets == nullptr) return hash_bucket_count != 0;
  std::unique_ptr<BoundaryTag*[]> old_buckets = std::exchange(hash_buckets, std::move(new_buckets));
  const uint64_t old_count = std::exchange(hash_bucket_count, new_count);
  hash_shift = 64 - std::countr_zero(new_count);
  for (uint64_t i = 0; i < old_count; ++i) {
    for (BoundaryTag* seg = old_buckets[i]; seg != nullptr;) {
      BoundaryTag* next = seg->link_next;
      BoundaryTag*& bucket = hash_buckets[HashBucketLocked(seg->start)];
      seg->link_next = bucket;
      bucket = seg;
      seg = next;
    }
  }
  return true;
}

void Vmem::Impl::HashInsertLocked(BoundaryTag* seg) {
  assert(hash_bucket_count != 0);
  BoundaryTag*& bucket = hash_buckets[HashBucketLocked(seg->start)];
  seg->link_prev = nullptr;
  seg->link_next = bucket;
  bucket = seg;
  ++allocated_segments;
}

BoundaryTag* Vmem::Impl::HashFindLocked(uint64_t addr) const {
  if (hash_bucket_count == 0) return nullptr;
  BoundaryTag* seg = hash_buckets[HashBucketLocked(addr)];
  while (seg != nullptr && seg->start != addr) seg = seg->link_next;
  return seg;
}

BoundaryTag* Vmem::Impl::HashRemoveLocked(uint64_t addr) {
  if (hash_bucket_count == 0) return nullptr;
  BoundaryTag** link = &hash_buckets[HashBucketLocked(addr)];
  while (*link != nullptr && (*link)->start != addr) link = &(*link)->link_next;
  BoundaryTag* seg = *link;
  if (seg == nullptr) return nullptr;
  *link = seg->link_next;
  --allocated_segments;
  return seg;
}

// ---- Allocation ----

absl::StatusOr<uint64_t> Vmem::Impl::XAllocReaping(uint64_t size, uint64_t align, Vmem::Fit fit) {
  {
    absl::MutexLock lock(&mu);
    absl::StatusOr<uint64_t> addr = XAllocLocked(size, align, fit);
    if (addr.ok() || qcaches == nullptr || !absl::IsResourceExhausted(addr.status())) {
      return addr;
    }
  }
  // The space may be sitting idle in the quantum caches; take it back and retry once.
  QcReapAll();
  absl::MutexLock lock(&mu);
  return XAllocLocked(size, align, fit);
}

// => size and align are multiples of the quantum, align a power of two.
absl::StatusOr<uint64_t> Vmem::Impl::XAllocLocked(uint64_t size, uint64_t align, Vmem::Fit fit) {
  assert(size != 0 && (size & (quantum - 1)) == 0);
  assert(IsPowerOfTwo(align) && align >= quantum);
  // Everything that can fail for want of memory happens here, before any change.
  if (!BtRefillReserveLocked() || !HashMaybeGrowLocked()) {
    return absl::ResourceExhaustedError(
        absl::StrFormat("vmem %s: out of memory for boundary tags", name));
  }
  BoundaryTag* seg = FindFitLocked(size, align, fit);
  if (seg == nullptr) {
    absl::StatusOr<BoundaryTag*> imported = ImportLocked(size, align);
    if (!imported.ok()) return imported.status();
    seg = *imported;
  }
  return CarveLocked(seg, size, align);
}

// A free segment that can hold `size` at a multiple of `align`, or nullptr.
BoundaryTag* Vmem::Impl::FindFitLocked(uint64_t size, uint64_t align, Vmem::Fit fit) {
  // Segments start on a quantum, so a segment of size + align - quantum bytes fits
  // wherever it starts.
  const uint64_t any_start_size = size > std::numeric_limits<uint64_t>::max() - (align - quantum)
                                      ? std::numeric_limits<uint64_t>::max()
                                      : size + (align - quantum);
  const int first_list = FloorLog2(size);  // lower lists hold only smaller segments
  if (fit == Vmem::Fit::kInstant) {
    // Every member of list k is >= 2^k; the first list with 2^k >= any_start_size is
    // the smallest whose every member fits. Take its first segment.
    const int whole_list = CeilLog2(any_start_size);
    if (whole_list < kFreeLists) {
      const uint64_t lists = free_list_map & (~uint64_t{0} << whole_list);
      if (lists != 0) return free_lists[std::countr_zero(lists)];
    }
    // No such list: search the lists where some members fit, first fit.
    for (int list = first_list; list < std::min(whole_list, kFreeLists); ++list) {
      for (BoundaryTag* seg = free_lists[list]; seg != nullptr; seg = seg->link_next) {
        if (SegmentFits(seg, size, align)) return seg;
      }
    }
    return nullptr;
  }
  // Best fit: the smallest fitting segment is in the first list that has a fitting
  // segment at all, since every member of a higher list is larger.
  for (uint64_t lists = free_list_map & (~uint64_t{0} << first_list); lists != 0;
       lists &= lists - 1) {
    BoundaryTag* best = nullptr;
    for (BoundaryTag* seg = free_lists[std::countr_zero(lists)]; seg != nullptr;
         seg = seg->link_next) {
      if ((best == nullptr || seg->size < best->size) && SegmentFits(seg, size, align)) {
        best = seg;
        if (seg->size == size) break;
      }
    }
    if (best != nullptr) return best;
  }
  return nullptr;
}

// Imports a span from the source large enough for `size` at `align`, and returns its
// one free segment.
// => the tag reserve holds kTagReserve tags.
absl::StatusOr<BoundaryTag*> Vmem::Impl::ImportLocked(uint64_t size, uint64_t align) {
  if (source == nullptr) {
    return absl::ResourceExhaustedError(
        absl::StrFormat("vmem %s: no free range of %d bytes aligned to %d", name, size, align));
  }
  // Import at the alignment asked for, so the allocation can sit at the span's start;
  // both quanta are powers of two, so the larger is a multiple of the smaller.
  const uint64_t import_align = std::max(align, source->quantum());
  uint64_t import_size;
  if (!RoundUp(size, std::max(import_quantum, source->quantum()), &import_size)) {
    return absl::ResourceExhaustedError(
        absl::StrFormat("vmem %s: %d bytes is too large to import", name, size));
  }
  absl::StatusOr<uint64_t> base = source->XAlloc(import_size, import_align);
  if (!base.ok()) return base.status();
  BoundaryTag* span = AddSpanLocked(*base, import_size, TagType::kImportedSpan);
  return span->seg_next;
}

// Cuts [start, start+size) at the first multiple of `align` out of a free segment,
// leaving any head and tail free.
// => seg is free and fits; the tag reserve holds the 2 tags a head and a tail need.
uint64_t Vmem::Impl::CarveLocked(BoundaryTag* seg, uint64_t size, uint64_t align) {
  assert(seg->type == TagType::kFree && SegmentFits(seg, size, align));
  FreelistRemoveLocked(seg);
  const uint64_t start = (seg->start + (align - 1)) & ~(align - 1);
  if (start != seg->start) {
    BoundaryTag* head = BtGetLocked();
    head->type = TagType::kFree;
    head->start = seg->start;
    head->size = start - seg->start;
    SegInsertAfter(seg->seg_prev, head);
    FreelistInsertLocked(head);
    seg->start = start;
    seg->size -= head->size;
  }
  if (seg->size != size) {
    BoundaryTag* tail = BtGetLocked();
    tail->type = TagType::kFree;
    tail->start = start + size;
    tail->size = seg->size - size;
    SegInsertAfter(seg, tail);
    FreelistInsertLocked(tail);
    seg->size = size;
  }
  seg->type = TagType::kAllocated;
  HashInsertLocked(seg);
  in_use_bytes += size;
  return start;
}

// => the tag reserve holds 2 tags; the range is valid and overlaps no span.
BoundaryTag* Vmem::Impl::AddSpanLocked(uint64_t base, uint64_t size, TagType span_type) {
  BoundaryTag* span = BtGetLocked();
  span->type = span_type;
  span->start = base;
  span->size = size;
  span->link_prev = spans.link_prev;
  span->link_next = &spans;
  spans.link_prev->link_next = span;
  spans.link_prev = span;
  SegInsertAfter(segments.seg_prev, span);

  BoundaryTag* seg = BtGetLocked();
  seg->type = TagType::kFree;
  seg->start = base;
  seg->size = size;
  SegInsertAfter(span, seg);
  FreelistInsertLocked(seg);
  total_bytes += size;
  return span;
}

BoundaryTag* Vmem::Impl::LastSegmentLocked(BoundaryTag* span) {
  BoundaryTag* next_span = span->link_next == &spans ? &segments : span->link_next;
  return next_span->seg_prev;
}

// Grows an added span by [span->end(), +size): its last segment grows if free, else a
// free segment follows it.
// => the tag reserve holds 1 tag; the range overlaps no span.
void Vmem::Impl::ExtendSpanUpLocked(BoundaryTag* span, uint64_t size) {
  assert(span->type == TagType::kSpan);
  BoundaryTag* last = LastSegmentLocked(span);
  const uint64_t base = span->end();
  span->size += size;
  total_bytes += size;
  if (last->type == TagType::kFree) {
    FreelistRemoveLocked(last);
    last->size += size;
    FreelistInsertLocked(last);
    return;
  }
  BoundaryTag* seg = BtGetLocked();
  seg->type = TagType::kFree;
  seg->start = base;
  seg->size = size;
  SegInsertAfter(last, seg);
  FreelistInsertLocked(seg);
}

// Grows an added span by [base, span->start): the mirror image of ExtendSpanUpLocked.
void Vmem::Impl::ExtendSpanDownLocked(BoundaryTag* span, uint64_t base, uint64_t size) {
  assert(span->type == TagType::kSpan && base + size == span->start);
  BoundaryTag* first = span->seg_next;
  span->start = base;
  span->size += size;
  total_bytes += size;
  if (first->type == TagType::kFree) {
    FreelistRemoveLocked(first);
    first->start = base;
    first->size += size;
    FreelistInsertLocked(first);
    return;
  }
  BoundaryTag* seg = BtGetLocked();
  seg->type = TagType::kFree;
  seg->start = base;
  seg->size = size;
  SegInsertAfter(span, seg);
  FreelistInsertLocked(seg);
}

// ---- Freeing ----

// Frees a whole allocated segment, coalesces it with free neighbours and returns its
// span to the source if that leaves an imported span wholly free. Takes no tag.
void Vmem::Impl::FreeLocked(uint64_t addr, uint64_t size) {
  BoundaryTag* seg = HashRemoveLocked(addr);
  if (seg == nullptr) FreePanic(name, addr, size, "not an allocated range (double free?)");
  if (seg->size != size) FreePanic(name, addr, size, "size differs from the allocation's");
  in_use_bytes -= size;
  seg->type = TagType::kFree;

  // Neighbours on the segment list are address neighbours unless they are a span tag
  // or the sentinel, neither of which is free: coalescing stops at a span's ends.
  BoundaryTag* next = seg->seg_next;
  if (next->type == TagType::kFree) {
    FreelistRemoveLocked(next);
    seg->size += next->size;
    SegRemove(next);
    BtPutLocked(next);
  }
  BoundaryTag* prev = seg->seg_prev;
  if (prev->type == TagType::kFree) {
    FreelistRemoveLocked(prev);
    prev->size += seg->size;
    SegRemove(seg);
    BtPutLocked(seg);
    seg = prev;
  }

  BoundaryTag* span = seg->seg_prev;
  if (span->type == TagType::kImportedSpan && span->size == seg->size) {
    // Wholly free: give it back (invariant 4). The source's Free does not allocate
    // either, so neither does this.
    SegRemove(seg);
    SegRemove(span);
    span->link_prev->link_next = span->link_next;
    span->link_next->link_prev = span->link_prev;
    total_bytes -= span->size;
    const uint64_t span_start = span->start;
    const uint64_t span_size = span->size;
    BtPutLocked(seg);
    BtPutLocked(span);
    source->Free(span_start, span_size);
    return;
  }
  FreelistInsertLocked(seg);
}

// ---- Quantum caches ----

// The cache was empty: take a batch from the segment lists under one arena lock, hand
// out the first range and cache the rest. The cache's lock is not held meanwhile (it
// is a leaf), so another thread may have filled the cache; what no longer fits goes
// back to the segment lists.
absl::StatusOr<uint64_t> Vmem::Impl::QcAllocSlow(QuantumCache& cache, uint64_t size,
                                                 Vmem::Fit fit) {
  uint64_t batch[kQCacheFillBatch];
  int batch_size = 0;
  absl::Status status;
  {
    absl::MutexLock lock(&mu);
    for (; batch_size < kQCacheFillBatch; ++batch_size) {
      absl::StatusOr<uint64_t> addr = XAllocLocked(size, quantum, Vmem::Fit::kInstant);
      if (!addr.ok()) {
        status = addr.status();
        break;
      }
      batch[batch_size] = *addr;
    }
  }
  if (batch_size == 0) {
    if (!absl::IsResourceExhausted(status)) return status;
    return XAllocReaping(size, quantum, fit);
  }
  int uncached = batch_size;  // batch[1, uncached) still to place
  {
    LeafLockHolder cache_lock(&cache.mu);
    // Pushed highest first, so that the pops hand out ascending addresses.
    while (uncached > 1 && cache.count < kQCacheCapacity) {
      cache.ranges[cache.count++] = batch[--uncached];
    }
  }
  if (uncached > 1) {
    absl::MutexLock lock(&mu);
    for (int i = 1; i < uncached; ++i) FreeLocked(batch[i], size);
  }
  return batch[0];
}

void Vmem::Impl::QcReapAll() {
  const uint64_t cache_count = qcache_max >> quantum_shift;
  for (uint64_t i = 0; i < cache_count; ++i) {
    QuantumCache& cache = qcaches[i];
    uint64_t ranges[kQCacheCapacity];
    int range_count;
    {
      LeafLockHolder cache_lock(&cache.mu);
      range_count = std::exchange(cache.count, 0);
      std::copy_n(cache.ranges, range_count, ranges);
    }
    if (range_count == 0) continue;
    const uint64_t size = (i + 1) << quantum_shift;
    absl::MutexLock lock(&mu);
    for (int j = 0; j < range_count; ++j) FreeLocked(ranges[j], size);
  }
}

// ---- Consistency ----

absl::Status Vmem::Impl::CheckLocked(
    const std::vector<std::pair<uint64_t, uint64_t>>& cached) const {
  auto fail = [this](const std::string& what) {
    return absl::InternalError(absl::StrCat("vmem ", name, ": ", what));
  };
  uint64_t span_bytes = 0, allocated_bytes = 0, free_segment_count = 0;
  uint64_t allocated_count = 0, tag_count = 0, span_count = 0;
  std::vector<std::pair<uint64_t, uint64_t>> span_ranges;
  const BoundaryTag* span = nullptr;
  uint64_t cursor = 0;  // where the next segment of `span` must start
  for (const BoundaryTag* tag = segments.seg_next;; tag = tag->seg_next) {
    if (tag->seg_prev->seg_next != tag)
      return fail(absl::StrFormat("segment list links broken at %#x", tag->start));
    const bool ends_span =
        tag == &segments || tag->type == TagType::kSpan || tag->type == TagType::kImportedSpan;
    if (ends_span && span != nullptr) {
      if (cursor != span->end()) {
        return fail(absl::StrFormat("span [%#x, %#x) has segments only up to %#x", span->start,
                                    span->end(), cursor));
      }
      if (span->type == TagType::kImportedSpan && span->seg_next->type == TagType::kFree &&
          span->seg_next->size == span->size) {
        return fail(
            absl::StrFormat("imported span [%#x, %#x) is wholly free", span->start, span->end()));
      }
    }
    if (tag == &segments) break;
    ++tag_count;
    if (ends_span) {
      if (tag->size == 0 || ((tag->start | tag->size) & (quantum - 1)) != 0) {
        return fail(absl::StrFormat("span [%#x, +%#x) empty or unaligned", tag->start, tag->size));
      }
      span = tag;
      cursor = tag->start;
      span_bytes += tag->size;
      span_ranges.emplace_back(tag->start, tag->size);
      ++span_count;
      continue;
    }
    if (span == nullptr) return fail(absl::StrFormat("segment at %#x before any span", tag->start));
    if (tag->type != TagType::kFree && tag->type != TagType::kAllocated) {
      return fail(absl::StrFormat("tag at %#x of unexpected type %d", tag->start,
                                  static_cast<int>(tag->type)));
    }
    if (tag->start != cursor || tag->size == 0 || (tag->size & (quantum - 1)) != 0 ||
        tag->end() > span->end()) {
      return fail(absl::StrFormat("segment [%#x, +%#x) does not follow %#x in span [%#x, %#x)",
                                  tag->start, tag->size, cursor, span->start, span->end()));
    }
    cursor = tag->end();
    if (tag->type == TagType::kFree) {
      ++free_segment_count;
      if (tag->seg_prev->type == TagType::kFree) {
        return fail(absl::StrFormat("free segments at %#x and %#x not coalesced",
                                    tag->seg_prev->start, tag->start));
      }
    } else {
      ++allocated_count;
      allocated_bytes += tag->size;
      if (HashFindLocked(tag->start) != tag) {
        return fail(absl::StrFormat("allocated segment at %#x missing from the index", tag->start));
      }
    }
  }

  uint64_t listed_spans = 0;
  const BoundaryTag* seg_list_span = &segments;
  for (const BoundaryTag* tag = spans.link_next; tag != &spans; tag = tag->link_next) {
    if (++listed_spans > span_count) break;
    do {
      seg_list_span = seg_list_span->seg_next;
    } while (seg_list_span != &segments && seg_list_span->type != TagType::kSpan &&
             seg_list_span->type != TagType::kImportedSpan);
    if (seg_list_span != tag) {
      return fail(absl::StrFormat("span list and segment list disagree at span %#x", tag->start));
    }
  }
  if (listed_spans != span_count) {
    return fail(
        absl::StrFormat("span list has %d spans, segment list %d", listed_spans, span_count));
  }
  std::sort(span_ranges.begin(), span_ranges.end());
  for (size_t i = 1; i < span_ranges.size(); ++i) {
    if (span_ranges[i - 1].first + span_ranges[i - 1].second > span_ranges[i].first) {
      return fail(absl::StrFormat("spans at %#x and %#x overlap", span_ranges[i - 1].first,
                                  span_ranges[i].first));
    }
  }

  uint64_t listed_free = 0;
  for (int list = 0; list < kFreeLists; ++list) {
    if (((free_list_map >> list) & 1) != (free_lists[list] != nullptr)) {
      return fail(absl::StrFormat("free list map bit %d disagrees with the list", list));
    }
    const BoundaryTag* prev = nullptr;
    for (const BoundaryTag* seg = free_lists[list]; seg != nullptr; seg = seg->link_next) {
      if (++listed_free > free_segment_count)
        return fail(absl::StrFormat("free lists hold too many segments"));
      if (seg->type != TagType::kFree || FloorLog2(seg->size) != list || seg->link_prev != prev) {
        return fail(absl::StrFormat("free list %d holds a bad segment at %#x", list, seg->start));
      }
      prev = seg;
    }
  }
  if (listed_free != free_segment_count) {
    return fail(
        absl::StrFormat("free lists hold %d segments, spans %d", listed_free, free_segment_count));
  }

  uint64_t hashed = 0;
  for (uint64_t i = 0; i < hash_bucket_count; ++i) {
    for (const BoundaryTag* seg = hash_buckets[i]; seg != nullptr; seg = seg->link_next) {
      if (++hashed > allocated_count) return fail(absl::StrFormat("index holds too many segments"));
      if (seg->type != TagType::kAllocated || HashBucketLocked(seg->start) != i) {
        return fail(absl::StrFormat("index bucket %d holds a bad segment at %#x", i, seg->start));
      }
    }
  }
  if (hashed != allocated_count || allocated_segments != allocated_count) {
    return fail(absl::StrFormat("index holds %d segments (counted %d), spans %d", hashed,
                                allocated_segments, allocated_count));
  }

  if (tag_count + spare_tag_count != slab_count * kTagsPerSlab) {
    return fail(absl::StrFormat("%d tags in use and %d spare, of %d", tag_count, spare_tag_count,
                                slab_count * kTagsPerSlab));
  }
  if (span_bytes != total_bytes || allocated_bytes != in_use_bytes) {
    return fail(absl::StrFormat("bytes: spans %d (counted %d), allocated %d (counted %d)",
                                span_bytes, total_bytes, allocated_bytes, in_use_bytes));
  }

  std::set<uint64_t> cached_starts;
  for (const auto& [start, size] : cached) {
    const BoundaryTag* seg = HashFindLocked(start);
    if (seg == nullptr || seg->size != size) {
      return fail(
          absl::StrFormat("cached range [%#x, +%#x) is not an allocated segment", start, size));
    }
    if (!cached_starts.insert(start).second)
      return fail(absl::StrFormat("range %#x cached twice", start));
  }
  return absl::OkStatus();
}

// ---- Public interface ----

Vmem::Vmem(Options options) : impl_(std::make_unique<Impl>(std::move(options))) {}

Vmem::~Vmem() = default;

absl::Status Vmem::AddSpan(uint64_t base, uint64_t size) {
  Impl& arena = *impl_;
  if (size == 0 || ((base | size) & (arena.quantum - 1)) != 0 ||
      size > std::numeric_limits<uint64_t>::max() - base) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "vmem %s: span [%#x, +%#x) empty, unaligned or wrapping", arena.name, base, size));
  }
  absl::MutexLock lock(&arena.mu);
  BoundaryTag* ends_at_base = nullptr;   // an added span to extend upwards
  BoundaryTag* starts_at_end = nullptr;  // or one to extend downwards
  for (BoundaryTag* span = arena.spans.link_next; span != &arena.spans; span = span->link_next) {
    if (base < span->end() && span->start < base + size) {
      return absl::InvalidArgumentError(
          absl::StrFormat("vmem %s: span [%#x, +%#x) overlaps [%#x, +%#x)", arena.name, base, size,
                          span->start, span->size));
    }
    if (span->type != TagType::kSpan) continue;
    if (span->end() == base) ends_at_base = span;
    if (span->start == base + size) starts_at_end = span;
  }
  if (!arena.BtRefillReserveLocked()) {
    return absl::ResourceExhaustedError(
        absl::StrFormat("vmem %s: out of memory for boundary tags", arena.name));
  }
  // With spans on both sides only the lower one grows and the two stay apart: ranges
  // cannot cross that one join, but joining would mean moving the upper span's
  // segments on the segment list.
  if (ends_at_base != nullptr) {
    arena.ExtendSpanUpLocked(ends_at_base, size);
  } else if (starts_at_end != nullptr) {
    arena.ExtendSpanDownLocked(starts_at_end, base, size);
  } else {
    arena.AddSpanLocked(base, size, TagType::kSpan);
  }
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> Vmem::Alloc(uint64_t size, Fit fit) {
  Impl& arena = *impl_;
  if (size - 1 < arena.qcache_max) {  // 1 <= size <= qcache_max: the fast path
    Impl::QuantumCache& cache = arena.qc_for(size);
    {
      LeafLockHolder cache_lock(&cache.mu);
      if (cache.count > 0) return cache.ranges[--cache.count];
    }
    const uint64_t rounded = (size + arena.quantum - 1) & ~(arena.quantum - 1);
    return arena.QcAllocSlow(cache, rounded, fit);
  }
  if (size == 0) return absl::InvalidArgumentError("vmem: Alloc of 0 bytes");
  uint64_t rounded;
  if (!RoundUp(size, arena.quantum, &rounded)) {
    return absl::ResourceExhaustedError(
        absl::StrFormat("vmem %s: %d bytes is larger than any span", arena.name, size));
  }
  return arena.XAllocReaping(rounded, arena.quantum, fit);
}

absl::StatusOr<uint64_t> Vmem::XAlloc(uint64_t size, uint64_t align, Fit fit) {
  Impl& arena = *impl_;
  if (!IsPowerOfTwo(align)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("vmem %s: alignment %#x is not a power of two", arena.name, align));
  }
  if (align <= arena.quantum) return Alloc(size, fit);
  if (size == 0) return absl::InvalidArgumentError("vmem: XAlloc of 0 bytes");
  uint64_t rounded;
  if (!RoundUp(size, arena.quantum, &rounded)) {
    return absl::ResourceExhaustedError(
        absl::StrFormat("vmem %s: %d bytes is larger than any span", arena.name, size));
  }
  return arena.XAllocReaping(rounded, align, fit);
}

void Vmem::Free(uint64_t addr, uint64_t size) {
  Impl& arena = *impl_;
  assert(size != 0 && (addr & (arena.quantum - 1)) == 0);
  if (size - 1 < arena.qcache_max) {  // any allocated segment of this size may be cached
    Impl::QuantumCache& cache = arena.qc_for(size);
    LeafLockHolder cache_lock(&cache.mu);
    if (cache.count < kQCacheCapacity) {
      cache.ranges[cache.count++] = addr;
      return;
    }
  }
  const uint64_t rounded = (size + arena.quantum - 1) & ~(arena.quantum - 1);
  absl::MutexLock lock(&arena.mu);
  arena.FreeLocked(addr, rounded);
}

void Vmem::ReapCaches() { impl_->QcReapAll(); }

const std::string& Vmem::name() const { return impl_->name; }

uint64_t Vmem::quantum() const { return impl_->quantum; }

uint64_t Vmem::TotalBytes() const {
  absl::MutexLock lock(&impl_->mu);
  return impl_->total_bytes;
}

uint64_t Vmem::InUseBytes() const {
  absl::MutexLock lock(&impl_->mu);
  return impl_->in_use_bytes;
}

uint64_t Vmem::FreeBytes() const {
  absl::MutexLock lock(&impl_->mu);
  return impl_->total_bytes - impl_->in_use_bytes;
}

// Holds every cache's lock (in index order; the only place where a cache's lock is held
// while taking another) and then the arena's, so the caches cannot change under the
// check.
absl::Status Vmem::CheckConsistency() const ABSL_NO_THREAD_SAFETY_ANALYSIS {
  Impl& arena = *impl_;
  const uint64_t cache_count = arena.qcache_max >> arena.quantum_shift;
  std::vector<std::pair<uint64_t, uint64_t>> cached;
  for (uint64_t i = 0; i < cache_count; ++i) arena.qcaches[i].mu.Lock();
  for (uint64_t i = 0; i < cache_count; ++i) {
    const Impl::QuantumCache& cache = arena.qcaches[i];
    for (int j = 0; j < cache.count; ++j) {
      cached.emplace_back(cache.ranges[j], (i + 1) << arena.quantum_shift);
    }
  }
  absl::Status status;
  {
    absl::MutexLock lock(&arena.mu);
    status = arena.CheckLocked(cached);
  }
  for (uint64_t i = cache_count; i-- > 0;) arena.qcaches[i].mu.Unlock();
  return status;
}

}  // namespace ptmpfs::vm
