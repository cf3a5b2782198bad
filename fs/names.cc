// names.cc: the name space of the tmpfs core: lookup and forget, making nodes
// (mknod, mkdir, symlink), link, unlink, rmdir, readlink and readdir.
//
// Theory. A name is an entry in its directory's index (meta/dir_index.h) that points
// at a node. An operation that changes the node it finds by name must lock that node
// too, and LockSet takes every stripe at once, in ascending order; so it resolves
// the name twice: under the directory's shared lock to learn the inode, then with
// the directory and that inode locked, and starts over if the entry changed in
// between (a race with unlink or rename, rare). The second resolution is the one
// that counts: while the directory's lock is held the entry, and so its node, stays.
//
// Making a node takes what it needs before its first change: the node (NewNode,
// which counts nr_inodes), a symlink's target blob, the ACLs it inherits from its
// directory's default ACL (InheritAcl, which also applies the umask where there is
// none), then the directory entry (DirIndex::Insert allocates all it needs or changes
// nothing). If any step fails, the unreachable node is freed with what it holds and
// the directory is as it was (invariant 2 of tmpfs.h). Removing never allocates.
//
// Times follow Linux tmpfs: a new node's times are all "now", and so are its
// directory's mtime and ctime; link and unlink change the node's ctime too.
#include <dirent.h>

#include <algorithm>
#include <cerrno>
#include <string>
#include <vector>

#include "fs/file_flags.h"
#include "fs/tmpfs.h"

namespace ptmpfs::fs {

namespace {

// Symlink targets: PATH_MAX counts the terminating NUL, so 4095 bytes at most.
constexpr size_t kMaxSymlinkTarget = 4095;

// Readdir copies up to this many entries out of the index per lock hold, then emits
// them with no lock held (so that emit may call back into the core: readdirplus).
// 128 entries of at most 255 bytes: a 32 KiB buffer at worst.
constexpr size_t kReadDirBatch = 128;

bool IsMknodType(uint32_t mode) {
  switch (mode & S_IFMT) {
    case S_IFREG:
    case S_IFIFO:
    case S_IFSOCK:
    case S_IFCHR:
    case S_IFBLK:
      return true;
    default:
      return false;
  }
}

}  // namespace

uint8_t Tmpfs::DirentType(uint32_t mode) { return static_cast<uint8_t>(IFTODT(mode)); }

absl::Status Tmpfs::MetaErrno(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kNotFound:
      return ErrnoError(ENOENT, status.message());
    case absl::StatusCode::kAlreadyExists:
      return ErrnoError(EEXIST, status.message());
    case absl::StatusCode::kResourceExhausted:
      return ErrnoError(ENOSPC, status.message());
    case absl::StatusCode::kInvalidArgument:
      return ErrnoError(EINVAL, status.message());
    default:
      return status;  // DataLoss is EIO by ToErrno
  }
}

absl::StatusOr<Ino> Tmpfs::EntryIno(Ino dir, absl::string_view name) {
  meta::DirRoot index;
  Ino parent = 0;
  {
    absl::StatusOr<vm::Pin<meta::Node>> node = PinNode(dir, vm::Access::kRead);
    if (!node.ok()) return node.status();
    // The kernel resolves an NFS-style file handle by looking up "." in the node
    // itself (fuse_get_dentry), whatever its type: the node, while it has a name.
    if (name == "." && !S_ISDIR((*node)->mode)) return (*node)->nlink == 0 ? Ino{0} : dir;
    if (!S_ISDIR((*node)->mode)) return ErrnoError(ENOTDIR);
    // A removed directory has no entries; not even ".." leads anywhere now.
    if ((*node)->nlink == 0) return Ino{0};
    index = (*node)->dir.index;
    parent = (*node)->dir.parent;
  }
  if (name == ".") return dir;
  if (name == "..") return parent;
  absl::StatusOr<meta::DirEntryInfo> entry = index_->Lookup(index, name);
  if (!entry.ok()) {
    if (entry.status().code() == absl::StatusCode::kNotFound) return Ino{0};
    return MetaErrno(entry.status());
  }
  return nodes_->InoOf(entry->node);
}

