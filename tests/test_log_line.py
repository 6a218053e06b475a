"""`records.log_line`: the per-request JSON line in the Envoy log is a policy choice. Without it
no record line reaches the Envoy log, while the access log still has every filter-state field
of the record (usage and cost included, for a stream the client left too) and the audit lines
are written to both of their carriers; with it, the line is there."""

import json
import re

import pytest

from harness.answers import answer, delivered_tokens
from harness.audit import audit_event, audit_lines
from harness.keys import claims, mint
from harness.plugin_config import gateway_config, tenant
from harness.records import RECORD_MARKER, filter_record
from harness.h2client import H2Client
from harness.wait import wait_for
from harness.workers import until_every_worker

PRICING = {"models": {"gpt-4o": {"input_per_million": 2.5, "output_per_million": 10.0}}}
STREAMING = {"model": "gpt-4o", "stream": True,
             "stream_options": {"include_usage": True},
             "messages": [{"role": "user", "content": "hello there"}]}


@pytest.fixture(scope="module")
def tokens(keys):
    return {"acme": mint(keys.corp_rsa, claims("acme", sub="alice")),
            "suspended": mint(keys.corp_rsa, claims("initech", sub="bob"))}


def gateway(gateway_factory, keys, log_line):
    config = gateway_config(keys, {"acme": tenant(), "initech": tenant(status="suspended")},
                            pricing=PRICING, isolation={"prompt_cache": "off"})
    config["records"] = {"log_line": log_line}
    return gateway_factory(config, name=f"log-line-{str(log_line).lower()}")


def audit_file_lines(proxy) -> list:
    path = proxy.audit_log_path
    return [line for _, line in audit_lines(path.read_text())] if path.exists() else []


def test_without_the_log_line_records_reach_the_access_log_and_audits_both_carriers(
        gateway_factory, keys, tokens, upstream):
    proxy = gateway(gateway_factory, keys, log_line=False)
    client = proxy.client
    allowed = client.chat(token=tokens["acme"], body={"model": "gpt-4o", "messages": []},
                          headers=answer("openai-json", in_=1000, out=200))
    assert allowed.status == 200, allowed
    # A stream the client leaves before its usage: the estimate is still in the access log.
    stream = client.open_stream(token=tokens["acme"], body=STREAMING,
                                headers=answer("openai-sse", in_=40, out=30, chunks=12,
                                               hold_after=5))
    answered = upstream.leave_when_held(stream)
    denied = client.chat(token=tokens["suspended"])
    assert denied.status == 403, denied

    line = proxy.access_log_entry(allowed.request_id)
    assert (line["tenant"], line["user"], line["decision"], line["reason"]) == \
        ("acme", "alice", "allow", "ok"), line
    assert re.fullmatch(r"[0-9a-f]{32}", line["request_id"]), line
    assert (line["model"], line["input_tokens"], line["output_tokens"], line["cost_usd"],
            line["usage_source"]) == ("gpt-4o", "1000", "200", "0.0045", "json"), line
    assert (line["cached_input_tokens"], line["cache_write_tokens"],
            line["reasoning_tokens"]) == ("0", "0", "0"), line

    line = proxy.access_log_entry(stream.request_id, timeout=20)
    assert (line["decision"], line["usage_source"]) == ("allow", "estimate"), line
    assert line["output_tokens"] == str(delivered_tokens(bytes(answered.body))), line

    line = proxy.access_log_entry(denied.request_id)
    assert (line["tenant"], line["user"], line["decision"], line["reason"]) == \
        ("initech", "bob", "deny", "tenant_suspended"), line

    # The audit line of the denial, in the Envoy log and in the access log of its own. It is
    # written after the records of the requests before it would have been.
    event = audit_event(proxy, denied.request_id)
    assert (event["event"], event["reason"], event["request_id"]) == \
        ("deny", "tenant_suspended", line["request_id"]), event
    wait_for(lambda: [e for e in audit_file_lines(proxy)
                      if e.get("client_request_id") == denied.request_id] or None,
             message="the denial's line in the audit access log")
    assert RECORD_MARKER not in proxy.read_log(), proxy.log_tail()


