// node: the tmpfs node (inode), an item of a pool in pageable memory.
//
// Theory. Every file, directory, symlink and special file is one Node of 128 bytes
// in the node pool. The node's FUSE inode number is derived from its address: the
// pool numbers its item slots densely (pool.h), and ino = slot number + 1, so the
// root directory, created first in slot 0, is inode 1, and converting either way is
// arithmetic with no resident table. A slot is reused after its node is freed; the
// generation, drawn from a counter that never repeats, tells a handle to the old
// node from the new one (ESTALE for NFS-style handles).
//
// Per type, the node holds: a directory's index root (dir_index.h: entry count in
// O(1)) and its parent; a regular file's data object; a symlink's target (a kmem
// blob); a device's rdev. Extended attributes hang off any node (xattr.h).
//
// Invariants.
//  1. A live node's slot is handed out by the pool (Pool::IsLive), and its
//     generation is nonzero; a freed slot is never pinned through an inode number
//     without that check (ResolveIno).
//  2. A node is freed only when nlink == 0, lookup_count == 0 and open_count == 0:
//     nothing can reach it (fs/ enforces this; meta only frees what it is told).
//  3. Times are nanoseconds since the epoch (int64: ±292 years).
//
// Locking. Node fields are guarded by the lock fs/ takes for the node (a striped
// lock keyed by inode number); NodeStore itself is thread-safe.
#ifndef PTMPFS_META_NODE_H_
#define PTMPFS_META_NODE_H_

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "meta/dir_index.h"
#include "meta/kmem.h"
#include "meta/pool.h"

namespace ptmpfs::meta {

using Ino = uint64_t;
inline constexpr Ino kRootIno = 1;

struct Node {
  uint16_t mode = 0;   // S_IFMT type and permission bits (all of mode_t's 16 in use)
  uint16_t flags = 0;  // chattr's inode flags (FS_*_FL) that fs/ keeps: fs/file_flags.h
  uint32_t nlink = 0;
  uint32_t uid = 0;
  uint32_t gid = 0;
  uint64_t size = 0;  // bytes: file length, symlink target length, 0 for directories
  uint64_t rdev = 0;
  int64_t atime_ns = 0;
  int64_t mtime_ns = 0;
  int64_t ctime_ns = 0;
  int64_t btime_ns = 0;
  uint64_t generation = 0;
  uint64_t lookup_count = 0;  // FUSE lookups not yet forgotten
  Addr xattrs = kNullAddr;    // xattr.h's block, or null
  uint32_t xattr_bytes = 0;   // its length
  uint32_t open_count = 0;    // open file handles (fs/)
  union {
    struct {
      DirRoot index;
      Ino parent;
    } dir;
    struct {
      uint64_t object;  // the data's AnonObject (fs/ owns its lifetime); 0 for none
    } file;
    struct {
      Addr target;  // kmem blob of `size` bytes
    } symlink;
  };
  Node() : dir{} {}
};
static_assert(sizeof(Node) == 128, "a node is one 128-byte pool item");

class NodeStore {
 public:
  // Creates the pools; the root directory is not created here (fs/ does, first).
  static absl::StatusOr<std::unique_ptr<NodeStore>> Create(vm::Map& space, Kmem& kmem);

  // A new node with the given fields set, generation drawn, times set to `now_ns`.
  // Returns its address. ResourceExhausted (ENOSPC) when no space.
  absl::StatusOr<Addr> Alloc(uint32_t mode, uint32_t uid, uint32_t gid, int64_t now_ns);
  // Frees the node and its symlink target and xattrs (not directory contents or
  // file data: the caller empties those first).
  void Free(Addr node);

  absl::StatusOr<vm::Pin<Node>> Pin(Addr node, vm::Access access) {
    return pool_->Pin<Node>(node, access);
  }

  Ino InoOf(Addr node) const { return pool_->Number(node) + 1; }
  Addr AddrOf(Ino ino) const { return pool_->AddressOf(ino - 1); }
  // The live node with this inode number, or NotFound (never allocated, or freed).
  // With `generation` nonzero, also NotFound (ESTALE) if the node was freed and the
  // number reused.
  absl::StatusOr<Addr> ResolveIno(Ino ino, uint64_t generation = 0);

  uint64_t nodes() const { return pool_->items_in_use(); }
  // Gives back the node pool's excess empty pages (Pool::Reap).
  uint64_t Reap() { return pool_->Reap(); }
  Pool& pool() { return *pool_; }
  Kmem& kmem() { return kmem_; }

 private:
  NodeStore(std::unique_ptr<Pool> pool, Kmem& kmem) : pool_(std::move(pool)), kmem_(kmem) {}
  std::unique_ptr<Pool> pool_;
  Kmem& kmem_;
  std::atomic<uint64_t> next_generation_{1};
};

}  // namespace ptmpfs::meta

#endif  // PTMPFS_META_NODE_H_
