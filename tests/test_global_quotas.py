"""Global quotas: two Envoy replicas share each tenant's request and token counters through the
rate-limit service (``tools/ratelimit-service``: Limitador's engine, counters in Redis).

One Redis, one service and one pair of replicas serve most of the module; every test has its
own tenants, so its own counters (the service keeps one counter per tenant, and Limitador's
windows start at a counter's first hit). The exact count under contention uses a service with
counters in memory; the extra-entry tests add an Envoy of their own in front of the module's
service. Local plans are generous: only the global limits bite. The service logs every call it answers, which is how the tests read its counters without
moving them (``RateLimitService.counter``)."""

import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from harness.answers import answer
from harness.expect import assert_denied
from harness.h2client import H2Client
from harness.keys import claims, mint
from harness.limits import LONG
from harness.plugin_config import tenant, windows
from harness.ratelimit import RateLimitService, Redis, limit
from harness.records import filter_record
from harness.replicas import GENEROUS, global_config, replica, start_all
from harness.wait import wait_for

LIMITS = [
    limit("exact-requests", usage="requests", plan="req20", max_value=20),
    limit("tokens", usage="tokens", plan="tok1000", max_value=1000),
    limit("header-requests", usage="requests", plan="req2", max_value=2),
    limit("user-requests", usage="requests", plan="peruser", max_value=2,
          variables=("tenant_id", "user_id")),
    limit("model-tokens", usage="tokens", plan="permodel", max_value=1000,
          variables=("tenant_id", "model")),
    # Plans team and teamtok: users' own counters (per_user) beside the tenant's.
    limit("team-requests", usage="requests", plan="team", max_value=100),
    limit("team-user-requests", usage="user_requests", plan="team", max_value=3,
          variables=("tenant_id", "user_id")),
    limit("teamtok-tokens", usage="tokens", plan="teamtok", max_value=100_000),
    limit("teamtok-user-tokens", usage="user_tokens", plan="teamtok", max_value=1000,
          variables=("tenant_id", "user_id")),
]

TENANTS = {
    "exact-co": tenant("req20"),
    "tokens-co": tenant("tok1000"),
    "big-co": tenant("tok1000"),
    "sequential-co": tenant("tok1000"),
    "back-to-back-co": tenant("tok1000"),
    "header-co": tenant("req2"),
    "user-co": tenant("peruser"),
    "model-co": tenant("permodel"),
    "team-requests-co": tenant("team"),
    "team-tokens-co": tenant("teamtok"),
}
# Plans team's and teamtok's local per_user windows are generous: only the service's limits bite.
TEAM = dict(GENEROUS, per_user={"requests": windows((1_000_000, LONG)),
                                "tokens": windows((1_000_000_000, LONG))})
PLANS = {"req20": None, "tok1000": None, "req2": None, "peruser": None, "permodel": None,
         "team": TEAM, "teamtok": TEAM}
PRICING = {"default": {"input_per_million": 1.0, "output_per_million": 3.0}}


def chat_body(model="gpt-4o", max_tokens=50):
    return {"model": model, "max_tokens": max_tokens,
            "messages": [{"role": "user", "content": "hello"}]}


class Cluster:
    """The module's Redis, rate-limit service and two replicas (``a``, ``b``)."""

    def __init__(self, redis, service, replicas, keys):
        self.redis, self.service = redis, service
        self.replicas = replicas
        self.a, self.b = replicas
        self._keys = keys
        self._tokens = {}

    def token(self, tenant_id, sub="alice"):
        if (tenant_id, sub) not in self._tokens:
            self._tokens[tenant_id, sub] = mint(self._keys.corp_rsa,
                                                claims(tenant_id, sub=sub))
        return self._tokens[tenant_id, sub]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, wasm_path, upstream, jwks_server, keys):
    workdir = tmp_path_factory.mktemp("global-quotas")
    redis = Redis(workdir / "redis").start()
    service = None
    proxies = []
    try:
        service = RateLimitService(workdir / "service", LIMITS, redis_url=redis.url,
                                   rate_limit_headers=True).start()
        config = global_config(keys, TENANTS, plans=PLANS, pricing=PRICING)
        proxies = [replica(workdir / f"replica-{name}", wasm_path, upstream.port,
                           jwks_server.port, config, service.port) for name in "ab"]
        start_all(proxies)
        yield Cluster(redis, service, proxies, keys)
    finally:
        for proxy in proxies:
            proxy.stop()
        if service is not None:
            service.stop()
        redis.stop()


