# Shared set-up for the benchmarks: a temp dir, Postfix's smtp-sink as every MX, dnsmasq with an
# MX for rcpt.test, and a release `atmos serve` with one trusted member. Source it; it sets WORK,
# SINK, ATMOS, LOADGEN, ATMOS_PID, ATMOS_ADDR, ATMOS_HTTP, KEY and cleans up on exit.
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
WORK=$(mktemp -d /tmp/atmos-bench.XXXXXX)
chmod 755 "$WORK"
PIDS=()
STOP_POSTFIX=()
cleanup() {
  for c in "${STOP_POSTFIX[@]:-}"; do [ -n "$c" ] && postfix -c "$c" stop >/dev/null 2>&1 || true; done
  for p in "${PIDS[@]:-}"; do kill "$p" 2>/dev/null || true; done
  if [ -n "${BENCH_KEEP:-}" ]; then echo "kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.1; done; echo "port $1 never opened" >&2; exit 1; }
peak_rss_kb() { awk '/VmHWM/ {s+=$2} END {print s+0}' "$@" 2>/dev/null; }

echo "building release binaries..." >&2
(cd "$ROOT" && cargo build --release -q -p atmos-relay -p atmos-tests --bin atmos --bin loadgen)
# BENCH_ATMOS: another build of the relay, for an A/B against this tree.
ATMOS=${BENCH_ATMOS:-$ROOT/target/release/atmos}
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
inbound_listen = "127.0.0.1:0"
# The load generator is one loopback client; the scaling curve goes past the default 50.
max_sessions_per_client = ${BENCH_SESSIONS_PER_CLIENT:-50}
[http]
listen = "127.0.0.1:0"
[limits]
hourly = 100000000
daily = 100000000
global_per_minute = 0
[dns]
nameservers = ["127.0.0.1:$DNS"]
[delivery]
mx_port = $SINK
# The sink is on loopback, which a production relay refuses to deliver to.
allow_private_destinations = true
CONF
KEY=$("$ATMOS" member add --config "$WORK/atmos.toml" --did did:plc:benchbenchbenchbenchbenc --domain sender.bench --approve \
  | python3 -c 'import json,sys;print(json.load(sys.stdin)["api_key"])')
"$ATMOS" member label --config "$WORK/atmos.toml" did:plc:benchbenchbenchbenchbenc --add highly_trusted >/dev/null
# A member that has been sending for a while, not one on its first day: BENCH_HISTORY_DAYS (30)
# days of one message a minute in the rules' counters and the send caps' buckets, as the relay
# would have written them (0: a fresh relay). Windows that scan their buckets show up here and
# not on an empty database.
seed_history() {
  python3 - "$WORK/atmos-data/atmos.sqlite" "${BENCH_HISTORY_DAYS:-30}" <<'PY'
import sqlite3, sys, time
db, days = sys.argv[1], int(sys.argv[2])
did, now = "did:plc:benchbenchbenchbenchbenc", int(time.time()) // 60
c = sqlite3.connect(db)
mins = range(now - days * 1440, now)
for counter in ("recipients", "member_mail"):
    c.executemany("INSERT INTO rule_counters (counter, entity, minute, n) VALUES (?, ?, ?, 1)",
                  ((counter, did, m) for m in mins))
recent = [m for m in mins if m >= now - 2 * 1440]
for key in (did, "*"):
    c.executemany("INSERT INTO send_counts (did, minute, n) VALUES (?, ?, 1)", ((key, m) for m in recent))
if c.execute("SELECT 1 FROM sqlite_master WHERE name = 'send_counts_hourly'").fetchone():
    c.execute("INSERT INTO send_counts_hourly (did, hour, n) SELECT did, minute / 60, sum(n) FROM send_counts GROUP BY 1, 2")
c.commit()
PY
}
seed_history
# start_atmos: `atmos serve` on $WORK/atmos.toml; sets ATMOS_PID, ATMOS_ADDR, ATMOS_HTTP once it
# listens.
start_atmos() {
  rm -f "$WORK/atmos.out"
  ATMOS_LOG=warn "$ATMOS" serve --config "$WORK/atmos.toml" > "$WORK/atmos.out" 2>> "$WORK/atmos.err" & ATMOS_PID=$!; PIDS+=($ATMOS_PID)
  for _ in $(seq 300); do grep -q listening "$WORK/atmos.out" 2>/dev/null && break; sleep 0.02; done
  ATMOS_ADDR=$(python3 -c 'import json,sys;print(json.load(open(sys.argv[1]))["listening"]["submission"])' "$WORK/atmos.out")
  ATMOS_HTTP=$(python3 -c 'import json,sys;print(json.load(open(sys.argv[1]))["listening"]["http"])' "$WORK/atmos.out")
}
start_atmos


# signing_cost: the CPU cost of atmos's four signatures on this box now (relay/benches/signing.rs);
# sets SIGN_CPU_US (one thread) and SIGN_ALL_CORES (msgs/s with every core signing at once). The
# box's speed drifts by tens of percent within minutes, so a run measures it next to each load.
signing_cost() {
  local out
  out=$(cd "$ROOT" && cargo bench -q -p atmos-relay --bench signing 2>/dev/null | tee -a "$WORK/signing.txt")
  SIGN_CPU_US=$(echo "$out" | awk -F'|' '/four DKIM signatures/ {gsub(/ /,"",$4); print $4}')
  SIGN_ALL_CORES=$(echo "$out" | sed -n 's/^signing limit: .* at once: \([0-9]*\) messages.*/\1/p')
}

# The box's CPU ticks so far as "STEAL TOTAL" (/proc/stat): steal is time the hypervisor gave this
# VM's cores to someone else, which is why two runs of one build differ.
cpu_ticks() { awk '/^cpu / {print $9, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat; }
# steal_since "STEAL TOTAL": the share of the cores the host took since that cpu_ticks sample.
steal_since() {
  python3 -c 'import sys;a,b,c,d=map(float,sys.argv[1:5]);print(f"{100*(c-a)/max(d-b,1):.1f}")' $1 $(cpu_ticks)
}

# Busy CPU ticks of the whole box so far (user, nice, system, irq, softirq; not idle, iowait or
# steal): every process of a load, the load generator and the sink included.
box_busy() { awk '/^cpu / {print $2+$3+$4+$7+$8}' /proc/stat; }
# box_ms_per_msg BUSY0 MESSAGES: the box's busy CPU ms per message since that box_busy sample.
box_ms_per_msg() { python3 -c "import sys;print(round(($(box_busy)-$1)*1000/$(getconf CLK_TCK)/$2,3))"; }

# CPU seconds (user + system) a process has used so far.
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{print ($14+$15)/hz}' "/proc/$1/stat"; }

# CPU seconds per thread kind of a process (the thread name without its index), as JSON.
thread_cpu() {
  python3 - "$1" "$(getconf CLK_TCK)" <<'PY'
import json, os, re, sys
pid, hz, out = sys.argv[1], int(sys.argv[2]), {}
for tid in os.listdir(f"/proc/{pid}/task"):
    try:
        name = open(f"/proc/{pid}/task/{tid}/comm").read().strip()
        f = open(f"/proc/{pid}/task/{tid}/stat").read().rsplit(")", 1)[1].split()
    except OSError:
        continue
    kind = re.sub(r"-\d+$", "", name)
    out[kind] = out.get(kind, 0) + (int(f[11]) + int(f[12])) / hz
print(json.dumps(out))
PY
}

# thread_split BEFORE AFTER N: CPU ms per message of each thread kind between two thread_cpu
# samples, and each against the signers' own CPU (the box's speed drifts between runs; the
# ratio to the fixed signing work drifts less).
thread_split() {
  python3 - "$@" <<'PY'
import json, sys
a, b, n = json.loads(sys.argv[1]), json.loads(sys.argv[2]), int(sys.argv[3])
d = {k: b[k] - a.get(k, 0) for k in sorted(b) if b[k] - a.get(k, 0) > 0}
line = "  CPU ms per message by thread: " + ", ".join(f"{k} {v * 1e3 / n:.3f}" for k, v in d.items())
s = d.get("dkim-signer", 0)
if s > 0:
    line += "; per unit of signing: " + ", ".join(f"{k} {v / s:.3f}" for k, v in d.items() if k != "dkim-signer")
print(line)
PY
}

# Spool commits (each one fsync) so far, from atmos's metrics.
spool_commits() { curl -s "http://$ATMOS_HTTP/metrics" | awk '/^atmos_spool_fsync_seconds_count/ {print $2}'; }

# Recipients still to deliver in atmos's queue.
atmos_queued() {
  python3 -c 'import sqlite3,sys;c=sqlite3.connect(sys.argv[1]);print(c.execute("select count(*) from recipients where status in (\"accepted\",\"deferred\")").fetchone()[0])' "$WORK/atmos-data/atmos.sqlite"
}

# run_atmos SESSIONS MESSAGES: one load; prints the load generator's JSON plus drain time (until
# the queue is empty), CPU ms per message (accepting and delivering), peak RSS, and the load
# generator's own CPU ms per message (it shares the cores).
run_atmos() {
  local c0 c1 out t0 left b0 box
  c0=$(cpu_s "$ATMOS_PID"); b0=$(box_busy)
  out=$(/usr/bin/time -f "%U %S" -o "$WORK/loadgen.cpu" "$LOADGEN" --server "$ATMOS_ADDR" --user did:plc:benchbenchbenchbenchbenc --password "$KEY" \
    --from app@sender.bench --to user@rcpt.test --sessions "$1" --messages "$2" --size 2048)
  box=$(box_ms_per_msg "$b0" "$2")
  t0=$(date +%s.%N)
  for _ in $(seq 6000); do
    [ "$(atmos_queued)" = 0 ] && break; sleep 0.01
  done
  c1=$(cpu_s "$ATMOS_PID")
  python3 -c "import json,sys;d=json.loads(sys.argv[1]);d['drain_s']=round($(date +%s.%N)-$t0,2);d['cpu_ms_per_msg']=round(($c1-$c0)*1000/$2,3);d['memory_kb']=int(sys.argv[2]);d['memory']='VmHWM';d['box_cpu_ms_per_msg']=$box;d['loadgen_cpu_ms_per_msg']=round(sum(map(float,open(sys.argv[3]).read().split()[-2:]))*1000/$2,3);print(json.dumps(d))" \
    "$out" "$(peak_rss_kb /proc/$ATMOS_PID/status)" "$WORK/loadgen.cpu"
}

