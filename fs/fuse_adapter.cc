#define FUSE_USE_VERSION 312
#include "fs/fuse_adapter.h"

#include <fuse_lowlevel.h>
#include <linux/fs.h>
#include <sys/uio.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "absl/types/span.h"
#include "fs/file_flags.h"

namespace ptmpfs::fs {

void FillFigures(const Tmpfs::Figures& figures, IoctlFigures& out) {
  out = IoctlFigures{};
  out.version = kFiguresVersion;
  out.count = kFigureCount;
  const vm::StatsSnapshot& vm = figures.vm;
  const uint64_t values[] = {
      vm.total_frames * vm::kPageSize,
      vm.resident_frames * vm::kPageSize,
      vm.wired_frames * vm::kPageSize,
      vm.charged_pages * vm::kPageSize,
      vm.capacity_pages * vm::kPageSize,
      vm.swap_slots_total * vm::kPageSize,
      vm.swap_slots_used * vm::kPageSize,
      vm.swap_slots_backed * vm::kPageSize,
      vm.faults,
      vm.zero_fills,
      vm.pageins,
      vm.pageouts,
      vm.pageout_ios,
      vm.clean_evictions,
      vm.migrations,
      vm.checksum_failures,
      vm.pin_waits,
      figures.nodes,
      figures.dirents,
      vm.pagein_ios,
  };
  static_assert(sizeof(values) / sizeof(values[0]) == kFigureCount);
  std::copy(std::begin(values), std::end(values), out.values);
}

namespace {

// Largest write the kernel may send (FUSE's max_write): 256 pages, the most libfuse
// 3.14 negotiates (it derives max_pages from it), and what a UbcWindow can map
// (kMaxPages = 257 covers an unaligned 1 MiB).
constexpr unsigned kMaxWrite = 1 << 20;

FuseAdapter& AdapterOf(fuse_req_t req) {
  return *static_cast<FuseAdapter*>(fuse_req_userdata(req));
}

Tmpfs& FsOf(fuse_req_t req) { return AdapterOf(req).fs(); }

Caller CallerOf(fuse_req_t req) {
  const fuse_ctx* context = fuse_req_ctx(req);
  Caller caller;
  caller.uid = context->uid;
  caller.gid = context->gid;
  caller.pid = context->pid;
  // Without DONT_MASK the kernel has cleared the umask's bits already, default ACL
  // or not; with it, the core clears them only where no default ACL is inherited.
  caller.umask = AdapterOf(req).core_applies_umask() ? context->umask : 0;
  return caller;
}

// An errno the adapter itself decides (an ioctl it does not know, say).
void ReplyErrno(fuse_req_t req, int error) { fuse_reply_err(req, error); }

// The one place where a status becomes an errno.
void ReplyError(fuse_req_t req, const absl::Status& status) {
  fuse_reply_err(req, ToErrno(status));
}

fuse_entry_param EntryOf(fuse_req_t req, const Attr& attr) {
  const FuseAdapter::Options& options = AdapterOf(req).options();
  fuse_entry_param entry{};
  entry.ino = attr.ino;
  entry.generation = attr.generation;
  entry.attr = attr.ToStat();
  entry.attr_timeout = options.attr_timeout;
  entry.entry_timeout = options.entry_timeout;
  return entry;
}

// For the operations that count a lookup on the node they reply with (lookup, mknod,
// mkdir, symlink, link). A reply the kernel never takes (the request was interrupted:
// fuse_reply_* fails with ENOENT) brings no FORGET either, so its lookup is dropped
// here, as libfuse's high-level reply_entry does; else the node could never be freed.
void ReplyEntry(fuse_req_t req, const absl::StatusOr<Attr>& attr) {
  if (!attr.ok()) return ReplyError(req, attr.status());
  fuse_entry_param entry = EntryOf(req, *attr);
  if (fuse_reply_entry(req, &entry) != 0) FsOf(req).Forget(attr->ino, 1);
}

void ReplyStatus(fuse_req_t req, const absl::Status& status) {
  if (!status.ok()) return ReplyError(req, status);
  fuse_reply_err(req, 0);
}

// An ioctl that moves no data out: its success is an empty ioctl reply.
void ReplyIoctlStatus(fuse_req_t req, const absl::Status& status) {
  if (!status.ok()) return ReplyError(req, status);
  fuse_reply_ioctl(req, 0, nullptr, 0);
}

void ReplyAttr(fuse_req_t req, const absl::StatusOr<Attr>& attr) {
  if (!attr.ok()) return ReplyError(req, attr.status());
  struct stat st = attr->ToStat();
  fuse_reply_attr(req, &st, AdapterOf(req).options().attr_timeout);
}

// ---- connection ----

void Init(void* userdata, fuse_conn_info* conn) {
  auto* adapter = static_cast<FuseAdapter*>(userdata);
  auto want = [conn](unsigned capability) {
    if (conn->capable & capability) conn->want |= capability;
  };
  want(FUSE_CAP_READDIRPLUS);
  want(FUSE_CAP_PARALLEL_DIROPS);
  want(FUSE_CAP_EXPORT_SUPPORT);
  want(FUSE_CAP_ATOMIC_O_TRUNC);
  // The kernel enforces ACLs itself with POSIX_ACL, reading them as xattrs the core
  // stores; it needs default_permissions for that, and turns it on itself when this
  // is negotiated (options.cc passes it explicitly anyway).
  want(FUSE_CAP_POSIX_ACL);
  // With POSIX_ACL the VFS leaves the umask to FUSE (IS_POSIXACL), and FUSE applies it
  // to every created mode unless DONT_MASK is set, even under a directory with a
  // default ACL, where POSIX says it must not apply (posix_acl_create). So ask for
  // DONT_MASK: requests then carry the mode unmasked and the umask beside it
  // (fuse_ctx's umask, protocol 7.12 on), and InheritAcl applies it where it should.
  want(FUSE_CAP_DONT_MASK);
  adapter->set_core_applies_umask((conn->want & FUSE_CAP_DONT_MASK) != 0);
  if (adapter->options().writeback_cache) want(FUSE_CAP_WRITEBACK_CACHE);
  // HANDLE_KILLPRIV: asked for, as libfuse does by default, but libfuse 3.14 does not
  // pass it on to the kernel (INIT's reply lacks the flag: seen with -d on 6.18).
  // HANDLE_KILLPRIV_V2 is added to the reply by killpriv_v2.h instead. Either way the
  // kernel judges the writer's CAP_FSETID (root's write keeps the bits, another
  // user's write, truncate or chown clears them) and tells the core by a SETATTR in
  // the writer's name before the write: of the mode without V2, of nothing with it.
  // SetAttr below recognises both; the core's own clearing for non-root writers (what
  // HANDLE_KILLPRIV would need) then finds the bits already clear.
  want(FUSE_CAP_HANDLE_KILLPRIV);
  // Data only changes through this mount, so a changed mtime never means the kernel's
  // pages are stale: do not throw them away on it.
  conn->want &= ~FUSE_CAP_AUTO_INVAL_DATA;
  // libfuse turns splice on for write_buf; others measured no gain over a plain read
  // of the request (DESIGN.md), and memory buffers let write go straight to the core.
  conn->want &= ~(FUSE_CAP_SPLICE_READ | FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE);
  conn->max_write = kMaxWrite;
  conn->time_gran = 1;
}

// ---- names ----

void Lookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  absl::StatusOr<Attr> attr = FsOf(req).Lookup(parent, name);
  const double negative_timeout = AdapterOf(req).options().negative_timeout;
  if (!attr.ok() && negative_timeout > 0 && ToErrno(attr.status()) == ENOENT) {
    // A negative entry: inode 0 with a timeout makes the kernel cache the absence.
    fuse_entry_param entry{};
    entry.entry_timeout = negative_timeout;
    fuse_reply_entry(req, &entry);
    return;
  }
  ReplyEntry(req, attr);
}

void Forget(fuse_req_t req, fuse_ino_t ino, uint64_t count) {
  FsOf(req).Forget(ino, count);
  fuse_reply_none(req);
}

void ForgetMulti(fuse_req_t req, size_t count, fuse_forget_data* forgets) {
  // Sorted by inode number, nodes on one pool page come together (DESIGN.md,
  // invariant 3): each page is faulted in once. The array is the request's own.
  std::sort(forgets, forgets + count,
            [](const fuse_forget_data& a, const fuse_forget_data& b) { return a.ino < b.ino; });
  Tmpfs& fs = FsOf(req);
  for (size_t i = 0; i < count; ++i) fs.Forget(forgets[i].ino, forgets[i].nlookup);
  fuse_reply_none(req);
}

void Mknod(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, dev_t rdev) {
  ReplyEntry(req, FsOf(req).Mknod(CallerOf(req), parent, name, mode, rdev));
}

void Mkdir(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode) {
  ReplyEntry(req, FsOf(req).Mkdir(CallerOf(req), parent, name, mode));
}

void Symlink(fuse_req_t req, const char* target, fuse_ino_t parent, const char* name) {
  ReplyEntry(req, FsOf(req).Symlink(CallerOf(req), parent, name, target));
}

void Readlink(fuse_req_t req, fuse_ino_t ino) {
  absl::StatusOr<std::string> target = FsOf(req).Readlink(ino);
  if (!target.ok()) return ReplyError(req, target.status());
  fuse_reply_readlink(req, target->c_str());
}

void Link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t new_parent, const char* new_name) {
  ReplyEntry(req, FsOf(req).Link(ino, new_parent, new_name));
}

