// data_test: open, create, release, read, write, fallocate, lseek, copy_file_range
// and fsync of the tmpfs core, driven directly (no FUSE), against Linux tmpfs.
#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "fs/errno_status.h"
#include "fs/tmpfs.h"
#include "gtest/gtest.h"
#include "test/fs/test_tmpfs.h"

namespace ptmpfs::fs {
namespace {

constexpr Caller kRoot{};
constexpr Caller kUser{.uid = 1000, .gid = 1000};
constexpr uint64_t kPage = 4096;
constexpr uint64_t kMaxFile = static_cast<uint64_t>(LLONG_MAX);

std::unique_ptr<Tmpfs> MakeFs(uint64_t size_bytes = 0) {
  return MakeTestTmpfs(uint64_t{256} << 20, size_bytes);
}

class DataTest : public ::testing::Test {
 protected:
  // A regular file in the root, made by Mknod (one lookup counted, not open).
  Ino MakeFile(absl::string_view name, mode_t mode = 0644, const Caller& caller = kRoot) {
    absl::StatusOr<Attr> attr = fs_->Mknod(caller, kRootIno, name, S_IFREG | mode, 0);
    EXPECT_TRUE(attr.ok()) << attr.status();
    return attr.ok() ? attr->ino : 0;
  }
  absl::StatusOr<uint64_t> WriteAt(Ino ino, uint64_t offset, absl::string_view bytes, int flags = 0,
                                   const Caller& caller = kRoot) {
    iovec buffer{const_cast<char*>(bytes.data()), bytes.size()};
    return fs_->Write(caller, ino, offset, absl::MakeConstSpan(&buffer, 1), flags);
  }
  // Reads through Read's window, as the FUSE reply would send it.
  std::string ReadAt(Ino ino, uint64_t offset, uint64_t size) {
    absl::StatusOr<ReadWindow> window = fs_->Read(ino, offset, size);
    EXPECT_TRUE(window.ok()) << window.status();
    if (!window.ok()) return "<error>";
    std::string bytes(window->length(), '\0');
    window->CopyOut(bytes.data());
    return bytes;
  }
  Attr AttrOf(Ino ino) {
    absl::StatusOr<Attr> attr = fs_->GetAttr(ino);
    EXPECT_TRUE(attr.ok()) << attr.status();
    return attr.ok() ? *attr : Attr{};
  }
  void SetTimes(Ino ino, int64_t atime_sec, int64_t mtime_sec) {
    SetAttrRequest request;
    request.atime = timespec{atime_sec, 0};
    request.mtime = timespec{mtime_sec, 0};
    ASSERT_TRUE(fs_->SetAttr(kRoot, ino, request).ok());
  }

