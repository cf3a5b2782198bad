// dir_index tests: the index as a specification, then a randomized run against
// std::map with most nodes in swap, then the figures the project budgets on (bytes
// per entry, fill, lookups per second).
#include "meta/dir_index.h"

#include <dirent.h>
#include <xxhash.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_format.h"
#include "gtest/gtest.h"
#include "meta/kmem.h"
#include "test/testing.h"
#include "vm/address_space.h"
#include "vm/vm.h"

namespace ptmpfs::meta {
namespace {

using ::ptmpfs::testing::kSanitized;

// A memory system, an address space and kmem over it; destroyed in that order's
// reverse.
struct Env {
  std::unique_ptr<vm::Vm> vm;
  std::unique_ptr<vm::Map> space;
  std::unique_ptr<Kmem> kmem;
};

std::unique_ptr<Env> MakeEnv(uint64_t ram_bytes, bool noswap = false) {
  vm::VmOptions options;
  options.ram_bytes = ram_bytes;
  options.noswap = noswap;
  options.swap.size_bytes = uint64_t{256} << 20;
  auto env = std::make_unique<Env>();
  absl::StatusOr<std::unique_ptr<vm::Vm>> vm = vm::Vm::Create(options);
  EXPECT_TRUE(vm.ok()) << vm.status();
  if (!vm.ok()) return nullptr;
  env->vm = *std::move(vm);
  absl::StatusOr<std::unique_ptr<vm::Map>> space =
      vm::Map::CreateAddressSpace(*env->vm, uint64_t{1} << 32, uint64_t{1} << 46);
  EXPECT_TRUE(space.ok()) << space.status();
  if (!space.ok()) return nullptr;
  env->space = *std::move(space);
  absl::StatusOr<std::unique_ptr<Kmem>> kmem = Kmem::Create(*env->space);
  EXPECT_TRUE(kmem.ok()) << kmem.status();
  if (!kmem.ok()) return nullptr;
  env->kmem = *std::move(kmem);
  return env;
}

Addr FakeNode(uint64_t i) { return 0x100000 + i * 128; }
std::string ShortName(uint64_t i) { return absl::StrFormat("file-%d", i); }

// A name of exactly `length` bytes, distinct for each i (its number sits at the end,
// so long names share long prefixes and differ only in their last bytes).
std::string NameOfLength(uint64_t i, size_t length) {
  std::string number = absl::StrFormat("-%d", i);
  std::string name(length > number.size() ? length - number.size() : 0, 'n');
  name += number;
  return name.substr(name.size() - length);
}

uint64_t Xxh3(absl::string_view name) { return XXH3_64bits(name.data(), name.size()); }
uint64_t FamilyUnder(DirIndex::NameHash hash, absl::string_view name) {
  return (hash(name) >> 1) & ~((uint64_t{1} << DirIndex::kCollisionBits) - 1);
}

// Test hashes that force collisions. Every name in one family:
uint64_t OneFamilyHash(absl::string_view) { return uint64_t{0x5a5a5a5a} << 20; }
uint64_t FirstFamilyHash(absl::string_view) { return 0; }
uint64_t LastFamilyHash(absl::string_view) { return UINT64_MAX; }
// 61 families of up to 16 names: families fill up and span leaves.
uint64_t CrowdedHash(absl::string_view name) { return (Xxh3(name) % 61 + 1) << 5; }
// 509 families: room for ~8,000 names, full families common near that.
uint64_t CrowdedHash509(absl::string_view name) { return (Xxh3(name) % 509 + 1) << 5; }

struct Walked {
  std::string name;
  DirEntryInfo entry;
};

std::vector<Walked> WalkAll(const DirIndex& index, const DirRoot& dir, uint64_t from = 0) {
  std::vector<Walked> walked;
  absl::Status status = index.Walk(dir, from, [&](absl::string_view name, const DirEntryInfo& e) {
    walked.push_back(Walked{std::string(name), e});
    return true;
  });
  EXPECT_TRUE(status.ok()) << status;
  return walked;
}

void ExpectValid(const DirIndex& index, const DirRoot& dir) {
  absl::StatusOr<DirShape> shape = index.Verify(dir);
  ASSERT_TRUE(shape.ok()) << shape.status();
}

// ---- Basics ----------------------------------------------------------------------------

TEST(DirIndexTest, EmptyDirectoryHasNoNodeAndFindsNothing) {
  auto env = MakeEnv(4 << 20, /*noswap=*/true);
  DirIndex index(*env->kmem);
  DirRoot dir;
  EXPECT_TRUE(absl::IsNotFound(index.Lookup(dir, "a").status()));
  EXPECT_TRUE(absl::IsNotFound(index.Remove(dir, "a").status()));
  EXPECT_TRUE(absl::IsNotFound(index.Replace(dir, "a", FakeNode(1), DT_REG)));
  EXPECT_TRUE(WalkAll(index, dir).empty());
  ExpectValid(index, dir);
  EXPECT_EQ(env->kmem->items_in_use(), 0u);
}

TEST(DirIndexTest, InsertedEntriesAreFoundReplacedAndRemoved) {
  auto env = MakeEnv(4 << 20, /*noswap=*/true);
  DirIndex index(*env->kmem);
  DirRoot dir;
  absl::StatusOr<DirEntryInfo> a = index.Insert(dir, "alpha", FakeNode(1), DT_REG);
  absl::StatusOr<DirEntryInfo> b = index.Insert(dir, "beta", FakeNode(2), DT_DIR);
  absl::StatusOr<DirEntryInfo> c = index.Insert(dir, "gamma", FakeNode(3), DT_LNK);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  EXPECT_EQ(dir.count, 3u);
  EXPECT_EQ(dir.height, 1u);
  for (const DirEntryInfo* e : {&*a, &*b, &*c}) {
    EXPECT_GE(e->cookie, DirIndex::kFirstCookie);
    EXPECT_LT(e->cookie, uint64_t{1} << 63);
  }
  EXPECT_EQ(a->cookie & ~uint64_t{15}, DirIndex::Family("alpha"));

  absl::StatusOr<DirEntryInfo> found = index.Lookup(dir, "beta");
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_EQ(found->node, FakeNode(2));
  EXPECT_EQ(found->type, DT_DIR);
  EXPECT_EQ(found->cookie, b->cookie);
  EXPECT_TRUE(absl::IsNotFound(index.Lookup(dir, "delta").status()));
  EXPECT_TRUE(absl::IsNotFound(index.Lookup(dir, "bet").status()));

  ASSERT_TRUE(index.Replace(dir, "gamma", FakeNode(9), DT_REG).ok());
  found = index.Lookup(dir, "gamma");
  ASSERT_TRUE(found.ok());
  EXPECT_EQ(found->node, FakeNode(9));
  EXPECT_EQ(found->type, DT_REG);
  EXPECT_EQ(found->cookie, c->cookie);  // a replaced entry keeps its offset

  absl::StatusOr<DirEntryInfo> removed = index.Remove(dir, "alpha");
  ASSERT_TRUE(removed.ok()) << removed.status();
  EXPECT_EQ(removed->node, FakeNode(1));
  EXPECT_EQ(removed->cookie, a->cookie);
  EXPECT_EQ(dir.count, 2u);
  EXPECT_TRUE(absl::IsNotFound(index.Lookup(dir, "alpha").status()));
  EXPECT_TRUE(absl::IsNotFound(index.Remove(dir, "alpha").status()));
  ExpectValid(index, dir);

  ASSERT_TRUE(index.Remove(dir, "beta").ok());
  ASSERT_TRUE(index.Remove(dir, "gamma").ok());
  EXPECT_EQ(dir.root, kNullAddr);
  EXPECT_EQ(dir.height, 0u);
  EXPECT_EQ(dir.count, 0u);
  EXPECT_EQ(env->kmem->items_in_use(), 0u);  // the last remove frees the root
}

TEST(DirIndexTest, InsertingAPresentNameIsAlreadyExistsAndChangesNothing) {
  auto env = MakeEnv(4 << 20, /*noswap=*/true);
  DirIndex index(*env->kmem);
  DirRoot dir;
  for (int i = 0; i < 200; ++i) ASSERT_TRUE(index.Insert(dir, ShortName(i), FakeNode(i), 8).ok());
  const uint64_t items = env->kmem->items_in_use();
  for (int i = 0; i < 200; i += 7) {
    EXPECT_TRUE(absl::IsAlreadyExists(index.Insert(dir, ShortName(i), FakeNode(0), 4).status()));
  }
  EXPECT_EQ(dir.count, 200u);
  EXPECT_EQ(env->kmem->items_in_use(), items);
  absl::StatusOr<DirEntryInfo> found = index.Lookup(dir, ShortName(7));
  ASSERT_TRUE(found.ok());
  EXPECT_EQ(found->node, FakeNode(7));
  ExpectValid(index, dir);
  index.Destroy(dir);
}

TEST(DirIndexTest, NamesAreOneTo255Bytes) {
  auto env = MakeEnv(4 << 20, /*noswap=*/true);
  DirIndex index(*env->kmem);
  DirRoot dir;
  EXPECT_TRUE(absl::IsInvalidArgument(index.Insert(dir, "", FakeNode(1), 8).status()));
  const std::string too_long(256, 'x');
  EXPECT_TRUE(absl::IsInvalidArgument(index.Insert(dir, too_long, FakeNode(1), 8).status()));
  EXPECT_TRUE(absl::IsNotFound(index.Lookup(dir, too_long).status()));
  EXPECT_EQ(dir.root, kNullAddr);
  const std::string longest(255, 'x');
  ASSERT_TRUE(index.Insert(dir, longest, FakeNode(1), 8).ok());
  ASSERT_TRUE(index.Lookup(dir, longest).ok());
  EXPECT_TRUE(absl::IsNotFound(index.Lookup(dir, "").status()));
  index.Destroy(dir);
}

TEST(DirIndexTest, ShortNamesStayInlineAndLongOnesGoToBlobs) {
  auto env = MakeEnv(8 << 20, /*noswap=*/true);
  DirIndex index(*env->kmem);
  DirRoot dir;
  std::vector<std::string> names;
  // Every length, three names each, sharing all but their last bytes.
  for (size_t length = 1; length <= DirIndex::kMaxName; ++length) {
    for (uint64_t i = 0; i < 3; ++i) names.push_back(NameOfLength(length * 10 + i, length));
  }
  std::sort(names.begin(), names.end());
  names.erase(std::unique(names.begin(), names.end()), names.end());
  uint64_t long_names = 0;
  for (size_t i = 0; i < names.size(); ++i) {
    ASSERT_TRUE(index.Insert(dir, names[i], FakeNode(i), 8).ok()) << names[i];
    if (names[i].size() > DirIndex::kInlineName) ++long_names;
  }
  absl::StatusOr<DirShape> shape = index.Verify(dir);
  ASSERT_TRUE(shape.ok()) << shape.status();
  EXPECT_EQ(shape->blobs, long_names);
  EXPECT_GT(long_names, 0u);
  for (size_t i = 0; i < names.size(); ++i) {
    absl::StatusOr<DirEntryInfo> found = index.Lookup(dir, names[i]);
    ASSERT_TRUE(found.ok()) << names[i];
    EXPECT_EQ(found->node, FakeNode(i));
  }
  // A long name that differs from a stored one only in its last byte is not it.
  std::string almost = names.back();
  almost.back() ^= 1;
  if (!std::binary_search(names.begin(), names.end(), almost)) {
    EXPECT_TRUE(absl::IsNotFound(index.Lookup(dir, almost).status()));
  }
  std::vector<Walked> walked = WalkAll(index, dir);
  std::vector<std::string> walked_names;
  for (const Walked& w : walked) walked_names.push_back(w.name);
  std::sort(walked_names.begin(), walked_names.end());
  EXPECT_EQ(walked_names, names);
  // Removing every name frees every blob and node.
  for (const std::string& name : names) ASSERT_TRUE(index.Remove(dir, name).ok()) << name;
  EXPECT_EQ(dir.root, kNullAddr);
  EXPECT_EQ(env->kmem->items_in_use(), 0u);
}

TEST(DirIndexTest, RootLeafGrowsThroughSizeClassesThenSplits) {
  auto env = MakeEnv(4 << 20, /*noswap=*/true);
  DirIndex index(*env->kmem);
  DirRoot dir;
  ASSERT_TRUE(index.Insert(dir, ShortName(0), FakeNode(0), 8).ok());
  EXPECT_LE(dir.root_bytes, 128u);  // a one-entry directory costs one small item
  uint32_t last_bytes = dir.root_bytes;
  int growths = 0;
  uint64_t i = 1;
  for (; dir.height == 1; ++i) {
    ASSERT_TRUE(index.Insert(dir, ShortName(i), FakeNode(i), 8).ok());
    if (dir.height != 1) break;
    ASSERT_GE(dir.root_bytes, last_bytes);
    if (dir.root_bytes != last_bytes) ++growths;
    last_bytes = dir.root_bytes;
    ExpectValid(index, dir);
  }
  // The root leaf split when a full 4 KiB leaf (73 entries) took one more.
  EXPECT_EQ(dir.count, 74u);
  EXPECT_EQ(last_bytes, DirIndex::kNodeBytes);
  EXPECT_GE(growths, 5);
  EXPECT_EQ(dir.height, 2u);
  EXPECT_LT(dir.root_bytes, 256u);  // the new inner root starts small too
  absl::StatusOr<DirShape> shape = index.Verify(dir);
  ASSERT_TRUE(shape.ok());
  EXPECT_EQ(shape->leaves, 2u);
  index.Destroy(dir);
  EXPECT_EQ(env->kmem->items_in_use(), 0u);
}

TEST(DirIndexTest, ManyEntriesAreFoundAndRemovingThemMergesNodesBackToNothing) {
  auto env = MakeEnv(64 << 20, /*noswap=*/true);
  DirIndex index(*env->kmem);
  DirRoot dir;
  const uint64_t count = kSanitized ? 20'000 : 200'000;
  for (uint64_t i = 0; i < count; ++i) {
    ASSERT_TRUE(index.Insert(dir, ShortName(i), FakeNode(i), 8).ok()) << i;
  }
  EXPECT_EQ(dir.count, count);
  absl::StatusOr<DirShape> shape = index.Verify(dir);
  ASSERT_TRUE(shape.ok()) << shape.status();
  EXPECT_GE(shape->height, 3u);
  for (uint64_t i = 0; i < count; ++i) {
    absl::StatusOr<DirEntryInfo> found = index.Lookup(dir, ShortName(i));
    ASSERT_TRUE(found.ok()) << i;
    ASSERT_EQ(found->node, FakeNode(i));
    ASSERT_TRUE(absl::IsNotFound(index.Lookup(dir, ShortName(count + i)).status()));
  }
  std::vector<uint64_t> order(count);
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), std::mt19937_64(1));
  for (uint64_t k = 0; k < count; ++k) {
    absl::StatusOr<DirEntryInfo> removed = index.Remove(dir, ShortName(order[k]));
    ASSERT_TRUE(removed.ok()) << order[k];
    ASSERT_EQ(removed->node, FakeNode(order[k]));
    if (k % (count / 20) == 0) ExpectValid(index, dir);  // every node a quarter full
    if (dir.count == 1) {
      // A root leaf left nearly empty has shrunk back to a small item.
      EXPECT_EQ(dir.height, 1u);
      EXPECT_LE(dir.root_bytes, 256u);
    }
  }
  EXPECT_EQ(dir.root, kNullAddr);
  EXPECT_EQ(dir.count, 0u);
  EXPECT_EQ(env->kmem->items_in_use(), 0u);
}

