// vm_bench: what the vm/ paths cost, each beside the baseline it is judged against.
//
// Theory. A figure alone says little on a shared machine; a ratio to a baseline
// measured in the same run, on the same machine and the same clock, says whether
// the vm/ path is as cheap as its design claims. The pairs, and the target of each:
//
//   subject                baseline              compared as                 target
//   BM_PinResident         BM_MutexLockUnlock    time per pin / per pair     <= 2
//   BM_PinResidentThreads  BM_PinResident        time per pin of one thread  <= 1.5
//   BM_ZeroFillFault       BM_HostFirstTouch     time per first touch        (none)
//   BM_PageInRandom4K      BM_PreadRandom4K      bytes per second            >= 0.7
//   BM_PageOutClustered    BM_PwriteClustered    bytes per second            >= 0.7
//
// BM_PreadChecksumRandom4K is the floor under BM_PageInRandom4K: the read and the
// checksum that any page-in does, into buffers as cold as a reclaimed frame.
// Three more pairs take the pin apart, with no target of their own:
// BM_PinResidentThreadsOwnLines (two threads whose frame descriptors share no cache
// line) and BM_PinTryWire (the wire and unwire alone, the radix walk skipped), each
// against its baseline above, and BM_AbslMutexLockUnlock, the lock of vm/'s slow
// paths, against the std::mutex pair.
//
// Every benchmark measures wall-clock time (UseRealTime): the paging ones involve
// the pager thread, whose CPU time a thread clock would not see, and the threaded
// one needs the wall clock to give a per-pin time (see BM_PinResidentThreads). The
// table printed per run is Google Benchmark's; after it, RatioReporter prints one
// line per pair: "subject / baseline = ratio (target ...)", from the medians of the
// repetitions, with the ratio of each repetition beside it to show the spread (and,
// for times, the same ratio in CPU time, which other work on the machine disturbs
// less).
// Nothing here passes or fails: the figures are for a reader.
//
// Fixtures are built by each benchmark's Setup and destroyed by its Teardown, which
// Google Benchmark calls once per run, outside the timing and outside the threads.
// Swap files are vm/'s own unlinked temporary files; baseline files are unlinked
// temporary files here too (TempFile), so nothing is left behind even on a crash.
// Both live in /var/tmp (or $TMPDIR), never on a tmpfs, and in the host page cache:
// the comparisons are of CPU paths, not of a disk.
//
// Run: build/bench/vm_bench [--benchmark_repetitions=3] [--benchmark_filter=...].
// For JSON use --benchmark_out=FILE --benchmark_out_format=json; the console gets
// the table and the summary either way.
#include <fcntl.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <xxh_x86dispatch.h>
#include <xxhash.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "benchmark/benchmark.h"
#include "vm/address_space.h"
#include "vm/frames.h"
#include "vm/pager.h"
#include "vm/pin.h"
#include "vm/stats.h"
#include "vm/swap.h"
#include "vm/vm.h"

namespace ptmpfs::vm {
namespace {

// Address space of every fixture: as the tests place it, well away from 0.
constexpr uint64_t kSpaceBase = uint64_t{1} << 32;
constexpr uint64_t kSpaceSize = uint64_t{1} << 40;
// The submap of 4 KiB pages the benchmarks use: reserved generously, as meta/ does
// (only allocated pages cost anything).
constexpr uint64_t kSubmapBytes = uint64_t{1} << 36;

// Random block sequences are drawn once from this seed, so the subject and its
// baseline visit the same blocks in the same order, run after run.
constexpr uint64_t kRandomSeed = 20240601;
// Length of a random sequence: 2^16 indices, four times the blocks of either file,
// so no block order repeats often enough for a cache to learn it; at 256 KiB the
// sequence itself stays in L2.
constexpr size_t kRandomSequenceLength = size_t{1} << 16;

// ---------------------------------------------------------------------------------
// Helpers.

// An unlinked file of ours in $TMPDIR or /var/tmp: it has no name from the start,
// so it goes away with its descriptor whatever happens to the process.
class TempFile {
 public:
  static absl::StatusOr<std::unique_ptr<TempFile>> Create() {
    std::string dir = "/var/tmp";
    if (const char* tmpdir = getenv("TMPDIR"); tmpdir != nullptr && tmpdir[0] != '\0') {
      dir = tmpdir;
    }
    int fd = open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd < 0) {
      std::string name = dir + "/vm_bench-XXXXXX";
      fd = mkostemp(name.data(), O_CLOEXEC);
      if (fd >= 0) unlink(name.c_str());
    }
    if (fd < 0) return absl::ErrnoToStatus(errno, "temporary file in " + dir);
    return std::unique_ptr<TempFile>(new TempFile(fd));
  }
  ~TempFile() { close(fd_); }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;

  int fd() const { return fd_; }