void Unlink(fuse_req_t req, fuse_ino_t parent, const char* name) {
  ReplyStatus(req, FsOf(req).Unlink(parent, name));
}

void Rmdir(fuse_req_t req, fuse_ino_t parent, const char* name) {
  ReplyStatus(req, FsOf(req).Rmdir(parent, name));
}

void Rename(fuse_req_t req, fuse_ino_t parent, const char* name, fuse_ino_t new_parent,
            const char* new_name, unsigned int flags) {
  ReplyStatus(req, FsOf(req).Rename(CallerOf(req), parent, name, new_parent, new_name, flags));
}

// ---- attributes ----

void GetAttr(fuse_req_t req, fuse_ino_t ino, fuse_file_info*) {
  ReplyAttr(req, FsOf(req).GetAttr(ino));
}

// Whether `mode` is the node's mode with suid/sgid cleared as the kernel's
// file_remove_privs clears them (S_ISGID only with S_IXGRP), and something cleared.
bool IsKillPriv(Tmpfs& fs, fuse_ino_t ino, uint32_t mode) {
  absl::StatusOr<Attr> attr = fs.GetAttr(ino);
  if (!attr.ok()) return false;
  const uint32_t now = attr->mode & 07777;
  uint32_t killed = now & ~static_cast<uint32_t>(S_ISUID);
  if (now & S_IXGRP) killed &= ~static_cast<uint32_t>(S_ISGID);
  return killed != now && mode == killed;
}

