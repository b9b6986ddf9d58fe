#!/usr/bin/env bash
# scripts/up.sh: installs what is missing, builds, and starts an all-in-one
# Koala cloud on this host: Walrus (S3), the CLC (EC2 API), one cluster
# controller and one node controller, each a real daemon speaking SOAP over
# mutual TLS to the others, with the instances' network inside network
# namespaces of its own.  Builds the small test guest and registers it as
# an image, then prints the endpoints and credentials.  Needs root (network
# namespaces, bridges, QEMU taps).  Data lives in $KOALA_HOME (default
# ./.koala).  Stop it with: scripts/down.sh
set -euo pipefail
trap 'echo "up.sh: failed: $BASH_COMMAND (exit $?)" >&2' ERR
cd "$(dirname "$0")/.."
bash scripts/deps.sh
bash scripts/build.sh release
bash tests/images/build.sh build/images
exec build/src/cli/koala up --data-dir "${KOALA_HOME:-$PWD/.koala}" \
  --images build/images
