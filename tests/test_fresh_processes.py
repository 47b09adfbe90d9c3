"""imap_fresh: one new process per job, results in order, a dying or raising job named, never a hang."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from convmem.fresh_processes import JobFailed, imap_fresh


def _square_and_pid(x: int) -> tuple[int, int]:
    time.sleep(0.05 * (x % 3))  # finish out of order
    return x * x, os.getpid()


def _misbehave(job: tuple[str, int]) -> int:
    how, x = job
    if how == "exit":
        os._exit(3)
    if how == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if how == "raise":
        raise ValueError(f"bad input {x}")
    return x


def _write_pid_then_sleep(job: tuple[str, int]) -> int:
    folder, x = job
    if x == 0:
        return 0
    Path(folder, f"{x}.pid").write_text(str(os.getpid()))
    time.sleep(60)
    return x


@pytest.fixture(autouse=True)
def _no_hang():
    """A hang is the bug these tests are about: fail after 60 s instead of waiting forever."""
    def _timeout(*_):
        raise TimeoutError("imap_fresh hung")
    old = signal.signal(signal.SIGALRM, _timeout)
    signal.alarm(60)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def test_results_in_order_each_job_in_its_own_process():
    out = list(imap_fresh(_square_and_pid, range(7), workers=3))
    assert [v for v, _ in out] == [x * x for x in range(7)]
    pids = [p for _, p in out]
    assert len(set(pids)) == 7 and os.getpid() not in pids


@pytest.mark.parametrize("how, expected", [("exit", "exited with code 3 before sending a result"),
                                           ("kill", "killed by signal 9")])
def test_a_process_that_dies_is_named_not_waited_for(how, expected):
    jobs = [("ok", 0), ("ok", 1), (how, 2), ("ok", 3)]
    with pytest.raises(JobFailed) as err:
        list(imap_fresh(_misbehave, jobs, workers=2, describe=lambda i, job: f"dialogue D{i:02d}"))
    assert str(err.value).startswith("dialogue D02 failed: ") and expected in str(err.value)


class _Unpicklable(Exception):
    def __reduce__(self):
        raise TypeError("no pickling")


def _raise_unpicklable(_):
    raise _Unpicklable("odd")


def test_a_raising_job_reraises_its_exception_naming_the_job():
    with pytest.raises(ValueError, match="bad input 7") as err:
        list(imap_fresh(_misbehave, [("ok", 0), ("raise", 7)], workers=1))
    note = "\n".join(err.value.__notes__)
    assert note.startswith("(job 1 failed; traceback in the worker:") and "_misbehave" in note


def test_an_exception_that_does_not_pickle_arrives_as_text():
    with pytest.raises(JobFailed, match="job 0 failed; traceback in the worker:") as err:
        list(imap_fresh(_raise_unpicklable, [0], workers=1))
    assert "_Unpicklable: odd" in str(err.value)


def test_results_before_a_failure_are_delivered():
    got = []
    with pytest.raises(JobFailed):
        for v in imap_fresh(_misbehave, [("ok", 5), ("ok", 6), ("exit", 0)], workers=1):
            got.append(v)
    assert got == [5, 6]


def test_stopping_early_terminates_the_running_processes(tmp_path):
    it = imap_fresh(_write_pid_then_sleep, [(str(tmp_path), x) for x in range(3)], workers=3)
    assert next(it) == 0
    deadline = time.time() + 30
    while len(list(tmp_path.glob("*.pid"))) < 2 and time.time() < deadline:
        time.sleep(0.05)
    pids = [int(p.read_text()) for p in tmp_path.glob("*.pid")]
    assert len(pids) == 2
    it.close()
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_workers_must_be_positive():
    with pytest.raises(ValueError, match="workers must be >= 1"):
        list(imap_fresh(_square_and_pid, [1], workers=0))


_ORPHAN_SCRIPT = """
import os, signal, sys, threading, time
from convmem.fresh_processes import imap_fresh
from tests.test_fresh_processes import _sleep_then_return

threading.Timer(1.0, lambda: os.kill(os.getpid(), signal.SIGKILL)).start()
list(imap_fresh(_sleep_then_return, [2.0, 2.0], workers=2))
"""


def _sleep_then_return(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def test_workers_of_a_killed_parent_exit_quietly():
    """The parent dies (SIGKILL) while its workers run: they finish, find nobody listening and
    exit without a BrokenPipeError traceback on the terminal they share with it."""
    import subprocess
    import sys

    import convmem

    root, src = Path(__file__).resolve().parents[1], Path(convmem.__file__).resolve().parents[1]
    proc = subprocess.Popen([sys.executable, "-c", _ORPHAN_SCRIPT], cwd=root, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join([str(src), str(root)])})
    out = proc.stdout.read()  # EOF only once the workers, which share the pipe, are gone too
    assert proc.wait() == -signal.SIGKILL
    assert "Traceback" not in out and "BrokenPipeError" not in out, out
