#!/usr/bin/env bash
# scripts/fuzz.sh [SECONDS] [target...]: builds the libFuzzer targets of
# tests/fuzz with clang in build-fuzz/ (the whole tree instrumented:
# -Dfuzzing=true, ASan + UBSan) and fuzzes each target (default: all) for
# SECONDS (default 30), two at a time, over a temporary copy of its seed
# corpus (new inputs never land in the repository).  An input that crashes,
# leaks, trips a sanitizer, runs over 10 s or takes over 2 GiB fails the
# run: the exit status is non-zero and the reproducer's path is printed
# (rerun it with build-fuzz/tests/fuzz/fuzz_<target> FILE; minimise with
# -minimize_crash=1; keep it as tests/fuzz/corpus/<target>/crash-<what>).
# FUZZ_JOBS sets the build's parallelism (default 2); FUZZ_KEEP=1 keeps
# the temporary directory.
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${1:-30}
[ $# -gt 0 ] && shift
all=(sigv4 sigv2 aws_chunked xml s3_xml s3_router ec2_params soap config nc_state)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")

dir=build-fuzz
opts=(-Dfuzzing=true -Db_sanitize=address,undefined -Db_lundef=false
      -Dbuildtype=debugoptimized)
if [ -d "$dir" ]; then
  meson configure "$dir" "${opts[@]}" >/dev/null
else
  CC=clang meson setup "$dir" "${opts[@]}" >/dev/null
fi
exes=()
for t in "${targets[@]}"; do exes+=("tests/fuzz/fuzz_$t"); done
nice ninja -C "$dir" -j "${FUZZ_JOBS:-2}" "${exes[@]}"

work=$(mktemp -d /tmp/koala-fuzz.XXXXXX)
[ "${FUZZ_KEEP:-0}" = 1 ] || trap 'rm -rf "$work"' EXIT
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"

# One target: its corpus copied to $work/<t>/corpus, its log and any
# reproducer (crash-*, leak-*, timeout-*, oom-*) in $work/<t>/.
run_one() {
  local t=$1 w=$work/$1
  mkdir -p "$w/corpus"
  cp -r tests/fuzz/corpus/"$t"/. "$w/corpus/"
  "$dir/tests/fuzz/fuzz_$t" -max_total_time="$secs" -timeout=10 \
    -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$w/" \
    "$w/corpus" >"$w/log" 2>&1
}

declare -A pid_of
for t in "${targets[@]}"; do
  # At most two at a time (two cores).
  while [ "$(jobs -rp | wc -l)" -ge 2 ]; do wait -n || true; done
  echo "fuzz: $t for ${secs}s"
  run_one "$t" &
  pid_of[$t]=$!
done

failed=()
for t in "${targets[@]}"; do
  rc=0
  wait "${pid_of[$t]}" || rc=$?
  w=$work/$t
  stats=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$w/log" | tail -1 || true)
  execs=$(grep -E '^stat::average_exec_per_sec' "$w/log" | awk '{print $2}' || true)
  printf 'fuzz: %-12s %s exec/s=%s\n' "$t" "${stats:-(no DONE line)}" "${execs:-?}"
  if [ "$rc" -ne 0 ]; then
    failed+=("$t")
    echo "fuzz: $t FAILED (exit $rc); the end of its log:"
    tail -60 "$w/log" | sed 's/^/    /'
    for f in "$w"/crash-* "$w"/leak-* "$w"/timeout-* "$w"/oom-* "$w"/slow-unit-*; do
      [ -e "$f" ] || continue
      keep=tests/fuzz/corpus/$t/$(basename "$f")
      cp "$f" "/tmp/koala-fuzz-$t-$(basename "$f")"
      echo "fuzz: reproducer: /tmp/koala-fuzz-$t-$(basename "$f")" \
           "(keep it as $keep once minimised)"
    done
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: failed: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz: ${#targets[@]} targets, ${secs}s each: nothing found"
