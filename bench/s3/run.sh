#!/usr/bin/env bash
# bench/s3/run.sh: Walrus against its ceilings and a peer, in one run.
#
# For 4 KiB and 64 MiB objects, at 1 and 16 concurrent clients, it measures
#   PUT  Walrus | raw disk (write + fdatasync + rename, no network)
#               | nginx WebDAV PUT (HTTP, no fsync, no checksum) | s3rver
#   GET  Walrus | nginx serving the same-sized files from disk | s3rver
# with bench/s3/s3load (libcurl multi), then prints the ratios.  Everything
# listens on 127.0.0.1 and lives under bench/s3/.work (same file system for
# all); the page cache is flushed (sync) before each measurement.
# Options: DURATION=seconds per measurement (default 4).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
bash scripts/deps.sh
# The peers: nginx from Debian, s3rver from npm (Node.js from Debian when
# the machine has none).
need=()
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx)
command -v node >/dev/null || need+=(nodejs)
command -v npm >/dev/null || need+=(npm)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
PEERS=$ROOT/bench/s3/.peers
if [ ! -x "$PEERS/node_modules/.bin/s3rver" ]; then
  mkdir -p "$PEERS"
  (cd "$PEERS" && npm install --silent --no-audit --no-fund s3rver@3.7.1 >/dev/null)
fi
bash scripts/build.sh release
LOAD=$ROOT/build/bench/s3/s3load
DURATION=${DURATION:-4}

WORK=$ROOT/bench/s3/.work
rm -rf "$WORK"
mkdir -p "$WORK"/{walrus,nginx/www/bench,nginx/dav/bench,nginx/tmp,s3rver,disk}
chmod 777 "$WORK/nginx/dav" "$WORK/nginx/dav/bench" "$WORK/nginx/tmp"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; exit 1; }

# Walrus (release build), log level warn so logging costs nothing.
WPORT=$(port)
build/src/walrus/koala-walrus --listen "127.0.0.1:$WPORT" --data-dir "$WORK/walrus" \
  --log-level warn >"$WORK/walrus.log" 2>&1 &
pids+=($!)
wait_port "$WPORT"
eval "$(build/src/cli/koala walrus add-user bench --data-dir "$WORK/walrus" | sed 's/^/export /')"
AK=$AWS_ACCESS_KEY_ID SK=$AWS_SECRET_ACCESS_KEY
AWS_DEFAULT_REGION=us-east-1 AWS_CONFIG_FILE=/dev/null /usr/bin/aws \
  --endpoint-url "http://127.0.0.1:$WPORT" s3api create-bucket --bucket bench >/dev/null

# nginx: static files with sendfile, as a CDN edge would serve them.
NPORT=$(port) DPORT=$(port)
cat >"$WORK/nginx/nginx.conf" <<EOF
worker_processes auto;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on; tcp_nopush on; tcp_nodelay on;
  keepalive_requests 100000;
  client_body_temp_path $WORK/nginx/tmp;
  proxy_temp_path $WORK/nginx/tmp; fastcgi_temp_path $WORK/nginx/tmp;
  uwsgi_temp_path $WORK/nginx/tmp; scgi_temp_path $WORK/nginx/tmp;
  default_type application/octet-stream;
  client_max_body_size 0;
  server { listen 127.0.0.1:$NPORT; root $WORK/nginx/www; }
  server { listen 127.0.0.1:$DPORT; root $WORK/nginx/dav;
           location / { dav_methods PUT; dav_access user:rw group:r all:r; } }
}
EOF
"$NGINX" -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx" -g 'daemon off;' &
pids+=($!)
wait_port "$NPORT"

# s3rver: the npm S3 look-alike (fixed credentials S3RVER/S3RVER).
SPORT=$(port)
node "$PEERS/node_modules/.bin/s3rver" -d "$WORK/s3rver" -a 127.0.0.1 -p "$SPORT" \
  --configure-bucket bench --silent >"$WORK/s3rver.log" 2>&1 &
pids+=($!)
wait_port "$SPORT"

results=$WORK/results.jsonl
measure() { # label op size clients objects extra...
  local label=$1 op=$2 size=$3 clients=$4 objects=$5; shift 5
  # Writers write every object at least once, so the GETs find them all.
  local min=$((clients * 2))
  [ "$op" = get ] || [ "$min" -ge "$objects" ] || min=$objects
  sync
  "$LOAD" --label "$label" --op "$op" --size "$size" --clients "$clients" \
    --objects "$objects" --duration "$DURATION" --min-requests "$min" \
    --bucket bench --json "$@" | tee -a "$results"
}

