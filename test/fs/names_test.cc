// names_test: lookup, forget, mknod, mkdir, symlink, readlink, link, unlink, rmdir
// and readdir of the tmpfs core, driven directly (no FUSE), against Linux tmpfs.
#include <dirent.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <atomic>
#include <cerrno>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "fs/errno_status.h"
#include "fs/tmpfs.h"
#include "gtest/gtest.h"

namespace ptmpfs::fs {
namespace {

constexpr Caller kUser{.uid = 1000, .gid = 1000};

std::unique_ptr<Tmpfs> MakeFs(uint64_t ram_bytes = 4 << 20, uint64_t max_inodes = 0) {
  Tmpfs::Options options;
  options.vm.ram_bytes = ram_bytes;
  options.vm.swap.size_bytes = 256 << 20;
  options.max_inodes = max_inodes;
  absl::StatusOr<std::unique_ptr<Tmpfs>> fs = Tmpfs::Create(options);
  EXPECT_TRUE(fs.ok()) << fs.status();
  return *std::move(fs);
}

// A copy of the node's fields, read straight from the node store (GetAttr lives in
// attributes.cc; these tests stay within names.cc).
meta::Node NodeOf(Tmpfs& fs, Ino ino) {
  auto pin = fs.nodes().Pin(fs.nodes().AddrOf(ino), vm::Access::kRead);
  EXPECT_TRUE(pin.ok()) << pin.status();
  return **pin;
}

// Sets a node's nlink directly, to reach the EMLINK limit without 4 billion links.
void SetNlink(Tmpfs& fs, Ino ino, uint32_t nlink) {
  auto pin = *fs.nodes().Pin(fs.nodes().AddrOf(ino), vm::Access::kWrite);
  pin->nlink = nlink;
}

bool Live(Tmpfs& fs, Ino ino) { return fs.nodes().ResolveIno(ino).ok(); }

int Errno(const absl::Status& status) { return ToErrno(status); }
template <typename T>
int Errno(const absl::StatusOr<T>& result) {
  return ToErrno(result.status());
}

Ino File(Tmpfs& fs, Ino parent, absl::string_view name) {
  absl::StatusOr<Attr> attr = fs.Mknod(kUser, parent, name, S_IFREG | 0644, 0);
  EXPECT_TRUE(attr.ok()) << name << ": " << attr.status();
  return attr.ok() ? attr->ino : 0;
}

Ino Dir(Tmpfs& fs, Ino parent, absl::string_view name) {
  absl::StatusOr<Attr> attr = fs.Mkdir(kUser, parent, name, 0755);
  EXPECT_TRUE(attr.ok()) << name << ": " << attr.status();
  return attr.ok() ? attr->ino : 0;
}

// Every entry from `offset`, name -> (ino, next offset).
std::map<std::string, std::pair<Ino, uint64_t>> List(Tmpfs& fs, Ino dir, uint64_t offset = 0) {
  std::map<std::string, std::pair<Ino, uint64_t>> entries;
  absl::Status status = fs.ReadDir(dir, offset, [&](const DirEntry& entry) {
    EXPECT_TRUE(entries
                    .emplace(std::string(entry.name.data(), entry.name.size()),
                             std::make_pair(entry.ino, entry.next_offset))
                    .second)
        << "returned twice: " << entry.name;
    return true;
  });
  EXPECT_TRUE(status.ok()) << status;
  return entries;
}

// ---- lookup and forget ----

TEST(NamesTest, LookupFindsWhatMknodMadeAndCountsALookup) {
  auto fs = MakeFs();
  Attr made = *fs->Mknod(kUser, kRootIno, "f", S_IFREG | 0640, 0);
  EXPECT_EQ(NodeOf(*fs, made.ino).lookup_count, 1u);
  absl::StatusOr<Attr> found = fs->Lookup(kRootIno, "f");
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_EQ(found->ino, made.ino);
  EXPECT_EQ(found->generation, made.generation);
  EXPECT_EQ(found->mode, S_IFREG | 0640u);
  EXPECT_EQ(NodeOf(*fs, made.ino).lookup_count, 2u);
}

TEST(NamesTest, LookupOfMissingNameIsENOENT) {
  auto fs = MakeFs();
  EXPECT_EQ(Errno(fs->Lookup(kRootIno, "nothing")), ENOENT);
  EXPECT_EQ(Errno(fs->Lookup(kRootIno, "")), ENOENT);
}

TEST(NamesTest, LookupInAFileIsENOTDIR) {
  auto fs = MakeFs();
  Ino file = File(*fs, kRootIno, "f");
  EXPECT_EQ(Errno(fs->Lookup(file, "x")), ENOTDIR);
}

TEST(NamesTest, LookupOfDotInAFileIsTheFileWhileItHasAName) {
  // The kernel resolves file handles (open_by_handle_at) this way.
  auto fs = MakeFs();
  Ino file = File(*fs, kRootIno, "f");
  absl::StatusOr<Attr> found = fs->Lookup(file, ".");
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_EQ(found->ino, file);
  ASSERT_TRUE(fs->Unlink(kRootIno, "f").ok());
  EXPECT_EQ(Errno(fs->Lookup(file, ".")), ENOENT);
}

TEST(NamesTest, LookupOfNameLongerThan255IsENAMETOOLONG) {
  auto fs = MakeFs();
  EXPECT_EQ(Errno(fs->Lookup(kRootIno, std::string(256, 'a'))), ENAMETOOLONG);
  EXPECT_EQ(Errno(fs->Lookup(kRootIno, std::string(255, 'a'))), ENOENT);
}

TEST(NamesTest, LookupOfDotAndDotDotResolvesTheDirectoryAndItsParent) {
  auto fs = MakeFs();
  Ino dir = Dir(*fs, kRootIno, "d");
  EXPECT_EQ(fs->Lookup(dir, ".")->ino, dir);
  EXPECT_EQ(fs->Lookup(dir, "..")->ino, kRootIno);
  EXPECT_EQ(fs->Lookup(kRootIno, "..")->ino, kRootIno);
}

TEST(NamesTest, LookupOfAMissingInodeIsENOENT) {
  auto fs = MakeFs();
  EXPECT_EQ(Errno(fs->Lookup(12345, "x")), ENOENT);
}

TEST(NamesTest, ForgetDropsLookupsButALinkedNodeStays) {
  auto fs = MakeFs();
  Ino file = File(*fs, kRootIno, "f");
  (void)fs->Lookup(kRootIno, "f");
  fs->Forget(file, 2);
  EXPECT_EQ(NodeOf(*fs, file).lookup_count, 0u);
  EXPECT_TRUE(Live(*fs, file));
  EXPECT_EQ(fs->Lookup(kRootIno, "f")->ino, file);
}

TEST(NamesTest, ForgetOfTheRootNeverFreesIt) {
  auto fs = MakeFs();
  (void)fs->Lookup(kRootIno, ".");
  fs->Forget(kRootIno, 100);
  EXPECT_TRUE(Live(*fs, kRootIno));
  EXPECT_EQ(fs->nodes().nodes(), 1u);
}

TEST(NamesTest, UnlinkedNodeIsFreedAtLastForget) {
  auto fs = MakeFs();
  Ino file = File(*fs, kRootIno, "f");  // one lookup
  (void)fs->Lookup(kRootIno, "f");      // two
  ASSERT_EQ(fs->nodes().nodes(), 2u);
  ASSERT_TRUE(fs->Unlink(kRootIno, "f").ok());
  EXPECT_EQ(fs->nodes().nodes(), 2u) << "the kernel still holds lookups";
  EXPECT_EQ(NodeOf(*fs, file).nlink, 0u);
  fs->Forget(file, 1);
  EXPECT_EQ(fs->nodes().nodes(), 2u) << "one lookup is left";
  fs->Forget(file, 1);
  EXPECT_EQ(fs->nodes().nodes(), 1u);
  EXPECT_FALSE(Live(*fs, file));
}

TEST(NamesTest, UnlinkWithNoLookupsLeftFreesAtOnce) {
  auto fs = MakeFs();
  Ino file = File(*fs, kRootIno, "f");
  fs->Forget(file, 1);
  EXPECT_TRUE(Live(*fs, file));
  ASSERT_TRUE(fs->Unlink(kRootIno, "f").ok());
  EXPECT_FALSE(Live(*fs, file));
  EXPECT_EQ(fs->nodes().nodes(), 1u);
}

TEST(NamesTest, UnlinkedButOpenNodeStaysUntilItsLastUse) {
  auto fs = MakeFs();
  Ino file = File(*fs, kRootIno, "f");
  {
    auto pin = *fs->nodes().Pin(fs->nodes().AddrOf(file), vm::Access::kWrite);
    pin->open_count = 1;  // as Open would count (data.cc)
  }
  ASSERT_TRUE(fs->Unlink(kRootIno, "f").ok());
  fs->Forget(file, 1);
  EXPECT_TRUE(Live(*fs, file)) << "an open file outlives its last name and lookup";
}

// ---- mknod ----

TEST(NamesTest, MknodMakesFilesFifosSocketsAndDevices) {
  auto fs = MakeFs();
  const dev_t dev = makedev(8, 1);
  Attr reg = *fs->Mknod(kUser, kRootIno, "reg", S_IFREG | 0600, 0);
  Attr fifo = *fs->Mknod(kUser, kRootIno, "fifo", S_IFIFO | 0600, 0);
  Attr sock = *fs->Mknod(kUser, kRootIno, "sock", S_IFSOCK | 0600, 0);
  Attr chr = *fs->Mknod(kUser, kRootIno, "chr", S_IFCHR | 0600, dev);
  Attr blk = *fs->Mknod(kUser, kRootIno, "blk", S_IFBLK | 0600, dev);
  Attr untyped = *fs->Mknod(kUser, kRootIno, "untyped", 0600, 0);
  EXPECT_EQ(reg.mode, S_IFREG | 0600u);
  EXPECT_EQ(fifo.mode, S_IFIFO | 0600u);
  EXPECT_EQ(sock.mode, S_IFSOCK | 0600u);
  EXPECT_EQ(chr.mode, S_IFCHR | 0600u);
  EXPECT_EQ(chr.rdev, dev);
  EXPECT_EQ(blk.mode, S_IFBLK | 0600u);
  EXPECT_EQ(blk.rdev, dev);
  EXPECT_EQ(untyped.mode, S_IFREG | 0600u) << "mknod with no type makes a regular file";
  for (const Attr& attr : {reg, fifo, sock, chr, blk}) {
    EXPECT_EQ(attr.nlink, 1u);
    EXPECT_EQ(attr.uid, 1000u);
    EXPECT_EQ(attr.gid, 1000u);
    EXPECT_EQ(attr.size, 0u);
  }
  auto entries = List(*fs, kRootIno);
  EXPECT_EQ(entries.size(), 8u);  // . .. and six
}

TEST(NamesTest, MknodOfDirectoryOrSymlinkTypeIsEINVAL) {
  auto fs = MakeFs();
  EXPECT_EQ(Errno(fs->Mknod(kUser, kRootIno, "d", S_IFDIR | 0755, 0)), EINVAL);
  EXPECT_EQ(Errno(fs->Mknod(kUser, kRootIno, "l", S_IFLNK | 0777, 0)), EINVAL);
  EXPECT_EQ(fs->nodes().nodes(), 1u);
}

TEST(NamesTest, MknodOfExistingNameIsEEXIST) {
  auto fs = MakeFs();
  File(*fs, kRootIno, "f");
  const uint64_t nodes = fs->nodes().nodes();
  EXPECT_EQ(Errno(fs->Mknod(kUser, kRootIno, "f", S_IFREG | 0644, 0)), EEXIST);
  EXPECT_EQ(Errno(fs->Mkdir(kUser, kRootIno, "f", 0755)), EEXIST);
  EXPECT_EQ(Errno(fs->Symlink(kUser, kRootIno, "f", "t")), EEXIST);
  EXPECT_EQ(fs->nodes().nodes(), nodes) << "a refused create leaves no node behind";
}

TEST(NamesTest, MknodRefusesBadNamesAndNonDirectoryParents) {
  auto fs = MakeFs();
  Ino file = File(*fs, kRootIno, "f");
  EXPECT_EQ(Errno(fs->Mknod(kUser, kRootIno, std::string(256, 'n'), S_IFREG, 0)), ENAMETOOLONG);
  EXPECT_TRUE(fs->Mknod(kUser, kRootIno, std::string(255, 'n'), S_IFREG, 0).ok());
  EXPECT_EQ(Errno(fs->Mknod(kUser, file, "x", S_IFREG, 0)), ENOTDIR);
  EXPECT_EQ(Errno(fs->Mknod(kUser, 999, "x", S_IFREG, 0)), ENOENT);
  EXPECT_EQ(Errno(fs->Mknod(kUser, kRootIno, "", S_IFREG, 0)), EINVAL);
}

TEST(NamesTest, MknodSetsOwnerTimesAndTheParentsTimes) {
  auto fs = MakeFs();
  Ino dir = Dir(*fs, kRootIno, "d");
  const meta::Node before = NodeOf(*fs, dir);
  Attr made = *fs->Mknod(Caller{.uid = 7, .gid = 8}, dir, "f", S_IFREG | 0644, 0);
  EXPECT_EQ(made.uid, 7u);
  EXPECT_EQ(made.gid, 8u);
  const meta::Node after = NodeOf(*fs, dir);
  EXPECT_GE(after.mtime_ns, before.mtime_ns);
  EXPECT_EQ(after.mtime_ns, after.ctime_ns);
  EXPECT_EQ(after.mtime_ns, made.ctime.tv_sec * int64_t{1000000000} + made.ctime.tv_nsec);
  EXPECT_EQ(after.nlink, 2u) << "a file adds no link to its directory";
}

TEST(NamesTest, SetgidDirectoryPassesItsGroupAndSetgidToSubdirectories) {
  auto fs = MakeFs();
  Ino shared = fs->Mkdir(Caller{.uid = 1, .gid = 50}, kRootIno, "shared", 02775)->ino;
  EXPECT_EQ(NodeOf(*fs, shared).mode & S_ISGID, 0u) << "mkdir drops setgid from its mode";
  {
    auto pin = *fs->nodes().Pin(fs->nodes().AddrOf(shared), vm::Access::kWrite);
    pin->mode |= S_ISGID;  // chmod g+s (attributes.cc)
  }
  Attr file = *fs->Mknod(kUser, shared, "f", S_IFREG | 0644, 0);
  EXPECT_EQ(file.gid, 50u);
  EXPECT_EQ(file.mode & S_ISGID, 0u);
  Attr sub = *fs->Mkdir(kUser, shared, "sub", 0755);
  EXPECT_EQ(sub.gid, 50u);
  EXPECT_EQ(sub.mode, S_IFDIR | S_ISGID | 0755u);
  Attr deeper = *fs->Mknod(kUser, sub.ino, "g", S_IFREG | 0644, 0);
  EXPECT_EQ(deeper.gid, 50u) << "setgid is inherited down the tree";
  Attr link = *fs->Symlink(kUser, shared, "l", "f");
  EXPECT_EQ(link.gid, 50u);
  Attr plain = *fs->Mknod(kUser, kRootIno, "p", S_IFREG | 0644, 0);
  EXPECT_EQ(plain.gid, 1000u);
}

TEST(NamesTest, NrInodesLimitIsENOSPC) {
  auto fs = MakeFs(4 << 20, /*max_inodes=*/3);
  Ino a = File(*fs, kRootIno, "a");
  File(*fs, kRootIno, "b");
  EXPECT_EQ(Errno(fs->Mknod(kUser, kRootIno, "c", S_IFREG, 0)), ENOSPC);
  EXPECT_EQ(Errno(fs->Mkdir(kUser, kRootIno, "c", 0755)), ENOSPC);
  EXPECT_EQ(Errno(fs->Symlink(kUser, kRootIno, "c", "target")), ENOSPC);
  EXPECT_EQ(Errno(fs->Lookup(kRootIno, "c")), ENOENT);
  EXPECT_EQ(fs->ReadFigures().dirents, 2u);
  ASSERT_TRUE(fs->Unlink(kRootIno, "a").ok());
  fs->Forget(a, 1);
  EXPECT_TRUE(fs->Mknod(kUser, kRootIno, "c", S_IFREG, 0).ok());
}

// ---- mkdir and rmdir ----

TEST(NamesTest, DirectoryNlinkIsTwoPlusSubdirectories) {
  auto fs = MakeFs();
  Attr dir = *fs->Mkdir(kUser, kRootIno, "d", 0755);
  EXPECT_EQ(dir.mode, S_IFDIR | 0755u);
  EXPECT_EQ(dir.nlink, 2u);
  EXPECT_EQ(NodeOf(*fs, kRootIno).nlink, 3u);
  EXPECT_EQ(NodeOf(*fs, dir.ino).dir.parent, kRootIno);
  for (int i = 0; i < 5; ++i) Dir(*fs, dir.ino, absl::StrCat("sub", i));
  File(*fs, dir.ino, "file");
  EXPECT_EQ(NodeOf(*fs, dir.ino).nlink, 7u);
  ASSERT_TRUE(fs->Rmdir(dir.ino, "sub0").ok());
  EXPECT_EQ(NodeOf(*fs, dir.ino).nlink, 6u);
  ASSERT_TRUE(fs->Unlink(dir.ino, "file").ok());
  EXPECT_EQ(NodeOf(*fs, dir.ino).nlink, 6u);
}

TEST(NamesTest, MkdirAtTheLinkLimitIsEMLINK) {
  auto fs = MakeFs();
  Ino dir = Dir(*fs, kRootIno, "d");
  SetNlink(*fs, dir, 0xFFFFFFFE);
  EXPECT_EQ(Errno(fs->Mkdir(kUser, dir, "sub", 0755)), EMLINK);
  EXPECT_TRUE(fs->Mknod(kUser, dir, "file", S_IFREG | 0644, 0).ok()) << "files add no link";
  SetNlink(*fs, dir, 0xFFFFFFFD);
  EXPECT_TRUE(fs->Mkdir(kUser, dir, "sub", 0755).ok());
}

TEST(NamesTest, RmdirOfNonEmptyDirectoryIsENOTEMPTY) {
  auto fs = MakeFs();
  Ino dir = Dir(*fs, kRootIno, "d");
  File(*fs, dir, "f");
  EXPECT_EQ(Errno(fs->Rmdir(kRootIno, "d")), ENOTEMPTY);
  ASSERT_TRUE(fs->Unlink(dir, "f").ok());
  EXPECT_TRUE(fs->Rmdir(kRootIno, "d").ok());
}

TEST(NamesTest, RmdirOfAFileIsENOTDIRAndOfNothingENOENT) {
  auto fs = MakeFs();
  Ino file = File(*fs, kRootIno, "f");
  EXPECT_EQ(Errno(fs->Rmdir(kRootIno, "f")), ENOTDIR);
  EXPECT_EQ(Errno(fs->Rmdir(kRootIno, "none")), ENOENT);
  EXPECT_EQ(Errno(fs->Rmdir(file, "x")), ENOTDIR);
  EXPECT_EQ(Errno(fs->Rmdir(kRootIno, ".")), EINVAL);
}

TEST(NamesTest, RmdirDropsAllLinksAndTheNodeGoesAtLastForget) {
  auto fs = MakeFs();
  Ino dir = Dir(*fs, kRootIno, "d");
  ASSERT_TRUE(fs->Rmdir(kRootIno, "d").ok());
  EXPECT_EQ(NodeOf(*fs, dir).nlink, 0u);
  EXPECT_EQ(NodeOf(*fs, kRootIno).nlink, 2u);
  EXPECT_EQ(Errno(fs->Lookup(kRootIno, "d")), ENOENT);
  EXPECT_EQ(fs->nodes().nodes(), 2u);
  fs->Forget(dir, 1);
  EXPECT_EQ(fs->nodes().nodes(), 1u);
}

TEST(NamesTest, CreatingInARemovedDirectoryIsENOENT) {
  auto fs = MakeFs();
  Ino dir = Dir(*fs, kRootIno, "d");  // the kernel keeps its lookup: the cwd of someone
  ASSERT_TRUE(fs->Rmdir(kRootIno, "d").ok());
  EXPECT_EQ(Errno(fs->Mknod(kUser, dir, "f", S_IFREG | 0644, 0)), ENOENT);
  EXPECT_EQ(Errno(fs->Mkdir(kUser, dir, "s", 0755)), ENOENT);
  EXPECT_EQ(Errno(fs->Lookup(dir, "..")), ENOENT);
  auto entries = List(*fs, dir);
  EXPECT_EQ(entries.size(), 2u);
}

// ---- symlink and readlink ----

TEST(NamesTest, SymlinkStoresItsTargetAndReadlinkReturnsIt) {
  auto fs = MakeFs();
  Attr link = *fs->Symlink(kUser, kRootIno, "l", "some/where");
  EXPECT_EQ(link.mode, S_IFLNK | 0777u);
  EXPECT_EQ(link.size, 10u);
  EXPECT_EQ(link.nlink, 1u);
  EXPECT_EQ(*fs->Readlink(link.ino), "some/where");
  const std::string longest(4095, 'x');
  Attr long_link = *fs->Symlink(kUser, kRootIno, "long", longest);
  EXPECT_EQ(long_link.size, 4095u);
  EXPECT_EQ(*fs->Readlink(long_link.ino), longest);
}

TEST(NamesTest, SymlinkTargetOf4096BytesIsENAMETOOLONGAndEmptyENOENT) {
  auto fs = MakeFs();
  EXPECT_EQ(Errno(fs->Symlink(kUser, kRootIno, "l", std::string(4096, 'x'))), ENAMETOOLONG);
  EXPECT_EQ(Errno(fs->Symlink(kUser, kRootIno, "l", "")), ENOENT);
  EXPECT_EQ(fs->nodes().nodes(), 1u);
}

TEST(NamesTest, RefusedSymlinkFreesItsTarget) {
  auto fs = MakeFs();
  File(*fs, kRootIno, "f");
  (void)fs->Symlink(kUser, kRootIno, "warm", std::string(3000, 'w'));  // pools warm
  const uint64_t items = fs->nodes().kmem().items_in_use();
  EXPECT_EQ(Errno(fs->Symlink(kUser, kRootIno, "f", std::string(3000, 'x'))), EEXIST);
  EXPECT_EQ(fs->nodes().kmem().items_in_use(), items);
}

TEST(NamesTest, ReadlinkOfANonSymlinkIsEINVAL) {
  auto fs = MakeFs();
  Ino file = File(*fs, kRootIno, "f");
  EXPECT_EQ(Errno(fs->Readlink(file)), EINVAL);
  EXPECT_EQ(Errno(fs->Readlink(kRootIno)), EINVAL);
}

TEST(NamesTest, SymlinkTargetIsFreedWithTheNode) {
  auto fs = MakeFs();
  Ino link = fs->Symlink(kUser, kRootIno, "l", std::string(2000, 't'))->ino;
  const uint64_t items = fs->nodes().kmem().items_in_use();
  ASSERT_TRUE(fs->Unlink(kRootIno, "l").ok());
  fs->Forget(link, 1);
  EXPECT_LT(fs->nodes().kmem().items_in_use(), items);
}

// ---- link and unlink ----

TEST(NamesTest, LinkAddsANameCountsNlinkAndALookup) {
  auto fs = MakeFs();
  Ino file = File(*fs, kRootIno, "f");
  Ino dir = Dir(*fs, kRootIno, "d");
  const meta::Node before = NodeOf(*fs, file);
  Attr linked = *fs->Link(file, dir, "g");
  EXPECT_EQ(linked.ino, file);
  EXPECT_EQ(linked.nlink, 2u);
  const meta::Node after = NodeOf(*fs, file);
  EXPECT_EQ(after.lookup_count, 2u);
  EXPECT_GE(after.ctime_ns, before.ctime_ns);
  EXPECT_EQ(NodeOf(*fs, dir).mtime_ns, after.ctime_ns);
  EXPECT_EQ(fs->Lookup(dir, "g")->ino, file);
  ASSERT_TRUE(fs->Unlink(kRootIno, "f").ok());
  EXPECT_EQ(NodeOf(*fs, file).nlink, 1u);
  fs->Forget(file, 3);
  EXPECT_TRUE(Live(*fs, file)) << "one name is left";
  ASSERT_TRUE(fs->Unlink(dir, "g").ok());
  EXPECT_FALSE(Live(*fs, file));
}

TEST(NamesTest, LinkOfADirectoryIsEPERM) {
  auto fs = MakeFs();
  Ino dir = Dir(*fs, kRootIno, "d");
  EXPECT_EQ(Errno(fs->Link(dir, kRootIno, "e")), EPERM);
}

TEST(NamesTest, LinkToAnExistingNameIsEEXIST) {
  auto fs = MakeFs();
  Ino file = File(*fs, kRootIno, "f");
  File(*fs, kRootIno, "g");
  EXPECT_EQ(Errno(fs->Link(file, kRootIno, "g")), EEXIST);
  EXPECT_EQ(Errno(fs->Link(file, kRootIno, "f")), EEXIST);
  EXPECT_EQ(NodeOf(*fs, file).nlink, 1u);
}

TEST(NamesTest, LinkAtTheLimitIsEMLINK) {
  auto fs = MakeFs();
  Ino file = File(*fs, kRootIno, "f");
  SetNlink(*fs, file, 0xFFFFFFFE);
  EXPECT_EQ(Errno(fs->Link(file, kRootIno, "g")), EMLINK);
}

TEST(NamesTest, LinkOfAnUnlinkedFileIsENOENTAndIntoAFileENOTDIR) {
  auto fs = MakeFs();
  Ino file = File(*fs, kRootIno, "f");
  Ino other = File(*fs, kRootIno, "o");
  EXPECT_EQ(Errno(fs->Link(file, other, "g")), ENOTDIR);
  ASSERT_TRUE(fs->Unlink(kRootIno, "f").ok());
  EXPECT_EQ(Errno(fs->Link(file, kRootIno, "g")), ENOENT);
}

TEST(NamesTest, UnlinkRemovesTheNameDropsNlinkAndSetsTimes) {
  auto fs = MakeFs();
  Ino dir = Dir(*fs, kRootIno, "d");
  Ino file = File(*fs, dir, "f");
  const meta::Node before = NodeOf(*fs, file);
  ASSERT_TRUE(fs->Unlink(dir, "f").ok());
  const meta::Node after = NodeOf(*fs, file);
  EXPECT_EQ(after.nlink, 0u);
  EXPECT_GE(after.ctime_ns, before.ctime_ns);
  EXPECT_EQ(NodeOf(*fs, dir).mtime_ns, after.ctime_ns);
  EXPECT_EQ(NodeOf(*fs, dir).ctime_ns, after.ctime_ns);
  EXPECT_EQ(Errno(fs->Lookup(dir, "f")), ENOENT);
  EXPECT_EQ(Errno(fs->Unlink(dir, "f")), ENOENT);
}

TEST(NamesTest, UnlinkOfADirectoryIsEISDIR) {
  auto fs = MakeFs();
  Dir(*fs, kRootIno, "d");
  EXPECT_EQ(Errno(fs->Unlink(kRootIno, "d")), EISDIR);
  EXPECT_TRUE(fs->Lookup(kRootIno, "d").ok());
}

TEST(NamesTest, UnlinkInAFileIsENOTDIR) {
  auto fs = MakeFs();
  Ino file = File(*fs, kRootIno, "f");
  EXPECT_EQ(Errno(fs->Unlink(file, "x")), ENOTDIR);
}

TEST(NamesTest, DirentsCounterFollowsEntries) {
  auto fs = MakeFs();
  Ino dir = Dir(*fs, kRootIno, "d");
  Ino file = File(*fs, dir, "f");
  (void)fs->Link(file, kRootIno, "g");
  (void)fs->Symlink(kUser, dir, "l", "f");
  EXPECT_EQ(fs->ReadFigures().dirents, 4u);
  ASSERT_TRUE(fs->Unlink(dir, "f").ok());
  ASSERT_TRUE(fs->Unlink(dir, "l").ok());
  EXPECT_EQ(fs->ReadFigures().dirents, 2u);
  ASSERT_TRUE(fs->Rmdir(kRootIno, "d").ok());
  EXPECT_EQ(fs->ReadFigures().dirents, 1u);
}

// ---- readdir ----

TEST(NamesTest, ReadDirListsDotDotDotAndEveryEntryWithItsType) {
  auto fs = MakeFs();
  Ino dir = Dir(*fs, kRootIno, "d");
  Ino file = File(*fs, dir, "file");
  Ino sub = Dir(*fs, dir, "sub");
  Ino link = fs->Symlink(kUser, dir, "link", "file")->ino;
  Ino fifo = fs->Mknod(kUser, dir, "fifo", S_IFIFO | 0600, 0)->ino;
  std::map<std::string, std::pair<Ino, uint32_t>> seen;
  std::vector<uint64_t> offsets;
  ASSERT_TRUE(fs->ReadDir(dir, 0, [&](const DirEntry& entry) {
                  seen[std::string(entry.name.data(), entry.name.size())] = {entry.ino, entry.type};
                  offsets.push_back(entry.next_offset);
                  return true;
                }).ok());
  using Entry = std::pair<Ino, uint32_t>;
  EXPECT_EQ(seen["."], (Entry{dir, DT_DIR}));
  EXPECT_EQ(seen[".."], (Entry{kRootIno, DT_DIR}));
  EXPECT_EQ(seen["file"], (Entry{file, DT_REG}));
  EXPECT_EQ(seen["sub"], (Entry{sub, DT_DIR}));
  EXPECT_EQ(seen["link"], (Entry{link, DT_LNK}));
  EXPECT_EQ(seen["fifo"], (Entry{fifo, DT_FIFO}));
  EXPECT_EQ(seen.size(), 6u);
  ASSERT_EQ(offsets.size(), 6u);
  EXPECT_EQ(offsets[0], 1u);
  EXPECT_EQ(offsets[1], 2u);
  for (size_t i = 2; i < offsets.size(); ++i) {
    EXPECT_GT(offsets[i], offsets[i - 1]) << "offsets grow along the walk";
  }
}

TEST(NamesTest, ReadDirResumesAtEveryOffsetItReturned) {
  auto fs = MakeFs();
  for (int i = 0; i < 300; ++i) File(*fs, kRootIno, absl::StrCat("f", i));
  std::vector<std::pair<std::string, uint64_t>> all;
  ASSERT_TRUE(fs->ReadDir(kRootIno, 0, [&](const DirEntry& entry) {
                  all.emplace_back(std::string(entry.name.data(), entry.name.size()),
                                   entry.next_offset);
                  return true;
                }).ok());
  ASSERT_EQ(all.size(), 302u);
  // Resume one entry at a time, as getdents with a tiny buffer does.
  std::vector<std::string> one_by_one;
  uint64_t offset = 0;
  for (;;) {
    bool got = false;
    ASSERT_TRUE(fs->ReadDir(kRootIno, offset, [&](const DirEntry& entry) {
                    one_by_one.emplace_back(entry.name.data(), entry.name.size());
                    offset = entry.next_offset;
                    got = true;
                    return false;  // buffer full
                  }).ok());
    if (!got) break;
  }
  ASSERT_EQ(one_by_one.size(), all.size());
  for (size_t i = 0; i < all.size(); ++i) EXPECT_EQ(one_by_one[i], all[i].first);
}

TEST(NamesTest, ReadDirOffsetsStayStableWhileEntriesAreAddedAndRemoved) {
  auto fs = MakeFs();
  for (int i = 0; i < 500; ++i) File(*fs, kRootIno, absl::StrCat("keep", i));
  for (int i = 0; i < 500; ++i) File(*fs, kRootIno, absl::StrCat("drop", i));
  auto before = List(*fs, kRootIno);
  // Walk in chunks of 37 while adding and removing other names between chunks.
  std::multiset<std::string> seen;
  uint64_t offset = 0;
  int round = 0;
  for (;;) {
    int emitted = 0;
    ASSERT_TRUE(fs->ReadDir(kRootIno, offset, [&](const DirEntry& entry) {
                    if (emitted == 37) return false;
                    ++emitted;
                    seen.emplace(entry.name.data(), entry.name.size());
                    offset = entry.next_offset;
                    return true;
                  }).ok());
    if (emitted == 0) break;
    for (int i = 0; i < 10; ++i) {
      const int victim = round * 10 + i;
      if (victim < 500) {
        ASSERT_TRUE(fs->Unlink(kRootIno, absl::StrCat("drop", victim)).ok());
      }
      File(*fs, kRootIno, absl::StrCat("new", round, "_", i));
    }
    ++round;
  }
  for (int i = 0; i < 500; ++i) {
    EXPECT_EQ(seen.count(absl::StrCat("keep", i)), 1u) << "keep" << i;
  }
  for (const auto& name : seen) EXPECT_EQ(seen.count(name), 1u) << name << " returned twice";
  // An untouched entry keeps its offset.
  auto after = List(*fs, kRootIno);
  for (int i = 0; i < 500; ++i) {
    const std::string name = absl::StrCat("keep", i);
    EXPECT_EQ(after[name], before[name]) << name;
  }
}

TEST(NamesTest, ReadDirOfAFileIsENOTDIR) {
  auto fs = MakeFs();
  Ino file = File(*fs, kRootIno, "f");
  EXPECT_EQ(Errno(fs->ReadDir(file, 0, [](const DirEntry&) { return true; })), ENOTDIR);
}

TEST(NamesTest, ReadDirStopsWhenEmitReturnsFalse) {
  auto fs = MakeFs();
  for (int i = 0; i < 10; ++i) File(*fs, kRootIno, absl::StrCat("f", i));
  int calls = 0;
  ASSERT_TRUE(fs->ReadDir(kRootIno, 0, [&](const DirEntry&) { return ++calls < 3; }).ok());
  EXPECT_EQ(calls, 3);
  // From offset 2: no "." nor "..".
  auto rest = List(*fs, kRootIno, 2);
  EXPECT_EQ(rest.size(), 10u);
  EXPECT_EQ(rest.count("."), 0u);
}

TEST(NamesTest, ReadDirPlusCountsALookupPerEntryFromInsideEmit) {
  auto fs = MakeFs();
  Ino dir = Dir(*fs, kRootIno, "d");
  std::vector<Ino> files;
  for (int i = 0; i < 200; ++i) files.push_back(File(*fs, dir, absl::StrCat("f", i)));
  int counted = 0;
  // Emit calls back into the core, as the FUSE adapter's readdirplus may.
  ASSERT_TRUE(fs->ReadDir(dir, 2, [&](const DirEntry& entry) {
                  absl::StatusOr<Attr> attr = fs->LookupForReadDirPlus(dir, entry.name, entry.ino);
                  EXPECT_TRUE(attr.ok()) << attr.status();
                  EXPECT_EQ(attr->ino, entry.ino);
                  ++counted;
                  return true;
                }).ok());
  EXPECT_EQ(counted, 200);
  for (Ino file : files) EXPECT_EQ(NodeOf(*fs, file).lookup_count, 2u);
  EXPECT_EQ(Errno(fs->LookupForReadDirPlus(dir, "f0", 99999)), ENOENT);
}

// readdirplus looks its entries up after reading them, with no lock held in between:
// the node may be freed meanwhile and its number given to a new file. The entry must
// not come back with the new file's attributes (nor count a lookup on it).
TEST(NamesTest, ReadDirPlusSkipsAnEntryWhoseNumberWasReusedMeanwhile) {
  auto fs = MakeFs();
  Ino dir = Dir(*fs, kRootIno, "d");
  Ino old_file = File(*fs, dir, "old");
  std::vector<DirEntry> read;
  std::string names;  // keeps the names emit saw alive
  ASSERT_TRUE(fs->ReadDir(dir, 2, [&](const DirEntry& entry) {
                  names.append(entry.name.data(), entry.name.size());
                  read.push_back(entry);
                  return true;
                }).ok());
  ASSERT_EQ(read.size(), 1u);
  ASSERT_EQ(read[0].ino, old_file);
  // Between the read and the lookup: "old" goes, and "new" (elsewhere) takes its number.
  ASSERT_TRUE(fs->Unlink(dir, "old").ok());
  fs->Forget(old_file, 1);
  Ino new_file = File(*fs, kRootIno, "new");
  ASSERT_EQ(new_file, old_file) << "the freed number is taken again (lowest free item)";
  const uint64_t generation = NodeOf(*fs, new_file).generation;

  absl::StatusOr<Attr> attr = fs->LookupForReadDirPlus(dir, names, read[0].ino);
  EXPECT_EQ(Errno(attr), ENOENT) << "returned the new file as the old entry";
  EXPECT_EQ(NodeOf(*fs, new_file).lookup_count, 1u) << "a lookup counted on the new file";
  EXPECT_EQ(NodeOf(*fs, new_file).generation, generation);
  // The same number under the same name again is that name's node now: found.
  ASSERT_TRUE(fs->Rename(kUser, kRootIno, "new", dir, "old", 0).ok());
  attr = fs->LookupForReadDirPlus(dir, "old", new_file);
  ASSERT_TRUE(attr.ok()) << attr.status();
  EXPECT_EQ(attr->generation, generation);
  EXPECT_EQ(NodeOf(*fs, new_file).lookup_count, 2u);
}

// ---- scale and paging ----

TEST(NamesTest, TenThousandEntriesInOneDirectoryWithAOneMebibyteBudget) {
  auto fs = MakeFs(1 << 20);
  Ino dir = Dir(*fs, kRootIno, "big");
  constexpr int kFiles = 10000;
  std::vector<Ino> inos;
  inos.reserve(kFiles);
  for (int i = 0; i < kFiles; ++i) {
    absl::StatusOr<Attr> attr =
        fs->Mknod(kUser, dir, absl::StrCat("a-fairly-long-file-name-number-", i), S_IFREG, 0);
    ASSERT_TRUE(attr.ok()) << i << ": " << attr.status();
    inos.push_back(attr->ino);
  }
  EXPECT_EQ(fs->nodes().nodes(), kFiles + 2u);
  EXPECT_GT(fs->vm().ReadStats().pageouts, 0u) << "metadata went beyond 1 MiB";
  for (int i = 0; i < kFiles; i += 7) {
    absl::StatusOr<Attr> found =
        fs->Lookup(dir, absl::StrCat("a-fairly-long-file-name-number-", i));
    ASSERT_TRUE(found.ok()) << found.status();
    EXPECT_EQ(found->ino, inos[i]);
  }
  uint64_t listed = 0;
  ASSERT_TRUE(fs->ReadDir(dir, 2, [&](const DirEntry&) { return ++listed > 0; }).ok());
  EXPECT_EQ(listed, static_cast<uint64_t>(kFiles));
  EXPECT_EQ(Errno(fs->Rmdir(kRootIno, "big")), ENOTEMPTY);
  for (int i = 0; i < kFiles; ++i) {
    ASSERT_TRUE(fs->Unlink(dir, absl::StrCat("a-fairly-long-file-name-number-", i)).ok()) << i;
    fs->Forget(inos[i], i % 7 == 0 ? 2 : 1);
  }
  EXPECT_EQ(fs->nodes().nodes(), 2u);
  EXPECT_TRUE(fs->Rmdir(kRootIno, "big").ok());
  fs->Forget(dir, 1);
  EXPECT_EQ(fs->nodes().nodes(), 1u);
  EXPECT_EQ(fs->ReadFigures().dirents, 0u);
}

// ---- concurrency ----

// nr_inodes holds with creators in different directories at once: each takes a
// different stripe, so nothing but the count itself can keep them under the limit.
TEST(NamesTest, ConcurrentCreatorsInDifferentDirectoriesNeverPassNrInodes) {
  constexpr int kThreads = 8;
  constexpr uint64_t kMaxInodes = 64;
  constexpr int kRounds = 200;
  for (int round = 0; round < kRounds; ++round) {
    auto fs = MakeFs(4 << 20, kMaxInodes);
    std::vector<Ino> dirs;
    for (int t = 0; t < kThreads; ++t) dirs.push_back(Dir(*fs, kRootIno, absl::StrCat("d", t)));
    std::atomic<int> ready{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        ready.fetch_add(1);
        while (ready.load() < kThreads) std::this_thread::yield();
        for (int i = 0;; ++i) {
          absl::StatusOr<Attr> made =
              fs->Mknod(kUser, dirs[t], absl::StrCat("f", i), S_IFREG | 0644, 0);
          if (!made.ok()) {
            EXPECT_EQ(Errno(made), ENOSPC);
            return;
          }
        }
      });
    }
    for (auto& thread : threads) thread.join();
    ASSERT_EQ(fs->nodes().nodes(), kMaxInodes) << "round " << round;
    EXPECT_EQ(fs->StatFs().f_ffree, 0u);
    // A node freed gives its number back, exactly one.
    int t = 0;
    absl::StatusOr<Attr> f0;
    while (!(f0 = fs->Lookup(dirs[t], "f0")).ok()) ASSERT_LT(++t, kThreads);
    ASSERT_TRUE(fs->Unlink(dirs[t], "f0").ok());
    fs->Forget(f0->ino, 2);
    EXPECT_TRUE(fs->Mknod(kUser, dirs[1], "again", S_IFREG | 0644, 0).ok());
    EXPECT_EQ(Errno(fs->Mknod(kUser, dirs[1], "more", S_IFREG | 0644, 0)), ENOSPC);
  }
}

