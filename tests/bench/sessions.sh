#!/usr/bin/env bash
# Many sessions (issue 13 §4) on a release `atmos serve` with the shipped limits:
#  1. slow: SESSIONS STARTTLS + AUTH sessions open at once, each sending a 2 KiB message every
#     5 s for SECONDS (smtp.max_sessions_per_client raised so one load generator may hold them);
#  2. idle: IDLE plain connections from 100 loopback addresses (50 each, the per-client cap),
#     greetings read and held: the shipped smtp.max_sessions (1,000) holds, the rest get 421.
# Peak RSS of the relay for each (sampled every 100 ms), and memory per session.
#
# usage: tests/bench/sessions.sh [SESSIONS] [IDLE] [SECONDS]   (root; docs/benchmarks.md)
set -euo pipefail
SESSIONS=${1:-500}
IDLE=${2:-5000}
SECONDS_RUN=${3:-30}
ulimit -n "$(ulimit -Hn)"
(cd "$(dirname "$0")/../.." && cargo build --release -q -p atmos-tests --bin sessionbench)
source "$(dirname "$0")/lib.sh"
BENCH=$ROOT/target/release/sessionbench
restart_with() {
  kill "$ATMOS_PID"; while kill -0 "$ATMOS_PID" 2>/dev/null; do sleep 0.05; done
  python3 - "$WORK/atmos.toml" "$1" <<'PY'
import re, sys
path, per_client = sys.argv[1], sys.argv[2]
s = re.sub(r"\nmax_sessions_per_client = .*", "", open(path).read())
s = s.replace("[smtp]\n", f"[smtp]\nmax_sessions_per_client = {per_client}\n") if per_client != "default" else s
open(path, "w").write(s)
PY
  start_atmos
}
restart_with "$((SESSIONS + 10))"
echo "slow: $SESSIONS STARTTLS sessions, one message each per 5 s, ${SECONDS_RUN}s..." >&2
"$BENCH" slow --server "$ATMOS_ADDR" --pid "$ATMOS_PID" --sessions "$SESSIONS" --seconds "$SECONDS_RUN" \
  --user did:plc:benchbenchbenchbenchbenc --password "$KEY" | tee "$WORK/slow.json"
restart_with default
echo "idle: $IDLE plain connections from 100 addresses, held ${SECONDS_RUN}s..." >&2
"$BENCH" idle --server "$ATMOS_ADDR" --pid "$ATMOS_PID" --sessions "$IDLE" --sources 100 --seconds "$SECONDS_RUN" | tee "$WORK/idle.json"
echo "atmos peak RSS (VmHWM) after both: $(peak_rss_kb /proc/$ATMOS_PID/status) kB"