  std::unique_ptr<Tmpfs> fs_ = MakeFs();
};

SetAttrRequest SizeRequest(uint64_t size, bool from_open_file = false) {
  SetAttrRequest request;
  request.size = size;
  request.from_open_file = from_open_file;
  return request;
}

int64_t Ns(const timespec& time) { return time.tv_sec * 1000000000LL + time.tv_nsec; }

TEST_F(DataTest, WriteThenReadReturnsTheBytes) {
  Ino ino = MakeFile("f");
  ASSERT_EQ(*WriteAt(ino, 0, "hello, world"), 12u);
  EXPECT_EQ(ReadAt(ino, 0, 100), "hello, world");
  EXPECT_EQ(ReadAt(ino, 7, 5), "world");
  EXPECT_EQ(AttrOf(ino).size, 12u);
  EXPECT_EQ(AttrOf(ino).blocks, 8u);
}

TEST_F(DataTest, ReadIsClippedToTheSizeAndEmptyAtEof) {
  Ino ino = MakeFile("f");
  ASSERT_TRUE(WriteAt(ino, 0, "abc").ok());
  EXPECT_EQ(ReadAt(ino, 1, 1000), "bc");
  EXPECT_EQ(ReadAt(ino, 3, 10), "");
  EXPECT_EQ(ReadAt(ino, 1000, 10), "");
  EXPECT_EQ(ReadAt(MakeFile("empty"), 0, 10), "");
}

TEST_F(DataTest, WriteAcrossPagesAndUnalignedOffsets) {
  Ino ino = MakeFile("f");
  std::string bytes(3 * kPage + 123, '\0');
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<char>(i * 7 + 1);
  ASSERT_EQ(*WriteAt(ino, 1000, bytes), bytes.size());
  EXPECT_EQ(ReadAt(ino, 1000, bytes.size()), bytes);
  EXPECT_EQ(ReadAt(ino, 0, 1000), std::string(1000, '\0'));
}

TEST_F(DataTest, WriteGathersSeveralBuffers) {
  Ino ino = MakeFile("f");
  std::string first = "one-", second(5000, 'x'), third = "-three";
  iovec buffers[] = {{first.data(), first.size()},
                     {nullptr, 0},
                     {second.data(), second.size()},
                     {third.data(), third.size()}};
  ASSERT_EQ(*fs_->Write(kRoot, ino, 10, buffers, 0), 4u + 5000 + 6);
  EXPECT_EQ(ReadAt(ino, 10, 6000), first + second + third);
}

TEST_F(DataTest, AppendWritesAtTheEndWhateverTheOffset) {
  Ino ino = MakeFile("f");
  ASSERT_TRUE(WriteAt(ino, 0, "abc").ok());
  ASSERT_TRUE(WriteAt(ino, 0, "def", O_APPEND).ok());
  ASSERT_TRUE(WriteAt(ino, 100, "g", O_APPEND | O_WRONLY).ok());
  EXPECT_EQ(ReadAt(ino, 0, 100), "abcdefg");
}

TEST_F(DataTest, ZeroLengthWriteChangesNothing) {
  Ino ino = MakeFile("f");
  SetTimes(ino, 100, 100);
  ASSERT_EQ(*WriteAt(ino, 50, ""), 0u);
  EXPECT_EQ(AttrOf(ino).size, 0u);
  EXPECT_EQ(AttrOf(ino).mtime.tv_sec, 100);
}

TEST_F(DataTest, WriteSetsMtimeAndCtime) {
  Ino ino = MakeFile("f");
  SetTimes(ino, 100, 100);
  const int64_t before = Ns(AttrOf(ino).ctime);
  ASSERT_TRUE(WriteAt(ino, 0, "x").ok());
  Attr attr = AttrOf(ino);
  EXPECT_GT(attr.mtime.tv_sec, 100);
  EXPECT_GE(Ns(attr.ctime), before);
  EXPECT_EQ(Ns(attr.mtime), Ns(attr.ctime));
}

TEST_F(DataTest, WritePastTheLargestFileIsEfbigAndUpToItIsShort) {
  Ino ino = MakeFile("f");
  EXPECT_EQ(ToErrno(WriteAt(ino, kMaxFile, "x").status()), EFBIG);
  absl::StatusOr<uint64_t> written = WriteAt(ino, kMaxFile - 2, "abcd");
  ASSERT_TRUE(written.ok()) << written.status();
  EXPECT_EQ(*written, 2u);
  EXPECT_EQ(AttrOf(ino).size, kMaxFile);
  EXPECT_EQ(ReadAt(ino, kMaxFile - 2, 10), "ab");
}

TEST_F(DataTest, DataOperationsOnADirectoryAreEisdir) {
  EXPECT_EQ(ToErrno(WriteAt(kRootIno, 0, "x").status()), EISDIR);
  EXPECT_EQ(ToErrno(fs_->Read(kRootIno, 0, 10).status()), EISDIR);
  EXPECT_EQ(ToErrno(fs_->Open(kRoot, kRootIno, O_WRONLY).status()), EISDIR);
  EXPECT_EQ(ToErrno(fs_->Fallocate(kRootIno, 0, 0, 10)), EISDIR);
  EXPECT_TRUE(fs_->Open(kRoot, kRootIno, O_RDONLY).ok());
  fs_->Release(kRootIno);
}

TEST_F(DataTest, SuidAndSgidAreClearedByANonRootWriteButNotByRoot) {
  Ino ino = MakeFile("f", 06775);
  ASSERT_TRUE(WriteAt(ino, 0, "root", 0, kRoot).ok());
  EXPECT_EQ(AttrOf(ino).mode & 07777, 06775u);
  ASSERT_TRUE(WriteAt(ino, 0, "user", 0, kUser).ok());
  EXPECT_EQ(AttrOf(ino).mode & 07777, 0775u);

  // Without group execute, S_ISGID stays for a writer in the file's group, and goes
  // for one outside it (setattr_should_drop_sgid; xfstests generic/683).
  Ino member = MakeFile("g", 06664, kUser);
  ASSERT_TRUE(WriteAt(member, 0, "user", 0, kUser).ok());
  EXPECT_EQ(AttrOf(member).mode & 07777, 02664u);
  Ino outsider = MakeFile("h", 06664);
  ASSERT_TRUE(WriteAt(outsider, 0, "user", 0, kUser).ok());
  EXPECT_EQ(AttrOf(outsider).mode & 07777, 0664u);
}

TEST_F(DataTest, SparseFileReadsZerosAndCountsOnlyWrittenBlocks) {
  Ino ino = MakeFile("f");
  ASSERT_TRUE(WriteAt(ino, 0, "head").ok());
  ASSERT_TRUE(WriteAt(ino, 1 << 30, "tail").ok());
  Attr attr = AttrOf(ino);
  EXPECT_EQ(attr.size, (1u << 30) + 4);
  EXPECT_EQ(attr.blocks, 16u);  // two pages of 8 sectors
  EXPECT_EQ(ReadAt(ino, 4, 8192), std::string(8192, '\0'));
  EXPECT_EQ(ReadAt(ino, (1 << 30) - 2, 6), std::string(2, '\0') + "tail");
}

TEST_F(DataTest, SeekDataAndSeekHoleFollowTheAllocatedPages) {
  Ino ino = MakeFile("f");
  ASSERT_TRUE(WriteAt(ino, 0, std::string(kPage, 'a')).ok());
  ASSERT_TRUE(WriteAt(ino, 4 * kPage, std::string(2 * kPage, 'b')).ok());
  ASSERT_TRUE(fs_->SetAttr(kRoot, ino, SizeRequest(10 * kPage)).ok());

  EXPECT_EQ(*fs_->Lseek(ino, 0, SEEK_DATA), 0u);
  EXPECT_EQ(*fs_->Lseek(ino, 100, SEEK_HOLE), kPage);
  EXPECT_EQ(*fs_->Lseek(ino, kPage, SEEK_DATA), 4 * kPage);
  EXPECT_EQ(*fs_->Lseek(ino, 5 * kPage + 1, SEEK_DATA), 5 * kPage + 1);
  EXPECT_EQ(*fs_->Lseek(ino, 4 * kPage, SEEK_HOLE), 6 * kPage);
  // No data after 6 pages: ENXIO; the hole there runs to EOF.
  EXPECT_EQ(ToErrno(fs_->Lseek(ino, 6 * kPage, SEEK_DATA).status()), ENXIO);
  EXPECT_EQ(*fs_->Lseek(ino, 7 * kPage, SEEK_HOLE), 7 * kPage);
  EXPECT_EQ(ToErrno(fs_->Lseek(ino, 10 * kPage, SEEK_HOLE).status()), ENXIO);
  EXPECT_EQ(ToErrno(fs_->Lseek(ino, 10 * kPage, SEEK_DATA).status()), ENXIO);
  EXPECT_EQ(ToErrno(fs_->Lseek(ino, 0, SEEK_END).status()), EINVAL);
  // A file of data only: the hole is EOF.
  Ino full = MakeFile("full");
  ASSERT_TRUE(WriteAt(full, 0, "xyz").ok());
  EXPECT_EQ(*fs_->Lseek(full, 1, SEEK_HOLE), 3u);
  EXPECT_EQ(ToErrno(fs_->Lseek(MakeFile("empty"), 0, SEEK_DATA).status()), ENXIO);
}

TEST_F(DataTest, PunchHoleFreesBlocksReadsZerosAndKeepsTheSize) {
  Ino ino = MakeFile("f");
  ASSERT_TRUE(WriteAt(ino, 0, std::string(8 * kPage, 'x')).ok());
  ASSERT_EQ(AttrOf(ino).blocks, 64u);
  const uint64_t charged = fs_->vm().accounting().charged();
  ASSERT_TRUE(
      fs_->Fallocate(ino, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, kPage + 100, 3 * kPage).ok());
  Attr attr = AttrOf(ino);
  EXPECT_EQ(attr.size, 8 * kPage);
  EXPECT_EQ(attr.blocks, 64u - 2 * 8);  // pages 2 and 3 freed; 1 and 4 zeroed in part
  EXPECT_EQ(fs_->vm().accounting().charged(), charged - 2);
  EXPECT_EQ(ReadAt(ino, kPage, 100), std::string(100, 'x'));
  EXPECT_EQ(ReadAt(ino, kPage + 100, 3 * kPage), std::string(3 * kPage, '\0'));
  EXPECT_EQ(ReadAt(ino, 4 * kPage + 100, 10), std::string(10, 'x'));
  EXPECT_EQ(*fs_->Lseek(ino, kPage, SEEK_HOLE), 2 * kPage);
}

TEST_F(DataTest, FallocateExtendsTheSizeUnlessKeepSize) {
  Ino ino = MakeFile("f");
  ASSERT_TRUE(fs_->Fallocate(ino, 0, 0, 3 * kPage).ok());
  EXPECT_EQ(AttrOf(ino).size, 3 * kPage);
  EXPECT_EQ(AttrOf(ino).blocks, 24u);
  EXPECT_EQ(ReadAt(ino, 0, 3 * kPage), std::string(3 * kPage, '\0'));
  ASSERT_TRUE(fs_->Fallocate(ino, FALLOC_FL_KEEP_SIZE, 3 * kPage, 2 * kPage).ok());
  EXPECT_EQ(AttrOf(ino).size, 3 * kPage);
  EXPECT_EQ(AttrOf(ino).blocks, 40u);
  // Inside the size, nothing grows.
  ASSERT_TRUE(fs_->Fallocate(ino, 0, 0, kPage).ok());
  EXPECT_EQ(AttrOf(ino).size, 3 * kPage);
  // Truncating frees the pages allocated past EOF too.
  ASSERT_TRUE(fs_->SetAttr(kRoot, ino, SizeRequest(kPage)).ok());
  EXPECT_EQ(AttrOf(ino).blocks, 8u);
}

TEST_F(DataTest, ZeroRangeZeroesTheRangeAndAllocatesIt) {
  Ino ino = MakeFile("f");
  ASSERT_TRUE(WriteAt(ino, 0, std::string(4 * kPage, 'x')).ok());
  ASSERT_TRUE(fs_->Fallocate(ino, FALLOC_FL_ZERO_RANGE, 100, 2 * kPage).ok());
  EXPECT_EQ(ReadAt(ino, 0, 100), std::string(100, 'x'));
  EXPECT_EQ(ReadAt(ino, 100, 2 * kPage), std::string(2 * kPage, '\0'));
  EXPECT_EQ(ReadAt(ino, 2 * kPage + 100, 10), std::string(10, 'x'));
  EXPECT_EQ(AttrOf(ino).blocks, 32u);
  ASSERT_TRUE(fs_->Fallocate(ino, FALLOC_FL_ZERO_RANGE, 3 * kPage, 3 * kPage).ok());
  EXPECT_EQ(AttrOf(ino).size, 6 * kPage);
  ASSERT_TRUE(
      fs_->Fallocate(ino, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, 6 * kPage, kPage).ok());
  EXPECT_EQ(AttrOf(ino).size, 6 * kPage);
  EXPECT_EQ(AttrOf(ino).blocks, 56u);
}

TEST_F(DataTest, FallocateRejectsWhatTmpfsRejects) {
  Ino ino = MakeFile("f");
  EXPECT_EQ(ToErrno(fs_->Fallocate(ino, FALLOC_FL_COLLAPSE_RANGE, 0, kPage)), EOPNOTSUPP);
  EXPECT_EQ(ToErrno(fs_->Fallocate(ino, FALLOC_FL_INSERT_RANGE, 0, kPage)), EOPNOTSUPP);
  EXPECT_EQ(ToErrno(fs_->Fallocate(ino, FALLOC_FL_PUNCH_HOLE, 0, kPage)), EOPNOTSUPP);
  EXPECT_EQ(ToErrno(fs_->Fallocate(ino, 0, 0, 0)), EINVAL);
  EXPECT_EQ(ToErrno(fs_->Fallocate(ino, 0, kMaxFile - 10, 100)), EFBIG);
  absl::StatusOr<Attr> fifo = fs_->Mknod(kRoot, kRootIno, "fifo", S_IFIFO | 0644, 0);
  ASSERT_TRUE(fifo.ok());
  EXPECT_EQ(ToErrno(fs_->Fallocate(fifo->ino, 0, 0, 10)), ESPIPE);
  absl::StatusOr<Attr> chr = fs_->Mknod(kRoot, kRootIno, "chr", S_IFCHR | 0644, 0x0103);
  ASSERT_TRUE(chr.ok());
  EXPECT_EQ(ToErrno(fs_->Fallocate(chr->ino, 0, 0, 10)), ENODEV);
  EXPECT_EQ(AttrOf(ino).blocks, 0u);
}

TEST_F(DataTest, OpenWithTruncEmptiesTheFileAndSetsTimes) {
  Ino ino = MakeFile("f", 06755);
  ASSERT_TRUE(WriteAt(ino, 0, std::string(3 * kPage, 'x')).ok());
  SetTimes(ino, 100, 100);
  absl::StatusOr<Attr> opened = fs_->Open(kUser, ino, O_WRONLY | O_TRUNC);
  ASSERT_TRUE(opened.ok()) << opened.status();
  EXPECT_EQ(opened->size, 0u);
  EXPECT_EQ(opened->blocks, 0u);
  EXPECT_GT(opened->mtime.tv_sec, 100);
  EXPECT_EQ(opened->mode & 07777, 0755u);  // a non-root truncater loses suid/sgid
  EXPECT_EQ(ReadAt(ino, 0, 10), "");
  fs_->Release(ino);
  // Already empty: the times still change (do_truncate's ATTR_MTIME | ATTR_CTIME).
  SetTimes(ino, 100, 100);
  opened = fs_->Open(kRoot, ino, O_RDWR | O_TRUNC);
  ASSERT_TRUE(opened.ok());
  EXPECT_GT(opened->mtime.tv_sec, 100);
  fs_->Release(ino);
}

TEST_F(DataTest, OpenWithoutTruncKeepsTheData) {
  Ino ino = MakeFile("f");
  ASSERT_TRUE(WriteAt(ino, 0, "keep").ok());
  ASSERT_TRUE(fs_->Open(kRoot, ino, O_RDWR).ok());
  EXPECT_EQ(ReadAt(ino, 0, 10), "keep");
  fs_->Release(ino);
}

TEST_F(DataTest, CreateMakesAnOpenFileAndHonoursExcl) {
  absl::StatusOr<Attr> made = fs_->Create(kUser, kRootIno, "f", 0640, O_RDWR | O_CREAT);
  ASSERT_TRUE(made.ok()) << made.status();
  EXPECT_EQ(made->mode, S_IFREG | 0640u);
  EXPECT_EQ(made->uid, 1000u);
  ASSERT_TRUE(WriteAt(made->ino, 0, "data").ok());

  absl::StatusOr<Attr> again = fs_->Create(kUser, kRootIno, "f", 0640, O_RDWR | O_CREAT | O_EXCL);
  EXPECT_EQ(ToErrno(again.status()), EEXIST);
  // Without O_EXCL, the file that is there is opened (and O_TRUNC applies to it).
  again = fs_->Create(kUser, kRootIno, "f", 0600, O_RDWR | O_CREAT);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->ino, made->ino);
  EXPECT_EQ(again->size, 4u);
  again = fs_->Create(kUser, kRootIno, "f", 0600, O_RDWR | O_CREAT | O_TRUNC);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->size, 0u);
  // A directory of that name is not opened for writing.
  ASSERT_TRUE(fs_->Mkdir(kRoot, kRootIno, "d", 0755).ok());
  EXPECT_EQ(ToErrno(fs_->Create(kRoot, kRootIno, "d", 0644, O_RDWR | O_CREAT).status()), EISDIR);
  for (int i = 0; i < 3; ++i) fs_->Release(made->ino);
}

