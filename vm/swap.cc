#include "vm/swap.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/statfs.h>
#include <sys/uio.h>
#include <unistd.h>
#include <xxh_x86dispatch.h>
#include <xxhash.h>

#include <algorithm>
#include <atomic>
#include <cassert>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/inlined_vector.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"

namespace ptmpfs::vm {
namespace {

// statfs f_type of the file systems a temporary swap file must not live on: RAM-backed
// ones (swapping to RAM saves nothing) and FUSE (it could be this very ptmpfs, whose
// page-outs would then wait on themselves).
constexpr uint32_t kTmpfsMagic = 0x01021994;
constexpr uint32_t kRamfsMagic = 0x858458f6;
constexpr uint32_t kFuseSuperMagic = 0x65735546;

// checksums_[s] of a slot not written since it was allocated. A written page whose
// xxh3-64 happens to be 0 (odds 2^-64 per write) would read back as a caller bug.
constexpr uint64_t kUnwritten = 0;

// Polling interval while another process holds the file's lock: flock has no timed
// wait, and the holder is a daemon finishing its exit, gone within milliseconds.
constexpr auto kLockPoll = std::chrono::milliseconds(5);

// Clusters up to this many pages keep their iovecs and checksums on the stack; the
// pager's clusters (64) fit, a 1 MiB FUSE write (256 pages at most, rarely) spills to
// the heap, which the I/O path may use.
constexpr size_t kInlineCluster = 64;

// Freed groups DropFreedPages() takes per posix_fadvise batch: 64 groups are 16 MiB.
constexpr size_t kDropBatchGroups = 64;

std::string ErrnoText(int error) {
  char buffer[128];
  return strerror_r(error, buffer, sizeof(buffer));  // GNU strerror_r returns the text
}

absl::Status Prefixed(absl::string_view prefix, const absl::Status& status) {
  return absl::Status(status.code(), absl::StrCat(prefix, ": ", status.message()));
}

// A page-sized I/O moves whole iovecs; both directions loop on EINTR and on short
// transfers (advancing through the iovecs) and split at IOV_MAX. Returns 0, an errno,
// or kEndOfFile when a read meets the end of the file.
constexpr int kEndOfFile = -1;

int TransferFully(bool is_write, int fd, iovec* iov, int iov_count, uint64_t offset) {
  while (iov_count > 0) {
    if (iov->iov_len == 0) {
      ++iov;
      --iov_count;
      continue;
    }
    const int batch = std::min(iov_count, IOV_MAX);
    // One buffer (a fault's page): pread and pwrite, which spare the kernel the copy
    // and check of an iovec array, as raw system calls: libc's wrappers are
    // cancellation points, which cost two atomic updates of the thread's cancel state
    // per call (25 ns of a 1 us page-in here), and nothing here cancels threads.
    const ssize_t moved =
        batch == 1 ? syscall(is_write ? SYS_pwrite64 : SYS_pread64, fd, iov->iov_base,
                             iov->iov_len, static_cast<off_t>(offset))
        : is_write ? pwritev(fd, iov, batch, static_cast<off_t>(offset))
                   : preadv(fd, iov, batch, static_cast<off_t>(offset));
    if (moved < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    if (moved == 0) return is_write ? EIO : kEndOfFile;
    offset += static_cast<uint64_t>(moved);
    size_t left = static_cast<size_t>(moved);
    while (left > 0) {
      if (left >= iov->iov_len) {
        left -= iov->iov_len;
        ++iov;
        --iov_count;
      } else {
        iov->iov_base = static_cast<char*>(iov->iov_base) + left;
        iov->iov_len -= left;
        left = 0;
      }
    }
  }
  return 0;
}

// The run-time dispatched XXH3 (AVX2 where the CPU has it): the same hash as
// XXH3_64bits, 78 ns a page here against 213 for Debian's SSE2 build of it.
uint64_t PageChecksum(const void* page) { return XXH3_64bits_dispatch(page, kSwapPageSize); }

// An unlinked file in `dir`: O_TMPFILE where the file system has it, else mkstemp and
// unlink. Mode 0600 whatever the umask. -1 with errno on failure.
int OpenUnlinkedIn(const std::string& dir) {
  int fd = open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
  // EOPNOTSUPP: no O_TMPFILE in this file system; EISDIR: a kernel without O_TMPFILE.
  if (fd < 0 && (errno == EOPNOTSUPP || errno == EISDIR)) {
    std::string name = absl::StrCat(dir, "/ptmpfs-swap-XXXXXX");
    fd = mkostemp(name.data(), O_CLOEXEC);
    if (fd >= 0) unlink(name.c_str());
  }
  if (fd >= 0 && fchmod(fd, 0600) != 0) {
    const int error = errno;
    close(fd);
    errno = error;
    return -1;
  }
  return fd;
}

}  // namespace

void Swap::FreeDeleter::operator()(uint64_t* array) const { free(array); }

absl::StatusOr<std::unique_ptr<Swap>> Swap::Open(const SwapOptions& options) {
  std::unique_ptr<Swap> swap(new Swap());
  swap->o_direct_ = options.o_direct;
  const bool temporary = options.path.empty() || options.path == "none";
  absl::Status status =
      temporary ? swap->OpenTemporary(options.size_bytes) : swap->OpenPath(options);
  if (!status.ok()) return status;

  // calloc: an array this size comes from fresh mmap pages, already zero (kUnwritten),
  // and untouched slots cost no RAM.
  swap->checksums_.reset(static_cast<uint64_t*>(calloc(swap->slot_count_, sizeof(uint64_t))));
  if (swap->checksums_ == nullptr) {
    return absl::ResourceExhaustedError(
        absl::StrFormat("%s: no memory for the checksums of %d swap slots",
                        temporary ? "temporary swap file" : swap->path_, swap->slot_count_));
  }
  swap->slots_ = std::make_unique<SwapSlots>(swap->slot_count_);

  if (!temporary) {
    // A formatted file had every block allocated when it was formatted (mkfs or
    // FormatSwapFile). Allocate again only if it has holes (a sparse copy, say):
    // fallocate is cheap on allocated extents, but the zero-filling fallback is not.
    struct stat st;
    if (fstat(swap->fd_, &st) != 0) {
      return absl::InternalError(absl::StrFormat("%s: fstat: %s", swap->path_, ErrnoText(errno)));
    }
    const uint64_t data_end = swap->SlotOffset(swap->slot_count_);
    absl::MutexLock lock(&swap->backing_mu_);
    if (static_cast<uint64_t>(st.st_blocks) * 512 < data_end) {
      status = AllocateSwapBlocks(swap->fd_, swap->data_offset_, data_end - swap->data_offset_);
      if (!status.ok()) return Prefixed(swap->path_, status);
    }
    status = swap->AddBackedSpan(0, swap->slot_count_);
    if (!status.ok()) return Prefixed(swap->path_, status);
  }
  return swap;
}

Swap::~Swap() {
  if (fd_ >= 0) close(fd_);  // releases the flock
}

absl::Status Swap::OpenTemporary(uint64_t size_bytes) {
  if (size_bytes == 0) {
    return absl::InvalidArgumentError("a temporary swap file needs a size");
  }
  absl::StatusOr<SwapHeader> header = MakeSwapHeader(size_bytes);
  if (!header.ok()) return header.status();

  std::vector<std::string> candidates;
  if (const char* tmpdir = getenv("TMPDIR"); tmpdir != nullptr && tmpdir[0] != '\0') {
    candidates.push_back(tmpdir);
  }
  candidates.push_back("/var/tmp");
  std::string refusals;
  for (const std::string& dir : candidates) {
    struct statfs fs;
    if (statfs(dir.c_str(), &fs) != 0) {
      absl::StrAppend(&refusals, "; ", dir, ": ", ErrnoText(errno));
      continue;
    }
    const auto type = static_cast<uint32_t>(fs.f_type);
    if (type == kTmpfsMagic || type == kRamfsMagic) {
      absl::StrAppend(&refusals, "; ", dir, ": in RAM (tmpfs)");
      continue;
    }
    if (type == kFuseSuperMagic) {
      absl::StrAppend(&refusals, "; ", dir, ": on a FUSE file system");
      continue;
    }
    fd_ = OpenUnlinkedIn(dir);
    if (fd_ >= 0) break;
    absl::StrAppend(&refusals, "; ", dir, ": ", ErrnoText(errno));
  }
  if (fd_ < 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("no directory for a temporary swap file", refusals));
  }
  if (o_direct_) {
    if (absl::Status status = EnableDirectIo(); !status.ok()) {
      return Prefixed("temporary swap file", status);
    }
  }
  slot_count_ = header->slot_count;
  data_offset_ = header->data_offset;
  // The whole size, sparse: the same geometry as a formatted file, blocks to come from
  // EnsureBacked().
  if (ftruncate(fd_, static_cast<off_t>(SlotOffset(slot_count_))) != 0) {
    return absl::InternalError(
        absl::StrFormat("temporary swap file: ftruncate: %s", ErrnoText(errno)));
  }
  if (absl::Status status = WriteSwapHeader(fd_, *header); !status.ok()) {
    return Prefixed("temporary swap file", status);
  }
  return absl::OkStatus();
}

absl::Status Swap::OpenPath(const SwapOptions& options) {
  path_ = options.path;
  // O_DIRECT is set after the open (EnableDirectIo): open(O_CREAT | O_DIRECT) on a file
  // system without it creates the file before failing.
  constexpr int kFlags = O_RDWR | O_CLOEXEC;
  bool created = false;
  fd_ = open(path_.c_str(), kFlags);
  if (fd_ < 0 && errno == ENOENT) {
    if (options.size_bytes == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(path_, ": does not exist, and no size was given to format it"));
    }
    fd_ = open(path_.c_str(), kFlags | O_CREAT | O_EXCL, 0600);
    created = fd_ >= 0;
    if (fd_ < 0 && errno == EEXIST) fd_ = open(path_.c_str(), kFlags);  // lost a race
  }
  if (fd_ < 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat(path_, ": open"));
  }
  absl::Status status = LockFile(options.lock_wait_ms);
  const bool locked = status.ok();
  if (status.ok() && o_direct_) status = EnableDirectIo();
  if (status.ok()) {
    struct stat st;
    if (fstat(fd_, &st) != 0) {
      status = absl::InternalError(absl::StrFormat("fstat: %s", ErrnoText(errno)));
    } else if (!S_ISREG(st.st_mode)) {
      status = absl::FailedPreconditionError("not a regular file");
    } else if (st.st_size == 0) {
      if (options.size_bytes == 0) {
        status = absl::InvalidArgumentError("empty file, and no size was given to format it");
      } else {
        absl::StatusOr<SwapHeader> header = FormatSwapFile(fd_, options.size_bytes);
        status = header.status();
        if (header.ok()) {
          slot_count_ = header->slot_count;
          data_offset_ = header->data_offset;
        }
      }
    } else {
      absl::StatusOr<SwapHeader> header = ReadSwapHeader(fd_);
      status = header.status();
      if (header.ok()) {
        slot_count_ = header->slot_count;
        data_offset_ = header->data_offset;
      }
    }
  }
  if (status.ok()) return status;
  // Leave no half-formatted file of ours behind. Only while holding the lock: without
  // it, another ptmpfs may have opened the new file and be formatting it.
  if (created && locked) unlink(path_.c_str());
  return Prefixed(path_, status);
}