 private:
  explicit TempFile(int fd) : fd_(fd) {}
  const int fd_;
};

// Page-aligned heap memory, as I/O buffers and frames are.
struct FreeDeleter {
  void operator()(void* memory) const { free(memory); }
};
using AlignedBuffer = std::unique_ptr<char, FreeDeleter>;

AlignedBuffer AllocateAligned(size_t bytes) {
  return AlignedBuffer(static_cast<char*>(aligned_alloc(kPageSize, bytes)));
}

std::vector<uint32_t> RandomSequence(uint32_t bound) {
  std::mt19937_64 generator(kRandomSeed);
  std::uniform_int_distribution<uint32_t> pick(0, bound - 1);
  std::vector<uint32_t> sequence(kRandomSequenceLength);
  for (uint32_t& value : sequence) value = pick(generator);
  return sequence;
}

constexpr size_t kWordsPerPage = kPageSize / sizeof(uint64_t);
using PageWords = uint64_t[kWordsPerPage];

// The contents a benchmark writes into page `index`: distinct per page and per word,
// so a page read back from the wrong slot shows.
uint64_t PatternWord(uint64_t index, uint64_t word) { return index * 512 + word; }

void FillPage(uint64_t* page, uint64_t index) {
  for (uint64_t word = 0; word < kWordsPerPage; ++word) {
    page[word] = PatternWord(index, word);
  }
}

// A Vm with an address space and one pageable submap of 4 KiB pages. Members are
// destroyed in reverse order: submap, address space, then the Vm (address_space.h,
// invariant 3).
struct VmFixture {
  std::unique_ptr<Vm> vm;
  std::unique_ptr<Map> space;
  std::unique_ptr<Map> pages;
};

absl::StatusOr<VmFixture> MakeVm(uint64_t ram_bytes, uint64_t swap_bytes, bool pager_thread) {
  VmOptions options;
  options.ram_bytes = ram_bytes;
  options.swap.size_bytes = swap_bytes;  // path empty: vm/'s unlinked temporary file
  options.start_pager_thread = pager_thread;
  VmFixture fixture;
  absl::StatusOr<std::unique_ptr<Vm>> vm = Vm::Create(options);
  if (!vm.ok()) return vm.status();
  fixture.vm = *std::move(vm);
  absl::StatusOr<std::unique_ptr<Map>> space =
      Map::CreateAddressSpace(*fixture.vm, kSpaceBase, kSpaceSize);
  if (!space.ok()) return space.status();
  fixture.space = *std::move(space);
  absl::StatusOr<std::unique_ptr<Map>> pages =
      fixture.space->Suballoc("bench pages", kSubmapBytes, 0, true);
  if (!pages.ok()) return pages.status();
  fixture.pages = *std::move(pages);
  return fixture;
}

// Writes PatternWord(index, ...) into each page of [address, address + count pages).
absl::Status DirtyPages(Map& map, uint64_t address, uint64_t count) {
  for (uint64_t index = 0; index < count; ++index) {
    absl::StatusOr<Pin<PageWords>> pin =
        map.Pin<PageWords>(address + index * kPageSize, Access::kWrite);
    if (!pin.ok()) return pin.status();
    FillPage(**pin, index);
  }
  return absl::OkStatus();
}

// Checks that each page of [address, address + count pages) holds the pattern of
// DirtyPages (each pin may page in, which verifies the slot's checksum).
absl::Status CheckPages(Map& map, uint64_t address, uint64_t count) {
  for (uint64_t index = 0; index < count; ++index) {
    absl::StatusOr<Pin<PageWords>> pin =
        map.Pin<PageWords>(address + index * kPageSize, Access::kRead);
    if (!pin.ok()) return pin.status();
    for (uint64_t word = 0; word < kWordsPerPage; ++word) {
      if ((**pin)[word] != PatternWord(index, word)) {
        return absl::DataLossError(absl::StrFormat("page %d word %d: read %d, wrote %d", index,
                                                   word, (**pin)[word], PatternWord(index, word)));
      }
    }
  }
  return absl::OkStatus();
}

// The difference of two snapshots' event counters, as counters per iteration.
void AddStatsCounters(benchmark::State& state, const StatsSnapshot& before,
                      const StatsSnapshot& after) {
  auto per_iteration = [&](const char* name, uint64_t then, uint64_t now) {
    state.counters[name] =
        benchmark::Counter(static_cast<double>(now - then), benchmark::Counter::kAvgIterations);
  };
  per_iteration("faults", before.faults, after.faults);
  per_iteration("zero_fills", before.zero_fills, after.zero_fills);
  per_iteration("pageins", before.pageins, after.pageins);
  per_iteration("pageouts", before.pageouts, after.pageouts);
  per_iteration("clean_evictions", before.clean_evictions, after.clean_evictions);
  per_iteration("migrations", before.migrations, after.migrations);
}

// Setup callbacks cannot fail a benchmark; they leave the reason here and the
// benchmark reports it with SkipWithError before its loop.
std::string setup_error;

bool SetupFailed(benchmark::State& state) {
  if (setup_error.empty()) return false;
  state.SkipWithError(setup_error.c_str());
  return true;
}

void FailSetup(const absl::Status& status) { setup_error = status.ToString(); }

// ---------------------------------------------------------------------------------
// Pins of resident pages, against an uncontended mutex.

// Pages pinned in turn by each thread: 64 pages, one cache line of each (the T
// pinned is a uint64_t at the page's start), stay in L1 and L2 with their entries,
// radix nodes and frame descriptors: the loop measures the path, not cache misses.
constexpr uint64_t kResidentPages = 64;
// Pinned pages are kPinStride pages apart, each in a radix leaf of its own. The
// pinned index is the middle of its stride, so no pin takes the table's direct
// entries (indices 0-3).
constexpr uint64_t kPinStride = PageTable::kFanout;
// Regions allocated whatever the thread count, so every run walks the same tree:
// two regions of (64 + 8 spacer) strides reach index 18,431, past 128^2, so the
// tree has height 3 and every pin reads the root, two inner nodes and a leaf, as in
// a submap of more than 64 MiB of 4 KiB pages.
constexpr int kPinRegions = 2;
// RAM for the pin fixture: every page of the regions fits with room to spare (no
// pager activity); the frames touched are only the pinned pages.
constexpr uint64_t kPinRamBytes = uint64_t{128} << 20;
constexpr uint64_t kPinSwapBytes = uint64_t{64} << 20;

struct ResidentPinFixture {
  VmFixture vm;
  std::vector<std::vector<uint64_t>> addresses;  // per thread, kResidentPages each
  uint64_t shared_lines = 0;                     // SharedDescriptorLines of the pinned pages
};
std::unique_ptr<ResidentPinFixture> resident_pins;

// Where the frames of the threads' pages fall, which decides whether two threads'
// wire counts share cache lines (a FrameDesc is 40 bytes: 1.6 per line).
enum class FrameLayout {
  // Pages faulted in round-robin across the threads: neighbouring frames, and so
  // frame descriptors, belong to different threads, as when server threads fault
  // concurrently.
  kInterleaved,
  // Each thread's pages faulted together, then a block of spare pages before the
  // next thread's: no descriptor line holds two threads' pinned pages (checked).
  // Isolates the cost of sharing those lines.
  kOwnLines,
};
// Spare pages after each thread's in kOwnLines: one buddy block of order 3. The
// allocator hands out frames in runs of 8, so a whole block keeps the next thread's
// frames at least 8 descriptors (320 bytes) away.
constexpr uint64_t kSpacerPages = uint64_t{1} << kMaxOrder;

// x86-64's cache line, the unit in which cores pass a written wire count around.
constexpr uintptr_t kCacheLineBytes = 64;

// Frame-descriptor cache lines that hold pinned pages of more than one thread.
uint64_t SharedDescriptorLines(Vm& vm, const Map& map,
                               const std::vector<std::vector<uint64_t>>& addresses) {
  std::map<uintptr_t, std::set<size_t>> threads_of_line;
  for (size_t thread = 0; thread < addresses.size(); ++thread) {
    for (uint64_t address : addresses[thread]) {
      const uint64_t pte = map.page_table().Find((address - map.base()) / map.page_bytes())->load();
      const FrameNumber frame = static_cast<FrameNumber>(Pte::Payload(pte));
      const auto first = reinterpret_cast<uintptr_t>(&vm.frames().desc(frame));
      const uintptr_t last = first + sizeof(FrameDesc) - 1;
      for (uintptr_t line = first / kCacheLineBytes; line <= last / kCacheLineBytes; ++line) {
        threads_of_line[line].insert(thread);
      }
    }
  }
  uint64_t shared = 0;
  for (const auto& [line, threads] : threads_of_line) shared += threads.size() > 1 ? 1 : 0;
  return shared;
}

// One region of (kResidentPages + kSpacerPages) * kPinStride pages per thread.
void SetUpResidentPins(const benchmark::State& state, FrameLayout layout) {
  assert(state.threads() <= kPinRegions);
  setup_error.clear();
  absl::StatusOr<VmFixture> vm = MakeVm(kPinRamBytes, kPinSwapBytes, /*pager_thread=*/true);
  if (!vm.ok()) return FailSetup(vm.status());
  resident_pins = std::make_unique<ResidentPinFixture>();
  resident_pins->vm = *std::move(vm);
  Map& map = *resident_pins->vm.pages;
  const int threads = state.threads();
  const uint64_t pages_per_thread = kResidentPages + kSpacerPages;
  std::vector<uint64_t> regions;
  for (int thread = 0; thread < kPinRegions; ++thread) {
    absl::StatusOr<uint64_t> region = map.Alloc(pages_per_thread * kPinStride * kPageSize);
    if (!region.ok()) return FailSetup(region.status());
    regions.push_back(*region);
  }
  resident_pins->addresses.resize(threads);
  for (uint64_t step = 0; step < pages_per_thread * threads; ++step) {
    const bool interleaved = layout == FrameLayout::kInterleaved;
    const uint64_t page = interleaved ? step / threads : step % pages_per_thread;
    const int thread = static_cast<int>(interleaved ? step % threads : step / pages_per_thread);
    if (interleaved && page >= kResidentPages) continue;  // no spacers needed
    const uint64_t address = regions[thread] + (page * kPinStride + kPinStride / 2) * kPageSize;
    absl::StatusOr<Pin<uint64_t>> pin = map.Pin<uint64_t>(address, Access::kWrite);
    if (!pin.ok()) return FailSetup(pin.status());
    **pin = address;
    if (page < kResidentPages) resident_pins->addresses[thread].push_back(address);
  }
  resident_pins->shared_lines =
      SharedDescriptorLines(*resident_pins->vm.vm, map, resident_pins->addresses);
  if (layout == FrameLayout::kOwnLines && resident_pins->shared_lines != 0) {
    FailSetup(absl::InternalError(absl::StrFormat(
        "%d frame-descriptor lines shared between threads", resident_pins->shared_lines)));
  }
}

void SetUpResidentPinsInterleaved(const benchmark::State& state) {
  SetUpResidentPins(state, FrameLayout::kInterleaved);
}
void SetUpResidentPinsOwnLines(const benchmark::State& state) {
  SetUpResidentPins(state, FrameLayout::kOwnLines);
}
void TearDownResidentPins(const benchmark::State&) { resident_pins.reset(); }

// An uncontended lock and unlock, in a process that has had a second thread (see
// main): the cost of the cheapest way to make a structure safe to share.
void BM_MutexLockUnlock(benchmark::State& state) {
  std::mutex mu;
  uint64_t guarded = 0;
  for (auto _ : state) {
    std::lock_guard<std::mutex> lock(mu);
    ++guarded;
  }
  benchmark::DoNotOptimize(guarded);
}
BENCHMARK(BM_MutexLockUnlock)->UseRealTime();

// Not a target's baseline: the lock every vm/ slow path takes (frames, queues,
// swap slots, the wired-count registry), as the installed Abseil builds it.
void BM_AbslMutexLockUnlock(benchmark::State& state) {
  absl::Mutex mu;
  uint64_t guarded = 0;
  for (auto _ : state) {
    absl::MutexLock lock(&mu);
    ++guarded;
  }
  benchmark::DoNotOptimize(guarded);
}
BENCHMARK(BM_AbslMutexLockUnlock)->UseRealTime();

// One pin and unpin per iteration, each thread cycling through its own pages. The
// value read is the pin's use (a pin is taken to read something); it is one L1 hit.
//
// "pin_time" is the wall time of one pin as one thread sees it: Google Benchmark
// sums iterations over the threads and, with UseRealTime, averages the threads' wall
// times, so its own "Time" column is wall time / (pins of all threads): with two
// threads running in parallel it is half of what each pin takes. The counter is
// iterations of this thread, summed over threads (Counter's sum), divided by the
// number of threads (kAvgThreads: pins per thread) and by the wall time (kIsRate),
// and inverted: wall seconds per pin per thread, the figure that compares with one
// thread's. The "CPU" column is CPU time summed over threads per pin of all threads:
// per-pin CPU cost, which contention raises and preemption does not. On a shared
// machine the summary also prints how many CPUs the threads had at once (CPU time /
// wall time): below 2 the threads were not always running together.
void RunPinLoop(benchmark::State& state) {
  if (SetupFailed(state)) return;
  Map& map = *resident_pins->vm.pages;
  const std::vector<uint64_t>& addresses = resident_pins->addresses[state.thread_index()];
  const StatsSnapshot before = resident_pins->vm.vm->ReadStats();
  uint64_t next = 0;
  uint64_t sum = 0;
  for (auto _ : state) {
    absl::StatusOr<Pin<uint64_t>> pin = map.Pin<uint64_t>(addresses[next], Access::kRead);
    if (!pin.ok()) [[unlikely]] {
      state.SkipWithError(pin.status().ToString().c_str());
      break;
    }
    sum += **pin;
    next = (next + 1) % kResidentPages;
  }
  benchmark::DoNotOptimize(sum);
  state.counters["pin_time"] =
      benchmark::Counter(static_cast<double>(state.iterations()),
                         benchmark::Counter::kAvgThreadsRate | benchmark::Counter::kInvert);
  if (state.thread_index() == 0) {
    // Slow paths taken while pinning resident pages: expected 0.
    const StatsSnapshot after = resident_pins->vm.vm->ReadStats();
    state.counters["faults"] = static_cast<double>(after.faults - before.faults);
    state.counters["shared_desc_lines"] = static_cast<double>(resident_pins->shared_lines);
  }
}

void BM_PinResident(benchmark::State& state) { RunPinLoop(state); }
BENCHMARK(BM_PinResident)
    ->Setup(SetUpResidentPinsInterleaved)
    ->Teardown(TearDownResidentPins)
    ->UseRealTime();

void BM_PinResidentThreads(benchmark::State& state) { RunPinLoop(state); }
BENCHMARK(BM_PinResidentThreads)
    ->Setup(SetUpResidentPinsInterleaved)
    ->Teardown(TearDownResidentPins)
    ->Threads(2)
    ->UseRealTime();

// As BM_PinResidentThreads, with no frame-descriptor line shared between threads.
void BM_PinResidentThreadsOwnLines(benchmark::State& state) { RunPinLoop(state); }
BENCHMARK(BM_PinResidentThreadsOwnLines)
    ->Setup(SetUpResidentPinsOwnLines)
    ->Teardown(TearDownResidentPins)
    ->Threads(2)
    ->UseRealTime();

// The pin without its lookup: the caller remembers each page's entry and frame (as
// the UBC window cache does) and calls Vm::TryWire, then Unwire. What is left of
// BM_PinResident is the radix walk and the StatusOr/Pin wrapping.
void BM_PinTryWire(benchmark::State& state) {
  if (SetupFailed(state)) return;
  Vm& vm = *resident_pins->vm.vm;
  Map& map = *resident_pins->vm.pages;
  struct Translation {
    Entry* entry;
    FrameNumber frame;
    uint64_t offset;  // of the T in the frame
  };
  std::vector<Translation> translations;
  for (uint64_t address : resident_pins->addresses[0]) {
    Entry* entry = map.page_table().Find((address - map.base()) / map.page_bytes());
    const uint64_t pte = entry->load(std::memory_order_acquire);
    translations.push_back({entry, static_cast<FrameNumber>(Pte::Payload(pte)),
                            (address - map.base()) % map.page_bytes()});
  }
  uint64_t next = 0;
  uint64_t sum = 0;
  for (auto _ : state) {
    const Translation& translation = translations[next];
    if (!vm.TryWire(*translation.entry, translation.frame, Access::kRead)) [[unlikely]] {
      state.SkipWithError("a resident page moved");
      break;
    }
    sum += *reinterpret_cast<const uint64_t*>(vm.frames().Address(translation.frame) +
                                              translation.offset);
    vm.Unwire(translation.frame);
    next = (next + 1) % kResidentPages;
  }
  benchmark::DoNotOptimize(sum);
}
BENCHMARK(BM_PinTryWire)
    ->Setup(SetUpResidentPinsInterleaved)
    ->Teardown(TearDownResidentPins)
    ->UseRealTime();

// ---------------------------------------------------------------------------------
// First touch of a page: the vm's zero-fill fault against the host kernel's.

// Pages allocated at a time; the next batch is allocated (and the last freed) with
// the timer paused, so each iteration is one fault and its unpin, and the clock
// reads of a pause are spread over 1024 faults. 4 MiB is far from the fixture's RAM, so the
// pager never runs.
constexpr uint64_t kTouchBatchPages = 1024;
constexpr uint64_t kZeroFillRamBytes = uint64_t{64} << 20;
constexpr uint64_t kZeroFillSwapBytes = uint64_t{64} << 20;

struct ZeroFillFixture {
  VmFixture vm;
  uint64_t batch = 0;  // address of the current batch of kTouchBatchPages pages
};
std::unique_ptr<ZeroFillFixture> zero_fill;

void SetUpZeroFill(const benchmark::State&) {
  setup_error.clear();
  absl::StatusOr<VmFixture> vm =
      MakeVm(kZeroFillRamBytes, kZeroFillSwapBytes, /*pager_thread=*/true);
  if (!vm.ok()) return FailSetup(vm.status());
  zero_fill = std::make_unique<ZeroFillFixture>();
  zero_fill->vm = *std::move(vm);
  Map& map = *zero_fill->vm.pages;
  // Warm up: two batches through the frames, so the host has mapped the frames the
  // loop will get back from the buddy allocator (the first touch of a frame is also
  // a host page fault, which a running ptmpfs has long paid).
  for (int round = 0; round < 2; ++round) {
    absl::StatusOr<uint64_t> batch = map.Alloc(kTouchBatchPages * kPageSize);
    if (!batch.ok()) return FailSetup(batch.status());
    if (absl::Status dirtied = DirtyPages(map, *batch, kTouchBatchPages); !dirtied.ok()) {
      return FailSetup(dirtied);
    }
    map.Free(*batch, kTouchBatchPages * kPageSize);
  }
  absl::StatusOr<uint64_t> batch = map.Alloc(kTouchBatchPages * kPageSize);
  if (!batch.ok()) return FailSetup(batch.status());
  zero_fill->batch = *batch;
}

void TearDownZeroFill(const benchmark::State&) { zero_fill.reset(); }

// Each iteration pins a fresh page for write (fault: frame, zero fill, queue), stores
// one word and unpins. Alloc and Free of the pages are outside the timing.
void BM_ZeroFillFault(benchmark::State& state) {
  if (SetupFailed(state)) return;
  Map& map = *zero_fill->vm.pages;
  const StatsSnapshot before = zero_fill->vm.vm->ReadStats();
  uint64_t next = 0;
  for (auto _ : state) {
    if (next == kTouchBatchPages) [[unlikely]] {
      state.PauseTiming();
      map.Free(zero_fill->batch, kTouchBatchPages * kPageSize);
      absl::StatusOr<uint64_t> batch = map.Alloc(kTouchBatchPages * kPageSize);
      if (!batch.ok()) {
        state.SkipWithError(batch.status().ToString().c_str());
        break;
      }
      zero_fill->batch = *batch;
      next = 0;
      state.ResumeTiming();
    }
    absl::StatusOr<Pin<uint64_t>> pin =
        map.Pin<uint64_t>(zero_fill->batch + next * kPageSize, Access::kWrite);
    if (!pin.ok()) [[unlikely]] {
      state.SkipWithError(pin.status().ToString().c_str());
      break;
    }
    **pin = next;
    ++next;
  }
  AddStatsCounters(state, before, zero_fill->vm.vm->ReadStats());
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ZeroFillFault)->Setup(SetUpZeroFill)->Teardown(TearDownZeroFill)->UseRealTime();

// The baseline: the host kernel's first touch of an anonymous 4 KiB page (fault,
// zeroed page, map). MADV_NOHUGEPAGE keeps it at 4 KiB pages; MADV_DONTNEED with
// the timer paused gives the batch back.
void BM_HostFirstTouch(benchmark::State& state) {
  const size_t bytes = kTouchBatchPages * kPageSize;
  void* mapped = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mapped == MAP_FAILED) {
    state.SkipWithError("mmap failed");
    return;
  }
  madvise(mapped, bytes, MADV_NOHUGEPAGE);
  volatile char* region = static_cast<char*>(mapped);
  uint64_t next = 0;
  for (auto _ : state) {
    if (next == kTouchBatchPages) [[unlikely]] {
      state.PauseTiming();
      madvise(mapped, bytes, MADV_DONTNEED);
      next = 0;
      state.ResumeTiming();
    }
    region[next * kPageSize] = 1;
    ++next;
  }
  munmap(mapped, bytes);
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_HostFirstTouch)->UseRealTime();

