"""PNG figures drawn from a results object (results.json), never from live model state.

Drawn with matplotlib's object API on the Agg canvas (no pyplot, no display, no global state), so
it is safe in tests, on servers and in threads. File names are stable (PLOT_FILES) so reports and
other tools can link them. Every figure's title names corpus, folds, seeds and n.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from convmem.fileio import atomic_open

PLOT_FILES = {
    "accuracy_vs_history": "plots/accuracy_vs_history.png",
    "per_class_f1": "plots/per_class_f1.png",
    "confusion": "plots/confusion.png",
    "write_loss_by_position": "plots/write_loss_by_position.png",
}
PLOT_BUCKET = "all"  # per-class and confusion figures count every scored utterance


def run_description(results: dict) -> str:
    """One line naming corpus, folds, seeds and n_limit of a results object (and the sessions a
    validation study never read, meta "excluded_sessions")."""
    meta = results["meta"]

    def listed(v):
        return ",".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v)

    excluded = meta.get("excluded_sessions")
    return (f"{meta['corpus']} | folds {listed(meta['folds'])} | seeds {listed(meta['seeds'])} | "
            f"n_limit {meta['n_limit']}" + (f" | sessions never read: {listed(excluded)}" if excluded else ""))


def _save(fig: Figure, path: Path) -> None:
    FigureCanvasAgg(fig)
    with atomic_open(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=110)


def write_plots(results: dict, out_dir: str | Path) -> dict[str, str]:
    """Draw every figure the results support into `out_dir`/plots.

    Returns {name: path relative to out_dir} for the figures written. The write-loss figure is
    drawn only when some method recorded write losses (a stale one from an earlier run is removed).
    """
    out_dir = Path(out_dir)
    written = {}
    for name, draw in (("accuracy_vs_history", _accuracy_vs_history), ("per_class_f1", _per_class_f1),
                       ("confusion", _confusion), ("write_loss_by_position", _write_loss)):
        path = out_dir / PLOT_FILES[name]
        fig = draw(results)
        if fig is None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            continue
        _save(fig, path)
        written[name] = PLOT_FILES[name]
    return written


def _bin_labels(edges: list[int]) -> list[str]:
    return [f"{lo}-{hi - 1}" for lo, hi in zip(edges, edges[1:])]


def _accuracy_vs_history(results: dict) -> Figure:
    curve = results["curves"]["accuracy_vs_history"]
    edges, methods = curve["bin_edges"], curve["methods"]
    x = np.arange(len(edges) - 1)
    fig = Figure(figsize=(max(6.0, 1.1 * len(x) + 3), 4.5), layout="constrained")
    ax = fig.add_subplot()
    for k, (m, row) in enumerate(methods.items()):
        wa = np.array([np.nan if v is None else v for v in row["wa"]])
        lo = np.array([np.nan if c is None else c[0] for c in row["ci"]])
        hi = np.array([np.nan if c is None else c[1] for c in row["ci"]])
        shift = (k - (len(methods) - 1) / 2) * 0.04  # keep error bars of methods apart
        ax.errorbar(x + shift, wa, yerr=[np.nan_to_num(wa - lo), np.nan_to_num(hi - wa)], marker="o",
                    capsize=3, label=m)
    n_per_bin = [max(row["n"][i] for row in methods.values()) for i in range(len(x))]
    ax.set_xticks(x, [f"{lab}\nn={n}" for lab, n in zip(_bin_labels(edges), n_per_bin)], fontsize=8)
    n_limit = results["meta"].get("n_limit")
    if n_limit:
        # The bin whose lower edge is n_limit starts the histories that no longer fit the window.
        if n_limit in edges[:-1]:
            ax.axvline(edges.index(n_limit) - 0.5, color="grey", ls="--", lw=1)
            ax.text(edges.index(n_limit) - 0.45, 0.02, "history >= n_limit", color="grey", fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_xlabel("history before the utterance (tokens); n = utterances per bin and method")
    ax.set_ylabel("accuracy (WA), 95% CI over dialogues")
    ax.set_title(f"Accuracy vs history length\n{run_description(results)}", fontsize=10)
    fig.legend(fontsize=8, loc="outside right upper")
    ax.grid(alpha=0.3)
    return fig


def _per_class_f1(results: dict) -> Figure:
    labels, methods = results["labels"], results["methods"]
    width = 0.8 / max(1, len(methods))
    fig = Figure(figsize=(max(6.0, 1.5 * len(labels) + 2), 4.5), layout="constrained")
    ax = fig.add_subplot()
    x = np.arange(len(labels))
    for k, (m, block) in enumerate(methods.items()):
        pc = block["buckets"][PLOT_BUCKET]["per_class"]
        f1 = [np.nan if pc[lab]["f1"] is None else pc[lab]["f1"] for lab in labels]
        ax.bar(x + (k - (len(methods) - 1) / 2) * width, f1, width, label=f"{m} (n={block['buckets'][PLOT_BUCKET]['n']})")
    support = next(iter(methods.values()))["buckets"][PLOT_BUCKET]["per_class"]
    ax.set_xticks(x, [f"{lab}\nsupport={support[lab]['support']}" for lab in labels])
    ax.set_ylim(0, 1)
    ax.set_ylabel("F1 (all scored utterances)")
    ax.set_title(f"Per-class F1\n{run_description(results)}", fontsize=10)
    fig.legend(fontsize=8, loc="outside right upper")
    ax.grid(axis="y", alpha=0.3)
    return fig


def _confusion(results: dict) -> Figure:
    labels, methods = results["labels"], results["methods"]
    cols = min(4, len(methods))
    rows = -(-len(methods) // cols)
    fig = Figure(figsize=(3.2 * cols + 0.5, 3.2 * rows + 0.8), layout="constrained")
    for k, (m, block) in enumerate(methods.items()):
        ax = fig.add_subplot(rows, cols, k + 1)
        conf = np.asarray(block["buckets"][PLOT_BUCKET]["confusion"], dtype=float)
        support = conf.sum(axis=1, keepdims=True)
        # Row-normalised colour (recall per gold class), raw counts written in the cells.
        rate = np.divide(conf, support, out=np.zeros_like(conf), where=support > 0)
        ax.imshow(rate, vmin=0, vmax=1, cmap="Blues")
        for i in range(len(labels)):
            for j in range(len(labels)):
                ax.text(j, i, int(conf[i, j]), ha="center", va="center", fontsize=8,
                        color="white" if rate[i, j] > 0.6 else "black")
        ax.set_xticks(range(len(labels)), labels, fontsize=8)
        ax.set_yticks(range(len(labels)), labels, fontsize=8)
        ax.set_title(f"{m} (n={int(conf.sum())})", fontsize=9)
        ax.set_xlabel("predicted", fontsize=8)
        if k % cols == 0:
            ax.set_ylabel("gold", fontsize=8)
    fig.suptitle(f"Confusion matrices, all scored utterances (colour: row share)\n{run_description(results)}",
                 fontsize=10)
    return fig


def _write_loss(results: dict) -> Figure | None:
    curves = results["curves"]["write_loss_by_position"]
    if not curves:
        return None
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.add_subplot()
    for m, row in curves.items():
        pos = np.asarray(row["position"])
        mean = np.asarray(row["mean"])
        sd = np.array([0.0 if s is None else s for s in row["sd"]])
        ax.plot(pos, mean, marker=".", label=f"{m} (n={sum(row['n'])} writes)")
        ax.fill_between(pos, mean - sd, mean + sd, alpha=0.2)
    ax.set_xlabel("utterance position in dialogue (0-based)")
    ax.set_ylabel("memory write loss, mean +/- sd over dialogues")
    ax.set_title(f"Memory write loss by utterance position\n{run_description(results)}", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig
