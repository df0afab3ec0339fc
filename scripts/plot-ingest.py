#!/usr/bin/env python3
"""Draws the ingest benchmark (target/bench/ingest.json, written by `cargo bench --bench edge`):
requests per second per body size for edgehook, the reference worker and the enqueue-only
ceiling, as a PNG.

usage: plot-ingest.py INGEST_JSON OUT_PNG [MACHINE]
"""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

results = json.load(open(sys.argv[1]))
out = sys.argv[2]
machine = sys.argv[3] if len(sys.argv) > 3 else ""
sizes = []
for r in results:
    if r["size"] not in sizes:
        sizes.append(r["size"])
receivers = ["edgehook", "reference", "enqueue-only ceiling"]
colors = {"edgehook": "#d9480f", "reference": "#1864ab", "enqueue-only ceiling": "#868e96"}

fig, ax = plt.subplots(figsize=(8, 4.5), dpi=120)
width = 0.26
for i, receiver in enumerate(receivers):
    values = [next((r["rps"] for r in results if r["size"] == s and r["receiver"] == receiver), 0) for s in sizes]
    xs = [x + (i - 1) * width for x in range(len(sizes))]
    bars = ax.bar(xs, values, width, label=receiver, color=colors[receiver])
    for bar, value in zip(bars, values):
        x = bar.get_x() + bar.get_width() / 2
        if value > 0:
            ax.annotate(f"{value:.0f}", (x, value), ha="center", va="bottom", fontsize=8)
        else:
            # Nothing accepted (the reference cannot queue a body over 128 KB): say so.
            ax.annotate("none\naccepted", (x, 0), xycoords=("data", "axes fraction"), xytext=(0, 4),
                        textcoords="offset points", ha="center", va="bottom", fontsize=7, color=colors[receiver])
ax.set_yscale("log")
ax.set_xticks(range(len(sizes)))
ax.set_xticklabels([f"{s} bodies" for s in sizes])
ax.set_ylabel("accepted requests per second (log scale)")
ax.set_title("Ingest under wrangler dev: wrk, 2 threads, 32 connections, distinct signed Stripe events", fontsize=9)
ax.legend(loc="upper right")
if machine:
    fig.text(0.01, 0.01, machine, fontsize=7, color="#666")
fig.tight_layout()
fig.savefig(out)
print(f"wrote {out}")
