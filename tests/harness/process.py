"""Stopping child processes the harness started."""

import ctypes
import signal
import subprocess


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
