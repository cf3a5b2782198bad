#include "vm/swap_format.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include <algorithm>
#include <cassert>
#include <cstring>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"

namespace ptmpfs::vm {
namespace {

// Encoded offsets of the fields; the struct mirrors them (static_asserts below).
constexpr size_t kMagicAt = 0;
constexpr size_t kVersionAt = 8;
constexpr size_t kPageSizeAt = 12;
constexpr size_t kSlotCountAt = 16;
constexpr size_t kDataOffsetAt = 24;
constexpr size_t kUuidAt = 32;
constexpr size_t kCheckpointOffsetAt = 48;
constexpr size_t kCheckpointBytesAt = 56;
constexpr size_t kFlagsAt = 64;
constexpr size_t kReservedAt = 72;
constexpr size_t kChecksumAt = 136;
static_assert(offsetof(SwapHeader, version) == kVersionAt);
static_assert(offsetof(SwapHeader, page_size) == kPageSizeAt);
static_assert(offsetof(SwapHeader, slot_count) == kSlotCountAt);
static_assert(offsetof(SwapHeader, data_offset) == kDataOffsetAt);
static_assert(offsetof(SwapHeader, uuid) == kUuidAt);
static_assert(offsetof(SwapHeader, checkpoint_offset) == kCheckpointOffsetAt);
static_assert(offsetof(SwapHeader, checkpoint_bytes) == kCheckpointBytesAt);
static_assert(offsetof(SwapHeader, flags) == kFlagsAt);
static_assert(offsetof(SwapHeader, reserved) == kReservedAt);
static_assert(offsetof(SwapHeader, header_checksum) == kChecksumAt);

// Zero-filling, where fallocate is missing, goes in writes of this size: large enough
// that the syscall cost vanishes, small enough to be a harmless transient allocation.
constexpr size_t kZeroFillBytes = size_t{1} << 20;

std::string ErrnoText(int error) {
  char buffer[128];
  return strerror_r(error, buffer, sizeof(buffer));  // GNU strerror_r returns the text
}

void PutLe32(char* out, uint32_t value) {
  for (int i = 0; i < 4; ++i) out[i] = static_cast<char>(value >> (8 * i));
}
void PutLe64(char* out, uint64_t value) {
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>(value >> (8 * i));
}
uint32_t GetLe32(const char* in) {
  uint32_t value = 0;
  for (int i = 3; i >= 0; --i) value = (value << 8) | static_cast<uint8_t>(in[i]);
  return value;
}
uint64_t GetLe64(const char* in) {
  uint64_t value = 0;
  for (int i = 7; i >= 0; --i) value = (value << 8) | static_cast<uint8_t>(in[i]);
  return value;
}

uint64_t ChecksumOfEncoded(const char* encoded) { return XXH3_64bits(encoded, kChecksumAt); }

absl::Status FillRandom(uint8_t* out, size_t bytes) {
  size_t filled = 0;
  while (filled < bytes) {
    ssize_t got = getrandom(out + filled, bytes - filled, 0);
    if (got < 0) {
      if (errno == EINTR) continue;
      break;  // ENOSYS on an old kernel: /dev/urandom below
    }
    filled += static_cast<size_t>(got);
  }
  if (filled == bytes) return absl::OkStatus();
  int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return absl::InternalError("no random source for the swap file's UUID");
  while (filled < bytes) {
    ssize_t got = read(fd, out + filled, bytes - filled);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) break;
    filled += static_cast<size_t>(got);
  }
  close(fd);
  if (filled < bytes) return absl::InternalError("reading /dev/urandom for the UUID failed");
  return absl::OkStatus();
}

struct FreeBuffer {
  void operator()(void* buffer) const { free(buffer); }
};

absl::Status WriteZeros(int fd, uint64_t offset, uint64_t bytes) {
  std::unique_ptr<char, FreeBuffer> zeros(
      static_cast<char*>(aligned_alloc(kSwapPageSize, kZeroFillBytes)));
  if (zeros == nullptr) return absl::ResourceExhaustedError("no memory to zero-fill swap space");
  memset(zeros.get(), 0, kZeroFillBytes);
  while (bytes > 0) {
    size_t length = static_cast<size_t>(std::min<uint64_t>(bytes, kZeroFillBytes));
    ssize_t written = pwrite(fd, zeros.get(), length, static_cast<off_t>(offset));
    if (written < 0) {
      int error = errno;
      if (error == EINTR) continue;
      std::string message = absl::StrFormat("writing zeros at %d to allocate swap space: %s",
                                            offset, ErrnoText(error));
      if (error == ENOSPC || error == EDQUOT) return absl::ResourceExhaustedError(message);
      return absl::InternalError(message);
    }
    offset += static_cast<uint64_t>(written);
    bytes -= static_cast<uint64_t>(written);
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<SwapHeader> MakeSwapHeader(uint64_t file_bytes) {
  // The first MiB holds the header and the checkpoint area; slots start aligned after it.
  constexpr uint64_t kMinimumBytes = kSwapDataAlign + kSwapPageSize;
  if (file_bytes < kMinimumBytes) {
    return absl::InvalidArgumentError(
        absl::StrFormat("swap size %d bytes is too small: a swap file needs at least %d "
                        "(1 MiB of header area and one %d-byte slot)",
                        file_bytes, kMinimumBytes, kSwapPageSize));
  }
  SwapHeader header{};
  memcpy(header.magic, kSwapMagic, sizeof(header.magic));
  header.version = kSwapVersion;
  header.page_size = kSwapPageSize;
  header.data_offset = kSwapDataAlign;
  header.slot_count = (file_bytes - header.data_offset) / kSwapPageSize;
  if (absl::Status status = FillRandom(header.uuid, sizeof(header.uuid)); !status.ok()) {
    return status;
  }
  header.uuid[6] = (header.uuid[6] & 0x0f) | 0x40;  // RFC 4122 version 4 (random)
  header.uuid[8] = (header.uuid[8] & 0x3f) | 0x80;  // RFC 4122 variant
  char encoded[kSwapHeaderBytes];
  EncodeSwapHeader(header, encoded);
  header.header_checksum = ChecksumOfEncoded(encoded);
  return header;
}

void EncodeSwapHeader(const SwapHeader& header, char out[kSwapHeaderBytes]) {
  memset(out, 0, kSwapHeaderBytes);
  memcpy(out + kMagicAt, header.magic, sizeof(header.magic));
  PutLe32(out + kVersionAt, header.version);
  PutLe32(out + kPageSizeAt, header.page_size);
  PutLe64(out + kSlotCountAt, header.slot_count);
  PutLe64(out + kDataOffsetAt, header.data_offset);
  memcpy(out + kUuidAt, header.uuid, sizeof(header.uuid));
  PutLe64(out + kCheckpointOffsetAt, header.checkpoint_offset);
  PutLe64(out + kCheckpointBytesAt, header.checkpoint_bytes);
  PutLe64(out + kFlagsAt, header.flags);
  memcpy(out + kReservedAt, header.reserved, sizeof(header.reserved));
  PutLe64(out + kChecksumAt, header.header_checksum);
}

absl::StatusOr<SwapHeader> DecodeSwapHeader(const char in[kSwapHeaderBytes], uint64_t file_bytes) {
  if (memcmp(in + kMagicAt, kSwapMagic, sizeof(kSwapMagic)) != 0) {
    return absl::FailedPreconditionError("bad magic: not a ptmpfs swap file");
  }
  if (file_bytes < kSwapHeaderBytes) {
    return absl::DataLossError(
        absl::StrFormat("truncated: the file is %d bytes, shorter than its %d-byte header",
                        file_bytes, kSwapHeaderBytes));
  }
  SwapHeader header{};
  memcpy(header.magic, in + kMagicAt, sizeof(header.magic));
  header.version = GetLe32(in + kVersionAt);
  header.page_size = GetLe32(in + kPageSizeAt);
  header.slot_count = GetLe64(in + kSlotCountAt);
  header.data_offset = GetLe64(in + kDataOffsetAt);
  memcpy(header.uuid, in + kUuidAt, sizeof(header.uuid));
  header.checkpoint_offset = GetLe64(in + kCheckpointOffsetAt);
  header.checkpoint_bytes = GetLe64(in + kCheckpointBytesAt);
  header.flags = GetLe64(in + kFlagsAt);
  memcpy(header.reserved, in + kReservedAt, sizeof(header.reserved));
  header.header_checksum = GetLe64(in + kChecksumAt);

  if (header.version != kSwapVersion) {
    return absl::FailedPreconditionError(
        absl::StrFormat("unsupported swap format version %d (this ptmpfs reads version %d)",
                        header.version, kSwapVersion));
  }
  const uint64_t computed = ChecksumOfEncoded(in);
  if (computed != header.header_checksum) {
    return absl::DataLossError(
        absl::StrFormat("header checksum mismatch (stored %016x, computed %016x): damaged header",
                        header.header_checksum, computed));
  }
  if (header.page_size != kSwapPageSize) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "page size %d, but this ptmpfs uses %d-byte pages", header.page_size, kSwapPageSize));
  }
  if (header.flags != 0) {
    return absl::FailedPreconditionError(
        absl::StrFormat("unknown flags %#x (version %d defines none)", header.flags, kSwapVersion));
  }
  for (uint8_t byte : header.reserved) {
    if (byte != 0) return absl::DataLossError("reserved header bytes are not zero");
  }
  if (header.data_offset < kSwapHeaderBytes || header.data_offset % kSwapDataAlign != 0) {
    return absl::DataLossError(
        absl::StrFormat("bad geometry: data_offset %d is not a nonzero multiple of %d",
                        header.data_offset, kSwapDataAlign));
  }
  if (header.slot_count == 0) return absl::DataLossError("bad geometry: no slots");
  if (header.slot_count > (UINT64_MAX - header.data_offset) / kSwapPageSize) {
    return absl::DataLossError(
        absl::StrFormat("bad geometry: %d slots overflow a 64-bit size", header.slot_count));
  }
  const uint64_t geometry_bytes = header.data_offset + header.slot_count * kSwapPageSize;
  if (file_bytes < geometry_bytes) {
    return absl::DataLossError(absl::StrFormat(
        "truncated: the file is %d bytes, but its header describes %d (data_offset %d + %d "
        "slots of %d bytes)",
        file_bytes, geometry_bytes, header.data_offset, header.slot_count, kSwapPageSize));
  }
  return header;
}

