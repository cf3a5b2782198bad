// errno_status: errno values carried in absl::Status, converted in one place.
//
// Inside ptmpfs errors are absl::Status; the FUSE boundary wants one errno. The
// core says exactly which errno POSIX requires by building its errors with
// ErrnoError(); statuses from vm/ and meta/ map by their code (NotFound -> ENOENT,
// ResourceExhausted -> ENOSPC, DataLoss -> EIO, ...). ToErrno() is the one place
// that turns a status into an errno.
#ifndef PTMPFS_FS_ERRNO_STATUS_H_
#define PTMPFS_FS_ERRNO_STATUS_H_

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace ptmpfs::fs {

// A status carrying `error` (an errno value) with a code that matches it.
absl::Status ErrnoError(int error, absl::string_view message = "");

// The errno of a status: the one it carries, else one mapped from its code. 0 for OK.
int ToErrno(const absl::Status& status);

}  // namespace ptmpfs::fs

#endif  // PTMPFS_FS_ERRNO_STATUS_H_
