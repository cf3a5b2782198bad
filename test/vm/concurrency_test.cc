// Several threads pin, write and verify their own pages while the pager evicts and
// migration moves frames under them: nothing is lost or torn.
#include <atomic>
#include <cstdio>
#include <random>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "test/testing.h"
#include "vm/address_space.h"
#include "vm/pager.h"
#include "vm/vm.h"

namespace ptmpfs::vm {
namespace {

TEST(ConcurrencyTest, PinnersPagerAndMigrationLoseNothing) {
  const uint64_t seed = testing::TestSeed();
  std::printf("seed %llu\n", static_cast<unsigned long long>(seed));
  VmOptions options;
  options.ram_bytes = 64 * kPageSize;
  options.swap.size_bytes = 64 << 20;
  auto vm = *Vm::Create(options);
  auto space = *Map::CreateAddressSpace(*vm, uint64_t{1} << 32, uint64_t{1} << 40);
  auto small = *space->Suballoc("small", uint64_t{1} << 30, 0, true);
  auto large = *space->Suballoc("large", uint64_t{1} << 30, 2, true);

  constexpr int kThreads = 4;
  constexpr int kPagesPerThread = 96;  // 384 pages of 4 KiB over 64 frames
  constexpr int kSteps = 3000;
  std::vector<std::vector<uint64_t>> pages(kThreads);
  for (auto& mine : pages) {
    for (int i = 0; i < kPagesPerThread; ++i) mine.push_back(*small->Alloc(kPageSize));
  }
  std::atomic<bool> stop{false};
  std::atomic<int> errors{0};

  // Each page holds 512 words, all equal to the page's version: a torn page has two
  // versions in it; a lost write shows an old version.
  auto worker = [&](int id) {
    std::mt19937_64 random(seed + id);
    std::vector<uint64_t> version(kPagesPerThread, 0);
    for (int step = 0; step < kSteps; ++step) {
      int page = static_cast<int>(random() % kPagesPerThread);
      bool write = random() % 2 == 0;
      auto pin = small->Pin<uint64_t[512]>(pages[id][page], write ? Access::kWrite : Access::kRead);
      if (!pin.ok()) {
        std::printf("pin failed: %s\n", pin.status().ToString().c_str());
        errors.fetch_add(1);
        continue;
      }
      for (int w = 0; w < 512; ++w) {
        if ((**pin)[w] != version[page]) {
          errors.fetch_add(1);
          break;
        }
      }
      if (write) {
        ++version[page];
        for (int w = 0; w < 512; ++w) (**pin)[w] = version[page];
      }
    }
  };
  // Large pages need aligned runs of 4 frames: with the small pages scattered over
  // the frames, each fault of one migrates or reclaims.
  auto large_churn = [&] {
    std::mt19937_64 random(seed ^ 0x5eed);
    uint64_t rounds = 0;
    while (!stop.load()) {
      absl::StatusOr<uint64_t> address = large->Alloc(4 * kPageSize);
      if (!address.ok()) continue;
      {
        auto pin = large->Pin<uint64_t[2048]>(*address, Access::kWrite);
        if (pin.ok()) {
          for (int w = 0; w < 2048; ++w) (**pin)[w] = rounds;
        }
      }
      auto pin = large->Pin<uint64_t[2048]>(*address, Access::kRead);
      if (pin.ok() && ((**pin)[0] != rounds || (**pin)[2047] != rounds)) errors.fetch_add(1);
      pin->Release();
      large->Free(*address, 4 * kPageSize);
      ++rounds;
    }
  };
  std::thread churn(large_churn);
  std::vector<std::thread> threads;
  for (int id = 0; id < kThreads; ++id) threads.emplace_back(worker, id);
  for (auto& thread : threads) thread.join();
  stop.store(true);
  churn.join();

  StatsSnapshot stats = vm->ReadStats();
  std::printf("pageins %llu pageouts %llu migrations %llu faults %llu\n",
              static_cast<unsigned long long>(stats.pageins),
              static_cast<unsigned long long>(stats.pageouts),
              static_cast<unsigned long long>(stats.migrations),
              static_cast<unsigned long long>(stats.faults));
  EXPECT_EQ(errors.load(), 0);
  EXPECT_GT(stats.pageouts, 1000u);
  EXPECT_GT(stats.pageins, 1000u);
  EXPECT_EQ(vm->wired_frames(), 0);
}

}  // namespace
}  // namespace ptmpfs::vm