absl::StatusOr<Attr> Tmpfs::CountLookup(Ino ino) {
  absl::StatusOr<vm::Pin<meta::Node>> node = PinNode(ino, vm::Access::kWrite);
  if (!node.ok()) return node.status();
  ++(*node)->lookup_count;
  return AttrOf(ino, **node);
}

absl::StatusOr<Ino> Tmpfs::LockEntry(LockSet& locks, Ino parent, absl::string_view name,
                                     bool parent_exclusive) {
  auto lock_parent = [&]() -> LockSet& {
    return parent_exclusive ? locks.Exclusive(parent) : locks.Shared(parent);
  };
  for (;;) {
    lock_parent().Acquire();
    absl::StatusOr<Ino> found = EntryIno(parent, name);
    if (!found.ok()) return found.status();
    if (*found == 0) return ErrnoError(ENOENT);
    const Ino child = *found;
    if (locks.TryAdd(child, /*exclusive=*/true)) return child;
    // The child's stripe sorts before the parent's and is busy: take both in order,
    // then look again, since the entry may have changed while nothing was held.
    locks.Release();
    lock_parent().Exclusive(child).Acquire();
    found = EntryIno(parent, name);
    if (!found.ok()) return found.status();
    if (*found == 0) return ErrnoError(ENOENT);
    if (*found == child) return child;
    locks.Release();  // renamed over meanwhile: resolve again
  }
}

absl::StatusOr<Attr> Tmpfs::Lookup(Ino parent, absl::string_view name) {
  if (name.size() > meta::DirIndex::kMaxName) return ErrnoError(ENAMETOOLONG);
  if (name.empty()) return ErrnoError(ENOENT);
  LockSet locks(*this);
  absl::StatusOr<Ino> child = LockEntry(locks, parent, name, /*parent_exclusive=*/false);
  if (!child.ok()) return child.status();
  return CountLookup(*child);
}

void Tmpfs::Forget(Ino ino, uint64_t count) {
  LockSet locks(*this);
  locks.Exclusive(ino).Acquire();
  bool unreferenced = false;
  {
    absl::StatusOr<vm::Pin<meta::Node>> node = PinNode(ino, vm::Access::kWrite);
    if (!node.ok()) return;  // already gone (or its page unreadable): nothing to drop
    meta::Node& forgotten = **node;
    forgotten.lookup_count -= std::min(count, forgotten.lookup_count);
    unreferenced = ino != kRootIno && Unreferenced(forgotten);  // invariant 3
  }
  if (unreferenced) FreeNode(ino);
}

