// swap: the backing file that pageable memory spills to.
//
// Theory. The file is a header (swap_format.h) followed by slots of one page each;
// slot i lives at header.data_offset + i * kSwapPageSize. Slots come from a bitmap
// (swap_slots.h: a run is freed slot by slot, which a vmem arena could not do without
// allocating), so a cluster of neighbouring pages gets a run of neighbouring slots and
// goes out in one pwritev. Every slot written has its xxh3-64 checksum kept resident (8 bytes per
// 4 KiB slot); every read verifies it, and a mismatch is DataLoss (EIO for whoever
// needed the page): the process lives and every other slot stays usable.
//
// Invariants.
//  1. A slot is handed out only after the file's blocks behind it are allocated
//     (fallocate), so writing a slot never fails for want of host disk. Blocks are
//     allocated in chunks as EnsureBacked() asks for more (a formatted file has all
//     its blocks from formatting and is backed wholly by Open).
//  2. checksums_[s] is the checksum of what was last written to slot s, or kUnwritten
//     (swap.cc) if s was not written since it was allocated.
//  3. A file at a path is locked (flock, exclusive) while a Swap has it open: a second
//     ptmpfs on the same file is refused. (A temporary file has no name to share.)
//  4. Slot s is allocatable iff s < backed_slots().
//
// The host page cache. Slots are read and written through it (unless o_direct), and a
// freed slot's pages would stay cached, stale, until the host needs the memory (a
// benchmark saw a third of the host's page cache held so). FreeSlots cannot drop them
// itself: posix_fadvise(DONTNEED) may start writeback and drain the LRU caches of every
// CPU, which a free must not wait for (DESIGN.md, invariant 3). So the slot bitmap
// remembers groups of 64 slots (256 KiB) that became wholly free, and DropFreedPages(),
// called by the pager thread after each pass, drops their pages.
//
// Memory. 8 bytes per slot for checksums, allocated zeroed (calloc, which gets fresh
// pages from mmap for an array this large): slots never written cost no RAM, so a
// generous temporary swap file is cheap until it is used.
//
// Locking. The slot bitmap has its own lock; backing (fallocate) is serialised by
// backing_mu_, which is held while growing the bitmap's limit (lock order: backing_mu_
// before the bitmap's lock). Reads and writes of distinct slots proceed in parallel; the
// checksum of a slot is written by its writer before the slot's page-table entry is
// published and read by a reader after, so the page table's ordering covers it (the
// accesses are relaxed atomics only so that neighbouring writers are never a race).
#ifndef PTMPFS_VM_SWAP_H_
#define PTMPFS_VM_SWAP_H_

#include <sys/uio.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "vm/swap_format.h"
#include "vm/swap_slots.h"

namespace ptmpfs::vm {

struct SwapOptions {
  // The backing file. Empty (or "none"): an unlinked temporary file (mode 0600) in
  // $TMPDIR or /var/tmp, never on a tmpfs (or ramfs) or a FUSE mount: a directory on
  // one is skipped for the next.
  std::string path;
  // Capacity for a temporary file, or for formatting an empty file at `path`.
  // A formatted file's capacity comes from its header.
  uint64_t size_bytes = 0;
  bool o_direct = false;
  // How long to wait for another process's flock on the file to go (a daemon that
  // is still exiting after umount). 0: refuse at once.
  int lock_wait_ms = 0;
};

class Swap {
 public:
  // EnsureBacked() grows the backed part of the file in runs of this many slots
  // (64 MiB): one fallocate per 16 Ki page-outs keeps its cost out of sight, and a
  // temporary swap file takes at most 64 MiB of host disk beyond what was asked for.
  static constexpr uint64_t kBackingChunkSlots = (uint64_t{64} << 20) / kSwapPageSize;

