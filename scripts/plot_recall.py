#!/usr/bin/python3
"""Plot recall@k vs the fraction of keys scanned (log x), one curve per index, from the JSON
lines that `retrokv-eval recall` writes (issue 4). Uses the aggregate rows (kv_head "all").

usage: plot_recall.py RESULTS.jsonl OUT.png [--k 100] [--title TEXT] [--at 0.95,0.99]

--at prints, per curve, the fraction of keys scanned at each target recall, linearly
interpolated between the two sweep points (sorted by fraction scanned) that bracket it: the
figure the docs/results.md tables quote.
"""
import argparse
import json
import sys
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

STYLE = {
    "roargraph": ("tab:red", "o"),
    "hnswlib": ("tab:blue", "s"),
    "ivf": ("tab:green", "^"),
    "faiss_ivf": ("tab:olive", "v"),
    "flat": ("black", "*"),
}
# RoarGraph variants (warm start, recent-token seeds): dashed, colours unused above.
VARIANT_COLORS = ["tab:purple", "tab:orange", "tab:cyan", "tab:pink", "tab:brown", "tab:gray"]


def scanned_at(xy, target):
    """Fraction scanned where the sweep (points by fraction scanned) first reaches `target` recall,
    linear between the bracketing points; None when it never does."""
    prev = None
    for x, y in xy:
        if y >= target:
            if prev is None or prev[1] >= y:
                return x
            px, py = prev
            return px + (x - px) * (target - py) / (y - py)
        prev = (x, y)
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results")
    ap.add_argument("out")
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--title", default=None)
    ap.add_argument("--at", default=None, help="comma-separated target recalls to print")
    a = ap.parse_args()

    rows = []
    with open(a.results) as f:
        for line in f:
            line = line.strip()
            if line:
                rows.append(json.loads(line))
    pts = [r for r in rows if r.get("k") == a.k and "recall" in r]
    # Traces: use the aggregate over heads when present; synthetic runs have only "all".
    if any(r.get("kv_head") == "all" for r in pts):
        pts = [r for r in pts if r.get("kv_head") == "all"]
    if not pts:
        sys.exit(f"plot_recall.py: no rows with k = {a.k} in {a.results}")
    curves = defaultdict(list)
    for r in pts:
        curves[r["index"]].append((r["keys_scanned_frac"], r["recall"]))
    if a.at:
        targets = [float(t) for t in a.at.split(",")]
        for name, xy in sorted(curves.items()):
            # Sweep order = increasing work: scanned fraction (param order for every index).
            got = [scanned_at(sorted(xy), t) for t in targets]
            best = max(y for _, y in xy)
            cells = [f"{g:.4f}" if g is not None else f"not reached (max {best:.3f})" for g in got]
            print(f"k={a.k} {name:32s} " + "  ".join(f"@{t}: {c}" for t, c in zip(targets, cells)))

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    variants = sorted(n for n in curves if n.startswith("roargraph_"))
    for name, xy in sorted(curves.items()):
        xy.sort()
        color, marker = STYLE.get(name, (None, "."))
        ls = "-"
        if name.startswith("roargraph_"):
            # Warm-start / recent-seed variants of RoarGraph: same marker, dashed, own colour.
            color = VARIANT_COLORS[variants.index(name) % len(VARIANT_COLORS)]
            marker, ls = "o", "--"
        ax.plot(
            [x for x, _ in xy],
            [y for _, y in xy],
            marker=marker,
            color=color,
            ls=ls,
            ms=4,
            label=name,
        )
    ax.set_xscale("log")
    ax.set_xlabel("fraction of keys scanned (log)")
    ax.set_ylabel(f"recall@{a.k}")
    ax.axhline(0.95, color="gray", lw=0.8, ls="--")
    n = pts[0].get("n")
    ax.set_title(a.title or f"recall@{a.k} vs keys scanned (n = {n})")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(a.out, dpi=120)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
