// mkfs.ptmpfs: formats a ptmpfs swap file (vm/swap_format.h), or checks one.
//
//   mkfs.ptmpfs [-f] FILE SIZE     format FILE for SIZE bytes (k, m, g, t suffixes)
//   mkfs.ptmpfs --check FILE       verify FILE's header; say what is wrong (exit 1)
//
// Formatting allocates every block of the file (FormatSwapFile: fallocate), so a
// mount on it never fails a page-out for want of host disk, and prints a summary.
// It refuses, with a message and exit 1:
//   - a file that holds something else (not empty, not zeros, not a ptmpfs swap
//     file), unless -f: it would be destroyed;
//   - a file in use by a running ptmpfs (its flock is held), even with -f: the
//     daemon would read garbage back from its own swap;
//   - anything but a regular file.
// Reformatting a ptmpfs swap file that is not in use needs no -f: a version-1 swap
// file holds nothing once its daemon is gone.
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"
#include "fs/parse_size.h"
#include "vm/swap_format.h"

namespace {

using ptmpfs::vm::SwapHeader;

constexpr char kUsage[] =
    "usage: mkfs.ptmpfs [-f] FILE SIZE\n"
    "       mkfs.ptmpfs --check FILE\n"
    "Formats FILE as a ptmpfs swap file of SIZE bytes (k, m, g, t: powers of 1024),\n"
    "allocating all its blocks, or checks the header of one.\n"
    "  -f        format even a file that holds something else\n"
    "  --check   verify FILE's header and say what is wrong\n";

int Fail(const std::string& message) {
  fprintf(stderr, "mkfs.ptmpfs: %s\n", message.c_str());
  return 1;
}

std::string UuidText(const uint8_t uuid[16]) {
  std::string text;
  for (int i = 0; i < 16; ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) text.push_back('-');
    text += absl::StrFormat("%02x", uuid[i]);
  }
  return text;
}

std::string Summary(const SwapHeader& header) {
  const uint64_t bytes = header.slot_count * header.page_size;
  return absl::StrFormat(
      "ptmpfs swap file version %u: %u slots of %u bytes (%.1f MiB), data at offset %u, "
      "uuid %s",
      header.version, header.slot_count, header.page_size, bytes / 1048576.0, header.data_offset,
      UuidText(header.uuid));
}

int Check(const char* path) {
  const int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Fail(absl::StrFormat("%s: %s", path, strerror(errno)));
  absl::StatusOr<SwapHeader> header = ptmpfs::vm::ReadSwapHeader(fd);
  close(fd);
  if (!header.ok()) return Fail(absl::StrFormat("%s: %s", path, header.status().message()));
  printf("%s: ok: %s\n", path, Summary(*header).c_str());
  return 0;
}

// True if the first block of `fd` is all zeros (a file made by fallocate or dd).
bool StartsWithZeros(int fd) {
  char block[4096];
  const ssize_t got = pread(fd, block, sizeof(block), 0);
  if (got <= 0) return got == 0;
  return std::all_of(block, block + got, [](char c) { return c == 0; });
}

int Format(const char* path, uint64_t bytes, bool force) {
  struct stat st;
  const bool existed = stat(path, &st) == 0;
  if (existed && !S_ISREG(st.st_mode)) {
    return Fail(absl::StrFormat("%s: not a regular file", path));
  }
  const int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return Fail(absl::StrFormat("%s: %s", path, strerror(errno)));
  // The lock a running ptmpfs holds on its swap file (vm/swap.h, invariant 3); held
  // while formatting so that no daemon starts on a half-written file.
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int error = errno;
    close(fd);
    if (error == EWOULDBLOCK) {
      return Fail(absl::StrFormat("%s: in use by a running ptmpfs; unmount it first", path));
    }
    return Fail(absl::StrFormat("%s: flock: %s", path, strerror(error)));
  }
  if (existed && st.st_size > 0 && !force && !StartsWithZeros(fd)) {
    absl::StatusOr<SwapHeader> header = ptmpfs::vm::ReadSwapHeader(fd);
    // A damaged ptmpfs swap file (DataLoss) is ours to reformat; anything else is not.
    if (!header.ok() && !absl::IsDataLoss(header.status())) {
      close(fd);
      return Fail(
          absl::StrFormat("%s: holds something else (%s); -f formats it anyway, destroying it",
                          path, header.status().message()));
    }
  }
  absl::StatusOr<SwapHeader> header;
  if (ftruncate(fd, 0) != 0) {
    header = absl::InternalError(absl::StrFormat("ftruncate: %s", strerror(errno)));
  } else {
    header = ptmpfs::vm::FormatSwapFile(fd, bytes);
  }
  close(fd);
  if (!header.ok()) {
    if (!existed) unlink(path);
    return Fail(absl::StrFormat("%s: %s", path, header.status().message()));
  }
  printf("%s: %s\n", path, Summary(*header).c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  bool force = false;
  bool check = false;
  const char* positional[2] = {nullptr, nullptr};
  int positional_count = 0;
  for (int i = 1; i < argc; ++i) {
    const std::string_view word = argv[i];
    if (word == "-h" || word == "--help") {
      fputs(kUsage, stdout);
      return 0;
    } else if (word == "-f" || word == "--force") {
      force = true;
    } else if (word == "--check" || word == "-c") {
      check = true;
    } else if (word.size() > 1 && word[0] == '-') {
      fprintf(stderr, "mkfs.ptmpfs: %s: unknown flag\n%s", argv[i], kUsage);
      return 2;
    } else if (positional_count < 2) {
      positional[positional_count++] = argv[i];
    } else {
      fprintf(stderr, "mkfs.ptmpfs: %s: one word too many\n%s", argv[i], kUsage);
      return 2;
    }
  }
  if (check) {
    if (positional_count != 1 || force) {
      fputs(kUsage, stderr);
      return 2;
    }
    return Check(positional[0]);
  }
  if (positional_count != 2) {
    fputs(kUsage, stderr);
    return 2;
  }
  // k, m, g, t as ptmpfs's size= takes them; no %: the file's size is not the RAM's.
  absl::StatusOr<uint64_t> bytes = ptmpfs::fs::ParseSize("size", positional[1], /*ram_bytes=*/0);
  if (!bytes.ok()) return Fail(std::string(bytes.status().message()));
  return Format(positional[0], *bytes, force);
}