TEST_F(DataTest, UnlinkedOpenFileStaysReadableUntilRelease) {
  absl::StatusOr<Attr> made = fs_->Create(kRoot, kRootIno, "f", 0644, O_RDWR | O_CREAT);
  ASSERT_TRUE(made.ok()) << made.status();
  const Ino ino = made->ino;
  ASSERT_TRUE(WriteAt(ino, 0, std::string(5 * kPage, 'z')).ok());
  const uint64_t charged = fs_->vm().accounting().charged();
  ASSERT_TRUE(fs_->Unlink(kRootIno, "f").ok());
  fs_->Forget(ino, 1);
  EXPECT_EQ(ReadAt(ino, 0, 5 * kPage), std::string(5 * kPage, 'z'));
  ASSERT_TRUE(WriteAt(ino, 5 * kPage, "more").ok());
  EXPECT_EQ(AttrOf(ino).nlink, 0u);
  fs_->Release(ino);
  EXPECT_EQ(ToErrno(fs_->GetAttr(ino).status()), ENOENT);
  EXPECT_LT(fs_->vm().accounting().charged(), charged);
}

TEST_F(DataTest, ReadUpdatesAtimeUnderRelatime) {
  Ino ino = MakeFile("f");
  ASSERT_TRUE(WriteAt(ino, 0, "x").ok());
  // atime before mtime: a read refreshes it.
  SetTimes(ino, 100, 200);
  ReadAt(ino, 0, 1);
  const int64_t refreshed = Ns(AttrOf(ino).atime);
  EXPECT_GT(refreshed, Ns(AttrOf(ino).ctime) - 1);
  // Now after mtime and ctime, and fresh: the next read leaves it.
  ReadAt(ino, 0, 1);
  EXPECT_EQ(Ns(AttrOf(ino).atime), refreshed);
  // An explicit old atime (which sets ctime to now) is refreshed by the next read.
  SetAttrRequest stale;
  stale.atime = timespec{time(nullptr) - 2 * 86400, 0};
  ASSERT_TRUE(fs_->SetAttr(kRoot, ino, stale).ok());
  ReadAt(ino, 0, 1);
  EXPECT_GT(AttrOf(ino).atime.tv_sec, time(nullptr) - 10);
}

