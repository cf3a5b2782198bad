// Tests of vm/vmem: each behaviour of the header's theory comment, a randomized test
// against a model (std::map of live ranges) and a multithreaded one.
#include "vm/vmem.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <iterator>
#include <limits>
#include <map>
#include <memory>
#include <new>
#include <random>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "gtest/gtest.h"
#include "test/testing.h"

// Free() must never allocate (vmem.h invariant 2). To see that from outside, this
// binary replaces the global operator new and counts the calls a thread makes while
// its counter is armed. Every non-aligned form is replaced, so that what one form
// allocates another form's delete frees with the same allocator (ASan checks this).
namespace {
thread_local bool count_heap_allocations = false;
thread_local uint64_t heap_allocations = 0;

void* CountedMalloc(std::size_t size) noexcept {
  if (count_heap_allocations) ++heap_allocations;
  return std::malloc(size == 0 ? 1 : size);
}

// Not inlined: g++ would otherwise see operator new's memory go to free() and warn.
[[gnu::noinline]] void CountedFree(void* p) noexcept { std::free(p); }
}  // namespace

void* operator new(std::size_t size) {
  void* p = CountedMalloc(size);
  if (p == nullptr) throw std::bad_alloc();
  return p;
}
void* operator new[](std::size_t size) {
  void* p = CountedMalloc(size);
  if (p == nullptr) throw std::bad_alloc();
  return p;
}
void* operator new(std::size_t size, const std::nothrow_t&) noexcept { return CountedMalloc(size); }
void* operator new[](std::size_t size, const std::nothrow_t&) noexcept {
  return CountedMalloc(size);
}
void operator delete(void* p) noexcept { CountedFree(p); }
void operator delete[](void* p) noexcept { CountedFree(p); }
void operator delete(void* p, std::size_t) noexcept { CountedFree(p); }
void operator delete[](void* p, std::size_t) noexcept { CountedFree(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { CountedFree(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { CountedFree(p); }

namespace ptmpfs::vm {
namespace {

using Fit = Vmem::Fit;

// Every test runs with absl's lock-order checking on (its default depends on how absl
// was built): an acquisition against the order vmem.h states aborts the test.
const bool kLockOrderChecked = [] {
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kAbort);
  return true;
}();

// Counts the heap allocations this thread makes while it lives.
class HeapAllocationCounter {
 public:
  HeapAllocationCounter() {
    heap_allocations = 0;
    count_heap_allocations = true;
  }
  ~HeapAllocationCounter() { count_heap_allocations = false; }
  uint64_t count() const { return heap_allocations; }
};

Vmem::Options ArenaOptions(uint64_t quantum, uint64_t qcache_max = 0, Vmem* source = nullptr,
                           uint64_t import_quantum = 0) {
  Vmem::Options options;
  options.name = "test";
  options.quantum = quantum;
  options.qcache_max = qcache_max;
  options.source = source;
  options.import_quantum = import_quantum;
  return options;
}

uint64_t MustAlloc(Vmem& arena, uint64_t size, Fit fit = Fit::kInstant) {
  absl::StatusOr<uint64_t> addr = arena.Alloc(size, fit);
  EXPECT_TRUE(addr.ok()) << addr.status();
  return addr.value_or(~uint64_t{0});
}

uint64_t MustXAlloc(Vmem& arena, uint64_t size, uint64_t align, Fit fit = Fit::kInstant) {
  absl::StatusOr<uint64_t> addr = arena.XAlloc(size, align, fit);
  EXPECT_TRUE(addr.ok()) << addr.status();
  return addr.value_or(~uint64_t{0});
}

TEST(Vmem, AllocReturnsDisjointRangesInsideTheSpanAndFreeReturnsThem) {
  Vmem arena(ArenaOptions(0x100));
  ASSERT_TRUE(arena.AddSpan(0x10000, 0x10000).ok());
  EXPECT_EQ(arena.TotalBytes(), 0x10000u);
  EXPECT_EQ(arena.FreeBytes(), 0x10000u);

  const uint64_t a = MustAlloc(arena, 0x100);
  const uint64_t b = MustAlloc(arena, 0x300);
  const uint64_t c = MustAlloc(arena, 0x1000);
  std::map<uint64_t, uint64_t> ranges = {{a, 0x100}, {b, 0x300}, {c, 0x1000}};
  uint64_t previous_end = 0x10000;
  for (const auto& [start, size] : ranges) {
    EXPECT_GE(start, previous_end);
    EXPECT_LE(start + size, 0x20000u);
    previous_end = start + size;
  }
  EXPECT_EQ(arena.InUseBytes(), 0x1400u);
  EXPECT_EQ(arena.FreeBytes(), 0x10000u - 0x1400u);
  EXPECT_TRUE(arena.CheckConsistency().ok()) << arena.CheckConsistency();

  arena.Free(b, 0x300);
  arena.Free(a, 0x100);
  arena.Free(c, 0x1000);
  EXPECT_EQ(arena.InUseBytes(), 0u);
  EXPECT_TRUE(arena.CheckConsistency().ok()) << arena.CheckConsistency();
  // Everything coalesced back into one segment: the whole span is one allocation.
  EXPECT_EQ(MustAlloc(arena, 0x10000), 0x10000u);
}

TEST(Vmem, RoundsSizesUpToTheQuantum) {
  Vmem arena(ArenaOptions(16));
  ASSERT_TRUE(arena.AddSpan(0, 4096).ok());
  const uint64_t one = MustAlloc(arena, 1);
  const uint64_t seventeen = MustAlloc(arena, 17);
  EXPECT_EQ(one % 16, 0u);
  EXPECT_EQ(seventeen % 16, 0u);
  EXPECT_EQ(arena.InUseBytes(), 16u + 32u);
  arena.Free(one, 1);         // the size as asked for
  arena.Free(seventeen, 32);  // or as rounded
  EXPECT_EQ(arena.InUseBytes(), 0u);
  EXPECT_TRUE(arena.CheckConsistency().ok()) << arena.CheckConsistency();
}

TEST(Vmem, RejectsInvalidArguments) {
  Vmem arena(ArenaOptions(16));
  EXPECT_TRUE(absl::IsInvalidArgument(arena.AddSpan(0, 0)));
  EXPECT_TRUE(absl::IsInvalidArgument(arena.AddSpan(8, 16)));
  EXPECT_TRUE(absl::IsInvalidArgument(arena.AddSpan(16, 8)));
  EXPECT_TRUE(absl::IsInvalidArgument(arena.AddSpan(~uint64_t{15}, 32)));
  ASSERT_TRUE(arena.AddSpan(1024, 1024).ok());
  EXPECT_TRUE(absl::IsInvalidArgument(arena.AddSpan(1024 + 512, 1024)));
  EXPECT_TRUE(absl::IsInvalidArgument(arena.AddSpan(512, 1024)));
  EXPECT_TRUE(absl::IsInvalidArgument(arena.Alloc(0).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(arena.XAlloc(16, 48).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(arena.XAlloc(16, 0).status()));
  EXPECT_EQ(arena.TotalBytes(), 1024u);
  EXPECT_TRUE(arena.CheckConsistency().ok()) << arena.CheckConsistency();
}

TEST(Vmem, AddSpanNextToAnAddedSpanExtendsIt) {
  Vmem arena(ArenaOptions(1));
  ASSERT_TRUE(arena.AddSpan(100, 100).ok());
  const uint64_t low = MustAlloc(arena, 100);  // the span's last segment is allocated
  ASSERT_TRUE(arena.AddSpan(200, 100).ok());   // upwards, after an allocated segment
  ASSERT_TRUE(arena.AddSpan(300, 100).ok());   // upwards, after a free segment
  ASSERT_TRUE(arena.AddSpan(0, 100).ok());     // downwards
  EXPECT_TRUE(arena.CheckConsistency().ok()) << arena.CheckConsistency();
  // A range can now cross the joins at 200 and 300.
  EXPECT_EQ(MustAlloc(arena, 200, Fit::kBest), 200u);
  arena.Free(low, 100);
  arena.Free(200, 200);
  EXPECT_TRUE(arena.CheckConsistency().ok()) << arena.CheckConsistency();
  EXPECT_EQ(MustAlloc(arena, 400), 0u);
}

// Frees [0,5) and [6,13) between allocated quanta, leaving free segments of 5 and 7
// (list 2, [4,8)) and a large one of 986 (list 9).
class VmemFitTest : public ::testing::Test {
 protected:
  VmemFitTest() : arena_(ArenaOptions(1)) {
    EXPECT_TRUE(arena_.AddSpan(0, 1000).ok());
    EXPECT_EQ(MustAlloc(arena_, 5), 0u);
    EXPECT_EQ(MustAlloc(arena_, 1), 5u);
    EXPECT_EQ(MustAlloc(arena_, 7), 6u);
    EXPECT_EQ(MustAlloc(arena_, 1), 13u);
    arena_.Free(0, 5);
    arena_.Free(6, 7);
  }
  Vmem arena_;
};

TEST_F(VmemFitTest, InstantFitTakesTheFirstSegmentOfTheSmallestListWhoseMembersAllFit) {
  // 5 is not a power of two: list 2 may hold segments too small for it (a 4), so
  // instant fit goes to list 3 and up, and takes the 986 at 14 rather than search.
  EXPECT_EQ(MustAlloc(arena_, 5, Fit::kInstant), 14u);
  // 4 is a power of two: every member of list 2 fits; the first one is taken.
  const uint64_t four = MustAlloc(arena_, 4, Fit::kInstant);
  EXPECT_TRUE(four == 0 || four == 6) << four;
  EXPECT_TRUE(arena_.CheckConsistency().ok()) << arena_.CheckConsistency();
}

TEST_F(VmemFitTest, BestFitTakesTheSmallestSegmentThatFits) {
  EXPECT_EQ(MustAlloc(arena_, 5, Fit::kBest), 0u);
  EXPECT_EQ(MustAlloc(arena_, 6, Fit::kBest), 6u);
  // The 1 left after the 6 is too small for a 2.
  EXPECT_EQ(MustAlloc(arena_, 2, Fit::kBest), 14u);
  EXPECT_TRUE(arena_.CheckConsistency().ok()) << arena_.CheckConsistency();
}

TEST_F(VmemFitTest, InstantFitSearchesTheListBelowWhenNoListFitsWhole) {
  EXPECT_EQ(MustAlloc(arena_, 986, Fit::kInstant), 14u);  // only the 5 and the 7 left
  // No list has every member >= 6, but the 7 in list 2 fits.
  EXPECT_EQ(MustAlloc(arena_, 6, Fit::kInstant), 6u);
  EXPECT_EQ(MustAlloc(arena_, 5, Fit::kInstant), 0u);
  EXPECT_TRUE(absl::IsResourceExhausted(arena_.Alloc(2).status()));
}

TEST(Vmem, XAllocReturnsRangesStartingOnTheAlignment) {
  Vmem arena(ArenaOptions(16));
  ASSERT_TRUE(arena.AddSpan(0x1010, 1 << 24).ok());
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  for (uint64_t align = 16; align <= (1 << 20); align *= 2) {
    for (uint64_t size : {uint64_t{1}, uint64_t{16}, uint64_t{100}, align, align + 16}) {
      const uint64_t addr = MustXAlloc(arena, size, align, size % 2 ? Fit::kBest : Fit::kInstant);
      EXPECT_EQ(addr % align, 0u) << "align " << align << " size " << size;
      ranges.emplace_back(addr, size);
    }
  }
  EXPECT_TRUE(arena.CheckConsistency().ok()) << arena.CheckConsistency();
  for (const auto& [addr, size] : ranges) arena.Free(addr, size);
  EXPECT_EQ(arena.InUseBytes(), 0u);
  EXPECT_TRUE(arena.CheckConsistency().ok()) << arena.CheckConsistency();
}

TEST(Vmem, XAllocLeavesTheAlignmentPaddingFree) {
  Vmem arena(ArenaOptions(16));
  ASSERT_TRUE(arena.AddSpan(0x1010, 0x10000).ok());
  EXPECT_EQ(MustXAlloc(arena, 0x100, 0x1000), 0x2000u);
  EXPECT_EQ(arena.InUseBytes(), 0x100u);
  // The head [0x1010, 0x2000) is a free segment of its own.
  EXPECT_EQ(MustAlloc(arena, 0x2000 - 0x1010, Fit::kBest), 0x1010u);
  EXPECT_TRUE(arena.CheckConsistency().ok()) << arena.CheckConsistency();
}

TEST(Vmem, CoalescesNeighboursOnFree) {
  constexpr uint64_t kPage = 4096;
  Vmem arena(ArenaOptions(kPage));
  ASSERT_TRUE(arena.AddSpan(0, 64 * kPage).ok());
  std::vector<uint64_t> pages;
  for (int i = 0; i < 64; ++i) pages.push_back(MustAlloc(arena, kPage));
  std::sort(pages.begin(), pages.end());
  for (int i = 0; i < 64; i += 2) arena.Free(pages[i], kPage);
  // Half the span is free, but in single pages.
  EXPECT_EQ(arena.FreeBytes(), 32 * kPage);
  EXPECT_TRUE(absl::IsResourceExhausted(arena.Alloc(2 * kPage, Fit::kBest).status()));
  EXPECT_TRUE(arena.CheckConsistency().ok()) << arena.CheckConsistency();

  arena.Free(pages[11], kPage);  // joins pages 10, 11 and 12
  EXPECT_EQ(MustAlloc(arena, 3 * kPage), pages[10]);
  EXPECT_TRUE(absl::IsResourceExhausted(arena.Alloc(2 * kPage).status()));
  arena.Free(pages[10], 3 * kPage);

  for (int i = 1; i < 64; i += 2) {
    if (i != 11) arena.Free(pages[i], kPage);
  }
  EXPECT_TRUE(arena.CheckConsistency().ok()) << arena.CheckConsistency();
  EXPECT_EQ(MustAlloc(arena, 64 * kPage), 0u);
}

TEST(Vmem, QuantumCacheServesAFreedRangeAgain) {
  Vmem arena(ArenaOptions(8, 64));
  ASSERT_TRUE(arena.AddSpan(0, 1 << 16).ok());
  const uint64_t first = MustAlloc(arena, 24);
  EXPECT_EQ(first % 8, 0u);
  const uint64_t in_use = arena.InUseBytes();
  EXPECT_GE(in_use, 24u);  // the cache took a batch of 24s from the segment lists
  arena.Free(first, 24);
  EXPECT_EQ(arena.InUseBytes(), in_use);  // a cached range still counts as in use
  EXPECT_EQ(MustAlloc(arena, 24), first);
  // 17 rounds up to 24: served from the same cache, which still holds the batch.
  const uint64_t seventeen = MustAlloc(arena, 17);
  EXPECT_NE(seventeen, first);
  EXPECT_EQ(arena.InUseBytes(), in_use);
  EXPECT_TRUE(arena.CheckConsistency().ok()) << arena.CheckConsistency();
}

TEST(Vmem, ReapCachesReturnsEveryCachedRangeToTheSegmentLists) {
  Vmem arena(ArenaOptions(8, 128));
  ASSERT_TRUE(arena.AddSpan(0, 1 << 20).ok());
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  for (int round = 0; round < 50; ++round) {
    for (uint64_t size = 8; size <= 128; size += 8)
      ranges.emplace_back(MustAlloc(arena, size), size);
  }
  for (const auto& [addr, size] : ranges) arena.Free(addr, size);
  EXPECT_GT(arena.InUseBytes(), 0u);  // held by the caches, up to 32 of each size
  EXPECT_TRUE(arena.CheckConsistency().ok()) << arena.CheckConsistency();
  arena.ReapCaches();
  EXPECT_EQ(arena.InUseBytes(), 0u);
  EXPECT_TRUE(arena.CheckConsistency().ok()) << arena.CheckConsistency();
  EXPECT_EQ(MustAlloc(arena, 1 << 20), 0u);
}

TEST(Vmem, AllocTakesBackCachedRangesBeforeFailing) {
  Vmem arena(ArenaOptions(1, 16));
  ASSERT_TRUE(arena.AddSpan(0, 64).ok());
  arena.Free(MustAlloc(arena, 1), 1);  // the cache of 1s now holds a batch
  EXPECT_GT(arena.InUseBytes(), 0u);
  EXPECT_EQ(MustAlloc(arena, 64), 0u);  // not exhausted: the caches are drained first
  arena.Free(0, 64);
  // And the other way round: a cached size whose cache and lists are both empty.
  std::vector<uint64_t> twos;
  for (int i = 0; i < 32; ++i) twos.push_back(MustAlloc(arena, 2));
  for (uint64_t two : twos) arena.Free(two, 2);  // all in the cache of 2s
  for (int i = 0; i < 64; ++i) MustAlloc(arena, 1);
  EXPECT_TRUE(absl::IsResourceExhausted(arena.Alloc(1).status()));
  EXPECT_EQ(arena.InUseBytes(), 64u);
  EXPECT_TRUE(arena.CheckConsistency().ok()) << arena.CheckConsistency();
}

TEST(Vmem, ImportsFromTheSourceAndReturnsWhollyFreeSpans) {
  Vmem source(ArenaOptions(4096));
  ASSERT_TRUE(source.AddSpan(1 << 20, 1 << 24).ok());
  Vmem arena(ArenaOptions(16, 0, &source, 1 << 16));
  const uint64_t a = MustAlloc(arena, 100);
  EXPECT_EQ(arena.TotalBytes(), uint64_t{1} << 16);  // one import, rounded up
  EXPECT_EQ(source.InUseBytes(), uint64_t{1} << 16);
  const uint64_t b = MustAlloc(arena, 1000);  // from the same span
  EXPECT_EQ(source.InUseBytes(), uint64_t{1} << 16);
  const uint64_t big = MustAlloc(arena, (1 << 16) + 1);  // a second, larger import
  EXPECT_EQ(arena.TotalBytes(), (uint64_t{1} << 16) + (uint64_t{1} << 17));
  EXPECT_TRUE(arena.CheckConsistency().ok()) << arena.CheckConsistency();

  arena.Free(a, 100);  // its span still holds b
  EXPECT_EQ(source.InUseBytes(), (uint64_t{1} << 16) + (uint64_t{1} << 17));
  arena.Free(big, (1 << 16) + 1);
  EXPECT_EQ(source.InUseBytes(), uint64_t{1} << 16);
  arena.Free(b, 1000);
  EXPECT_EQ(source.InUseBytes(), 0u);
  EXPECT_EQ(arena.TotalBytes(), 0u);
  EXPECT_TRUE(arena.CheckConsistency().ok()) << arena.CheckConsistency();
  EXPECT_TRUE(source.CheckConsistency().ok()) << source.CheckConsistency();
}

TEST(Vmem, ImportsHonourAlignmentAndBothQuanta) {
  Vmem source(ArenaOptions(4096, 4 * 4096));
  ASSERT_TRUE(source.AddSpan(0x1000, 1 << 26).ok());
  Vmem arena(ArenaOptions(64, 1024, &source));  // import_quantum: the quantum, 64
  const uint64_t small = MustAlloc(arena, 64);
  EXPECT_EQ(small % 64, 0u);
  // Imports are rounded up to the source's quantum, the larger of the two.
  EXPECT_EQ(arena.TotalBytes() % 4096, 0u);
  const uint64_t aligned = MustXAlloc(arena, 5000, 1 << 20);
  EXPECT_EQ(aligned % (1 << 20), 0u);
  EXPECT_TRUE(arena.CheckConsistency().ok()) << arena.CheckConsistency();
  arena.Free(aligned, 5000);
  arena.Free(small, 64);
  arena.ReapCaches();
  source.ReapCaches();
  EXPECT_EQ(arena.TotalBytes(), 0u);
  EXPECT_EQ(source.InUseBytes(), 0u);
  EXPECT_TRUE(source.CheckConsistency().ok()) << source.CheckConsistency();
}

TEST(Vmem, DestructionReturnsImportedSpansToTheSource) {
  Vmem source(ArenaOptions(4096));
  ASSERT_TRUE(source.AddSpan(0, 1 << 24).ok());
  {
    Vmem arena(ArenaOptions(4096, 4 * 4096, &source, 1 << 16));
    MustAlloc(arena, 4096);
    MustAlloc(arena, 1 << 18);
    EXPECT_GT(source.InUseBytes(), 0u);
  }  // never freed
  EXPECT_EQ(source.InUseBytes(), 0u);
  EXPECT_TRUE(source.CheckConsistency().ok()) << source.CheckConsistency();
}

TEST(Vmem, ExhaustionReturnsResourceExhausted) {
  Vmem empty(ArenaOptions(16, 64));
  EXPECT_TRUE(absl::IsResourceExhausted(empty.Alloc(16).status()));
  EXPECT_TRUE(absl::IsResourceExhausted(empty.Alloc(1024).status()));

  Vmem arena(ArenaOptions(16));
  ASSERT_TRUE(arena.AddSpan(1024, 1024).ok());
  EXPECT_TRUE(absl::IsResourceExhausted(arena.Alloc(1040).status()));
  EXPECT_TRUE(
      absl::IsResourceExhausted(arena.Alloc(std::numeric_limits<uint64_t>::max()).status()));
  // [1024, 2048) holds no multiple of 2048, and one of 1024.
  EXPECT_TRUE(absl::IsResourceExhausted(arena.XAlloc(16, 2048).status()));
  EXPECT_EQ(MustXAlloc(arena, 16, 1024), 1024u);
  EXPECT_TRUE(absl::IsResourceExhausted(arena.XAlloc(16, 1024).status()));

  Vmem source(ArenaOptions(4096));
  ASSERT_TRUE(source.AddSpan(0, 8192).ok());
  Vmem child(ArenaOptions(16, 0, &source, 4096));
  MustAlloc(child, 4096);
  MustAlloc(child, 4096);
  EXPECT_TRUE(absl::IsResourceExhausted(child.Alloc(16).status()));
  EXPECT_EQ(arena.InUseBytes(), 16u);
  EXPECT_TRUE(child.CheckConsistency().ok()) << child.CheckConsistency();
}

TEST(Vmem, FreeOfARangeNeverAllocatedAborts) {
  Vmem arena(ArenaOptions(16));
  ASSERT_TRUE(arena.AddSpan(0, 1024).ok());
  const uint64_t addr = MustAlloc(arena, 32);
  EXPECT_DEATH(arena.Free(addr + 16, 16), "not an allocated range");
  EXPECT_DEATH(arena.Free(addr, 48), "size differs");
}

TEST(Vmem, FreeNeverAllocates) {
  Vmem source(ArenaOptions(4096, 4 * 4096));
  ASSERT_TRUE(source.AddSpan(1 << 30, 1 << 28).ok());
  Vmem arena(ArenaOptions(64, 1024, &source, 1 << 16));
  ASSERT_TRUE(arena.AddSpan(0, 1 << 22).ok());
  {
    // The counter sees the allocation side's heap use: it is live.
    Vmem fresh(ArenaOptions(1));
    HeapAllocationCounter counter;
    ASSERT_TRUE(fresh.AddSpan(0, 100).ok());
    EXPECT_GT(counter.count(), 0u);
  }
  std::vector<std::pair<uint64_t, uint64_t>> ranges;
  std::mt19937_64 rng(1);
  for (int i = 0; i < 6000; ++i) {
    const uint64_t size = i % 3 == 0 ? 64 * (1 + rng() % 16) : 64 * (1 + rng() % 256);
    if (i % 7 == 0) {
      ranges.emplace_back(MustXAlloc(arena, size, uint64_t{128} << (rng() % 8)), size);
    } else {
      ranges.emplace_back(MustAlloc(arena, size, i % 2 ? Fit::kBest : Fit::kInstant), size);
    }
  }
  EXPECT_GT(arena.TotalBytes(), uint64_t{1} << 22);  // some came from imports
  {
    HeapAllocationCounter counter;
    // Every other range first (fragmented: little coalescing), then the rest (all of
    // it coalescing, imported spans going back to the source), then the caches.
    for (size_t i = 0; i < ranges.size(); i += 2) arena.Free(ranges[i].first, ranges[i].second);
    for (size_t i = 1; i < ranges.size(); i += 2) arena.Free(ranges[i].first, ranges[i].second);
    arena.ReapCaches();
    source.ReapCaches();
    EXPECT_EQ(counter.count(), 0u);
  }
  EXPECT_EQ(arena.InUseBytes(), 0u);
  EXPECT_EQ(arena.TotalBytes(), uint64_t{1} << 22);
  EXPECT_EQ(source.InUseBytes(), 0u);
  EXPECT_TRUE(arena.CheckConsistency().ok()) << arena.CheckConsistency();
  EXPECT_TRUE(source.CheckConsistency().ok()) << source.CheckConsistency();
}

// The model: every live range of both arenas in one map (the child's imported ranges
// lie inside ranges the source handed out, so no two live ranges of the pair may
// overlap), and each arena's bytes.
class LiveRanges {
 public:
  // Records [addr, addr+size) and returns false if it overlaps a live range.
  bool Insert(uint64_t addr, uint64_t size, bool in_child) {
    auto next = ranges_.lower_bound(addr);
    if (next != ranges_.end() && next->first < addr + size) return false;
    if (next != ranges_.begin() && std::prev(next)->first + std::prev(next)->second.size > addr) {
      return false;
    }
    ranges_.emplace(addr, Range{size, in_child});
    order_.push_back(addr);
    (in_child ? child_bytes_ : source_bytes_) += size;
    return true;
  }
  // Removes a random live range and returns it.
  std::pair<uint64_t, uint64_t> TakeRandom(std::mt19937_64& rng, bool* in_child) {
    const size_t i = rng() % order_.size();
    const uint64_t addr = order_[i];
    order_[i] = order_.back();
    order_.pop_back();
    auto it = ranges_.find(addr);
    const Range range = it->second;
    ranges_.erase(it);
    *in_child = range.in_child;
    (range.in_child ? child_bytes_ : source_bytes_) -= range.size;
    return {addr, range.size};
  }
  size_t size() const { return order_.size(); }
  uint64_t child_bytes() const { return child_bytes_; }
  uint64_t source_bytes() const { return source_bytes_; }

 private:
  struct Range {
    uint64_t size;
    bool in_child;
  };
  std::map<uint64_t, Range> ranges_;
  std::vector<uint64_t> order_;  // the keys, for picking one at random
  uint64_t child_bytes_ = 0;
  uint64_t source_bytes_ = 0;
};

// Drives a source arena and a child importing from it (which also has a span of its
// own, grown now and then) with random Alloc, XAlloc, Free and ReapCaches, checking
// every range handed out against the model and, every 2000 operations, both arenas'
// consistency and byte counts.
void RunAgainstModel(uint64_t source_size, int ops, int max_failure_percent) {
  const uint64_t seed = ptmpfs::testing::TestSeed();
  std::printf("seed %" PRIu64 " (replay with PTMPFS_SEED=%" PRIu64 ")\n", seed, seed);
  SCOPED_TRACE(::testing::Message() << "PTMPFS_SEED=" << seed);
  std::mt19937_64 rng(seed);
  auto chance = [&rng](int percent) { return static_cast<int>(rng() % 100) < percent; };
  auto random_fit = [&rng] { return rng() % 2 ? Fit::kBest : Fit::kInstant; };

  const uint64_t kSourceBase = uint64_t{1} << 32, kSourceSize = source_size;
  Vmem source(ArenaOptions(4096, 4 * 4096));
  ASSERT_TRUE(source.AddSpan(kSourceBase, kSourceSize).ok());
  Vmem child(ArenaOptions(64, 1024, &source, 1 << 16));
  // The child's own span, below the source's space, grown at both ends as it goes.
  uint64_t own_low = uint64_t{1} << 24, own_high = own_low + (1 << 18);
  ASSERT_TRUE(child.AddSpan(own_low, own_high - own_low).ok());

  LiveRanges live;
  auto check_in_place = [&](uint64_t addr, uint64_t size, bool in_child) {
    const bool in_own = in_child && addr >= own_low && addr + size <= own_high;
    const bool in_source = addr >= kSourceBase && addr + size <= kSourceBase + kSourceSize;
    return in_own || in_source;
  };
  auto check_accounting = [&] {
    ASSERT_TRUE(child.CheckConsistency().ok()) << child.CheckConsistency();
    ASSERT_TRUE(source.CheckConsistency().ok()) << source.CheckConsistency();
    const uint64_t imported = child.TotalBytes() - (own_high - own_low);
    ASSERT_GE(child.InUseBytes(), live.child_bytes());
    ASSERT_GE(source.InUseBytes(), live.source_bytes() + imported);
    child.ReapCaches();
    source.ReapCaches();
    ASSERT_EQ(child.InUseBytes(), live.child_bytes());
    ASSERT_EQ(source.InUseBytes(), live.source_bytes() + child.TotalBytes() - (own_high - own_low));
  };

  int failures = 0;
  for (int op = 0; op < ops; ++op) {
    const int kind = static_cast<int>(rng() % 100);
    // Frees outweigh allocations once many ranges are live, to hold the population.
    const int free_percent = live.size() < 1000 ? 35 : live.size() < 4000 ? 50 : 65;
    if (live.size() > 0 && kind < free_percent) {
      bool in_child;
      const auto [addr, size] = live.TakeRandom(rng, &in_child);
      (in_child ? child : source).Free(addr, size);
      continue;
    }
    if (chance(1)) {
      (chance(50) ? child : source).ReapCaches();
      continue;
    }
    if (chance(1)) {  // grow the child's own span at one end
      const uint64_t grow = 64 * (1 + rng() % 256);
      if (chance(50)) {
        ASSERT_TRUE(child.AddSpan(own_high, grow).ok());
        own_high += grow;
      } else {
        ASSERT_TRUE(child.AddSpan(own_low - grow, grow).ok());
        own_low -= grow;
      }
      continue;
    }
    const bool in_child = chance(80);
    Vmem& arena = in_child ? child : source;
    const uint64_t quantum = arena.quantum();
    // Half are small enough for the quantum caches.
    const uint64_t size = chance(50) ? 1 + rng() % (16 * quantum) : 1 + rng() % (1 << 16);
    uint64_t align = quantum;
    absl::StatusOr<uint64_t> addr;
    if (chance(15)) {
      align = uint64_t{1} << (6 + rng() % 16);
      addr = arena.XAlloc(size, align, random_fit());
    } else {
      addr = arena.Alloc(size, random_fit());
    }
    if (!addr.ok()) {
      ASSERT_TRUE(absl::IsResourceExhausted(addr.status())) << addr.status();
      ++failures;
      continue;
    }
    const uint64_t rounded = (size + quantum - 1) & ~(quantum - 1);
    ASSERT_EQ(*addr % std::max(align, quantum), 0u) << "op " << op;
    ASSERT_TRUE(check_in_place(*addr, rounded, in_child)) << "op " << op << " at " << *addr;
    ASSERT_TRUE(live.Insert(*addr, rounded, in_child))
        << "op " << op << ": [" << *addr << ", +" << rounded << ") overlaps a live range";
    if (op % 2000 == 0) check_accounting();
  }
  check_accounting();
  std::printf("%zu ranges live at the end, %d allocations failed\n", live.size(), failures);
  EXPECT_LE(failures, ops / 100 * max_failure_percent);

  while (live.size() > 0) {
    bool in_child;
    const auto [addr, size] = live.TakeRandom(rng, &in_child);
    (in_child ? child : source).Free(addr, size);
  }
  check_accounting();
  EXPECT_EQ(child.InUseBytes(), 0u);
  EXPECT_EQ(child.TotalBytes(), own_high - own_low);  // every import went back
  EXPECT_EQ(source.InUseBytes(), 0u);
}

TEST(Vmem, RandomizedAgainstAModelOfLiveRanges) {
  RunAgainstModel(uint64_t{1} << 28, 100000, /*max_failure_percent=*/1);
}

// A source of 4 MiB cannot hold what the same mix asks for: many allocations fail,
// exercising import failure, the reaping of quantum caches and partial cache refills.
TEST(Vmem, RandomizedAgainstAModelWhenNearlyFull) {
  RunAgainstModel(uint64_t{1} << 22, 50000, /*max_failure_percent=*/100);
}

// Marks quanta of 64 bytes as owned in a shared bitmap; a bit already set when
// marking, or already clear when unmarking, is an overlap.
class OwnershipMap {
 public:
  OwnershipMap(uint64_t base, uint64_t size)
      : base_(base), words_(std::make_unique<std::atomic<uint64_t>[]>(size / 64 / 64 + 1)) {}

  // Returns the number of quanta whose state was not the expected one.
  int Mark(uint64_t addr, uint64_t size, bool owned) {
    int conflicts = 0;
    for (uint64_t bit = (addr - base_) / 64, end = (addr + size - base_) / 64; bit < end;) {
      const uint64_t word = bit / 64, first = bit % 64;
      const uint64_t count = std::min<uint64_t>(64 - first, end - bit);
      const uint64_t mask = (count == 64 ? ~uint64_t{0} : (uint64_t{1} << count) - 1) << first;
      const uint64_t old = owned ? words_[word].fetch_or(mask) : words_[word].fetch_and(~mask);
      conflicts += __builtin_popcountll(owned ? (old & mask) : (~old & mask));
      bit += count;
    }
    return conflicts;
  }

 private:
  const uint64_t base_;
  std::unique_ptr<std::atomic<uint64_t>[]> words_;
};

TEST(Vmem, ConcurrentAllocAndFreeNeverHandOutOverlappingRanges) {
  constexpr uint64_t kBase = uint64_t{1} << 32, kSize = uint64_t{1} << 28;
  Vmem source(ArenaOptions(4096, 4 * 4096));
  ASSERT_TRUE(source.AddSpan(kBase, kSize).ok());
  Vmem child(ArenaOptions(64, 1024, &source, 1 << 16));
  OwnershipMap owners(kBase, kSize);
  std::atomic<int> conflicts{0};
  std::atomic<int> failures{0};
  std::atomic<bool> done{false};

  constexpr int kThreads = 4;
  constexpr int kOpsPerThread = 50000;
  auto worker = [&](int id) {
    std::mt19937_64 rng(id);
    std::vector<std::tuple<Vmem*, uint64_t, uint64_t>> mine;
    for (int op = 0; op < kOpsPerThread; ++op) {
      if (!mine.empty() && (rng() % 100 < 45 || mine.size() > 200)) {
        const size_t i = rng() % mine.size();
        const auto [arena, addr, size] = mine[i];
        mine[i] = mine.back();
        mine.pop_back();
        conflicts += owners.Mark(addr, size, false);
        arena->Free(addr, size);
        continue;
      }
      Vmem* arena = (id % 2 == 0 || rng() % 4 == 0) ? &child : &source;
      const uint64_t quantum = arena->quantum();
      const uint64_t size = quantum * (rng() % 3 == 0 ? 1 + rng() % 64 : 1 + rng() % 16);
      absl::StatusOr<uint64_t> addr =
          rng() % 8 == 0 ? arena->XAlloc(size, uint64_t{4096} << (rng() % 4))
                         : arena->Alloc(size, rng() % 2 ? Fit::kBest : Fit::kInstant);
      if (!addr.ok()) {
        ++failures;
        continue;
      }
      conflicts += owners.Mark(*addr, size, true);
      mine.emplace_back(arena, *addr, size);
    }
    for (const auto& [arena, addr, size] : mine) {
      conflicts += owners.Mark(addr, size, false);
      arena->Free(addr, size);
    }
  };
  std::vector<std::thread> threads;
  for (int id = 0; id < kThreads; ++id) threads.emplace_back(worker, id);
  // Meanwhile the checker takes every lock of both arenas now and then.
  int checks = 0;
  std::thread checker([&] {
    while (!done.load()) {
      EXPECT_TRUE(child.CheckConsistency().ok()) << child.CheckConsistency();
      EXPECT_TRUE(source.CheckConsistency().ok()) << source.CheckConsistency();
      ++checks;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  });
  for (std::thread& thread : threads) thread.join();
  done = true;
  checker.join();

  EXPECT_EQ(conflicts.load(), 0);
  EXPECT_EQ(failures.load(), 0);
  EXPECT_GT(checks, 0);
  child.ReapCaches();
  source.ReapCaches();
  EXPECT_EQ(child.InUseBytes(), 0u);
  EXPECT_EQ(child.TotalBytes(), 0u);
  EXPECT_EQ(source.InUseBytes(), 0u);
  EXPECT_TRUE(child.CheckConsistency().ok()) << child.CheckConsistency();
  EXPECT_TRUE(source.CheckConsistency().ok()) << source.CheckConsistency();
}

}  // namespace
}  // namespace ptmpfs::vm
