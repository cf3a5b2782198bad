// ptmpfs: mounts a tmpfs whose metadata is pageable (README.md, fs/options.h).
//
// The order of things, and why:
//   1. Parse and resolve every option, and let libfuse check its own (a session made
//      and dropped): a malformed command line fails here, with one message, before
//      anything is opened or mounted.
//   2. Unless -f, fork. The daemon cannot be made with fuse_daemonize(), which forks
//      after the mount: the core runs threads (the pager) that a fork would lose, and
//      an error in the core's start (the swap file in use, the host disk full) must
//      still reach the command that mounted, as a message and a non-zero exit. So the
//      child does the rest and tells the parent, through a pipe, once it is mounted;
//      the parent exits 0 then, or 1 if the child died first (having printed why).
//   3. Create the core (opens and locks the swap file, starts the pager), make the
//      session, install the signal handlers, mount, and hook INIT's reply
//      (killpriv_v2.h).
//   4. Serve until unmounted (fusermount3 -u, umount) or told to stop (SIGTERM,
//      SIGINT, SIGHUP: libfuse's handlers end the loop); then unmount if still
//      mounted, and take the core down, which releases the swap file's lock.
#define FUSE_USE_VERSION 312
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "fs/fuse_adapter.h"
#include "fs/killpriv_v2.h"
#include "fs/options.h"
#include "fs/tmpfs.h"

namespace ptmpfs::fs {
namespace {

constexpr char kProgram[] = "ptmpfs";
constexpr char kVersion[] = "0.1.0";  // project(ptmpfs VERSION ...) in CMakeLists.txt

// libfuse's arguments: a program name, -d, and one -o with every mount option.
struct FuseArgs {
  explicit FuseArgs(const MountOptions& options, const ResolvedOptions& resolved) {
    fuse_opt_add_arg(&args, kProgram);
    if (options.debug) fuse_opt_add_arg(&args, "-d");
    if (!resolved.fuse_options.empty()) {
      fuse_opt_add_arg(&args, "-o");
      fuse_opt_add_arg(&args, absl::StrJoin(resolved.fuse_options, ",").c_str());
    }
  }
  ~FuseArgs() { fuse_opt_free_args(&args); }
  FuseArgs(const FuseArgs&) = delete;
  FuseArgs& operator=(const FuseArgs&) = delete;

  fuse_args args = FUSE_ARGS_INIT(0, nullptr);
};

// Step 1's check of libfuse's options: it names any it does not know.
bool FuseAcceptsOptions(const MountOptions& options, const ResolvedOptions& resolved) {
  FuseArgs args(options, resolved);
  fuse_session* session =
      fuse_session_new(&args.args, &FuseAdapter::Ops(), sizeof(fuse_lowlevel_ops), nullptr);
  if (session == nullptr) return false;
  fuse_session_destroy(session);
  return true;
}

// The daemon's end of step 2: Ready() tells the waiting parent that the mount is up
// and lets go of the terminal.
class ParentLink {
 public:
  explicit ParentLink(int fd) : fd_(fd) {}
  void Ready() {
    if (fd_ < 0) return;
    (void)setsid();
    (void)chdir("/");
    const int null_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null_fd >= 0) {
      dup2(null_fd, STDIN_FILENO);
      dup2(null_fd, STDOUT_FILENO);
      dup2(null_fd, STDERR_FILENO);
      if (null_fd > STDERR_FILENO) close(null_fd);
    }
    const char ok = '0';
    (void)!write(fd_, &ok, 1);
    close(fd_);
    fd_ = -1;
  }

