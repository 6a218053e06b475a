"""Keys fetched from a remote JWKS endpoint through an Envoy cluster: first fetch, rotation
without restart, keys sharing a kid or without one (as Envoy's jwt_authn takes them), keeping
the last good key set when the endpoint fails, and refusing it once it is older than
``remote_jwks.max_stale_s``.

Every request here carries a token minted for it (a unique ``jti``): a token the gateway has
verified before is answered from its verified-token cache without looking at the keys, so
only fresh tokens show which keys a worker holds."""

import json

import pytest

from harness import bootstrap as bs
from harness.expect import (assert_allowed, assert_denied,
                            assert_eventually_accepted_on_all_workers)
from harness.keys import REMOTE_ISSUER, claims, jwk_set, mint
from harness.client import new_request_id
from harness.servers import JwksServer
from harness.wait import wait_for
from harness.workers import until_every_worker


def remote_token(key, tenant="umbrella", **kw):
    """A token of the remote IdP, never sent before."""
    kw.setdefault("jti", new_request_id())
    return mint(key, claims(tenant, iss=REMOTE_ISSUER, **kw))


def fresh_chat(client, key, tenant="umbrella"):
    """``() -> response``: each call sends a new token signed by ``key``."""
    return lambda: client.chat(token=remote_token(key, tenant))


@pytest.fixture
def remote_jwks(jwks_server, keys):
    """The session JWKS server, reset to serve remote-1 after the test."""
    yield jwks_server
    jwks_server.set_jwks(jwk_set(keys.remote_rsa))


def test_token_from_remote_idp_is_admitted_once_jwks_is_fetched(envoy, client, upstream, keys,
                                                                remote_jwks):
    assert_eventually_accepted_on_all_workers(envoy, fresh_chat(client, keys.remote_rsa))
    seen = assert_allowed(client.chat(token=remote_token(keys.remote_rsa)), upstream)
    assert seen.header_values("x-tenant-id") == ["umbrella"]
    assert remote_jwks.fetches > 0
    assert dict(remote_jwks.last_headers).get("host") == "jwks.test"


def test_remote_idp_token_claiming_acme_is_refused(envoy, client, upstream, keys, remote_jwks):
    assert_eventually_accepted_on_all_workers(envoy, fresh_chat(client, keys.remote_rsa))
    resp = client.chat(token=remote_token(keys.remote_rsa, "acme"))
    assert_denied(resp, 403, "tenant_provider_mismatch", upstream)


def test_rotated_remote_key_is_accepted_without_restart(envoy, client, keys, remote_jwks):
    remote_jwks.set_jwks(jwk_set(keys.remote_rsa_next))
    assert_eventually_accepted_on_all_workers(envoy, fresh_chat(client, keys.remote_rsa_next))


def test_remote_key_removed_by_rotation_is_eventually_refused(envoy, client, upstream, keys,
                                                              remote_jwks):
    remote_jwks.set_jwks(jwk_set(keys.remote_rsa_next))
    assert_eventually_accepted_on_all_workers(envoy, fresh_chat(client, keys.remote_rsa_next))
    last = {}

    def refused():
        last["resp"] = client.chat(token=remote_token(keys.remote_rsa))
        return last["resp"].status == 401
    wait_for(refused, timeout=10, interval=0.2,
             message=lambda: f"the rotated-out key to be refused (last: {last.get('resp')})")
    assert_denied(last["resp"], 401, "invalid_token", upstream)


@pytest.mark.parametrize("failure", ["fail", "garbage"])
def test_last_good_remote_keys_are_kept_when_the_endpoint_fails(envoy, client, keys,
                                                                remote_jwks, failure):
    assert_eventually_accepted_on_all_workers(envoy, fresh_chat(client, keys.remote_rsa))
    remote_jwks.set_mode(failure)
    # Every worker's timer has had time to refetch (and fail) at least once.
    remote_jwks.wait_for_fetches(4)
    until_every_worker(envoy, fresh_chat(client, keys.remote_rsa), lambda resp: assert_allowed(
        resp))


def test_remote_idp_token_is_refused_until_the_first_successful_fetch(
        envoy_factory, wasm_path, upstream, keys, plugin_config):
    with JwksServer(jwk_set(keys.remote_rsa)) as own_jwks:
        own_jwks.set_mode("fail")
        proxy = envoy_factory(
            make_config=bs.gateway(upstream.port, own_jwks.port,
                                   [bs.wasm_filter(wasm_path, plugin_config)]),
            name="jwks-late")
        own_jwks.wait_for_fetches(2)
        until_every_worker(proxy, fresh_chat(proxy.client, keys.remote_rsa),
                           lambda resp: assert_denied(resp, 401, "invalid_token", upstream))
        own_jwks.set_mode("ok")
        assert_eventually_accepted_on_all_workers(proxy,
                                                  fresh_chat(proxy.client, keys.remote_rsa))
        proxy.stop()


