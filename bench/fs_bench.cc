// fs_bench: a mounted ptmpfs beside nullfs, the do-nothing FUSE filesystem.
//
// Theory. Over FUSE a round trip costs tens of microseconds of CPU (DESIGN.md, "FUSE
// adapter"), so the most a filesystem over FUSE can do per operation is what nullfs
// (../shared/bench-ref/nullfs.c, which stores nothing) does. This benchmark mounts both
// with the same FUSE options (multi-threaded, the same worker count, max_write 1 MiB,
// allow_other and default_permissions as ptmpfs turns on for root) and drives them with
// the same system calls, in the same run, and prints each ptmpfs rate beside nullfs's:
//
//   operation     what each op is                              baseline mount     target
//   create        openat(O_CREAT|O_EXCL) + close, fresh name   nullfs             >= 90% resident,
//   stat (cold)   fstatat after dentries and inodes dropped    NULLFS_POSITIVE=1  >= 50% with the
//   unlink (cold) unlinkat after dentries and inodes dropped   NULLFS_POSITIVE=1  metadata 10x ram=
//   stat (warm)   fstatat again, nothing dropped               NULLFS_POSITIVE=1  (none)
//   readdir       readdir of the whole directory, cold          (nullfs lists nothing)
//   seq write     pwrite 1 MiB, a file of --file_mib            NULLFS_POSITIVE=1  >= 70%
//   seq rewrite   the same again (pages exist, frames used)     (same)             (none)
//   seq read      pread 1 MiB, page cache dropped (fadvise)     + NULLFS_FILESIZE  >= 70%
//   rand read     pread 4 KiB at random pages, cache dropped    (same)             (none)
//   rand write    pwrite 4 KiB at random pages                  (same)             (none)
//
// Each metadata operation runs with T threads (--threads, default 1 and 2) over one
// directory (the mount's root: a NULLFS_POSITIVE mount cannot make directories), T
// contiguous slices of the names f00000000... "Cold" means the kernel's dentries and
// inodes were dropped first (echo 2 > /proc/sys/vm/drop_caches: slab only, so the swap
// file's pages stay in the host page cache), so each stat or unlink is a LOOKUP (+ the
// UNLINK) for both filesystems; nullfs's entries time out at once (entry_timeout 0), so
// its warm stats are LOOKUPs too, while ptmpfs's default timeouts (86400 s) let the
// kernel answer them itself.
//
// Variants of ptmpfs, each a fresh mount per thread count:
//   default       ptmpfs's default timeouts (entry, attr, negative: 86400 s);
//   nulltimeouts  nullfs's: entry_timeout=0, attr_timeout=1, negative_timeout=0.
// Regimes:
//   resident      ram=--resident_ram (1G): nothing pages;
//   overbudget    --overbudget_files files with ram= a tenth of their metadata, from the
//                 pageable bytes per file measured in the resident run (charged_bytes
//                 growth over the creates; --bytes_per_file if no resident run), at
//                 least 4 MiB (ptmpfs's floor).
// The data phases run once per regime with the default variant (the timeouts do not
// change a read or a write).
//
// Beside each figure (measured over the phase alone):
//   peak RSS      the daemon's VmHWM, reset before the phase (/proc/PID/clear_refs 5);
//   cpu/op        the daemon's user+system time per operation (/proc/PID/stat), and of
//                 it the pager thread's (the thread named ptmpfs-pager);
//   wake-ups      cross-CPU wake-ups per operation, machine-wide (the CAL and RES rows
//                 of /proc/interrupts). Where idle CPUs halt (a VM without halt-polling,
//                 as here) each costs tens of microseconds: a FUSE rate follows how many
//                 of a round trip's wake-ups land on another CPU, which the scheduler
//                 decides, more than the daemon's own work: a ratio whose two subjects'
//                 wake-ups differ measures the scheduler as much as the filesystem. The
//                 count is the whole machine's, so it means something only on an
//                 otherwise idle one;
//   slab          growth of the kernel's fuse_inode and dentry caches (/proc/slabinfo:
//                 slabs x pages per slab), and of SUnreclaim (/proc/meminfo): both caches
//                 are reclaimable, so SUnreclaim should not grow per file;
//   swap          ptmpfs's swap use (its figures ioctl) and how many of the swap file's
//                 pages sit in the host page cache (mincore on a mapping of it), also as a
//                 share of the host's page cache (Cached in /proc/meminfo). The swap file
//                 is a named file formatted by mkfs.ptmpfs (--swap_bytes, default 1G,
//                 deleted at the end), so it can be measured; its cached pages are dropped
//                 (fadvise) before each mount.
// The machine is shared: run with --repetitions=3 and read medians; every rate is
// printed as median [min..max], and the ratio is the median of the per-repetition ratios.
//
// Nothing here passes or fails. Needs root (drop_caches, clear_refs) and /dev/fuse. Every
// mount is the bench's own child in the foreground, unmounted (fusermount3 -u) and reaped
// when its scope ends, also on SIGINT/SIGTERM.
//
// Run: build/bench/fs_bench [--repetitions=3] [--files=100000] [--overbudget_files=300000]
//      [--threads=1,2] [--regimes=resident,overbudget] [--variants=default,nulltimeouts]
//      [--phases=meta,data] [--file_mib=256] [--random_ops=32768] [--ram=SIZE]
// --ram=SIZE replaces the regimes by one ("ram=SIZE") of --files files, e.g. the
// 10,000,000-file run: --ram=256M --files=10000000 --swap_bytes=4G --threads=2
// --variants=default --phases=meta --baseline=0.
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <latch>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "fs/fuse_adapter.h"

