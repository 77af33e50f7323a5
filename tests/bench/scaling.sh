#!/usr/bin/env bash
# Scaling curve: throughput and p99 accept latency of atmos and Postfix + OpenDKIM (the same four
# signatures) at 1, 5, 20, 50 and 100 sessions, same load generator, same run. Prints a table and
# writes target/bench/scaling.png (not committed; matplotlib from the venv of tests/install-peers).
#
# usage: tests/bench/scaling.sh [MESSAGES_PER_POINT]     (run as root; see docs/benchmarks.md)
set -euo pipefail
MESSAGES=${1:-3000}
POINTS=${POINTS:-"1 5 20 50 100"}
# All sessions come from one loopback address; atmos's default is 50 per client.
export BENCH_SESSIONS_PER_CLIENT=200
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/postfix.sh"
start_postfix dkim dkim
run_atmos 20 200 >/dev/null; run_postfix dkim 20 200 >/dev/null
ROWS=()
for s in $POINTS; do
  echo "$s sessions..." >&2
  ROWS+=("{\"sessions\": $s, \"atmos\": $(run_atmos "$s" "$MESSAGES"), \"opendkim\": $(run_postfix dkim "$s" "$MESSAGES")}")
done
mkdir -p "$ROOT/target/bench"
printf "%s\n" "${ROWS[@]}" | "$ROOT/tests/.venv/bin/python" "$ROOT/tests/bench/plot_scaling.py" "$ROOT/target/bench/scaling.png"