 private:
  int fd_;
};

// Forks; returns in the child with the write end of the pipe, never in the parent.
int ForkDaemon() {
  int pipe_fds[2];
  if (pipe2(pipe_fds, O_CLOEXEC) != 0) {
    fprintf(stderr, "%s: pipe: %s\n", kProgram, strerror(errno));
    exit(1);
  }
  const pid_t child = fork();
  if (child < 0) {
    fprintf(stderr, "%s: fork: %s\n", kProgram, strerror(errno));
    exit(1);
  }
  if (child == 0) {
    close(pipe_fds[0]);
    return pipe_fds[1];
  }
  close(pipe_fds[1]);
  char ok = 0;
  ssize_t got;
  do {
    got = read(pipe_fds[0], &ok, 1);
  } while (got < 0 && errno == EINTR);
  if (got == 1 && ok == '0') _exit(0);
  // The child failed and said why on our shared stderr; pass on its status.
  int status = 0;
  while (waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  _exit(WIFEXITED(status) && WEXITSTATUS(status) != 0 ? WEXITSTATUS(status) : 1);
}

int Serve(const MountOptions& options, const ResolvedOptions& resolved, ParentLink& parent) {
  absl::StatusOr<std::unique_ptr<Tmpfs>> fs = Tmpfs::Create(resolved.tmpfs);
  if (!fs.ok()) {
    fprintf(stderr, "%s: %s\n", kProgram, std::string(fs.status().message()).c_str());
    return 1;
  }
  FuseAdapter adapter(**fs, resolved.adapter);
  FuseArgs args(options, resolved);
  fuse_session* session =
      fuse_session_new(&args.args, &FuseAdapter::Ops(), sizeof(fuse_lowlevel_ops), &adapter);
  if (session == nullptr) return 1;  // libfuse said why
  if (fuse_set_signal_handlers(session) != 0) {
    fuse_session_destroy(session);
    return 1;
  }
  if (fuse_session_mount(session, options.mountpoint.c_str()) != 0) {
    fuse_remove_signal_handlers(session);
    fuse_session_destroy(session);
    return 1;  // libfuse said why ("bad mount point ...")
  }
  // Before INIT is read: the kernel then skips a GETXATTR before every write.
  if (!AskForKillPrivV2(session)) {
    fprintf(stderr, "%s: could not hook INIT's reply; writes will ask for security xattrs\n",
            kProgram);
  }
  // The kernel caches a file's mode for as long as the attribute timeout, and neither
  // a WRITE's reply nor an OPEN's carries one: when those clear suid/sgid, drop its
  // copy (attributes only: offset -1), or exec would still see the bits.
  (*fs)->set_on_suid_sgid_cleared(
      [session](Ino ino) { fuse_lowlevel_notify_inval_inode(session, ino, -1, 0); });
  parent.Ready();

  int result;
  if (resolved.max_threads <= 1) {
    result = fuse_session_loop(session);
  } else {
    fuse_loop_config* config = fuse_loop_cfg_create();
    fuse_loop_cfg_set_clone_fd(config, options.clone_fd ? 1 : 0);
    fuse_loop_cfg_set_max_threads(config, static_cast<unsigned>(resolved.max_threads));
    // Idle workers are all kept: making a thread costs more than serving a request.
    fuse_loop_cfg_set_idle_threads(config, static_cast<unsigned>(resolved.max_threads));
    result = fuse_session_loop_mt(session, config);
    fuse_loop_cfg_destroy(config);
  }
  fuse_session_unmount(session);
  fuse_remove_signal_handlers(session);
  fuse_session_destroy(session);
  fs->reset();  // releases the swap file and its lock
  // libfuse returns the number of the signal that ended the loop (a clean stop), or
  // a negative errno when reading /dev/fuse failed.
  return result >= 0 ? 0 : 1;
}

int Main(int argc, char** argv) {
  // Debian's Abseil checks every lock for cycles (~25 ns a lock); our lock order is
  // written down and tested instead.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  const uint64_t ram_bytes = PhysicalRamBytes();
  absl::StatusOr<MountOptions> options = ParseCommandLine(argc, argv, ram_bytes);
  if (!options.ok()) {
    fprintf(stderr, "%s: %s\n(%s --help lists the options)\n", kProgram,
            std::string(options.status().message()).c_str(), kProgram);
    return 1;
  }
  if (options->help) {
    fputs(HelpText(kProgram, ram_bytes).c_str(), stdout);
    return 0;
  }
  if (options->version) {
    printf("%s %s (libfuse %s)\n", kProgram, kVersion, fuse_pkgversion());
    return 0;
  }
  if (options->remount) {
    // The kernel keeps the daemon and every FUSE option; only the mount's flags change.
    if (mount(nullptr, options->mountpoint.c_str(), nullptr, MS_REMOUNT | options->remount_flags,
              nullptr) != 0) {
      fprintf(stderr, "%s: remount %s: %s\n", kProgram, options->mountpoint.c_str(),
              strerror(errno));
      return 1;
    }
    return 0;
  }
  absl::StatusOr<ResolvedOptions> resolved = Resolve(*options, ram_bytes, getuid(), getgid());
  if (!resolved.ok()) {
    fprintf(stderr, "%s: %s\n", kProgram, std::string(resolved.status().message()).c_str());
    return 1;
  }
  if (!FuseAcceptsOptions(*options, *resolved)) return 1;

  ParentLink parent(options->foreground ? -1 : ForkDaemon());
  return Serve(*options, *resolved, parent);
}

}  // namespace
}  // namespace ptmpfs::fs

int main(int argc, char** argv) { return ptmpfs::fs::Main(argc, argv); }