TEST_F(DataTest, EnospcWithSizeLimitLeavesDataIntactAndRemovalStillWorks) {
  // Room for the metadata made so far and about 64 data pages.
  fs_.reset();
  {
    std::unique_ptr<Tmpfs> probe = MakeFs();
    const uint64_t base = probe->vm().accounting().charged();
    probe.reset();
    fs_ = MakeFs((base + 70) * kPage);
  }
  Ino ino = MakeFile("f");
  Ino other = MakeFile("g");
  const std::string chunk(16 * kPage, 'd');
  uint64_t written = 0;
  absl::StatusOr<uint64_t> result;
  while ((result = WriteAt(ino, written, chunk)).ok()) written += *result;
  EXPECT_EQ(ToErrno(result.status()), ENOSPC);
  ASSERT_GT(written, 0u);
  // The failed write changed nothing: size, data, blocks.
  EXPECT_EQ(AttrOf(ino).size, written);
  EXPECT_EQ(AttrOf(ino).blocks, written / 512);
  EXPECT_EQ(ReadAt(ino, written - chunk.size(), chunk.size()), chunk);
  EXPECT_EQ(ToErrno(fs_->Fallocate(other, 0, 0, 64 * kPage)), ENOSPC);
  EXPECT_EQ(AttrOf(other).size, 0u);
  struct statvfs st = fs_->StatFs();
  EXPECT_LT(st.f_bavail, 16u);
  // Truncating frees space for a write; unlinking works when full.
  ASSERT_TRUE(fs_->SetAttr(kRoot, ino, SizeRequest(0)).ok());
  EXPECT_TRUE(WriteAt(other, 0, chunk).ok());
  ASSERT_TRUE(WriteAt(ino, 0, std::string(40 * kPage, 'e')).ok());
  EXPECT_EQ(ToErrno(WriteAt(ino, 40 * kPage, chunk).status()), ENOSPC);
  ASSERT_TRUE(fs_->Unlink(kRootIno, "f").ok());
  fs_->Forget(ino, 1);
  EXPECT_TRUE(WriteAt(other, chunk.size(), chunk).ok());
}

