// rename.cc: rename(2) and renameat2(2)'s RENAME_NOREPLACE, RENAME_EXCHANGE and
// RENAME_WHITEOUT, with Linux tmpfs semantics (shmem_rename2).
//
// Theory. A rename touches up to two directories and two nodes (the one moved and
// the one it replaces or is exchanged with), plus a whiteout. As names.cc does, it
// resolves both names under shared locks, then locks all of those inodes exclusive
// at once (LockSet, ascending stripes) and resolves again, starting over if either
// entry changed in between. Renames between different directories first take
// rename_mu_ (the VFS's s_vfs_rename_mutex): only they change a directory's parent,
// so while it is held the chain of dir.parent from any directory to the root stands
// still, and walking it from the destination proves the moved directory is not
// being put under itself (EINVAL).
//
// Atomicity. Every check comes before the first change, and the one allocation (a
// whiteout's node; and for a new name, the entry, which DirIndex::Insert makes
// whole or not at all) is taken first. Replacing keeps the target entry and its
// cookie (DirIndex::Replace), so a reader of the destination directory sees the old
// node or the new one under that name, never neither; exchanging is two Replaces.
// What follows never allocates: Remove and Replace need no space.
//
// Links, as shmem_rename2 counts them: a directory moved to another parent takes
// its ".." along (old parent nlink--, new parent nlink++); a replaced directory
// loses both its links and the destination its "..". Times: both directories'
// mtime and ctime, the moved node's ctime, the replaced or exchanged node's ctime.
#include <dirent.h>

#include <cerrno>
#include <cstdio>
#include <optional>

#include "fs/file_flags.h"
#include "fs/tmpfs.h"

