"""The harness itself, proven against Envoy without the tenant-guard filter (router only), so
that a failure elsewhere is about the filter and not about ports, startup or log polling."""

import fcntl
import json
import socket
import urllib.request

import jwt
import pytest

from harness import bootstrap as bs
from harness.envoy_process import Envoy, EnvoyStartError
from harness.ports import LOCK_DIR, reserve_port, reserve_ports
from harness.keys import claims, jwk_set, mint, CORP_ISSUER, AUDIENCE
from harness.servers import JwksServer


@pytest.fixture
def plain_envoy(envoy_factory):
    return envoy_factory(http_filters=[], name="router-only")


def test_envoy_without_filter_proxies_to_the_recording_upstream(plain_envoy, upstream):
    resp = plain_envoy.client.chat(headers={"x-custom": "kept"})
    assert resp.status == 200, resp
    assert resp.json()["object"] == "chat.completion"
    seen = upstream.received(resp.request_id)
    assert seen.method == "POST"
    assert seen.path == "/v1/chat/completions"
    assert seen.header("x-custom") == "kept"
    assert json.loads(seen.body)["model"] == "gpt-4o"


def test_access_log_catches_up_with_completed_requests(plain_envoy):
    ids = [plain_envoy.client.get("/v1/models").request_id for _ in range(5)]
    lines = plain_envoy.wait_access_log_flushed()
    assert len(lines) == plain_envoy.requests_completed() == 5
    assert [line["x_request_id"] for line in lines] == ids
    line = plain_envoy.access_log_entry(ids[0])
    assert line["path"] == "/v1/models"
    assert int(line["status"]) == 200
    # Without the filter nothing sets the wasm.* filter state.
    assert line["tenant"] is None


def test_connections_spread_over_both_workers(plain_envoy):
    before = plain_envoy.worker_connections()
    for _ in range(20):
        assert plain_envoy.client.get("/").status == 200
    after = plain_envoy.worker_connections()
    assert sorted(after) == [0, 1], after
    # (>=: the readiness probe's connection may be accepted late)
    assert sum(after.values()) - sum(before.values()) >= 20
    assert all(after[w] > before.get(w, 0) for w in (0, 1)), (before, after)


def test_envoy_is_stopped_and_its_ports_released(envoy_factory):
    proxy = envoy_factory(http_filters=[], name="stop-me")
    assert proxy.running
    ports = (proxy.admin_port, proxy.listener_port)
    assert all(leased_elsewhere(port) for port in ports)
    proxy.stop()
    assert not proxy.running
    assert proxy.process.returncode is not None
    for port in ports:
        assert not leased_elsewhere(port)
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", port))


def leased_elsewhere(port) -> bool:
    """Whether the lock of ``port``'s lease is held (by this or another process)."""
    with open(LOCK_DIR / f"{port}.lock", "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        return False


def test_leased_ports_are_distinct_outside_the_ephemeral_range_and_held_until_released():
    low, _ = (int(v) for v in
              open("/proc/sys/net/ipv4/ip_local_port_range").read().split())
    leases = reserve_ports(50)
    try:
        ports = [lease.port for lease in leases]
        assert len(set(ports)) == 50
        assert all(port < low for port in ports), ports
        assert all(leased_elsewhere(port) for port in ports)
    finally:
        for lease in leases:
            lease.release()
    assert not any(leased_elsewhere(port) for port in ports)


def test_envoy_readiness_is_its_own_listener_not_any_process_on_the_port(envoy_factory,
                                                                          tmp_path):
    """Ready means: the admin answering is this process's (the config path it reports), it is
    LIVE, and it lists a listener bound to this listener_port. Another Envoy's admin, or a
    listener on another port, is not this Envoy being ready."""
    proxy = envoy_factory(http_filters=[], name="ready")
    assert proxy._ready()
    status, body = proxy.admin_get("/listeners?format=json")
    bound = [entry["local_address"]["socket_address"]
             for entry in json.loads(body)["listener_statuses"]]
    assert bound == [{"address": "127.0.0.1", "port_value": proxy.listener_port}]

    someone_else = Envoy(tmp_path / "someone-else", proxy.make_config)
    someone_else.admin_port, someone_else.listener_port = proxy.admin_port, proxy.listener_port
    assert not someone_else._ready(), "another Envoy's admin taken for this one's"
    with reserve_port() as other:
        wrong_port = Envoy(proxy.workdir, proxy.make_config, admin_port=proxy.admin_port,
                           listener_port=other.port)
        assert not wrong_port._ready(), "a listener on another port taken for this one's"


def test_envoy_that_cannot_start_raises_with_the_tail_of_its_log(envoy_factory, upstream,
                                                                 jwks_server):
    def broken(envoy):
        doc = bs.bootstrap(admin_port=envoy.admin_port, upstream_port=upstream.port,
                           jwks_port=jwks_server.port,
                           listener_doc=bs.listener(envoy.listener_port,
                                                    envoy.access_log_path, []))
        doc["static_resources"]["clusters"][0]["type"] = "NOT_A_TYPE"
        return doc
    with pytest.raises(EnvoyStartError) as info:
        envoy_factory(make_config=broken, name="broken")
    assert "NOT_A_TYPE" in str(info.value)


def test_jwks_server_serves_rotates_fails_and_counts(keys):
    # A server of its own: the session's is fetched by every Envoy with remote keys meanwhile.
    with JwksServer(jwk_set(keys.remote_rsa)) as jwks_server:
        url = f"http://127.0.0.1:{jwks_server.port}/jwks.json"
        with urllib.request.urlopen(url) as resp:
            assert json.loads(resp.read()) == jwk_set(keys.remote_rsa)
        jwks_server.set_jwks(jwk_set(keys.remote_rsa_next))
        with urllib.request.urlopen(url) as resp:
            assert json.loads(resp.read())["keys"][0]["kid"] == "remote-2"
        jwks_server.set_mode("fail")
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(url)
        assert err.value.code == 500
        jwks_server.set_mode("garbage")
        with urllib.request.urlopen(url) as resp:
            with pytest.raises(ValueError):
                json.loads(resp.read())
        assert jwks_server.fetches == 4


ALGORITHMS = [("corp_rsa", a) for a in ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")] \
    + [("corp_ec256", "ES256"), ("corp_ec384", "ES384"), ("corp_ed", "EdDSA")] \
    + [("corp_hs", a) for a in ("HS256", "HS384", "HS512")]


@pytest.mark.parametrize("key_name,alg", ALGORITHMS)
def test_published_jwk_verifies_tokens_minted_by_the_harness(keys, key_name, alg):
    """Our JWKs are standard: an independent implementation verifies our tokens with them."""
    key = getattr(keys, key_name)
    token = mint(key, claims("acme"), alg)
    public = jwt.PyJWK.from_dict(key.jwk, algorithm=alg)
    decoded = jwt.decode(token, public.key, algorithms=[alg], audience=AUDIENCE,
                         issuer=CORP_ISSUER)
    assert decoded["tenant_id"] == "acme"
    assert jwt.get_unverified_header(token)["kid"] == key.kid