void SetAttr(fuse_req_t req, fuse_ino_t ino, struct stat* attr, int to_set, fuse_file_info* fi) {
  SetAttrRequest request;
  if (to_set & FUSE_SET_ATTR_MODE) request.mode = attr->st_mode & 07777;
  const Caller caller = CallerOf(req);
  if ((to_set & FUSE_SET_ATTR_MODE) != 0 && caller.uid != 0 &&
      IsKillPriv(FsOf(req), ino, *request.mode)) {
    // The kernel's clearing of suid/sgid on a write or truncate (beside the size)
    // without HANDLE_KILLPRIV_V2: a change the writer may not make as a chmod, so the
    // core must be told what it is. No one else can send it: with default_permissions
    // the kernel refuses a non-owner's chmod itself.
    request.mode.reset();
    request.kill_suid_sgid = true;
  }
  if (to_set == 0 && caller.uid != 0) {
    // With HANDLE_KILLPRIV_V2 (killpriv_v2.h) the same clearing arrives as a SETATTR
    // with nothing to set: file_remove_privs before a write, its kill bits stripped by
    // fuse_setattr. Clearing here, not only in the WRITE after it, puts the cleared
    // mode in this reply, so the kernel's cached mode (which exec and permission
    // checks read, and a write does not refresh) is right before the data lands.
    request.kill_suid_sgid = true;
  }
  if (to_set & FUSE_SET_ATTR_UID) request.uid = attr->st_uid;
  if (to_set & FUSE_SET_ATTR_GID) request.gid = attr->st_gid;
  if (to_set & FUSE_SET_ATTR_SIZE) request.size = static_cast<uint64_t>(attr->st_size);
  if (to_set & FUSE_SET_ATTR_ATIME_NOW) {
    request.atime_now = true;
  } else if (to_set & FUSE_SET_ATTR_ATIME) {
    request.atime = attr->st_atim;
  }
  if (to_set & FUSE_SET_ATTR_MTIME_NOW) {
    request.mtime_now = true;
  } else if (to_set & FUSE_SET_ATTR_MTIME) {
    request.mtime = attr->st_mtim;
  }
  if (to_set & FUSE_SET_ATTR_CTIME) request.ctime = attr->st_ctim;
#ifdef FUSE_SET_ATTR_KILL_SUIDGID
  // HANDLE_KILLPRIV_V2's flag (libfuse 3.15 on); 3.14 has no such flag.
  if (to_set & FUSE_SET_ATTR_KILL_SUIDGID) request.kill_suid_sgid = true;
#endif
  request.from_open_file = fi != nullptr;
  ReplyAttr(req, FsOf(req).SetAttr(caller, ino, request));
}

