"""Leased credit (``global_rate_limit.lease``): two Envoy replicas take blocks of quota from the
rate-limit service (``tools/ratelimit-service``: Limitador's engine, counters in Redis) and
admit requests from the credit they hold, calling the service about once per block instead of
once or twice per request.

One Redis, one service and one pair of replicas serve the module; every test has its own
tenant, so its own counters. The service logs every call it answers (how the tests count calls
and read counters); each replica counts what the service granted it
(``tenant_guard.global.lease.granted.*``) and what it admitted (per-tenant
``requests_allowed``). The outage test has a service and replicas of its own."""

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from harness.answers import answer
from harness.expect import assert_denied
from harness.keys import claims, mint
from harness.limits import LONG
from harness.plugin_config import tenant, windows
from harness.ratelimit import RateLimitService, Redis, limit
from harness.records import filter_record
from harness.replicas import GENEROUS, global_config, replica, start_all
from harness.wait import wait_for

REQUEST_LIMIT = 200
TOKEN_LIMIT = 20_000
LIMITS = [
    limit("lease-requests", usage="requests", plan="lreq", max_value=REQUEST_LIMIT),
    limit("lease-tokens", usage="tokens", plan="ltok", max_value=TOKEN_LIMIT),
]
TENANTS = {
    "lease-req": tenant("lreq"),
    "lease-tok": tenant("ltok"),
    # No limit at the service: only the number of calls matters.
    "lease-busy": tenant("lbusy"),
    "lease-users": tenant("lusers"),
}
# Plan lusers: each user 2 requests of their own (per_user), held per replica with a lease.
PLANS = {"lreq": None, "ltok": None, "lbusy": None,
         "lusers": dict(GENEROUS, per_user={"requests": windows((2, LONG))})}
MAX_REQUEST_BLOCK = 40
MAX_TOKEN_BLOCK = 5000
# The lease's window: far longer than a test (credit never lapses mid-test) unless the test is
# about its end; Limitador starts its windows at a counter's first hit.
LONG_LEASE_S = 30 * 86400
SHORT_WINDOW_S = 10
LEASE = {"window_s": LONG_LEASE_S,
         "requests": {"min_block": 1, "max_block": MAX_REQUEST_BLOCK},
         "tokens": {"min_block": 500, "max_block": MAX_TOKEN_BLOCK}}


# Redis race: Limitador on Redis checks a counter and then adds to it in two steps, so two
# calls racing on one counter may both be granted past its limit (seen here: 20,001 of
# 20,000): its counter can exceed the limit by what one racing call asks, a block at most.
# What the filter guarantees is exact: it admits only what the service counted;
# ``test_request_limit_is_exact_with_an_exact_service`` shows the limit itself held.


def chat_body(max_tokens=100):
    return {"model": "gpt-4o", "max_tokens": max_tokens,
            "messages": [{"role": "user", "content": "hello"}]}


# Every answer reports 100 tokens; a request's estimate (its body's input and max_tokens 100)
# is a little more, so no request uses more than it took from credit.
USAGE = answer("openai-json", in_=60, out=40)


class Cluster:
    def __init__(self, service, replicas, keys):
        self.service = service
        self.replicas = replicas
        self._keys = keys

    def token(self, tenant_id):
        return mint(self._keys.corp_rsa, claims(tenant_id))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, wasm_path, upstream, jwks_server, keys):
    workdir = tmp_path_factory.mktemp("global-leases")
    redis = Redis(workdir / "redis").start()
    service = None
    proxies = []
    try:
        service = RateLimitService(workdir / "service", LIMITS, redis_url=redis.url).start()
        config = global_config(keys, TENANTS, plans=PLANS, lease=LEASE)
        proxies = start_all([replica(workdir / f"replica-{name}", wasm_path, upstream.port,
                                     jwks_server.port, config, service.port)
                             for name in "ab"])
        yield Cluster(service, proxies, keys)
    finally:
        for proxy in proxies:
            proxy.stop()
        if service is not None:
            service.stop()
        redis.stop()


def parallel_load(replicas, token, clients=8, each=40):
    """``clients`` parallel clients sending ``each`` requests, each client alternating between
    the replicas; returns [(replica, response)]."""
    def client_run(index):
        out = []
        for j in range(each):
            proxy = replicas[(index + j) % len(replicas)]
            out.append((proxy, proxy.client.chat(token=token, body=chat_body(),
                                                 headers=USAGE)))
        return out

    with ThreadPoolExecutor(max_workers=clients) as pool:
        return [pair for run in pool.map(client_run, range(clients)) for pair in run]


