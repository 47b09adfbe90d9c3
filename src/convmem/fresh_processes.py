"""Run each job in a new process, at most `workers` at once, and fail loudly when one dies.

Why not `multiprocessing.Pool`: when a worker dies without answering (a crash inside eSpeak NG's C
library, the OOM killer, a script that starts workers without an `if __name__ == "__main__"`
guard) the pool starts a replacement and the parent waits for the lost result forever.
`concurrent.futures.ProcessPoolExecutor` raises `BrokenProcessPool` instead, but a fresh process
per job needs its `max_tasks_per_child`, which can deadlock on Python 3.11 (cpython gh-115634,
fixed only in 3.14). The synthetic corpus needs a fresh process per dialogue because eSpeak NG keeps
hidden global state between calls (same seed, same bytes, whatever the scheduling), so this module
starts one process per job itself: each child sends one message back through its own pipe, and a
pipe that closes without a message is a process that died, reported with the job's name and the
exit code or signal.

Interrupts belong to the parent. Ctrl-C reaches every process of the terminal's group, and a
worker that took it would print its own KeyboardInterrupt traceback (from inside eSpeak's audio
callback, say) under the parent's one-line message; so workers ignore SIGINT and the parent,
unwinding, terminates them. A parent killed outright (SIGKILL) leaves its workers to finish their
job and find nobody listening: they then exit quietly instead of printing a BrokenPipeError.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import traceback
from collections.abc import Callable, Iterable, Iterator
from multiprocessing.connection import Connection, wait
from typing import Any

from convmem.errors import ConvmemError


class JobFailed(ConvmemError, RuntimeError):
    """A job's process died before answering (or raised something that does not pickle); the
    message names the job."""


def _child(fn: Callable[[Any], Any], job: Any, conn: Connection) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # see the module doc: the parent handles it
    try:
        result = fn(job)
    except BaseException as exc:  # noqa: BLE001 - everything goes back to the parent
        text = traceback.format_exc()
        message = ("error", exc, text)
    else:
        message = ("ok", result)
    try:
        try:
            conn.send(message)
        except (BrokenPipeError, ConnectionResetError):
            raise
        except Exception:  # noqa: BLE001 - an exception that does not pickle travels as text
            conn.send(("error", None, message[2] if message[0] == "error" else traceback.format_exc()))
    except (BrokenPipeError, ConnectionResetError):
        # the parent is gone (killed, or stopped waiting): nobody to tell, nothing to print
        os._exit(1)
    finally:
        conn.close()


def _died(proc: mp.process.BaseProcess) -> str:
    proc.join(timeout=10)
    code = proc.exitcode
    if code is None:
        return "its process stopped answering"
    if code < 0:
        return f"its process was killed by signal {-code}"
    return f"its process exited with code {code} before sending a result"


def imap_fresh(fn: Callable[[Any], Any], jobs: Iterable[Any], *, workers: int,
               context: mp.context.BaseContext | None = None,
               describe: Callable[[int, Any], str] = lambda i, job: f"job {i}") -> Iterator[Any]:
    """Yield `fn(job)` for every job, in the jobs' order, each computed in a process of its own.

    `fn` and every job must pickle (a top-level function) unless `context` is "fork". At most
    `workers` processes run at once. The first job that raises re-raises its exception here, with a
    note naming the job (`describe(index, job)`) and the worker's traceback (`JobFailed` carrying
    both if the exception does not pickle); a job whose process dies raises `JobFailed` naming it.
    The other running processes are then terminated, as they are when the caller stops early.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    ctx = context or mp.get_context("forkserver")
    todo = list(enumerate(jobs))[::-1]
    running: dict[Connection, tuple[int, Any, mp.process.BaseProcess]] = {}
    finished: dict[int, Any] = {}
    next_out = 0
    try:
        while todo or running:
            while todo and len(running) < workers:
                i, job = todo.pop()
                reader, writer = ctx.Pipe(duplex=False)
                proc = ctx.Process(target=_child, args=(fn, job, writer), daemon=True)
                proc.start()
                writer.close()  # the child's copy is then the only writer: EOF means it is gone
                running[reader] = (i, job, proc)
            for reader in wait(list(running)):
                i, job, proc = running.pop(reader)
                try:
                    message = reader.recv()
                except EOFError:
                    raise JobFailed(f"{describe(i, job)} failed: {_died(proc)}") from None
                finally:
                    reader.close()
                proc.join()
                if message[0] == "error":
                    _, exc, text = message
                    where = f"{describe(i, job)} failed"
                    if exc is None:
                        raise JobFailed(f"{where}; traceback in the worker:\n{text}")
                    # A user-facing error keeps its one-line form (the CLI prints notes under it).
                    exc.add_note(f"({where})" if isinstance(exc, ConvmemError)
                                 else f"({where}; traceback in the worker:\n{text})")
                    raise exc
                finished[i] = message[1]
            while next_out in finished:
                yield finished.pop(next_out)
                next_out += 1
    finally:
        for reader, (_, _, proc) in running.items():
            if proc.is_alive():
                proc.terminate()
            proc.join(timeout=10)
            reader.close()