// ---- Collisions --------------------------------------------------------------------

TEST(DirIndexTest, CollidingNamesTakeSuccessiveCookiesUpToTheFamilySize) {
  auto env = MakeEnv(4 << 20, /*noswap=*/true);
  DirIndex index(*env->kmem, &OneFamilyHash);
  DirRoot dir;
  const uint64_t family = FamilyUnder(&OneFamilyHash, "any");
  const int family_size = 1 << DirIndex::kCollisionBits;
  for (int i = 0; i < family_size; ++i) {
    absl::StatusOr<DirEntryInfo> entry = index.Insert(dir, ShortName(i), FakeNode(i), 8);
    ASSERT_TRUE(entry.ok()) << entry.status();
    EXPECT_EQ(entry->cookie, family + i);
  }
  const uint64_t items = env->kmem->items_in_use();
  absl::Status full = index.Insert(dir, ShortName(99), FakeNode(99), 8).status();
  EXPECT_TRUE(absl::IsResourceExhausted(full)) << full;
  EXPECT_NE(full.message().find("hash family"), absl::string_view::npos) << full;
  EXPECT_EQ(dir.count, static_cast<uint64_t>(family_size));
  EXPECT_EQ(env->kmem->items_in_use(), items);
  for (int i = 0; i < family_size; ++i) {
    absl::StatusOr<DirEntryInfo> found = index.Lookup(dir, ShortName(i));
    ASSERT_TRUE(found.ok());
    EXPECT_EQ(found->cookie, family + i);
  }
  EXPECT_TRUE(absl::IsNotFound(index.Lookup(dir, ShortName(99)).status()));
  // A freed cookie is the smallest free one, and the next name takes it.
  ASSERT_TRUE(index.Remove(dir, ShortName(5)).ok());
  absl::StatusOr<DirEntryInfo> again = index.Insert(dir, ShortName(99), FakeNode(99), 8);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->cookie, family + 5);
  ExpectValid(index, dir);
  index.Destroy(dir);
}

