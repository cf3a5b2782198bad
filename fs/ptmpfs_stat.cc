// ptmpfs-stat: prints a mounted ptmpfs's figures, one `name value` line each.
//
//   ptmpfs-stat MOUNTPOINT
//
// The daemon answers a private ioctl on the mount's root directory
// (fuse_adapter.h, kIoctlReadFigures) with Tmpfs::ReadFigures(): the RAM budget and
// what is resident, swap capacity and use, page-ins and page-outs, nodes and
// directory entries.
#include <fcntl.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "fs/fuse_adapter.h"

int main(int argc, char** argv) {
  using ptmpfs::fs::IoctlFigures;
  if (argc != 2 || argv[1][0] == '-') {
    const bool help = argc == 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0);
    fprintf(help ? stdout : stderr,
            "usage: ptmpfs-stat MOUNTPOINT\n"
            "Prints the figures of a mounted ptmpfs as `name value` lines.\n");
    return help ? 0 : 2;
  }
  const char* mountpoint = argv[1];
  const int fd = open(mountpoint, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    fprintf(stderr, "ptmpfs-stat: %s: %s\n", mountpoint, strerror(errno));
    return 1;
  }
  IoctlFigures figures{};
  if (ioctl(fd, ptmpfs::fs::kIoctlReadFigures, &figures) != 0) {
    const int error = errno;
    close(fd);
    if (error == ENOTTY || error == ENOSYS || error == EINVAL || error == EPERM) {
      fprintf(stderr, "ptmpfs-stat: %s: not the root of a ptmpfs mount (%s)\n", mountpoint,
              strerror(error));
    } else {
      fprintf(stderr, "ptmpfs-stat: %s: %s\n", mountpoint, strerror(error));
    }
    return 1;
  }
  close(fd);
  if (figures.version != ptmpfs::fs::kFiguresVersion) {
    fprintf(stderr, "ptmpfs-stat: %s: figures of version %u, this tool reads version %u\n",
            mountpoint, figures.version, ptmpfs::fs::kFiguresVersion);
    return 1;
  }
  const size_t count =
      figures.count < ptmpfs::fs::kFigureCount ? figures.count : ptmpfs::fs::kFigureCount;
  for (size_t i = 0; i < count; ++i) {
    printf("%s %llu\n", ptmpfs::fs::kFigureNames[i],
           static_cast<unsigned long long>(figures.values[i]));
  }
  return 0;
}
