#!/usr/bin/env bash
# atmos alone, for A/B comparisons of a change: two loads of MESSAGES over SESSIONS; prints the
# load generator's JSON, CPU ms per message (accepting and delivering), peak RSS, and the spool
# commit-time histogram (slow commits set the p99), and the CPU of each kind of thread.
#
# usage: tests/bench/atmos_cpu.sh [MESSAGES] [SESSIONS]     (run as root; see docs/benchmarks.md)
set -euo pipefail
MESSAGES=${1:-3000}
SESSIONS=${2:-20}
source "$(dirname "$0")/lib.sh"
run_atmos "$SESSIONS" 300 >/dev/null
for _ in 1 2; do
  t0=$(thread_cpu "$ATMOS_PID")
  run_atmos "$SESSIONS" "$MESSAGES"
  thread_split "$t0" "$(thread_cpu "$ATMOS_PID")" "$MESSAGES"
done
curl -s "http://$ATMOS_HTTP/metrics" | grep -E '^atmos_spool_fsync_seconds_(bucket|count)'
