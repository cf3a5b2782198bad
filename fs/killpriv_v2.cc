// killpriv_v2.h: INIT's reply gains FUSE_HANDLE_KILLPRIV_V2.
#define FUSE_USE_VERSION 312
#include "fs/killpriv_v2.h"

#include <fuse_lowlevel.h>
#include <linux/fuse.h>
#include <sys/uio.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace ptmpfs::fs {
namespace {

// INIT's unique while its reply is awaited, if the kernel offered the flag; 0 before
// INIT and after its reply.
std::atomic<uint64_t> init_unique{0};
std::atomic<bool> init_read{false};

ssize_t Read(int fd, void* buffer, size_t size, void*) {
  const ssize_t got = read(fd, buffer, size);
  if (got >= static_cast<ssize_t>(sizeof(fuse_in_header) + sizeof(uint32_t) * 4) &&
      !init_read.load(std::memory_order_relaxed)) {
    fuse_in_header header;
    memcpy(&header, buffer, sizeof header);
    if (header.opcode == FUSE_INIT) {
      // major, minor, max_readahead, flags: the fields every INIT has had since 7.6.
      uint32_t init[4];
      memcpy(init, static_cast<const char*>(buffer) + sizeof header, sizeof init);
      const bool offered = init[0] == FUSE_KERNEL_VERSION && (init[3] & FUSE_HANDLE_KILLPRIV_V2);
      init_unique.store(offered ? header.unique : 0, std::memory_order_relaxed);
      init_read.store(true, std::memory_order_relaxed);
    }
  }
  return got;
}

ssize_t Writev(int fd, iovec* pieces, int count, void*) {
  const uint64_t unique = init_unique.load(std::memory_order_relaxed);
  if (unique == 0 || count < 2 || pieces[0].iov_len != sizeof(fuse_out_header)) {
    return writev(fd, pieces, count);
  }
  fuse_out_header header;
  memcpy(&header, pieces[0].iov_base, sizeof header);
  constexpr size_t kFlagsEnd = offsetof(fuse_init_out, flags) + sizeof(uint32_t);
  std::array<char, 256> reply;
  if (header.unique != unique || header.error != 0 || pieces[1].iov_len < kFlagsEnd ||
      pieces[1].iov_len > reply.size() || count > 2) {
    return writev(fd, pieces, count);
  }
  memcpy(reply.data(), pieces[1].iov_base, pieces[1].iov_len);
  uint32_t flags;
  memcpy(&flags, reply.data() + offsetof(fuse_init_out, flags), sizeof flags);
  flags |= FUSE_HANDLE_KILLPRIV_V2;
  memcpy(reply.data() + offsetof(fuse_init_out, flags), &flags, sizeof flags);
  iovec edited[2] = {pieces[0], {reply.data(), pieces[1].iov_len}};
  const ssize_t sent = writev(fd, edited, 2);
  init_unique.store(0, std::memory_order_relaxed);
  return sent;
}

}  // namespace

bool AskForKillPrivV2(fuse_session* session) {
  // No splice: the adapter turns it off (fuse_adapter.cc, Init).
  const fuse_custom_io io = {
      .writev = Writev, .read = Read, .splice_receive = nullptr, .splice_send = nullptr};
  return fuse_session_custom_io(session, &io, fuse_session_fd(session)) == 0;
}

}  // namespace ptmpfs::fs
