"""One spelling per token, one meaning per claim set, one kind of token.

What an outside review found looser in hand-written JWS code than in jwt-simple, tried as a
client would over HTTP/1.1 and HTTP/2 against the main gateway: a second spelling of a valid
token (non-canonical base64url, an RSA signature value plus the modulus), a header or claim
set that says one thing twice, and JWTs of another type from the right issuer. Each refusal is
followed by the honest token, which the same connection type gets through.

Every token here is new to the gateway (a unique ``jti``): a verified token is answered from
the worker's cache, and only new ones reach the checks."""

import itertools
import json
import time

import pytest

from harness.client import new_request_id
from harness.expect import assert_allowed, assert_denied
from harness.h2client import H2Client
from harness.keys import (AUDIENCE, CORP_ISSUER, claims, decoded_header, mint, respellings,
                          rsa_signature_plus_modulus, sign_raw, signature_respellings)

PROTOCOLS = ["http1", "http2"]


def send(envoy, proto, token):
    """A chat request with ``token`` over a new connection."""
    if proto == "http2":
        return H2Client(envoy.listener_port).request(
            "POST", "/v1/chat/completions", token=token, content_length=True,
            body={"model": "gpt-4o", "messages": [{"role": "user", "content": "hello"}]})
    return envoy.client.chat(token=token)


def fresh_claims(tenant="acme", **extra):
    return claims(tenant, jti=new_request_id(), **extra)


def refused_then_honest(envoy, upstream, proto, bad_tokens, honest):
    """Every bad token gets 401 invalid_token and reaches no upstream; then the honest one is
    admitted."""
    assert bad_tokens
    for token in bad_tokens:
        assert_denied(send(envoy, proto, token), 401, "invalid_token", upstream)
    seen = assert_allowed(send(envoy, proto, honest), upstream)
    assert seen.header_values("x-tenant-id") == ["acme"]


# === (1) base64url: only the canonical spelling ===

SIGNATURE_CASES = [("corp_ec256", "ES256", 15), ("corp_rsa", "RS256", 15),
                   ("corp_rsa", "PS256", 15), ("corp_ed", "EdDSA", 15),
                   ("corp_hs", "HS512", 15), ("corp_hs", "HS256", 3)]


@pytest.mark.parametrize("proto", PROTOCOLS)
@pytest.mark.parametrize("key_name,alg,others", SIGNATURE_CASES,
                         ids=[alg for _, alg, _ in SIGNATURE_CASES])
def test_other_spellings_of_a_signature_are_refused(envoy, upstream, keys, proto, key_name,
                                                    alg, others):
    honest = mint(getattr(keys, key_name), fresh_claims(), alg)
    bad = signature_respellings(honest)
    assert len(bad) == others
    refused_then_honest(envoy, upstream, proto, bad, honest)


@pytest.mark.parametrize("proto", PROTOCOLS)
def test_other_spellings_of_header_or_payload_are_refused(envoy, upstream, keys, proto):
    # Header and claims padded until both encodings end with unused bits.
    for header_pad, claims_pad in itertools.product(range(3), range(3)):
        honest = mint(keys.corp_ec256, fresh_claims(pad="x" * claims_pad),
                      headers={"x-pad": "y" * header_pad})
        header, payload, signature = honest.split(".")
        if respellings(header) and respellings(payload):
            break
    bad = [f"{h}.{payload}.{signature}" for h in respellings(header)] \
        + [f"{header}.{p}.{signature}" for p in respellings(payload)]
    refused_then_honest(envoy, upstream, proto, bad, honest)


# === (2) RSA: a signature value at or above the modulus ===

@pytest.mark.parametrize("proto", PROTOCOLS)
@pytest.mark.parametrize("alg", ["PS256", "PS384", "PS512", "RS256"])
def test_rsa_signature_plus_the_modulus_is_refused(envoy, upstream, keys, proto, alg):
    # About a third of signatures of this key leave room for s + n in 256 bytes.
    for _ in range(200):
        honest = mint(keys.corp_rsa, fresh_claims(), alg)
        bad = rsa_signature_plus_modulus(honest, keys.corp_rsa)
        if bad is not None:
            break
    else:
        pytest.fail("no signature of 200 had room for s + n")
    refused_then_honest(envoy, upstream, proto, [bad], honest)


