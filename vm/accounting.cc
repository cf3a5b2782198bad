#include "vm/accounting.h"

#include "absl/strings/str_format.h"
#include "vm/swap.h"

namespace ptmpfs::vm {

Accounting::Accounting(uint64_t frame_pages, Swap* swap, uint64_t reserve_pages)
    : frame_pages_(frame_pages),
      swap_(swap),
      capacity_(frame_pages + (swap != nullptr ? swap->slot_count() : 0)),
      reserve_(reserve_pages < capacity_ ? reserve_pages : capacity_) {}

absl::Status Accounting::Charge(uint64_t pages) { return ChargeUpTo(pages, capacity_ - reserve_); }

absl::Status Accounting::ChargeFromReserve(uint64_t pages) { return ChargeUpTo(pages, capacity_); }

absl::Status Accounting::ChargeUpTo(uint64_t pages, uint64_t limit) {
  absl::MutexLock lock(&mu_);
  uint64_t charged = charged_.load(std::memory_order_relaxed);
  if (charged + pages > limit) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "no space: %d pages charged, %d more asked, capacity %d", charged, pages, limit));
  }
  if (swap_ != nullptr && charged + pages > frame_pages_) {
    // Back the slots that pages beyond the frames may need (invariant 4).
    absl::Status backed = swap_->EnsureBacked(charged + pages - frame_pages_);
    if (!backed.ok()) return backed;
  }
  charged_.store(charged + pages, std::memory_order_relaxed);
  return absl::OkStatus();
}

void Accounting::Uncharge(uint64_t pages) {
  absl::MutexLock lock(&mu_);
  charged_.store(charged_.load(std::memory_order_relaxed) - pages, std::memory_order_relaxed);
}

}  // namespace ptmpfs::vm
