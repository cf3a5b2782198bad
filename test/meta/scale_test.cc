// The scale test of meta/ in-process, no FUSE: with a RAM budget of 8 MiB,
// 1,000,000 entries over 1,000 directories plus 200,000 in one directory; every name
// looked up; every directory read through with walks resumed from saved offsets
// while entries are added and removed; everything removed. The test's own
// bookkeeping stays small: names derive from an index, liveness is a bitmap.
#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "gtest/gtest.h"
#include "meta/dir_index.h"
#include "meta/kmem.h"
#include "meta/node.h"
#include "test/testing.h"
#include "vm/address_space.h"
#include "vm/vm.h"

namespace ptmpfs::meta {
namespace {

constexpr uint64_t kBudget = 8 << 20;
// Under sanitizers everything runs several times slower: a tenth of the entries.
constexpr uint64_t kScale = testing::kSanitized ? 10 : 1;
constexpr uint64_t kDirs = 1000 / kScale;
constexpr uint64_t kPerDir = 1000;
constexpr uint64_t kBigDir = 200000 / kScale;
// Entries added during the walks take indices from kPerDir (or kBigDir) up.
constexpr uint64_t kExtra = 200;

std::string NameOf(uint64_t index) { return absl::StrFormat("entry-%08d", index); }

class ScaleTest : public ::testing::Test {
 protected:
  void SetUp() override {
    vm::VmOptions options;
    options.ram_bytes = kBudget;
    options.swap.size_bytes = uint64_t{2} << 30;
    vm_ = *vm::Vm::Create(options);
    space_ = *vm::Map::CreateAddressSpace(*vm_, uint64_t{1} << 32, uint64_t{1} << 46);
    kmem_ = *Kmem::Create(*space_);
    nodes_ = *NodeStore::Create(*space_, *kmem_);
    index_ = std::make_unique<DirIndex>(*kmem_);
  }
  void TearDown() override {
    index_.reset();
    nodes_.reset();
    kmem_.reset();
    space_.reset();
    vm_.reset();
  }

  void Sample() {
    peak_swap_slots_ = std::max(peak_swap_slots_, vm_->ReadStats().swap_slots_used);
  }

  Addr MakeDir() { return *nodes_->Alloc(S_IFDIR | 0755, 0, 0, 0); }

  void Create(Addr dir, uint64_t index) {
    absl::StatusOr<Addr> node = nodes_->Alloc(S_IFREG | 0644, 0, 0, 0);
    ASSERT_TRUE(node.ok()) << node.status();
    auto pin = nodes_->Pin(dir, vm::Access::kWrite);
    ASSERT_TRUE(pin.ok()) << pin.status();
    auto inserted = index_->Insert((*pin)->dir.index, NameOf(index), *node, DT_REG);
    ASSERT_TRUE(inserted.ok()) << inserted.status();
  }

  void Remove(Addr dir, uint64_t index) {
    auto pin = nodes_->Pin(dir, vm::Access::kWrite);
    ASSERT_TRUE(pin.ok()) << pin.status();
    auto removed = index_->Remove((*pin)->dir.index, NameOf(index));
    ASSERT_TRUE(removed.ok()) << removed.status();
    pin->Release();
    nodes_->Free(removed->node);
  }

  void ExpectFound(Addr dir, uint64_t index) {
    auto pin = nodes_->Pin(dir, vm::Access::kRead);
    ASSERT_TRUE(pin.ok()) << pin.status();
    auto found = index_->Lookup((*pin)->dir.index, NameOf(index));
    ASSERT_TRUE(found.ok()) << NameOf(index) << ": " << found.status();
    ASSERT_TRUE(nodes_->ResolveIno(nodes_->InoOf(found->node)).ok());
  }

  uint64_t Count(Addr dir) { return (*nodes_->Pin(dir, vm::Access::kRead))->dir.index.count; }

