#!/usr/bin/env bash
# bench/net/run.sh: what the instances' networks cost (docs/network.md),
# each figure beside its peer from the same run: rule-apply latency in a
# real cloud with 1000 rules and 200 instances; instance-to-instance
# throughput and packet rates through the node's filters beside the bare
# bridge; the CC router's elastic-IP NAT beside plain routing; the tunnel
# between zones, plain VXLAN and the sealed relay, beside direct routing.
# What is measured and what is not: bench/net/README.md.
#
# Needs root (network namespaces).  Installs what is missing (iperf3 is in
# scripts/deps.sh), builds a release build in build-bench/ (or
# KOALA_BUILD_DIR) and the guest image (unless KOALA_IMAGES names one).
# Traffic stays inside namespaces the bench creates and deletes; every
# process it starts it ends by PID.  About 4 minutes.
#   DURATION=2 ROUNDS=3 APPLY_ROUNDS=5 PARTS=apply,node,eip,tunnel \
#     bench/net/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
bash scripts/deps.sh
export KOALA_BUILD_DIR=${KOALA_BUILD_DIR:-$PWD/build-bench}
if [ ! -f "$KOALA_BUILD_DIR/meson-private/coredata.dat" ]; then
  meson setup "$KOALA_BUILD_DIR" -Dbuildtype=release >/dev/null
fi
ninja -C "$KOALA_BUILD_DIR" -j "${JOBS:-2}"
if [ -z "${KOALA_IMAGES:-}" ]; then
  bash tests/images/build.sh build/images
  export KOALA_IMAGES=$PWD/build/images
fi
exec /usr/bin/python3 bench/net/net.py
