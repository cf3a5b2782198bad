// errno_status: every errno the core uses survives the trip through absl::Status.
#include "fs/errno_status.h"

#include <cerrno>

#include "gtest/gtest.h"

namespace ptmpfs::fs {
namespace {

TEST(ErrnoStatusTest, EveryErrnoComesBackExactly) {
  for (int error : {ENOENT, ENODATA, EEXIST, ENOSPC, EDQUOT, ENOMEM, EACCES, EPERM, EIO,
                    ESTALE, ERANGE, EFBIG, EOVERFLOW, EOPNOTSUPP, ENOSYS, EINVAL, ENOTEMPTY,
                    EISDIR, ENOTDIR, ENAMETOOLONG, EMLINK, EXDEV, EBUSY, E2BIG, ELOOP}) {
    EXPECT_EQ(ToErrno(ErrnoError(error)), error) << strerror(error);
    EXPECT_EQ(ToErrno(ErrnoError(error, "with a message")), error) << strerror(error);
    EXPECT_FALSE(ErrnoError(error).ok());
  }
}

TEST(ErrnoStatusTest, CommonErrorsCarryOnlyTheirCode) {
  // No message and no payload: Abseil keeps such a status inline (no allocation on
  // the negative-lookup path).
  const absl::Status missing = ErrnoError(ENOENT);
  EXPECT_TRUE(absl::IsNotFound(missing));
  EXPECT_TRUE(missing.message().empty());
  // ENODATA shares the code and so keeps its payload.
  EXPECT_EQ(ToErrno(ErrnoError(ENODATA)), ENODATA);
}

TEST(ErrnoStatusTest, StatusesFromOtherLayersMapByCode) {
  EXPECT_EQ(ToErrno(absl::OkStatus()), 0);
  EXPECT_EQ(ToErrno(absl::NotFoundError("x")), ENOENT);
  EXPECT_EQ(ToErrno(absl::ResourceExhaustedError("x")), ENOSPC);
  EXPECT_EQ(ToErrno(absl::DataLossError("x")), EIO);
  EXPECT_EQ(ToErrno(absl::InvalidArgumentError("x")), EINVAL);
  EXPECT_EQ(ToErrno(absl::InternalError("x")), EIO);
}

}  // namespace
}  // namespace ptmpfs::fs
