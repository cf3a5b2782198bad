// tmpfs: the POSIX core of ptmpfs, with Linux tmpfs semantics, and no FUSE in it.
//
// Theory. Every operation is a call on inode numbers that returns a result or an
// errno-carrying status (errno_status.h). The core keeps nothing per file outside
// pageable memory: a node is found from its inode number by arithmetic (node.h), a
// name in its directory's index (dir_index.h), and a file's data in its anonymous
// object (vm/anon_object.h). The FUSE adapter (fuse_adapter.h) translates requests
// into these calls and nothing more; tests call them directly.
//
// The operations are split by concern as NetBSD's tmpfs splits its vnode ops:
//   tmpfs.cc       creation, the lock table, helpers shared by the others
//   names.cc       lookup, forget, mknod, mkdir, symlink, readlink, link, unlink,
//                  rmdir, readdir
//   rename.cc      rename with RENAME_NOREPLACE, RENAME_EXCHANGE, RENAME_WHITEOUT
//   attributes.cc  getattr, setattr (chmod, chown, truncate, utimens), chattr's
//                  flags (enforced where each operation checks: file_flags.h),
//                  statfs, access checks
//   data.cc        open, create, release, read, write, fallocate, lseek,
//                  copy_file_range, fsync
//   xattrs.cc      extended attributes and POSIX ACLs
//
// Invariants.
//  1. A node is freed exactly when nlink == 0, lookup_count == 0 and
//     open_count == 0 (the last of unlink, FORGET and release frees it).
//  2. Limits are checked before any change: size= (pages charged to data and
//     metadata), nr_inodes=, ENAMETOOLONG past 255 bytes, EFBIG past the largest
//     file, EMLINK where nlink would overflow, all atomically with what they
//     limit (nr_inodes is a count raised before the node is made). Removing things
//     never fails for want of space: what it must allocate (an xattr block one
//     attribute smaller) comes from the reserve kept for that (DESIGN.md, 4).
//  3. The root directory is inode 1 and is never freed.
//
// Locking. A table of striped reader/writer locks keyed by inode number guards node
// fields and directory contents. An operation locks every inode it reads (shared)
// or changes (exclusive) in ascending stripe order, through LockSet; so operations on
// different directories proceed in parallel, and nothing deadlocks. Below the lock
// table: meta/ pools and vm/ lock themselves (leaf locks). Lock order: LockSet
// stripes (ascending) -> pool / kmem locks -> vm locks. A ReadWindowGate's mutex is
// a leaf too: taken under a stripe by a truncate waiting for read windows, and with
// no lock held by a window's release.
#ifndef PTMPFS_FS_TMPFS_H_
#define PTMPFS_FS_TMPFS_H_

#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/types.h>
#include <time.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/inlined_vector.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "fs/errno_status.h"
#include "meta/dir_index.h"
#include "meta/kmem.h"
#include "meta/node.h"
#include "meta/xattr.h"
#include "vm/address_space.h"
#include "vm/anon_object.h"
#include "vm/ubc_window.h"
#include "vm/vm.h"

namespace ptmpfs::fs {

using meta::Ino;
using meta::kRootIno;

// Who asks: the FUSE request's credentials.
struct Caller {
  uid_t uid = 0;
  gid_t gid = 0;
  pid_t pid = 0;
  // Applied by the core to a new node's mode when its directory has no default ACL
  // (posix_acl_create); ignored when it has one, as the kernel ignores it for local
  // file systems. 0 when the kernel applied the umask itself (the FUSE adapter passes
  // it only with FUSE_CAP_DONT_MASK granted).
  mode_t umask = 0;
};

struct Attr {
  Ino ino = 0;
  uint64_t generation = 0;
  uint32_t mode = 0;
  uint32_t nlink = 0;
  uint32_t uid = 0;
  uint32_t gid = 0;
  uint64_t size = 0;
  uint64_t blocks = 0;  // 512-byte blocks of allocated data
  uint64_t rdev = 0;
  timespec atime{};
  timespec mtime{};
  timespec ctime{};
  timespec btime{};