def test_with_the_log_line_every_record_is_a_json_line_in_the_envoy_log(gateway_factory, keys,
                                                                         tokens):
    proxy = gateway(gateway_factory, keys, log_line=True)
    allowed = proxy.client.chat(token=tokens["acme"], body={"model": "gpt-4o", "messages": []},
                                headers=answer("openai-json", in_=1000, out=200))
    denied = proxy.client.chat(token=tokens["suspended"])
    record = filter_record(proxy, allowed.request_id)
    assert (record["tenant"], record["decision"], record["input_tokens"],
            record["cost_usd"]) == ("acme", "allow", 1000, "0.0045"), record
    assert record["request_id"] == proxy.access_log_entry(allowed.request_id)["request_id"]
    record = filter_record(proxy, denied.request_id)
    assert (record["decision"], record["reason"]) == ("deny", "tenant_suspended"), record
    assert audit_event(proxy, denied.request_id)["request_id"] == record["request_id"]


def test_records_filter_state_sets_only_the_listed_fields(gateway_factory, keys, tokens,
                                                          upstream):
    config = gateway_config(keys, {"acme": tenant(), "initech": tenant(status="suspended")},
                            pricing=PRICING, isolation={"prompt_cache": "off"})
    config["records"] = {"filter_state": ["decision", "tenant", "input_tokens"]}
    proxy = gateway_factory(config, name="filter-state-listed")
    allowed = proxy.client.chat(token=tokens["acme"], body={"model": "gpt-4o", "messages": []},
                                headers=answer("openai-json", in_=1000, out=200))
    denied = proxy.client.chat(token=tokens["suspended"])
    assert (allowed.status, denied.status) == (200, 403), (allowed, denied)

    line = proxy.access_log_entry(allowed.request_id)
    assert (line["decision"], line["tenant"], line["input_tokens"]) == \
        ("allow", "acme", "1000"), line
    unlisted = ("user", "reason", "request_id", "model", "output_tokens", "cost_usd",
                "usage_source")
    assert [f for f in unlisted if line[f] is not None] == [], line
    line = proxy.access_log_entry(denied.request_id)
    assert (line["decision"], line["tenant"], line["reason"]) == ("deny", "initech", None), line
    # The log line still carries the whole record.
    record = filter_record(proxy, allowed.request_id)
    assert (record["user"], record["output_tokens"], record["cost_usd"]) == \
        ("alice", 200, "0.0045"), record

    def only_listed(request_id, input_tokens):
        line = proxy.access_log_entry(request_id)
        assert (line["decision"], line["tenant"], line["input_tokens"]) == \
            ("allow", "acme", input_tokens), line
        assert [f for f in unlisted if line[f] is not None] == [], line

    # HTTP/2, the body in pieces ended by request trailers.
    h2 = H2Client(proxy.listener_port).request(
        body=json.dumps({"model": "gpt-4o", "messages": []}).encode(), token=tokens["acme"],
        pieces=3, trailers=[("x-trailer", "1")],
        headers=list(answer("openai-json", in_=30, out=4).items()))
    assert h2.status == 200, h2
    only_listed(h2.request_id, "30")
    # A stream the client leaves before its usage: the estimate's listed fields only.
    stream = proxy.client.open_stream(token=tokens["acme"], body=STREAMING,
                                      headers=answer("openai-sse", in_=40, out=30, chunks=12,
                                                     hold_after=5))
    upstream.leave_when_held(stream)
    line = proxy.access_log_entry(stream.request_id, timeout=20)
    assert line["decision"] == "allow" and line["input_tokens"].isdigit(), line
    assert [f for f in unlisted if line[f] is not None] == [], line
    # Every worker reads the list from its own copy of the policy.
    until_every_worker(
        proxy,
        lambda: proxy.client.chat(token=tokens["acme"], body={"model": "gpt-4o", "messages": []},
                                  headers=answer("openai-json", in_=7, out=1)),
        lambda resp: only_listed(resp.request_id, "7"))