# === Keys as Envoy's jwt_authn takes them: repeated kids, keys without kid ===

def test_keys_sharing_a_kid_are_each_tried(envoy, client, keys, remote_jwks):
    # An IdP rolling its key may publish the old and the new one under the same kid.
    remote_jwks.set_jwks(jwk_set(keys.remote_rsa, keys.remote_rsa_next.with_kid("remote-1")))
    next_as_one = keys.remote_rsa_next.with_kid("remote-1")
    assert_eventually_accepted_on_all_workers(envoy, fresh_chat(client, next_as_one))
    assert_eventually_accepted_on_all_workers(envoy, fresh_chat(client, keys.remote_rsa))


def test_keys_without_kid_verify_tokens_that_carry_one(envoy, client, upstream, keys,
                                                      remote_jwks):
    kidless = {k: v for k, v in keys.remote_rsa.jwk.items() if k != "kid"}
    remote_jwks.set_jwks({"keys": [kidless]})
    # The token names a kid; the published key has none: it is tried (as by Envoy).
    any_kid = keys.remote_rsa.with_kid("whatever-the-idp-says")
    assert_eventually_accepted_on_all_workers(envoy, fresh_chat(client, any_kid))
    assert_allowed(client.chat(token=remote_token(keys.remote_rsa)), upstream)
    # A key that is not published still verifies nothing.
    assert_denied(client.chat(token=remote_token(keys.remote_rsa_next)), 401, "invalid_token",
                  upstream)


# === Stale keys: the last good set is kept for remote_jwks.max_stale_s, no longer ===

STALE_GAUGE = "wasmcustom.tenant_guard.provider.remote-idp.jwks_stale"
# The log line (denial records carry "keys of provider remote-idp are stale" too).
STALE_LINE = "keys of provider remote-idp are stale: no good fetch"
FRESH_LINE = "provider remote-idp: remote keys fresh again"


def _encryption_key_only(keys):
    return {"keys": [dict(keys.remote_rsa.jwk, use="enc")]}


@pytest.mark.parametrize("failure", ["no_usable_key", "garbage", "fail"])
def test_remote_keys_older_than_max_stale_s_verify_nothing(
        envoy_factory, wasm_path, upstream, keys, plugin_config, failure):
    config = json.loads(json.dumps(plugin_config))
    config["providers"]["remote-idp"]["remote_jwks"].update(
        {"refresh_s": 1, "timeout_ms": 1000, "max_stale_s": 3})
    with JwksServer(jwk_set(keys.remote_rsa)) as own_jwks:
        proxy = envoy_factory(
            make_config=bs.gateway(upstream.port, own_jwks.port,
                                   [bs.wasm_filter(wasm_path, config)]),
            name=f"jwks-stale-{failure}")
        send = fresh_chat(proxy.client, keys.remote_rsa)
        assert_eventually_accepted_on_all_workers(proxy, send)
        # A token every worker verified (and cached) before the keys go stale.
        cached = remote_token(keys.remote_rsa)
        until_every_worker(proxy, lambda: proxy.client.chat(token=cached), assert_allowed)
        assert proxy.stat(STALE_GAUGE) == 0

        if failure == "no_usable_key":
            own_jwks.set_jwks(_encryption_key_only(keys))
        else:
            own_jwks.set_mode(failure)
        # Every worker finds its keys stale: the gauge counts them (and Envoy's main thread,
        # which runs the filter's timer too).
        wait_for(lambda: proxy.stat(STALE_GAUGE) >= proxy.concurrency, timeout=20,
                 message=lambda: f"{STALE_GAUGE} >= {proxy.concurrency} "
                                 f"(is {proxy.stat(STALE_GAUGE)})")
        refused = lambda resp: assert_denied(resp, 401, "invalid_token", upstream)  # noqa: E731
        until_every_worker(proxy, send, refused)
        until_every_worker(proxy, lambda: proxy.client.chat(token=cached), refused)
        # Inline keys of other providers are not concerned.
        corp = mint(keys.corp_rsa, claims("acme", jti=new_request_id()))
        assert_allowed(proxy.client.chat(token=corp), upstream)
        # One line for the whole process, not one per worker or per request.
        log = proxy.wait_for_log(STALE_LINE)
        assert log.count(STALE_LINE) == 1, proxy.log_tail()

        own_jwks.set_jwks(jwk_set(keys.remote_rsa))
        assert_eventually_accepted_on_all_workers(proxy, send, timeout=20)
        wait_for(lambda: proxy.stat(STALE_GAUGE) == 0, timeout=10,
                 message=lambda: f"{STALE_GAUGE} back to 0 (is {proxy.stat(STALE_GAUGE)})")
        log = proxy.wait_for_log(FRESH_LINE)
        assert log.count(FRESH_LINE) == 1, proxy.log_tail()
        assert log.count(STALE_LINE) == 1, proxy.log_tail()
        proxy.stop()
