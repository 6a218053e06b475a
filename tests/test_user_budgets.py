"""Budgets inside a tenant (``plans.<p>.per_user``): each user of a tenant has request and token
windows (and a monthly budget) of their own inside the tenant's, and a request must fit both.
A user is the token's ``sub`` (``identity.user_claim``) or an API key's ``user`` (its ``id``
when it names none). Refusals say whose limit was reached; the RateLimit fields show the
tighter of the two. At most ``max_users`` users of a tenant get counters of their own: further
users, and requests without a user, share one counter with the per-user limits.

Every test runs its own Envoy (counters are process-wide shared data, so a fresh Envoy starts
from zero) with windows of ten years (``LONG``), so no window rolls over mid-test."""

import hashlib
import json
import secrets
from concurrent.futures import ThreadPoolExecutor

import pytest

from harness.answers import answer
from harness.h2client import H2Client
from harness.keys import claims, mint
from harness.limits import LONG, assert_quota_denied, remaining, wait_clear_of_month_edge
from harness.plugin_config import gateway_config, tenant, windows
from harness.records import filter_record
from harness.wait import wait_for
from harness.workers import until_every_worker


def chat_body(max_tokens=None, model="gpt-4o"):
    body = {"model": model, "messages": [{"role": "user", "content": "hello"}]}
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    return body


@pytest.fixture
def token_of(keys):
    """``token_of(user, tenant="acme")``: a token of that user (``None``: without ``sub``)."""
    cache = {}

    def token(user, tenant_id="acme"):
        if (user, tenant_id) not in cache:
            cache[(user, tenant_id)] = mint(keys.corp_rsa, claims(tenant_id, sub=user))
        return cache[(user, tenant_id)]
    return token


def plan(tenant_limits, per_user):
    return {"team": dict(tenant_limits, per_user=per_user)}


def error_code(resp):
    return json.loads(resp.body)["error"]["code"]


def test_a_user_limit_is_reached_before_the_tenant_limit(gateway_factory, upstream, keys,
                                                         token_of):
    """Alice's own 2 requests run out while the tenant has 10: her third is refused with
    ``user_request_quota_exceeded`` by every worker, its RateLimit fields show her window
    (the tighter), the tenant's counter is untouched by refusals, and Bob still gets in with
    the least left over both."""
    plans = plan({"requests": windows((10, LONG))},
                 {"requests": windows((2, LONG))})
    config = gateway_config(keys, {"acme": tenant("team")}, plans=plans)
    proxy = gateway_factory(config, name="user-first")
    alice = token_of("alice")
    assert [remaining(proxy.client.chat(token=alice), "requests") for _ in range(2)] == [1, 0]
    denied = proxy.client.chat(token=alice)
    result = assert_quota_denied(denied, "user_request_quota_exceeded",
                                 [("requests", 2, LONG)], refusing=LONG, upstream=upstream)
    assert result["ratelimit"][f"requests-{LONG}s"]["r"] == 0
    assert "own request quota" in json.loads(denied.body)["error"]["message"]
    record = filter_record(proxy, denied.request_id)
    assert (record["decision"], record["reason"], record["tenant"], record["user"]) == \
        ("deny", "user_request_quota_exceeded", "acme", "alice")
    until_every_worker(proxy, lambda: proxy.client.chat(token=alice), lambda resp:
                       assert_quota_denied(resp, "user_request_quota_exceeded",
                                           [("requests", 2, LONG)], refusing=LONG,
                                           upstream=upstream))
    # Bob: his own 2 (1 left after this one) against the tenant's 10 (7 left): 1 shown.
    bob = proxy.client.chat(token=token_of("bob"))
    assert bob.status == 200, bob
    assert remaining(bob, "requests") == 1
    bob = proxy.client.chat(token=token_of("bob"))
    assert remaining(bob, "requests") == 0
    # The tenant's own count: 4 admitted of 10, whatever Alice's refusals.
    carol = proxy.client.chat(token=token_of("carol"))
    assert remaining(carol, "requests") == 1
    dave = [proxy.client.chat(token=token_of("dave")) for _ in range(2)]
    # Dave's second leaves the tenant 10 - 7 = 3 and him 0.
    assert [remaining(r, "requests") for r in dave] == [1, 0]
    erin = proxy.client.chat(token=token_of("erin"))
    erin2 = proxy.client.chat(token=token_of("erin"))
    assert [remaining(erin, "requests"), remaining(erin2, "requests")] == [1, 0]