  struct stat ToStat() const;
};

// What setattr changes; unset fields stay.
struct SetAttrRequest {
  std::optional<uint32_t> mode;  // permission bits (and suid/sgid/sticky)
  std::optional<uint32_t> uid;
  std::optional<uint32_t> gid;
  std::optional<uint64_t> size;
  // A time, or now (UTIME_NOW), or absent (UTIME_OMIT).
  std::optional<timespec> atime;
  std::optional<timespec> mtime;
  bool atime_now = false;
  bool mtime_now = false;
  std::optional<timespec> ctime;
  // The FUSE request carries an open file (ftruncate): it may write regardless of
  // mode.
  bool from_open_file = false;
  // The kernel asks for suid/sgid to be killed (FATTR_KILL_SUIDGID, or a chown).
  bool kill_suid_sgid = false;
};

// Where a truncate or punch waits for a file's read windows to go (Tmpfs::
// WaitForReadWindows), and a read window's release wakes it. Files share a fixed
// table of these, by the address of their data object: nothing per file lives
// outside pageable memory (DESIGN.md, invariant 1), and a wake-up meant for another
// file only costs the waiter one more look.
struct ReadWindowGate {
  absl::Mutex mu;
  absl::CondVar released;
  // Threads waiting on this gate: a release takes mu and signals only when nonzero,
  // so reads pay one fence and one load. Read after the release's unwire, and
  // raised before the waiter looks at the wires, with a seq_cst fence on each side:
  // either the waiter sees the page unwired or the release sees the waiter.
  std::atomic<int> waiters{0};

  void Notify();
};

// What Tmpfs::Read returns: a UBC window onto the file, handed out past the node's
// lock so that the FUSE reply is sent straight from its frames. Releasing it (or
// destroying it) unwires its pages and wakes whoever waits to free them.
class ReadWindow {
 public:
  ReadWindow() = default;
  ReadWindow(ReadWindow&& other) noexcept;
  ReadWindow& operator=(ReadWindow&& other) noexcept;
  ReadWindow(const ReadWindow&) = delete;
  ReadWindow& operator=(const ReadWindow&) = delete;
  ~ReadWindow() { Release(); }

  void Release();

  absl::Span<const iovec> iovecs() const { return window_.iovecs(); }
  uint64_t offset() const { return window_.offset(); }
  uint64_t length() const { return window_.length(); }
  uint64_t page_count() const { return window_.page_count(); }
  void CopyOut(void* buffer) const { window_.CopyOut(buffer); }

 private:
  friend class Tmpfs;
  ReadWindow(vm::UbcWindow window, ReadWindowGate* gate)
      : window_(std::move(window)), gate_(gate) {}

  vm::UbcWindow window_;
  ReadWindowGate* gate_ = nullptr;  // null: nothing to tell on release
};

struct DirEntry {
  absl::string_view name;
  Ino ino = 0;
  uint32_t type = 0;     // DT_*
  uint64_t next_offset;  // the readdir offset that resumes after this entry
};

class Tmpfs {
 public:
  struct Options {
    vm::VmOptions vm;
    uint64_t size_bytes = 0;  // size=: data + metadata pages; 0 for the vm's capacity
    uint64_t max_inodes = 0;  // nr_inodes=: 0 for no limit beyond space
    uint32_t root_mode = 01777;
    uint32_t root_uid = 0;
    uint32_t root_gid = 0;
  };

  static absl::StatusOr<std::unique_ptr<Tmpfs>> Create(const Options& options);
  ~Tmpfs();
  // Called with a node's number when a write, copy_file_range or O_TRUNC open clears
  // its suid/sgid bits on the side: those replies carry no attributes, so a cache of
  // them (the kernel's, over FUSE) must be told to fetch them again. Set once before
  // serving; it runs with the node's lock held, so it must not call the core.
  void set_on_suid_sgid_cleared(std::function<void(Ino)> hook) {
    on_suid_sgid_cleared_ = std::move(hook);
  }
  Tmpfs(const Tmpfs&) = delete;
  Tmpfs& operator=(const Tmpfs&) = delete;