def allowed(proxy, tenant_id):
    return proxy.stat(f"wasmcustom.tenant_guard.tenant.{tenant_id}.requests_allowed")


def granted(proxy, usage):
    return proxy.stat(f"wasmcustom.tenant_guard.global.lease.granted.{usage}")


def service_calls(service, tenant_id):
    return [c for c in service.calls() if c.entries.get("tenant_id") == tenant_id]


def test_request_limit_holds_across_replicas_under_parallel_load(cluster, upstream):
    """Limit 200 requests at the service; 8 parallel clients send 320 requests, each client
    alternating between the two replicas. The replicas admit only requests the service counted
    (every admission spends a unit of a granted block), so at most 200; the service's counter
    is driven to the limit and the replicas spend what they hold, so nearly all 200 are used
    (at most a block per replica is left). The others get 429 request_quota_exceeded without
    reaching the upstream."""
    results = parallel_load(cluster.replicas, cluster.token("lease-req"))
    statuses = [resp.status for _, resp in results]
    admitted = statuses.count(200)
    counted = cluster.service.counter("lease-req", "requests")
    assert admitted <= counted, (admitted, counted)
    assert counted <= REQUEST_LIMIT + MAX_REQUEST_BLOCK, counted  # Redis race
    assert admitted >= REQUEST_LIMIT - 2 * MAX_REQUEST_BLOCK, admitted
    assert statuses.count(429) == len(results) - admitted, sorted(set(statuses))
    assert {p.workdir for p, r in results if r.status == 200} == \
        {p.workdir for p in cluster.replicas}, "one replica admitted every request"
    for proxy, resp in results:
        if resp.status == 429:
            assert_denied(resp, 429, "request_quota_exceeded", upstream=upstream)
            retry = resp.header("retry-after")
            assert retry is not None and int(retry) >= 1, resp.headers
    # Each replica admitted exactly what it was granted, no more.
    for proxy in cluster.replicas:
        assert allowed(proxy, "lease-req") <= granted(proxy, "requests")
    sample = next(resp for _, resp in results if resp.status == 200)
    record = filter_record(next(p for p, r in results if r is sample), sample.request_id)
    assert (record["decision"], record["reason"]) == ("allow", "ok"), record


def test_request_limit_is_exact_with_an_exact_service(tmp_path, wasm_path, upstream,
                                                     jwks_server, keys):
    """The same parallel load against a service that counts exactly (Limitador's in-memory
    storage): at most 200 admitted, and at most a block per replica less."""
    service = RateLimitService(tmp_path / "service", LIMITS).start()
    proxies = []
    try:
        config = global_config(keys, TENANTS, plans=PLANS, lease=LEASE)
        proxies = start_all([replica(tmp_path / f"replica-{name}", wasm_path, upstream.port,
                                     jwks_server.port, config, service.port)
                             for name in "ab"])
        results = parallel_load(proxies, mint(keys.corp_rsa, claims("lease-req")))
        admitted = [r.status for _, r in results].count(200)
        assert service.counter("lease-req", "requests") == REQUEST_LIMIT
        assert REQUEST_LIMIT - 2 * MAX_REQUEST_BLOCK <= admitted <= REQUEST_LIMIT, admitted
        for proxy in proxies:
            assert allowed(proxy, "lease-req") <= granted(proxy, "requests")
    finally:
        for proxy in proxies:
            proxy.stop()
        service.stop()


def test_token_limit_holds_across_replicas_under_parallel_load(cluster, upstream):
    """Limit 20,000 tokens at the service; every request reports 100 tokens and takes its
    estimate (a little more) from credit, giving back the rest when it ends. 320 requests
    would use 32,000: the tokens the upstream reported for the admitted ones stay within what
    the service counted, and that within the limit; the rest get 429 token_quota_exceeded."""
    results = parallel_load(cluster.replicas, cluster.token("lease-tok"))
    statuses = [resp.status for _, resp in results]
    admitted = statuses.count(200)
    used = 100 * admitted
    counted = cluster.service.counter("lease-tok", "tokens")
    assert used <= counted, (used, counted)
    assert counted <= TOKEN_LIMIT + MAX_TOKEN_BLOCK, counted  # Redis race
    # At most a block per replica, and the estimate of a request, left unused.
    assert used >= TOKEN_LIMIT - 2 * (MAX_TOKEN_BLOCK + 200), (used, counted)
    assert statuses.count(429) == len(results) - admitted, sorted(set(statuses))
    for _, resp in results:
        if resp.status == 429:
            assert_denied(resp, 429, "token_quota_exceeded", upstream=upstream)


