// meta_bench: what meta/'s directory and create paths cost, each beside a heap baseline.
//
// Theory. A directory of a million entries is the case ptmpfs exists for: it must stay
// fast while everything is resident, and usable when the RAM budget is a tenth of the
// metadata. Each subject is measured beside a baseline in the same run, on the same
// names drawn from the same sequences:
//
//   subject                       baseline               target (one thread)
//   BM_DirLookup/resident         BM_HeapMapLookup       >= 1,000,000 lookups/s
//   BM_DirLookup/overbudget       BM_HeapMapLookup       >=   200,000 lookups/s
//   BM_DirInsert/{resident,...}   BM_HeapMapInsert       (none)
//   BM_DirRemove/{resident,...}   BM_HeapMapRemove       (none)
//   BM_CreateFiles/resident       BM_HeapMapCreateFiles  pageable bytes per file <= 256 and
//   BM_CreateFiles/8MiB           (same)                 bookkeeping <= 1% of them (the
//   BM_CreateFiles/8MiB_interleaved (same)               limits scale_test asserts)
//
// The baselines are absl::flat_hash_map<std::string, uint64_t> on the heap: the ceiling
// of a resident in-heap index (what a daemon keeping its directories in RAM would get,
// and what ptmpfs must not do per file), not a competitor that could page.
//
// Fixtures.
//  - The big directory: one directory node whose DirRoot indexes kEntries entries
//    "entry-00000000".. (14 bytes, kept inline in the leaves), each naming a node of
//    its own, built once per process on first use and shared by every run of the
//    lookup, insert and remove benchmarks. "resident": a 1 GiB budget, nothing pages.
//    "overbudget": the resident fixture's metadata (kmem pool pages + node pool pages)
//    is measured, and a second fixture is built with a budget of a tenth of it. Swap
//    files are vm/'s unlinked temporary files in /var/tmp (never a tmpfs), so swap
//    I/O is the host page cache: the figures are of ptmpfs's CPU paths, not a disk.
//  - Lookups, removes and the baseline's lookups walk one random permutation of the
//    entries (fixed seed), stored as contiguous 16-byte names so the walk through it
//    is sequential and costs both sides the same. Each fixture keeps its own cursor in
//    it, so repeated runs do not revisit the pages the previous run just faulted in.
//  - Insert and remove keep the directory at kEntries (+ at most kBatch): an insert
//    run inserts fresh names (from a pool of kExtraNames, so the leaves they hit are
//    spread over the whole tree, not a hot set) and, every kBatch inserts, removes
//    them again with the timer paused; a remove run removes names of the permutation
//    and puts them back every kBatch removes, untimed. Pausing costs a few clock reads
//    per batch (< 1 ns per operation at kBatch = 1000). Over budget, the untimed
//    repairs also fault pages in and out, which shifts which pages the next batch
//    finds resident, but not how many: the budget stays full either way.
//  - BM_CreateFiles builds a fresh Vm per run and creates kCreateDirs directories, then
//    kFilesPerDir files in each: NodeStore::Alloc, pin the directory, DirIndex::Insert.
//    Setup and teardown are untimed. Files go in directory after directory (as tar,
//    cp -r and git checkout create them), except in /8MiB_interleaved, which takes the
//    directories round robin as scale_test does: every create then lands in a
//    different directory's leaf, and at 8 MiB almost every one faults a leaf in.
//    The timed creates include the first touch of the frames they fill (a fresh Vm
//    each run, as a fresh mount). On a virtual machine whose host backs guest memory
//    lazily, the first run in a process can find that touch several times dearer than
//    later runs do (they reuse memory the previous run freed): run with
//    --benchmark_repetitions=3 and read the later repetitions for the CPU path.
//
// Counters. Over-budget runs (and the resident ones, to show they are zero) report
// vm/'s faults, pageins, pageouts and clean evictions per operation. BM_CreateFiles reports
//   pageable_bytes_per_file: (kmem pool pages + node pool pages) * page bytes / files;
//   resident_bytes_per_file: resident memory that grows with the files, per file:
//     kmem and node pool bookkeeping (page headers and bitmaps), the node pool's page
//     table (measured), kmem's page tables (estimated: 8 bytes per pool page plus the
//     radix level above, as Kmem does not expose its pools' maps), and 8 bytes of swap
//     checksum per swap slot in use. Not included: the budget's frames and their
//     descriptors (fixed by the budget, not by the files);
//   heap_bytes_per_file: malloc's own count (mallinfo2 uordblks + hblkhd) of what the
//     process allocated during the creates: a cross-check that also sees what meta/
//     and vm/ do not count (e.g. vmem boundary tags of pool pages). The baseline
//     reports the same figure, which for it is all its metadata.
//
// Every benchmark measures wall-clock time (UseRealTime, hence Google Benchmark's
// "/real_time" suffix on every name, and "/iterations:N" where the count is fixed):
// the over-budget runs depend on the pager thread, whose CPU time a thread clock would
// not see; the summary gives CPU-time ratios beside the wall-time ones, as other work
// on a shared machine disturbs them less. After Google Benchmark's table, SummaryReporter prints
// the fixtures' facts, then per subject its rate, the ratio to its target, and the ratio to its
// baseline (medians over repetitions, each repetition's ratio in brackets). Nothing here passes or
// fails.
//
// Run: build/bench/meta_bench [--benchmark_repetitions=3] [--benchmark_filter=...].
// A default run takes about 15 s on 2 cores, fixtures included; with three repetitions
// about 45 s.
#include <dirent.h>
#include <malloc.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cassert>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "benchmark/benchmark.h"
#include "meta/dir_index.h"
#include "meta/kmem.h"
#include "meta/node.h"
#include "meta/pool.h"
#include "vm/address_space.h"
#include "vm/page_table.h"
#include "vm/pin.h"
#include "vm/stats.h"
#include "vm/vm.h"

