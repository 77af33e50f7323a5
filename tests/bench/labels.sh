#!/usr/bin/env bash
# Labeler benchmarks on a release `atmos serve`:
#  1. subscribeLabels fan-out (tests/src/bin/labelbench.rs): SUBSCRIBERS clients, LABELS labels
#     published live through the admin API, then everyone replaying from cursor 0 at once;
#  2. queryLabels requests/s with wrk over the labels just published, beside /healthz (the HTTP
#     stack's ceiling on this machine) in the same run.
#
# usage: tests/bench/labels.sh [SUBSCRIBERS] [LABELS] [SECONDS]   (run as root; docs/benchmarks.md)
set -euo pipefail
SUBSCRIBERS=${1:-100}
LABELS=${2:-2000}
SECONDS_RUN=${3:-10}
command -v wrk >/dev/null || { echo "wrk is required (apt-get install wrk)" >&2; exit 1; }
export ADMIN_TOKEN=bench-admin-token-$RANDOM$RANDOM
(cd "$(dirname "$0")/../.." && cargo build --release -q -p atmos-tests --bin labelbench)
source "$(dirname "$0")/lib.sh"
echo "fan-out: $SUBSCRIBERS subscribers, $LABELS labels..." >&2
"$ROOT/target/release/labelbench" --http "$ATMOS_HTTP" --subscribers "$SUBSCRIBERS" --labels "$LABELS" | tee "$WORK/fanout.json"
Q="http://$ATMOS_HTTP/xrpc/com.atproto.label.queryLabels?uriPatterns=did:plc:bench0000000000000001*&limit=50"
echo "wrk: queryLabels (prefix pattern matching 1000 labels, 50 per answer), ${SECONDS_RUN}s, 20 connections" >&2
wrk -t2 -c20 -d"${SECONDS_RUN}s" --latency "$Q" | tee "$WORK/query.txt"
E="http://$ATMOS_HTTP/xrpc/com.atproto.label.queryLabels?uriPatterns=did:plc:bench0000000000000001234"
echo "wrk: queryLabels (one DID, the common lookup), ${SECONDS_RUN}s, 20 connections" >&2
wrk -t2 -c20 -d"${SECONDS_RUN}s" --latency "$E" | tee "$WORK/exact.txt"
echo "wrk: /healthz, same settings" >&2
wrk -t2 -c20 -d"${SECONDS_RUN}s" --latency "http://$ATMOS_HTTP/healthz" | tee "$WORK/healthz.txt"
rps() { awk '/Requests\/sec/ {print $2}' "$WORK/$1.txt"; }
q=$(rps query); e=$(rps exact); h=$(rps healthz)
echo "queryLabels prefix/50: $q req/s; one DID: $e req/s; /healthz: $h req/s (ratios $(python3 -c "print(round($q/$h, 3), round($e/$h, 3))"))"
echo "atmos peak RSS: $(peak_rss_kb /proc/$ATMOS_PID/status) kB"
