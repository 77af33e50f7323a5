#!/usr/bin/env bash
# /v1/send (issue 13 §3): the maximum rate with wrk (closed loop: CONNECTIONS keep-alive
# connections posting ~2 KiB JSON messages for SECONDS; every 200 means signed four times and
# fsynced), that rate as a fraction of the box's signing limit (relay/benches/signing.rs, same
# run), then open-loop loads at 50, 60, 70 and 80 % of the maximum (tests/src/bin/httpload.rs: constant
# arrival rate, latency counted from when each request was due).
#
# usage: tests/bench/http_send.sh [SECONDS] [CONNECTIONS]     (run as root; see docs/benchmarks.md)
set -euo pipefail
SECONDS_RUN=${1:-10}
CONNECTIONS=${2:-20}
command -v wrk >/dev/null || { echo "wrk is required (apt-get install wrk)" >&2; exit 1; }
(cd "$(dirname "$0")/../.." && cargo build --release -q -p atmos-tests --bin httpload)
source "$(dirname "$0")/lib.sh"
export BENCH_DID=did:plc:benchbenchbenchbenchbenc BENCH_KEY="$KEY"
URL="http://$ATMOS_HTTP/v1/send"
# Warm-up (first login, page cache), not reported.
wrk -t2 -c"$CONNECTIONS" -d3s -s "$ROOT/tests/bench/send.lua" "$URL" >/dev/null
# The signing cost just before and just after wrk's run: the box's speed drifts.
echo "signing cost (same box, before wrk)..." >&2
signing_cost; SIGN_BEFORE=$SIGN_CPU_US
echo "wrk: ${SECONDS_RUN}s, $CONNECTIONS connections, POST /v1/send..." >&2
c0=$(cpu_s "$ATMOS_PID"); k0=$(cpu_ticks)
/usr/bin/time -f '%U %S' -o "$WORK/wrk.cpu" \
  wrk -t2 -c"$CONNECTIONS" -d"${SECONDS_RUN}s" --latency -s "$ROOT/tests/bench/send.lua" "$URL" | tee "$WORK/wrk.txt"
MAX=$(awk '/Requests\/sec/ {print $2}' "$WORK/wrk.txt")
echo "wrk: the host took $(steal_since "$k0") % of the cores (steal)"
# Where the two cores went: the relay's and the client's CPU per request (the client shares the box).
cpu_split() { # LABEL REQUESTS RELAY_CPU_S TIME_FILE
  python3 -c "import sys;u,s=map(float,open(sys.argv[4]).read().split()[-2:]);n=float(sys.argv[2]);print(f'{sys.argv[1]}: relay {float(sys.argv[3])*1e3/n:.3f} ms CPU per request, client {(u+s)*1e3/n:.3f} ms')" "$@"
}
cpu_split wrk "$(awk '/requests in/ {print $1}' "$WORK/wrk.txt")" "$(python3 -c "print($(cpu_s "$ATMOS_PID")-$c0)")" "$WORK/wrk.cpu"
# What the burst left to deliver: wrk's rate is accepting only, deliveries catch up after.
t0=$(date +%s.%N); left=$(atmos_queued)
for _ in $(seq 3000); do [ "$(atmos_queued)" = 0 ] && break; sleep 0.02; done
echo "after wrk: $left recipients still to deliver, delivered in $(python3 -c "print(round($(date +%s.%N)-$t0,2))") s"
# Once the queue is delivered, so nothing shares the cores with the signing bench.
echo "signing cost (after wrk)..." >&2
signing_cost; SIGN_AFTER=$SIGN_CPU_US
for pct in 50 60 70 80; do
  # Each load starts with the queue delivered, so it measures its own rate and not the last
  # load's deliveries.
  for _ in $(seq 3000); do [ "$(atmos_queued)" = 0 ] && break; sleep 0.02; done
  rate=$(python3 -c "print(round($MAX*$pct/100))")
  echo "open loop at $pct % of the maximum: $rate requests/s for $((SECONDS_RUN * 2))s..." >&2
  c0=$(cpu_s "$ATMOS_PID"); t0=$(thread_cpu "$ATMOS_PID"); k0=$(cpu_ticks); f0=$(spool_commits)
  /usr/bin/time -f '%U %S' -o "$WORK/open-$pct.cpu" \
    "$ROOT/target/release/httpload" --url "$URL" --did "$BENCH_DID" --key "$KEY" --rate "$rate" \
    --seconds $((SECONDS_RUN * 2)) | tee "$WORK/open-$pct.json"
  # The relay's CPU here includes delivering what it accepted (wrk's figure above does not all).
  cpu_split "open loop $pct %" "$((rate * SECONDS_RUN * 2))" "$(python3 -c "print($(cpu_s "$ATMOS_PID")-$c0)")" "$WORK/open-$pct.cpu"
  thread_split "$t0" "$(thread_cpu "$ATMOS_PID")" "$((rate * SECONDS_RUN * 2))"
  echo "  the host took $(steal_since "$k0") % of the cores (steal); spool commits per request: $(python3 -c "print(round(($(spool_commits)-$f0)/($rate*$SECONDS_RUN*2),2))")"
  echo "left to deliver when the load ended: $(atmos_queued)"
done
python3 - "$MAX" "$SIGN_BEFORE" "$SIGN_AFTER" "$(nproc)" <<'PY'
import sys
mx, before, after, cores = float(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
us = (before + after) / 2
limit = cores * 1e6 / us
print(f"signing cost: {before:.0f} us before wrk, {after:.0f} us after; the limit uses their mean"
      f" (against each alone: {100*mx*before/cores/1e6:.0f} % and {100*mx*after/cores/1e6:.0f} %)")
print(f"signing limit: {cores} cores / {us:.0f} us per message = {limit:.0f}/s; /v1/send reaches {mx:.0f}/s = {100*mx/limit:.0f} %")
PY
echo "atmos peak RSS: $(peak_rss_kb /proc/$ATMOS_PID/status) kB"
