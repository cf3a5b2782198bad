// acl_test: default-ACL inheritance and the umask when the tmpfs core makes a node
// (posix_acl_create), driven directly (no FUSE), against Linux tmpfs.
#include <fcntl.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "fs/errno_status.h"
#include "fs/tmpfs.h"
#include "gtest/gtest.h"

namespace ptmpfs::fs {
namespace {

constexpr Caller kRoot{};
constexpr Caller kUser{.uid = 1000, .gid = 1000};
constexpr Caller kUmask022{.umask = 022};
constexpr Caller kUmask077{.umask = 077};

constexpr absl::string_view kAccess = "system.posix_acl_access";
constexpr absl::string_view kDefault = "system.posix_acl_default";

std::unique_ptr<Tmpfs> MakeFs(const vm::VmOptions& vm_options) {
  Tmpfs::Options options;
  options.vm = vm_options;
  absl::StatusOr<std::unique_ptr<Tmpfs>> fs = Tmpfs::Create(options);
  EXPECT_TRUE(fs.ok()) << fs.status();
  return *std::move(fs);
}

vm::VmOptions SwappingVm() {
  vm::VmOptions options;
  options.ram_bytes = 4 << 20;
  options.swap.size_bytes = 256 << 20;
  return options;
}

// An ACL in its xattr form: version 2, then {tag, perm, id} entries.
struct AclEntry {
  uint16_t tag;
  uint16_t perm;
  uint32_t id;
};
constexpr uint16_t kUserObj = 1, kNamedUser = 2, kGroupObj = 4, kMask = 0x10, kOther = 0x20;
constexpr uint32_t kNoId = ~0u;

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

// setfacl -d -m u:1234:rwx on a 0755 directory.
const std::string kNamedUserDefault = Acl({{kUserObj, 7, kNoId},
                                           {kNamedUser, 7, 1234},
                                           {kGroupObj, 5, kNoId},
                                           {kMask, 7, kNoId},
                                           {kOther, 5, kNoId}});
// A default ACL with no named entries and no mask: it says no more than a mode.
const std::string kMinimalDefault =
    Acl({{kUserObj, 7, kNoId}, {kGroupObj, 5, kNoId}, {kOther, 0, kNoId}});

class AclTest : public ::testing::Test {
 protected:
  // A directory in the root with `acl` as its default ACL (none if empty).
  Ino MakeDirWithDefault(absl::string_view name, const std::string& acl, mode_t mode = 0755) {
    absl::StatusOr<Attr> dir = fs_->Mkdir(kRoot, kRootIno, name, mode);
    EXPECT_TRUE(dir.ok()) << dir.status();
    if (!dir.ok()) return 0;
    if (!acl.empty()) {
      EXPECT_TRUE(fs_->SetXattr(dir->ino, kDefault, acl, 0).ok());
    }
    return dir->ino;
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
  static std::string NoData() { return "<errno " + std::to_string(ENODATA) + ">"; }

  std::unique_ptr<Tmpfs> fs_ = MakeFs(SwappingVm());
};

TEST_F(AclTest, FilesInheritTheDefaultAclMaskedByTheirMode) {
  const Ino dir = MakeDirWithDefault("d", kNamedUserDefault);
  absl::StatusOr<Attr> file = fs_->Mknod(kRoot, dir, "f", S_IFREG | 0644, 0);
  ASSERT_TRUE(file.ok()) << file.status();
  // USER_OBJ and OTHER narrowed to the mode's, the mask to its group bits; the named
  // user's entry stays (the mask limits it); the mode takes the group bits from the mask.
  EXPECT_EQ(Get(file->ino, kAccess), Acl({{kUserObj, 6, kNoId},
                                          {kNamedUser, 7, 1234},
                                          {kGroupObj, 5, kNoId},
                                          {kMask, 4, kNoId},
                                          {kOther, 4, kNoId}}));
  EXPECT_EQ(file->mode, S_IFREG | 0644u);
  EXPECT_EQ(fs_->GetAttr(file->ino)->mode, S_IFREG | 0644u);
  EXPECT_EQ(Get(file->ino, kDefault), NoData()) << "only directories take the default";

  // Create (open with O_CREAT) makes its file the same way.
  absl::StatusOr<Attr> created = fs_->Create(kRoot, dir, "c", 0666, O_WRONLY | O_CREAT);
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_EQ(created->mode, S_IFREG | 0664u);
  EXPECT_EQ(Get(created->ino, kAccess), Acl({{kUserObj, 6, kNoId},
                                             {kNamedUser, 7, 1234},
                                             {kGroupObj, 5, kNoId},
                                             {kMask, 6, kNoId},
                                             {kOther, 4, kNoId}}));
  fs_->Release(created->ino);
}

TEST_F(AclTest, SubdirectoriesInheritTheDefaultAsTheirOwnDefaultToo) {
  const Ino dir = MakeDirWithDefault("d", kNamedUserDefault);
  absl::StatusOr<Attr> sub = fs_->Mkdir(kRoot, dir, "sub", 0750);
  ASSERT_TRUE(sub.ok()) << sub.status();
  EXPECT_EQ(Get(sub->ino, kDefault), kNamedUserDefault);
  EXPECT_EQ(Get(sub->ino, kAccess), Acl({{kUserObj, 7, kNoId},
                                         {kNamedUser, 7, 1234},
                                         {kGroupObj, 5, kNoId},
                                         {kMask, 5, kNoId},
                                         {kOther, 0, kNoId}}));
  EXPECT_EQ(sub->mode, S_IFDIR | 0750u);
  // And so on down: the subdirectory passes it on.
  absl::StatusOr<Attr> deeper = fs_->Mknod(kRoot, sub->ino, "f", S_IFREG | 0600, 0);
  ASSERT_TRUE(deeper.ok()) << deeper.status();
  EXPECT_EQ(deeper->mode, S_IFREG | 0600u);
  EXPECT_EQ(Get(deeper->ino, kAccess), Acl({{kUserObj, 6, kNoId},
                                            {kNamedUser, 7, 1234},
                                            {kGroupObj, 5, kNoId},
                                            {kMask, 0, kNoId},
                                            {kOther, 0, kNoId}}));
}

TEST_F(AclTest, AnInheritedAclEquivalentToTheModeIsNotStored) {
  const Ino dir = MakeDirWithDefault("d", kMinimalDefault);
  absl::StatusOr<Attr> file = fs_->Mknod(kRoot, dir, "f", S_IFREG | 0666, 0);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ(file->mode, S_IFREG | 0640u) << "the mode narrowed to the ACL";
  EXPECT_EQ(Get(file->ino, kAccess), NoData());
  absl::StatusOr<size_t> names = fs_->ListXattr(file->ino, nullptr, 0);
  ASSERT_TRUE(names.ok());
  EXPECT_EQ(*names, 0u);

  absl::StatusOr<Attr> sub = fs_->Mkdir(kRoot, dir, "sub", 0777);
  ASSERT_TRUE(sub.ok()) << sub.status();
  EXPECT_EQ(sub->mode, S_IFDIR | 0750u);
  EXPECT_EQ(Get(sub->ino, kAccess), NoData());
  EXPECT_EQ(Get(sub->ino, kDefault), kMinimalDefault);
}

TEST_F(AclTest, UmaskAppliesOnlyWithoutADefaultAcl) {
  // No default ACL (the root has none): the umask clears bits.
  absl::StatusOr<Attr> plain = fs_->Mknod(kUmask022, kRootIno, "plain", S_IFREG | 0666, 0);
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_EQ(plain->mode, S_IFREG | 0644u);
  absl::StatusOr<Attr> plain_dir = fs_->Mkdir(kUmask077, kRootIno, "plain_dir", 0777);
  ASSERT_TRUE(plain_dir.ok()) << plain_dir.status();
  EXPECT_EQ(plain_dir->mode, S_IFDIR | 0700u);
  absl::StatusOr<Attr> created =
      fs_->Create(kUmask022, kRootIno, "created", 0666, O_WRONLY | O_CREAT);
  ASSERT_TRUE(created.ok()) << created.status();
  EXPECT_EQ(created->mode, S_IFREG | 0644u);
  fs_->Release(created->ino);

  // A default ACL: the umask is ignored, the ACL alone narrows the mode.
  const Ino dir = MakeDirWithDefault(
      "d", Acl({{kUserObj, 7, kNoId}, {kGroupObj, 7, kNoId}, {kOther, 7, kNoId}}));
  absl::StatusOr<Attr> file = fs_->Mknod(kUmask077, dir, "f", S_IFREG | 0666, 0);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ(file->mode, S_IFREG | 0666u);
  absl::StatusOr<Attr> sub = fs_->Mkdir(kUmask077, dir, "sub", 0777);
  ASSERT_TRUE(sub.ok()) << sub.status();
  EXPECT_EQ(sub->mode, S_IFDIR | 0777u);
}

TEST_F(AclTest, SymlinksTakeNeitherTheDefaultAclNorTheUmask) {
  const Ino dir = MakeDirWithDefault("d", kNamedUserDefault);
  absl::StatusOr<Attr> link = fs_->Symlink(kUmask077, dir, "l", "target");
  ASSERT_TRUE(link.ok()) << link.status();
  EXPECT_EQ(link->mode, S_IFLNK | 0777u);
  absl::StatusOr<size_t> names = fs_->ListXattr(link->ino, nullptr, 0);
  ASSERT_TRUE(names.ok());
  EXPECT_EQ(*names, 0u);
  absl::StatusOr<Attr> root_link = fs_->Symlink(kUmask077, kRootIno, "l", "target");
  ASSERT_TRUE(root_link.ok()) << root_link.status();
  EXPECT_EQ(root_link->mode, S_IFLNK | 0777u);
}

TEST_F(AclTest, SetgidDirectoryGroupAndBitSurviveInheritance) {
  const Ino dir = MakeDirWithDefault("d", kNamedUserDefault, 0777);
  SetAttrRequest chgrp;
  chgrp.gid = 50;
  chgrp.mode = 02777;
  ASSERT_TRUE(fs_->SetAttr(kRoot, dir, chgrp).ok());
  ASSERT_EQ(fs_->GetAttr(dir)->mode, S_IFDIR | 02777u);

  absl::StatusOr<Attr> sub = fs_->Mkdir(kUser, dir, "sub", 0755);
  ASSERT_TRUE(sub.ok()) << sub.status();
  EXPECT_EQ(sub->gid, 50u);
  EXPECT_EQ(sub->mode, S_IFDIR | 02755u);
  EXPECT_EQ(Get(sub->ino, kDefault), kNamedUserDefault);
  absl::StatusOr<Attr> file = fs_->Mknod(kUser, dir, "f", S_IFREG | 0640, 0);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ(file->gid, 50u);
  EXPECT_EQ(file->mode, S_IFREG | 0640u);
}

// With a default ACL far larger than a node and its entry, space runs out on the
// inherited ACLs' block: the failed creation must leave no node, entry or blob.
TEST(AclSpaceTest, NoSpaceForTheInheritedAclLeavesNothingBehind) {
  vm::VmOptions vm_options;
  vm_options.ram_bytes = 4 << 20;
  vm_options.noswap = true;
  std::unique_ptr<Tmpfs> fs = MakeFs(vm_options);
  absl::StatusOr<Attr> dir = fs->Mkdir(kRoot, kRootIno, "d", 0755);
  ASSERT_TRUE(dir.ok()) << dir.status();
  // 4,000 named users: a 32 KiB ACL, inherited twice by each subdirectory.
  std::vector<AclEntry> entries = {{kUserObj, 7, kNoId}};
  for (uint32_t id = 1; id <= 4000; ++id) entries.push_back({kNamedUser, 7, id});
  entries.push_back({kGroupObj, 5, kNoId});
  entries.push_back({kMask, 7, kNoId});
  entries.push_back({kOther, 5, kNoId});
  ASSERT_TRUE(fs->SetXattr(dir->ino, kDefault, Acl(entries), 0).ok());

  bool ran_out = false;
  for (int i = 0; i < 1000 && !ran_out; ++i) {
    const std::string name = "sub" + std::to_string(i);
    const uint64_t nodes = fs->nodes().nodes();
    const uint64_t items = fs->nodes().kmem().items_in_use();
    absl::StatusOr<Attr> sub = fs->Mkdir(kRoot, dir->ino, name, 0755);
    if (sub.ok()) continue;
    ran_out = true;
    EXPECT_EQ(ToErrno(sub.status()), ENOSPC) << sub.status();
    EXPECT_EQ(fs->nodes().nodes(), nodes);
    // Items, not charged pages: a pool keeps its emptied pages for the next item.
    EXPECT_EQ(fs->nodes().kmem().items_in_use(), items);
    EXPECT_EQ(ToErrno(fs->Lookup(dir->ino, name).status()), ENOENT);
    EXPECT_EQ(fs->GetAttr(dir->ino)->nlink, 2u + i) << "no \"..\" counted for it";
  }
  ASSERT_TRUE(ran_out) << "never ran out of space";
  // What failed was the ACLs' space: a node without them still fits.
  absl::StatusOr<Attr> plain = fs->Mknod(kRoot, kRootIno, "plain", S_IFREG | 0644, 0);
  EXPECT_TRUE(plain.ok()) << plain.status();
}

}  // namespace
}  // namespace ptmpfs::fs