namespace {

constexpr uint64_t kMiB = uint64_t{1} << 20;
constexpr uint64_t kPageBytes = 4096;
// ptmpfs's smallest budget (options.cc refuses less).
constexpr uint64_t kMinRam = 4 * kMiB;
// Over budget, ram= is the metadata divided by this (the "ten times").
constexpr uint64_t kOverBudgetFactor = 10;
// Pageable bytes per file when no resident run measured them (meta_bench's figure).
constexpr uint64_t kDefaultBytesPerFile = 200;
// Workers for both daemons: ptmpfs's default on 2 CPUs (2 per CPU, at least 4).
constexpr int kDefaultWorkers = 4;
// FUSE's largest write with libfuse 3.14 (ptmpfs asks for it; nullfs is told).
constexpr uint64_t kMaxWrite = 1 * kMiB;

std::atomic<bool> interrupted{false};

// Operations done in the current phase, for --progress lines.
std::atomic<uint64_t> ops_done{0};
int progress_seconds = 0;

void OnSignal(int) { interrupted.store(true, std::memory_order_relaxed); }

// ---- flags ----

struct Flags {
  uint64_t files = 100'000;
  uint64_t overbudget_files = 300'000;
  std::vector<int> threads = {1, 2};
  int repetitions = 1;
  std::vector<std::string> regimes = {"resident", "overbudget"};
  std::vector<std::string> variants = {"default", "nulltimeouts"};
  std::vector<std::string> phases = {"meta", "data"};
  std::vector<std::string> meta_ops = {"create", "stat", "readdir", "unlink"};
  int progress_seconds = 0;  // 0: no progress lines
  uint64_t file_mib = 256;
  uint64_t random_ops = 32768;
  uint64_t resident_ram = uint64_t{1} << 30;
  uint64_t ram = 0;  // --ram: one custom regime
  uint64_t bytes_per_file = 0;
  uint64_t swap_bytes = uint64_t{1} << 30;
  int workers = kDefaultWorkers;
  bool baseline = true;
  std::string workdir = "/var/tmp";
  std::string ptmpfs = PTMPFS_BINARY;
  std::string mkfs = MKFS_BINARY;
  std::string nullfs =
#ifdef NULLFS_BINARY
      NULLFS_BINARY;
#else
      "";
#endif
};

bool ParseBytes(absl::string_view text, uint64_t& out) {
  uint64_t multiplier = 1;
  if (!text.empty()) {
    switch (text.back()) {
      case 'k': case 'K': multiplier = uint64_t{1} << 10; break;
      case 'm': case 'M': multiplier = uint64_t{1} << 20; break;
      case 'g': case 'G': multiplier = uint64_t{1} << 30; break;
      case 't': case 'T': multiplier = uint64_t{1} << 40; break;
      default: break;
    }
    if (multiplier != 1) text.remove_suffix(1);
  }
  uint64_t value = 0;
  if (!absl::SimpleAtoi(text, &value)) return false;
  out = value * multiplier;
  return true;
}

const char kUsage[] =
    "usage: fs_bench [--repetitions=R] [--files=N] [--overbudget_files=N] [--threads=1,2]\n"
    "  [--regimes=resident,overbudget] [--variants=default,nulltimeouts] [--phases=meta,data]\n"
    "  [--meta_ops=create,stat,readdir,unlink] [--progress=SECONDS]\n"
    "  [--file_mib=256] [--random_ops=32768] [--resident_ram=1G] [--ram=SIZE]\n"
    "  [--bytes_per_file=B] [--swap_bytes=1G] [--workers=4] [--baseline=0|1]\n"
    "  [--workdir=/var/tmp] [--ptmpfs=PATH] [--mkfs=PATH] [--nullfs=PATH]\n"
    "(see the comment at the top of bench/fs_bench.cc)\n";

bool ParseFlags(int argc, char** argv, Flags& flags) {
  for (int i = 1; i < argc; ++i) {
    absl::string_view arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      fputs(kUsage, stdout);
      exit(0);
    }
    std::pair<std::string, std::string> kv = absl::StrSplit(arg, absl::MaxSplits('=', 1));
    const std::string& key = kv.first;
    const std::string& value = kv.second;
    bool ok = true;
    auto list = [&value]() -> std::vector<std::string> {
      return absl::StrSplit(value, ',', absl::SkipEmpty());
    };
    if (key == "--files") {
      ok = ParseBytes(value, flags.files);
    } else if (key == "--overbudget_files") {
      ok = ParseBytes(value, flags.overbudget_files);
    } else if (key == "--threads") {
      flags.threads.clear();
      for (const std::string& word : list()) {
        int threads = 0;
        ok = ok && absl::SimpleAtoi(word, &threads) && threads > 0 && threads <= 64;
        flags.threads.push_back(threads);
      }
    } else if (key == "--repetitions") {
      ok = absl::SimpleAtoi(value, &flags.repetitions) && flags.repetitions > 0;
    } else if (key == "--regimes") {
      flags.regimes = list();
    } else if (key == "--variants") {
      flags.variants = list();
    } else if (key == "--phases") {
      flags.phases = list();
    } else if (key == "--meta_ops") {
      flags.meta_ops = list();
    } else if (key == "--progress") {
      ok = absl::SimpleAtoi(value, &flags.progress_seconds) && flags.progress_seconds >= 0;
    } else if (key == "--file_mib") {
      ok = absl::SimpleAtoi(value, &flags.file_mib) && flags.file_mib > 0;
    } else if (key == "--random_ops") {
      ok = ParseBytes(value, flags.random_ops);
    } else if (key == "--resident_ram") {
      ok = ParseBytes(value, flags.resident_ram);
    } else if (key == "--ram") {
      ok = ParseBytes(value, flags.ram);
    } else if (key == "--bytes_per_file") {
      ok = ParseBytes(value, flags.bytes_per_file);
    } else if (key == "--swap_bytes") {
      ok = ParseBytes(value, flags.swap_bytes);
    } else if (key == "--workers") {
      ok = absl::SimpleAtoi(value, &flags.workers) && flags.workers > 0;
    } else if (key == "--baseline") {
      flags.baseline = value != "0";
    } else if (key == "--workdir") {
      flags.workdir = value;
    } else if (key == "--ptmpfs") {
      flags.ptmpfs = value;
    } else if (key == "--mkfs") {
      flags.mkfs = value;
    } else if (key == "--nullfs") {
      flags.nullfs = value;
    } else {
      ok = false;
    }
    if (!ok) {
      fprintf(stderr, "fs_bench: bad flag %s\n%s", argv[i], kUsage);
      return false;
    }
  }
  return true;
}

bool Has(const std::vector<std::string>& words, absl::string_view word) {
  return std::find(words.begin(), words.end(), word) != words.end();
}

// ---- the host: /proc and /sys ----

std::string ReadWholeFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

bool WriteSmallFile(const std::string& path, absl::string_view text) {
  const int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return false;
  const bool ok = write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  close(fd);
  return ok;
}

// Bytes of a kernel slab cache: slabs x pages per slab (what the cache holds from the
// page allocator, not only the live objects).
uint64_t SlabBytes(absl::string_view cache) {
  std::ifstream in("/proc/slabinfo");
  std::string line;
  while (std::getline(in, line)) {
    std::vector<absl::string_view> words = absl::StrSplit(line, ' ', absl::SkipEmpty());
    if (words.size() < 16 || words[0] != cache) continue;
    // name active_objs num_objs objsize objperslab pagesperslab : tunables a b c
    // : slabdata active_slabs num_slabs sharedavail
    uint64_t pages_per_slab = 0, slabs = 0;
    if (!absl::SimpleAtoi(words[5], &pages_per_slab) || !absl::SimpleAtoi(words[14], &slabs)) {
      return 0;
    }
    return slabs * pages_per_slab * kPageBytes;
  }
  return 0;
}

// A /proc/meminfo line's value, in bytes.
uint64_t MeminfoBytes(absl::string_view key) {
  std::ifstream in("/proc/meminfo");
  std::string line;
  while (std::getline(in, line)) {
    std::vector<absl::string_view> words = absl::StrSplit(line, ' ', absl::SkipEmpty());
    if (words.size() < 2 || words[0].substr(0, words[0].size() - 1) != key) continue;
    uint64_t kib = 0;
    absl::SimpleAtoi(words[1], &kib);
    return kib * 1024;
  }
  return 0;
}