def assert_globally_refused(resp, reason, upstream):
    """A 429 in the local limits' shape (OpenAI error body), which never reached the
    upstream, with Retry-After 1: the service (like Limitador) sends no statuses, so no
    duration_until_reset, and the filter then says 1."""
    assert_denied(resp, 429, reason, upstream=upstream)
    assert resp.header_values("retry-after") == ["1"], resp.headers


# === Requests ===

def run_clients(replicas, token, clients=8, each=6):
    """``clients`` parallel clients sending ``each`` requests, each client alternating between
    the replicas; returns [(replica, response)]."""
    def client_run(index):
        out = []
        for j in range(each):
            proxy = replicas[(index + j) % len(replicas)]
            out.append((proxy, proxy.client.chat(token=token, body=chat_body())))
        return out

    with ThreadPoolExecutor(max_workers=clients) as pool:
        return [pair for run in pool.map(client_run, range(clients)) for pair in run]


def check_requests_outcome(results, replicas, tenant_id, admitted_count, upstream):
    statuses = [resp.status for _, resp in results]
    assert statuses.count(200) == admitted_count, \
        f"admitted {statuses.count(200)} of {len(results)}, expected {admitted_count}: " \
        f"{sorted(statuses)}"
    assert statuses.count(429) == len(results) - admitted_count, sorted(statuses)
    admitted_by = {p.workdir for p, r in results if r.status == 200}
    assert admitted_by == {p.workdir for p in replicas}, "one replica admitted every request"
    for proxy, resp in results:
        if resp.status == 429:
            assert_globally_refused(resp, "request_quota_exceeded", upstream)
        else:
            assert len(upstream.find(resp.request_id)) == 1
        # One record per request, on the replica that served it, with the decision.
        record = filter_record(proxy, resp.request_id)
        expected = (("allow", "ok") if resp.status == 200
                    else ("deny", "request_quota_exceeded"))
        assert (record["decision"], record["reason"], record["tenant"]) == \
            (*expected, tenant_id), record


def test_request_limit_is_exact_across_two_replicas(tmp_path, wasm_path, upstream,
                                                    jwks_server, keys):
    """Limit 20 requests for plan req20, counters in the service's memory (exact: Limitador's
    Redis storage checks and updates in two steps and can overshoot under contention);
    8 clients × 6 requests, each client alternating between two replicas: exactly 20 are
    admitted, both replicas admit some, the other 28 get 429 request_quota_exceeded and never
    reach the upstream."""
    service = RateLimitService(tmp_path / "service", LIMITS).start()
    proxies = []
    try:
        config = global_config(keys, TENANTS, plans=PLANS)
        proxies = start_all([replica(tmp_path / f"replica-{name}", wasm_path, upstream.port,
                                     jwks_server.port, config, service.port)
                             for name in "ab"])
        results = run_clients(proxies, mint(keys.corp_rsa, claims("exact-co")))
        check_requests_outcome(results, proxies, "exact-co", 20, upstream)
        assert service.counter("exact-co", "requests") == 20
        assert len(service.calls_for("exact-co", "requests")) == 48
    finally:
        for proxy in proxies:
            proxy.stop()
        service.stop()