TEST(DirIndexTest, FirstAndLastFamiliesKeepCookiesInBounds) {
  auto env = MakeEnv(4 << 20, /*noswap=*/true);
  {
    // Family 0: cookies 0, 1 and 2 belong to the start, "." and "..".
    DirIndex index(*env->kmem, &FirstFamilyHash);
    DirRoot dir;
    for (uint64_t cookie = DirIndex::kFirstCookie; cookie < 16; ++cookie) {
      absl::StatusOr<DirEntryInfo> entry = index.Insert(dir, ShortName(cookie), 1, 8);
      ASSERT_TRUE(entry.ok());
      EXPECT_EQ(entry->cookie, cookie);
    }
    EXPECT_TRUE(absl::IsResourceExhausted(index.Insert(dir, "one more", 1, 8).status()));
    ExpectValid(index, dir);
    index.Destroy(dir);
  }
  {
    // The last family stops short of 2^63 - 1: the offset after it is a positive off_t.
    DirIndex index(*env->kmem, &LastFamilyHash);
    DirRoot dir;
    uint64_t last = 0;
    for (int i = 0; i < 15; ++i) {
      absl::StatusOr<DirEntryInfo> entry = index.Insert(dir, ShortName(i), 1, 8);
      ASSERT_TRUE(entry.ok());
      last = entry->cookie;
    }
    EXPECT_TRUE(absl::IsResourceExhausted(index.Insert(dir, "one more", 1, 8).status()));
    EXPECT_EQ(last, (uint64_t{1} << 63) - 2);
    EXPECT_LE(last + 1, static_cast<uint64_t>(INT64_MAX));
    EXPECT_TRUE(WalkAll(index, dir, last + 1).empty());
    EXPECT_EQ(WalkAll(index, dir, last).size(), 1u);
    ExpectValid(index, dir);
    index.Destroy(dir);
  }
  EXPECT_EQ(env->kmem->items_in_use(), 0u);
}

