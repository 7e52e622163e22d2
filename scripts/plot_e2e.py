#!/usr/bin/python3
"""Plot what `retrokv-eval e2e` measured (issue 7): per backend, teacher-forced greedy agreement
with full attention against the share of the context attended exactly (left), and the decode
attention time per token next to full attention's (right). Also prints the short table.

usage: plot_e2e.py RESULTS.jsonl OUT.png [--title TEXT]
"""
import argparse
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

STYLE = {
    "full": ("black", "*"),
    "full_store": ("dimgray", "*"),
    "flat_topk": ("tab:gray", "s"),
    "roar_graph": ("tab:red", "o"),
    "wave": ("tab:blue", "D"),
    "quest": ("tab:green", "^"),
}


def label(r, multi_budget):
    if multi_budget and not r["backend"].startswith("full"):
        return f"{r['backend']} @{r['budget']:g}"
    return r["backend"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results")
    ap.add_argument("out")
    ap.add_argument("--title", default=None)
    a = ap.parse_args()

    rows = []
    with open(a.results) as f:
        for line in f:
            line = line.strip()
            if line:
                rows.append(json.loads(line))
    rows = [r for r in rows if "agreement" in r]
    if not rows:
        sys.exit(f"plot_e2e.py: no e2e rows in {a.results}")
    multi = len({r["budget"] for r in rows if not r["backend"].startswith("full")}) > 1

    print(f"{'backend':<18} {'agreement':>9} {'exact %':>8} {'decode tok/s':>12} {'attn ms/tok':>11}")
    for r in rows:
        print(f"{label(r, multi):<18} {r['agreement']:9.4f} {100 * r['exact_frac']:8.2f} "
              f"{r['decode_tokens_per_s']:12.2f} {r.get('attention_ms_per_token', float('nan')):11.2f}")

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for r in rows:
        if r["backend"].startswith("full"):  # exact: 100% of the context, agreement 1
            continue
        color, marker = STYLE.get(r["backend"], ("tab:purple", "x"))
        # flat_topk (the exact top-k oracle) hollow and larger, so a backend that selects the
        # same tokens (same point) stays visible inside it.
        hollow = r["backend"] == "flat_topk"
        ax1.scatter(100 * r["exact_frac"], r["agreement"], marker=marker, s=140 if hollow else 50,
                    facecolors="none" if hollow else color, edgecolors=color,
                    label=label(r, multi))
    ax1.axhline(0.99, color="black", lw=0.8, ls="--")
    ax1.axvline(5.0, color="black", lw=0.8, ls=":")
    ax1.text(5.0, ax1.get_ylim()[0], " 5% exact", va="bottom", fontsize=8)
    ax1.set_xlabel("context attended exactly (%)")
    ax1.set_ylabel("teacher-forced greedy agreement with full")
    ax1.set_title("fidelity vs exact share (target: >= 0.99 at <= 5%)", fontsize=10)
    ax1.grid(alpha=0.3)
    ax1.legend(fontsize=8, loc="best")

    names = [label(r, multi) for r in rows]
    ms = [r.get("attention_ms_per_token", 0.0) for r in rows]
    colors = [STYLE.get(r["backend"], ("tab:purple", "x"))[0] for r in rows]
    bars = ax2.bar(range(len(rows)), ms, color=colors)
    for b, r in zip(bars, rows):
        ax2.text(b.get_x() + b.get_width() / 2, b.get_height(),
                 f"{r['decode_tokens_per_s']:.1f} tok/s", ha="center", va="bottom", fontsize=7)
    ax2.set_xticks(range(len(rows)))
    ax2.set_xticklabels(names, rotation=30, ha="right", fontsize=8)
    ax2.set_ylabel("decode attention ms / token (all layers)")
    ax2.set_title("decode attention time (labels: whole-model decode tok/s)", fontsize=10)
    ax2.grid(alpha=0.3, axis="y")

    full = next((r for r in rows if r["backend"] == "full"), rows[0])
    title = a.title or (f"SmolLM2-135M, {full['prompt_tokens']} prompt tokens, "
                        f"{full['new_tokens']} new tokens")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(a.out, dpi=120)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
