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
  if [ -d "$dir" ]; then
    meson configure "$dir" "${opts[@]}" >/dev/null
  else
    meson setup "$dir" "${opts[@]}" >/dev/null
  fi
  ninja -C "$dir"
done