TEST(DirIndexTest, FamiliesSpanningLeavesAreSearchedWhole) {
  auto env = MakeEnv(8 << 20, /*noswap=*/true);
  DirIndex index(*env->kmem, &CrowdedHash);
  DirRoot dir;
  // 61 families of 16: insert until they are all full (976 names over ~15 leaves);
  // 20,000 names give each family some 300 candidates.
  std::vector<std::string> stored;
  for (uint64_t i = 0; i < 20'000; ++i) {
    absl::StatusOr<DirEntryInfo> entry = index.Insert(dir, ShortName(i), FakeNode(i), 8);
    if (entry.ok()) {
      stored.push_back(ShortName(i));
    } else {
      ASSERT_TRUE(absl::IsResourceExhausted(entry.status())) << entry.status();
    }
  }
  EXPECT_EQ(stored.size(), 61u * 16u);
  absl::StatusOr<DirShape> shape = index.Verify(dir);
  ASSERT_TRUE(shape.ok()) << shape.status();
  EXPECT_GE(shape->leaves, 10u);
  for (const std::string& name : stored) ASSERT_TRUE(index.Lookup(dir, name).ok()) << name;
  // Free every other name, then fill the holes again: the free cookies are found
  // whichever leaf they are in.
  std::mt19937_64 random(7);
  std::shuffle(stored.begin(), stored.end(), random);
  for (size_t k = 0; k < stored.size() / 2; ++k) ASSERT_TRUE(index.Remove(dir, stored[k]).ok());
  ExpectValid(index, dir);
  uint64_t added = 0;
  for (uint64_t i = 100'000; added < stored.size() / 2; ++i) {
    absl::StatusOr<DirEntryInfo> entry = index.Insert(dir, ShortName(i), FakeNode(i), 8);
    if (entry.ok()) ++added;
  }
  EXPECT_EQ(dir.count, 61u * 16u);
  ExpectValid(index, dir);
  for (size_t k = stored.size() / 2; k < stored.size(); ++k) {
    ASSERT_TRUE(index.Lookup(dir, stored[k]).ok());
  }
  index.Destroy(dir);
  EXPECT_EQ(env->kmem->items_in_use(), 0u);
}

