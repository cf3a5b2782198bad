// Directory and node operations at random against a simple model (std::map), with
// a RAM budget so small that most pages are in swap.
#include <dirent.h>
#include <sys/stat.h>

#include <cstdio>
#include <map>
#include <memory>
#include <random>
#include <set>
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

struct ModelNode {
  Addr address;
  uint32_t mode;
  uint64_t size;
};

TEST(MetaModelTest, DirectoryAndNodeOperationsMatchAModelWithPagesInSwap) {
  const uint64_t seed = testing::TestSeed();
  std::printf("seed %llu\n", static_cast<unsigned long long>(seed));
  std::mt19937_64 random(seed);
  vm::VmOptions options;
  options.ram_bytes = 32 * vm::kPageSize;
  options.swap.size_bytes = 256 << 20;
  auto vm = *vm::Vm::Create(options);
  auto space = *vm::Map::CreateAddressSpace(*vm, uint64_t{1} << 32, uint64_t{1} << 46);
  auto kmem = *Kmem::Create(*space);
  auto nodes = *NodeStore::Create(*space, *kmem);
  DirIndex index(*kmem);

  // The model: directories by number, entries by (directory, name).
  std::vector<Addr> dirs;
  std::map<std::pair<int, std::string>, ModelNode> entries;
  std::map<int, int> dir_entries;  // directory -> entry count
  auto name_of = [&](uint64_t n) {
    // Short names and a few long ones (past the inline limit) share the tree.
    return n % 7 == 0 ? absl::StrFormat("long-name-%0200d", n) : absl::StrFormat("n%d", n);
  };
  for (int d = 0; d < 20; ++d) dirs.push_back(*nodes->Alloc(S_IFDIR | 0755, 0, 0, 0));

  auto with_dir = [&](int d, vm::Access access, auto fn) {
    auto pin = nodes->Pin(dirs[d], access);
    ASSERT_TRUE(pin.ok()) << pin.status();
    fn((*pin)->dir.index);
  };

  const int kSteps = testing::kSanitized ? 8000 : 30000;
  for (int step = 0; step < kSteps; ++step) {
    const int d = static_cast<int>(random() % dirs.size());
    const std::string name = name_of(random() % 400);
    const auto key = std::make_pair(d, name);
    const bool exists = entries.count(key) != 0;
    switch (random() % 6) {
      case 0: {  // create
        uint32_t mode = S_IFREG | (random() % 0777);
        Addr node = *nodes->Alloc(mode, 0, 0, step);
        with_dir(d, vm::Access::kWrite, [&](DirRoot& root) {
          auto inserted = index.Insert(root, name, node, DT_REG);
          if (exists) {
            ASSERT_EQ(inserted.status().code(), absl::StatusCode::kAlreadyExists);
          } else {
            ASSERT_TRUE(inserted.ok()) << inserted.status();
          }
        });
        if (exists) {
          nodes->Free(node);
        } else {
          entries[key] = ModelNode{node, mode, 0};
          ++dir_entries[d];
        }
        break;
      }
      case 1: {  // unlink
        with_dir(d, vm::Access::kWrite, [&](DirRoot& root) {
          auto removed = index.Remove(root, name);
          if (!exists) {
            ASSERT_EQ(removed.status().code(), absl::StatusCode::kNotFound);
            return;
          }
          ASSERT_TRUE(removed.ok()) << removed.status();
          ASSERT_EQ(removed->node, entries[key].address);
        });
        if (exists) {
          nodes->Free(entries[key].address);
          entries.erase(key);
          --dir_entries[d];
        }
        break;
      }
      case 2: {  // rename to another directory, replacing what is there
        if (!exists) break;
        const int to = static_cast<int>(random() % dirs.size());
        const std::string new_name = name_of(random() % 400);
        const auto new_key = std::make_pair(to, new_name);
        if (new_key == key) break;
        ModelNode moving = entries[key];
        with_dir(d, vm::Access::kWrite,
                 [&](DirRoot& root) { ASSERT_TRUE(index.Remove(root, name).ok()); });
        --dir_entries[d];
        entries.erase(key);
        with_dir(to, vm::Access::kWrite, [&](DirRoot& root) {
          if (entries.count(new_key) != 0) {
            ASSERT_TRUE(index.Replace(root, new_name, moving.address, DT_REG).ok());
          } else {
            ASSERT_TRUE(index.Insert(root, new_name, moving.address, DT_REG).ok());
          }
        });
        if (entries.count(new_key) != 0) {
          nodes->Free(entries[new_key].address);
        } else {
          ++dir_entries[to];
        }
        entries[new_key] = moving;
        break;
      }
      case 3: {  // setattr
        if (!exists) break;
        ModelNode& model = entries[key];
        auto pin = nodes->Pin(model.address, vm::Access::kWrite);
        ASSERT_TRUE(pin.ok());
        model.mode = S_IFREG | (random() % 0777);
        model.size = random() % (1 << 30);
        (*pin)->mode = model.mode;
        (*pin)->size = model.size;
        break;
      }
      case 4: {  // lookup and getattr
        with_dir(d, vm::Access::kRead, [&](DirRoot& root) {
          auto found = index.Lookup(root, name);
          if (!exists) {
            ASSERT_EQ(found.status().code(), absl::StatusCode::kNotFound);
            return;
          }
          ASSERT_TRUE(found.ok()) << found.status();
          ASSERT_EQ(found->node, entries[key].address);
          auto pin = nodes->Pin(found->node, vm::Access::kRead);
          ASSERT_TRUE(pin.ok());
          ASSERT_EQ((*pin)->mode, entries[key].mode);
          ASSERT_EQ((*pin)->size, entries[key].size);
        });
        break;
      }
      case 5: {  // readdir: exactly the model's names, and the count in O(1)
        std::set<std::string> listed;
        with_dir(d, vm::Access::kRead, [&](DirRoot& root) {
          ASSERT_EQ(root.count, static_cast<uint64_t>(dir_entries[d]));
          ASSERT_TRUE(index
                          .Walk(root, 0,
                                [&](absl::string_view entry, const DirEntryInfo&) {
                                  EXPECT_TRUE(listed.emplace(entry).second);
                                  return true;
                                })
                          .ok());
        });
        std::set<std::string> expected;
        for (auto it = entries.lower_bound({d, ""}); it != entries.end() && it->first.first == d;
             ++it) {
          expected.insert(it->first.second);
        }
        ASSERT_EQ(listed, expected);
        break;
      }
    }
  }
  vm::StatsSnapshot stats = vm->ReadStats();
  std::printf("%zu entries, pageins %llu, pageouts %llu\n", entries.size(),
              static_cast<unsigned long long>(stats.pageins),
              static_cast<unsigned long long>(stats.pageouts));
  EXPECT_GT(stats.pageins, 1000u);
  for (Addr dir : dirs) {
    auto pin = *nodes->Pin(dir, vm::Access::kWrite);
    index.Destroy(pin->dir.index);
  }
}

}  // namespace
}  // namespace ptmpfs::meta