  // names.cc
  // Looks `name` up in `parent` and counts one lookup on the node found (FUSE's
  // lookup count, released by Forget). ENOENT, ENOTDIR, ENAMETOOLONG.
  absl::StatusOr<Attr> Lookup(Ino parent, absl::string_view name);
  // Drops `count` lookups; frees the node if that was the last reference.
  void Forget(Ino ino, uint64_t count);
  // Regular files, fifos, sockets, character and block devices. Counts a lookup.
  absl::StatusOr<Attr> Mknod(const Caller& caller, Ino parent, absl::string_view name, mode_t mode,
                             dev_t rdev);
  absl::StatusOr<Attr> Mkdir(const Caller& caller, Ino parent, absl::string_view name, mode_t mode);
  absl::StatusOr<Attr> Symlink(const Caller& caller, Ino parent, absl::string_view name,
                               absl::string_view target);
  absl::StatusOr<std::string> Readlink(Ino ino);
  absl::StatusOr<Attr> Link(Ino ino, Ino new_parent, absl::string_view new_name);
  absl::Status Unlink(Ino parent, absl::string_view name);
  absl::Status Rmdir(Ino parent, absl::string_view name);
  // Calls emit for each entry from `offset` (0: the start, with "." and "..") in
  // stable order until it returns false. Offsets are stable while the directory
  // changes (dir_index.h).
  absl::Status ReadDir(Ino dir, uint64_t offset,
                       absl::FunctionRef<bool(const DirEntry& entry)> emit);
  // For readdirplus: the attributes of the node `ino` that ReadDir found named
  // `name` in `dir`, with a lookup counted, as Lookup. ENOENT if `name` no longer
  // leads to `ino` (removed, renamed over, or its node freed and the number reused).
  absl::StatusOr<Attr> LookupForReadDirPlus(Ino dir, absl::string_view name, Ino ino);

  // rename.cc: flags are RENAME_NOREPLACE, RENAME_EXCHANGE, RENAME_WHITEOUT.
  absl::Status Rename(const Caller& caller, Ino parent, absl::string_view name, Ino new_parent,
                      absl::string_view new_name, unsigned flags);

  // attributes.cc
  absl::StatusOr<Attr> GetAttr(Ino ino);
  absl::StatusOr<Attr> SetAttr(const Caller& caller, Ino ino, const SetAttrRequest& request);
  // chattr's flags (file_flags.h), as FS_IOC_GETFLAGS and FS_IOC_SETFLAGS see them.
  // Setting takes the owner or root, and root to change immutable or append-only;
  // a flag beyond the four kept is EOPNOTSUPP. Sets ctime.
  absl::StatusOr<uint32_t> GetFlags(Ino ino);
  absl::Status SetFlags(const Caller& caller, Ino ino, uint32_t flags);
  struct statvfs StatFs();
  // The node with this number and generation, or ESTALE (export support).
  absl::StatusOr<Attr> ResolveHandle(Ino ino, uint64_t generation);

  // data.cc
  // Opens; O_TRUNC truncates (atomically, with the open). Counts an open.
  absl::StatusOr<Attr> Open(const Caller& caller, Ino ino, int flags);
  // Creates and opens (O_EXCL honoured by the caller's flags). Counts a lookup and
  // an open.
  absl::StatusOr<Attr> Create(const Caller& caller, Ino parent, absl::string_view name, mode_t mode,
                              int flags);
  // Drops an open; frees the node if it was unlinked and this was the last use.
  void Release(Ino ino);
  // A window onto [offset, offset + size) clipped to the file size; empty at EOF.
  // The reply may be sent straight from its iovecs (no copy). Updates atime.
  absl::StatusOr<ReadWindow> Read(Ino ino, uint64_t offset, uint64_t size);
  // Writes the buffers at `offset` (or at the end with O_APPEND in `flags`).
  // Returns bytes written. Clears suid/sgid as tmpfs does for `caller`.
  absl::StatusOr<uint64_t> Write(const Caller& caller, Ino ino, uint64_t offset,
                                 absl::Span<const iovec> buffers, int flags);
  // mode: 0, FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE|KEEP_SIZE, FALLOC_FL_ZERO_RANGE.
  absl::Status Fallocate(Ino ino, int mode, uint64_t offset, uint64_t length);
  // SEEK_DATA, SEEK_HOLE (and SEEK_SET/CUR/END are the kernel's). ENXIO past EOF.
  absl::StatusOr<uint64_t> Lseek(Ino ino, uint64_t offset, int whence);
  absl::StatusOr<uint64_t> CopyFileRange(const Caller& caller, Ino in, uint64_t in_offset, Ino out,
                                         uint64_t out_offset, uint64_t length);
  absl::Status Fsync(Ino ino);

