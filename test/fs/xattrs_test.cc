// xattrs_test: extended attributes and POSIX ACLs of the tmpfs core, driven
// directly (no FUSE), against Linux tmpfs.
#include <sys/stat.h>
#include <sys/xattr.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "fs/errno_status.h"
#include "fs/tmpfs.h"
#include "gtest/gtest.h"
#include "test/fs/test_tmpfs.h"

namespace ptmpfs::fs {
namespace {

constexpr Caller kRoot{};

std::unique_ptr<Tmpfs> MakeFs() { return MakeTestTmpfs(); }

// An ACL in its xattr form: version 2, then {tag, perm, id} entries.
struct AclEntry {
  uint16_t tag;
  uint16_t perm;
  uint32_t id;
};
constexpr uint16_t kUserObj = 1, kUser = 2, kGroupObj = 4, kGroup = 8, kMask = 0x10, kOther = 0x20;
constexpr uint32_t kUndefinedId = ~0u;

std::string Acl(const std::vector<AclEntry>& entries) {
  std::string value(4 + 8 * entries.size(), '\0');
  const uint32_t version = 2;
  memcpy(value.data(), &version, 4);
  for (size_t i = 0; i < entries.size(); ++i) {
    memcpy(value.data() + 4 + 8 * i, &entries[i].tag, 2);
    memcpy(value.data() + 6 + 8 * i, &entries[i].perm, 2);
    memcpy(value.data() + 8 + 8 * i, &entries[i].id, 4);
  }
  return value;
}

class XattrsTest : public ::testing::Test {
 protected:
  Ino MakeNode(absl::string_view name, mode_t mode) {
    absl::StatusOr<Attr> attr = S_ISDIR(mode) ? fs_->Mkdir(kRoot, kRootIno, name, mode & 07777)
                                              : fs_->Mknod(kRoot, kRootIno, name, mode, 0);
    EXPECT_TRUE(attr.ok()) << attr.status();
    return attr.ok() ? attr->ino : 0;
  }
  // The value, or "<errno N>".
  std::string Get(Ino ino, absl::string_view name) {
    absl::StatusOr<size_t> size = fs_->GetXattr(ino, name, nullptr, 0);
    if (!size.ok()) return "<errno " + std::to_string(ToErrno(size.status())) + ">";
    std::string value(*size, '\0');
    absl::StatusOr<size_t> read = fs_->GetXattr(ino, name, value.data(), value.size());
    EXPECT_TRUE(read.ok()) << read.status();
    return value;
  }
  std::string List(Ino ino) {
    absl::StatusOr<size_t> size = fs_->ListXattr(ino, nullptr, 0);
    EXPECT_TRUE(size.ok()) << size.status();
    std::string names(size.ok() ? *size : 0, '\0');
    if (!names.empty()) {
      EXPECT_TRUE(fs_->ListXattr(ino, names.data(), names.size()).ok());
    }
    return names;
  }
  uint32_t Mode(Ino ino) { return fs_->GetAttr(ino)->mode; }
  void Chmod(Ino ino, uint32_t mode) {
    SetAttrRequest request;
    request.mode = mode;
    ASSERT_TRUE(fs_->SetAttr(kRoot, ino, request).ok());
  }

