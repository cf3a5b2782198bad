// mount_test: mounts the built ptmpfs binary and drives it through system calls.
//
// Each test starts `ptmpfs ... -f` as a child process on a fresh directory, waits
// (polling with a deadline) until statfs says the directory is a FUSE mount, and acts
// through ordinary syscalls. A MountedPtmpfs guard always unmounts and reaps the
// child, even when an assertion fails. Tests skip, saying why, only where /dev/fuse
// is missing.
#include <dirent.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <linux/magic.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <optional>
#include <set>
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

// Small budgets keep each daemon light; tests run side by side.
constexpr char kSmallMount[] = "ram=32M,size=256M";

class MountTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!HaveFuse()) GTEST_SKIP() << "/dev/fuse is missing: cannot mount";
    chmod(dir_.path().c_str(), 0755);  // other users' tests reach the mount
    mount_.emplace(dir_.path() + "/mnt", kSmallMount);
    ASSERT_TRUE(mount_->mounted()) << "ptmpfs did not mount";
  }
  void TearDown() override { mount_.reset(); }

  std::string Path(const std::string& name) const { return *mount_ / name; }

  ptmpfs::testing::TempDir dir_;
  std::optional<MountedPtmpfs> mount_;
};

void WriteFile(const std::string& path, const std::string& data) {
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  ASSERT_GE(fd, 0) << path << ": " << strerror(errno);
  ASSERT_EQ(write(fd, data.data(), data.size()), static_cast<ssize_t>(data.size()));
  ASSERT_EQ(close(fd), 0);
}

std::string ReadFile(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY);
  if (fd < 0) return "<" + std::string(strerror(errno)) + ">";
  std::string data;
  char buffer[65536];
  ssize_t got;
  while ((got = read(fd, buffer, sizeof(buffer))) > 0) data.append(buffer, got);
  close(fd);
  return data;
}

std::set<std::string> ListDir(const std::string& path) {
  std::set<std::string> names;
  DIR* dir = opendir(path.c_str());
  if (dir == nullptr) return names;
  while (dirent* entry = readdir(dir)) names.insert(entry->d_name);
  closedir(dir);
  return names;
}

TEST_F(MountTest, WrittenBytesReadBackAtAnyOffset) {
  const std::string path = Path("file");
  const int fd = open(path.c_str(), O_RDWR | O_CREAT | O_EXCL, 0644);
  ASSERT_GE(fd, 0) << strerror(errno);
  std::string data(3 * 4096 + 123, '\0');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 7 + 1);
  ASSERT_EQ(pwrite(fd, data.data(), data.size(), 1000), static_cast<ssize_t>(data.size()));
  std::string back(data.size(), '\0');
  ASSERT_EQ(pread(fd, back.data(), back.size(), 1000), static_cast<ssize_t>(back.size()));
  EXPECT_EQ(back, data);
  char head[1000];
  ASSERT_EQ(pread(fd, head, sizeof(head), 0), 1000);
  EXPECT_EQ(std::string(head, sizeof(head)), std::string(1000, '\0'));
  struct stat st;
  ASSERT_EQ(fstat(fd, &st), 0);
  EXPECT_EQ(st.st_size, static_cast<off_t>(1000 + data.size()));
  EXPECT_TRUE(S_ISREG(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0644u & ~0u);
  ASSERT_EQ(close(fd), 0);

  // A large write and read: more than one FUSE request each.
  std::string big(3 << 20, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i % 251);
  WriteFile(Path("big"), big);
  EXPECT_TRUE(ReadFile(Path("big")) == big);
  EXPECT_EQ(open(Path("file").c_str(), O_CREAT | O_EXCL | O_WRONLY, 0644), -1);
  EXPECT_EQ(errno, EEXIST);
}