// ---------------------------------------------------------------------------------
// Random 4 KiB reads: page-ins through the pager against pread of a cached file.

// 64 MiB: 16 Ki pages, 64 times the page-in fixture's RAM, so nearly every pin
// misses (1/64 hit), and small enough to stay in the host page cache.
constexpr uint64_t kRandomReadBytes = uint64_t{64} << 20;
constexpr uint64_t kRandomReadPages = kRandomReadBytes / kPageSize;
// The page-in fixture's RAM budget: 1 MiB (256 frames).
constexpr uint64_t kPageInRamBytes = uint64_t{1} << 20;
// Swap: twice the pages. The pager writes each cluster into a run of neighbouring
// free slots, and a file at most half full always has such runs.
constexpr uint64_t kPageInSwapBytes = uint64_t{128} << 20;

struct PreadFixture {
  std::unique_ptr<TempFile> file;
  std::vector<uint32_t> blocks;
};
std::unique_ptr<PreadFixture> pread_fixture;

// Writes the file through the page cache (so it is cached, as the swap file of the
// subject is) with the same contents the subject's pages hold.
void SetUpPread(const benchmark::State&) {
  setup_error.clear();
  absl::StatusOr<std::unique_ptr<TempFile>> file = TempFile::Create();
  if (!file.ok()) return FailSetup(file.status());
  pread_fixture = std::make_unique<PreadFixture>();
  pread_fixture->file = *std::move(file);
  constexpr uint64_t kChunkPages = 256;  // 1 MiB per pwrite
  AlignedBuffer chunk = AllocateAligned(kChunkPages * kPageSize);
  for (uint64_t first = 0; first < kRandomReadPages; first += kChunkPages) {
    for (uint64_t page = 0; page < kChunkPages; ++page) {
      FillPage(reinterpret_cast<uint64_t*>(chunk.get() + page * kPageSize), first + page);
    }
    const ssize_t written = pwrite(pread_fixture->file->fd(), chunk.get(), kChunkPages * kPageSize,
                                   static_cast<off_t>(first * kPageSize));
    if (written != static_cast<ssize_t>(kChunkPages * kPageSize)) {
      return FailSetup(absl::ErrnoToStatus(errno, "pwrite of the pread file"));
    }
  }
  pread_fixture->blocks = RandomSequence(kRandomReadPages);
}