absl::Status Swap::LockFile(int lock_wait_ms) {
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(std::max(lock_wait_ms, 0));
  for (;;) {
    if (flock(fd_, LOCK_EX | LOCK_NB) == 0) return absl::OkStatus();
    if (errno == EINTR) continue;
    if (errno != EWOULDBLOCK) {
      return absl::InternalError(absl::StrFormat("flock: %s", ErrnoText(errno)));
    }
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline) {
      return absl::UnavailableError("in use by another ptmpfs");
    }
    std::this_thread::sleep_for(
        std::min<std::chrono::steady_clock::duration>(kLockPoll, deadline - now));
  }
}

absl::Status Swap::EnableDirectIo() {
  const int flags = fcntl(fd_, F_GETFL);
  if (flags < 0 || fcntl(fd_, F_SETFL, flags | O_DIRECT) != 0) {
    if (errno == EINVAL) {
      return absl::FailedPreconditionError("the file system does not support O_DIRECT");
    }
    return absl::InternalError(absl::StrFormat("setting O_DIRECT: %s", ErrnoText(errno)));
  }
  return absl::OkStatus();
}

absl::Status Swap::AddBackedSpan(uint64_t first, uint64_t count) {
  slots_->Grow(first + count);
  backed_slots_.store(first + count, std::memory_order_release);
  return absl::OkStatus();
}