// ---- Walk ----------------------------------------------------------------------------

TEST(DirIndexTest, WalkReturnsEveryEntryOnceInCookieOrderAndResumesFromAnyOffset) {
  auto env = MakeEnv(16 << 20, /*noswap=*/true);
  DirIndex index(*env->kmem);
  DirRoot dir;
  const uint64_t count = kSanitized ? 2'000 : 10'000;
  std::map<uint64_t, std::string> by_cookie;
  for (uint64_t i = 0; i < count; ++i) {
    // Every tenth name is long, so a walk also reads blobs.
    std::string name = i % 10 == 0 ? NameOfLength(i, 100) : ShortName(i);
    absl::StatusOr<DirEntryInfo> entry = index.Insert(dir, name, FakeNode(i), 8);
    ASSERT_TRUE(entry.ok());
    by_cookie[entry->cookie] = name;
  }
  std::vector<Walked> walked = WalkAll(index, dir);
  ASSERT_EQ(walked.size(), count);
  auto expected = by_cookie.begin();
  for (const Walked& w : walked) {
    ASSERT_EQ(w.entry.cookie, expected->first);
    ASSERT_EQ(w.name, expected->second);
    ++expected;
  }
  // From every offset a walk returned (cookie + 1), the next entry is the next one.
  for (size_t k = 0; k < walked.size(); ++k) {
    std::vector<Walked> next;
    ASSERT_TRUE(index
                    .Walk(dir, walked[k].entry.cookie + 1,
                          [&](absl::string_view name, const DirEntryInfo& e) {
                            next.push_back(Walked{std::string(name), e});
                            return false;  // stop at once: that entry is not consumed
                          })
                    .ok());
    if (k + 1 < walked.size()) {
      ASSERT_EQ(next.size(), 1u);
      ASSERT_EQ(next[0].entry.cookie, walked[k + 1].entry.cookie);
    } else {
      ASSERT_TRUE(next.empty());
    }
  }
  // From arbitrary offsets: the first entry at or above it.
  std::mt19937_64 random(3);
  for (int k = 0; k < 1000; ++k) {
    const uint64_t from = random() >> 1;
    std::vector<Walked> rest = WalkAll(index, dir, from);
    auto first = by_cookie.lower_bound(from);
    ASSERT_EQ(rest.size(), static_cast<size_t>(std::distance(first, by_cookie.end())));
    if (!rest.empty()) {
      ASSERT_EQ(rest[0].entry.cookie, first->first);
    }
  }
  index.Destroy(dir);
}

// A readdir in batches, with entries added and removed between batches: those
// present throughout come back exactly once; offsets only ever increase.
void WalkWhileChanging(DirIndex::NameHash hash, uint64_t seed) {
  auto env = MakeEnv(16 << 20, /*noswap=*/true);
  DirIndex index(*env->kmem, hash);
  DirRoot dir;
  std::mt19937_64 random(seed);
  const uint64_t initial = kSanitized ? 2'000 : 6'000;
  std::vector<std::string> present;  // names now in the directory
  std::set<std::string> stable;      // present since the walk began, never removed
  uint64_t next_name = 0;
  while (present.size() < initial) {
    std::string name = ShortName(next_name++);
    if (index.Insert(dir, name, FakeNode(next_name), 8).ok()) {
      present.push_back(name);
      stable.insert(name);
    }
  }
  std::map<std::string, int> returned;
  uint64_t offset = 0;
  uint64_t last_cookie = 0;
  for (;;) {
    int emitted = 0;
    bool more = false;
    const int batch = 1 + static_cast<int>(random() % 60);
    ASSERT_TRUE(index
                    .Walk(dir, offset,
                          [&](absl::string_view name, const DirEntryInfo& e) {
                            if (emitted == batch) {
                              more = true;
                              return false;
                            }
                            EXPECT_GT(e.cookie, last_cookie);
                            last_cookie = e.cookie;
                            ++returned[std::string(name)];
                            offset = e.cookie + 1;
                            ++emitted;
                            return true;
                          })
                    .ok());
    if (!more) break;
    // Between batches (a FUSE readdir each): remove some entries, add others.
    for (int k = static_cast<int>(random() % 20); k > 0 && !present.empty(); --k) {
      const size_t victim = random() % present.size();
      ASSERT_TRUE(index.Remove(dir, present[victim]).ok());
      stable.erase(present[victim]);
      present[victim] = present.back();
      present.pop_back();
    }
    for (int k = static_cast<int>(random() % 20); k > 0; --k) {
      std::string name = ShortName(next_name++);
      absl::StatusOr<DirEntryInfo> entry = index.Insert(dir, name, FakeNode(next_name), 8);
      if (entry.ok()) {
        present.push_back(name);
      } else {
        ASSERT_TRUE(absl::IsResourceExhausted(entry.status()));  // a full family
      }
    }
  }
  EXPECT_GT(stable.size(), initial / 4);
  for (const std::string& name : stable) EXPECT_EQ(returned[name], 1) << name;
  for (const auto& [name, times] : returned) EXPECT_EQ(times, 1) << name;
  ExpectValid(index, dir);
  index.Destroy(dir);
  EXPECT_EQ(env->kmem->items_in_use(), 0u);
}