TEST(NamesTest, ConcurrentCreatesLookupsAndUnlinksKeepCountsExact) {
  auto fs = MakeFs();
  Ino dir = Dir(*fs, kRootIno, "d");
  constexpr int kThreads = 4;
  constexpr int kRounds = 300;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int r = 0; r < kRounds; ++r) {
        const std::string name = absl::StrCat("t", t, "_", r % 16);
        const std::string shared = absl::StrCat("shared", r % 8);
        if (absl::StatusOr<Attr> made = fs->Mknod(kUser, dir, name, S_IFREG | 0644, 0); made.ok()) {
          fs->Forget(made->ino, 1);
        }
        // Everyone races on the shared names.
        if (absl::StatusOr<Attr> made = fs->Mknod(kUser, dir, shared, S_IFREG | 0644, 0);
            made.ok()) {
          fs->Forget(made->ino, 1);
        }
        if (absl::StatusOr<Attr> found = fs->Lookup(dir, shared); found.ok()) {
          fs->Forget(found->ino, 1);
        }
        (void)fs->Unlink(dir, shared);
        if (r % 3 == 0) (void)fs->Unlink(dir, name);
      }
    });
  }
  for (auto& thread : threads) thread.join();
  // Remove what is left; with every lookup forgotten, only root and d remain.
  std::vector<std::string> left;
  for (const auto& [name, entry] : List(*fs, dir, 2)) left.push_back(name);
  for (const auto& name : left) ASSERT_TRUE(fs->Unlink(dir, name).ok()) << name;
  EXPECT_EQ(fs->nodes().nodes(), 2u);
  EXPECT_EQ(fs->ReadFigures().dirents, 1u);
}