for size in 4K 64M; do
  objects=256; [ "$size" = 64M ] && objects=16
  for clients in 1 16; do
    measure walrus put "$size" "$clients" "$objects" --endpoint "http://127.0.0.1:$WPORT" --access-key "$AK" --secret "$SK"
    measure disk disk "$size" "$clients" "$objects" --dir "$WORK/nginx/www/bench"
    measure nginx put "$size" "$clients" "$objects" --endpoint "http://127.0.0.1:$DPORT" --access-key "$AK" --secret "$SK"
    measure s3rver put "$size" "$clients" "$objects" --endpoint "http://127.0.0.1:$SPORT" --access-key S3RVER --secret S3RVER
    measure walrus get "$size" "$clients" "$objects" --endpoint "http://127.0.0.1:$WPORT" --access-key "$AK" --secret "$SK"
    # nginx ignores the signature; the client does the same work for all.
    measure nginx get "$size" "$clients" "$objects" --endpoint "http://127.0.0.1:$NPORT" --access-key "$AK" --secret "$SK"
    measure s3rver get "$size" "$clients" "$objects" --endpoint "http://127.0.0.1:$SPORT" --access-key S3RVER --secret S3RVER
  done
done

# Versioning: PUT into a versioned bucket beside the unversioned ones above
# (each PUT keeps the version it replaces), then ListObjectVersions over
# 100 000 versions (100 keys x 1000 versions), paged 1000 at a time, beside
# ListObjectsV2 over 100 000 keys.
waws() { AWS_ACCESS_KEY_ID=$AK AWS_SECRET_ACCESS_KEY=$SK AWS_DEFAULT_REGION=us-east-1 \
  AWS_CONFIG_FILE=/dev/null /usr/bin/aws --endpoint-url "http://127.0.0.1:$WPORT" "$@"; }
waws s3api create-bucket --bucket benchv >/dev/null
waws s3api put-bucket-versioning --bucket benchv --versioning-configuration Status=Enabled
for clients in 1 16; do
  measure walrus-versioned put 4K "$clients" 256 --endpoint "http://127.0.0.1:$WPORT" --access-key "$AK" --secret "$SK" --bucket benchv
done
waws s3api create-bucket --bucket benchlv >/dev/null
waws s3api put-bucket-versioning --bucket benchlv --versioning-configuration Status=Enabled
waws s3api create-bucket --bucket benchlk >/dev/null
"$LOAD" --op put --size 1 --clients 16 --objects 100 --duration 0 --min-requests 100000 \
  --bucket benchlv --endpoint "http://127.0.0.1:$WPORT" --access-key "$AK" --secret "$SK" >/dev/null
"$LOAD" --op put --size 1 --clients 16 --objects 100000 --duration 0 --min-requests 100000 \
  --bucket benchlk --endpoint "http://127.0.0.1:$WPORT" --access-key "$AK" --secret "$SK" >/dev/null
# Policy evaluation: GET from a bucket with a 20-statement policy (19 that
# do not apply, with conditions, then the Allow) beside the plain bucket.
waws s3api create-bucket --bucket benchp >/dev/null
python3 - "$WORK/policy.json" <<'EOF'
import json, sys
st = [{"Sid": f"S{i}", "Effect": "Deny", "Principal": {"AWS": f"{i:012d}"},
       "Action": ["s3:GetObject", "s3:PutObject"],
       "Resource": f"arn:aws:s3:::benchp/other{i}/*",
       "Condition": {"IpAddress": {"aws:SourceIp": "10.0.0.0/8"},
                     "StringLike": {"s3:prefix": f"p{i}*"}}}
      for i in range(19)]
st.append({"Sid": "Bench", "Effect": "Allow", "Principal": "*",
           "Action": "s3:GetObject", "Resource": "arn:aws:s3:::benchp/*",
           "Condition": {"IpAddress": {"aws:SourceIp": "127.0.0.0/8"}}})
json.dump({"Version": "2012-10-17", "Statement": st}, open(sys.argv[1], "w"))
EOF
waws s3api put-bucket-policy --bucket benchp --policy "file://$WORK/policy.json"
for clients in 1 16; do
  measure walrus-policy put 4K "$clients" 256 --endpoint "http://127.0.0.1:$WPORT" --access-key "$AK" --secret "$SK" --bucket benchp
  measure walrus-policy get 4K "$clients" 256 --endpoint "http://127.0.0.1:$WPORT" --access-key "$AK" --secret "$SK" --bucket benchp