  // Reads `dir` through in chunks, resuming from the saved offset each time, and
  // between chunks removes some live entries and adds new ones. Checks that every
  // entry live for the whole walk is returned exactly once and none twice.
  void WalkWhileChanging(Addr dir, std::vector<bool>& live, uint64_t first_extra,
                         std::mt19937_64& random) {
    const uint64_t slots = live.size();
    std::vector<uint8_t> returned(slots, 0);
    std::vector<bool> changed(slots, false);  // added or removed during the walk
    uint64_t offset = 0;
    uint64_t next_extra = first_extra;
    bool done = false;
    while (!done) {
      uint64_t in_chunk = 0;
      done = true;
      auto pin = nodes_->Pin(dir, vm::Access::kRead);
      ASSERT_TRUE(pin.ok());
      absl::Status walked = index_->Walk(
          (*pin)->dir.index, offset, [&](absl::string_view name, const DirEntryInfo& entry) {
            uint64_t index = std::stoull(std::string(name.substr(6)));
            if (index < slots) ++returned[index];
            offset = entry.cookie + 1;
            if (++in_chunk == 100) {
              done = false;
              return false;
            }
            return true;
          });
      ASSERT_TRUE(walked.ok()) << walked;
      pin->Release();
      // Change the directory between chunks: remove two live entries, add one.
      for (int i = 0; i < 2; ++i) {
        uint64_t victim = random() % slots;
        if (!live[victim]) continue;
        Remove(dir, victim);
        live[victim] = false;
        changed[victim] = true;
      }
      if (next_extra < slots) {
        Create(dir, next_extra);
        live[next_extra] = true;
        changed[next_extra] = true;
        ++next_extra;
      }
    }
    for (uint64_t index = 0; index < slots; ++index) {
      if (changed[index]) {
        ASSERT_LE(returned[index], 1) << NameOf(index) << " returned twice";
      } else if (live[index]) {
        ASSERT_EQ(returned[index], 1) << NameOf(index) << " not returned exactly once";
      } else {
        ASSERT_EQ(returned[index], 0) << NameOf(index) << " returned though never there";
      }
    }
  }

