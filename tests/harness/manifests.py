"""Kubernetes manifests of envoy/istio and envoy/envoy-gateway: validation against the real CRD
schemas (tests/crds, with their licence and origin), and the Envoy configuration Istio and Envoy
Gateway make of a tenant-guard plugin (read from their sources: istio/istio
pilot/pkg/model/extensions.go, envoyproxy/gateway internal/xds/translator/wasm.go)."""

import json
from pathlib import Path

import jsonschema
import yaml

REPO = Path(__file__).resolve().parent.parent.parent
CRDS = REPO / "tests" / "crds"


def documents(path: Path) -> list:
    """The YAML documents of a manifest file (empty ones left out)."""
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def crd_schemas() -> dict:
    """{(group, version, kind): openAPIV3Schema} of every CRD kept in tests/crds."""
    schemas = {}
    for path in sorted(CRDS.glob("*/*.yaml")):
        for doc in documents(path):
            if doc.get("kind") != "CustomResourceDefinition":
                continue
            spec = doc["spec"]
            for version in spec["versions"]:
                if version.get("served", True):
                    schemas[(spec["group"], version["name"], spec["names"]["kind"])] = \
                        version["schema"]["openAPIV3Schema"]
    return schemas


def unknown_fields(value, schema, path="") -> list:
    """Fields the schema does not declare (the API server refuses them under kubectl's strict
    field validation, or prunes them): [path, ...]."""
    found = []
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return found
    if isinstance(value, dict):
        properties = schema.get("properties")
        additional = schema.get("additionalProperties")
        for key, child in value.items():
            where = f"{path}.{key}" if path else key
            if properties is not None and key in properties:
                found += unknown_fields(child, properties[key], where)
            elif isinstance(additional, dict):
                found += unknown_fields(child, additional, where)
            elif properties is not None or additional is False:
                found.append(where)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, child in enumerate(value):
            found += unknown_fields(child, schema["items"], f"{path}[{i}]")
    return found


def validate(doc: dict, schemas: dict) -> list:
    """Errors of one manifest against its CRD's OpenAPI v3 schema: types, enums, patterns,
    required fields, bounds (jsonschema), and fields the schema does not know. The CEL rules
    (``x-kubernetes-validations``) are not evaluated."""
    group, _, version = doc["apiVersion"].rpartition("/")
    key = (group, version, doc["kind"])
    if key not in schemas:
        return [f"no CRD for {doc['apiVersion']} {doc['kind']} in {CRDS}"]
    schema = schemas[key]
    validator = jsonschema.Draft7Validator(schema)
    errors = [f"{'.'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message}"
              for e in validator.iter_errors(doc)]
    # Every object has apiVersion, kind and metadata (which the API server checks itself).
    body = {k: v for k, v in doc.items() if k not in ("apiVersion", "kind", "metadata")}
    errors += [f"{p}: field not declared by the schema" for p in unknown_fields(body, schema)]
    return errors


# === What Istio makes of a WasmPlugin ===

def protojson(value) -> str:
    """A google.protobuf.Struct as Go's protojson writes it (numbers are doubles: integral ones
    without a fraction)."""
    def numbers(v):
        if isinstance(v, dict):
            return {k: numbers(x) for k, x in v.items()}
        if isinstance(v, list):
            return [numbers(x) for x in v]
        if isinstance(v, float) and v.is_integer():
            return int(v)
        return v
    return json.dumps(numbers(value), separators=(",", ":"))


def istio_wasm_filter(plugin: dict, wasm_path, resource_version="1") -> dict:
    """The HTTP filter Istio's ECDS resource holds for ``plugin`` (a WasmPlugin), with the
    module read from ``wasm_path`` (Istio's agent downloads an oci:// image and rewrites the
    code to a local file). Istio sets no vm_id and no allow_on_headers_stop_iteration."""
    spec = plugin["spec"]
    name = f"{plugin['metadata']['namespace']}.{plugin['metadata']['name']}"
    config = {
        "name": name,
        "root_id": spec.get("pluginName", ""),
        "vm_config": {
            "runtime": "envoy.wasm.runtime.v8",
            "code": {"local": {"filename": str(wasm_path)}},
            "environment_variables": {"key_values": {
                "ISTIO_META_WASM_PLUGIN_RESOURCE_VERSION": resource_version}},
        },
        "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue",
                          "value": protojson(spec.get("pluginConfig") or {})},
    }
    policy = {"FAIL_OPEN": "FAIL_OPEN", "FAIL_CLOSE": "FAIL_CLOSED",
              "FAIL_RELOAD": "FAIL_RELOAD"}.get(spec.get("failStrategy", "FAIL_CLOSE"))
    config["failure_policy"] = policy
    return {"name": name, "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
        "config": config}}


# === What Envoy Gateway makes of an EnvoyExtensionPolicy ===

def eg_wasm_name(policy: dict, index: int) -> str:
    meta = policy["metadata"]
    return f"envoyextensionpolicy/{meta['namespace']}/{meta['name']}/wasm/{index}"


def eg_wasm_filter(policy: dict, index: int, code_uri: str, sha256: str,
                   code_cluster: str) -> dict:
    """The HTTP filter Envoy Gateway puts on the listener for ``policy``'s wasm entry
    ``index``: disabled there (routes enable it, see ``eg_route_enabling``), the config as JSON
    text in a StringValue, vm_id = the entry's name, the module fetched over HTTP from Envoy
    Gateway's own server and checked against ``sha256``."""
    entry = policy["spec"]["wasm"][index]
    name = eg_wasm_name(policy, index)
    raw = json.dumps(entry["config"], separators=(",", ":"), sort_keys=True) \
        if "config" in entry else ""
    config = {
        "name": entry.get("name", name),
        "vm_config": {
            "vm_id": name,
            "runtime": "envoy.wasm.runtime.v8",
            "code": {"remote": {
                "http_uri": {"uri": code_uri, "cluster": code_cluster, "timeout": "10s"},
                "sha256": sha256,
                "retry_policy": {"num_retries": 3}}},
        },
        "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue",
                          "value": raw},
        "fail_open": bool(entry.get("failOpen", False)),
    }
    if "rootID" in entry:
        config["root_id"] = entry["rootID"]
    return {"name": f"envoy.filters.http.wasm/{name}", "disabled": True, "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
        "config": config}}


def eg_route_enabling(policy: dict, index: int) -> dict:
    """A route's ``typed_per_filter_config`` that enables the entry's filter, as Envoy Gateway
    writes it (a FilterConfig with an empty config)."""
    return {f"envoy.filters.http.wasm/{eg_wasm_name(policy, index)}": {
        "@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig", "config": {}}}
