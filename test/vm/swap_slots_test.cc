#include "vm/swap_slots.h"

#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "test/testing.h"

namespace ptmpfs::vm {
namespace {

TEST(SwapSlotsTest, NothingIsAllocatableBeforeGrow) {
  SwapSlots slots(100);
  EXPECT_EQ(slots.Alloc(1).status().code(), absl::StatusCode::kResourceExhausted);
  slots.Grow(10);
  EXPECT_TRUE(slots.Alloc(10).ok());
  EXPECT_FALSE(slots.Alloc(1).ok());
}

TEST(SwapSlotsTest, ARunIsFreedSlotBySlot) {
  SwapSlots slots(64);
  slots.Grow(64);
  uint64_t run = *slots.Alloc(16);
  for (uint64_t slot = run; slot < run + 16; slot += 2) slots.Free(slot, 1);
  EXPECT_EQ(slots.used(), 8u);
  for (uint64_t slot = run + 1; slot < run + 16; slot += 2) EXPECT_TRUE(slots.IsAllocated(slot));
  for (uint64_t slot = run + 1; slot < run + 16; slot += 2) slots.Free(slot, 1);
  EXPECT_EQ(slots.used(), 0u);
  EXPECT_TRUE(slots.Alloc(64).ok());
}

TEST(SwapSlotsTest, RunsAreAlignedToTheirSizeUpToAGroupWhereTheyCanBe) {
  SwapSlots slots(1024);
  slots.Grow(1024);
  ASSERT_EQ(*slots.Alloc(1), 0u);
  EXPECT_EQ(*slots.Alloc(64), 64u);   // not 1: the next multiple of 64
  EXPECT_EQ(*slots.Alloc(3), 128u);   // a multiple of 4
  EXPECT_EQ(*slots.Alloc(100), 192u);  // at most group-aligned
  // Where no aligned run is free, an unaligned one does.
  SwapSlots tight(8);
  tight.Grow(8);
  ASSERT_EQ(*tight.Alloc(1), 0u);
  EXPECT_EQ(*tight.Alloc(7), 1u);
}

TEST(SwapSlotsTest, WhollyFreedGroupsAreHandedOutOnceUnlessReused) {
  SwapSlots slots(256);
  slots.Grow(256);
  uint64_t groups[4];
  const uint64_t first = *slots.Alloc(192);  // groups 0, 1, 2
  EXPECT_EQ(slots.TakeFreedGroups(groups, 4), 0u);
  slots.Free(first, 100);  // group 0 and part of group 1
  slots.Free(first + 128, 64);  // group 2
  ASSERT_EQ(slots.TakeFreedGroups(groups, 4), 2u);
  EXPECT_EQ(groups[0], 0u);
  EXPECT_EQ(groups[1], 2u);
  EXPECT_EQ(slots.TakeFreedGroups(groups, 4), 0u);
  // A group used again before it is taken is not handed out.
  SwapSlots full(128);
  full.Grow(128);
  ASSERT_EQ(*full.Alloc(128), 0u);
  full.Free(64, 64);
  ASSERT_EQ(*full.Alloc(1), 64u);
  EXPECT_EQ(full.TakeFreedGroups(groups, 4), 0u);
}

TEST(SwapSlotsTest, FindsTheOnlyRunThatFits) {
  SwapSlots slots(256);
  slots.Grow(256);
  std::vector<uint64_t> singles;
  for (int i = 0; i < 256; ++i) singles.push_back(*slots.Alloc(1));
  for (uint64_t slot = 200; slot < 204; ++slot) slots.Free(slot, 1);
  slots.Free(10, 1);
  absl::StatusOr<uint64_t> run = slots.Alloc(4);
  ASSERT_TRUE(run.ok());
  EXPECT_EQ(*run, 200u);
  EXPECT_EQ(slots.Alloc(2).status().code(), absl::StatusCode::kResourceExhausted);
}

TEST(SwapSlotsTest, RandomizedAgainstAModel) {
  const uint64_t seed = testing::TestSeed();
  std::printf("seed %llu\n", static_cast<unsigned long long>(seed));
  std::mt19937_64 random(seed);
  SwapSlots slots(1000);
  slots.Grow(500);
  std::vector<bool> model(1000, false);
  for (int step = 0; step < 50000; ++step) {
    if (step == 20000) slots.Grow(1000);
    if (random() % 2 == 0) {
      uint64_t count = 1 + random() % 16;
      absl::StatusOr<uint64_t> run = slots.Alloc(count);
      if (!run.ok()) continue;
      ASSERT_LE(*run + count, slots.limit());
      for (uint64_t slot = *run; slot < *run + count; ++slot) {
        ASSERT_FALSE(model[slot]) << "slot " << slot << " handed out twice";
        model[slot] = true;
      }
    } else {
      uint64_t slot = random() % slots.limit();
      if (model[slot]) {
        slots.Free(slot, 1);
        model[slot] = false;
      }
    }
  }
  uint64_t used = 0;
  for (uint64_t slot = 0; slot < 1000; ++slot) {
    ASSERT_EQ(slots.IsAllocated(slot), model[slot]);
    used += model[slot];
  }
  EXPECT_EQ(slots.used(), used);
}

}  // namespace
}  // namespace ptmpfs::vm
