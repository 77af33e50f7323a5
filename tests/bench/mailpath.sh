#!/usr/bin/env bash
# Mail-path benchmark: the same STARTTLS + AUTH load generator (tests/src/bin/loadgen.rs) sends
# 2 KiB messages over N sessions to (a) atmos and (b) a private Postfix with STARTTLS + SASL,
# both relaying to one Postfix smtp-sink. Prints msgs/s, p50/p99 accept latency and peak RSS.
#
# usage: tests/bench/mailpath.sh [MESSAGES] [SESSIONS]     (run as root; see docs/benchmarks.md)
set -euo pipefail
MESSAGES=${1:-5000}
SESSIONS=${2:-20}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK=$(mktemp -d /tmp/atmos-bench.XXXXXX)
chmod 755 "$WORK"
PIDS=()
cleanup() {
  for p in "${PIDS[@]:-}"; do kill "$p" 2>/dev/null || true; done
  [ -f "$WORK/pf/etc/main.cf" ] && postfix -c "$WORK/pf/etc" stop >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; exit 1; }
peak_rss_kb() { awk '/VmHWM/ {s+=$2} END {print s+0}' "$@" 2>/dev/null; }

echo "building release binaries..." >&2
(cd "$ROOT" && cargo build --release -q -p atmos-relay -p atmos-tests --bin atmos --bin loadgen)
ATMOS=$ROOT/target/release/atmos
LOADGEN=$ROOT/target/release/loadgen

# The recipient MX for both.
SINK=$(free_port)
/usr/sbin/smtp-sink -u nobody 127.0.0.1:$SINK 1024 & PIDS+=($!)
wait_port $SINK

# --- atmos -------------------------------------------------------------------------------
DNS=$(free_port)
cat > "$WORK/dnsmasq.conf" <<CONF
port=$DNS
listen-address=127.0.0.1
bind-interfaces
no-resolv
no-hosts
user=root
local=/rcpt.test/
mx-host=rcpt.test,mx.rcpt.test,10
host-record=mx.rcpt.test,127.0.0.1
CONF
/usr/sbin/dnsmasq --keep-in-foreground --conf-file="$WORK/dnsmasq.conf" --pid-file= & PIDS+=($!)
wait_port $DNS
cat > "$WORK/atmos.toml" <<CONF
[server]
hostname = "relay.bench"
operator_domain = "operator.bench"
data_dir = "$WORK/atmos-data"
[smtp]
submission_listen = "127.0.0.1:0"
[limits]
hourly = 100000000
daily = 100000000
global_per_minute = 0
[dns]
nameservers = ["127.0.0.1:$DNS"]
[delivery]
mx_port = $SINK
CONF
KEY=$("$ATMOS" member add --config "$WORK/atmos.toml" --did did:plc:benchbenchbenchbenchbenc --domain sender.bench --approve \
  | python3 -c 'import json,sys;print(json.load(sys.stdin)["api_key"])')
"$ATMOS" member label --config "$WORK/atmos.toml" did:plc:benchbenchbenchbenchbenc --add highly_trusted >/dev/null
ATMOS_LOG=warn "$ATMOS" serve --config "$WORK/atmos.toml" > "$WORK/atmos.out" 2> "$WORK/atmos.err" & ATMOS_PID=$!; PIDS+=($ATMOS_PID)
for _ in $(seq 100); do grep -q listening "$WORK/atmos.out" 2>/dev/null && break; sleep 0.1; done
ATMOS_ADDR=$(python3 -c 'import json,sys;print(json.load(open(sys.argv[1]))["listening"]["submission"])' "$WORK/atmos.out")

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
