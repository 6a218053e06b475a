"""Polling: the only way tests synchronise with Envoy (never a fixed sleep)."""

import time


class WaitTimeout(AssertionError):
    """A condition did not become true in time (an AssertionError so pytest shows it as a
    test failure with our message)."""


def wait_for(predicate, *, timeout=10.0, interval=0.05, message="condition"):
    """Call ``predicate`` until it returns a truthy value and return that value.

    Exceptions raised by the predicate count as "not yet"; the last one is reported if the
    deadline passes. ``message`` may be a string or a callable returning one (evaluated only on
    timeout, so it can describe the latest state)."""
    deadline = time.monotonic() + timeout
    last_error = None
    while True:
        try:
            value = predicate()
            if value:
                return value
            last_error = None
        except Exception as exc:  # noqa: BLE001 - reported on timeout
            last_error = exc
        if time.monotonic() >= deadline:
            text = message() if callable(message) else message
            if last_error is not None:
                text += f" (last error: {last_error!r})"
            raise WaitTimeout(f"timed out after {timeout:.1f}s waiting for {text}")
        time.sleep(interval)
