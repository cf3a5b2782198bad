// populator: memory is taken from the host for the touched chunk at once and for the
// chunks just below it by the thread, and nowhere else.
#include "vm/populator.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <vector>

#include "gtest/gtest.h"

namespace ptmpfs::vm {
namespace {

constexpr uint64_t kChunk = Populator::kChunkBytes;

class Region {
 public:
  explicit Region(uint64_t bytes) : bytes_(bytes) {
    void* base = mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    base_ = base == MAP_FAILED ? nullptr : static_cast<char*>(base);
  }
  ~Region() {
    if (base_ != nullptr) munmap(base_, bytes_);
  }
  char* base() const { return base_; }

  // Whether every page of chunk `chunk` is resident (all) or none is (!all).
  bool ChunkResident(uint64_t chunk, bool all) const {
    std::vector<unsigned char> vec(kChunk / static_cast<uint64_t>(getpagesize()));
    if (mincore(base_ + chunk * kChunk, kChunk, vec.data()) != 0) return false;
    for (unsigned char page : vec) {
      if (((page & 1) != 0) != all) return false;
    }
    return true;
  }

 private:
  const uint64_t bytes_;
  char* base_ = nullptr;
};

TEST(PopulatorTest, PopulatesTheTouchedChunkAndTheOnesBelowIt) {
  constexpr uint64_t kChunks = 2 * Populator::kAheadChunks;
  Region region(kChunks * kChunk);
  ASSERT_NE(region.base(), nullptr);
  Populator populator(region.base(), kChunks * kChunk);
  for (uint64_t c = 0; c < kChunks; ++c) EXPECT_TRUE(region.ChunkResident(c, false)) << c;

  const uint64_t top = kChunks - 1;
  populator.Touch(region.base() + top * kChunk + 4096 * 7);
  EXPECT_TRUE(region.ChunkResident(top, true));  // at once, before Touch returns
  populator.WaitIdle();
  for (uint64_t c = 0; c < kChunks; ++c) {
    const bool ahead = c + Populator::kAheadChunks >= top;
    EXPECT_TRUE(region.ChunkResident(c, ahead)) << "chunk " << c;
  }
  EXPECT_EQ(populator.populated_chunks(), Populator::kAheadChunks + 1);

  // Touching a populated chunk again does nothing; touching the next one down takes
  // it and everything below it (fewer than kAheadChunks).
  populator.Touch(region.base() + top * kChunk);
  populator.Touch(region.base() + (top - Populator::kAheadChunks - 1) * kChunk);
  populator.WaitIdle();
  EXPECT_EQ(populator.populated_chunks(), kChunks);
  for (uint64_t c = 0; c < kChunks; ++c) EXPECT_TRUE(region.ChunkResident(c, true)) << c;
}

TEST(PopulatorTest, StaysAheadAsWritesMoveDown) {
  constexpr uint64_t kChunks = 4 * Populator::kAheadChunks;
  Region region(kChunks * kChunk);
  ASSERT_NE(region.base(), nullptr);
  Populator populator(region.base(), kChunks * kChunk);
  // Writes move down a chunk at a time, as Frames hands out fresh frames: each first
  // touch of a chunk the thread already populated still asks for more below it.
  for (uint64_t c = kChunks; c-- > kChunks - 2 * Populator::kAheadChunks;) {
    populator.Touch(region.base() + c * kChunk);
    populator.WaitIdle();
    const uint64_t ahead_to = c > Populator::kAheadChunks ? c - Populator::kAheadChunks : 0;
    for (uint64_t below = c; below-- > ahead_to;) {
      ASSERT_TRUE(region.ChunkResident(below, true)) << "at " << c << ", chunk " << below;
    }
  }
  EXPECT_EQ(populator.populated_chunks(), 3 * Populator::kAheadChunks);
}

TEST(PopulatorTest, ARegionNotAWholeNumberOfChunks) {
  const uint64_t bytes = kChunk + 5 * 4096;
  Region region(bytes);
  ASSERT_NE(region.base(), nullptr);
  Populator populator(region.base(), bytes);
  populator.Touch(region.base() + kChunk + 4096);  // the short last chunk
  populator.WaitIdle();
  EXPECT_EQ(populator.populated_chunks(), 2u);
  unsigned char vec[5];
  ASSERT_EQ(mincore(region.base() + kChunk, 5 * 4096, vec), 0);
  for (unsigned char page : vec) EXPECT_EQ(page & 1, 1);
}

TEST(PopulatorTest, StopsPromptlyWithWorkPending) {
  constexpr uint64_t kChunks = 64;
  Region region(kChunks * kChunk);
  ASSERT_NE(region.base(), nullptr);
  {
    Populator populator(region.base(), kChunks * kChunk);
    populator.Touch(region.base() + (kChunks - 1) * kChunk);
  }  // the destructor joins the thread, whatever it was doing
  SUCCEED();
}

}  // namespace
}  // namespace ptmpfs::vm