void StatFs(fuse_req_t req, fuse_ino_t) {
  struct statvfs stats = FsOf(req).StatFs();
  fuse_reply_statfs(req, &stats);
}

// ---- files ----

void Open(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  absl::StatusOr<Attr> attr = FsOf(req).Open(CallerOf(req), ino, fi->flags);
  if (!attr.ok()) return ReplyError(req, attr.status());
  // The pages the kernel holds are still right: data only changes through it.
  fi->keep_cache = 1;
  fi->noflush = 1;  // flush does nothing here; spare close() the round trip
  if (fuse_reply_open(req, fi) != 0) FsOf(req).Release(ino);  // interrupted: undo the open
}

void Create(fuse_req_t req, fuse_ino_t parent, const char* name, mode_t mode, fuse_file_info* fi) {
  absl::StatusOr<Attr> attr = FsOf(req).Create(CallerOf(req), parent, name, mode, fi->flags);
  if (!attr.ok()) return ReplyError(req, attr.status());
  fi->keep_cache = 1;
  fi->noflush = 1;
  fuse_entry_param entry = EntryOf(req, *attr);
  if (fuse_reply_create(req, &entry, fi) != 0) {
    // The kernel never saw the file handle nor the lookup: undo both.
    FsOf(req).Release(attr->ino);
    FsOf(req).Forget(attr->ino, 1);
  }
}

void Read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t offset, fuse_file_info*) {
  absl::StatusOr<ReadWindow> window = FsOf(req).Read(ino, static_cast<uint64_t>(offset), size);
  if (!window.ok()) return ReplyError(req, window.status());
  // Straight from the window's frames: fuse_reply_iov hands them to one writev
  // (fuse_reply_data with several buffers would copy them into one first).
  absl::Span<const iovec> iovecs = window->iovecs();
  fuse_reply_iov(req, iovecs.data(), static_cast<int>(iovecs.size()));
}

// O_APPEND is the kernel's business: it sends the offset it chose, and a page written
// back from a shared mapping may come with an O_APPEND handle's flags.
int WriteFlags(const fuse_file_info* fi) { return fi->flags & ~O_APPEND; }