def test_replicas_admit_exactly_what_the_redis_backed_service_allows(cluster, upstream):
    """The same load against the Redis-backed service: every OK answer is one admission and
    every OVER_LIMIT one refusal, so the replicas admit what the service allowed — 20, or a
    little more when Limitador's Redis storage overshoots under contention."""
    token = cluster.token("exact-co")
    results = run_clients(cluster.replicas, token)
    calls = cluster.service.calls_for("exact-co", "requests")
    assert len(calls) == 48, f"{len(calls)} request calls for 48 requests"
    allowed = [c.code for c in calls].count("Ok")
    assert allowed >= 20, f"the service allowed only {allowed} of 48 against a limit of 20"
    check_requests_outcome(results, cluster.replicas, "exact-co", allowed, upstream)


def test_refusal_carries_the_services_rate_limit_headers(cluster, upstream):
    """The service runs with --rate-limit-headers: its OVER_LIMIT answer's
    response_headers_to_add (X-RateLimit-Limit/-Remaining/-Reset) reach the client."""
    token = cluster.token("header-co")
    for proxy in (cluster.a, cluster.b):
        resp = proxy.client.chat(token=token, body=chat_body())
        assert resp.status == 200, resp
    refused = cluster.a.client.chat(token=token, body=chat_body())
    assert_globally_refused(refused, "request_quota_exceeded", upstream)
    limit_value = refused.header("x-ratelimit-limit")
    assert limit_value is not None, f"no x-ratelimit-limit on the refusal: {refused.headers}"
    assert limit_value.split(",")[0].strip() == "2", limit_value
    assert 'name="header-requests"' in limit_value, limit_value
    assert refused.header("x-ratelimit-remaining") == "0", refused.headers
    reset = refused.header("x-ratelimit-reset")
    assert reset is not None and reset.isdigit() and 1 <= int(reset) <= 3600, reset
    # The same from the other replica.
    other = cluster.b.client.chat(token=token, body=chat_body())
    assert_globally_refused(other, "request_quota_exceeded", upstream)
    assert other.header("x-ratelimit-remaining") == "0"


def test_per_user_request_limit_with_the_user_id_entry(tmp_path, cluster, wasm_path, upstream,
                                                       jwks_server, keys):
    """With ``extra_entries: [user_id]`` each call names the user: a limit with a
    ``user_id`` variable gives every user of the tenant a counter of their own."""
    config = global_config(keys, TENANTS, plans=PLANS, extra_entries=["user_id"])
    proxy = start_all([replica(tmp_path / "per-user", wasm_path, upstream.port,
                               jwks_server.port, config, cluster.service.port)])[0]
    try:
        alice, bob = cluster.token("user-co", "alice"), cluster.token("user-co", "bob")
        assert [proxy.client.chat(token=alice).status for _ in range(2)] == [200, 200]
        assert_globally_refused(proxy.client.chat(token=alice), "request_quota_exceeded",
                                upstream)
        assert proxy.client.chat(token=bob).status == 200
        assert cluster.service.counter("user-co", "requests", user_id="alice") == 2
        assert cluster.service.counter("user-co", "requests", user_id="bob") == 1
    finally:
        proxy.stop()