namespace ptmpfs::meta {
namespace {

// Entries of the big directory (the size).
constexpr uint64_t kEntries = 1'000'000;
// Fresh names for inserts: as many as the entries, so a run's inserts land on leaves
// spread over the whole tree.
constexpr uint64_t kExtraNames = 1'000'000;
// Operations between two untimed repairs of the directory's size.
constexpr uint64_t kBatch = 1000;
// BM_CreateFiles: a million files over a thousand directories.
constexpr uint64_t kCreateDirs = 1000;
constexpr uint64_t kFilesPerDir = 1000;

// "Resident": a budget far above the ~200 MiB of metadata of either fixture.
constexpr uint64_t kResidentRam = uint64_t{1} << 30;
// The small budget of BM_CreateFiles (scale_test's).
constexpr uint64_t kSmallRam = uint64_t{8} << 20;
// Over budget, the RAM budget is the metadata divided by this (the tenth).
constexpr uint64_t kOverBudgetFactor = 10;
// Swap capacity of every fixture: ten times the largest fixture's metadata (184 MiB); a
// temporary swap file costs disk only for the slots written.
constexpr uint64_t kSwapBytes = uint64_t{2} << 30;
// Address space as the tests place it: away from 0, generously sized.
constexpr uint64_t kSpaceBase = uint64_t{1} << 32;
constexpr uint64_t kSpaceSize = uint64_t{1} << 46;

// The permutation of entries is drawn once from this seed: every run, subject and
// baseline, visits the same names in the same order.
constexpr uint64_t kRandomSeed = 20240601;

// ---------------------------------------------------------------------------------
// Names: "entry-" and eight digits, 14 bytes, stored 16 to a record so that an array of
// them is read sequentially.

constexpr size_t kNameLength = 14;

struct Name {
  char chars[16];
  absl::string_view view() const { return absl::string_view(chars, kNameLength); }
};

// REQUIRES: index < 10^8 (eight digits).
Name NameOf(uint64_t index) {
  assert(index < 100'000'000);
  Name name = {"entry-"};
  for (size_t at = kNameLength; at > 6; index /= 10) name.chars[--at] = char('0' + index % 10);
  return name;
}

// Built once, shared by every benchmark.
struct Names {
  std::vector<Name> permutation;  // every entry of the big directory, in random order
  std::vector<Name> extra;        // names never in it: entries kEntries.. on
  std::vector<Name> per_dir;      // the names created in each directory of BM_CreateFiles
};

const Names& SharedNames() {
  static const Names* const names = [] {
    auto* built = new Names;
    std::vector<uint32_t> order(kEntries);
    std::iota(order.begin(), order.end(), 0);
    std::mt19937_64 random(kRandomSeed);
    std::shuffle(order.begin(), order.end(), random);
    built->permutation.reserve(kEntries);
    for (uint32_t index : order) built->permutation.push_back(NameOf(index));
    built->extra.reserve(kExtraNames);
    for (uint64_t i = 0; i < kExtraNames; ++i) built->extra.push_back(NameOf(kEntries + i));
    for (uint64_t i = 0; i < kFilesPerDir; ++i) built->per_dir.push_back(NameOf(i));
    return built;
  }();
  return *names;
}

// ---------------------------------------------------------------------------------
// The metadata stack: Vm, address space, kmem, nodes, directory index.

struct Meta {
  std::unique_ptr<vm::Vm> vm;
  std::unique_ptr<vm::Map> space;
  std::unique_ptr<Kmem> kmem;
  std::unique_ptr<NodeStore> nodes;
  std::unique_ptr<DirIndex> index;

  ~Meta() {
    // Users before what they use: every pool is gone before its map, maps before Vm.
    index.reset();
    nodes.reset();
    kmem.reset();
    space.reset();
    vm.reset();
  }

  // Bytes of the pool pages holding metadata: the "metadata bytes".
  uint64_t PageableBytes() const {
    return kmem->page_bytes_in_use() + nodes->pool().pages_in_use() * nodes->pool().page_bytes();
  }

  // Resident memory that grows with the metadata (see the counters in the theory).
  struct Resident {
    uint64_t bookkeeping = 0;
    uint64_t page_tables = 0;
    uint64_t swap_checksums = 0;
    uint64_t total() const { return bookkeeping + page_tables + swap_checksums; }
  };
  Resident ResidentBytes() const {
    Resident resident;
    resident.bookkeeping = kmem->bookkeeping_bytes() + nodes->pool().bookkeeping_bytes();
    // One 8-byte entry per pool page in a leaf of 128, and a level above: 129/128.
    const uint64_t kmem_page_tables_estimate = kmem->pages_in_use() * sizeof(vm::Entry) *
                                               (vm::PageTable::kFanout + 1) /
                                               vm::PageTable::kFanout;
    resident.page_tables =
        nodes->pool().map().page_table().node_bytes() + kmem_page_tables_estimate;
    resident.swap_checksums = vm->ReadStats().swap_slots_used * sizeof(uint64_t);
    return resident;
  }

  absl::StatusOr<Addr> MakeDir() { return nodes->Alloc(S_IFDIR | 0755, 0, 0, 0); }

