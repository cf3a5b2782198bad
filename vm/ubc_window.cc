#include "vm/ubc_window.h"

#include <algorithm>
#include <cassert>
#include <cstring>
#include <utility>

#include "absl/strings/str_format.h"

namespace ptmpfs::vm {

namespace {

constexpr uint64_t kPageMask = kPageSize - 1;

// const and initialised: the linker puts it in .rodata, so a write through an iovec
// entry of a hole faults at once instead of corrupting every hole's contents.
alignas(kPageSize) const char kZeroPage[kPageSize] = {0};

// A hole for a reader: no page, or a zero-fill page no one is faulting in.
bool ReadsAsZeroPage(uint64_t pte) {
  return Pte::KindOf(pte) == Pte::kNone || (Pte::KindOf(pte) == Pte::kZero && !Pte::IsBusy(pte));
}

}  // namespace

const void* UbcWindow::zero_page() { return kZeroPage; }

UbcWindow::UbcWindow(AnonObject& object, uint64_t offset, uint64_t length, uint64_t page_count,
                     Access access)
    : cache_(object.window_cache() != nullptr && page_count >= object.window_cache()->min_pages()
                 ? object.window_cache()
                 : nullptr),
      generation_(object.generation()),
      first_page_(offset >> kPageShift),
      offset_(offset),
      length_(length),
      access_(access) {}

UbcWindow::UbcWindow(UbcWindow&& other) noexcept
    : vm_(std::exchange(other.vm_, nullptr)),
      cache_(other.cache_),
      generation_(other.generation_),
      first_page_(other.first_page_),
      offset_(other.offset_),
      length_(std::exchange(other.length_, 0)),
      access_(other.access_),
      has_holes_(other.has_holes_),
      pages_(std::move(other.pages_)),
      iovecs_(std::move(other.iovecs_)) {
  other.pages_.clear();
  other.iovecs_.clear();
}

UbcWindow& UbcWindow::operator=(UbcWindow&& other) noexcept {
  if (this != &other) {
    Release(/*dirty=*/false);
    vm_ = std::exchange(other.vm_, nullptr);
    cache_ = other.cache_;
    generation_ = other.generation_;
    first_page_ = other.first_page_;
    offset_ = other.offset_;
    length_ = std::exchange(other.length_, 0);
    access_ = other.access_;
    has_holes_ = other.has_holes_;
    pages_ = std::move(other.pages_);
    iovecs_ = std::move(other.iovecs_);
    other.pages_.clear();
    other.iovecs_.clear();
  }
  return *this;
}

absl::StatusOr<UbcWindow> UbcWindow::Map(AnonObject& object, uint64_t offset, uint64_t length,
                                         Access access) {
  if (offset > AnonObject::kMaxBytes || length > AnonObject::kMaxBytes - offset) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "window of %d bytes at %d ends past the largest file (2^63 bytes)", length, offset));
  }
  const uint64_t end = offset + length;
  const uint64_t page_count =
      length == 0 ? 0 : ((end + kPageMask) >> kPageShift) - (offset >> kPageShift);
  if (page_count > kMaxPages) {
    return absl::InvalidArgumentError(
        absl::StrFormat("window of %d bytes at %d spans %d pages; at most %d", length, offset,
                        page_count, kMaxPages));
  }
  if (page_count > object.vm().wired_cap()) {
    // It could only wait for its own wires to go: refuse now, not after frame_wait_ms.
    return absl::ResourceExhaustedError(
        absl::StrFormat("window of %d pages exceeds the cap of %d wired frames", page_count,
                        object.vm().wired_cap()));
  }
  UbcWindow window(object, offset, length, page_count, access);
  if (page_count == 0) {
    window.vm_ = &object.vm();
    return window;
  }
  if (window.cache_ != nullptr) {
    if (window.MapCached(object.vm())) {
      window.cache_->hits_.fetch_add(1, std::memory_order_relaxed);
      return window;
    }
    window.cache_->misses_.fetch_add(1, std::memory_order_relaxed);
  }
  if (absl::Status mapped = window.MapSlow(object); !mapped.ok()) return mapped;
  return window;
}

