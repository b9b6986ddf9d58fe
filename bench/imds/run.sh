#!/usr/bin/env bash
# bench/imds/run.sh: the CC's instance metadata service (169.254.169.254 in
# the cluster's namespace) under 50 concurrent clients, against nginx
# serving the same bytes as static files, in one run (see imds.py).
#
# A whole cloud runs here (tests/integration/cloud.py); one busybox guest
# is launched with a key pair and 4 KiB of user data, then stopped, and the
# benchmark's own network namespace takes its IP and MAC on the cluster LAN
# (a veth pair on klan0), so the CC answers it as that instance.  From
# there bench/imds/imdsload (C, epoll) asks meta-data/instance-id, the
# meta-data/ listing, user-data, the identity document and the IMDSv2
# token PUT + GET, over kept-alive connections and a new connection per
# request, and prints requests/s, p50/p99 and errors for Koala and nginx
# (nginx in the cluster namespace on 169.254.169.254:18080) with the
# ratios.  Needs root (network namespaces, taps).  Installs what is
# missing (nginx too), builds a release build in build-bench/ (or
# KOALA_BUILD_DIR) and the guest image.
#   CONCURRENCY=50 DURATION=4 ROUNDS=3 bench/imds/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
bash scripts/deps.sh
if ! command -v nginx >/dev/null && [ ! -x /usr/sbin/nginx ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends nginx
fi
export NGINX=${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}
# Benchmarks run on a release build of their own, never on the ASan one.
export KOALA_BUILD_DIR=${KOALA_BUILD_DIR:-$PWD/build-bench}
if [ ! -f "$KOALA_BUILD_DIR/meson-private/coredata.dat" ]; then
  meson setup "$KOALA_BUILD_DIR" -Dbuildtype=release >/dev/null
fi
ninja -C "$KOALA_BUILD_DIR" -j "${JOBS:-2}"
bash tests/images/build.sh build/images
exec /usr/bin/python3 bench/imds/imds.py
