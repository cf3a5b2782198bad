// rename_test: rename and renameat2's flags on the tmpfs core, driven directly (no
// FUSE), against Linux tmpfs (shmem_rename2).
#include <dirent.h>
#include <sys/stat.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "fs/errno_status.h"
#include "fs/tmpfs.h"
#include "gtest/gtest.h"
#include "test/fs/test_tmpfs.h"

namespace ptmpfs::fs {
namespace {

constexpr Caller kUser{.uid = 1000, .gid = 1000};

std::unique_ptr<Tmpfs> MakeFs() { return MakeTestTmpfs(); }

// The node's fields, read straight from the node store (GetAttr is attributes.cc's).
meta::Node NodeOf(Tmpfs& fs, Ino ino) {
  auto pin = fs.nodes().Pin(fs.nodes().AddrOf(ino), vm::Access::kRead);
  EXPECT_TRUE(pin.ok()) << pin.status();
  return **pin;
}

bool Live(Tmpfs& fs, Ino ino) { return fs.nodes().ResolveIno(ino).ok(); }

int Errno(const absl::Status& status) { return ToErrno(status); }

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

// The inode a name resolves to, 0 if none. The lookup it counts is forgotten again.
Ino Resolve(Tmpfs& fs, Ino parent, absl::string_view name) {
  absl::StatusOr<Attr> attr = fs.Lookup(parent, name);
  if (!attr.ok()) return 0;
  fs.Forget(attr->ino, 1);
  return attr->ino;
}

// name -> (ino, next offset) of every entry but "." and "..".
std::map<std::string, std::pair<Ino, uint64_t>> List(Tmpfs& fs, Ino dir) {
  std::map<std::string, std::pair<Ino, uint64_t>> entries;
  EXPECT_TRUE(fs.ReadDir(dir, 2, [&](const DirEntry& entry) {
                  entries[std::string(entry.name.data(), entry.name.size())] = {entry.ino,
                                                                                entry.next_offset};
                  return true;
                }).ok());
  return entries;
}

// ---- plain rename ----

TEST(RenameTest, RenameMovesAFileWithinADirectory) {
  auto fs = MakeFs();
  Ino file = File(*fs, kRootIno, "a");
  const meta::Node before = NodeOf(*fs, file);
  ASSERT_TRUE(fs->Rename(kUser, kRootIno, "a", kRootIno, "b", 0).ok());
  EXPECT_EQ(Resolve(*fs, kRootIno, "a"), 0u);
  EXPECT_EQ(Resolve(*fs, kRootIno, "b"), file);
  const meta::Node after = NodeOf(*fs, file);
  EXPECT_EQ(after.nlink, 1u);
  EXPECT_GE(after.ctime_ns, before.ctime_ns);
  EXPECT_EQ(NodeOf(*fs, kRootIno).mtime_ns, after.ctime_ns);
  EXPECT_EQ(NodeOf(*fs, kRootIno).ctime_ns, after.ctime_ns);
  EXPECT_EQ(fs->ReadFigures().dirents, 1u);
  EXPECT_EQ(List(*fs, kRootIno).size(), 1u);
}

TEST(RenameTest, RenameMovesAFileBetweenDirectoriesAndSetsBothDirectoriesTimes) {
  auto fs = MakeFs();
  Ino from = Dir(*fs, kRootIno, "from");
  Ino to = Dir(*fs, kRootIno, "to");
  Ino file = File(*fs, from, "f");
  ASSERT_TRUE(fs->Rename(kUser, from, "f", to, "g", 0).ok());
  EXPECT_EQ(Resolve(*fs, from, "f"), 0u);
  EXPECT_EQ(Resolve(*fs, to, "g"), file);
  const int64_t changed = NodeOf(*fs, file).ctime_ns;
  EXPECT_EQ(NodeOf(*fs, from).mtime_ns, changed);
  EXPECT_EQ(NodeOf(*fs, to).mtime_ns, changed);
  EXPECT_EQ(NodeOf(*fs, from).nlink, 2u) << "a file carries no link between directories";
  EXPECT_EQ(NodeOf(*fs, to).nlink, 2u);
}

TEST(RenameTest, RenameOfAMissingSourceIsENOENT) {
  auto fs = MakeFs();
  Ino dir = Dir(*fs, kRootIno, "d");
  EXPECT_EQ(Errno(fs->Rename(kUser, kRootIno, "none", kRootIno, "x", 0)), ENOENT);
  EXPECT_EQ(Errno(fs->Rename(kUser, dir, "none", kRootIno, "x", 0)), ENOENT);
}

TEST(RenameTest, RenameFromOrIntoAFileIsENOTDIR) {
  auto fs = MakeFs();
  Ino file = File(*fs, kRootIno, "f");
  File(*fs, kRootIno, "g");
  EXPECT_EQ(Errno(fs->Rename(kUser, file, "x", kRootIno, "y", 0)), ENOTDIR);
  EXPECT_EQ(Errno(fs->Rename(kUser, kRootIno, "g", file, "y", 0)), ENOTDIR);
}

TEST(RenameTest, RenameWithBadNamesIsENAMETOOLONGOrEINVAL) {
  auto fs = MakeFs();
  File(*fs, kRootIno, "f");
  EXPECT_EQ(Errno(fs->Rename(kUser, kRootIno, "f", kRootIno, std::string(256, 'x'), 0)),
            ENAMETOOLONG);
  EXPECT_EQ(Errno(fs->Rename(kUser, kRootIno, "f", kRootIno, "..", 0)), EINVAL);
  EXPECT_TRUE(fs->Rename(kUser, kRootIno, "f", kRootIno, std::string(255, 'x'), 0).ok());
}

TEST(RenameTest, RenameIntoARemovedDirectoryIsENOENT) {
  auto fs = MakeFs();
  Ino gone = Dir(*fs, kRootIno, "gone");
  File(*fs, kRootIno, "f");
  ASSERT_TRUE(fs->Rmdir(kRootIno, "gone").ok());
  EXPECT_EQ(Errno(fs->Rename(kUser, kRootIno, "f", gone, "f", 0)), ENOENT);
  EXPECT_NE(Resolve(*fs, kRootIno, "f"), 0u);
}

TEST(RenameTest, RenameToTheSameNameIsANoOp) {
  auto fs = MakeFs();
  Ino file = File(*fs, kRootIno, "f");
  ASSERT_TRUE(fs->Rename(kUser, kRootIno, "f", kRootIno, "f", 0).ok());
  EXPECT_EQ(Resolve(*fs, kRootIno, "f"), file);
  EXPECT_EQ(NodeOf(*fs, file).nlink, 1u);
  EXPECT_EQ(fs->ReadFigures().dirents, 1u);
}

TEST(RenameTest, RenameBetweenTwoHardLinksOfOneNodeIsANoOp) {
  auto fs = MakeFs();
  Ino file = File(*fs, kRootIno, "a");
  ASSERT_TRUE(fs->Link(file, kRootIno, "b").ok());
  ASSERT_TRUE(fs->Rename(kUser, kRootIno, "a", kRootIno, "b", 0).ok());
  EXPECT_EQ(Resolve(*fs, kRootIno, "a"), file) << "POSIX: both names stay";
  EXPECT_EQ(Resolve(*fs, kRootIno, "b"), file);
  EXPECT_EQ(NodeOf(*fs, file).nlink, 2u);
}

// ---- replacing ----

TEST(RenameTest, RenameOverAFileReplacesItKeepingTheTargetsOffset) {
  auto fs = MakeFs();
  Ino dir = Dir(*fs, kRootIno, "d");
  for (int i = 0; i < 50; ++i) File(*fs, dir, absl::StrCat("other", i));
  Ino source = File(*fs, dir, "source");
  Ino target = File(*fs, dir, "target");
  const uint64_t target_offset = List(*fs, dir)["target"].second;
  ASSERT_TRUE(fs->Rename(kUser, dir, "source", dir, "target", 0).ok());
  auto entries = List(*fs, dir);
  EXPECT_EQ(entries.count("source"), 0u);
  EXPECT_EQ(entries["target"], std::make_pair(source, target_offset));
  const meta::Node replaced = NodeOf(*fs, target);
  EXPECT_EQ(replaced.nlink, 0u);
  EXPECT_EQ(replaced.ctime_ns, NodeOf(*fs, source).ctime_ns);
  EXPECT_EQ(fs->ReadFigures().dirents, 52u);  // d, 50 others, target
}

TEST(RenameTest, ReplacedNodeIsFreedAtLastForgetNotBefore) {
  auto fs = MakeFs();
  File(*fs, kRootIno, "a");
  Ino target = File(*fs, kRootIno, "b");
  (void)fs->Lookup(kRootIno, "b");  // two lookups on the target
  const uint64_t nodes = fs->nodes().nodes();
  ASSERT_TRUE(fs->Rename(kUser, kRootIno, "a", kRootIno, "b", 0).ok());
  EXPECT_EQ(fs->nodes().nodes(), nodes);
  fs->Forget(target, 1);
  EXPECT_EQ(fs->nodes().nodes(), nodes);
  fs->Forget(target, 1);
  EXPECT_EQ(fs->nodes().nodes(), nodes - 1);
  EXPECT_FALSE(Live(*fs, target));
}

TEST(RenameTest, ReplacedNodeWithoutLookupsIsFreedAtOnce) {
  auto fs = MakeFs();
  File(*fs, kRootIno, "a");
  Ino target = File(*fs, kRootIno, "b");
  fs->Forget(target, 1);
  ASSERT_TRUE(fs->Rename(kUser, kRootIno, "a", kRootIno, "b", 0).ok());
  EXPECT_FALSE(Live(*fs, target));
}

TEST(RenameTest, ReplacedNodeWithAnotherNameStays) {
  auto fs = MakeFs();
  File(*fs, kRootIno, "a");
  Ino target = File(*fs, kRootIno, "b");
  ASSERT_TRUE(fs->Link(target, kRootIno, "c").ok());
  fs->Forget(target, 2);
  ASSERT_TRUE(fs->Rename(kUser, kRootIno, "a", kRootIno, "b", 0).ok());
  EXPECT_TRUE(Live(*fs, target));
  EXPECT_EQ(NodeOf(*fs, target).nlink, 1u);
  EXPECT_EQ(Resolve(*fs, kRootIno, "c"), target);
}

TEST(RenameTest, DirectoryOverAnEmptyDirectoryReplacesItAndFixesLinks) {
  auto fs = MakeFs();
  Ino a = Dir(*fs, kRootIno, "a");
  Ino b = Dir(*fs, kRootIno, "b");
  Ino moved = Dir(*fs, a, "moved");
  Ino empty = Dir(*fs, b, "empty");
  ASSERT_EQ(NodeOf(*fs, a).nlink, 3u);
  ASSERT_EQ(NodeOf(*fs, b).nlink, 3u);
  ASSERT_TRUE(fs->Rename(kUser, a, "moved", b, "empty", 0).ok());
  EXPECT_EQ(Resolve(*fs, b, "empty"), moved);
  EXPECT_EQ(NodeOf(*fs, a).nlink, 2u);
  EXPECT_EQ(NodeOf(*fs, b).nlink, 3u) << "b trades the replaced directory's .. for ours";
  EXPECT_EQ(NodeOf(*fs, empty).nlink, 0u);
  EXPECT_EQ(NodeOf(*fs, moved).dir.parent, b);
  EXPECT_EQ(Resolve(*fs, moved, ".."), b);
  fs->Forget(empty, 1);
  EXPECT_FALSE(Live(*fs, empty));
}

TEST(RenameTest, DirectoryOverAnEmptyDirectoryInTheSameParentDropsOneLink) {
  auto fs = MakeFs();
  Dir(*fs, kRootIno, "a");
  Dir(*fs, kRootIno, "b");
  ASSERT_EQ(NodeOf(*fs, kRootIno).nlink, 4u);
  ASSERT_TRUE(fs->Rename(kUser, kRootIno, "a", kRootIno, "b", 0).ok());
  EXPECT_EQ(NodeOf(*fs, kRootIno).nlink, 3u);
}

TEST(RenameTest, DirectoryOverANonEmptyDirectoryIsENOTEMPTY) {
  auto fs = MakeFs();
  Dir(*fs, kRootIno, "a");
  Ino b = Dir(*fs, kRootIno, "b");
  File(*fs, b, "f");
  EXPECT_EQ(Errno(fs->Rename(kUser, kRootIno, "a", kRootIno, "b", 0)), ENOTEMPTY);
  EXPECT_NE(Resolve(*fs, kRootIno, "a"), 0u);
}

TEST(RenameTest, FileOverADirectoryIsEISDIR) {
  auto fs = MakeFs();
  File(*fs, kRootIno, "f");
  Dir(*fs, kRootIno, "d");
  EXPECT_EQ(Errno(fs->Rename(kUser, kRootIno, "f", kRootIno, "d", 0)), EISDIR);
}

TEST(RenameTest, DirectoryOverAFileIsENOTDIR) {
  auto fs = MakeFs();
  File(*fs, kRootIno, "f");
  Dir(*fs, kRootIno, "d");
  EXPECT_EQ(Errno(fs->Rename(kUser, kRootIno, "d", kRootIno, "f", 0)), ENOTDIR);
}

TEST(RenameTest, RenamingOverAnAncestorOfTheSourceIsENOTEMPTY) {
  auto fs = MakeFs();
  Ino a = Dir(*fs, kRootIno, "a");
  Dir(*fs, a, "b");
  EXPECT_EQ(Errno(fs->Rename(kUser, a, "b", kRootIno, "a", 0)), ENOTEMPTY);
}

// ---- directories between parents ----

TEST(RenameTest, DirectoryMovedBetweenParentsTakesItsDotDotAlong) {
  auto fs = MakeFs();
  Ino a = Dir(*fs, kRootIno, "a");
  Ino b = Dir(*fs, kRootIno, "b");
  Ino sub = Dir(*fs, a, "sub");
  ASSERT_TRUE(fs->Rename(kUser, a, "sub", b, "sub2", 0).ok());
  EXPECT_EQ(NodeOf(*fs, a).nlink, 2u);
  EXPECT_EQ(NodeOf(*fs, b).nlink, 3u);
  EXPECT_EQ(NodeOf(*fs, sub).nlink, 2u);
  EXPECT_EQ(NodeOf(*fs, sub).dir.parent, b);
  EXPECT_EQ(Resolve(*fs, sub, ".."), b);
  std::map<std::string, Ino> dots;
  ASSERT_TRUE(fs->ReadDir(sub, 0, [&](const DirEntry& entry) {
                  dots[std::string(entry.name.data(), entry.name.size())] = entry.ino;
                  return true;
                }).ok());
  EXPECT_EQ(dots[".."], b);
}

TEST(RenameTest, DirectoryMovedToAParentAtTheLinkLimitIsEMLINK) {
  auto fs = MakeFs();
  Ino a = Dir(*fs, kRootIno, "a");
  Ino full = Dir(*fs, kRootIno, "full");
  Dir(*fs, a, "sub");
  File(*fs, a, "file");
  {
    auto pin = *fs->nodes().Pin(fs->nodes().AddrOf(full), vm::Access::kWrite);
    pin->nlink = 0xFFFFFFFE;
  }
  EXPECT_EQ(Errno(fs->Rename(kUser, a, "sub", full, "sub", 0)), EMLINK);
  EXPECT_TRUE(fs->Rename(kUser, a, "file", full, "file", 0).ok()) << "files add no link";
}

TEST(RenameTest, RenameDirectoryIntoItsOwnSubtreeIsEINVAL) {
  auto fs = MakeFs();
  Ino d = Dir(*fs, kRootIno, "d");
  Ino a = Dir(*fs, d, "a");
  Ino b = Dir(*fs, a, "b");
  EXPECT_EQ(Errno(fs->Rename(kUser, kRootIno, "d", d, "x", 0)), EINVAL);
  EXPECT_EQ(Errno(fs->Rename(kUser, kRootIno, "d", b, "x", 0)), EINVAL);
  EXPECT_EQ(Errno(fs->Rename(kUser, d, "a", b, "x", 0)), EINVAL);
  EXPECT_EQ(Errno(fs->Rename(kUser, kRootIno, "d", a, "x", RENAME_NOREPLACE)), EINVAL);
  // Moving up is fine.
  EXPECT_TRUE(fs->Rename(kUser, a, "b", kRootIno, "b", 0).ok());
  EXPECT_EQ(NodeOf(*fs, b).dir.parent, kRootIno);
}

// ---- flags ----

TEST(RenameTest, UnknownFlagsAreEINVAL) {
  auto fs = MakeFs();
  File(*fs, kRootIno, "f");
  EXPECT_EQ(Errno(fs->Rename(kUser, kRootIno, "f", kRootIno, "g", 1u << 5)), EINVAL);
  EXPECT_EQ(
      Errno(fs->Rename(kUser, kRootIno, "f", kRootIno, "g", RENAME_NOREPLACE | RENAME_EXCHANGE)),
      EINVAL);
  EXPECT_EQ(
      Errno(fs->Rename(kUser, kRootIno, "f", kRootIno, "g", RENAME_WHITEOUT | RENAME_EXCHANGE)),
      EINVAL);
  EXPECT_NE(Resolve(*fs, kRootIno, "f"), 0u);
}

TEST(RenameTest, NoReplaceOverAnExistingNameIsEEXIST) {
  auto fs = MakeFs();
  Ino a = File(*fs, kRootIno, "a");
  Ino b = File(*fs, kRootIno, "b");
  EXPECT_EQ(Errno(fs->Rename(kUser, kRootIno, "a", kRootIno, "b", RENAME_NOREPLACE)), EEXIST);
  EXPECT_EQ(Errno(fs->Rename(kUser, kRootIno, "a", kRootIno, "a", RENAME_NOREPLACE)), EEXIST);
  EXPECT_EQ(Resolve(*fs, kRootIno, "a"), a);
  EXPECT_EQ(Resolve(*fs, kRootIno, "b"), b);
}

TEST(RenameTest, NoReplaceToAFreeNameMoves) {
  auto fs = MakeFs();
  Ino a = File(*fs, kRootIno, "a");
  ASSERT_TRUE(fs->Rename(kUser, kRootIno, "a", kRootIno, "c", RENAME_NOREPLACE).ok());
  EXPECT_EQ(Resolve(*fs, kRootIno, "c"), a);
  EXPECT_EQ(Resolve(*fs, kRootIno, "a"), 0u);
}

TEST(RenameTest, ExchangeSwapsTwoFilesKeepingBothOffsets) {
  auto fs = MakeFs();
  Ino d = Dir(*fs, kRootIno, "d");
  Ino a = File(*fs, kRootIno, "a");
  Ino b = File(*fs, d, "b");
  const uint64_t a_offset = List(*fs, kRootIno)["a"].second;
  const uint64_t b_offset = List(*fs, d)["b"].second;
  ASSERT_TRUE(fs->Rename(kUser, kRootIno, "a", d, "b", RENAME_EXCHANGE).ok());
  EXPECT_EQ(List(*fs, kRootIno)["a"], std::make_pair(b, a_offset));
  EXPECT_EQ(List(*fs, d)["b"], std::make_pair(a, b_offset));
  EXPECT_EQ(NodeOf(*fs, a).nlink, 1u);
  EXPECT_EQ(NodeOf(*fs, b).nlink, 1u);
  EXPECT_EQ(NodeOf(*fs, a).ctime_ns, NodeOf(*fs, b).ctime_ns);
  EXPECT_EQ(fs->ReadFigures().dirents, 3u);
}

TEST(RenameTest, ExchangeWithAMissingTargetIsENOENT) {
  auto fs = MakeFs();
  File(*fs, kRootIno, "a");
  EXPECT_EQ(Errno(fs->Rename(kUser, kRootIno, "a", kRootIno, "b", RENAME_EXCHANGE)), ENOENT);
  EXPECT_EQ(Resolve(*fs, kRootIno, "b"), 0u);
}

TEST(RenameTest, ExchangeSwapsDirectoriesAndFixesParents) {
  auto fs = MakeFs();
  Ino p = Dir(*fs, kRootIno, "p");
  Ino q = Dir(*fs, kRootIno, "q");
  Ino x = Dir(*fs, p, "x");
  Ino y = Dir(*fs, q, "y");
  Dir(*fs, y, "inside");
  ASSERT_TRUE(fs->Rename(kUser, p, "x", q, "y", RENAME_EXCHANGE).ok());
  EXPECT_EQ(Resolve(*fs, p, "x"), y);
  EXPECT_EQ(Resolve(*fs, q, "y"), x);
  EXPECT_EQ(NodeOf(*fs, x).dir.parent, q);
  EXPECT_EQ(NodeOf(*fs, y).dir.parent, p);
  EXPECT_EQ(Resolve(*fs, y, ".."), p);
  EXPECT_EQ(NodeOf(*fs, p).nlink, 3u);
  EXPECT_EQ(NodeOf(*fs, q).nlink, 3u);
  EXPECT_EQ(NodeOf(*fs, y).nlink, 3u) << "exchange never needs the target empty";
}

TEST(RenameTest, ExchangeOfADirectoryWithAFileMovesTheDirectorysLink) {
  auto fs = MakeFs();
  Ino p = Dir(*fs, kRootIno, "p");
  Ino q = Dir(*fs, kRootIno, "q");
  Ino dir = Dir(*fs, p, "dir");
  Ino file = File(*fs, q, "file");
  ASSERT_EQ(NodeOf(*fs, p).nlink, 3u);
  ASSERT_TRUE(fs->Rename(kUser, p, "dir", q, "file", RENAME_EXCHANGE).ok());
  EXPECT_EQ(Resolve(*fs, p, "dir"), file);
  EXPECT_EQ(Resolve(*fs, q, "file"), dir);
  EXPECT_EQ(NodeOf(*fs, p).nlink, 2u);
  EXPECT_EQ(NodeOf(*fs, q).nlink, 3u);
  EXPECT_EQ(NodeOf(*fs, dir).dir.parent, q);
  std::map<std::string, uint32_t> types;
  ASSERT_TRUE(fs->ReadDir(p, 2, [&](const DirEntry& entry) {
                  types[std::string(entry.name.data(), entry.name.size())] = entry.type;
                  return true;
                }).ok());
  EXPECT_EQ(types["dir"], static_cast<uint32_t>(DT_REG)) << "the entry's type follows its node";
}

TEST(RenameTest, ExchangePuttingADirectoryUnderItselfIsEINVAL) {
  auto fs = MakeFs();
  Ino a = Dir(*fs, kRootIno, "a");
  Ino b = Dir(*fs, a, "b");
  Dir(*fs, b, "c");
  // "a" would land inside itself (as a/b/c's name).
  EXPECT_EQ(Errno(fs->Rename(kUser, kRootIno, "a", b, "c", RENAME_EXCHANGE)), EINVAL);
  EXPECT_EQ(Errno(fs->Rename(kUser, b, "c", kRootIno, "a", RENAME_EXCHANGE)), EINVAL);
}

TEST(RenameTest, WhiteoutLeavesACharacterDeviceZeroZeroAtTheSource) {
  auto fs = MakeFs();
  Ino d = Dir(*fs, kRootIno, "d");
  Ino file = File(*fs, kRootIno, "f");
  const uint64_t nodes = fs->nodes().nodes();
  const uint64_t offset = List(*fs, kRootIno)["f"].second;
  ASSERT_TRUE(fs->Rename(kUser, kRootIno, "f", d, "g", RENAME_WHITEOUT).ok());
  EXPECT_EQ(Resolve(*fs, d, "g"), file);
  auto entries = List(*fs, kRootIno);
  ASSERT_EQ(entries.count("f"), 1u);
  EXPECT_EQ(entries["f"].second, offset) << "the whiteout takes the source's place";
  const Ino whiteout = entries["f"].first;
  EXPECT_NE(whiteout, file);
  const meta::Node node = NodeOf(*fs, whiteout);
  EXPECT_EQ(node.mode, static_cast<uint32_t>(S_IFCHR));
  EXPECT_EQ(node.rdev, 0u);
  EXPECT_EQ(node.nlink, 1u);
  EXPECT_EQ(node.uid, 1000u);
  EXPECT_EQ(node.lookup_count, 0u) << "nobody looked the whiteout up";
  EXPECT_EQ(fs->nodes().nodes(), nodes + 1);
  EXPECT_EQ(fs->ReadFigures().dirents, 3u);
  ASSERT_TRUE(fs->Unlink(kRootIno, "f").ok());
  EXPECT_FALSE(Live(*fs, whiteout));
}

TEST(RenameTest, WhiteoutOverAnExistingTargetReplacesIt) {
  auto fs = MakeFs();
  Ino a = File(*fs, kRootIno, "a");
  Ino b = File(*fs, kRootIno, "b");
  ASSERT_TRUE(fs->Rename(kUser, kRootIno, "a", kRootIno, "b", RENAME_WHITEOUT).ok());
  EXPECT_EQ(Resolve(*fs, kRootIno, "b"), a);
  EXPECT_EQ(NodeOf(*fs, Resolve(*fs, kRootIno, "a")).mode, static_cast<uint32_t>(S_IFCHR));
  EXPECT_EQ(NodeOf(*fs, b).nlink, 0u);
  EXPECT_EQ(fs->ReadFigures().dirents, 2u);
}

// ---- concurrency ----

TEST(RenameTest, ConcurrentCrossDirectoryRenamesNeverMakeACycle) {
  auto fs = MakeFs();
  // Two threads each try to move one of a and b under the other; at most one wins
  // each time, and the tree stays a tree.
  Ino a = Dir(*fs, kRootIno, "a");
  Ino b = Dir(*fs, kRootIno, "b");
  std::atomic<int> succeeded{0};
  auto worker = [&](Ino self, Ino other, std::string self_name) {
    for (int i = 0; i < 400; ++i) {
      // Move self under other, then back to the root.
      if (fs->Rename(kUser, kRootIno, self_name, other, self_name, 0).ok()) {
        succeeded.fetch_add(1);
        ASSERT_TRUE(fs->Rename(kUser, other, self_name, kRootIno, self_name, 0).ok());
      }
      (void)self;
    }
  };
  std::thread first(worker, a, b, "a");
  std::thread second(worker, b, a, "b");
  first.join();
  second.join();
  EXPECT_GT(succeeded.load(), 0);
  EXPECT_EQ(NodeOf(*fs, a).dir.parent, kRootIno);
  EXPECT_EQ(NodeOf(*fs, b).dir.parent, kRootIno);
  EXPECT_EQ(NodeOf(*fs, kRootIno).nlink, 4u);
  EXPECT_EQ(NodeOf(*fs, a).nlink, 2u);
  EXPECT_EQ(NodeOf(*fs, b).nlink, 2u);
}

TEST(RenameTest, ConcurrentRenamesAndLookupsKeepEveryFileReachableOnce) {
  auto fs = MakeFs();
  constexpr int kDirs = 4;
  constexpr int kFiles = 16;
  std::vector<Ino> dirs;
  for (int d = 0; d < kDirs; ++d) dirs.push_back(Dir(*fs, kRootIno, absl::StrCat("d", d)));
  for (int f = 0; f < kFiles; ++f) File(*fs, dirs[0], absl::StrCat("f", f));
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      uint64_t state = 0x9E3779B97F4A7C15ull * (t + 1);
      for (int i = 0; i < 500; ++i) {
        state = state * 6364136223846793005ull + 1442695040888963407ull;
        const int from = (state >> 33) % kDirs;
        const int to = (state >> 40) % kDirs;
        const std::string name = absl::StrCat("f", (state >> 50) % kFiles);
        (void)fs->Rename(kUser, dirs[from], name, dirs[to], name, RENAME_NOREPLACE);
        if (absl::StatusOr<Attr> found = fs->Lookup(dirs[to], name); found.ok()) {
          fs->Forget(found->ino, 1);
        }
      }
    });
  }
  for (auto& thread : threads) thread.join();
  std::map<std::string, int> where;
  for (Ino dir : dirs) {
    for (const auto& [name, entry] : List(*fs, dir)) ++where[name];
  }
  EXPECT_EQ(where.size(), static_cast<size_t>(kFiles));
  for (const auto& [name, count] : where) EXPECT_EQ(count, 1) << name;
  EXPECT_EQ(fs->nodes().nodes(), 1u + kDirs + kFiles);
}

}  // namespace
}  // namespace ptmpfs::fs
