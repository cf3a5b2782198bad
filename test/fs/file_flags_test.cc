// file_flags_test: chattr's flags in the tmpfs core (fs/file_flags.h), driven
// directly: who may set them, and every operation that immutable, append-only and
// noatime refuse or change, with the errno Linux gives.
#include "fs/file_flags.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <sys/stat.h>
#include <sys/xattr.h>

#include <cerrno>
#include <memory>
#include <string>

#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "fs/tmpfs.h"
#include "gtest/gtest.h"
#include "test/fs/test_tmpfs.h"

namespace ptmpfs::fs {
namespace {

constexpr Caller kRoot{};
constexpr Caller kUser{.uid = 1000, .gid = 1000};

static_assert(kImmutableFlag == FS_IMMUTABLE_FL && kAppendFlag == FS_APPEND_FL &&
              kNoDumpFlag == FS_NODUMP_FL && kNoAtimeFlag == FS_NOATIME_FL);

class FileFlagsTest : public ::testing::Test {
 protected:
  FileFlagsTest() : fs_(MakeTestTmpfs(uint64_t{64} << 20)) {}

  Ino Make(Ino parent, absl::string_view name, mode_t mode, const Caller& caller = kRoot) {
    absl::StatusOr<Attr> attr = S_ISDIR(mode)
                                    ? fs_->Mkdir(caller, parent, name, mode & 07777)
                                    : fs_->Mknod(caller, parent, name, mode, 0);
    EXPECT_TRUE(attr.ok()) << attr.status();
    return attr.ok() ? attr->ino : 0;
  }
  int WriteAt(Ino ino, uint64_t offset, absl::string_view bytes, int flags = 0) {
    iovec buffer{const_cast<char*>(bytes.data()), bytes.size()};
    return ToErrno(fs_->Write(kRoot, ino, offset, absl::MakeConstSpan(&buffer, 1), flags).status());
  }
  void SetFlags(Ino ino, uint32_t flags) { ASSERT_TRUE(fs_->SetFlags(kRoot, ino, flags).ok()); }
  Attr AttrOf(Ino ino) {
    absl::StatusOr<Attr> attr = fs_->GetAttr(ino);
    EXPECT_TRUE(attr.ok()) << attr.status();
    return attr.ok() ? *attr : Attr{};
  }
  uint32_t FlagsOf(Ino ino) {
    absl::StatusOr<uint32_t> flags = fs_->GetFlags(ino);
    EXPECT_TRUE(flags.ok()) << flags.status();
    return flags.ok() ? *flags : ~0u;
  }
  static SetAttrRequest ModeRequest(uint32_t mode) {
    SetAttrRequest request;
    request.mode = mode;
    return request;
  }

