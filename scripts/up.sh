#!/usr/bin/env bash
# scripts/up.sh: installs what is missing, builds, and starts an all-in-one
# Koala on this host (today: Walrus, the S3 service), then prints the
# endpoint and credentials.  Data lives in $KOALA_HOME (default ./.koala).
# Stop it with: scripts/down.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
bash scripts/build.sh release

HOME_DIR="${KOALA_HOME:-$PWD/.koala}"
PORT="${KOALA_S3_PORT:-8773}"
mkdir -p "$HOME_DIR/walrus"
pidfile="$HOME_DIR/walrus.pid"
if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
  echo "walrus already running (pid $(cat "$pidfile"))"
else
  nohup build/src/walrus/koala-walrus --listen "127.0.0.1:$PORT" \
    --data-dir "$HOME_DIR/walrus" >"$HOME_DIR/walrus.log" 2>&1 &
  echo $! >"$pidfile"
  for _ in $(seq 50); do
    (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
    sleep 0.1
  done
fi
creds="$HOME_DIR/credentials"
if [ ! -s "$creds" ]; then
  build/src/cli/koala walrus add-user admin --data-dir "$HOME_DIR/walrus" >"$creds"
  chmod 600 "$creds"
fi
# shellcheck disable=SC1090
. "$creds"
cat <<EOT
Koala is up.
  S3 (Walrus):  http://127.0.0.1:$PORT   (log: $HOME_DIR/walrus.log)
  credentials:  $creds
Use it with aws-cli:
  export AWS_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID
  export AWS_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY
  export AWS_DEFAULT_REGION=us-east-1
  aws --endpoint-url http://127.0.0.1:$PORT s3 mb s3://my-bucket
EOT