absl::Status WriteSwapHeader(int fd, const SwapHeader& header) {
  alignas(kSwapPageSize) char encoded[kSwapHeaderBytes];  // aligned for O_DIRECT
  EncodeSwapHeader(header, encoded);
  size_t done = 0;
  while (done < kSwapHeaderBytes) {
    ssize_t written = pwrite(fd, encoded + done, kSwapHeaderBytes - done, done);
    if (written < 0) {
      if (errno == EINTR) continue;
      return absl::InternalError(absl::StrFormat("writing the header: %s", ErrnoText(errno)));
    }
    done += static_cast<size_t>(written);
  }
  return absl::OkStatus();
}

absl::StatusOr<SwapHeader> ReadSwapHeader(int fd) {
  struct stat st;
  if (fstat(fd, &st) != 0) {
    return absl::InternalError(absl::StrFormat("fstat: %s", ErrnoText(errno)));
  }
  alignas(kSwapPageSize) char encoded[kSwapHeaderBytes] = {};  // aligned for O_DIRECT
  size_t done = 0;
  while (done < kSwapHeaderBytes) {
    // O_DIRECT wants the whole aligned block asked for; a short file just reads short.
    ssize_t got = pread(fd, encoded + done, kSwapHeaderBytes - done, done);
    if (got < 0) {
      if (errno == EINTR) continue;
      return absl::InternalError(absl::StrFormat("reading the header: %s", ErrnoText(errno)));
    }
    if (got == 0) break;
    done += static_cast<size_t>(got);
  }
  return DecodeSwapHeader(encoded, static_cast<uint64_t>(st.st_size));
}

