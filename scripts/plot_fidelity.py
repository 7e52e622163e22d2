#!/usr/bin/env python3
"""Plots retrokv-eval fidelity output: median relative attention error vs the share of tokens
attended exactly (steady zone included), one curve per method, over all heads ("all" lines).

usage: plot_fidelity.py FIDELITY.jsonl OUT.png [--title TEXT]
"""
import argparse
import json
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402

STYLE = {
    "wave": ("tab:blue", "o", "-"),
    "wave_no_estimate": ("tab:cyan", "s", "--"),
    "wave_var": ("tab:purple", "o", "-"),
    "flat_topk": ("black", "^", "-"),
    "roargraph_topk": ("tab:green", "v", "-"),
    "quest": ("tab:red", "D", "-"),
}
# Second wave index with small clusters (retrokv-eval fidelity --extra-tokens-per-cluster N).
PREFIX_STYLE = {
    "wave_var_tpc": ("tab:brown", "P", "-"),
    "wave_tpc": ("tab:orange", "P", "--"),
    # Estimation zone from low-bit per-token codes (WaveQuantizedZone, --wave-q-bits).
    "wave_q": ("tab:olive", "X", "-"),
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("jsonl")
    ap.add_argument("png")
    ap.add_argument("--title", default="Attention error vs tokens attended exactly")
    args = ap.parse_args()

    curves = defaultdict(list)
    for line in open(args.jsonl):
        r = json.loads(line)
        if r.get("metric") or r.get("kv_head") != "all" or r.get("layer") != "all":
            continue
        curves[r["method"]].append((r["exact_frac"], r["rel_err_median"], r["rel_err_p99"]))

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharex=True)
    for method, pts in sorted(curves.items()):
        pts.sort()
        x = [100 * p[0] for p in pts]
        style = STYLE.get(method)
        for prefix, st in PREFIX_STYLE.items():
            if style is None and method.startswith(prefix):
                style = st
        colour, marker, ls = style or (None, "*", ":")
        if method.startswith("wave_adaptive"):
            ls = "none"
            marker = "*"
        for ax, k in zip(axes, (1, 2)):
            ax.plot(x, [max(p[k], 1e-6) for p in pts], marker=marker, linestyle=ls, color=colour,
                    label=method, markersize=8 if marker == "*" else 5)
    for ax, what in zip(axes, ("median", "p99")):
        ax.set_yscale("log")
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.set_xlabel("tokens attended exactly (% of context, steady zone included, log scale)")
        ax.set_ylabel(f"{what} relative error ‖o − o_full‖ / ‖o_full‖")
        ax.grid(True, which="both", alpha=0.3)
        ax.axhline(0.01, color="grey", linewidth=0.8, linestyle=":")
    axes[0].legend(fontsize=8)
    fig.suptitle(args.title)
    fig.tight_layout()
    fig.savefig(args.png, dpi=120)


if __name__ == "__main__":
    main()