TEST_F(DataTest, SixtyFourMiBThroughAFourMiBBudgetReadsBackIntact) {
  Ino ino = MakeFile("big");
  constexpr uint64_t kFile = 64 << 20, kChunk = 1 << 20;
  std::string chunk(kChunk, '\0');
  auto fill = [&](uint64_t offset) {
    for (uint64_t i = 0; i < kChunk; i += 8) {
      const uint64_t word = (offset + i) * 0x9E3779B97F4A7C15ull;
      memcpy(chunk.data() + i, &word, 8);
    }
  };
  for (uint64_t offset = 0; offset < kFile; offset += kChunk) {
    fill(offset);
    ASSERT_EQ(*WriteAt(ino, offset, chunk), kChunk);
  }
  EXPECT_EQ(AttrOf(ino).blocks, kFile / 512);
  for (uint64_t offset = 0; offset < kFile; offset += kChunk) {
    fill(offset);
    ASSERT_EQ(ReadAt(ino, offset, kChunk), chunk) << "at " << offset;
  }
  // The file went through swap: 16 times the budget cannot stay resident.
  const vm::StatsSnapshot stats = fs_->vm().ReadStats();
  EXPECT_GE(stats.pageouts, (kFile - (4 << 20)) / kPage);
  EXPECT_GE(stats.pageins, (kFile - (4 << 20)) / kPage);
  EXPECT_LE(stats.resident_frames, stats.total_frames);
}

