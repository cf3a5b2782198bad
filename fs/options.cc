#include "fs/options.h"

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <limits>

#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "vm/swap_format.h"

namespace ptmpfs::fs {

namespace {

constexpr uint64_t kMiB = uint64_t{1} << 20;
// The default budget's cap: enough for the working set of most uses (the rest pages
// out), small enough that a mount with defaults is a small process.
constexpr uint64_t kDefaultRamCap = 256 * kMiB;
// The least budget: 1024 frames, so the wired cap (3/4 of the frames, vm.cc) leaves
// room for the largest UBC window (257 pages) and the pins of a few operations beside.
constexpr uint64_t kMinRam = 4 * kMiB;
constexpr uint64_t kMinSize = 1 * kMiB;
// nr_inodes defaults to size / kBytesPerInode (options.h says why).
constexpr uint64_t kBytesPerInode = 256;
// Every change passes through this mount: what the kernel caches cannot go stale.
constexpr double kDefaultTimeout = 86400;
// How long to wait for a previous daemon's lock on the swap file after an unmount:
// the daemon exits only after the kernel has let the mount go.
constexpr int kSwapLockWaitMs = 10000;

int DefaultMaxThreads() {
  const long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  return static_cast<int>(std::clamp<long>(2 * (cpus > 0 ? cpus : 1), 4, 16));
}

uint64_t DefaultRam(uint64_t ram_bytes) { return std::min(ram_bytes / 8, kDefaultRamCap); }

absl::Status Invalid(absl::string_view what, absl::string_view text, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrFormat("%s=%s: %s", what, text, why));
}

absl::StatusOr<uint64_t> ParseCount(absl::string_view what, absl::string_view text) {
  // nr_inodes takes k, m, g suffixes as tmpfs does (powers of 1024); % makes no sense.
  if (!text.empty() && text.back() == '%') return Invalid(what, text, "not a number");
  return ParseSize(what, text, 0);
}

absl::StatusOr<uint32_t> ParseId(absl::string_view what, absl::string_view text) {
  uint32_t id;
  if (!absl::SimpleAtoi(text, &id) || id == std::numeric_limits<uint32_t>::max()) {
    return Invalid(what, text, "not a numeric id");
  }
  return id;
}

absl::StatusOr<double> ParseSeconds(absl::string_view what, absl::string_view text) {
  double seconds;
  if (!absl::SimpleAtod(text, &seconds) || !(seconds >= 0) || seconds > 1e9) {
    return Invalid(what, text, "not a number of seconds (0 to 1e9)");
  }
  return seconds;
}

// One -o option. Options ptmpfs does not know go to libfuse.
absl::Status ParseOption(absl::string_view option, uint64_t ram_bytes, MountOptions& out) {
  const size_t equals = option.find('=');
  const absl::string_view key = option.substr(0, equals);
  const bool has_value = equals != absl::string_view::npos;
  const absl::string_view value = has_value ? option.substr(equals + 1) : absl::string_view();
  auto needs_value = [&]() -> absl::Status {
    if (!has_value || value.empty()) {
      return absl::InvalidArgumentError(absl::StrFormat("%s: needs a value (%s=...)", key, key));
    }
    return absl::OkStatus();
  };
  auto no_value = [&]() -> absl::Status {
    if (has_value) {
      return absl::InvalidArgumentError(absl::StrFormat("%s: takes no value", option));
    }
    return absl::OkStatus();
  };

  if (key == "size" || key == "ram" || key == "nr_inodes") {
    if (absl::Status status = needs_value(); !status.ok()) return status;
    absl::StatusOr<uint64_t> number =
        key == "nr_inodes" ? ParseCount(key, value) : ParseSize(key, value, ram_bytes);
    if (!number.ok()) return number.status();
    (key == "size" ? out.size_bytes : key == "ram" ? out.ram_bytes : out.nr_inodes) = *number;
  } else if (key == "mode") {
    if (absl::Status status = needs_value(); !status.ok()) return status;
    uint32_t mode = 0;
    const auto [end, error] = std::from_chars(value.data(), value.data() + value.size(), mode, 8);
    if (error != std::errc() || end != value.data() + value.size() || mode > 07777) {
      return Invalid(key, value, "not an octal mode up to 7777");
    }
    out.mode = mode;
  } else if (key == "uid" || key == "gid") {
    if (absl::Status status = needs_value(); !status.ok()) return status;
    absl::StatusOr<uint32_t> id = ParseId(key, value);
    if (!id.ok()) return id.status();
    (key == "uid" ? out.uid : out.gid) = *id;
  } else if (key == "entry_timeout" || key == "attr_timeout" || key == "negative_timeout") {
    if (absl::Status status = needs_value(); !status.ok()) return status;
    absl::StatusOr<double> seconds = ParseSeconds(key, value);
    if (!seconds.ok()) return seconds.status();
    (key == "entry_timeout"  ? out.adapter.entry_timeout
     : key == "attr_timeout" ? out.adapter.attr_timeout
                             : out.adapter.negative_timeout) = *seconds;
  } else if (key == "max_threads") {
    if (absl::Status status = needs_value(); !status.ok()) return status;
    int threads;
    if (!absl::SimpleAtoi(value, &threads) || threads < 1 || threads > 1024) {
      return Invalid(key, value, "not a thread count from 1 to 1024");
    }
    out.max_threads = threads;
  } else if (key == "noswap" || key == "writeback_cache" || key == "no_writeback_cache" ||
             key == "clone_fd" || key == "o_direct") {
    if (absl::Status status = no_value(); !status.ok()) return status;
    if (key == "noswap") out.noswap = true;
    if (key == "writeback_cache") out.adapter.writeback_cache = true;
    if (key == "no_writeback_cache") out.adapter.writeback_cache = false;
    if (key == "clone_fd") out.clone_fd = true;
    if (key == "o_direct") out.o_direct = true;
  } else if (key == "remount") {
    if (absl::Status status = no_value(); !status.ok()) return status;
    out.remount = true;
  } else if (key == "relatime") {
    // The kernel's default for every mount; libfuse (3.14) does not know the word.
  } else if (key == "defaults" || key == "auto" || key == "noauto" || key == "nofail" ||
             key == "_netdev" || key == "user" || key == "users" || key.rfind("x-", 0) == 0) {
    // fstab's words for mount(8), not for the filesystem: mount.fuse3 drops most of
    // them, but a direct `ptmpfs -o defaults` should not fail on them either.
  } else if (option.empty()) {
    // "-o a,,b": nothing between commas.
  } else {
    out.fuse_options.emplace_back(option);
  }
  // The mount flags a remount may change; later words win ("ro,rw" is rw).
  static constexpr struct {
    const char* word;
    unsigned long set;
    unsigned long clear;
  } kMountFlags[] = {
      {"ro", MS_RDONLY, 0},
      {"rw", 0, MS_RDONLY},
      {"nosuid", MS_NOSUID, 0},
      {"suid", 0, MS_NOSUID},
      {"nodev", MS_NODEV, 0},
      {"dev", 0, MS_NODEV},
      {"noexec", MS_NOEXEC, 0},
      {"exec", 0, MS_NOEXEC},
      {"noatime", MS_NOATIME, 0},
      {"atime", 0, MS_NOATIME},
      {"nodiratime", MS_NODIRATIME, 0},
      {"diratime", 0, MS_NODIRATIME},
      {"sync", MS_SYNCHRONOUS, 0},
      {"async", 0, MS_SYNCHRONOUS},
      {"dirsync", MS_DIRSYNC, 0},
  };
  for (const auto& flag : kMountFlags) {
    if (option == flag.word) out.remount_flags = (out.remount_flags | flag.set) & ~flag.clear;
  }
  return absl::OkStatus();
}

bool HasFuseOption(const std::vector<std::string>& options, absl::string_view key) {
  for (const std::string& option : options) {
    absl::string_view name = absl::string_view(option).substr(0, option.find('='));
    if (name == key) return true;
  }
  return false;
}

// libfuse's -o splits at commas unless escaped with a backslash.
std::string EscapeCommas(absl::string_view text) {
  std::string escaped;
  for (char c : text) {
    if (c == ',' || c == '\\') escaped.push_back('\\');
    escaped.push_back(c);
  }
  return escaped;
}

std::string FormatBytes(uint64_t bytes) {
  if (bytes % (kMiB << 10) == 0 && bytes != 0) return absl::StrFormat("%uG", bytes >> 30);
  if (bytes % kMiB == 0) return absl::StrFormat("%uM", bytes >> 20);
  return absl::StrFormat("%uk", bytes >> 10);
}

}  // namespace

