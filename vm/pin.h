// pin: the only way to get a pointer into pageable memory (DESIGN.md, invariant 2).
//
// A Pin<T> holds one wire on the page behind a T: while it lives the page stays
// resident and in its frame, so the pointer stays valid; when it goes out of scope
// (or Release() is called) the wire is dropped and the page may be evicted or
// migrated again. Move-only. A pin is obtained from Map::Pin (address space) or an
// AnonObject; the T must lie within one page.
//
// Thread safety: a Pin is used by one thread at a time; it may be moved to another.
// Pins on the same page from several threads are fine; what they do to the T is
// their business (meta/ locks its structures).
#ifndef PTMPFS_VM_PIN_H_
#define PTMPFS_VM_PIN_H_

#include <utility>

#include "vm/frames.h"
#include "vm/vm.h"

namespace ptmpfs::vm {

template <typename T>
class Pin {
 public:
  Pin() = default;
  // Takes over a wire already held on `frame`.
  Pin(Vm* vm, FrameNumber frame, T* pointer) : vm_(vm), frame_(frame), pointer_(pointer) {}
  Pin(Pin&& other) noexcept
      : vm_(std::exchange(other.vm_, nullptr)), frame_(other.frame_), pointer_(other.pointer_) {}
  Pin& operator=(Pin&& other) noexcept {
    if (this != &other) {
      Release();
      vm_ = std::exchange(other.vm_, nullptr);
      frame_ = other.frame_;
      pointer_ = other.pointer_;
    }
    return *this;
  }
  Pin(const Pin&) = delete;
  Pin& operator=(const Pin&) = delete;
  ~Pin() { Release(); }

  T* get() const { return pointer_; }
  T& operator*() const { return *pointer_; }
  T* operator->() const { return pointer_; }
  explicit operator bool() const { return vm_ != nullptr; }
  FrameNumber frame() const { return frame_; }

  // Drops the wire now. The pointer must not be used afterwards.
  void Release() {
    if (vm_ != nullptr) std::exchange(vm_, nullptr)->Unwire(frame_);
  }

 private:
  Vm* vm_ = nullptr;
  FrameNumber frame_ = kNoFrame;
  T* pointer_ = nullptr;
};

}  // namespace ptmpfs::vm

#endif  // PTMPFS_VM_PIN_H_