bool UbcWindow::MapCached(Vm& vm) {
  const uint64_t page_count = ((offset_ + length_ + kPageMask) >> kPageShift) - first_page_;
  if (!cache_->Take(WindowCache::Key{generation_, first_page_, page_count}, &pages_)) {
    return false;
  }
  assert(pages_.size() == page_count);
  for (size_t i = 0; i < pages_.size(); ++i) {
    if (!vm.TryWire(*pages_[i].entry, pages_[i].frame, access_)) {
      UnwireFirst(vm, i);
      pages_.clear();
      return false;
    }
  }
  vm_ = &vm;
  BuildIovecs(vm.frames());
  return true;
}

absl::Status UbcWindow::MapSlow(AnonObject& object) {
  Vm& vm = object.vm();
  PageTable& table = object.table();
  const uint64_t page_count = ((offset_ + length_ + kPageMask) >> kPageShift) - first_page_;
  pages_.assign(page_count, WindowPage{nullptr, kNoFrame});

  // Writers allocate the holes first, remembering them to free them again on error.
  absl::InlinedVector<PageIndex, kInlinePages> allocated;
  if (access_ == Access::kWrite) {
    for (uint64_t i = 0; i < page_count; ++i) {
      const Entry* entry = table.Find(first_page_ + i);
      if (entry == nullptr || entry->load(std::memory_order_acquire) == Pte::kNone) {
        allocated.push_back(first_page_ + i);
      }
    }
    if (absl::Status charged =
            object.AllocateRange(first_page_, first_page_ + page_count, allocated.size());
        !charged.ok()) {
      pages_.clear();
      return charged;
    }
  }

  bool read_around = true;
  for (uint64_t i = 0; i < page_count; ++i) {
    const PageIndex index = first_page_ + i;
    Entry* entry = table.Find(index);
    const uint64_t pte = entry != nullptr ? entry->load(std::memory_order_acquire) : Pte::kNone;
    if (access_ == Access::kRead && ReadsAsZeroPage(pte)) {
      pages_[i] = WindowPage{entry, kNoFrame};
      has_holes_ = true;
      continue;
    }
    if (Pte::IsResidentIdle(pte)) {
      // The fast path of Vm::Wire, without walking the table again.
      const FrameNumber frame = static_cast<FrameNumber>(Pte::Payload(pte));
      if (vm.TryWire(*entry, frame, access_)) {
        pages_[i] = WindowPage{entry, frame};
        continue;
      }
    }
    // Read-around: a read of pages that went to swap together reads them back with
    // one I/O, not one per page (what sequential reads past the budget are made of).
    if (read_around && access_ == Access::kRead && Pte::KindOf(pte) == Pte::kSwapped &&
        !Pte::IsBusy(pte) && table.page_order() == 0 && i + 1 < page_count) {
      FrameNumber run[Vm::kMaxReadAround];
      const int wired = vm.WireSwappedRun(
          table, index, static_cast<int>(std::min<uint64_t>(page_count - i, Vm::kMaxReadAround)),
          run);
      for (int k = 0; k < wired; ++k) {
        // A wired page's descriptor names its entry and cannot change under us.
        pages_[i + k] = WindowPage{vm.frames().desc(run[k]).entry, run[k]};
      }
      if (wired > 0) {
        i += static_cast<uint64_t>(wired) - 1;
        continue;
      }
      if (wired < 0) read_around = false;  // a bad slot: page by page from here
    }
    // A page the range wholly covers is about to be written in full: a zero-fill
    // fault need not zero it (Access::kOverwrite; the header's contract).
    const bool covered = (index << kPageShift) >= offset_ &&
                         ((index + 1) << kPageShift) <= offset_ + length_;
    const Access page_access =
        access_ == Access::kWrite && covered ? Access::kOverwrite : access_;
    absl::StatusOr<FrameNumber> frame = vm.Wire(table, index, page_access);
    if (!frame.ok()) {
      if (access_ == Access::kRead && absl::IsNotFound(frame.status())) {
        pages_[i] = WindowPage{table.Find(index), kNoFrame};  // freed since we looked
        has_holes_ = true;
        continue;
      }
      UnwireFirst(vm, i);
      pages_.clear();
      for (PageIndex hole : allocated) object.FreeRange(hole, hole + 1);  // invariant 3
      return frame.status();
    }
    pages_[i] = WindowPage{table.Find(index), *frame};
  }
  vm_ = &vm;
  BuildIovecs(vm.frames());
  return absl::OkStatus();
}