  std::unique_ptr<Tmpfs> fs_ = MakeFs();
  Ino file_ = MakeNode("f", S_IFREG | 0644);
};

TEST_F(XattrsTest, SetThenGetReturnsTheValue) {
  ASSERT_TRUE(fs_->SetXattr(file_, "user.color", "blue", 0).ok());
  EXPECT_EQ(Get(file_, "user.color"), "blue");
  EXPECT_EQ(*fs_->GetXattr(file_, "user.color", nullptr, 0), 4u);
  ASSERT_TRUE(fs_->SetXattr(file_, "user.color", "green", 0).ok());
  EXPECT_EQ(Get(file_, "user.color"), "green");
  ASSERT_TRUE(fs_->SetXattr(file_, "user.empty", "", 0).ok());
  EXPECT_EQ(Get(file_, "user.empty"), "");
  ASSERT_TRUE(fs_->SetXattr(file_, "trusted.t", "1", 0).ok());
  ASSERT_TRUE(fs_->SetXattr(file_, "security.s", "2", 0).ok());
  EXPECT_EQ(Get(file_, "security.s"), "2");
}

TEST_F(XattrsTest, CreateAndReplaceFlags) {
  ASSERT_TRUE(fs_->SetXattr(file_, "user.a", "1", XATTR_CREATE).ok());
  EXPECT_EQ(ToErrno(fs_->SetXattr(file_, "user.a", "2", XATTR_CREATE)), EEXIST);
  EXPECT_EQ(Get(file_, "user.a"), "1");
  EXPECT_EQ(ToErrno(fs_->SetXattr(file_, "user.b", "2", XATTR_REPLACE)), ENODATA);
  EXPECT_TRUE(fs_->SetXattr(file_, "user.a", "3", XATTR_REPLACE).ok());
  EXPECT_EQ(Get(file_, "user.a"), "3");
  EXPECT_EQ(ToErrno(fs_->SetXattr(file_, "user.a", "4", XATTR_CREATE | XATTR_REPLACE)), EINVAL);
}

TEST_F(XattrsTest, MissingNamesAreEnodata) {
  EXPECT_EQ(Get(file_, "user.none"), "<errno " + std::to_string(ENODATA) + ">");
  EXPECT_EQ(ToErrno(fs_->RemoveXattr(file_, "user.none")), ENODATA);
  EXPECT_EQ(ToErrno(fs_->GetXattr(file_, "system.posix_acl_access", nullptr, 0).status()), ENODATA);
}

TEST_F(XattrsTest, RemoveDeletesTheName) {
  ASSERT_TRUE(fs_->SetXattr(file_, "user.a", "1", 0).ok());
  ASSERT_TRUE(fs_->SetXattr(file_, "user.b", "2", 0).ok());
  ASSERT_TRUE(fs_->RemoveXattr(file_, "user.a").ok());
  EXPECT_EQ(ToErrno(fs_->GetXattr(file_, "user.a", nullptr, 0).status()), ENODATA);
  EXPECT_EQ(List(file_), std::string("user.b\0", 7));
}

TEST_F(XattrsTest, SmallBuffersAndLongNamesAreErange) {
  ASSERT_TRUE(fs_->SetXattr(file_, "user.a", "12345", 0).ok());
  char buffer[4];
  EXPECT_EQ(ToErrno(fs_->GetXattr(file_, "user.a", buffer, sizeof(buffer)).status()), ERANGE);
  EXPECT_EQ(ToErrno(fs_->ListXattr(file_, buffer, 3).status()), ERANGE);
  const std::string long_name = "user." + std::string(251, 'n');  // 256 bytes
  EXPECT_EQ(ToErrno(fs_->SetXattr(file_, long_name, "v", 0)), ERANGE);
  EXPECT_EQ(ToErrno(fs_->GetXattr(file_, long_name, nullptr, 0).status()), ERANGE);
  EXPECT_TRUE(fs_->SetXattr(file_, long_name.substr(0, 255), "v", 0).ok());
  EXPECT_EQ(ToErrno(fs_->SetXattr(file_, "", "v", 0)), ERANGE);
}

TEST_F(XattrsTest, ValuesOverSixtyFourKiBAreE2big) {
  EXPECT_EQ(ToErrno(fs_->SetXattr(file_, "user.big", std::string((64 << 10) + 1, 'v'), 0)), E2BIG);
  const std::string largest(64 << 10, 'v');
  ASSERT_TRUE(fs_->SetXattr(file_, "user.big", largest, 0).ok());
  EXPECT_EQ(Get(file_, "user.big"), largest);
}

TEST_F(XattrsTest, UnknownNamespacesAreEopnotsupp) {
  EXPECT_EQ(ToErrno(fs_->SetXattr(file_, "system.other", "v", 0)), EOPNOTSUPP);
  EXPECT_EQ(ToErrno(fs_->SetXattr(file_, "color", "v", 0)), EOPNOTSUPP);
  EXPECT_EQ(ToErrno(fs_->GetXattr(file_, "os2.x", nullptr, 0).status()), EOPNOTSUPP);
  EXPECT_EQ(ToErrno(fs_->RemoveXattr(file_, "other.x")), EOPNOTSUPP);
  EXPECT_EQ(ToErrno(fs_->SetXattr(file_, "user.", "v", 0)), EINVAL);
}

TEST_F(XattrsTest, UserAttributesOnlyOnFilesAndDirectories) {
  Ino fifo = MakeNode("p", S_IFIFO | 0644);
  EXPECT_EQ(ToErrno(fs_->SetXattr(fifo, "user.a", "v", 0)), EPERM);
  EXPECT_EQ(ToErrno(fs_->GetXattr(fifo, "user.a", nullptr, 0).status()), ENODATA);
  EXPECT_EQ(ToErrno(fs_->RemoveXattr(fifo, "user.a")), EPERM);
  EXPECT_TRUE(fs_->SetXattr(fifo, "trusted.a", "v", 0).ok());
  Ino dir = MakeNode("d", S_IFDIR | 0755);
  EXPECT_TRUE(fs_->SetXattr(dir, "user.a", "v", 0).ok());
}

TEST_F(XattrsTest, ListReturnsEveryNameNulTerminated) {
  EXPECT_EQ(*fs_->ListXattr(file_, nullptr, 0), 0u);
  ASSERT_TRUE(fs_->SetXattr(file_, "user.a", "1", 0).ok());
  ASSERT_TRUE(fs_->SetXattr(file_, "trusted.bb", "2", 0).ok());
  EXPECT_EQ(List(file_), std::string("user.a\0trusted.bb\0", 18));
}

TEST_F(XattrsTest, ChangesSetCtime) {
  SetAttrRequest old;
  old.ctime = timespec{100, 0};
  ASSERT_TRUE(fs_->SetAttr(kRoot, file_, old).ok());
  ASSERT_TRUE(fs_->SetXattr(file_, "user.a", "1", 0).ok());
  EXPECT_GT(fs_->GetAttr(file_)->ctime.tv_sec, 100);
  ASSERT_TRUE(fs_->SetAttr(kRoot, file_, old).ok());
  ASSERT_TRUE(fs_->RemoveXattr(file_, "user.a").ok());
  EXPECT_GT(fs_->GetAttr(file_)->ctime.tv_sec, 100);
  // A failed change changes nothing.
  ASSERT_TRUE(fs_->SetAttr(kRoot, file_, old).ok());
  EXPECT_FALSE(fs_->RemoveXattr(file_, "user.a").ok());
  EXPECT_EQ(fs_->GetAttr(file_)->ctime.tv_sec, 100);
}

TEST_F(XattrsTest, AccessAclSetsTheModeFromMaskAndOther) {
  const std::string acl = Acl({{kUserObj, 7, kUndefinedId},
                               {kUser, 5, 1234},
                               {kGroupObj, 4, kUndefinedId},
                               {kMask, 5, kUndefinedId},
                               {kOther, 1, kUndefinedId}});
  ASSERT_TRUE(fs_->SetXattr(file_, "system.posix_acl_access", acl, 0).ok());
  EXPECT_EQ(Mode(file_), S_IFREG | 0751u);
  EXPECT_EQ(Get(file_, "system.posix_acl_access"), acl);
  EXPECT_EQ(List(file_), std::string("system.posix_acl_access\0", 24));
}

TEST_F(XattrsTest, AccessAclBySomeoneOutsideTheGroupDropsSetgid) {
  // posix_acl_update_mode (xfstests generic/375): S_ISGID stays only for root or a
  // member of the file's group.
  const std::string acl =
      Acl({{kUserObj, 7, kUndefinedId}, {kGroupObj, 5, kUndefinedId}, {kOther, 5, kUndefinedId}});
  SetAttrRequest chown;  // first: a chown drops S_ISGID itself
  chown.uid = 1000;
  chown.gid = 2000;
  ASSERT_TRUE(fs_->SetAttr(kRoot, file_, chown).ok());
  SetAttrRequest setgid;
  setgid.mode = 02755;
  ASSERT_TRUE(fs_->SetAttr(kRoot, file_, setgid).ok());
  const Caller member{.uid = 1000, .gid = 2000};
  ASSERT_TRUE(fs_->SetXattr(file_, "system.posix_acl_access", acl, 0, &member).ok());
  EXPECT_EQ(Mode(file_), S_IFREG | 02755u);
  const Caller outsider{.uid = 1000, .gid = 3000};
  ASSERT_TRUE(fs_->SetXattr(file_, "system.posix_acl_access", acl, 0, &outsider).ok());
  EXPECT_EQ(Mode(file_), S_IFREG | 0755u);
}

TEST_F(XattrsTest, AnAclEquivalentToTheModeIsNotStored) {
  const std::string acl =
      Acl({{kUserObj, 6, kUndefinedId}, {kGroupObj, 0, kUndefinedId}, {kOther, 4, kUndefinedId}});
  ASSERT_TRUE(fs_->SetXattr(file_, "system.posix_acl_access", acl, 0).ok());
  EXPECT_EQ(Mode(file_), S_IFREG | 0604u);
  EXPECT_EQ(ToErrno(fs_->GetXattr(file_, "system.posix_acl_access", nullptr, 0).status()), ENODATA);
  // An extended one, then an equivalent one: the stored ACL goes.
  ASSERT_TRUE(fs_->SetXattr(file_, "system.posix_acl_access",
                            Acl({{kUserObj, 6, kUndefinedId},
                                 {kGroupObj, 4, kUndefinedId},
                                 {kGroup, 6, 77},
                                 {kMask, 6, kUndefinedId},
                                 {kOther, 0, kUndefinedId}}),
                            0)
                  .ok());
  EXPECT_EQ(Mode(file_), S_IFREG | 0660u);
  ASSERT_TRUE(fs_->SetXattr(file_, "system.posix_acl_access", acl, 0).ok());
  EXPECT_EQ(Mode(file_), S_IFREG | 0604u);
  EXPECT_EQ(List(file_), "");
}

TEST_F(XattrsTest, ChmodRewritesTheAccessAcl) {
  ASSERT_TRUE(fs_->SetXattr(file_, "system.posix_acl_access",
                            Acl({{kUserObj, 7, kUndefinedId},
                                 {kUser, 7, 1234},
                                 {kGroupObj, 5, kUndefinedId},
                                 {kMask, 7, kUndefinedId},
                                 {kOther, 5, kUndefinedId}}),
                            0)
                  .ok());
  Chmod(file_, 0640);
  EXPECT_EQ(Get(file_, "system.posix_acl_access"), Acl({{kUserObj, 6, kUndefinedId},
                                                        {kUser, 7, 1234},
                                                        {kGroupObj, 5, kUndefinedId},
                                                        {kMask, 4, kUndefinedId},
                                                        {kOther, 0, kUndefinedId}}));
}

TEST_F(XattrsTest, InvalidAclsAreRejected) {
  const std::string no_other = Acl({{kUserObj, 7, kUndefinedId}, {kGroupObj, 5, kUndefinedId}});
  EXPECT_EQ(ToErrno(fs_->SetXattr(file_, "system.posix_acl_access", no_other, 0)), EINVAL);
  const std::string no_mask = Acl({{kUserObj, 7, kUndefinedId},
                                   {kUser, 7, 1},
                                   {kGroupObj, 5, kUndefinedId},
                                   {kOther, 5, kUndefinedId}});
  EXPECT_EQ(ToErrno(fs_->SetXattr(file_, "system.posix_acl_access", no_mask, 0)), EINVAL);
  EXPECT_EQ(ToErrno(fs_->SetXattr(file_, "system.posix_acl_access", "abc", 0)), EINVAL);
  const std::string bad_perm =
      Acl({{kUserObj, 8, kUndefinedId}, {kGroupObj, 5, kUndefinedId}, {kOther, 5, kUndefinedId}});
  EXPECT_EQ(ToErrno(fs_->SetXattr(file_, "system.posix_acl_access", bad_perm, 0)), EINVAL);
  EXPECT_EQ(Mode(file_), S_IFREG | 0644u);
}

TEST_F(XattrsTest, DefaultAclsBelongToDirectories) {
  const std::string acl =
      Acl({{kUserObj, 7, kUndefinedId}, {kGroupObj, 5, kUndefinedId}, {kOther, 0, kUndefinedId}});
  EXPECT_EQ(ToErrno(fs_->SetXattr(file_, "system.posix_acl_default", acl, 0)), EACCES);
  Ino dir = MakeNode("d", S_IFDIR | 0755);
  ASSERT_TRUE(fs_->SetXattr(dir, "system.posix_acl_default", acl, 0).ok());
  EXPECT_EQ(Get(dir, "system.posix_acl_default"), acl);
  EXPECT_EQ(Mode(dir), S_IFDIR | 0755u);  // a default ACL leaves the mode alone
  ASSERT_TRUE(fs_->RemoveXattr(dir, "system.posix_acl_default").ok());
}

TEST_F(XattrsTest, SymlinksHaveNoAcls) {
  absl::StatusOr<Attr> link = fs_->Symlink(kRoot, kRootIno, "l", "target");
  ASSERT_TRUE(link.ok());
  const std::string acl =
      Acl({{kUserObj, 7, kUndefinedId}, {kGroupObj, 5, kUndefinedId}, {kOther, 0, kUndefinedId}});
  EXPECT_EQ(ToErrno(fs_->SetXattr(link->ino, "system.posix_acl_access", acl, 0)), EOPNOTSUPP);
}

TEST_F(XattrsTest, AttributesGoWithTheNode) {
  ASSERT_TRUE(fs_->SetXattr(file_, "user.big", std::string(10000, 'v'), 0).ok());
  ASSERT_TRUE(fs_->Unlink(kRootIno, "f").ok());
  fs_->Forget(file_, 1);
  EXPECT_EQ(ToErrno(fs_->GetXattr(file_, "user.big", nullptr, 0).status()), ENOENT);
}

// ---- a full file system ----

// 4 MiB of RAM and 8 MiB of swap: some 11 MiB of capacity, quickly filled.
class FullXattrsTest : public XattrsTest {
 protected:
  FullXattrsTest() {
    fs_ = MakeTestTmpfs(uint64_t{8} << 20);
    file_ = MakeNode("f", S_IFREG | 0644);
  }

