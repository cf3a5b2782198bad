// xattrs.cc: extended attributes and POSIX ACLs, with Linux tmpfs semantics.
//
// Theory. A node's attributes are one packed block (meta/xattr.h) whose address and
// length live in the node; each operation copies them into an XattrBlock, lets
// meta::Xattrs work on it, and stores them back. Namespaces are checked as the VFS
// does (xattr_resolve_name): user., trusted., security. and the two POSIX ACL names
// are stored; any other name is EOPNOTSUPP. user. attributes exist only on regular
// files and directories (xattr_permission: EPERM to set, ENODATA to get elsewhere).
//
// POSIX ACLs are stored in their xattr form (little-endian: a u32 version 2 header,
// then {u16 tag, u16 perm, u32 id} entries, as posix_acl_xattr.h) and kept in step
// with the mode as the kernel does: setting an access ACL sets the mode's
// permission bits (posix_acl_update_mode), and one equivalent to a mode is not
// stored at all; chmod rewrites the ACL's owner, mask (or group) and other entries
// (posix_acl_chmod, StageAclChmod: the new block is made before setattr changes
// anything, and swapped in once nothing can fail); a new node inherits its
// parent's default ACL, or, where there is none, loses the caller's umask bits
// (posix_acl_create, InheritAcl: the umask reaches the core unapplied,
// FUSE_CAP_DONT_MASK). Checking permissions against an ACL is the kernel's
// (default_permissions).
//
// Removing an attribute (RemoveXattr, an ACL the mode says in full, undoing an
// inherited ACL) never fails for want of space: meta::Xattrs::Remove draws on the
// reserve for operations that free space (DESIGN.md, invariant 4).
//
// Locking: the node's stripe, shared to read, exclusive to change; ctime changes
// with every change.
#include <sys/xattr.h>

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "fs/file_flags.h"
#include "fs/tmpfs.h"