def test_service_calls_are_a_small_fraction_of_requests(cluster):
    """800 requests of a tenant the service does not limit, in parallel over both replicas:
    the blocks grow with the tenant's rate up to their largest (40 requests, 5,000 tokens), so
    the service sees under a tenth as many calls as there are requests (without a lease it
    would see two per request). Most of them are made while the blocks are still small."""
    results = parallel_load(cluster.replicas, cluster.token("lease-busy"), each=100)
    assert [r.status for _, r in results].count(200) == len(results)
    calls = service_calls(cluster.service, "lease-busy")
    hits = [(c.entries["usage"], c.hits) for c in calls]
    assert len(calls) <= len(results) // 10, f"{len(calls)} calls for {len(results)}: {hits}"
    # The filter's own count of calls sees the same (it also counts the other tests' calls).
    total = sum(p.stat("wasmcustom.tenant_guard.global.calls") for p in cluster.replicas)
    assert total >= len(calls)


def test_each_replica_stops_within_its_held_credit_when_the_service_dies(
        tmp_path, wasm_path, upstream, jwks_server, keys):
    """Blocks of 20 requests; the service is killed after 30 requests. Each replica goes on
    admitting from the credit it holds, all of it and no more: what it admits after the kill
    is exactly what the service granted it and it had not spent (a block still on its way at
    the kill fails with the service). Then every request gets 503
    rate_limit_service_unavailable (failure_mode deny) without a call per refusal: a replica
    probes the service once a second (``RETRY_MS``), whatever the number of requests."""
    redis = Redis(tmp_path / "redis").start()
    service = RateLimitService(tmp_path / "service", [
        limit("outage-requests", usage="requests", plan="lreq", max_value=100000)],
        redis_url=redis.url).start()
    lease = {"window_s": LONG_LEASE_S, "requests": {"min_block": 20, "max_block": 20}}
    config = global_config(keys, {"outage-co": tenant("lreq")}, plans={"lreq": None},
                           lease=lease)
    proxies = []
    try:
        proxies = start_all([replica(tmp_path / f"replica-{name}", wasm_path, upstream.port,
                                     jwks_server.port, config, service.port)
                             for name in "ab"])
        token = mint(keys.corp_rsa, claims("outage-co"))
        for i in range(30):
            resp = proxies[i % 2].client.chat(token=token)
            assert resp.status == 200, (i, resp)
        spent = {p.workdir: allowed(p, "outage-co") for p in proxies}
        assert sorted(spent.values()) == [15, 15], spent
        calls_before = sum(p.stat("wasmcustom.tenant_guard.global.calls") for p in proxies)
        killed_at = time.monotonic()
        service.kill()

        after = {p.workdir: [] for p in proxies}
        for i in range(120):
            proxy = proxies[i % 2]
            after[proxy.workdir].append(proxy.client.chat(token=token))
        elapsed = time.monotonic() - killed_at
        for proxy in proxies:
            # Read once the service is gone: no grant can arrive any more.
            held = granted(proxy, "requests") - spent[proxy.workdir]
            assert held > 0, (granted(proxy, "requests"), spent)
            statuses = [r.status for r in after[proxy.workdir]]
            assert statuses == [200] * held + [503] * (len(statuses) - held), (held, statuses)
            assert allowed(proxy, "outage-co") == granted(proxy, "requests")
            for resp in after[proxy.workdir][held:]:
                assert_denied(resp, 503, "rate_limit_service_unavailable", upstream=upstream)
        refusals = sum(r.status == 503 for rs in after.values() for r in rs)
        calls = sum(p.stat("wasmcustom.tenant_guard.global.calls") for p in proxies) \
            - calls_before
        # Per replica: a block that may have been on its way at the kill, then a probe per
        # second that passed (and one at the start of the failure).
        probes = len(proxies) * (int(elapsed) + 2)
        assert calls <= probes, \
            f"{calls} calls in {elapsed:.1f} s for {refusals} refusals (probes allow {probes})"
    finally:
        for proxy in proxies:
            proxy.stop()
        service.stop()
        redis.stop()


