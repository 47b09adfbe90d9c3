"""Process rank and world size under `accelerate launch` (1 process otherwise), without
importing accelerate in the single-process case."""

from __future__ import annotations

import os


def dist_info() -> tuple[int, int]:
    """(rank, world size) from the environment `accelerate launch` / torchrun sets."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    from accelerate import PartialState

    state = PartialState()
    return state.process_index, state.num_processes
