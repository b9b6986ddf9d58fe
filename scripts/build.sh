#!/usr/bin/env bash
# scripts/build.sh [release|asan]...: configures and builds Koala.
#   release  -> build/       (warnings are errors)
#   asan     -> build-asan/  (AddressSanitizer + UndefinedBehaviorSanitizer)
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -gt 0 ] || set -- release
for kind in "$@"; do
  case "$kind" in
    release) dir=build; opts=(-Dwerror=true) ;;
    asan) dir=build-asan; opts=(-Dwerror=true -Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debug) ;;
    *) echo "build: unknown kind $kind" >&2; exit 2 ;;
  esac
  if [ -d "$dir" ] && [ ! -f "$dir/meson-private/coredata.dat" ]; then
    echo "build: $dir/ exists but is not a meson build directory;" \
         "move it away or remove it, then run this again" >&2
    exit 1
  fi
  # meson's own words when it fails (its output is quiet otherwise).
  if [ -d "$dir" ]; then
    step=(meson configure "$dir" "${opts[@]}")
  else
    step=(meson setup "$dir" "${opts[@]}")
  fi
  if ! out=$("${step[@]}" 2>&1); then
    echo "build: '${step[*]}' failed:" >&2
    echo "$out" >&2
    exit 1
  fi
  ninja -C "$dir" || { echo "build: ninja -C $dir failed (above)" >&2; exit 1; }
done