absl::StatusOr<MountOptions> ParseCommandLine(int argc, const char* const* argv,
                                              uint64_t ram_bytes) {
  MountOptions options;
  options.adapter.entry_timeout = kDefaultTimeout;
  options.adapter.attr_timeout = kDefaultTimeout;
  options.adapter.negative_timeout = kDefaultTimeout;
  std::vector<absl::string_view> positional;
  auto parse_list = [&](absl::string_view list) -> absl::Status {
    for (absl::string_view option : absl::StrSplit(list, ',')) {
      if (absl::Status status = ParseOption(option, ram_bytes, options); !status.ok()) {
        return status;
      }
    }
    return absl::OkStatus();
  };
  for (int i = 1; i < argc; ++i) {
    const absl::string_view word = argv[i];
    if (word == "-h" || word == "--help") {
      options.help = true;
    } else if (word == "-V" || word == "--version") {
      options.version = true;
    } else if (word == "-f") {
      options.foreground = true;
    } else if (word == "-d" || word == "-odebug") {
      options.debug = true;
      options.foreground = true;
    } else if (word == "-s") {
      options.single_thread = true;
    } else if (word == "-o") {
      if (i + 1 >= argc) return absl::InvalidArgumentError("-o: needs a list of options");
      if (absl::Status status = parse_list(argv[++i]); !status.ok()) return status;
    } else if (word.size() > 2 && word.substr(0, 2) == "-o") {
      if (absl::Status status = parse_list(word.substr(2)); !status.ok()) return status;
    } else if (word.size() > 1 && word[0] == '-') {
      return absl::InvalidArgumentError(absl::StrFormat("%s: unknown flag", word));
    } else {
      positional.push_back(word);
    }
  }
  if (options.help || options.version) return options;
  if (positional.empty()) return absl::InvalidArgumentError("no MOUNTPOINT given");
  if (positional.size() > 2) {
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: one word too many (ptmpfs [SWAPFILE] MOUNTPOINT)", positional[2]));
  }
  if (positional.size() == 2) {
    // mount(8) passes the source "none" for a filesystem with no backing store.
    if (positional[0] != "none") options.swap_path = std::string(positional[0]);
  }
  options.mountpoint = std::string(positional.back());
  // The fsname/debug option spelled as -o debug is libfuse's too.
  if (HasFuseOption(options.fuse_options, "debug")) options.foreground = true;
  return options;
}

