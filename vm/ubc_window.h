// ubc_window: a byte range of an anonymous object, mapped for I/O (NetBSD's UBC:
// ubc_alloc, ubc_uiomove, ubc_release).
//
// Theory. read and write never touch an object's pages one by one: they map a
// window onto the byte range, which faults in and wires its pages, and get an iovec
// array over the frames; a FUSE read reply is sent straight from it, a write is
// copied into it. Release marks the pages dirty if they were written and unwires
// them; then the pager may evict or migrate them again.
//
//   Map(kRead)   holes are not allocated: their iovec entries point at one static,
//                read-only page of zeros (so are zero-fill pages never touched:
//                reading them costs no frame).
//   Map(kWrite)  holes are allocated (charged) first, so ENOSPC comes before any
//                change; then every page is wired for writing (Vm::Wire, kWrite),
//                which marks it dirty. The caller must write every byte of the
//                range before Release: pages the range wholly covers are wired
//                with kOverwrite, so a fresh one is not zeroed first (it would be
//                written twice) and holds a frame's old bytes until then.
//
// Physically contiguous frames of neighbouring pages coalesce into one iovec entry;
// the first and last entries are trimmed to the byte range.
//
// Read-around. A read window whose pages went to swap in one cluster (neighbouring
// pages in consecutive slots, as the pager writes them) reads them back with one
// I/O of up to Vm::kMaxReadAround pages (Vm::WireSwappedRun), not one per page;
// anything else about them (an unreadable slot) falls back to the page-by-page path.
//
// A window spans at most kMaxPages = 257 pages: FUSE's max_write of 1 MiB (256 pages)
// at an offset that is not page-aligned touches 257. Its page list and iovecs stay in
// the window object up to kInlinePages pages (32 KiB: most reads of small files), on
// the heap beyond.
//
// The window cache. Mapping the same range again is common (a file read twice, a
// large file rewritten in place). A WindowCache remembers the pages of recently
// released windows, keyed by (object generation, first page, page count): each page's
// entry and the frame it was in. A hit revalidates each page with Vm::TryWire(entry,
// frame) — wire, then check that the entry still maps that frame, resident and idle —
// with no page-table walk; any page that moved (evicted, migrated, freed) makes the
// whole lookup a miss and the window is mapped the full way. Revalidation alone is
// what makes a hit correct: an entry that maps the remembered frame now holds the
// page the window wants, whatever happened in between. The generation key is what
// makes the remembered entry pointer safe to follow: an object's generation dies with
// it, and is redrawn when Punch or Truncate frees pages (anon_object.h, invariant 4),
// so a stale line never matches and is simply aged out. Only windows without holes
// are remembered (a hole's zero page cannot be revalidated without a walk), and only
// large ones: the walk a hit saves is a small part of mapping a window, so the cache
// pays only from about 64 pages on (WindowCache::kDefaultMinPages has the figures).
//
// Invariants.
//  1. While a window is mapped, each page in it that is not a hole holds one wire,
//     taken by Map and dropped exactly once by Release (or the destructor).
//  2. iovecs() covers exactly [offset, offset + length) in order; entries that point
//     at the zero page are never written through.
//  3. A failed Map leaves no wire behind, and a failed Map(kWrite) frees again the
//     holes it allocated: the object is as it was.
//  4. Release(dirty) sets kDirty on each entry, on the entry idle, before dropping its
//     wire. If its fetch_or finds the busy bit set, the pager or migration took the
//     page while it was wired; it will see the wire and back off, but must not see the
//     unwire first and evict the page with a snapshot of its entry taken without
//     kDirty, and its back-off may store that snapshot: so Release waits for the bit
//     to clear and sets kDirty again before unwiring.
//
// Thread safety. A window is used by one thread at a time and may be moved to
// another. Windows on distinct pages of one object may be mapped concurrently (see
// anon_object.h for what the caller serialises). WindowCache is thread-safe: its
// mutex is a leaf, held only to move a page list in or out of a line, never while
// wiring.
#ifndef PTMPFS_VM_UBC_WINDOW_H_
#define PTMPFS_VM_UBC_WINDOW_H_

#include <sys/uio.h>

#include <atomic>
#include <cstdint>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/inlined_vector.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "vm/anon_object.h"
#include "vm/frames.h"
#include "vm/page_table.h"
#include "vm/vm.h"

namespace ptmpfs::vm {

// One page of a window: its entry and the frame wired for it; kNoFrame for a hole,
// read from the zero page (entry may then be null).
struct WindowPage {
  Entry* entry;
  FrameNumber frame;
};

class UbcWindow {
 public:
  static constexpr uint64_t kMaxPages = Vm::kMaxWindowPages;
  static constexpr size_t kInlinePages = 8;
  using Pages = absl::InlinedVector<WindowPage, kInlinePages>;
  using Iovecs = absl::InlinedVector<iovec, kInlinePages>;

