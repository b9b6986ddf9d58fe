#!/usr/bin/env bash
# bench/ebs/guest.sh: an EBS volume as a guest sees it (the NC's side of
# docs/storage.md), each figure beside its peer from the same run:
#   - ncAttachVolume's reply, and AttachVolume -> the disk in the guest's
#     /sys/block (a guest loop polling every 5 ms, read on its console);
#     detach -> gone;
#   - inside the busybox guest with dd: 4 KiB QD1 latency and 1 MiB QD8
#     throughput (eight dd at once), read and write, O_DIRECT, on the
#     volume (scsi-hd on virtio-scsi, QEMU's NBD client with TLS) beside
#     the instance's local ephemeral qcow2 disk (virtio-blk).
# Under TCG (no KVM here) the guest's own per-request cost dominates the
# small-request figures, so the ratios say more than the absolute numbers.
# The host-side figures of the export itself are bench/ebs/run.sh.
# Needs root (a network namespace), builds a release build in build-bench/
# (or KOALA_BUILD_DIR) and the guest image.  ROUNDS=5 (medians).  About a
# minute.  Every process it starts it ends by PID.
set -euo pipefail
cd "$(dirname "$0")/../.."
export KOALA_BUILD_DIR=${KOALA_BUILD_DIR:-$PWD/build-bench}
if [ ! -f "$KOALA_BUILD_DIR/meson-private/coredata.dat" ]; then
  meson setup "$KOALA_BUILD_DIR" -Dbuildtype=release >/dev/null
fi
ninja -C "$KOALA_BUILD_DIR" -j "${JOBS:-2}"
bash tests/images/build.sh "${KOALA_IMAGES:-$PWD/build/images}" >/dev/null
exec /usr/bin/python3 bench/ebs/guest.py