namespace ptmpfs::fs {

namespace {

constexpr absl::string_view kAclAccess = "system.posix_acl_access";
constexpr absl::string_view kAclDefault = "system.posix_acl_default";

enum class Namespace { kUser, kTrusted, kSecurity, kAclAccess, kAclDefault };

// The namespace of an attribute name: ERANGE for an empty or over-long name (as
// the VFS copies names in), EINVAL for a bare prefix, EOPNOTSUPP for any other.
absl::StatusOr<Namespace> NamespaceOf(absl::string_view name) {
  if (name.empty() || name.size() > meta::Xattrs::kMaxName) return ErrnoError(ERANGE);
  if (name == kAclAccess) return Namespace::kAclAccess;
  if (name == kAclDefault) return Namespace::kAclDefault;
  static constexpr struct {
    absl::string_view prefix;
    Namespace space;
  } kPrefixes[] = {{"user.", Namespace::kUser},
                   {"trusted.", Namespace::kTrusted},
                   {"security.", Namespace::kSecurity}};
  for (const auto& [prefix, space] : kPrefixes) {
    if (!absl::StartsWith(name, prefix)) continue;
    if (name.size() == prefix.size()) return ErrnoError(EINVAL);
    return space;
  }
  return ErrnoError(EOPNOTSUPP);
}

// meta::Xattrs' statuses as the errnos the VFS returns (xattr.h lists them).
absl::Status XattrErrno(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kOk:
      return status;
    case absl::StatusCode::kNotFound:
      return ErrnoError(ENODATA);
    case absl::StatusCode::kAlreadyExists:
      return ErrnoError(EEXIST);
    case absl::StatusCode::kOutOfRange:
      return ErrnoError(ERANGE);
    case absl::StatusCode::kFailedPrecondition:
      return ErrnoError(E2BIG);
    case absl::StatusCode::kResourceExhausted:
      return ErrnoError(ENOSPC);
    case absl::StatusCode::kDataLoss:
      return ErrnoError(EIO);
    default:
      return status;
  }
}

meta::XattrBlock BlockOf(const meta::Node& node) {
  return meta::XattrBlock{node.xattrs, node.xattr_bytes};
}

void StoreBlock(meta::Node& node, const meta::XattrBlock& block) {
  node.xattrs = block.address;
  node.xattr_bytes = block.bytes;
}

// ---- POSIX ACLs in their xattr form (include/uapi/linux/posix_acl_xattr.h) ----

constexpr uint32_t kAclVersion = 2;
constexpr uint16_t kAclUserObj = 0x01;
constexpr uint16_t kAclUser = 0x02;
constexpr uint16_t kAclGroupObj = 0x04;
constexpr uint16_t kAclGroup = 0x08;
constexpr uint16_t kAclMask = 0x10;
constexpr uint16_t kAclOther = 0x20;
constexpr size_t kAclHeaderBytes = 4;
constexpr size_t kAclEntryBytes = 8;

struct AclEntry {
  uint16_t tag;
  uint16_t perm;
  uint32_t id;
};

// Parses and validates an ACL as posix_acl_from_xattr and posix_acl_valid do:
// EINVAL for a bad size, version, tag, permission, order or a missing entry. An
// ACL of no entries parses to an empty list (the kernel's "no ACL").
// The host is little-endian (x86-64, arm64), as the format is.
absl::StatusOr<std::vector<AclEntry>> ParseAcl(absl::string_view value) {
  if (value.size() < kAclHeaderBytes || (value.size() - kAclHeaderBytes) % kAclEntryBytes != 0) {
    return ErrnoError(EINVAL, "malformed POSIX ACL");
  }
  uint32_t version;
  memcpy(&version, value.data(), sizeof(version));
  if (version != kAclVersion) return ErrnoError(EOPNOTSUPP, "unknown POSIX ACL version");
  std::vector<AclEntry> entries((value.size() - kAclHeaderBytes) / kAclEntryBytes);
  int user_obj = 0, group_obj = 0, other = 0, mask = 0, named = 0;
  int previous_tag = 0;
  uint32_t previous_id = 0;
  for (size_t i = 0; i < entries.size(); ++i) {
    const char* at = value.data() + kAclHeaderBytes + i * kAclEntryBytes;
    AclEntry& entry = entries[i];
    memcpy(&entry.tag, at, 2);
    memcpy(&entry.perm, at + 2, 2);
    memcpy(&entry.id, at + 4, 4);
    if ((entry.perm & ~7u) != 0) return ErrnoError(EINVAL, "bad ACL permission");
    // Sorted by tag, named entries by id, as posix_acl_valid wants them.
    if (entry.tag < previous_tag ||
        (entry.tag == previous_tag && (entry.tag != kAclUser && entry.tag != kAclGroup))) {
      return ErrnoError(EINVAL, "ACL entries out of order");
    }
    if (entry.tag == previous_tag && entry.id <= previous_id) {
      return ErrnoError(EINVAL, "ACL entries out of order");
    }
    switch (entry.tag) {
      case kAclUserObj:
        ++user_obj;
        break;
      case kAclGroupObj:
        ++group_obj;
        break;
      case kAclOther:
        ++other;
        break;
      case kAclMask:
        ++mask;
        break;
      case kAclUser:
      case kAclGroup:
        ++named;
        break;
      default:
        return ErrnoError(EINVAL, "bad ACL tag");
    }
    previous_tag = entry.tag;
    previous_id = entry.id;
  }
  if (entries.empty()) return entries;
  if (user_obj != 1 || group_obj != 1 || other != 1 || (named > 0 && mask != 1)) {
    return ErrnoError(EINVAL, "incomplete ACL");
  }
  return entries;
}

std::string FormatAcl(const std::vector<AclEntry>& entries) {
  std::string value(kAclHeaderBytes + entries.size() * kAclEntryBytes, '\0');
  memcpy(value.data(), &kAclVersion, sizeof(kAclVersion));
  for (size_t i = 0; i < entries.size(); ++i) {
    char* at = value.data() + kAclHeaderBytes + i * kAclEntryBytes;
    memcpy(at, &entries[i].tag, 2);
    memcpy(at + 2, &entries[i].perm, 2);
    memcpy(at + 4, &entries[i].id, 4);
  }
  return value;
}

// posix_acl_equiv_mode: sets `mode`'s permission bits from the ACL (the group bits
// from the mask if there is one) and says whether the mode alone expresses it.
bool AclEquivalentMode(const std::vector<AclEntry>& entries, uint32_t& mode) {
  uint32_t bits = 0;
  bool equivalent = true;
  for (const AclEntry& entry : entries) {
    switch (entry.tag) {
      case kAclUserObj:
        bits |= (entry.perm & 7u) << 6;
        break;
      case kAclGroupObj:
        bits |= (entry.perm & 7u) << 3;
        break;
      case kAclOther:
        bits |= entry.perm & 7u;
        break;
      case kAclMask:  // sorted after GROUP_OBJ: it overrides the group bits
        bits = (bits & ~070u) | ((entry.perm & 7u) << 3);
        equivalent = false;
        break;
      default:  // named users and groups
        equivalent = false;
        break;
    }
  }
  mode = (mode & ~0777u) | bits;
  return equivalent;
}

// posix_acl_create_masq: narrows the ACL to `mode` and `mode` to the ACL. Returns
// whether the ACL is still more than the mode.
bool AclCreateMasq(std::vector<AclEntry>& entries, uint32_t& mode) {
  AclEntry* group_obj = nullptr;
  AclEntry* mask = nullptr;
  bool equivalent = true;
  for (AclEntry& entry : entries) {
    switch (entry.tag) {
      case kAclUserObj:
        entry.perm &= (mode >> 6) & 7u;
        mode = (mode & ~0700u) | (uint32_t{entry.perm} << 6);
        break;
      case kAclGroupObj:
        group_obj = &entry;
        break;
      case kAclOther:
        entry.perm &= mode & 7u;
        mode = (mode & ~07u) | entry.perm;
        break;
      case kAclMask:
        mask = &entry;
        equivalent = false;
        break;
      default:
        equivalent = false;
        break;
    }
  }
  AclEntry* group_bits = mask != nullptr ? mask : group_obj;
  if (group_bits != nullptr) {
    group_bits->perm &= (mode >> 3) & 7u;
    mode = (mode & ~070u) | (uint32_t{group_bits->perm} << 3);
  }
  return !equivalent;
}

// Reads an attribute's whole value. NotFound (ENODATA) if absent.
absl::StatusOr<std::string> ReadValue(meta::Xattrs& xattrs, const meta::XattrBlock& block,
                                      absl::string_view name) {
  absl::StatusOr<size_t> size = xattrs.Get(block, name, nullptr, 0);
  if (!size.ok()) return size.status();
  std::string value(*size, '\0');
  if (*size == 0) return value;
  absl::StatusOr<size_t> read = xattrs.Get(block, name, value.data(), value.size());
  if (!read.ok()) return read.status();
  value.resize(*read);
  return value;
}

}  // namespace

