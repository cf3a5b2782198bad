#include "vm/populator.h"

#include <pthread.h>
#include <sys/mman.h>

#include <algorithm>

namespace ptmpfs::vm {
namespace {

#ifdef MADV_POPULATE_WRITE
constexpr int kMadvPopulateWrite = MADV_POPULATE_WRITE;
#else
constexpr int kMadvPopulateWrite = 23;  // Linux 5.14's value
#endif

}  // namespace

Populator::Populator(char* base, uint64_t bytes)
    : base_(base),
      bytes_(bytes),
      chunks_((bytes + kChunkBytes - 1) / kChunkBytes),
      claimed_(new std::atomic<bool>[chunks_]()),
      touched_(new std::atomic<bool>[chunks_]()),
      thread_([this] {
        pthread_setname_np(pthread_self(), "ptmpfs-fill");  // for top -H and perf
        Run();
      }) {}

Populator::~Populator() {
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  thread_.join();
}

void Populator::TouchSlow(uint64_t chunk) {
  touched_[chunk].store(true, std::memory_order_relaxed);
  ClaimAndPopulate(chunk);
  if (chunk == 0) return;
  absl::MutexLock lock(&mu_);
  // The lowest chunk asked for wins: the thread works down from it.
  if (wanted_below_ == kNoChunk || chunk < wanted_below_) wanted_below_ = chunk;
}

void Populator::ClaimAndPopulate(uint64_t chunk) {
  bool expected = false;
  if (!claimed_[chunk].compare_exchange_strong(expected, true, std::memory_order_relaxed)) {
    return;
  }
  const uint64_t offset = chunk * kChunkBytes;
  // Best effort: where the kernel lacks MADV_POPULATE_WRITE (before 5.14) the pages are
  // faulted in one by one as they are written, as they would be without us.
  madvise(base_ + offset, std::min(kChunkBytes, bytes_ - offset), kMadvPopulateWrite);
  populated_.fetch_add(1, std::memory_order_relaxed);
}

void Populator::WaitIdle() {
  absl::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(
      +[](Populator* self) {
        return self->wanted_below_ == kNoChunk && !self->busy_;
      },
      this));
}

void Populator::Run() {
  absl::MutexLock lock(&mu_);
  for (;;) {
    mu_.Await(absl::Condition(
        +[](Populator* self) {
          return self->stop_ || self->wanted_below_ != kNoChunk;
        },
        this));
    if (stop_) return;
    const uint64_t below = wanted_below_;
    wanted_below_ = kNoChunk;
    busy_ = true;
    mu_.Unlock();
    const uint64_t last = below > kAheadChunks ? below - kAheadChunks : 0;
    for (uint64_t chunk = below; chunk-- > last;) ClaimAndPopulate(chunk);
    mu_.Lock();
    busy_ = false;
  }
}

}  // namespace ptmpfs::vm
