#!/usr/bin/env bash
# galaxyd next to golang/groupcache, side by side on loopback: 3 galaxyd nodes, 3 gcnode
# nodes (../shared/peers/go-groupcache) and two floors (a bare 1 KiB responder on each
# side's HTTP stack), all with the same synthetic backend (1 KiB = sha256(key) in hex,
# repeated) and the same 64 MiB cache budget per node. wrk drives one node's client API
# of each system in turn (A B A B ...) for two workloads:
#   10k  keys k0..k9999, uniform: everything cached after the warm-up (hot)
#   100k keys k0..k99999, uniform: most gets are for keys another node owns, too many for
#        the entry node's hot cache, so they are peer fetches
# A second galaxyd cluster speaks gRPC between its nodes (system galaxyd-grpc; GRPC=0
# leaves it out), so the two peer protocols are compared in the same run; NOBATCH=1 adds
# one whose nodes send every peer fetch as a request of its own (galaxyd-nobatch).
# The entry node of each system is the one owning the share of the keys closest to 1/3.
# Prints, per workload and system, req/s and p99 of every round, the medians, the entry
# node's peer fetches per get, and the ratios galaxyd/groupcache and system/floor.
# Usage: benches/cluster/run.sh   (builds galaxyd in release first; see README.md here)
# Env:   DURATION (10s per run), ROUNDS (2), WARMUP (5s of random gets before measuring),
#        WRK_ARGS (-t2 -c32), WORKLOADS ("10000 100000"), BASE_PORT (default: a free
#        range is picked; 26 ports from it), GRPC (1: also galaxyd over gRPC),
#        NOBATCH (0; 1: also galaxyd without peer batching), GALAXYD (a built binary: skip cargo),
#        GCNODE_SRC (../shared/peers/go-groupcache), GALAXYD_ARGS / GCNODE_ARGS (extra
#        node flags), NO_FLOOR=1, KEEP=1 (keep the scratch dir with logs and results).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
HERE=$ROOT/benches/cluster
DURATION=${DURATION:-10s}
ROUNDS=${ROUNDS:-2}
WARMUP=${WARMUP:-5s}
WRK_ARGS=${WRK_ARGS:--t2 -c32}
WORKLOADS=${WORKLOADS:-10000 100000}
GCNODE_SRC=${GCNODE_SRC:-$ROOT/../shared/peers/go-groupcache}
CACHE_MIB=64
VALUE_SIZE=1024
PASS_LIMIT=300 # seconds: the most one warm-up pass over all keys may take
GRPC=${GRPC:-1}
NOBATCH=${NOBATCH:-0}

PIDS=()  # the nodes and floors
CHILD="" # the build or wrk run being waited for
SCRATCH=$(mktemp -d "${TMPDIR:-/tmp}/galaxycache-cluster.XXXXXX")
# The traps may run while a child's output is redirected: they write to fds 3 and 4.
exec 3>&1 4>&2
cleanup() {
  local p alive
  if [ -n "$CHILD" ]; then kill "$CHILD" 2>/dev/null || true; fi
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for _ in $(seq 1 50); do
    alive=()
    for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive+=("$p"); done
    [ "${#alive[@]}" = 0 ] && break
    sleep 0.1
  done
  for p in "${alive[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  if [ "${KEEP:-0}" = 1 ]; then echo "logs and results kept in $SCRATCH" >&3; else rm -rf "$SCRATCH"; fi
}
trap cleanup EXIT
trap 'echo "interrupted" >&4; exit 130' INT TERM