void TearDownPread(const benchmark::State&) { pread_fixture.reset(); }

void BM_PreadRandom4K(benchmark::State& state) {
  if (SetupFailed(state)) return;
  const int fd = pread_fixture->file->fd();
  const std::vector<uint32_t>& blocks = pread_fixture->blocks;
  AlignedBuffer buffer = AllocateAligned(kPageSize);
  uint64_t next = 0;
  uint64_t sum = 0;
  for (auto _ : state) {
    const uint64_t block = blocks[next++ % kRandomSequenceLength];
    const ssize_t read = pread(fd, buffer.get(), kPageSize, static_cast<off_t>(block * kPageSize));
    if (read != static_cast<ssize_t>(kPageSize)) [[unlikely]] {
      state.SkipWithError("pread failed");
      break;
    }
    sum += *reinterpret_cast<uint64_t*>(buffer.get());
  }
  benchmark::DoNotOptimize(sum);
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * kPageSize));
}
BENCHMARK(BM_PreadRandom4K)->Setup(SetUpPread)->Teardown(TearDownPread)->UseRealTime();

// What every page-in must do whatever the vm around it: the same pread, but into the
// least recently used of as many page buffers as the page-in fixture has frames
// (kPageInRamBytes), as an eviction hands the fault its frame, and an xxh3 of the
// page, as the page-in checks it. The page-in's own cost is what it takes beyond this.
void BM_PreadChecksumRandom4K(benchmark::State& state) {
  if (SetupFailed(state)) return;
  const int fd = pread_fixture->file->fd();
  const std::vector<uint32_t>& blocks = pread_fixture->blocks;
  constexpr uint64_t kBuffers = kPageInRamBytes / kPageSize;
  AlignedBuffer buffers = AllocateAligned(kBuffers * kPageSize);
  memset(buffers.get(), 0, kBuffers * kPageSize);
  uint64_t next = 0;
  uint64_t sum = 0;
  for (auto _ : state) {
    const uint64_t block = blocks[next % kRandomSequenceLength];
    char* const buffer = buffers.get() + (next++ % kBuffers) * kPageSize;
    const ssize_t read = pread(fd, buffer, kPageSize, static_cast<off_t>(block * kPageSize));
    if (read != static_cast<ssize_t>(kPageSize)) [[unlikely]] {
      state.SkipWithError("pread failed");
      break;
    }
    sum += XXH3_64bits_dispatch(buffer, kPageSize);
  }
  benchmark::DoNotOptimize(sum);
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * kPageSize));
}
BENCHMARK(BM_PreadChecksumRandom4K)->Setup(SetUpPread)->Teardown(TearDownPread)->UseRealTime();