void ReplyWritten(fuse_req_t req, const absl::StatusOr<uint64_t>& written) {
  if (!written.ok()) return ReplyError(req, written.status());
  fuse_reply_write(req, *written);
}

void Write(fuse_req_t req, fuse_ino_t ino, const char* data, size_t size, off_t offset,
           fuse_file_info* fi) {
  const iovec buffer{const_cast<char*>(data), size};
  ReplyWritten(req, FsOf(req).Write(CallerOf(req), ino, static_cast<uint64_t>(offset),
                                    absl::Span<const iovec>(&buffer, 1), WriteFlags(fi)));
}

void WriteBuf(fuse_req_t req, fuse_ino_t ino, fuse_bufvec* in, off_t offset, fuse_file_info* fi) {
  // The request's buffers, as iovecs for the core's one copy into the file.
  constexpr size_t kInlineBuffers = 4;
  iovec inline_iovecs[kInlineBuffers];
  std::vector<iovec> heap_iovecs;
  iovec* iovecs = inline_iovecs;
  const size_t count = in->count - in->idx;
  if (count > kInlineBuffers) {
    heap_iovecs.resize(count);
    iovecs = heap_iovecs.data();
  }
  bool all_memory = true;
  for (size_t i = 0; i < count; ++i) {
    const fuse_buf& buf = in->buf[in->idx + i];
    if (buf.flags & FUSE_BUF_IS_FD) {
      all_memory = false;
      break;
    }
    const size_t skip = i == 0 ? in->off : 0;
    iovecs[i] = iovec{static_cast<char*>(buf.mem) + skip, buf.size - skip};
  }
  if (!all_memory) {
    // Splice is off (Init), so this is not expected; copy out of the pipe if it happens.
    std::vector<char> bounce(fuse_buf_size(in));
    fuse_bufvec out = FUSE_BUFVEC_INIT(bounce.size());
    out.buf[0].mem = bounce.data();
    ssize_t copied = fuse_buf_copy(&out, in, static_cast<fuse_buf_copy_flags>(0));
    if (copied < 0) return ReplyErrno(req, static_cast<int>(-copied));
    return Write(req, ino, bounce.data(), static_cast<size_t>(copied), offset, fi);
  }
  ReplyWritten(req, FsOf(req).Write(CallerOf(req), ino, static_cast<uint64_t>(offset),
                                    absl::Span<const iovec>(iovecs, count), WriteFlags(fi)));
}

void Flush(fuse_req_t req, fuse_ino_t, fuse_file_info*) { fuse_reply_err(req, 0); }

void Release(fuse_req_t req, fuse_ino_t ino, fuse_file_info*) {
  FsOf(req).Release(ino);
  fuse_reply_err(req, 0);
}

void Fsync(fuse_req_t req, fuse_ino_t ino, int, fuse_file_info*) {
  ReplyStatus(req, FsOf(req).Fsync(ino));
}

void Fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset, off_t length,
               fuse_file_info*) {
  ReplyStatus(req, FsOf(req).Fallocate(ino, mode, static_cast<uint64_t>(offset),
                                       static_cast<uint64_t>(length)));
}

void Lseek(fuse_req_t req, fuse_ino_t ino, off_t offset, int whence, fuse_file_info*) {
  absl::StatusOr<uint64_t> position = FsOf(req).Lseek(ino, static_cast<uint64_t>(offset), whence);
  if (!position.ok()) return ReplyError(req, position.status());
  fuse_reply_lseek(req, static_cast<off_t>(*position));
}

void CopyFileRange(fuse_req_t req, fuse_ino_t in, off_t in_offset, fuse_file_info*, fuse_ino_t out,
                   off_t out_offset, fuse_file_info*, size_t length, int) {
  ReplyWritten(req, FsOf(req).CopyFileRange(CallerOf(req), in, static_cast<uint64_t>(in_offset),
                                            out, static_cast<uint64_t>(out_offset), length));
}

// ---- directories ----