  // xattrs.cc: XATTR_CREATE / XATTR_REPLACE in flags.
  // `caller`, when known, decides whether an access ACL that sets the mode keeps
  // S_ISGID (posix_acl_update_mode: only for root or a member of the file's group);
  // null is a trusted caller.
  absl::Status SetXattr(Ino ino, absl::string_view name, absl::string_view value, int flags,
                        const Caller* caller = nullptr);
  absl::StatusOr<size_t> GetXattr(Ino ino, absl::string_view name, char* out, size_t out_size);
  absl::StatusOr<size_t> ListXattr(Ino ino, char* out, size_t out_size);
  absl::Status RemoveXattr(Ino ino, absl::string_view name);

  // Figures for ptmpfs-stat.
  struct Figures {
    vm::StatsSnapshot vm;
    uint64_t nodes = 0;
    uint64_t dirents = 0;
  };
  Figures ReadFigures();

  vm::Vm& vm() { return *vm_; }
  meta::NodeStore& nodes() { return *nodes_; }

 private:
  Tmpfs() = default;

  // ---- shared by the operation files (tmpfs.cc) ----
  static constexpr int kLockStripes = 1024;

  // Locks a set of inodes' stripes, each once, in ascending order; shared or
  // exclusive per inode (exclusive wins when both are asked for one stripe).
  class LockSet {
   public:
    explicit LockSet(Tmpfs& fs) : fs_(fs) {}
    ~LockSet();
    LockSet& Shared(Ino ino);
    LockSet& Exclusive(Ino ino);
    void Acquire();
    // After Acquire: adds one more inode without breaking the ascending order. Locks
    // it at once when its stripe sorts after every stripe held, else only if the lock
    // is free now (TryLock); false, with nothing added, if that fails or the stripe
    // is held shared and `exclusive` is wanted. The caller then releases and takes
    // the whole set in order.
    bool TryAdd(Ino ino, bool exclusive);
    // Unlocks everything and forgets the set, so it can be filled again.
    void Release();

   private:
    Tmpfs& fs_;
    // Rename locks at most four inodes: inline, no allocation per operation.
    absl::InlinedVector<std::pair<int, bool>, 4> stripes_;  // stripe, exclusive
    bool held_ = false;
  };
  static int StripeOf(Ino ino) { return static_cast<int>((ino * 0x9E3779B97F4A7C15ull) >> 54); }

  // The live node of `ino`, or ENOENT (ESTALE with a generation).
  absl::StatusOr<meta::Addr> NodeOf(Ino ino);
  absl::StatusOr<vm::Pin<meta::Node>> PinNode(Ino ino, vm::Access access);
  Attr AttrOf(Ino ino, const meta::Node& node) const;
  static int64_t NowNs();
  static timespec ToTimespec(int64_t ns);
  static int64_t ToNs(const timespec& time);
  // A new node, counted against nr_inodes. ENOSPC past the limit or out of space.
  absl::StatusOr<meta::Addr> NewNode(uint32_t mode, uint32_t uid, uint32_t gid);
  // Frees a node NewNode made and gives its count back; every node but the root
  // goes through here (FreeNode, and the error paths of making one).
  void DropNode(meta::Addr address);
  // The pools give their empty pages back lazily (meta/pool.h), and the pages' charge
  // and swap slots with them: a tmpfs that only deletes would keep them all, and df
  // and the next write would see the space as used. So every kReapEvery freed nodes,
  // before statfs answers and before a write gives up for space, the excess empty
  // pages of every pool are given back. Takes the pools' own locks (the order of
  // Pool::Get, which gives back a few itself), so it may run under stripe locks.
  void ReapPools();
  // Frees a node whose last reference went (invariant 1): its data, symlink target,
  // xattrs, directory index. REQUIRES: the node's stripe held exclusive.
  void FreeNode(Ino ino);
  // True when the node's last reference is gone (invariant 1).
  static bool Unreferenced(const meta::Node& node);
  // Checks a name for an entry: ENAMETOOLONG, EINVAL for "", "." and "..".
  static absl::Status CheckName(absl::string_view name);
  // The file's data object, made on first need.
  absl::StatusOr<vm::AnonObject*> ObjectOf(meta::Node& node, bool create);
  // Charges a data page count against size= (ENOSPC).
  bool DataFits(uint64_t more_pages) const;

