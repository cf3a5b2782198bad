// vmem: an allocator of integer ranges (Bonwick's vmem, as in illumos and NetBSD).
//
// Theory. An arena hands out ranges [addr, addr+size) of a 64-bit integer space in
// multiples of its quantum. It is used for two things in ptmpfs: virtual addresses of
// the pageable address space (and its submaps), and slots of the swap file. Address
// allocation is separate from fault handling (seed 001): an arena knows nothing of
// pages or frames.
//
//  - Spans: the arena's ranges, added with AddSpan() or imported from a source arena
//    on demand. An imported span that becomes wholly free is returned to its source.
//    A span added where an added span ends (or starts) extends that span, so an
//    arena grown piece by piece (swap) can hand out ranges across the joins; imported
//    spans are never merged, since each goes back to the source whole.
//  - Segments: each span is cut into segments, free or allocated, each described by a
//    boundary tag. Adjacent free segments are coalesced when a segment is freed.
//  - Free lists: free segments sit on power-of-two lists, list k holding sizes in
//    [2^k, 2^(k+1)). Instant fit takes the first segment of the smallest list whose
//    every member is large enough (constant time); best fit searches for the smallest
//    segment that fits (less fragmentation, more time).
//  - Quantum caches: sizes up to qcache_max (multiples of the quantum) are served from
//    small per-size caches of previously allocated ranges, so the common small
//    allocations skip the segment lists entirely. A cached range is still an
//    allocated segment as far as the arena is concerned.
//
// Invariants.
//  1. Every address of every span is in exactly one segment; no two adjacent
//     segments of one span are both free (outside a quantum cache).
//  2. Free() never allocates memory, never blocks on I/O and never fails: the tags
//     it might need come from a reserve that the allocation side refills before it
//     changes anything. (Since a Free() is always of a whole allocated segment it in
//     fact needs no new tag at all: coalescing only gives tags back.)
//  3. Allocated ranges are multiples of the quantum and aligned to it.
//  4. No imported span is wholly free outside a quantum cache: it has gone back to
//     its source.
//
// Locking. One absl::Mutex guards the arena; each quantum cache has its own leaf lock,
// held only to push or pop a range (CheckConsistency alone takes the arena's mutex
// under them). Lock order: an arena's mutex may be held while taking its source's
// locks (import, return of a span), never the reverse. All methods are thread-safe.
#ifndef PTMPFS_VM_VMEM_H_
#define PTMPFS_VM_VMEM_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace ptmpfs::vm {

class Vmem {
 public:
  enum class Fit { kInstant, kBest };

  // At most this many quantum caches (sizes quantum, 2*quantum, ..., 16*quantum), as
  // illumos (VMEM_NQCACHE_MAX): larger sizes are rare enough, and a cache of them
  // would hold too much idle space, for the segment path to serve them.
  static constexpr uint64_t kMaxQuantumCaches = 16;

  struct Options {
    std::string name;
    uint64_t quantum = 1;         // power of two
    uint64_t qcache_max = 0;      // largest size served by quantum caches; 0 for none.
                                  // Rounded down to the quantum and clamped to
                                  // kMaxQuantumCaches * quantum.
    Vmem* source = nullptr;       // arena to import spans from when this one is short
    uint64_t import_quantum = 0;  // imports are rounded up to this (0: quantum); a
                                  // power of two >= quantum
  };

  // REQUIRES: options.quantum and a nonzero options.import_quantum are powers of two,
  // import_quantum >= quantum. `source`, if set, outlives this arena.
  explicit Vmem(Options options);
  // Returns every imported span to the source, including any whose ranges the caller
  // never freed (those are leaked by the caller, not by the source).
  ~Vmem();
  Vmem(const Vmem&) = delete;
  Vmem& operator=(const Vmem&) = delete;

  // Adds [base, base+size) to the arena. InvalidArgument if size is 0, base or size is
  // not a multiple of the quantum, base+size wraps past 2^64, or the range overlaps a
  // span of this arena; ResourceExhausted if bookkeeping memory cannot be allocated.
  absl::Status AddSpan(uint64_t base, uint64_t size);

  // Allocates `size` (rounded up to the quantum). ResourceExhausted when no range
  // fits, even after draining the quantum caches and importing from the source;
  // InvalidArgument if size is 0. Sizes served by a quantum cache ignore `fit`.
  absl::StatusOr<uint64_t> Alloc(uint64_t size, Fit fit = Fit::kInstant);

  // Allocates `size` whose start is a multiple of `align`. InvalidArgument unless
  // `align` is a power of two; an align <= quantum is the same as Alloc().
  absl::StatusOr<uint64_t> XAlloc(uint64_t size, uint64_t align, Fit fit = Fit::kInstant);

  // Returns a range obtained from Alloc/XAlloc with the same size (before or after
  // rounding). Never allocates, never fails.
  // REQUIRES: [addr, addr+size) was allocated from this arena and not yet freed. A
  // violation aborts the process when the range reaches the segment lists (at once
  // for an uncached size, at the next reap of its cache for a cached one).
  void Free(uint64_t addr, uint64_t size);

  // Drains the quantum caches back into the segment lists (tests, low memory). Alloc
  // does this itself before failing.
  void ReapCaches();

  const std::string& name() const;
  uint64_t quantum() const;
  uint64_t TotalBytes() const;  // sum of span sizes
  uint64_t InUseBytes() const;  // allocated, including ranges held in quantum caches
  uint64_t FreeBytes() const;   // TotalBytes() - InUseBytes()

  // Checks invariants 1, 3 and 4 and the arena's bookkeeping (free lists, segment
  // index, tag count, byte counts, cache contents) by walking everything (tests).
  // Returns Internal with the reason on the first violation found.
  absl::Status CheckConsistency() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ptmpfs::vm

#endif  // PTMPFS_VM_VMEM_H_