TEST(DirIndexTest, WalkReturnsEntriesPresentThroughoutExactlyOnceWhileTheDirectoryChanges) {
  const uint64_t seed = ::ptmpfs::testing::TestSeed();
  std::printf("seed %llu (PTMPFS_SEED to replay)\n", static_cast<unsigned long long>(seed));
  WalkWhileChanging(nullptr, seed);
  // With crowded families, removed cookies are reused by new names at once.
  WalkWhileChanging(&CrowdedHash509, seed);
}

// ---- Space -----------------------------------------------------------------------------

TEST(DirIndexTest, DestroyFreesEveryNodeAndBlob) {
  auto env = MakeEnv(16 << 20, /*noswap=*/true);
  const uint64_t pages = env->kmem->pages_in_use();
  DirIndex index(*env->kmem);
  std::vector<DirRoot> dirs(20);
  for (size_t d = 0; d < dirs.size(); ++d) {
    for (uint64_t i = 0; i < d * d * 20; ++i) {
      std::string name = i % 3 == 0 ? NameOfLength(i, 40 + i % 200) : ShortName(i);
      ASSERT_TRUE(index.Insert(dirs[d], name, FakeNode(i), 8).ok());
    }
  }
  EXPECT_GT(env->kmem->pages_in_use(), pages);
  for (DirRoot& dir : dirs) {
    index.Destroy(dir);
    EXPECT_EQ(dir.root, kNullAddr);
    EXPECT_EQ(dir.count, 0u);
  }
  EXPECT_EQ(env->kmem->items_in_use(), 0u);
  env->kmem->Reap(0);
  EXPECT_EQ(env->kmem->pages_in_use(), pages);
}

TEST(DirIndexTest, InsertThatRunsOutOfSpaceLeavesTheTreeUnchanged) {
  // No swap and 2 MiB: space runs out after some 20,000 entries.
  auto env = MakeEnv(2 << 20, /*noswap=*/true);
  DirIndex index(*env->kmem);
  DirRoot dir;
  std::vector<std::string> stored;
  absl::Status failure;
  uint64_t i = 0;
  for (;; ++i) {
    // Some long names, so that the blob's allocation fails too, not only nodes.
    std::string name = i % 5 == 0 ? NameOfLength(i, 60) : ShortName(i);
    absl::StatusOr<DirEntryInfo> entry = index.Insert(dir, name, FakeNode(i), 8);
    if (!entry.ok()) {
      failure = entry.status();
      break;
    }
    stored.push_back(name);
  }
  EXPECT_TRUE(absl::IsResourceExhausted(failure)) << failure;
  EXPECT_GT(stored.size(), 1000u);
  // Keep trying until no insert fits any more (every leaf full, so each needs a new
  // node): an insert either succeeds whole or changes nothing, not even the items in
  // use, whatever split, share or growth it would have needed.
  int failures = 0;
  for (int consecutive = 0; consecutive < 200; ++i) {
    const uint64_t items = env->kmem->items_in_use();
    const uint64_t count = dir.count;
    std::string name = i % 3 == 0 ? NameOfLength(i, 60) : ShortName(i);
    absl::StatusOr<DirEntryInfo> entry = index.Insert(dir, name, FakeNode(i), 8);
    if (entry.ok()) {
      stored.push_back(name);
      consecutive = 0;
      continue;
    }
    ++consecutive;
    ++failures;
    ASSERT_TRUE(absl::IsResourceExhausted(entry.status())) << entry.status();
    ASSERT_EQ(env->kmem->items_in_use(), items);
    ASSERT_EQ(dir.count, count);
    ASSERT_TRUE(absl::IsNotFound(index.Lookup(dir, name).status()));
    if (failures % 50 == 0) ExpectValid(index, dir);
  }
  std::printf("%zu entries stored, %d inserts refused\n", stored.size(), failures);
  ExpectValid(index, dir);
  ASSERT_EQ(dir.count, stored.size());
  for (uint64_t k = 0; k < stored.size(); ++k) {
    ASSERT_TRUE(index.Lookup(dir, stored[k]).ok()) << stored[k];
  }
  // Remove never needs space: the full directory empties completely.
  for (const std::string& name : stored) ASSERT_TRUE(index.Remove(dir, name).ok()) << name;
  EXPECT_EQ(dir.root, kNullAddr);
  EXPECT_EQ(env->kmem->items_in_use(), 0u);
}

// ---- Randomized, against a model ---------------------------------------------------------

struct ModelEntry {
  Addr node;
  uint8_t type;
  uint64_t cookie;
};