struct PageInFixture {
  VmFixture vm;
  uint64_t address = 0;  // of kRandomReadPages pages
  std::vector<uint32_t> pages;
};
std::unique_ptr<PageInFixture> page_in;

// A Vm of 1 MiB with the pager thread, as ptmpfs runs it; 64 MiB of pages written
// once (the pager writes them out in clusters as RAM fills) and then all evicted, so
// the loop starts with every page in swap and the swap file in the host page cache.
void SetUpPageIn(const benchmark::State&) {
  setup_error.clear();
  absl::StatusOr<VmFixture> vm = MakeVm(kPageInRamBytes, kPageInSwapBytes, /*pager_thread=*/true);
  if (!vm.ok()) return FailSetup(vm.status());
  page_in = std::make_unique<PageInFixture>();
  page_in->vm = *std::move(vm);
  Map& map = *page_in->vm.pages;
  absl::StatusOr<uint64_t> address = map.Alloc(kRandomReadBytes);
  if (!address.ok()) return FailSetup(address.status());
  page_in->address = *address;
  if (absl::Status dirtied = DirtyPages(map, *address, kRandomReadPages); !dirtied.ok()) {
    return FailSetup(dirtied);
  }
  page_in->vm.vm->pager().Reclaim(page_in->vm.vm->frames().count());
  page_in->pages = RandomSequence(kRandomReadPages);
}

