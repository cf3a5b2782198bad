// mount_options_test: mounts the built ptmpfs with the options that change how the
// kernel talks to it, and with mount(8) from an fstab line.
//
//   writeback_cache  the kernel caches writes and owns size and mtime until it
//                    flushes them; data, sizes and times must still come out right,
//                    through appends, truncates and O_DIRECT beside cached writes.
//   clone_fd         one /dev/fuse descriptor per worker thread: a request must be
//                    answered on the descriptor it came from, under concurrency.
//   fstab            `mount -T FSTAB MOUNTPOINT` runs mount.fuse3, which runs
//                    `ptmpfs SWAPFILE MOUNTPOINT -o ...` (see the fstab tests).
//
// Each mount is a MountedPtmpfs (or, for mount(8), a guard) that always unmounts.
// Tests skip, saying why, only where /dev/fuse is missing (and, for mount(8), where
// mount(8) or mount.fuse3 is missing or we are not root).
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "test/fs/mounted_ptmpfs.h"
#include "test/testing.h"

namespace {

using namespace ptmpfs_mount_test;  // NOLINT: the shared mount helpers

constexpr size_t kPage = 4096;

std::string ReadAll(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY);
  if (fd < 0) return "<" + std::string(strerror(errno)) + ">";
  std::string data;
  char buffer[65536];
  ssize_t got;
  while ((got = read(fd, buffer, sizeof(buffer))) > 0) data.append(buffer, got);
  close(fd);
  return data;
}

std::string Pattern(size_t size, int seed) {
  std::string data(size, '\0');
  for (size_t i = 0; i < size; ++i) data[i] = static_cast<char>((i * 31 + seed * 7 + 1) % 251);
  return data;
}

int64_t Ns(const timespec& time) { return int64_t{time.tv_sec} * 1000000000 + time.tv_nsec; }

int64_t NowNs() {
  timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  return Ns(now);
}

// A page-aligned buffer for O_DIRECT.
struct AlignedBuffer {
  explicit AlignedBuffer(size_t size) : size(size) {
    void* memory = nullptr;
    if (posix_memalign(&memory, kPage, size) == 0) data = static_cast<char*>(memory);
  }
  ~AlignedBuffer() { free(data); }
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
  std::string str() const { return std::string(data, size); }

  char* data = nullptr;
  size_t size;
};

class WritebackCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SKIP_WITHOUT_FUSE();
    mount_.emplace(dir_.path() + "/mnt", "ram=32M,size=256M,writeback_cache");
    ASSERT_TRUE(mount_->mounted()) << "ptmpfs did not mount with -o writeback_cache";
  }
  void TearDown() override {
    if (mount_.has_value()) {
      EXPECT_EQ(mount_->Stop(), 0) << "the daemon's exit";
    }
  }
  std::string Path(const std::string& name) const { return *mount_ / name; }
  // stat through a path: a lookup (or the kernel's cached attributes).
  struct stat Stat(const std::string& name) {
    struct stat st {};
    EXPECT_EQ(stat(Path(name).c_str(), &st), 0) << name << ": " << strerror(errno);
    return st;
  }

  ptmpfs::testing::TempDir dir_;
  std::optional<MountedPtmpfs> mount_;
};

TEST_F(WritebackCacheTest, WrittenDataReadsBackWithTheRightSizeAndMtime) {
  const std::string path = Path("f");
  const int fd = open(path.c_str(), O_RDWR | O_CREAT | O_EXCL, 0644);
  ASSERT_GE(fd, 0) << strerror(errno);
  // An old mtime first, so that the writes' new one shows.
  const timespec old_times[2] = {{1000, 0}, {1000, 0}};
  ASSERT_EQ(futimens(fd, old_times), 0);
  const int64_t before = NowNs();
  const std::string data = Pattern(5 * kPage + 123, 1);
  ASSERT_EQ(pwrite(fd, data.data(), data.size(), 777), static_cast<ssize_t>(data.size()));
  std::string back(data.size(), '\0');
  ASSERT_EQ(pread(fd, back.data(), back.size(), 777), static_cast<ssize_t>(back.size()));
  EXPECT_EQ(back, data);
  struct stat st {};
  ASSERT_EQ(fstat(fd, &st), 0);
  EXPECT_EQ(st.st_size, static_cast<off_t>(777 + data.size()));
  EXPECT_GE(Ns(st.st_mtim), before - 1000000000) << "the write's mtime";
  ASSERT_EQ(fsync(fd), 0);
  ASSERT_EQ(close(fd), 0);

  // After the flush, through the daemon: the bytes, the size, the blocks, the mtime.
  EXPECT_EQ(ReadAll(path), std::string(777, '\0') + data);
  st = Stat("f");
  EXPECT_EQ(st.st_size, static_cast<off_t>(777 + data.size()));
  EXPECT_GE(static_cast<uint64_t>(st.st_blocks) * 512, data.size());
  EXPECT_GE(Ns(st.st_mtim), before - 1000000000);
  EXPECT_LE(Ns(st.st_mtim), NowNs() + 1000000000);
  EXPECT_GE(Ns(st.st_ctim), before - 1000000000);

  // A file written and closed without fsync: its data reaches the daemon too (the
  // kernel flushes dirty pages on close), and a second mount of nothing else needed.
  const std::string other = Pattern(3 * kPage, 2);
  const int fd2 = open(Path("g").c_str(), O_WRONLY | O_CREAT | O_EXCL, 0600);
  ASSERT_GE(fd2, 0) << strerror(errno);
  ASSERT_EQ(write(fd2, other.data(), other.size()), static_cast<ssize_t>(other.size()));
  ASSERT_EQ(close(fd2), 0);
  EXPECT_EQ(ReadAll(Path("g")), other);
  EXPECT_EQ(Stat("g").st_size, static_cast<off_t>(other.size()));
}

