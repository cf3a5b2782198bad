// stress_test: half a million files through a 16 MiB budget (issue 5).
//
// Mounts the built ptmpfs in the foreground with ram=16M and makes a tree of empty
// files whose metadata (a node and a directory entry each, about 256 bytes) is some
// eight times the budget, so most of it must live in swap. Several threads create the
// files at once, through the multi-threaded FUSE loop; then every file is stat'ed,
// every directory read and its entries counted one by one, and everything removed.
// The kernel caches no entries or attributes (kMountOptions), so each stat and each
// unlink is a lookup the daemon answers from metadata that is mostly in swap.
//
// What it shows:
//   1. The daemon stays a small process: its peak resident set (VmHWM) is under
//      kMaxDaemonPeakRss while more than kMinSwapUsed of metadata sits in swap. Only
//      checked without sanitizers, whose shadow memory makes RSS meaningless; the
//      sanitized build also runs half the files (kSanitizedScale), to stay within
//      CI's budget.
//   2. Every file created is there, once: stat finds each, and each directory lists
//      exactly its files, no duplicate, none missing.
//   3. Removing everything leaves the root alone: nodes 1 and dirents 0, as
//      ptmpfs-stat prints them.
// Figures (rates, the daemon's peak RSS, swap at its peak, page-outs) are printed.
//
// Descriptors: at most one directory descriptor per thread is open at a time (the
// hard limit on open files is far below the number of files). The mount is always
// taken down by a guard, whatever fails; a watchdog forces it down if the daemon hangs.
#include <dirent.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "fs/fuse_adapter.h"
#include "gtest/gtest.h"
#include "test/fs/mounted_ptmpfs.h"
#include "test/testing.h"

namespace {

using namespace ptmpfs_mount_test;  // NOLINT: the shared mount helpers

// The tree: kDirectories × kFilesPerDirectory = 500,000 files, each name 24 bytes.
// Under sanitizers half the directories: a sanitized daemon is two to three times
// slower, and 250,000 files (some 64 MiB of metadata) still page out through the
// 16 MiB budget, so the sanitizers watch page-outs and page-ins too.
constexpr int kSanitizedScale = 2;
constexpr int kDirectories = ptmpfs::testing::kSanitized ? 500 / kSanitizedScale : 500;
constexpr int kFilesPerDirectory = 1000;
constexpr int kFiles = kDirectories * kFilesPerDirectory;
// Four creators on two CPUs: enough to keep several FUSE workers busy at once.
constexpr int kThreads = 4;

// A 16 MiB budget, and room for the tree: 500,000 files need about 128 MiB of
// metadata; nr_inodes is twice what they need. The kernel is told to cache no entry
// and no attribute: with the default day it would answer every stat (and find every
// name to unlink) itself, and the daemon would never have to page metadata back in.
constexpr char kMountOptions[] = "ram=16M,size=2G,nr_inodes=1m,entry_timeout=0,attr_timeout=0";
// What "bounded by the budget" means here: 16 MiB of frames plus the process's own
// keep (binary, libraries, thread stacks, libfuse's request buffers, the software page
// tables and swap bookkeeping), which together stay well under six times the budget.
constexpr uint64_t kMaxDaemonPeakRss = uint64_t{96} << 20;
// Metadata of 500,000 files is far past the budget: at least 64 MiB of it is in swap.
constexpr uint64_t kMinSwapUsed = uint64_t{64} << 20;

// How long the daemon may take to forget the nodes the kernel dropped (FORGET is
// asynchronous: no reply says it was handled, and nothing announces it, so the count
// is read again every kForgetPollInterval until then). Mounting and unmounting wait
// as test/fs/mounted_ptmpfs.h says.
constexpr auto kForgetDeadline = std::chrono::seconds(60);
constexpr auto kForgetPollInterval = std::chrono::milliseconds(5);

// Ends a hung run cleanly. Should the test not be done within kHangDeadline (a stuck
// daemon blocks every thread in a system call on the mount), it forces the mount
// down: umount2(MNT_FORCE) aborts the FUSE connection, so every waiting call fails
// with ECONNABORTED, the test fails, and the guards unmount and reap as usual rather
// than CTest killing the test and leaving the mount behind.
class HangWatchdog {
 public:
  explicit HangWatchdog(const std::string& mountpoint)
      : thread_([this, mountpoint] {
          absl::MutexLock lock(&mu_);
          if (mu_.AwaitWithTimeout(absl::Condition(&done_), kHangDeadline)) return;
          fired_ = true;
          fprintf(stderr, "stress_test: not done after %s: forcing %s down\n",
                  absl::FormatDuration(kHangDeadline).c_str(), mountpoint.c_str());
          if (umount2(mountpoint.c_str(), MNT_FORCE) != 0) umount2(mountpoint.c_str(), MNT_DETACH);
        }) {}
  HangWatchdog(const HangWatchdog&) = delete;
  HangWatchdog& operator=(const HangWatchdog&) = delete;

