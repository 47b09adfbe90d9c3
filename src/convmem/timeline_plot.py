"""PNG picture of an emotion timeline (matplotlib, Agg backend: no display needed).

Top strip: each utterance as a bar over its time span, coloured by its predicted emotion, opacity
the model's probability for it (a pale bar is an unsure prediction), one lane per speaker when the
timeline knows speakers (diarisation or a segments file), in order of first appearance. Bottom strip: the full
probability distribution per utterance, stacked. Gaps are silence (or dropped blips).
"""

from __future__ import annotations

PNG_SOFTWARE = "convmem predict"

from pathlib import Path

# Fixed colours for the known labels, so every plot of the project reads the same way.
LABEL_COLOURS = {"neu": "#9e9e9e", "hap": "#f4b400", "sad": "#4285f4", "ang": "#db4437",
                 "sur": "#ab47bc", "fea": "#00897b", "dis": "#6d4c41"}
_SPARE = ("#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02")


def label_colours(labels) -> dict[str, str]:
    spare = iter(_SPARE * 4)
    return {k: LABEL_COLOURS.get(k) or next(spare) for k in labels}


def plot_timeline(timeline, path: str | Path, title: str | None = None) -> Path:
    """Draw `timeline` (predict.Timeline) to `path` as PNG, written atomically."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    from convmem.fileio import atomic_open

    labels = list(timeline.labels)
    colours = label_colours(labels)
    minutes = timeline.duration > 180
    scale = 60.0 if minutes else 1.0
    unit = "min" if minutes else "s"
    utts = timeline.utterances
    n_lanes = max(1, len({u.speaker for u in timeline.utterances if u.speaker is not None}))
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(12, 3.2 + 0.4 * min(n_lanes, 8)), sharex=True,
                                      gridspec_kw={"height_ratios": [min(1 + 0.4 * (n_lanes - 1), 4), 1.4]})
    try:
        starts = [u.start / scale for u in utts]
        widths = [max((u.end - u.start) / scale, 1e-6) for u in utts]
        lanes = list(dict.fromkeys(u.speaker for u in utts if u.speaker is not None))
        lane = {name: i for i, name in enumerate(lanes)}
        # lane 0 at the top; an utterance without a speaker (mixed timelines) gets its own last lane
        rows = [len(lanes) - 1 - lane[u.speaker] if u.speaker in lane else -1 for u in utts]
        top.bar(starts, [0.8] * len(utts), width=widths, bottom=[r + 0.1 for r in rows], align="edge",
                linewidth=0, color=[_rgba(colours[u.emotion], u.probs[u.emotion]) for u in utts])
        if lanes:
            top.set_yticks([len(lanes) - 1 - i + 0.5 for i in range(len(lanes))], lanes, fontsize=8)
            top.set_ylim(min(rows, default=0), len(lanes))
            top.set_ylabel("speaker")
        else:
            top.set_yticks([])
            top.set_ylabel("emotion")
        bottom_of = [0.0] * len(utts)
        for k in labels:
            heights = [u.probs[k] for u in utts]
            bottom.bar(starts, heights, width=widths, bottom=bottom_of, align="edge", linewidth=0,
                       color=colours[k])
            bottom_of = [b + h for b, h in zip(bottom_of, heights)]
        bottom.set_ylim(0, 1)
        bottom.set_ylabel("probability")
        bottom.set_xlim(0, max(timeline.duration / scale, 1e-3))
        bottom.set_xlabel(f"time ({unit})")
        name = Path(timeline.audio).name if timeline.audio else "audio"
        top.set_title(title or f"{name}: {len(utts)} utterances, memory={timeline.memory}", fontsize=10)
        fig.legend(handles=[Patch(color=colours[k], label=k) for k in labels], loc="upper right",
                   ncol=len(labels), fontsize=8, frameon=False)
        fig.tight_layout(rect=(0, 0, 1, 0.95))
        path = Path(path)
        with atomic_open(path, "wb") as fh:
            # the tag lets a later `convmem predict` tell its own picture from a user's file
            fig.savefig(fh, format="png", dpi=110, metadata={"Software": PNG_SOFTWARE})
    finally:
        plt.close(fig)
    return path


def _rgba(hex_colour: str, alpha: float) -> tuple[float, float, float, float]:
    from matplotlib.colors import to_rgba

    r, g, b, _ = to_rgba(hex_colour)
    return (r, g, b, 0.25 + 0.75 * float(min(max(alpha, 0.0), 1.0)))
