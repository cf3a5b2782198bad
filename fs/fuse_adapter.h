// fuse_adapter: the FUSE lowlevel operations, translated into Tmpfs calls.
//
// Theory. The kernel sends one request per operation; each handler decodes it, calls
// the core (tmpfs.h) with the caller's credentials, and replies. Nothing else happens
// here: no state of its own beyond the options below, and every error goes through
// ReplyError(), the one place where a status becomes an errno (errno_status.h).
//
// What the kernel caches, it is told it may keep for long: every change to a ptmpfs
// mount passes through this mount (the core is private to this process), so the
// kernel's entries, attributes, negative entries, pages and directory contents can
// only go stale by a change it has seen itself. A round trip costs tens of
// microseconds (DESIGN.md, "FUSE adapter"); a cache hit costs nothing here.
//
// Choices made at init (see Init in fuse_adapter.cc for each reason):
//   READDIRPLUS, PARALLEL_DIROPS, EXPORT_SUPPORT, ATOMIC_O_TRUNC, POSIX_ACL on;
//   DONT_MASK on, so the core applies the umask only where no default ACL is
//   inherited (Caller::umask);
//   WRITEBACK_CACHE only with -o writeback_cache; HANDLE_KILLPRIV asked for but not
//   granted by libfuse 3.14; HANDLE_KILLPRIV_V2 added to INIT's reply behind libfuse's
//   back (killpriv_v2.h), so the kernel skips a GETXATTR before each write and the
//   core clears suid/sgid as tmpfs does (SetAttr recognises the kernel's requests for
//   it, with or without V2);
//   SPLICE_READ and AUTO_INVAL_DATA off; max_write 1 MiB (the most libfuse 3.14 allows).
//
// The ioctl. ptmpfs-stat reads the daemon's figures through a private ioctl on the
// mount's root directory: a fixed-size _IOR, so the kernel copies the reply out in one
// request with no FUSE_IOCTL_RETRY round (a restricted ioctl must be sized statically).
//
// Thread safety. Handlers run on libfuse's worker threads at once; the core locks
// itself (tmpfs.h). A FuseAdapter is immutable after construction, but for what INIT
// negotiated, recorded once before any other request is handled.
#ifndef PTMPFS_FS_FUSE_ADAPTER_H_
#define PTMPFS_FS_FUSE_ADAPTER_H_

#include <sys/ioctl.h>

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "fs/tmpfs.h"

struct fuse_lowlevel_ops;

namespace ptmpfs::fs {

// The figures ptmpfs-stat prints, in this order, one uint64 each.
inline constexpr const char* kFigureNames[] = {
    "ram_budget_bytes",  "resident_bytes",    "wired_bytes",
    "charged_bytes",     "capacity_bytes",    "swap_total_bytes",
    "swap_used_bytes",   "swap_backed_bytes", "faults",
    "zero_fills",        "pageins",           "pageouts",
    "pageout_ios",       "clean_evictions",   "migrations",
    "checksum_failures", "pin_waits",         "nodes",
    "dirents",           "pagein_ios",
};
inline constexpr size_t kFigureCount = sizeof(kFigureNames) / sizeof(kFigureNames[0]);

// The ioctl's reply. `version` is kFiguresVersion; `count` how many of `values` are
// filled (a newer daemon may fill more, an older fewer; the rest are zero).
struct IoctlFigures {
  uint32_t version;
  uint32_t count;
  uint64_t values[32];
};
static_assert(kFigureCount <= 32);
inline constexpr uint32_t kFiguresVersion = 1;
// 'P' for ptmpfs; 0x70 is outside the numbers the kernel's own ioctls use with 'P'.
inline constexpr unsigned long kIoctlReadFigures = _IOR('P', 0x70, IoctlFigures);

// Fills `out` from a snapshot of the core's figures.
void FillFigures(const Tmpfs::Figures& figures, IoctlFigures& out);

class FuseAdapter {
 public:
  struct Options {
    // How long the kernel may trust what it was told. See options.h for the defaults
    // and why they are long.
    double entry_timeout = 86400;
    double attr_timeout = 86400;
    double negative_timeout = 86400;  // 0: negative lookups are not cached
    bool writeback_cache = false;
  };

  // REQUIRES: fs outlives the session that uses this adapter.
  FuseAdapter(Tmpfs& fs, const Options& options) : fs_(fs), options_(options) {}
  FuseAdapter(const FuseAdapter&) = delete;
  FuseAdapter& operator=(const FuseAdapter&) = delete;

  // The operations table; each handler finds this adapter as the session's userdata.
  static const fuse_lowlevel_ops& Ops();

  Tmpfs& fs() { return fs_; }
  const Options& options() const { return options_; }

  // Whether the kernel leaves the umask to us (FUSE_CAP_DONT_MASK granted at INIT):
  // then requests carry it unapplied, for the core to apply (Caller::umask).
  bool core_applies_umask() const { return core_applies_umask_.load(std::memory_order_acquire); }
  void set_core_applies_umask(bool applies) {
    core_applies_umask_.store(applies, std::memory_order_release);
  }

 private:
  Tmpfs& fs_;
  const Options options_;
  std::atomic<bool> core_applies_umask_{false};  // set by INIT, read by every request
};

}  // namespace ptmpfs::fs

#endif  // PTMPFS_FS_FUSE_ADAPTER_H_
