"""Envoy bootstrap documents (v3 JSON), built from Python dicts."""

import json

ACCESS_LOG_FORMAT = {
    "tenant": "%FILTER_STATE(wasm.tenant:PLAIN)%",
    "user": "%FILTER_STATE(wasm.user:PLAIN)%",
    "decision": "%FILTER_STATE(wasm.decision:PLAIN)%",
    "reason": "%FILTER_STATE(wasm.reason:PLAIN)%",
    "request_id": "%FILTER_STATE(wasm.request_id:PLAIN)%",
    "model": "%FILTER_STATE(wasm.model:PLAIN)%",
    "input_tokens": "%FILTER_STATE(wasm.input_tokens:PLAIN)%",
    "output_tokens": "%FILTER_STATE(wasm.output_tokens:PLAIN)%",
    "cached_input_tokens": "%FILTER_STATE(wasm.cached_input_tokens:PLAIN)%",
    "cache_write_tokens": "%FILTER_STATE(wasm.cache_write_tokens:PLAIN)%",
    "reasoning_tokens": "%FILTER_STATE(wasm.reasoning_tokens:PLAIN)%",
    "cost_usd": "%FILTER_STATE(wasm.cost_usd:PLAIN)%",
    "usage_source": "%FILTER_STATE(wasm.usage_source:PLAIN)%",
    "credential": "%FILTER_STATE(wasm.credential:PLAIN)%",
    "status": "%RESPONSE_CODE%",
    # When the request started (RFC 3339, UTC): `tenant-guard bill` reads the month from it.
    "start_time": "%START_TIME%",
    "path": "%REQ(:PATH)%",
    "x_request_id": "%REQ(X-REQUEST-ID)%",
    # Why Envoy answered itself when it did (UF, UC, URX...: the upstream's part in a 503).
    "response_flags": "%RESPONSE_FLAGS%",
    "response_code_details": "%RESPONSE_CODE_DETAILS%",
    "upstream_failure": "%UPSTREAM_TRANSPORT_FAILURE_REASON%",
}


def socket_address(port: int) -> dict:
    return {"socket_address": {"address": "127.0.0.1", "port_value": port}}


def static_cluster(name: str, port: int) -> dict:
    """An HTTP/1.1 cluster to 127.0.0.1:``port`` whose answers may end with trailers."""
    return {
        "name": name,
        "type": "STATIC",
        # Loopback connects are instant; the bound is only against a hang, never a verdict
        # on a busy machine's speed.
        "connect_timeout": "10s",
        "load_assignment": {
            "cluster_name": name,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": socket_address(port)}}]}],
        },
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3."
                         "HttpProtocolOptions",
                "explicit_http_config": {"http_protocol_options": {"enable_trailers": True}},
            }},
    }


def plugin_configuration(plugin_config, form="string") -> dict:
    """The Wasm ``configuration`` Any: ``form="string"`` a ``StringValue`` holding the JSON text
    (a string ``plugin_config`` is passed verbatim, for configs that are not even JSON);
    ``form="struct"`` a ``google.protobuf.Struct`` holding the document itself (the policy
    written as YAML when the bootstrap is YAML)."""
    if form == "struct":
        return {"@type": "type.googleapis.com/google.protobuf.Struct", "value": plugin_config}
    assert form == "string", form
    value = plugin_config if isinstance(plugin_config, str) else json.dumps(plugin_config)
    return {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": value}


def wasm_filter(wasm_path: str, plugin_config, *, hold_headers=True, form="string",
                env_keys=()) -> dict:
    """The tenant-guard HTTP filter. ``plugin_config``: a dict (serialised here) or a string
    (passed verbatim, for configs that are not even JSON); ``form``: see
    ``plugin_configuration``. ``hold_headers``: set the Wasm
    ``allow_on_headers_stop_iteration`` (Envoy 1.35+), as every config in envoy/ does; False
    runs the filter the way older Envoys (or configs without the field) do. ``env_keys``:
    variables of Envoy's own environment the Wasm VM may read (``host_env_keys``: the names
    only; their values never enter the configuration)."""
    config = {
        "name": "tenant_guard",
        "root_id": "tenant_guard",
        "vm_config": {
            "vm_id": "tenant_guard",
            "runtime": "envoy.wasm.runtime.v8",
            "code": {"local": {"filename": str(wasm_path)}},
        },
        "configuration": plugin_configuration(plugin_config, form),
        "failure_policy": "FAIL_CLOSED",
    }
    if hold_headers:
        config["allow_on_headers_stop_iteration"] = True
    if env_keys:
        config["vm_config"]["environment_variables"] = {"host_env_keys": list(env_keys)}
    return {
        "name": "envoy.filters.http.wasm",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": config,
        },
    }


def router_filter() -> dict:
    return {
        "name": "envoy.filters.http.router",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
    }


# Per-tenant counters as labels (src/host/stats.rs names them
# tenant_guard.tenant.<tenant>.<metric>[.reason.<reason>]).
TENANT_STATS_TAGS = [
    {"tag_name": "tenant", "regex": r"^wasmcustom\.tenant_guard\.tenant\.(([^.]+)\.)"},
    {"tag_name": "reason",
     "regex": r"^wasmcustom\.tenant_guard\.tenant\.[^.]+\.requests_(?:shadow_)?denied(\.reason\.([^.]+))$"},
    {"tag_name": "window",
     "regex": r"^wasmcustom\.tenant_guard\.tenant\.[^.]+\.used_permille(\.([^.]+))$"},
]


