"""Stopping child processes the harness started."""

import ctypes
import signal
import subprocess
from pathlib import Path

from .wait import wait_for


def die_with_parent():
    """In the child before exec: have Linux SIGTERM it if the test process dies without
    running its teardown (e.g. killed by a CI timeout)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def stop_process(proc, timeout=5.0):
    """SIGCONT (a stopped process cannot act on SIGTERM), SIGTERM, then SIGKILL. Safe to call
    more than once."""
    if proc is None or proc.poll() is not None:
        return
    try:
        proc.send_signal(signal.SIGCONT)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout)
    except ProcessLookupError:
        pass


def thread_states(pid) -> list:
    """The state letter of every thread of process ``pid`` (``/proc/<pid>/task/*/stat``)."""
    states = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except FileNotFoundError:  # a thread that just ended
            continue
        states.append(stat.rsplit(")", 1)[1].split()[0])
    return states


def pause_process(proc, timeout=10.0):
    """SIGSTOP, and return once every thread of the process has stopped.

    A group stop is carried out by the process's own threads: the one that takes the signal
    tells the others when it next runs. On a busy machine that can take tens of milliseconds,
    and meanwhile a thread that was already runnable goes on working (seen: a rate-limit
    service answered two calls 60 ms after SIGSTOP had been sent)."""
    proc.send_signal(signal.SIGSTOP)
    wait_for(lambda: all(state in ("T", "t") for state in thread_states(proc.pid)),
             timeout=timeout, interval=0.005,
             message=lambda: f"every thread of process {proc.pid} to stop "
                             f"(states {thread_states(proc.pid)})")