  // A new file named `name` in `dir`: the create path without fs/'s locks.
  absl::Status CreateFile(Addr dir, absl::string_view name) {
    absl::StatusOr<Addr> node = nodes->Alloc(S_IFREG | 0644, 0, 0, 0);
    if (!node.ok()) return node.status();
    absl::StatusOr<vm::Pin<Node>> pin = nodes->Pin(dir, vm::Access::kWrite);
    if (!pin.ok()) return pin.status();
    return index->Insert((*pin)->dir.index, name, *node, DT_REG).status();
  }
};

absl::StatusOr<std::unique_ptr<Meta>> CreateMeta(uint64_t ram_bytes) {
  auto meta = std::make_unique<Meta>();
  vm::VmOptions options;
  options.ram_bytes = ram_bytes;
  options.swap.size_bytes = kSwapBytes;  // path empty: an unlinked file in /var/tmp
  absl::StatusOr<std::unique_ptr<vm::Vm>> vm = vm::Vm::Create(options);
  if (!vm.ok()) return vm.status();
  meta->vm = std::move(*vm);
  absl::StatusOr<std::unique_ptr<vm::Map>> space =
      vm::Map::CreateAddressSpace(*meta->vm, kSpaceBase, kSpaceSize);
  if (!space.ok()) return space.status();
  meta->space = std::move(*space);
  absl::StatusOr<std::unique_ptr<Kmem>> kmem = Kmem::Create(*meta->space);
  if (!kmem.ok()) return kmem.status();
  meta->kmem = std::move(*kmem);
  absl::StatusOr<std::unique_ptr<NodeStore>> nodes = NodeStore::Create(*meta->space, *meta->kmem);
  if (!nodes.ok()) return nodes.status();
  meta->nodes = std::move(*nodes);
  meta->index = std::make_unique<DirIndex>(*meta->kmem);
  return meta;
}

// Bytes malloc has handed out and not yet had back (heap and mmapped chunks).
uint64_t HeapBytesInUse() {
  const struct mallinfo2 info = mallinfo2();
  return info.uordblks + info.hblkhd;
}

double Seconds(std::chrono::steady_clock::duration duration) {
  return std::chrono::duration<double>(duration).count();
}

// Facts of the fixtures, printed with the summary.
std::vector<std::string>& FixtureNotes() {
  static auto* const notes = new std::vector<std::string>;
  return *notes;
}

// ---------------------------------------------------------------------------------
// The big directory, built once per budget.

enum class Budget { kResident, kOverBudget };

const char* BudgetName(Budget budget) {
  return budget == Budget::kResident ? "resident" : "overbudget";
}

struct BigDir {
  std::unique_ptr<Meta> meta;
  Addr dir = kNullAddr;
  Addr link_target = kNullAddr;  // the node every inserted name links to (a hard link)
  uint64_t ram_bytes = 0;
  uint64_t pageable_bytes = 0;  // metadata right after the build
  // Positions in SharedNames().permutation where this fixture's next lookup or remove
  // batch starts, and in .extra for the next insert.
  size_t lookup_cursor = 0;
  size_t remove_cursor = 0;
  size_t insert_cursor = 0;
};

absl::StatusOr<std::unique_ptr<BigDir>> BuildBigDir(Budget budget, uint64_t ram_bytes) {
  const auto start = std::chrono::steady_clock::now();
  auto big = std::make_unique<BigDir>();
  big->ram_bytes = ram_bytes;
  absl::StatusOr<std::unique_ptr<Meta>> meta = CreateMeta(ram_bytes);
  if (!meta.ok()) return meta.status();
  big->meta = std::move(*meta);
  absl::StatusOr<Addr> dir = big->meta->MakeDir();
  if (!dir.ok()) return dir.status();
  big->dir = *dir;
  absl::StatusOr<Addr> target = big->meta->nodes->Alloc(S_IFREG | 0644, 0, 0, 0);
  if (!target.ok()) return target.status();
  big->link_target = *target;
  for (uint64_t i = 0; i < kEntries; ++i) {
    if (absl::Status status = big->meta->CreateFile(big->dir, NameOf(i).view()); !status.ok()) {
      return status;
    }
  }
  big->pageable_bytes = big->meta->PageableBytes();

  const double seconds = Seconds(std::chrono::steady_clock::now() - start);
  const vm::StatsSnapshot stats = big->meta->vm->ReadStats();
  DirShape shape;
  {
    absl::StatusOr<vm::Pin<Node>> pin = big->meta->nodes->Pin(big->dir, vm::Access::kRead);
    if (!pin.ok()) return pin.status();
    // Verify reads the whole tree, so only where it is resident: over budget it would
    // page the whole directory through the budget, costing seconds and leaving the
    // resident set shaped by a walk in cookie order rather than by the build.
    if (budget == Budget::kResident) {
      absl::StatusOr<DirShape> verified = big->meta->index->Verify((*pin)->dir.index);
      if (!verified.ok()) return verified.status();
      shape = *verified;
    }
  }
  std::string note = absl::StrFormat(
      "big directory, %s: %d entries built in %.1f s, budget %.1f MiB; metadata %.1f MiB "
      "(kmem %.1f + nodes %.1f); pageouts %d, pageins %d during the build",
      BudgetName(budget), kEntries, seconds, ram_bytes / double(1 << 20),
      big->pageable_bytes / double(1 << 20), big->meta->kmem->page_bytes_in_use() / double(1 << 20),
      big->meta->nodes->pool().pages_in_use() * big->meta->nodes->pool().page_bytes() /
          double(1 << 20),
      stats.pageouts, stats.pageins);
  if (shape.height != 0) {
    absl::StrAppendFormat(&note, "; tree height %d, %d leaves (%.0f%% full), %d inner nodes",
                          shape.height, shape.leaves, 100.0 * shape.entries / shape.leaf_slots,
                          shape.inner_nodes);
  }
  FixtureNotes().push_back(note);
  return big;
}

struct BigDirSlot {
  bool attempted = false;
  absl::Status status;
  std::unique_ptr<BigDir> big;
};

BigDirSlot& SlotOf(Budget budget) {
  static BigDirSlot slots[2];
  return slots[budget == Budget::kResident ? 0 : 1];
}

// The shared fixture for `budget`, built on first call. Over budget needs the resident
// one first, to measure the metadata it divides.
absl::StatusOr<BigDir*> GetBigDir(Budget budget) {
  BigDirSlot& slot = SlotOf(budget);
  if (!slot.attempted) {
    slot.attempted = true;
    uint64_t ram_bytes = kResidentRam;
    if (budget == Budget::kOverBudget) {
      absl::StatusOr<BigDir*> resident = GetBigDir(Budget::kResident);
      if (!resident.ok()) return resident.status();
      ram_bytes = (*resident)->pageable_bytes / kOverBudgetFactor;
    }
    absl::StatusOr<std::unique_ptr<BigDir>> built = BuildBigDir(budget, ram_bytes);
    if (built.ok()) {
      slot.big = std::move(*built);
    } else {
      slot.status = built.status();
    }
  }
  if (!slot.status.ok()) return slot.status;
  return slot.big.get();
}

void ReleaseBigDirs() {
  SlotOf(Budget::kOverBudget).big.reset();
  SlotOf(Budget::kResident).big.reset();
}

// The heap baseline: the same entries in one absl::flat_hash_map, values standing for
// inode numbers.
using HeapDir = absl::flat_hash_map<std::string, uint64_t>;

HeapDir& SharedHeapDir() {
  static HeapDir* const heap_dir = [] {
    const auto start = std::chrono::steady_clock::now();
    const uint64_t heap_before = HeapBytesInUse();
    auto* built = new HeapDir;
    for (uint64_t i = 0; i < kEntries; ++i) built->emplace(std::string(NameOf(i).view()), i + 2);
    FixtureNotes().push_back(absl::StrFormat(
        "heap baseline: %d entries in one absl::flat_hash_map<std::string, uint64_t>, built in "
        "%.1f s, %.1f MiB of heap (%.1f bytes an entry)",
        kEntries, Seconds(std::chrono::steady_clock::now() - start),
        (HeapBytesInUse() - heap_before) / double(1 << 20),
        double(HeapBytesInUse() - heap_before) / kEntries));
    return built;
  }();
  return *heap_dir;
}

// ---------------------------------------------------------------------------------
// Counters.

// vm/'s event counters over the timed loop, per operation.
void AddStatsCounters(benchmark::State& state, const vm::StatsSnapshot& before,
                      const vm::StatsSnapshot& after) {
  auto per_operation = [&](const char* name, uint64_t then, uint64_t now) {
    state.counters[name] =
        benchmark::Counter(static_cast<double>(now - then), benchmark::Counter::kAvgIterations);
  };
  per_operation("faults", before.faults, after.faults);
  per_operation("pageins", before.pageins, after.pageins);
  per_operation("pageouts", before.pageouts, after.pageouts);
  // Evictions of pages whose swap copy is current: what lookups cause over budget.
  per_operation("clean_evictions", before.clean_evictions, after.clean_evictions);
}

void AddRateCounter(benchmark::State& state, const char* name) {
  state.counters[name] =
      benchmark::Counter(static_cast<double>(state.iterations()), benchmark::Counter::kIsRate);
}

// Cursor arithmetic over a cyclic sequence.
size_t Next(size_t cursor, size_t size) { return cursor + 1 == size ? 0 : cursor + 1; }

// ---------------------------------------------------------------------------------
// Lookups.

void BM_HeapMapLookup(benchmark::State& state) {
  const std::vector<Name>& sequence = SharedNames().permutation;
  const HeapDir& heap_dir = SharedHeapDir();
  static size_t cursor = 0;
  for (auto _ : state) {
    auto found = heap_dir.find(sequence[cursor].view());
    if (found == heap_dir.end()) [[unlikely]] {
      state.SkipWithError("name not found in the heap map");
      break;
    }
    benchmark::DoNotOptimize(found->second);
    cursor = Next(cursor, sequence.size());
  }
  AddRateCounter(state, "lookups/s");
}

// The FUSE lookup path's core, without fs/'s lock: pin the directory's node, look the
// name up in its index.
void BM_DirLookup(benchmark::State& state, Budget budget) {
  absl::StatusOr<BigDir*> big = GetBigDir(budget);
  if (!big.ok()) {
    state.SkipWithError(big.status().ToString().c_str());
    return;
  }
  const std::vector<Name>& sequence = SharedNames().permutation;
  NodeStore& nodes = *(*big)->meta->nodes;
  const DirIndex& index = *(*big)->meta->index;
  const Addr dir = (*big)->dir;
  size_t cursor = (*big)->lookup_cursor;
  const vm::StatsSnapshot before = (*big)->meta->vm->ReadStats();
  for (auto _ : state) {
    absl::StatusOr<vm::Pin<Node>> pin = nodes.Pin(dir, vm::Access::kRead);
    if (!pin.ok()) [[unlikely]] {
      state.SkipWithError(pin.status().ToString().c_str());
      break;
    }
    absl::StatusOr<DirEntryInfo> found = index.Lookup((*pin)->dir.index, sequence[cursor].view());
    if (!found.ok()) [[unlikely]] {
      state.SkipWithError(found.status().ToString().c_str());
      break;
    }
    benchmark::DoNotOptimize(found->node);
    cursor = Next(cursor, sequence.size());
  }
  (*big)->lookup_cursor = cursor;
  AddRateCounter(state, "lookups/s");
  AddStatsCounters(state, before, (*big)->meta->vm->ReadStats());
}

// ---------------------------------------------------------------------------------
// Inserts: fresh names in, taken out again untimed every kBatch.

void BM_HeapMapInsert(benchmark::State& state) {
  const std::vector<Name>& extra = SharedNames().extra;
  HeapDir& heap_dir = SharedHeapDir();
  static size_t cursor = 0;
  size_t batch_start = cursor;
  uint64_t in_batch = 0;
  auto remove_batch = [&] {
    for (; in_batch > 0; --in_batch, batch_start = Next(batch_start, extra.size())) {
      heap_dir.erase(extra[batch_start].view());
    }
  };
  for (auto _ : state) {
    auto [where, inserted] = heap_dir.emplace(std::string(extra[cursor].view()), cursor);
    if (!inserted) [[unlikely]] {
      state.SkipWithError("name already in the heap map");
      break;
    }
    benchmark::DoNotOptimize(where->second);
    cursor = Next(cursor, extra.size());
    if (++in_batch == kBatch) [[unlikely]] {
      state.PauseTiming();
      remove_batch();
      state.ResumeTiming();
    }
  }
  remove_batch();
  AddRateCounter(state, "inserts/s");
}

// Removes the names inserted since `batch_start` (count `in_batch`), advancing both.
absl::Status RemoveInserted(BigDir& big, size_t& batch_start, uint64_t& in_batch) {
  const std::vector<Name>& extra = SharedNames().extra;
  absl::StatusOr<vm::Pin<Node>> pin = big.meta->nodes->Pin(big.dir, vm::Access::kWrite);
  if (!pin.ok()) return pin.status();
  for (; in_batch > 0; --in_batch, batch_start = Next(batch_start, extra.size())) {
    absl::StatusOr<DirEntryInfo> removed =
        big.meta->index->Remove((*pin)->dir.index, extra[batch_start].view());
    if (!removed.ok()) return removed.status();
  }
  return absl::OkStatus();
}

void BM_DirInsert(benchmark::State& state, Budget budget) {
  absl::StatusOr<BigDir*> big = GetBigDir(budget);
  if (!big.ok()) {
    state.SkipWithError(big.status().ToString().c_str());
    return;
  }
  const std::vector<Name>& extra = SharedNames().extra;
  NodeStore& nodes = *(*big)->meta->nodes;
  DirIndex& index = *(*big)->meta->index;
  const Addr dir = (*big)->dir;
  const Addr target = (*big)->link_target;
  size_t cursor = (*big)->insert_cursor;
  size_t batch_start = cursor;
  uint64_t in_batch = 0;
  absl::Status repair;
  const vm::StatsSnapshot before = (*big)->meta->vm->ReadStats();
  for (auto _ : state) {
    {
      absl::StatusOr<vm::Pin<Node>> pin = nodes.Pin(dir, vm::Access::kWrite);
      if (!pin.ok()) [[unlikely]] {
        state.SkipWithError(pin.status().ToString().c_str());
        break;
      }
      absl::StatusOr<DirEntryInfo> inserted =
          index.Insert((*pin)->dir.index, extra[cursor].view(), target, DT_REG);
      if (!inserted.ok()) [[unlikely]] {
        state.SkipWithError(inserted.status().ToString().c_str());
        break;
      }
    }
    cursor = Next(cursor, extra.size());
    if (++in_batch == kBatch) [[unlikely]] {
      state.PauseTiming();
      repair = RemoveInserted(**big, batch_start, in_batch);
      state.ResumeTiming();
      if (!repair.ok()) {
        state.SkipWithError(repair.ToString().c_str());
        break;
      }
    }
  }
  const vm::StatsSnapshot after = (*big)->meta->vm->ReadStats();
  if (repair.ok()) repair = RemoveInserted(**big, batch_start, in_batch);
  if (!repair.ok() && !state.error_occurred()) state.SkipWithError(repair.ToString().c_str());
  (*big)->insert_cursor = cursor;
  AddRateCounter(state, "inserts/s");
  // Over the timed inserts and the untimed removes between batches alike.
  AddStatsCounters(state, before, after);
}

// ---------------------------------------------------------------------------------
// Removes: existing names out, put back untimed every kBatch.

void BM_HeapMapRemove(benchmark::State& state) {
  const std::vector<Name>& sequence = SharedNames().permutation;
  HeapDir& heap_dir = SharedHeapDir();
  static size_t cursor = 0;
  std::vector<std::pair<size_t, uint64_t>> removed;  // position in sequence, value
  removed.reserve(kBatch);
  auto put_back = [&] {
    for (const auto& [position, value] : removed) {
      heap_dir.emplace(std::string(sequence[position].view()), value);
    }
    removed.clear();
  };
  for (auto _ : state) {
    auto found = heap_dir.find(sequence[cursor].view());
    if (found == heap_dir.end()) [[unlikely]] {
      state.SkipWithError("name not found in the heap map");
      break;
    }
    removed.emplace_back(cursor, found->second);
    heap_dir.erase(found);
    cursor = Next(cursor, sequence.size());
    if (removed.size() == kBatch) [[unlikely]] {
      state.PauseTiming();
      put_back();
      state.ResumeTiming();
    }
  }
  put_back();
  AddRateCounter(state, "removes/s");
}

struct RemovedEntry {
  size_t position;  // in SharedNames().permutation
  DirEntryInfo info;
};

absl::Status PutBack(BigDir& big, std::vector<RemovedEntry>& removed) {
  const std::vector<Name>& sequence = SharedNames().permutation;
  absl::StatusOr<vm::Pin<Node>> pin = big.meta->nodes->Pin(big.dir, vm::Access::kWrite);
  if (!pin.ok()) return pin.status();
  for (const RemovedEntry& entry : removed) {
    absl::StatusOr<DirEntryInfo> inserted = big.meta->index->Insert(
        (*pin)->dir.index, sequence[entry.position].view(), entry.info.node, entry.info.type);
    if (!inserted.ok()) return inserted.status();
  }
  removed.clear();
  return absl::OkStatus();
}

void BM_DirRemove(benchmark::State& state, Budget budget) {
  absl::StatusOr<BigDir*> big = GetBigDir(budget);
  if (!big.ok()) {
    state.SkipWithError(big.status().ToString().c_str());
    return;
  }
  const std::vector<Name>& sequence = SharedNames().permutation;
  NodeStore& nodes = *(*big)->meta->nodes;
  DirIndex& index = *(*big)->meta->index;
  const Addr dir = (*big)->dir;
  size_t cursor = (*big)->remove_cursor;
  std::vector<RemovedEntry> removed;
  removed.reserve(kBatch);
  absl::Status repair;
  const vm::StatsSnapshot before = (*big)->meta->vm->ReadStats();
  for (auto _ : state) {
    {
      absl::StatusOr<vm::Pin<Node>> pin = nodes.Pin(dir, vm::Access::kWrite);
      if (!pin.ok()) [[unlikely]] {
        state.SkipWithError(pin.status().ToString().c_str());
        break;
      }
      absl::StatusOr<DirEntryInfo> entry = index.Remove((*pin)->dir.index, sequence[cursor].view());
      if (!entry.ok()) [[unlikely]] {
        state.SkipWithError(entry.status().ToString().c_str());
        break;
      }
      removed.push_back({cursor, *entry});
    }
    cursor = Next(cursor, sequence.size());
    if (removed.size() == kBatch) [[unlikely]] {
      state.PauseTiming();
      repair = PutBack(**big, removed);
      state.ResumeTiming();
      if (!repair.ok()) {
        state.SkipWithError(repair.ToString().c_str());
        break;
      }
    }
  }
  const vm::StatsSnapshot after = (*big)->meta->vm->ReadStats();
  if (repair.ok()) repair = PutBack(**big, removed);
  if (!repair.ok() && !state.error_occurred()) state.SkipWithError(repair.ToString().c_str());
  (*big)->remove_cursor = cursor;
  AddRateCounter(state, "removes/s");
  AddStatsCounters(state, before, after);
}

// ---------------------------------------------------------------------------------
// Creating a million files over a thousand directories. One iteration is the whole
// million; the rate counter turns it into creates/s.

constexpr uint64_t kFiles = kCreateDirs * kFilesPerDir;

void BM_HeapMapCreateFiles(benchmark::State& state) {
  const std::vector<Name>& names = SharedNames().per_dir;
  for (auto _ : state) {
    state.PauseTiming();
    auto dirs = std::make_unique<std::vector<HeapDir>>(kCreateDirs);
    const uint64_t heap_before = HeapBytesInUse();
    state.ResumeTiming();
    uint64_t ino = 2;
    for (HeapDir& heap_dir : *dirs) {
      for (const Name& name : names) heap_dir.emplace(std::string(name.view()), ino++);
    }
    state.PauseTiming();
    state.counters["heap_bytes_per_file"] =
        static_cast<double>(HeapBytesInUse() - heap_before) / kFiles;
    dirs.reset();
    state.ResumeTiming();
  }
  state.counters["creates/s"] = benchmark::Counter(static_cast<double>(kFiles * state.iterations()),
                                                   benchmark::Counter::kIsRate);
}

enum class CreateOrder { kDirectoryByDirectory, kInterleaved };

void BM_CreateFiles(benchmark::State& state, uint64_t ram_bytes, CreateOrder order) {
  const std::vector<Name>& names = SharedNames().per_dir;
  for (auto _ : state) {
    state.PauseTiming();
    absl::StatusOr<std::unique_ptr<Meta>> meta = CreateMeta(ram_bytes);
    if (!meta.ok()) {
      state.SkipWithError(meta.status().ToString().c_str());
      break;
    }
    // Measured before the directories are made: their nodes count with the files.
    const uint64_t pageable_before = (*meta)->PageableBytes();
    const Meta::Resident resident_before = (*meta)->ResidentBytes();
    const uint64_t heap_before = HeapBytesInUse();
    std::vector<Addr> dirs;
    absl::Status status;
    for (uint64_t d = 0; d < kCreateDirs && status.ok(); ++d) {
      absl::StatusOr<Addr> dir = (*meta)->MakeDir();
      status = dir.status();
      if (dir.ok()) dirs.push_back(*dir);
    }
    const vm::StatsSnapshot stats_before = (*meta)->vm->ReadStats();
    state.ResumeTiming();
    if (order == CreateOrder::kDirectoryByDirectory) {
      for (uint64_t d = 0; d < kCreateDirs && status.ok(); ++d) {
        for (const Name& name : names) {
          status = (*meta)->CreateFile(dirs[d], name.view());
          if (!status.ok()) break;
        }
      }
    } else {
      for (uint64_t i = 0; i < kFilesPerDir && status.ok(); ++i) {
        for (Addr dir : dirs) {
          status = (*meta)->CreateFile(dir, names[i].view());
          if (!status.ok()) break;
        }
      }
    }
    state.PauseTiming();
    if (!status.ok()) {
      state.SkipWithError(status.ToString().c_str());
      break;
    }
    const vm::StatsSnapshot stats_after = (*meta)->vm->ReadStats();
    const Meta::Resident resident = (*meta)->ResidentBytes();
    const double files = static_cast<double>(kFiles);
    state.counters["pageable_bytes_per_file"] =
        static_cast<double>((*meta)->PageableBytes() - pageable_before) / files;
    state.counters["resident_bytes_per_file"] =
        static_cast<double>(resident.total() - resident_before.total()) / files;
    state.counters["bookkeeping_per_file"] =
        static_cast<double>(resident.bookkeeping - resident_before.bookkeeping) / files;
    state.counters["heap_bytes_per_file"] =
        static_cast<double>(HeapBytesInUse() - heap_before) / files;
    state.counters["pageins"] = static_cast<double>(stats_after.pageins - stats_before.pageins);
    state.counters["pageouts"] = static_cast<double>(stats_after.pageouts - stats_before.pageouts);
    meta->reset();
    state.ResumeTiming();
  }
  state.counters["creates/s"] = benchmark::Counter(static_cast<double>(kFiles * state.iterations()),
                                                   benchmark::Counter::kIsRate);
}

// Registration order is run order: each subject right after its baseline.
BENCHMARK(BM_HeapMapLookup)->UseRealTime();
BENCHMARK_CAPTURE(BM_DirLookup, resident, Budget::kResident)->UseRealTime();
BENCHMARK_CAPTURE(BM_DirLookup, overbudget, Budget::kOverBudget)->UseRealTime();
BENCHMARK(BM_HeapMapInsert)->UseRealTime();
BENCHMARK_CAPTURE(BM_DirInsert, resident, Budget::kResident)->UseRealTime();
BENCHMARK_CAPTURE(BM_DirInsert, overbudget, Budget::kOverBudget)->UseRealTime();
BENCHMARK(BM_HeapMapRemove)->UseRealTime();
BENCHMARK_CAPTURE(BM_DirRemove, resident, Budget::kResident)->UseRealTime();
BENCHMARK_CAPTURE(BM_DirRemove, overbudget, Budget::kOverBudget)->UseRealTime();
// The baseline's million creates take ~0.1 s: three of them, for a steadier figure.
BENCHMARK(BM_HeapMapCreateFiles)->Iterations(3)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_CreateFiles, resident, kResidentRam, CreateOrder::kDirectoryByDirectory)
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_CreateFiles, 8MiB, kSmallRam, CreateOrder::kDirectoryByDirectory)
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_CreateFiles, 8MiB_interleaved, kSmallRam, CreateOrder::kInterleaved)
    ->Iterations(1)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// ---------------------------------------------------------------------------------