absl::StatusOr<ResolvedOptions> Resolve(const MountOptions& options, uint64_t ram_bytes, uid_t uid,
                                        gid_t gid) {
  ResolvedOptions resolved;
  Tmpfs::Options& tmpfs = resolved.tmpfs;
  const uint64_t ram = options.ram_bytes.value_or(DefaultRam(ram_bytes));
  if (ram < kMinRam) {
    return absl::InvalidArgumentError(absl::StrFormat("ram=%s: below the least budget of %s",
                                                      FormatBytes(ram), FormatBytes(kMinRam)));
  }
  tmpfs.vm.ram_bytes = ram;
  tmpfs.vm.noswap = options.noswap;
  if (options.noswap && !options.swap_path.empty()) {
    return absl::InvalidArgumentError(
        absl::StrFormat("noswap: a SWAPFILE (%s) was given too", options.swap_path));
  }

  // A formatted swap file gives the default size.
  if (!options.swap_path.empty()) {
    struct stat st;
    if (stat(options.swap_path.c_str(), &st) == 0) {
      if (!S_ISREG(st.st_mode)) {
        return absl::FailedPreconditionError(
            absl::StrFormat("%s: not a regular file", options.swap_path));
      }
      if (st.st_size > 0) {
        const int fd = open(options.swap_path.c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
          return absl::FailedPreconditionError(
              absl::StrFormat("%s: %s", options.swap_path, strerror(errno)));
        }
        absl::StatusOr<vm::SwapHeader> header = vm::ReadSwapHeader(fd);
        close(fd);
        if (!header.ok()) {
          return absl::FailedPreconditionError(
              absl::StrFormat("%s: %s (mkfs.ptmpfs formats a swap file)", options.swap_path,
                              header.status().message()));
        }
        resolved.swap_formatted = true;
        resolved.swap_bytes = header->slot_count * vm::kSwapPageSize;
      }
    } else if (errno != ENOENT) {
      return absl::FailedPreconditionError(
          absl::StrFormat("%s: %s", options.swap_path, strerror(errno)));
    }
  }

  uint64_t size;
  if (options.size_bytes.has_value()) {
    size = *options.size_bytes;
  } else if (resolved.swap_formatted) {
    size = resolved.swap_bytes;
  } else if (options.noswap) {
    size = ram;
  } else {
    size = ram_bytes / 2;
  }
  if (size < kMinSize) {
    return absl::InvalidArgumentError(absl::StrFormat("size=%s: below the least size of %s",
                                                      FormatBytes(size), FormatBytes(kMinSize)));
  }
  tmpfs.size_bytes = size;
  if (!options.noswap && !resolved.swap_formatted) resolved.swap_bytes = size;
  tmpfs.vm.swap.path = options.swap_path;
  tmpfs.vm.swap.size_bytes = resolved.swap_bytes;
  tmpfs.vm.swap.o_direct = options.o_direct;
  tmpfs.vm.swap.lock_wait_ms = kSwapLockWaitMs;
  tmpfs.max_inodes = options.nr_inodes.value_or(size / kBytesPerInode);
  tmpfs.root_mode = options.mode.value_or(01777);
  tmpfs.root_uid = options.uid.value_or(uid);
  tmpfs.root_gid = options.gid.value_or(gid);

  resolved.adapter = options.adapter;
  resolved.max_threads =
      options.single_thread ? 1 : options.max_threads.value_or(DefaultMaxThreads());

  // libfuse's options: the given ones, then what a root mount gets by default.
  resolved.fuse_options = options.fuse_options;
  std::vector<std::string>& fuse = resolved.fuse_options;
  if (uid == 0 && !HasFuseOption(fuse, "allow_other") && !HasFuseOption(fuse, "allow_root")) {
    fuse.emplace_back("allow_other");
  }
  // The kernel turns default_permissions on itself when POSIX ACLs are negotiated
  // (fuse_adapter.cc); saying so keeps /proc/mounts honest for every mount.
  if (!HasFuseOption(fuse, "default_permissions")) fuse.emplace_back("default_permissions");
  if (!HasFuseOption(fuse, "fsname")) {
    fuse.push_back("fsname=" +
                   EscapeCommas(options.swap_path.empty() ? "ptmpfs" : options.swap_path));
  }
  if (!HasFuseOption(fuse, "subtype")) fuse.emplace_back("subtype=ptmpfs");
  return resolved;
}

