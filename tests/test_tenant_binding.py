"""Which tenant a verified token may act for: listed tenants, the default tenant, suspended
tenants, providers vouching only for their own tenants, and the client's tenant header."""

import pytest

from harness.expect import assert_allowed, assert_denied
from harness.keys import GLOBEX_ISSUER, claims, mint
from harness.records import filter_record


def corp_token(keys, tenant, **kw):
    return mint(keys.corp_rsa, claims(tenant, **kw))


def globex_token(keys, tenant, **kw):
    return mint(keys.globex_rsa, claims(tenant, iss=GLOBEX_ISSUER, **kw))


def test_token_from_corp_idp_for_acme_is_admitted(client, upstream, keys):
    seen = assert_allowed(client.chat(token=corp_token(keys, "acme")), upstream)
    assert seen.header_values("x-tenant-id") == ["acme"]


def test_token_from_globex_idp_for_globex_is_admitted(client, upstream, keys):
    seen = assert_allowed(client.chat(token=globex_token(keys, "globex")), upstream)
    assert seen.header_values("x-tenant-id") == ["globex"]


def test_unlisted_tenant_from_a_default_tenant_provider_is_admitted(client, upstream, keys):
    seen = assert_allowed(client.chat(token=corp_token(keys, "hooli")), upstream)
    assert seen.header_values("x-tenant-id") == ["hooli"]


def test_unlisted_tenant_from_another_provider_is_refused_as_unknown(client, upstream, keys):
    resp = client.chat(token=globex_token(keys, "hooli"))
    assert_denied(resp, 403, "unknown_tenant", upstream)


def test_suspended_tenant_is_refused(client, upstream, keys):
    assert_denied(client.chat(token=corp_token(keys, "initech")), 403, "tenant_suspended",
                  upstream)


def test_token_from_globex_idp_claiming_acme_is_refused(client, upstream, keys):
    resp = client.chat(token=globex_token(keys, "acme"))
    assert_denied(resp, 403, "tenant_provider_mismatch", upstream)


def test_token_from_corp_idp_claiming_globex_is_refused(client, upstream, keys):
    resp = client.chat(token=corp_token(keys, "globex"))
    assert_denied(resp, 403, "tenant_provider_mismatch", upstream)


def test_token_from_corp_idp_claiming_umbrella_is_refused(client, upstream, keys):
    resp = client.chat(token=corp_token(keys, "umbrella"))
    assert_denied(resp, 403, "tenant_provider_mismatch", upstream)


def test_client_tenant_header_naming_another_tenant_is_refused(client, upstream, keys):
    resp = client.chat(token=corp_token(keys, "acme"), headers={"x-tenant-id": "globex"})
    assert_denied(resp, 403, "tenant_header_mismatch", upstream)


@pytest.mark.parametrize("values", [
    pytest.param(["globex", "acme"], id="wrong_first"),
    pytest.param(["acme", "globex"], id="wrong_second"),
    pytest.param(["acme", "acme, globex"], id="wrong_in_a_list"),
])
def test_conflicting_duplicate_tenant_headers_are_refused(envoy, client, upstream, keys,
                                                          values):
    """Two client x-tenant-id values, one of them another tenant's: a client-sent value that
    is not the verified tenant is refused (contract: "a client-sent value must be absent or
    equal to the verified tenant, otherwise 403 and an audit record"), whichever comes first."""
    resp = client.chat(token=corp_token(keys, "acme"),
                       headers=[("x-tenant-id", value) for value in values])
    assert_denied(resp, 403, "tenant_header_mismatch", upstream)
    record = filter_record(envoy, resp.request_id)
    assert (record["decision"], record["reason"], record["tenant"]) == \
        ("deny", "tenant_header_mismatch", "acme"), record


def test_client_tenant_header_equal_to_the_verified_tenant_is_admitted(client, upstream, keys):
    resp = client.chat(token=corp_token(keys, "acme"), headers={"x-tenant-id": "acme"})
    seen = assert_allowed(resp, upstream)
    assert seen.header_values("x-tenant-id") == ["acme"]
