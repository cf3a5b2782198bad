// swap_format: the on-disk header of a ptmpfs swap file, shared by vm/swap and mkfs/.
//
// Layout (all integers little-endian):
//   offset 0      SwapHeader, padded with zeros to kSwapHeaderBytes (4096)
//   4096          reserved for a checkpoint area: a clean unmount will one day record
//                 the filesystem at [checkpoint_offset, +checkpoint_bytes); both are 0
//                 in version 1 and a reader of version 1 ignores the area
//   data_offset   slot 0; slot i at data_offset + i * page_size. data_offset is a
//                 multiple of 1 MiB so slot I/O stays aligned for O_DIRECT (and for
//                 any file system block size up to 1 MiB).
//
// The header's checksum is xxh3-64 of the encoded bytes [0, 136), the bytes before the
// checksum field; it is computed over the little-endian encoding, so it does not depend
// on the host's byte order. A file is refused (with a message naming it and the reason)
// if its magic, version, page size, flags, reserved bytes, geometry or checksum is
// wrong. Checks run in that order except that the checksum is checked right after the
// version: a later version may move fields, and a damaged field of a version-1 header
// is reported as damage, not as an odd value.
//
// The file's size is data_offset + slot_count * page_size when formatted; a longer file
// is accepted (the tail is unused), a shorter one is refused as truncated.
#ifndef PTMPFS_VM_SWAP_FORMAT_H_
#define PTMPFS_VM_SWAP_FORMAT_H_

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace ptmpfs::vm {

inline constexpr uint64_t kSwapPageSize = 4096;
inline constexpr uint64_t kSwapHeaderBytes = 4096;
inline constexpr uint64_t kSwapDataAlign = 1 << 20;
inline constexpr char kSwapMagic[8] = {'P', 'T', 'M', 'P', 'F', 'S', 'S', 'W'};
inline constexpr uint32_t kSwapVersion = 1;

// The decoded header. Field order and offsets are those of the encoding.
struct SwapHeader {
  char magic[8];
  uint32_t version;
  uint32_t page_size;
  uint64_t slot_count;
  uint64_t data_offset;
  uint8_t uuid[16];            // random (version 4 UUID), names this swap file
  uint64_t checkpoint_offset;  // 0: no checkpoint (always, in version 1)
  uint64_t checkpoint_bytes;
  uint64_t flags;            // none defined; must be 0
  uint8_t reserved[64];      // zero
  uint64_t header_checksum;  // xxh3-64 of the encoded bytes above
};
static_assert(sizeof(SwapHeader) == 144);
static_assert(offsetof(SwapHeader, header_checksum) == 136);

// A header for a file of `file_bytes` (slots fill what follows data_offset, a partial
// last page is left out), with a fresh random UUID and its checksum set.
// InvalidArgument if too small for one slot.
absl::StatusOr<SwapHeader> MakeSwapHeader(uint64_t file_bytes);

// Encodes into / decodes from the first kSwapHeaderBytes of a file. Encoding writes
// header.header_checksum as given (MakeSwapHeader sets it) and zeros after the header.
void EncodeSwapHeader(const SwapHeader& header, char out[kSwapHeaderBytes]);
// Validates everything; the error says what is wrong ("bad magic: not a ptmpfs swap
// file", "header checksum mismatch", ...) without naming the file (callers do).
// `file_bytes` is the file's size, checked against the geometry.
// FailedPrecondition for a file that is not a version-1 ptmpfs swap file of this page
// size; DataLoss for a damaged one (checksum, reserved bytes, geometry, truncation).
absl::StatusOr<SwapHeader> DecodeSwapHeader(const char in[kSwapHeaderBytes], uint64_t file_bytes);

// Formats the open file `fd` for `file_bytes`: allocates every block (fallocate), writes
// the header, syncs, and returns the header written. `fd` may be opened with O_DIRECT.
absl::StatusOr<SwapHeader> FormatSwapFile(int fd, uint64_t file_bytes);

// The pieces FormatSwapFile is made of, for vm/swap (a temporary swap file is backed in
// chunks, not all at once) and for tools that inspect a file. All accept an O_DIRECT
// `fd`: their I/O uses page-aligned buffers, offsets and lengths.
//
// Writes the encoded header at offset 0 (no sync).
absl::Status WriteSwapHeader(int fd, const SwapHeader& header);
// Reads and decodes the header of `fd`, checking it against the file's size.
absl::StatusOr<SwapHeader> ReadSwapHeader(int fd);
// Allocates the blocks of [offset, offset+bytes), extending the file if needed:
// fallocate, or writing zeros where the file system has no fallocate. ResourceExhausted
// when the host file system is full. REQUIRES: offset and bytes multiples of
// kSwapPageSize.
absl::Status AllocateSwapBlocks(int fd, uint64_t offset, uint64_t bytes);

}  // namespace ptmpfs::vm

#endif  // PTMPFS_VM_SWAP_FORMAT_H_
