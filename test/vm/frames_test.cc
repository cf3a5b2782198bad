#include "vm/frames.h"

#include <random>
#include <set>
#include <vector>

#include "gtest/gtest.h"
#include "test/testing.h"

namespace ptmpfs::vm {
namespace {

TEST(FramesTest, RefusesABudgetBelowTheMinimum) {
  absl::StatusOr<std::unique_ptr<Frames>> frames = Frames::Create(kMinFrames - 1);
  ASSERT_FALSE(frames.ok());
  EXPECT_EQ(frames.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(frames.status().message().find("below the minimum"), std::string::npos);
}

TEST(FramesTest, AllocatesAlignedRunsOfEveryOrder) {
  auto frames = *Frames::Create(64);
  for (int order = 0; order <= kMaxOrder; ++order) {
    std::optional<FrameNumber> run = frames->Alloc(order);
    ASSERT_TRUE(run.has_value());
    EXPECT_EQ(*run % (1u << order), 0u) << "order " << order;
  }
  ASSERT_TRUE(frames->CheckConsistency().ok());
}

TEST(FramesTest, FreeCoalescesBuddies) {
  auto frames = *Frames::Create(16);
  std::vector<FrameNumber> singles;
  while (auto frame = frames->Alloc(0)) singles.push_back(*frame);
  ASSERT_EQ(singles.size(), 16u);
  EXPECT_FALSE(frames->Alloc(0).has_value());
  for (FrameNumber frame : singles) frames->Free(frame, 0);
  EXPECT_EQ(frames->free_count(), 16u);
  // Everything coalesced back into runs of the largest order.
  EXPECT_TRUE(frames->Alloc(kMaxOrder).has_value());
  EXPECT_TRUE(frames->Alloc(kMaxOrder).has_value());
  ASSERT_TRUE(frames->CheckConsistency().ok());
}

TEST(FramesTest, ReserveForMigrationPicksTheBlockWithFewestPages) {
  auto frames = *Frames::Create(16);
  std::vector<FrameNumber> all;
  while (auto frame = frames->Alloc(0)) all.push_back(*frame);
  for (FrameNumber frame : all) frames->desc(frame).state = FrameState::kPage;
  // Free frames 1, 2, 3 (block 0 then holds one page) and 5 (block 1 holds three).
  for (FrameNumber frame : {1u, 2u, 3u, 5u}) frames->Free(frame, 0);
  EXPECT_FALSE(frames->Alloc(2).has_value());
  std::optional<FrameNumber> block =
      frames->ReserveRunForMigration(2, [](FrameNumber) { return true; });
  ASSERT_TRUE(block.has_value());
  EXPECT_EQ(*block, 0u);
  for (FrameNumber frame : {1u, 2u, 3u}) {
    EXPECT_EQ(frames->desc(frame).state.load(), FrameState::kReserved);
  }
  EXPECT_EQ(frames->desc(0).state.load(), FrameState::kPage);
  EXPECT_EQ(frames->free_count(), 1u);
  ASSERT_TRUE(frames->CheckConsistency().ok());
}

TEST(FramesTest, ReserveForMigrationRespectsUnmovablePages) {
  auto frames = *Frames::Create(16);
  std::vector<FrameNumber> all;
  while (auto frame = frames->Alloc(0)) all.push_back(*frame);
  for (FrameNumber frame : all) frames->desc(frame).state = FrameState::kPage;
  frames->Free(1, 0);
  EXPECT_FALSE(frames->ReserveRunForMigration(2, [](FrameNumber) { return false; }).has_value());
  ASSERT_TRUE(frames->CheckConsistency().ok());
}

TEST(FramesTest, RandomizedAllocFreeKeepsListsConsistent) {
  const uint64_t seed = testing::TestSeed();
  std::printf("seed %llu\n", static_cast<unsigned long long>(seed));
  std::mt19937_64 random(seed);
  auto frames = *Frames::Create(256);
  std::vector<std::pair<FrameNumber, int>> held;
  std::set<FrameNumber> owned;
  for (int step = 0; step < 20000; ++step) {
    if (held.empty() || random() % 2 == 0) {
      int order = static_cast<int>(random() % (kMaxOrder + 1));
      if (auto run = frames->Alloc(order)) {
        ASSERT_EQ(*run % (1u << order), 0u);
        for (FrameNumber f = *run; f < *run + (1u << order); ++f) {
          ASSERT_TRUE(owned.insert(f).second) << "frame handed out twice";
        }
        held.emplace_back(*run, order);
      }
    } else {
      size_t victim = random() % held.size();
      auto [run, order] = held[victim];
      for (FrameNumber f = run; f < run + (1u << order); ++f) owned.erase(f);
      frames->Free(run, order);
      held[victim] = held.back();
      held.pop_back();
    }
    ASSERT_EQ(frames->free_count() + owned.size(), 256u);
  }
  ASSERT_TRUE(frames->CheckConsistency().ok());
}

}  // namespace
}  // namespace ptmpfs::vm
