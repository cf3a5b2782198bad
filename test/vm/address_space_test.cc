// Pins, faults, the pager and migration, seen through the address space.
#include "vm/address_space.h"

#include <unistd.h>

#include <cstring>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "test/testing.h"
#include "vm/pager.h"
#include "vm/vm.h"

namespace ptmpfs::vm {
namespace {

constexpr uint64_t kSpaceBase = uint64_t{1} << 32;
constexpr uint64_t kSpaceSize = uint64_t{1} << 40;

struct Fixture {
  std::unique_ptr<Vm> vm;
  std::unique_ptr<Map> space;
  std::unique_ptr<Map> pages;  // pageable submap of 4 KiB pages
};

Fixture Make(uint64_t frames, bool pager_thread = false, bool noswap = false,
             uint64_t swap_bytes = 64 << 20, int frame_wait_ms = 500) {
  VmOptions options;
  options.ram_bytes = frames * kPageSize;
  options.noswap = noswap;
  options.swap.size_bytes = swap_bytes;
  options.start_pager_thread = pager_thread;
  options.frame_wait_ms = frame_wait_ms;
  Fixture f;
  absl::StatusOr<std::unique_ptr<Vm>> vm = Vm::Create(options);
  EXPECT_TRUE(vm.ok()) << vm.status();
  f.vm = *std::move(vm);
  f.space = *Map::CreateAddressSpace(*f.vm, kSpaceBase, kSpaceSize);
  f.pages = *f.space->Suballoc("pages", uint64_t{1} << 32, 0, true);
  return f;
}

uint64_t EntryOf(Map& map, uint64_t address) {
  return map.page_table().Find((address - map.base()) / map.page_bytes())->load();
}

void Fill(Map& map, uint64_t address, uint64_t tag) {
  auto pin = map.Pin<uint64_t[512]>(address, Access::kWrite);
  ASSERT_TRUE(pin.ok()) << pin.status();
  for (int i = 0; i < 512; ++i) (**pin)[i] = tag * 1000 + i;
}

void Check(Map& map, uint64_t address, uint64_t tag) {
  auto pin = map.Pin<uint64_t[512]>(address, Access::kRead);
  ASSERT_TRUE(pin.ok()) << pin.status();
  for (int i = 0; i < 512; ++i) ASSERT_EQ((**pin)[i], tag * 1000 + i) << "word " << i;
}

TEST(AddressSpaceTest, FirstTouchIsZeroFilled) {
  Fixture f = Make(64);
  uint64_t address = *f.pages->Alloc(kPageSize);
  auto pin = f.pages->Pin<char[kPageSize]>(address, Access::kRead);
  ASSERT_TRUE(pin.ok());
  for (char c : **pin) ASSERT_EQ(c, 0);
  EXPECT_EQ(f.vm->ReadStats().zero_fills, 1u);
}

TEST(AddressSpaceTest, PinOfUnallocatedAddressIsNotFound) {
  Fixture f = Make(64);
  auto pin = f.pages->Pin<int>(f.pages->base() + 100 * kPageSize, Access::kRead);
  EXPECT_EQ(pin.status().code(), absl::StatusCode::kNotFound);
}

TEST(AddressSpaceTest, SubmapsAreDisjointAndComeBack) {
  Fixture f = Make(64);
  auto big = *f.space->Suballoc("big", uint64_t{1} << 36, 2, true);
  EXPECT_EQ(big->page_bytes(), 4 * kPageSize);
  EXPECT_EQ(big->base() % big->page_bytes(), 0u);
  EXPECT_FALSE(big->Contains(f.pages->base()));
  EXPECT_FALSE(f.pages->Contains(big->base()));
  uint64_t used = f.space->allocated_bytes();
  big.reset();
  EXPECT_LT(f.space->allocated_bytes(), used);
}

TEST(AddressSpaceTest, EvictedPagesComeBackIntact) {
  Fixture f = Make(32);
  std::vector<uint64_t> addresses;
  for (uint64_t tag = 0; tag < 200; ++tag) {
    addresses.push_back(*f.pages->Alloc(kPageSize));
    Fill(*f.pages, addresses.back(), tag);
  }
  for (uint64_t tag = 0; tag < 200; ++tag) Check(*f.pages, addresses[tag], tag);
  StatsSnapshot stats = f.vm->ReadStats();
  EXPECT_GT(stats.pageouts, 150u);
  EXPECT_GT(stats.pageins, 150u);
  EXPECT_LE(stats.resident_frames, 32u);
}

// A map whose owner places pages itself: charged, pinned and freed as with Alloc.
TEST(AddressSpaceTest, PagesPlacedByTheOwnerAreChargedAndFreed) {
  Fixture f = Make(64);
  const uint64_t charged = f.vm->accounting().charged();
  const uint64_t address = f.pages->base() + 1000 * kPageSize;
  ASSERT_TRUE(f.pages->AllocAt(address, 3 * kPageSize).ok());
  EXPECT_EQ(f.vm->accounting().charged(), charged + 3);
  EXPECT_EQ(f.pages->allocated_bytes(), 3 * kPageSize);
  for (uint64_t i = 0; i < 3; ++i) Fill(*f.pages, address + i * kPageSize, i);
  while (f.vm->pager().Reclaim(64) > 0) {
  }
  for (uint64_t i = 0; i < 3; ++i) Check(*f.pages, address + i * kPageSize, i);
  f.pages->FreeAt(address, 3 * kPageSize);
  EXPECT_EQ(f.vm->accounting().charged(), charged);
  EXPECT_EQ(f.pages->allocated_bytes(), 0u);
  EXPECT_EQ(f.vm->ReadStats().swap_slots_used, 0u);
  EXPECT_EQ(f.pages->Pin<char>(address, Access::kRead).status().code(),
            absl::StatusCode::kNotFound);
  // Past the end of the map: ResourceExhausted, nothing charged.
  EXPECT_EQ(f.pages->AllocAt(f.pages->base() + f.pages->size() - kPageSize, 2 * kPageSize).code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(f.vm->accounting().charged(), charged);
}

TEST(AddressSpaceTest, DirtyNeighboursGoOutInOneWrite) {
  Fixture f = Make(64);
  uint64_t address = *f.pages->Alloc(16 * kPageSize);
  for (uint64_t i = 0; i < 16; ++i) Fill(*f.pages, address + i * kPageSize, i);
  f.vm->pager().Reclaim(64);
  StatsSnapshot stats = f.vm->ReadStats();
  EXPECT_EQ(stats.pageouts, 16u);
  EXPECT_EQ(stats.pageout_ios, 1u);
  for (uint64_t i = 0; i < 16; ++i) Check(*f.pages, address + i * kPageSize, i);
}

TEST(AddressSpaceTest, CleanPageIsEvictedWithoutAWrite) {
  Fixture f = Make(64);
  uint64_t address = *f.pages->Alloc(kPageSize);
  Fill(*f.pages, address, 7);
  f.vm->pager().Reclaim(64);
  Check(*f.pages, address, 7);  // read back: clean, keeps its slot
  uint64_t pageouts = f.vm->ReadStats().pageouts;
  f.vm->pager().Reclaim(64);
  EXPECT_EQ(f.vm->ReadStats().pageouts, pageouts);
  EXPECT_GE(f.vm->ReadStats().clean_evictions, 1u);
  Check(*f.pages, address, 7);
}

TEST(AddressSpaceTest, UntouchedZeroPageIsEvictedToZeroFill) {
  Fixture f = Make(64);
  uint64_t address = *f.pages->Alloc(kPageSize);
  { auto pin = f.pages->Pin<char>(address, Access::kRead); }
  f.vm->pager().Reclaim(64);
  EXPECT_EQ(f.vm->ReadStats().pageouts, 0u);
  EXPECT_EQ(f.vm->ReadStats().swap_slots_used, 0u);
  EXPECT_EQ(Pte::KindOf(EntryOf(*f.pages, address)), Pte::kZero);
}


// A fault that leaves free frames below the low watermark evicts clean pages itself,
// up to the high watermark, with no pager thread and no write.
TEST(AddressSpaceTest, FaultsRefillFreeFramesFromCleanPages) {
  Fixture f = Make(64);
  constexpr uint64_t kPages = 200;
  uint64_t address = *f.pages->Alloc(kPages * kPageSize);
  for (uint64_t i = 0; i < kPages; ++i) Fill(*f.pages, address + i * kPageSize, i);
  while (f.vm->pager().Reclaim(64) > 0) {
  }
  const uint64_t pageouts = f.vm->ReadStats().pageouts;
  for (uint64_t i = 0; i < kPages; ++i) {
    Check(*f.pages, address + i * kPageSize, i);
    // Direct reclaim alone would free only what one fault needs, leaving fewer.
    ASSERT_GE(f.vm->frames().free_count(), f.vm->pager().low_water()) << "after page " << i;
  }
  StatsSnapshot stats = f.vm->ReadStats();
  EXPECT_EQ(stats.pageouts, pageouts);
  EXPECT_GE(stats.clean_evictions, kPages - 64);
}

// Dirty pages at the inactive head are the pager thread's to write: a fault's refill
// leaves them, and only a fault that finds no frame at all writes (direct reclaim).
TEST(AddressSpaceTest, RefillLeavesDirtyPagesToThePager) {
  Fixture f = Make(64);
  uint64_t address = *f.pages->Alloc(64 * kPageSize);
  uint64_t filled = 0;
  while (f.vm->frames().free_count() >= f.vm->pager().low_water()) {
    Fill(*f.pages, address + filled * kPageSize, filled);
    ++filled;
  }
  EXPECT_LT(f.vm->frames().free_count(), f.vm->pager().low_water());
  EXPECT_EQ(f.vm->ReadStats().pageouts, 0u);
  EXPECT_EQ(f.vm->ReadStats().clean_evictions, 0u);
  for (uint64_t i = 0; i < filled; ++i) Check(*f.pages, address + i * kPageSize, i);
}
TEST(AddressSpaceTest, WiredPagesAreNeverEvicted) {
  Fixture f = Make(64);
  uint64_t address = *f.pages->Alloc(kPageSize);
  Fill(*f.pages, address, 1);
  auto pin = f.pages->Pin<uint64_t>(address, Access::kRead);
  ASSERT_TRUE(pin.ok());
  f.vm->pager().Reclaim(64);
  EXPECT_EQ(**pin, 1000u);
  EXPECT_EQ(Pte::KindOf(EntryOf(*f.pages, address)), Pte::kResident);
}

TEST(AddressSpaceTest, WiredSubmapStaysResident) {
  Fixture f = Make(64);
  auto wired = *f.space->Suballoc("wired", 1 << 20, 0, false);
  uint64_t address = *wired->Alloc(2 * kPageSize);
  EXPECT_EQ(f.vm->wired_frames(), 2);
  f.vm->pager().Reclaim(64);
  EXPECT_EQ(f.vm->ReadStats().pageouts, 0u);
  wired->Free(address, 2 * kPageSize);
  EXPECT_EQ(f.vm->wired_frames(), 0);
}

TEST(AddressSpaceTest, LargePagesAreOneContiguousRun) {
  Fixture f = Make(64);
  auto big = *f.space->Suballoc("big", 1 << 24, 2, true);
  uint64_t address = *big->Alloc(4 * kPageSize);
  {
    auto pin = big->Pin<char[4 * kPageSize]>(address, Access::kWrite);
    ASSERT_TRUE(pin.ok());
    for (uint64_t i = 0; i < 4 * kPageSize; ++i) (**pin)[i] = static_cast<char>(i % 251);
    EXPECT_EQ(pin->frame() % 4, 0u);
  }
  f.vm->pager().Reclaim(64);
  EXPECT_EQ(f.vm->ReadStats().pageouts, 4u);
  auto pin = big->Pin<char[4 * kPageSize]>(address, Access::kRead);
  ASSERT_TRUE(pin.ok());
  for (uint64_t i = 0; i < 4 * kPageSize; ++i) {
    ASSERT_EQ((**pin)[i], static_cast<char>(i % 251));
  }
}

TEST(AddressSpaceTest, AlignedRunIsMadeByMigrationNotPageout) {
  Fixture f = Make(32);
  // Fill every frame with single pages, then free every other one: half the frames
  // are free but no aligned run of 4 exists.
  std::vector<uint64_t> addresses;
  for (uint64_t i = 0; i < 32; ++i) {
    addresses.push_back(*f.pages->Alloc(kPageSize));
    Fill(*f.pages, addresses.back(), i);
  }
  ASSERT_EQ(f.vm->frames().free_count(), 0u);
  ASSERT_EQ(f.vm->ReadStats().pageouts, 0u);
  for (uint64_t i = 0; i < 32; i += 2) f.pages->Free(addresses[i], kPageSize);
  ASSERT_EQ(f.vm->frames().free_count(), 16u);
  ASSERT_FALSE(f.vm->frames().Alloc(2).has_value());

  auto big = *f.space->Suballoc("big", 1 << 24, 2, true);
  uint64_t address = *big->Alloc(4 * kPageSize);
  auto pin = big->Pin<char>(address, Access::kWrite);
  ASSERT_TRUE(pin.ok()) << pin.status();
  StatsSnapshot stats = f.vm->ReadStats();
  EXPECT_GE(stats.migrations, 2u);
  EXPECT_EQ(stats.pageouts, 0u);
  pin->Release();
  for (uint64_t i = 1; i < 32; i += 2) Check(*f.pages, addresses[i], i);
}

TEST(AddressSpaceTest, NoSwapRunsOutOfSpaceAtAllocation) {
  Fixture f = Make(32, false, true);
  std::vector<uint64_t> addresses;
  absl::Status status;
  for (int i = 0; i < 100; ++i) {
    absl::StatusOr<uint64_t> address = f.pages->Alloc(kPageSize);
    if (!address.ok()) {
      status = address.status();
      break;
    }
    addresses.push_back(*address);
    Fill(*f.pages, *address, i);
  }
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_LT(addresses.size(), 32u);
  for (uint64_t i = 0; i < addresses.size(); ++i) Check(*f.pages, addresses[i], i);
  f.pages->Free(addresses.back(), kPageSize);
  EXPECT_TRUE(f.pages->Alloc(kPageSize).ok());
}

TEST(AddressSpaceTest, FullSwapIsNoSpaceAtAllocationAndLosesNothing) {
  // 2 MiB of swap: 256 slots beyond the 1 MiB data offset.
  Fixture f = Make(32, true, false, 2 << 20);
  std::vector<uint64_t> addresses;
  absl::Status status;
  for (int i = 0; i < 10000; ++i) {
    absl::StatusOr<uint64_t> address = f.pages->Alloc(kPageSize);
    if (!address.ok()) {
      status = address.status();
      break;
    }
    addresses.push_back(*address);
    Fill(*f.pages, *address, i);
  }
  EXPECT_EQ(status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_GT(addresses.size(), 200u);
  for (uint64_t i = 0; i < addresses.size(); ++i) Check(*f.pages, addresses[i], i);
  // Freeing still works, and so does allocating after.
  for (uint64_t i = 0; i < addresses.size(); i += 2) f.pages->Free(addresses[i], kPageSize);
  EXPECT_TRUE(f.pages->Alloc(kPageSize).ok());
  for (uint64_t i = 1; i < addresses.size(); i += 2) Check(*f.pages, addresses[i], i);
}

TEST(AddressSpaceTest, CorruptSlotFailsThatPageOnly) {
  Fixture f = Make(32);
  std::vector<uint64_t> addresses;
  for (uint64_t i = 0; i < 8; ++i) {
    addresses.push_back(*f.pages->Alloc(kPageSize));
    Fill(*f.pages, addresses.back(), i);
  }
  f.vm->pager().Reclaim(32);
  uint64_t pte = EntryOf(*f.pages, addresses[3]);
  ASSERT_EQ(Pte::KindOf(pte), Pte::kSwapped);
  const char garbage[16] = "not what it was";
  ASSERT_EQ(pwrite(f.vm->swap()->fd(), garbage, sizeof garbage,
                   f.vm->swap()->SlotOffset(Pte::Payload(pte)) + 100),
            static_cast<ssize_t>(sizeof garbage));
  auto pin = f.pages->Pin<uint64_t>(addresses[3], Access::kRead);
  EXPECT_EQ(pin.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(f.vm->ReadStats().checksum_failures, 1u);
  for (uint64_t i = 0; i < 8; ++i) {
    if (i != 3) Check(*f.pages, addresses[i], i);
  }
  // Still failing, still not crashing; and it can be freed.
  EXPECT_EQ(f.pages->Pin<uint64_t>(addresses[3], Access::kRead).status().code(),
            absl::StatusCode::kDataLoss);
  f.pages->Free(addresses[3], kPageSize);
}

TEST(AddressSpaceTest, WiredCapMakesAFaultWaitThenFail) {
  Fixture f = Make(16, true);
  const uint64_t cap = f.vm->wired_cap();
  std::vector<uint64_t> addresses;
  std::vector<Pin<char>> pins;
  for (uint64_t i = 0; i < cap + 1; ++i) addresses.push_back(*f.pages->Alloc(kPageSize));
  for (uint64_t i = 0; i < cap; ++i) {
    auto pin = f.pages->Pin<char>(addresses[i], Access::kWrite);
    ASSERT_TRUE(pin.ok()) << i << ": " << pin.status();
    pins.push_back(*std::move(pin));
  }
  auto beyond = f.pages->Pin<char>(addresses[cap], Access::kWrite);
  EXPECT_EQ(beyond.status().code(), absl::StatusCode::kResourceExhausted);
  // An unpin from another thread lets a waiting fault through.
  std::thread unpinner([&] { pins.pop_back(); });
  auto after = f.pages->Pin<char>(addresses[cap], Access::kWrite);
  unpinner.join();
  EXPECT_TRUE(after.ok()) << after.status();
}

TEST(AddressSpaceTest, ManyThreadsPinningWithAFewFramesDoNotDeadlock) {
  Fixture f = Make(16, true, false, 64 << 20, 100);
  std::vector<uint64_t> addresses;
  for (int i = 0; i < 64; ++i) addresses.push_back(*f.pages->Alloc(kPageSize));
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int step = 0; step < 50; ++step) {
        // Two pins at once per thread: 16 wired would exceed the cap of 8.
        auto a = f.pages->Pin<uint64_t>(addresses[(t * 7 + step) % 64], Access::kWrite);
        auto b = f.pages->Pin<uint64_t>(addresses[(t * 13 + step * 3) % 64], Access::kWrite);
        if (!a.ok() || !b.ok()) failures.fetch_add(1);
      }
    });
  }
  for (auto& thread : threads) thread.join();
  // Bounded waits may fail some pins; what matters is that every thread finished.
  std::printf("pins refused at the wired cap: %d of 800\n", failures.load());
  EXPECT_EQ(f.vm->wired_frames(), 0);
}

TEST(AddressSpaceTest, ResidentMemoryStaysWithinTheBudget) {
  if (testing::kSanitized) GTEST_SKIP() << "RSS is meaningless under sanitizers' shadow memory";
  const uint64_t rss_before = testing::RssBytes();
  constexpr uint64_t kBudget = 4 << 20;
  constexpr uint64_t kData = 64 << 20;
  Fixture f = Make(kBudget / kPageSize, true, false, 256 << 20);
  uint64_t address = *f.pages->Alloc(kData);
  for (uint64_t page = 0; page < kData / kPageSize; ++page) {
    Fill(*f.pages, address + page * kPageSize, page);
  }
  for (uint64_t page = 0; page < kData / kPageSize; ++page) {
    Check(*f.pages, address + page * kPageSize, page);
  }
  const uint64_t growth = testing::RssBytes() - rss_before;
  std::printf("64 MiB through a 4 MiB budget: RSS grew %llu KiB, %llu pageouts\n",
              static_cast<unsigned long long>(growth >> 10),
              static_cast<unsigned long long>(f.vm->ReadStats().pageouts));
  // The budget, plus bookkeeping: page tables and checksums, about 10 bytes per page.
  EXPECT_LT(growth, kBudget + (4 << 20));
}

}  // namespace
}  // namespace ptmpfs::vm