absl::StatusOr<Attr> Tmpfs::MakeNode(const Caller& caller, Ino parent, absl::string_view name,
                                     uint32_t mode, uint64_t rdev, absl::string_view target) {
  if (absl::Status valid = CheckName(name); !valid.ok()) return valid;

  // A symlink's target is stored first: until the node points at it, it is ours to
  // free on any error.
  meta::Addr target_blob = meta::kNullAddr;
  if (S_ISLNK(mode)) {
    absl::StatusOr<meta::Addr> blob = kmem_->StoreBlob(target);
    if (!blob.ok()) return MetaErrno(blob.status());
    target_blob = *blob;
  }
  auto free_target = [&] {
    if (target_blob != meta::kNullAddr) kmem_->FreeBlob(target_blob, target.size());
  };

  LockSet locks(*this);
  locks.Exclusive(parent).Acquire();
  absl::StatusOr<vm::Pin<meta::Node>> dir = PinNode(parent, vm::Access::kWrite);
  if (!dir.ok()) {
    free_target();
    return dir.status();
  }
  meta::Node& directory = **dir;
  absl::Status refused;
  if (!S_ISDIR(directory.mode)) {
    refused = ErrnoError(ENOTDIR);
  } else if (directory.nlink == 0) {
    refused = ErrnoError(ENOENT, "the directory was removed");
  } else if (absl::StatusOr<meta::DirEntryInfo> existing =
                 index_->Lookup(directory.dir.index, name);
             existing.ok()) {
    refused = ErrnoError(EEXIST);
  } else if (existing.status().code() != absl::StatusCode::kNotFound) {
    refused = MetaErrno(existing.status());
  } else if (IsImmutable(directory)) {  // may_create: no write permission
    refused = CheckNotImmutable(directory);
  } else if (S_ISDIR(mode) && directory.nlink >= kMaxLinks) {
    refused = ErrnoError(EMLINK);
  }
  if (!refused.ok()) {
    free_target();
    return refused;
  }

  // BSD group semantics under a setgid directory, as inode_init_owner() does.
  uint32_t gid = caller.gid;
  if (directory.mode & S_ISGID) {
    gid = directory.gid;
    if (S_ISDIR(mode)) mode |= S_ISGID;
  }
  absl::StatusOr<meta::Addr> address = NewNode(mode, caller.uid, gid);
  if (!address.ok()) {
    free_target();
    return address.status();
  }
  const Ino ino = nodes_->InoOf(*address);
  absl::StatusOr<vm::Pin<meta::Node>> pinned = nodes_->Pin(*address, vm::Access::kWrite);
  if (!pinned.ok()) {
    DropNode(*address);
    free_target();
    return pinned.status();
  }
  meta::Node& node = **pinned;
  // Before the entry, so the node is complete when it becomes reachable; on an error
  // (ENOSPC for the ACLs' block) NodeStore::Free takes whatever it stored.
  if (absl::Status inherited = InheritAcl(directory, node, caller.umask); !inherited.ok()) {
    pinned->Release();
    DropNode(*address);
    free_target();
    return inherited;
  }
  if (S_ISCHR(mode) || S_ISBLK(mode)) node.rdev = rdev;
  node.flags = static_cast<uint16_t>(directory.flags & kInheritedFlags);
  if (S_ISDIR(mode)) node.dir.parent = parent;
  if (S_ISLNK(mode)) {
    // From here the node owns the blob: NodeStore::Free releases it.
    node.symlink.target = target_blob;
    node.size = target.size();
  }

  absl::StatusOr<meta::DirEntryInfo> inserted =
      index_->Insert(directory.dir.index, name, *address, DirentType(mode));
  if (!inserted.ok()) {
    pinned->Release();
    DropNode(*address);
    return MetaErrno(inserted.status());
  }
  dirents_.fetch_add(1, std::memory_order_relaxed);
  node.lookup_count = 1;
  directory.mtime_ns = directory.ctime_ns = node.ctime_ns;
  if (S_ISDIR(mode)) ++directory.nlink;  // the new directory's ".."
  return AttrOf(ino, node);
}

absl::StatusOr<Attr> Tmpfs::Mknod(const Caller& caller, Ino parent, absl::string_view name,
                                  mode_t mode, dev_t rdev) {
  // mknod(2) with no type makes a regular file.
  if ((mode & S_IFMT) == 0) mode |= S_IFREG;
  if (!IsMknodType(mode)) return ErrnoError(EINVAL, "mknod makes files, fifos, sockets, devices");
  return MakeNode(caller, parent, name, mode & (S_IFMT | 07777), rdev, {});
}

absl::StatusOr<Attr> Tmpfs::Mkdir(const Caller& caller, Ino parent, absl::string_view name,
                                  mode_t mode) {
  // vfs_mkdir keeps only the permission and sticky bits; setgid comes from the parent.
  return MakeNode(caller, parent, name, S_IFDIR | (mode & 01777), 0, {});
}

absl::StatusOr<Attr> Tmpfs::Symlink(const Caller& caller, Ino parent, absl::string_view name,
                                    absl::string_view target) {
  if (target.empty()) return ErrnoError(ENOENT, "empty symlink target");
  if (target.size() > kMaxSymlinkTarget) return ErrnoError(ENAMETOOLONG);
  return MakeNode(caller, parent, name, S_IFLNK | 0777, 0, target);
}

absl::StatusOr<std::string> Tmpfs::Readlink(Ino ino) {
  LockSet locks(*this);
  locks.Shared(ino).Acquire();
  absl::StatusOr<vm::Pin<meta::Node>> node = PinNode(ino, vm::Access::kRead);
  if (!node.ok()) return node.status();
  if (!S_ISLNK((*node)->mode)) return ErrnoError(EINVAL, "not a symlink");
  const meta::Addr blob = (*node)->symlink.target;
  std::string target((*node)->size, '\0');
  node->Release();  // the blob is read under the lock alone: fewer wired pages
  if (absl::Status loaded = kmem_->LoadBlob(blob, target.size(), target.data()); !loaded.ok()) {
    return MetaErrno(loaded);
  }
  return target;
}

