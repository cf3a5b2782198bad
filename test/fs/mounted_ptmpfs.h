// mounted_ptmpfs: runs the built ptmpfs binary on a fresh directory for a test,
// and always unmounts and reaps it (shared by the mount-level tests).
//
// The including target defines PTMPFS_BINARY (test/CMakeLists.txt). Nothing sleeps
// or polls on a timer: waiting for the mount sleeps in poll(2) on /proc/self/mountinfo,
// which reports every change of the mount table as POLLPRI, and on a pidfd of the
// daemon, readable once it exits; each wait has a deadline.
#ifndef PTMPFS_TEST_FS_MOUNTED_PTMPFS_H_
#define PTMPFS_TEST_FS_MOUNTED_PTMPFS_H_

#include <fcntl.h>
#include <signal.h>
#include <poll.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
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

namespace ptmpfs_mount_test {

using Clock = std::chrono::steady_clock;

// How long a mount may take to come up (or go away): generous, since a sanitized
// daemon starts slowly; polling ends as soon as it is up.
constexpr auto kDeadline = std::chrono::seconds(20);

// A descriptor that polls readable once `pid` exits (glibc 2.36's sys/pidfd.h does
// not declare pidfd_open for C++).
inline int PidFd(pid_t pid) { return static_cast<int>(syscall(SYS_pidfd_open, pid, 0)); }

// Sleeps until one of `fds` has one of its events or `deadline` passes; false then.
inline bool WaitForEvents(std::vector<pollfd>& fds, Clock::time_point deadline) {
  for (;;) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) return false;
    const int ready = poll(fds.data(), fds.size(), static_cast<int>(left) + 1);
    if (ready > 0) return true;
    if (ready < 0 && errno != EINTR) return false;
  }
}
inline bool HaveFuse() { return access("/dev/fuse", R_OK | W_OK) == 0; }

#define SKIP_WITHOUT_FUSE() \
  if (!HaveFuse()) GTEST_SKIP() << "/dev/fuse is missing: cannot mount"

inline bool IsFuseMount(const std::string& path) {
  struct statfs stats;
  return statfs(path.c_str(), &stats) == 0 && stats.f_type == FUSE_SUPER_MAGIC;
}

struct RunResult {
  int exit_code = -1;  // -1: killed by a signal
  std::string output;  // stdout and stderr together
};

// Runs a program to completion, capturing its output.
inline RunResult RunProgram(const std::vector<std::string>& argv) {
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
  RunResult result;
  char buffer[4096];
  ssize_t got;
  while ((got = read(pipe_fds[0], buffer, sizeof(buffer))) > 0 || (got < 0 && errno == EINTR)) {
    if (got > 0) result.output.append(buffer, static_cast<size_t>(got));
  }
  close(pipe_fds[0]);
  int status = 0;
  waitpid(child, &status, 0);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

inline void Unmount(const std::string& path) {
  if (!IsFuseMount(path)) return;
  if (RunProgram({"/usr/bin/fusermount3", "-u", "-z", path}).exit_code != 0) {
    umount2(path.c_str(), MNT_DETACH);
  }
}

// A ptmpfs mounted in the foreground as our child; unmounted and reaped on destruction.
class MountedPtmpfs {
 public:
  // `options` go after -o; `swap` is the SWAPFILE word (empty: none given).
  MountedPtmpfs(const std::string& mountpoint, const std::string& options,
                const std::string& swap = "")
      : mountpoint_(mountpoint) {
    mkdir(mountpoint.c_str(), 0755);
    std::vector<std::string> argv = {PTMPFS_BINARY};
    if (!swap.empty()) argv.push_back(swap);
    argv.push_back(mountpoint);
    argv.push_back("-f");
    if (!options.empty()) {
      argv.push_back("-o");
      argv.push_back(options);
    }
    child_ = fork();
    if (child_ == 0) {
      std::vector<char*> args;
      for (const std::string& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
      args.push_back(nullptr);
      execv(args[0], args.data());
      _exit(127);
    }
    // The mount table is opened before the first look, so no change slips between.
    const int mounts = open("/proc/self/mountinfo", O_RDONLY | O_CLOEXEC);
    const int exited = PidFd(child_);
    std::vector<pollfd> fds = {{mounts, POLLPRI, 0}, {exited, POLLIN, 0}};
    const auto deadline = Clock::now() + kDeadline;
    do {
      if (IsFuseMount(mountpoint_)) {
        mounted_ = true;
        break;
      }
      int status;
      if (waitpid(child_, &status, WNOHANG) == child_) {
        exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        child_ = -1;
        break;
      }
    } while (WaitForEvents(fds, deadline));
    close(mounts);
    close(exited);
  }

  ~MountedPtmpfs() { Stop(); }

  // Unmounts and waits for the daemon; returns its exit code (-1: a signal).
  int Stop() {
    Unmount(mountpoint_);
    return Reap();
  }

  // Sends `signal` and waits for the daemon to exit by itself.
  int Signal(int signal) {
    if (child_ > 0) kill(child_, signal);
    return Reap();
  }

  bool mounted() const { return mounted_; }
  pid_t pid() const { return child_; }
  const std::string& path() const { return mountpoint_; }
  std::string operator/(const std::string& name) const { return mountpoint_ + "/" + name; }

 private:
  int Reap() {
    if (child_ <= 0) return exit_code_;
    const int exited = PidFd(child_);
    std::vector<pollfd> fds = {{exited, POLLIN, 0}};
    const auto deadline = Clock::now() + kDeadline;
    int status = 0;
    while (waitpid(child_, &status, WNOHANG) != child_) {
      if (!WaitForEvents(fds, deadline)) {
        kill(child_, SIGKILL);
        waitpid(child_, &status, 0);
        break;
      }
    }
    close(exited);
    exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    child_ = -1;
    Unmount(mountpoint_);  // in case it died with the mount up
    return exit_code_;
  }

  std::string mountpoint_;
  pid_t child_ = -1;
  bool mounted_ = false;
  int exit_code_ = -1;
};

}  // namespace ptmpfs_mount_test

#endif  // PTMPFS_TEST_FS_MOUNTED_PTMPFS_H_