// Lookup and Unlink lock the entry's node after its directory. When the node's lock
// comes first in lock order and is busy (here: a rename replacing it), they take both
// in order and look again: the name may then lead to another node.
TEST(NamesTest, LookupsAndUnlinksRacingRenamesOverTheNameGetTheNodeItNamesNow) {
  auto fs = MakeFs();
  const Ino dir = Dir(*fs, kRootIno, "d");
  fs->Forget(File(*fs, dir, "x"), 1);
  constexpr int kRounds = 10000;
  std::atomic<bool> failed{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&, t] {  // replace "x" with a new file, over and over
      const std::string source = absl::StrCat("new", t);
      for (int r = 0; r < kRounds && !failed; ++r) {
        absl::StatusOr<Attr> made = fs->Mknod(kUser, dir, source, S_IFREG | 0644, 0);
        if (!made.ok() || !fs->Rename(kUser, dir, source, dir, "x", 0).ok()) failed = true;
        if (made.ok()) fs->Forget(made->ino, 1);
      }
    });
  }
  threads.emplace_back([&] {  // "x" names a file with one link, or nothing
    for (int r = 0; r < kRounds && !failed; ++r) {
      absl::StatusOr<Attr> found = fs->Lookup(dir, "x");
      if (!found.ok()) {
        if (Errno(found) != ENOENT) failed = true;
        continue;
      }
      if (found->nlink != 1 || !S_ISREG(found->mode)) failed = true;
      fs->Forget(found->ino, 1);
    }
  });
  threads.emplace_back([&] {  // unlinks whichever file "x" names; ENOENT in between
    for (int r = 0; r < kRounds && !failed; ++r) {
      absl::Status removed = fs->Unlink(dir, "x");
      if (!removed.ok() && Errno(removed) != ENOENT) failed = true;
    }
  });
  for (std::thread& thread : threads) thread.join();
  EXPECT_FALSE(failed);
  // Every replaced or unlinked file was freed: the root, d, and at most "x" remain.
  (void)fs->Unlink(dir, "x");
  EXPECT_EQ(fs->nodes().nodes(), 2u);
  EXPECT_EQ(fs->ReadFigures().dirents, 1u);
}

}  // namespace
}  // namespace ptmpfs::fs

