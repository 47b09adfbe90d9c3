"""Process rank and world size under `accelerate launch` (1 process otherwise), without
importing accelerate in the single-process case.

Several CPU processes (gloo): `ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes P
...` (torchrun starts them; the variable keeps them on the CPU, even beside a GPU). Plain
`accelerate launch --cpu --num_processes P` starts ONE process unless it is given an mpirun
hostfile.
"""

from __future__ import annotations

import os


def dist_info() -> tuple[int, int]:
    """(rank, world size) from the environment `accelerate launch` / torchrun sets."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    state = process_state()
    return state.process_index, state.num_processes


def process_state():
    """Accelerate's process state, made as `Accelerator()` makes it. A bare `PartialState()` ignores
    ACCELERATE_USE_CPU, so on a machine without a GPU it would see no distributed setup and every
    process would believe it is the only one (all of them writing every file)."""
    from accelerate.state import PartialState
    from accelerate.utils import parse_flag_from_env

    return PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))
