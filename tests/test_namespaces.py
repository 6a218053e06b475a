"""Tenant namespaces (contract: ``routing``): the filter places each request under its tenant's
path prefix and authority, Envoy routes the rewritten request (three upstreams: acme's
namespace, globex's, everything else), and no path trick gets a request out of its tenant's
namespace. Paths are sent raw (http.client does not normalise them)."""

import pytest

from harness.expect import assert_denied
from harness.records import filter_record

ACME_PREFIX = "/tenants/acme-ns/"


def test_request_is_placed_under_the_tenant_prefix_and_routed_there(namespace_gateway):
    gw = namespace_gateway
    resp = gw.client.post("/v1/chat/completions?x=1", token=gw.acme,
                          body={"model": "gpt-4o", "messages": []},
                          headers=[("x-tenant-namespace", "globex"),
                                   ("x-tenant-namespace", "other"),
                                   ("host", "gateway.example")])
    assert resp.status == 200, resp
    # Without a new route selection the rewritten request would have gone to upstream C.
    assert gw.reached(resp.request_id) == ["a"]
    seen = gw.a.received(resp.request_id)
    assert seen.path == "/tenants/acme-ns/v1/chat/completions?x=1"
    assert seen.header_values("host") == ["acme-ns.models.internal"]
    assert seen.header_values("x-tenant-namespace") == ["acme-ns"]
    record = filter_record(gw.proxy, resp.request_id)
    assert record["path"] == "/v1/chat/completions?x=1"  # as received
    assert (record["tenant"], record["decision"]) == ("acme", "allow")


def test_another_tenant_is_placed_in_its_own_namespace(namespace_gateway):
    gw = namespace_gateway
    resp = gw.client.get("/v1/models", token=gw.globex)
    assert resp.status == 200, resp
    assert gw.reached(resp.request_id) == ["b"]
    seen = gw.b.received(resp.request_id)
    assert seen.path == "/tenants/globex/v1/models"
    assert seen.header_values("host") == ["globex.models.internal"]
    assert seen.header_values("x-tenant-namespace") == ["globex"]


def test_path_already_in_the_own_namespace_is_not_prefixed_twice(namespace_gateway):
    gw = namespace_gateway
    resp = gw.client.get("/tenants/acme-ns/v1/x", token=gw.acme)
    assert resp.status == 200, resp
    assert gw.reached(resp.request_id) == ["a"]
    assert gw.a.received(resp.request_id).path == "/tenants/acme-ns/v1/x"


@pytest.mark.parametrize("path", ["/tenants/globex/v1/x", "/tenants/globex",
                                  "/tenants/globex/", "/tenants/other-tenant/v1/x"])
def test_path_addressing_another_namespace_is_refused(namespace_gateway, path):
    gw = namespace_gateway
    resp = gw.client.get(path, token=gw.acme)
    assert_denied(resp, 403, "cross_tenant_path")
    assert gw.reached(resp.request_id) == []
    record = filter_record(gw.proxy, resp.request_id)
    assert (record["decision"], record["reason"], record["tenant"]) == \
        ("deny", "cross_tenant_path", "acme")
    assert record["path"] == path


# (path as sent, where it must end): ("forwarded", the path acme's upstream receives) or
# (status, reason) of the refusal. RFC 3986 dot-segment removal (never above the root),
# percent-decoded dots, merged slashes; then the namespace rules.
TRAVERSALS = [
    ("/v1/../../tenants/globex/x", (403, "cross_tenant_path")),
    ("/v1/%2e%2e/%2e%2e/tenants/globex/x", (403, "cross_tenant_path")),
    ("/v1/%2E%2E/%2E%2E/tenants/globex/x", (403, "cross_tenant_path")),
    ("//tenants//globex/x", (403, "cross_tenant_path")),
    ("/./tenants/./globex/x", (403, "cross_tenant_path")),
    ("/tenants/acme-ns/../globex/x", (403, "cross_tenant_path")),
    ("/tenants/acme-ns/%2e%2e/globex/x", (403, "cross_tenant_path")),
    ("/tenants/acme-ns/v1/../../../tenants/globex/x", (403, "cross_tenant_path")),
    ("/v1/..;/..;/tenants/globex/x", (400, "invalid_path")),
    ("/v1/./x", ("forwarded", "/tenants/acme-ns/v1/x")),
    ("/v1/../../../../x", ("forwarded", "/tenants/acme-ns/x")),
    ("/..", ("forwarded", "/tenants/acme-ns/")),
    # "/tenants/" names no namespace: an ordinary path of acme's.
    ("/tenants/acme-ns/..", ("forwarded", "/tenants/acme-ns/tenants/")),
    # The query is not a path: kept as sent.
    ("/v1/x/..?q=../../tenants/globex", ("forwarded",
                                         "/tenants/acme-ns/v1/?q=../../tenants/globex")),
]


@pytest.mark.parametrize("path,outcome", TRAVERSALS, ids=[p for p, _ in TRAVERSALS])
def test_traversal_stays_inside_the_namespace_or_is_refused(namespace_gateway, path, outcome):
    gw = namespace_gateway
    resp = gw.client.get(path, token=gw.acme)
    reached = gw.reached(resp.request_id)
    record = filter_record(gw.proxy, resp.request_id)
    if outcome[0] == "forwarded":
        assert resp.status == 200, resp
        assert reached == ["a"], f"{path!r} reached upstream(s) {reached}"
        assert gw.a.received(resp.request_id).path == outcome[1]
        assert (record["decision"], record["reason"]) == ("allow", "ok"), record
    else:
        status, reason = outcome
        assert_denied(resp, status, reason)
        assert reached == [], f"{path!r} reached upstream(s) {reached}"
        assert (record["decision"], record["reason"], record["tenant"]) == \
            ("deny", reason, "acme"), record
    assert record["path"] == path


@pytest.mark.parametrize("path,forwarded", [
    ("/v1/./x", "/tenants/acme-ns/v1/x"),
    ("/v1//x", "/tenants/acme-ns/v1/x"),
    ("/v1/y/../x", "/tenants/acme-ns/v1/x"),
    ("/v1/%78", "/tenants/acme-ns/v1/x"),
])
def test_harmless_paths_are_normalised_inside_the_namespace(namespace_gateway, path,
                                                            forwarded):
    gw = namespace_gateway
    resp = gw.client.get(path, token=gw.acme)
    assert resp.status == 200, resp
    assert gw.a.received(resp.request_id).path == forwarded


@pytest.mark.parametrize("path", [
    "/v1/a%2fb", "/v1/a%2Fb", "/v1/..%2f..%2ftenants%2fglobex",
    "/v1/a%5cb", "/v1/a%5Cb", "/v1/a\\b", "/v1\\..\\..\\tenants\\globex",
    "/v1/a%00b", "/v1/a%25b", "/v1/a%252fb",
])
def test_paths_the_filter_cannot_place_safely_are_invalid(namespace_gateway, path):
    gw = namespace_gateway
    resp = gw.client.get(path, token=gw.acme)
    assert_denied(resp, 400, "invalid_path")
    assert gw.reached(resp.request_id) == []
    record = filter_record(gw.proxy, resp.request_id)
    assert (record["reason"], record["tenant"]) == ("invalid_path", "acme"), record
