#include "fs/errno_status.h"

#include <cerrno>
#include <cstring>
#include <optional>
#include <string>

#include "absl/strings/cord.h"
#include "absl/strings/numbers.h"

namespace ptmpfs::fs {

namespace {

constexpr absl::string_view kPayload = "ptmpfs.errno";

absl::StatusCode CodeOf(int error) {
  switch (error) {
    case ENOENT:
    case ENODATA:
      return absl::StatusCode::kNotFound;
    case EEXIST:
      return absl::StatusCode::kAlreadyExists;
    case ENOSPC:
    case EDQUOT:
    case ENOMEM:
      return absl::StatusCode::kResourceExhausted;
    case EACCES:
    case EPERM:
      return absl::StatusCode::kPermissionDenied;
    case EIO:
      return absl::StatusCode::kDataLoss;
    case ESTALE:
      return absl::StatusCode::kUnavailable;
    case ERANGE:
    case EFBIG:
    case EOVERFLOW:
      return absl::StatusCode::kOutOfRange;
    case EOPNOTSUPP:
    case ENOSYS:
      return absl::StatusCode::kUnimplemented;
    default:
      return absl::StatusCode::kFailedPrecondition;
  }
}

// The errno a status with this code and no errno payload stands for.
int ErrnoOfCode(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kNotFound:
      return ENOENT;
    case absl::StatusCode::kAlreadyExists:
      return EEXIST;
    case absl::StatusCode::kResourceExhausted:
      return ENOSPC;
    case absl::StatusCode::kPermissionDenied:
      return EACCES;
    case absl::StatusCode::kDataLoss:
      return EIO;
    case absl::StatusCode::kInvalidArgument:
      return EINVAL;
    case absl::StatusCode::kOutOfRange:
      return ERANGE;
    case absl::StatusCode::kUnimplemented:
      return EOPNOTSUPP;
    case absl::StatusCode::kUnavailable:
      return ESTALE;
    default:
      return EIO;
  }
}

}  // namespace

absl::Status ErrnoError(int error, absl::string_view message) {
  const absl::StatusCode code = CodeOf(error);
  // The common errors (ENOENT of every negative lookup, EEXIST, ...) whose code alone
  // maps back to them: a status with neither message nor payload, which Abseil keeps
  // inline, without a heap allocation.
  if (message.empty() && ErrnoOfCode(code) == error) return absl::Status(code, "");
  absl::Status status(code, message.empty() ? absl::string_view(strerror(error)) : message);
  status.SetPayload(kPayload, absl::Cord(std::to_string(error)));
  return status;
}

int ToErrno(const absl::Status& status) {
  if (status.ok()) return 0;
  if (auto payload = status.GetPayload(kPayload)) {
    int error = 0;
    if (absl::SimpleAtoi(std::string(*payload), &error) && error > 0) return error;
  }
  return ErrnoOfCode(status.code());
}

}  // namespace ptmpfs::fs
