#!/usr/bin/env bash
# A peer stopped with SIGSTOP (it accepts connections and never answers): gets through
# another node, before the stop, while it is stopped (its circuit opens after the first
# peer timeout), and after SIGCONT. Three galaxyd nodes on loopback, hotcache off, so
# every get of the stopped peer's keys would have to ask it.
# Usage: benches/scripts/sigstop.sh   (builds galaxyd in release first)
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build -q --release -p galaxyd
B=${GALAXYD:-target/release/galaxyd}
PEERS=http://127.0.0.1:19411,http://127.0.0.1:19412,http://127.0.0.1:19413
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill -CONT "$p" 2>/dev/null || true; kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
for i in 1 2 3; do
  $B serve --self http://127.0.0.1:1941$i --peers $PEERS --listen 127.0.0.1:1842$i \
    --galaxy g --hot-ratio 0 --peer-timeout 1s >/dev/null 2>&1 &
  PIDS+=($!)
done
for i in 1 2 3; do
  for _ in $(seq 1 200); do curl -sf http://127.0.0.1:1842$i/healthz >/dev/null && break; sleep 0.05; done
done
bench() {
  printf '%-34s ' "$1"
  $B bench --targets http://127.0.0.1:18421 --galaxy g --keys 3000 --dist uniform \
    --concurrency 8 --duration "$2" --json | python3 -c '
import json, sys
d = json.load(sys.stdin); l = d["latency_ms"]
print("req/s %.0f  p50 %s  p99 %s  p99.9 %s  max %s ms  errors %d" % (
    d["requests_per_second"], l["p50"], l["p99"], l["p999"], l["max"], d["errors"]))'
}
bench "all peers up" 5s
kill -STOP "${PIDS[2]}"
bench "peer 3 stopped (first 10 s)" 10s
curl -s http://127.0.0.1:18421/v1/peers; echo
kill -CONT "${PIDS[2]}"
bench "peer 3 continued" 5s
curl -s http://127.0.0.1:18421/v1/peers; echo
