#!/usr/bin/env bash
# bench/launch/run.sh: how fast RunInstances gives a usable guest, against
# bare QEMU booting the same guest with the NC's own command line, in one
# run.  Needs root (network namespaces, taps).  Installs what is missing,
# builds a release build in build-bench/ (or KOALA_BUILD_DIR) and the
# guest images first.  GUEST picks the guest (default all, one after the
# other):
#   busybox  the busybox test guest (launch.py): RunInstances -> running ->
#            booted guest, one at a time and CONCURRENT at once, with
#            QEMU's memory per instance.
#   debian   the Debian 12 cloud-init guest (debian.py, built by
#            tests/images/debian.sh): RunInstances -> running -> first
#            console line -> `ssh -i key admin@IP true` succeeds, ROUNDS
#            times, alternating with bare QEMU on a tap of the node's
#            bridge as a stopped instance (so the cloud's DHCP and metadata
#            service give it its address and key); ratio Koala/bare.
#   ebs      the busybox guest's whole disk as an EBS-backed image (its
#            root volume made by koala-sc from a snapshot, booted over
#            NBD) against the same disk as an instance-store image
#            (ebs.py): RunInstances -> running -> first console line ->
#            DHCP lease, ROUNDS times alternating; ratio EBS/store.
#   GUEST=debian ROUNDS=3 HYPERVISOR=auto bench/launch/run.sh
#   GUEST=busybox LAUNCHES=10 CONCURRENT=20 bench/launch/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
GUEST=${GUEST:-all}
case "$GUEST" in
  busybox|debian|ebs|all) ;;
  *) echo "run.sh: GUEST is busybox, debian, ebs or all, not $GUEST" >&2
     exit 2 ;;
esac
bash scripts/deps.sh
# Benchmarks run on a release build of their own, never on the ASan one.
export KOALA_BUILD_DIR=${KOALA_BUILD_DIR:-$PWD/build-bench}
if [ ! -f "$KOALA_BUILD_DIR/meson-private/coredata.dat" ]; then
  meson setup "$KOALA_BUILD_DIR" -Dbuildtype=release >/dev/null
fi
ninja -C "$KOALA_BUILD_DIR" -j "${JOBS:-2}"
images=${KOALA_IMAGES:-$PWD/build/images}
export KOALA_IMAGES=$images
rc=0
if [ "$GUEST" = busybox ] || [ "$GUEST" = all ]; then
  bash tests/images/build.sh "$images"
  /usr/bin/python3 bench/launch/launch.py || rc=$?
fi
if [ "$GUEST" = ebs ] || [ "$GUEST" = all ]; then
  bash tests/images/build.sh "$images"
  /usr/bin/python3 bench/launch/ebs.py || rc=$?
fi
if [ "$GUEST" = debian ] || [ "$GUEST" = all ]; then
  bash tests/images/debian.sh "$images/debian"
  /usr/bin/python3 bench/launch/debian.py || rc=$?
fi
exit $rc