  // Maps [offset, offset + length) of `object` for `access`. An empty range maps an
  // empty window. Errors: InvalidArgument (more than kMaxPages pages, or past
  // AnonObject::kMaxBytes), ResourceExhausted (ENOSPC for kWrite holes; more pages
  // than the Vm's wired cap, at once: the largest window needs a cap of 257 frames;
  // no frame or room under the cap within the Vm's frame_wait_ms), DataLoss (a page
  // failed its swap checksum: EIO). Nothing is left wired or allocated on error.
  static absl::StatusOr<UbcWindow> Map(AnonObject& object, uint64_t offset, uint64_t length,
                                       Access access);

  UbcWindow() = default;  // not mapped
  UbcWindow(UbcWindow&& other) noexcept;
  UbcWindow& operator=(UbcWindow&& other) noexcept;
  UbcWindow(const UbcWindow&) = delete;
  UbcWindow& operator=(const UbcWindow&) = delete;
  ~UbcWindow() { Release(/*dirty=*/false); }

  // Marks the pages dirty if `dirty` (invariant 4), drops the wires, and hands the
  // page list to the object's window cache (a window with no hole and at least the
  // cache's min_pages). The window is empty afterwards.
  // REQUIRES: !dirty or the window was mapped for kWrite.
  void Release(bool dirty);

  // Copies the window's bytes out to `buffer` (length() bytes).
  void CopyOut(void* buffer) const;
  // Copies length() bytes from `buffer` into the window.
  // REQUIRES: the window was mapped for kWrite.
  void CopyIn(const void* buffer);

  absl::Span<const iovec> iovecs() const { return iovecs_; }
  uint64_t offset() const { return offset_; }
  uint64_t length() const { return length_; }
  uint64_t page_count() const { return pages_.size(); }
  Access access() const { return access_; }
  bool mapped() const { return vm_ != nullptr; }

  // The page of zeros behind holes in kRead windows (read-only memory).
  static const void* zero_page();

 private:
  UbcWindow(AnonObject& object, uint64_t offset, uint64_t length, uint64_t page_count,
            Access access);

  // The cache's fast path: takes the remembered pages and revalidates each one.
  // false (nothing wired) on a miss.
  bool MapCached(Vm& vm);
  // The full path: allocates holes (kWrite), then finds and wires each page.
  absl::Status MapSlow(AnonObject& object);
  // Drops the wires of pages_[0, count).
  void UnwireFirst(Vm& vm, size_t count);
  void BuildIovecs(const Frames& frames);
  static void MarkDirty(Entry& entry);

  Vm* vm_ = nullptr;              // null: not mapped
  WindowCache* cache_ = nullptr;  // null also for windows below the cache's min_pages
  uint64_t generation_ = 0;       // the object's, at Map: the cache key
  PageIndex first_page_ = 0;
  uint64_t offset_ = 0;
  uint64_t length_ = 0;
  Access access_ = Access::kRead;
  bool has_holes_ = false;
  Pages pages_;
  Iovecs iovecs_;
};

// A small LRU cache of released windows' page lists (see the theory above). Give
// one to the AnonObjects of a mount; windows find it through their object.
class WindowCache {
 public:
  // 16 lines: about the windows of as many concurrent readers as FUSE threads, at a
  // few KiB each at most (257 pages of 16 bytes for the largest).
  static constexpr int kDefaultLines = 16;
  // Smaller windows bypass the cache. Mapping and releasing a resident window costs
  // about 16 ns a page, two thirds of it the wire and unwire atomics that a hit pays
  // too; a hit saves only the page-table walk (about 2 ns a page) and adds two mutex
  // round trips and a line search (about 90 ns a window). Measured on 2 cores, one
  // thread: a 1-page window 40 ns without the cache, 130 ns with it; even at 32-64
  // pages; 128-256 pages 8-20% faster with it. So windows under 64 pages (256 KiB)
  // skip it.
  static constexpr uint64_t kDefaultMinPages = 64;

  explicit WindowCache(int lines = kDefaultLines, uint64_t min_pages = kDefaultMinPages);
  WindowCache(const WindowCache&) = delete;
  WindowCache& operator=(const WindowCache&) = delete;

  uint64_t min_pages() const { return min_pages_; }

  // Maps whose every page revalidated, and maps that found no line or a stale one.
  uint64_t hits() const { return hits_.load(std::memory_order_relaxed); }
  uint64_t misses() const { return misses_.load(std::memory_order_relaxed); }

 private:
  friend class UbcWindow;

  struct Key {
    uint64_t generation;
    PageIndex first_page;
    uint64_t page_count;
    bool operator==(const Key&) const = default;
  };
  struct Line {
    bool full = false;
    Key key{};
    uint64_t last_used = 0;
    UbcWindow::Pages pages;
  };

  // Moves the pages of the line with `key` out into `pages` (emptying the line).
  bool Take(const Key& key, UbcWindow::Pages* pages);
  // Fills the line with `key`, or an empty one, or the least recently used one.
  void Put(const Key& key, UbcWindow::Pages&& pages);

  const uint64_t min_pages_;
  absl::Mutex mu_;
  std::vector<Line> lines_ ABSL_GUARDED_BY(mu_);
  uint64_t clock_ ABSL_GUARDED_BY(mu_) = 0;
  std::atomic<uint64_t> hits_{0};
  std::atomic<uint64_t> misses_{0};
};

}  // namespace ptmpfs::vm

#endif  // PTMPFS_VM_UBC_WINDOW_H_
