#!/usr/bin/env bash
# bench/launch/run.sh: RunInstances -> running -> booted guest, one at a time
# and CONCURRENT at once, with QEMU's memory per instance, against bare QEMU
# booting the same guest with the NC's own command line (see launch.py).
# Needs root (network namespaces, taps).  Installs what is missing, builds
# the release build and the guest image first.
#   LAUNCHES=10 CONCURRENT=20 HYPERVISOR=auto bench/launch/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
bash scripts/deps.sh
bash scripts/build.sh release
bash tests/images/build.sh build/images
KOALA_BUILD_DIR="$PWD/build" exec /usr/bin/python3 bench/launch/launch.py