done

python3 - "http://127.0.0.1:$WPORT" "$AK" "$SK" "$results" <<'EOF'
import json, sys, time
import boto3, botocore.config
endpoint, ak, sk, out = sys.argv[1:]
s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                  aws_access_key_id=ak, aws_secret_access_key=sk,
                  config=botocore.config.Config(s3={"addressing_style": "path"}))
def timed(label, op, bucket, field):
    t0, n, pages = time.monotonic(), 0, 0
    for page in s3.get_paginator(op).paginate(Bucket=bucket):
        n += len(page.get(field, [])) + len(page.get("DeleteMarkers", []))
        pages += 1
    dt = time.monotonic() - t0
    row = {"label": label, "op": "list", "entries": n, "pages": pages,
           "seconds": dt, "ms_per_page": dt * 1000 / pages}
    print(json.dumps(row))
    open(out, "a").write(json.dumps(row) + "\n")
timed("walrus-list-versions", "list_object_versions", "benchlv", "Versions")
timed("walrus-list-objects-v2", "list_objects_v2", "benchlk", "Contents")
EOF

python3 - "$results" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
def find(label, op, size, clients):
    for r in rows:
        if (r["label"], r["op"], r["size"], r["clients"]) == (label, op, size, clients):
            return r
def fmt(r, key):
    return f"{r[key]:>9.1f}" if r else f"{'-':>9}"
def ratio(a, b, key):
    return f"{a[key] / b[key]:>6.2f}" if a and b and b[key] else f"{'-':>6}"
print()
print("walrus against its ceilings and a peer (4 KiB: operations/s, 64 MiB: MB/s)")
print(f"{'size':>6} {'cl':>3} {'op':>4} | {'walrus':>9} | {'nginx':>9} {'ratio':>6} | {'raw disk':>9} {'ratio':>6} | {'s3rver':>9} {'ratio':>6} | walrus p50/p99 ms")
for size in sorted({r["size"] for r in rows if "size" in r}):
    key = "ops" if size < 1 << 20 else "mbps"
    for clients in sorted({r["clients"] for r in rows if "size" in r}):
        for op in ("put", "get"):
            w = find("walrus", op, size, clients)
            n = find("nginx", op, size, clients)
            d = find("disk", "disk", size, clients) if op == "put" else None
            s = find("s3rver", op, size, clients)
            label = "4K" if size < 1 << 20 else f"{size >> 20}M"
            print(f"{label:>6} {clients:>3} {op:>4} | {fmt(w, key)} | {fmt(n, key)} {ratio(w, n, key)} |"
                  f" {fmt(d, key)} {ratio(w, d, key)} | {fmt(s, key)} {ratio(w, s, key)} |"
                  f" {w['p50_ms']:.2f}/{w['p99_ms']:.2f}")
print()
print("versioning (4 KiB PUT operations/s; listing: 1000 entries a page)")
for clients in sorted({r["clients"] for r in rows if r["label"] == "walrus-versioned"}):
    v = find("walrus-versioned", "put", 4096, clients)
    u = find("walrus", "put", 4096, clients)
    print(f"  PUT {clients:>2} clients: versioned {fmt(v, 'ops')} | unversioned {fmt(u, 'ops')} | ratio {ratio(v, u, 'ops')}")
print("policy evaluation (4 KiB GET operations/s, 20-statement policy beside none)")
for clients in sorted({r["clients"] for r in rows if r["label"] == "walrus-policy"}):
    p = find("walrus-policy", "get", 4096, clients)
    u = find("walrus", "get", 4096, clients)
    print(f"  GET {clients:>2} clients: with policy {fmt(p, 'ops')} | none {fmt(u, 'ops')} | ratio {ratio(p, u, 'ops')}")
for r in rows:
    if r.get("op") == "list":
        print(f"  {r['label']}: {r['entries']} entries, {r['pages']} pages, "
              f"{r['seconds']:.2f} s ({r['ms_per_page']:.1f} ms a page)")
print()
print("nginx: GET = sendfile of same-size files; PUT = WebDAV (receives over HTTP,")
print("       writes a file, no fsync, no checksum).  raw disk: write + fdatasync +")
print("       rename + directory fsync from memory, no network.  Walrus PUTs are")
print("       durable (fsync, metadata commit) and MD5-checked, as S3 requires.")
EOF
