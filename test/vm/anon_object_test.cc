#include "vm/anon_object.h"

#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "gtest/gtest.h"
#include "test/testing.h"
#include "vm/pager.h"
#include "vm/ubc_window.h"
#include "vm/vm.h"

namespace ptmpfs::vm {
namespace {

constexpr uint64_t kPage = kPageSize;

// A Vm of `frames` frames with a temporary swap file of 64 MiB (or none).
std::unique_ptr<Vm> MakeVm(uint64_t frames, bool noswap = false, bool pager_thread = false) {
  VmOptions options;
  options.ram_bytes = frames * kPage;
  options.noswap = noswap;
  options.swap.size_bytes = uint64_t{64} << 20;
  options.frame_wait_ms = 2000;
  options.start_pager_thread = pager_thread;
  absl::StatusOr<std::unique_ptr<Vm>> vm = Vm::Create(options);
  EXPECT_TRUE(vm.ok()) << vm.status();
  return vm.ok() ? std::move(*vm) : nullptr;
}

// Evicts every unwired page, deterministically (no pager thread).
void EvictAll(Vm& vm) {
  for (int round = 0; round < 16; ++round) {
    if (vm.pager().Reclaim(vm.frames().count()) == 0) break;
  }
}

// Bytes that depend on their offset and `seed`, so misplaced data shows.
std::string Pattern(uint64_t offset, uint64_t length, uint64_t seed = 1) {
  std::string bytes(length, '\0');
  for (uint64_t i = 0; i < length; ++i) {
    uint64_t x = (offset + i) * 0x9E3779B97F4A7C15ull + seed * 0xD1B54A32D192ED03ull;
    x ^= x >> 29;
    bytes[i] = static_cast<char>((x & 0xFF) | 1);  // never zero: holes show
  }
  return bytes;
}

std::string ReadRange(AnonObject& object, uint64_t offset, uint64_t length) {
  std::string bytes(length, '\x55');
  absl::Status read = object.Read(offset, bytes.data(), length);
  EXPECT_TRUE(read.ok()) << read;
  return bytes;
}

bool AllZero(const std::string& bytes) {
  return std::all_of(bytes.begin(), bytes.end(), [](char c) { return c == 0; });
}

uint64_t SwapSlotOf(AnonObject& object, PageIndex page) {
  Entry* entry = object.table().Find(page);
  if (entry == nullptr) return kNoSlot;
  uint64_t pte = entry->load();
  return Pte::KindOf(pte) == Pte::kSwapped ? Pte::Payload(pte) : kNoSlot;
}

void CorruptSlot(Vm& vm, uint64_t slot) {
  std::string garbage(kPage, '\xA5');
  ASSERT_EQ(pwrite(vm.swap()->fd(), garbage.data(), kPage, vm.swap()->SlotOffset(slot)),
            static_cast<ssize_t>(kPage));
}

// --- Reading and writing ---

TEST(AnonObjectTest, WriteThenReadRoundTripsAcrossPageBoundaries) {
  std::unique_ptr<Vm> vm = MakeVm(64);
  ASSERT_NE(vm, nullptr);
  AnonObject object(*vm);
  const uint64_t offset = 4000;
  const std::string data = Pattern(offset, 3 * kPage + 1000);
  ASSERT_TRUE(object.Write(offset, data.data(), data.size()).ok());
  EXPECT_EQ(object.allocated_pages(), 5u);  // bytes 4000..17287 touch pages 0-4

  const std::string all = ReadRange(object, 0, 6 * kPage);
  EXPECT_TRUE(AllZero(all.substr(0, offset)));
  EXPECT_EQ(all.substr(offset, data.size()), data);
  EXPECT_TRUE(AllZero(all.substr(offset + data.size())));
  // An unaligned read inside the data.
  EXPECT_EQ(ReadRange(object, 5000, 9000), data.substr(1000, 9000));
}

TEST(AnonObjectTest, HolesReadAsZerosWithoutChargingOrFaulting) {
  std::unique_ptr<Vm> vm = MakeVm(64);
  ASSERT_NE(vm, nullptr);
  AnonObject object(*vm);
  const std::string data = Pattern(10 * kPage, kPage);
  ASSERT_TRUE(object.Write(10 * kPage, data.data(), data.size()).ok());
  const uint64_t charged = vm->accounting().charged();
  const StatsSnapshot before = vm->ReadStats();

  const std::string all = ReadRange(object, 0, 20 * kPage);
  EXPECT_TRUE(AllZero(all.substr(0, 10 * kPage)));
  EXPECT_EQ(all.substr(10 * kPage, kPage), data);
  EXPECT_TRUE(AllZero(all.substr(11 * kPage)));
  // A hole far beyond anything written.
  EXPECT_TRUE(AllZero(ReadRange(object, uint64_t{1} << 52, 2 * kPage)));

  EXPECT_EQ(vm->accounting().charged(), charged);
  EXPECT_EQ(object.allocated_pages(), 1u);
  EXPECT_EQ(vm->ReadStats().zero_fills, before.zero_fills);
  EXPECT_EQ(vm->ReadStats().resident_frames, before.resident_frames);
}

TEST(AnonObjectTest, AllocatedButUnwrittenPagesReadAsZerosWithoutAFrame) {
  std::unique_ptr<Vm> vm = MakeVm(64);
  ASSERT_NE(vm, nullptr);
  AnonObject object(*vm);
  ASSERT_TRUE(object.Allocate(100, 3 * kPage).ok());
  EXPECT_EQ(object.allocated_pages(), 4u);
  EXPECT_EQ(vm->accounting().charged(), 4u);
  EXPECT_TRUE(AllZero(ReadRange(object, 0, 4 * kPage)));
  EXPECT_EQ(vm->ReadStats().zero_fills, 0u);
  EXPECT_EQ(vm->ReadStats().resident_frames, 0u);
  // Allocating again charges nothing more.
  ASSERT_TRUE(object.Allocate(0, 4 * kPage).ok());
  EXPECT_EQ(vm->accounting().charged(), 4u);
}

TEST(AnonObjectTest, AllocateFailsWithNoSpaceBeforeAnyChange) {
  // noswap and 64 frames: `limit` pages can be charged (a few dozen).
  std::unique_ptr<Vm> vm = MakeVm(64, /*noswap=*/true);
  ASSERT_NE(vm, nullptr);
  const uint64_t limit = vm->accounting().capacity() - vm->accounting().reserve();
  ASSERT_GE(limit, 20u);
  AnonObject object(*vm);
  ASSERT_TRUE(object.Allocate(0, (limit - 10) * kPage).ok());

  // 21 pages from page limit-20: 10 are allocated already, 11 more do not fit.
  absl::Status too_big = object.Allocate((limit - 20) * kPage, 21 * kPage);
  EXPECT_EQ(too_big.code(), absl::StatusCode::kResourceExhausted) << too_big;
  EXPECT_EQ(vm->accounting().charged(), limit - 10);
  EXPECT_EQ(object.allocated_pages(), limit - 10);
  EXPECT_EQ(object.NextData((limit - 10) * kPage, 1000 * kPage), 1000 * kPage);
  // Refused far away: no radix node is grown for pages that were never charged.
  const uint64_t node_bytes = object.table().node_bytes();
  EXPECT_EQ(object.Allocate(uint64_t{1} << 45, 11 * kPage).code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(object.table().node_bytes(), node_bytes);

  // A write that does not fit writes nothing, not even into pages it already has.
  const std::string data = Pattern((limit - 15) * kPage, 20 * kPage);
  absl::Status write = object.Write((limit - 15) * kPage, data.data(), data.size());
  EXPECT_EQ(write.code(), absl::StatusCode::kResourceExhausted) << write;
  EXPECT_TRUE(AllZero(ReadRange(object, 0, limit * kPage)));
  EXPECT_EQ(vm->accounting().charged(), limit - 10);

  EXPECT_TRUE(object.Allocate((limit - 20) * kPage, 20 * kPage).ok());
  EXPECT_EQ(vm->accounting().charged(), limit);
}

TEST(AnonObjectTest, RangesPastTheLargestFileAreInvalid) {
  std::unique_ptr<Vm> vm = MakeVm(64);
  ASSERT_NE(vm, nullptr);
  AnonObject object(*vm);
  EXPECT_EQ(object.Allocate(AnonObject::kMaxBytes - kPage, 2 * kPage).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(object.Punch(UINT64_MAX, 2).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(object.Truncate(AnonObject::kMaxBytes + 1).code(), absl::StatusCode::kInvalidArgument);
  char byte = 7;
  EXPECT_TRUE(object.Write(AnonObject::kMaxBytes - 1, &byte, 1).ok());
  EXPECT_EQ(object.allocated_pages(), 1u);
  EXPECT_EQ(object.NextData(0, AnonObject::kMaxBytes), AnonObject::kMaxBytes - kPage);
}

// --- Punching holes ---

TEST(AnonObjectTest, PunchFreesResidentFramesAndCharge) {
  std::unique_ptr<Vm> vm = MakeVm(64);
  ASSERT_NE(vm, nullptr);
  AnonObject object(*vm);
  const std::string data = Pattern(0, 8 * kPage);
  ASSERT_TRUE(object.Write(0, data.data(), data.size()).ok());
  const uint64_t free_frames = vm->frames().free_count();

  ASSERT_TRUE(object.Punch(2 * kPage, 4 * kPage).ok());
  EXPECT_EQ(object.allocated_pages(), 4u);
  EXPECT_EQ(vm->accounting().charged(), 4u);
  EXPECT_EQ(vm->frames().free_count(), free_frames + 4);
  const std::string all = ReadRange(object, 0, 8 * kPage);
  EXPECT_EQ(all.substr(0, 2 * kPage), data.substr(0, 2 * kPage));
  EXPECT_TRUE(AllZero(all.substr(2 * kPage, 4 * kPage)));
  EXPECT_EQ(all.substr(6 * kPage), data.substr(6 * kPage));
  EXPECT_EQ(object.NextHole(0, 8 * kPage), 2 * kPage);
  EXPECT_EQ(object.NextData(2 * kPage, 8 * kPage), 6 * kPage);
}

TEST(AnonObjectTest, PunchHoleFreesSwapSlotsWithoutPagingIn) {
  std::unique_ptr<Vm> vm = MakeVm(64);
  ASSERT_NE(vm, nullptr);
  AnonObject object(*vm);
  const std::string data = Pattern(0, 16 * kPage);
  ASSERT_TRUE(object.Write(0, data.data(), data.size()).ok());
  EvictAll(*vm);
  const StatsSnapshot evicted = vm->ReadStats();
  ASSERT_EQ(evicted.resident_frames, 0u);
  ASSERT_EQ(evicted.swap_slots_used, 16u);
  ASSERT_GT(evicted.pageouts, 0u);

  ASSERT_TRUE(object.Punch(0, 16 * kPage).ok());
  const StatsSnapshot punched = vm->ReadStats();
  EXPECT_EQ(punched.pageins, evicted.pageins);
  EXPECT_EQ(punched.faults, evicted.faults);
  EXPECT_EQ(punched.swap_slots_used, 0u);
  EXPECT_EQ(punched.charged_pages, 0u);
  EXPECT_EQ(object.allocated_pages(), 0u);
}

TEST(AnonObjectTest, PunchWithPartialEdgesPagesInOnlyTheEdges) {
  std::unique_ptr<Vm> vm = MakeVm(64);
  ASSERT_NE(vm, nullptr);
  AnonObject object(*vm);
  const std::string data = Pattern(0, 8 * kPage);
  ASSERT_TRUE(object.Write(0, data.data(), data.size()).ok());
  EvictAll(*vm);
  const StatsSnapshot evicted = vm->ReadStats();
  ASSERT_EQ(evicted.swap_slots_used, 8u);

  // [1000, 6 pages + 1000): the tail of page 0, pages 1-5, the head of page 6.
  ASSERT_TRUE(object.Punch(1000, 6 * kPage).ok());
  EXPECT_EQ(vm->ReadStats().pageins - evicted.pageins, 2u);
  EXPECT_EQ(vm->ReadStats().swap_slots_used, 3u);  // pages 0 and 6 keep theirs until written
  EXPECT_EQ(object.allocated_pages(), 3u);
  const std::string all = ReadRange(object, 0, 8 * kPage);
  EXPECT_EQ(all.substr(0, 1000), data.substr(0, 1000));
  EXPECT_TRUE(AllZero(all.substr(1000, 6 * kPage)));
  EXPECT_EQ(all.substr(6 * kPage + 1000), data.substr(6 * kPage + 1000));

  // The zeroed edges were dirtied: evicting them writes them, and they read back zeroed.
  EvictAll(*vm);
  EXPECT_EQ(ReadRange(object, 0, 8 * kPage), all);
}

TEST(AnonObjectTest, PartialPagePunchZeroesOnlyTheRange) {
  std::unique_ptr<Vm> vm = MakeVm(64);
  ASSERT_NE(vm, nullptr);
  AnonObject object(*vm);
  const std::string data = Pattern(0, kPage);
  ASSERT_TRUE(object.Write(0, data.data(), data.size()).ok());
  ASSERT_TRUE(object.Punch(100, 200).ok());
  EXPECT_EQ(object.allocated_pages(), 1u);
  std::string expected = data;
  std::fill(expected.begin() + 100, expected.begin() + 300, '\0');
  EXPECT_EQ(ReadRange(object, 0, kPage), expected);
}

TEST(AnonObjectTest, PunchOverHolesAndZeroFillPagesFaultsNothing) {
  std::unique_ptr<Vm> vm = MakeVm(64);
  ASSERT_NE(vm, nullptr);
  AnonObject object(*vm);
  ASSERT_TRUE(object.Allocate(0, 2 * kPage).ok());
  ASSERT_TRUE(object.Punch(100, kPage + 1000).ok());   // two partial pages, zero-fill
  ASSERT_TRUE(object.Punch(5 * kPage + 7, 300).ok());  // inside a hole
  EXPECT_EQ(vm->ReadStats().faults, 0u);
  EXPECT_EQ(object.allocated_pages(), 2u);
  EXPECT_EQ(object.table().Find(5), nullptr);
}

TEST(AnonObjectTest, PunchThatCannotReadAnEdgeChangesNothing) {
  std::unique_ptr<Vm> vm = MakeVm(64);
  ASSERT_NE(vm, nullptr);
  AnonObject object(*vm);
  const std::string data = Pattern(0, 4 * kPage);
  ASSERT_TRUE(object.Write(0, data.data(), data.size()).ok());
  EvictAll(*vm);
  ASSERT_NE(SwapSlotOf(object, 3), kNoSlot);
  CorruptSlot(*vm, SwapSlotOf(object, 3));

  // Page 0's edge pages in fine, page 3's fails its checksum: pages 1-2 stay.
  absl::Status punched = object.Punch(100, 3 * kPage);
  EXPECT_EQ(punched.code(), absl::StatusCode::kDataLoss) << punched;
  EXPECT_EQ(object.allocated_pages(), 4u);
  EXPECT_EQ(vm->wired_frames(), 0);
  EXPECT_EQ(ReadRange(object, 0, 3 * kPage), data.substr(0, 3 * kPage));
  // Freeing the bad page whole needs no read: it succeeds.
  EXPECT_TRUE(object.Punch(3 * kPage, kPage).ok());
  EXPECT_EQ(object.allocated_pages(), 3u);
}

// --- Truncation ---

TEST(AnonObjectTest, TruncateDownThenUpReadsZeros) {
  std::unique_ptr<Vm> vm = MakeVm(64);
  ASSERT_NE(vm, nullptr);
  AnonObject object(*vm);
  const std::string data = Pattern(0, 5 * kPage);
  ASSERT_TRUE(object.Write(0, data.data(), data.size()).ok());

  ASSERT_TRUE(object.Truncate(2 * kPage + 100).ok());
  EXPECT_EQ(object.allocated_pages(), 3u);
  EXPECT_EQ(vm->accounting().charged(), 3u);
  // The caller grows the file again: everything past the cut reads as zeros.
  const std::string all = ReadRange(object, 0, 5 * kPage);
  EXPECT_EQ(all.substr(0, 2 * kPage + 100), data.substr(0, 2 * kPage + 100));
  EXPECT_TRUE(AllZero(all.substr(2 * kPage + 100)));
  // A write past the old end leaves the gap a hole.
  ASSERT_TRUE(object.Write(4 * kPage, data.data(), 10).ok());
  EXPECT_EQ(object.NextHole(0, 5 * kPage), 3 * kPage);
  EXPECT_TRUE(AllZero(ReadRange(object, 2 * kPage + 100, 2 * kPage - 100)));

  ASSERT_TRUE(object.Truncate(0).ok());
  EXPECT_EQ(object.allocated_pages(), 0u);
  EXPECT_EQ(vm->accounting().charged(), 0u);
}

TEST(AnonObjectTest, TruncateFreesSwappedPagesWithoutPagingIn) {
  std::unique_ptr<Vm> vm = MakeVm(64);
  ASSERT_NE(vm, nullptr);
  AnonObject object(*vm);
  const std::string data = Pattern(0, 12 * kPage);
  ASSERT_TRUE(object.Write(0, data.data(), data.size()).ok());
  EvictAll(*vm);
  const StatsSnapshot evicted = vm->ReadStats();
  ASSERT_EQ(evicted.swap_slots_used, 12u);
  ASSERT_TRUE(object.Truncate(4 * kPage).ok());  // page-aligned: no edge to zero
  EXPECT_EQ(vm->ReadStats().pageins, evicted.pageins);
  EXPECT_EQ(vm->ReadStats().swap_slots_used, 4u);
  EXPECT_EQ(ReadRange(object, 0, 4 * kPage), data.substr(0, 4 * kPage));
}

// --- SEEK_DATA and SEEK_HOLE ---

TEST(AnonObjectTest, NextDataAndNextHoleFollowASparseLayout) {
  std::unique_ptr<Vm> vm = MakeVm(64);
  ASSERT_NE(vm, nullptr);
  AnonObject object(*vm);
  // Pages 0, 3-5 (direct entries and the first node), 130 (another leaf), 1000.
  ASSERT_TRUE(object.Allocate(0, 1).ok());
  ASSERT_TRUE(object.Allocate(3 * kPage, 3 * kPage).ok());
  ASSERT_TRUE(object.Allocate(130 * kPage + 5, 1).ok());
  ASSERT_TRUE(object.Allocate(1000 * kPage, kPage).ok());
  const uint64_t end = 2000 * kPage;

  EXPECT_EQ(object.NextData(0, end), 0u);
  EXPECT_EQ(object.NextHole(0, end), kPage);
  EXPECT_EQ(object.NextHole(10, end), kPage);
  EXPECT_EQ(object.NextData(kPage, end), 3 * kPage);
  EXPECT_EQ(object.NextData(2 * kPage + 17, end), 3 * kPage);
  EXPECT_EQ(object.NextData(3 * kPage + 10, end), 3 * kPage + 10);
  EXPECT_EQ(object.NextHole(3 * kPage, end), 6 * kPage);
  EXPECT_EQ(object.NextHole(7 * kPage + 3, end), 7 * kPage + 3);
  EXPECT_EQ(object.NextData(6 * kPage, end), 130 * kPage);
  EXPECT_EQ(object.NextHole(130 * kPage + 5, end), 131 * kPage);
  EXPECT_EQ(object.NextData(131 * kPage, end), 1000 * kPage);
  EXPECT_EQ(object.NextData(1001 * kPage, end), end);
  // `end` bounds both answers: no data before it, or no hole before it.
  EXPECT_EQ(object.NextData(131 * kPage, 500 * kPage), 500 * kPage);
  EXPECT_EQ(object.NextHole(1000 * kPage, 1000 * kPage + 10), 1000 * kPage + 10);
  EXPECT_EQ(object.NextData(end, end), end);
  EXPECT_EQ(object.NextHole(end + 1, end), end);

  // Entries alone answer: nothing was faulted in.
  EXPECT_EQ(vm->ReadStats().faults, 0u);
}

TEST(AnonObjectTest, NextDataAndNextHoleHandleHugeOffsets) {
  std::unique_ptr<Vm> vm = MakeVm(64);
  ASSERT_NE(vm, nullptr);
  AnonObject object(*vm);
  const uint64_t far = uint64_t{1} << 52;  // page 2^40
  char byte = 'x';
  ASSERT_TRUE(object.Write(far + 10, &byte, 1).ok());
  EXPECT_EQ(object.NextData(0, AnonObject::kMaxBytes), far);
  EXPECT_EQ(object.NextData(far + 5, AnonObject::kMaxBytes), far + 5);
  EXPECT_EQ(object.NextHole(far, AnonObject::kMaxBytes), far + kPage);
  EXPECT_EQ(object.NextHole(0, AnonObject::kMaxBytes), 0u);
  EXPECT_EQ(object.NextData(far + kPage, AnonObject::kMaxBytes), AnonObject::kMaxBytes);
  EXPECT_EQ(object.NextData(0, UINT64_MAX), far);
  EXPECT_EQ(object.NextHole(far, UINT64_MAX), far + kPage);
  // Only the path to the page costs radix nodes (one per level, 1 KiB each).
  EXPECT_LE(object.table().node_bytes(), 8 * 1024u);
  EXPECT_EQ(ReadRange(object, far + 10, 1), "x");
}

// --- Swap ---

TEST(AnonObjectTest, DataSurvivesEvictionToSwapAndBack) {
  std::unique_ptr<Vm> vm = MakeVm(64);
  ASSERT_NE(vm, nullptr);
  AnonObject object(*vm);
  // Twice the RAM budget: writing it already pages out.
  const std::string data = Pattern(123, 128 * kPage, 7);
  ASSERT_TRUE(object.Write(123, data.data(), data.size()).ok());
  EvictAll(*vm);
  EXPECT_GT(vm->ReadStats().pageouts, 0u);
  EXPECT_EQ(ReadRange(object, 123, data.size()), data);
  EXPECT_GT(vm->ReadStats().pageins, 0u);
  EXPECT_EQ(vm->ReadStats().checksum_failures, 0u);
  EXPECT_EQ(vm->wired_frames(), 0);
}

TEST(AnonObjectTest, DestructorFreesFramesSlotsAndCharge) {
  std::unique_ptr<Vm> vm = MakeVm(64);
  ASSERT_NE(vm, nullptr);
  {
    AnonObject object(*vm);
    const std::string data = Pattern(0, 20 * kPage);
    ASSERT_TRUE(object.Write(0, data.data(), data.size()).ok());
    vm->pager().Reclaim(10);
    ASSERT_TRUE(object.Write(uint64_t{1} << 40, data.data(), kPage).ok());
    ASSERT_GT(vm->ReadStats().swap_slots_used, 0u);
  }
  const StatsSnapshot after = vm->ReadStats();
  EXPECT_EQ(after.charged_pages, 0u);
  EXPECT_EQ(after.swap_slots_used, 0u);
  EXPECT_EQ(after.free_frames, after.total_frames);
  EXPECT_TRUE(vm->frames().CheckConsistency().ok());
}

// --- Against a model ---

// Random writes, punches, truncations, reads, seeks and evictions, checked against a
// byte array and a set of allocated pages, with the pager thread running.
TEST(AnonObjectTest, RandomOperationsMatchAModel) {
  const uint64_t seed = testing::TestSeed();
  fprintf(stderr, "seed %llu (PTMPFS_SEED=%llu replays it)\n",
          static_cast<unsigned long long>(seed), static_cast<unsigned long long>(seed));
  std::mt19937_64 random(seed);
  std::unique_ptr<Vm> vm = MakeVm(64, /*noswap=*/false, /*pager_thread=*/true);
  ASSERT_NE(vm, nullptr);
  WindowCache cache(WindowCache::kDefaultLines, /*min_pages=*/1);
  AnonObject object(*vm, &cache);
  constexpr uint64_t kSpan = 96 * kPage;  // more than the RAM budget
  std::string model(kSpan, '\0');
  std::set<PageIndex> allocated;
  auto below = [&](uint64_t bound) { return random() % bound; };

  for (int step = 0; step < 3000; ++step) {
    const uint64_t offset = below(kSpan);
    const uint64_t length = std::min<uint64_t>(1 + below(4 * kPage), kSpan - offset);
    switch (below(8)) {
      case 0:
      case 1:
      case 2: {
        const std::string data = Pattern(offset, length, seed + step);
        ASSERT_TRUE(object.Write(offset, data.data(), length).ok()) << "step " << step;
        model.replace(offset, length, data);
        for (PageIndex p = offset / kPage; p <= (offset + length - 1) / kPage; ++p) {
          allocated.insert(p);
        }
        break;
      }
      case 3: {
        ASSERT_TRUE(object.Punch(offset, length).ok()) << "step " << step;
        std::fill(model.begin() + offset, model.begin() + offset + length, '\0');
        for (PageIndex p = (offset + kPage - 1) / kPage; p < (offset + length) / kPage; ++p) {
          allocated.erase(p);
        }
        break;
      }
      case 4: {
        ASSERT_TRUE(object.Truncate(offset).ok()) << "step " << step;
        std::fill(model.begin() + offset, model.end(), '\0');
        allocated.erase(allocated.lower_bound((offset + kPage - 1) / kPage), allocated.end());
        break;
      }
      case 5:
        vm->pager().Reclaim(1 + below(32));
        break;
      default: {
        ASSERT_EQ(ReadRange(object, offset, length), model.substr(offset, length))
            << "step " << step;
        auto data = allocated.lower_bound(offset / kPage);
        const uint64_t next_data =
            data == allocated.end() ? kSpan : std::max(offset, *data * kPage);
        EXPECT_EQ(object.NextData(offset, kSpan), next_data) << "step " << step;
        uint64_t hole = offset / kPage;
        while (allocated.count(hole) != 0) ++hole;
        EXPECT_EQ(object.NextHole(offset, kSpan), std::min(kSpan, std::max(offset, hole * kPage)))
            << "step " << step;
        break;
      }
    }
    ASSERT_EQ(object.allocated_pages(), allocated.size()) << "step " << step;
  }
  EXPECT_EQ(ReadRange(object, 0, kSpan), model);
  EXPECT_EQ(vm->wired_frames(), 0);
}

}  // namespace
}  // namespace ptmpfs::vm