void TearDownPageIn(const benchmark::State&) { page_in.reset(); }

// Each iteration pins a random page for read: a page-in (frame, preadv of the slot,
// xxh3 of the page against the checksum kept at page-out) and, to make room, the
// eviction of a clean page (its swap copy kept, no I/O) by the pager thread or by
// direct reclaim. The first word is checked against what was written. Bytes count
// the pages actually read from swap (a pin that finds its page resident, about 1
// in 64, moves none).
void BM_PageInRandom4K(benchmark::State& state) {
  if (SetupFailed(state)) return;
  Map& map = *page_in->vm.pages;
  const std::vector<uint32_t>& pages = page_in->pages;
  const StatsSnapshot before = page_in->vm.vm->ReadStats();
  uint64_t next = 0;
  for (auto _ : state) {
    const uint64_t index = pages[next++ % kRandomSequenceLength];
    absl::StatusOr<Pin<uint64_t>> pin =
        map.Pin<uint64_t>(page_in->address + index * kPageSize, Access::kRead);
    if (!pin.ok()) [[unlikely]] {
      state.SkipWithError(pin.status().ToString().c_str());
      break;
    }
    if (**pin != PatternWord(index, 0)) [[unlikely]] {
      state.SkipWithError("a page read back with the wrong contents");
      break;
    }
  }
  const StatsSnapshot after = page_in->vm.vm->ReadStats();
  AddStatsCounters(state, before, after);
  state.counters["checksum_failures"] =
      static_cast<double>(after.checksum_failures - before.checksum_failures);
  state.SetBytesProcessed(static_cast<int64_t>((after.pageins - before.pageins) * kPageSize));
}
BENCHMARK(BM_PageInRandom4K)->Setup(SetUpPageIn)->Teardown(TearDownPageIn)->UseRealTime();

// ---------------------------------------------------------------------------------
// Clustered writes: the pager's page-out against pwritev of the same shape.

constexpr int kClusterPages = Pager::kMaxCluster;  // 64 pages: one 256 KiB pwritev
// Pages written per timed Reclaim: 512 KiB (2 clusters), about what the pager thread
// frees per wake-up in a 64 MiB budget (twice the low watermark, 1/64 of the frames),
// so Reclaim's fixed cost is amortised as in service.
constexpr uint64_t kPageOutPages = 128;
constexpr uint64_t kClustersPerReclaim = kPageOutPages / kClusterPages;
static_assert(kPageOutPages % kClusterPages == 0);
// Both sides write through a 64 MiB stretch of a file in sequence and wrap: the
// swap slots' next-fit cursor runs through the first backing chunk the same way.
constexpr uint64_t kWriteSpanBytes = Swap::kBackingChunkSlots * kPageSize;
constexpr uint64_t kPageOutRamBytes = uint64_t{16} << 20;
constexpr uint64_t kPageOutSwapBytes = uint64_t{128} << 20;

struct PwriteFixture {
  std::unique_ptr<TempFile> file;
  AlignedBuffer pages;  // kPageOutPages pages
};
std::unique_ptr<PwriteFixture> pwrite_fixture;

// The file gets its blocks as the swap file does (fallocate of the span), so both
// sides write into allocated, not yet written blocks through the page cache.
void SetUpPwrite(const benchmark::State&) {
  setup_error.clear();
  absl::StatusOr<std::unique_ptr<TempFile>> file = TempFile::Create();
  if (!file.ok()) return FailSetup(file.status());
  pwrite_fixture = std::make_unique<PwriteFixture>();
  pwrite_fixture->file = *std::move(file);
  if (fallocate(pwrite_fixture->file->fd(), 0, 0, static_cast<off_t>(kWriteSpanBytes)) != 0) {
    return FailSetup(absl::ErrnoToStatus(errno, "fallocate of the pwrite file"));
  }
  pwrite_fixture->pages = AllocateAligned(kPageOutPages * kPageSize);
}

void TearDownPwrite(const benchmark::State&) { pwrite_fixture.reset(); }