void RandomAgainstModel(DirIndex::NameHash hash, uint64_t seed, uint64_t operations,
                        uint64_t name_space) {
  // 64 frames (256 KiB) of RAM: most nodes live in swap and fault in on use.
  auto env = MakeEnv(64 * 4096);
  ASSERT_NE(env, nullptr);
  DirIndex index(*env->kmem, hash);
  DirIndex::NameHash family_hash = hash != nullptr ? hash : &Xxh3;
  DirRoot dir;
  std::map<std::string, ModelEntry> model;
  std::map<uint64_t, std::string> by_cookie;
  std::map<uint64_t, int> family_size;
  std::mt19937_64 random(seed);
  auto name_of = [&](uint64_t i) {
    return i % 7 == 0 ? NameOfLength(i, 39 + i % 217) : ShortName(i);
  };
  for (uint64_t op = 0; op < operations; ++op) {
    const uint64_t i = random() % name_space;
    const std::string name = name_of(i);
    auto it = model.find(name);
    switch (random() % 8) {
      case 0:
      case 1:
      case 2: {  // insert
        const Addr node = FakeNode(random() % 1'000'000);
        absl::StatusOr<DirEntryInfo> entry = index.Insert(dir, name, node, DT_REG);
        const uint64_t family = FamilyUnder(family_hash, name);
        if (it != model.end()) {
          ASSERT_TRUE(absl::IsAlreadyExists(entry.status())) << entry.status();
        } else if (family_size[family] == (family == 0 ? 13 : 16)) {
          ASSERT_TRUE(absl::IsResourceExhausted(entry.status())) << entry.status();
        } else {
          ASSERT_TRUE(entry.ok()) << entry.status() << " op " << op;
          ASSERT_EQ(entry->cookie & ~uint64_t{15}, family);
          ASSERT_EQ(by_cookie.count(entry->cookie), 0u);
          model[name] = ModelEntry{node, DT_REG, entry->cookie};
          by_cookie[entry->cookie] = name;
          ++family_size[family];
        }
        break;
      }
      case 3:
      case 4: {  // remove
        absl::StatusOr<DirEntryInfo> removed = index.Remove(dir, name);
        if (it == model.end()) {
          ASSERT_TRUE(absl::IsNotFound(removed.status())) << removed.status();
        } else {
          ASSERT_TRUE(removed.ok()) << removed.status() << " op " << op;
          ASSERT_EQ(removed->cookie, it->second.cookie);
          ASSERT_EQ(removed->node, it->second.node);
          --family_size[FamilyUnder(family_hash, name)];
          by_cookie.erase(it->second.cookie);
          model.erase(it);
        }
        break;
      }
      case 5: {  // lookup
        absl::StatusOr<DirEntryInfo> found = index.Lookup(dir, name);
        if (it == model.end()) {
          ASSERT_TRUE(absl::IsNotFound(found.status())) << found.status();
        } else {
          ASSERT_TRUE(found.ok()) << found.status();
          ASSERT_EQ(found->cookie, it->second.cookie);
          ASSERT_EQ(found->node, it->second.node);
          ASSERT_EQ(found->type, it->second.type);
        }
        break;
      }
      case 6: {  // replace
        const Addr node = FakeNode(random() % 1'000'000);
        absl::Status status = index.Replace(dir, name, node, DT_DIR);
        if (it == model.end()) {
          ASSERT_TRUE(absl::IsNotFound(status)) << status;
        } else {
          ASSERT_TRUE(status.ok()) << status;
          it->second.node = node;
          it->second.type = DT_DIR;
        }
        break;
      }
      case 7: {  // a short walk from a random offset
        const uint64_t from = random() >> 1;
        auto expected = by_cookie.lower_bound(from);
        int seen = 0;
        ASSERT_TRUE(index
                        .Walk(dir, from,
                              [&](absl::string_view walked, const DirEntryInfo& e) {
                                EXPECT_NE(expected, by_cookie.end());
                                if (expected == by_cookie.end()) return false;
                                EXPECT_EQ(e.cookie, expected->first);
                                EXPECT_EQ(walked, expected->second);
                                EXPECT_EQ(e.node, model[expected->second].node);
                                ++expected;
                                return ++seen < 100;
                              })
                        .ok());
        if (seen < 100) {
          ASSERT_EQ(expected, by_cookie.end());
        }
        break;
      }
    }
    ASSERT_EQ(dir.count, model.size());
    if (op % 5000 == 0) ExpectValid(index, dir);
  }
  absl::StatusOr<DirShape> shape = index.Verify(dir);
  ASSERT_TRUE(shape.ok()) << shape.status();
  std::printf("%llu entries, height %u, %llu leaves; %llu KiB of nodes against 256 KiB of RAM\n",
              static_cast<unsigned long long>(dir.count), shape->height,
              static_cast<unsigned long long>(shape->leaves),
              static_cast<unsigned long long>(shape->node_bytes >> 10));
  index.Destroy(dir);
  EXPECT_EQ(env->kmem->items_in_use(), 0u);
}

