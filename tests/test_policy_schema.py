"""The policy's JSON Schema (schema/policy.schema.json) is true to the code and to every
example:

- its fields are the code's: every object the schema closes is probed in the filter's own
  parser (`tenant-guard check` on a document with an unknown field there), whose refusal lists
  the fields serde knows at that place (deny_unknown_fields), and the two lists must be
  equal; where the schema has no named fields (a JWK Set, a map of claims, a scalar), the code
  must not have a struct either;
- every example policy (envoy/, README.md and docs/, the tests' own) is valid against it and
  accepted by `check`;
- the documents of the bad-config tests are refused by `check` with the line the filter logs,
  and the schema refuses those it can describe.

No Envoy needed; `make cli` builds the command."""

import copy
import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

from conftest import NAMESPACE_ROUTING, VECTOR_STORES
from harness import cli
from harness import policy_schema as ps
from harness.bad_configs import BAD_CONFIGS, RAW_CONFIGS
from harness.keys import KeyRing
from harness.plugin_config import gateway_config, main_plugin_config, tenant, windows
from harness.replicas import global_config

REPO = Path(__file__).resolve().parent.parent
SCHEMA = ps.load()
VALIDATOR = jsonschema.Draft7Validator(SCHEMA)
PROBE = "__probe__"
MESSAGE = re.compile(r"^tenant-guard: invalid configuration: (?P<path>[^:]*): (?P<problem>.*)$")


def schema_errors(doc) -> list:
    return [f"{'.'.join(map(str, e.absolute_path)) or '(document)'}: {e.message}"
            for e in VALIDATOR.iter_errors(doc)]


def check_json(tmp_path, doc, name="policy") -> "cli.subprocess.CompletedProcess":
    path = tmp_path / f"{name}.json"
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return cli.run("check", path)


# === The schema's fields are the code's ===

def probe_document(path):
    """A document that reaches ``path`` and puts an unknown field there."""
    node = {PROBE: 0}
    for step in reversed(path):
        node = {step[1]: node} if step[0] == "key" else {"x": node} if step[0] == "map" \
            else [node]
    return node


def code_fields(tmp_path, path):
    """What the filter's parser says at ``path`` about an unknown field: the fields it knows
    there (a set), or None when nothing there refuses unknown fields."""
    result = check_json(tmp_path, probe_document(path))
    where = ps.dotted(path, map_key="x", item="[0]")
    for line in cli.log_lines(result):
        match = MESSAGE.match(line)
        if match and match["problem"].startswith(f"unknown field `{PROBE}`"):
            assert match["path"] == (f"{where}.{PROBE}" if where else PROBE), \
                f"the probe for {where or '(document)'} was refused elsewhere: {line}"
            expected = match["problem"].split("expected", 1)[-1].split(" at line ")[0]
            return set(re.findall(r"`([^`]*)`", expected))
    return None


def closed_nodes():
    return [(path, node) for path, node, kind, _ in ps.walk(SCHEMA) if kind == "closed"]


def other_nodes():
    """Fields the schema gives no named fields of their own: maps, lists and leaves (a probe
    object there must not meet a struct in the code)."""
    return [path for path, node, kind, _ in ps.walk(SCHEMA)
            if kind != "closed" and path and path[-1][0] == "key"]


@pytest.mark.parametrize("path,node", closed_nodes(),
                         ids=[ps.dotted(p) or "(document)" for p, _ in closed_nodes()])
def test_every_object_of_the_schema_has_the_codes_fields(tmp_path, path, node):
    known = code_fields(tmp_path, path)
    assert known is not None, f"{ps.dotted(path)}: the code accepts unknown fields here"
    assert set(node["properties"]) == known


def test_where_the_schema_names_no_fields_the_code_has_no_struct(tmp_path):
    closed_in_code = [ps.dotted(p) for p in other_nodes()
                      if code_fields(tmp_path, p) is not None]
    assert closed_in_code == []
    assert len(other_nodes()) > 60