say() { printf '== %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Runs a command in the background and waits for it, so Ctrl-C or SIGTERM stops the
# script (and, through cleanup, the command) at once instead of after the command.
run_child() {
  "$@" &
  CHILD=$!
  local rc=0
  wait "$CHILD" || rc=$?
  CHILD=""
  return "$rc"
}

# --- tools ---------------------------------------------------------------------------
missing=()
for tool in wrk curl python3; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if [ "${#missing[@]}" -gt 0 ]; then
  die "missing: ${missing[*]}. On Debian: sudo apt-get install -y wrk curl python3"
fi
GO_OK=1
if ! command -v go >/dev/null; then
  GO_OK=0; GO_WHY="go is not installed"
elif [ ! -d /usr/share/gocode/src/github.com/golang/groupcache ]; then
  GO_OK=0; GO_WHY="golang/groupcache sources are not in /usr/share/gocode"
elif [ ! -f "$GCNODE_SRC/main.go" ]; then
  GO_OK=0; GO_WHY="no gcnode sources at $GCNODE_SRC (set GCNODE_SRC)"
fi

# --- builds --------------------------------------------------------------------------
FLOOR_RS=""
if [ -z "${GALAXYD:-}" ] || [ "${NO_FLOOR:-0}" != 1 ]; then
  command -v cargo >/dev/null || die "cargo is missing (or set GALAXYD=path and NO_FLOOR=1)"
  say "cargo build --release -p galaxyd --bin galaxyd --example cluster_floor"
  run_child cargo build -q --release -p galaxyd --bin galaxyd --example cluster_floor
  TARGET=$(cargo metadata -q --format-version 1 --no-deps |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
  GALAXYD=${GALAXYD:-$TARGET/release/galaxyd}
  [ "${NO_FLOOR:-0}" = 1 ] || FLOOR_RS=$TARGET/release/examples/cluster_floor
fi
[ -x "$GALAXYD" ] || die "no galaxyd binary at $GALAXYD"

FLOOR_GO=""
if [ "$GO_OK" = 1 ]; then
  say "go build gcnode from $GCNODE_SRC into $SCRATCH"
  export GO111MODULE=off GOFLAGS= GOPATH=/usr/share/gocode:${HOME:-/tmp}/go
  GOCACHE=${GOCACHE:-$(go env GOCACHE 2>/dev/null || true)}
  case $GOCACHE in "" | off) GOCACHE=$SCRATCH/gocache ;; esac
  export GOCACHE
  if run_child timeout 300 sh -c 'cd "$1" && exec go build -o "$2" .' sh "$GCNODE_SRC" "$SCRATCH/gcnode" >"$SCRATCH/go-build.log" 2>&1; then
    if [ "${NO_FLOOR:-0}" != 1 ] &&
      run_child timeout 120 go build -o "$SCRATCH/floor-go" "$HERE/floor.go" >>"$SCRATCH/go-build.log" 2>&1; then
      FLOOR_GO=$SCRATCH/floor-go
    fi
  else
    GO_OK=0; GO_WHY="go build failed: $(tail -3 "$SCRATCH/go-build.log")"
  fi
fi
if [ "$GO_OK" = 0 ]; then
  echo "NOTE: golang/groupcache is not measured ($GO_WHY)." >&2
  echo "      On Debian: sudo apt-get install -y golang-go golang-github-golang-groupcache-dev" >&2
  echo "      Running galaxyd (and its floor) only." >&2
fi

# --- ports ---------------------------------------------------------------------------
NPORTS=26
ports_free() {
  python3 - "$1" "$NPORTS" <<'EOF'
import socket, sys
base, n = int(sys.argv[1]), int(sys.argv[2])
for port in range(base, base + n):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        sys.exit(1)
    finally:
        s.close()
EOF
}
gd_peer() { echo $((BASE_PORT + $1 - 1)); }  # galaxyd node i: peer port
gd_api() { echo $((BASE_PORT + 2 + $1)); }   #                  client API
gc_peer() { echo $((BASE_PORT + 5 + $1)); }  # gcnode node i
gc_api() { echo $((BASE_PORT + 8 + $1)); }
gg_peer() { echo $((BASE_PORT + 13 + $1)); } # galaxyd over gRPC, node i: peer port
gg_api() { echo $((BASE_PORT + 16 + $1)); }  #                             client API
gn_peer() { echo $((BASE_PORT + 19 + $1)); } # galaxyd without batching, node i: peer port
gn_api() { echo $((BASE_PORT + 22 + $1)); }  #                                   client API
peer_list() { # SYSTEM -> the peer URLs, comma-separated
  local i out=""
  for i in 1 2 3; do
    case $1 in
      galaxyd) out+="http://127.0.0.1:$(gd_peer $i)," ;;
      galaxyd-grpc) out+="http://127.0.0.1:$(gg_peer $i)," ;;
      galaxyd-nobatch) out+="http://127.0.0.1:$(gn_peer $i)," ;;
      *) out+="http://127.0.0.1:$(gc_peer $i)," ;;
    esac
  done
  echo "${out%,}"
}
# The entry node of SYSTEM for keys k0..k<KEYS-1>: the node whose share of the keys is
# closest to 1/3, so both systems fetch about the same share from peers (the ring is
# groupcache's in both, so `galaxyd owner` answers for either, but the shares differ with
# the peer URLs). Prints "NODE SHARE".
entry_node() { # SYSTEM KEYS
  local peers
  peers=$(peer_list "$1")
  seq 0 $(($2 - 1)) | sed 's/^/k/' | "$GALAXYD" owner --peers "$peers" | awk -v peers="$peers" '
    { n[$2]++ }
    END {
      split(peers, p, ","); best = 0
      for (i = 1; i <= 3; i++) {
        d = n[p[i]] / NR - 1 / 3; if (d < 0) d = -d
        if (best == 0 || d < bestd) { best = i; bestd = d }
      }
      printf "%d %.3f\n", best, n[p[best]] / NR
    }'
}
# True when, in every workload, each system has a node owning 1/3 +- 0.03 of the keys:
# then both entry nodes fetch about the same share of their gets from peers.
balanced() {
  local keys sys node share systems=(galaxyd)
  if [ "$GO_OK" = 1 ]; then systems+=(groupcache); fi
  if [ "$GRPC" = 1 ]; then systems+=(galaxyd-grpc); fi
  if [ "$NOBATCH" = 1 ]; then systems+=(galaxyd-nobatch); fi
  for keys in $WORKLOADS; do
    for sys in "${systems[@]}"; do
      read -r node share <<<"$(entry_node "$sys" "$keys")"
      awk -v s="$share" 'BEGIN { exit !(s > 0.303 && s < 0.364) }' || return 1
    done
  done
}
if [ -n "${BASE_PORT:-}" ]; then
  ports_free "$BASE_PORT" || die "a port in $BASE_PORT..$((BASE_PORT + NPORTS - 1)) is in use"