void UbcWindow::UnwireFirst(Vm& vm, size_t count) {
  for (size_t i = 0; i < count; ++i) {
    if (pages_[i].frame != kNoFrame) vm.Unwire(pages_[i].frame);
  }
}

void UbcWindow::BuildIovecs(const Frames& frames) {
  iovecs_.clear();
  uint64_t in_page = offset_ & kPageMask;
  uint64_t remaining = length_;
  FrameNumber previous = kNoFrame;
  for (const WindowPage& page : pages_) {
    const uint64_t bytes = std::min(kPageSize - in_page, remaining);
    if (page.frame != kNoFrame && previous != kNoFrame && page.frame == previous + 1) {
      // The frame follows the previous one in the budget's region: one entry.
      iovecs_.back().iov_len += bytes;
    } else {
      char* base = page.frame != kNoFrame ? frames.Address(page.frame)
                                          : const_cast<char*>(kZeroPage);  // invariant 2
      iovecs_.push_back(iovec{base + in_page, bytes});
    }
    previous = page.frame;
    remaining -= bytes;
    in_page = 0;
  }
  assert(remaining == 0);
}

void UbcWindow::MarkDirty(Entry& entry) {
  for (;;) {
    const uint64_t old = entry.fetch_or(Pte::kDirty, std::memory_order_relaxed);
    if (!Pte::IsBusy(old)) return;
    // A pager or migration took the page busy although we hold it wired: it will see
    // our wire and give the entry back, perhaps by storing the value it took, which
    // lacks our bit. Wait for that, then set the bit again (invariant 4).
    Vm::WaitNotBusy(entry);
  }
}

void UbcWindow::Release(bool dirty) {
  if (vm_ == nullptr) return;
  assert(!dirty || access_ == Access::kWrite);
  for (const WindowPage& page : pages_) {
    if (page.frame == kNoFrame) continue;
    if (dirty) MarkDirty(*page.entry);
    vm_->Unwire(page.frame);
  }
  if (cache_ != nullptr && !has_holes_ && !pages_.empty()) {
    cache_->Put(WindowCache::Key{generation_, first_page_, pages_.size()}, std::move(pages_));
  }
  pages_.clear();
  iovecs_.clear();
  vm_ = nullptr;
}

void UbcWindow::CopyOut(void* buffer) const {
  char* out = static_cast<char*>(buffer);
  for (const iovec& piece : iovecs_) {
    memcpy(out, piece.iov_base, piece.iov_len);
    out += piece.iov_len;
  }
}

void UbcWindow::CopyIn(const void* buffer) {
  assert(access_ == Access::kWrite);
  const char* in = static_cast<const char*>(buffer);
  for (const iovec& piece : iovecs_) {
    memcpy(piece.iov_base, in, piece.iov_len);
    in += piece.iov_len;
  }
}

WindowCache::WindowCache(int lines, uint64_t min_pages)
    : min_pages_(std::max<uint64_t>(min_pages, 1)),
      lines_(static_cast<size_t>(std::max(lines, 1))) {}

bool WindowCache::Take(const Key& key, UbcWindow::Pages* pages) {
  absl::MutexLock lock(&mu_);
  for (Line& line : lines_) {
    if (line.full && line.key == key) {
      *pages = std::move(line.pages);
      line.pages.clear();
      line.full = false;
      return true;
    }
  }
  return false;
}

void WindowCache::Put(const Key& key, UbcWindow::Pages&& pages) {
  absl::MutexLock lock(&mu_);
  Line* victim = nullptr;
  for (Line& line : lines_) {
    if (line.full && line.key == key) {
      victim = &line;
      break;
    }
    if (!line.full && victim == nullptr) victim = &line;
  }
  if (victim == nullptr) {
    victim = &*std::min_element(lines_.begin(), lines_.end(), [](const Line& a, const Line& b) {
      return a.last_used < b.last_used;
    });
  }
  victim->full = true;
  victim->key = key;
  victim->last_used = ++clock_;
  victim->pages = std::move(pages);
}

}  // namespace ptmpfs::vm
