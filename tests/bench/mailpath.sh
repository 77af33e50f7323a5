#!/usr/bin/env bash
# Mail-path benchmark: the same STARTTLS + AUTH load generator (tests/src/bin/loadgen.rs) sends
# 2 KiB messages over N sessions to three systems in one run, all relaying to one smtp-sink:
#   atmos                  four DKIM signatures per message (member + operator, RSA-2048 + Ed25519)
#   Postfix + OpenDKIM     the same four signatures, signed by the opendkim milter
#   Postfix                signs nothing (the earlier baseline)
# and, in the same run, the CPU cost of atmos's four signatures (relay/benches/signing.rs), from
# which the box's signing limit is cores / cost-per-message. Prints msgs/s, p50/p99 accept
# latency, memory, CPU per message, the ratios and atmos's fraction of the signing limit.
#
# usage: tests/bench/mailpath.sh [MESSAGES] [SESSIONS]     (run as root; see docs/benchmarks.md)
set -euo pipefail
MESSAGES=${1:-5000}
SESSIONS=${2:-20}
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/postfix.sh"

CORES=$(nproc)

start_postfix plain
start_postfix dkim dkim

probe_opendkim dkim

# Warm-up (first logins, TLS session set-up, page cache), not reported.
run_atmos "$SESSIONS" 200 >/dev/null; run_postfix dkim "$SESSIONS" 200 >/dev/null; run_postfix plain "$SESSIONS" 200 >/dev/null

# The signing cost is measured just before and just after atmos's load: the box's speed drifts.
echo "signing cost (same box, before atmos's load)..." >&2
signing_cost; SIGN_BEFORE=$SIGN_CPU_US; ALL_BEFORE=$SIGN_ALL_CORES
echo "atmos: $MESSAGES messages over $SESSIONS sessions..." >&2
k0=$(cpu_ticks); A=$(run_atmos "$SESSIONS" "$MESSAGES"); STEAL_A=$(steal_since "$k0")
echo "signing cost (after atmos's load)..." >&2
signing_cost; SIGN_AFTER=$SIGN_CPU_US; ALL_AFTER=$SIGN_ALL_CORES
echo "postfix + opendkim..." >&2
k0=$(cpu_ticks); D=$(run_postfix dkim "$SESSIONS" "$MESSAGES"); STEAL_D=$(steal_since "$k0")
echo "postfix (unsigned)..." >&2
P=$(run_postfix plain "$SESSIONS" "$MESSAGES")

python3 - "$A" "$D" "$P" "$MESSAGES" "$SESSIONS" "$SIGN_BEFORE $SIGN_AFTER" "$CORES" "$PROBE_SIGS" "$PROBE_ALGS" "${ALL_BEFORE:-0} ${ALL_AFTER:-0}" "$STEAL_A $STEAL_D" <<'PY'
import json, sys
a, d, p = (json.loads(x) for x in sys.argv[1:4])
n, s = int(sys.argv[4]), int(sys.argv[5])
before, after = (float(x) for x in sys.argv[6].split())
sign_us, cores = (before + after) / 2, int(sys.argv[7])
limit = cores * 1e6 / sign_us
all_cores = [float(x) for x in sys.argv[10].split() if float(x) > 0]
measured = sum(all_cores) / len(all_cores) if all_cores else 0
print("| system | msgs/s accepted | p50 accept ms | p99 accept ms | errors | queue drained after | memory | CPU ms/msg |")
print("|---|---|---|---|---|---|---|---|")
for name, r in [("atmos (4 signatures)", a), ("Postfix + OpenDKIM (4 signatures)", d), ("Postfix (unsigned)", p)]:
    mem = f"{r['memory_kb']/1024:.1f} MiB ({'VmHWM' if r['memory']=='VmHWM' else 'PSS, all processes'})"
    cpu = r.get('cpu_ms_per_msg') or (f"{r['milter_cpu_ms_per_msg']} (milters)" if 'milter_cpu_ms_per_msg' in r else '—')
    print(f"| {name} | {r['msgs_per_sec']} | {r['p50_ms']} | {r['p99_ms']} | {r['errors']} | {r['drain_s']} s | {mem} | {cpu} |")
ratio = lambda x, y: x['msgs_per_sec'] / y['msgs_per_sec'] if y['msgs_per_sec'] else float('inf')
print(f"\n{n} messages of 2 KiB over {s} sessions; Postfix + OpenDKIM signed {sys.argv[8]} per message ({sys.argv[9]})")
print(f"atmos / (Postfix + OpenDKIM): {ratio(a, d):.2f}x   (target >= 2x)")
print(f"atmos / Postfix unsigned:     {ratio(a, p):.2f}x")
print(f"p99 accept: atmos {a['p99_ms']} ms vs Postfix + OpenDKIM {d['p99_ms']} ms")
print(f"signing cost: {before:.0f} us before atmos's load, {after:.0f} us after; the limit uses their mean"
      f" (against each alone: {100*a['msgs_per_sec']*before/cores/1e6:.0f} % and {100*a['msgs_per_sec']*after/cores/1e6:.0f} %)")
print(f"signing limit: {cores} cores / {sign_us:.0f} us CPU per message = {limit:.0f} msgs/s;"
      f" atmos reaches {100*a['msgs_per_sec']/limit:.0f} % (target >= 75 %),"
      f" Postfix + OpenDKIM {100*d['msgs_per_sec']/limit:.0f} %")
steal_a, steal_d = (float(x) for x in sys.argv[11].split())
print(f"the host took (steal) {steal_a} % of the cores during atmos's load, {steal_d} % during Postfix + OpenDKIM's")
box = {k: r.get('box_cpu_ms_per_msg') for k, r in (("a", a), ("d", d), ("p", p))}
if all(box.values()):
    budget = sign_us / 1000 * (1 / 0.75 - 1)
    print(f"box CPU per message during each load (every process: relay, load generator, sink, kernel):"
          f" atmos {box['a']} ms, Postfix + OpenDKIM {box['d']} ms, Postfix unsigned {box['p']} ms")
    print(f"  beside the signatures: atmos {box['a'] - sign_us / 1000:.3f} ms; 75 % of the signing limit"
          f" leaves {budget:.3f} ms for it, and unsigned Postfix, which signs nothing, uses {box['p']} ms"
          f" ({box['p'] / budget:.2f}x that budget)")
if measured:
    print(f"measured with every core signing at once: {measured:.0f} msgs/s; atmos reaches {100*a['msgs_per_sec']/measured:.0f} %")
print(json.dumps({"atmos": a, "postfix_opendkim": d, "postfix": p, "signing_cpu_us": sign_us, "signing_cpu_us_before": before, "signing_cpu_us_after": after,
                  "signing_limit": round(limit), "box_cpu_ms_per_msg": box, "signing_all_cores": measured, "fraction": round(a['msgs_per_sec']/limit, 3),
                  "steal_pct": {"atmos": steal_a, "postfix_opendkim": steal_d}}))
PY
