// data.cc: open, create, release, read, write, fallocate, lseek, copy_file_range and
// fsync: a regular file's data, in its anonymous object (vm/anon_object.h).
//
// Theory. Data moves through UBC windows (vm/ubc_window.h). A write takes the node's
// stripe exclusive for its whole length, so writers of one file are serialised and
// a write is atomic to other writers (POSIX); it charges every hole of its range
// first (PrepareWrite), so ENOSPC comes before any byte lands, then copies in
// windows of at most 256 pages (FUSE's largest write), fewer with a small wired cap.
// A read maps one window under the stripe shared and returns it: the FUSE reply is
// sent from its frames after the lock is gone. Whatever frees or zeroes pages
// (truncate, punch, zero range) therefore first waits, under the stripe exclusive,
// for such windows to be released (WaitForReadWindows, woken by each release through
// a ReadWindowGate): a freed frame must never be wired (vm.h, FreePages' REQUIRES).
//
// Times follow tmpfs: a write or fallocate sets mtime and ctime; a read sets atime
// under relatime rules (only when atime is not after mtime or ctime, or a day old),
// taking the stripe exclusive just for that; O_TRUNC sets mtime and ctime even when
// the file was already empty (do_truncate with ATTR_MTIME | ATTR_CTIME).
#include <fcntl.h>
#include <linux/falloc.h>
#include <unistd.h>

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <climits>
#include <cstring>
#include <utility>

#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "fs/file_flags.h"
#include "fs/tmpfs.h"

namespace ptmpfs::fs {

namespace {

// The largest file: off_t's range (the VFS's MAX_LFS_FILESIZE); AnonObject's limit
// is one byte more.
constexpr uint64_t kMaxFileBytes = static_cast<uint64_t>(LLONG_MAX);
constexpr uint64_t kPageMask = vm::kPageSize - 1;
// relatime: atime is refreshed at least once a day (relatime_need_update).
constexpr int64_t kRelatimeNs = int64_t{24} * 3600 * 1000000000;
// FUSE's largest write (max_write of 1 MiB).
constexpr uint64_t kMaxCopyPages = 256;
// WaitForReadWindows: a reply in flight finishes in microseconds, and its release
// wakes the waiter. The slice bounds a sleep through a wire that wakes nobody (a
// pin racing elsewhere holds a frame for an instant); the limit, a reply that never
// finishes (a bug): the truncate or punch fails then rather than hang or free a
// wired frame.
constexpr absl::Duration kReadWindowWaitSlice = absl::Milliseconds(10);
constexpr absl::Duration kReadWindowWaitLimit = absl::Seconds(30);

uint64_t PageCeil(uint64_t offset) {
  return (offset >> vm::kPageShift) + ((offset & kPageMask) != 0 ? 1 : 0);
}

// Pages per copy window when `windows` are mapped at once: a quarter of the wired
// cap among them, so a copy never waits on its own wires even with a tiny budget.
uint64_t CopyWindowPages(const vm::Vm& vm, uint64_t windows) {
  return std::clamp<uint64_t>(vm.wired_cap() / 4 / windows, 1, kMaxCopyPages);
}

// The bytes from `offset` up to the end of the window of `window_pages` pages that
// starts at offset's page, or `remaining` if fewer.
uint64_t ChunkAt(uint64_t offset, uint64_t remaining, uint64_t window_pages) {
  const uint64_t window_end = ((offset >> vm::kPageShift) + window_pages) << vm::kPageShift;
  return std::min(remaining, window_end - offset);
}

// Holes among the pages that [offset, offset + length) touches.
uint64_t HolesIn(const vm::AnonObject& object, uint64_t offset, uint64_t length) {
  const vm::PageIndex first = offset >> vm::kPageShift;
  const vm::PageIndex end = PageCeil(offset + length);
  uint64_t populated = 0;
  object.table().ForEachPopulated(first, end, [&](vm::PageIndex, vm::Entry&) { ++populated; });
  return (end - first) - populated;
}

// A position in a list of source buffers, consumed as bytes are copied out of it.
class IovecCursor {
 public:
  explicit IovecCursor(absl::Span<const iovec> pieces) : pieces_(pieces) {}

