#include "vm/ubc_window.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"
#include "test/testing.h"
#include "vm/anon_object.h"
#include "vm/pager.h"
#include "vm/vm.h"

namespace ptmpfs::vm {
namespace {

constexpr uint64_t kPage = kPageSize;

std::unique_ptr<Vm> MakeVm(uint64_t frames, bool pager_thread = false) {
  VmOptions options;
  options.ram_bytes = frames * kPage;
  options.swap.size_bytes = uint64_t{64} << 20;
  options.frame_wait_ms = 2000;
  options.start_pager_thread = pager_thread;
  absl::StatusOr<std::unique_ptr<Vm>> vm = Vm::Create(options);
  EXPECT_TRUE(vm.ok()) << vm.status();
  return vm.ok() ? std::move(*vm) : nullptr;
}

void EvictAll(Vm& vm) {
  for (int round = 0; round < 16; ++round) {
    if (vm.pager().Reclaim(vm.frames().count()) == 0) break;
  }
}

std::string Pattern(uint64_t offset, uint64_t length, uint64_t seed = 1) {
  std::string bytes(length, '\0');
  for (uint64_t i = 0; i < length; ++i) {
    uint64_t x = (offset + i) * 0x9E3779B97F4A7C15ull + seed * 0xD1B54A32D192ED03ull;
    x ^= x >> 29;
    bytes[i] = static_cast<char>((x & 0xFF) | 1);
  }
  return bytes;
}

// Maps, copies out and releases: what a FUSE read does.
std::string ReadThroughWindow(AnonObject& object, uint64_t offset, uint64_t length) {
  absl::StatusOr<UbcWindow> window = UbcWindow::Map(object, offset, length, Access::kRead);
  EXPECT_TRUE(window.ok()) << window.status();
  if (!window.ok()) return "";
  std::string bytes(length, '\x55');
  window->CopyOut(bytes.data());
  return bytes;
}

void WriteThroughWindow(AnonObject& object, uint64_t offset, const std::string& data) {
  absl::StatusOr<UbcWindow> window = UbcWindow::Map(object, offset, data.size(), Access::kWrite);
  ASSERT_TRUE(window.ok()) << window.status();
  window->CopyIn(data.data());
  window->Release(/*dirty=*/true);
}

uint64_t IovecBytes(const UbcWindow& window) {
  uint64_t bytes = 0;
  for (const iovec& piece : window.iovecs()) bytes += piece.iov_len;
  return bytes;
}

FrameNumber FrameOf(AnonObject& object, PageIndex page) {
  uint64_t pte = object.table().Find(page)->load();
  return Pte::KindOf(pte) == Pte::kResident ? static_cast<FrameNumber>(Pte::Payload(pte))
                                            : kNoFrame;
}

// Moves the page in `frame` to another frame, as migration for an aligned run does.
bool Migrate(Vm& vm, FrameNumber frame) {
  if (!vm.pager().MigrateFrame(frame)) return false;
  vm.frames().Free(frame, 0);  // MigrateFrame leaves the vacated frame reserved
  return true;
}

// --- Mapping ---

TEST(UbcWindowTest, ReadWindowOverHolesPointsAtTheZeroPageAndChargesNothing) {
  std::unique_ptr<Vm> vm = MakeVm(64);
  ASSERT_NE(vm, nullptr);
  AnonObject object(*vm);
  absl::StatusOr<UbcWindow> window = UbcWindow::Map(object, 100, 3 * kPage, Access::kRead);
  ASSERT_TRUE(window.ok()) << window.status();
  EXPECT_EQ(window->page_count(), 4u);
  ASSERT_EQ(window->iovecs().size(), 4u);  // one zero page cannot stand for two
  EXPECT_EQ(window->iovecs()[0].iov_base, static_cast<const char*>(UbcWindow::zero_page()) + 100);
  EXPECT_EQ(window->iovecs()[0].iov_len, kPage - 100);
  EXPECT_EQ(window->iovecs()[3].iov_base, UbcWindow::zero_page());
  EXPECT_EQ(window->iovecs()[3].iov_len, 100u);
  EXPECT_EQ(IovecBytes(*window), 3 * kPage);
  EXPECT_EQ(vm->accounting().charged(), 0u);
  EXPECT_EQ(object.allocated_pages(), 0u);
  EXPECT_EQ(vm->wired_frames(), 0);
}

TEST(UbcWindowTest, WriteWindowAllocatesHolesAndWiresEveryPage) {
  std::unique_ptr<Vm> vm = MakeVm(64);
  ASSERT_NE(vm, nullptr);
  AnonObject object(*vm);
  absl::StatusOr<UbcWindow> window = UbcWindow::Map(object, 100, 3 * kPage, Access::kWrite);
  ASSERT_TRUE(window.ok()) << window.status();
  EXPECT_EQ(object.allocated_pages(), 4u);
  EXPECT_EQ(vm->accounting().charged(), 4u);
  EXPECT_EQ(vm->wired_frames(), 4);
  EXPECT_EQ(IovecBytes(*window), 3 * kPage);
  for (const iovec& piece : window->iovecs()) {
    EXPECT_NE(piece.iov_base, UbcWindow::zero_page());
  }
  window->Release(/*dirty=*/true);
  EXPECT_EQ(vm->wired_frames(), 0);
  EXPECT_FALSE(window->mapped());
}

// Pages a write window wholly covers are wired with Access::kOverwrite and not zeroed
// first; the pages at its ends, which it covers only in part, must still be: their
// frames come back with a freed page's old bytes.
TEST(UbcWindowTest, WriteWindowZeroesOnlyThePagesItCoversInPart) {
  std::unique_ptr<Vm> vm = MakeVm(64);
  ASSERT_NE(vm, nullptr);
  {
    // Every frame holds 0xAB once this object is gone: it is larger than the budget.
    AnonObject garbage(*vm);
    const std::string stale(80 * kPage, '\xAB');
    ASSERT_TRUE(garbage.Write(0, stale.data(), stale.size()).ok());
  }
  for (FrameNumber frame = 0; frame < vm->frames().count(); ++frame) {
    ASSERT_EQ(vm->frames().Address(frame)[0], '\xAB') << "frame " << frame;
  }
  const uint64_t zero_fills = vm->ReadStats().zero_fills;

  AnonObject object(*vm);
  // Starts 100 bytes into page 0, covers page 1 wholly, ends 150 bytes into page 2.
  const uint64_t offset = 100;
  const std::string data = Pattern(offset, 2 * kPage + 50);
  WriteThroughWindow(object, offset, data);
  EXPECT_EQ(vm->ReadStats().zero_fills - zero_fills, 3u);

  const std::string pages = ReadThroughWindow(object, 0, 3 * kPage);
  ASSERT_EQ(pages.size(), 3 * kPage);
  EXPECT_EQ(pages.substr(0, offset), std::string(offset, '\0'));
  EXPECT_EQ(pages.substr(offset, data.size()), data);
  const uint64_t end = offset + data.size();
  EXPECT_EQ(pages.substr(end), std::string(3 * kPage - end, '\0'));
}

TEST(UbcWindowTest, AWriteOverWholePagesInSwapDoesNotReadThem) {
  std::unique_ptr<Vm> vm = MakeVm(64);
  ASSERT_NE(vm, nullptr);
  AnonObject object(*vm);
  constexpr uint64_t kPages = 32;
  const std::string first = Pattern(0, kPages * kPage, 1);
  WriteThroughWindow(object, 0, first);
  vm->pager().Reclaim(vm->frames().count());  // every page to swap
  ASSERT_EQ(vm->ReadStats().resident_frames, 0u);

  // Pages 2..9 wholly: none is read back. Then page 12 in part: it is, and the bytes
  // the write leaves alone keep their old contents.
  const uint64_t pageins = vm->ReadStats().pageins;
  const std::string second = Pattern(2 * kPage, 8 * kPage, 2);
  WriteThroughWindow(object, 2 * kPage, second);
  EXPECT_EQ(vm->ReadStats().pageins - pageins, 0u);
  const std::string third = Pattern(12 * kPage + 10, 100, 3);
  WriteThroughWindow(object, 12 * kPage + 10, third);
  EXPECT_EQ(vm->ReadStats().pageins - pageins, 1u);

  // Out to swap again and back: each page holds what was written last.
  vm->pager().Reclaim(vm->frames().count());
  std::string expected = first;
  expected.replace(2 * kPage, second.size(), second);
  expected.replace(12 * kPage + 10, third.size(), third);
  EXPECT_EQ(ReadThroughWindow(object, 0, kPages * kPage), expected);
}

TEST(UbcWindowTest, WindowCoalescesContiguousFramesAndTrimsItsEnds) {
  std::unique_ptr<Vm> vm = MakeVm(64);
  ASSERT_NE(vm, nullptr);
  AnonObject object(*vm);
  WriteThroughWindow(object, 0, Pattern(0, 4 * kPage));
  // A fresh budget hands out frames in order: pages 0-3 sit in 4 neighbouring frames.
  for (PageIndex page = 1; page < 4; ++page) {
    ASSERT_EQ(FrameOf(object, page), FrameOf(object, 0) + page);
  }
  {
    absl::StatusOr<UbcWindow> window = UbcWindow::Map(object, 100, 4 * kPage - 200, Access::kRead);
    ASSERT_TRUE(window.ok()) << window.status();
    ASSERT_EQ(window->iovecs().size(), 1u);
    EXPECT_EQ(window->iovecs()[0].iov_base, vm->frames().Address(FrameOf(object, 0)) + 100);
    EXPECT_EQ(window->iovecs()[0].iov_len, 4 * kPage - 200);
  }
  // Page 2 moves elsewhere: the iovec breaks around it.
  ASSERT_TRUE(Migrate(*vm, FrameOf(object, 2)));
  absl::StatusOr<UbcWindow> window = UbcWindow::Map(object, 100, 4 * kPage - 200, Access::kRead);
  ASSERT_TRUE(window.ok()) << window.status();
  ASSERT_EQ(window->iovecs().size(), 3u);
  EXPECT_EQ(window->iovecs()[0].iov_len, 2 * kPage - 100);
  EXPECT_EQ(window->iovecs()[1].iov_base, vm->frames().Address(FrameOf(object, 2)));
  EXPECT_EQ(window->iovecs()[1].iov_len, kPage);
  EXPECT_EQ(window->iovecs()[2].iov_base, vm->frames().Address(FrameOf(object, 3)));
  EXPECT_EQ(window->iovecs()[2].iov_len, kPage - 100);
  std::string bytes(window->length(), '\0');
  window->CopyOut(bytes.data());
  EXPECT_EQ(bytes, Pattern(0, 4 * kPage).substr(100, 4 * kPage - 200));
}

TEST(UbcWindowTest, ReadWindowMixesFramesAndZeroPage) {
  std::unique_ptr<Vm> vm = MakeVm(64);
  ASSERT_NE(vm, nullptr);
  AnonObject object(*vm);
  WriteThroughWindow(object, 2 * kPage, Pattern(2 * kPage, kPage));
  ASSERT_TRUE(object.Allocate(3 * kPage, kPage).ok());  // zero-fill, never touched
  absl::StatusOr<UbcWindow> window = UbcWindow::Map(object, 0, 4 * kPage, Access::kRead);
  ASSERT_TRUE(window.ok()) << window.status();
  ASSERT_EQ(window->iovecs().size(), 4u);
  EXPECT_EQ(window->iovecs()[1].iov_base, UbcWindow::zero_page());
  EXPECT_EQ(window->iovecs()[2].iov_base, vm->frames().Address(FrameOf(object, 2)));
  EXPECT_EQ(window->iovecs()[3].iov_base, UbcWindow::zero_page());
  EXPECT_EQ(vm->wired_frames(), 1);
  EXPECT_EQ(vm->ReadStats().zero_fills, 1u);  // the written page only
}

TEST(UbcWindowTest, LargestWindowIsAnUnalignedMegabyteAndNoMore) {
  std::unique_ptr<Vm> vm = MakeVm(1024);  // 4 MiB: a wired cap of 768 frames
  ASSERT_NE(vm, nullptr);
  AnonObject object(*vm);
  const std::string data = Pattern(100, 1 << 20);
  {
    absl::StatusOr<UbcWindow> window = UbcWindow::Map(object, 100, 1 << 20, Access::kWrite);
    ASSERT_TRUE(window.ok()) << window.status();
    EXPECT_EQ(window->page_count(), UbcWindow::kMaxPages);
    EXPECT_EQ(IovecBytes(*window), 1u << 20);
    window->CopyIn(data.data());
    window->Release(/*dirty=*/true);
  }
  EXPECT_EQ(ReadThroughWindow(object, 100, 1 << 20), data);
  absl::StatusOr<UbcWindow> too_big = UbcWindow::Map(object, 1, 257 * kPage, Access::kRead);
  EXPECT_EQ(too_big.status().code(), absl::StatusCode::kInvalidArgument);
  absl::StatusOr<UbcWindow> past_end =
      UbcWindow::Map(object, AnonObject::kMaxBytes - 10, 20, Access::kRead);
  EXPECT_EQ(past_end.status().code(), absl::StatusCode::kInvalidArgument);
  absl::StatusOr<UbcWindow> empty = UbcWindow::Map(object, 12345, 0, Access::kWrite);
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->iovecs().empty());
  EXPECT_EQ(vm->wired_frames(), 0);
}

TEST(UbcWindowTest, WindowBeyondTheWiredCapIsRefusedAtOnce) {
  std::unique_ptr<Vm> vm = MakeVm(64);
  ASSERT_NE(vm, nullptr);
  AnonObject object(*vm);
  const uint64_t pages = vm->wired_cap() + 1;
  ASSERT_LE(pages, UbcWindow::kMaxPages);
  absl::StatusOr<UbcWindow> window = UbcWindow::Map(object, 0, pages * kPage, Access::kWrite);
  EXPECT_EQ(window.status().code(), absl::StatusCode::kResourceExhausted) << window.status();
  EXPECT_EQ(object.allocated_pages(), 0u);
  EXPECT_EQ(vm->ReadStats().pin_waits, 0u);  // refused, not waited for
  // AnonObject::Write cuts the same range into windows that fit.
  const std::string data = Pattern(0, pages * kPage);
  ASSERT_TRUE(object.Write(0, data.data(), data.size()).ok());
  EXPECT_EQ(ReadThroughWindow(object, 0, kPage), data.substr(0, kPage));
}

TEST(UbcWindowTest, MovedWindowReleasesItsWiresOnce) {
  std::unique_ptr<Vm> vm = MakeVm(64);
  ASSERT_NE(vm, nullptr);
  AnonObject object(*vm);
  absl::StatusOr<UbcWindow> mapped = UbcWindow::Map(object, 0, 3 * kPage, Access::kWrite);
  ASSERT_TRUE(mapped.ok()) << mapped.status();
  UbcWindow window = *std::move(mapped);
  EXPECT_EQ(vm->wired_frames(), 3);
  {
    UbcWindow other = std::move(window);
    EXPECT_FALSE(window.mapped());
    EXPECT_TRUE(other.mapped());
    EXPECT_EQ(vm->wired_frames(), 3);
    window = std::move(other);
  }
  EXPECT_EQ(vm->wired_frames(), 3);
  window = UbcWindow();
  EXPECT_EQ(vm->wired_frames(), 0);
}

// --- Dirty pages ---

TEST(UbcWindowTest, OnlyPagesReleasedDirtyAreWrittenOnEviction) {
  std::unique_ptr<Vm> vm = MakeVm(64);
  ASSERT_NE(vm, nullptr);
  AnonObject object(*vm);
  const std::string first = Pattern(0, kPage, 1);
  WriteThroughWindow(object, 0, first);
  EvictAll(*vm);
  const StatsSnapshot written = vm->ReadStats();
  EXPECT_EQ(written.pageouts, 1u);
  EXPECT_EQ(written.swap_slots_used, 1u);

  // Read back: clean, its swap copy kept; evicting it again writes nothing.
  EXPECT_EQ(ReadThroughWindow(object, 0, kPage), first);
  EvictAll(*vm);
  const StatsSnapshot clean = vm->ReadStats();
  EXPECT_EQ(clean.pageouts, written.pageouts);
  EXPECT_EQ(clean.clean_evictions, written.clean_evictions + 1);

  // Written through a window released dirty: the eviction writes the new bytes.
  const std::string second = Pattern(0, kPage, 2);
  WriteThroughWindow(object, 0, second);
  EvictAll(*vm);
  EXPECT_EQ(vm->ReadStats().pageouts, clean.pageouts + 1);
  EXPECT_EQ(vm->ReadStats().swap_slots_used, 1u);  // the stale copy's slot went back
  EXPECT_EQ(ReadThroughWindow(object, 0, kPage), second);
}

// --- Errors ---

TEST(UbcWindowTest, CorruptSwapSlotFailsTheWindowWithDataLossAndLeavesNothingWired) {
  std::unique_ptr<Vm> vm = MakeVm(64);
  ASSERT_NE(vm, nullptr);
  AnonObject object(*vm);
  const std::string data = Pattern(0, 4 * kPage);
  WriteThroughWindow(object, 0, data);
  EvictAll(*vm);
  const uint64_t pte = object.table().Find(2)->load();
  ASSERT_EQ(Pte::KindOf(pte), Pte::kSwapped);
  std::string garbage(kPage, '\xA5');
  ASSERT_EQ(
      pwrite(vm->swap()->fd(), garbage.data(), kPage, vm->swap()->SlotOffset(Pte::Payload(pte))),
      static_cast<ssize_t>(kPage));

  absl::StatusOr<UbcWindow> window = UbcWindow::Map(object, 0, 4 * kPage, Access::kRead);
  EXPECT_EQ(window.status().code(), absl::StatusCode::kDataLoss) << window.status();
  EXPECT_EQ(vm->wired_frames(), 0);
  EXPECT_EQ(vm->ReadStats().checksum_failures, 1u);
  // Every other page still reads.
  EXPECT_EQ(ReadThroughWindow(object, 0, 2 * kPage), data.substr(0, 2 * kPage));
  EXPECT_EQ(ReadThroughWindow(object, 3 * kPage, kPage), data.substr(3 * kPage));
  // The bad page stays bad (EIO each time), and stays in the object.
  EXPECT_EQ(UbcWindow::Map(object, 2 * kPage, 1, Access::kRead).status().code(),
            absl::StatusCode::kDataLoss);
  EXPECT_EQ(object.allocated_pages(), 4u);
}

// --- Read-around ---

// Pages written together go to swap in one cluster, in consecutive slots.
bool InConsecutiveSlots(AnonObject& object, PageIndex first, uint64_t pages);

// Writes `pages` pages of a pattern from the start of `object` and evicts them all:
// they are in swap, in consecutive slots. Returns what was written.
std::string WriteAndSwapOut(Vm& vm, AnonObject& object, uint64_t pages) {
  const std::string data = Pattern(0, pages * kPage);
  WriteThroughWindow(object, 0, data);
  EvictAll(vm);
  EXPECT_TRUE(InConsecutiveSlots(object, 0, pages));
  return data;
}

bool InConsecutiveSlots(AnonObject& object, PageIndex first, uint64_t pages) {
  uint64_t slot = 0;
  for (uint64_t i = 0; i < pages; ++i) {
    const uint64_t pte = object.table().Find(first + i)->load();
    if (Pte::KindOf(pte) != Pte::kSwapped) return false;
    if (i > 0 && Pte::Payload(pte) != slot + 1) return false;
    slot = Pte::Payload(pte);
  }
  return true;
}

TEST(UbcWindowTest, ReadAroundReadsAClusterBackWithOneIoPerRun) {
  std::unique_ptr<Vm> vm = MakeVm(128);
  ASSERT_NE(vm, nullptr);
  AnonObject object(*vm);
  const std::string data = WriteAndSwapOut(*vm, object, 48);
  const StatsSnapshot before = vm->ReadStats();
  absl::StatusOr<UbcWindow> window = UbcWindow::Map(object, 100, 48 * kPage - 200, Access::kRead);
  ASSERT_TRUE(window.ok()) << window.status();
  std::string bytes(48 * kPage - 200, '\0');
  window->CopyOut(bytes.data());
  EXPECT_EQ(bytes, data.substr(100, 48 * kPage - 200));
  const StatsSnapshot after = vm->ReadStats();
  EXPECT_EQ(after.pageins - before.pageins, 48u);
  EXPECT_EQ(after.pagein_ios - before.pagein_ios, 2u);  // 32 pages, then 16
  EXPECT_EQ(vm->wired_frames(), 48);
  window->Release(/*dirty=*/false);
  EXPECT_EQ(vm->wired_frames(), 0);
  // Read back clean, each page keeps its slot: evicting them again writes nothing.
  const uint64_t pageouts = vm->ReadStats().pageouts;
  EvictAll(*vm);
  EXPECT_EQ(vm->ReadStats().pageouts, pageouts);
  EXPECT_EQ(ReadThroughWindow(object, 0, 48 * kPage), data);
}

TEST(UbcWindowTest, ReadAroundStopsAtResidentPagesAndHoles) {
  std::unique_ptr<Vm> vm = MakeVm(128);
  ASSERT_NE(vm, nullptr);
  AnonObject object(*vm);
  const std::string data = WriteAndSwapOut(*vm, object, 16);
  // Page 5 resident again, pages 10 and 11 punched: runs 0-4, 6-9, 12-15.
  EXPECT_EQ(ReadThroughWindow(object, 5 * kPage, kPage), data.substr(5 * kPage, kPage));
  ASSERT_TRUE(object.Punch(10 * kPage, 2 * kPage).ok());
  const StatsSnapshot before = vm->ReadStats();
  std::string expected = data;
  std::fill(expected.begin() + 10 * kPage, expected.begin() + 12 * kPage, '\0');
  EXPECT_EQ(ReadThroughWindow(object, 0, 16 * kPage), expected);
  const StatsSnapshot after = vm->ReadStats();
  EXPECT_EQ(after.pageins - before.pageins, 13u);
  EXPECT_EQ(after.pagein_ios - before.pagein_ios, 3u);
  EXPECT_EQ(vm->wired_frames(), 0);
}

TEST(UbcWindowTest, ReadAroundTakesNoMoreFramesThanThereAre) {
  // 32 frames, a quarter of them for wires: a 24-page window can never be wired
  // whole; the read-around must not make it take more than the page-by-page path.
  std::unique_ptr<Vm> vm = MakeVm(32, /*pager_thread=*/true);
  ASSERT_NE(vm, nullptr);
  AnonObject object(*vm);
  const std::string data = Pattern(0, 64 * kPage);
  for (uint64_t page = 0; page < 64; page += 4) {
    WriteThroughWindow(object, page * kPage, data.substr(page * kPage, 4 * kPage));
  }
  EvictAll(*vm);
  for (uint64_t page = 0; page < 64; page += 4) {
    EXPECT_EQ(ReadThroughWindow(object, page * kPage, 4 * kPage),
              data.substr(page * kPage, 4 * kPage));
  }
  EXPECT_EQ(vm->wired_frames(), 0);
  EXPECT_EQ(vm->ReadStats().checksum_failures, 0u);
}

// The slot of page `first`, which must be in swap (see InConsecutiveSlots).
uint64_t FirstSlot(AnonObject& object, PageIndex first) {
  return Pte::Payload(object.table().Find(first)->load());
}

// --- Rewriting in place ---

TEST(UbcWindowTest, RewrittenClusterGoesBackIntoTheSlotsItKept) {
  std::unique_ptr<Vm> vm = MakeVm(128);
  ASSERT_NE(vm, nullptr);
  AnonObject object(*vm);
  WriteAndSwapOut(*vm, object, 48);
  const uint64_t slot = FirstSlot(object, 0);
  const StatsSnapshot before = vm->ReadStats();

  // Overwritten whole (nothing read back), then out again: the same slots, one write.
  const std::string second = Pattern(0, 48 * kPage, 2);
  WriteThroughWindow(object, 0, second);
  EXPECT_EQ(vm->ReadStats().pageins, before.pageins);
  EvictAll(*vm);
  EXPECT_TRUE(InConsecutiveSlots(object, 0, 48));
  EXPECT_EQ(FirstSlot(object, 0), slot);
  const StatsSnapshot after = vm->ReadStats();
  EXPECT_EQ(after.pageouts - before.pageouts, 48u);
  EXPECT_EQ(after.pageout_ios - before.pageout_ios, 1u);
  EXPECT_EQ(after.swap_slots_used, 48u);
  EXPECT_EQ(ReadThroughWindow(object, 0, 48 * kPage), second);

  // Changed in part: the two edge pages are read back, the rest overwritten, and all
  // keep their slots; out again, into them.
  const std::string third = Pattern(kPage + 7, 30 * kPage, 3);
  WriteThroughWindow(object, kPage + 7, third);
  EvictAll(*vm);
  EXPECT_EQ(FirstSlot(object, 0), slot);
  EXPECT_EQ(vm->ReadStats().swap_slots_used, 48u);
  std::string expected = second;
  expected.replace(kPage + 7, third.size(), third);
  EXPECT_EQ(ReadThroughWindow(object, 0, 48 * kPage), expected);
}

TEST(UbcWindowTest, ClusterWithPagesThatKeptNoSlotGoesToANewRun) {
  std::unique_ptr<Vm> vm = MakeVm(128);
  ASSERT_NE(vm, nullptr);
  AnonObject object(*vm);
  WriteAndSwapOut(*vm, object, 8);
  // Pages 0-7 kept slots, 8-15 are new: the cluster of 16 takes a new run, and the
  // eight old slots go back.
  const std::string data = Pattern(0, 16 * kPage, 2);
  WriteThroughWindow(object, 0, data);
  EvictAll(*vm);
  EXPECT_TRUE(InConsecutiveSlots(object, 0, 16));
  EXPECT_EQ(vm->ReadStats().swap_slots_used, 16u);
  EXPECT_EQ(ReadThroughWindow(object, 0, 16 * kPage), data);
}

TEST(UbcWindowTest, FailedRewriteInPlaceKeepsThePagesAndTheirSlots) {
  std::unique_ptr<Vm> vm = MakeVm(128);
  ASSERT_NE(vm, nullptr);
  AnonObject object(*vm);
  WriteAndSwapOut(*vm, object, 16);
  const uint64_t slot = FirstSlot(object, 0);
  const std::string second = Pattern(0, 16 * kPage, 2);
  WriteThroughWindow(object, 0, second);

  // Writes to the swap file fail (its descriptor made read-only for a while): the
  // pages stay resident and dirty, and nothing is lost.
  const int swap_fd = vm->swap()->fd();
  const int saved = dup(swap_fd);
  ASSERT_GE(saved, 0);
  const int read_only = open("/dev/zero", O_RDONLY | O_CLOEXEC);
  ASSERT_GE(read_only, 0);
  ASSERT_EQ(dup2(read_only, swap_fd), swap_fd);
  const uint64_t pageouts = vm->ReadStats().pageouts;
  ::testing::internal::CaptureStderr();
  EXPECT_EQ(vm->pager().Reclaim(vm->frames().count()), 0u);
  const std::string log = ::testing::internal::GetCapturedStderr();
  ASSERT_EQ(dup2(saved, swap_fd), swap_fd);
  // One failed write ends the pass's writing: one message, not one per retry.
  const std::vector<absl::string_view> parts = absl::StrSplit(log, "pageout of");
  EXPECT_EQ(parts.size(), 2u) << log;
  close(saved);
  close(read_only);
  EXPECT_EQ(vm->ReadStats().pageouts, pageouts);
  EXPECT_EQ(vm->ReadStats().resident_frames, 16u);
  EXPECT_EQ(vm->ReadStats().swap_slots_used, 16u);

  // Writable again: the pages go into the slots they kept.
  EvictAll(*vm);
  EXPECT_EQ(vm->ReadStats().resident_frames, 0u);
  EXPECT_EQ(FirstSlot(object, 0), slot);
  EXPECT_EQ(vm->ReadStats().swap_slots_used, 16u);
  EXPECT_EQ(ReadThroughWindow(object, 0, 16 * kPage), second);
}

TEST(UbcWindowTest, FailedWriteWindowFreesTheHolesItAllocated) {
  std::unique_ptr<Vm> vm = MakeVm(64);
  ASSERT_NE(vm, nullptr);
  AnonObject object(*vm);
  WriteThroughWindow(object, 0, Pattern(0, 2 * kPage));
  EvictAll(*vm);
  // Page 0, which the window below covers only in part, so it must be read back
  // (a page it covered wholly would not be: kOverwrite).
  const uint64_t pte = object.table().Find(0)->load();
  ASSERT_EQ(Pte::KindOf(pte), Pte::kSwapped);
  std::string garbage(kPage, '\x5A');
  ASSERT_EQ(
      pwrite(vm->swap()->fd(), garbage.data(), kPage, vm->swap()->SlotOffset(Pte::Payload(pte))),
      static_cast<ssize_t>(kPage));
  const uint64_t charged = vm->accounting().charged();

  // Pages 2-4 are holes, allocated first; page 0 then fails to come in.
  absl::StatusOr<UbcWindow> window = UbcWindow::Map(object, 100, 4 * kPage, Access::kWrite);
  EXPECT_EQ(window.status().code(), absl::StatusCode::kDataLoss) << window.status();
  EXPECT_EQ(object.allocated_pages(), 2u);
  EXPECT_EQ(vm->accounting().charged(), charged);
  EXPECT_EQ(object.NextHole(0, 8 * kPage), 2 * kPage);
  EXPECT_EQ(vm->wired_frames(), 0);
}

TEST(UbcWindowTest, WriteWindowBeyondTheSpaceIsNoSpaceWithNothingAllocated) {
  VmOptions options;
  options.ram_bytes = 64 * kPage;
  options.noswap = true;
  options.start_pager_thread = false;
  absl::StatusOr<std::unique_ptr<Vm>> vm = Vm::Create(options);
  ASSERT_TRUE(vm.ok()) << vm.status();
  const uint64_t limit = (*vm)->accounting().capacity() - (*vm)->accounting().reserve();
  AnonObject object(**vm);
  ASSERT_TRUE(object.Allocate(0, (limit - 4) * kPage).ok());
  // 8 pages, 6 of them holes: 2 more than fit.
  absl::StatusOr<UbcWindow> window =
      UbcWindow::Map(object, (limit - 6) * kPage, 8 * kPage, Access::kWrite);
  EXPECT_EQ(window.status().code(), absl::StatusCode::kResourceExhausted) << window.status();
  EXPECT_EQ(object.allocated_pages(), limit - 4);
  EXPECT_EQ((*vm)->wired_frames(), 0);
}

// --- The window cache ---

TEST(UbcWindowTest, CacheHitReturnsTheSameFramesAndData) {
  std::unique_ptr<Vm> vm = MakeVm(64);
  ASSERT_NE(vm, nullptr);
  WindowCache cache(WindowCache::kDefaultLines, /*min_pages=*/1);
  AnonObject object(*vm, &cache);
  const std::string data = Pattern(0, 6 * kPage);
  WriteThroughWindow(object, 0, data);  // a miss, remembered
  EXPECT_EQ(cache.misses(), 1u);
  absl::StatusOr<UbcWindow> window = UbcWindow::Map(object, 0, 6 * kPage, Access::kRead);
  ASSERT_TRUE(window.ok()) << window.status();
  EXPECT_EQ(cache.hits(), 1u);
  EXPECT_EQ(window->iovecs()[0].iov_base, vm->frames().Address(FrameOf(object, 0)));
  std::string bytes(6 * kPage, '\0');
  window->CopyOut(bytes.data());
  EXPECT_EQ(bytes, data);
  EXPECT_EQ(vm->wired_frames(), 6);
  // While the window is out, its line is empty: a second mapper misses, and is right.
  EXPECT_EQ(ReadThroughWindow(object, 0, 6 * kPage), data);
  EXPECT_EQ(cache.misses(), 2u);
  window->Release(false);
  EXPECT_EQ(vm->wired_frames(), 0);
}

TEST(UbcWindowTest, CacheHitRevalidatesAfterEviction) {
  std::unique_ptr<Vm> vm = MakeVm(64);
  ASSERT_NE(vm, nullptr);
  WindowCache cache(WindowCache::kDefaultLines, /*min_pages=*/1);
  AnonObject object(*vm, &cache);
  const std::string data = Pattern(0, 4 * kPage);
  WriteThroughWindow(object, 0, data);
  EvictAll(*vm);
  // Other data takes the frames the remembered pages were in.
  AnonObject other(*vm);
  ASSERT_TRUE(other.Write(0, Pattern(0, 8 * kPage, 9).data(), 8 * kPage).ok());
  const uint64_t hits = cache.hits();
  EXPECT_EQ(ReadThroughWindow(object, 0, 4 * kPage), data);
  EXPECT_EQ(cache.hits(), hits);  // revalidation failed: mapped the full way
  EXPECT_EQ(ReadThroughWindow(object, 0, 4 * kPage), data);
  EXPECT_EQ(cache.hits(), hits + 1);
}

TEST(UbcWindowTest, CacheHitRevalidatesAfterMigration) {
  std::unique_ptr<Vm> vm = MakeVm(64);
  ASSERT_NE(vm, nullptr);
  WindowCache cache(WindowCache::kDefaultLines, /*min_pages=*/1);
  AnonObject object(*vm, &cache);
  const std::string data = Pattern(0, 4 * kPage);
  WriteThroughWindow(object, 0, data);
  const FrameNumber old_frame = FrameOf(object, 1);
  ASSERT_TRUE(Migrate(*vm, old_frame));
  // The vacated frame is reused by another object, with other bytes.
  AnonObject other(*vm);
  ASSERT_TRUE(other.Write(0, Pattern(0, kPage, 9).data(), kPage).ok());
  ASSERT_EQ(FrameOf(other, 0), old_frame);

  const uint64_t misses = cache.misses();
  absl::StatusOr<UbcWindow> window = UbcWindow::Map(object, 0, 4 * kPage, Access::kRead);
  ASSERT_TRUE(window.ok()) << window.status();
  EXPECT_EQ(cache.misses(), misses + 1);
  std::string bytes(4 * kPage, '\0');
  window->CopyOut(bytes.data());
  EXPECT_EQ(bytes, data);
  EXPECT_EQ(window->iovecs().size(), 3u);  // page 1 is no longer beside its neighbours
}

TEST(UbcWindowTest, PunchAndTruncateMakeCachedWindowsStale) {
  std::unique_ptr<Vm> vm = MakeVm(64);
  ASSERT_NE(vm, nullptr);
  WindowCache cache(WindowCache::kDefaultLines, /*min_pages=*/1);
  AnonObject object(*vm, &cache);
  WriteThroughWindow(object, 0, Pattern(0, 4 * kPage));
  const uint64_t generation = object.generation();
  ASSERT_TRUE(object.Punch(kPage, kPage).ok());
  EXPECT_NE(object.generation(), generation);
  // Page 1 is written again, perhaps into the very frame it had: the line is stale by
  // key anyway, and the window sees the new bytes.
  WriteThroughWindow(object, kPage, Pattern(kPage, kPage, 3));
  const uint64_t hits = cache.hits();
  std::string expected = Pattern(0, 4 * kPage);
  expected.replace(kPage, kPage, Pattern(kPage, kPage, 3));
  EXPECT_EQ(ReadThroughWindow(object, 0, 4 * kPage), expected);
  EXPECT_EQ(cache.hits(), hits);

  ASSERT_TRUE(object.Truncate(kPage).ok());
  const std::string zeros(3 * kPage, '\0');
  EXPECT_EQ(ReadThroughWindow(object, kPage, 3 * kPage), zeros);
  EXPECT_EQ(cache.hits(), hits);
}

TEST(UbcWindowTest, CacheLinesOfADestroyedObjectNeverMatchItsSuccessor) {
  std::unique_ptr<Vm> vm = MakeVm(64);
  ASSERT_NE(vm, nullptr);
  WindowCache cache(WindowCache::kDefaultLines, /*min_pages=*/1);
  std::optional<AnonObject> object;
  object.emplace(*vm, &cache);
  WriteThroughWindow(*object, 0, Pattern(0, 2 * kPage));
  EXPECT_EQ(ReadThroughWindow(*object, 0, 2 * kPage), Pattern(0, 2 * kPage));
  EXPECT_EQ(cache.hits(), 1u);
  object.reset();
  // Same address, same page table storage: a new object must not see the old lines.
  object.emplace(*vm, &cache);
  EXPECT_EQ(ReadThroughWindow(*object, 0, 2 * kPage), std::string(2 * kPage, '\0'));
  WriteThroughWindow(*object, 0, Pattern(0, 2 * kPage, 5));
  EXPECT_EQ(cache.hits(), 1u);
  EXPECT_EQ(ReadThroughWindow(*object, 0, 2 * kPage), Pattern(0, 2 * kPage, 5));
}

TEST(UbcWindowTest, WindowsWithHolesAreNotRemembered) {
  std::unique_ptr<Vm> vm = MakeVm(64);
  ASSERT_NE(vm, nullptr);
  WindowCache cache(WindowCache::kDefaultLines, /*min_pages=*/1);
  AnonObject object(*vm, &cache);
  EXPECT_EQ(ReadThroughWindow(object, 0, 2 * kPage), std::string(2 * kPage, '\0'));
  // Writing the hole must show: a remembered "hole" would hide it.
  WriteThroughWindow(object, 0, Pattern(0, 2 * kPage));
  EXPECT_EQ(ReadThroughWindow(object, 0, 2 * kPage), Pattern(0, 2 * kPage));
}

TEST(UbcWindowTest, LeastRecentlyUsedLinesAreReplaced) {
  std::unique_ptr<Vm> vm = MakeVm(64);
  ASSERT_NE(vm, nullptr);
  WindowCache cache(/*lines=*/2, /*min_pages=*/1);
  AnonObject object(*vm, &cache);
  ASSERT_TRUE(object.Write(0, Pattern(0, 3 * kPage).data(), 3 * kPage).ok());
  auto map_page = [&](PageIndex page) { ReadThroughWindow(object, page * kPage, kPage); };
  map_page(0);  // miss; lines {0}
  map_page(1);  // miss; lines {0, 1}
  map_page(0);  // hit; 1 is now the least recently used
  map_page(2);  // miss; replaces 1
  EXPECT_EQ(cache.hits(), 1u);
  map_page(0);  // hit
  map_page(1);  // miss
  EXPECT_EQ(cache.hits(), 2u);
}

TEST(UbcWindowTest, SmallWindowsBypassTheDefaultCache) {
  std::unique_ptr<Vm> vm = MakeVm(512);  // a wired cap above 64 pages
  ASSERT_NE(vm, nullptr);
  WindowCache cache;
  AnonObject object(*vm, &cache);
  const uint64_t large = WindowCache::kDefaultMinPages * kPage;
  const std::string data = Pattern(0, large);
  ASSERT_TRUE(object.Write(0, data.data(), data.size()).ok());  // one window: remembered
  EXPECT_EQ(cache.misses(), 1u);
  EXPECT_EQ(ReadThroughWindow(object, 0, kPage), data.substr(0, kPage));
  EXPECT_EQ(ReadThroughWindow(object, 0, kPage), data.substr(0, kPage));
  EXPECT_EQ(cache.misses(), 1u);
  EXPECT_EQ(cache.hits(), 0u);
  EXPECT_EQ(ReadThroughWindow(object, 0, large), data);
  EXPECT_EQ(cache.hits(), 1u);
}

// --- Concurrency ---

// Writers and readers on distinct pages of one object, with a RAM budget smaller
// than the data and the pager thread evicting under them.
TEST(UbcWindowTest, ConcurrentWindowsOnDistinctPagesKeepTheirData) {
  std::unique_ptr<Vm> vm = MakeVm(64, /*pager_thread=*/true);
  ASSERT_NE(vm, nullptr);
  WindowCache cache(WindowCache::kDefaultLines, /*min_pages=*/1);
  AnonObject object(*vm, &cache);
  constexpr int kThreads = 4;
  constexpr uint64_t kPagesPerThread = 24;  // 96 pages in all, over 64 frames
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      const uint64_t base = t * kPagesPerThread * kPage;
      for (int round = 0; round < 100; ++round) {
        for (uint64_t page = 0; page < kPagesPerThread; page += 3) {
          const uint64_t offset = base + page * kPage;
          const std::string data = Pattern(offset, 3 * kPage, round);
          absl::StatusOr<UbcWindow> window =
              UbcWindow::Map(object, offset, 3 * kPage, Access::kWrite);
          if (!window.ok()) {
            ++failures;
            continue;
          }
          window->CopyIn(data.data());
          window->Release(true);
          absl::StatusOr<UbcWindow> back = UbcWindow::Map(object, offset, 3 * kPage, Access::kRead);
          if (!back.ok()) {
            ++failures;
            continue;
          }
          std::string bytes(3 * kPage, '\0');
          back->CopyOut(bytes.data());
          if (bytes != data) ++failures;
        }
        vm->pager().Reclaim(8);
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(vm->wired_frames(), 0);
  EXPECT_EQ(object.allocated_pages(), kThreads * kPagesPerThread);
  EXPECT_GT(vm->ReadStats().pageouts, 0u);
}

}  // namespace
}  // namespace ptmpfs::vm