def test_the_tenant_limit_still_holds_across_users(gateway_factory, upstream, keys, token_of):
    """A tenant of 4 requests and users of 3 each: Alice takes 3, Bob 1, and then every user
    is refused with the tenant's ``request_quota_exceeded`` (its window is the tighter one in
    the RateLimit fields); a refused request takes nothing from the user's own window."""
    plans = plan({"requests": windows((4, LONG))}, {"requests": windows((3, LONG))})
    config = gateway_config(keys, {"acme": tenant("team")}, plans=plans)
    proxy = gateway_factory(config, name="tenant-holds")
    for _ in range(3):
        assert proxy.client.chat(token=token_of("alice")).status == 200
    first = proxy.client.chat(token=token_of("bob"))
    assert first.status == 200 and remaining(first, "requests") == 0, first
    for user in ("bob", "carol", "alice"):
        denied = proxy.client.chat(token=token_of(user))
        expected = "user_request_quota_exceeded" if user == "alice" else \
            "request_quota_exceeded"
        result = assert_quota_denied(denied, expected, [("requests", 4 if user != "alice" else 3,
                                                         LONG)],
                                     refusing=LONG, upstream=upstream)
        assert result["ratelimit"][f"requests-{LONG}s"]["r"] == 0
        assert filter_record(proxy, denied.request_id)["reason"] == expected


def test_counts_are_exact_on_two_workers(gateway_factory, upstream, keys, token_of):
    """Parallel requests from new connections on two workers: 4 users × 12 requests against
    users of 5 and a tenant of 14 admit exactly 14, no user more than 5; 3 users × 10 against
    users of 4 and a tenant of 1000 admit exactly 4 each."""
    plans = {
        "tight": {"requests": windows((14, LONG)), "per_user": {"requests": windows((5, LONG))}},
        "roomy": {"requests": windows((1000, LONG)),
                  "per_user": {"requests": windows((4, LONG))}},
    }
    config = gateway_config(keys, {"acme": tenant("tight"), "globex": tenant("roomy")},
                            plans=plans)
    proxy = gateway_factory(config, concurrency=2, name="user-exact")
    before = proxy.worker_connections()

    def burst(tenant_id, users, each):
        jobs = [user for user in users for _ in range(each)]

        def one(user):
            return user, proxy.client.chat(token=token_of(user, tenant_id))
        with ThreadPoolExecutor(max_workers=16) as pool:
            return list(pool.map(one, jobs))

    results = burst("acme", ["u1", "u2", "u3", "u4"], 12)
    admitted = {}
    for user, resp in results:
        if resp.status == 200:
            admitted[user] = admitted.get(user, 0) + 1
        else:
            assert resp.status == 429, resp
            assert error_code(resp) in ("user_request_quota_exceeded",
                                        "request_quota_exceeded"), resp
            assert upstream.find(resp.request_id) == []
    assert sum(admitted.values()) == 14, admitted
    assert max(admitted.values()) <= 5, admitted
    assert sum(len(upstream.find(r.request_id)) for _, r in results) == 14

    results = burst("globex", ["v1", "v2", "v3"], 10)
    admitted = {}
    for user, resp in results:
        if resp.status == 200:
            admitted[user] = admitted.get(user, 0) + 1
        else:
            assert error_code(resp) == "user_request_quota_exceeded", resp
    assert admitted == {"v1": 4, "v2": 4, "v3": 4}
    after = proxy.worker_connections()
    served = [w for w in range(2) if after.get(w, 0) > before.get(w, 0)]
    assert len(served) == 2, f"only workers {served} served the requests"


def test_users_beyond_max_users_and_requests_without_a_user_share_one_counter(
        gateway_factory, upstream, keys, token_of):
    """``max_users: 2``: the first two users get counters of their own; every further user,
    and a token without ``sub``, counts in one shared counter with the per-user limits, so
    together they never get more than one user's allowance, and the first two keep theirs."""
    plans = plan({"requests": windows((100, LONG))},
                 {"requests": windows((2, LONG)), "max_users": 2})
    config = gateway_config(keys, {"acme": tenant("team")}, plans=plans)
    proxy = gateway_factory(config, name="max-users")
    for user in ("u1", "u2"):
        resp = proxy.client.chat(token=token_of(user))
        assert resp.status == 200 and remaining(resp, "requests") == 1, resp
    third = [proxy.client.chat(token=token_of("u3")) for _ in range(2)]
    assert [r.status for r in third] == [200, 200]
    assert [remaining(r, "requests") for r in third] == [1, 0]
    for token in (token_of("u3"), token_of("u4"), token_of(None)):
        denied = proxy.client.chat(token=token)
        assert_quota_denied(denied, "user_request_quota_exceeded", [("requests", 2, LONG)],
                            refusing=LONG, upstream=upstream)
    record = filter_record(proxy, denied.request_id)
    assert record["reason"] == "user_request_quota_exceeded" and record.get("user") is None, record
    # The users with counters of their own still have theirs.
    for user in ("u1", "u2"):
        resp = proxy.client.chat(token=token_of(user))
        assert resp.status == 200 and remaining(resp, "requests") == 0, resp
    wait_for(lambda: "user slots under tenant-guard/user/acme is taken"
             in proxy.log_path.read_text(), timeout=10,
             message="a log line about the full user slots")


