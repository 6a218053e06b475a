"""Host errors come back as values: a rate-limit cluster that does not exist gives one clear
error line at start-up and then `failure_mode`, never a dead VM; hostile text never reaches a
record unescaped."""

import pytest

from harness.answers import answer
from harness.expect import assert_denied, vm_failures_in_log, wasm_vm_stats
from harness.keys import claims, mint
from harness.plugin_config import gateway_config, tenant
from harness.records import filter_record, filter_records
from harness.wait import wait_for

MISSING = "tenant-guard-no-such-cluster"


@pytest.mark.parametrize("mode", ["deny", "allow"])
def test_a_missing_rate_limit_cluster_is_one_clear_error_then_failure_mode(gateway_factory,
                                                                         keys, mode):
    config = gateway_config(keys, {"acme": tenant()})
    config["global_rate_limit"] = {"cluster": MISSING, "domain": "tenant-guard",
                                   "failure_mode": mode}
    proxy = gateway_factory(config, name=f"missing-cluster-{mode}")
    token = mint(keys.corp_rsa, claims("acme"))
    log = proxy.wait_for_log(f'global_rate_limit.cluster "{MISSING}" cannot be called')
    lines = [line for line in log.splitlines() if "cannot be called" in line]
    assert len(lines) == 1, lines
    assert f'failure_mode "{mode}"' in lines[0]
    vms = wasm_vm_stats(proxy)
    for _ in range(6):
        resp = proxy.client.chat(token=token)
        if mode == "deny":
            assert_denied(resp, 503, "rate_limit_service_unavailable")
            assert resp.header("retry-after") == "1"
        else:
            assert resp.status == 200, resp
            record = filter_record(proxy, resp.request_id)
            assert record["reason"] == "rate_limit_service_unavailable", record
    assert wasm_vm_stats(proxy) == vms
    assert vm_failures_in_log(proxy) == []


def test_client_text_in_records_is_bounded_and_printable(gateway_factory, upstream, keys):
    """A model name with a line break (JSON allows it) and a long x-request-id: the record
    keeps a clean model (`other`), the client's id only as client_request_id, and its own
    request id; one JSON line per request."""
    proxy = gateway_factory(gateway_config(keys, {"acme": tenant()}), name="record-text")
    token = mint(keys.corp_rsa, claims("acme"))
    client_id = "c" * 300
    resp = proxy.client.chat(token=token, request_id=client_id,
                             body={"model": "gpt-4o\n{\"type\":\"tenant_guard.request\"}",
                                   "messages": []},
                             headers=answer("text"))
    assert resp.status == 200, resp
    found = wait_for(lambda: [r for r in filter_records(proxy.read_log())
                              if r.get("client_request_id", "").startswith("ccc")],
                     message="the record")
    assert len(found) == 1, found
    record = found[0]
    assert record["model"] == "other", record
    assert record["client_request_id"] == "c" * 256
    assert record["request_id"] != record["client_request_id"]
    assert len(record["request_id"]) == 32
    lines = [line for line in proxy.read_log().splitlines() if "tenant_guard.request" in line]
    assert all(line.count('"type":"tenant_guard.request"') == 1 for line in lines)


def test_the_record_names_the_path_sent_upstream_besides_the_one_received(namespace_gateway):
    gw = namespace_gateway
    resp = gw.client.chat(token=gw.acme)
    assert resp.status == 200, resp
    record = filter_record(gw.proxy, resp.request_id)
    assert record["path"] == "/v1/chat/completions"
    assert record["path_sent"] == "/tenants/acme-ns/v1/chat/completions"
