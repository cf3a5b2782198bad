// options: the ptmpfs command line and mount options.
//
//   ptmpfs [SWAPFILE] MOUNTPOINT [-f] [-d] [-s] [-o OPTION[,OPTION...]]...
//
// Theory. Parsing is two steps. ParseCommandLine() reads the words as given and
// checks each on its own (a size that is not a size, an unknown flag); options ptmpfs
// does not know go to libfuse, which names any it does not know either. Resolve()
// then fills the defaults, which depend on the machine (RAM) and on the swap file (a
// formatted file has a size), and checks the options against each other. Either step
// fails with one message naming what is wrong; nothing is mounted then.
//
// Defaults (kept in one place: Resolve() in options.cc, and --help prints them):
//   ram=       1/8 of physical RAM, at most 256 MiB: metadata and data spill to swap
//              past it, so a small budget is enough, and a mount with defaults stays
//              a small process.
//   size=      the swap file's capacity for a formatted SWAPFILE; otherwise 50% of RAM
//              as tmpfs (a temporary swap file grows in chunks as space is used, so a
//              large size costs nothing until used). With noswap: ram=.
//   nr_inodes= size / 256: about what fits when every file is small (a node is 128
//              bytes, an entry with its name about as much), so 10,000,000 files
//              fit in size=2560M. 0 means no limit beyond space.
//   mode=1777, uid=, gid= of the caller, as tmpfs.
//   entry_timeout=, attr_timeout=, negative_timeout= 86400 s: every change passes
//              through this mount, so what the kernel caches never goes stale.
//   max_threads= 2 per CPU, 4 to 16; idle workers are kept (DESIGN.md).
//   Mounted by root: allow_other and default_permissions unless given otherwise.
#ifndef PTMPFS_FS_OPTIONS_H_
#define PTMPFS_FS_OPTIONS_H_

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "fs/fuse_adapter.h"
#include "fs/parse_size.h"
#include "fs/tmpfs.h"

namespace ptmpfs::fs {

struct MountOptions {
  bool help = false;
  bool version = false;

  std::string swap_path;  // "" (or source "none"): a temporary swap file
  std::string mountpoint;
  bool foreground = false;     // -f (also implied by -d)
  bool debug = false;          // -d: libfuse prints every request
  bool single_thread = false;  // -s
  // -o remount (mount -o remount,ro MOUNTPOINT runs ptmpfs so, through mount.fuse3):
  // change the mounted ptmpfs's flags (remount_flags: MS_RDONLY, MS_NOSUID, ...)
  // with mount(2); no daemon is started and every other option is left as mounted.
  bool remount = false;
  unsigned long remount_flags = 0;

  // As given; unset means "the default" (filled by Resolve).
  std::optional<uint64_t> size_bytes;
  std::optional<uint64_t> nr_inodes;
  std::optional<uint64_t> ram_bytes;
  std::optional<uint32_t> mode;
  std::optional<uint32_t> uid;
  std::optional<uint32_t> gid;
  std::optional<int> max_threads;
  bool noswap = false;
  bool clone_fd = false;
  bool o_direct = false;
  FuseAdapter::Options adapter;

  // Mount options for libfuse (allow_other, default_permissions, ro, fsname=, ...),
  // in order, without "-o".
  std::vector<std::string> fuse_options;
};

// What main needs, all defaults filled.
struct ResolvedOptions {
  Tmpfs::Options tmpfs;
  FuseAdapter::Options adapter;
  int max_threads = 0;
  uint64_t swap_bytes = 0;      // the swap file's capacity (0 with noswap)
  bool swap_formatted = false;  // SWAPFILE already holds a ptmpfs swap file
  std::vector<std::string> fuse_options;
};

// argv as main gets it. `ram_bytes` is the machine's RAM (for % sizes).
absl::StatusOr<MountOptions> ParseCommandLine(int argc, const char* const* argv,
                                              uint64_t ram_bytes);

// Fills the defaults and checks the whole. Reads a formatted swap file's header for
// its size. `uid`/`gid`: the caller's (for the root directory's owner and for the
// root-only defaults).
absl::StatusOr<ResolvedOptions> Resolve(const MountOptions& options, uint64_t ram_bytes, uid_t uid,
                                        gid_t gid);

// The machine's physical RAM in bytes.
uint64_t PhysicalRamBytes();

// --help's text, with the defaults for a machine of `ram_bytes`.
std::string HelpText(absl::string_view program, uint64_t ram_bytes);

}  // namespace ptmpfs::fs

#endif  // PTMPFS_FS_OPTIONS_H_
