#include "vm/swap.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "test/testing.h"
#include "vm/swap_format.h"

namespace ptmpfs::vm {
namespace {

constexpr uint32_t kTmpfsMagic = 0x01021994;
constexpr uint32_t kFuseSuperMagic = 0x65735546;

uint64_t FileBytesForSlots(uint64_t slots) { return kSwapDataAlign + slots * kSwapPageSize; }

::testing::AssertionResult Refused(const absl::Status& status, absl::StatusCode code,
                                   absl::string_view text) {
  if (status.code() == code && absl::StrContains(status.message(), text)) {
    return ::testing::AssertionSuccess();
  }
  return ::testing::AssertionFailure()
         << "got " << status << ", expected " << absl::StatusCodeToString(code) << " saying \""
         << text << "\"";
}

// `count` page-aligned pages (O_DIRECT wants them aligned), as Write and Read take them.
class Pages {
 public:
  explicit Pages(int count)
      : memory_(static_cast<char*>(aligned_alloc(kSwapPageSize, count * kSwapPageSize))) {
    memset(memory_.get(), 0, count * kSwapPageSize);
    for (int i = 0; i < count; ++i) pointers_.push_back(memory_.get() + i * kSwapPageSize);
  }
  void* const* get() const { return pointers_.data(); }
  char* page(int i) const { return static_cast<char*>(pointers_[i]); }
  int count() const { return static_cast<int>(pointers_.size()); }
  // Fills page i with bytes that depend on `seed` and i.
  void Fill(uint64_t seed) {
    for (int i = 0; i < count(); ++i) {
      std::mt19937_64 random(seed * 1000003 + i);
      for (uint64_t at = 0; at < kSwapPageSize; at += 8) {
        uint64_t word = random();
        memcpy(page(i) + at, &word, 8);
      }
    }
  }
  void Clear() { memset(memory_.get(), 0, count() * kSwapPageSize); }
  bool SamePage(int i, const Pages& other, int j) const {
    return memcmp(page(i), other.page(j), kSwapPageSize) == 0;
  }

 private:
  struct Free {
    void operator()(char* memory) const { free(memory); }
  };
  std::unique_ptr<char, Free> memory_;
  std::vector<void*> pointers_;
};

std::unique_ptr<Swap> OpenTemporary(uint64_t slots) {
  SwapOptions options;
  options.size_bytes = FileBytesForSlots(slots);
  absl::StatusOr<std::unique_ptr<Swap>> swap = Swap::Open(options);
  EXPECT_TRUE(swap.ok()) << swap.status();
  return swap.ok() ? std::move(*swap) : nullptr;
}

// A temporary swap of `slots` slots, all backed.
std::unique_ptr<Swap> OpenBackedTemporary(uint64_t slots) {
  std::unique_ptr<Swap> swap = OpenTemporary(slots);
  if (swap != nullptr) {
    EXPECT_TRUE(swap->EnsureBacked(slots).ok());
  }
  return swap;
}

uint64_t AllocatedBytes(int fd) {
  struct stat st;
  EXPECT_EQ(fstat(fd, &st), 0);
  return static_cast<uint64_t>(st.st_blocks) * 512;
}

// Sets an environment variable for one scope.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const std::string& value) : name_(name) {
    if (const char* old = getenv(name)) old_ = old;
    setenv(name, value.c_str(), 1);
  }
  ~ScopedEnv() {
    if (old_.has_value()) {
      setenv(name_, old_->c_str(), 1);
    } else {
      unsetenv(name_);
    }
  }

 private:
  const char* name_;
  std::optional<std::string> old_;
};

// --- The temporary file ---

TEST(SwapTest, TemporaryFileIsUnlinkedPrivateAndNotInRam) {
  std::unique_ptr<Swap> swap = OpenTemporary(64);
  ASSERT_NE(swap, nullptr);
  EXPECT_EQ(swap->path(), "");
  struct stat st;
  ASSERT_EQ(fstat(swap->fd(), &st), 0);
  EXPECT_EQ(st.st_nlink, 0u);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  struct statfs fs;
  ASSERT_EQ(fstatfs(swap->fd(), &fs), 0);
  EXPECT_NE(static_cast<uint32_t>(fs.f_type), kTmpfsMagic);
  EXPECT_NE(static_cast<uint32_t>(fs.f_type), kFuseSuperMagic);
}