def test_a_users_own_request_limit_holds_across_replicas(cluster, upstream):
    """``per_user`` with a global service: a request also asks about its user's own counter, a
    descriptor of its own (``usage: user_requests``, plan, tenant, ``user_id``), and the
    tenant's counter only once the user's said yes. Alice's 3 requests, alternating replicas,
    are admitted; her next ones are refused on either replica and over HTTP/2 with
    ``user_request_quota_exceeded``, never reaching the upstream, while Bob, in the same
    tenant, still gets in. Her refusals cost the tenant nothing: its counter holds the 4
    admitted requests only."""
    service = cluster.service
    alice = cluster.token("team-requests-co", "alice")
    bob = cluster.token("team-requests-co", "bob")
    for i in range(3):
        resp = cluster.replicas[i % 2].client.chat(token=alice, body=chat_body())
        assert resp.status == 200, (i, resp)
    for proxy in cluster.replicas:
        refused = proxy.client.chat(token=alice, body=chat_body())
        assert_globally_refused(refused, "user_request_quota_exceeded", upstream)
        record = filter_record(proxy, refused.request_id)
        assert (record["decision"], record["reason"], record["tenant"], record["user"]) == \
            ("deny", "user_request_quota_exceeded", "team-requests-co", "alice")
    h2 = H2Client(cluster.b.listener_port).request(
        body=chat_body(), token=alice, trailers=[("x-trailer", "1")], pieces=3)
    assert h2.status == 429, h2
    assert json.loads(h2.body)["error"]["code"] == "user_request_quota_exceeded"
    assert upstream.find(h2.request_id) == []
    assert cluster.a.client.chat(token=bob, body=chat_body()).status == 200

    assert service.counter("team-requests-co", "user_requests", user_id="alice") == 3
    assert service.counter("team-requests-co", "user_requests", user_id="bob") == 1
    assert service.counter("team-requests-co", "requests") == 4
    user_calls = service.calls_for("team-requests-co", "user_requests")
    assert {c.entries["plan"] for c in user_calls} == {"team"}
    assert list(user_calls[0].entries) == ["usage", "plan", "tenant_id", "user_id"]
    # The tenant's own calls never name a user: its limits stay the tenant's.
    assert all("user_id" not in c.entries
               for c in service.calls_for("team-requests-co", "requests"))


def test_a_users_own_token_limit_follows_the_debits_to_both_counters(cluster, upstream):
    """Alice's tokens are debited to her own counter (``user_tokens``) and to the tenant's:
    each request really uses 300 tokens, her limit is 1000 (the check at admission adds 1, as
    Limitador counts 0 as 1). Her 4th request is admitted at 904 and its refused debit is sent
    again as pieces until her counter is full; her 5th is refused on the other replica with
    ``user_token_quota_exceeded``, and Bob's requests still go. The tenant's counter got every
    debit whole: 4 × 300 of Alice's and Bob's 300, plus one per check."""
    service = cluster.service
    alice = cluster.token("team-tokens-co", "alice")
    bob = cluster.token("team-tokens-co", "bob")
    usage = answer("openai-json", in_=200, out=100)
    for i, counter in enumerate([301, 602, 903, 1000]):
        resp = cluster.replicas[i % 2].client.chat(token=alice, body=chat_body(),
                                                   headers=usage)
        assert resp.status == 200, (i, resp)
        service.wait_counter("team-tokens-co", "user_tokens", counter, timeout=30,
                             at_least=counter == 1000, user_id="alice")
    refused = cluster.a.client.chat(token=alice, body=chat_body(), headers=usage)
    assert_globally_refused(refused, "user_token_quota_exceeded", upstream)
    assert json.loads(refused.body)["error"]["code"] == "user_token_quota_exceeded"
    resp = cluster.b.client.chat(token=bob, body=chat_body(), headers=usage)
    assert resp.status == 200, resp
    service.wait_counter("team-tokens-co", "user_tokens", 301, user_id="bob")
    # Alice's 4 admitted + 1 refused checks and Bob's 1, each 1; 5 debits of 300.
    service.wait_counter("team-tokens-co", "tokens", 6 + 5 * 300)
    assert service.counter("team-tokens-co", "user_tokens", user_id="alice") <= 4 * 300 + 4


# === Tokens ===