  // Opens (and if need be creates and formats) the backing file, locked. Errors name
  // the file and the reason: InvalidArgument (no size to format with), FailedPrecondition
  // (not a swap file, not a regular file, no O_DIRECT), DataLoss (damaged header),
  // Unavailable (locked by another ptmpfs beyond lock_wait_ms), ResourceExhausted (host
  // disk full while formatting).
  // A formatted file is backed wholly at once; a temporary file (and only it) starts
  // with no backed slot: call EnsureBacked() before AllocSlots().
  static absl::StatusOr<std::unique_ptr<Swap>> Open(const SwapOptions& options);
  ~Swap();
  Swap(const Swap&) = delete;
  Swap& operator=(const Swap&) = delete;

  uint64_t slot_count() const { return slot_count_; }
  uint64_t backed_slots() const { return backed_slots_.load(std::memory_order_acquire); }
  uint64_t slots_in_use() const;
  const std::string& path() const { return path_; }  // "" for a temporary file
  int fd() const { return fd_; }                     // tests inject corruption through it
  uint64_t SlotOffset(uint64_t slot) const { return data_offset_ + slot * kSwapPageSize; }

  // Makes at least `slots` slots (rounded up to the chunk) backed by allocated blocks
  // and available to AllocSlots. ResourceExhausted if the host file system is full or
  // `slots` exceeds slot_count().
  absl::Status EnsureBacked(uint64_t slots);

  // A run of `count` neighbouring backed slots. ResourceExhausted when none is free.
  // REQUIRES: count > 0.
  absl::StatusOr<uint64_t> AllocSlots(uint64_t count);
  // Never allocates, never blocks on I/O. The slots read as never written afterwards.
  // REQUIRES: [first, first+count) was allocated by AllocSlots (any split of such runs).
  void FreeSlots(uint64_t first, uint64_t count);

  // Drops from the host page cache the pages of slot groups wholly freed since the last
  // call (see the theory above). May start writeback of their dirty pages; never fails.
  void DropFreedPages();

  // Writes pages[i] (kSwapPageSize bytes each, page-aligned) to slot first+i, one
  // pwritev, and records their checksums. Internal on I/O error (with errno's text).
  // REQUIRES: count > 0; the slots are allocated; the pages stay unchanged until return.
  absl::Status Write(uint64_t first, void* const* pages, int count);
  // Reads slots first..first+count-1 into pages[i], one preadv, and verifies every
  // checksum: DataLoss naming the slot on a mismatch (each bad slot is counted in
  // checksum_failures()), DataLoss on EIO, Internal on other I/O errors, and
  // FailedPrecondition for a slot never written since it was allocated (a caller bug).
  // A speculative read (read-around, whose caller reads each page again alone on any
  // error) counts no failure: `count_failures` false.
  // REQUIRES: count > 0; the slots are allocated and were written.
  absl::Status Read(uint64_t first, void* const* pages, int count, bool count_failures = true);

  uint64_t checksum_failures() const { return checksum_failures_.load(std::memory_order_relaxed); }

 private:
  struct FreeDeleter {
    void operator()(uint64_t* array) const;
  };

  Swap() = default;
  absl::Status OpenTemporary(uint64_t size_bytes);
  absl::Status OpenPath(const SwapOptions& options);
  absl::Status LockFile(int lock_wait_ms);
  absl::Status EnableDirectIo();
  absl::Status AddBackedSpan(uint64_t first, uint64_t count)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(backing_mu_);
  absl::Status ReportChecksumMismatch(uint64_t first, void* const* pages, int count,
                                      bool count_failures);

  std::string path_;  // set once by Open
  int fd_ = -1;       // set once by Open
  bool o_direct_ = false;
  uint64_t slot_count_ = 0;   // from the header
  uint64_t data_offset_ = 0;  // from the header
  // Per slot, accessed through std::atomic_ref; see invariant 2. 0 (kUnwritten in
  // swap.cc) marks a slot not written since it was allocated.
  std::unique_ptr<uint64_t[], FreeDeleter> checksums_;
  std::unique_ptr<SwapSlots> slots_;
  absl::Mutex backing_mu_;
  std::atomic<uint64_t> backed_slots_{0};  // written under backing_mu_
  std::atomic<uint64_t> checksum_failures_{0};
};

}  // namespace ptmpfs::vm

#endif  // PTMPFS_VM_SWAP_H_
