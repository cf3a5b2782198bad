// xattr: a node's extended attributes, as one packed block in pageable memory.
//
// Theory. A node with attributes points at a kmem blob (kmem.h) of records
//   [u8 name length][u32 value length][name bytes][value bytes]
// in insertion order. Attributes are few and small on almost every file (a POSIX
// ACL is 28-44 bytes), so each change reads the block, edits a copy, stores a new
// blob and frees the old one: simple, and a failed store leaves the old block as it
// was (ENOSPC changes nothing). Removing an attribute stores a smaller block, but
// still a new one: it draws on the accounting reserve kept for operations that free
// space (DESIGN.md, invariant 4), so it succeeds when the file system is full.
// Names are up to 255 bytes (with their namespace
// prefix: user., trusted., security., system.), values up to 64 KiB, and a block up
// to Kmem::kMaxBlob (1 MiB).
//
// Errors, as the VFS wants them: NotFound (ENODATA) for a missing name or a
// kReplace of one; AlreadyExists (EEXIST) for kCreate of a present one; OutOfRange
// (ERANGE) for a name over 255 bytes or a buffer too small; FailedPrecondition
// (E2BIG) for a value over 64 KiB; ResourceExhausted (ENOSPC) for no space.
//
// Locking. None: the caller holds the node's lock (shared to read, exclusive to
// change) and stores the block's address and length back in the node.
#ifndef PTMPFS_META_XATTR_H_
#define PTMPFS_META_XATTR_H_

#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "meta/kmem.h"

namespace ptmpfs::meta {

// Where a node keeps its block: the two fields of Node.
struct XattrBlock {
  Addr address = kNullAddr;
  uint32_t bytes = 0;
};

class Xattrs {
 public:
  static constexpr size_t kMaxName = 255;
  static constexpr size_t kMaxValue = 64 << 10;
  enum class SetMode { kAny, kCreate, kReplace };

  explicit Xattrs(Kmem& kmem) : kmem_(kmem) {}

  // The value's size; copies it into `out` unless out_size is 0 (size query).
  absl::StatusOr<size_t> Get(const XattrBlock& block, absl::string_view name, char* out,
                             size_t out_size);
  absl::Status Set(XattrBlock& block, absl::string_view name, absl::string_view value,
                   SetMode mode);
  // As Set, but `block` stays as it is, still valid: returns the block with the change
  // made, a new blob. The caller then either keeps it and frees `block` (FreeAll),
  // or frees it to abandon the change; so a change can be made ready before others
  // that may still fail, and committed with nothing left that can fail.
  absl::StatusOr<XattrBlock> SetStaged(const XattrBlock& block, absl::string_view name,
                                       absl::string_view value, SetMode mode);
  // Never ENOSPC: the smaller block is charged to the reserve (see above).
  absl::Status Remove(XattrBlock& block, absl::string_view name);
  // The names, each followed by a NUL, as listxattr returns them: their total size,
  // copied into `out` unless out_size is 0.
  absl::StatusOr<size_t> List(const XattrBlock& block, char* out, size_t out_size);
  void FreeAll(XattrBlock& block);

 private:
  absl::StatusOr<std::string> Load(const XattrBlock& block);
  // `records` as a new block (null when empty); `block` is left alone.
  absl::StatusOr<XattrBlock> StoreNew(const std::string& records, bool from_reserve);
  // Replaces the block with `records` (or frees it when empty).
  absl::Status Store(XattrBlock& block, const std::string& records, bool from_reserve = false);
  // The records of `block` with `name` set to `value` (Set's checks and errors).
  absl::StatusOr<std::string> WithValue(const XattrBlock& block, absl::string_view name,
                                        absl::string_view value, SetMode mode);

  Kmem& kmem_;
};

}  // namespace ptmpfs::meta

#endif  // PTMPFS_META_XATTR_H_
