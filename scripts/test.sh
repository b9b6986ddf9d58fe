#!/usr/bin/env bash
# scripts/test.sh: installs what is missing, builds (plain and with ASan +
# UBSan), and runs every test: the C unit tests and the fuzz targets over
# their seed corpora in both builds, then the integration suites against
# the sanitized daemons with real clients (the protocol fuzz suites among
# them), then 30 s of libFuzzer on each target (scripts/fuzz.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
bash scripts/build.sh release asan

export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"

echo "== unit tests (release) =="
meson test -C build --suite unit --print-errorlogs
echo "== unit tests (asan+ubsan) =="
meson test -C build-asan --suite unit --print-errorlogs
echo "== fuzz targets over their corpora (release, asan+ubsan) =="
meson test -C build --suite fuzz --print-errorlogs
meson test -C build-asan --suite fuzz --print-errorlogs

echo "== guest image =="
# The small Debian-kernel guest the compute suites boot (cached, quick when
# it is already built).
bash tests/images/build.sh build/images
# The Debian 12 cloud-init guest (test_debian_guest, test_all_in_one).
bash tests/images/debian.sh build/images/debian

echo "== integration tests =="
# Debian's python3 with Debian's pytest and boto3, whatever else is on PATH.
KOALA_BUILD_DIR="$PWD/build-asan" /usr/bin/python3 -m pytest tests/integration -q -p no:cacheprovider "$@"

echo "== fuzzing (30 s per target) =="
bash scripts/fuzz.sh 30
