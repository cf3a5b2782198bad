// killpriv_v2: asks the kernel for FUSE_HANDLE_KILLPRIV_V2, which libfuse 3.14 cannot
// negotiate, by adding its flag to INIT's reply on its way to /dev/fuse.
//
// Why. Without it, FUSE keeps SB_NOSEC off, so the kernel never marks an inode S_NOSEC
// and every write(), truncate and O_TRUNC open first asks the daemon for the file's
// "security.capability" xattr (file_remove_privs -> cap_inode_need_killpriv): a
// GETXATTR round trip before each WRITE, which halves the rate of small writes
// (measured: 1.86 requests per 4 KiB pwrite, against 1.00 for nullfs, which answers
// no xattrs). With the flag the kernel sets SB_NOSEC and leaves clearing suid/sgid to
// the daemon, telling it when (FUSE_WRITE_KILL_SUIDGID, FATTR_KILL_SUIDGID,
// FUSE_OPEN_KILL_SUIDGID: the caller lacks CAP_FSETID). libfuse 3.14 drops those flags
// before the handlers see them, so the core judges CAP_FSETID by root, as it must for
// HANDLE_KILLPRIV anyway (Tmpfs::FinishWrite, SetAttr, Open). The kernel still clears
// security.capability itself: setting a security.* xattr clears S_NOSEC (VFS), and an
// inode without S_NOSEC is checked as before. Where the daemon clears the bits, the
// kernel's cached mode must follow: a SETATTR's reply carries it (the adapter clears
// on the empty SETATTR the kernel sends before a write), but a WRITE's or an OPEN's
// does not, so the core reports those and the daemon drops the kernel's copy (main.cc;
// test: MountTest.SuidSgidClearedOnTheSide...). libfuse 3.17 negotiates the flag itself.
//
// How. fuse_session_custom_io() gives libfuse our read and writev for the session's
// descriptor: read records INIT's unique and whether the kernel offered the flag;
// writev adds the flag to that one reply (a copy of it: libfuse's buffer is left
// alone). Every other request and reply passes straight through, one plain system
// call each, as libfuse would make it.
//
// Thread safety. INIT is the first request and nothing else is sent until its reply,
// so the state below is written before any other request is read; atomics make that
// visible to every worker.
#ifndef PTMPFS_FS_KILLPRIV_V2_H_
#define PTMPFS_FS_KILLPRIV_V2_H_

struct fuse_session;

namespace ptmpfs::fs {

// Installs the hooks on a mounted session (after fuse_session_mount, before the loop).
// Returns false, leaving the session as it was, if libfuse refuses them. A kernel that
// does not offer the flag gets INIT's reply unchanged.
bool AskForKillPrivV2(fuse_session* session);

}  // namespace ptmpfs::fs

#endif  // PTMPFS_FS_KILLPRIV_V2_H_