absl::Status Tmpfs::SetXattr(Ino ino, absl::string_view name, absl::string_view value, int flags,
                             const Caller* caller) {
  absl::StatusOr<Namespace> space = NamespaceOf(name);
  if (!space.ok()) return space.status();
  if ((flags & ~(XATTR_CREATE | XATTR_REPLACE)) != 0 ||
      (flags & (XATTR_CREATE | XATTR_REPLACE)) == (XATTR_CREATE | XATTR_REPLACE)) {
    return ErrnoError(EINVAL);
  }
  if (value.size() > meta::Xattrs::kMaxValue) return ErrnoError(E2BIG);
  const meta::Xattrs::SetMode set_mode =
      (flags & XATTR_CREATE) != 0    ? meta::Xattrs::SetMode::kCreate
      : (flags & XATTR_REPLACE) != 0 ? meta::Xattrs::SetMode::kReplace
                                     : meta::Xattrs::SetMode::kAny;

  LockSet locks(*this);
  locks.Exclusive(ino).Acquire();
  absl::StatusOr<vm::Pin<meta::Node>> pin = PinNode(ino, vm::Access::kWrite);
  if (!pin.ok()) return pin.status();
  meta::Node& node = **pin;
  // xattr_permission: an immutable or append-only node's xattrs (and ACLs) stay.
  if (absl::Status writable = CheckUnguarded(node); !writable.ok()) return writable;
  if (*space == Namespace::kUser && !S_ISREG(node.mode) && !S_ISDIR(node.mode)) {
    return ErrnoError(EPERM);
  }
  meta::XattrBlock block = BlockOf(node);

  if (*space == Namespace::kAclAccess || *space == Namespace::kAclDefault) {
    // set_posix_acl: symlinks have no ACLs; flags are not looked at.
    if (S_ISLNK(node.mode)) return ErrnoError(EOPNOTSUPP);
    absl::StatusOr<std::vector<AclEntry>> entries = ParseAcl(value);
    if (!entries.ok()) return entries.status();
    if (*space == Namespace::kAclDefault && !S_ISDIR(node.mode)) {
      return entries->empty() ? absl::OkStatus() : ErrnoError(EACCES);
    }
    uint32_t mode = node.mode;
    bool store = !entries->empty();
    if (*space == Namespace::kAclAccess && store) {
      // posix_acl_update_mode: an ACL the mode says in full is the mode.
      store = !AclEquivalentMode(*entries, mode);
    }
    if (*space == Namespace::kAclAccess && caller != nullptr && caller->uid != 0 &&
        caller->gid != node.gid) {
      mode &= ~static_cast<uint32_t>(S_ISGID);  // posix_acl_update_mode
    }
    absl::Status changed =
        store ? xattrs_->Set(block, name, FormatAcl(*entries), meta::Xattrs::SetMode::kAny)
              : xattrs_->Remove(block, name);
    if (!changed.ok() && !absl::IsNotFound(changed)) return XattrErrno(changed);
    StoreBlock(node, block);
    node.mode = mode;
    node.ctime_ns = NowNs();
    return absl::OkStatus();
  }

  if (absl::Status set = xattrs_->Set(block, name, value, set_mode); !set.ok()) {
    return XattrErrno(set);
  }
  StoreBlock(node, block);
  node.ctime_ns = NowNs();
  return absl::OkStatus();
}