else
  fallback=""
  for _ in $(seq 1 50); do
    BASE_PORT=$((20000 + RANDOM % 600 * 20)) # below the usual ephemeral range
    if ports_free "$BASE_PORT"; then
      fallback=${fallback:-$BASE_PORT}
      balanced && break
    fi
    BASE_PORT=""
  done
  if [ -z "$BASE_PORT" ]; then
    BASE_PORT=$fallback
    [ -n "$BASE_PORT" ] || die "no free port range found; set BASE_PORT"
    echo "NOTE: no port range found where both entry nodes own about 1/3 of the keys" >&2
  fi
fi
FLOOR_RS_PORT=$((BASE_PORT + 12))
FLOOR_GO_PORT=$((BASE_PORT + 13))

# --- nodes ---------------------------------------------------------------------------
wait_up() { # URL NAME
  for _ in $(seq 1 200); do
    curl -sf -o /dev/null "$1" && return 0
    sleep 0.05
  done
  die "$2 did not answer $1 within 10 s (logs: KEEP=1)"
}

start_galaxyd() { # SYSTEM PEER_PORT_FN API_PORT_FN EXTRA_FLAGS...
  local sys=$1 peer_port=$2 api_port=$3 peers i
  shift 3
  peers=$(peer_list "$sys")
  for i in 1 2 3; do
    # shellcheck disable=SC2086 # GALAXYD_ARGS is a list of flags
    "$GALAXYD" serve --self "http://127.0.0.1:$($peer_port $i)" --peers "$peers" \
      --listen "127.0.0.1:$($api_port $i)" --galaxy bench --cache-bytes "${CACHE_MIB}MiB" \
      --backend synthetic --value-size "$VALUE_SIZE" --drain 0s "$@" ${GALAXYD_ARGS:-} \
      >"$SCRATCH/$sys-$i.log" 2>&1 &
    PIDS+=($!)
  done
  for i in 1 2 3; do wait_up "http://127.0.0.1:$($api_port $i)/healthz" "$sys node $i"; done
  SYSTEMS+=("$sys")
}
SYSTEMS=()
start_galaxyd galaxyd gd_peer gd_api

if [ "$GO_OK" = 1 ]; then
  GC_PEERS=$(peer_list groupcache)
  for i in 1 2 3; do
    # shellcheck disable=SC2086
    "$SCRATCH/gcnode" -self "http://127.0.0.1:$(gc_peer $i)" -peers "$GC_PEERS" \
      -api "127.0.0.1:$(gc_api $i)" -cache-bytes $((CACHE_MIB << 20)) -value-size "$VALUE_SIZE" \
      ${GCNODE_ARGS:-} >"$SCRATCH/gcnode-$i.log" 2>&1 &
    PIDS+=($!)
  done
  for i in 1 2 3; do wait_up "http://127.0.0.1:$(gc_api $i)/stats" "gcnode node $i"; done
  SYSTEMS+=(groupcache)
fi
if [ "$GRPC" = 1 ]; then start_galaxyd galaxyd-grpc gg_peer gg_api --protocol grpc; fi
if [ "$NOBATCH" = 1 ]; then start_galaxyd galaxyd-nobatch gn_peer gn_api --peer-batching false; fi
if [ -n "$FLOOR_RS" ]; then
  "$FLOOR_RS" "127.0.0.1:$FLOOR_RS_PORT" "$VALUE_SIZE" >"$SCRATCH/floor-rs.log" 2>&1 &
  PIDS+=($!)
  wait_up "http://127.0.0.1:$FLOOR_RS_PORT/" "floor-rs"
  SYSTEMS+=(floor-rs)
