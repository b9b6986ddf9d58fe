#!/usr/bin/env bash
# bench/s3/sse.sh: what server-side encryption costs.  GET and PUT of
# 4 KiB and 8 MiB objects, 1 and 8 clients, into three buckets of one
# Walrus (release build): plain, SSE-S3 (x-amz-server-side-encryption:
# AES256) and SSE-C (a customer key on every request), with
# bench/s3/s3load; then the ratios to plain.  Walrus only (no nginx or
# s3rver: bench/s3/run.sh has those); everything on 127.0.0.1 under
# bench/s3/.work-sse.  Options: DURATION=seconds per measurement (4).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
bash scripts/build.sh release >/dev/null
LOAD=$ROOT/build/bench/s3/s3load
DURATION=${DURATION:-4}
WORK=$ROOT/bench/s3/.work-sse
rm -rf "$WORK"
mkdir -p "$WORK/walrus"
wpid=""
cleanup() {
  if [ -n "$wpid" ]; then kill "$wpid" 2>/dev/null || true; wait "$wpid" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; exit 1; }

WPORT=$(port)
build/src/walrus/koala-walrus --listen "127.0.0.1:$WPORT" --data-dir "$WORK/walrus" \
  --log-level warn >"$WORK/walrus.log" 2>&1 &
wpid=$!
wait_port "$WPORT"
eval "$(build/src/cli/koala walrus add-user bench --data-dir "$WORK/walrus" | sed 's/^/export /')"
AK=$AWS_ACCESS_KEY_ID SK=$AWS_SECRET_ACCESS_KEY
for b in plain sses3 ssec; do
  AWS_DEFAULT_REGION=us-east-1 AWS_CONFIG_FILE=/dev/null /usr/bin/aws \
    --endpoint-url "http://127.0.0.1:$WPORT" s3api create-bucket --bucket "$b" >/dev/null
done

results=$WORK/results.jsonl
measure() { # mode op size clients objects
  local mode=$1 op=$2 size=$3 clients=$4 objects=$5 extra=()
  case $mode in sses3) extra=(--sse s3) ;; ssec) extra=(--sse c) ;; esac
  local min=$((clients * 2))
  [ "$op" = get ] || [ "$min" -ge "$objects" ] || min=$objects
  sync
  "$LOAD" --label "$mode" --op "$op" --size "$size" --clients "$clients" \
    --objects "$objects" --duration "$DURATION" --min-requests "$min" \
    --bucket "$mode" --json --endpoint "http://127.0.0.1:$WPORT" \
    --access-key "$AK" --secret "$SK" "${extra[@]}" | tee -a "$results"
}
for size in 4K 8M; do
  objects=256; [ "$size" = 8M ] && objects=16
  for clients in 1 8; do
    for op in put get; do
      for mode in plain sses3 ssec; do
        measure "$mode" "$op" "$size" "$clients" "$objects"
      done
    done
  done
done

python3 - "$results" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
base = {(r["op"], r["size"], r["clients"]): r for r in rows
        if r["label"] == "plain"}
print("\n| op | size | clients | plain | SSE-S3 | SSE-C |")
print("|---|---|---|---|---|---|")
for key, p in base.items():
    op, size, clients = key
    cells = []
    for mode in ("plain", "sses3", "ssec"):
        r = next(x for x in rows if x["label"] == mode and
                 (x["op"], x["size"], x["clients"]) == key)
        if r["errors"]:
            cells.append(f"{r['errors']} errors")
            continue
        fig = (f"{r['ops']:.0f} op/s" if size < 1 << 20
               else f"{r['mbps']:.0f} MB/s")
        if mode != "plain":
            fig += f" ({r['ops'] / p['ops']:.2f})"
        cells.append(fig)
    label = f"{size // 1024} KiB" if size < 1 << 20 else f"{size >> 20} MiB"
    print(f"| {op.upper()} | {label} | {clients} | " + " | ".join(cells) + " |")
PY