absl::Status AllocateSwapBlocks(int fd, uint64_t offset, uint64_t bytes) {
  assert(offset % kSwapPageSize == 0 && bytes % kSwapPageSize == 0);
  if (bytes == 0) return absl::OkStatus();
  int result;
  do {
    result = fallocate(fd, 0, static_cast<off_t>(offset), static_cast<off_t>(bytes));
  } while (result != 0 && errno == EINTR);
  if (result == 0) return absl::OkStatus();
  const int error = errno;
  if (error == EOPNOTSUPP) return WriteZeros(fd, offset, bytes);
  std::string message = absl::StrFormat("allocating %d bytes of swap space at offset %d: %s", bytes,
                                        offset, ErrnoText(error));
  if (error == ENOSPC || error == EDQUOT || error == EFBIG) {
    return absl::ResourceExhaustedError(message);
  }
  return absl::InternalError(message);
}

absl::StatusOr<SwapHeader> FormatSwapFile(int fd, uint64_t file_bytes) {
  absl::StatusOr<SwapHeader> header = MakeSwapHeader(file_bytes);
  if (!header.ok()) return header.status();
  const uint64_t geometry_bytes = header->data_offset + header->slot_count * kSwapPageSize;
  struct stat st;
  if (fstat(fd, &st) != 0) {
    return absl::InternalError(absl::StrFormat("fstat: %s", ErrnoText(errno)));
  }
  // Reformatting a longer file: drop the tail so the size is the geometry.
  if (static_cast<uint64_t>(st.st_size) > geometry_bytes &&
      ftruncate(fd, static_cast<off_t>(geometry_bytes)) != 0) {
    return absl::InternalError(absl::StrFormat("ftruncate: %s", ErrnoText(errno)));
  }
  // Blocks first, header last: a format cut short leaves no header, so the file is
  // refused rather than trusted with blocks that may not exist (invariant 1 of swap.h).
  if (absl::Status status = AllocateSwapBlocks(fd, 0, geometry_bytes); !status.ok()) {
    return status;
  }
  if (absl::Status status = WriteSwapHeader(fd, *header); !status.ok()) return status;
  if (fdatasync(fd) != 0) {
    return absl::InternalError(absl::StrFormat("fdatasync: %s", ErrnoText(errno)));
  }
  return header;
}

}  // namespace ptmpfs::vm