fi
if [ -n "$FLOOR_GO" ]; then
  "$FLOOR_GO" -addr "127.0.0.1:$FLOOR_GO_PORT" -size "$VALUE_SIZE" >"$SCRATCH/floor-go.log" 2>&1 &
  PIDS+=($!)
  wait_up "http://127.0.0.1:$FLOOR_GO_PORT/" "floor-go"
  SYSTEMS+=(floor-go)
fi
say "ports 127.0.0.1:$BASE_PORT..$((BASE_PORT + NPORTS - 1)); systems: ${SYSTEMS[*]}"

# --- measuring -----------------------------------------------------------------------
declare -A ENTRY=([galaxyd]=1 [groupcache]=1 [galaxyd-grpc]=1 [galaxyd-nobatch]=1)
url_of() {
  case $1 in
    galaxyd) echo "http://127.0.0.1:$(gd_api "${ENTRY[galaxyd]}")" ;;
    galaxyd-grpc) echo "http://127.0.0.1:$(gg_api "${ENTRY[galaxyd-grpc]}")" ;;
    galaxyd-nobatch) echo "http://127.0.0.1:$(gn_api "${ENTRY[galaxyd-nobatch]}")" ;;
    groupcache) echo "http://127.0.0.1:$(gc_api "${ENTRY[groupcache]}")" ;;
    floor-rs) echo "http://127.0.0.1:$FLOOR_RS_PORT" ;;
    floor-go) echo "http://127.0.0.1:$FLOOR_GO_PORT" ;;
  esac
}
path_of() {
  case $1 in
    galaxyd*) echo "/v1/galaxies/bench/keys/k" ;;
    *) echo "/get?key=k" ;;
  esac
}
# "GETS PEER_FETCHES PEER_REQUESTS" of the entry node so far (nothing for a floor). A
# galaxyd batch carries many fetches in one request (its /v1/peers counts them);
# groupcache sends one request per fetch.
entry_counts() {
  case $1 in
    galaxyd*)
      local gets peers
      gets=$(curl -sf "$(url_of "$1")/v1/stats" | python3 -c '
import json, sys; g = json.load(sys.stdin)["galaxies"]["bench"]; print(g["gets"], g["peer_loads"])')
      peers=$(curl -sf "$(url_of "$1")/v1/peers" | python3 -c '
import json, sys; print(sum(p.get("fetch_requests", 0) for p in json.load(sys.stdin)["peers"]))')
      echo "$gets $peers" ;;
    groupcache) curl -sf "$(url_of groupcache)/stats" | python3 -c '
import json, sys; g = json.load(sys.stdin)["group_stats"]; print(g["Gets"], g["PeerLoads"], g["PeerLoads"])' ;;
    *) echo "0 0 0" ;;
  esac
}
# Gets every key once through the entry node, 16 at a time, and checks that all were answered 200.
warm_pass() { # SYSTEM KEYS
  local start=$SECONDS
  run_child timeout "$PASS_LIMIT" curl -s --no-progress-meter --parallel --parallel-max 16 \
    -o /dev/null -w '%{http_code}\n' "$(url_of "$1")$(path_of "$1")[0-$(($2 - 1))]" \
    >"$SCRATCH/pass.txt" 2>&1 || true
  local ok
  ok=$(grep -c '^200$' "$SCRATCH/pass.txt" || true)
  [ "$ok" = "$2" ] || die "warm-up of $1: $ok of $2 keys answered 200 within ${PASS_LIMIT}s"
  printf '   %-10s every key once: %s x 200 in %ss\n' "$1" "$ok" $((SECONDS - start))
}
wrk_run() { # SYSTEM KEYS DURATION -> wrk's output in $SCRATCH/last.txt
  local secs=${3%s}
  # shellcheck disable=SC2086 # WRK_ARGS is a list of flags
  KEY_PATH=$(path_of "$1") KEYS=$2 run_child \
    timeout $((secs + 30)) wrk $WRK_ARGS -d "$3" --timeout 5s -s "$HERE/keys.lua" "$(url_of "$1")" \
    >"$SCRATCH/last.txt" 2>&1 || { cat "$SCRATCH/last.txt" >&2; die "wrk failed on $1"; }
  grep -q '^RESULT ' "$SCRATCH/last.txt" || { cat "$SCRATCH/last.txt" >&2; die "no result from wrk on $1"; }
}
result_field() { sed -n "s/^RESULT .*$1=\([^ ]*\).*/\1/p" "$SCRATCH/last.txt"; }