  std::unique_ptr<vm::Vm> vm_;
  std::unique_ptr<vm::Map> space_;
  std::unique_ptr<Kmem> kmem_;
  std::unique_ptr<NodeStore> nodes_;
  std::unique_ptr<DirIndex> index_;
  uint64_t peak_swap_slots_ = 0;
};

TEST_F(ScaleTest, MillionsOfEntriesBeyondTheBudget) {
  const uint64_t seed = testing::TestSeed();
  std::printf("seed %llu, %llu dirs x %llu entries + one dir of %llu\n",
              static_cast<unsigned long long>(seed), static_cast<unsigned long long>(kDirs),
              static_cast<unsigned long long>(kPerDir), static_cast<unsigned long long>(kBigDir));
  std::mt19937_64 random(seed);
  const uint64_t baseline_pages = kmem_->pages_in_use() + nodes_->pool().pages_in_use();

  std::vector<Addr> dirs;
  for (uint64_t d = 0; d < kDirs; ++d) dirs.push_back(MakeDir());
  const Addr big = MakeDir();
  std::vector<std::vector<bool>> live(kDirs, std::vector<bool>(kPerDir + kExtra, false));
  std::vector<bool> big_live(kBigDir + kExtra, false);

  // Create, interleaving directories as a real workload would.
  for (uint64_t i = 0; i < kPerDir; ++i) {
    for (uint64_t d = 0; d < kDirs; ++d) {
      ASSERT_NO_FATAL_FAILURE(Create(dirs[d], i));
      live[d][i] = true;
    }
  }
  const uint64_t files = kDirs * kPerDir;
  const uint64_t pool_bytes =
      kmem_->page_bytes_in_use() + nodes_->pool().pages_in_use() * nodes_->pool().page_bytes();
  std::printf("pageable bytes per file after %llu creates: %.1f (nodes %.1f + directories %.1f)\n",
              static_cast<unsigned long long>(files), double(pool_bytes) / files,
              double(nodes_->pool().pages_in_use() * nodes_->pool().page_bytes()) / files,
              double(kmem_->page_bytes_in_use()) / files);
  const uint64_t bookkeeping = kmem_->bookkeeping_bytes() + nodes_->pool().bookkeeping_bytes();
  std::printf("resident bookkeeping: %llu bytes, %.2f%% of the pageable bytes\n",
              static_cast<unsigned long long>(bookkeeping), 100.0 * bookkeeping / pool_bytes);
  EXPECT_LE(pool_bytes / files, 256u);
  EXPECT_LE(bookkeeping * 100, pool_bytes);
  Sample();

  for (uint64_t i = 0; i < kBigDir; ++i) {
    ASSERT_NO_FATAL_FAILURE(Create(big, i));
    big_live[i] = true;
  }
  Sample();

  // Every name looked up, in random order of directories.
  for (uint64_t i = 0; i < kPerDir; ++i) {
    for (uint64_t d = 0; d < kDirs; ++d) ASSERT_NO_FATAL_FAILURE(ExpectFound(dirs[d], i));
  }
  for (uint64_t i = 0; i < kBigDir; ++i) ASSERT_NO_FATAL_FAILURE(ExpectFound(big, i));
  Sample();

  // Every directory read through while it changes.
  for (uint64_t d = 0; d < kDirs; ++d) {
    ASSERT_NO_FATAL_FAILURE(WalkWhileChanging(dirs[d], live[d], kPerDir, random));
  }
  ASSERT_NO_FATAL_FAILURE(WalkWhileChanging(big, big_live, kBigDir, random));
  Sample();

  // Everything removed.
  for (uint64_t d = 0; d < kDirs; ++d) {
    for (uint64_t i = 0; i < live[d].size(); ++i) {
      if (live[d][i]) {
        ASSERT_NO_FATAL_FAILURE(Remove(dirs[d], i));
      }
    }
    ASSERT_EQ(Count(dirs[d]), 0u);
  }
  for (uint64_t i = 0; i < big_live.size(); ++i) {
    if (big_live[i]) {
      ASSERT_NO_FATAL_FAILURE(Remove(big, i));
    }
  }
  ASSERT_EQ(Count(big), 0u);
  for (Addr dir : dirs) {
    {
      auto pin = *nodes_->Pin(dir, vm::Access::kWrite);
      index_->Destroy(pin->dir.index);
    }
    nodes_->Free(dir);
  }
  {
    auto pin = *nodes_->Pin(big, vm::Access::kWrite);
    index_->Destroy(pin->dir.index);
  }
  nodes_->Free(big);
  nodes_->pool().Reap();
  kmem_->Reap();
  const uint64_t pages_after = kmem_->pages_in_use() + nodes_->pool().pages_in_use();

  vm::StatsSnapshot stats = vm_->ReadStats();
  std::printf("peak swap used %.1f MiB, pageouts %llu, pageins %llu, peak RSS %.1f MiB\n",
              peak_swap_slots_ * 4096.0 / (1 << 20),
              static_cast<unsigned long long>(stats.pageouts),
              static_cast<unsigned long long>(stats.pageins),
              testing::PeakRssBytes() / double(1 << 20));
  std::printf("after removing everything: %llu pool pages (%llu before), %llu swap slots\n",
              static_cast<unsigned long long>(pages_after),
              static_cast<unsigned long long>(baseline_pages),
              static_cast<unsigned long long>(stats.swap_slots_used));
  EXPECT_GT(stats.pageouts, 0u);
  EXPECT_LE(pages_after, baseline_pages + 64);
  EXPECT_LE(stats.swap_slots_used, 256u);
  if (!testing::kSanitized) {
    EXPECT_LE(testing::PeakRssBytes(), kBudget + (64 << 20));
  }
}

}  // namespace
}  // namespace ptmpfs::meta
