#!/usr/bin/env bash
# Mail-path benchmark: the same STARTTLS + AUTH load generator (tests/src/bin/loadgen.rs) sends
# 2 KiB messages over N sessions to (a) atmos and (b) a private Postfix with STARTTLS + SASL,
# both relaying to one Postfix smtp-sink. Prints msgs/s, p50/p99 accept latency and peak RSS.
#
# usage: tests/bench/mailpath.sh [MESSAGES] [SESSIONS]     (run as root; see docs/benchmarks.md)
set -euo pipefail
MESSAGES=${1:-5000}
SESSIONS=${2:-20}
source "$(dirname "$0")/lib.sh"

echo "atmos: $MESSAGES messages over $SESSIONS sessions..." >&2
A=$("$LOADGEN" --server "$ATMOS_ADDR" --user did:plc:benchbenchbenchbenchbenc --password "$KEY" \
  --from app@sender.bench --to user@rcpt.test --sessions "$SESSIONS" --messages "$MESSAGES" --size 2048)
A_RSS=$(peak_rss_kb /proc/$ATMOS_PID/status)
# Delivery must keep up too: time from the last acknowledgement until the queue is empty.
T0=$(date +%s.%N)
for _ in $(seq 6000); do
  LEFT=$(python3 -c 'import sqlite3,sys;c=sqlite3.connect(sys.argv[1]);print(c.execute("select count(*) from recipients where status in (\"accepted\",\"deferred\")").fetchone()[0])' "$WORK/atmos-data/atmos.sqlite")
  [ "$LEFT" = 0 ] && break; sleep 0.01
done
A_DRAIN=$(python3 -c "import sys;print(round($(date +%s.%N)-$T0,2))")
A_RSS_END=$(peak_rss_kb /proc/$ATMOS_PID/status)

# --- Postfix -----------------------------------------------------------------------------
PF=$WORK/pf
mkdir -p "$PF/etc/sasl" "$PF/spool" "$PF/data" "$PF/tls"
chown postfix "$PF/data"
openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=baseline.test -days 30 \
  -keyout "$PF/tls/key.pem" -out "$PF/tls/cert.pem" 2>/dev/null
PLAIN=$(free_port); SUB=$(free_port)
for f in main.cf master.cf; do
  sed -e "s#@DIR@#$PF#g" -e "s#@SINK_HOST@#127.0.0.1#g" -e "s#@SINK_PORT@#$SINK#g" \
      -e "s#@PLAIN_PORT@#$PLAIN#g" -e "s#@SUBMISSION_PORT@#$SUB#g" "$ROOT/tests/bench/postfix/$f" > "$PF/etc/$f"
done
sed -e "s#@DIR@#$PF#g" "$ROOT/tests/bench/postfix/smtpd.conf" > "$PF/etc/sasl/smtpd.conf"
echo -n benchpass | saslpasswd2 -c -p -f "$PF/sasldb2" -u baseline.test bench
chown root:postfix "$PF/sasldb2"; chmod 640 "$PF/sasldb2"
postfix -c "$PF/etc" check
script -qc "postfix -c $PF/etc start" /dev/null >/dev/null
wait_port $SUB
echo "postfix: $MESSAGES messages over $SESSIONS sessions..." >&2
P=$("$LOADGEN" --server "127.0.0.1:$SUB" --user bench@baseline.test --password benchpass \
  --from app@sender.bench --to user@rcpt.test --sessions "$SESSIONS" --messages "$MESSAGES" --size 2048)
# Postfix is many processes sharing libraries: sum their proportional set sizes (PSS), which
# counts shared pages once, right after the load while every smtpd is still alive.
PF_PIDS="$(pgrep -f "$PF/etc" || true) $(pgrep -u postfix || true)"
P_RSS=$(for p in $PF_PIDS; do cat /proc/$p/smaps_rollup 2>/dev/null; done | awk '/^Pss:/ {s+=$2} END {print s+0}')
T0=$(date +%s.%N)
for _ in $(seq 6000); do
  [ -z "$(find "$PF/spool/incoming" "$PF/spool/active" "$PF/spool/deferred" "$PF/spool/maildrop" -type f 2>/dev/null)" ] && break; sleep 0.01
done
P_DRAIN=$(python3 -c "import sys;print(round($(date +%s.%N)-$T0,2))")

python3 - "$A" "$P" "$A_RSS" "$A_RSS_END" "$P_RSS" "$MESSAGES" "$SESSIONS" "$A_DRAIN" "$P_DRAIN" <<'PY'
import json, sys
a, p = json.loads(sys.argv[1]), json.loads(sys.argv[2])
a_rss, a_rss_end, p_rss, n, s = (int(x) for x in sys.argv[3:8])
a_drain, p_drain = sys.argv[8], sys.argv[9]
print(f"| system | msgs/s accepted | p50 accept ms | p99 accept ms | errors | queue drained after | peak memory |")
print(f"|---|---|---|---|---|---|---|")
print(f"| atmos | {a['msgs_per_sec']} | {a['p50_ms']} | {a['p99_ms']} | {a['errors']} | {a_drain} s | {a_rss_end/1024:.1f} MiB (VmHWM) |")
print(f"| Postfix | {p['msgs_per_sec']} | {p['p50_ms']} | {p['p99_ms']} | {p['errors']} | {p_drain} s | {p_rss/1024:.1f} MiB (PSS, all processes) |")
ratio = a['msgs_per_sec'] / p['msgs_per_sec'] if p['msgs_per_sec'] else float('inf')
print(f"\natmos / Postfix throughput ratio: {ratio:.2f}x  ({n} messages of 2 KiB, {s} sessions)")
print(json.dumps({"atmos": a, "postfix": p, "ratio": round(ratio, 2), "atmos_peak_rss_kb": a_rss_end, "postfix_peak_rss_kb": p_rss}))
PY
