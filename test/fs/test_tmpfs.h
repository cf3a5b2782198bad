// test_tmpfs: the small tmpfs core that the fs/ tests drive directly (no FUSE).
#ifndef PTMPFS_TEST_FS_TEST_TMPFS_H_
#define PTMPFS_TEST_FS_TEST_TMPFS_H_

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "fs/tmpfs.h"
#include "gtest/gtest.h"

namespace ptmpfs::fs {

// 4 MiB of RAM over `swap_bytes` of swap (a temporary file), with size= and
// nr_inodes= as given (0: none).
inline std::unique_ptr<Tmpfs> MakeTestTmpfs(uint64_t swap_bytes = uint64_t{256} << 20,
                                            uint64_t size_bytes = 0, uint64_t max_inodes = 0) {
  Tmpfs::Options options;
  options.vm.ram_bytes = 4 << 20;
  options.vm.swap.size_bytes = swap_bytes;
  options.size_bytes = size_bytes;
  options.max_inodes = max_inodes;
  absl::StatusOr<std::unique_ptr<Tmpfs>> fs = Tmpfs::Create(options);
  EXPECT_TRUE(fs.ok()) << fs.status();
  return fs.ok() ? *std::move(fs) : nullptr;
}

}  // namespace ptmpfs::fs

#endif  // PTMPFS_TEST_FS_TEST_TMPFS_H_
