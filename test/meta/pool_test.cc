// Pools of fixed-size items in pageable pages: hand-out and reuse, Put without
// faults, lazy return of empty pages, both page sizes, the preference for resident
// pages, item numbering, ENOSPC, bookkeeping, a randomized model and threads.
#include "meta/pool.h"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <map>
#include <random>
#include <set>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "test/testing.h"
#include "vm/pager.h"
#include "vm/vm.h"

namespace ptmpfs::meta {
namespace {

constexpr uint64_t kSpaceBase = uint64_t{1} << 32;
constexpr uint64_t kSpaceSize = uint64_t{1} << 46;
constexpr uint64_t kEverything = uint64_t{1} << 40;  // a Reclaim target nothing reaches

struct Fixture {
  std::unique_ptr<vm::Vm> vm;
  std::unique_ptr<vm::Map> space;
};

struct VmConfig {
  uint64_t frames = 256;
  bool noswap = false;
  uint64_t swap_bytes = 64 << 20;
  bool pager_thread = false;
  int frame_wait_ms = 1000;
};

Fixture MakeVm(const VmConfig& config) {
  vm::VmOptions options;
  options.ram_bytes = config.frames * vm::kPageSize;
  options.noswap = config.noswap;
  options.swap.size_bytes = config.swap_bytes;
  options.start_pager_thread = config.pager_thread;
  options.frame_wait_ms = config.frame_wait_ms;
  Fixture f;
  absl::StatusOr<std::unique_ptr<vm::Vm>> made = vm::Vm::Create(options);
  EXPECT_TRUE(made.ok()) << made.status();
  if (!made.ok()) return f;
  f.vm = *std::move(made);
  f.space = *vm::Map::CreateAddressSpace(*f.vm, kSpaceBase, kSpaceSize);
  return f;
}

std::unique_ptr<Pool> MakePool(Fixture& f, uint32_t item_size, int page_order = 0,
                               uint32_t empty_pages_kept = 2) {
  Pool::Options options;
  options.name = "test";
  options.item_size = item_size;
  options.page_order = page_order;
  options.empty_pages_kept = empty_pages_kept;
  absl::StatusOr<std::unique_ptr<Pool>> pool = Pool::Create(*f.space, options);
  EXPECT_TRUE(pool.ok()) << pool.status();
  return pool.ok() ? *std::move(pool) : nullptr;
}

// Fills the item with words derived from `tag`, and checks them.
void WriteItem(Pool& pool, Addr item, uint64_t tag) {
  auto pin = pool.Pin<char>(item, vm::Access::kWrite);
  ASSERT_TRUE(pin.ok()) << pin.status();
  for (uint32_t word = 0; word < pool.item_size() / 8; ++word) {
    const uint64_t value = tag * 0x9E3779B97F4A7C15ull + word;
    std::memcpy(pin->get() + 8 * word, &value, 8);
  }
}

void CheckItem(Pool& pool, Addr item, uint64_t tag) {
  auto pin = pool.Pin<char>(item, vm::Access::kRead);
  ASSERT_TRUE(pin.ok()) << pin.status();
  for (uint32_t word = 0; word < pool.item_size() / 8; ++word) {
    uint64_t value;
    std::memcpy(&value, pin->get() + 8 * word, 8);
    ASSERT_EQ(value, tag * 0x9E3779B97F4A7C15ull + word) << "item " << item << " word " << word;
  }
}

std::vector<Addr> GetMany(Pool& pool, size_t count) {
  std::vector<Addr> items;
  for (size_t i = 0; i < count; ++i) {
    absl::StatusOr<Addr> item = pool.Get();
    EXPECT_TRUE(item.ok()) << item.status();
    if (!item.ok()) break;
    items.push_back(*item);
  }
  return items;
}

uint64_t PageOf(Pool& pool, Addr item) { return (item - pool.map().base()) / pool.page_bytes(); }

bool PageResident(Pool& pool, Addr item) {
  const vm::Entry* entry = pool.map().page_table().Find(PageOf(pool, item));
  return entry != nullptr && vm::Pte::KindOf(entry->load()) == vm::Pte::kResident;
}

TEST(PoolTest, CreateRejectsBadOptions) {
  Fixture f = MakeVm({});
  Pool::Options options;
  options.item_size = 12;
  EXPECT_EQ(Pool::Create(*f.space, options).status().code(), absl::StatusCode::kInvalidArgument);
  options.item_size = 8192;  // larger than a 4 KiB page
  EXPECT_EQ(Pool::Create(*f.space, options).status().code(), absl::StatusCode::kInvalidArgument);
  options.item_size = 64;
  options.page_order = 5;
  EXPECT_EQ(Pool::Create(*f.space, options).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(PoolTest, GetHandsOutDistinctSlotsAndPutMakesThemReusable) {
  Fixture f = MakeVm({});
  std::unique_ptr<Pool> pool = MakePool(f, 48);
  EXPECT_EQ(pool->items_per_page(), 4096u / 48);
  std::vector<Addr> items = GetMany(*pool, 300);
  ASSERT_EQ(items.size(), 300u);
  std::set<Addr> distinct(items.begin(), items.end());
  EXPECT_EQ(distinct.size(), items.size());
  for (Addr item : items) {
    ASSERT_TRUE(pool->Contains(item));
    ASSERT_EQ((item - pool->map().base()) % pool->page_bytes() % 48, 0u);
    ASSERT_LT((item - pool->map().base()) % pool->page_bytes() / 48, pool->items_per_page());
    ASSERT_TRUE(pool->IsLive(item));
  }
  EXPECT_EQ(pool->items_in_use(), 300u);
  EXPECT_EQ(pool->pages_in_use(), (300 + 84) / 85);
  for (size_t i = 0; i < items.size(); ++i) WriteItem(*pool, items[i], i);
  for (size_t i = 0; i < items.size(); ++i) CheckItem(*pool, items[i], i);

  // A freed slot is the next one handed out (its page is resident and at the head).
  pool->Put(items[123]);
  EXPECT_FALSE(pool->IsLive(items[123]));
  EXPECT_EQ(pool->items_in_use(), 299u);
  absl::StatusOr<Addr> again = pool->Get();
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(*again, items[123]);
  EXPECT_TRUE(pool->CheckConsistency().ok()) << pool->CheckConsistency();
  for (Addr item : items) pool->Put(item);
  EXPECT_EQ(pool->items_in_use(), 0u);
  EXPECT_TRUE(pool->CheckConsistency().ok()) << pool->CheckConsistency();
}

TEST(PoolTest, NewPagesReadAsZero) {
  Fixture f = MakeVm({});
  std::unique_ptr<Pool> pool = MakePool(f, 256);
  for (Addr item : GetMany(*pool, 40)) {
    auto pin = pool->Pin<char[256]>(item, vm::Access::kRead);
    ASSERT_TRUE(pin.ok());
    for (char c : **pin) ASSERT_EQ(c, 0);
  }
}

TEST(PoolTest, PutNeverFaultsEvenWhenEveryPageIsSwappedOut) {
  Fixture f = MakeVm({.frames = 128});
  std::unique_ptr<Pool> pool = MakePool(f, 64);
  std::vector<Addr> items = GetMany(*pool, 64 * 200);  // 200 pages, more than the frames
  for (size_t i = 0; i < items.size(); ++i) WriteItem(*pool, items[i], i);
  f.vm->pager().Reclaim(kEverything);
  for (Addr item : items) ASSERT_FALSE(PageResident(*pool, item));
  const vm::StatsSnapshot before = f.vm->ReadStats();
  for (Addr item : items) pool->Put(item);
  const vm::StatsSnapshot after = f.vm->ReadStats();
  EXPECT_EQ(after.faults, before.faults);
  EXPECT_EQ(after.pageins, before.pageins);
  EXPECT_EQ(after.free_frames, before.free_frames);
  EXPECT_EQ(pool->items_in_use(), 0u);
  // The pages stay (lazy return) until the next Get or Reap.
  EXPECT_EQ(pool->pages_in_use(), 200u);
}

// The pool numbers its pages itself: numbers given back are reused before new ones,
// so item numbers (inode numbers) stay dense after files come and go.
TEST(PoolTest, GivenBackPageNumbersAreReused) {
  Fixture f = MakeVm({.frames = 128});
  std::unique_ptr<Pool> pool = MakePool(f, 1024);  // 4 items per page
  constexpr uint64_t kPages = 50;
  std::vector<Addr> items = GetMany(*pool, 4 * kPages);
  Addr highest = 0;
  for (Addr item : items) highest = std::max(highest, item);
  for (Addr item : items) pool->Put(item);
  EXPECT_EQ(pool->Reap(0), kPages);
  EXPECT_EQ(pool->map().allocated_bytes(), 0u);
  items = GetMany(*pool, 4 * kPages);
  for (Addr item : items) EXPECT_LE(item, highest);
  EXPECT_EQ(pool->pages_in_use(), kPages);
  EXPECT_TRUE(pool->CheckConsistency().ok()) << pool->CheckConsistency();
}

TEST(PoolTest, EmptyPagesAreGivenBackOnlyByReapOrGet) {
  Fixture f = MakeVm({.frames = 128});
  std::unique_ptr<Pool> pool = MakePool(f, 1024);  // 4 items per page
  constexpr uint64_t kPages = 200;
  const vm::StatsSnapshot start = f.vm->ReadStats();
  std::vector<Addr> items = GetMany(*pool, 4 * kPages);
  for (size_t i = 0; i < items.size(); ++i) WriteItem(*pool, items[i], i);
  f.vm->pager().Reclaim(kEverything);
  const vm::StatsSnapshot full = f.vm->ReadStats();
  const uint64_t allocated_full = pool->map().allocated_bytes();
  EXPECT_EQ(full.charged_pages - start.charged_pages, kPages);
  EXPECT_GE(full.swap_slots_used, kPages);

  for (Addr item : items) pool->Put(item);
  EXPECT_EQ(pool->pages_in_use(), kPages);
  EXPECT_EQ(pool->empty_pages(), kPages);
  const vm::StatsSnapshot put = f.vm->ReadStats();
  EXPECT_EQ(put.charged_pages, full.charged_pages);
  EXPECT_EQ(put.swap_slots_used, full.swap_slots_used);

  // Reap gives back all but the kept ones: charge, swap slots and address space go.
  EXPECT_EQ(pool->Reap(), kPages - 2);
  EXPECT_EQ(pool->pages_in_use(), 2u);
  EXPECT_TRUE(pool->CheckConsistency().ok()) << pool->CheckConsistency();
  const vm::StatsSnapshot reaped = f.vm->ReadStats();
  EXPECT_EQ(reaped.charged_pages, start.charged_pages + 2);
  EXPECT_LE(reaped.swap_slots_used, full.swap_slots_used - (kPages - 2));
  EXPECT_EQ(pool->map().allocated_bytes(), allocated_full - (kPages - 2) * pool->page_bytes());
  EXPECT_EQ(pool->Reap(0), 2u);
  EXPECT_EQ(f.vm->ReadStats().charged_pages, start.charged_pages);

  // Frames come back too: fill resident pages, free them, and Get gives back some.
  items = GetMany(*pool, 4 * 60);
  for (size_t i = 0; i < items.size(); ++i) WriteItem(*pool, items[i], i);
  const uint64_t free_frames_full = f.vm->ReadStats().free_frames;
  for (Addr item : items) pool->Put(item);
  EXPECT_EQ(pool->pages_in_use(), 60u);
  ASSERT_TRUE(pool->Get().ok());  // takes one item and gives back a few excess pages
  const uint64_t pages_after_get = pool->pages_in_use();
  EXPECT_LT(pages_after_get, 60u);
  EXPECT_GT(f.vm->ReadStats().free_frames, free_frames_full);
  pool->Reap();
  EXPECT_EQ(pool->pages_in_use(), 3u);  // the page of the item out, and two kept
  EXPECT_EQ(f.vm->ReadStats().free_frames, free_frames_full + 57);
}

TEST(PoolTest, SixteenKibPagesHoldContiguousItemsUnderOnePin) {
  Fixture f = MakeVm({.frames = 128});
  for (uint32_t item_size : {16384u, 5456u, 4096u}) {
    SCOPED_TRACE(item_size);
    std::unique_ptr<Pool> pool = MakePool(f, item_size, 2);
    EXPECT_EQ(pool->page_bytes(), 16384u);
    EXPECT_EQ(pool->items_per_page(), 16384u / item_size);
    std::vector<Addr> items = GetMany(*pool, 40);  // 40 .. 160 frames: some go to swap
    for (size_t i = 0; i < items.size(); ++i) {
      auto pin = pool->Pin<char>(items[i], vm::Access::kWrite);
      ASSERT_TRUE(pin.ok()) << pin.status();
      EXPECT_EQ(pin->frame() % 4, 0u);  // an aligned run of four frames
      for (uint32_t byte = 0; byte < item_size; ++byte) pin->get()[byte] = char(i * 7 + byte);
    }
    f.vm->pager().Reclaim(kEverything);
    for (size_t i = 0; i < items.size(); ++i) {
      auto pin = pool->Pin<char>(items[i], vm::Access::kRead);
      ASSERT_TRUE(pin.ok()) << pin.status();
      for (uint32_t byte = 0; byte < item_size; ++byte) {
        ASSERT_EQ(pin->get()[byte], char(i * 7 + byte)) << "item " << i << " byte " << byte;
      }
    }
    for (Addr item : items) pool->Put(item);
  }
}

TEST(PoolTest, GetPrefersResidentPartlyFullPageOverColdOne) {
  Fixture f = MakeVm({.frames = 128});
  std::unique_ptr<Pool> pool = MakePool(f, 64);  // 64 items per page
  std::vector<Addr> items = GetMany(*pool, 128);
  for (size_t i = 0; i < items.size(); ++i) WriteItem(*pool, items[i], i);
  const Addr warm_hole = items[10];   // page A
  const Addr cold_hole = items[100];  // page B
  ASSERT_NE(PageOf(*pool, warm_hole), PageOf(*pool, cold_hole));
  pool->Put(warm_hole);
  pool->Put(cold_hole);  // B is now first on the partly-full list
  f.vm->pager().Reclaim(kEverything);
  CheckItem(*pool, items[11], 11);  // faults page A back in; B stays out
  ASSERT_TRUE(PageResident(*pool, warm_hole));
  ASSERT_FALSE(PageResident(*pool, cold_hole));

  const vm::StatsSnapshot before = f.vm->ReadStats();
  absl::StatusOr<Addr> item = pool->Get();
  ASSERT_TRUE(item.ok());
  EXPECT_EQ(*item, warm_hole);
  WriteItem(*pool, *item, 1000);
  EXPECT_EQ(f.vm->ReadStats().faults, before.faults);

  // With no resident partly full page left, the cold one is filled before any new page.
  item = pool->Get();
  ASSERT_TRUE(item.ok());
  EXPECT_EQ(*item, cold_hole);
  EXPECT_EQ(pool->pages_in_use(), 2u);
}

TEST(PoolTest, NumberAndAddressOfRoundTripDensely) {
  Fixture f = MakeVm({.frames = 64, .noswap = true});
  struct Shape {
    uint32_t item_size;
    int page_order;
  };
  for (Shape shape : {Shape{8, 0}, Shape{48, 0}, Shape{80, 0}, Shape{1024, 0}, Shape{1256, 2},
                      Shape{5456, 2}, Shape{16384, 2}}) {
    SCOPED_TRACE(shape.item_size);
    std::unique_ptr<Pool> pool = MakePool(f, shape.item_size, shape.page_order);
    const uint32_t per_page = pool->items_per_page();
    std::vector<Addr> items = GetMany(*pool, 3 * per_page);
    // The first items of a fresh pool fill its first pages in order: numbers 0, 1, ...
    std::vector<uint64_t> numbers;
    for (Addr item : items) numbers.push_back(pool->Number(item));
    std::sort(numbers.begin(), numbers.end());
    for (size_t i = 0; i < numbers.size(); ++i) ASSERT_EQ(numbers[i], i);
    for (Addr item : items) ASSERT_EQ(pool->AddressOf(pool->Number(item)), item);
    // Every slot of a page, including ones never handed out, round-trips.
    for (uint64_t number = 0; number < 8 * uint64_t{per_page}; ++number) {
      const Addr address = pool->AddressOf(number);
      ASSERT_TRUE(pool->Contains(address));
      ASSERT_EQ(pool->Number(address), number);
    }
    for (Addr item : items) pool->Put(item);
    pool->Reap(0);
  }
}

TEST(PoolTest, IsLiveRejectsFreedUnallocatedMisalignedAndForeignAddresses) {
  Fixture f = MakeVm({.frames = 64, .noswap = true});
  std::unique_ptr<Pool> pool = MakePool(f, 48);  // 85 slots, 16 bytes of tail per page
  std::unique_ptr<Pool> other = MakePool(f, 48);
  std::vector<Addr> items = GetMany(*pool, 100);
  ASSERT_EQ(items.size(), 100u);
  const Addr base = pool->map().base();
  EXPECT_TRUE(pool->IsLive(items[5]));
  pool->Put(items[5]);
  EXPECT_FALSE(pool->IsLive(items[5]));                     // freed
  EXPECT_FALSE(pool->IsLive(items[7] + 8));                 // inside an item
  EXPECT_FALSE(pool->IsLive(items[7] + 1));                 // not even 8-aligned
  EXPECT_FALSE(pool->IsLive(base + 85 * 48));               // the page's tail
  EXPECT_FALSE(pool->IsLive(pool->AddressOf(3 * 85 + 1)));  // a page never allocated
  EXPECT_FALSE(pool->IsLive(pool->AddressOf(1000 * 85)));   // far beyond
  EXPECT_FALSE(pool->IsLive(kNullAddr));
  absl::StatusOr<Addr> foreign = other->Get();
  ASSERT_TRUE(foreign.ok());
  EXPECT_FALSE(pool->IsLive(*foreign));
  EXPECT_TRUE(other->IsLive(*foreign));
  // A page given back makes its slots dead again.
  for (Addr item : items) {
    if (item != items[5]) pool->Put(item);
  }
  pool->Reap(0);
  EXPECT_EQ(pool->pages_in_use(), 0u);
  for (Addr item : items) ASSERT_FALSE(pool->IsLive(item));
}

TEST(PoolTest, GetReturnsResourceExhaustedWhenSpaceRunsOutAndKeepsEarlierItems) {
  Fixture f = MakeVm({.frames = 48, .noswap = true, .frame_wait_ms = 200});
  std::unique_ptr<Pool> pool = MakePool(f, 1024);
  std::vector<Addr> items;
  absl::Status status;
  for (int i = 0; i < 10000; ++i) {
    absl::StatusOr<Addr> item = pool->Get();
    if (!item.ok()) {
      status = item.status();
      break;
    }
    WriteItem(*pool, *item, items.size());
    items.push_back(*item);
  }
  ASSERT_EQ(status.code(), absl::StatusCode::kResourceExhausted) << status;
  ASSERT_GT(items.size(), 40u);
  EXPECT_EQ(pool->items_in_use(), items.size());
  for (size_t i = 0; i < items.size(); ++i) CheckItem(*pool, items[i], i);
  EXPECT_EQ(pool->Get().status().code(), absl::StatusCode::kResourceExhausted);

  pool->Put(items[17]);
  absl::StatusOr<Addr> again = pool->Get();
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(*again, items[17]);
  WriteItem(*pool, *again, 17);
  for (size_t i = 0; i < items.size(); ++i) CheckItem(*pool, items[i], i);
}

TEST(PoolTest, BookkeepingStaysUnderOnePercentOfPoolPages) {
  // 1563 pages of each shape (100k items of 64 bytes; 6 MiB, 25 MiB of 16 KiB pages):
  // Get alone never touches a page, so they are charged but take no frame.
  Fixture f = MakeVm({.frames = 64, .swap_bytes = 256 << 20});
  struct Shape {
    uint32_t item_size;
    int page_order;
  };
  for (Shape shape : {Shape{32, 0}, Shape{64, 0}, Shape{256, 0}, Shape{1024, 0}, Shape{1256, 2},
                      Shape{5456, 2}}) {
    std::unique_ptr<Pool> pool = MakePool(f, shape.item_size, shape.page_order);
    const size_t count = size_t{1563} * pool->items_per_page();  // 100k items of 64 bytes
    std::vector<Addr> items = GetMany(*pool, count);
    ASSERT_EQ(items.size(), count);
    const uint64_t page_bytes = pool->pages_in_use() * pool->page_bytes();
    const uint64_t bookkeeping = pool->bookkeeping_bytes();
    const double per_page = double(bookkeeping) / pool->pages_in_use();
    std::printf(
        "item %5u order %d: %zu items, %lu pages, bookkeeping %lu bytes = %.1f per page "
        "(%.3f%%), %.3f per item; page table %lu bytes\n",
        shape.item_size, shape.page_order, count, pool->pages_in_use(), bookkeeping, per_page,
        100.0 * bookkeeping / page_bytes, double(bookkeeping) / count,
        pool->map().page_table().node_bytes());
    EXPECT_LE(bookkeeping * 100, page_bytes) << "item size " << shape.item_size;
    for (Addr item : items) pool->Put(item);
  }
}

// Drives a pool against a std::map model while a small RAM budget makes the pager
// evict (and pins fault back in): every item carries a payload checked when freed.
void RunRandomizedAgainstModel(uint32_t item_size, int page_order, size_t max_live_pages,
                               int operations) {
  const uint64_t seed = testing::TestSeed();
  std::printf("seed %lu (replay with PTMPFS_SEED=%lu)\n", seed, seed);
  SCOPED_TRACE(seed);
  Fixture f = MakeVm({.frames = 64, .swap_bytes = 64 << 20, .pager_thread = true});
  std::unique_ptr<Pool> pool = MakePool(f, item_size, page_order);
  std::mt19937_64 random(seed);
  std::map<Addr, uint64_t> model;
  std::vector<Addr> live;  // the model's keys, for picking one at random
  std::vector<Addr> freed;
  uint64_t next_tag = 1;
  const size_t max_live = max_live_pages * pool->items_per_page();
  for (int op = 0; op < operations; ++op) {
    // The first max_live operations fill the pool beyond RAM; then Get and Put are
    // even, with the occasional Reap and spot check.
    const uint64_t dice = random() % 100;
    const bool grow =
        live.size() < max_live && (static_cast<size_t>(op) < max_live || dice < 50 || live.empty());
    if (grow) {
      absl::StatusOr<Addr> item = pool->Get();
      ASSERT_TRUE(item.ok()) << item.status();
      ASSERT_FALSE(model.contains(*item)) << "handed out twice: " << *item;
      ASSERT_TRUE(pool->IsLive(*item));
      WriteItem(*pool, *item, next_tag);
      model[*item] = next_tag++;
      live.push_back(*item);
    } else if (dice < 97) {
      const size_t pick = random() % live.size();
      const Addr item = live[pick];
      CheckItem(*pool, item, model[item]);
      if (::testing::Test::HasFatalFailure()) return;
      pool->Put(item);
      ASSERT_FALSE(pool->IsLive(item));
      model.erase(item);
      live[pick] = live.back();
      live.pop_back();
      freed.push_back(item);
    } else if (dice < 98) {
      pool->Reap();
    } else {
      // Spot checks: a freed address that is not live again is dead; numbers
      // round-trip.
      if (!freed.empty()) {
        const Addr item = freed[random() % freed.size()];
        ASSERT_EQ(pool->IsLive(item), model.contains(item));
      }
      if (!live.empty()) {
        const Addr item = live[random() % live.size()];
        ASSERT_EQ(pool->AddressOf(pool->Number(item)), item);
      }
    }
    if (op % 1024 == 0) {
      ASSERT_EQ(pool->items_in_use(), model.size());
      ASSERT_TRUE(pool->CheckConsistency().ok()) << pool->CheckConsistency();
    }
  }
  ASSERT_EQ(pool->items_in_use(), model.size());
  ASSERT_TRUE(pool->CheckConsistency().ok()) << pool->CheckConsistency();
  for (const auto& [item, tag] : model) {
    CheckItem(*pool, item, tag);
    if (::testing::Test::HasFatalFailure()) return;
    pool->Put(item);
  }
  EXPECT_EQ(pool->items_in_use(), 0u);
  pool->Reap(0);
  EXPECT_EQ(pool->pages_in_use(), 0u);
  const vm::StatsSnapshot stats = f.vm->ReadStats();
  std::printf("faults %lu pageins %lu pageouts %lu\n", stats.faults, stats.pageins, stats.pageouts);
  EXPECT_GT(stats.pageins, 0u);  // the pager did evict: the test exercised swap
}

TEST(PoolTest, RandomizedAgainstModelWhileThePagerEvicts) {
  RunRandomizedAgainstModel(48, 0, 100, testing::kSanitized ? 100000 : 200000);
}

TEST(PoolTest, RandomizedAgainstModelWithSixteenKibPages) {
  RunRandomizedAgainstModel(1256, 2, 30, testing::kSanitized ? 50000 : 100000);
}

TEST(PoolTest, FourThreadsGetAndPutDistinctItemsWhileThePagerEvicts) {
  // Up to 8000 items of 64 bytes: 125 pages over 64 frames.
  Fixture f = MakeVm({.frames = 64, .swap_bytes = 64 << 20, .pager_thread = true});
  std::unique_ptr<Pool> pool = MakePool(f, 64);
  constexpr int kThreads = 4;
  const int operations = testing::kSanitized ? 20000 : 100000;
  std::vector<std::vector<Addr>> kept(kThreads);
  std::atomic<bool> failed{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 random(t);
      std::vector<std::pair<Addr, uint64_t>> mine;
      for (int op = 0; op < operations && !failed; ++op) {
        if (mine.size() < 2000 && (random() % 3 != 0 || mine.empty())) {
          absl::StatusOr<Addr> item = pool->Get();
          if (!item.ok()) {
            failed = true;
            break;
          }
          const uint64_t tag = (uint64_t(t) << 56) | op;
          auto pin = pool->Pin<uint64_t>(*item, vm::Access::kWrite);
          if (!pin.ok()) {
            failed = true;
            break;
          }
          **pin = tag;
          mine.emplace_back(*item, tag);
        } else {
          const size_t pick = random() % mine.size();
          auto pin = pool->Pin<uint64_t>(mine[pick].first, vm::Access::kRead);
          // Another thread holding the same item would have overwritten the tag.
          if (!pin.ok() || **pin != mine[pick].second) {
            failed = true;
            break;
          }
          pin->Release();
          pool->Put(mine[pick].first);
          mine[pick] = mine.back();
          mine.pop_back();
        }
      }
      for (const auto& [item, tag] : mine) {
        auto pin = pool->Pin<uint64_t>(item, vm::Access::kRead);
        if (!pin.ok() || **pin != tag) failed = true;
        kept[t].push_back(item);
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  ASSERT_FALSE(failed);
  std::printf("faults %lu pageouts %lu\n", f.vm->ReadStats().faults, f.vm->ReadStats().pageouts);
  std::set<Addr> all;
  size_t total = 0;
  for (const std::vector<Addr>& items : kept) {
    all.insert(items.begin(), items.end());
    total += items.size();
  }
  EXPECT_EQ(all.size(), total);  // no item held by two threads
  EXPECT_EQ(pool->items_in_use(), total);
  for (Addr item : all) ASSERT_TRUE(pool->IsLive(item));
  EXPECT_TRUE(pool->CheckConsistency().ok()) << pool->CheckConsistency();
}

TEST(PoolDeathTest, PutOfAnItemNotHandedOutAborts) {
  Fixture f = MakeVm({.frames = 64, .noswap = true});
  std::unique_ptr<Pool> pool = MakePool(f, 64);
  absl::StatusOr<Addr> item = pool->Get();
  ASSERT_TRUE(item.ok());
  pool->Put(*item);
  EXPECT_DEATH(pool->Put(*item), "not handed out");
  EXPECT_DEATH(pool->Put(pool->AddressOf(5000)), "not handed out");  // page never held
  absl::StatusOr<Addr> live = pool->Get();
  ASSERT_TRUE(live.ok());
  EXPECT_DEATH(pool->Put(*live + 8), "not handed out");                // inside a live item
  EXPECT_DEATH(pool->Put(pool->map().base() - 64), "not handed out");  // another map's
}

}  // namespace
}  // namespace ptmpfs::meta