TEST(SwapTest, TemporaryFileHasAHeaderButNoDataBlocksUntilBacked) {
  std::unique_ptr<Swap> swap = OpenTemporary(1024);
  ASSERT_NE(swap, nullptr);
  absl::StatusOr<SwapHeader> header = ReadSwapHeader(swap->fd());
  ASSERT_TRUE(header.ok()) << header.status();
  EXPECT_EQ(header->slot_count, 1024u);
  EXPECT_EQ(swap->slot_count(), 1024u);
  EXPECT_EQ(swap->backed_slots(), 0u);
  EXPECT_LT(AllocatedBytes(swap->fd()), 1024 * kSwapPageSize);
}

TEST(SwapTest, NoneMeansATemporaryFile) {
  SwapOptions options;
  options.path = "none";
  options.size_bytes = FileBytesForSlots(8);
  absl::StatusOr<std::unique_ptr<Swap>> swap = Swap::Open(options);
  ASSERT_TRUE(swap.ok()) << swap.status();
  struct stat st;
  ASSERT_EQ(fstat((*swap)->fd(), &st), 0);
  EXPECT_EQ(st.st_nlink, 0u);
}

TEST(SwapTest, TemporaryFileSkipsATmpdirOnTmpfs) {
  struct statfs fs;
  if (statfs("/dev/shm", &fs) != 0 || static_cast<uint32_t>(fs.f_type) != kTmpfsMagic) {
    GTEST_SKIP() << "no tmpfs at /dev/shm to point TMPDIR at";
  }
  ScopedEnv tmpdir("TMPDIR", "/dev/shm");
  std::unique_ptr<Swap> swap = OpenTemporary(8);
  ASSERT_NE(swap, nullptr);
  ASSERT_EQ(fstatfs(swap->fd(), &fs), 0);
  EXPECT_NE(static_cast<uint32_t>(fs.f_type), kTmpfsMagic);
}

TEST(SwapTest, TemporaryFileNeedsASize) {
  absl::StatusOr<std::unique_ptr<Swap>> swap = Swap::Open(SwapOptions{});
  EXPECT_TRUE(Refused(swap.status(), absl::StatusCode::kInvalidArgument, "needs a size"));
}

// --- Files at a path ---

