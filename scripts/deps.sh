#!/usr/bin/env bash
# scripts/deps.sh: installs the Debian 12 packages Koala builds, runs and is
# tested with.  Idempotent and quick when everything is already there.
set -euo pipefail

PACKAGES=(
  # build
  gcc libc6-dev pkg-config meson ninja-build
  libmicrohttpd-dev libcurl4-openssl-dev libxml2-dev libssl-dev
  libsqlite3-dev libjansson-dev libinih-dev zlib1g-dev libgnutls28-dev
  # tests
  libcmocka-dev python3 python3-pytest python3-boto3 awscli s3cmd
  # Ansible's amazon.aws modules against the EC2 API (test_ansible.py)
  ansible
  # fuzzing (scripts/fuzz.sh): clang and its runtime, libFuzzer
  clang libclang-rt-14-dev
  sqlite3 curl procps iproute2 openssh-client
  # the cluster controller's network (DHCP server, NAT) and the node
  # controller's per-tap anti-spoofing (nft)
  dnsmasq-base dnsmasq-utils nftables
  # bench/net: throughput between namespaces standing for instances
  iperf3
  # the node controller: the hypervisor and qemu-img
  qemu-system-x86 qemu-utils
  # the storage controller: qemu-storage-daemon serves the volumes' NBD
  # exports (qemu-img, qemu-io from qemu-utils make and test them)
  qemu-system-common
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
    || missing+=("$p")
done
# Node.js runs the AWS SDK for JavaScript tests; a machine may already have
# it from elsewhere (NodeSource), whose nodejs conflicts with Debian's npm.
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
# busybox's udhcpc is the DHCP client of the CC suite; busybox and
# busybox-static conflict, either will do.
command -v busybox >/dev/null || missing+=(busybox-static)
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
