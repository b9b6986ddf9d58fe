#!/usr/bin/env bash
# scripts/up.sh: installs what is missing, builds, and starts an all-in-one
# Koala cloud on this host: Walrus (S3), the CLC (EC2 API), one cluster
# controller, one node controller and the zone's storage controller (EBS
# volumes and snapshots), each a real daemon speaking SOAP over
# mutual TLS to the others, with the instances' network inside network
# namespaces of its own.  Builds the small test guest and the Debian 12
# cloud-init guest and registers them as images, then prints the endpoints,
# the credentials and how to launch an instance and ssh into it.  Needs
# root (network namespaces, bridges, QEMU taps).  Data lives in
# $KOALA_HOME (default ./.koala).  Stop it with: scripts/down.sh
set -euo pipefail
trap 'echo "up.sh: failed: $BASH_COMMAND (exit $?)" >&2' ERR
cd "$(dirname "$0")/.."
bash scripts/deps.sh
bash scripts/build.sh release
bash tests/images/build.sh build/images
bash tests/images/debian.sh build/images/debian
exec build/src/cli/koala up --data-dir "${KOALA_HOME:-$PWD/.koala}" \
  --images build/images