// Wake-ups sent to another CPU, machine-wide: the "CAL" (function call: a remote
// wake-up queued with an IPI) and "RES" (rescheduling) rows of /proc/interrupts,
// summed over CPUs. In a VM whose idle CPUs halt, each costs tens of microseconds,
// and how many a FUSE round trip needs decides its rate more than the daemon's work.
uint64_t CrossCpuWakeups() {
  std::ifstream in("/proc/interrupts");
  std::string line;
  uint64_t total = 0;
  while (std::getline(in, line)) {
    std::vector<absl::string_view> words = absl::StrSplit(line, ' ', absl::SkipEmpty());
    if (words.empty() || (words[0] != "CAL:" && words[0] != "RES:")) continue;
    for (size_t i = 1; i < words.size(); ++i) {
      uint64_t count = 0;
      if (!absl::SimpleAtoi(words[i], &count)) break;  // the row's description
      total += count;
    }
  }
  return total;
}

// Dentries and inodes only (2): the page cache, and so the swap file's cached pages,
// stays as it was.
bool DropDentriesAndInodes() {
  sync();
  return WriteSmallFile("/proc/sys/vm/drop_caches", "2");
}

// user + system time in a /proc/.../stat file, in seconds.
double StatCpuSeconds(const std::string& path) {
  const std::string stat = ReadWholeFile(path);
  const size_t paren = stat.rfind(')');
  if (paren == std::string::npos) return 0;
  std::vector<absl::string_view> words =
      absl::StrSplit(absl::string_view(stat).substr(paren + 2), ' ', absl::SkipEmpty());
  // After "pid (comm) ": state is field 3, utime 14, stime 15 (proc(5)).
  if (words.size() < 13) return 0;
  uint64_t utime = 0, stime = 0;
  absl::SimpleAtoi(words[11], &utime);
  absl::SimpleAtoi(words[12], &stime);
  return static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

// user + system time of a process, all its threads, in seconds.
double ProcessCpuSeconds(pid_t pid) { return StatCpuSeconds(absl::StrCat("/proc/", pid, "/stat")); }

// The same for the process's threads named `name` (ptmpfs names its pager thread).
double ThreadCpuSeconds(pid_t pid, absl::string_view name) {
  const std::string tasks = absl::StrCat("/proc/", pid, "/task");
  DIR* dir = opendir(tasks.c_str());
  if (dir == nullptr) return 0;
  double seconds = 0;
  while (dirent* entry = readdir(dir)) {
    if (entry->d_name[0] == '.') continue;
    const std::string task = absl::StrCat(tasks, "/", entry->d_name);
    if (absl::StripTrailingAsciiWhitespace(ReadWholeFile(task + "/comm")) == name) {
      seconds += StatCpuSeconds(task + "/stat");
    }
  }
  closedir(dir);
  return seconds;
}

uint64_t StatusBytes(pid_t pid, absl::string_view key) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(in, line)) {
    std::vector<absl::string_view> words = absl::StrSplit(line, absl::ByAnyChar(" \t"),
                                                          absl::SkipEmpty());
    if (words.size() < 2 || words[0].substr(0, words[0].size() - 1) != key) continue;
    uint64_t kib = 0;
    absl::SimpleAtoi(words[1], &kib);
    return kib * 1024;
  }
  return 0;
}

void ResetPeakRss(pid_t pid) { WriteSmallFile(absl::StrCat("/proc/", pid, "/clear_refs"), "5"); }

// Waits until a daemon has used no CPU for 300 ms (FORGETs after a drop, a pager
// finishing), at most 15 s: the next phase should pay only for its own work.
void WaitUntilIdle(pid_t pid) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
  double last = ProcessCpuSeconds(pid);
  int quiet = 0;
  while (quiet < 3 && std::chrono::steady_clock::now() < deadline && !interrupted) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    const double now = ProcessCpuSeconds(pid);
    quiet = now == last ? quiet + 1 : 0;
    last = now;
  }
}

// How many bytes of a file are in the host page cache (mincore on a shared mapping).
uint64_t PageCacheBytes(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  struct stat st {};
  uint64_t cached = 0;
  if (fstat(fd, &st) == 0 && st.st_size > 0) {
    const size_t length = static_cast<size_t>(st.st_size);
    void* map = mmap(nullptr, length, PROT_READ, MAP_SHARED, fd, 0);
    if (map != MAP_FAILED) {
      std::vector<unsigned char> vec((length + kPageBytes - 1) / kPageBytes);
      if (mincore(map, length, vec.data()) == 0) {
        for (unsigned char page : vec) cached += page & 1;
      }
      munmap(map, length);
    }
  }
  close(fd);
  return cached * kPageBytes;
}

void DropFromPageCache(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  close(fd);
}

struct ProgramResult {
  int exit_code = -1;
  std::string output;
};

