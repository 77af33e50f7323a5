#!/usr/bin/env bash
# Delivery alone (issue 13 §5): how fast a full queue drains to a local smtp-sink, for atmos and
# for Postfix with the same messages and the same sink, each restarted with its queue full.
#  atmos:   MESSAGES accepted (20 sessions, 2 KiB) while every MX connection hangs before the
#           greeting (a socket that never accepts), so nothing is attempted; then SIGKILL, the
#           MX pointed at the sink, restart, and time until no recipient is left to deliver.
#  Postfix: the same load with `defer_transports = smtp` (nothing attempted, all deferred); then
#           the setting cleared, stop + start, `postqueue -f`, and time until the queue is empty.
# Both use 20 connections to the one destination (atmos's per_destination_concurrency, Postfix's
# default_destination_concurrency_limit) and reuse them.
#
# usage: tests/bench/drain.sh [MESSAGES]   (root; docs/benchmarks.md)
set -euo pipefail
MESSAGES=${1:-20000}
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/postfix.sh"

# An MX that never answers: the kernel completes connections into a backlog nobody accepts.
HOLD_PORT=$(free_port)
python3 -c 'import socket,sys,time
s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(4096); time.sleep(86400)' "$HOLD_PORT" & PIDS+=($!)
wait_port "$HOLD_PORT"

kill "$ATMOS_PID"; while kill -0 "$ATMOS_PID" 2>/dev/null; do sleep 0.05; done
cp "$WORK/atmos.toml" "$WORK/atmos-deliver.toml"
sed -i -e "s/^mx_port = .*/mx_port = $HOLD_PORT\nconnect_timeout = \"10m\"\nattempt_timeout = \"10m\"/" "$WORK/atmos.toml"
start_atmos
echo "atmos: queueing $MESSAGES messages behind an MX that never answers..." >&2
"$LOADGEN" --server "$ATMOS_ADDR" --user did:plc:benchbenchbenchbenchbenc --password "$KEY" \
  --from app@sender.bench --to user@rcpt.test --sessions 20 --messages "$MESSAGES" --size 2048 > "$WORK/fill.json"
kill -9 "$ATMOS_PID"; while kill -0 "$ATMOS_PID" 2>/dev/null; do sleep 0.05; done
queued=$(atmos_queued)
[ "$queued" = "$MESSAGES" ] || { echo "atmos: $queued recipients queued, not $MESSAGES" >&2; exit 1; }
cp "$WORK/atmos-deliver.toml" "$WORK/atmos.toml"
t0=$(date +%s.%N)
start_atmos
t_listen=$(date +%s.%N)
for _ in $(seq 60000); do [ "$(atmos_queued)" = 0 ] && break; sleep 0.01; done
t1=$(date +%s.%N)
[ "$(atmos_queued)" = 0 ] || { echo "atmos: the queue did not drain" >&2; exit 1; }
atmos_cpu=$(cpu_s "$ATMOS_PID")
atmos_rss=$(peak_rss_kb /proc/$ATMOS_PID/status)
python3 -c "import json;s=$t1-$t0;print(json.dumps({'system':'atmos','messages':$MESSAGES,'drain_s':round(s,2),'msgs_per_s':round($MESSAGES/s,1),'from_listening_s':round($t1-$t_listen,2),'cpu_ms_per_msg':round($atmos_cpu*1000/$MESSAGES,3),'rss_kb':$atmos_rss}))" | tee "$WORK/atmos-drain.json"
kill "$ATMOS_PID"

start_postfix drain
PF=${PF_DIR[drain]}/etc
postconf -c "$PF" -e "defer_transports = smtp"
postfix -c "$PF" reload >/dev/null 2>&1
echo "Postfix: queueing $MESSAGES messages with defer_transports = smtp..." >&2
"$LOADGEN" --server "127.0.0.1:${PF_SUB[drain]}" --user bench@baseline.test --password benchpass \
  --from app@sender.bench --to user@rcpt.test --sessions 20 --messages "$MESSAGES" --size 2048 > "$WORK/pf-fill.json"
pfq() { find "${PF_DIR[drain]}/spool/$1" -type f 2>/dev/null | wc -l; }
for _ in $(seq 60000); do [ "$(pfq incoming)$(pfq active)$(pfq maildrop)" = 000 ] && [ "$(pfq deferred)" = "$MESSAGES" ] && break; sleep 0.05; done
[ "$(pfq deferred)" = "$MESSAGES" ] || { echo "Postfix: $(pfq deferred) deferred, not $MESSAGES" >&2; exit 1; }
postfix -c "$PF" stop >/dev/null 2>&1
postconf -c "$PF" -e "defer_transports ="
t0=$(date +%s.%N)
script -qc "postfix -c $PF start" /dev/null >/dev/null
postqueue -c "$PF" -f
for _ in $(seq 60000); do [ "$(pfq deferred)$(pfq active)$(pfq incoming)" = 000 ] && break; sleep 0.01; done
t1=$(date +%s.%N)
sent=$(grep -c 'status=sent' "${PF_DIR[drain]}/maillog" || true)
[ "$sent" -ge "$MESSAGES" ] || { echo "Postfix: $sent sent, not $MESSAGES" >&2; exit 1; }
python3 -c "import json;s=$t1-$t0;print(json.dumps({'system':'postfix','messages':$MESSAGES,'drain_s':round(s,2),'msgs_per_s':round($MESSAGES/s,1)}))" | tee "$WORK/pf-drain.json"
python3 -c "import json;a=json.load(open('$WORK/atmos-drain.json'));p=json.load(open('$WORK/pf-drain.json'));print(f\"drain ratio atmos/Postfix: {a['msgs_per_s']/p['msgs_per_s']:.2f}x\")"
