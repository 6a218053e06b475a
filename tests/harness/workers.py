"""Which Envoy worker served a request, and sending until every worker has served some.

A counter shared by the workers (quota windows in shared data) is only shown to be shared when
the requests that fill it and the ones it refuses reach different workers. The kernel spreads
new connections over the workers (``SO_REUSEPORT``) but a few requests may all land on one, so
tests do not count on luck: they send one request at a time over a new connection and read
which worker's ``downstream_cx_total`` moved."""

from .wait import WaitTimeout


def served_by(proxy, send):
    """Sends one request with ``send()`` (a new connection to ``proxy``'s listener; nothing
    else may connect meanwhile) and returns ``(response, worker index)``."""
    before = proxy.worker_connections()
    resp = send()
    after = proxy.worker_connections()
    moved = {w: after[w] - before.get(w, 0) for w in after if after[w] != before.get(w, 0)}
    assert list(moved.values()) == [1], \
        f"expected one new connection on one worker, got {moved} ({before} → {after})"
    return resp, next(iter(moved))


def until_every_worker(proxy, send, check, max_requests=None) -> dict:
    """Sends requests one at a time until every worker of ``proxy`` has served at least one,
    calling ``check(response)`` on each. Returns {worker: [responses]}.

    ``max_requests`` (default 20 per worker) bounds it: with connections spread at random,
    missing a worker that long has a chance below 1e-9."""
    workers = set(range(proxy.concurrency))
    limit = max_requests or 20 * len(workers)
    served = {}
    for _ in range(limit):
        resp, worker = served_by(proxy, send)
        check(resp)
        served.setdefault(worker, []).append(resp)
        if set(served) == workers:
            return served
    raise WaitTimeout(f"{limit} requests reached only workers {sorted(served)} of "
                      f"{sorted(workers)}")