absl::StatusOr<size_t> Tmpfs::GetXattr(Ino ino, absl::string_view name, char* out,
                                       size_t out_size) {
  absl::StatusOr<Namespace> space = NamespaceOf(name);
  if (!space.ok()) return space.status();
  LockSet locks(*this);
  locks.Shared(ino).Acquire();
  absl::StatusOr<vm::Pin<meta::Node>> pin = PinNode(ino, vm::Access::kRead);
  if (!pin.ok()) return pin.status();
  const meta::Node& node = **pin;
  if (*space == Namespace::kUser && !S_ISREG(node.mode) && !S_ISDIR(node.mode)) {
    return ErrnoError(ENODATA);
  }
  absl::StatusOr<size_t> size = xattrs_->Get(BlockOf(node), name, out, out_size);
  if (!size.ok()) return XattrErrno(size.status());
  return size;
}

absl::StatusOr<size_t> Tmpfs::ListXattr(Ino ino, char* out, size_t out_size) {
  LockSet locks(*this);
  locks.Shared(ino).Acquire();
  absl::StatusOr<vm::Pin<meta::Node>> pin = PinNode(ino, vm::Access::kRead);
  if (!pin.ok()) return pin.status();
  absl::StatusOr<size_t> size = xattrs_->List(BlockOf(**pin), out, out_size);
  if (!size.ok()) return XattrErrno(size.status());
  return size;
}

absl::Status Tmpfs::RemoveXattr(Ino ino, absl::string_view name) {
  absl::StatusOr<Namespace> space = NamespaceOf(name);
  if (!space.ok()) return space.status();
  LockSet locks(*this);
  locks.Exclusive(ino).Acquire();
  absl::StatusOr<vm::Pin<meta::Node>> pin = PinNode(ino, vm::Access::kWrite);
  if (!pin.ok()) return pin.status();
  meta::Node& node = **pin;
  // xattr_permission: an immutable or append-only node's xattrs (and ACLs) stay.
  if (absl::Status writable = CheckUnguarded(node); !writable.ok()) return writable;
  if (*space == Namespace::kUser && !S_ISREG(node.mode) && !S_ISDIR(node.mode)) {
    return ErrnoError(EPERM);
  }
  // Removing an access ACL leaves the mode as it is (set_posix_acl(NULL)).
  meta::XattrBlock block = BlockOf(node);
  if (absl::Status removed = xattrs_->Remove(block, name); !removed.ok()) {
    return XattrErrno(removed);
  }
  StoreBlock(node, block);
  node.ctime_ns = NowNs();
  return absl::OkStatus();
}