def test_per_user_limits_over_http2(gateway_factory, upstream, keys, token_of):
    """Over HTTP/2 (a body in pieces, ended by trailers), a user's second request is refused
    with the user's reason and never reaches the upstream; another user gets in."""
    plans = plan({"requests": windows((100, LONG))}, {"requests": windows((1, LONG))})
    config = gateway_config(keys, {"acme": tenant("team")}, plans=plans)
    proxy = gateway_factory(config, name="user-h2")
    client = H2Client(proxy.listener_port)
    send = lambda user: client.request(body=chat_body(), token=token_of(user),  # noqa: E731
                                       trailers=[("x-trailer", "1")], pieces=3)
    first = send("alice")
    assert first.status == 200, first
    second = send("alice")
    assert second.status == 429, second
    assert json.loads(second.body)["error"]["code"] == "user_request_quota_exceeded"
    assert second.header("retry-after") is not None
    assert upstream.find(second.request_id) == []
    assert send("bob").status == 200


def input_estimate(body) -> int:
    return -(-len(json.dumps(body).encode()) // 4)


@pytest.mark.parametrize("hold_headers", [True, False], ids=["headers-held", "headers-forwarded"])
def test_the_output_cap_follows_the_user_window(gateway_factory, upstream, keys, token_of,
                                                hold_headers):
    """``output_cap: "clamp"`` with a user token window of 1,000 inside a tenant window of
    100,000: Alice's request for 5,000 output tokens is lowered to what her window covers; an
    upstream that writes up to the limit fills her window, so her next request is refused with
    ``user_token_quota_exceeded`` while Bob is capped by his own window."""
    plans = {"capped": {"output_cap": "clamp", "min_output_tokens": 16,
                        "tokens": windows((100_000, LONG)),
                        "per_user": {"tokens": windows((1000, LONG))}}}
    config = gateway_config(keys, {"acme": tenant("capped")}, plans=plans)
    proxy = gateway_factory(config, name=f"user-cap-{hold_headers}", hold_headers=hold_headers)
    # Learning the header mode costs the learner's window some tokens: a user of its own.
    proxy.learn_header_mode(token_of("learner"), "held" if hold_headers else "forwarded")
    body = chat_body(max_tokens=5000)
    honest = answer("openai-json", in_=input_estimate(body), honour=1)
    first = proxy.client.chat(token=token_of("alice"), body=body, headers=honest)
    assert first.status == 200, first
    cap = int(first.header("x-tenant-guard-output-cap"))
    assert cap == 1000 - input_estimate(body), cap
    assert json.loads(upstream.received(first.request_id).body)["max_tokens"] == cap
    denied = proxy.client.chat(token=token_of("alice"), body=body, headers=honest)
    assert denied.status == 429, denied
    assert error_code(denied) == "user_token_quota_exceeded"
    assert upstream.find(denied.request_id) == []
    bob = proxy.client.chat(token=token_of("bob"), body=body, headers=honest)
    assert bob.status == 200, bob
    assert int(bob.header("x-tenant-guard-output-cap")) == cap


def digest(key):
    return hashlib.sha256(key.encode()).hexdigest()


def test_an_api_key_counts_as_its_user_or_its_id(gateway_factory, upstream, keys):
    """Two keys naming the same ``user`` share that user's window; a key without ``user``
    counts as its ``id``."""
    key_a, key_b, key_c = (f"tgk_{n}_{secrets.token_urlsafe(24)}" for n in "abc")
    plans = plan({"requests": windows((100, LONG))}, {"requests": windows((2, LONG))})
    acme = dict(tenant("team"), api_keys=[
        {"id": "ci-1", "sha256": digest(key_a), "user": "ci-bot"},
        {"id": "ci-2", "sha256": digest(key_b), "user": "ci-bot"},
        {"id": "batch", "sha256": digest(key_c)}])
    config = gateway_config(keys, {"acme": acme}, plans=plans)
    config["identity"]["api_key_sources"] = [{"header": "x-api-key"}]
    proxy = gateway_factory(config, name="user-keys")
    send = lambda key: proxy.client.chat(headers={"x-api-key": key})  # noqa: E731
    assert [send(k).status for k in (key_a, key_b)] == [200, 200]
    denied = send(key_a)
    assert_quota_denied(denied, "user_request_quota_exceeded", [("requests", 2, LONG)],
                        refusing=LONG, upstream=upstream)
    assert filter_record(proxy, denied.request_id)["user"] == "ci-bot"
    batch = send(key_c)
    assert batch.status == 200 and remaining(batch, "requests") == 1, batch
    assert filter_record(proxy, batch.request_id)["user"] == "batch"


PRICEY = {"models": {"gpt-pricey": {"input_per_million": 10.0, "output_per_million": 30.0}}}


def test_a_user_budget_set_by_the_tenant_refuses_with_user_budget_exceeded(
        gateway_factory, upstream, keys, token_of):
    """A tenant's own ``limits.per_user`` replaces its plan's: a user budget of $0.001 admits
    two requests of $0.0005 and refuses the third on every worker with
    ``user_budget_exceeded``; another user still gets in, and the tenant's budget took both."""
    plans = plan({"requests": windows((1000, LONG)), "monthly_budget_usd": 1.0},
                 {"requests": windows((100, LONG))})
    acme = tenant("team", limits={"per_user": {"monthly_budget_usd": 0.001}})
    config = gateway_config(keys, {"acme": acme}, plans=plans, pricing=PRICEY)
    proxy = gateway_factory(config, name="user-budget")
    wait_clear_of_month_edge()
    body = chat_body(model="gpt-pricey", max_tokens=10)
    for _ in range(2):
        resp = proxy.client.chat(token=token_of("alice"), body=body,
                                 headers=answer("openai-json", in_=20, out=10))
        assert resp.status == 200, resp
        assert filter_record(proxy, resp.request_id)["cost_usd"] == "0.0005"
        # Only the tenant's request window: the tenant's per_user has none.
        assert remaining(resp, "requests") is not None
    send = lambda: proxy.client.chat(token=token_of("alice"), body=body)  # noqa: E731
    denied = send()
    assert_quota_denied(denied, "user_budget_exceeded", [("requests", 1000, LONG)],
                        refusing=None, upstream=upstream)
    assert "own monthly budget" in json.loads(denied.body)["error"]["message"]
    until_every_worker(proxy, send, lambda resp: assert_quota_denied(
        resp, "user_budget_exceeded", [("requests", 1000, LONG)], refusing=None,
        upstream=upstream))
    bob = proxy.client.chat(token=token_of("bob"), body=body,
                            headers=answer("openai-json", in_=20, out=10))
    assert bob.status == 200, bob
    assert remaining(bob, "requests") == 1000 - 3


def test_default_tenants_get_user_counters_of_their_own(gateway_factory, upstream, keys,
                                                        token_of):
    """Tenants admitted by ``default_tenant`` on a plan with ``per_user``: each tenant's users
    count in slots of that tenant's own (``max_users: 1``: the first user has one, the next
    share the tenant's shared counter), never in another tenant's."""
    plans = plan({"requests": windows((100, LONG))},
                 {"requests": windows((1, LONG)), "max_users": 1})
    config = gateway_config(keys, {"acme": tenant()}, plans=plans,
                            default_tenant={"providers": ["corp-idp"], "plan": "team"})
    proxy = gateway_factory(config, name="default-users")
    for tenant_id in ("hooli", "pied-piper"):
        first = proxy.client.chat(token=token_of("alice", tenant_id))
        assert first.status == 200 and remaining(first, "requests") == 0, first
        assert_quota_denied(proxy.client.chat(token=token_of("alice", tenant_id)),
                            "user_request_quota_exceeded", [("requests", 1, LONG)],
                            refusing=LONG, upstream=upstream)
        # Bob finds the one slot taken: the shared counter admits one request of all such.
        bob = proxy.client.chat(token=token_of("bob", tenant_id))
        assert bob.status == 200, bob
        for user in ("bob", "carol"):
            assert_quota_denied(proxy.client.chat(token=token_of(user, tenant_id)),
                                "user_request_quota_exceeded", [("requests", 1, LONG)],
                                refusing=LONG, upstream=upstream)