  // Files made while there is room; `SetOnEachUntilFull` gives them attributes later.
  void MakeSpares(int count) {
    for (int i = 0; i < count; ++i) spares_.push_back(MakeNode("spare" + std::to_string(i), 0644));
  }
  // Charges every page there is left to a file's data: 1 MiB at a time, then a page.
  void FillWithData() {
    filler_ = MakeNode("filler", S_IFREG | 0644);
    uint64_t at = 0;
    for (uint64_t chunk : {uint64_t{1} << 20, uint64_t{4096}}) {
      const std::string bytes(chunk, 'x');
      for (;;) {
        iovec buffer{const_cast<char*>(bytes.data()), bytes.size()};
        absl::StatusOr<uint64_t> written =
            fs_->Write(kRoot, filler_, at, absl::MakeConstSpan(&buffer, 1), 0);
        if (!written.ok()) {
          ASSERT_EQ(ToErrno(written.status()), ENOSPC) << written.status();
          break;
        }
        at += *written;
      }
    }
    ASSERT_GT(at, 0u);
  }
  // Sets `name` to `value` on spare after spare until ENOSPC: then the size class of
  // such a block has no free item left, and no page can be charged for another.
  void SetOnEachUntilFull(absl::string_view name, absl::string_view value) {
    for (Ino spare : spares_) {
      absl::Status set = fs_->SetXattr(spare, name, value, 0);
      if (!set.ok()) {
        ASSERT_EQ(ToErrno(set), ENOSPC) << set;
        return;
      }
    }
    FAIL() << "the file system never filled up";
  }

