// anon_object: a file's data, as a sparse index of pageable pages (UVM's aobj).
//
// Theory. An AnonObject is one page table (page_order 0) whose index is the page
// number within the file: page i holds bytes [i * 4 KiB, (i + 1) * 4 KiB). An entry
// is kNone for a hole, and otherwise a page charged to the Vm's accounting: zero-fill
// on demand, resident, or swapped (vm.h gives the life cycle). Holes cost nothing: a
// page is charged only when Allocate (write, fallocate) reaches it, so a sparse file
// of 2^52 bytes costs the radix nodes along its populated paths and no more.
// Data moves in and out through UBC windows (ubc_window.h): a window faults and wires
// the pages of a byte range and hands out an iovec. Removing data (Punch, Truncate,
// the destructor) frees frames and swap slots with Vm::FreePages, without reading a
// page back from swap; only a partial page at the edge of a removed range is faulted
// in, to zero its part in place.
//
// The object knows pages, not sizes: its caller (fs/) keeps the file size and calls
// Truncate when it shrinks. SEEK_DATA and SEEK_HOLE (NextData, NextHole) are answered
// from entries alone, never by touching a page: an allocated page is data even if it
// was never written (fallocate'd space reads as zeros but counts as data; POSIX lets
// a file system report any hole as data).
//
// Invariants.
//  1. allocated_pages() is the number of entries that are not kNone; each is charged
//     one frame (vm.h, invariant 3).
//  2. Offsets lie below kMaxBytes (2^63: off_t's range), so page indices lie below
//     kMaxPages = 2^51 and no page or byte arithmetic here overflows.
//  3. A failed Allocate, Punch or Truncate changes nothing: Allocate checks space
//     before any entry changes; Punch and Truncate fault in their edge pages (the
//     only step that can fail: EIO from a bad swap slot, no frame) before they zero
//     or free anything.
//  4. generation() is unique to this object and the state of its page index: it is
//     drawn from a process-wide counter at construction and again whenever Punch or
//     Truncate frees pages. The window cache keys its entries by it, so an entry of a
//     destroyed object, or one older than the last free, never matches (ubc_window.h).
//
// Locking. The object has no lock of its own; its caller (fs/) serialises:
//  - Punch, Truncate and the destructor against every other operation and window
//    on the object (they free pages, which must not be wired meanwhile);
//  - writers (Allocate, Write, kWrite windows) against other writers of the same
//    pages (two allocations of one hole at once would both charge it).
// Readers (Read, kRead windows, NextData, NextHole) and writers of distinct pages may
// run concurrently; what a reader sees of bytes being written at the same time is
// the caller's business. The page table and the Vm lock themselves; the pager may
// evict and migrate the object's unwired pages at any time.
#ifndef PTMPFS_VM_ANON_OBJECT_H_
#define PTMPFS_VM_ANON_OBJECT_H_

#include <atomic>
#include <cstdint>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "vm/frames.h"
#include "vm/page_table.h"
#include "vm/vm.h"

namespace ptmpfs::vm {

class UbcWindow;
class WindowCache;

class AnonObject {
 public:
  static constexpr uint64_t kMaxBytes = uint64_t{1} << 63;
  static constexpr PageIndex kMaxPages = kMaxBytes >> kPageShift;

  // `window_cache`, if not null, remembers this object's recently released windows
  // (ubc_window.h); it must outlive the object.
  explicit AnonObject(Vm& vm, WindowCache* window_cache = nullptr);
  // Frees every page: frames and swap slots go back, nothing is read.
  // REQUIRES: no window on the object is mapped.
  ~AnonObject();
  AnonObject(const AnonObject&) = delete;
  AnonObject& operator=(const AnonObject&) = delete;

  // Charges the holes among the pages that [offset, offset + length) touches; they
  // read as zeros until written. ResourceExhausted (ENOSPC) before any change when
  // they do not fit; InvalidArgument (EFBIG) past kMaxBytes.
  absl::Status Allocate(uint64_t offset, uint64_t length);
  // Removes the data of [offset, offset + length): whole pages inside the range are
  // freed (frames and swap slots, never read back), the partial pages at its edges
  // are zeroed in place where they are allocated. DataLoss (EIO) or
  // ResourceExhausted when an edge page cannot be brought in: nothing changed then.
  // Never charges: it succeeds even when swap is full.
  absl::Status Punch(uint64_t offset, uint64_t length);
  // Frees the pages wholly at or after `new_size` and zeroes the rest of the page
  // that holds `new_size`, if it is allocated. Errors as Punch.
  absl::Status Truncate(uint64_t new_size);

  // SEEK_DATA: the smallest byte offset in [from, end) that lies in an allocated
  // page; `end` if there is none. SEEK_HOLE: the smallest one in a hole, `end` if
  // there is none (the caller passes the file size: EOF is the implicit hole).
  // Both read entries only; they never fault a page in.
  uint64_t NextData(uint64_t from, uint64_t end) const;
  uint64_t NextHole(uint64_t from, uint64_t end) const;

  // Copies [offset, offset + length) into `buffer`; holes read as zeros and stay
  // holes. Errors as UbcWindow::Map.
  absl::Status Read(uint64_t offset, void* buffer, uint64_t length);
  // Copies `buffer` into [offset, offset + length), allocating holes first: ENOSPC
  // comes before any byte is written. A later error (EIO from swap, no frame) may
  // leave a prefix of the range written, as a short write does.
  absl::Status Write(uint64_t offset, const void* buffer, uint64_t length);

  uint64_t allocated_pages() const { return allocated_pages_.load(std::memory_order_relaxed); }
  uint64_t generation() const { return generation_.load(std::memory_order_relaxed); }
  PageTable& table() { return table_; }
  const PageTable& table() const { return table_; }
  Vm& vm() const { return vm_; }
  WindowCache* window_cache() const { return window_cache_; }

 private:
  friend class UbcWindow;

  // A byte range [from, to) inside one page, to be zeroed.
  struct PartialPage {
    PageIndex page;
    uint32_t from;
    uint32_t to;
  };

  // Charges the pages [first, end) that are holes; `holes` is their number, counted
  // by the caller. ResourceExhausted before any change if they do not fit.
  absl::Status AllocateRange(PageIndex first, PageIndex end, uint64_t holes);
  // Frees every allocated page of [first, end) and draws a new generation if any was.
  // REQUIRES: no page of the range is wired.
  void FreeRange(PageIndex first, PageIndex end);
  // Zeroes the given ranges of the pages among them that are allocated and not
  // zero-fill already: every such page is wired first, so an error leaves all of
  // them unchanged.
  absl::Status ZeroPartialPages(absl::Span<const PartialPage> parts);
  uint64_t CountPopulated(PageIndex first, PageIndex end) const;
  // The largest window Read and Write use: a quarter of the wired cap, so that a
  // copy never waits on its own wires even with a tiny RAM budget.
  uint64_t CopyWindowPages() const;

  Vm& vm_;
  WindowCache* const window_cache_;
  PageTable table_;
  std::atomic<uint64_t> allocated_pages_{0};  // invariant 1; changed by Allocate/Free paths
  std::atomic<uint64_t> generation_;          // invariant 4; changed under the caller's lock
};

}  // namespace ptmpfs::vm

#endif  // PTMPFS_VM_ANON_OBJECT_H_
