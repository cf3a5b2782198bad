// The randomized model test of the whole memory system: a RAM budget of 16 frames,
// 4096 pageable pages of the address space and several anonymous objects, tens of
// thousands of random writes, reads, truncates and punches, each checked byte for
// byte against a shadow copy while the pager thread evicts. The paging it causes is
// part of what is asserted.
#include <algorithm>
#include <array>
#include <cstdio>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "test/testing.h"
#include "vm/address_space.h"
#include "vm/anon_object.h"
#include "vm/vm.h"

namespace ptmpfs::vm {
namespace {

constexpr uint64_t kFrames = 16;
constexpr uint64_t kMapPages = 4096;
constexpr int kObjects = 4;
constexpr uint64_t kObjectSpan = 512 << 10;  // offsets of object writes stay below this
constexpr int kSteps = 40000;

struct ObjectModel {
  std::unique_ptr<AnonObject> object;
  std::string shadow;  // the file's bytes; its length is the file size
};

TEST(ModelTest, RandomOperationsMatchAShadowCopyUnderHeavyPaging) {
  const uint64_t seed = testing::TestSeed();
  std::printf("seed %llu\n", static_cast<unsigned long long>(seed));
  std::mt19937_64 random(seed);

  VmOptions options;
  options.ram_bytes = kFrames * kPageSize;
  options.swap.size_bytes = 128 << 20;
  auto vm = Vm::Create(options);
  ASSERT_TRUE(vm.ok()) << vm.status();
  auto space = *Map::CreateAddressSpace(**vm, uint64_t{1} << 32, uint64_t{1} << 40);
  auto pages = *space->Suballoc("model pages", kMapPages * kPageSize, 0, true);
  const uint64_t base = *pages->Alloc(kMapPages * kPageSize);
  std::vector<std::array<uint8_t, kPageSize>> page_shadow(kMapPages);
  for (auto& page : page_shadow) page.fill(0);

  std::vector<ObjectModel> objects(kObjects);
  for (ObjectModel& model : objects) model.object = std::make_unique<AnonObject>(**vm);

  auto random_bytes = [&](uint64_t length) {
    std::string bytes(length, '\0');
    for (char& c : bytes) c = static_cast<char>(random());
    return bytes;
  };
  auto check_page = [&](uint64_t page) {
    auto pin = pages->Pin<uint8_t[kPageSize]>(base + page * kPageSize, Access::kRead);
    ASSERT_TRUE(pin.ok()) << pin.status();
    ASSERT_EQ(memcmp(**pin, page_shadow[page].data(), kPageSize), 0) << "map page " << page;
  };
  auto check_object = [&](ObjectModel& model, uint64_t offset, uint64_t length) {
    std::string read(length, '\0');
    ASSERT_TRUE(model.object->Read(offset, read.data(), length).ok());
    ASSERT_EQ(read, model.shadow.substr(offset, length)) << "object range at " << offset;
  };

  for (int step = 0; step < kSteps; ++step) {
    const int choice = static_cast<int>(random() % 100);
    if (choice < 25) {  // write part of a map page
      uint64_t page = random() % kMapPages;
      uint64_t offset = random() % kPageSize;
      uint64_t length = 1 + random() % (kPageSize - offset);
      std::string bytes = random_bytes(length);
      auto pin = pages->Pin<uint8_t[kPageSize]>(base + page * kPageSize, Access::kWrite);
      ASSERT_TRUE(pin.ok()) << pin.status();
      memcpy(**pin + offset, bytes.data(), length);
      memcpy(page_shadow[page].data() + offset, bytes.data(), length);
    } else if (choice < 45) {  // read a map page
      check_page(random() % kMapPages);
    } else if (choice < 65) {  // write an object range
      ObjectModel& model = objects[random() % kObjects];
      uint64_t offset = random() % kObjectSpan;
      uint64_t length = 1 + random() % (16 << 10);
      std::string bytes = random_bytes(length);
      ASSERT_TRUE(model.object->Write(offset, bytes.data(), length).ok());
      if (model.shadow.size() < offset + length) model.shadow.resize(offset + length, '\0');
      model.shadow.replace(offset, length, bytes);
    } else if (choice < 85) {  // read an object range
      ObjectModel& model = objects[random() % kObjects];
      if (model.shadow.empty()) continue;
      uint64_t offset = random() % model.shadow.size();
      uint64_t length = std::min<uint64_t>(1 + random() % (16 << 10), model.shadow.size() - offset);
      check_object(model, offset, length);
    } else if (choice < 93) {  // truncate
      ObjectModel& model = objects[random() % kObjects];
      uint64_t size = random() % kObjectSpan;
      if (size < model.shadow.size()) {
        ASSERT_TRUE(model.object->Truncate(size).ok());
      }
      model.shadow.resize(size, '\0');
    } else {  // punch a hole
      ObjectModel& model = objects[random() % kObjects];
      if (model.shadow.empty()) continue;
      uint64_t offset = random() % model.shadow.size();
      uint64_t length = 1 + random() % (64 << 10);
      ASSERT_TRUE(model.object->Punch(offset, length).ok());
      length = std::min<uint64_t>(length, model.shadow.size() - offset);
      std::fill_n(model.shadow.begin() + static_cast<int64_t>(offset), length, '\0');
    }
  }
  for (uint64_t page = 0; page < kMapPages; ++page) check_page(page);
  for (ObjectModel& model : objects) check_object(model, 0, model.shadow.size());

  StatsSnapshot stats = (*vm)->ReadStats();
  std::printf("pageins %llu pageouts %llu pageout_ios %llu clean_evictions %llu faults %llu "
              "resident_frames %llu swap_slots_used %llu\n",
              static_cast<unsigned long long>(stats.pageins),
              static_cast<unsigned long long>(stats.pageouts),
              static_cast<unsigned long long>(stats.pageout_ios),
              static_cast<unsigned long long>(stats.clean_evictions),
              static_cast<unsigned long long>(stats.faults),
              static_cast<unsigned long long>(stats.resident_frames),
              static_cast<unsigned long long>(stats.swap_slots_used));
  // 4096 map pages and up to 512 object pages through 16 frames: nearly every
  // access is a page-in.
  EXPECT_GT(stats.pageins, 20000u);
  EXPECT_GT(stats.pageouts, 10000u);
  EXPECT_LE(stats.resident_frames, kFrames);

  // Freeing everything gives every frame charge and slot back.
  objects.clear();
  pages->Free(base, kMapPages * kPageSize);
  EXPECT_EQ((*vm)->accounting().charged(), 0u);
  EXPECT_EQ((*vm)->ReadStats().swap_slots_used, 0u);
}

}  // namespace
}  // namespace ptmpfs::vm
