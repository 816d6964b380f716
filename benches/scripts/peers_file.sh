#!/usr/bin/env bash
# How long a peer-file change takes to reach every node: three galaxyd nodes follow one
# --peers-file (polled every second, the default); the file gains a fourth URL, then
# SIGHUP makes them re-read it at once. Prints the time until all three list it.
# Usage: benches/scripts/peers_file.sh   (builds galaxyd in release first)
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build -q --release -p galaxyd
B=${GALAXYD:-target/release/galaxyd}
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
printf 'http://127.0.0.1:19511\nhttp://127.0.0.1:19512\nhttp://127.0.0.1:19513\n' >"$WORK/peers"
for i in 1 2 3; do
  $B serve --self http://127.0.0.1:1951$i --peers-file "$WORK/peers" --listen 127.0.0.1:1852$i \
    --galaxy g >/dev/null 2>&1 &
  PIDS+=($!)
done
for i in 1 2 3; do
  for _ in $(seq 1 200); do curl -sf http://127.0.0.1:1852$i/healthz >/dev/null && break; sleep 0.05; done
done
until_all_list() {
  local url=$1 start
  start=$(date +%s%N)
  for _ in $(seq 1 2000); do
    local n=0
    for i in 1 2 3; do
      curl -s http://127.0.0.1:1852$i/v1/stats | grep -q "$url" && n=$((n + 1))
    done
    if [ "$n" = 3 ]; then
      echo "$(( ($(date +%s%N) - start) / 1000000 )) ms"
      return
    fi
  done
  echo "not reached"
}
echo "http://127.0.0.1:19514" >>"$WORK/peers"
printf 'file change, polled:   '; until_all_list 19514
echo "http://127.0.0.1:19515" >>"$WORK/peers"
kill -HUP "${PIDS[@]}"
printf 'file change + SIGHUP:  '; until_all_list 19515
