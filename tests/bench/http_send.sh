#!/usr/bin/env bash
# /v1/send throughput: wrk posts ~2 KiB JSON messages over CONNECTIONS keep-alive connections for
# SECONDS; every 200 means durable (fsynced) and signed four times.
#
# usage: tests/bench/http_send.sh [SECONDS] [CONNECTIONS]     (run as root; see docs/benchmarks.md)
set -euo pipefail
SECONDS_RUN=${1:-10}
CONNECTIONS=${2:-20}
command -v wrk >/dev/null || { echo "wrk is required (apt-get install wrk)" >&2; exit 1; }
source "$(dirname "$0")/lib.sh"
echo "wrk: ${SECONDS_RUN}s, $CONNECTIONS connections, POST /v1/send..." >&2
BENCH_DID=did:plc:benchbenchbenchbenchbenc BENCH_KEY="$KEY" \
  wrk -t2 -c"$CONNECTIONS" -d"${SECONDS_RUN}s" --latency -s "$ROOT/tests/bench/send.lua" "http://$ATMOS_HTTP/v1/send" \
  | tee "$WORK/wrk.txt"
echo "atmos peak RSS: $(peak_rss_kb /proc/$ATMOS_PID/status) kB"
