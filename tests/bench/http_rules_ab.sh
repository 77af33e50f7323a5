#!/usr/bin/env bash
# A/B of the rules engine's cost on the HTTP path (docs/benchmarks.md, "HTTP send API"): the
# same open-loop /v1/send load (RATE requests/s for SECONDS) with the rules engine on, off, on,
# off, the relay restarted between runs; prints each run's latencies and how many spool commits
# took over 100 ms (`atmos_spool_fsync_seconds`, lock wait included).
#
# usage: tests/bench/http_rules_ab.sh [RATE] [SECONDS]   (root; needs wrk for the warm-up)
set -euo pipefail
RATE=${1:-704}
SECONDS_RUN=${2:-15}
(cd "$(dirname "$0")/../.." && cargo build --release -q -p atmos-tests --bin httpload)
source "$(dirname "$0")/lib.sh"
export BENCH_DID=did:plc:benchbenchbenchbenchbenc BENCH_KEY="$KEY"
slow_commits() {
  curl -s "http://$ATMOS_HTTP/metrics" | python3 -c '
import re, sys
b = dict(re.findall(r"atmos_spool_fsync_seconds_bucket\{le=\"([^\"]+)\"\} (\d+)", sys.stdin.read()))
print(int(b["+Inf"]) - int(b["0.1024"]), "of", b["+Inf"], "commits over 100 ms")'
}
for mode in on off on off; do
  kill "$ATMOS_PID"; while kill -0 "$ATMOS_PID" 2>/dev/null; do sleep 0.05; done
  sed -i '/^\[rules\]/,+1d' "$WORK/atmos.toml"
  [ $mode = off ] && printf '[rules]\nenabled = false\n' >> "$WORK/atmos.toml"
  start_atmos
  URL="http://$ATMOS_HTTP/v1/send"
  wrk -t2 -c20 -d2s -s "$ROOT/tests/bench/send.lua" "$URL" >/dev/null
  for _ in $(seq 3000); do [ "$(atmos_queued)" = 0 ] && break; sleep 0.02; done
  echo "rules $mode: $("$ROOT/target/release/httpload" --url "$URL" --did "$BENCH_DID" --key "$KEY" --rate "$RATE" --seconds "$SECONDS_RUN"); $(slow_commits)"
done