def test_the_field_probe_finds_a_difference(tmp_path):
    """Not vacuous: a schema without `identity.strip_token` and with an invented field
    disagrees with the code, and a leaf that is a struct in the code is found."""
    identity = next(n for p, n in closed_nodes() if ps.dotted(p) == "identity")
    schema_fields = set(identity["properties"]) - {"strip_token"} | {"invented"}
    assert schema_fields != code_fields(tmp_path, (("key", "identity"),))
    assert code_fields(tmp_path, (("key", "isolation"), ("key", "objects"))) is not None


# === Every example is valid and accepted ===

def printed_policies(source: Path) -> list:
    """`check --print-policy` of a file: the policies as the filter received them."""
    result = cli.run("check", "--print-policy", source)
    assert result.returncode == 0, result.stdout + result.stderr
    decoder, text, docs = json.JSONDecoder(), result.stdout, []
    at = len(text) - len(text.lstrip())
    while at < len(text):
        doc, at = decoder.raw_decode(text, at)
        docs.append(doc)
        at = len(text) - len(text[at:].lstrip())
    return docs


ENVOY_EXAMPLES = ["envoy/demo.yaml", "envoy/global.yaml", "envoy/dynamic/bootstrap.yaml",
                  "envoy/dynamic/listeners.yaml", "envoy/istio/wasmplugin.yaml",
                  "envoy/envoy-gateway/extension-policy.yaml"]


@pytest.mark.parametrize("example", ENVOY_EXAMPLES)
def test_every_example_in_envoy_is_accepted_and_valid(example):
    docs = printed_policies(REPO / example)
    assert len(docs) == 1
    assert schema_errors(docs[0]) == []


def test_every_bootstrap_in_envoy_is_among_the_examples():
    named = {REPO / e for e in ENVOY_EXAMPLES}
    assert set((REPO / "envoy").glob("*.yaml")) <= named


def doc_blocks():
    """Policies and policy fragments in fenced blocks of README.md and docs/: a YAML block
    that is a whole policy (it has `providers`), or a JSON block of top-level fields
    (`"vector_stores": [...]`)."""
    found = []
    for page in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        for lang, body in re.findall(r"^```(yaml|json)\n(.*?)^```", page.read_text(),
                                     re.M | re.S):
            name = f"{page.relative_to(REPO)}:{len(found)}"
            if lang == "yaml":
                doc = yaml.safe_load(body)
                if isinstance(doc, dict) and "providers" in doc:
                    found.append((name, "yaml", body))
            elif body.lstrip().startswith('"'):
                fragment = json.loads("{" + body + "}")
                if set(fragment) <= set(SCHEMA["properties"]):
                    found.append((name, "json", fragment))
    return found


# What a fragment from the docs is checked in: the smallest policy the filter accepts.
BASE_POLICY = {"providers": {"idp": {"issuer": "https://idp.example.com", "audiences": "any",
                                     "jwks": {"keys": [{"kty": "oct",
                                                        "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA"}]}}}}


@pytest.mark.parametrize("name,lang,body", doc_blocks(), ids=[n for n, _, _ in doc_blocks()])
def test_every_policy_in_the_docs_is_accepted_and_valid(tmp_path, name, lang, body):
    if lang == "yaml":
        source = tmp_path / "policy.yaml"
        source.write_text(body)
    else:
        source = tmp_path / "policy.json"
        source.write_text(json.dumps({**BASE_POLICY, **body}))
    docs = printed_policies(source)
    assert [schema_errors(d) for d in docs] == [[]]


def test_the_docs_hold_policies_and_fragments():
    kinds = [lang for _, lang, _ in doc_blocks()]
    assert "yaml" in kinds and kinds.count("json") >= 2


def policies_of_the_tests():
    keys = KeyRing()
    return {
        "main": main_plugin_config(keys),
        "namespaces": gateway_config(keys, {"acme": tenant(namespace="acme-ns"),
                                            "globex": tenant(providers=["globex-idp"])},
                                     routing=NAMESPACE_ROUTING, vector_stores=VECTOR_STORES),
        "quotas": gateway_config(keys, {"acme": tenant("p")}, plans={"p": {
            "requests": windows((5, 60)), "tokens": windows((1000, 3600)),
            "monthly_budget_usd": 2.5, "output_cap": "clamp", "min_output_tokens": 8,
            "enforcement": "shadow"}},
            pricing={"models": {"gpt-4o": {"input_per_million": 2.5, "output_per_million": 10,
                                           "cached_input_per_million": 1.25}},
                     "default": {"input_per_million": 1, "output_per_million": 3}},
            usage={"default_reservation_tokens": 512, "max_body_bytes": 4096},
            stats={"max_tenant_series": 10},
            isolation={"key": "k" * 32, "objects": {"max_objects": 64, "ttl_s": 60}}),
        "leases": global_config(keys, {"acme": tenant("p")}, plans={"p": None},
                                lease={"window_s": 60, "low_water": 0.25,
                                       "tokens": {"min_block": 10, "max_block": 100}}),
    }


