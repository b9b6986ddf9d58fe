#!/usr/bin/env bash
# scripts/down.sh: stops what scripts/up.sh started (by its recorded PID).
set -euo pipefail
cd "$(dirname "$0")/.."
HOME_DIR="${KOALA_HOME:-$PWD/.koala}"
pidfile="$HOME_DIR/walrus.pid"
if [ -f "$pidfile" ]; then
  pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -f "$pidfile"
  echo "walrus stopped"
fi
