#!/usr/bin/env python3
"""Plots the soak's samples (CSV: t,rss_kib,fds,queue,p99_ms,sent) into one PNG.

usage: plot_soak.py SAMPLES.csv OUT.png
"""
import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

rows = list(csv.DictReader(open(sys.argv[1])))
t = [float(r["t"]) / 60 for r in rows]
series = [
    ("rss_kib", "RSS (MiB)", lambda v: float(v) / 1024),
    ("fds", "open file descriptors", float),
    ("queue", "queue depth (recipients)", float),
    ("p99_ms", "p99 accept latency (ms)", float),
]
fig, axes = plt.subplots(len(series), 1, figsize=(9, 10), sharex=True)
for ax, (key, label, conv) in zip(axes, series):
    ax.plot(t, [conv(r[key]) for r in rows], marker=".")
    ax.set_ylabel(label)
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
axes[-1].set_xlabel("minutes")
fig.suptitle("atmos soak")
fig.tight_layout()
fig.savefig(sys.argv[2], dpi=90)