def audit_log_path(access_log_path) -> str:
    """The audit stream's own file, beside the access log."""
    return str(access_log_path).rsplit("/", 1)[0] + "/audit.log"


def audit_log(path: str) -> dict:
    """An access log of the audit stream alone: the filter sets `wasm.audit` (its chained
    audit lines) for denials, cross-tenant events and shadow would-be denials only."""
    return {
        "name": "envoy.access_loggers.file",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
            "path": path,
            "log_format": {"text_format_source": {
                "inline_string": "%FILTER_STATE(wasm.audit:PLAIN)%\n"}},
        },
        "filter": {"extension_filter": {
            "name": "envoy.access_loggers.extension_filters.cel",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.access_loggers.filters.cel.v3."
                         "ExpressionFilter",
                "expression": "'wasm.audit' in filter_state"}}},
    }


def route(prefix: str, cluster: str) -> dict:
    return {"match": {"prefix": prefix}, "route": {"cluster": cluster, "timeout": "20s"}}


def listener(port: int, access_log_path: str, http_filters: list, name="ingress",
             routes: list = None, hcm_options: dict = None) -> dict:
    """``routes``: route entries (``route(prefix, cluster)``), first match wins; default:
    everything to the ``upstream`` cluster. ``hcm_options``: more HttpConnectionManager
    fields (e.g. ``stream_idle_timeout``)."""
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network."
                 "http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "ingress",
        "codec_type": "AUTO",
        # Keep the client's x-request-id so tests can match requests to records.
        "preserve_external_request_id": True,
        "access_log": [{
            "name": "envoy.access_loggers.file",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3."
                         "FileAccessLog",
                "path": str(access_log_path),
                "log_format": {"json_format": ACCESS_LOG_FORMAT},
            },
        }, audit_log(audit_log_path(access_log_path))],
        "route_config": {
            "name": "local",
            "virtual_hosts": [{
                "name": "all",
                "domains": ["*"],
                "routes": routes or [{"match": {"prefix": "/"},
                                      "route": {"cluster": "upstream", "timeout": "10s"}}],
            }],
        },
        "http_filters": list(http_filters) + [router_filter()],
    }
    hcm.update(hcm_options or {})
    return {
        "name": name,
        "address": socket_address(port),
        "filter_chains": [{"filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": hcm,
        }]}],
    }


def bootstrap(*, admin_port: int, upstream_port: int, jwks_port: int,
              listener_doc: dict = None, lds_dir: str = None, clusters: dict = None,
              stats_tags: list = None) -> dict:
    """A bootstrap with admin, the ``upstream`` and ``jwks`` clusters (and ``clusters``:
    {name: port}), and either a static listener (``listener_doc``) or listeners read from
    ``<lds_dir>/lds.json`` (LDS from a watched file). ``stats_tags``: extra
    ``stats_config.stats_tags``."""
    doc = {
        "node": {"id": "tenant-guard-test", "cluster": "tenant-guard-test"},
        "admin": {"address": socket_address(admin_port)},
        "static_resources": {
            "listeners": [listener_doc] if listener_doc else [],
            "clusters": [static_cluster("upstream", upstream_port),
                         static_cluster("jwks", jwks_port)]
                        + [static_cluster(n, p) for n, p in (clusters or {}).items()],
        },
    }
    if stats_tags:
        doc["stats_config"] = {"stats_tags": list(stats_tags)}
    if lds_dir is not None:
        doc["dynamic_resources"] = {"lds_config": {
            "resource_api_version": "V3",
            "path_config_source": {"path": f"{lds_dir}/lds.json",
                                   "watched_directory": {"path": str(lds_dir)}},
        }}
    return doc


def lds_response(version: str, *listeners: dict) -> dict:
    """A DiscoveryResponse as the file-based LDS source expects it."""
    return {
        "version_info": version,
        "resources": [dict(l, **{"@type": "type.googleapis.com/envoy.config.listener.v3.Listener"})
                      for l in listeners],
    }


def gateway(upstream_port: int, jwks_port: int, http_filters: list, *, routes=None,
            clusters=None, stats_tags=None, hcm_options=None):
    """``make_config`` for an Envoy whose one static listener runs ``http_filters`` + router
    in front of the ``upstream`` cluster (or ``routes`` to ``clusters``: {name: port})."""
    def make(envoy):
        return bootstrap(admin_port=envoy.admin_port, upstream_port=upstream_port,
                         jwks_port=jwks_port, clusters=clusters, stats_tags=stats_tags,
                         listener_doc=listener(envoy.listener_port, envoy.access_log_path,
                                               http_filters, routes=routes,
                                               hcm_options=hcm_options))
    return make


def grpc_cluster(name: str, port: int) -> dict:
    """A STATIC cluster speaking HTTP/2 to 127.0.0.1:``port`` (a gRPC service such as the
    rate-limit service)."""
    cluster = static_cluster(name, port)
    cluster["typed_extension_protocol_options"] = {
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3."
                     "HttpProtocolOptions",
            "explicit_http_config": {"http2_protocol_options": {}},
        }}
    return cluster


def with_clusters(make_config, *cluster_docs):
    """``make_config`` whose bootstrap also has ``cluster_docs`` (full cluster documents)."""
    def make(envoy):
        doc = make_config(envoy)
        doc["static_resources"]["clusters"].extend(cluster_docs)
        return doc
    return make