TEST_F(WritebackCacheTest, AppendThenTruncateThroughTheCache) {
  const std::string path = Path("log");
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  ASSERT_GE(fd, 0) << strerror(errno);
  std::string expected;
  for (int i = 0; i < 50; ++i) {
    const std::string line = "line " + std::to_string(i) + " " + Pattern(100 + i * 37, i) + "\n";
    ASSERT_EQ(write(fd, line.data(), line.size()), static_cast<ssize_t>(line.size()));
    expected += line;
  }
  struct stat st {};
  ASSERT_EQ(fstat(fd, &st), 0);
  EXPECT_EQ(st.st_size, static_cast<off_t>(expected.size()));
  // Shrink through the open file while pages are dirty, then append again: the
  // append lands at the new end, not the old one.
  ASSERT_EQ(ftruncate(fd, 1000), 0);
  expected.resize(1000);
  ASSERT_EQ(write(fd, "tail", 4), 4);
  expected += "tail";
  ASSERT_EQ(fstat(fd, &st), 0);
  EXPECT_EQ(st.st_size, 1004);
  ASSERT_EQ(close(fd), 0);
  EXPECT_EQ(ReadAll(path), expected);
  EXPECT_EQ(Stat("log").st_size, 1004);

  // Grow by truncate(2), by path: the new part reads as zeros.
  ASSERT_EQ(truncate(path.c_str(), 3 * kPage), 0);
  EXPECT_EQ(Stat("log").st_size, static_cast<off_t>(3 * kPage));
  EXPECT_EQ(ReadAll(path), expected + std::string(3 * kPage - expected.size(), '\0'));
  // Shrink to nothing: no data and no blocks left.
  ASSERT_EQ(truncate(path.c_str(), 0), 0);
  EXPECT_EQ(ReadAll(path), "");
  st = Stat("log");
  EXPECT_EQ(st.st_size, 0);
  EXPECT_EQ(st.st_blocks, 0);
}

TEST_F(WritebackCacheTest, ODirectSeesCachedWritesAndCachedReadsSeeODirect) {
  const std::string path = Path("mixed");
  const int cached = open(path.c_str(), O_RDWR | O_CREAT, 0644);
  ASSERT_GE(cached, 0) << strerror(errno);
  const std::string first = Pattern(4 * kPage, 3);
  ASSERT_EQ(pwrite(cached, first.data(), first.size(), 0), static_cast<ssize_t>(first.size()));

  const int direct = open(path.c_str(), O_RDWR | O_DIRECT);
  ASSERT_GE(direct, 0) << "O_DIRECT open: " << strerror(errno);
  // A direct read sees what is still dirty in the page cache (the kernel writes it
  // back first).
  AlignedBuffer read_back(4 * kPage);
  ASSERT_NE(read_back.data, nullptr);
  ASSERT_EQ(pread(direct, read_back.data, read_back.size, 0), static_cast<ssize_t>(read_back.size));
  EXPECT_TRUE(read_back.str() == first) << "a direct read missed cached writes";

  // A direct write past the end and over the middle; cached reads see it (the kernel
  // drops the cached pages it covers).
  AlignedBuffer direct_data(2 * kPage);
  ASSERT_NE(direct_data.data, nullptr);
  const std::string second = Pattern(direct_data.size, 4);
  memcpy(direct_data.data, second.data(), second.size());
  ASSERT_EQ(pwrite(direct, direct_data.data, direct_data.size, 3 * kPage),
            static_cast<ssize_t>(direct_data.size));
  std::string expected = first.substr(0, 3 * kPage) + second;
  struct stat st {};
  ASSERT_EQ(fstat(cached, &st), 0);
  EXPECT_EQ(st.st_size, static_cast<off_t>(expected.size()));
  std::string back(expected.size(), '\0');
  ASSERT_EQ(pread(cached, back.data(), back.size(), 0), static_cast<ssize_t>(back.size()));
  EXPECT_TRUE(back == expected) << "a cached read missed a direct write";

  // Cached again, then direct again, interleaved on one page each.
  ASSERT_EQ(pwrite(cached, "cached", 6, 100), 6);
  expected.replace(100, 6, "cached");
  ASSERT_EQ(pread(direct, read_back.data, kPage, 0), static_cast<ssize_t>(kPage));
  EXPECT_EQ(std::string(read_back.data + 100, 6), "cached");
  ASSERT_EQ(close(direct), 0);
  ASSERT_EQ(close(cached), 0);
  EXPECT_TRUE(ReadAll(path) == expected);
  EXPECT_EQ(Stat("mixed").st_size, static_cast<off_t>(expected.size()));
}