absl::StatusOr<std::optional<meta::XattrBlock>> Tmpfs::StageAclChmod(const meta::Node& node,
                                                                     uint32_t mode) {
  if (node.xattrs == meta::kNullAddr || S_ISLNK(node.mode)) return std::nullopt;
  const meta::XattrBlock block = BlockOf(node);
  absl::StatusOr<std::string> value = ReadValue(*xattrs_, block, kAclAccess);
  if (absl::IsNotFound(value.status())) return std::nullopt;
  if (!value.ok()) return XattrErrno(value.status());
  absl::StatusOr<std::vector<AclEntry>> entries = ParseAcl(*value);
  if (!entries.ok() || entries->empty()) return std::nullopt;  // stored ones are valid
  const bool has_mask = std::any_of(entries->begin(), entries->end(),
                                    [](const AclEntry& entry) { return entry.tag == kAclMask; });
  for (AclEntry& entry : *entries) {
    if (entry.tag == kAclUserObj) entry.perm = (mode >> 6) & 7u;
    if (entry.tag == (has_mask ? kAclMask : kAclGroupObj)) entry.perm = (mode >> 3) & 7u;
    if (entry.tag == kAclOther) entry.perm = mode & 7u;
  }
  const std::string rewritten = FormatAcl(*entries);
  if (rewritten == *value) return std::nullopt;  // the mode's bits are the ACL's already
  absl::StatusOr<meta::XattrBlock> staged =
      xattrs_->SetStaged(block, kAclAccess, rewritten, meta::Xattrs::SetMode::kReplace);
  if (!staged.ok()) return XattrErrno(staged.status());
  return *staged;
}

void Tmpfs::CommitXattrs(meta::Node& node, const meta::XattrBlock& staged) {
  meta::XattrBlock old = BlockOf(node);
  xattrs_->FreeAll(old);
  StoreBlock(node, staged);
}

void Tmpfs::AbandonXattrs(meta::XattrBlock staged) { xattrs_->FreeAll(staged); }

absl::Status Tmpfs::InheritAcl(const meta::Node& parent, meta::Node& child, mode_t umask) {
  assert(S_ISDIR(parent.mode));
  // posix_acl_create: symlinks take neither a default ACL nor the umask.
  if (S_ISLNK(child.mode)) return absl::OkStatus();
  std::string inherited;
  if (parent.xattrs != meta::kNullAddr) {
    absl::StatusOr<std::string> value = ReadValue(*xattrs_, BlockOf(parent), kAclDefault);
    if (!value.ok() && !absl::IsNotFound(value.status())) return XattrErrno(value.status());
    if (value.ok()) inherited = *std::move(value);
  }
  // Stored default ACLs are valid and never empty (SetXattr removes an empty one), so
  // this is "the parent has no default ACL".
  absl::StatusOr<std::vector<AclEntry>> entries = ParseAcl(inherited);
  if (inherited.empty() || !entries.ok() || entries->empty()) {
    child.mode &= ~static_cast<uint32_t>(umask & 0777);
    return absl::OkStatus();
  }

  meta::XattrBlock block = BlockOf(child);
  if (S_ISDIR(child.mode)) {
    absl::Status set = xattrs_->Set(block, kAclDefault, inherited, meta::Xattrs::SetMode::kAny);
    if (!set.ok()) return XattrErrno(set);
  }
  uint32_t mode = child.mode;
  if (AclCreateMasq(*entries, mode)) {
    absl::Status set =
        xattrs_->Set(block, kAclAccess, FormatAcl(*entries), meta::Xattrs::SetMode::kAny);
    if (!set.ok()) {
      // Nothing half done: the default ACL set above goes again.
      if (S_ISDIR(child.mode)) (void)xattrs_->Remove(block, kAclDefault);
      StoreBlock(child, block);
      return XattrErrno(set);
    }
  }
  StoreBlock(child, block);
  child.mode = mode;
  return absl::OkStatus();
}

}  // namespace ptmpfs::fs