TEST_F(MountTest, NamesLinksAndRenames) {
  ASSERT_EQ(mkdir(Path("d").c_str(), 0755), 0);
  WriteFile(Path("d/a"), "alpha");
  WriteFile(Path("d/b"), "beta");
  EXPECT_EQ(ListDir(Path("d")), (std::set<std::string>{".", "..", "a", "b"}));

  ASSERT_EQ(linkat(AT_FDCWD, Path("d/a").c_str(), AT_FDCWD, Path("hard").c_str(), 0), 0);
  struct stat st;
  ASSERT_EQ(stat(Path("hard").c_str(), &st), 0);
  EXPECT_EQ(st.st_nlink, 2u);
  EXPECT_EQ(ReadFile(Path("hard")), "alpha");

  ASSERT_EQ(symlink("d/b", Path("sym").c_str()), 0);
  char target[64] = {};
  ASSERT_EQ(readlink(Path("sym").c_str(), target, sizeof(target)), 3);
  EXPECT_STREQ(target, "d/b");
  EXPECT_EQ(ReadFile(Path("sym")), "beta");

  EXPECT_EQ(
      renameat2(AT_FDCWD, Path("d/a").c_str(), AT_FDCWD, Path("d/b").c_str(), RENAME_NOREPLACE),
      -1);
  EXPECT_EQ(errno, EEXIST);
  ASSERT_EQ(
      renameat2(AT_FDCWD, Path("d/a").c_str(), AT_FDCWD, Path("d/b").c_str(), RENAME_EXCHANGE), 0);
  EXPECT_EQ(ReadFile(Path("d/a")), "beta");
  EXPECT_EQ(ReadFile(Path("d/b")), "alpha");
  ASSERT_EQ(rename(Path("d/a").c_str(), Path("moved").c_str()), 0);
  EXPECT_EQ(ReadFile(Path("moved")), "beta");
  EXPECT_EQ(access(Path("d/a").c_str(), F_OK), -1);
  EXPECT_EQ(errno, ENOENT);

  EXPECT_EQ(rmdir(Path("d").c_str()), -1);
  EXPECT_EQ(errno, ENOTEMPTY);
  ASSERT_EQ(unlink(Path("d/b").c_str()), 0);
  ASSERT_EQ(rmdir(Path("d").c_str()), 0);
  ASSERT_EQ(stat(Path("hard").c_str(), &st), 0);
  EXPECT_EQ(st.st_nlink, 1u);
  // A name looked up while absent (a cached negative entry) appears once created.
  EXPECT_EQ(access(Path("later").c_str(), F_OK), -1);
  WriteFile(Path("later"), "x");
  EXPECT_EQ(access(Path("later").c_str(), F_OK), 0);
}