def test_token_limit_across_replicas_follows_the_debited_usage(cluster, upstream):
    """Limit 1000 tokens; each request really uses 300 (200 in + 100 out). The check at
    admission adds 1 (Limitador counts a hits_addend of 0 as 1), the debit after the answer
    300: the counter goes 301, 602, 903; the 4th request is admitted at 904 and its debit,
    refused whole, is sent again at once as pieces (150, 75, 37, ...): the counter ends
    exhausted, at 1000 or above when racing pieces were all taken (Limitador on Redis checks
    and then updates), never above the 1204 really used. The 5th request, on either replica,
    is refused with token_quota_exceeded."""
    service, token = cluster.service, cluster.token("tokens-co")
    usage = answer("openai-json", in_=200, out=100)
    expected = [301, 602, 903, 1000]
    admitted = []
    for i, counter in enumerate(expected):
        proxy = cluster.replicas[i % 2]
        resp = proxy.client.chat(token=token, body=chat_body(), headers=usage)
        assert resp.status == 200, (i, resp)
        admitted.append((proxy, resp))
        # The debit follows the answer; the next request waits for it (the last debit is sent
        # again as pieces, which may fill the counter past 1000). That debits leave at once,
        # not at a later tick, is the next test's: an order of outcomes, not a time.
        service.wait_counter("tokens-co", "tokens", counter, timeout=30,
                             at_least=counter == 1000)
    debits = [c for c in service.calls_for("tokens-co", "tokens") if c.hits > 1]
    assert all(c.hits <= 300 for c in debits), [(c.hits, c.code) for c in debits]
    for proxy in (cluster.a, cluster.b):
        refused = proxy.client.chat(token=token, body=chat_body(), headers=usage)
        assert_globally_refused(refused, "token_quota_exceeded", upstream)
        record = filter_record(proxy, refused.request_id)
        assert (record["decision"], record["reason"]) == ("deny", "token_quota_exceeded")
    assert 1000 <= service.counter("tokens-co", "tokens") <= 1204
    # Billing is the upstream's usage, also for the 4th request whose debit was cut short.
    for proxy, resp in admitted:
        record = filter_record(proxy, resp.request_id)
        assert (record["input_tokens"], record["output_tokens"]) == (200, 100), record
        assert record["cost_usd"] == "0.0005", record  # 200 × 1 + 100 × 3 per million


def test_sequential_requests_cross_the_token_limit_by_one(cluster, upstream):
    """Twelve requests of 100 tokens (60 in + 40 out), alternating between the replicas, each
    sent once the service has counted the one before: each check adds 1 (Limitador counts a
    hits_addend of 0 as 1) and each debit 100, so nine requests leave the counter at 909, the
    tenth is admitted and its refused debit is sent again as rounds of pieces until the counter
    is full; every later request is refused. (How many pass when requests do not wait for the
    debit depends on the round trips to the service: docs/global-quotas.md.)"""
    service, token = cluster.service, cluster.token("sequential-co")
    usage = answer("openai-json", in_=60, out=40)
    results = []
    for i in range(12):
        proxy = cluster.replicas[i % 2]
        resp = proxy.client.chat(token=token, body=chat_body(), headers=usage)
        results.append((proxy, resp))
        if resp.status == 200:
            expected = min(101 * (i + 1), 1000)
            service.wait_counter("sequential-co", "tokens", expected, timeout=30, at_least=True)
    statuses = [resp.status for _, resp in results]
    assert statuses == [200] * 10 + [429] * 2, statuses
    for proxy, resp in results[10:]:
        assert_globally_refused(resp, "token_quota_exceeded", upstream)
    # Never above what the ten requests really used and their checks added.
    assert 1000 <= service.counter("sequential-co", "tokens") <= 1010