TEST_F(DataTest, ReadWindowIsLimitedToOneMebibyteAndSomePages) {
  Ino ino = MakeFile("f");
  ASSERT_TRUE(fs_->SetAttr(kRoot, ino, SizeRequest(4 << 20)).ok());
  absl::StatusOr<ReadWindow> window = fs_->Read(ino, 100, 4 << 20);
  ASSERT_TRUE(window.ok()) << window.status();
  EXPECT_GE(window->length(), 1u << 20);
  EXPECT_LE(window->page_count(), vm::UbcWindow::kMaxPages);
}

TEST_F(DataTest, TruncateWaitsForReadWindowsInFlight) {
  Ino ino = MakeFile("f");
  ASSERT_TRUE(WriteAt(ino, 0, std::string(4 * kPage, 'r')).ok());
  absl::StatusOr<ReadWindow> window = fs_->Read(ino, 0, 4 * kPage);
  ASSERT_TRUE(window.ok());
  std::atomic<bool> truncated{false};
  std::thread truncater([&] {
    EXPECT_TRUE(fs_->SetAttr(kRoot, ino, SizeRequest(0)).ok());
    truncated = true;
  });
  // Nothing lets the truncate finish before the window goes.
  EXPECT_FALSE(truncated.load());
  // The reply is still intact while the window is held.
  std::string bytes(window->length(), '\0');
  window->CopyOut(bytes.data());
  EXPECT_EQ(bytes, std::string(4 * kPage, 'r'));
  window->Release();
  truncater.join();
  EXPECT_TRUE(truncated.load());
  EXPECT_EQ(AttrOf(ino).blocks, 0u);
}