// The same shape as BM_PageOutClustered, without the vm: each iteration writes the
// pattern into 128 distinct pages with the timer paused (as the subject dirties its
// pages), then writes them out as pwritev calls of a cluster each at sequential offsets.
// Pages written just before are the fair source: from one hot 64 KiB buffer, pwritev
// took 6.5 us per cluster here against 11.4 us from 128 just-written pages, a gap
// that is the source's cache state, not anything vm/ does.
void BM_PwriteClustered(benchmark::State& state) {
  if (SetupFailed(state)) return;
  const int fd = pwrite_fixture->file->fd();
  char* const pages = pwrite_fixture->pages.get();
  constexpr uint64_t kClusterBytes = kClusterPages * kPageSize;
  uint64_t offset = 0;
  for (auto _ : state) {
    state.PauseTiming();
    for (uint64_t page = 0; page < kPageOutPages; ++page) {
      FillPage(reinterpret_cast<uint64_t*>(pages + page * kPageSize), page);
    }
    state.ResumeTiming();
    for (uint64_t cluster = 0; cluster < kClustersPerReclaim; ++cluster) {
      iovec iov[kClusterPages];
      for (int page = 0; page < kClusterPages; ++page) {
        iov[page] = {pages + (cluster * kClusterPages + page) * kPageSize, kPageSize};
      }
      const ssize_t written = pwritev(fd, iov, kClusterPages, static_cast<off_t>(offset));
      if (written != static_cast<ssize_t>(kClusterBytes)) [[unlikely]] {
        state.SkipWithError("pwritev failed");
        break;
      }
      offset = (offset + kClusterBytes) % kWriteSpanBytes;
    }
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * kPageOutPages * kPageSize));
}
BENCHMARK(BM_PwriteClustered)->Setup(SetUpPwrite)->Teardown(TearDownPwrite)->UseRealTime();

struct PageOutFixture {
  VmFixture vm;
  uint64_t address = 0;  // of kPageOutPages pages
};
std::unique_ptr<PageOutFixture> page_out;

// No pager thread: the loop calls Reclaim itself and nothing else evicts. The first
// backing chunk of the swap file is allocated here, not in the first timed Reclaim.
void SetUpPageOut(const benchmark::State&) {
  setup_error.clear();
  absl::StatusOr<VmFixture> vm =
      MakeVm(kPageOutRamBytes, kPageOutSwapBytes, /*pager_thread=*/false);
  if (!vm.ok()) return FailSetup(vm.status());
  page_out = std::make_unique<PageOutFixture>();
  page_out->vm = *std::move(vm);
  if (absl::Status backed = page_out->vm.vm->swap()->EnsureBacked(Swap::kBackingChunkSlots);
      !backed.ok()) {
    return FailSetup(backed);
  }
  absl::StatusOr<uint64_t> address = page_out->vm.pages->Alloc(kPageOutPages * kPageSize);
  if (!address.ok()) return FailSetup(address.status());
  page_out->address = *address;
}

void TearDownPageOut(const benchmark::State&) { page_out.reset(); }

// With the timer paused, each iteration frees the pages written last time (their
// slots go back), allocates them again and dirties them in index order (zero-fill
// faults, no I/O), so the queues hold exactly these pages, oldest first. The timed
// part is one Reclaim of them all: queue scan, cluster gathering, slot allocation,
// xxh3 of each page and one pwritev per cluster. Afterwards the last batch is paged
// back in and compared, which checks every checksum of it.
void BM_PageOutClustered(benchmark::State& state) {
  if (SetupFailed(state)) return;
  Vm& vm = *page_out->vm.vm;
  Map& map = *page_out->vm.pages;
  const StatsSnapshot before = vm.ReadStats();
  for (auto _ : state) {
    state.PauseTiming();
    map.Free(page_out->address, kPageOutPages * kPageSize);
    absl::StatusOr<uint64_t> address = map.Alloc(kPageOutPages * kPageSize);
    absl::Status dirtied =
        address.ok() ? DirtyPages(map, *address, kPageOutPages) : address.status();
    if (!dirtied.ok()) {
      state.SkipWithError(dirtied.ToString().c_str());
      break;
    }
    page_out->address = *address;
    state.ResumeTiming();
    const uint64_t freed = vm.pager().Reclaim(kPageOutPages);
    if (freed != kPageOutPages) [[unlikely]] {
      state.SkipWithError(
          absl::StrFormat("Reclaim freed %d of %d frames", freed, kPageOutPages).c_str());
      break;
    }
  }
  const StatsSnapshot after = vm.ReadStats();
  if (absl::Status checked = CheckPages(map, page_out->address, kPageOutPages); !checked.ok()) {
    state.SkipWithError(checked.ToString().c_str());
  }
  AddStatsCounters(state, before, after);
  const uint64_t ios = after.pageout_ios - before.pageout_ios;
  state.counters["cluster_pages"] =
      ios == 0 ? 0.0 : static_cast<double>(after.pageouts - before.pageouts) / ios;
  state.SetBytesProcessed(static_cast<int64_t>((after.pageouts - before.pageouts) * kPageSize));
}
BENCHMARK(BM_PageOutClustered)->Setup(SetUpPageOut)->Teardown(TearDownPageOut)->UseRealTime();

// ---------------------------------------------------------------------------------
// The summary.

// How a pair is compared. Times are per operation of one thread: wall time (the
// figure the targets are stated in) and CPU time beside it (which preemption by other
// work on a shared machine does not inflate). Rates are Google Benchmark's
// bytes_per_second, on the wall clock (UseRealTime).
enum class Measure { kTimePerOperation, kBytesPerSecond };

struct Comparison {
  const char* subject;
  const char* baseline;
  Measure measure;
  const char* target;
};

constexpr Comparison kComparisons[] = {
    {"BM_PinResident", "BM_MutexLockUnlock", Measure::kTimePerOperation, "target <= 2.0"},
    {"BM_PinResidentThreads", "BM_PinResident", Measure::kTimePerOperation, "target <= 1.5"},
    {"BM_ZeroFillFault", "BM_HostFirstTouch", Measure::kTimePerOperation, "no target"},
    {"BM_PageInRandom4K", "BM_PreadRandom4K", Measure::kBytesPerSecond, "target >= 0.7"},
    {"BM_PageOutClustered", "BM_PwriteClustered", Measure::kBytesPerSecond, "target >= 0.7"},
    // Decomposition: not targets, but where the figures above come from.
    {"BM_PinResidentThreadsOwnLines", "BM_PinResident", Measure::kTimePerOperation,
     "no descriptor line shared"},
    {"BM_PinTryWire", "BM_MutexLockUnlock", Measure::kTimePerOperation, "pin without its walk"},
    {"BM_AbslMutexLockUnlock", "BM_MutexLockUnlock", Measure::kTimePerOperation,
     "vm/'s slow-path lock"},
    {"BM_PageInRandom4K", "BM_PreadChecksumRandom4K", Measure::kBytesPerSecond,
     "against the floor: pread into an LRU buffer + xxh3"},
    {"BM_PreadChecksumRandom4K", "BM_PreadRandom4K", Measure::kBytesPerSecond,
     "the floor against the baseline"},
};