namespace ptmpfs::fs {

absl::StatusOr<bool> Tmpfs::IsAncestorOf(Ino ancestor, Ino dir) {
  // A live directory's parents lead to the root in fewer steps than there are
  // nodes; the bound only keeps a damaged tree from looping forever.
  const uint64_t max_steps = nodes_->nodes() + 1;
  Ino cursor = dir;
  for (uint64_t step = 0; step <= max_steps; ++step) {
    if (cursor == ancestor) return true;
    if (cursor == kRootIno) return false;
    // Only dir.parent is read, which rename_mu_ keeps still; each directory on the
    // way holds the next one, so none of them can be removed (ENOTEMPTY).
    absl::StatusOr<vm::Pin<meta::Node>> node = PinNode(cursor, vm::Access::kRead);
    if (!node.ok()) return node.status();
    cursor = (*node)->dir.parent;
  }
  return ErrnoError(EIO, "directory parents form a loop");
}

absl::Status Tmpfs::Rename(const Caller& caller, Ino parent, absl::string_view name, Ino new_parent,
                           absl::string_view new_name, unsigned flags) {
  constexpr unsigned kKnownFlags = RENAME_NOREPLACE | RENAME_EXCHANGE | RENAME_WHITEOUT;
  if ((flags & ~kKnownFlags) != 0) return ErrnoError(EINVAL, "unknown rename flags");
  if ((flags & RENAME_EXCHANGE) && (flags & (RENAME_NOREPLACE | RENAME_WHITEOUT))) {
    return ErrnoError(EINVAL, "RENAME_EXCHANGE with RENAME_NOREPLACE or RENAME_WHITEOUT");
  }
  if (absl::Status valid = CheckName(name); !valid.ok()) return valid;
  if (absl::Status valid = CheckName(new_name); !valid.ok()) return valid;

  std::optional<absl::MutexLock> cross_directory;
  if (parent != new_parent) cross_directory.emplace(&rename_mu_);
  for (;;) {
    Ino source = 0;
    Ino target = 0;
    {
      LockSet locks(*this);
      locks.Shared(parent).Shared(new_parent).Acquire();
      absl::StatusOr<Ino> found = EntryIno(parent, name);
      if (!found.ok()) return found.status();
      if (*found == 0) return ErrnoError(ENOENT);
      source = *found;
      found = EntryIno(new_parent, new_name);
      if (!found.ok()) return found.status();
      target = *found;
    }
    LockSet locks(*this);
    locks.Exclusive(parent).Exclusive(new_parent).Exclusive(source);
    if (target != 0) locks.Exclusive(target);
    locks.Acquire();
    absl::StatusOr<Ino> source_now = EntryIno(parent, name);
    if (!source_now.ok()) return source_now.status();
    if (*source_now == 0) return ErrnoError(ENOENT);
    absl::StatusOr<Ino> target_now = EntryIno(new_parent, new_name);
    if (!target_now.ok()) return target_now.status();
    if (*source_now != source || *target_now != target) continue;  // raced: again
    // RenameLocked calls IsAncestorOf only when the parents differ: rename_mu_ is held.
    return RenameLocked(caller, parent, name, source, new_parent, new_name, target, flags);
  }
}

absl::Status Tmpfs::RenameLocked(const Caller& caller, Ino parent, absl::string_view name,
                                 Ino source, Ino new_parent, absl::string_view new_name, Ino target,
                                 unsigned flags) {
  const bool exchange = (flags & RENAME_EXCHANGE) != 0;
  const bool whiteout = (flags & RENAME_WHITEOUT) != 0;
  if (target == 0 && exchange) return ErrnoError(ENOENT, "nothing to exchange with");
  if (target != 0 && (flags & RENAME_NOREPLACE)) return ErrnoError(EEXIST);
  // Both names for one node (the very same entry, or two hard links): POSIX says
  // rename does nothing and succeeds.
  if (source == target) return absl::OkStatus();
  const bool cross = parent != new_parent;

  // A node may be pinned twice here (a directory that is also the other parent):
  // both pins point at the same memory, so the arithmetic below stays right.
  absl::StatusOr<vm::Pin<meta::Node>> old_dir = PinNode(parent, vm::Access::kWrite);
  if (!old_dir.ok()) return old_dir.status();
  absl::StatusOr<vm::Pin<meta::Node>> new_dir = PinNode(new_parent, vm::Access::kWrite);
  if (!new_dir.ok()) return new_dir.status();
  absl::StatusOr<meta::Addr> source_address = NodeOf(source);
  if (!source_address.ok()) return source_address.status();
  absl::StatusOr<vm::Pin<meta::Node>> moved = nodes_->Pin(*source_address, vm::Access::kWrite);
  if (!moved.ok()) return moved.status();
  meta::Addr target_address = meta::kNullAddr;
  vm::Pin<meta::Node> replaced;
  if (target != 0) {
    absl::StatusOr<meta::Addr> address = NodeOf(target);
    if (!address.ok()) return address.status();
    absl::StatusOr<vm::Pin<meta::Node>> pin = nodes_->Pin(*address, vm::Access::kWrite);
    if (!pin.ok()) return pin.status();
    target_address = *address;
    replaced = *std::move(pin);
  }
  meta::Node& from_dir = **old_dir;
  meta::Node& to_dir = **new_dir;
  meta::Node& node = **moved;
  const bool source_is_dir = S_ISDIR(node.mode);
  const bool target_is_dir = target != 0 && S_ISDIR(replaced->mode);

  // Checks, in the order do_renameat2 / vfs_rename / shmem_rename2 make them.
  if (to_dir.nlink == 0) return ErrnoError(ENOENT, "the directory was removed");
  // may_delete of the source; of the target if there is one, else may_create there
  // (file_flags.h).
  if (absl::Status movable = CheckMayRemoveFrom(from_dir); !movable.ok()) return movable;
  if (absl::Status movable = CheckUnguarded(node); !movable.ok()) return movable;
  if (target != 0) {
    if (absl::Status replaceable = CheckMayRemoveFrom(to_dir); !replaceable.ok()) {
      return replaceable;
    }
    if (absl::Status replaceable = CheckUnguarded(*replaced); !replaceable.ok()) {
      return replaceable;
    }
  } else if (absl::Status writable = CheckNotImmutable(to_dir); !writable.ok()) {
    return writable;
  }
  if (target != 0 && !exchange) {
    if (source_is_dir && !target_is_dir) return ErrnoError(ENOTDIR);
    if (!source_is_dir && target_is_dir) return ErrnoError(EISDIR);
  }
  if (cross) {
    if (source_is_dir) {
      absl::StatusOr<bool> under_itself = IsAncestorOf(source, new_parent);
      if (!under_itself.ok()) return under_itself.status();
      if (*under_itself) return ErrnoError(EINVAL, "a directory cannot move under itself");
    }
    if (exchange && target_is_dir) {
      absl::StatusOr<bool> under_itself = IsAncestorOf(target, parent);
      if (!under_itself.ok()) return under_itself.status();
      if (*under_itself) return ErrnoError(EINVAL, "a directory cannot move under itself");
    }
  }
  if (target_is_dir && !exchange && replaced->dir.index.count != 0) {
    return ErrnoError(ENOTEMPTY);
  }
  // Which directory gains a subdirectory's "..", if any (EMLINK before any change).
  meta::Node* gains_link = nullptr;
  meta::Node* loses_link = nullptr;
  if (cross) {
    if (exchange) {
      if (source_is_dir && !target_is_dir) {
        gains_link = &to_dir;
        loses_link = &from_dir;
      } else if (!source_is_dir && target_is_dir) {
        gains_link = &from_dir;
        loses_link = &to_dir;
      }
    } else if (source_is_dir) {
      loses_link = &from_dir;
      // Over a directory, the destination swaps the replaced one's ".." for ours.
      if (!target_is_dir) gains_link = &to_dir;
    }
  } else if (target_is_dir && !exchange) {
    loses_link = &from_dir;  // the replaced directory's ".."
  }
  if (gains_link != nullptr && gains_link->nlink >= kMaxLinks) return ErrnoError(EMLINK);

  // The whiteout, a 0:0 character device left at the source name (overlayfs).
  meta::Addr whiteout_address = meta::kNullAddr;
  if (whiteout) {
    uint32_t gid = caller.gid;
    if (from_dir.mode & S_ISGID) gid = from_dir.gid;
    absl::StatusOr<meta::Addr> address = NewNode(S_IFCHR, caller.uid, gid);
    if (!address.ok()) return address.status();
    whiteout_address = *address;
  }
  auto drop_whiteout = [&] {
    if (whiteout_address != meta::kNullAddr) DropNode(whiteout_address);
  };

  // The changes. Only the first step can fail for want of space; a later failure
  // (an index page unreadable: EIO) undoes the first.
  const uint8_t source_type = DirentType(node.mode);
  auto vacate_source = [&]() -> absl::Status {
    if (whiteout) return index_->Replace(from_dir.dir.index, name, whiteout_address, DT_CHR);
    absl::StatusOr<meta::DirEntryInfo> removed = index_->Remove(from_dir.dir.index, name);
    return removed.status();
  };
  if (exchange) {
    const uint8_t target_type = DirentType(replaced->mode);
    absl::Status first = index_->Replace(to_dir.dir.index, new_name, *source_address, source_type);
    if (!first.ok()) return MetaErrno(first);
    absl::Status second = index_->Replace(from_dir.dir.index, name, target_address, target_type);
    if (!second.ok()) {
      (void)index_->Replace(to_dir.dir.index, new_name, target_address, target_type);
      return MetaErrno(second);
    }
  } else if (target != 0) {
    const uint8_t target_type = DirentType(replaced->mode);
    absl::Status first = index_->Replace(to_dir.dir.index, new_name, *source_address, source_type);
    if (!first.ok()) {
      drop_whiteout();
      return MetaErrno(first);
    }
    if (absl::Status second = vacate_source(); !second.ok()) {
      (void)index_->Replace(to_dir.dir.index, new_name, target_address, target_type);
      drop_whiteout();
      return MetaErrno(second);
    }
    if (!whiteout) dirents_.fetch_sub(1, std::memory_order_relaxed);
  } else {
    absl::StatusOr<meta::DirEntryInfo> first =
        index_->Insert(to_dir.dir.index, new_name, *source_address, source_type);
    if (!first.ok()) {
      drop_whiteout();
      return MetaErrno(first.status());
    }
    if (absl::Status second = vacate_source(); !second.ok()) {
      (void)index_->Remove(to_dir.dir.index, new_name);
      drop_whiteout();
      return MetaErrno(second);
    }
    if (whiteout) dirents_.fetch_add(1, std::memory_order_relaxed);
  }

  // Nothing can fail from here.
  const int64_t now = NowNs();
  if (gains_link != nullptr) ++gains_link->nlink;
  if (loses_link != nullptr) --loses_link->nlink;
  if (cross && source_is_dir) node.dir.parent = new_parent;
  if (cross && exchange && target_is_dir) replaced->dir.parent = parent;
  node.ctime_ns = now;
  bool free_replaced = false;
  if (target != 0) {
    replaced->ctime_ns = now;
    if (!exchange) {
      if (target_is_dir) {
        replaced->nlink = 0;
      } else {
        --replaced->nlink;
      }
      free_replaced = Unreferenced(*replaced);
    }
  }
  from_dir.mtime_ns = from_dir.ctime_ns = now;
  to_dir.mtime_ns = to_dir.ctime_ns = now;
  replaced.Release();
  moved->Release();
  new_dir->Release();
  old_dir->Release();
  // The kernel usually still holds a lookup on the replaced node; FORGET frees it.
  if (free_replaced) FreeNode(target);
  return absl::OkStatus();
}

}  // namespace ptmpfs::fs
