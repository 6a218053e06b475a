"""Keys fetched from a remote JWKS endpoint through an Envoy cluster: first fetch, rotation
without restart, and keeping the last good key set when the endpoint fails.

Every request here carries a token minted for it (a unique ``jti``): a token the gateway has
verified before is answered from its verified-token cache without looking at the keys, so
only fresh tokens show which keys a worker holds."""

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