uint64_t PhysicalRamBytes() {
  const long pages = sysconf(_SC_PHYS_PAGES);
  const long page_size = sysconf(_SC_PAGESIZE);
  if (pages <= 0 || page_size <= 0) return uint64_t{1} << 30;
  return static_cast<uint64_t>(pages) * static_cast<uint64_t>(page_size);
}

std::string HelpText(absl::string_view program, uint64_t ram_bytes) {
  return absl::StrFormat(
      "usage: %s [SWAPFILE] MOUNTPOINT [-f] [-d] [-s] [-o OPTION[,OPTION...]]\n"
      "\n"
      "Mounts a tmpfs whose metadata and data page out to SWAPFILE past a RAM budget.\n"
      "Without SWAPFILE (or with \"none\"), an unlinked temporary swap file in $TMPDIR\n"
      "or /var/tmp. A SWAPFILE that does not exist or is empty is formatted (size=);\n"
      "mkfs.ptmpfs formats one ahead of time with all its blocks allocated.\n"
      "As a mount helper: mount -t fuse.ptmpfs SWAPFILE MOUNTPOINT -o OPTIONS\n"
      "\n"
      "Sizes take k, m, g, t (powers of 1024) or %% (of RAM) after the number.\n"
      "  size=SIZE          most bytes stored, data and metadata (default: a formatted\n"
      "                     SWAPFILE's capacity; otherwise 50%% of RAM, here %s;\n"
      "                     with noswap, ram=)\n"
      "  ram=SIZE           resident budget (default 1/8 of RAM, at most 256M; here %s;\n"
      "                     at least 4M)\n"
      "  nr_inodes=N        most files (default size/256; 0: no limit; k, m, g allowed)\n"
      "  mode=OCTAL         root directory's mode (default 1777)\n"
      "  uid=N, gid=N       root directory's owner (default: who mounts)\n"
      "  noswap             no swap file: everything stays within ram=\n"
      "  o_direct           swap I/O with O_DIRECT\n"
      "  writeback_cache    let the kernel cache writes (FUSE writeback cache)\n"
      "  entry_timeout=S, attr_timeout=S, negative_timeout=S\n"
      "                     seconds the kernel caches names, attributes and absent\n"
      "                     names (default 86400: every change passes through the mount)\n"
      "  max_threads=N      FUSE worker threads, all kept when idle (default %d)\n"
      "  clone_fd           one /dev/fuse descriptor per worker\n"
      "  -f                 stay in the foreground\n"
      "  -d                 print every FUSE request (implies -f)\n"
      "  -s                 one worker thread\n"
      "FUSE's own mount options pass through (allow_other, allow_root,\n"
      "default_permissions, ro, fsname=, ...). Mounted by root, allow_other and\n"
      "default_permissions are on unless said otherwise.\n"
      "  -h, --help         this text\n"
      "  -V, --version      the version\n",
      program, FormatBytes(ram_bytes / 2), FormatBytes(DefaultRam(ram_bytes)), DefaultMaxThreads());
}

}  // namespace ptmpfs::fs