def test_back_to_back_requests_leave_the_token_counter_full(cluster, upstream):
    """The same twelve requests back to back, without waiting for the service: however the
    debits' rounds and the checks interleave, admissions come first, the service sees one
    admitting check and one whole debit per admitted request, the counter ends full and both
    replicas then refuse."""
    service, token = cluster.service, cluster.token("back-to-back-co")
    usage = answer("openai-json", in_=60, out=40)
    statuses = [cluster.replicas[i % 2].client.chat(token=token, body=chat_body(),
                                                    headers=usage).status for i in range(12)]
    admitted = statuses.count(200)
    assert admitted >= 10 and statuses == [200] * admitted + [429] * (12 - admitted), statuses
    service.wait_counter("back-to-back-co", "tokens", 1000, timeout=30, at_least=True)

    def checks(code):
        return [c for c in service.calls_for("back-to-back-co", "tokens")
                if "hits_addend=0" in c.raw and c.code == code]

    def whole_debits():
        return [c for c in service.calls_for("back-to-back-co", "tokens")
                if "hits_addend=0" not in c.raw and c.hits == 100]
    wait_for(lambda: len(whole_debits()) == admitted, timeout=30,
             message=lambda: f"{admitted} debits of 100 ({len(whole_debits())} so far)")
    assert (len(checks("Ok")), len(checks("OverLimit"))) == (admitted, 12 - admitted)
    for proxy in cluster.replicas:
        refused = proxy.client.chat(token=token, body=chat_body(), headers=usage)
        assert_globally_refused(refused, "token_quota_exceeded", upstream)


def test_one_large_usage_still_exhausts_the_token_counter(cluster, upstream):
    """A single request that used 5000 tokens against a limit of 1000 (1 already counted by
    its check): Limitador refuses the whole debit and counts nothing, so the filter sends it
    again as pieces that fill what is left, and the counter is exhausted (at most at the 5001
    really used); the next request is refused. The record keeps the full
    usage and its cost: billing comes from the upstream's answer, not from the service."""
    service, token = cluster.service, cluster.token("big-co")
    resp = cluster.a.client.chat(token=token, body=chat_body(),
                                 headers=answer("openai-json", in_=4000, out=1000))
    assert resp.status == 200, resp
    service.wait_counter("big-co", "tokens", 1000, timeout=30, at_least=True)
    assert service.counter("big-co", "tokens") <= 5001
    refused = cluster.b.client.chat(token=token, body=chat_body(),
                                    headers=answer("openai-json", in_=1, out=1))
    assert_globally_refused(refused, "token_quota_exceeded", upstream)
    calls = service.calls_for("big-co", "tokens")
    assert calls[1].hits == 5000 and calls[1].code == "OverLimit", \
        [(c.hits, c.code) for c in calls]
    record = filter_record(cluster.a, resp.request_id)
    assert (record["input_tokens"], record["output_tokens"]) == (4000, 1000), record
    assert record["cost_usd"] == "0.007", record  # 4000 × 1 + 1000 × 3 per million
    assert record["decision"] == "allow" and record["reason"] == "ok", record


def test_per_model_token_limit_can_refuse(tmp_path, cluster, wasm_path, upstream, jwks_server,
                                          keys):
    """With ``extra_entries: [model]`` and a token limit per (tenant, model): after a request
    for gpt-4o used 5000 tokens, gpt-4o is exhausted for the tenant, so the next gpt-4o
    request must be refused. That needs the admission check to name the same model as the
    debit (the counter the debit filled)."""
    config = global_config(keys, TENANTS, plans=PLANS, extra_entries=["model"])
    proxy = start_all([replica(tmp_path / "per-model", wasm_path, upstream.port,
                               jwks_server.port, config, cluster.service.port)])[0]
    try:
        token = cluster.token("model-co")
        first = proxy.client.chat(token=token, body=chat_body(model="gpt-4o"),
                                  headers=answer("openai-json", in_=4000, out=1000))
        assert first.status == 200, first
        cluster.service.wait_counter("model-co", "tokens", 1000, model="gpt-4o", timeout=30,
                                     at_least=True)
        again = proxy.client.chat(token=token, body=chat_body(model="gpt-4o"))
        checks = [(c.entries.get("model"), c.hits, c.code)
                  for c in cluster.service.calls_for("model-co", "tokens")]
        assert again.status == 429, \
            f"gpt-4o's counter is exhausted but the request got {again.status}; the " \
            f"service saw these tokens calls (model, hits, code): {checks}"
        assert_globally_refused(again, "token_quota_exceeded", upstream)
    finally:
        proxy.stop()