absl::StatusOr<Attr> Tmpfs::Link(Ino ino, Ino new_parent, absl::string_view new_name) {
  if (absl::Status valid = CheckName(new_name); !valid.ok()) return valid;
  LockSet locks(*this);
  locks.Exclusive(new_parent).Exclusive(ino).Acquire();
  absl::StatusOr<vm::Pin<meta::Node>> dir = PinNode(new_parent, vm::Access::kWrite);
  if (!dir.ok()) return dir.status();
  meta::Node& directory = **dir;
  if (!S_ISDIR(directory.mode)) return ErrnoError(ENOTDIR);
  if (directory.nlink == 0) return ErrnoError(ENOENT, "the directory was removed");
  absl::StatusOr<meta::Addr> address = NodeOf(ino);
  if (!address.ok()) return address.status();
  absl::StatusOr<vm::Pin<meta::Node>> pinned = nodes_->Pin(*address, vm::Access::kWrite);
  if (!pinned.ok()) return pinned.status();
  meta::Node& node = **pinned;

  // As do_linkat and vfs_link check, in this order.
  if (absl::StatusOr<meta::DirEntryInfo> existing = index_->Lookup(directory.dir.index, new_name);
      existing.ok()) {
    return ErrnoError(EEXIST);
  } else if (existing.status().code() != absl::StatusCode::kNotFound) {
    return MetaErrno(existing.status());
  }
  if (absl::Status writable = CheckNotImmutable(directory); !writable.ok()) return writable;
  if (S_ISDIR(node.mode)) return ErrnoError(EPERM, "hard links to directories");
  if (absl::Status linkable = CheckUnguarded(node); !linkable.ok()) return linkable;
  // An unlinked file cannot get a name back (no O_TMPFILE here: I_LINKABLE is never set).
  if (node.nlink == 0) return ErrnoError(ENOENT);
  if (node.nlink >= kMaxLinks) return ErrnoError(EMLINK);

  absl::StatusOr<meta::DirEntryInfo> inserted =
      index_->Insert(directory.dir.index, new_name, *address, DirentType(node.mode));
  if (!inserted.ok()) return MetaErrno(inserted.status());
  dirents_.fetch_add(1, std::memory_order_relaxed);
  const int64_t now = NowNs();
  ++node.nlink;
  ++node.lookup_count;
  node.ctime_ns = now;
  directory.mtime_ns = directory.ctime_ns = now;
  return AttrOf(ino, node);
}

absl::Status Tmpfs::RemoveName(Ino parent, absl::string_view name, bool directory) {
  if (absl::Status valid = CheckName(name); !valid.ok()) return valid;
  LockSet locks(*this);
  absl::StatusOr<Ino> resolved = LockEntry(locks, parent, name, /*parent_exclusive=*/true);
  if (!resolved.ok()) return resolved.status();
  const Ino child = *resolved;

  bool unreferenced = false;
  {
    absl::StatusOr<vm::Pin<meta::Node>> dir = PinNode(parent, vm::Access::kWrite);
    if (!dir.ok()) return dir.status();
    absl::StatusOr<vm::Pin<meta::Node>> pinned = PinNode(child, vm::Access::kWrite);
    if (!pinned.ok()) return pinned.status();
    meta::Node& node = **pinned;
    // may_delete: the directory neither immutable nor append-only, nor the node.
    if (absl::Status removable = CheckMayRemoveFrom(**dir); !removable.ok()) return removable;
    if (absl::Status removable = CheckUnguarded(node); !removable.ok()) return removable;
    if (directory) {
      if (!S_ISDIR(node.mode)) return ErrnoError(ENOTDIR);
      if (child == kRootIno) return ErrnoError(EBUSY);
      if (node.dir.index.count != 0) return ErrnoError(ENOTEMPTY);
    } else if (S_ISDIR(node.mode)) {
      return ErrnoError(EISDIR);
    }
    absl::StatusOr<meta::DirEntryInfo> removed = index_->Remove((*dir)->dir.index, name);
    if (!removed.ok()) return MetaErrno(removed.status());
    dirents_.fetch_sub(1, std::memory_order_relaxed);
    const int64_t now = NowNs();
    if (directory) {
      node.nlink = 0;   // its entry and its "."
      --(*dir)->nlink;  // its ".."
    } else {
      --node.nlink;
    }
    node.ctime_ns = now;
    (*dir)->mtime_ns = (*dir)->ctime_ns = now;
    unreferenced = Unreferenced(node);
  }
  // Usually the kernel still holds a lookup and FORGET frees the node later.
  if (unreferenced) FreeNode(child);
  return absl::OkStatus();
}

