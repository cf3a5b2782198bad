#!/bin/bash
# Runs xfstests against ptmpfs.
#   xfstests-config/run.sh XFSTESTS_DIR [check arguments...]    (default: -g quick)
# XFSTESTS_DIR is an already built xfstests tree (make done; users fsgqa,
# fsgqa2, 123456-fsgqa and group fsgqa made). ptmpfs must be where mount(8)'s
# helper mount.fuse3 finds it: cmake --install build (/usr/local/sbin).
# Environment: TEST_SIZE, SCRATCH_SIZE (swap file sizes, default 8G and 4G),
# and anything local.config reads (TEST_DEV, TEST_DIR, SCRATCH_DEV, ...).
set -euo pipefail

here=$(dirname "$(readlink -f "$0")")
if [ $# -lt 1 ] || [ ! -x "$1/check" ]; then
  echo "usage: $0 XFSTESTS_DIR [check arguments...]  (XFSTESTS_DIR/check not found)" >&2
  exit 2
fi
xfstests=$(readlink -f "$1")
shift
[ $# -gt 0 ] || set -- -g quick

for tool in ptmpfs mkfs.ptmpfs; do
  if ! PATH="/usr/local/sbin:/usr/sbin:/sbin:$PATH" command -v "$tool" >/dev/null; then
    echo "$0: $tool is not installed (cmake --install build)" >&2
    exit 1
  fi
done
mkfs=$(PATH="/usr/local/sbin:/usr/sbin:/sbin:$PATH" command -v mkfs.ptmpfs)

# The paths local.config would choose.
eval "$(bash -c '. "$1"; declare -p TEST_DEV TEST_DIR SCRATCH_DEV SCRATCH_MNT' _ "$here/local.config")"

# Nothing of ours may be mounted while the swap files are remade.
for mnt in "$TEST_DIR" "$SCRATCH_MNT"; do
  if mountpoint -q "$mnt"; then umount "$mnt"; fi
done
"$mkfs" -f "$TEST_DEV" "${TEST_SIZE:-8G}"
"$mkfs" -f "$SCRATCH_DEV" "${SCRATCH_SIZE:-4G}"
mkdir -p "$TEST_DIR" "$SCRATCH_MNT"

ln -sfn "$here/local.config" "$xfstests/local.config"
cd "$xfstests"
status=0
./check "$@" || status=$?

# Leave nothing mounted.
for mnt in "$TEST_DIR" "$SCRATCH_MNT"; do
  if mountpoint -q "$mnt"; then umount "$mnt" || true; fi
done
exit $status
