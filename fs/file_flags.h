// file_flags: the inode flags of chattr(1) that ptmpfs keeps, the four Linux tmpfs
// keeps (shmem_fileattr_set): immutable, append-only, nodump and noatime.
//
// Theory. The kernel enforces these flags through the inode's i_flags, which FUSE
// never sets: over FUSE the kernel only stores and reports them (FS_IOC_GETFLAGS and
// FS_IOC_FSGETXATTR reach the daemon as ioctls). So the core enforces them itself,
// where the VFS would, with its errno (EPERM) and in its order:
//   immutable     no open for writing or O_TRUNC, no write, truncate, fallocate,
//                 chmod, chown, utimes, xattr or ACL change, no link, unlink or
//                 rename of it, and no entry made in or removed from it;
//   append-only   opens for writing only with O_APPEND, writes only at the end,
//                 no O_TRUNC, truncate, chmod, chown, explicit times, xattr
//                 change, link, unlink or rename; fallocate only allocates (no
//                 punch or zeroing); a directory takes new entries but loses none;
//   noatime       reads leave atime alone;
//   nodump        kept for dump(8), nothing else.
// A new node inherits nodump and noatime from its directory, as tmpfs's do
// (SHMEM_FL_INHERITED). Changing immutable or append-only takes CAP_LINUX_IMMUTABLE,
// which the kernel checks before asking; the core asks for root, its only view of it.
//
// The flags are stored in the node's 16-bit `flags` field (meta/node.h) with the
// values of FS_*_FL, so FS_IOC_GETFLAGS needs no translation.
#ifndef PTMPFS_FS_FILE_FLAGS_H_
#define PTMPFS_FS_FILE_FLAGS_H_

#include <cerrno>
#include <cstdint>

#include "absl/status/status.h"
#include "fs/errno_status.h"
#include "meta/node.h"

namespace ptmpfs::fs {

inline constexpr uint32_t kImmutableFlag = 0x10;  // FS_IMMUTABLE_FL
inline constexpr uint32_t kAppendFlag = 0x20;     // FS_APPEND_FL
inline constexpr uint32_t kNoDumpFlag = 0x40;     // FS_NODUMP_FL
inline constexpr uint32_t kNoAtimeFlag = 0x80;    // FS_NOATIME_FL
inline constexpr uint32_t kSettableFlags = kImmutableFlag | kAppendFlag | kNoDumpFlag | kNoAtimeFlag;
inline constexpr uint32_t kInheritedFlags = kNoDumpFlag | kNoAtimeFlag;
// Only root (CAP_LINUX_IMMUTABLE) may set or clear these.
inline constexpr uint32_t kGuardFlags = kImmutableFlag | kAppendFlag;

inline bool IsImmutable(const meta::Node& node) { return (node.flags & kImmutableFlag) != 0; }
inline bool IsAppendOnly(const meta::Node& node) { return (node.flags & kAppendFlag) != 0; }

// inode_permission(MAY_WRITE) of an immutable node: EPERM.
inline absl::Status CheckNotImmutable(const meta::Node& node) {
  if (IsImmutable(node)) return ErrnoError(EPERM, "the file is immutable");
  return absl::OkStatus();
}

// Neither immutable nor append-only: what may_delete, vfs_link, xattr_permission
// and notify_change (chmod, chown, explicit times) ask of a node.
inline absl::Status CheckUnguarded(const meta::Node& node) {
  if ((node.flags & kGuardFlags) != 0) {
    return ErrnoError(EPERM, "the file is immutable or append-only");
  }
  return absl::OkStatus();
}

// A directory an entry may be removed from (may_delete): not immutable (no write
// permission) and not append-only.
inline absl::Status CheckMayRemoveFrom(const meta::Node& dir) { return CheckUnguarded(dir); }

}  // namespace ptmpfs::fs

#endif  // PTMPFS_FS_FILE_FLAGS_H_