uint64_t Swap::slots_in_use() const { return slots_->used(); }

absl::Status Swap::EnsureBacked(uint64_t slots) {
  if (slots <= backed_slots_.load(std::memory_order_acquire)) return absl::OkStatus();
  if (slots > slot_count_) {
    return absl::ResourceExhaustedError(
        absl::StrFormat("%d swap slots asked for, but the swap file has %d", slots, slot_count_));
  }
  absl::MutexLock lock(&backing_mu_);
  const uint64_t backed = backed_slots_.load(std::memory_order_relaxed);
  if (slots <= backed) return absl::OkStatus();
  const uint64_t chunks = (slots + kBackingChunkSlots - 1) / kBackingChunkSlots;
  const uint64_t target = std::min(chunks * kBackingChunkSlots, slot_count_);
  // Blocks before the span: a slot in the arena always has its blocks (invariant 1).
  absl::Status status =
      AllocateSwapBlocks(fd_, SlotOffset(backed), (target - backed) * kSwapPageSize);
  if (status.ok()) status = AddBackedSpan(backed, target - backed);
  if (!status.ok()) {
    return Prefixed(
        path_.empty() ? absl::string_view("temporary swap file") : absl::string_view(path_),
        status);
  }
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> Swap::AllocSlots(uint64_t count) {
  assert(count > 0);
  absl::StatusOr<uint64_t> first = slots_->Alloc(count);
  if (first.ok() || !absl::IsResourceExhausted(first.status())) return first;
  return absl::ResourceExhaustedError(
      absl::StrFormat("no run of %d free swap slots (%d of %d backed slots in use)", count,
                      slots_in_use(), backed_slots()));
}

void Swap::FreeSlots(uint64_t first, uint64_t count) {
  assert(count > 0 && first + count <= backed_slots());
  for (uint64_t slot = first; slot < first + count; ++slot) {
    std::atomic_ref<uint64_t>(checksums_[slot]).store(kUnwritten, std::memory_order_relaxed);
  }
  slots_->Free(first, count);
}

void Swap::DropFreedPages() {
  if (o_direct_) return;  // nothing of the file is cached
  uint64_t groups[kDropBatchGroups];
  for (;;) {
    const size_t taken = slots_->TakeFreedGroups(groups, kDropBatchGroups);
    // Neighbouring groups go in one call. A group allocated again meanwhile loses at
    // most its cached clean pages: DONTNEED never drops a dirty one, nor data.
    for (size_t i = 0; i < taken;) {
      size_t end = i + 1;
      while (end < taken && groups[end] == groups[end - 1] + 1) ++end;
      const uint64_t first_slot = groups[i] * SwapSlots::kGroupSlots;
      const uint64_t slots = std::min((end - i) * SwapSlots::kGroupSlots, slot_count_ - first_slot);
      posix_fadvise(fd_, static_cast<off_t>(SlotOffset(first_slot)),
                    static_cast<off_t>(slots * kSwapPageSize), POSIX_FADV_DONTNEED);
      i = end;
    }
    if (taken < kDropBatchGroups) return;
  }
}

absl::Status Swap::Write(uint64_t first, void* const* pages, int count) {
  assert(count > 0);
  if (count <= 0 || first >= slot_count_ || static_cast<uint64_t>(count) > slot_count_ - first) {
    return absl::InvalidArgumentError(
        absl::StrFormat("swap write of %d slots at %d: outside the file", count, first));
  }
  absl::InlinedVector<iovec, kInlineCluster> iov(count);
  absl::InlinedVector<uint64_t, kInlineCluster> sums(count);
  for (int i = 0; i < count; ++i) {
    assert(reinterpret_cast<uintptr_t>(pages[i]) % kSwapPageSize == 0);
    iov[i] = {pages[i], kSwapPageSize};
    sums[i] = PageChecksum(pages[i]);
  }
  if (int error = TransferFully(true, fd_, iov.data(), count, SlotOffset(first)); error != 0) {
    return absl::InternalError(absl::StrFormat("swap write of slots %d..%d: %s", first,
                                               first + count - 1, ErrnoText(error)));
  }
  for (int i = 0; i < count; ++i) {
    std::atomic_ref<uint64_t>(checksums_[first + i]).store(sums[i], std::memory_order_relaxed);
  }
  return absl::OkStatus();
}

absl::Status Swap::Read(uint64_t first, void* const* pages, int count, bool count_failures) {
  assert(count > 0);
  if (count <= 0 || first >= slot_count_ || static_cast<uint64_t>(count) > slot_count_ - first) {
    return absl::InvalidArgumentError(
        absl::StrFormat("swap read of %d slots at %d: outside the file", count, first));
  }
  for (int i = 0; i < count; ++i) {
    if (std::atomic_ref<uint64_t>(checksums_[first + i]).load(std::memory_order_relaxed) ==
        kUnwritten) {
      return absl::FailedPreconditionError(
          absl::StrFormat("swap slot %d read before it was written", first + i));
    }
  }
  absl::InlinedVector<iovec, kInlineCluster> iov(count);
  for (int i = 0; i < count; ++i) {
    assert(reinterpret_cast<uintptr_t>(pages[i]) % kSwapPageSize == 0);
    iov[i] = {pages[i], kSwapPageSize};
  }
  if (int error = TransferFully(false, fd_, iov.data(), count, SlotOffset(first)); error != 0) {
    const std::string what = absl::StrFormat("swap read of slots %d..%d", first, first + count - 1);
    if (error == kEndOfFile) {
      return absl::DataLossError(absl::StrCat(what, ": the swap file ends before them"));
    }
    std::string message = absl::StrCat(what, ": ", ErrnoText(error));
    if (error == EIO) return absl::DataLossError(message);
    return absl::InternalError(message);
  }
  for (int i = 0; i < count; ++i) {
    if (PageChecksum(pages[i]) !=
        std::atomic_ref<uint64_t>(checksums_[first + i]).load(std::memory_order_relaxed)) {
      return ReportChecksumMismatch(first, pages, count, count_failures);
    }
  }
  return absl::OkStatus();
}

// The slow path of Read: counts every bad slot of the cluster and names the first.
absl::Status Swap::ReportChecksumMismatch(uint64_t first, void* const* pages, int count,
                                          bool count_failures) {
  int bad_slots = 0;
  uint64_t first_bad = 0;
  uint64_t stored = 0;
  uint64_t computed = 0;
  for (int i = 0; i < count; ++i) {
    const uint64_t expected =
        std::atomic_ref<uint64_t>(checksums_[first + i]).load(std::memory_order_relaxed);
    const uint64_t actual = PageChecksum(pages[i]);
    if (actual == expected) continue;
    if (bad_slots++ == 0) {
      first_bad = first + i;
      stored = expected;
      computed = actual;
    }
  }
  if (count_failures) checksum_failures_.fetch_add(bad_slots, std::memory_order_relaxed);
  std::string message = absl::StrFormat(
      "swap slot %d: checksum mismatch (stored %016x, read %016x)", first_bad, stored, computed);
  if (bad_slots > 1) absl::StrAppend(&message, " and ", bad_slots - 1, " more slots after it");
  return absl::DataLossError(message);
}

}  // namespace ptmpfs::vm
