"""Reads one JSON row per line ({sessions, atmos, opendkim}) on stdin; prints a markdown table
and draws throughput and p99 latency against sessions into the PNG named by argv[1]."""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import matplotlib.ticker

rows = [json.loads(line) for line in sys.stdin if line.strip()]
# A point where sessions were refused or failed measured fewer sessions than its label says.
failed = [(r["sessions"], k) for r in rows for k in ("atmos", "opendkim") if r[k].get("errors")]
if failed:
    sys.exit(f"sessions failed at {failed}: the curve would be wrong")
print("| sessions | atmos msgs/s | atmos p99 ms | Postfix + OpenDKIM msgs/s | Postfix + OpenDKIM p99 ms | ratio |")
print("|---|---|---|---|---|---|")
for r in rows:
    a, d = r["atmos"], r["opendkim"]
    ratio = a["msgs_per_sec"] / d["msgs_per_sec"] if d["msgs_per_sec"] else float("inf")
    print(f"| {r['sessions']} | {a['msgs_per_sec']} | {a['p99_ms']} | {d['msgs_per_sec']} | {d['p99_ms']} | {ratio:.2f}x |")
x = [r["sessions"] for r in rows]
fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 7), sharex=True)
for key, label in [("atmos", "atmos (4 signatures)"), ("opendkim", "Postfix + OpenDKIM (4 signatures)")]:
    top.plot(x, [r[key]["msgs_per_sec"] for r in rows], marker="o", label=label)
    bottom.plot(x, [r[key]["p99_ms"] for r in rows], marker="o", label=label)
top.set_ylabel("messages/s accepted")
bottom.set_ylabel("p99 accept latency (ms)")
bottom.set_xlabel("concurrent SMTP sessions")
top.set_xscale("log")
bottom.set_xticks(x)
bottom.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
bottom.minorticks_off()
top.legend()
top.grid(True, alpha=0.3)
bottom.grid(True, alpha=0.3)
fig.suptitle("Mail path: 2 KiB messages, STARTTLS + AUTH, one smtp-sink")
fig.tight_layout()
fig.savefig(sys.argv[1], dpi=100)
print(f"\nplot: {sys.argv[1]}")
