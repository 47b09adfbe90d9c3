"""Starting a command as 2 CPU processes under `accelerate launch` (gloo), for the tests of
multi-process training and evaluation.

Not `accelerate launch --cpu --num_processes 2`: without an mpirun hostfile that starts ONE
process (accelerate's simple launcher), so a test comparing it with a 1-process run passes
whatever the multi-process code does. `--multi_gpu` starts them through torchrun, and
ACCELERATE_USE_CPU (`ENV`) keeps them on the CPU even on a machine with a GPU.
"""

from __future__ import annotations

import socket
import sys

ENV = {"ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}


def two_process_launch(*args: str) -> list[str]:
    """The command line running `args` (a script and its arguments, or `-m module ...`) as 2
    processes on a free port (a fixed one would collide with any other run on the machine);
    run it with `ENV` added to the environment."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
            "--num_machines", "1", "--main_process_port", str(port), "--mixed_precision", "no",
            "--dynamo_backend", "no", *args]
