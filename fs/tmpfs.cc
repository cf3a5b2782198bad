#include "fs/tmpfs.h"

#include <dirent.h>

#include <algorithm>
#include <cassert>
#include <cerrno>

#include "absl/strings/str_format.h"

namespace ptmpfs::fs {

namespace {

// The private address space: 2^46 bytes from 4 GiB, room for every pool's submap
// (only touched pages cost).
constexpr uint64_t kSpaceBase = uint64_t{1} << 32;
constexpr uint64_t kSpaceSize = uint64_t{1} << 46;

}  // namespace

struct stat Attr::ToStat() const {
  struct stat st {};
  st.st_ino = ino;
  st.st_mode = mode;
  st.st_nlink = nlink;
  st.st_uid = uid;
  st.st_gid = gid;
  st.st_size = static_cast<off_t>(size);
  st.st_blocks = static_cast<blkcnt_t>(blocks);
  st.st_blksize = 4096;
  st.st_rdev = rdev;
  st.st_atim = atime;
  st.st_mtim = mtime;
  st.st_ctim = ctime;
  return st;
}

absl::StatusOr<std::unique_ptr<Tmpfs>> Tmpfs::Create(const Options& options) {
  std::unique_ptr<Tmpfs> fs(new Tmpfs());
  fs->options_ = options;
  absl::StatusOr<std::unique_ptr<vm::Vm>> vm = vm::Vm::Create(options.vm);
  if (!vm.ok()) return vm.status();
  fs->vm_ = *std::move(vm);
  absl::StatusOr<std::unique_ptr<vm::Map>> space =
      vm::Map::CreateAddressSpace(*fs->vm_, kSpaceBase, kSpaceSize);
  if (!space.ok()) return space.status();
  fs->space_ = *std::move(space);
  absl::StatusOr<std::unique_ptr<meta::Kmem>> kmem = meta::Kmem::Create(*fs->space_);
  if (!kmem.ok()) return kmem.status();
  fs->kmem_ = *std::move(kmem);
  absl::StatusOr<std::unique_ptr<meta::NodeStore>> nodes =
      meta::NodeStore::Create(*fs->space_, *fs->kmem_);
  if (!nodes.ok()) return nodes.status();
  fs->nodes_ = *std::move(nodes);
  fs->index_ = std::make_unique<meta::DirIndex>(*fs->kmem_);
  fs->xattrs_ = std::make_unique<meta::Xattrs>(*fs->kmem_);
  fs->windows_ = std::make_unique<vm::WindowCache>();

  // The root comes first, so it takes inode 1 (node.h) and is never freed.
  absl::StatusOr<meta::Addr> root = fs->nodes_->Alloc(S_IFDIR | (options.root_mode & 07777),
                                                      options.root_uid, options.root_gid, NowNs());
  if (!root.ok()) return root.status();
  if (fs->nodes_->InoOf(*root) != kRootIno) {
    return absl::InternalError("the root directory did not get inode 1");
  }
  absl::StatusOr<vm::Pin<meta::Node>> pin = fs->nodes_->Pin(*root, vm::Access::kWrite);
  if (!pin.ok()) return pin.status();
  (*pin)->dir.parent = kRootIno;
  fs->live_nodes_.store(1, std::memory_order_relaxed);  // the root counts against nr_inodes
  return fs;
}

Tmpfs::~Tmpfs() {
  // Data objects live on the heap, referenced from pageable nodes: walk the node
  // pool's live items and delete them before the memory system goes.
  if (nodes_ != nullptr) {
    meta::Pool& pool = nodes_->pool();
    const uint64_t capacity = pool.item_capacity();
    for (uint64_t number = 0, seen = 0; number < capacity && seen < pool.items_in_use(); ++number) {
      meta::Addr address = pool.AddressOf(number);
      if (!pool.IsLive(address)) continue;
      ++seen;
      absl::StatusOr<vm::Pin<meta::Node>> node = nodes_->Pin(address, vm::Access::kWrite);
      if (!node.ok() || !S_ISREG((*node)->mode) || (*node)->file.object == 0) continue;
      delete reinterpret_cast<vm::AnonObject*>((*node)->file.object);
      (*node)->file.object = 0;
    }
  }
  windows_.reset();
  xattrs_.reset();
  index_.reset();
  nodes_.reset();
  kmem_.reset();
  space_.reset();
  vm_.reset();
}

Tmpfs::LockSet::~LockSet() { Release(); }

void Tmpfs::LockSet::Release() {
  if (held_) {
    for (auto it = stripes_.rbegin(); it != stripes_.rend(); ++it) {
      if (it->second) {
        fs_.stripes_[it->first].Unlock();
      } else {
        fs_.stripes_[it->first].ReaderUnlock();
      }
    }
  }
  stripes_.clear();
  held_ = false;
}

Tmpfs::LockSet& Tmpfs::LockSet::Shared(Ino ino) {
  stripes_.emplace_back(StripeOf(ino), false);
  return *this;
}

Tmpfs::LockSet& Tmpfs::LockSet::Exclusive(Ino ino) {
  stripes_.emplace_back(StripeOf(ino), true);
  return *this;
}

void Tmpfs::LockSet::Acquire() {
  // One entry per stripe, exclusive if any asker wanted it, in ascending order.
  std::sort(stripes_.begin(), stripes_.end(), [](const auto& a, const auto& b) {
    return a.first < b.first || (a.first == b.first && a.second > b.second);
  });
  stripes_.erase(std::unique(stripes_.begin(), stripes_.end(),
                             [](const auto& a, const auto& b) { return a.first == b.first; }),
                 stripes_.end());
  for (const auto& [stripe, exclusive] : stripes_) {
    if (exclusive) {
      fs_.stripes_[stripe].Lock();
    } else {
      fs_.stripes_[stripe].ReaderLock();
    }
  }
  held_ = true;
}

bool Tmpfs::LockSet::TryAdd(Ino ino, bool exclusive) {
  assert(held_);
  const int stripe = StripeOf(ino);
  auto at = std::lower_bound(stripes_.begin(), stripes_.end(), stripe,
                             [](const auto& held, int wanted) { return held.first < wanted; });
  if (at != stripes_.end() && at->first == stripe) return at->second || !exclusive;
  absl::Mutex& mu = fs_.stripes_[stripe];
  if (at == stripes_.end()) {  // after every stripe held: the order allows waiting
    if (exclusive) {
      mu.Lock();
    } else {
      mu.ReaderLock();
    }
  } else if (!(exclusive ? mu.TryLock() : mu.ReaderTryLock())) {
    return false;
  }
  stripes_.insert(at, {stripe, exclusive});
  return true;
}

absl::StatusOr<meta::Addr> Tmpfs::NodeOf(Ino ino) {
  absl::StatusOr<meta::Addr> address = nodes_->ResolveIno(ino);
  if (!address.ok()) return ErrnoError(ENOENT, address.status().message());
  return address;
}

absl::StatusOr<vm::Pin<meta::Node>> Tmpfs::PinNode(Ino ino, vm::Access access) {
  absl::StatusOr<meta::Addr> address = NodeOf(ino);
  if (!address.ok()) return address.status();
  return nodes_->Pin(*address, access);
}

int64_t Tmpfs::NowNs() {
  timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  return ToNs(now);
}

timespec Tmpfs::ToTimespec(int64_t ns) {
  timespec time;
  time.tv_sec = ns / 1000000000;
  time.tv_nsec = ns % 1000000000;
  if (time.tv_nsec < 0) {
    time.tv_nsec += 1000000000;
    time.tv_sec -= 1;
  }
  return time;
}

int64_t Tmpfs::ToNs(const timespec& time) {
  return static_cast<int64_t>(time.tv_sec) * 1000000000 + time.tv_nsec;
}

Attr Tmpfs::AttrOf(Ino ino, const meta::Node& node) const {
  Attr attr;
  attr.ino = ino;
  attr.generation = node.generation;
  attr.mode = node.mode;
  attr.nlink = node.nlink;
  attr.uid = node.uid;
  attr.gid = node.gid;
  attr.size = S_ISDIR(node.mode) ? node.dir.index.count * 20 + 40 : node.size;
  if (S_ISREG(node.mode) && node.file.object != 0) {
    attr.blocks = reinterpret_cast<const vm::AnonObject*>(node.file.object)->allocated_pages() * 8;
  }
  attr.rdev = node.rdev;
  attr.atime = ToTimespec(node.atime_ns);
  attr.mtime = ToTimespec(node.mtime_ns);
  attr.ctime = ToTimespec(node.ctime_ns);
  attr.btime = ToTimespec(node.btime_ns);
  return attr;
}

absl::StatusOr<meta::Addr> Tmpfs::NewNode(uint32_t mode, uint32_t uid, uint32_t gid) {
  // The number is taken before the node, in one step: creators in different
  // directories (different stripes) cannot both pass a check made against a count
  // that neither has raised yet.
  uint64_t live = live_nodes_.load(std::memory_order_relaxed);
  do {
    if (options_.max_inodes != 0 && live >= options_.max_inodes) {
      return ErrnoError(ENOSPC, "nr_inodes reached");
    }
  } while (!live_nodes_.compare_exchange_weak(live, live + 1, std::memory_order_relaxed));
  absl::StatusOr<meta::Addr> address = nodes_->Alloc(mode, uid, gid, NowNs());
  if (!address.ok()) {
    live_nodes_.fetch_sub(1, std::memory_order_relaxed);
    return ErrnoError(ENOSPC, address.status().message());
  }
  return address;
}

void Tmpfs::DropNode(meta::Addr address) {
  nodes_->Free(address);
  live_nodes_.fetch_sub(1, std::memory_order_relaxed);
  if (frees_since_reap_.fetch_add(1, std::memory_order_relaxed) + 1 >= kReapEvery) ReapPools();
}

void Tmpfs::ReapPools() {
  frees_since_reap_.store(0, std::memory_order_relaxed);
  nodes_->Reap();
  kmem_->Reap();
}

bool Tmpfs::Unreferenced(const meta::Node& node) {
  return node.nlink == 0 && node.lookup_count == 0 && node.open_count == 0;
}

void Tmpfs::FreeNode(Ino ino) {
  absl::StatusOr<meta::Addr> address = NodeOf(ino);
  if (!address.ok()) return;
  {
    absl::StatusOr<vm::Pin<meta::Node>> node = nodes_->Pin(*address, vm::Access::kWrite);
    if (node.ok()) {
      if (S_ISREG((*node)->mode) && (*node)->file.object != 0) {
        delete reinterpret_cast<vm::AnonObject*>((*node)->file.object);
        (*node)->file.object = 0;
      } else if (S_ISDIR((*node)->mode)) {
        index_->Destroy((*node)->dir.index);
      }
    }
  }
  DropNode(*address);
}

absl::Status Tmpfs::CheckName(absl::string_view name) {
  if (name.size() > meta::DirIndex::kMaxName) return ErrnoError(ENAMETOOLONG);
  if (name.empty() || name == "." || name == "..") return ErrnoError(EINVAL);
  return absl::OkStatus();
}

absl::StatusOr<vm::AnonObject*> Tmpfs::ObjectOf(meta::Node& node, bool create) {
  if (node.file.object != 0) return reinterpret_cast<vm::AnonObject*>(node.file.object);
  if (!create) return nullptr;
  auto* object = new vm::AnonObject(*vm_, windows_.get());
  node.file.object = reinterpret_cast<uint64_t>(object);
  return object;
}

bool Tmpfs::DataFits(uint64_t more_pages) const {
  if (options_.size_bytes == 0) return true;
  return (vm_->accounting().charged() + more_pages) * vm::kPageSize <= options_.size_bytes;
}

Tmpfs::Figures Tmpfs::ReadFigures() {
  Figures figures;
  figures.vm = vm_->ReadStats();
  figures.nodes = nodes_->nodes();
  figures.dirents = dirents_.load(std::memory_order_relaxed);
  return figures;
}

}  // namespace ptmpfs::fs