void OpenDir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  absl::StatusOr<Attr> attr = FsOf(req).GetAttr(ino);
  if (!attr.ok()) return ReplyError(req, attr.status());
  if (!S_ISDIR(attr->mode)) return ReplyErrno(req, ENOTDIR);
  // The kernel may keep what it read: it drops the cache itself on every change to
  // the directory, and every change passes through it.
  fi->cache_readdir = 1;
  fi->keep_cache = 1;
  fuse_reply_open(req, fi);
}

void ReleaseDir(fuse_req_t req, fuse_ino_t, fuse_file_info*) { fuse_reply_err(req, 0); }

void ReadDir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t offset, fuse_file_info*) {
  std::vector<char> buffer(size);
  size_t used = 0;
  absl::Status status =
      FsOf(req).ReadDir(ino, static_cast<uint64_t>(offset), [&](const DirEntry& entry) {
        char name[meta::DirIndex::kMaxName + 1];
        const size_t length = std::min(entry.name.size(), sizeof(name) - 1);
        std::memcpy(name, entry.name.data(), length);
        name[length] = '\0';
        struct stat st {};
        st.st_ino = entry.ino;
        st.st_mode = entry.type << 12;  // DT_* is S_IFMT >> 12
        const size_t needed = fuse_add_direntry(req, buffer.data() + used, size - used, name, &st,
                                                static_cast<off_t>(entry.next_offset));
        if (needed > size - used) return false;
        used += needed;
        return true;
      });
  // An error after some entries still returns those; the next call will report it.
  if (!status.ok() && used == 0) return ReplyError(req, status);
  fuse_reply_buf(req, buffer.data(), used);
}

// readdirplus counts a lookup for every entry it returns with attributes, so entries
// are gathered first (under the core's directory lock) and each is looked up after,
// with no lock of ours held; only entries that fit in the reply are gathered, so only
// those are counted. "." and ".." carry no attributes: the kernel does not link
// them, and would not forget them.
void ReadDirPlus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t offset, fuse_file_info*) {
  struct Gathered {
    size_t name_offset;
    Ino ino;
    uint32_t type;
    uint64_t next_offset;
  };
  std::vector<Gathered> entries;
  std::string names;  // each name NUL-terminated
  size_t planned = 0;
  Tmpfs& fs = FsOf(req);
  absl::Status status = fs.ReadDir(ino, static_cast<uint64_t>(offset), [&](const DirEntry& entry) {
    const size_t name_offset = names.size();
    names.append(entry.name.data(), entry.name.size());
    names.push_back('\0');
    // With no buffer, fuse_add_direntry_plus only measures.
    const size_t needed =
        fuse_add_direntry_plus(req, nullptr, 0, names.data() + name_offset, nullptr, 0);
    if (planned + needed > size) {
      names.resize(name_offset);
      return false;
    }
    planned += needed;
    entries.push_back({name_offset, entry.ino, entry.type, entry.next_offset});
    return true;
  });
  if (!status.ok() && entries.empty()) return ReplyError(req, status);

  std::vector<char> buffer(size);
  size_t used = 0;
  std::vector<Ino> counted;  // the entries whose lookup LookupForReadDirPlus counted
  counted.reserve(entries.size());
  for (const Gathered& gathered : entries) {
    const char* name = names.data() + gathered.name_offset;
    const bool dot = std::strcmp(name, ".") == 0 || std::strcmp(name, "..") == 0;
    fuse_entry_param entry{};
    if (dot) {
      entry.attr.st_ino = gathered.ino;
      entry.attr.st_mode = gathered.type << 12;
    } else {
      absl::StatusOr<Attr> attr = fs.LookupForReadDirPlus(ino, name, gathered.ino);
      if (!attr.ok()) continue;  // removed since it was read: leave it out
      entry = EntryOf(req, *attr);
    }
    used += fuse_add_direntry_plus(req, buffer.data() + used, size - used, name, &entry,
                                   static_cast<off_t>(gathered.next_offset));
    if (!dot) counted.push_back(gathered.ino);
  }
  // As ReplyEntry: a reply the kernel never takes leaves no lookups behind.
  if (fuse_reply_buf(req, buffer.data(), used) != 0) {
    for (Ino counted_ino : counted) fs.Forget(counted_ino, 1);
  }
}