  ~HangWatchdog() {
    {
      absl::MutexLock lock(&mu_);
      done_ = true;
    }
    thread_.join();
  }

  bool fired() {
    absl::MutexLock lock(&mu_);
    return fired_;
  }

 private:
  // Well before CTest's timeout for the stress label (1800 s in test/CMakeLists.txt),
  // and some ten times the longest run measured (about 45 s without sanitizers,
  // 40 s with them on half the files).
  static constexpr absl::Duration kHangDeadline = absl::Minutes(20);

  absl::Mutex mu_;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  bool fired_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;  // last: it runs once the fields above are made
};

// The daemon's figures through its ioctl (what ptmpfs-stat prints), by name.
struct Figures {
  uint64_t resident_bytes = 0;
  uint64_t swap_used_bytes = 0;
  uint64_t pageouts = 0;
  uint64_t pageins = 0;
  uint64_t nodes = 0;
  uint64_t dirents = 0;
};

std::optional<Figures> ReadFigures(const std::string& mountpoint) {
  const int fd = open(mountpoint.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  ptmpfs::fs::IoctlFigures raw{};
  const int result = ioctl(fd, ptmpfs::fs::kIoctlReadFigures, &raw);
  close(fd);
  if (result != 0 || raw.version != ptmpfs::fs::kFiguresVersion) return std::nullopt;
  auto value = [&raw](const char* name) -> uint64_t {
    for (size_t i = 0; i < std::min<size_t>(raw.count, ptmpfs::fs::kFigureCount); ++i) {
      if (strcmp(ptmpfs::fs::kFigureNames[i], name) == 0) return raw.values[i];
    }
    return 0;
  };
  Figures figures;
  figures.resident_bytes = value("resident_bytes");
  figures.swap_used_bytes = value("swap_used_bytes");
  figures.pageouts = value("pageouts");
  figures.pageins = value("pageins");
  figures.nodes = value("nodes");
  figures.dirents = value("dirents");
  return figures;
}

// A `Field: N kB` line of /proc/<pid>/status, in bytes; 0 if absent.
uint64_t ProcStatusBytes(pid_t pid, const std::string& field) {
  std::ifstream status(absl::StrFormat("/proc/%d/status", pid));
  std::string line;
  const std::string prefix = field + ":";
  while (std::getline(status, line)) {
    if (line.rfind(prefix, 0) != 0) continue;
    std::string digits;
    for (char c : line.substr(prefix.size())) {
      if (c >= '0' && c <= '9') digits.push_back(c);
    }
    uint64_t kilobytes = 0;
    if (absl::SimpleAtoi(digits, &kilobytes)) return kilobytes * 1024;
  }
  return 0;
}

double MiB(uint64_t bytes) { return static_cast<double>(bytes) / (1 << 20); }

std::string DirectoryName(int directory) { return absl::StrFormat("dir-%03d", directory); }
// 24 bytes: "stress-file-name-" and seven digits.
std::string FileName(int file) { return absl::StrFormat("stress-file-name-%07d", file); }

// Runs `work` on each directory number, spread over kThreads threads, each taking the
// next directory when done with one. The first failure any thread reports (a message)
// stops them all and is returned; "" when all succeeded.
std::string ForEachDirectory(const std::function<std::string(int directory)>& work) {
  std::atomic<int> next{0};
  absl::Mutex mu;
  std::string first_failure;  // guarded by mu
  std::atomic<bool> failed{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int directory; !failed.load() && (directory = next.fetch_add(1)) < kDirectories;) {
        std::string failure = work(directory);
        if (failure.empty()) continue;
        absl::MutexLock lock(&mu);
        if (first_failure.empty()) first_failure = std::move(failure);
        failed.store(true);
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  return first_failure;
}

std::string Errno(const std::string& what) { return what + ": " + strerror(errno); }

// One phase's figure line.
void PrintRate(const char* phase, int64_t operations, Clock::duration elapsed) {
  const double seconds = std::chrono::duration<double>(elapsed).count();
  printf("[ figures  ] %-8s %8lld in %7.2f s: %9.0f /s\n", phase,
         static_cast<long long>(operations), seconds, operations / seconds);
  fflush(stdout);
}

TEST(StressTest, HalfAMillionFilesThroughSixteenMegabytes) {
  SKIP_WITHOUT_FUSE();
  ptmpfs::testing::TempDir dir;
  MountedPtmpfs mount(dir.path() + "/mnt", kMountOptions);
  ASSERT_TRUE(mount.mounted()) << "ptmpfs did not mount";
  HangWatchdog watchdog(mount.path());
  const std::string root = mount.path();
  const pid_t daemon = mount.pid();
  printf("[ figures  ] %d files in %d directories, %d threads, -o %s%s\n", kFiles, kDirectories,
         kThreads, kMountOptions, ptmpfs::testing::kSanitized ? " (sanitized: scaled down)" : "");
  fflush(stdout);

  // The directories first, from here; then the files, from every thread.
  for (int directory = 0; directory < kDirectories; ++directory) {
    ASSERT_EQ(mkdir((root + "/" + DirectoryName(directory)).c_str(), 0755), 0)
        << DirectoryName(directory) << ": " << strerror(errno);
  }
  auto start = Clock::now();
  std::string failure = ForEachDirectory([&](int directory) -> std::string {
    const std::string path = root + "/" + DirectoryName(directory);
    const int dir_fd = open(path.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (dir_fd < 0) return Errno(path);
    for (int file = 0; file < kFilesPerDirectory; ++file) {
      const int fd =
          openat(dir_fd, FileName(file).c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644);
      if (fd < 0) {
        close(dir_fd);
        return Errno(path + "/" + FileName(file));
      }
      close(fd);
    }
    close(dir_fd);
    return "";
  });
  ASSERT_EQ(failure, "") << "creating";
  PrintRate("create", kFiles, Clock::now() - start);

  // Right after creation: the metadata's peak, nearly all of it paged out.
  std::optional<Figures> created = ReadFigures(root);
  ASSERT_TRUE(created.has_value()) << "the figures ioctl failed";
  EXPECT_EQ(created->nodes, uint64_t{1} + kDirectories + kFiles);
  EXPECT_EQ(created->dirents, uint64_t{kDirectories} + kFiles);
  uint64_t swap_used_peak = created->swap_used_bytes;

  start = Clock::now();
  failure = ForEachDirectory([&](int directory) -> std::string {
    const std::string path = root + "/" + DirectoryName(directory);
    const int dir_fd = open(path.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (dir_fd < 0) return Errno(path);
    std::string result;
    for (int file = 0; file < kFilesPerDirectory && result.empty(); ++file) {
      struct stat st;
      if (fstatat(dir_fd, FileName(file).c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
        result = Errno(path + "/" + FileName(file));
      } else if (!S_ISREG(st.st_mode) || st.st_size != 0 || st.st_nlink != 1 ||
                 (st.st_mode & 07777) != 0644) {
        result = absl::StrFormat("%s/%s: mode %o, size %d, nlink %d", path, FileName(file),
                                 st.st_mode, st.st_size, st.st_nlink);
      }
    }
    close(dir_fd);
    return result;
  });
  ASSERT_EQ(failure, "") << "stat";
  PrintRate("stat", kFiles, Clock::now() - start);

  // Each directory's entries, counted one by one: a duplicate or a missing name fails.
  std::atomic<int64_t> entries_read{0};
  start = Clock::now();
  failure = ForEachDirectory([&](int directory) -> std::string {
    const std::string path = root + "/" + DirectoryName(directory);
    const int dir_fd = open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir_fd < 0) return Errno(path);
    std::vector<bool> seen(kFilesPerDirectory, false);
    int dots = 0;
    int files = 0;
    std::string result;
    alignas(8) char buffer[32768];
    for (;;) {
      const long got = syscall(SYS_getdents64, dir_fd, buffer, sizeof(buffer));
      if (got < 0) {
        result = Errno(path + ": getdents64");
        break;
      }
      if (got == 0) break;
      for (long at = 0; at < got && result.empty();) {
        const auto* entry = reinterpret_cast<const dirent64*>(buffer + at);
        at += entry->d_reclen;
        const std::string name = entry->d_name;
        if (name == "." || name == "..") {
          ++dots;
          continue;
        }
        int file = -1;
        if (name.rfind("stress-file-name-", 0) != 0 ||
            !absl::SimpleAtoi(name.substr(strlen("stress-file-name-")), &file) || file < 0 ||
            file >= kFilesPerDirectory || FileName(file) != name) {
          result = path + ": an entry not created: " + name;
        } else if (seen[file]) {
          result = path + ": listed twice: " + name;
        } else if (entry->d_type != DT_REG) {
          result = absl::StrFormat("%s/%s: d_type %d", path, name, entry->d_type);
        } else {
          seen[file] = true;
          ++files;
        }
      }
      if (!result.empty()) break;
    }
    close(dir_fd);
    entries_read.fetch_add(files + dots);
    if (result.empty() && (files != kFilesPerDirectory || dots != 2)) {
      result = absl::StrFormat("%s: %d files and %d dots listed, not %d and 2", path, files, dots,
                               kFilesPerDirectory);
    }
    return result;
  });
  ASSERT_EQ(failure, "") << "readdir";
  PrintRate("readdir", entries_read.load(), Clock::now() - start);
  {
    DIR* top = opendir(root.c_str());
    ASSERT_NE(top, nullptr) << strerror(errno);
    int directories = 0;
    while (dirent* entry = readdir(top)) directories += entry->d_name[0] != '.';
    closedir(top);
    EXPECT_EQ(directories, kDirectories);
  }

  std::optional<Figures> listed = ReadFigures(root);
  ASSERT_TRUE(listed.has_value());
  swap_used_peak = std::max(swap_used_peak, listed->swap_used_bytes);

  start = Clock::now();
  failure = ForEachDirectory([&](int directory) -> std::string {
    const std::string name = DirectoryName(directory);
    const int dir_fd = open((root + "/" + name).c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (dir_fd < 0) return Errno(name);
    for (int file = 0; file < kFilesPerDirectory; ++file) {
      if (unlinkat(dir_fd, FileName(file).c_str(), 0) != 0) {
        close(dir_fd);
        return Errno(name + "/" + FileName(file));
      }
    }
    close(dir_fd);
    if (rmdir((root + "/" + name).c_str()) != 0) return Errno(name);
    return "";
  });
  ASSERT_EQ(failure, "") << "removing";
  PrintRate("unlink", kFiles, Clock::now() - start);

  // The daemon's peak, taken while it still runs; what made it up, to read a failure.
  const uint64_t daemon_peak_rss = ProcStatusBytes(daemon, "VmHWM");
  printf(
      "[ figures  ] daemon peak RSS %.1f MiB (now %.1f MiB: anon %.1f, file %.1f); swap used at "
      "peak %.1f MiB; resident %.1f MiB of the 16 MiB budget; pageouts %llu, pageins %llu\n",
      MiB(daemon_peak_rss), MiB(ProcStatusBytes(daemon, "VmRSS")),
      MiB(ProcStatusBytes(daemon, "RssAnon")), MiB(ProcStatusBytes(daemon, "RssFile")),
      MiB(swap_used_peak), MiB(listed->resident_bytes),
      static_cast<unsigned long long>(listed->pageouts),
      static_cast<unsigned long long>(listed->pageins));
  fflush(stdout);
  if (!ptmpfs::testing::kSanitized) {
    EXPECT_LT(daemon_peak_rss, kMaxDaemonPeakRss) << "the daemon outgrew its budget";
    EXPECT_GT(swap_used_peak, kMinSwapUsed) << "the metadata did not page out";
  }

  // Every node is gone once the kernel has forgotten it: FORGET has no reply, so the
  // count is polled (with a deadline) until the last one is handled.
  std::optional<Figures> emptied = ReadFigures(root);
  for (const auto deadline = Clock::now() + kForgetDeadline;
       emptied.has_value() && emptied->nodes != 1 && Clock::now() < deadline;
       emptied = ReadFigures(root)) {
    std::this_thread::sleep_for(kForgetPollInterval);
  }
  ASSERT_TRUE(emptied.has_value());
  EXPECT_EQ(emptied->nodes, 1u);
  EXPECT_EQ(emptied->dirents, 0u);
  // ...as ptmpfs-stat prints them.
  RunResult stat = RunProgram({STAT_BINARY, root});
  ASSERT_EQ(stat.exit_code, 0) << stat.output;
  std::string stat_output = stat.output;
  stat_output.insert(0, "\n");
  EXPECT_NE(stat_output.find("\nnodes 1\n"), std::string::npos) << stat_output;
  EXPECT_NE(stat_output.find("\ndirents 0\n"), std::string::npos) << stat_output;

  EXPECT_FALSE(watchdog.fired()) << "the mount was forced down";
  EXPECT_EQ(mount.Stop(), 0) << "the daemon's exit";
  EXPECT_FALSE(IsFuseMount(root));
}

}  // namespace