absl::Status Tmpfs::Unlink(Ino parent, absl::string_view name) {
  return RemoveName(parent, name, /*directory=*/false);
}

absl::Status Tmpfs::Rmdir(Ino parent, absl::string_view name) {
  return RemoveName(parent, name, /*directory=*/true);
}

absl::Status Tmpfs::ReadDir(Ino dir, uint64_t offset,
                            absl::FunctionRef<bool(const DirEntry& entry)> emit) {
  struct Copied {
    size_t name_start;
    size_t name_size;
    Ino ino;
    uint8_t type;
    uint64_t next_offset;
  };
  std::vector<Copied> batch;
  std::string names;
  batch.reserve(kReadDirBatch);
  uint64_t next = offset;
  for (;;) {
    batch.clear();
    names.clear();
    bool more = false;
    {
      LockSet locks(*this);
      locks.Shared(dir).Acquire();
      meta::DirRoot index;
      Ino parent = 0;
      {
        absl::StatusOr<vm::Pin<meta::Node>> node = PinNode(dir, vm::Access::kRead);
        if (!node.ok()) return node.status();
        if (!S_ISDIR((*node)->mode)) return ErrnoError(ENOTDIR);
        index = (*node)->dir.index;
        parent = (*node)->dir.parent;
      }
      auto add = [&](absl::string_view name, Ino ino, uint8_t type, uint64_t next_offset) {
        batch.push_back({names.size(), name.size(), ino, type, next_offset});
        names.append(name.data(), name.size());
      };
      if (next == 0) add(".", dir, DT_DIR, 1);
      if (next <= 1) add("..", parent, DT_DIR, 2);
      absl::Status walked =
          index_->Walk(index, std::max(next, meta::DirIndex::kFirstCookie),
                       [&](absl::string_view name, const meta::DirEntryInfo& entry) {
                         if (batch.size() >= kReadDirBatch) {
                           more = true;
                           return false;
                         }
                         add(name, nodes_->InoOf(entry.node), entry.type, entry.cookie + 1);
                         return true;
                       });
      if (!walked.ok()) return MetaErrno(walked);
    }
    for (const Copied& copied : batch) {
      DirEntry entry;
      entry.name = absl::string_view(names.data() + copied.name_start, copied.name_size);
      entry.ino = copied.ino;
      entry.type = copied.type;
      entry.next_offset = copied.next_offset;
      if (!emit(entry)) return absl::OkStatus();
      next = copied.next_offset;
    }
    if (!more) return absl::OkStatus();
  }
}

absl::StatusOr<Attr> Tmpfs::LookupForReadDirPlus(Ino dir, absl::string_view name, Ino ino) {
  // The entry was read moments ago (ReadDir emits with no lock held). Meanwhile its
  // node may have gone and its number been given to a new node, named elsewhere or
  // not yet named at all: so the name is resolved again with the directory and the
  // node locked, and only if it still leads to `ino` is that node the entry's.
  // Otherwise ENOENT, and the adapter leaves the entry out (as if it were read a
  // moment later). Under both locks the entry, and so its node, stays.
  LockSet locks(*this);
  locks.Shared(dir).Exclusive(ino).Acquire();
  absl::StatusOr<Ino> found = EntryIno(dir, name);
  if (!found.ok()) return found.status();
  if (*found != ino) return ErrnoError(ENOENT, "the entry changed since it was read");
  return CountLookup(ino);
}

}  // namespace ptmpfs::fs
