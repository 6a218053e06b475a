"""Who is calling: token sources, the algorithm matrix, and every way a token can be bad."""

import time

import pytest

from harness.expect import assert_allowed, assert_denied
from harness.keys import (CORP_ISSUER, GLOBEX_ISSUER, claims, forge_alg_none,
                          forge_hmac_with_public_key, mint, tamper_payload, with_header)

ALGORITHMS = [("corp_rsa", a) for a in ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")] \
    + [("corp_ec256", "ES256"), ("corp_ec384", "ES384"), ("corp_ed", "EdDSA")] \
    + [("corp_hs", a) for a in ("HS256", "HS384", "HS512")]


@pytest.mark.parametrize("key_name,alg", ALGORITHMS, ids=[a for _, a in ALGORITHMS])
def test_token_signed_with_supported_algorithm_is_admitted(client, upstream, keys,
                                                           key_name, alg):
    token = mint(getattr(keys, key_name), claims("acme"), alg)
    seen = assert_allowed(client.chat(token=token), upstream)
    assert seen.header_values("x-tenant-id") == ["acme"]


# === Token sources ===

def test_request_without_token_is_refused_as_missing_token(client, upstream):
    assert_denied(client.chat(), 401, "missing_token", upstream)


@pytest.mark.parametrize("prefix", ["bearer ", "BEARER ", "BeArEr "])
def test_bearer_prefix_is_matched_case_insensitively(client, upstream, keys, prefix):
    token = mint(keys.corp_rsa, claims("acme"))
    resp = client.chat(headers={"authorization": prefix + token})
    assert_allowed(resp, upstream)


def test_token_in_x_api_key_is_accepted_without_authorization(client, upstream, keys):
    token = mint(keys.corp_rsa, claims("acme"))
    seen = assert_allowed(client.chat(headers={"x-api-key": token}), upstream)
    assert seen.header_values("x-tenant-id") == ["acme"]


def test_authorization_is_used_before_x_api_key(client, upstream, keys):
    token = mint(keys.corp_rsa, claims("acme"))
    resp = client.chat(token=token, headers={"x-api-key": "not-a-token"})
    assert_allowed(resp, upstream)


def test_invalid_bearer_token_is_not_rescued_by_a_valid_x_api_key(client, upstream, keys):
    token = mint(keys.corp_rsa, claims("acme"))
    resp = client.chat(token="not.a.token", headers={"x-api-key": token})
    assert_denied(resp, 401, "invalid_token", upstream)


# === Time and clock skew ===

def test_token_expired_within_clock_skew_is_admitted(client, upstream, keys):
    token = mint(keys.corp_rsa, claims("acme", ttl=-30))
    assert_allowed(client.chat(token=token), upstream)


def test_token_expired_beyond_clock_skew_is_refused_as_expired(client, upstream, keys):
    token = mint(keys.corp_rsa, claims("acme", ttl=-120))
    assert_denied(client.chat(token=token), 401, "token_expired", upstream)


def test_token_not_yet_valid_within_clock_skew_is_admitted(client, upstream, keys):
    token = mint(keys.corp_rsa, claims("acme", nbf=int(time.time()) + 30))
    assert_allowed(client.chat(token=token), upstream)


def test_token_not_yet_valid_beyond_clock_skew_is_refused(client, upstream, keys):
    token = mint(keys.corp_rsa, claims("acme", nbf=int(time.time()) + 3600))
    assert_denied(client.chat(token=token), 401, "invalid_token", upstream)


def test_token_without_exp_is_refused(client, upstream, keys):
    token = mint(keys.corp_rsa, claims("acme", ttl=None))
    assert_denied(client.chat(token=token), 401, "invalid_token", upstream)


# === Audience ===

def test_token_whose_audience_list_contains_ours_is_admitted(client, upstream, keys):
    token = mint(keys.corp_rsa, claims("acme", aud=["billing", "genai-gateway"]))
    assert_allowed(client.chat(token=token), upstream)


# === Tokens that must never verify ===

def _bad_tokens(keys):
    good = mint(keys.corp_rsa, claims("acme"))
    return {
        "wrong_issuer": mint(keys.corp_rsa, claims("acme", iss="https://idp.evil.test")),
        "issuer_of_another_provider": mint(keys.corp_rsa, claims("acme", iss=GLOBEX_ISSUER)),
        "globex_key_with_corp_issuer": mint(keys.globex_rsa, claims("acme", iss=CORP_ISSUER)),
        "wrong_audience": mint(keys.corp_rsa, claims("acme", aud="billing")),
        "audience_list_without_ours": mint(keys.corp_rsa, claims("acme", aud=["a", "b"])),
        "no_audience": mint(keys.corp_rsa, claims("acme", aud=None)),
        "unknown_kid": mint(keys.corp_rsa.with_kid("rsa-unknown"), claims("acme")),
        "key_not_in_set": mint(keys.stranger_rsa.with_kid("rsa-1"), claims("acme")),
        "stranger_key_and_kid": mint(keys.stranger_rsa, claims("acme")),
        "tampered_payload": tamper_payload(good, claims("acme", sub="mallory")),
        "tampered_tenant": tamper_payload(good, claims("globex")),
        "signature_removed": good.rsplit(".", 1)[0] + ".",
        "alg_none": forge_alg_none(claims("acme"), kid="rsa-1"),
        "alg_none_uppercase": with_header(forge_alg_none(claims("acme")), alg="NONE"),
        "alg_none_with_real_signature": with_header(good, alg="none"),
        "hs256_keyed_with_rsa_public_key": forge_hmac_with_public_key(keys.corp_rsa,
                                                                     claims("acme")),
        "rsa_signature_under_ec_kid": mint(keys.corp_rsa, claims("acme"),
                                           headers={"kid": "ec256-1"}),
        "ec_signature_relabelled_rs256": with_header(mint(keys.corp_ec256, claims("acme")),
                                                     alg="RS256"),
        "rs256_relabelled_ps256": with_header(good, alg="PS256"),
        "hmac_token_under_rsa_kid": mint(keys.corp_hs, claims("acme"),
                                         headers={"kid": "rsa-1"}),
    }


BAD_TOKEN_CASES = ["wrong_issuer", "issuer_of_another_provider",
                   "globex_key_with_corp_issuer", "wrong_audience",
                   "audience_list_without_ours", "no_audience", "unknown_kid",
                   "key_not_in_set", "stranger_key_and_kid", "tampered_payload",
                   "tampered_tenant", "signature_removed", "alg_none", "alg_none_uppercase",
                   "alg_none_with_real_signature", "hs256_keyed_with_rsa_public_key",
                   "rsa_signature_under_ec_kid", "ec_signature_relabelled_rs256",
                   "rs256_relabelled_ps256", "hmac_token_under_rsa_kid"]


@pytest.mark.parametrize("case", BAD_TOKEN_CASES)
def test_unverifiable_token_is_refused_as_invalid(client, upstream, keys, case):
    token = _bad_tokens(keys)[case]
    assert_denied(client.chat(token=token), 401, "invalid_token", upstream)


@pytest.mark.parametrize("case", ["alg_none", "hs256_keyed_with_rsa_public_key",
                                  "tampered_tenant"])
def test_forged_token_in_x_api_key_is_refused_too(client, upstream, keys, case):
    token = _bad_tokens(keys)[case]
    assert_denied(client.chat(headers={"x-api-key": token}), 401, "invalid_token", upstream)