  // ---- names.cc and rename.cc helpers ----
  // nlink never goes past this (EMLINK): uint32 less one, so nlink++ cannot wrap.
  static constexpr uint32_t kMaxLinks = 0xFFFFFFFE;
  // The DT_* type of an entry for a node of this mode.
  static uint8_t DirentType(uint32_t mode);
  // A meta/ status as the errno POSIX wants: NotFound -> ENOENT, AlreadyExists ->
  // EEXIST, ResourceExhausted -> ENOSPC, InvalidArgument -> EINVAL; others as they are.
  static absl::Status MetaErrno(const absl::Status& status);
  // The inode `name` names in directory `dir` ("." and ".." included), or 0 when no
  // such entry. ENOTDIR if dir is not a directory, ENOENT if it is gone.
  // REQUIRES: dir's stripe held (shared is enough).
  absl::StatusOr<Ino> EntryIno(Ino dir, absl::string_view name);
  // Counts one lookup on the node and returns its attributes.
  // REQUIRES: ino's stripe held exclusive.
  absl::StatusOr<Attr> CountLookup(Ino ino);
  // Mknod, Mkdir and Symlink: a new node of `mode` named `name` in `parent`, with a
  // lookup counted. `target` is a symlink's (ignored for other types).
  absl::StatusOr<Attr> MakeNode(const Caller& caller, Ino parent, absl::string_view name,
                                uint32_t mode, uint64_t rdev, absl::string_view target);
  // Resolves `name` in `parent` and leaves `locks` holding the parent (shared, or
  // exclusive) and the child (exclusive). Usually one look under the parent's lock and
  // the child's lock added to it (LockSet::TryAdd); when that would break the lock
  // order, both are taken in order and the entry is looked at again, in case it
  // changed meanwhile. ENOENT, ENOTDIR.
  absl::StatusOr<Ino> LockEntry(LockSet& locks, Ino parent, absl::string_view name,
                                bool parent_exclusive);
  // Unlink (directory false) and Rmdir (directory true).
  absl::Status RemoveName(Ino parent, absl::string_view name, bool directory);
  // Rename once both entries are resolved to `source` and `target` (0: no target)
  // and every inode involved is locked exclusive.
  absl::Status RenameLocked(const Caller& caller, Ino parent, absl::string_view name, Ino source,
                            Ino new_parent, absl::string_view new_name, Ino target, unsigned flags);
  // True if directory `ancestor` is `dir` or lies on the way from `dir` to the root.
  // REQUIRES: rename_mu_ held (no directory changes parent meanwhile).
  absl::StatusOr<bool> IsAncestorOf(Ino ancestor, Ino dir);
  // Serializes renames between different directories, as the VFS's
  // s_vfs_rename_mutex does: only they change a directory's dir.parent, so under it
  // the chain from a directory to the root is stable and the "not under itself"
  // check is sound. Lock order: rename_mu_ -> LockSet stripes.
  absl::Mutex rename_mu_;
  // ---- end of names.cc and rename.cc helpers ----