// The summary.

using Run = benchmark::BenchmarkReporter::Run;

double WallPerOperation(const Run& run) {
  return run.real_accumulated_time / static_cast<double>(run.iterations);
}
double CpuPerOperation(const Run& run) {
  return run.cpu_accumulated_time / static_cast<double>(run.iterations);
}
double CounterOf(const Run& run, const char* name) {
  auto found = run.counters.find(name);
  return found == run.counters.end() ? 0.0 : found->second.value;
}

double Median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  const size_t middle = values.size() / 2;
  return values.size() % 2 == 1 ? values[middle] : (values[middle - 1] + values[middle]) / 2;
}

template <typename F>
std::vector<double> Each(const std::vector<Run>& runs, F f) {
  std::vector<double> values;
  for (const Run& run : runs) values.push_back(f(run));
  return values;
}

// The values, each with `decimals` decimals, separated by spaces.
std::string Spread(const std::vector<double>& values, int decimals) {
  std::vector<std::string> parts;
  for (double value : values) parts.push_back(absl::StrFormat("%.*f", decimals, value));
  return absl::StrJoin(parts, " ");
}

// Element-wise a / b, over the shorter of the two.
std::vector<double> Ratios(const std::vector<double>& a, const std::vector<double>& b) {
  std::vector<double> ratios;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) ratios.push_back(a[i] / b[i]);
  return ratios;
}