ProgramResult RunProgram(const std::vector<std::string>& argv) {
  int pipe_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC) != 0) return {};
  const pid_t child = fork();
  if (child == 0) {
    dup2(pipe_fds[1], STDOUT_FILENO);
    dup2(pipe_fds[1], STDERR_FILENO);
    std::vector<char*> args;
    for (const std::string& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  close(pipe_fds[1]);
  ProgramResult result;
  char buffer[4096];
  ssize_t got;
  while ((got = read(pipe_fds[0], buffer, sizeof buffer)) > 0 || (got < 0 && errno == EINTR)) {
    if (got > 0) result.output.append(buffer, static_cast<size_t>(got));
  }
  close(pipe_fds[0]);
  int status = 0;
  while (waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

bool IsMountPoint(const std::string& path) {
  struct stat here {}, parent {};
  if (stat(path.c_str(), &here) != 0) return false;
  if (stat((path + "/..").c_str(), &parent) != 0) return false;
  return here.st_dev != parent.st_dev;
}

// ---- a mounted daemon ----

// A FUSE daemon run in the foreground as our child; unmounted and reaped when the
// object goes.
class Mounted {
 public:
  // `argv[0]` is the program; `env` is added to ours.
  Mounted(std::string label, std::string mountpoint, const std::vector<std::string>& argv,
          const std::vector<std::string>& env)
      : label_(std::move(label)), mountpoint_(std::move(mountpoint)) {
    mkdir(mountpoint_.c_str(), 0755);
    pid_ = fork();
    if (pid_ == 0) {
      for (const std::string& assignment : env) putenv(const_cast<char*>(assignment.c_str()));
      std::vector<char*> args;
      for (const std::string& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
      args.push_back(nullptr);
      execv(args[0], args.data());
      _exit(127);
    }
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (std::chrono::steady_clock::now() < deadline) {
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        fprintf(stderr, "fs_bench: %s exited before mounting (%s)\n", label_.c_str(),
                absl::StrJoin(argv, " ").c_str());
        pid_ = -1;
        return;
      }
      if (IsMountPoint(mountpoint_)) {
        mounted_ = true;
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    fprintf(stderr, "fs_bench: %s did not mount in 30 s\n", label_.c_str());
  }
  Mounted(const Mounted&) = delete;
  Mounted& operator=(const Mounted&) = delete;

  ~Mounted() {
    if (pid_ <= 0) return;
    if (IsMountPoint(mountpoint_) &&
        RunProgram({"/usr/bin/fusermount3", "-u", mountpoint_}).exit_code != 0) {
      RunProgram({"/usr/bin/fusermount3", "-u", "-z", mountpoint_});
    }
    // The daemon returns from its loop once the mount is gone; give it 20 s (it frees
    // its swap), then ask, then insist.
    for (int i = 0; i < 400; ++i) {
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) return;
      if (i == 200) kill(pid_, SIGTERM);
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }

  bool ok() const { return mounted_; }
  pid_t pid() const { return pid_; }
  const std::string& mountpoint() const { return mountpoint_; }
  const std::string& label() const { return label_; }

 private:
  std::string label_;
  std::string mountpoint_;
  pid_t pid_ = -1;
  bool mounted_ = false;
};

// ptmpfs's figures (ptmpfs-stat's ioctl), by name; empty for another filesystem.
std::map<std::string, uint64_t> ReadFigures(const std::string& mountpoint) {
  std::map<std::string, uint64_t> figures;
  const int fd = open(mountpoint.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return figures;
  ptmpfs::fs::IoctlFigures reply{};
  if (ioctl(fd, ptmpfs::fs::kIoctlReadFigures, &reply) == 0 &&
      reply.version == ptmpfs::fs::kFiguresVersion) {
    for (size_t i = 0; i < std::min<size_t>(reply.count, ptmpfs::fs::kFigureCount); ++i) {
      figures[ptmpfs::fs::kFigureNames[i]] = reply.values[i];
    }
  }
  close(fd);
  return figures;
}

// ---- measurements ----

struct Measurement {
  bool valid = false;
  double ops = 0;
  double seconds = 0;
  double bytes = 0;  // data phases: bytes moved
  uint64_t errors = 0;
  double daemon_cpu_seconds = 0;
  double pager_cpu_seconds = 0;  // of it, the pager thread's
  uint64_t peak_rss = 0;
  int64_t fuse_inode_growth = 0;
  int64_t dentry_growth = 0;
  int64_t sunreclaim_growth = 0;
  int64_t sreclaimable_growth = 0;
  uint64_t swap_used = 0;
  uint64_t swap_cached = 0;  // swap file bytes in the host page cache
  uint64_t host_cached = 0;  // the host's page cache (Cached)
  uint64_t pageins = 0, pageouts = 0;
  uint64_t charged_growth = 0;
  uint64_t cross_cpu_wakeups = 0;  // machine-wide, over the phase

  double rate() const { return seconds > 0 ? ops / seconds : 0; }
  double wakeups_per_op() const {
    return static_cast<double>(cross_cpu_wakeups) / std::max(1.0, ops);
  }
  double mib_per_s() const { return seconds > 0 ? bytes / kMiB / seconds : 0; }
};

struct Snapshot {
  double cpu = 0;
  double pager_cpu = 0;
  uint64_t fuse_inode = 0, dentry = 0, sunreclaim = 0, sreclaimable = 0;
  uint64_t cross_cpu_wakeups = 0;
  std::map<std::string, uint64_t> figures;
};

Snapshot Take(const Mounted& mount) {
  Snapshot s;
  s.cpu = ProcessCpuSeconds(mount.pid());
  s.pager_cpu = ThreadCpuSeconds(mount.pid(), "ptmpfs-pager");
  s.fuse_inode = SlabBytes("fuse_inode");
  s.dentry = SlabBytes("dentry");
  s.sunreclaim = MeminfoBytes("SUnreclaim");
  s.sreclaimable = MeminfoBytes("SReclaimable");
  s.figures = ReadFigures(mount.mountpoint());
  s.cross_cpu_wakeups = CrossCpuWakeups();
  return s;
}

uint64_t Figure(const Snapshot& s, const std::string& name) {
  auto it = s.figures.find(name);
  return it == s.figures.end() ? 0 : it->second;
}

// Runs `body(thread, ops_done_out)` on `threads` threads started together and measures
// the whole; `ops` is what the rate divides by.
Measurement MeasurePhase(const Mounted& mount, const std::string& swap_path, int threads,
                         double ops, const std::function<uint64_t(int)>& body) {
  WaitUntilIdle(mount.pid());
  ResetPeakRss(mount.pid());
  const Snapshot before = Take(mount);
  std::atomic<uint64_t> errors{0};
  std::latch start(threads + 1);
  std::vector<std::thread> workers;
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      start.arrive_and_wait();
      errors.fetch_add(body(t), std::memory_order_relaxed);
    });
  }
  ops_done.store(0);
  std::atomic<bool> finished{false};
  std::thread reporter;
  if (progress_seconds > 0) {
    // Long runs (10,000,000 files) say how they are going: the rate over the last
    // interval, the daemon's RSS and swap use, the kernel's caches.
    reporter = std::thread([&] {
      const auto begin = std::chrono::steady_clock::now();
      auto last = begin;
      uint64_t last_ops = 0;
      while (!finished.load()) {
        for (int i = 0; i < progress_seconds * 10 && !finished.load(); ++i) {
          std::this_thread::sleep_for(std::chrono::milliseconds(100));
        }
        if (finished.load()) break;
        const auto now = std::chrono::steady_clock::now();
        const uint64_t done = ops_done.load();
        const Snapshot s = Take(mount);
        printf("    progress: %" PRIu64 " ops in %.0f s, %.0f ops/s lately; RSS %.1f MiB, "
               "VmHWM %.1f MiB; swap used %.1f MiB, in page cache %.1f MiB; fuse_inode %.1f "
               "MiB, dentry %.1f MiB, SUnreclaim %.1f MiB\n",
               done, std::chrono::duration<double>(now - begin).count(),
               static_cast<double>(done - last_ops) /
                   std::chrono::duration<double>(now - last).count(),
               static_cast<double>(StatusBytes(mount.pid(), "VmRSS")) / kMiB,
               static_cast<double>(StatusBytes(mount.pid(), "VmHWM")) / kMiB,
               static_cast<double>(Figure(s, "swap_used_bytes")) / kMiB,
               static_cast<double>(swap_path.empty() ? 0 : PageCacheBytes(swap_path)) / kMiB,
               static_cast<double>(s.fuse_inode) / kMiB, static_cast<double>(s.dentry) / kMiB,
               static_cast<double>(s.sunreclaim) / kMiB);
        fflush(stdout);
        last = now;
        last_ops = done;
      }
    });
  }
  const auto begin = std::chrono::steady_clock::now();
  start.arrive_and_wait();
  for (std::thread& worker : workers) worker.join();
  const auto end = std::chrono::steady_clock::now();
  finished.store(true);
  if (reporter.joinable()) reporter.join();
  const Snapshot after = Take(mount);
  Measurement m;
  m.valid = !interrupted;
  m.ops = ops;
  m.seconds = std::chrono::duration<double>(end - begin).count();
  m.errors = errors.load();
  m.daemon_cpu_seconds = after.cpu - before.cpu;
  m.pager_cpu_seconds = after.pager_cpu - before.pager_cpu;
  m.peak_rss = StatusBytes(mount.pid(), "VmHWM");
  m.fuse_inode_growth = static_cast<int64_t>(after.fuse_inode - before.fuse_inode);
  m.dentry_growth = static_cast<int64_t>(after.dentry - before.dentry);
  m.sunreclaim_growth = static_cast<int64_t>(after.sunreclaim - before.sunreclaim);
  m.sreclaimable_growth = static_cast<int64_t>(after.sreclaimable - before.sreclaimable);
  m.swap_used = Figure(after, "swap_used_bytes");
  m.pageins = Figure(after, "pageins") - Figure(before, "pageins");
  m.pageouts = Figure(after, "pageouts") - Figure(before, "pageouts");
  m.charged_growth = Figure(after, "charged_bytes") - Figure(before, "charged_bytes");
  m.cross_cpu_wakeups = after.cross_cpu_wakeups - before.cross_cpu_wakeups;
  if (!swap_path.empty()) m.swap_cached = PageCacheBytes(swap_path);
  m.host_cached = MeminfoBytes("Cached");
  return m;
}

std::string FileName(uint64_t i) { return absl::StrFormat("f%08u", i); }

// The slice of [0, files) thread `t` of `threads` works on.
std::pair<uint64_t, uint64_t> Slice(uint64_t files, int threads, int t) {
  return {files * t / threads, files * (t + 1) / threads};
}

uint64_t first_error_reported = 0;

uint64_t Failed(const char* what, const std::string& name) {
  if (first_error_reported++ < 5) {
    fprintf(stderr, "fs_bench: %s %s: %s\n", what, name.c_str(), strerror(errno));
  }
  return 1;
}

// ---- results ----

// One row of the summary: a regime, an operation and a thread count.
struct RowKey {
  int order;  // operations in the order they run
  std::string regime, op;
  int threads;
  bool operator<(const RowKey& other) const {
    return std::tie(regime, threads, order, op) <
           std::tie(other.regime, other.threads, other.order, other.op);
  }
};

struct Row {
  std::string unit = "ops/s";
  double target = 0;  // 0: none
  // Per subject ("default", "nulltimeouts", "nullfs"): one measurement per repetition.
  std::map<std::string, std::vector<Measurement>> runs;
};

std::map<RowKey, Row> rows;
std::vector<std::string> regime_order;

double Target(const std::string& regime, const std::string& op) {
  const bool resident = regime == "resident";
  if (op == "create" || op == "stat (cold)" || op == "unlink (cold)") return resident ? 0.9 : 0.5;
  if (op == "seq write" || op == "seq read") return 0.7;
  return 0;
}

int OpOrder(const std::string& op) {
  static const char* kOps[] = {"create",      "stat (cold)", "stat (warm)", "readdir",
                               "unlink (cold)", "seq write", "seq rewrite", "seq read",
                               "rand read",     "rand write"};
  for (int i = 0; i < 10; ++i) {
    if (op == kOps[i]) return i;
  }
  return 99;
}

void Record(const std::string& regime, const std::string& op, int threads,
            const std::string& subject, const Measurement& m, bool data = false) {
  if (!m.valid) return;
  if (std::find(regime_order.begin(), regime_order.end(), regime) == regime_order.end()) {
    regime_order.push_back(regime);
  }
  Row& row = rows[RowKey{OpOrder(op), regime, op, threads}];
  row.unit = data ? "MiB/s" : "ops/s";
  row.target = Target(regime, op);
  row.runs[subject].push_back(m);
  const double value = data ? m.mib_per_s() : m.rate();
  printf("  %-12s %-14s T=%d %-13s %10.0f %s  (%.0f ops in %.2f s; daemon %.1f us/op",
         regime.c_str(), op.c_str(), threads, subject.c_str(), value, row.unit.c_str(), m.ops,
         m.seconds, m.daemon_cpu_seconds * 1e6 / std::max(1.0, m.ops));
  if (subject != "nullfs") {
    printf(" (pager thread %.1f)", m.pager_cpu_seconds * 1e6 / std::max(1.0, m.ops));
  }
  printf("; cross-CPU wake-ups %.2f/op", m.wakeups_per_op());
  printf("; peak RSS %.1f MiB; fuse_inode %+.1f MiB, dentry %+.1f MiB, SUnreclaim %+.1f MiB",
         static_cast<double>(m.peak_rss) / kMiB, static_cast<double>(m.fuse_inode_growth) / kMiB,
         static_cast<double>(m.dentry_growth) / kMiB,
         static_cast<double>(m.sunreclaim_growth) / kMiB);
  if (subject != "nullfs") {
    printf("; swap used %.1f MiB, in page cache %.1f MiB; pageins %" PRIu64 " pageouts %" PRIu64,
           static_cast<double>(m.swap_used) / kMiB, static_cast<double>(m.swap_cached) / kMiB,
           m.pageins, m.pageouts);
  }
  if (m.errors) printf("; %" PRIu64 " ERRORS", m.errors);
  printf(")\n");
  fflush(stdout);
}

// ---- the workloads ----

struct Context {
  const Flags& flags;
  std::string root;       // the bench's temporary directory
  std::string swap_path;  // the mkfs.ptmpfs-formatted swap file
  int mount_serial = 0;
};

std::unique_ptr<Mounted> MountPtmpfs(Context& context, uint64_t ram, bool null_timeouts) {
  DropFromPageCache(context.swap_path);
  const std::string mountpoint = absl::StrCat(context.root, "/m", context.mount_serial++);
  std::string options = absl::StrFormat("ram=%uk,max_threads=%d,nr_inodes=0", ram >> 10,
                                        context.flags.workers);
  if (null_timeouts) options += ",entry_timeout=0,attr_timeout=1,negative_timeout=0";
  auto mount = std::make_unique<Mounted>(
      "ptmpfs", mountpoint,
      std::vector<std::string>{context.flags.ptmpfs, context.swap_path, mountpoint, "-f", "-o",
                               options},
      std::vector<std::string>{});
  if (!mount->ok()) return nullptr;
  return mount;
}

std::unique_ptr<Mounted> MountNullfs(Context& context, bool positive, uint64_t file_size) {
  const std::string mountpoint = absl::StrCat(context.root, "/m", context.mount_serial++);
  std::vector<std::string> env;
  if (positive) env.push_back("NULLFS_POSITIVE=1");
  if (file_size) env.push_back(absl::StrCat("NULLFS_FILESIZE=", file_size));
  auto mount = std::make_unique<Mounted>(
      "nullfs", mountpoint,
      std::vector<std::string>{
          context.flags.nullfs, mountpoint, "-f", "-o",
          absl::StrFormat("max_threads=%d,max_write=%u,allow_other,default_permissions",
                          context.flags.workers, kMaxWrite)},
      env);
  if (!mount->ok()) return nullptr;
  return mount;
}

class DirFd {
 public:
  explicit DirFd(const std::string& path)
      : fd_(open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)) {}
  ~DirFd() {
    if (fd_ >= 0) close(fd_);
  }
  DirFd(const DirFd&) = delete;
  DirFd& operator=(const DirFd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

Measurement CreatePhase(Context& context, const Mounted& mount, uint64_t files, int threads) {
  DirFd dir(mount.mountpoint());
  return MeasurePhase(mount, context.swap_path, threads, static_cast<double>(files), [&](int t) {
    uint64_t errors = 0;
    auto [begin, end] = Slice(files, threads, t);
    for (uint64_t i = begin; i < end && !interrupted; ++i) {
      const std::string name = FileName(i);
      const int fd = openat(dir.get(), name.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644);
      if (fd < 0) {
        errors += Failed("create", name);
        continue;
      }
      close(fd);
      ops_done.fetch_add(1, std::memory_order_relaxed);
    }
    return errors;
  });
}

Measurement StatPhase(Context& context, const Mounted& mount, uint64_t files, int threads,
                      bool cold) {
  if (cold) DropDentriesAndInodes();
  DirFd dir(mount.mountpoint());
  return MeasurePhase(mount, context.swap_path, threads, static_cast<double>(files), [&](int t) {
    uint64_t errors = 0;
    auto [begin, end] = Slice(files, threads, t);
    struct stat st {};
    for (uint64_t i = begin; i < end && !interrupted; ++i) {
      const std::string name = FileName(i);
      if (fstatat(dir.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
        errors += Failed("stat", name);
      }
      ops_done.fetch_add(1, std::memory_order_relaxed);
    }
    return errors;
  });
}

// Each thread lists the whole directory; the rate counts every entry each returned.
Measurement ReaddirPhase(Context& context, const Mounted& mount, int threads) {
  DropDentriesAndInodes();
  std::atomic<uint64_t> entries{0};
  Measurement m = MeasurePhase(mount, context.swap_path, threads, 0, [&](int) {
    DIR* dir = opendir(mount.mountpoint().c_str());
    if (dir == nullptr) return Failed("opendir", mount.mountpoint());
    uint64_t seen = 0;
    while (dirent* entry = readdir(dir)) {
      if (interrupted) break;
      if (entry->d_name[0] != '.') ++seen;
    }
    closedir(dir);
    entries.fetch_add(seen);
    return uint64_t{0};
  });
  m.ops = static_cast<double>(entries.load());
  return m;
}

Measurement UnlinkPhase(Context& context, const Mounted& mount, uint64_t files, int threads) {
  DropDentriesAndInodes();
  DirFd dir(mount.mountpoint());
  return MeasurePhase(mount, context.swap_path, threads, static_cast<double>(files), [&](int t) {
    uint64_t errors = 0;
    auto [begin, end] = Slice(files, threads, t);
    for (uint64_t i = begin; i < end && !interrupted; ++i) {
      const std::string name = FileName(i);
      if (unlinkat(dir.get(), name.c_str(), 0) != 0) errors += Failed("unlink", name);
      ops_done.fetch_add(1, std::memory_order_relaxed);
    }
    return errors;
  });
}

// ptmpfs: create, stat cold and warm, readdir, unlink, on one fresh mount. Returns the
// pageable bytes per file the creates charged.
double MetaPtmpfs(Context& context, const std::string& regime, uint64_t ram, uint64_t files,
                  int threads, const std::string& variant) {
  std::unique_ptr<Mounted> mount = MountPtmpfs(context, ram, variant == "nulltimeouts");
  if (!mount) return 0;
  const std::vector<std::string>& ops = context.flags.meta_ops;
  const Measurement create = CreatePhase(context, *mount, files, threads);
  Record(regime, "create", threads, variant, create);
  if (!interrupted && Has(ops, "stat")) {
    Record(regime, "stat (cold)", threads, variant,
           StatPhase(context, *mount, files, threads, true));
    if (!interrupted) {
      Record(regime, "stat (warm)", threads, variant,
             StatPhase(context, *mount, files, threads, false));
    }
  }
  if (!interrupted && Has(ops, "readdir")) {
    Record(regime, "readdir", threads, variant, ReaddirPhase(context, *mount, threads));
  }
  if (!interrupted && Has(ops, "unlink")) {
    Record(regime, "unlink (cold)", threads, variant, UnlinkPhase(context, *mount, files, threads));
  }
  return static_cast<double>(create.charged_growth) / static_cast<double>(files);
}

// nullfs: create on a plain mount; stat and unlink on a NULLFS_POSITIVE one.
void MetaNullfs(Context& context, const std::string& regime, uint64_t files, int threads) {
  {
    std::unique_ptr<Mounted> plain = MountNullfs(context, false, 0);
    if (!plain) return;
    Record(regime, "create", threads, "nullfs", CreatePhase(context, *plain, files, threads));
  }
  const std::vector<std::string>& ops = context.flags.meta_ops;
  if (interrupted || !(Has(ops, "stat") || Has(ops, "unlink"))) return;
  std::unique_ptr<Mounted> positive = MountNullfs(context, true, 0);
  if (!positive) return;
  if (Has(ops, "stat")) {
    Record(regime, "stat (cold)", threads, "nullfs",
           StatPhase(context, *positive, files, threads, true));
    if (!interrupted) {
      Record(regime, "stat (warm)", threads, "nullfs",
             StatPhase(context, *positive, files, threads, false));
    }
  }
  if (!interrupted && Has(ops, "unlink")) {
    Record(regime, "unlink (cold)", threads, "nullfs",
           UnlinkPhase(context, *positive, files, threads));
  }
}

// Sequential 1 MiB and random 4 KiB writes and reads of one file; reads start with the
// file's pages dropped from the kernel's cache, so they reach the daemon.
void DataPhases(Context& context, const std::string& regime, const Mounted& mount, bool create,
                const std::string& subject) {
  const std::string path = mount.mountpoint() + "/data";
  const int fd = open(path.c_str(), O_RDWR | O_CLOEXEC | (create ? O_CREAT : 0), 0644);
  if (fd < 0) {
    Failed("open", path);
    return;
  }
  const uint64_t file_bytes = context.flags.file_mib * kMiB;
  std::vector<char> buffer(kMiB, 'x');
  auto sequential = [&](bool write) {
    Measurement m = MeasurePhase(mount, context.swap_path, 1, 0, [&](int) {
      uint64_t errors = 0;
      for (uint64_t offset = 0; offset < file_bytes && !interrupted; offset += kMiB) {
        const ssize_t done = write ? pwrite(fd, buffer.data(), kMiB, static_cast<off_t>(offset))
                                   : pread(fd, buffer.data(), kMiB, static_cast<off_t>(offset));
        if (done != static_cast<ssize_t>(kMiB)) errors += Failed(write ? "write" : "read", path);
      }
      return errors;
    });
    m.ops = static_cast<double>(file_bytes / kMiB);
    m.bytes = static_cast<double>(file_bytes);
    return m;
  };
  auto random = [&](bool write) {
    std::mt19937_64 rng(write ? 2 : 1);
    std::vector<uint64_t> pages(context.flags.random_ops);
    for (uint64_t& page : pages) page = rng() % (file_bytes / kPageBytes);
    Measurement m = MeasurePhase(mount, context.swap_path, 1, 0, [&](int) {
      uint64_t errors = 0;
      for (uint64_t page : pages) {
        if (interrupted) break;
        const off_t offset = static_cast<off_t>(page * kPageBytes);
        const ssize_t done = write ? pwrite(fd, buffer.data(), kPageBytes, offset)
                                   : pread(fd, buffer.data(), kPageBytes, offset);
        if (done != static_cast<ssize_t>(kPageBytes)) {
          errors += Failed(write ? "write" : "read", path);
        }
      }
      return errors;
    });
    m.ops = static_cast<double>(pages.size());
    m.bytes = static_cast<double>(pages.size() * kPageBytes);
    return m;
  };
  Record(regime, "seq write", 1, subject, sequential(true), true);
  // The same bytes again: ptmpfs's pages and frames exist now (resident) or sit in
  // swap (over budget), the steady state of a tmpfs whose files are rewritten.
  if (!interrupted) Record(regime, "seq rewrite", 1, subject, sequential(true), true);
  posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  if (!interrupted) Record(regime, "seq read", 1, subject, sequential(false), true);
  posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  if (!interrupted) Record(regime, "rand read", 1, subject, random(false), true);
  posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  if (!interrupted) Record(regime, "rand write", 1, subject, random(true), true);
  close(fd);
}

// ---- the summary ----

template <typename T>
T Median(std::vector<T> values) {
  if (values.empty()) return T{};
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

std::string Rate(const std::vector<Measurement>& runs, bool data) {
  if (runs.empty()) return "-";
  std::vector<double> values;
  for (const Measurement& m : runs) values.push_back(data ? m.mib_per_s() : m.rate());
  const auto [lo, hi] = std::minmax_element(values.begin(), values.end());
  if (values.size() == 1) return absl::StrFormat("%.0f", values[0]);
  return absl::StrFormat("%.0f [%.0f..%.0f]", Median(values), *lo, *hi);
}

// Ratio of subject to nullfs, per repetition (paired by index), median and range.
std::optional<std::vector<double>> Ratios(const std::vector<Measurement>& subject,
                                          const std::vector<Measurement>& baseline, bool data) {
  if (subject.empty() || baseline.empty()) return std::nullopt;
  std::vector<double> ratios;
  for (size_t i = 0; i < subject.size(); ++i) {
    const Measurement& b = baseline[std::min(i, baseline.size() - 1)];
    const double base = data ? b.mib_per_s() : b.rate();
    if (base <= 0) return std::nullopt;
    ratios.push_back((data ? subject[i].mib_per_s() : subject[i].rate()) / base);
  }
  return ratios;
}

std::string RatioText(const std::optional<std::vector<double>>& ratios) {
  if (!ratios) return "-";
  const auto [lo, hi] = std::minmax_element(ratios->begin(), ratios->end());
  if (ratios->size() == 1) return absl::StrFormat("%.2f", (*ratios)[0]);
  return absl::StrFormat("%.2f [%.2f..%.2f]", Median(*ratios), *lo, *hi);
}

std::string MiB(int64_t bytes) {
  return absl::StrFormat("%+.1f", static_cast<double>(bytes) / kMiB);
}

void PrintSummary(const std::map<std::string, std::string>& regime_facts) {
  printf("\nSummary: medians over repetitions, [min..max]; ratio = ptmpfs / nullfs per "
         "repetition.\n");
  printf("ptmpfs = default timeouts (86400 s); ptmpfs' = nullfs's timeouts (entry 0, attr 1, "
         "negative 0).\n");
  printf("RSS = the ptmpfs daemon's peak over the phase; slab = growth of fuse_inode+dentry "
         "(MiB) / of SUnreclaim (MiB);\nswap = ptmpfs swap used / swap file bytes in the host "
         "page cache (MiB, and %% of Cached).\n");
  for (const std::string& regime : regime_order) {
    auto facts = regime_facts.find(regime);
    printf("\n== %s%s\n", regime.c_str(),
           facts == regime_facts.end() ? "" : (": " + facts->second).c_str());
    printf(
        "%-13s %-2s %-22s %-22s %-22s %-17s %-17s %-7s %-5s %-9s %-8s %-9s %-10s %-10s "
        "%s\n",
        "operation", "T", "ptmpfs", "ptmpfs'", "nullfs", "ratio", "ratio'", "target", "met",
        "RSS MiB", "us/op", "wake/op", "slab", "slab'", "swap");
    for (const auto& [key, row] : rows) {
      if (key.regime != regime) continue;
      const bool data = row.unit == "MiB/s";
      auto get = [&row](const char* subject) {
        auto it = row.runs.find(subject);
        return it == row.runs.end() ? std::vector<Measurement>{} : it->second;
      };
      const std::vector<Measurement> main = get("default"), alt = get("nulltimeouts"),
                                     null = get("nullfs");
      std::optional<std::vector<double>> ratio = Ratios(main, null, data);
      std::optional<std::vector<double>> ratio_alt = Ratios(alt, null, data);
      std::string target = row.target > 0 ? absl::StrFormat(">=%.2f", row.target) : "";
      std::string met;
      if (row.target > 0 && ratio) met = Median(*ratio) >= row.target ? "yes" : "NO";
      std::string rss = "-", cpu = "-", wakeups = "-", slab = "-", slab_alt = "-", swap = "-";
      auto median_wakeups = [](const std::vector<Measurement>& runs) {
        std::vector<double> each;
        for (const Measurement& m : runs) each.push_back(m.wakeups_per_op());
        return Median(each);
      };
      if (!main.empty()) {
        std::vector<double> peaks, cpus;
        std::vector<int64_t> slabs, unreclaims;
        for (const Measurement& m : main) {
          peaks.push_back(static_cast<double>(m.peak_rss) / kMiB);
          cpus.push_back(m.daemon_cpu_seconds * 1e6 / std::max(1.0, m.ops));
          slabs.push_back(m.fuse_inode_growth + m.dentry_growth);
          unreclaims.push_back(m.sunreclaim_growth);
        }
        rss = absl::StrFormat("%.1f", Median(peaks));
        cpu = absl::StrFormat("%.1f", Median(cpus));
        if (!null.empty()) {
          std::vector<double> null_cpus;
          for (const Measurement& m : null) {
            null_cpus.push_back(m.daemon_cpu_seconds * 1e6 / std::max(1.0, m.ops));
          }
          cpu += absl::StrFormat("/%.1f", Median(null_cpus));
        }
        wakeups = absl::StrFormat("%.1f", median_wakeups(main));
        if (!null.empty()) wakeups += absl::StrFormat("/%.1f", median_wakeups(null));
        slab = MiB(Median(slabs)) + "/" + MiB(Median(unreclaims));
        const Measurement& last = main.back();
        swap = absl::StrFormat("%.1f/%.1f (%.1f%%)", static_cast<double>(last.swap_used) / kMiB,
                               static_cast<double>(last.swap_cached) / kMiB,
                               last.host_cached ? 100.0 * static_cast<double>(last.swap_cached) /
                                                      static_cast<double>(last.host_cached)
                                                : 0.0);
      }
      if (!null.empty()) {
        std::vector<int64_t> slabs, unreclaims;
        for (const Measurement& m : null) {
          slabs.push_back(m.fuse_inode_growth + m.dentry_growth);
          unreclaims.push_back(m.sunreclaim_growth);
        }
        slab_alt = MiB(Median(slabs)) + "/" + MiB(Median(unreclaims));
      }
      printf(
          "%-13s %-2d %-22s %-22s %-22s %-17s %-17s %-7s %-5s %-9s %-8s %-9s %-10s %-10s "
          "%s\n",
          (key.op + (data ? " MiB/s" : "")).c_str(), key.threads, Rate(main, data).c_str(),
          Rate(alt, data).c_str(),
          key.op == "readdir" ? "(lists nothing)" : Rate(null, data).c_str(),
          RatioText(ratio).c_str(), RatioText(ratio_alt).c_str(), target.c_str(), met.c_str(),
          rss.c_str(), cpu.c_str(), wakeups.c_str(), slab.c_str(), slab_alt.c_str(), swap.c_str());
    }
  }
  printf(
      "(us/op = daemon CPU per operation, ptmpfs/nullfs; wake/op = cross-CPU wake-ups "
      "(IPIs) per operation, machine-wide, ptmpfs/nullfs; slab' = nullfs's slab growth)\n");
}

int Run(const Flags& flags) {
  if (geteuid() != 0) {
    fprintf(stderr, "fs_bench: needs root (drop_caches, clear_refs, allow_other)\n");
    return 1;
  }
  const bool want_baseline = flags.baseline && !flags.nullfs.empty();
  if (flags.baseline && flags.nullfs.empty()) {
    fprintf(stderr,
            "fs_bench: no nullfs (../shared/bench-ref/nullfs.c was missing at configure "
            "time; --nullfs=PATH): ptmpfs alone\n");
  }
  std::string root_template = flags.workdir + "/fs_bench.XXXXXX";
  if (mkdtemp(root_template.data()) == nullptr) {
    fprintf(stderr, "fs_bench: mkdtemp in %s: %s\n", flags.workdir.c_str(), strerror(errno));
    return 1;
  }
  Context context{flags, root_template, root_template + "/swap", 0};
  const ProgramResult formatted = RunProgram(
      {flags.mkfs, context.swap_path, absl::StrCat(flags.swap_bytes >> 20, "m")});
  if (formatted.exit_code != 0) {
    fprintf(stderr, "fs_bench: mkfs.ptmpfs: %s", formatted.output.c_str());
    return 1;
  }
  printf("fs_bench: ptmpfs %s, nullfs %s, %d workers each, max_write %" PRIu64
         " KiB; swap file %s (%" PRIu64 " MiB); %ld CPUs, load %s",
         flags.ptmpfs.c_str(), want_baseline ? flags.nullfs.c_str() : "(none)", flags.workers,
         kMaxWrite >> 10, context.swap_path.c_str(), flags.swap_bytes >> 20,
         sysconf(_SC_NPROCESSORS_ONLN), ReadWholeFile("/proc/loadavg").c_str());

  struct Regime {
    std::string name;
    uint64_t ram;  // 0: computed from the bytes per file (overbudget)
    uint64_t files;
  };
  std::vector<Regime> regimes;
  if (flags.ram) {
    regimes.push_back({absl::StrFormat("ram=%uM", flags.ram >> 20), flags.ram, flags.files});
  } else {
    if (Has(flags.regimes, "resident")) regimes.push_back({"resident", flags.resident_ram, flags.files});
    if (Has(flags.regimes, "overbudget")) regimes.push_back({"overbudget", 0, flags.overbudget_files});
  }
  std::map<std::string, std::string> facts;
  double measured_bytes_per_file = 0;
  for (int repetition = 0; repetition < flags.repetitions && !interrupted; ++repetition) {
    printf("\nrepetition %d of %d\n", repetition + 1, flags.repetitions);
    for (Regime& regime : regimes) {
      if (interrupted) break;
      if (regime.ram == 0) {
        const double per_file = flags.bytes_per_file    ? static_cast<double>(flags.bytes_per_file)
                                : measured_bytes_per_file > 0 ? measured_bytes_per_file
                                                              : kDefaultBytesPerFile;
        const uint64_t metadata = static_cast<uint64_t>(per_file * static_cast<double>(regime.files));
        regime.ram = std::max(kMinRam, (metadata / kOverBudgetFactor + kMiB - 1) / kMiB * kMiB);
        facts[regime.name] = absl::StrFormat(
            "%u files, %.0f pageable bytes/file (%s) = %.1f MiB of metadata, ram=%uM (%.1fx)",
            regime.files, per_file, flags.bytes_per_file ? "--bytes_per_file"
                                    : measured_bytes_per_file > 0 ? "measured resident"
                                                                  : "assumed",
            static_cast<double>(metadata) / kMiB, regime.ram >> 20,
            static_cast<double>(metadata) / static_cast<double>(regime.ram));
      } else if (!facts.count(regime.name)) {
        facts[regime.name] = absl::StrFormat("%u files, ram=%uM", regime.files, regime.ram >> 20);
      }
      printf("%s: %s\n", regime.name.c_str(), facts[regime.name].c_str());
      if (Has(flags.phases, "meta")) {
        for (int threads : flags.threads) {
          for (const std::string& variant : flags.variants) {
            if (interrupted) break;
            const double per_file =
                MetaPtmpfs(context, regime.name, regime.ram, regime.files, threads, variant);
            if (regime.name == "resident" && per_file > 0 && measured_bytes_per_file == 0) {
              measured_bytes_per_file = per_file;
              facts[regime.name] += absl::StrFormat(", %.0f pageable bytes/file", per_file);
            }
          }
          if (want_baseline && !interrupted) MetaNullfs(context, regime.name, regime.files, threads);
        }
      }
      if (Has(flags.phases, "data") && !interrupted) {
        {
          std::unique_ptr<Mounted> mount = MountPtmpfs(context, regime.ram, false);
          if (mount) DataPhases(context, regime.name, *mount, true, "default");
        }
        if (want_baseline && !interrupted) {
          std::unique_ptr<Mounted> mount =
              MountNullfs(context, true, context.flags.file_mib * kMiB);
          if (mount) DataPhases(context, regime.name, *mount, false, "nullfs");
        }
      }
    }
  }
  PrintSummary(facts);
  unlink(context.swap_path.c_str());
  for (int i = 0; i < context.mount_serial; ++i) {
    rmdir(absl::StrCat(context.root, "/m", i).c_str());
  }
  rmdir(context.root.c_str());
  return interrupted ? 130 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  Flags flags;
  if (!ParseFlags(argc, argv, flags)) return 2;
  progress_seconds = flags.progress_seconds;
  struct sigaction action {};
  action.sa_handler = OnSignal;
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
  sigaction(SIGHUP, &action, nullptr);
  signal(SIGPIPE, SIG_IGN);
  setvbuf(stdout, nullptr, _IOLBF, 0);
  return Run(flags);
}