RESULTS=$SCRATCH/results.tsv # workload system round rps p50 p99 errors "gets peer_fetches peer_requests"
SHARES=$SCRATCH/shares.tsv   # workload system "node N: share of the keys it owns"
: >"$RESULTS"
: >"$SHARES"
for keys in $WORKLOADS; do
  say "workload: $keys keys, uniform; warm-up"
  for sys in "${SYSTEMS[@]}"; do
    if [ "$sys" != floor-rs ] && [ "$sys" != floor-go ]; then
      read -r node share <<<"$(entry_node "$sys" "$keys")"
      ENTRY[$sys]=$node
      printf '%s\t%s\t%s\n' "$keys" "$sys" "node $node: $share" >>"$SHARES"
      warm_pass "$sys" "$keys"
    fi
    wrk_run "$sys" "$keys" "$WARMUP"
    printf '   %-10s %s of random gets: %.0f req/s\n' "$sys" "$WARMUP" "$(result_field rps)"
  done
  for round in $(seq 1 "$ROUNDS"); do
    for sys in "${SYSTEMS[@]}"; do
      read -r gets0 peer0 req0 <<<"$(entry_counts "$sys")"
      wrk_run "$sys" "$keys" "$DURATION"
      read -r gets1 peer1 req1 <<<"$(entry_counts "$sys")"
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$keys" "$sys" "$round" "$(result_field rps)" \
        "$(result_field p50_ms)" "$(result_field p99_ms)" "$(result_field errors)" \
        "$((gets1 - gets0)) $((peer1 - peer0)) $((req1 - req0))" >>"$RESULTS"
      printf '   round %s %-10s %8.0f req/s  p99 %s ms\n' "$round" "$sys" \
        "$(result_field rps)" "$(result_field p99_ms)"
    done
  done
done

echo
say "results: wrk $WRK_ARGS -d $DURATION on the entry node's client API, $VALUE_SIZE-byte values, ${CACHE_MIB} MiB per node"
python3 - "$RESULTS" "$SHARES" <<'EOF'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
shares = {(w, s): v for w, s, v in (l.rstrip("\n").split("\t") for l in open(sys.argv[2]) if l.strip())}
workloads = list(dict.fromkeys(r[0] for r in rows))
systems = list(dict.fromkeys(r[1] for r in rows))
def cell(rps, p99): return "%s / %.2f ms" % (f"{rps:,.0f}", p99)
for w in workloads:
    label = {"10000": "10k keys (hot)", "100000": "100k keys (peer-fetch heavy)"}.get(w, w + " keys")
    print(f"\n{label}   cells: req/s / p99")
    med = {}
    rounds = max(int(r[2]) for r in rows if r[0] == w)
    head = ["system"] + [f"round {i}" for i in range(1, rounds + 1)] + ["median", "errors", "entry node owns", "peer fetch/get", "peer req/get"]
    table = [head]
    for s in systems:
        rs = [r for r in rows if r[0] == w and r[1] == s]
        if not rs:
            continue
        rps = [float(r[3]) for r in rs]; p99 = [float(r[5]) for r in rs]
        med[s] = (statistics.median(rps), statistics.median(p99))
        gets = sum(int(r[7].split()[0]) for r in rs); peer = sum(int(r[7].split()[1]) for r in rs)
        reqs = sum(int(r[7].split()[2]) for r in rs)
        table.append([s] + [cell(a, b) for a, b in zip(rps, p99)] + [cell(*med[s]),
                     str(sum(int(r[6]) for r in rs)), shares.get((w, s), "-"),
                     f"{peer / gets:.3f}" if gets else "-", f"{reqs / gets:.3f}" if gets else "-"])
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    for row in table:
        print("  " + "  ".join(c.ljust(widths[i]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(row)))
    def ratio(a, b):
        if a in med and b in med:
            print(f"  {a} / {b}: req/s x{med[a][0] / med[b][0]:.2f}, p99 x{med[a][1] / med[b][1]:.2f}")
    ratio("galaxyd", "groupcache")
    ratio("galaxyd-grpc", "galaxyd")
    ratio("galaxyd", "galaxyd-nobatch")
    ratio("galaxyd-nobatch", "groupcache")
    ratio("galaxyd-grpc", "groupcache")
    ratio("galaxyd", "floor-rs")
    ratio("groupcache", "floor-go")
    ratio("floor-rs", "floor-go")
EOF
if [ "$GO_OK" = 0 ]; then echo; echo "NOTE: groupcache was not measured ($GO_WHY)."; fi