// Wall seconds per operation of one thread: each thread did iterations / threads
// operations in the (thread-averaged) wall time.
double WallPerOperation(const benchmark::BenchmarkReporter::Run& run) {
  return run.real_accumulated_time / (static_cast<double>(run.iterations) / run.threads);
}

// CPU seconds per operation: CPU time is summed over the threads.
double CpuPerOperation(const benchmark::BenchmarkReporter::Run& run) {
  return run.cpu_accumulated_time / static_cast<double>(run.iterations);
}

double BytesPerSecond(const benchmark::BenchmarkReporter::Run& run) {
  auto found = run.counters.find("bytes_per_second");
  return found == run.counters.end() ? 0.0 : found->second.value;
}

double Median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  const size_t middle = values.size() / 2;
  return values.size() % 2 == 1 ? values[middle] : (values[middle - 1] + values[middle]) / 2;
}

// The median of f over the runs, and f(subject i) / f(baseline i) per repetition.
struct Figures {
  double subject;
  double baseline;
  std::string per_repetition;
};

template <typename F>
Figures Compare(const std::vector<benchmark::BenchmarkReporter::Run>& subject,
                const std::vector<benchmark::BenchmarkReporter::Run>& baseline, F f) {
  std::vector<double> subject_values;
  std::vector<double> baseline_values;
  for (const auto& run : subject) subject_values.push_back(f(run));
  for (const auto& run : baseline) baseline_values.push_back(f(run));
  std::vector<std::string> ratios;
  for (size_t i = 0; i < std::min(subject_values.size(), baseline_values.size()); ++i) {
    ratios.push_back(absl::StrFormat("%.2f", subject_values[i] / baseline_values[i]));
  }
  return {Median(subject_values), Median(baseline_values), absl::StrJoin(ratios, " ")};
}

// The console table as usual, then the ratios of the pairs.
class RatioReporter : public benchmark::ConsoleReporter {
 public:
  explicit RatioReporter(OutputOptions options) : ConsoleReporter(options) {}

  void ReportRuns(const std::vector<Run>& reports) override {
    ConsoleReporter::ReportRuns(reports);
    for (const Run& run : reports) {
      if (run.run_type != Run::RT_Iteration || run.error_occurred) continue;
      runs_[run.run_name.function_name].push_back(run);
    }
  }

  void Finalize() override {
    std::ostream& out = GetOutputStream();
    out << "\nRatios: subject / baseline, medians over the repetitions; [the ratio of each "
           "repetition i]\n";
    for (const Comparison& pair : kComparisons) {
      auto subject = runs_.find(pair.subject);
      auto baseline = runs_.find(pair.baseline);
      if (subject == runs_.end() || baseline == runs_.end()) {
        out << absl::StrFormat("  %s / %s: not run\n", pair.subject, pair.baseline);
        continue;
      }
      if (pair.measure == Measure::kBytesPerSecond) {
        const Figures rate = Compare(subject->second, baseline->second, BytesPerSecond);
        out << absl::StrFormat("  %s / %s = %.2f (%s)  [%s]  %.0f / %.0f MiB/s\n", pair.subject,
                               pair.baseline, rate.subject / rate.baseline, pair.target,
                               rate.per_repetition, rate.subject / (1 << 20),
                               rate.baseline / (1 << 20));
        continue;
      }
      const Figures wall = Compare(subject->second, baseline->second, WallPerOperation);
      const Figures cpu = Compare(subject->second, baseline->second, CpuPerOperation);
      out << absl::StrFormat(
          "  %s / %s = %.2f (%s)  [%s]  %.1f / %.1f ns;  CPU time: %.2f [%s]  %.1f / %.1f ns",
          pair.subject, pair.baseline, wall.subject / wall.baseline, pair.target,
          wall.per_repetition, wall.subject * 1e9, wall.baseline * 1e9, cpu.subject / cpu.baseline,
          cpu.per_repetition, cpu.subject * 1e9, cpu.baseline * 1e9);
      if (subject->second.front().threads > 1) {
        // CPU time over wall time: how many of its threads were on a CPU at once.
        // Below 90% of the threads, they took turns on the CPUs (other work on the
        // machine), and the wall figure measures the machine rather than the pin.
        const int threads = static_cast<int>(subject->second.front().threads);
        std::vector<std::string> busy;
        bool took_turns = false;
        for (const Run& run : subject->second) {
          const double cpus = run.cpu_accumulated_time / run.real_accumulated_time;
          busy.push_back(absl::StrFormat("%.2f", cpus));
          took_turns = took_turns || cpus < 0.9 * threads;
        }
        out << absl::StrFormat(";  CPUs busy of %d: [%s]%s", threads, absl::StrJoin(busy, " "),
                               took_turns ? " (threads took turns: read the CPU time)" : "");
      }
      out << "\n";
    }
    out.flush();
  }

 private:
  std::map<std::string, std::vector<Run>> runs_;
};

}  // namespace
}  // namespace ptmpfs::vm

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  // glibc (2.34 on) runs mutexes without atomic instructions while a process has
  // never had a second thread (SINGLE_THREAD_P in pthread_mutex_lock/unlock): the
  // mutex baseline would then cost a third of what it costs in ptmpfs, which always
  // runs FUSE threads and the pager. One short-lived thread ends that mode for good,
  // before any benchmark runs.
  std::thread([] {}).join();
  // Debian's Abseil checks lock order on every absl::Mutex operation (about 25 ns
  // each); the daemon turns that off, so the benchmark measures without it too.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  ptmpfs::vm::RatioReporter reporter(isatty(STDOUT_FILENO)
                                         ? benchmark::ConsoleReporter::OO_ColorTabular
                                         : benchmark::ConsoleReporter::OO_Tabular);
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
  return 0;
}