// The truncate sleeps until the window's release wakes it: it does not poll. Its
// thread's voluntary context switches while it waits say which: a waiter polling
// every 50 µs switches some thousand times in the 100 ms the window is held here, one
// that sleeps a few times (its 10 ms safety slices, and the wake-up).
TEST_F(DataTest, TruncateSleepsUntilTheReadWindowIsReleased) {
  Ino ino = MakeFile("f");
  ASSERT_TRUE(WriteAt(ino, 0, std::string(4 * kPage, 'r')).ok());
  absl::StatusOr<ReadWindow> window = fs_->Read(ino, 0, 4 * kPage);
  ASSERT_TRUE(window.ok());
  std::atomic<bool> started{false};
  long switches = -1;
  std::thread truncater([&] {
    rusage before{}, after{};
    getrusage(RUSAGE_THREAD, &before);
    started = true;
    EXPECT_TRUE(fs_->SetAttr(kRoot, ino, SizeRequest(0)).ok());
    getrusage(RUSAGE_THREAD, &after);
    switches = after.ru_nvcsw - before.ru_nvcsw;
  });
  while (!started.load()) std::this_thread::yield();
  // Not synchronisation: the span over which the waiter's switches are counted.
  // Should the truncate reach its wait only after it, the test only proves less.
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  window->Release();
  truncater.join();
  EXPECT_EQ(AttrOf(ino).blocks, 0u);
  EXPECT_LT(switches, 50) << "the truncate woke up " << switches << " times while it waited";
}