def test_credit_ends_with_the_window_and_a_new_window_admits_again(
        tmp_path, wasm_path, upstream, jwks_server, keys):
    """10 requests per 10-second window at the service (Limitador starts it at the first hit),
    `window_s` 10 for the lease. Back-to-back requests over both replicas: at most 10 are
    admitted in the window (a few fewer when a replica still holds credit while the other is
    refused), the rest get 429. Once the window is over, the held credit has lapsed with it
    and the tenant is admitted again, at most 10 more.

    What falls in a window is told by the clock, not by how fast the machine is: the window
    starts at the first hit, after the burst began and before its first answer, so every
    request answered less than a window after the burst began was decided in it. The test
    waits for the window's end as a reset test must. The service counts in memory (exactly:
    Limitador on Redis may grant two racing calls past the limit, see above)."""
    service = RateLimitService(tmp_path / "service", [
        limit("window-requests", usage="requests", plan="lwin", max_value=10,
              seconds=SHORT_WINDOW_S)]).start()
    lease = {"window_s": SHORT_WINDOW_S, "requests": {"min_block": 1, "max_block": 2}}
    config = global_config(keys, {"window-co": tenant("lwin")}, plans={"lwin": None},
                           lease=lease)
    proxies = []
    try:
        proxies = start_all([replica(tmp_path / f"replica-{name}", wasm_path, upstream.port,
                                     jwks_server.port, config, service.port)
                             for name in "ab"])
        token = mint(keys.corp_rsa, claims("window-co"))

        def burst():
            """14 back-to-back requests and the ones decided in the window they opened."""
            began = time.time()
            sent = [proxies[i % 2].client.chat(token=token) for i in range(14)]
            return sent, [r for r in sent if r.received_at < began + SHORT_WINDOW_S]

        first, in_window = burst()
        admitted = [r.status for r in in_window].count(200)
        # Each replica holds at most a block (2) and fetches one more ahead: at most 3 × 2
        # of the 10 left unspent when the window is refused.
        assert min(len(in_window), 10 - 2 * 3) <= admitted <= 10, \
            [r.status for r in in_window]
        assert [r.status for r in first[:4]] == [200] * 4, [r.status for r in first]
        for resp in in_window:
            if resp.status != 200:
                assert_denied(resp, 429, "request_quota_exceeded", upstream=upstream)
        # The first window ends at most a window after the first answer (its first hit came
        # before that answer); the credit lapses with it, and an exhausted replica probes
        # again when the service said the window resets (as the answer reached it: 2 s of
        # margin for a slow answer on a busy machine).
        wait_for(lambda: time.time() > first[0].received_at + SHORT_WINDOW_S + 2,
                 timeout=SHORT_WINDOW_S + 10, interval=0.05,
                 message="the end of the first window")
        second, in_window = burst()
        assert second[0].status == 200, second[0]
        again = [r.status for r in in_window].count(200)
        assert 1 <= again <= 10, [r.status for r in in_window]
        assert {r.status for r in second} <= {200, 429}, [r.status for r in second]
    finally:
        for proxy in proxies:
            proxy.stop()
        service.stop()


def test_users_limits_beside_a_lease_hold_per_replica(cluster, upstream):
    """Leased credit is the tenant's: users' own limits (``per_user``) are not leased and are
    held by each replica alone, the service never asked about a user. Alice's 2 requests on
    each replica are admitted, her third on each refused with
    ``user_request_quota_exceeded``."""
    alice = mint(cluster._keys.corp_rsa, claims("lease-users", sub="alice"))
    for proxy in cluster.replicas:
        for _ in range(2):
            resp = proxy.client.chat(token=alice, body=chat_body(), headers=USAGE)
            assert resp.status == 200, resp
        refused = proxy.client.chat(token=alice, body=chat_body(), headers=USAGE)
        assert_denied(refused, 429, "user_request_quota_exceeded", upstream=upstream)
    assert cluster.service.calls_for("lease-users", "user_requests") == []
    assert cluster.service.calls_for("lease-users", "user_tokens") == []
    assert cluster.service.calls_for("lease-users", "requests") != []

