// parse_size: the one parser of sizes given on a command line, for ptmpfs's mount
// options (size=, ram=, nr_inodes=) and mkfs.ptmpfs's SIZE.
//
// A size is a decimal number of bytes with an optional suffix: k, m, g or t (powers
// of 1024, either case), as tmpfs takes them, or % (of the machine's RAM) where a
// RAM size is given. Nothing else: no sign, no spaces, no fractions, no "kB".
//
// It is a library of its own (ptmpfs_parse_size) so that mkfs.ptmpfs, which has no
// FUSE in it, uses it without the rest of fs/.
#ifndef PTMPFS_FS_PARSE_SIZE_H_
#define PTMPFS_FS_PARSE_SIZE_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace ptmpfs::fs {

// `text` as bytes. `ram_bytes` is what 100% means; 0 refuses %. InvalidArgument
// naming `what` and the text ("size=12q: ...") for anything malformed, a % past
// 10000, or a size past 2^64 - 1.
absl::StatusOr<uint64_t> ParseSize(absl::string_view what, absl::string_view text,
                                   uint64_t ram_bytes);

}  // namespace ptmpfs::fs

#endif  // PTMPFS_FS_PARSE_SIZE_H_
