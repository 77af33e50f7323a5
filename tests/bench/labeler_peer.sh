#!/usr/bin/env bash
# The labeler against a peer labeler on the same box (issue 13 §6): a release `atmos serve` and
# npm @skyware/labeler 0.2.0 (tests/bench/node), both holding the same LABELS labels, the same
# clients against each in turn:
#  1. subscribeLabels replay: SUBSCRIBERS clients from cursor 0 at once (labelbench);
#  2. queryLabels with wrk: a prefix pattern matching 1,000 labels (limit 50) and one DID;
#  3. each server's health route, as the HTTP stack's own ceiling.
# atmos's live fan-out (labels published through its admin API) runs first, as in labels.sh;
# the peer has no publishing route without a PLC identity, so live fan-out is not compared.
#
# usage: tests/bench/labeler_peer.sh [SUBSCRIBERS] [LABELS] [SECONDS]   (root; wrk, node, npm)
set -euo pipefail
SUBSCRIBERS=${1:-100}
LABELS=${2:-2000}
SECONDS_RUN=${3:-10}
command -v wrk >/dev/null || { echo "wrk is required (apt-get install wrk)" >&2; exit 1; }
HERE=$(cd "$(dirname "$0")" && pwd)
[ -d "$HERE/node/node_modules/@skyware/labeler" ] || (cd "$HERE/node" && npm ci --no-audit --no-fund >&2)
export ADMIN_TOKEN=bench-admin-token-$RANDOM$RANDOM
(cd "$HERE/../.." && cargo build --release -q -p atmos-tests --bin labelbench)
source "$HERE/lib.sh"
LABELBENCH=$ROOT/target/release/labelbench

echo "atmos: live fan-out and replay, $SUBSCRIBERS subscribers, $LABELS labels..." >&2
"$LABELBENCH" --http "$ATMOS_HTTP" --subscribers "$SUBSCRIBERS" --labels "$LABELS" | tee "$WORK/atmos-fanout.json"

PEER_PORT=$(free_port)
echo "peer: loading $LABELS labels into @skyware/labeler..." >&2
(cd "$HERE/node" && exec node skyware.mjs "$PEER_PORT" "$WORK/skyware.db" "$LABELS") > "$WORK/peer.out" 2> "$WORK/peer.err" & PEER_PID=$!; PIDS+=($PEER_PID)
for _ in $(seq 600); do grep -q listening "$WORK/peer.out" 2>/dev/null && break; sleep 0.1; done
grep -q listening "$WORK/peer.out" || { cat "$WORK/peer.err" >&2; echo "the peer labeler never listened" >&2; exit 1; }
cat "$WORK/peer.out"
PEER_HTTP=127.0.0.1:$PEER_PORT
"$LABELBENCH" --http "$PEER_HTTP" --subscribers "$SUBSCRIBERS" --labels "$LABELS" --replay-only | tee "$WORK/peer-fanout.json"

# name URL: wrk with the settings of labels.sh; prints requests/s, p50, p99.
bench() {
  wrk -t2 -c20 -d"${SECONDS_RUN}s" --latency "$2" > "$WORK/$1.txt"
  awk -v n="$1" '/Requests\/sec/ {r=$2} / 50%/ {p50=$2} / 99%/ {p99=$2} /Non-2xx/ {bad=$5} END {printf "%-22s %10s req/s  p50 %8s  p99 %8s%s\n", n, r, p50, p99, (bad ? "  NON-2xx: " bad : "")}' "$WORK/$1.txt"
  grep -q "Non-2xx" "$WORK/$1.txt" && { echo "$1: some answers were not 2xx" >&2; exit 1; } || true
}
PREFIX="uriPatterns=did:plc:bench0000000000000001*&limit=50"
ONE="uriPatterns=did:plc:bench0000000000000001234"
Q=xrpc/com.atproto.label.queryLabels
for who in atmos peer; do
  if [ $who = atmos ]; then H=$ATMOS_HTTP; HEALTH=healthz; else H=$PEER_HTTP; HEALTH=xrpc/_health; fi
  # Same answers from both before timing them.
  n=$(curl -sf "http://$H/$Q?$PREFIX" | python3 -c 'import json,sys;print(len(json.load(sys.stdin)["labels"]))')
  [ "$n" = 50 ] || { echo "$who: prefix query answered $n labels, not 50" >&2; exit 1; }
  bench "$who-prefix" "http://$H/$Q?$PREFIX"
  bench "$who-one" "http://$H/$Q?$ONE"
  bench "$who-health" "http://$H/$HEALTH"
done
rps() { awk '/Requests\/sec/ {print $2}' "$WORK/$1.txt"; }
ratio() { python3 -c "print(round($1/$2, 2))"; }
field() { python3 -c 'import json,sys;print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$@"; }
echo "ratios atmos/peer: queryLabels prefix $(ratio "$(rps atmos-prefix)" "$(rps peer-prefix)")x, one DID $(ratio "$(rps atmos-one)" "$(rps peer-one)")x, health $(ratio "$(rps atmos-health)" "$(rps peer-health)")x, subscribeLabels replay $(ratio "$(field "$WORK/atmos-fanout.json" replay_events_per_s)" "$(field "$WORK/peer-fanout.json" replay_events_per_s)")x"
echo "peak RSS: atmos $(peak_rss_kb /proc/$ATMOS_PID/status) kB, peer $(peak_rss_kb /proc/$PEER_PID/status) kB"