namespace ptmpfs::fs {
namespace {

uint64_t UsedBlocks(Tmpfs& fs) {
  const struct statvfs st = fs.StatFs();
  return st.f_blocks - st.f_bfree;
}

// Creates `count` files in a new directory `name` of the root; returns it.
Ino ManyFiles(Tmpfs& fs, absl::string_view name, int count) {
  const Ino dir = Dir(fs, kRootIno, name);
  for (int i = 0; i < count; ++i) {
    absl::StatusOr<Attr> attr = fs.Mknod(kUser, dir, absl::StrCat("f", i), S_IFREG | 0644, 0);
    if (!attr.ok()) {
      ADD_FAILURE() << i << ": " << attr.status();
      break;
    }
  }
  return dir;
}

// Unlinks and forgets f0..f{count-1} of `dir`, then the directory itself.
void RemoveAll(Tmpfs& fs, absl::string_view name, Ino dir, int count) {
  for (int i = 0; i < count; ++i) {
    const std::string file = absl::StrCat("f", i);
    absl::StatusOr<Attr> attr = fs.Lookup(dir, file);
    ASSERT_TRUE(attr.ok()) << file << ": " << attr.status();
    ASSERT_TRUE(fs.Unlink(dir, file).ok()) << file;
    fs.Forget(attr->ino, 2);  // Mknod's lookup and ours
  }
  ASSERT_TRUE(fs.Rmdir(kRootIno, name).ok());
  fs.Forget(dir, 1);
}

TEST(NamesTest, DeletedFilesGiveTheirSpaceBack) {
  std::unique_ptr<Tmpfs> fs = MakeFs();
  const uint64_t empty = UsedBlocks(*fs);
  constexpr int kFiles = 20000;  // about 4 MiB of nodes and entries: pages out too
  const Ino dir = ManyFiles(*fs, "d", kFiles);
  const uint64_t full = UsedBlocks(*fs);
  EXPECT_GT(full, empty + 512) << "20,000 files should take some megabytes";
  RemoveAll(*fs, "d", dir, kFiles);
  // The pools keep a couple of empty pages each for reuse, nothing more.
  EXPECT_LT(UsedBlocks(*fs), empty + 128) << "before " << empty << ", full " << full;
}

TEST(NamesTest, AWriteAfterDeletingEverythingFindsTheSpace) {
  Tmpfs::Options options;
  options.vm.ram_bytes = 8 << 20;  // and no swap: all resident, the test is about charges
  options.vm.noswap = true;
  absl::StatusOr<std::unique_ptr<Tmpfs>> made = Tmpfs::Create(options);
  ASSERT_TRUE(made.ok()) << made.status();
  Tmpfs& fs = **made;
  // Fill the filesystem with files, then delete them all.
  const Ino dir = Dir(fs, kRootIno, "d");
  int files = 0;
  for (;; ++files) {
    absl::StatusOr<Attr> attr = fs.Mknod(kUser, dir, absl::StrCat("f", files), S_IFREG | 0644, 0);
    if (!attr.ok()) {
      ASSERT_EQ(Errno(attr), ENOSPC) << attr.status();
      break;
    }
  }
  ASSERT_GT(files, 1000);
  RemoveAll(fs, "d", dir, files);
  // Half of the budget in data: it fits once the empty pool pages are given back.
  const Ino file = File(fs, kRootIno, "data");
  std::string data(4 << 20, 'x');
  const iovec buffer{data.data(), data.size()};
  absl::StatusOr<uint64_t> written =
      fs.Write(kUser, file, 0, absl::Span<const iovec>(&buffer, 1), 0);
  ASSERT_TRUE(written.ok()) << written.status();
  EXPECT_EQ(*written, data.size());
}

}  // namespace
}  // namespace ptmpfs::fs
