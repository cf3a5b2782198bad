#include "vm/page_table.h"

#include <map>
#include <random>

#include "gtest/gtest.h"
#include "test/testing.h"

namespace ptmpfs::vm {
namespace {

TEST(PageTableTest, AbsentIndicesHaveNoEntry) {
  PageTable table(0);
  EXPECT_EQ(table.Find(PageTable::kDirectEntries), nullptr);
  EXPECT_EQ(table.Find(uint64_t{1} << 40), nullptr);
  EXPECT_EQ(table.node_bytes(), 0u);
}

TEST(PageTableTest, DirectEntriesCostNoNode) {
  PageTable table(0);
  for (PageIndex index = 0; index < PageTable::kDirectEntries; ++index) {
    ASSERT_NE(table.Find(index), nullptr);
    table.Find(index)->store(Pte::Make(Pte::kZero));
  }
  EXPECT_EQ(table.node_bytes(), 0u);
  EXPECT_EQ(table.NextPopulated(0, 100), 0u);
  EXPECT_EQ(table.NextPopulated(1, 100), 1u);
}

TEST(PageTableTest, EntryAddressIsStableAcrossGrowth) {
  PageTable table(0);
  Entry* low = *table.FindOrCreate(5);
  low->store(Pte::Make(Pte::kSwapped, 77));
  Entry* high = *table.FindOrCreate(uint64_t{1} << 40);
  high->store(Pte::Make(Pte::kZero));
  EXPECT_EQ(table.Find(5), low);
  EXPECT_EQ(Pte::Payload(table.Find(5)->load()), 77u);
  EXPECT_EQ(table.Find(uint64_t{1} << 40), high);
}

TEST(PageTableTest, HugeSparseIndexCostsOnePathOfNodes) {
  PageTable table(0);
  ASSERT_TRUE(table.FindOrCreate((uint64_t{1} << 40) + 3).ok());
  // 41 bits of index need ceil(41 / 7) = 6 levels: one node per level.
  EXPECT_EQ(table.node_bytes(), 6 * 128 * sizeof(Entry));
}

TEST(PageTableTest, NextPopulatedSkipsAbsentSubtrees) {
  PageTable table(0);
  const PageIndex far = uint64_t{1} << 38;
  (*table.FindOrCreate(10))->store(Pte::Make(Pte::kZero));
  (*table.FindOrCreate(far))->store(Pte::Make(Pte::kZero));
  (*table.FindOrCreate(far + 1000))->store(Pte::Make(Pte::kZero));
  EXPECT_EQ(table.NextPopulated(0, ~uint64_t{0}), 10u);
  EXPECT_EQ(table.NextPopulated(11, ~uint64_t{0}), far);
  EXPECT_EQ(table.NextPopulated(far + 1, ~uint64_t{0}), far + 1000);
  EXPECT_EQ(table.NextPopulated(far + 1001, ~uint64_t{0}), ~uint64_t{0});
  EXPECT_EQ(table.NextPopulated(11, far), far);  // end is exclusive
  // An entry created but holding kNone is not populated.
  (*table.FindOrCreate(20));
  EXPECT_EQ(table.NextPopulated(11, 100), 100u);
}

TEST(PageTableTest, RandomizedAgainstMap) {
  const uint64_t seed = testing::TestSeed();
  std::printf("seed %llu\n", static_cast<unsigned long long>(seed));
  std::mt19937_64 random(seed);
  PageTable table(0);
  std::map<PageIndex, uint64_t> model;
  for (int step = 0; step < 20000; ++step) {
    // Mix dense low indices with sparse huge ones.
    PageIndex index = (random() % 2) ? random() % 4096 : random() % (uint64_t{1} << 40);
    uint64_t value = Pte::Make(Pte::kSwapped, random() % 1000000);
    if (random() % 4 == 0) value = Pte::kNone;
    (*table.FindOrCreate(index))->store(value);
    if (value == Pte::kNone) {
      model.erase(index);
    } else {
      model[index] = value;
    }
    if (step % 1000 == 0) {
      PageIndex from = random() % (uint64_t{1} << 40);
      auto it = model.lower_bound(from);
      PageIndex expected = it == model.end() ? ~uint64_t{0} : it->first;
      ASSERT_EQ(table.NextPopulated(from, ~uint64_t{0}), expected);
    }
  }
  std::vector<PageIndex> visited;
  table.ForEachPopulated(0, ~uint64_t{0}, [&](PageIndex index, Entry& entry) {
    visited.push_back(index);
    EXPECT_EQ(entry.load(), model[index]);
  });
  ASSERT_EQ(visited.size(), model.size());
}

}  // namespace
}  // namespace ptmpfs::vm
