// kmem: size classes over pools, and blobs of up to 1 MiB made of items.
#include "meta/kmem.h"

#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "test/testing.h"
#include "vm/pager.h"
#include "vm/vm.h"

namespace ptmpfs::meta {
namespace {

constexpr uint64_t kSpaceBase = uint64_t{1} << 32;
constexpr uint64_t kSpaceSize = uint64_t{1} << 46;
constexpr uint64_t kEverything = uint64_t{1} << 40;

struct Fixture {
  std::unique_ptr<vm::Vm> vm;
  std::unique_ptr<vm::Map> space;
  std::unique_ptr<Kmem> kmem;
};

Fixture Make(uint64_t frames, bool noswap, uint64_t swap_bytes = 64 << 20) {
  vm::VmOptions options;
  options.ram_bytes = frames * vm::kPageSize;
  options.noswap = noswap;
  options.swap.size_bytes = swap_bytes;
  options.start_pager_thread = false;
  options.frame_wait_ms = 1000;
  Fixture f;
  absl::StatusOr<std::unique_ptr<vm::Vm>> vm = vm::Vm::Create(options);
  EXPECT_TRUE(vm.ok()) << vm.status();
  if (!vm.ok()) return f;
  f.vm = *std::move(vm);
  f.space = *vm::Map::CreateAddressSpace(*f.vm, kSpaceBase, kSpaceSize);
  absl::StatusOr<std::unique_ptr<Kmem>> kmem = Kmem::Create(*f.space);
  EXPECT_TRUE(kmem.ok()) << kmem.status();
  if (kmem.ok()) f.kmem = *std::move(kmem);
  return f;
}

std::string RandomBytes(size_t length, uint64_t seed) {
  std::mt19937_64 random(seed);
  std::string bytes(length, '\0');
  for (char& c : bytes) c = static_cast<char>(random());
  return bytes;
}

TEST(KmemTest, ClassSizeIsTheSmallestClassThatHoldsTheRequest) {
  const std::vector<size_t> classes = Kmem::ClassSizes();
  ASSERT_FALSE(classes.empty());
  EXPECT_EQ(classes.front(), 16u);
  EXPECT_EQ(classes.back(), Kmem::kMaxItem);
  EXPECT_EQ(Kmem::ClassSize(0), 16u);
  EXPECT_EQ(Kmem::ClassSize(1), 16u);
  EXPECT_EQ(Kmem::ClassSize(16), 16u);
  EXPECT_EQ(Kmem::ClassSize(17), 24u);
  EXPECT_EQ(Kmem::ClassSize(1024), 1024u);
  EXPECT_EQ(Kmem::ClassSize(1025), 1256u);
  EXPECT_EQ(Kmem::ClassSize(4095), 4096u);
  EXPECT_EQ(Kmem::ClassSize(Kmem::kMaxItem), Kmem::kMaxItem);
  size_t previous = 0;
  for (size_t bytes = 1; bytes <= Kmem::kMaxItem; ++bytes) {
    const size_t size = Kmem::ClassSize(bytes);
    ASSERT_GE(size, bytes);
    ASSERT_EQ(size % 8, 0u);
    ASSERT_GE(size, previous);
    ASSERT_EQ(Kmem::ClassSize(size), size);
    previous = size;
    // Waste, as a share of the item's part of its page, stays within 25% from 32 bytes
    // up to 5456 (above, a 16 KiB page holds 2 items or 1: see kmem.cc).
    const size_t page = size <= 1024 ? 4096 : 16384;
    const double footprint = double(page) / double(page / size);
    if (bytes >= 32 && bytes <= 5456) {
      ASSERT_LE(1.0 - double(bytes) / footprint, 0.2505) << bytes << " in " << size;
    }
  }
}

TEST(KmemTest, EveryClassRoundTripsAFullItem) {
  Fixture f = Make(256, /*noswap=*/false);
  std::vector<std::pair<Addr, size_t>> items;
  for (size_t size : Kmem::ClassSizes()) {
    absl::StatusOr<Addr> item = f.kmem->Alloc(size);
    ASSERT_TRUE(item.ok()) << item.status();
    auto pin = f.kmem->Pin(*item, vm::Access::kWrite);
    ASSERT_TRUE(pin.ok()) << pin.status();
    const std::string bytes = RandomBytes(size, size);
    std::memcpy(pin->get(), bytes.data(), size);
    items.emplace_back(*item, size);
  }
  EXPECT_EQ(f.kmem->items_in_use(), items.size());
  f.vm->pager().Reclaim(kEverything);  // read back from swap, through Pin(address) alone
  for (const auto& [item, size] : items) {
    auto pin = f.kmem->Pin(*&item, vm::Access::kRead);
    ASSERT_TRUE(pin.ok()) << pin.status();
    ASSERT_EQ(std::memcmp(pin->get(), RandomBytes(size, size).data(), size), 0) << size;
  }
  // Free with any size of the same class.
  for (const auto& [item, size] : items) f.kmem->Free(item, size == 16 ? 1 : size - 7);
  EXPECT_EQ(f.kmem->items_in_use(), 0u);
}

TEST(KmemTest, AllocRejectsZeroAndOversizedItems) {
  Fixture f = Make(64, /*noswap=*/true);
  EXPECT_EQ(f.kmem->Alloc(0).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(f.kmem->Alloc(Kmem::kMaxItem + 1).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(f.kmem->StoreBlob(std::string(Kmem::kMaxBlob + 1, 'x')).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(KmemTest, BlobsOfEverySizeRoundTrip) {
  Fixture f = Make(256, /*noswap=*/false, 128 << 20);
  const std::vector<size_t> lengths = {0,     1,     15,    4095,  4096,  16383,
                                       16384, 16385, 40000, 65536, 65537, Kmem::kMaxBlob};
  std::vector<Addr> blobs;
  for (size_t length : lengths) {
    const std::string bytes = RandomBytes(length, length + 1);
    absl::StatusOr<Addr> blob = f.kmem->StoreBlob(bytes);
    ASSERT_TRUE(blob.ok()) << length << ": " << blob.status();
    ASSERT_NE(*blob, kNullAddr);  // even an empty blob
    std::string out(length, '\0');
    ASSERT_TRUE(f.kmem->LoadBlob(*blob, length, out.data()).ok());
    ASSERT_EQ(out, bytes) << length;
    blobs.push_back(*blob);
  }
  // An empty blob is one item of the smallest class; 16385 bytes are a 16 KiB chunk, a
  // 16-byte last chunk and a 16-byte index.
  EXPECT_EQ(f.kmem->items_in_use(), 1 + 1 + 1 + 1 + 1 + 1 + 1 + 3 + 4 + 5 + 6 + 65u);
  f.vm->pager().Reclaim(kEverything);
  for (size_t i = 0; i < lengths.size(); ++i) {
    std::string out(lengths[i], '\0');
    absl::Status loaded = f.kmem->LoadBlob(blobs[i], lengths[i], out.data());
    ASSERT_TRUE(loaded.ok()) << loaded;
    ASSERT_EQ(out, RandomBytes(lengths[i], lengths[i] + 1)) << lengths[i];
  }
  f.vm->pager().Reclaim(kEverything);
  for (size_t i = 0; i < lengths.size(); ++i) f.kmem->FreeBlob(blobs[i], lengths[i]);
  EXPECT_EQ(f.kmem->items_in_use(), 0u);
  f.kmem->Reap(0);
  EXPECT_EQ(f.kmem->pages_in_use(), 0u);
  EXPECT_EQ(f.vm->ReadStats().charged_pages, 0u);
  EXPECT_EQ(f.vm->ReadStats().swap_slots_used, 0u);
}

TEST(KmemTest, StoreBlobThatDoesNotFitLeavesNothingAllocated) {
  // No swap, 96 frames: room for about 80 pages, far from 1 MiB (256 frames).
  Fixture f = Make(96, /*noswap=*/true);
  const std::string small = RandomBytes(3000, 1);
  absl::StatusOr<Addr> kept = f.kmem->StoreBlob(small);
  ASSERT_TRUE(kept.ok());
  const uint64_t charged = f.vm->ReadStats().charged_pages;
  const uint64_t items = f.kmem->items_in_use();
  const uint64_t pages = f.kmem->pages_in_use();

  absl::StatusOr<Addr> big = f.kmem->StoreBlob(RandomBytes(Kmem::kMaxBlob, 2));
  EXPECT_EQ(big.status().code(), absl::StatusCode::kResourceExhausted) << big.status();
  EXPECT_EQ(f.kmem->items_in_use(), items);
  // Pages emptied by the failure are kept by their pools until reaped.
  f.kmem->Reap(0);
  EXPECT_EQ(f.kmem->pages_in_use(), pages);
  EXPECT_EQ(f.vm->ReadStats().charged_pages, charged);

  // What was stored before is intact, and a blob that fits still goes in.
  std::string out(small.size(), '\0');
  ASSERT_TRUE(f.kmem->LoadBlob(*kept, small.size(), out.data()).ok());
  EXPECT_EQ(out, small);
  const std::string medium = RandomBytes(100000, 3);
  absl::StatusOr<Addr> fits = f.kmem->StoreBlob(medium);
  ASSERT_TRUE(fits.ok()) << fits.status();
  out.assign(medium.size(), '\0');
  ASSERT_TRUE(f.kmem->LoadBlob(*fits, medium.size(), out.data()).ok());
  EXPECT_EQ(out, medium);
  f.kmem->FreeBlob(*fits, medium.size());
  f.kmem->FreeBlob(*kept, small.size());
  EXPECT_EQ(f.kmem->items_in_use(), 0u);
}

TEST(KmemTest, FreeOfSingleItemBlobsNeverFaults) {
  Fixture f = Make(128, /*noswap=*/false);
  std::vector<std::pair<Addr, size_t>> blobs;
  for (size_t i = 0; i < 400; ++i) {
    const size_t length = 1 + (i * 131) % 5000;
    absl::StatusOr<Addr> blob = f.kmem->StoreBlob(RandomBytes(length, i));
    ASSERT_TRUE(blob.ok()) << blob.status();
    blobs.emplace_back(*blob, length);
  }
  f.vm->pager().Reclaim(kEverything);
  const vm::StatsSnapshot before = f.vm->ReadStats();
  for (const auto& [blob, length] : blobs) f.kmem->FreeBlob(blob, length);
  EXPECT_EQ(f.vm->ReadStats().faults, before.faults);
  EXPECT_EQ(f.kmem->items_in_use(), 0u);
}

TEST(KmemTest, BookkeepingIsSmall) {
  Fixture f = Make(64, /*noswap=*/true);
  std::printf("kmem bookkeeping with no page in use: %lu bytes over %zu classes\n",
              f.kmem->bookkeeping_bytes(), Kmem::ClassSizes().size());
  EXPECT_LT(f.kmem->bookkeeping_bytes(), 16u << 10);
}

}  // namespace
}  // namespace ptmpfs::meta