@pytest.mark.parametrize("name", list(policies_of_the_tests()))
def test_the_tests_policies_are_accepted_and_valid(tmp_path, name):
    doc = policies_of_the_tests()[name]
    assert schema_errors(doc) == []
    result = check_json(tmp_path, doc, name)
    assert result.returncode == 0, result.stderr



# === The bad-config documents are refused ===

# The bad documents the schema can describe (the others break rules between fields or in key
# material, which its description names).
SCHEMA_REFUSES = {"unknown_top_level_field", "empty_providers", "unknown_nested_field",
                  "bad_status", "token_type_not_jwt", "empty", "array", "wrong_type",
                  "per_user_max_users_zero", "per_user_without_limits",
                  "alerts_webhook_retries", "model_star_inside", "empty_model",
                  "models_in_tenant_limits"}


@pytest.mark.parametrize("case", list(BAD_CONFIGS))
def test_check_refuses_the_bad_configs_as_the_filter_does(tmp_path, case):
    mutate, expected = BAD_CONFIGS[case]
    doc = copy.deepcopy(main_plugin_config(KeyRing()))
    mutate(doc)
    result = check_json(tmp_path, doc)
    assert result.returncode == 1
    lines = cli.log_lines(result)
    assert len(lines) == 1 and lines[0].startswith(
        f"tenant-guard: invalid configuration: {expected}"), result.stderr
    assert bool(schema_errors(doc)) == (case in SCHEMA_REFUSES)


@pytest.mark.parametrize("case", list(RAW_CONFIGS))
def test_check_refuses_documents_that_are_no_policy(tmp_path, case):
    text, expected = RAW_CONFIGS[case]
    result = check_json(tmp_path, text)
    assert result.returncode == 1
    assert cli.log_lines(result)[0].startswith(
        f"tenant-guard: invalid configuration: {expected}"), result.stderr
    try:
        doc = json.loads(text)
    except ValueError:
        return
    assert schema_errors(doc) and case in SCHEMA_REFUSES


def test_the_schema_is_a_draft_7_schema():
    jsonschema.Draft7Validator.check_schema(SCHEMA)


# === The Istio and Envoy Gateway examples name schemas for editors ===

MANIFEST_SCHEMAS = {"envoy/istio/wasmplugin.yaml": "istio-wasmplugin.schema.json",
                    "envoy/envoy-gateway/extension-policy.yaml":
                        "envoy-gateway-extension-policy.schema.json"}


def manifest_errors(schema_name: str, manifest: dict) -> list:
    """Errors of a manifest against its schema, which refers to policy.schema.json beside it
    (as the YAML language server resolves it)."""
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT7

    registry = Registry().with_resource("policy.schema.json",
                                        Resource(contents=SCHEMA, specification=DRAFT7))
    schema = json.loads((ps.SCHEMA_PATH.parent / schema_name).read_text())
    validator = jsonschema.Draft7Validator(schema, registry=registry)
    return [e.message for e in validator.iter_errors(manifest)]


@pytest.mark.parametrize("example", list(MANIFEST_SCHEMAS))
def test_the_mesh_examples_name_a_schema_that_checks_their_policy(example):
    text = (REPO / example).read_text()
    schema_name = MANIFEST_SCHEMAS[example]
    assert f"# yaml-language-server: $schema=../../schema/{schema_name}\n" in text
    manifest = yaml.safe_load(text)
    assert manifest_errors(schema_name, manifest) == []
    policy = manifest["spec"]["pluginConfig"] if "pluginConfig" in manifest["spec"] \
        else manifest["spec"]["wasm"][0]["config"]
    policy["tennants"] = {}
    assert manifest_errors(schema_name, manifest) != []
