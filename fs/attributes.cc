// attributes.cc: getattr, setattr (chmod, chown, truncate, utimens), chattr's
// flags, statfs and handle resolution, with Linux tmpfs semantics.
//
// setattr follows the kernel's setattr_prepare / notify_change / shmem_setattr:
// every check comes before the first change, so an error changes nothing. Two
// steps can fail after the checks: the access ACL's rewrite for a chmod (ENOSPC,
// EIO), made ready first as a new block beside the old one (StageAclChmod), and
// freeing pages on truncate (EIO from swap), which comes next. Only then does
// anything else change: the ACL's new block is swapped in last (nothing can fail
// then), or freed if the truncate failed. ctime becomes now on any change, except
// a truncate to the same size alone, which changes nothing (shmem_setattr). With
// default_permissions the kernel checks permissions itself; the checks here mirror
// its rules so that the core is right on its own, and the rules the kernel leaves
// to the file system (dropping S_ISGID on chmod by a non-member, S_ISUID/S_ISGID on
// chown, truncate and FATTR_KILL_SUIDGID) are applied here.
#include <fcntl.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <optional>

#include "fs/file_flags.h"
#include "fs/tmpfs.h"

namespace ptmpfs::fs {

namespace {

// The largest file: off_t's range (the VFS's MAX_LFS_FILESIZE).
constexpr uint64_t kMaxFileBytes = static_cast<uint64_t>(LLONG_MAX);

// Whether `caller` may write the node by its mode bits (generic_permission, with
// only the caller's primary group known). Root may always.
bool MayWrite(const Caller& caller, const meta::Node& node) {
  if (caller.uid == 0) return true;
  if (caller.uid == node.uid) return (node.mode & S_IWUSR) != 0;
  if (caller.gid == node.gid) return (node.mode & S_IWGRP) != 0;
  return (node.mode & S_IWOTH) != 0;
}

// S_ISUID always; S_ISGID as setattr_should_drop_sgid drops it: with S_IXGRP, or
// without it for a caller outside the file's group `gid` and without CAP_FSETID
// (anyone but root; only the caller's primary group is known here).
uint32_t WithoutSuidSgid(uint32_t mode, const Caller& caller, uint32_t gid) {
  mode &= ~static_cast<uint32_t>(S_ISUID);
  if ((mode & S_IXGRP) != 0 || (caller.uid != 0 && caller.gid != gid)) {
    mode &= ~static_cast<uint32_t>(S_ISGID);
  }
  return mode;
}

// Checks `request` against the node before anything changes (setattr_prepare and
// the truncate checks of do_truncate / inode_newsize_ok).
absl::Status CheckSetAttr(const Caller& caller, const meta::Node& node,
                          const SetAttrRequest& request) {
  const bool root = caller.uid == 0;
  const bool owner = root || caller.uid == node.uid;
  // file_flags.h: an immutable node takes no change; an append-only one only times
  // set to now (notify_change, do_truncate, do_sys_ftruncate).
  if (absl::Status unchanged = CheckNotImmutable(node); !unchanged.ok()) return unchanged;
  const bool explicit_time = (request.atime.has_value() && !request.atime_now) ||
                             (request.mtime.has_value() && !request.mtime_now);
  if (request.size.has_value() || request.mode.has_value() || request.uid.has_value() ||
      request.gid.has_value() || explicit_time) {
    if (absl::Status unguarded = CheckUnguarded(node); !unguarded.ok()) return unguarded;
  }
  if (request.size.has_value()) {
    if (S_ISDIR(node.mode)) return ErrnoError(EISDIR);
    if (!S_ISREG(node.mode)) return ErrnoError(EINVAL);
    if (*request.size > kMaxFileBytes) return ErrnoError(EFBIG);
    if (!request.from_open_file && !MayWrite(caller, node)) return ErrnoError(EACCES);
  }
  if (request.mode.has_value() && !owner) return ErrnoError(EPERM);
  // chown_ok: only root changes the owner (the owner may "change" it to itself).
  if (request.uid.has_value() && !root && !(caller.uid == node.uid && *request.uid == node.uid)) {
    return ErrnoError(EPERM);
  }
  // chgrp_ok: the owner may pick one of its groups (here: its primary one) or keep it.
  if (request.gid.has_value() && !root &&
      !(caller.uid == node.uid && (*request.gid == caller.gid || *request.gid == node.gid))) {
    return ErrnoError(EPERM);
  }
  // Explicit times need ownership; "now" needs ownership or write permission.
  if (explicit_time && !owner) return ErrnoError(EPERM);
  if ((request.atime_now || request.mtime_now) && !owner && !MayWrite(caller, node)) {
    return ErrnoError(EACCES);
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<Attr> Tmpfs::GetAttr(Ino ino) {
  LockSet locks(*this);
  locks.Shared(ino).Acquire();
  absl::StatusOr<vm::Pin<meta::Node>> node = PinNode(ino, vm::Access::kRead);
  if (!node.ok()) return node.status();
  return AttrOf(ino, **node);
}

absl::StatusOr<Attr> Tmpfs::ResolveHandle(Ino ino, uint64_t generation) {
  LockSet locks(*this);
  locks.Shared(ino).Acquire();
  // Under the lock: a node freed and its number reused meanwhile cannot slip between
  // the check and the pin.
  absl::StatusOr<meta::Addr> address = nodes_->ResolveIno(ino, generation);
  if (!address.ok()) return ErrnoError(ESTALE, address.status().message());
  absl::StatusOr<vm::Pin<meta::Node>> node = nodes_->Pin(*address, vm::Access::kRead);
  if (!node.ok()) return node.status();
  return AttrOf(ino, **node);
}

absl::StatusOr<Attr> Tmpfs::SetAttr(const Caller& caller, Ino ino, const SetAttrRequest& request) {
  LockSet locks(*this);
  locks.Exclusive(ino).Acquire();
  absl::StatusOr<vm::Pin<meta::Node>> pin = PinNode(ino, vm::Access::kWrite);
  if (!pin.ok()) return pin.status();
  meta::Node& node = **pin;
  if (absl::Status allowed = CheckSetAttr(caller, node, request); !allowed.ok()) {
    return allowed;
  }

  // The new mode, and the access ACL rewritten for it, before any change.
  std::optional<uint32_t> new_mode;
  std::optional<meta::XattrBlock> staged_acl;
  if (request.mode.has_value()) {
    uint32_t mode = *request.mode & 07777;
    const uint32_t gid = request.gid.value_or(node.gid);
    // setattr_prepare: a non-member without CAP_FSETID cannot set S_ISGID.
    if (caller.uid != 0 && caller.gid != gid) mode &= ~static_cast<uint32_t>(S_ISGID);
    new_mode = (node.mode & S_IFMT) | mode;
    absl::StatusOr<std::optional<meta::XattrBlock>> staged = StageAclChmod(node, *new_mode);
    if (!staged.ok()) return staged.status();
    staged_acl = *staged;
  }

  const int64_t now = NowNs();
  // A truncate to the same size, alone, changes nothing (shmem_setattr).
  bool changed = false;
  if (request.size.has_value()) {
    const uint64_t old_size = node.size;
    if (absl::Status resized = ResizeLocked(node, *request.size); !resized.ok()) {
      if (staged_acl.has_value()) AbandonXattrs(*staged_acl);
      return resized;
    }
    changed = old_size != node.size;
    // do_truncate kills the privileges of a non-root truncater, whatever the size.
    if (caller.uid != 0) {
      const uint32_t mode = WithoutSuidSgid(node.mode, caller, node.gid);
      changed = changed || mode != node.mode;
      node.mode = mode;
    }
  }
  // Nothing below can fail.
  if (new_mode.has_value()) {
    node.mode = *new_mode;
    if (staged_acl.has_value()) CommitXattrs(node, *staged_acl);
    changed = true;
  }
  if (request.uid.has_value() || request.gid.has_value()) {
    const uint32_t old_gid = node.gid;
    if (request.uid.has_value()) node.uid = *request.uid;
    if (request.gid.has_value()) node.gid = *request.gid;
    // chown_common: ATTR_KILL_SUID | ATTR_KILL_SGID for everything but directories,
    // even for root (S_ISGID by the old group, as setattr_should_drop_sgid).
    if (!S_ISDIR(node.mode)) node.mode = WithoutSuidSgid(node.mode, caller, old_gid);
    changed = true;
  }
  if (request.kill_suid_sgid) {
    node.mode = WithoutSuidSgid(node.mode, caller, node.gid);
    changed = true;
  }
  if (request.atime_now) {
    node.atime_ns = now;
    changed = true;
  } else if (request.atime.has_value()) {
    node.atime_ns = ToNs(*request.atime);
    changed = true;
  }
  if (request.mtime_now) {
    node.mtime_ns = now;
    changed = true;
  } else if (request.mtime.has_value()) {
    node.mtime_ns = ToNs(*request.mtime);
    changed = true;
  }
  if (request.ctime.has_value()) {
    node.ctime_ns = ToNs(*request.ctime);
  } else if (changed) {
    node.ctime_ns = now;
  }
  return AttrOf(ino, node);
}

absl::StatusOr<uint32_t> Tmpfs::GetFlags(Ino ino) {
  LockSet locks(*this);
  locks.Shared(ino).Acquire();
  absl::StatusOr<vm::Pin<meta::Node>> node = PinNode(ino, vm::Access::kRead);
  if (!node.ok()) return node.status();
  return (*node)->flags;
}

absl::Status Tmpfs::SetFlags(const Caller& caller, Ino ino, uint32_t flags) {
  LockSet locks(*this);
  locks.Exclusive(ino).Acquire();
  absl::StatusOr<vm::Pin<meta::Node>> pin = PinNode(ino, vm::Access::kWrite);
  if (!pin.ok()) return pin.status();
  meta::Node& node = **pin;
  // In the order of vfs_fileattr_set, fileattr_set_prepare and shmem_fileattr_set.
  if (caller.uid != 0 && caller.uid != node.uid) return ErrnoError(EPERM);
  if (((node.flags ^ flags) & kGuardFlags) != 0 && caller.uid != 0) {
    return ErrnoError(EPERM, "only root changes immutable or append-only");
  }
  if ((flags & ~kSettableFlags) != 0) return ErrnoError(EOPNOTSUPP);
  node.flags = static_cast<uint16_t>(flags);
  node.ctime_ns = NowNs();
  return absl::OkStatus();
}

struct statvfs Tmpfs::StatFs() {
  ReapPools();  // so that df counts no page that only waits to be given back
  struct statvfs st {};
  const vm::Accounting& accounting = vm_->accounting();
  const uint64_t charged = accounting.charged();
  uint64_t blocks = 0;
  uint64_t available = 0;
  if (options_.size_bytes != 0) {
    blocks = options_.size_bytes / vm::kPageSize;
    available = blocks - std::min(blocks, charged);
  } else {
    // Charges stop at capacity - reserve (the reserve is for operations that free
    // space), so that is what is available.
    blocks = accounting.capacity();
    const uint64_t usable = accounting.capacity() - accounting.reserve();
    available = usable - std::min(usable, charged);
  }
  // Without nr_inodes=, nodes are limited by space alone: 32 nodes of 128 bytes fill
  // a page, so that many per page of capacity.
  const uint64_t files =
      options_.max_inodes != 0 ? options_.max_inodes : accounting.capacity() * 32;
  const uint64_t nodes = nodes_->nodes();
  st.f_bsize = vm::kPageSize;
  st.f_frsize = vm::kPageSize;
  st.f_blocks = blocks;
  st.f_bfree = available;
  st.f_bavail = available;
  st.f_files = files;
  st.f_ffree = files - std::min(files, nodes);
  st.f_favail = st.f_ffree;
  st.f_namemax = meta::DirIndex::kMaxName;
  return st;
}

}  // namespace ptmpfs::fs
