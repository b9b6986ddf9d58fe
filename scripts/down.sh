#!/usr/bin/env bash
# scripts/down.sh: stops what scripts/up.sh started (the instances, the
# daemons, by their recorded PIDs, and the network namespaces).  The data
# stays in $KOALA_HOME (default ./.koala); scripts/up.sh starts it again.
set -euo pipefail
cd "$(dirname "$0")/.."
exec build/src/cli/koala down --data-dir "${KOALA_HOME:-$PWD/.koala}"
