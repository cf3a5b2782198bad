// acl_mount_test: POSIX ACLs and the umask through a mounted ptmpfs: a new node
// inherits its directory's default ACL (posix_acl_create) and the umask applies only
// where there is none, as on Linux tmpfs. Drives the setfacl and getfacl programs
// (package acl) and the raw xattr calls.
//
// The mount helpers are mount_test.cc's: each test starts `ptmpfs ... -f` as a child
// on a fresh directory, and a MountedPtmpfs guard always unmounts and reaps it.
#include <fcntl.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "test/testing.h"

#ifndef FUSE_SUPER_MAGIC
#define FUSE_SUPER_MAGIC 0x65735546
#endif

#include "test/fs/mounted_ptmpfs.h"

namespace {

using namespace ptmpfs_mount_test;  // NOLINT: the shared mount helpers

constexpr char kSmallMount[] = "ram=32M,size=256M";
constexpr char kSetfacl[] = "/usr/bin/setfacl";
constexpr char kGetfacl[] = "/usr/bin/getfacl";

// Sets the process umask for a scope: the kernel hands the creator's umask to FUSE.
class ScopedUmask {
 public:
  explicit ScopedUmask(mode_t mask) : saved_(umask(mask)) {}
  ~ScopedUmask() { umask(saved_); }

 private:
  mode_t saved_;
};

class AclMountTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!HaveFuse()) GTEST_SKIP() << "/dev/fuse is missing: cannot mount";
    if (access(kSetfacl, X_OK) != 0 || access(kGetfacl, X_OK) != 0) {
      GTEST_SKIP() << "setfacl/getfacl missing (package acl)";
    }
    chmod(dir_.path().c_str(), 0755);
    mount_.emplace(dir_.path() + "/mnt", kSmallMount);
    ASSERT_TRUE(mount_->mounted()) << "ptmpfs did not mount";
  }
  void TearDown() override { mount_.reset(); }

  std::string Path(const std::string& name) const { return *mount_ / name; }
  static mode_t ModeOf(const std::string& path) {
    struct stat st {};
    EXPECT_EQ(stat(path.c_str(), &st), 0) << path << ": " << strerror(errno);
    return st.st_mode & 07777;
  }
  static void Create(const std::string& path, mode_t mode) {
    const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL, mode);
    ASSERT_GE(fd, 0) << path << ": " << strerror(errno);
    close(fd);
  }
  // getfacl's listing, numeric ids, no header; or its error output.
  static std::string GetFacl(const std::string& path, bool default_acl = false) {
    std::vector<std::string> argv = {kGetfacl, "-n", "-c"};
    if (default_acl) argv.push_back("-d");
    argv.push_back(path);
    RunResult result = RunProgram(argv);
    EXPECT_EQ(result.exit_code, 0) << result.output;
    return result.output;
  }

  ptmpfs::testing::TempDir dir_;
  std::optional<MountedPtmpfs> mount_;
};

TEST_F(AclMountTest, NewFileInheritsTheDefaultAclMaskedAndIgnoresTheUmask) {
  ScopedUmask mask(022);
  const std::string dir = Path("d");
  ASSERT_EQ(mkdir(dir.c_str(), 0755), 0) << strerror(errno);
  RunResult set = RunProgram({kSetfacl, "-d", "-m", "u:1234:rwx", dir});
  ASSERT_EQ(set.exit_code, 0) << set.output;
  EXPECT_NE(GetFacl(dir, /*default_acl=*/true).find("user:1234:rwx"), std::string::npos);

  const std::string file = dir + "/f";
  Create(file, 0666);
  // The ACL masked by the requested 0666, and no umask: group bits from the mask (rw-).
  EXPECT_EQ(ModeOf(file), 0664u);
  const std::string listing = GetFacl(file);
  EXPECT_NE(listing.find("user::rw-"), std::string::npos) << listing;
  EXPECT_NE(listing.find("user:1234:rwx"), std::string::npos) << listing;
  EXPECT_NE(listing.find("#effective:rw-"), std::string::npos) << listing;
  EXPECT_NE(listing.find("mask::rw-"), std::string::npos) << listing;
  EXPECT_NE(listing.find("other::r--"), std::string::npos) << listing;
  // The raw form: a version header and five entries.
  EXPECT_EQ(getxattr(file.c_str(), "system.posix_acl_access", nullptr, 0), 4 + 5 * 8);
  EXPECT_EQ(getxattr(file.c_str(), "system.posix_acl_default", nullptr, 0), -1);
  EXPECT_EQ(errno, ENODATA);

  // mknod(2) and a subdirectory too; the subdirectory passes the default on.
  const std::string fifo = dir + "/fifo";
  ASSERT_EQ(mknod(fifo.c_str(), S_IFIFO | 0640, 0), 0) << strerror(errno);
  EXPECT_EQ(ModeOf(fifo), 0640u);
  const std::string sub = dir + "/sub";
  ASSERT_EQ(mkdir(sub.c_str(), 0777), 0) << strerror(errno);
  // other::r-x of the default ACL, and the mask rwx (a umask 022 would make it r-x).
  EXPECT_EQ(ModeOf(sub), 0775u) << "the umask must not apply under a default ACL";
  EXPECT_NE(GetFacl(sub, /*default_acl=*/true).find("user:1234:rwx"), std::string::npos);
  Create(sub + "/g", 0600);
  EXPECT_EQ(ModeOf(sub + "/g"), 0600u);
  EXPECT_NE(GetFacl(sub + "/g").find("user:1234:rwx"), std::string::npos);
}

TEST_F(AclMountTest, AnInheritedAclEquivalentToTheModeIsNotStored) {
  ScopedUmask mask(0);
  const std::string dir = Path("d");
  ASSERT_EQ(mkdir(dir.c_str(), 0777), 0) << strerror(errno);
  RunResult set = RunProgram({kSetfacl, "-d", "-m", "u::rwx,g::r-x,o::---", dir});
  ASSERT_EQ(set.exit_code, 0) << set.output;
  const std::string file = dir + "/f";
  Create(file, 0666);
  EXPECT_EQ(ModeOf(file), 0640u);
  EXPECT_EQ(getxattr(file.c_str(), "system.posix_acl_access", nullptr, 0), -1);
  EXPECT_EQ(errno, ENODATA);
}

TEST_F(AclMountTest, UmaskAppliesWithoutADefaultAcl) {
  {
    ScopedUmask mask(022);
    Create(Path("f"), 0666);
    EXPECT_EQ(ModeOf(Path("f")), 0644u);
    ASSERT_EQ(mkdir(Path("d").c_str(), 0777), 0) << strerror(errno);
    EXPECT_EQ(ModeOf(Path("d")), 0755u);
    ASSERT_EQ(mknod(Path("fifo").c_str(), S_IFIFO | 0666, 0), 0) << strerror(errno);
    EXPECT_EQ(ModeOf(Path("fifo")), 0644u);
  }
  {
    ScopedUmask mask(077);
    Create(Path("d/g"), 0666);
    EXPECT_EQ(ModeOf(Path("d/g")), 0600u);
    ASSERT_EQ(symlink("target", Path("l").c_str()), 0) << strerror(errno);
    struct stat st {};
    ASSERT_EQ(lstat(Path("l").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0777u) << "symlinks ignore the umask";
  }
  EXPECT_EQ(getxattr(Path("f").c_str(), "system.posix_acl_access", nullptr, 0), -1);
  EXPECT_EQ(errno, ENODATA);
}

}  // namespace