# === (3) a JOSE header or claim set that repeats a member ===

def _claims_text(*members) -> str:
    """A claim set valid now for tenant acme, with ``members`` (JSON texts such as
    ``"aud":"x"``) after the usual ones: a repeat is kept as written."""
    now = int(time.time())
    usual = [("iss", CORP_ISSUER), ("sub", "alice"), ("iat", now), ("exp", now + 600),
             ("jti", new_request_id())]
    texts = [f"{json.dumps(k)}:{json.dumps(v)}" for k, v in usual] + list(members)
    return "{" + ",".join(texts) + "}"


EC_HEADER = '{"alg":"ES256","kid":"ec256-1"}'
OURS = [f'"aud":"{AUDIENCE}"', '"tenant_id":"acme"']
REPEATS = {
    "aud_other_then_ours": (EC_HEADER, ['"aud":"billing"', f'"aud":"{AUDIENCE}"',
                                        '"tenant_id":"acme"']),
    "tenant_globex_then_acme": (EC_HEADER, [f'"aud":"{AUDIENCE}"', '"tenant_id":"globex"',
                                            '"tenant_id":"acme"']),
    "exp_repeated": (EC_HEADER, OURS + [f'"exp":{2 ** 31}']),
    "iss_repeated": (EC_HEADER, OURS + [f'"iss":"{CORP_ISSUER}"']),
    "nested_repeat": (EC_HEADER, OURS + ['"org":{"id":"x","id":"y"}']),
    "escaped_repeat": (EC_HEADER, OURS + ['"tenant\\u005fid":"globex"']),
    "header_alg_repeated": ('{"alg":"ES256","kid":"ec256-1","alg":"ES256"}', OURS),
    "header_kid_repeated": ('{"alg":"ES256","kid":"rsa-1","kid":"ec256-1"}', OURS),
}


@pytest.mark.parametrize("proto", PROTOCOLS)
@pytest.mark.parametrize("case", list(REPEATS))
def test_repeated_members_are_refused(envoy, upstream, keys, proto, case):
    header, members = REPEATS[case]
    bad = sign_raw(keys.corp_ec256, header, _claims_text(*members))
    # The same claims without the repeat, signed the same way, are admitted.
    honest = sign_raw(keys.corp_ec256, EC_HEADER, _claims_text(*OURS))
    refused_then_honest(envoy, upstream, proto, [bad], honest)


# === (7) JWTs of other types from the same issuer ===

@pytest.mark.parametrize("proto", PROTOCOLS)
@pytest.mark.parametrize("typ", ["logout+jwt", "secevent+jwt", "application/logout+jwt",
                                 "dpop+jwt", "JOSE", ""])
def test_tokens_of_other_types_are_refused(envoy, upstream, keys, proto, typ):
    header = json.dumps({"alg": "ES256", "kid": keys.corp_ec256.kid, "typ": typ})
    payload = json.dumps(fresh_claims(events={"http://schemas.openid.net/event/backchannel"
                                              "-logout": {}}))
    bad = sign_raw(keys.corp_ec256, header, payload)
    honest = mint(keys.corp_ec256, fresh_claims())
    refused_then_honest(envoy, upstream, proto, [bad], honest)


@pytest.mark.parametrize("proto", PROTOCOLS)
@pytest.mark.parametrize("typ", [None, "JWT", "jwt", "at+jwt", "application/at+jwt",
                                 "AT+JWT"])
def test_access_tokens_and_plain_jwts_are_admitted(envoy, upstream, keys, proto, typ):
    token = mint(keys.corp_rsa, fresh_claims(), "PS256", headers={"typ": typ})
    assert decoded_header(token).get("typ") == typ
    seen = assert_allowed(send(envoy, proto, token), upstream)
    assert seen.header_values("x-tenant-id") == ["acme"]