TEST(SwapTest, MissingPathIsCreatedFormattedAndWhollyBacked) {
  testing::TempDir dir;
  SwapOptions options;
  options.path = dir.path() + "/swap";
  options.size_bytes = FileBytesForSlots(100);
  absl::StatusOr<std::unique_ptr<Swap>> swap = Swap::Open(options);
  ASSERT_TRUE(swap.ok()) << swap.status();
  EXPECT_EQ((*swap)->path(), options.path);
  EXPECT_EQ((*swap)->slot_count(), 100u);
  EXPECT_EQ((*swap)->backed_slots(), 100u);
  EXPECT_GE(AllocatedBytes((*swap)->fd()), options.size_bytes);
  struct stat st;
  ASSERT_EQ(stat(options.path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
}

TEST(SwapTest, EmptyFileIsFormatted) {
  testing::TempDir dir;
  SwapOptions options;
  options.path = dir.path() + "/swap";
  close(open(options.path.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600));
  options.size_bytes = FileBytesForSlots(10);
  absl::StatusOr<std::unique_ptr<Swap>> swap = Swap::Open(options);
  ASSERT_TRUE(swap.ok()) << swap.status();
  EXPECT_EQ((*swap)->slot_count(), 10u);
  EXPECT_TRUE(ReadSwapHeader((*swap)->fd()).ok());
}

TEST(SwapTest, MissingPathWithoutASizeIsRefusedAndNotCreated) {
  testing::TempDir dir;
  SwapOptions options;
  options.path = dir.path() + "/swap";
  absl::StatusOr<std::unique_ptr<Swap>> swap = Swap::Open(options);
  EXPECT_TRUE(Refused(swap.status(), absl::StatusCode::kInvalidArgument,
                      absl::StrCat(options.path, ": does not exist")));
  EXPECT_NE(access(options.path.c_str(), F_OK), 0);
}

TEST(SwapTest, EmptyFileWithoutASizeIsRefused) {
  testing::TempDir dir;
  SwapOptions options;
  options.path = dir.path() + "/swap";
  close(open(options.path.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600));
  absl::StatusOr<std::unique_ptr<Swap>> swap = Swap::Open(options);
  EXPECT_TRUE(Refused(swap.status(), absl::StatusCode::kInvalidArgument,
                      absl::StrCat(options.path, ": empty file")));
}

TEST(SwapTest, ReopenedFileKeepsItsHeaderWhateverSizeIsAsked) {
  testing::TempDir dir;
  SwapOptions options;
  options.path = dir.path() + "/swap";
  options.size_bytes = FileBytesForSlots(10);
  SwapHeader first{};
  {
    absl::StatusOr<std::unique_ptr<Swap>> swap = Swap::Open(options);
    ASSERT_TRUE(swap.ok()) << swap.status();
    first = *ReadSwapHeader((*swap)->fd());
  }
  options.size_bytes = FileBytesForSlots(99);
  absl::StatusOr<std::unique_ptr<Swap>> swap = Swap::Open(options);
  ASSERT_TRUE(swap.ok()) << swap.status();
  EXPECT_EQ((*swap)->slot_count(), 10u);
  absl::StatusOr<SwapHeader> again = ReadSwapHeader((*swap)->fd());
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(0, memcmp(first.uuid, again->uuid, sizeof(first.uuid)));
}

TEST(SwapTest, ForeignFileIsRefusedByNameAndLeftAlone) {
  testing::TempDir dir;
  SwapOptions options;
  options.path = dir.path() + "/thesis.tex";
  options.size_bytes = FileBytesForSlots(10);
  const std::string text = "\\documentclass{article}\n";
  int fd = open(options.path.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
  ASSERT_EQ(write(fd, text.data(), text.size()), static_cast<ssize_t>(text.size()));
  close(fd);
  absl::StatusOr<std::unique_ptr<Swap>> swap = Swap::Open(options);
  EXPECT_TRUE(Refused(swap.status(), absl::StatusCode::kFailedPrecondition,
                      absl::StrCat(options.path, ": bad magic: not a ptmpfs swap file")));
  struct stat st;
  ASSERT_EQ(stat(options.path.c_str(), &st), 0);
  EXPECT_EQ(static_cast<size_t>(st.st_size), text.size());
}

TEST(SwapTest, TruncatedSwapFileIsRefusedByName) {
  testing::TempDir dir;
  SwapOptions options;
  options.path = dir.path() + "/swap";
  options.size_bytes = FileBytesForSlots(10);
  ASSERT_TRUE(Swap::Open(options).ok());
  ASSERT_EQ(truncate(options.path.c_str(), FileBytesForSlots(9)), 0);
  absl::StatusOr<std::unique_ptr<Swap>> swap = Swap::Open(options);
  EXPECT_TRUE(Refused(swap.status(), absl::StatusCode::kDataLoss,
                      absl::StrCat(options.path, ": truncated")));
}

TEST(SwapTest, DirectoryIsRefusedByName) {
  testing::TempDir dir;
  SwapOptions options;
  options.path = dir.path();
  absl::StatusOr<std::unique_ptr<Swap>> swap = Swap::Open(options);
  EXPECT_FALSE(swap.ok());
  EXPECT_TRUE(absl::StartsWith(swap.status().message(), options.path)) << swap.status();
}

// --- The lock ---

TEST(SwapTest, SecondOpenOfALockedFileIsRefused) {
  testing::TempDir dir;
  SwapOptions options;
  options.path = dir.path() + "/swap";
  options.size_bytes = FileBytesForSlots(10);
  absl::StatusOr<std::unique_ptr<Swap>> first = Swap::Open(options);
  ASSERT_TRUE(first.ok()) << first.status();
  absl::StatusOr<std::unique_ptr<Swap>> second = Swap::Open(options);
  EXPECT_TRUE(Refused(second.status(), absl::StatusCode::kUnavailable,
                      absl::StrCat(options.path, ": in use by another ptmpfs")));
}

TEST(SwapTest, LockWaitSucceedsWhenTheHolderClosesInTime) {
  testing::TempDir dir;
  SwapOptions options;
  options.path = dir.path() + "/swap";
  options.size_bytes = FileBytesForSlots(10);
  absl::StatusOr<std::unique_ptr<Swap>> first = Swap::Open(options);
  ASSERT_TRUE(first.ok()) << first.status();
  // The holder lets go 30 ms after the second open has begun (a span, not a
  // synchronisation: should the open start later, it finds the file free at once and
  // the test proves less, not something false). The close happens after the start
  // whatever the scheduling, so an open that ends before the close did not wait.
  std::atomic<bool> opening{false};
  std::atomic<std::chrono::steady_clock::rep> closed_at{0};
  std::thread closer([&] {
    while (!opening.load()) std::this_thread::yield();
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
    closed_at = std::chrono::steady_clock::now().time_since_epoch().count();
    first->reset();
  });
  options.lock_wait_ms = 10000;
  const auto start = std::chrono::steady_clock::now();
  opening = true;
  absl::StatusOr<std::unique_ptr<Swap>> second = Swap::Open(options);
  const auto opened_at = std::chrono::steady_clock::now();
  closer.join();
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_GE(opened_at.time_since_epoch().count(), closed_at.load()) << "opened while held";
  EXPECT_LT(opened_at - start, std::chrono::milliseconds(5000));
}

TEST(SwapTest, LockWaitGivesUpAtItsDeadline) {
  testing::TempDir dir;
  SwapOptions options;
  options.path = dir.path() + "/swap";
  options.size_bytes = FileBytesForSlots(10);
  absl::StatusOr<std::unique_ptr<Swap>> first = Swap::Open(options);
  ASSERT_TRUE(first.ok()) << first.status();
  options.lock_wait_ms = 40;
  const auto start = std::chrono::steady_clock::now();
  absl::StatusOr<std::unique_ptr<Swap>> second = Swap::Open(options);
  const auto waited = std::chrono::steady_clock::now() - start;
  EXPECT_TRUE(Refused(second.status(), absl::StatusCode::kUnavailable, "in use by another"));
  EXPECT_GE(waited, std::chrono::milliseconds(40));
}

// --- Backing and slots ---

TEST(SwapTest, EnsureBackedAllocatesBlocksAChunkAtATime) {
  const uint64_t chunk = Swap::kBackingChunkSlots;
  std::unique_ptr<Swap> swap = OpenTemporary(chunk + 16);
  ASSERT_NE(swap, nullptr);
  const uint64_t allocated_before = AllocatedBytes(swap->fd());
  EXPECT_TRUE(Refused(swap->AllocSlots(1).status(), absl::StatusCode::kResourceExhausted,
                      "no run of 1 free swap slots"));

  ASSERT_TRUE(swap->EnsureBacked(1).ok());
  EXPECT_EQ(swap->backed_slots(), chunk);
  EXPECT_GE(AllocatedBytes(swap->fd()), allocated_before + chunk * kSwapPageSize);
  absl::StatusOr<uint64_t> whole_chunk = swap->AllocSlots(chunk);
  ASSERT_TRUE(whole_chunk.ok()) << whole_chunk.status();
  EXPECT_EQ(swap->AllocSlots(1).status().code(), absl::StatusCode::kResourceExhausted);

  ASSERT_TRUE(swap->EnsureBacked(chunk + 1).ok());
  EXPECT_EQ(swap->backed_slots(), chunk + 16);  // the rest, not a whole chunk
  absl::StatusOr<uint64_t> rest = swap->AllocSlots(16);
  ASSERT_TRUE(rest.ok()) << rest.status();
  EXPECT_EQ(*rest, chunk);
  EXPECT_EQ(swap->slots_in_use(), chunk + 16);
}

TEST(SwapTest, EnsureBackedRefusesMoreSlotsThanTheFileHas) {
  std::unique_ptr<Swap> swap = OpenTemporary(16);
  ASSERT_NE(swap, nullptr);
  EXPECT_TRUE(Refused(swap->EnsureBacked(17), absl::StatusCode::kResourceExhausted,
                      "the swap file has 16"));
  EXPECT_TRUE(swap->EnsureBacked(16).ok());
  EXPECT_TRUE(swap->EnsureBacked(16).ok());
}

TEST(SwapTest, SlotExhaustionIsResourceExhaustedUntilSlotsAreFreed) {
  std::unique_ptr<Swap> swap = OpenBackedTemporary(64);
  ASSERT_NE(swap, nullptr);
  std::vector<uint64_t> runs;
  for (int i = 0; i < 4; ++i) {
    absl::StatusOr<uint64_t> run = swap->AllocSlots(16);
    ASSERT_TRUE(run.ok()) << run.status();
    runs.push_back(*run);
  }
  EXPECT_EQ(swap->slots_in_use(), 64u);
  EXPECT_EQ(swap->AllocSlots(1).status().code(), absl::StatusCode::kResourceExhausted);
  swap->FreeSlots(runs[2], 16);
  EXPECT_EQ(swap->slots_in_use(), 48u);
  absl::StatusOr<uint64_t> again = swap->AllocSlots(16);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(*again, runs[2]);
}

TEST(SwapTest, AllocSlotsFindsTheLastRunThatFitsExactly) {
  std::unique_ptr<Swap> swap = OpenBackedTemporary(64);
  ASSERT_NE(swap, nullptr);
  absl::StatusOr<uint64_t> most = swap->AllocSlots(61);
  absl::StatusOr<uint64_t> last = swap->AllocSlots(3);
  ASSERT_TRUE(most.ok() && last.ok());
  swap->FreeSlots(*last, 3);
  // Three free slots sit on the [2, 4) list, where instant fit does not look for 3.
  absl::StatusOr<uint64_t> three = swap->AllocSlots(3);
  ASSERT_TRUE(three.ok()) << three.status();
  EXPECT_EQ(*three, *last);
}

// --- I/O and checksums ---

TEST(SwapTest, ClusterOf16PagesRoundTrips) {
  std::unique_ptr<Swap> swap = OpenBackedTemporary(64);
  ASSERT_NE(swap, nullptr);
  absl::StatusOr<uint64_t> first = swap->AllocSlots(16);
  ASSERT_TRUE(first.ok());
  Pages written(16), read(16);
  written.Fill(1);
  ASSERT_TRUE(swap->Write(*first, written.get(), 16).ok());
  ASSERT_TRUE(swap->Read(*first, read.get(), 16).ok());
  for (int i = 0; i < 16; ++i) EXPECT_TRUE(read.SamePage(i, written, i)) << i;
  // Part of the cluster comes back on its own too, as a fault reads one page.
  Pages one(1);
  ASSERT_TRUE(swap->Read(*first + 7, one.get(), 1).ok());
  EXPECT_TRUE(one.SamePage(0, written, 7));
  EXPECT_EQ(swap->checksum_failures(), 0u);
}

// How many of the slots [first, first + count) the host page cache holds (mincore on a
// mapping of the swap file, whose pages are never touched through it).
uint64_t CachedSlots(const Swap& swap, uint64_t first, uint64_t count) {
  const size_t bytes = count * kSwapPageSize;
  void* mapping = mmap(nullptr, bytes, PROT_READ, MAP_SHARED, swap.fd(),
                       static_cast<off_t>(swap.SlotOffset(first)));
  EXPECT_NE(mapping, MAP_FAILED) << strerror(errno);
  if (mapping == MAP_FAILED) return 0;
  std::vector<unsigned char> resident(count);
  EXPECT_EQ(mincore(mapping, bytes, resident.data()), 0) << strerror(errno);
  munmap(mapping, bytes);
  return std::count_if(resident.begin(), resident.end(), [](unsigned char r) { return r & 1; });
}

TEST(SwapTest, WhollyFreedSlotGroupsLeaveTheHostPageCache) {
  std::unique_ptr<Swap> swap = OpenBackedTemporary(256);
  ASSERT_NE(swap, nullptr);
  constexpr uint64_t kGroup = SwapSlots::kGroupSlots;
  absl::StatusOr<uint64_t> first = swap->AllocSlots(kGroup);
  absl::StatusOr<uint64_t> second = swap->AllocSlots(kGroup);
  ASSERT_TRUE(first.ok() && second.ok());
  ASSERT_EQ(*first % kGroup, 0u);  // a run of 64 is a whole group
  Pages written(kGroup);
  written.Fill(7);
  ASSERT_TRUE(swap->Write(*first, written.get(), kGroup).ok());
  ASSERT_TRUE(swap->Write(*second, written.get(), kGroup).ok());
  // Written back, as the host's flusher would have done by now: DONTNEED drops clean
  // pages only.
  ASSERT_EQ(fdatasync(swap->fd()), 0);
  ASSERT_EQ(CachedSlots(*swap, *first, kGroup), kGroup);

  // A group partly in use keeps its pages.
  swap->FreeSlots(*first, kGroup - 1);
  swap->DropFreedPages();
  EXPECT_EQ(CachedSlots(*swap, *first, kGroup), kGroup);

  // Its last slot freed, the group is dropped; the other group stays cached.
  swap->FreeSlots(*first + kGroup - 1, 1);
  swap->DropFreedPages();
  EXPECT_EQ(CachedSlots(*swap, *first, kGroup), 0u);
  EXPECT_EQ(CachedSlots(*swap, *second, kGroup), kGroup);
  Pages read(kGroup);
  ASSERT_TRUE(swap->Read(*second, read.get(), kGroup).ok());
  for (uint64_t i = 0; i < kGroup; ++i) EXPECT_TRUE(read.SamePage(i, written, i)) << i;
}

TEST(SwapTest, CorruptedSlotIsDataLossForThatSlotOnly) {
  std::unique_ptr<Swap> swap = OpenBackedTemporary(64);
  ASSERT_NE(swap, nullptr);
  absl::StatusOr<uint64_t> first = swap->AllocSlots(16);
  ASSERT_TRUE(first.ok());
  Pages written(16);
  written.Fill(2);
  ASSERT_TRUE(swap->Write(*first, written.get(), 16).ok());

  const uint64_t bad_slot = *first + 5;
  const char flipped = static_cast<char>(written.page(5)[100] ^ 0x20);
  ASSERT_EQ(pwrite(swap->fd(), &flipped, 1, swap->SlotOffset(bad_slot) + 100), 1);

  Pages one(1);
  EXPECT_TRUE(Refused(swap->Read(bad_slot, one.get(), 1), absl::StatusCode::kDataLoss,
                      absl::StrCat("swap slot ", bad_slot, ": checksum mismatch")));
  EXPECT_EQ(swap->checksum_failures(), 1u);
  for (int i = 0; i < 16; ++i) {
    if (*first + i == bad_slot) continue;
    ASSERT_TRUE(swap->Read(*first + i, one.get(), 1).ok()) << i;
    EXPECT_TRUE(one.SamePage(0, written, i)) << i;
  }
  EXPECT_EQ(swap->checksum_failures(), 1u);
}

TEST(SwapTest, ClusterReadNamesTheCorruptedSlot) {
  std::unique_ptr<Swap> swap = OpenBackedTemporary(64);
  ASSERT_NE(swap, nullptr);
  absl::StatusOr<uint64_t> first = swap->AllocSlots(16);
  ASSERT_TRUE(first.ok());
  Pages written(16), read(16);
  written.Fill(3);
  ASSERT_TRUE(swap->Write(*first, written.get(), 16).ok());
  const char garbage[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  ASSERT_EQ(pwrite(swap->fd(), garbage, 8, swap->SlotOffset(*first + 9)), 8);
  EXPECT_TRUE(Refused(swap->Read(*first, read.get(), 16), absl::StatusCode::kDataLoss,
                      absl::StrCat("swap slot ", *first + 9, ": checksum mismatch")));
  EXPECT_EQ(swap->checksum_failures(), 1u);
}

TEST(SwapTest, RewritingASlotReplacesItsChecksum) {
  std::unique_ptr<Swap> swap = OpenBackedTemporary(8);
  ASSERT_NE(swap, nullptr);
  absl::StatusOr<uint64_t> slot = swap->AllocSlots(1);
  ASSERT_TRUE(slot.ok());
  Pages first(1), second(1), read(1);
  first.Fill(4);
  second.Fill(5);
  ASSERT_TRUE(swap->Write(*slot, first.get(), 1).ok());
  ASSERT_TRUE(swap->Write(*slot, second.get(), 1).ok());
  ASSERT_TRUE(swap->Read(*slot, read.get(), 1).ok());
  EXPECT_TRUE(read.SamePage(0, second, 0));
}

TEST(SwapTest, ReadingASlotNeverWrittenOrFreedIsRefused) {
  std::unique_ptr<Swap> swap = OpenBackedTemporary(8);
  ASSERT_NE(swap, nullptr);
  absl::StatusOr<uint64_t> slot = swap->AllocSlots(1);
  ASSERT_TRUE(slot.ok());
  Pages page(1);
  EXPECT_TRUE(Refused(swap->Read(*slot, page.get(), 1), absl::StatusCode::kFailedPrecondition,
                      "read before it was written"));
  page.Fill(6);
  ASSERT_TRUE(swap->Write(*slot, page.get(), 1).ok());
  swap->FreeSlots(*slot, 1);
  EXPECT_TRUE(Refused(swap->Read(*slot, page.get(), 1), absl::StatusCode::kFailedPrecondition,
                      "read before it was written"));
  EXPECT_EQ(swap->checksum_failures(), 0u);
}

TEST(SwapTest, IoOutsideTheFileIsInvalidArgument) {
  std::unique_ptr<Swap> swap = OpenBackedTemporary(8);
  ASSERT_NE(swap, nullptr);
  Pages pages(2);
  EXPECT_EQ(swap->Write(7, pages.get(), 2).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(swap->Read(8, pages.get(), 1).code(), absl::StatusCode::kInvalidArgument);
}

TEST(SwapTest, DirectIoRoundTrips) {
  testing::TempDir dir;
  SwapOptions options;
  options.path = dir.path() + "/swap";
  options.size_bytes = FileBytesForSlots(64);
  options.o_direct = true;
  absl::StatusOr<std::unique_ptr<Swap>> swap = Swap::Open(options);
  if (swap.status().code() == absl::StatusCode::kFailedPrecondition &&
      absl::StrContains(swap.status().message(), "O_DIRECT")) {
    GTEST_SKIP() << "the file system under " << dir.path()
                 << " rejects O_DIRECT: " << swap.status();
  }
  ASSERT_TRUE(swap.ok()) << swap.status();
  swap->reset();
  swap = Swap::Open(options);  // the header is read with O_DIRECT too
  ASSERT_TRUE(swap.ok()) << swap.status();
  EXPECT_NE(fcntl((*swap)->fd(), F_GETFL) & O_DIRECT, 0);
  absl::StatusOr<uint64_t> first = (*swap)->AllocSlots(16);
  ASSERT_TRUE(first.ok());
  Pages written(16), read(16);
  written.Fill(7);
  ASSERT_TRUE((*swap)->Write(*first, written.get(), 16).ok());
  ASSERT_TRUE((*swap)->Read(*first, read.get(), 16).ok());
  for (int i = 0; i < 16; ++i) EXPECT_TRUE(read.SamePage(i, written, i)) << i;
}

TEST(SwapTest, DirectIoTemporaryFileRoundTrips) {
  SwapOptions options;
  options.size_bytes = FileBytesForSlots(64);
  options.o_direct = true;
  absl::StatusOr<std::unique_ptr<Swap>> swap = Swap::Open(options);
  if (swap.status().code() == absl::StatusCode::kFailedPrecondition &&
      absl::StrContains(swap.status().message(), "O_DIRECT")) {
    GTEST_SKIP() << "the temporary directory rejects O_DIRECT: " << swap.status();
  }
  ASSERT_TRUE(swap.ok()) << swap.status();
  ASSERT_TRUE((*swap)->EnsureBacked(64).ok());
  absl::StatusOr<uint64_t> first = (*swap)->AllocSlots(4);
  ASSERT_TRUE(first.ok());
  Pages written(4), read(4);
  written.Fill(8);
  ASSERT_TRUE((*swap)->Write(*first, written.get(), 4).ok());
  ASSERT_TRUE((*swap)->Read(*first, read.get(), 4).ok());
  for (int i = 0; i < 4; ++i) EXPECT_TRUE(read.SamePage(i, written, i)) << i;
}

TEST(SwapTest, ConcurrentWritersOfDistinctSlotsReadBackTheirOwnPages) {
  std::unique_ptr<Swap> swap = OpenBackedTemporary(256);
  ASSERT_NE(swap, nullptr);
  auto writer = [&swap](uint64_t seed, std::vector<bool>* ok) {
    Pages written(4), read(4);
    for (int round = 0; round < 16; ++round) {
      absl::StatusOr<uint64_t> first = swap->AllocSlots(4);
      if (!first.ok()) return ok->push_back(false);
      written.Fill(seed * 100 + round);
      ok->push_back(swap->Write(*first, written.get(), 4).ok() &&
                    swap->Read(*first, read.get(), 4).ok() &&
                    memcmp(read.page(0), written.page(0), 4 * kSwapPageSize) == 0);
    }
  };
  std::vector<bool> ok_a, ok_b;
  std::thread a(writer, 1, &ok_a), b(writer, 2, &ok_b);
  a.join();
  b.join();
  EXPECT_EQ(ok_a, std::vector<bool>(16, true));
  EXPECT_EQ(ok_b, std::vector<bool>(16, true));
  EXPECT_EQ(swap->slots_in_use(), 128u);
}

struct SlotRun {
  uint64_t first;
  int count;
  uint64_t content_seed;  // 0: not written yet
};

uint64_t LongestFreeRun(std::vector<SlotRun> runs, uint64_t slots) {
  std::sort(runs.begin(), runs.end(),
            [](const SlotRun& a, const SlotRun& b) { return a.first < b.first; });
  uint64_t longest = 0, next_free = 0;
  for (const SlotRun& run : runs) {
    longest = std::max(longest, run.first - next_free);
    next_free = run.first + run.count;
  }
  return std::max(longest, slots - next_free);
}

// Random allocations, writes, reads and frees against a model of what each slot holds.
TEST(SwapTest, RandomizedAllocWriteReadFreeMatchesAModel) {
  const uint64_t seed = testing::TestSeed();
  std::printf("seed %llu\n", static_cast<unsigned long long>(seed));
  std::mt19937_64 random(seed);
  constexpr uint64_t kSlots = 512;
  std::unique_ptr<Swap> swap = OpenBackedTemporary(kSlots);
  ASSERT_NE(swap, nullptr);
  std::vector<SlotRun> runs;
  uint64_t in_use = 0;
  for (int step = 0; step < 2000; ++step) {
    const int action = static_cast<int>(random() % 4);
    if (action == 0 || runs.empty()) {
      const int count = 1 + static_cast<int>(random() % 16);
      absl::StatusOr<uint64_t> first = swap->AllocSlots(count);
      if (!first.ok()) {
        ASSERT_EQ(first.status().code(), absl::StatusCode::kResourceExhausted);
        ASSERT_LT(LongestFreeRun(runs, kSlots), static_cast<uint64_t>(count))
            << "refused with a free run that fits";
        continue;
      }
      for (const SlotRun& run : runs) {
        ASSERT_TRUE(*first + count <= run.first || run.first + run.count <= *first)
            << "overlapping runs";
      }
      runs.push_back({*first, count, 0});
      in_use += count;
    } else {
      SlotRun& run = runs[random() % runs.size()];
      if (action == 1) {
        Pages pages(run.count);
        run.content_seed = step + 1;
        pages.Fill(run.content_seed);
        ASSERT_TRUE(swap->Write(run.first, pages.get(), run.count).ok());
      } else if (action == 2 && run.content_seed != 0) {
        Pages read(run.count), expected(run.count);
        expected.Fill(run.content_seed);
        ASSERT_TRUE(swap->Read(run.first, read.get(), run.count).ok());
        for (int i = 0; i < run.count; ++i) ASSERT_TRUE(read.SamePage(i, expected, i));
      } else if (action == 3) {
        swap->FreeSlots(run.first, run.count);
        in_use -= run.count;
        run = runs.back();
        runs.pop_back();
      }
    }
    ASSERT_EQ(swap->slots_in_use(), in_use);
  }
  EXPECT_EQ(swap->checksum_failures(), 0u);
}

}  // namespace
}  // namespace ptmpfs::vm
