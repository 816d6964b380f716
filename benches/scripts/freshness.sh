#!/usr/bin/env bash
# Freshness figures, measured side by side (A B A B) on loopback with galaxyd:
#  1. gets across refresh points: a 50 ms backend, values expiring after 2 s, with and
#     without --refresh-after 50%;
#  2. a hot missing key: backend queries per second with and without --not-found-ttl.
# Usage: benches/scripts/freshness.sh   (builds galaxyd in release first)
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build -q --release -p galaxyd
B=target/release/galaxyd
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

wait_ready() {
  for _ in $(seq 1 200); do
    curl -sf "http://127.0.0.1:$1/healthz" >/dev/null && return 0
    sleep 0.05
  done
  echo "node on port $1 did not start" >&2
  return 1
}

summary() {
  python3 -c '
import json, sys
d = json.load(sys.stdin)
l = d["latency_ms"]
print("req/s %.0f  p50 %s  p99 %s  p99.9 %s  max %s ms  errors %s  backend loads %s" % (
    d["requests_per_second"], l["p50"], l["p99"], l["p999"], l["max"], d["errors"], d["backend_loads"]))'
}

refresh_run() {
  local label=$1; shift
  $B serve --self http://127.0.0.1:19301 --listen 127.0.0.1:18301 --galaxy g \
    --backend synthetic --backend-delay 50ms --max-ttl 2s "$@" >"$WORK/node.log" 2>&1 &
  local pid=$!
  wait_ready 18301
  printf '%-26s ' "$label"
  $B bench --targets http://127.0.0.1:18301 --galaxy g --keys 200 --dist uniform \
    --concurrency 8 --warmup 3s --duration 8s --json | summary
  kill "$pid"; wait "$pid" 2>/dev/null || true
}

missing_run() {
  local label=$1; shift
  $B serve --self http://127.0.0.1:19302 --listen 127.0.0.1:18302 --galaxy g \
    --backend "sqlite:$WORK/empty.db" "$@" >"$WORK/node.log" 2>&1 &
  local pid=$!
  wait_ready 18302
  printf '%-26s ' "$label"
  $B bench --targets http://127.0.0.1:18302 --galaxy g --keys 1 --dist uniform \
    --concurrency 8 --duration 5s --json | python3 -c '
import json, sys
d = json.load(sys.stdin)
print("gets %d (all not found: %s)  backend queries %d = %.1f/s" % (
    d["requests"], d["not_found"] == d["requests"], d["backend_loads"], d["backend_loads"] / d["seconds"]))'
  kill "$pid"; wait "$pid" 2>/dev/null || true
}

echo "== gets across refresh points (50 ms backend, 2 s TTL, 200 keys, 8 connections)"
for _ in 1 2; do
  refresh_run "no refresh"
  refresh_run "--refresh-after 50%" --refresh-after 50%
done

python3 -c "import sqlite3; sqlite3.connect('$WORK/empty.db').execute('CREATE TABLE kv (key TEXT PRIMARY KEY, value BLOB)')"
echo "== one hot missing key (SQLite, 8 connections, 5 s)"
for _ in 1 2; do
  missing_run "no cached misses"
  missing_run "--not-found-ttl 10s" --not-found-ttl 10s
done