// libfuse's clone_fd: each worker reads requests from a /dev/fuse descriptor of its
// own. Threads create, write, read, list, rename and remove files at once.
TEST(CloneFdTest, MountsAndServesConcurrentOperations) {
  SKIP_WITHOUT_FUSE();
  ptmpfs::testing::TempDir dir;
  MountedPtmpfs mount(dir.path() + "/mnt", "ram=32M,size=256M,clone_fd,max_threads=4");
  ASSERT_TRUE(mount.mounted()) << "ptmpfs did not mount with -o clone_fd";
  constexpr int kThreads = 4;
  constexpr int kFiles = 100;
  std::atomic<int> failures{0};
  std::vector<std::string> first_failure(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      auto fail = [&](const std::string& what) {
        if (first_failure[t].empty()) first_failure[t] = what + ": " + strerror(errno);
        failures.fetch_add(1);
      };
      const std::string sub = mount / ("t" + std::to_string(t));
      if (mkdir(sub.c_str(), 0755) != 0) return fail("mkdir " + sub);
      for (int i = 0; i < kFiles; ++i) {
        const std::string name = sub + "/f" + std::to_string(i);
        const std::string data = Pattern(100 + i * 91, t * 1000 + i);
        const int fd = open(name.c_str(), O_RDWR | O_CREAT | O_EXCL, 0644);
        if (fd < 0) return fail("create " + name);
        const bool written =
            write(fd, data.data(), data.size()) == static_cast<ssize_t>(data.size());
        close(fd);
        if (!written) return fail("write " + name);
        if (ReadAll(name) != data) return fail("read back " + name);
        if (i % 3 == 0 && rename(name.c_str(), (name + ".r").c_str()) != 0) {
          return fail("rename " + name);
        }
      }
      int listed = 0;
      DIR* listing = opendir(sub.c_str());
      if (listing == nullptr) return fail("opendir " + sub);
      while (dirent* entry = readdir(listing)) listed += entry->d_name[0] != '.';
      closedir(listing);
      if (listed != kFiles) {
        errno = 0;
        return fail("listed " + std::to_string(listed) + " in " + sub);
      }
      for (int i = 0; i < kFiles; ++i) {
        const std::string name = sub + "/f" + std::to_string(i) + (i % 3 == 0 ? ".r" : "");
        if (unlink(name.c_str()) != 0) return fail("unlink " + name);
      }
      if (rmdir(sub.c_str()) != 0) return fail("rmdir " + sub);
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(failures.load(), 0);
  for (const std::string& failure : first_failure) EXPECT_EQ(failure, "");
  // Everything went: the root is empty (FORGET being asynchronous, the node count
  // is not looked at).
  DIR* root = opendir(mount.path().c_str());
  ASSERT_NE(root, nullptr) << strerror(errno);
  int left = 0;
  while (dirent* entry = readdir(root)) left += entry->d_name[0] != '.';
  closedir(root);
  EXPECT_EQ(left, 0);
  EXPECT_EQ(mount.Stop(), 0) << "the daemon's exit";
}

// ---- fstab ----
//
// mount(8) runs mount.fuse3 with an empty environment (checked on Debian 12: the
// daemon's environ holds HOME alone), and mount.fuse3 runs `ptmpfs SWAPFILE
// MOUNTPOINT -o ...` through /bin/sh, so a `fuse.ptmpfs` line finds `ptmpfs` only
// on the shell's default PATH, whatever the caller's PATH: in practice the one
// `cmake --install` put in /usr/local/sbin, which a test must not replace (README's
// `fuse.ptmpfs` line is what xfstests-config/ mounts with). The same way through
// mount(8) and mount.fuse3 is tested here with the `fuse` type, whose source names
// the program (`PROGRAM#SWAPFILE`): the built binary.

// Why mounting from fstab cannot be tested here, or "" if it can.
std::string WhyNoFstabMount(std::string& mount_program, std::string& umount_program) {
  if (!HaveFuse()) return "/dev/fuse is missing: cannot mount";
  if (geteuid() != 0) return "mounting from an fstab file needs root";
  for (const char* directory : {"/usr/bin", "/bin"}) {
    if (access((std::string(directory) + "/mount").c_str(), X_OK) == 0) {
      mount_program = std::string(directory) + "/mount";
      umount_program = std::string(directory) + "/umount";
      break;
    }
  }
  if (mount_program.empty()) return "mount(8) is not installed";
  for (const char* helper : {"/sbin/mount.fuse3", "/usr/sbin/mount.fuse3"}) {
    if (access(helper, X_OK) == 0) return "";
  }
  return "mount.fuse3 (package fuse3) is not installed";
}

// Writes `line` as the fstab, mounts MOUNTPOINT from it with mount(8), checks the
// mount (size= and ram= took, files work, /proc/mounts lists the swap file as the
// source and the type fuse.ptmpfs) and unmounts it with umount(8).
void MountFromFstab(const std::string& fstab_type, const std::string& source_prefix) {
  std::string mount_program, umount_program;
  ASSERT_EQ(WhyNoFstabMount(mount_program, umount_program), "");
  ptmpfs::testing::TempDir dir;
  const std::string mountpoint = dir.path() + "/mnt";
  const std::string swap = dir.path() + "/swap";
  const std::string fstab = dir.path() + "/fstab";
  ASSERT_EQ(mkdir(mountpoint.c_str(), 0755), 0);
  RunResult format = RunProgram({MKFS_BINARY, swap, "64M"});
  ASSERT_EQ(format.exit_code, 0) << format.output;
  const std::string line =
      source_prefix + swap + " " + mountpoint + " " + fstab_type + " size=64M,ram=16M 0 0";
  {
    std::ofstream table(fstab);
    table << "# written by mount_options_test\n" << line << "\n";
  }
  // Always unmounted, whatever fails below; the daemon exits once it is.
  struct Unmounter {
    std::string path;
    ~Unmounter() { Unmount(path); }
  } unmounter{mountpoint};

  RunResult mounted = RunProgram({mount_program, "-T", fstab, mountpoint});
  ASSERT_EQ(mounted.exit_code, 0) << line << "\n" << mounted.output;
  ASSERT_TRUE(IsFuseMount(mountpoint)) << "mount(8) returned, but nothing is mounted";

  struct statvfs stats {};
  ASSERT_EQ(statvfs(mountpoint.c_str(), &stats), 0);
  EXPECT_EQ(static_cast<uint64_t>(stats.f_blocks) * stats.f_frsize, uint64_t{64} << 20)
      << "size=64M did not reach the daemon";
  const std::string data = Pattern(3 * kPage + 5, 9);
  {
    std::ofstream file(mountpoint + "/f", std::ios::binary);
    file << data;
  }
  EXPECT_EQ(ReadAll(mountpoint + "/f"), data);
  std::ifstream mounts("/proc/self/mounts");
  std::string entry;
  bool listed = false;
  while (std::getline(mounts, entry)) {
    if (entry.find(" " + mountpoint + " ") == std::string::npos) continue;
    listed = true;
    EXPECT_EQ(entry.rfind(swap + " ", 0), 0u) << entry;
    EXPECT_NE(entry.find(" fuse.ptmpfs "), std::string::npos) << entry;
  }
  EXPECT_TRUE(listed) << "not in /proc/self/mounts";

  RunResult unmounted = RunProgram({umount_program, mountpoint});
  EXPECT_EQ(unmounted.exit_code, 0) << unmounted.output;
  EXPECT_FALSE(IsFuseMount(mountpoint));
}

// `PROGRAM#SWAPFILE MOUNTPOINT fuse OPTIONS`: mount.fuse3 runs PROGRAM, the built one.
TEST(FstabTest, MountsTheBuiltPtmpfsFromAFuseLineNamingIt) {
  std::string mount_program, umount_program;
  if (std::string why = WhyNoFstabMount(mount_program, umount_program); !why.empty()) {
    GTEST_SKIP() << why;
  }
  MountFromFstab("fuse", std::string(PTMPFS_BINARY) + "#");
}

}  // namespace
