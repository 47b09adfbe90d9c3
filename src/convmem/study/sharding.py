"""Evaluation across processes (`accelerate launch`): rank r takes dialogues r, r+W, ...; each
writes its shard, and the main process merges them in dialogue order, so the merged predictions
equal a single process's."""

from __future__ import annotations

import functools
import json
from pathlib import Path

from convmem.fileio import atomic_write_json


def write_shard(path: Path, rows: list[dict], cost: dict, rank: int, world: int) -> None:
    """Write this process's rows and cost; with several processes, rank 0 merges every shard into
    `path` and removes them (all ranks wait for it)."""
    if world == 1:
        atomic_write_json(path, {"rows": rows, "cost": cost}, indent=None)
        return
    shard = path.with_name(f"{path.stem}.rank{rank}of{world}.json")
    atomic_write_json(shard, {"rows": rows, "cost": cost}, indent=None)
    barrier(world)
    if rank == 0:
        parts = [json.loads(path.with_name(f"{path.stem}.rank{r}of{world}.json").read_text()) for r in range(world)]
        merged = merge_shards([p["rows"] for p in parts])
        total = {"seconds": max(p["cost"]["seconds"] for p in parts),
                 "utterances": sum(p["cost"]["utterances"] for p in parts),
                 "audio_seconds": sum(p["cost"]["audio_seconds"] for p in parts), "processes": world}
        for key in SUMMED_COSTS:
            if any(key in p["cost"] for p in parts):
                total[key] = functools.reduce(functools.partial(merge_sums, key),
                                              (p["cost"].get(key) for p in parts), None)
        atomic_write_json(path, {"rows": merged, "cost": total}, indent=None)
        for r in range(world):
            path.with_name(f"{path.stem}.rank{r}of{world}.json").unlink()
    barrier(world)


# Diagnostics a method's cost carries as sums, so shards and folds add up: cost key -> the module
# whose `merge(a, b)` adds two of them (imported when needed: the MAL probe's imports torch).
SUMMED_COSTS = {"mal_probe": "convmem.memory.mal_probe", "dpm_writes": "convmem.memory.dpm_writes"}


def merge_sums(key: str, a: dict | None, b: dict | None) -> dict | None:
    """Two of cost key `key`'s sums added (None is the empty one)."""
    import importlib

    return importlib.import_module(SUMMED_COSTS[key]).merge(a, b)


def merge_shards(shards: list[list[dict]]) -> list[dict]:
    """Interleave rank-strided shards back into dialogue order (rank r held dialogues r, r+W, ...)."""
    by_rank = []
    for rows in shards:
        dialogues: list[list[dict]] = []
        for row in rows:
            if not dialogues or dialogues[-1][0]["dialogue"] != row["dialogue"]:
                dialogues.append([])
            dialogues[-1].append(row)
        by_rank.append(dialogues)
    merged = []
    for i in range(max((len(d) for d in by_rank), default=0)):
        for dialogues in by_rank:
            if i < len(dialogues):
                merged.extend(dialogues[i])
    return merged


def barrier(world: int) -> None:
    """Wait for every process (a no-op in a single process)."""
    if world > 1:
        from convmem.parallel import process_state

        process_state().wait_for_everyone()
