#include "meta/node.h"

#include <sys/stat.h>

#include "absl/strings/str_format.h"

namespace ptmpfs::meta {

absl::StatusOr<std::unique_ptr<NodeStore>> NodeStore::Create(vm::Map& space, Kmem& kmem) {
  Pool::Options options;
  options.name = "nodes";
  options.item_size = sizeof(Node);
  options.page_order = 0;
  // 2^40 bytes of address space: 8 billion nodes; only touched pages cost.
  options.max_bytes = uint64_t{1} << 40;
  absl::StatusOr<std::unique_ptr<Pool>> pool = Pool::Create(space, options);
  if (!pool.ok()) return pool.status();
  return std::unique_ptr<NodeStore>(new NodeStore(*std::move(pool), kmem));
}

absl::StatusOr<Addr> NodeStore::Alloc(uint32_t mode, uint32_t uid, uint32_t gid,
                                      int64_t now_ns) {
  absl::StatusOr<Addr> address = pool_->Get();
  if (!address.ok()) return address.status();
  absl::StatusOr<vm::Pin<Node>> node = Pin(*address, vm::Access::kWrite);
  if (!node.ok()) {
    pool_->Put(*address);
    return node.status();
  }
  Node& fresh = **node;
  fresh = Node();
  fresh.mode = mode;
  fresh.uid = uid;
  fresh.gid = gid;
  fresh.nlink = S_ISDIR(mode) ? 2 : 1;
  fresh.atime_ns = fresh.mtime_ns = fresh.ctime_ns = fresh.btime_ns = now_ns;
  fresh.generation = next_generation_.fetch_add(1, std::memory_order_relaxed);
  return *address;
}

void NodeStore::Free(Addr address) {
  {
    absl::StatusOr<vm::Pin<Node>> node = Pin(address, vm::Access::kRead);
    // A node whose page failed its checksum cannot be read: its blobs leak (they
    // stay charged) rather than the daemon guessing at their addresses.
    if (node.ok()) {
      if (S_ISLNK((*node)->mode) && (*node)->symlink.target != kNullAddr) {
        kmem_.FreeBlob((*node)->symlink.target, (*node)->size);
      }
      if ((*node)->xattrs != kNullAddr) kmem_.FreeBlob((*node)->xattrs, (*node)->xattr_bytes);
      (*node)->generation = 0;
    }
  }
  pool_->Put(address);
}

absl::StatusOr<Addr> NodeStore::ResolveIno(Ino ino, uint64_t generation) {
  if (ino == 0 || ino - 1 >= pool_->item_capacity()) {
    return absl::NotFoundError(absl::StrFormat("inode %d does not exist", ino));
  }
  Addr address = AddrOf(ino);
  if (!pool_->IsLive(address)) {
    return absl::NotFoundError(absl::StrFormat("inode %d does not exist", ino));
  }
  if (generation != 0) {
    absl::StatusOr<vm::Pin<Node>> node = Pin(address, vm::Access::kRead);
    if (!node.ok()) return node.status();
    if ((*node)->generation != generation) {
      return absl::NotFoundError(absl::StrFormat("inode %d was reused (stale handle)", ino));
    }
  }
  return address;
}

}  // namespace ptmpfs::meta