  // Fills every byte of `destination` from the cursor and advances it.
  // REQUIRES: the cursor holds at least that many bytes.
  void CopyTo(absl::Span<const iovec> destination) {
    for (const iovec& out : destination) {
      char* to = static_cast<char*>(out.iov_base);
      size_t wanted = out.iov_len;
      while (wanted > 0) {
        assert(index_ < pieces_.size());
        const iovec& in = pieces_[index_];
        const size_t step = std::min(wanted, in.iov_len - within_);
        if (step > 0) {  // an empty piece may have a null base
          memcpy(to, static_cast<const char*>(in.iov_base) + within_, step);
          to += step;
          wanted -= step;
          within_ += step;
        }
        if (within_ == in.iov_len) {
          ++index_;
          within_ = 0;
        }
      }
    }
  }

 private:
  absl::Span<const iovec> pieces_;
  size_t index_ = 0;
  size_t within_ = 0;
};

// Copies `length` bytes from `source` into [offset, offset + length) of `object`,
// window by window; `copied` says how far it got when a window fails (EIO, no
// frame): a short write. REQUIRES: the range's holes allocated (PrepareWrite).
absl::Status CopyIntoObject(vm::AnonObject& object, uint64_t offset, uint64_t length,
                            IovecCursor& source, uint64_t& copied) {
  const uint64_t window_pages = CopyWindowPages(object.vm(), 1);
  copied = 0;
  while (copied < length) {
    const uint64_t at = offset + copied;
    const uint64_t chunk = ChunkAt(at, length - copied, window_pages);
    absl::StatusOr<vm::UbcWindow> window =
        vm::UbcWindow::Map(object, at, chunk, vm::Access::kWrite);
    if (!window.ok()) return window.status();
    source.CopyTo(window->iovecs());
    window->Release(/*dirty=*/true);
    copied += chunk;
  }
  return absl::OkStatus();
}

// relatime_need_update.
bool AtimeWanted(const meta::Node& node, int64_t now) {
  if ((node.flags & kNoAtimeFlag) != 0) return false;
  return node.atime_ns <= node.mtime_ns || node.atime_ns <= node.ctime_ns ||
         now - node.atime_ns >= kRelatimeNs;
}

// The errno for data operations on a node that is not a regular file.
absl::Status NotRegular(const meta::Node& node) {
  return ErrnoError(S_ISDIR(node.mode) ? EISDIR : EINVAL);
}

}  // namespace

void ReadWindowGate::Notify() {
  // After the unwire (invariant in the field's comment).
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (waiters.load(std::memory_order_relaxed) == 0) return;
  absl::MutexLock lock(&mu);
  released.SignalAll();
}

ReadWindow::ReadWindow(ReadWindow&& other) noexcept
    : window_(std::move(other.window_)), gate_(std::exchange(other.gate_, nullptr)) {}

ReadWindow& ReadWindow::operator=(ReadWindow&& other) noexcept {
  if (this != &other) {
    Release();
    window_ = std::move(other.window_);
    gate_ = std::exchange(other.gate_, nullptr);
  }
  return *this;
}

void ReadWindow::Release() {
  window_.Release(/*dirty=*/false);
  if (gate_ != nullptr) std::exchange(gate_, nullptr)->Notify();
}

ReadWindowGate& Tmpfs::GateOf(const vm::AnonObject& object) {
  const auto address = reinterpret_cast<uintptr_t>(&object);
  return read_gates_[(address * 0x9E3779B97F4A7C15ull) >> 58];  // the top 6 bits: 64 gates
}

absl::Status Tmpfs::WaitForReadWindows(vm::AnonObject& object, uint64_t offset, uint64_t end) {
  const vm::PageIndex first = offset >> vm::kPageShift;
  const vm::PageIndex end_page = std::min<vm::PageIndex>(
      PageCeil(std::min(end, vm::AnonObject::kMaxBytes)), vm::AnonObject::kMaxPages);
  if (first >= end_page) return absl::OkStatus();
  vm::Frames& frames = vm_->frames();
  // A wired page stays resident in its frame (vm.h, invariant 1), so a resident
  // entry's frame is the one to look at.
  auto wired = [&] {
    bool found = false;
    object.table().ForEachPopulated(first, end_page, [&](vm::PageIndex, vm::Entry& entry) {
      if (found) return;
      const uint64_t pte = entry.load(std::memory_order_acquire);
      if (vm::Pte::KindOf(pte) != vm::Pte::kResident) return;
      const auto frame = static_cast<vm::FrameNumber>(vm::Pte::Payload(pte));
      if (frames.desc(frame).wire_count.load(std::memory_order_acquire) != 0) found = true;
    });
    return found;
  };
  if (!wired()) return absl::OkStatus();

  ReadWindowGate& gate = GateOf(object);
  gate.waiters.fetch_add(1, std::memory_order_seq_cst);
  std::atomic_thread_fence(std::memory_order_seq_cst);  // before looking at the wires
  const absl::Time deadline = absl::Now() + kReadWindowWaitLimit;
  bool still_wired = true;
  {
    absl::MutexLock lock(&gate.mu);
    while ((still_wired = wired()) && absl::Now() < deadline) {
      gate.released.WaitWithTimeout(&gate.mu, kReadWindowWaitSlice);
    }
  }
  gate.waiters.fetch_sub(1, std::memory_order_relaxed);
  if (still_wired) {
    return ErrnoError(EBUSY,
                      absl::StrFormat("a read of this file was still being answered after %s",
                                      absl::FormatDuration(kReadWindowWaitLimit)));
  }
  return absl::OkStatus();
}

absl::Status Tmpfs::ResizeLocked(meta::Node& node, uint64_t size) {
  assert(S_ISREG(node.mode));
  if (size == node.size) return absl::OkStatus();
  absl::StatusOr<vm::AnonObject*> object = ObjectOf(node, /*create=*/size != 0);
  if (!object.ok()) return object.status();
  if (size < node.size && *object != nullptr) {
    // Truncate frees everything past the new size, fallocate'd pages past the old
    // EOF included (shmem_truncate_range to the end).
    absl::Status waited = WaitForReadWindows(**object, size, vm::AnonObject::kMaxBytes);
    if (!waited.ok()) return waited;
    if (absl::Status truncated = (*object)->Truncate(size); !truncated.ok()) return truncated;
  }
  node.size = size;
  node.mtime_ns = node.ctime_ns = NowNs();
  return absl::OkStatus();
}

absl::StatusOr<vm::AnonObject*> Tmpfs::PrepareWrite(meta::Node& node, uint64_t offset,
                                                    uint64_t length) {
  assert(length > 0 && offset <= kMaxFileBytes && length <= kMaxFileBytes - offset);
  absl::StatusOr<vm::AnonObject*> object = ObjectOf(node, /*create=*/true);
  if (!object.ok()) return object.status();
  const uint64_t holes = HolesIn(**object, offset, length);
  if (holes == 0) return object;
  // Short of space, empty pool pages may still hold some (ReapPools): once more after
  // giving them back.
  if (!DataFits(holes)) ReapPools();
  if (!DataFits(holes)) return ErrnoError(ENOSPC, "size= reached");
  absl::Status allocated = (*object)->Allocate(offset, length);
  if (absl::IsResourceExhausted(allocated)) {
    ReapPools();
    allocated = (*object)->Allocate(offset, length);
  }
  if (absl::IsResourceExhausted(allocated)) return ErrnoError(ENOSPC, allocated.message());
  if (!allocated.ok()) return allocated;
  return object;
}

void Tmpfs::FinishWrite(const Caller& caller, Ino ino, meta::Node& node, uint64_t end) {
  node.size = std::max(node.size, end);
  node.mtime_ns = node.ctime_ns = NowNs();
  ClearSuidSgidOnTheSide(caller, ino, node);
}

void Tmpfs::ClearSuidSgidOnTheSide(const Caller& caller, Ino ino, meta::Node& node) {
  if (caller.uid == 0 || (node.mode & (S_ISUID | S_ISGID)) == 0) return;
  const uint32_t before = node.mode;
  node.mode &= ~static_cast<uint32_t>(S_ISUID);
  if ((node.mode & S_IXGRP) != 0 || caller.gid != node.gid) {
    node.mode &= ~static_cast<uint32_t>(S_ISGID);
  }
  if (node.mode != before && on_suid_sgid_cleared_) on_suid_sgid_cleared_(ino);
}

absl::StatusOr<Attr> Tmpfs::Open(const Caller& caller, Ino ino, int flags) {
  LockSet locks(*this);
  locks.Exclusive(ino).Acquire();
  absl::StatusOr<vm::Pin<meta::Node>> pin = PinNode(ino, vm::Access::kWrite);
  if (!pin.ok()) return pin.status();
  meta::Node& node = **pin;
  const bool writes = (flags & O_ACCMODE) != O_RDONLY;
  if (S_ISDIR(node.mode) && (writes || (flags & O_TRUNC) != 0)) return ErrnoError(EISDIR);
  // may_open, after the type: an immutable file opens only to read, an append-only
  // one only to read or append, and neither truncates.
  if (writes || (flags & O_TRUNC) != 0) {
    if (absl::Status writable = CheckNotImmutable(node); !writable.ok()) return writable;
  }
  if (IsAppendOnly(node) && ((writes && (flags & O_APPEND) == 0) || (flags & O_TRUNC) != 0)) {
    return ErrnoError(EPERM, "the file is append-only");
  }
  if (node.open_count == UINT32_MAX) return ErrnoError(ENFILE);
  if ((flags & O_TRUNC) != 0 && S_ISREG(node.mode)) {
    if (absl::Status resized = ResizeLocked(node, 0); !resized.ok()) return resized;
    // handle_truncate: ATTR_MTIME | ATTR_CTIME whatever the old size, and a
    // non-root opener loses suid/sgid.
    node.mtime_ns = node.ctime_ns = NowNs();
    ClearSuidSgidOnTheSide(caller, ino, node);
  }
  ++node.open_count;
  return AttrOf(ino, node);
}

absl::StatusOr<Attr> Tmpfs::Create(const Caller& caller, Ino parent, absl::string_view name,
                                   mode_t mode, int flags) {
  // Mknod inserts the entry and counts the lookup the kernel's CREATE reply carries;
  // the open is counted after. Between the two the lookup keeps the node alive.
  absl::StatusOr<Attr> made = Mknod(caller, parent, name, S_IFREG | (mode & 07777), 0);
  bool created = true;
  if (!made.ok()) {
    if (ToErrno(made.status()) != EEXIST || (flags & O_EXCL) != 0) return made.status();
    // Lost a race with another creator (the kernel sends CREATE for a name it saw
    // absent): open the file that is there, as open(2) without O_EXCL would.
    made = Lookup(parent, name);
    if (!made.ok()) return made.status();
    created = false;
  }
  // A file this call made is new: O_TRUNC has nothing to do (do_open drops it).
  absl::StatusOr<Attr> opened = Open(caller, made->ino, created ? flags & ~O_TRUNC : flags);
  if (!opened.ok()) {
    Forget(made->ino, 1);
    return opened.status();
  }
  return opened;
}

void Tmpfs::Release(Ino ino) {
  LockSet locks(*this);
  locks.Exclusive(ino).Acquire();
  bool unreferenced = false;
  {
    absl::StatusOr<vm::Pin<meta::Node>> node = PinNode(ino, vm::Access::kWrite);
    if (!node.ok()) return;
    if ((*node)->open_count > 0) --(*node)->open_count;
    unreferenced = Unreferenced(**node);
  }
  // The last use of an unlinked file (invariant 1): no read window can be out, as
  // FUSE releases a handle only after its reads are answered.
  if (unreferenced) FreeNode(ino);
}

absl::StatusOr<ReadWindow> Tmpfs::Read(Ino ino, uint64_t offset, uint64_t size) {
  // The window is mapped under the stripe, and the stripe let go before the window
  // is handed out. Never the other way round: a thread that holds a window and then
  // waits for the stripe deadlocks with a truncate that holds the stripe and waits
  // for the window (WaitForReadWindows). So the rare read that must set atime
  // (relatime) looks again under the stripe exclusive and maps its window there.
  auto map_window = [&](const meta::Node& node) -> absl::StatusOr<ReadWindow> {
    if (offset >= node.size) return ReadWindow();
    // One window: at most UbcWindow::kMaxPages pages, which holds a 1 MiB read at any
    // offset (FUSE's max_read must not be larger).
    const uint64_t window_bytes =
        (vm::UbcWindow::kMaxPages << vm::kPageShift) - (offset & kPageMask);
    const uint64_t length = std::min({size, node.size - offset, window_bytes});
    auto* object = reinterpret_cast<vm::AnonObject*>(node.file.object);
    // A file of nonzero size has an object (tmpfs.h, data.cc helpers).
    if (object == nullptr) return absl::InternalError("a nonempty file has no data object");
    absl::StatusOr<vm::UbcWindow> mapped =
        vm::UbcWindow::Map(*object, offset, length, vm::Access::kRead);
    if (!mapped.ok()) return mapped.status();
    return ReadWindow(*std::move(mapped), &GateOf(*object));
  };
  {
    LockSet locks(*this);
    locks.Shared(ino).Acquire();
    absl::StatusOr<vm::Pin<meta::Node>> pin = PinNode(ino, vm::Access::kRead);
    if (!pin.ok()) return pin.status();
    const meta::Node& node = **pin;
    if (!S_ISREG(node.mode)) return NotRegular(node);
    if (size == 0) return ReadWindow();
    if (!AtimeWanted(node, NowNs())) return map_window(node);
  }
  // Rare (relatime), so the shared path stays free of writes to the node.
  LockSet locks(*this);
  locks.Exclusive(ino).Acquire();
  absl::StatusOr<vm::Pin<meta::Node>> pin = PinNode(ino, vm::Access::kWrite);
  if (!pin.ok()) return pin.status();
  meta::Node& node = **pin;
  if (!S_ISREG(node.mode)) return NotRegular(node);
  const int64_t now = NowNs();
  if (AtimeWanted(node, now)) node.atime_ns = now;
  return map_window(node);
}

absl::StatusOr<uint64_t> Tmpfs::Write(const Caller& caller, Ino ino, uint64_t offset,
                                      absl::Span<const iovec> buffers, int flags) {
  uint64_t length = 0;
  for (const iovec& buffer : buffers) length += buffer.iov_len;
  LockSet locks(*this);
  locks.Exclusive(ino).Acquire();
  absl::StatusOr<vm::Pin<meta::Node>> pin = PinNode(ino, vm::Access::kWrite);
  if (!pin.ok()) return pin.status();
  meta::Node& node = **pin;
  if (!S_ISREG(node.mode)) return NotRegular(node);
  // A handle opened before the flag was set still cannot get past it. Over FUSE the
  // kernel resolves O_APPEND to an offset at the end, so append-only asks for that.
  if (absl::Status writable = CheckNotImmutable(node); !writable.ok()) return writable;
  if (IsAppendOnly(node) && (flags & O_APPEND) == 0 && offset != node.size) {
    return ErrnoError(EPERM, "the file is append-only: writes go at its end");
  }
  if ((flags & O_APPEND) != 0) offset = node.size;
  if (length == 0) return 0;
  // generic_write_checks: EFBIG at the limit, a short write up to it.
  if (offset >= kMaxFileBytes) return ErrnoError(EFBIG);
  length = std::min(length, kMaxFileBytes - offset);
  absl::StatusOr<vm::AnonObject*> object = PrepareWrite(node, offset, length);
  if (!object.ok()) return object.status();
  IovecCursor source(buffers);
  uint64_t copied = 0;
  absl::Status status = CopyIntoObject(**object, offset, length, source, copied);
  if (copied == 0 && !status.ok()) return status;
  FinishWrite(caller, ino, node, offset + copied);
  return copied;
}

absl::Status Tmpfs::Fallocate(Ino ino, int mode, uint64_t offset, uint64_t length) {
  const bool keep_size = (mode & FALLOC_FL_KEEP_SIZE) != 0;
  const int kind = mode & ~FALLOC_FL_KEEP_SIZE;
  if (kind != 0 && kind != FALLOC_FL_PUNCH_HOLE && kind != FALLOC_FL_ZERO_RANGE) {
    return ErrnoError(EOPNOTSUPP);
  }
  // vfs_fallocate: a punch must keep the size.
  if (kind == FALLOC_FL_PUNCH_HOLE && !keep_size) return ErrnoError(EOPNOTSUPP);
  if (length == 0 || offset > kMaxFileBytes || length > kMaxFileBytes) {
    return ErrnoError(EINVAL);
  }
  if (length > kMaxFileBytes - offset) return ErrnoError(EFBIG);
  const uint64_t end = offset + length;

  LockSet locks(*this);
  locks.Exclusive(ino).Acquire();
  absl::StatusOr<vm::Pin<meta::Node>> pin = PinNode(ino, vm::Access::kWrite);
  if (!pin.ok()) return pin.status();
  meta::Node& node = **pin;
  // vfs_fallocate: only a plain allocation on an append-only file, nothing on an
  // immutable one; both before the type.
  if (kind != 0 && IsAppendOnly(node)) return ErrnoError(EPERM, "the file is append-only");
  if (absl::Status writable = CheckNotImmutable(node); !writable.ok()) return writable;
  if (S_ISDIR(node.mode)) return ErrnoError(EISDIR);
  if (S_ISFIFO(node.mode)) return ErrnoError(ESPIPE);
  if (!S_ISREG(node.mode)) return ErrnoError(ENODEV);

  if (kind == FALLOC_FL_PUNCH_HOLE) {
    absl::StatusOr<vm::AnonObject*> object = ObjectOf(node, /*create=*/false);
    if (!object.ok()) return object.status();
    if (*object != nullptr) {
      if (absl::Status waited = WaitForReadWindows(**object, offset, end); !waited.ok()) {
        return waited;
      }
      if (absl::Status punched = (*object)->Punch(offset, length); !punched.ok()) return punched;
    }
  } else {
    // A zero range waits for read windows before anything changes (the wait may fail).
    if (kind == FALLOC_FL_ZERO_RANGE && node.file.object != 0) {
      absl::Status waited =
          WaitForReadWindows(*reinterpret_cast<vm::AnonObject*>(node.file.object), offset, end);
      if (!waited.ok()) return waited;
    }
    // Charges the holes first: ENOSPC changes nothing. For a zero range this is what
    // the range will hold after its punch too: the edge pages stay, the whole pages
    // inside are freed and charged again.
    absl::StatusOr<vm::AnonObject*> object = PrepareWrite(node, offset, length);
    if (!object.ok()) return object.status();
    if (kind == FALLOC_FL_ZERO_RANGE) {
      if (absl::Status punched = (*object)->Punch(offset, length); !punched.ok()) return punched;
      // Only a concurrent allocation elsewhere can take the freed pages meanwhile; the
      // range reads as zeros either way.
      if (absl::Status allocated = (*object)->Allocate(offset, length); !allocated.ok()) {
        return ErrnoError(ENOSPC, allocated.message());
      }
    }
    if (!keep_size && end > node.size) node.size = end;
  }
  node.mtime_ns = node.ctime_ns = NowNs();
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> Tmpfs::Lseek(Ino ino, uint64_t offset, int whence) {
  if (whence == SEEK_SET) return offset;
  if (whence != SEEK_DATA && whence != SEEK_HOLE) return ErrnoError(EINVAL);
  LockSet locks(*this);
  locks.Shared(ino).Acquire();
  absl::StatusOr<vm::Pin<meta::Node>> pin = PinNode(ino, vm::Access::kRead);
  if (!pin.ok()) return pin.status();
  const meta::Node& node = **pin;
  if (!S_ISREG(node.mode)) return ErrnoError(EINVAL);
  if (offset >= node.size) return ErrnoError(ENXIO);
  const auto* object = reinterpret_cast<const vm::AnonObject*>(node.file.object);
  if (whence == SEEK_HOLE) {
    // EOF is the implicit hole at the end of every file.
    return object == nullptr ? offset : object->NextHole(offset, node.size);
  }
  const uint64_t data = object == nullptr ? node.size : object->NextData(offset, node.size);
  if (data >= node.size) return ErrnoError(ENXIO);
  return data;
}

absl::StatusOr<uint64_t> Tmpfs::CopyFileRange(const Caller& caller, Ino in, uint64_t in_offset,
                                              Ino out, uint64_t out_offset, uint64_t length) {
  LockSet locks(*this);
  locks.Shared(in).Exclusive(out).Acquire();
  absl::StatusOr<vm::Pin<meta::Node>> out_pin = PinNode(out, vm::Access::kWrite);
  if (!out_pin.ok()) return out_pin.status();
  meta::Node& out_node = **out_pin;
  // The same node is pinned once: two pins of one item would be two views of it.
  absl::StatusOr<vm::Pin<meta::Node>> in_pin =
      in == out ? absl::StatusOr<vm::Pin<meta::Node>>(vm::Pin<meta::Node>())
                : PinNode(in, vm::Access::kRead);
  if (!in_pin.ok()) return in_pin.status();
  const meta::Node& in_node = in == out ? out_node : **in_pin;
  if (S_ISDIR(in_node.mode) || S_ISDIR(out_node.mode)) return ErrnoError(EISDIR);
  if (!S_ISREG(in_node.mode) || !S_ISREG(out_node.mode)) return ErrnoError(EINVAL);
  // generic_copy_file_checks (immutable); an append-only destination is refused too,
  // as the kernel refuses it (EBADF) for the O_APPEND it must be open with.
  if (absl::Status writable = CheckUnguarded(out_node); !writable.ok()) return writable;
  if (in_offset > kMaxFileBytes || out_offset > kMaxFileBytes) return ErrnoError(EINVAL);
  // generic_copy_file_checks: overlapping ranges of one file are EINVAL.
  if (in == out && length > 0 && in_offset < out_offset + length &&
      out_offset < in_offset + length) {
    return ErrnoError(EINVAL);
  }
  if (in_offset >= in_node.size || length == 0) return 0;
  length = std::min(length, in_node.size - in_offset);
  if (out_offset >= kMaxFileBytes) return ErrnoError(EFBIG);
  length = std::min(length, kMaxFileBytes - out_offset);

  absl::StatusOr<vm::AnonObject*> out_object = PrepareWrite(out_node, out_offset, length);
  if (!out_object.ok()) return out_object.status();
  auto* in_object = reinterpret_cast<vm::AnonObject*>(in_node.file.object);
  if (in_object == nullptr) return absl::InternalError("a nonempty file has no data object");
  // A read window and a write window at once: each gets half of a copy's share.
  const uint64_t window_pages = CopyWindowPages(*vm_, 2);
  uint64_t copied = 0;
  absl::Status status;
  while (copied < length) {
    // Chunks bounded by both windows' page spans.
    const uint64_t chunk = std::min(ChunkAt(in_offset + copied, length - copied, window_pages),
                                    ChunkAt(out_offset + copied, length - copied, window_pages));
    absl::StatusOr<vm::UbcWindow> from =
        vm::UbcWindow::Map(*in_object, in_offset + copied, chunk, vm::Access::kRead);
    if (!from.ok()) {
      status = from.status();
      break;
    }
    absl::StatusOr<vm::UbcWindow> to =
        vm::UbcWindow::Map(**out_object, out_offset + copied, chunk, vm::Access::kWrite);
    if (!to.ok()) {
      status = to.status();
      break;
    }
    IovecCursor source(from->iovecs());
    source.CopyTo(to->iovecs());
    to->Release(/*dirty=*/true);
    from->Release(/*dirty=*/false);
    copied += chunk;
  }
  if (copied == 0 && !status.ok()) return status;
  FinishWrite(caller, out, out_node, out_offset + copied);
  return copied;
}

absl::Status Tmpfs::Fsync(Ino ino) {
  // Nothing is durable in tmpfs; the node must still exist.
  LockSet locks(*this);
  locks.Shared(ino).Acquire();
  absl::StatusOr<meta::Addr> node = NodeOf(ino);
  return node.ok() ? absl::OkStatus() : node.status();
}

}  // namespace ptmpfs::fs