TEST(DirIndexTest, RandomOperationsMatchAModelWithMostNodesInSwap) {
  const uint64_t seed = ::ptmpfs::testing::TestSeed();
  std::printf("seed %llu (PTMPFS_SEED to replay)\n", static_cast<unsigned long long>(seed));
  const uint64_t operations = kSanitized ? 100'000 : 200'000;
  RandomAgainstModel(nullptr, seed, operations, 30'000);
  // Crowded families: full families, families across leaves, reused cookies.
  RandomAgainstModel(&CrowdedHash509, seed + 1, operations / 2, 12'000);
}

// ---- Figures -------------------------------------------------------------------------

// The project's budget: at most 256 pageable bytes per empty file, its 128-byte node
// and its directory entry included, measured over 1,000 directories of 1,000 names
// of up to 32 bytes. The entry's share must stay near 100 bytes, fill included.
TEST(DirIndexTest, EntriesCostUnder100PageableBytesEachOverAThousandDirectories) {
  auto env = MakeEnv(uint64_t{256} << 20, /*noswap=*/true);
  DirIndex index(*env->kmem);
  const uint64_t directories = kSanitized ? 100 : 1000;
  const uint64_t names = 1000;
  std::vector<DirRoot> dirs(directories);
  std::mt19937_64 random(11);
  // Round robin over the directories, as parallel creators would: roots grow side by
  // side, the worst case for the small size classes.
  for (uint64_t i = 0; i < names; ++i) {
    for (uint64_t d = 0; d < directories; ++d) {
      std::string name = absl::StrFormat("%016x-%d", random(), i);
      name.resize(8 + random() % 25);  // 8 to 32 bytes
      absl::StatusOr<DirEntryInfo> entry = index.Insert(dirs[d], name, FakeNode(i), DT_REG);
      if (absl::IsAlreadyExists(entry.status())) continue;
      ASSERT_TRUE(entry.ok()) << entry.status();
    }
  }
  uint64_t entries = 0;
  uint64_t leaf_slots = 0;
  uint64_t node_bytes = 0;
  uint64_t leaves = 0;
  for (const DirRoot& dir : dirs) {
    absl::StatusOr<DirShape> shape = index.Verify(dir);
    ASSERT_TRUE(shape.ok()) << shape.status();
    entries += shape->entries;
    leaf_slots += shape->leaf_slots;
    node_bytes += shape->node_bytes;
    leaves += shape->leaves;
  }
  const double page_bytes_per_entry =
      static_cast<double>(env->kmem->page_bytes_in_use()) / static_cast<double>(entries);
  const double node_bytes_per_entry =
      static_cast<double>(node_bytes) / static_cast<double>(entries);
  const double fill = static_cast<double>(entries) / static_cast<double>(leaf_slots);
  std::printf(
      "%llu directories x %llu names: %.1f pool page bytes per entry (%.1f in nodes), leaf "
      "fill %.1f%% (%.1f entries a leaf of 73), 56 bytes an entry at 100%%\n",
      static_cast<unsigned long long>(directories), static_cast<unsigned long long>(names),
      page_bytes_per_entry, node_bytes_per_entry, 100 * fill,
      static_cast<double>(entries) / static_cast<double>(leaves));
  EXPECT_LT(page_bytes_per_entry, 100.0);
  EXPECT_GT(fill, 0.75);
  for (DirRoot& dir : dirs) index.Destroy(dir);
}

// A name built in a caller's buffer, as a FUSE request carries it: "file-0000042.txt".
absl::string_view RequestName(uint64_t i, char (&buffer)[20]) {
  std::memcpy(buffer, "file-0000000.txt", 16);
  for (int digit = 11; digit >= 5; --digit, i /= 10)
    buffer[digit] = static_cast<char>('0' + i % 10);
  return absl::string_view(buffer, 16);
}

// Resident lookups: the target is 1,000,000 a second in a 1,000,000-entry directory on
// one thread. Printed, not asserted (machines differ); an absl::flat_hash_map of the
// same names, on the heap, is printed beside it as the baseline. The name is built
// for each lookup in a buffer that is in cache, as a request's is.
TEST(DirIndexTest, LookupRateInAMillionEntryResidentDirectory) {
  auto env = MakeEnv(uint64_t{256} << 20, /*noswap=*/true);
  DirIndex index(*env->kmem);
  DirRoot dir;
  const uint64_t count = kSanitized ? 20'000 : 1'000'000;
  absl::flat_hash_map<std::string, uint64_t> baseline;
  char buffer[20];
  for (uint64_t i = 0; i < count; ++i) {
    ASSERT_TRUE(index.Insert(dir, RequestName(i, buffer), FakeNode(i), DT_REG).ok());
    baseline[RequestName(i, buffer)] = i;
  }
  std::vector<uint32_t> order(2 * count);
  std::mt19937_64 random(5);
  for (uint32_t& k : order) k = static_cast<uint32_t>(random() % count);

  // Present names, absent names (a negative lookup, as for a create), the baseline.
  double seconds[3];
  uint64_t found[3] = {0, 0, 0};
  for (int run = 0; run < 3; ++run) {
    const auto start = std::chrono::steady_clock::now();
    for (uint32_t k : order) {
      const absl::string_view name = RequestName(run == 1 ? k + count : k, buffer);
      found[run] += run < 2 ? (index.Lookup(dir, name).ok() ? 1 : 0) : baseline.count(name);
    }
    seconds[run] = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }
  EXPECT_EQ(found[0], order.size());
  EXPECT_EQ(found[1], 0u);
  EXPECT_EQ(found[2], order.size());
  const double lookups = static_cast<double>(order.size());
  std::printf(
      "%llu entries, height %u: %.0f lookups/s (%.0f ns each), %.0f/s of absent names; "
      "flat_hash_map baseline %.0f/s; ratio %.2f\n",
      static_cast<unsigned long long>(count), dir.height, lookups / seconds[0],
      1e9 * seconds[0] / lookups, lookups / seconds[1], lookups / seconds[2],
      seconds[2] / seconds[0]);
  index.Destroy(dir);
}

}  // namespace
}  // namespace ptmpfs::meta