  // ---- attributes.cc, data.cc and xattrs.cc helpers ----
  // A regular file whose size is nonzero has a data object (data.cc keeps this: every
  // size change goes through ResizeLocked, Write or Fallocate), so Read never has to
  // create one under a shared lock.
  //
  // Read() hands its window out past the node's lock (the FUSE reply is sent from its
  // frames), so before pages of [offset, end) are freed or zeroed this waits until no
  // read window still wires one of them. New windows cannot start meanwhile. It
  // sleeps on the object's ReadWindowGate, woken by each release there, and looks
  // again at least every kReadWindowWaitSlice (a wire taken by something other than
  // a read window, which wakes nobody, is brief); EBUSY, with nothing changed, if a
  // window is still out after kReadWindowWaitLimit (a reply that never finished).
  // REQUIRES: the node's stripe held exclusive; this thread holds no window on it.
  absl::Status WaitForReadWindows(vm::AnonObject& object, uint64_t offset, uint64_t end);
  static constexpr int kReadWindowGates = 64;
  ReadWindowGate& GateOf(const vm::AnonObject& object);
  // Sets a regular file's size, freeing the pages past a smaller one; mtime and ctime
  // change when the size does (as shmem_setattr). REQUIRES: the stripe held exclusive.
  absl::Status ResizeLocked(meta::Node& node, uint64_t size);
  // The object of a write of [offset, offset + length), its holes charged: ENOSPC
  // (size= or no space) before any change. REQUIRES: the stripe held exclusive,
  // length > 0, offset + length <= 2^63 - 1.
  absl::StatusOr<vm::AnonObject*> PrepareWrite(meta::Node& node, uint64_t offset, uint64_t length);
  // After a write to `ino` that ended at `end`: the size grows to it, mtime and ctime
  // are now, and a caller other than root loses S_ISUID (and S_ISGID with S_IXGRP), as
  // file_remove_privs does without CAP_FSETID.
  void FinishWrite(const Caller& caller, Ino ino, meta::Node& node, uint64_t end);
  // A caller other than root loses the node's suid/sgid bits (handle_truncate and
  // file_remove_privs without CAP_FSETID: S_ISGID with S_IXGRP or for a non-member);
  // on_suid_sgid_cleared_ hears of it.
  void ClearSuidSgidOnTheSide(const Caller& caller, Ino ino, meta::Node& node);
  // A chmod mirrored into the access ACL, as posix_acl_chmod: USER_OBJ, MASK (or
  // GROUP_OBJ without a mask) and OTHER take `mode`'s bits. Returns the node's
  // attribute block with that change, made ready as a new block while the node keeps
  // its own; nullopt when there is nothing to change (no ACL, or it agrees already).
  // The caller commits it (CommitXattrs) once nothing else can fail, or abandons it
  // (AbandonXattrs): so ENOSPC for it comes before the mode or anything else changes.
  // REQUIRES: the stripe held exclusive.
  absl::StatusOr<std::optional<meta::XattrBlock>> StageAclChmod(const meta::Node& node,
                                                                uint32_t mode);
  // Puts a staged block in the node's place and frees the old one. Cannot fail.
  void CommitXattrs(meta::Node& node, const meta::XattrBlock& staged);
  // Frees a staged block that is not to be used. Cannot fail.
  void AbandonXattrs(meta::XattrBlock staged);
  // For names.cc, when `child` is made in directory `parent` (posix_acl_create): if
  // the parent has a default ACL, a new directory inherits it as its own default ACL,
  // and the child gets an access ACL masked by its mode (none if that ACL is
  // equivalent to the mode), its mode's permission bits narrowed to the ACL's; if the
  // parent has none, `umask` clears bits of the child's mode instead. Symlinks get
  // neither. child.mode must already hold the type and the requested permission bits.
  // REQUIRES: parent's stripe held (shared is enough) and `parent` pinned by the
  // caller (so passed as a node, not pinned twice); child unreachable yet or its
  // stripe held exclusive. An error (ENOSPC) leaves child without ACLs, mode as given.
  absl::Status InheritAcl(const meta::Node& parent, meta::Node& child, mode_t umask);
  // ---- end of attributes.cc, data.cc and xattrs.cc helpers ----

  Options options_;
  std::function<void(Ino)> on_suid_sgid_cleared_;
  std::unique_ptr<vm::Vm> vm_;
  std::unique_ptr<vm::Map> space_;
  std::unique_ptr<meta::Kmem> kmem_;
  std::unique_ptr<meta::NodeStore> nodes_;
  std::unique_ptr<meta::DirIndex> index_;
  std::unique_ptr<meta::Xattrs> xattrs_;
  std::unique_ptr<vm::WindowCache> windows_;
  std::array<absl::Mutex, kLockStripes> stripes_;
  std::array<ReadWindowGate, kReadWindowGates> read_gates_;
  std::atomic<uint64_t> dirents_{0};
  // Live nodes, the root included: raised by NewNode before it allocates (never past
  // nr_inodes), lowered by DropNode.
  std::atomic<uint64_t> live_nodes_{0};
  static constexpr uint64_t kReapEvery = 1024;
  std::atomic<uint64_t> frees_since_reap_{0};
};

}  // namespace ptmpfs::fs

#endif  // PTMPFS_FS_TMPFS_H_