  std::unique_ptr<Tmpfs> fs_;
};

TEST_F(FileFlagsTest, FlagsRoundTripAndSetCtime) {
  Ino file = Make(kRootIno, "f", S_IFREG | 0644);
  EXPECT_EQ(FlagsOf(file), 0u);
  const Attr before = AttrOf(file);
  SetFlags(file, kNoDumpFlag | kNoAtimeFlag | kImmutableFlag | kAppendFlag);
  EXPECT_EQ(FlagsOf(file), kNoDumpFlag | kNoAtimeFlag | kImmutableFlag | kAppendFlag);
  const Attr after = AttrOf(file);
  EXPECT_TRUE(after.ctime.tv_sec > before.ctime.tv_sec ||
              (after.ctime.tv_sec == before.ctime.tv_sec &&
               after.ctime.tv_nsec >= before.ctime.tv_nsec));
  SetFlags(file, 0);  // the flags themselves may always be cleared by root
  EXPECT_EQ(FlagsOf(file), 0u);
}

TEST_F(FileFlagsTest, OnlyTheOwnerSetsFlagsAndOnlyRootTheGuardOnes) {
  Ino mine = Make(kRootIno, "mine", S_IFREG | 0644, kUser);
  Ino roots = Make(kRootIno, "roots", S_IFREG | 0666);
  EXPECT_EQ(ToErrno(fs_->SetFlags(kUser, roots, kNoDumpFlag)), EPERM);
  EXPECT_TRUE(fs_->SetFlags(kUser, mine, kNoDumpFlag | kNoAtimeFlag).ok());
  EXPECT_EQ(ToErrno(fs_->SetFlags(kUser, mine, kImmutableFlag)), EPERM);
  EXPECT_EQ(ToErrno(fs_->SetFlags(kUser, mine, kAppendFlag)), EPERM);
  SetFlags(mine, kAppendFlag);
  // Keeping a guard flag as it is needs no privilege; clearing it does.
  EXPECT_TRUE(fs_->SetFlags(kUser, mine, kAppendFlag | kNoDumpFlag).ok());
  EXPECT_EQ(ToErrno(fs_->SetFlags(kUser, mine, kNoDumpFlag)), EPERM);
  EXPECT_EQ(FlagsOf(mine), kAppendFlag | kNoDumpFlag);
}

TEST_F(FileFlagsTest, FlagsTmpfsDoesNotKeepAreRefused) {
  Ino file = Make(kRootIno, "f", S_IFREG | 0644);
  EXPECT_EQ(ToErrno(fs_->SetFlags(kRoot, file, FS_COMPR_FL)), EOPNOTSUPP);
  EXPECT_EQ(ToErrno(fs_->SetFlags(kRoot, file, FS_SYNC_FL | kNoDumpFlag)), EOPNOTSUPP);
  EXPECT_EQ(FlagsOf(file), 0u);
  EXPECT_EQ(ToErrno(fs_->GetFlags(12345).status()), ENOENT);
}

TEST_F(FileFlagsTest, AnImmutableFileRefusesEveryChange) {
  Ino file = Make(kRootIno, "f", S_IFREG | 0666);
  ASSERT_EQ(WriteAt(file, 0, "data"), 0);
  SetFlags(file, kImmutableFlag);
  EXPECT_EQ(ToErrno(fs_->Open(kRoot, file, O_WRONLY).status()), EPERM);
  EXPECT_EQ(ToErrno(fs_->Open(kRoot, file, O_RDWR | O_APPEND).status()), EPERM);
  EXPECT_EQ(ToErrno(fs_->Open(kRoot, file, O_RDONLY | O_TRUNC).status()), EPERM);
  EXPECT_EQ(WriteAt(file, 0, "x"), EPERM);  // a handle opened before the flag
  EXPECT_EQ(WriteAt(file, 4, "x", O_APPEND), EPERM);
  SetAttrRequest truncate;
  truncate.size = 0;
  EXPECT_EQ(ToErrno(fs_->SetAttr(kRoot, file, truncate).status()), EPERM);
  EXPECT_EQ(ToErrno(fs_->SetAttr(kRoot, file, ModeRequest(0600)).status()), EPERM);
  SetAttrRequest now;
  now.mtime = timespec{};
  now.mtime_now = true;
  EXPECT_EQ(ToErrno(fs_->SetAttr(kRoot, file, now).status()), EPERM);
  EXPECT_EQ(ToErrno(fs_->Fallocate(file, 0, 0, 4096)), EPERM);
  EXPECT_EQ(ToErrno(fs_->Fallocate(file, FALLOC_FL_KEEP_SIZE, 0, 4096)), EPERM);
  EXPECT_EQ(ToErrno(fs_->SetXattr(file, "user.a", "1", 0)), EPERM);
  EXPECT_EQ(ToErrno(fs_->RemoveXattr(file, "user.a")), EPERM);
  EXPECT_EQ(ToErrno(fs_->Link(file, kRootIno, "g").status()), EPERM);
  EXPECT_EQ(ToErrno(fs_->Unlink(kRootIno, "f")), EPERM);
  EXPECT_EQ(ToErrno(fs_->Rename(kRoot, kRootIno, "f", kRootIno, "g", 0)), EPERM);
  Ino other = Make(kRootIno, "other", S_IFREG | 0644);
  EXPECT_EQ(ToErrno(fs_->Rename(kRoot, kRootIno, "other", kRootIno, "f", 0)), EPERM);
  EXPECT_EQ(ToErrno(fs_->CopyFileRange(kRoot, other, 0, file, 0, 1).status()), EPERM);

  // Reading, and opening to read, still work; nothing changed.
  absl::StatusOr<Attr> opened = fs_->Open(kRoot, file, O_RDONLY);
  ASSERT_TRUE(opened.ok()) << opened.status();
  fs_->Release(file);
  EXPECT_EQ(AttrOf(file).size, 4u);
  EXPECT_EQ(AttrOf(file).nlink, 1u);

  // Cleared, it takes changes again.
  SetFlags(file, 0);
  EXPECT_EQ(WriteAt(file, 4, "more"), 0);
  EXPECT_TRUE(fs_->Unlink(kRootIno, "f").ok());
}

TEST_F(FileFlagsTest, AnImmutableDirectoryTakesNoEntryAndLosesNone) {
  Ino dir = Make(kRootIno, "d", S_IFDIR | 0777);
  Make(dir, "inside", S_IFREG | 0644);
  Ino outside = Make(kRootIno, "outside", S_IFREG | 0644);
  SetFlags(dir, kImmutableFlag);
  EXPECT_EQ(ToErrno(fs_->Mknod(kRoot, dir, "new", S_IFREG | 0644, 0).status()), EPERM);
  EXPECT_EQ(ToErrno(fs_->Mkdir(kRoot, dir, "sub", 0755).status()), EPERM);
  EXPECT_EQ(ToErrno(fs_->Symlink(kRoot, dir, "link", "target").status()), EPERM);
  EXPECT_EQ(ToErrno(fs_->Create(kRoot, dir, "created", 0644, O_WRONLY | O_CREAT).status()),
            EPERM);
  EXPECT_EQ(ToErrno(fs_->Link(outside, dir, "hard").status()), EPERM);
  EXPECT_EQ(ToErrno(fs_->Unlink(dir, "inside")), EPERM);
  EXPECT_EQ(ToErrno(fs_->Rename(kRoot, dir, "inside", kRootIno, "moved", 0)), EPERM);
  EXPECT_EQ(ToErrno(fs_->Rename(kRoot, kRootIno, "outside", dir, "moved", 0)), EPERM);
  EXPECT_EQ(ToErrno(fs_->Rmdir(kRootIno, "d")), EPERM);
  // An existing name is EEXIST before EPERM, as may_create checks.
  EXPECT_EQ(ToErrno(fs_->Mknod(kRoot, dir, "inside", S_IFREG | 0644, 0).status()), EEXIST);
  // Lookups and listing go on.
  EXPECT_TRUE(fs_->Lookup(dir, "inside").ok());
  int listed = 0;
  ASSERT_TRUE(fs_->ReadDir(dir, 0, [&](const DirEntry&) { return ++listed, true; }).ok());
  EXPECT_EQ(listed, 3);
}

TEST_F(FileFlagsTest, AnAppendOnlyFileOnlyGrowsAtItsEnd) {
  Ino file = Make(kRootIno, "f", S_IFREG | 0666);
  ASSERT_EQ(WriteAt(file, 0, "abc"), 0);
  SetFlags(file, kAppendFlag);
  EXPECT_EQ(ToErrno(fs_->Open(kRoot, file, O_WRONLY).status()), EPERM);
  EXPECT_EQ(ToErrno(fs_->Open(kRoot, file, O_WRONLY | O_APPEND | O_TRUNC).status()), EPERM);
  absl::StatusOr<Attr> opened = fs_->Open(kRoot, file, O_WRONLY | O_APPEND);
  ASSERT_TRUE(opened.ok()) << opened.status();
  fs_->Release(file);
  EXPECT_EQ(WriteAt(file, 0, "x", O_APPEND), 0);  // goes to the end
  EXPECT_EQ(WriteAt(file, 4, "y"), 0);            // at the end: what O_APPEND sends
  EXPECT_EQ(WriteAt(file, 0, "z"), EPERM);        // anywhere else is refused
  EXPECT_EQ(AttrOf(file).size, 5u);
  SetAttrRequest truncate;
  truncate.size = 5;
  EXPECT_EQ(ToErrno(fs_->SetAttr(kRoot, file, truncate).status()), EPERM);
  EXPECT_EQ(ToErrno(fs_->SetAttr(kRoot, file, ModeRequest(0600)).status()), EPERM);
  SetAttrRequest explicit_time;
  explicit_time.mtime = timespec{1, 0};
  EXPECT_EQ(ToErrno(fs_->SetAttr(kRoot, file, explicit_time).status()), EPERM);
  SetAttrRequest now;
  now.mtime = timespec{};
  now.mtime_now = true;
  EXPECT_TRUE(fs_->SetAttr(kRoot, file, now).ok());  // touch(1) still works
  EXPECT_TRUE(fs_->Fallocate(file, FALLOC_FL_KEEP_SIZE, 0, 8192).ok());
  EXPECT_TRUE(fs_->Fallocate(file, 0, 0, 8192).ok());
  EXPECT_EQ(ToErrno(fs_->Fallocate(file, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 4096)),
            EPERM);
  EXPECT_EQ(ToErrno(fs_->Fallocate(file, FALLOC_FL_ZERO_RANGE, 0, 4096)), EPERM);
  EXPECT_EQ(ToErrno(fs_->SetXattr(file, "user.a", "1", 0)), EPERM);
  EXPECT_EQ(ToErrno(fs_->Link(file, kRootIno, "g").status()), EPERM);
  EXPECT_EQ(ToErrno(fs_->Unlink(kRootIno, "f")), EPERM);
}

TEST_F(FileFlagsTest, AnAppendOnlyDirectoryTakesEntriesButLosesNone) {
  Ino dir = Make(kRootIno, "d", S_IFDIR | 0777);
  SetFlags(dir, kAppendFlag);
  Make(dir, "new", S_IFREG | 0644);
  Make(dir, "sub", S_IFDIR | 0755);
  EXPECT_EQ(ToErrno(fs_->Unlink(dir, "new")), EPERM);
  EXPECT_EQ(ToErrno(fs_->Rmdir(dir, "sub")), EPERM);
  EXPECT_EQ(ToErrno(fs_->Rename(kRoot, dir, "new", dir, "renamed", 0)), EPERM);
  Ino outside = Make(kRootIno, "outside", S_IFREG | 0644);
  EXPECT_TRUE(fs_->Rename(kRoot, kRootIno, "outside", dir, "moved", 0).ok());
  EXPECT_TRUE(fs_->Link(outside, dir, "hard").ok());
  // Replacing an entry removes one: refused.
  Make(kRootIno, "another", S_IFREG | 0644);
  EXPECT_EQ(ToErrno(fs_->Rename(kRoot, kRootIno, "another", dir, "new", 0)), EPERM);
}

TEST_F(FileFlagsTest, NoatimeKeepsReadsFromTouchingAtime) {
  Ino file = Make(kRootIno, "f", S_IFREG | 0644);
  ASSERT_EQ(WriteAt(file, 0, "data"), 0);
  SetAttrRequest old_times;
  old_times.atime = timespec{1000, 0};
  old_times.mtime = timespec{1000, 0};
  ASSERT_TRUE(fs_->SetAttr(kRoot, file, old_times).ok());
  SetFlags(file, kNoAtimeFlag);
  ASSERT_TRUE(fs_->Read(file, 0, 4).ok());
  EXPECT_EQ(AttrOf(file).atime.tv_sec, 1000);
  SetFlags(file, 0);
  ASSERT_TRUE(fs_->Read(file, 0, 4).ok());
  EXPECT_GT(AttrOf(file).atime.tv_sec, 1000);  // relatime: atime <= mtime, so set
}

TEST_F(FileFlagsTest, NewNodesInheritNodumpAndNoatimeOnly) {
  Ino dir = Make(kRootIno, "d", S_IFDIR | 0777);
  SetFlags(dir, kNoDumpFlag | kNoAtimeFlag | kAppendFlag);
  Ino file = Make(dir, "f", S_IFREG | 0644);
  Ino sub = Make(dir, "sub", S_IFDIR | 0755);
  EXPECT_EQ(FlagsOf(file), kNoDumpFlag | kNoAtimeFlag);
  EXPECT_EQ(FlagsOf(sub), kNoDumpFlag | kNoAtimeFlag);
  EXPECT_EQ(FlagsOf(Make(kRootIno, "plain", S_IFREG | 0644)), 0u);
}

}  // namespace
}  // namespace ptmpfs::fs
