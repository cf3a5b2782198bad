// attributes_test: getattr, setattr (chmod, chown, truncate, utimens), statfs and
// handle resolution of the tmpfs core, driven directly (no FUSE), against Linux tmpfs.
#include <fcntl.h>
#include <sys/stat.h>

#include <cerrno>
#include <climits>
#include <memory>
#include <string>

#include "fs/errno_status.h"
#include "fs/tmpfs.h"
#include "gtest/gtest.h"
#include "test/fs/test_tmpfs.h"

namespace ptmpfs::fs {
namespace {

constexpr Caller kRoot{};
constexpr Caller kOwner{.uid = 1000, .gid = 1000};
constexpr Caller kOther{.uid = 2000, .gid = 2000};
constexpr uint64_t kPage = 4096;

std::unique_ptr<Tmpfs> MakeFs(uint64_t size_bytes = 0, uint64_t max_inodes = 0) {
  return MakeTestTmpfs(uint64_t{256} << 20, size_bytes, max_inodes);
}

SetAttrRequest SizeRequest(uint64_t size, bool from_open_file = false) {
  SetAttrRequest request;
  request.size = size;
  request.from_open_file = from_open_file;
  return request;
}

SetAttrRequest KillRequest() {
  SetAttrRequest request;
  request.kill_suid_sgid = true;
  return request;
}

int64_t Ns(const timespec& time) { return time.tv_sec * 1000000000LL + time.tv_nsec; }

class AttributesTest : public ::testing::Test {
 protected:
  // A file owned by kOwner, in the root (mode 01777).
  Ino MakeFile(absl::string_view name, mode_t mode = 0644) {
    absl::StatusOr<Attr> attr = fs_->Mknod(kOwner, kRootIno, name, S_IFREG | mode, 0);
    EXPECT_TRUE(attr.ok()) << attr.status();
    return attr.ok() ? attr->ino : 0;
  }
  void Write(Ino ino, uint64_t offset, const std::string& bytes) {
    iovec buffer{const_cast<char*>(bytes.data()), bytes.size()};
    ASSERT_TRUE(fs_->Write(kRoot, ino, offset, absl::MakeConstSpan(&buffer, 1), 0).ok());
  }
  std::string Read(Ino ino, uint64_t offset, uint64_t size) {
    absl::StatusOr<ReadWindow> window = fs_->Read(ino, offset, size);
    EXPECT_TRUE(window.ok()) << window.status();
    if (!window.ok()) return "<error>";
    std::string bytes(window->length(), '\0');
    window->CopyOut(bytes.data());
    return bytes;
  }
  Attr Get(Ino ino) {
    absl::StatusOr<Attr> attr = fs_->GetAttr(ino);
    EXPECT_TRUE(attr.ok()) << attr.status();
    return attr.ok() ? *attr : Attr{};
  }
  absl::Status Chmod(const Caller& caller, Ino ino, uint32_t mode) {
    SetAttrRequest request;
    request.mode = mode;
    return fs_->SetAttr(caller, ino, request).status();
  }
  // Old times, so that a change to now shows.
  void Age(Ino ino) {
    SetAttrRequest request;
    request.atime = timespec{100, 0};
    request.mtime = timespec{100, 0};
    request.ctime = timespec{100, 0};
    ASSERT_TRUE(fs_->SetAttr(kRoot, ino, request).ok());
  }