// ---- extended attributes ----

void SetXattr(fuse_req_t req, fuse_ino_t ino, const char* name, const char* value, size_t size,
              int flags) {
  const Caller caller = CallerOf(req);
  ReplyStatus(req, FsOf(req).SetXattr(ino, name, absl::string_view(value, size), flags, &caller));
}

// getxattr and listxattr: size 0 asks for the length only.
void ReplyXattr(fuse_req_t req, size_t size,
                absl::FunctionRef<absl::StatusOr<size_t>(char*, size_t)> get) {
  std::vector<char> buffer(size);
  absl::StatusOr<size_t> length = get(size == 0 ? nullptr : buffer.data(), size);
  if (!length.ok()) return ReplyError(req, length.status());
  if (size == 0) {
    fuse_reply_xattr(req, *length);
  } else {
    fuse_reply_buf(req, buffer.data(), *length);
  }
}

void GetXattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size) {
  Tmpfs& fs = FsOf(req);
  ReplyXattr(req, size,
             [&](char* out, size_t out_size) { return fs.GetXattr(ino, name, out, out_size); });
}

void ListXattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  Tmpfs& fs = FsOf(req);
  ReplyXattr(req, size,
             [&](char* out, size_t out_size) { return fs.ListXattr(ino, out, out_size); });
}

void RemoveXattr(fuse_req_t req, fuse_ino_t ino, const char* name) {
  ReplyStatus(req, FsOf(req).RemoveXattr(ino, name));
}

// ---- ptmpfs-stat ----

// chattr's flags, as the kernel asks for them (fuse_fileattr_get/set: the file is
// opened for the ioctl, so `ino` is a regular file or a directory). FS_IOC_*FLAGS
// carry an int; FS_IOC_FS*XATTR a struct fsxattr, whose other fields tmpfs does
// not keep (a nonzero one is EOPNOTSUPP, as for tmpfs).
uint32_t XflagsOf(uint32_t flags) {
  uint32_t xflags = 0;
  if (flags & kImmutableFlag) xflags |= FS_XFLAG_IMMUTABLE;
  if (flags & kAppendFlag) xflags |= FS_XFLAG_APPEND;
  if (flags & kNoDumpFlag) xflags |= FS_XFLAG_NODUMP;
  if (flags & kNoAtimeFlag) xflags |= FS_XFLAG_NOATIME;
  return xflags;
}