TEST_F(DataTest, CopyFileRangeCopiesClippedToTheSource) {
  Ino in = MakeFile("in", 06755);
  Ino out = MakeFile("out", 06755);
  std::string bytes(3 * kPage + 17, '\0');
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<char>('a' + i % 26);
  ASSERT_TRUE(WriteAt(in, 0, bytes).ok());
  ASSERT_TRUE(fs_->SetAttr(kRoot, in, SizeRequest(6 * kPage)).ok());  // a hole
  absl::StatusOr<uint64_t> copied = fs_->CopyFileRange(kUser, in, 5, out, 100, 1 << 20);
  ASSERT_TRUE(copied.ok()) << copied.status();
  EXPECT_EQ(*copied, 6 * kPage - 5);
  EXPECT_EQ(AttrOf(out).size, 100 + 6 * kPage - 5);
  EXPECT_EQ(ReadAt(out, 100, bytes.size() - 5), bytes.substr(5));
  EXPECT_EQ(ReadAt(out, 100 + bytes.size() - 5, 10), std::string(10, '\0'));
  EXPECT_EQ(AttrOf(out).mode & 07777, 0755u);  // as a write by kUser
  EXPECT_EQ(*fs_->CopyFileRange(kRoot, in, 6 * kPage, out, 0, 10), 0u);
}

TEST_F(DataTest, CopyFileRangeWithinOneFileRejectsOverlap) {
  Ino ino = MakeFile("f");
  ASSERT_TRUE(WriteAt(ino, 0, std::string(kPage, 'a') + std::string(kPage, 'b')).ok());
  EXPECT_EQ(ToErrno(fs_->CopyFileRange(kRoot, ino, 0, ino, 100, kPage).status()), EINVAL);
  absl::StatusOr<uint64_t> copied = fs_->CopyFileRange(kRoot, ino, kPage, ino, 10, 100);
  ASSERT_TRUE(copied.ok()) << copied.status();
  EXPECT_EQ(ReadAt(ino, 0, 120),
            std::string(10, 'a') + std::string(100, 'b') + std::string(10, 'a'));
  EXPECT_EQ(ToErrno(fs_->CopyFileRange(kRoot, kRootIno, 0, ino, 0, 10).status()), EISDIR);
}

TEST_F(DataTest, CopyFileRangeIsEnospcBeforeAnyChange) {
  fs_.reset();
  {
    std::unique_ptr<Tmpfs> probe = MakeFs();
    const uint64_t base = probe->vm().accounting().charged();
    probe.reset();
    fs_ = MakeFs((base + 40) * kPage);
  }
  Ino in = MakeFile("in");
  Ino out = MakeFile("out");
  ASSERT_TRUE(WriteAt(in, 0, std::string(24 * kPage, 'c')).ok());
  EXPECT_EQ(ToErrno(fs_->CopyFileRange(kRoot, in, 0, out, 0, 24 * kPage).status()), ENOSPC);
  EXPECT_EQ(AttrOf(out).size, 0u);
  EXPECT_EQ(AttrOf(out).blocks, 0u);
}

TEST_F(DataTest, FsyncSucceedsForALiveNode) {
  Ino ino = MakeFile("f");
  EXPECT_TRUE(fs_->Fsync(ino).ok());
  EXPECT_EQ(ToErrno(fs_->Fsync(ino + 1000)), ENOENT);
}

TEST_F(DataTest, ConcurrentAppendsAreAtomic) {
  Ino ino = MakeFile("f");
  constexpr int kThreads = 4, kWrites = 50;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      const std::string record(1000, static_cast<char>('a' + t));
      for (int i = 0; i < kWrites; ++i) EXPECT_TRUE(WriteAt(ino, 0, record, O_APPEND).ok());
    });
  }
  for (std::thread& thread : threads) thread.join();
  ASSERT_EQ(AttrOf(ino).size, uint64_t{kThreads} * kWrites * 1000);
  for (int r = 0; r < kThreads * kWrites; ++r) {
    const std::string record = ReadAt(ino, r * 1000, 1000);
    EXPECT_EQ(record, std::string(1000, record[0])) << "record " << r << " is torn";
  }
}

}  // namespace
}  // namespace ptmpfs::fs