  std::unique_ptr<Tmpfs> fs_ = MakeFs();
};

TEST_F(AttributesTest, GetAttrOfTheRoot) {
  Attr root = Get(kRootIno);
  EXPECT_EQ(root.ino, kRootIno);
  EXPECT_EQ(root.mode, S_IFDIR | 01777u);
  EXPECT_NE(root.generation, 0u);
  struct stat st = root.ToStat();
  EXPECT_EQ(st.st_ino, kRootIno);
  EXPECT_EQ(st.st_blksize, 4096);
}

TEST_F(AttributesTest, GetAttrOfAMissingInodeIsEnoent) {
  EXPECT_EQ(ToErrno(fs_->GetAttr(12345).status()), ENOENT);
  EXPECT_EQ(ToErrno(fs_->SetAttr(kRoot, 12345, SetAttrRequest{}).status()), ENOENT);
}

TEST_F(AttributesTest, ChmodByTheOwnerChangesTheModeAndCtime) {
  Ino ino = MakeFile("f");
  Age(ino);
  ASSERT_TRUE(Chmod(kOwner, ino, 0600).ok());
  Attr attr = Get(ino);
  EXPECT_EQ(attr.mode, S_IFREG | 0600u);
  EXPECT_GT(attr.ctime.tv_sec, 100);
  EXPECT_EQ(attr.mtime.tv_sec, 100);
  // The type bits of the request are ignored.
  ASSERT_TRUE(Chmod(kRoot, ino, S_IFDIR | 0644).ok());
  EXPECT_EQ(Get(ino).mode, S_IFREG | 0644u);
}

TEST_F(AttributesTest, ChmodByAnotherUserIsEperm) {
  Ino ino = MakeFile("f");
  EXPECT_EQ(ToErrno(Chmod(kOther, ino, 0777)), EPERM);
  EXPECT_EQ(Get(ino).mode, S_IFREG | 0644u);
  EXPECT_TRUE(Chmod(kRoot, ino, 0777).ok());
}

TEST_F(AttributesTest, ChmodBySomeoneOutsideTheGroupDropsSgid) {
  Ino ino = MakeFile("f");
  SetAttrRequest chgrp;
  chgrp.gid = 3000;
  ASSERT_TRUE(fs_->SetAttr(kRoot, ino, chgrp).ok());
  ASSERT_TRUE(Chmod(kOwner, ino, 02755).ok());
  EXPECT_EQ(Get(ino).mode & 07777, 0755u);
  ASSERT_TRUE(Chmod(kRoot, ino, 02755).ok());
  EXPECT_EQ(Get(ino).mode & 07777, 02755u);
  // Back in the owner's group: kept.
  SetAttrRequest own_group;
  own_group.gid = 1000;
  ASSERT_TRUE(fs_->SetAttr(kOwner, ino, own_group).ok());
  ASSERT_TRUE(Chmod(kOwner, ino, 06755).ok());
  EXPECT_EQ(Get(ino).mode & 07777, 06755u);
}

TEST_F(AttributesTest, ChownByRootChangesOwnerAndKillsSuidAndExecutableSgid) {
  Ino ino = MakeFile("f");
  ASSERT_TRUE(Chmod(kRoot, ino, 06755).ok());
  Age(ino);
  SetAttrRequest request;
  request.uid = 42;
  request.gid = 43;
  absl::StatusOr<Attr> attr = fs_->SetAttr(kRoot, ino, request);
  ASSERT_TRUE(attr.ok());
  EXPECT_EQ(attr->uid, 42u);
  EXPECT_EQ(attr->gid, 43u);
  EXPECT_EQ(attr->mode & 07777, 0755u);
  EXPECT_GT(attr->ctime.tv_sec, 100);
  // Without group execute, S_ISGID stays.
  ASSERT_TRUE(Chmod(kRoot, ino, 06644).ok());
  ASSERT_TRUE(fs_->SetAttr(kRoot, ino, request).ok());
  EXPECT_EQ(Get(ino).mode & 07777, 02644u);
  // Directories keep both.
  absl::StatusOr<Attr> dir = fs_->Mkdir(kRoot, kRootIno, "d", 0755);
  ASSERT_TRUE(dir.ok());
  ASSERT_TRUE(Chmod(kRoot, dir->ino, 06755).ok());
  ASSERT_TRUE(fs_->SetAttr(kRoot, dir->ino, request).ok());
  EXPECT_EQ(Get(dir->ino).mode & 07777, 06755u);
}

TEST_F(AttributesTest, ChownByNonRootIsEpermUnlessToItsOwnGroup) {
  Ino ino = MakeFile("f");
  SetAttrRequest give;
  give.uid = 2000;
  EXPECT_EQ(ToErrno(fs_->SetAttr(kOwner, ino, give).status()), EPERM);
  SetAttrRequest same_owner;
  same_owner.uid = 1000;
  EXPECT_TRUE(fs_->SetAttr(kOwner, ino, same_owner).ok());
  SetAttrRequest foreign_group;
  foreign_group.gid = 5000;
  EXPECT_EQ(ToErrno(fs_->SetAttr(kOwner, ino, foreign_group).status()), EPERM);
  SetAttrRequest own_group;
  own_group.gid = 1000;
  EXPECT_EQ(ToErrno(fs_->SetAttr(kOther, ino, own_group).status()), EPERM);
  EXPECT_TRUE(fs_->SetAttr(kOwner, ino, own_group).ok());
  EXPECT_EQ(Get(ino).uid, 1000u);
}

TEST_F(AttributesTest, TruncateDownFreesBlocksAndZeroesTheTail) {
  Ino ino = MakeFile("f");
  Write(ino, 0, std::string(3 * kPage, 'x'));
  Age(ino);
  absl::StatusOr<Attr> attr = fs_->SetAttr(kRoot, ino, SizeRequest(5000));
  ASSERT_TRUE(attr.ok());
  EXPECT_EQ(attr->size, 5000u);
  EXPECT_EQ(attr->blocks, 16u);
  EXPECT_GT(attr->mtime.tv_sec, 100);
  EXPECT_GT(attr->ctime.tv_sec, 100);
  ASSERT_TRUE(fs_->SetAttr(kRoot, ino, SizeRequest(3 * kPage)).ok());
  EXPECT_EQ(Read(ino, 4990, 20), std::string(10, 'x') + std::string(10, '\0'));
  EXPECT_EQ(Read(ino, 2 * kPage, kPage), std::string(kPage, '\0'));
}

TEST_F(AttributesTest, TruncateUpMakesAHoleWithoutBlocks) {
  Ino ino = MakeFile("f");
  Write(ino, 0, "abc");
  ASSERT_TRUE(fs_->SetAttr(kRoot, ino, SizeRequest(1 << 30)).ok());
  EXPECT_EQ(Get(ino).size, 1u << 30);
  EXPECT_EQ(Get(ino).blocks, 8u);
  EXPECT_EQ(Read(ino, (1 << 30) - 5, 10), std::string(5, '\0'));
  // An empty file grown by truncate reads zeros too.
  Ino empty = MakeFile("g");
  ASSERT_TRUE(fs_->SetAttr(kRoot, empty, SizeRequest(10)).ok());
  EXPECT_EQ(Read(empty, 0, 100), std::string(10, '\0'));
}

TEST_F(AttributesTest, TruncateToTheSameSizeChangesNoTimes) {
  Ino ino = MakeFile("f");
  Write(ino, 0, "abc");
  Age(ino);
  ASSERT_TRUE(fs_->SetAttr(kRoot, ino, SizeRequest(3)).ok());
  EXPECT_EQ(Get(ino).mtime.tv_sec, 100);
  EXPECT_EQ(Get(ino).ctime.tv_sec, 100);
}

TEST_F(AttributesTest, TruncateErrors) {
  EXPECT_EQ(ToErrno(fs_->SetAttr(kRoot, kRootIno, SizeRequest(0)).status()), EISDIR);
  Ino ino = MakeFile("f");
  EXPECT_EQ(ToErrno(fs_->SetAttr(kRoot, ino, SizeRequest(uint64_t{1} << 63)).status()), EFBIG);
  EXPECT_TRUE(fs_->SetAttr(kRoot, ino, SizeRequest(static_cast<uint64_t>(LLONG_MAX))).ok());
  absl::StatusOr<Attr> fifo = fs_->Mknod(kRoot, kRootIno, "p", S_IFIFO | 0666, 0);
  ASSERT_TRUE(fifo.ok());
  EXPECT_EQ(ToErrno(fs_->SetAttr(kRoot, fifo->ino, SizeRequest(0)).status()), EINVAL);
  // Without write permission: EACCES, unless through an open file.
  Ino readonly = MakeFile("ro", 0444);
  EXPECT_EQ(ToErrno(fs_->SetAttr(kOther, readonly, SizeRequest(0)).status()), EACCES);
  EXPECT_TRUE(fs_->SetAttr(kOther, readonly, SizeRequest(0, /*from_open_file=*/true)).ok());
}

TEST_F(AttributesTest, TruncateByNonRootKillsSuidSgid) {
  Ino ino = MakeFile("f", 0777);
  ASSERT_TRUE(Chmod(kRoot, ino, 06777).ok());
  ASSERT_TRUE(fs_->SetAttr(kRoot, ino, SizeRequest(10)).ok());
  EXPECT_EQ(Get(ino).mode & 07777, 06777u);
  ASSERT_TRUE(fs_->SetAttr(kOther, ino, SizeRequest(20)).ok());
  EXPECT_EQ(Get(ino).mode & 07777, 0777u);
}

TEST_F(AttributesTest, KillSuidSgidClearsSgidOnlyWithGroupExecute) {
  Ino ino = MakeFile("f");
  ASSERT_TRUE(Chmod(kRoot, ino, 06754).ok());
  ASSERT_TRUE(fs_->SetAttr(kRoot, ino, KillRequest()).ok());
  EXPECT_EQ(Get(ino).mode & 07777, 0754u);
  ASSERT_TRUE(Chmod(kRoot, ino, 06644).ok());
  ASSERT_TRUE(fs_->SetAttr(kRoot, ino, KillRequest()).ok());
  EXPECT_EQ(Get(ino).mode & 07777, 02644u);
}

TEST_F(AttributesTest, KillSuidSgidByANonMemberClearsSgidWithoutGroupExecute) {
  // setattr_should_drop_sgid (xfstests generic/683-685: fallocate by a non-member).
  Ino ino = MakeFile("f", 0666);
  ASSERT_TRUE(Chmod(kRoot, ino, 06666).ok());
  ASSERT_TRUE(fs_->SetAttr(kOwner, ino, KillRequest()).ok());  // in the file's group
  EXPECT_EQ(Get(ino).mode & 07777, 02666u);
  ASSERT_TRUE(Chmod(kRoot, ino, 06666).ok());
  ASSERT_TRUE(fs_->SetAttr(kOther, ino, KillRequest()).ok());  // outside it
  EXPECT_EQ(Get(ino).mode & 07777, 0666u);
}

TEST_F(AttributesTest, UtimensSetsNanosecondsNowAndOmit) {
  Ino ino = MakeFile("f");
  SetAttrRequest exact;
  exact.atime = timespec{1000, 123456789};
  exact.mtime = timespec{2000, 987654321};
  ASSERT_TRUE(fs_->SetAttr(kOwner, ino, exact).ok());
  Attr attr = Get(ino);
  EXPECT_EQ(attr.atime.tv_sec, 1000);
  EXPECT_EQ(attr.atime.tv_nsec, 123456789);
  EXPECT_EQ(attr.mtime.tv_sec, 2000);
  EXPECT_EQ(attr.mtime.tv_nsec, 987654321);
  const int64_t ctime = Ns(attr.ctime);
  EXPECT_GT(attr.ctime.tv_sec, 2000);

  // mtime now, atime omitted.
  SetAttrRequest now;
  now.mtime_now = true;
  ASSERT_TRUE(fs_->SetAttr(kOwner, ino, now).ok());
  attr = Get(ino);
  EXPECT_EQ(attr.atime.tv_sec, 1000);
  EXPECT_EQ(attr.atime.tv_nsec, 123456789);
  EXPECT_GE(Ns(attr.mtime), ctime);
  EXPECT_GE(Ns(attr.ctime), Ns(attr.mtime));

  // Both omitted: nothing changes, not even ctime.
  const int64_t before = Ns(Get(ino).ctime);
  ASSERT_TRUE(fs_->SetAttr(kOwner, ino, SetAttrRequest{}).ok());
  EXPECT_EQ(Ns(Get(ino).ctime), before);

  // Negative (pre-1970) times keep their nanoseconds.
  SetAttrRequest old;
  old.mtime = timespec{-2, 500};
  ASSERT_TRUE(fs_->SetAttr(kRoot, ino, old).ok());
  EXPECT_EQ(Get(ino).mtime.tv_sec, -2);
  EXPECT_EQ(Get(ino).mtime.tv_nsec, 500);
}

TEST_F(AttributesTest, UtimensPermissions) {
  Ino ino = MakeFile("f", 0646);
  SetAttrRequest exact;
  exact.mtime = timespec{5, 0};
  EXPECT_EQ(ToErrno(fs_->SetAttr(kOther, ino, exact).status()), EPERM);
  SetAttrRequest now;
  now.atime_now = true;
  now.mtime_now = true;
  EXPECT_TRUE(fs_->SetAttr(kOther, ino, now).ok());  // others may write: now is allowed
  ASSERT_TRUE(Chmod(kOwner, ino, 0644).ok());
  EXPECT_EQ(ToErrno(fs_->SetAttr(kOther, ino, now).status()), EACCES);
}

TEST_F(AttributesTest, StatFsReportsTheSizeLimitAndUsage) {
  fs_ = MakeFs(/*size_bytes=*/8 << 20, /*max_inodes=*/100);
  struct statvfs before = fs_->StatFs();
  EXPECT_EQ(before.f_bsize, 4096u);
  EXPECT_EQ(before.f_frsize, 4096u);
  EXPECT_EQ(before.f_blocks, 2048u);
  EXPECT_EQ(before.f_bfree, before.f_bavail);
  EXPECT_LE(before.f_bfree, 2048u);
  EXPECT_EQ(before.f_files, 100u);
  EXPECT_EQ(before.f_ffree, 99u);  // the root
  EXPECT_EQ(before.f_namemax, 255u);
  Ino ino = MakeFile("f");
  Write(ino, 0, std::string(1 << 20, 'x'));
  struct statvfs after = fs_->StatFs();
  EXPECT_EQ(after.f_ffree, 98u);
  EXPECT_LE(after.f_bfree, before.f_bfree - 256);
  EXPECT_GE(after.f_bfree, before.f_bfree - 260);
}

TEST_F(AttributesTest, StatFsWithoutLimitsUsesTheCapacity) {
  struct statvfs st = fs_->StatFs();
  EXPECT_EQ(st.f_blocks, fs_->vm().accounting().capacity());
  EXPECT_GT(st.f_blocks, (256u << 20) / 4096 / 2);
  EXPECT_GT(st.f_bavail, 0u);
  EXPECT_LT(st.f_bavail, st.f_blocks);
  EXPECT_EQ(st.f_files, st.f_blocks * 32);
  EXPECT_EQ(st.f_ffree, st.f_files - 1);
}

TEST_F(AttributesTest, ResolveHandleIsEstaleOnceTheNodeIsFreed) {
  Ino ino = MakeFile("f");
  const uint64_t generation = Get(ino).generation;
  absl::StatusOr<Attr> resolved = fs_->ResolveHandle(ino, generation);
  ASSERT_TRUE(resolved.ok()) << resolved.status();
  EXPECT_EQ(resolved->ino, ino);
  ASSERT_TRUE(fs_->Unlink(kRootIno, "f").ok());
  fs_->Forget(ino, 1);
  EXPECT_EQ(ToErrno(fs_->ResolveHandle(ino, generation).status()), ESTALE);
  // The number reused by a new node: the old handle is still stale.
  Ino again = MakeFile("g");
  if (again == ino) {
    EXPECT_EQ(ToErrno(fs_->ResolveHandle(ino, generation).status()), ESTALE);
    EXPECT_TRUE(fs_->ResolveHandle(ino, Get(ino).generation).ok());
  }
  EXPECT_EQ(ToErrno(fs_->ResolveHandle(99999, 1).status()), ESTALE);
}

}  // namespace
}  // namespace ptmpfs::fs