void FileFlagsIoctl(fuse_req_t req, fuse_ino_t ino, unsigned int command, const void* in,
                    size_t in_size, size_t out_size) {
  Tmpfs& fs = FsOf(req);
  switch (command) {
    case FS_IOC_GETFLAGS:
    case FS_IOC_FSGETXATTR: {
      absl::StatusOr<uint32_t> flags = fs.GetFlags(ino);
      if (!flags.ok()) return ReplyError(req, flags.status());
      if (command == FS_IOC_GETFLAGS) {
        const int value = static_cast<int>(*flags);
        if (out_size < sizeof(value)) return ReplyErrno(req, EINVAL);
        fuse_reply_ioctl(req, 0, &value, sizeof(value));
      } else {
        fsxattr attributes{};
        if (out_size < sizeof(attributes)) return ReplyErrno(req, EINVAL);
        attributes.fsx_xflags = XflagsOf(*flags);
        fuse_reply_ioctl(req, 0, &attributes, sizeof(attributes));
      }
      return;
    }
    case FS_IOC_SETFLAGS: {
      int value;
      if (in_size < sizeof(value)) return ReplyErrno(req, EINVAL);
      memcpy(&value, in, sizeof(value));
      ReplyIoctlStatus(req, fs.SetFlags(CallerOf(req), ino, static_cast<uint32_t>(value)));
      return;
    }
    case FS_IOC_FSSETXATTR: {
      fsxattr attributes;
      if (in_size < sizeof(attributes)) return ReplyErrno(req, EINVAL);
      memcpy(&attributes, in, sizeof(attributes));
      constexpr uint32_t kKept =
          FS_XFLAG_IMMUTABLE | FS_XFLAG_APPEND | FS_XFLAG_NODUMP | FS_XFLAG_NOATIME;
      if ((attributes.fsx_xflags & ~kKept) != 0 || attributes.fsx_extsize != 0 ||
          attributes.fsx_projid != 0 || attributes.fsx_cowextsize != 0) {
        return ReplyErrno(req, EOPNOTSUPP);
      }
      uint32_t flags = 0;
      if (attributes.fsx_xflags & FS_XFLAG_IMMUTABLE) flags |= kImmutableFlag;
      if (attributes.fsx_xflags & FS_XFLAG_APPEND) flags |= kAppendFlag;
      if (attributes.fsx_xflags & FS_XFLAG_NODUMP) flags |= kNoDumpFlag;
      if (attributes.fsx_xflags & FS_XFLAG_NOATIME) flags |= kNoAtimeFlag;
      ReplyIoctlStatus(req, fs.SetFlags(CallerOf(req), ino, flags));
      return;
    }
  }
  ReplyErrno(req, ENOTTY);
}

void Ioctl(fuse_req_t req, fuse_ino_t ino, unsigned int command, void*, fuse_file_info*,
           unsigned flags, const void* in, size_t in_size, size_t out_size) {
  if (flags & FUSE_IOCTL_COMPAT) return ReplyErrno(req, ENOTTY);
  if (command != static_cast<unsigned int>(kIoctlReadFigures)) {
    return FileFlagsIoctl(req, ino, command, in, in_size, out_size);
  }
  if (ino != kRootIno) return ReplyErrno(req, ENOTTY);
  if (out_size < sizeof(IoctlFigures)) return ReplyErrno(req, EINVAL);
  IoctlFigures figures;
  FillFigures(FsOf(req).ReadFigures(), figures);
  fuse_reply_ioctl(req, 0, &figures, sizeof(figures));
}

fuse_lowlevel_ops MakeOps() {
  fuse_lowlevel_ops ops{};
  ops.init = Init;
  ops.lookup = Lookup;
  ops.forget = Forget;
  ops.forget_multi = ForgetMulti;
  ops.getattr = GetAttr;
  ops.setattr = SetAttr;
  ops.readlink = Readlink;
  ops.mknod = Mknod;
  ops.mkdir = Mkdir;
  ops.unlink = Unlink;
  ops.rmdir = Rmdir;
  ops.symlink = Symlink;
  ops.rename = Rename;
  ops.link = Link;
  ops.open = Open;
  ops.read = Read;
  ops.write = Write;
  ops.write_buf = WriteBuf;
  ops.flush = Flush;
  ops.release = Release;
  ops.fsync = Fsync;
  ops.opendir = OpenDir;
  ops.readdir = ReadDir;
  ops.readdirplus = ReadDirPlus;
  ops.releasedir = ReleaseDir;
  ops.statfs = StatFs;
  ops.setxattr = SetXattr;
  ops.getxattr = GetXattr;
  ops.listxattr = ListXattr;
  ops.removexattr = RemoveXattr;
  // access: not set. With default_permissions (on for root mounts) the kernel checks
  // permissions itself and never asks; without it, ENOSYS makes access() succeed as
  // it does on a filesystem without permission checks.
  ops.create = Create;
  ops.fallocate = Fallocate;
  ops.lseek = Lseek;
  ops.copy_file_range = CopyFileRange;
  ops.ioctl = Ioctl;
  return ops;
}

}  // namespace

const fuse_lowlevel_ops& FuseAdapter::Ops() {
  static const fuse_lowlevel_ops ops = MakeOps();
  return ops;
}

}  // namespace ptmpfs::fs