struct OperationPair {
  const char* subject;  // function name as registered (BENCHMARK_CAPTURE's)
  const char* baseline;
  const char* unit;          // what one iteration does
  double target_per_second;  // 0: none
};

constexpr OperationPair kOperationPairs[] = {
    {"BM_DirLookup/resident", "BM_HeapMapLookup", "lookups", 1'000'000},
    {"BM_DirLookup/overbudget", "BM_HeapMapLookup", "lookups", 200'000},
    {"BM_DirInsert/resident", "BM_HeapMapInsert", "inserts", 0},
    {"BM_DirInsert/overbudget", "BM_HeapMapInsert", "inserts", 0},
    {"BM_DirRemove/resident", "BM_HeapMapRemove", "removes", 0},
    {"BM_DirRemove/overbudget", "BM_HeapMapRemove", "removes", 0},
};

constexpr const char* kCreateSubjects[] = {"BM_CreateFiles/resident", "BM_CreateFiles/8MiB",
                                           "BM_CreateFiles/8MiB_interleaved"};
constexpr const char* kCreateBaseline = "BM_HeapMapCreateFiles";
// scale_test's limits: pageable bytes per file, and bookkeeping as a share of them.
constexpr double kPageableBytesPerFileLimit = 256;
constexpr double kBookkeepingShareLimit = 0.01;

class SummaryReporter : public benchmark::ConsoleReporter {
 public:
  explicit SummaryReporter(OutputOptions options) : ConsoleReporter(options) {}

  void ReportRuns(const std::vector<Run>& reports) override {
    ConsoleReporter::ReportRuns(reports);
    for (const Run& run : reports) {
      if (run.run_type != Run::RT_Iteration || run.error_occurred) continue;
      runs_[run.run_name.function_name].push_back(run);
    }
  }

  void Finalize() override {
    std::ostream& out = GetOutputStream();
    out << "\nFixtures:\n";
    for (const std::string& note : FixtureNotes()) out << "  " << note << "\n";
    out << "\nSummary: medians over the repetitions, [each repetition]. Rates are from wall "
           "time; 'time x' is the subject's time per operation over the baseline's (wall, "
           "then CPU). The heap map is the ceiling of a resident in-heap index.\n";
    for (const OperationPair& pair : kOperationPairs) SummarizeOperations(out, pair);
    for (const char* subject : kCreateSubjects) SummarizeCreates(out, subject);
    out.flush();
  }

 private:
  const std::vector<Run>* Find(const char* name) const {
    auto found = runs_.find(name);
    return found == runs_.end() ? nullptr : &found->second;
  }

  void SummarizeOperations(std::ostream& out, const OperationPair& pair) const {
    const std::vector<Run>* subject = Find(pair.subject);
    const std::vector<Run>* baseline = Find(pair.baseline);
    if (subject == nullptr) {
      out << absl::StrFormat("  %s: not run\n", pair.subject);
      return;
    }
    const std::vector<double> rates =
        Each(*subject, [](const Run& run) { return 1.0 / WallPerOperation(run); });
    out << absl::StrFormat("  %s: %.0f %s/s [%s]", pair.subject, Median(rates), pair.unit,
                           Spread(rates, 0));
    if (pair.target_per_second > 0) {
      std::vector<double> of_target;
      for (double rate : rates) of_target.push_back(rate / pair.target_per_second);
      out << absl::StrFormat("; target >= %.0f/s: %.2fx the target [%s] %s", pair.target_per_second,
                             Median(of_target), Spread(of_target, 2),
                             Median(of_target) >= 1 ? "(met)" : "(NOT met)");
    }
    if (baseline != nullptr) {
      const std::vector<double> wall =
          Ratios(Each(*subject, WallPerOperation), Each(*baseline, WallPerOperation));
      const std::vector<double> cpu =
          Ratios(Each(*subject, CpuPerOperation), Each(*baseline, CpuPerOperation));
      out << absl::StrFormat(
          "; vs %s (%.0f/s): time x %.2f [%s], CPU x %.2f [%s]", pair.baseline,
          Median(Each(*baseline, [](const Run& run) { return 1.0 / WallPerOperation(run); })),
          Median(wall), Spread(wall, 2), Median(cpu), Spread(cpu, 2));
    }
    const double pageins =
        Median(Each(*subject, [](const Run& run) { return CounterOf(run, "pageins"); }));
    if (pageins > 0) out << absl::StrFormat("; %.2f pageins per op", pageins);
    out << "\n";
  }

  void SummarizeCreates(std::ostream& out, const char* name) const {
    const std::vector<Run>* subject = Find(name);
    const std::vector<Run>* baseline = Find(kCreateBaseline);
    if (subject == nullptr) {
      out << absl::StrFormat("  %s: not run\n", name);
      return;
    }
    auto creates = [](const Run& run) { return CounterOf(run, "creates/s"); };
    const std::vector<double> rates = Each(*subject, creates);
    const std::vector<double> pageable =
        Each(*subject, [](const Run& run) { return CounterOf(run, "pageable_bytes_per_file"); });
    const std::vector<double> resident =
        Each(*subject, [](const Run& run) { return CounterOf(run, "resident_bytes_per_file"); });
    const std::vector<double> heap =
        Each(*subject, [](const Run& run) { return CounterOf(run, "heap_bytes_per_file"); });
    const std::vector<double> bookkeeping =
        Each(*subject, [](const Run& run) { return CounterOf(run, "bookkeeping_per_file"); });
    const double share = Median(bookkeeping) / Median(pageable);
    out << absl::StrFormat(
        "  %s: %.0f creates/s [%s]; pageable %.1f bytes/file [%s] (limit %.0f: %s); "
        "resident %.1f bytes/file [%s], of which bookkeeping %.2f%% of pageable (limit %.0f%%: "
        "%s); malloc grew %.1f bytes/file [%s]",
        name, Median(rates), Spread(rates, 0), Median(pageable), Spread(pageable, 1),
        kPageableBytesPerFileLimit,
        Median(pageable) <= kPageableBytesPerFileLimit ? "met" : "NOT met", Median(resident),
        Spread(resident, 1), 100 * share, 100 * kBookkeepingShareLimit,
        share <= kBookkeepingShareLimit ? "met" : "NOT met", Median(heap), Spread(heap, 1));
    if (baseline != nullptr) {
      const double baseline_rate = Median(Each(*baseline, creates));
      const double baseline_heap = Median(
          Each(*baseline, [](const Run& run) { return CounterOf(run, "heap_bytes_per_file"); }));
      out << absl::StrFormat(
          "; vs %s (%.0f creates/s, malloc grew %.1f bytes/file, names only): rate x %.2f, "
          "malloc growth x %.3f",
          kCreateBaseline, baseline_rate, baseline_heap, Median(rates) / baseline_rate,
          Median(heap) / baseline_heap);
    }
    out << "\n";
  }

  std::map<std::string, std::vector<Run>> runs_;
};

}  // namespace
}  // namespace ptmpfs::meta

int main(int argc, char** argv) {
  // Debian's absl checks every Mutex operation for lock-order cycles (~23 ns each); a
  // daemon turns that off, and so do we before any Vm exists.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  // glibc runs malloc and mutexes without atomics while a process has never had a
  // second thread; ptmpfs always has FUSE threads and the pager, so the heap baselines
  // must not get that shortcut either (they may run before any Vm starts its pager).
  std::thread([] {}).join();
  ptmpfs::meta::SummaryReporter reporter(isatty(STDOUT_FILENO)
                                             ? benchmark::ConsoleReporter::OO_ColorTabular
                                             : benchmark::ConsoleReporter::OO_Tabular);
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
  ptmpfs::meta::ReleaseBigDirs();
  return 0;
}
