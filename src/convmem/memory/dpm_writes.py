"""How often a DPM pass wrote, for the report: utterances read, utterances that could be written,
utterances written and optimizer steps taken, summed over every write call of an evaluation pass.

A `WriteTally` is attached to a `DPMMemory` (`memory.write_tally = WriteTally()`) for the pass.
The per-row counters of `DPMState` are reset with each new conversation, so they cannot give a
study's totals; the tally outlives the rows. Sums, not rates, so the shards of a sharded
evaluation add up (`merge`); `rates` turns them into the report's figures. Diagnostics only:
nothing here changes a prediction. Kept free of torch: the report reads it.
"""

from __future__ import annotations

KEYS = ("utterances", "eligible", "written", "steps")


class WriteTally:
    """Running sums of one DPM pass's writes.

    utterances: utterances read (every active row of every write call); eligible: those with
    something before them (not the dialogue's first), the ones a write could memorise; written:
    eligible utterances whose write stepped the temporary LoRA; steps: optimizer steps taken
    (chunks x steps_per_write per written utterance).
    """

    def __init__(self) -> None:
        self.counts = dict.fromkeys(KEYS, 0)

    def add(self, utterances: int, eligible: int, written: int, steps: int) -> None:
        """Add one write call's counts (Python ints)."""
        for key, n in zip(KEYS, (utterances, eligible, written, steps)):
            self.counts[key] += int(n)

    def sums(self) -> dict:
        """{"utterances", "eligible", "written", "steps"}: ints (JSON-ready)."""
        return dict(self.counts)


def merge(a: dict | None, b: dict | None) -> dict | None:
    """Sum of two `WriteTally.sums()` (None is the empty one)."""
    if a is None or b is None:
        return a if b is None else b
    return {k: a[k] + b[k] for k in KEYS}


def rates(sums: dict) -> dict:
    """`sums` plus "rate": written / eligible (None when nothing was eligible). Sentence stepping
    writes every eligible utterance (rate 1.0); a gate that never closes shows 1.0 as well."""
    return {**{k: int(sums[k]) for k in KEYS},
            "rate": sums["written"] / sums["eligible"] if sums["eligible"] else None}


__all__ = ["KEYS", "WriteTally", "merge", "rates"]