TEST_F(MountTest, ReaddirReturnsEveryEntryOnceWithAttributes) {
  ASSERT_EQ(mkdir(Path("many").c_str(), 0755), 0);
  std::set<std::string> expected = {".", ".."};
  for (int i = 0; i < 1500; ++i) {
    const std::string name = "entry-with-a-longish-name-" + std::to_string(i);
    const int fd = open(Path("many/" + name).c_str(), O_CREAT | O_WRONLY, 0600);
    ASSERT_GE(fd, 0) << strerror(errno);
    close(fd);
    expected.insert(name);
  }
  // Counted one by one, not as a set: a duplicate must fail.
  DIR* dir = opendir(Path("many").c_str());
  ASSERT_NE(dir, nullptr);
  std::multiset<std::string> seen;
  while (dirent* entry = readdir(dir)) {
    seen.insert(entry->d_name);
    if (entry->d_name[0] != '.') {
      EXPECT_EQ(entry->d_type, DT_REG) << entry->d_name;
    }
  }
  closedir(dir);
  EXPECT_EQ(seen.size(), expected.size());
  EXPECT_EQ(std::set<std::string>(seen.begin(), seen.end()), expected);
  struct stat st;
  ASSERT_EQ(stat(Path("many/entry-with-a-longish-name-77").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
}

TEST_F(MountTest, SharedWritableMappingReachesTheFile) {
  const std::string path = Path("mapped");
  int fd = open(path.c_str(), O_RDWR | O_CREAT, 0644);
  ASSERT_GE(fd, 0);
  constexpr size_t kBytes = 16 * 4096;
  ASSERT_EQ(ftruncate(fd, kBytes), 0);
  void* map = mmap(nullptr, kBytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  ASSERT_NE(map, MAP_FAILED) << strerror(errno);
  auto* bytes = static_cast<unsigned char*>(map);
  for (size_t i = 0; i < kBytes; ++i) bytes[i] = static_cast<unsigned char>(i % 253);
  ASSERT_EQ(msync(map, kBytes, MS_SYNC), 0);
  ASSERT_EQ(munmap(map, kBytes), 0);
  ASSERT_EQ(close(fd), 0);
  // Read back through a new descriptor, bypassing the page cache.
  fd = open(path.c_str(), O_RDONLY | O_DIRECT);
  if (fd < 0) fd = open(path.c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  std::vector<unsigned char> back(kBytes);
  void* aligned = nullptr;
  ASSERT_EQ(posix_memalign(&aligned, 4096, kBytes), 0);
  ASSERT_EQ(pread(fd, aligned, kBytes, 0), static_cast<ssize_t>(kBytes));
  memcpy(back.data(), aligned, kBytes);
  free(aligned);
  close(fd);
  for (size_t i = 0; i < kBytes; ++i) {
    ASSERT_EQ(back[i], static_cast<unsigned char>(i % 253)) << "at byte " << i;
  }
}

TEST_F(MountTest, FallocateHolesAndSeek) {
  const std::string path = Path("sparse");
  const int fd = open(path.c_str(), O_RDWR | O_CREAT, 0644);
  ASSERT_GE(fd, 0);
  const std::string page(4096, 'x');
  ASSERT_EQ(pwrite(fd, page.data(), page.size(), 0), 4096);
  ASSERT_EQ(pwrite(fd, page.data(), page.size(), 1 << 20), 4096);
  EXPECT_EQ(lseek(fd, 0, SEEK_HOLE), 4096);
  EXPECT_EQ(lseek(fd, 4096, SEEK_DATA), 1 << 20);
  EXPECT_EQ(lseek(fd, (1 << 20) + 4096, SEEK_DATA), -1);
  EXPECT_EQ(errno, ENXIO);

  ASSERT_EQ(fallocate(fd, FALLOC_FL_KEEP_SIZE, 2 << 20, 1 << 20), 0) << strerror(errno);
  struct stat st;
  ASSERT_EQ(fstat(fd, &st), 0);
  EXPECT_EQ(st.st_size, (1 << 20) + 4096);
  EXPECT_GE(st.st_blocks, (2 * 4096 + (1 << 20)) / 512);

  ASSERT_EQ(fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 4096), 0);
  char back[4096];
  ASSERT_EQ(pread(fd, back, sizeof(back), 0), 4096);
  EXPECT_EQ(std::string(back, sizeof(back)), std::string(4096, '\0'));
  EXPECT_EQ(lseek(fd, 0, SEEK_DATA), 1 << 20);

  ASSERT_EQ(fallocate(fd, 0, 0, 8 << 20), 0);
  ASSERT_EQ(fstat(fd, &st), 0);
  EXPECT_EQ(st.st_size, 8 << 20);
  EXPECT_EQ(fallocate(fd, FALLOC_FL_COLLAPSE_RANGE, 0, 4096), -1);
  EXPECT_EQ(errno, EOPNOTSUPP);
  close(fd);
}

TEST_F(MountTest, CopyFileRangeAndTruncate) {
  std::string data(200000, '\0');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i % 241);
  WriteFile(Path("in"), data);
  const int in = open(Path("in").c_str(), O_RDONLY);
  const int out = open(Path("out").c_str(), O_RDWR | O_CREAT, 0644);
  ASSERT_GE(in, 0);
  ASSERT_GE(out, 0);
  loff_t in_offset = 0;
  loff_t out_offset = 0;
  size_t copied = 0;
  while (copied < data.size()) {
    const ssize_t got = copy_file_range(in, &in_offset, out, &out_offset, data.size() - copied, 0);
    ASSERT_GT(got, 0) << strerror(errno);
    copied += static_cast<size_t>(got);
  }
  close(in);
  ASSERT_EQ(ftruncate(out, 100), 0);
  close(out);
  EXPECT_EQ(ReadFile(Path("out")), data.substr(0, 100));
  ASSERT_EQ(truncate(Path("in").c_str(), 0), 0);
  EXPECT_EQ(ReadFile(Path("in")), "");
}

TEST_F(MountTest, ExtendedAttributes) {
  WriteFile(Path("f"), "x");
  const std::string path = Path("f");
  ASSERT_EQ(setxattr(path.c_str(), "user.color", "blue", 4, XATTR_CREATE), 0) << strerror(errno);
  EXPECT_EQ(setxattr(path.c_str(), "user.color", "red", 3, XATTR_CREATE), -1);
  EXPECT_EQ(errno, EEXIST);
  char value[16] = {};
  EXPECT_EQ(getxattr(path.c_str(), "user.color", nullptr, 0), 4);
  ASSERT_EQ(getxattr(path.c_str(), "user.color", value, sizeof(value)), 4);
  EXPECT_STREQ(value, "blue");
  EXPECT_EQ(getxattr(path.c_str(), "user.color", value, 2), -1);
  EXPECT_EQ(errno, ERANGE);
  char names[64] = {};
  const ssize_t length = listxattr(path.c_str(), names, sizeof(names));
  ASSERT_GT(length, 0);
  EXPECT_EQ(std::string(names, length), std::string("user.color\0", 11));
  ASSERT_EQ(removexattr(path.c_str(), "user.color"), 0);
  EXPECT_EQ(getxattr(path.c_str(), "user.color", value, sizeof(value)), -1);
  EXPECT_EQ(errno, ENODATA);
}

TEST_F(MountTest, SpecialFilesAndTimes) {
  ASSERT_EQ(mkfifo(Path("fifo").c_str(), 0644), 0);
  ASSERT_EQ(mknod(Path("null").c_str(), S_IFCHR | 0666, makedev(1, 3)), 0) << strerror(errno);
  struct stat st;
  ASSERT_EQ(stat(Path("fifo").c_str(), &st), 0);
  EXPECT_TRUE(S_ISFIFO(st.st_mode));
  ASSERT_EQ(stat(Path("null").c_str(), &st), 0);
  EXPECT_TRUE(S_ISCHR(st.st_mode));
  EXPECT_EQ(st.st_rdev, makedev(1, 3));

  WriteFile(Path("t"), "x");
  const timespec times[2] = {{1000000000, 123456789}, {1200000000, 987654321}};
  ASSERT_EQ(utimensat(AT_FDCWD, Path("t").c_str(), times, 0), 0);
  ASSERT_EQ(stat(Path("t").c_str(), &st), 0);
  EXPECT_EQ(st.st_atim.tv_sec, 1000000000);
  EXPECT_EQ(st.st_atim.tv_nsec, 123456789);
  EXPECT_EQ(st.st_mtim.tv_sec, 1200000000);
  EXPECT_EQ(st.st_mtim.tv_nsec, 987654321);
  const timespec now[2] = {{0, UTIME_OMIT}, {0, UTIME_NOW}};
  ASSERT_EQ(utimensat(AT_FDCWD, Path("t").c_str(), now, 0), 0);
  ASSERT_EQ(stat(Path("t").c_str(), &st), 0);
  EXPECT_EQ(st.st_atim.tv_sec, 1000000000);
  EXPECT_GT(st.st_mtim.tv_sec, 1600000000);
  ASSERT_EQ(chmod(Path("t").c_str(), 0600), 0);
  ASSERT_EQ(chown(Path("t").c_str(), 1234, 5678), 0);
  ASSERT_EQ(stat(Path("t").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  EXPECT_EQ(st.st_uid, 1234u);
  EXPECT_EQ(st.st_gid, 5678u);
}

TEST_F(MountTest, StatfsReportsTheSizeAndInodeLimits) {
  struct statvfs stats;
  ASSERT_EQ(statvfs(mount_->path().c_str(), &stats), 0);
  EXPECT_EQ(static_cast<uint64_t>(stats.f_blocks) * stats.f_frsize, uint64_t{256} << 20);
  EXPECT_EQ(stats.f_files, (uint64_t{256} << 20) / 256);  // nr_inodes = size / 256
  EXPECT_GT(stats.f_bfree, 0u);
  EXPECT_EQ(stats.f_namemax, 255u);
  struct stat st;
  ASSERT_EQ(stat(mount_->path().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 01777u);
  EXPECT_EQ(st.st_ino, 1u);
}

// The kernel clears suid/sgid as for tmpfs (fuse_adapter.cc, Init), and the daemon
// accepts its request though the writer does not own the file.
TEST_F(MountTest, WriteByAnotherUserClearsSuidButRootKeepsIt) {
  const std::string path = Path("setuid");
  WriteFile(path, "x");
  ASSERT_EQ(chmod(path.c_str(), 06777), 0);
  const int fd = open(path.c_str(), O_WRONLY);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(pwrite(fd, "y", 1, 0), 1);
  close(fd);
  struct stat st;
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 06777u) << "root's write keeps the bits";

  const pid_t child = fork();
  if (child == 0) {
    if (setgid(65534) != 0 || setuid(65534) != 0) _exit(2);
    const int user_fd = open(path.c_str(), O_WRONLY);
    if (user_fd < 0) _exit(3);
    _exit(pwrite(user_fd, "z", 1, 0) == 1 ? 0 : 4);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  ASSERT_EQ(WEXITSTATUS(status), 0);
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0777u) << "another user's write clears them";
  EXPECT_EQ(ReadFile(path), "z");
}

// Runs `action` as user and group 65534 in a child; true if it returned true.
bool AsNobody(const std::function<bool()>& action) {
  const pid_t child = fork();
  if (child == 0) {
    if (setgid(65534) != 0 || setuid(65534) != 0) _exit(2);
    _exit(action() ? 0 : 3);
  }
  int status = 0;
  if (waitpid(child, &status, 0) != child) return false;
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

// The mode the kernel would use for exec and permission checks: statx asking for the
// mode alone fetches attributes only if the kernel marked its mode stale.
uint32_t ModeTheKernelSees(const std::string& path) {
  struct statx st {};
  if (statx(AT_FDCWD, path.c_str(), 0, STATX_MODE, &st) != 0) return ~0u;
  return st.stx_mode & 07777;
}

// Every way another user's change clears suid/sgid on the side (killpriv_v2.h): a
// write, an O_DIRECT write, an O_TRUNC open and a truncate. The replies to the first
// three carry no mode, so the kernel's copy must not keep the bits (the daemon tells it,
// main.cc); a truncate by a non-owner who may write is allowed, and clears them too.
TEST_F(MountTest, SuidSgidClearedOnTheSideAreClearedInTheKernelsCacheToo) {
  struct Case {
    const char* name;
    std::function<bool(const std::string&)> change;
  };
  const Case cases[] = {
      {"write",
       [](const std::string& path) {
         const int fd = open(path.c_str(), O_WRONLY);
         const bool ok = fd >= 0 && pwrite(fd, "z", 1, 0) == 1;
         if (fd >= 0) close(fd);
         return ok;
       }},
      {"O_DIRECT write",
       [](const std::string& path) {
         const int fd = open(path.c_str(), O_WRONLY | O_DIRECT);
         void* block = nullptr;
         if (fd < 0 || posix_memalign(&block, 4096, 4096) != 0) return false;
         memset(block, 'd', 4096);
         const bool ok = pwrite(fd, block, 4096, 0) == 4096;
         free(block);
         close(fd);
         return ok;
       }},
      {"O_TRUNC open",
       [](const std::string& path) {
         const int fd = open(path.c_str(), O_WRONLY | O_TRUNC);
         if (fd >= 0) close(fd);
         return fd >= 0;
       }},
      {"truncate", [](const std::string& path) { return truncate(path.c_str(), 1) == 0; }},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const std::string path = Path(std::string("setid-") + c.name);
    WriteFile(path, "x");
    ASSERT_EQ(chmod(path.c_str(), 06777), 0);
    ASSERT_EQ(ModeTheKernelSees(path), 06777u);
    ASSERT_TRUE(AsNobody([&] { return c.change(path); }));
    EXPECT_EQ(ModeTheKernelSees(path), 0777u);
    struct stat st;
    ASSERT_EQ(stat(path.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0777u);
  }
}

// chattr's flags pass through the kernel's FS_IOC_*FLAGS and FS_IOC_FS*XATTR ioctls
// to the daemon, which keeps and enforces them (fs/file_flags.h).
TEST_F(MountTest, ChattrFlagsAreKeptAndEnforced) {
  const std::string path = Path("guarded");
  WriteFile(path, "kept");
  const int fd = open(path.c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  int flags = FS_IMMUTABLE_FL | FS_NODUMP_FL;
  ASSERT_EQ(ioctl(fd, FS_IOC_SETFLAGS, &flags), 0) << strerror(errno);
  flags = 0;
  ASSERT_EQ(ioctl(fd, FS_IOC_GETFLAGS, &flags), 0) << strerror(errno);
  EXPECT_EQ(flags, FS_IMMUTABLE_FL | FS_NODUMP_FL);
  fsxattr attributes{};
  ASSERT_EQ(ioctl(fd, FS_IOC_FSGETXATTR, &attributes), 0) << strerror(errno);
  EXPECT_EQ(attributes.fsx_xflags, uint32_t{FS_XFLAG_IMMUTABLE | FS_XFLAG_NODUMP});

  EXPECT_EQ(open(path.c_str(), O_WRONLY), -1);
  EXPECT_EQ(errno, EPERM);
  EXPECT_EQ(unlink(path.c_str()), -1);
  EXPECT_EQ(errno, EPERM);
  EXPECT_EQ(rename(path.c_str(), Path("moved").c_str()), -1);
  EXPECT_EQ(errno, EPERM);
  EXPECT_EQ(chmod(path.c_str(), 0600), -1);
  EXPECT_EQ(errno, EPERM);
  EXPECT_EQ(setxattr(path.c_str(), "user.a", "1", 1, 0), -1);
  EXPECT_EQ(errno, EPERM);
  EXPECT_EQ(ReadFile(path), "kept");

  // Another user may not change them (the kernel asks for the owner, and for
  // CAP_LINUX_IMMUTABLE to clear immutable).
  const pid_t child = fork();
  if (child == 0) {
    if (setgid(65534) != 0 || setuid(65534) != 0) _exit(2);
    int cleared = 0;
    _exit(ioctl(fd, FS_IOC_SETFLAGS, &cleared) == -1 && errno == EPERM ? 0 : 3);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);

  // Through FS_IOC_FSSETXATTR (xfs_io's chattr): append-only instead.
  attributes.fsx_xflags = FS_XFLAG_APPEND;
  ASSERT_EQ(ioctl(fd, FS_IOC_FSSETXATTR, &attributes), 0) << strerror(errno);
  ASSERT_EQ(ioctl(fd, FS_IOC_GETFLAGS, &flags), 0);
  EXPECT_EQ(flags, FS_APPEND_FL);
  EXPECT_EQ(open(path.c_str(), O_WRONLY), -1);
  EXPECT_EQ(errno, EPERM);
  const int append = open(path.c_str(), O_WRONLY | O_APPEND);
  ASSERT_GE(append, 0) << strerror(errno);
  EXPECT_EQ(write(append, "+more", 5), 5);
  close(append);
  EXPECT_EQ(ReadFile(path), "kept+more");
  EXPECT_EQ(truncate(path.c_str(), 0), -1);
  EXPECT_EQ(errno, EPERM);
  int unsupported = FS_COMPR_FL;
  EXPECT_EQ(ioctl(fd, FS_IOC_SETFLAGS, &unsupported), -1);
  EXPECT_EQ(errno, EOPNOTSUPP);

  flags = 0;
  ASSERT_EQ(ioctl(fd, FS_IOC_SETFLAGS, &flags), 0);
  close(fd);
  EXPECT_EQ(unlink(path.c_str()), 0) << strerror(errno);
}

TEST_F(MountTest, StatToolPrintsFigures) {
  WriteFile(Path("f"), std::string(100000, 'q'));
  RunResult result = RunProgram({STAT_BINARY, mount_->path()});
  ASSERT_EQ(result.exit_code, 0) << result.output;
  result.output.insert(0, "\n");  // every line, the first too, starts after a newline
  for (const char* name : {"ram_budget_bytes ", "resident_bytes ", "swap_total_bytes ",
                           "swap_used_bytes ", "pageins ", "pageouts ", "nodes ", "dirents "}) {
    EXPECT_NE(result.output.find(std::string("\n") + name), std::string::npos)
        << name << " missing from:\n"
        << result.output;
  }
  EXPECT_NE(result.output.find("ram_budget_bytes 33554432\n"), std::string::npos) << result.output;
  EXPECT_NE(result.output.find("nodes 2\n"), std::string::npos) << result.output;

  RunResult not_root = RunProgram({STAT_BINARY, Path("f")});
  EXPECT_EQ(not_root.exit_code, 1);
  RunResult not_mount = RunProgram({STAT_BINARY, "/"});
  EXPECT_EQ(not_mount.exit_code, 1);
  EXPECT_NE(not_mount.output.find("not the root of a ptmpfs mount"), std::string::npos)
      << not_mount.output;
}

TEST(MountCommandTest, SigtermUnmountsCleanly) {
  SKIP_WITHOUT_FUSE();
  ptmpfs::testing::TempDir dir;
  MountedPtmpfs mount(dir.path() + "/mnt", kSmallMount);
  ASSERT_TRUE(mount.mounted());
  WriteFile(mount / "f", "data");
  EXPECT_EQ(mount.Signal(SIGTERM), 0);
  EXPECT_FALSE(IsFuseMount(mount.path()));
}

// `mount -o remount,ro MOUNTPOINT` runs `ptmpfs SOURCE MOUNTPOINT -o ...,remount,ro`
// through mount.fuse3 (xfstests generic/294, 306, 452): the mounted daemon stays,
// only the mount's flags change. relatime, which mount(8) passes, is accepted too.
TEST(MountCommandTest, RemountChangesReadOnlyAndKeepsTheFiles) {
  SKIP_WITHOUT_FUSE();
  if (geteuid() != 0) GTEST_SKIP() << "remounting needs root";
  ptmpfs::testing::TempDir dir;
  MountedPtmpfs mount(dir.path() + "/mnt", std::string(kSmallMount) + ",relatime");
  ASSERT_TRUE(mount.mounted());
  WriteFile(mount / "f", "kept");
  RunResult ro = RunProgram(
      {PTMPFS_BINARY, "ptmpfs", mount.path(), "-o", "relatime,remount,user_id=0,group_id=0,ro"});
  ASSERT_EQ(ro.exit_code, 0) << ro.output;
  EXPECT_LT(open((mount / "g").c_str(), O_CREAT | O_WRONLY, 0644), 0);
  EXPECT_EQ(errno, EROFS);
  RunResult rw = RunProgram({PTMPFS_BINARY, "ptmpfs", mount.path(), "-o", "remount,rw"});
  ASSERT_EQ(rw.exit_code, 0) << rw.output;
  WriteFile(mount / "g", "writable again");
  EXPECT_EQ(ReadFile(mount / "f"), "kept");
  EXPECT_EQ(mount.Stop(), 0);
}

TEST(MountCommandTest, MalformedOptionsMountNothing) {
  SKIP_WITHOUT_FUSE();
  ptmpfs::testing::TempDir dir;
  const std::string mountpoint = dir.path() + "/mnt";
  mkdir(mountpoint.c_str(), 0755);
  struct Case {
    std::vector<std::string> argv;
    std::string named;  // what the message must name
  };
  const Case cases[] = {
      {{PTMPFS_BINARY, mountpoint, "-f", "-o", "size=12q"}, "size=12q"},
      {{PTMPFS_BINARY, mountpoint, "-f", "-o", "ram=lots"}, "ram=lots"},
      {{PTMPFS_BINARY, mountpoint, "-f", "-o", "ram=1k"}, "ram="},
      {{PTMPFS_BINARY, mountpoint, "-f", "-o", "mode=999"}, "mode=999"},
      {{PTMPFS_BINARY, mountpoint, "-f", "-o", "nr_inodes=-5"}, "nr_inodes=-5"},
      {{PTMPFS_BINARY, mountpoint, "-f", "-o", "size"}, "size"},
      {{PTMPFS_BINARY, mountpoint, "-f", "-o", "bogus_option"}, "bogus_option"},
      {{PTMPFS_BINARY, mountpoint, "-f", "--frobnicate"}, "--frobnicate"},
      {{PTMPFS_BINARY, "a", "b", "c"}, "c"},
      {{PTMPFS_BINARY}, "MOUNTPOINT"},
      {{PTMPFS_BINARY, dir.path() + "/not-a-swap-file", mountpoint, "-f", "-o", "noswap"},
       "noswap"},
  };
  WriteFile(dir.path() + "/junk", "not a swap file");
  for (const Case& test_case : cases) {
    RunResult result = RunProgram(test_case.argv);
    EXPECT_NE(result.exit_code, 0) << test_case.named;
    EXPECT_NE(result.output.find(test_case.named), std::string::npos)
        << "the message should name " << test_case.named << ": " << result.output;
    EXPECT_FALSE(IsFuseMount(mountpoint)) << test_case.named;
    Unmount(mountpoint);
  }
  RunResult junk = RunProgram({PTMPFS_BINARY, dir.path() + "/junk", mountpoint, "-f"});
  EXPECT_NE(junk.exit_code, 0);
  EXPECT_NE(junk.output.find("junk"), std::string::npos) << junk.output;
  EXPECT_FALSE(IsFuseMount(mountpoint));

  RunResult help = RunProgram({PTMPFS_BINARY, "--help"});
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_NE(help.output.find("nr_inodes="), std::string::npos);
  RunResult version = RunProgram({PTMPFS_BINARY, "--version"});
  EXPECT_EQ(version.exit_code, 0);
  EXPECT_NE(version.output.find("ptmpfs"), std::string::npos);
}

TEST(MountCommandTest, DaemonReturnsOnceMountedAndReleasesItsSwapFileOnUnmount) {
  SKIP_WITHOUT_FUSE();
  ptmpfs::testing::TempDir dir;
  const std::string mountpoint = dir.path() + "/mnt";
  const std::string swap = dir.path() + "/swap";
  mkdir(mountpoint.c_str(), 0755);
  RunResult format = RunProgram({MKFS_BINARY, swap, "64M"});
  ASSERT_EQ(format.exit_code, 0) << format.output;

  // Without -f: the command returns only once the mount is up.
  RunResult daemon = RunProgram({PTMPFS_BINARY, swap, mountpoint, "-o", "ram=16M"});
  ASSERT_EQ(daemon.exit_code, 0) << daemon.output;
  EXPECT_TRUE(IsFuseMount(mountpoint));
  struct statvfs stats;
  ASSERT_EQ(statvfs(mountpoint.c_str(), &stats), 0);
  // size= defaults to the formatted file's capacity.
  EXPECT_EQ(static_cast<uint64_t>(stats.f_blocks) * stats.f_frsize, uint64_t{63} << 20);
  WriteFile(mountpoint + "/f", "kept while mounted");

  // Unmounted, then mounted again at once on the same file: the new daemon waits
  // for the old one to let go of the swap file's lock.
  Unmount(mountpoint);
  MountedPtmpfs again(mountpoint, "ram=16M", swap);
  ASSERT_TRUE(again.mounted());
  // A second daemon on a swap file in use is refused (after waiting 10 s for it).
  ptmpfs::testing::TempDir other;
  RunResult refused = RunProgram({PTMPFS_BINARY, swap, other.path(), "-f", "-o", "ram=16M"});
  EXPECT_NE(refused.exit_code, 0);
  EXPECT_NE(refused.output.find("swap"), std::string::npos) << refused.output;
  EXPECT_FALSE(IsFuseMount(other.path()));
  EXPECT_EQ(again.Stop(), 0);
}

TEST(MkfsTest, FormatsChecksAndRefuses) {
  ptmpfs::testing::TempDir dir;
  const std::string swap = dir.path() + "/swap";
  RunResult format = RunProgram({MKFS_BINARY, swap, "8M"});
  ASSERT_EQ(format.exit_code, 0) << format.output;
  EXPECT_NE(format.output.find("1792 slots"), std::string::npos) << format.output;
  EXPECT_NE(format.output.find("uuid "), std::string::npos) << format.output;
  EXPECT_NE(format.output.find("offset 1048576"), std::string::npos) << format.output;
  struct stat st;
  ASSERT_EQ(stat(swap.c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 8 << 20);
  EXPECT_GE(st.st_blocks * 512, 8 << 20) << "every block allocated";

  RunResult check = RunProgram({MKFS_BINARY, "--check", swap});
  EXPECT_EQ(check.exit_code, 0) << check.output;
  EXPECT_NE(check.output.find("ok"), std::string::npos) << check.output;
  // Reformatting a swap file not in use needs no -f.
  EXPECT_EQ(RunProgram({MKFS_BINARY, swap, "4M"}).exit_code, 0);

  // A damaged header: --check says what is wrong.
  const int fd = open(swap.c_str(), O_WRONLY);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(pwrite(fd, "X", 1, 20), 1);
  close(fd);
  RunResult damaged = RunProgram({MKFS_BINARY, "--check", swap});
  EXPECT_EQ(damaged.exit_code, 1);
  EXPECT_NE(damaged.output.find("checksum"), std::string::npos) << damaged.output;

  // Something else is refused unless -f.
  const std::string other = dir.path() + "/precious";
  WriteFile(other, "precious data");
  RunResult refused = RunProgram({MKFS_BINARY, other, "4M"});
  EXPECT_EQ(refused.exit_code, 1);
  EXPECT_NE(refused.output.find("holds something else"), std::string::npos) << refused.output;
  EXPECT_EQ(ReadFile(other), "precious data");
  RunResult junk_check = RunProgram({MKFS_BINARY, "--check", other});
  EXPECT_EQ(junk_check.exit_code, 1);
  EXPECT_NE(junk_check.output.find("magic"), std::string::npos) << junk_check.output;
  EXPECT_EQ(RunProgram({MKFS_BINARY, "-f", other, "4M"}).exit_code, 0);
  EXPECT_EQ(RunProgram({MKFS_BINARY, "--check", other}).exit_code, 0);

  // In use (locked by a daemon): refused, even with -f.
  const int locked = open(swap.c_str(), O_RDWR);
  ASSERT_GE(locked, 0);
  ASSERT_EQ(flock(locked, LOCK_EX), 0);
  RunResult in_use = RunProgram({MKFS_BINARY, "-f", swap, "4M"});
  EXPECT_EQ(in_use.exit_code, 1);
  EXPECT_NE(in_use.output.find("in use"), std::string::npos) << in_use.output;
  close(locked);

  RunResult bad_size = RunProgram({MKFS_BINARY, dir.path() + "/new", "12q"});
  EXPECT_NE(bad_size.exit_code, 0);
  EXPECT_NE(bad_size.output.find("12q"), std::string::npos) << bad_size.output;
  RunResult tiny = RunProgram({MKFS_BINARY, dir.path() + "/tiny", "4k"});
  EXPECT_NE(tiny.exit_code, 0);
  EXPECT_EQ(access((dir.path() + "/tiny").c_str(), F_OK), -1) << "a failed format leaves no file";
  EXPECT_NE(RunProgram({MKFS_BINARY}).exit_code, 0);
}

}  // namespace
