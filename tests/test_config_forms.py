"""The policy written as YAML (a google.protobuf.Struct, which Envoy hands the filter as
serialized protobuf) and as a JSON string load the same policy: the same decisions, records,
quotas and prices for the same requests. `tenant-guard check` reads both bootstraps as Envoy
does."""

import copy

from harness import bootstrap as bs
from harness import cli
from harness.answers import answer
from harness.keys import GLOBEX_ISSUER, claims, forge_alg_none, mint
from harness.limits import LONG, LONGER
from harness.plugin_config import gateway_config, tenant, windows
from harness.records import filter_record


def policy(keys) -> dict:
    """A policy with what YAML turns into other types: decimals (Envoy hands them over as
    strings), integers, booleans, nested lists, an empty list, a null-free document."""
    return gateway_config(keys, {
        "acme": tenant("pro"),
        "globex": tenant("free", providers=["globex-idp"]),
        "initech": tenant("free", status="suspended"),
    }, plans={
        # Windows far longer than the test: no count resets between the two gateways' runs.
        "free": {"requests": windows((3, LONG)), "monthly_budget_usd": 1.5},
        "pro": {"requests": windows((100, LONGER), (50, LONG)),
                "tokens": windows((1_000_000, LONG)), "monthly_budget_usd": 250.0},
    }, pricing={
        "models": {"gpt-4o": {"input_per_million": 2.5, "output_per_million": 10.0,
                              "cached_input_per_million": 1.25}},
        "default": {"input_per_million": 0.15, "output_per_million": 0.6},
    }, routing={"path_prefix": "/tenants/{namespace}"}, isolation={"prompt_cache": "off"})


def requests(keys):
    """(name, method, path, token, headers) sent to both gateways, in order."""
    acme = mint(keys.corp_rsa, claims("acme"))
    globex = mint(keys.globex_rsa, claims("globex", iss=GLOBEX_ISSUER))
    return [
        ("acme chat", "POST", "/v1/chat/completions", acme,
         answer("openai-json", in_=1000, out=20, model="gpt-4o")),
        ("acme other model", "POST", "/v1/chat/completions", acme,
         answer("openai-json", in_=3000, out=500, model="other-model")),
        ("missing token", "POST", "/v1/chat/completions", None, {}),
        ("alg none", "GET", "/v1/models", forge_alg_none(claims("acme")), {}),
        ("globex signed by corp", "GET", "/v1/models",
         mint(keys.corp_rsa, claims("globex")), {}),
        ("suspended", "GET", "/v1/models", mint(keys.corp_rsa, claims("initech")), {}),
        ("unknown tenant", "GET", "/v1/models", mint(keys.corp_rsa, claims("hooli")), {}),
        ("header mismatch", "GET", "/v1/models", acme, {"x-tenant-id": "globex"}),
        ("cross-tenant path", "GET", "/tenants/globex/v1/models", acme, {}),
        ("bypass", "GET", "/healthz", None, {}),
        *[(f"globex {n}", "GET", "/v1/models", globex, {}) for n in range(1, 5)],
    ]


def outcome(proxy, name, method, path, token, headers):
    if method == "POST":
        resp = proxy.client.chat(token=token, headers=dict(headers))
    else:
        resp = proxy.client.request(method, path, token=token, headers=dict(headers))
    code = None
    if resp.status >= 400:
        code = resp.json()["error"]["code"]
    record = filter_record(proxy, resp.request_id) if name != "bypass" else {}
    return {
        "status": resp.status,
        "code": code,
        "remaining": resp.header("x-ratelimit-remaining-requests"),
        "retry_after": resp.header("retry-after") is not None,
        "record": {k: record.get(k) for k in ("tenant", "decision", "reason", "path_sent",
                                              "input_tokens", "output_tokens", "cost_usd")},
    }


def test_yaml_struct_and_json_string_forms_decide_alike(envoy_factory, wasm_path, upstream,
                                                        jwks_server, keys):
    config = policy(keys)
    string_form = envoy_factory(make_config=bs.gateway(
        upstream.port, jwks_server.port, [bs.wasm_filter(wasm_path, copy.deepcopy(config))]),
        name="string-form")
    struct_form = envoy_factory(make_config=bs.gateway(
        upstream.port, jwks_server.port,
        [bs.wasm_filter(wasm_path, copy.deepcopy(config), form="struct")]),
        name="struct-form", config_format="yaml")
    # The YAML bootstrap really carries the decimals as YAML numbers.
    written = struct_form.config_path.read_text()
    assert "monthly_budget_usd: 1.5" in written and "input_per_million: 2.5" in written
    for proxy, form in ((string_form, "JSON text"), (struct_form, "google.protobuf.Struct")):
        checked = cli.run("check", proxy.config_path)
        assert checked.returncode == 0 and f"({form}): OK" in checked.stdout, \
            checked.stdout + checked.stderr

    sent = requests(keys)
    from_string = [outcome(string_form, *r) for r in sent]
    from_struct = [outcome(struct_form, *r) for r in sent]
    names = [r[0] for r in sent]
    for name, a, b in zip(names, from_string, from_struct):
        assert a == b, f"{name}: string form {a} != struct form {b}"

    by_name = dict(zip(names, from_struct))
    # The decisions are the policy's (so the comparison above compared something).
    assert by_name["acme chat"]["status"] == 200
    assert by_name["acme chat"]["record"]["cost_usd"] == "0.0027"  # 1000 × 2.5 + 20 × 10
    assert by_name["acme other model"]["record"]["cost_usd"] == "0.00075"  # 3000 × .15 + 500 × .6
    assert by_name["acme chat"]["record"]["path_sent"] == "/tenants/acme/v1/chat/completions"
    expected = {"missing token": (401, "missing_token"), "alg none": (401, "invalid_token"),
                "globex signed by corp": (403, "tenant_provider_mismatch"),
                "suspended": (403, "tenant_suspended"), "unknown tenant": (403, "unknown_tenant"),
                "header mismatch": (403, "tenant_header_mismatch"),
                "cross-tenant path": (403, "cross_tenant_path"), "bypass": (200, None),
                "globex 4": (429, "request_quota_exceeded")}
    for name, (status, code) in expected.items():
        assert (by_name[name]["status"], by_name[name]["code"]) == (status, code), by_name[name]
    assert [by_name[f"globex {n}"]["remaining"] for n in (1, 2, 3)] == ["2", "1", "0"]


def test_a_bad_yaml_policy_is_refused_with_its_field_path(envoy_factory, wasm_path, upstream,
                                                          jwks_server, keys):
    config = policy(keys)
    config["plans"]["free"]["requests"][0]["limit"] = 2.5  # a string in the Struct
    proxy = envoy_factory(make_config=bs.gateway(
        upstream.port, jwks_server.port, [bs.wasm_filter(wasm_path, config, form="struct")]),
        name="bad-struct", start=False, config_format="yaml")
    assert proxy.wait_exit() != 0
    log = proxy.read_log()
    assert "invalid configuration: plans.free.requests[0].limit: invalid type: string" in log, \
        proxy.log_tail()
    # `tenant-guard check` reads the YAML bootstrap as Envoy did: the same line.
    logged = [line.split("wasm log tenant_guard tenant_guard: ", 1)[1]
              for line in log.splitlines() if "invalid configuration" in line]
    checked = cli.run("check", proxy.config_path)
    assert checked.returncode == 1 and cli.log_lines(checked) == logged, checked.stderr
