#!/usr/bin/env bash
# bench/ebs/run.sh: what an EBS volume costs (docs/storage.md), each figure
# beside its peer from the same run:
#   - 4 KiB QD1 latency and 1 MiB QD8 throughput, read and write, with
#     qemu-io (qemu-img bench takes no TLS object) through the real export (NBD with TLS from the
#     volume's qemu-storage-daemon, over the unix socket and over TCP)
#     beside a local qcow2 file with the same cache mode (O_DIRECT);
#   - snapshot and restore MB/s of the same random bytes beside `aws s3 cp`
#     of them to and from Walrus.
# Not here: AttachVolume -> device in a guest (the NC's hot-plug).
# Installs what is missing, builds a release build in build-bench/ (or
# KOALA_BUILD_DIR).  Every process it starts it ends by PID.  About
# 2 minutes.  SIZE_MB=256 (the bytes snapshotted), ROUNDS=3 (median shown),
# KEEP=1 (keep the daemons' logs: sc.log says how long the backup copy and
# the uploads of each snapshot took).
set -euo pipefail
cd "$(dirname "$0")/../.."
bash scripts/deps.sh
export KOALA_BUILD_DIR=${KOALA_BUILD_DIR:-$PWD/build-bench}
if [ ! -f "$KOALA_BUILD_DIR/meson-private/coredata.dat" ]; then
  meson setup "$KOALA_BUILD_DIR" -Dbuildtype=release >/dev/null
fi
ninja -C "$KOALA_BUILD_DIR" -j "${JOBS:-2}"
exec /usr/bin/python3 bench/ebs/ebs.py