  std::vector<Ino> spares_;
  Ino filler_ = 0;
};

// Removing an attribute writes a smaller block, a new one: when the file system (or
// its swap) is full it draws on the reserve for operations that free space.
TEST_F(FullXattrsTest, RemoveSucceedsWhenTheFileSystemIsFull) {
  const std::string small(100, 's');
  ASSERT_TRUE(fs_->SetXattr(file_, "user.a", small, 0).ok());
  ASSERT_TRUE(fs_->SetXattr(file_, "user.big", std::string(3000, 'b'), 0).ok());
  Ino dir = MakeNode("d", S_IFDIR | 0755);
  MakeSpares(512);
  FillWithData();
  // After the removal file_'s block is {user.a}: exhaust that block's size class.
  SetOnEachUntilFull("user.a", small);

  ASSERT_TRUE(fs_->RemoveXattr(file_, "user.big").ok());
  EXPECT_EQ(Get(file_, "user.big"), "<errno " + std::to_string(ENODATA) + ">");
  EXPECT_EQ(Get(file_, "user.a"), small);
  // The rest of what frees space works as well.
  ASSERT_TRUE(fs_->RemoveXattr(spares_[0], "user.a").ok());
  ASSERT_TRUE(fs_->Unlink(kRootIno, "spare1").ok());
  ASSERT_TRUE(fs_->Rmdir(kRootIno, "d").ok());
  fs_->Forget(dir, 1);
  SetAttrRequest truncate;
  truncate.size = 4096;
  ASSERT_TRUE(fs_->SetAttr(kRoot, filler_, truncate).ok());
  EXPECT_EQ(fs_->GetAttr(filler_)->size, 4096u);
}

// chmod rewrites the access ACL; when that needs space there is none of, the mode
// must not change either (nor a truncate made in the same setattr).
TEST_F(FullXattrsTest, ChmodThatCannotRewriteTheAclChangesNothing) {
  const std::string acl = Acl({{kUserObj, 6, kUndefinedId},
                               {kUser, 4, 1234},
                               {kGroupObj, 4, kUndefinedId},
                               {kMask, 4, kUndefinedId},
                               {kOther, 0, kUndefinedId}});
  ASSERT_TRUE(fs_->SetXattr(file_, "system.posix_acl_access", acl, 0).ok());
  const std::string data(3 * 4096, 'd');
  iovec buffer{const_cast<char*>(data.data()), data.size()};
  ASSERT_TRUE(fs_->Write(kRoot, file_, 0, absl::MakeConstSpan(&buffer, 1), 0).ok());
  const uint32_t mode = Mode(file_);
  ASSERT_EQ(mode & 0777, 0640u);
  MakeSpares(512);
  FillWithData();
  // The rewrite stores a block of this size while the old one still lives.
  SetOnEachUntilFull("system.posix_acl_access", acl);

  SetAttrRequest chmod;
  chmod.mode = 0750;
  absl::StatusOr<Attr> changed = fs_->SetAttr(kRoot, file_, chmod);
  ASSERT_FALSE(changed.ok()) << "the ACL's rewrite found space after all";
  EXPECT_EQ(ToErrno(changed.status()), ENOSPC);
  EXPECT_EQ(Mode(file_), mode) << "the mode changed, the ACL did not";
  EXPECT_EQ(Get(file_, "system.posix_acl_access"), acl);

  SetAttrRequest chmod_and_truncate;
  chmod_and_truncate.mode = 0700;
  chmod_and_truncate.size = 0;
  changed = fs_->SetAttr(kRoot, file_, chmod_and_truncate);
  ASSERT_FALSE(changed.ok());
  EXPECT_EQ(ToErrno(changed.status()), ENOSPC);
  EXPECT_EQ(Mode(file_), mode);
  EXPECT_EQ(fs_->GetAttr(file_)->size, data.size()) << "truncated though the setattr failed";
  EXPECT_EQ(Get(file_, "system.posix_acl_access"), acl);

  // With room again, both change together.
  SetAttrRequest truncate;
  truncate.size = 0;
  ASSERT_TRUE(fs_->SetAttr(kRoot, filler_, truncate).ok());
  ASSERT_TRUE(fs_->SetAttr(kRoot, file_, chmod).ok());
  EXPECT_EQ(Mode(file_) & 07777, 0750u);
  EXPECT_EQ(Get(file_, "system.posix_acl_access"), Acl({{kUserObj, 7, kUndefinedId},
                                                        {kUser, 4, 1234},
                                                        {kGroupObj, 4, kUndefinedId},
                                                        {kMask, 5, kUndefinedId},
                                                        {kOther, 0, kUndefinedId}}));
}

}  // namespace
}  // namespace ptmpfs::fs
