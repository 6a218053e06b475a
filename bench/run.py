#!/usr/bin/env python3
"""`make bench`: what tenant-guard costs a real Envoy 1.40, next to what nothing, Envoy's
native JWT chain and a minimal Wasm filter cost.

Every setup is its own Envoy process with one worker (`--concurrency 1`) and the same routes
(direct responses behind Envoy's `buffer` filter, so request bodies are read); all of them are
started first and then measured alternately, round after round, so a busy moment of the machine
hits every setup alike. Medians over the rounds are reported. A run in which Envoy counted a
single non-2xx answer is invalid and makes the benchmark fail.

    bench/run.py --duration 3 --rounds 3 [--connections 16] [--only get-h1,post-h1]

Throughput is reported, not judged. One thing is checked: the CPU per request the module adds
to passthrough, as a multiple of what the minimal Wasm filter (the floor) adds in the same run,
against the budget in bench/budget.json; a multiple over its budget makes the run fail (exit 3)
unless ``--budget-report-only``. Output: a plain-text report on stdout and the raw numbers in
target/bench/results.json.
"""

import argparse
import hashlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from harness import keys as K  # noqa: E402  (the test harness: keys, tokens, Envoy process)
from harness.envoy_process import Envoy  # noqa: E402

OUT = REPO / "target" / "bench"
TG_WASM = REPO / "target" / "tenant_guard.wasm"  # what `make wasm` ships
FLOOR_WASM = REPO / "target" / "bench-floor" / "wasm32-wasip1" / "release" / "bench_floor.wasm"
BUDGET = REPO / "bench" / "budget.json"
USAGE_FIXTURES = REPO / "src" / "policy" / "testdata" / "usage"
STAT_PREFIX = "bench"

# An LLM-shaped request: ~250 bytes of OpenAI chat JSON.
CHAT_BODY = json.dumps({
    "model": "gpt-4o",
    "messages": [
        {"role": "system", "content": "You are a helpful assistant for the finance team."},
        {"role": "user", "content": "Summarise the quarterly report in three bullet points, "
                                    "with the revenue numbers."},
    ],
    "max_tokens": 256,
    "temperature": 0.2,
}, separators=(",", ":"))
# The same request as a stream (with include_usage, as clients that want usage send it).
STREAM_BODY = json.dumps(dict(json.loads(CHAT_BODY), stream=True,
                              stream_options={"include_usage": True}), separators=(",", ":"))

# Paths as clients send them; tenant-guard moves them under /tenants/<namespace>.
GET_PATH = "/v1/models"
CHAT_PATH = "/v1/chat/completions"
STREAM_PATH = "/v2/chat/completions"

# Every algorithm the filter verifies.
MISS_ALGS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
             "HS256", "HS384", "HS512")
MISS_TOKENS = 2000  # more than the token cache's 1024 entries: cycling them misses every time


# === Envoy configuration =====================================================================

def direct(regex, status, body, content_type):
    return {
        "match": {"safe_regex": {"regex": regex}},
        "direct_response": {"status": status, "body": {"inline_string": body}},
        "response_headers_to_add": [{
            "header": {"key": "content-type", "value": content_type},
            "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
        }],
    }


def routes():
    ns = r"(/tenants/[^/]+)?"
    chat = (USAGE_FIXTURES / "openai_chat.json").read_text()
    stream = (USAGE_FIXTURES / "openai_chat_stream.sse").read_text()
    return [
        direct(f"^{ns}/v1/chat/completions$", 200, chat, "application/json"),
        direct(f"^{ns}/v2/chat/completions$", 200, stream, "text/event-stream"),
        direct(r"^.*$", 200, '{"object":"list","data":[]}', "application/json"),
    ]


def buffer_filter():
    return {"name": "envoy.filters.http.buffer", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer",
        "max_request_bytes": 1048576}}


def router_filter():
    return {"name": "envoy.filters.http.router", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}


def wasm_filter(name, path, configuration=""):
    return {"name": "envoy.filters.http.wasm", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
        "config": {
            "name": name, "root_id": name,
            "vm_config": {"vm_id": name, "runtime": "envoy.wasm.runtime.v8",
                          "code": {"local": {"filename": str(path)}}},
            "failure_policy": "FAIL_CLOSED",
            # As every config in envoy/ sets it (Envoy 1.35+): a paused header phase still
            # receives the body.
            "allow_on_headers_stop_iteration": True,
            "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue",
                              "value": configuration},
        }}}


def native_filters(jwks):
    """Envoy's own: jwt_authn (with its JWT cache) + local_ratelimit (a bucket never empty)."""
    return [
        {"name": "envoy.filters.http.jwt_authn", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3."
                     "JwtAuthentication",
            "providers": {"corp": {
                "issuer": K.CORP_ISSUER,
                "audiences": [K.AUDIENCE],
                "local_jwks": {"inline_string": json.dumps(jwks)},
                "forward": True,
                "claim_to_headers": [{"header_name": "x-tenant-id", "claim_name": "tenant_id"}],
                "jwt_cache_config": {"jwt_cache_size": 100},
            }},
            "rules": [{"match": {"prefix": "/"}, "requires": {"provider_name": "corp"}}],
        }},
        {"name": "envoy.filters.http.local_ratelimit", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3."
                     "LocalRateLimit",
            "stat_prefix": "bench_rl",
            "token_bucket": {"max_tokens": 1000000000, "tokens_per_fill": 1000000000,
                             "fill_interval": "1s"},
            "filter_enabled": {"default_value": {"numerator": 100, "denominator": "HUNDRED"},
                               "runtime_key": "rl_enabled"},
            "filter_enforced": {"default_value": {"numerator": 100, "denominator": "HUNDRED"},
                                "runtime_key": "rl_enforced"},
        }},
    ]


def tenant_guard_config(jwks, tenants=3, token_cache_size=None, api_key=None, log_line=None):
    """The demo gateway's configuration (tenant header, forwarded claim, namespace routing,
    plans with request, token and budget windows, prices), with limits no benchmark reaches.
    ``tenants`` > 3 adds tenants t00003... on the same plan; ``api_key``: keys are read from
    ``authorization: Bearer`` too, and this one is acme's; ``log_line``: sets
    ``records.log_line`` (the policy's default when None)."""
    big = 10 ** 12
    doc = {
        "providers": {"corp": {"issuer": K.CORP_ISSUER, "audiences": [K.AUDIENCE],
                               "jwks": jwks}},
        "identity": {
            "token_sources": [{"header": "authorization", "prefix": "Bearer "}],
            "tenant_claim": "tenant_id", "user_claim": "sub", "clock_skew_s": 60,
            "tenant_header": "x-tenant-id", "forward_claims": {"sub": "x-user-id"},
            "strip_token": True,
        },
        "tenants": {
            "acme": {"status": "active", "providers": ["corp"], "plan": "pro"},
            "globex": {"status": "active", "providers": ["corp"], "plan": "pro"},
            "initech": {"status": "suspended", "providers": ["corp"], "plan": "pro"},
        },
        "plans": {"pro": {"requests": [{"limit": big, "window_s": 60},
                                       {"limit": big, "window_s": 1}],
                          "tokens": [{"limit": big, "window_s": 86400}],
                          "monthly_budget_usd": 1000000000.0}},
        "routing": {"path_prefix": "/tenants/{namespace}",
                    "namespace_header": "x-tenant-namespace"},
        "pricing": {"models": {"gpt-4o": {"input_per_million": 2.5, "output_per_million": 10.0}},
                    "default": {"input_per_million": 1.0, "output_per_million": 3.0}},
        "bypass_paths": ["/healthz"],
    }
    for i in range(3, tenants):
        doc["tenants"][f"t{i:05d}"] = {"status": "active", "providers": ["corp"], "plan": "pro"}
    if token_cache_size is not None:
        doc["identity"]["token_cache_size"] = token_cache_size
    if log_line is not None:
        doc["records"] = {"log_line": log_line}
    if api_key is not None:
        doc["identity"]["api_key_sources"] = [{"header": "authorization", "prefix": "Bearer "}]
        doc["tenants"]["acme"]["api_keys"] = [
            {"id": "bench", "sha256": hashlib.sha256(api_key.encode()).hexdigest()}]
    return json.dumps(doc)


def make_bootstrap(http_filters):
    def make(envoy):
        hcm = {
            "@type": "type.googleapis.com/envoy.extensions.filters.network."
                     "http_connection_manager.v3.HttpConnectionManager",
            "stat_prefix": STAT_PREFIX,
            "codec_type": "AUTO",
            "route_config": {"name": "local", "virtual_hosts": [
                {"name": "all", "domains": ["*"], "routes": routes()}]},
            "http_filters": list(http_filters) + [buffer_filter(), router_filter()],
        }
        return {
            "node": {"id": "bench", "cluster": "bench"},
            "admin": {"address": {"socket_address": {"address": "127.0.0.1",
                                                     "port_value": envoy.admin_port}}},
            "static_resources": {"listeners": [{
                "name": "bench",
                "address": {"socket_address": {"address": "127.0.0.1",
                                               "port_value": envoy.listener_port}},
                "filter_chains": [{"filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": hcm}]}],
            }]},
        }
    return make


class Setup:
    """One Envoy process under test."""

    def __init__(self, name, label, filters, concurrency=1):
        self.name, self.label = name, label
        self.envoy = Envoy(OUT / name, make_bootstrap(filters), concurrency=concurrency)
        self.startup_s = None

    def start(self):
        began = time.monotonic()
        self.envoy.start(timeout=120)
        self.startup_s = time.monotonic() - began
        return self

    def stop(self):
        self.envoy.stop()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.envoy.listener_port}"

    def rss_kib(self):
        return rss_kib(self.envoy.process.pid)

    def cpu_seconds(self):
        return cpu_seconds(self.envoy.process.pid)

    def counts(self):
        stats = self.envoy.stats(rf"^http\.{STAT_PREFIX}\.downstream_rq_(2xx|completed)$")
        return (stats.get(f"http.{STAT_PREFIX}.downstream_rq_completed", 0),
                stats.get(f"http.{STAT_PREFIX}.downstream_rq_2xx", 0))


def cpu_seconds(pid):
    """User + system CPU time of a process so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


# === Load generators =========================================================================

UNIT_US = {"us": 1.0, "ms": 1000.0, "s": 1e6}


def wrk_duration_us(text):
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    return float(m.group(1)) * UNIT_US[m.group(2)] if m else float("nan")


def lua_quote(text):
    return json.dumps(text)  # a JSON string literal is a valid Lua string literal here


def wrk_script(workload, token=None, tokens_file=None):
    lines = []
    if workload.method == "POST":
        lines += [f'wrk.method = "POST"', f"wrk.body = {lua_quote(workload.body)}",
                  'wrk.headers["content-type"] = "application/json"']
    if token:
        lines.append(f'wrk.headers["authorization"] = "Bearer {token}"')
    if tokens_file:
        # A new token for every request, cycling through more tokens than any cache holds.
        lines += [
            "local tokens = {}",
            f"for line in io.lines({lua_quote(str(tokens_file))}) do "
            "tokens[#tokens + 1] = line end",
            "local i = 0",
            "request = function()",
            "  i = i % #tokens + 1",
            f"  return wrk.format(nil, {lua_quote(workload.path)}, "
            '{["authorization"] = "Bearer " .. tokens[i]})',
            "end",
        ]
    return "\n".join(lines) + "\n"


def run_wrk(setup, workload, duration, connections, token=None, tokens_file=None):
    script = OUT / f"{setup.name}-{workload.name}.lua"
    script.write_text(wrk_script(workload, token, tokens_file))
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", "-s", str(script),
           setup.url + workload.path]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    pct = dict(re.findall(r"^\s+(50|99)%\s+(\S+)$", out, re.M))
    return {"rps": rps, "p50_us": wrk_duration_us(pct.get("50", "")),
            "p99_us": wrk_duration_us(pct.get("99", ""))}


def run_h2load(setup, workload, duration, connections, token=None):
    log = OUT / f"{setup.name}-{workload.name}.h2log"
    cmd = ["h2load", "-t1", f"-c{connections}", "-m1", f"-D{duration}", f"--log-file={log}",
           "-H", "accept: */*"]
    if token:
        cmd += ["-H", f"authorization: Bearer {token}"]
    if workload.method == "POST":
        body = OUT / f"{workload.name}.body"
        body.write_text(workload.body)
        cmd += ["-d", str(body), "-H", "content-type: application/json"]
    cmd.append(setup.url + workload.path)
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out).group(1))
    times = sorted(int(row.split("\t")[2]) for row in log.read_text().splitlines()
                   if row.count("\t") >= 2)
    return {"rps": rps, "p50_us": percentile(times, 50), "p99_us": percentile(times, 99)}


def percentile(sorted_values, p):
    if not sorted_values:
        return float("nan")
    return float(sorted_values[min(len(sorted_values) - 1, len(sorted_values) * p // 100)])


class Workload:
    def __init__(self, name, protocol, method, path, body=None, label="", token=None):
        self.name, self.protocol, self.method, self.path, self.body = (
            name, protocol, method, path, body)
        self.label = label
        # Sent as `authorization: Bearer` instead of the run's token (an API key).
        self.token = token


def measure(setup, workload, duration, connections, token=None, tokens_file=None):
    """One run; Envoy's own counters decide whether every answer was a 2xx."""
    before = setup.counts()
    cpu_before = setup.cpu_seconds()
    if workload.protocol == "h1":
        result = run_wrk(setup, workload, duration, connections, token, tokens_file)
    else:
        result = run_h2load(setup, workload, duration, connections, token)
    time.sleep(0.2)
    cpu = setup.cpu_seconds() - cpu_before
    after = setup.counts()
    result["requests"] = after[0] - before[0]
    # Envoy's own CPU time per request: unlike requests/s, it hardly moves when other
    # processes take the cores away (they make a run slower, not the requests dearer).
    result["cpu_us"] = 1e6 * cpu / result["requests"] if result["requests"] else float("nan")
    result["non_2xx"] = (after[0] - before[0]) - (after[1] - before[1])
    return result


# === Report ==================================================================================

def fmt_rate(x):
    return f"{x:,.0f}"


def fmt_us(x):
    return "-" if x != x else (f"{x / 1000:.2f} ms" if x >= 1000 else f"{x:.0f} µs")


def spread(values):
    """(max - min) / median, in percent: how much the rounds disagreed."""
    med = statistics.median(values)
    return 100.0 * (max(values) - min(values)) / med if med else 0.0


def table(headers, rows):
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) for i, h in enumerate(headers)]
    line = lambda cells: "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |"
    out = [line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(r) for r in rows]
    return "\n".join(out)


def load_average():
    return Path("/proc/loadavg").read_text().split()[:3]


# === Main ====================================================================================

def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--miss-duration", type=float, default=2.0,
                        help="seconds per cache-miss run (one per algorithm and setup)")
    parser.add_argument("--only", default="",
                        help="comma-separated workloads to run (default: all), e.g. get-h1")
    parser.add_argument("--no-miss", action="store_true", help="skip the cache-miss runs")
    parser.add_argument("--no-tenants", action="store_true", help="skip the 10,000-tenant case")
    parser.add_argument("--log-line-twins", action="store_true",
                        help="also measure tenant-guard with records.log_line set to true and "
                             "to false (the per-request record line in the Envoy log or not)")
    parser.add_argument("--api-key", action="store_true",
                        help="also a gateway that reads tenant API keys: GETs with a cached "
                             "token and with an API key, on it")
    parser.add_argument("--budget", type=Path, default=BUDGET,
                        help="the allowed multiples of the floor's added CPU per request "
                             "(default: bench/budget.json)")
    parser.add_argument("--budget-report-only", action="store_true",
                        help="print the budget check but do not fail when a multiple is over")
    parser.add_argument("--baseline-wasm", type=Path,
                        help="another tenant_guard.wasm (e.g. before a change) measured "
                             "alternately with the current one, in every workload")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=MODULE",
                        help="another tenant-guard module (e.g. a variant build of "
                             "bench/attribution.py) measured alternately, in every workload; "
                             "repeatable")
    parser.add_argument("--floor-variant", action="append", default=[], metavar="NAME=CONFIG",
                        help="the floor with this plugin configuration, in every workload; "
                             "repeatable")
    args = parser.parse_args()
    duration = max(1, round(args.duration))

    if OUT.exists():
        shutil.rmtree(OUT)
    OUT.mkdir(parents=True)
    print(f"tenant-guard benchmark: Envoy 1.40, one worker per Envoy, {args.connections} "
          f"connections, {duration} s per run, {args.rounds} rounds (medians), "
          f"load average at start {' '.join(load_average())}, {os.cpu_count()} CPUs",
          flush=True)

    ring = K.KeyRing()
    jwks = ring.corp_jwks()
    now = int(time.time())
    token = K.mint(ring.corp_rsa, K.claims("acme", now=now, ttl=7200))

    setups = {
        "passthrough": Setup("passthrough", "passthrough (no filter)", []),
        "native": Setup("native", "native jwt_authn + local_ratelimit", native_filters(jwks)),
        "floor": Setup("floor", "minimal Wasm filter (floor)",
                       [wasm_filter("bench_floor", FLOOR_WASM)]),
        "tenant-guard": Setup("tenant-guard", "tenant-guard",
                              [wasm_filter("tenant_guard", TG_WASM,
                                           tenant_guard_config(jwks))]),
    }
    if args.baseline_wasm:
        setups["baseline"] = Setup("baseline", f"tenant-guard, {args.baseline_wasm.name}",
                                   [wasm_filter("tenant_guard", args.baseline_wasm.resolve(),
                                                tenant_guard_config(jwks))])
    variants = []
    for spec in args.variant:
        name, _, module = spec.partition("=")
        setups[f"variant-{name}"] = Setup(f"variant-{name}", f"tenant-guard, {name}",
                                          [wasm_filter("tenant_guard", Path(module).resolve(),
                                                       tenant_guard_config(jwks))])
        variants.append(f"variant-{name}")
    for spec in args.floor_variant:
        name, _, config = spec.partition("=")
        setups[f"floor-{name}"] = Setup(f"floor-{name}", f"floor, {config}",
                                        [wasm_filter("bench_floor", FLOOR_WASM, config)])
        variants.append(f"floor-{name}")
    api_key = "tgk_" + "5e" * 32
    if args.api_key:
        setups["keys"] = Setup("keys", "tenant-guard reading API keys",
                               [wasm_filter("tenant_guard", TG_WASM,
                                            tenant_guard_config(jwks, api_key=api_key))])
    twins = []
    if args.log_line_twins:
        for on in (True, False):
            name = f"log-line-{'on' if on else 'off'}"
            setups[name] = Setup(name, f"tenant-guard, records.log_line {str(on).lower()}",
                                 [wasm_filter("tenant_guard", TG_WASM,
                                              tenant_guard_config(jwks, log_line=on))])
            twins.append(name)
    if not args.no_tenants:
        setups["tenant-guard-10k"] = Setup(
            "tenant-guard-10k", "tenant-guard, 10,000 tenants",
            [wasm_filter("tenant_guard", TG_WASM, tenant_guard_config(jwks, tenants=10_000))])

    get, post, sse = ("GET", GET_PATH, None), ("POST", CHAT_PATH, CHAT_BODY), \
        ("POST", STREAM_PATH, STREAM_BODY)
    extra = (["baseline"] if args.baseline_wasm else []) + twins + variants
    all_four = ["passthrough", "native", "floor", "tenant-guard"] + extra
    bodies = ["passthrough", "floor", "tenant-guard"] + extra
    plan = [
        (Workload("get-h1", "h1", *get, label="GET, cached token, HTTP/1.1 (wrk)"),
         all_four + (["tenant-guard-10k"] if not args.no_tenants else [])),
        (Workload("get-h2", "h2", *get, label="GET, cached token, HTTP/2 (h2load)"), all_four),
        (Workload("post-h1", "h1", *post, label="LLM-shaped POST, JSON answer, HTTP/1.1"),
         bodies),
        (Workload("post-h2", "h2", *post, label="LLM-shaped POST, JSON answer, HTTP/2"), bodies),
        (Workload("sse-h1", "h1", *sse, label="streaming POST, SSE answer, HTTP/1.1"), bodies),
        (Workload("sse-h2", "h2", *sse, label="streaming POST, SSE answer, HTTP/2"), bodies),
    ]
    if args.api_key:
        # The same gateway, a cached token against an API key.
        plan[0][1].append("keys")
        plan[1][1].append("keys")
        plan += [
            (Workload("key-h1", "h1", *get, label="GET, API key, HTTP/1.1 (wrk)",
                      token=api_key), ["passthrough", "keys"]),
            (Workload("key-h2", "h2", *get, label="GET, API key, HTTP/2 (h2load)",
                      token=api_key), ["passthrough", "keys"]),
        ]
    if args.only:
        wanted = set(args.only.split(","))
        plan = [(w, s) for w, s in plan if w.name in wanted]

    results = {"config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
               "load_start": load_average(), "workloads": {},
               "wasm_bytes": {"tenant_guard": TG_WASM.stat().st_size,
                              "floor": FLOOR_WASM.stat().st_size}}
    invalid = []
    try:
        for setup in setups.values():
            setup.start()
            print(f"  started {setup.label}: ready after {setup.startup_s:.2f} s, "
                  f"RSS {setup.rss_kib() / 1024:.1f} MiB", flush=True)
        results["startup_s"] = {n: s.startup_s for n, s in setups.items()}
        results["rss_start_kib"] = {n: s.rss_kib() for n, s in setups.items()}

        # Warm-up: every setup and workload once, not counted.
        for workload, names in plan:
            for name in names:
                r = measure(setups[name], workload, 1, args.connections,
                            workload.token or token)
                if r["non_2xx"]:
                    invalid.append(f"warm-up {workload.name} on {name}: {r['non_2xx']} non-2xx")
        runs = {(w.name, n): [] for w, names in plan for n in names}
        for rnd in range(args.rounds):
            for workload, names in plan:
                for name in names:
                    r = measure(setups[name], workload, duration, args.connections,
                                workload.token or token)
                    runs[(workload.name, name)].append(r)
                    if r["non_2xx"] or not r["requests"]:
                        invalid.append(f"round {rnd + 1} {workload.name} on {name}: "
                                       f"{r['non_2xx']} non-2xx of {r['requests']}")
            print(f"  round {rnd + 1}/{args.rounds} done, load average "
                  f"{' '.join(load_average())}", flush=True)

        miss = {}
        if not args.no_miss:
            miss = cache_miss_runs(ring, setups, args, invalid)
        results["rss_end_kib"] = {n: s.rss_kib() for n, s in setups.items()}
    finally:
        for setup in setups.values():
            setup.stop()

    memory = {} if args.no_tenants else tenants_memory(jwks, invalid)
    results["load_end"] = load_average()
    report(plan, runs, setups, miss, memory, results, args)
    results["runs"] = {f"{w}/{n}": v for (w, n), v in runs.items()}
    results["miss"] = miss
    results["memory"] = memory
    over = budget_check(results, json.loads(args.budget.read_text()))
    status = finish(results, invalid, OUT)
    if status == 0 and over and not args.budget_report_only:
        print(f"\nOVER BUDGET: {', '.join(over)} ({args.budget}; --budget-report-only to "
              f"report without failing)")
        return 3
    return status


def budget_check(results, budget):
    """The module's added CPU per request (over passthrough) as a multiple of the floor's, per
    workload of ``budget`` (``{"multiples": {"get-h1": 2.5, ...}}``), from the run's medians.
    Prints the table, stores it in ``results["budget"]`` and returns the workloads that are
    over their budget or could not be checked (the floor added nothing measurable)."""
    medians = results["medians"]
    rows, over, checked = [], [], {}
    for workload, allowed in budget["multiples"].items():
        cpu = {name: medians.get(f"{workload}/{name}", {}).get("cpu_us")
               for name in ("passthrough", "floor", "tenant-guard")}
        if None in cpu.values():
            rows.append([workload, "-", "-", "-", f"{allowed}x", "not measured in this run"])
            continue
        module = cpu["tenant-guard"] - cpu["passthrough"]
        floor = cpu["floor"] - cpu["passthrough"]
        multiple = module / floor if floor > 0 else None
        if multiple is None:
            verdict = "cannot check: the floor added nothing measurable"
        else:
            verdict = "within" if multiple <= allowed else "OVER"
        if verdict != "within":
            over.append(workload)
        checked[workload] = {"module_added_us": module, "floor_added_us": floor,
                             "multiple": multiple, "budget": allowed, "verdict": verdict}
        rows.append([workload, f"{module:+.1f} µs", f"{floor:+.1f} µs",
                     "-" if multiple is None else f"{multiple:.1f}x", f"{allowed}x", verdict])
    results["budget"] = checked
    print("\nBudget: CPU per request tenant-guard adds to passthrough, as a multiple of what the "
          "floor adds (same run, medians)")
    print(table(["workload", "tenant-guard adds", "floor adds", "multiple", "budget", "verdict"],
                rows))
    return over


def finish(results, invalid, out):
    """Writes ``results.json`` into ``out`` and says whether every run answered 2xx only; the
    exit code (1 when a run had other answers: its numbers mean nothing)."""
    results["invalid"] = invalid
    (out / "results.json").write_text(json.dumps(results, indent=1))
    if invalid:
        print("\nINVALID: runs with non-2xx answers (their numbers mean nothing):")
        for line in invalid:
            print("  " + line)
        return 1
    print("\nEvery run: 0 non-2xx answers (Envoy's downstream_rq_2xx == downstream_rq_completed).")
    return 0


def cache_miss_runs(ring, setups, args, invalid):
    """A new token for every request: the signature check on every request, per algorithm."""
    keys_by_alg = {alg: key for key in (ring.corp_rsa, ring.corp_ec256, ring.corp_ec384,
                                         ring.corp_ed, ring.corp_hs) for alg in key.algs}
    now = int(time.time())
    workload = Workload("miss", "h1", "GET", GET_PATH)
    duration = max(1, round(args.miss_duration))
    miss = {}
    for alg in MISS_ALGS:
        path = OUT / f"tokens-{alg}.txt"
        path.write_text("\n".join(
            K.mint(keys_by_alg[alg], K.claims("acme", now=now, ttl=7200, jti=f"{alg}-{i}"),
                   alg=alg) for i in range(MISS_TOKENS)) + "\n")
        for name in ("native", "tenant-guard"):
            r = measure(setups[name], workload, duration, args.connections, tokens_file=path)
            miss[f"{alg}/{name}"] = r
            if r["non_2xx"] or not r["requests"]:
                invalid.append(f"cache miss {alg} on {name}: {r['non_2xx']} non-2xx")
    print("  cache-miss runs done", flush=True)
    return miss


def tenants_memory(jwks, invalid):
    """Fresh, idle Envoys with 3 and 10,000 tenants, one and two workers: start-up time and
    RSS after a few requests. RSS(2 workers) - RSS(1 worker) is one worker's share."""
    out = {}
    for tenants in (3, 10_000):
        for workers in (1, 2):
            name = f"mem-{tenants}-{workers}"
            setup = Setup(name, name, [wasm_filter("tenant_guard", TG_WASM,
                                                   tenant_guard_config(jwks, tenants=tenants))],
                          concurrency=workers)
            try:
                setup.start()
                # A few requests on every worker (missing token: 401 is expected here).
                for _ in range(20 * workers):
                    try:
                        urllib.request.urlopen(setup.url + GET_PATH, timeout=5).read()
                    except urllib.error.HTTPError:
                        pass
                time.sleep(0.5)
                out[name] = {"startup_s": setup.startup_s, "rss_kib": setup.rss_kib()}
            finally:
                setup.stop()
    print("  memory runs done", flush=True)
    return out


def report(plan, runs, setups, miss, memory, results, args):
    med = {k: {m: statistics.median(r[m] for r in v)
               for m in ("rps", "p50_us", "p99_us", "cpu_us")}
           for k, v in runs.items() if v}
    results["medians"] = {f"{w}/{n}": v for (w, n), v in med.items()}
    print()
    for workload, names in plan:
        base = med.get((workload.name, "passthrough"))
        native = med.get((workload.name, "native"))
        rows = []
        for name in names:
            m = med.get((workload.name, name))
            if not m:
                continue
            rps = [r["rps"] for r in runs[(workload.name, name)]]
            cpu = [r["cpu_us"] for r in runs[(workload.name, name)]]
            added = (m["cpu_us"] - base["cpu_us"]) if base else float("nan")
            rows.append([setups[name].label, fmt_rate(m["rps"]), f"±{spread(rps) / 2:.0f}%",
                         fmt_us(m["p50_us"]), fmt_us(m["p99_us"]),
                         f"{m['rps'] / base['rps']:.2f}" if base else "-",
                         f"{m['rps'] / native['rps']:.2f}" if native else "-",
                         f"{m['cpu_us']:.1f} µs ±{spread(cpu) / 2:.0f}%",
                         "-" if name == "passthrough" else f"{added:+.1f} µs"])
        print(f"{workload.label} [{workload.name}]")
        print(table(["setup", "req/s", "spread", "p50", "p99", "/ passthrough", "/ native",
                     "Envoy CPU per request", "vs passthrough"], rows))
        print()

    def ratio(workload, a, b):
        x, y = med.get((workload, a)), med.get((workload, b))
        if not (x and y):
            return "-"
        return f"{x['rps'] / y['rps']:.2f} (CPU: {y['cpu_us'] / x['cpu_us']:.2f})"
    summary = [
        ["GET h1: tenant-guard / passthrough (target >= 0.70)",
         ratio("get-h1", "tenant-guard", "passthrough")],
        ["GET h1: tenant-guard / native (target >= 0.80)", ratio("get-h1", "tenant-guard", "native")],
        ["GET h1: floor / passthrough", ratio("get-h1", "floor", "passthrough")],
        ["GET h2: tenant-guard / passthrough", ratio("get-h2", "tenant-guard", "passthrough")],
        ["GET h2: tenant-guard / native", ratio("get-h2", "tenant-guard", "native")],
        ["LLM POST h1: tenant-guard / without (target >= 0.60)",
         ratio("post-h1", "tenant-guard", "passthrough")],
        ["LLM POST h2: tenant-guard / without", ratio("post-h2", "tenant-guard", "passthrough")],
        ["SSE h1: tenant-guard / without", ratio("sse-h1", "tenant-guard", "passthrough")],
        ["SSE h2: tenant-guard / without", ratio("sse-h2", "tenant-guard", "passthrough")],
        ["GET h1: 10,000 tenants / 3 tenants", ratio("get-h1", "tenant-guard-10k", "tenant-guard")],
    ]
    twins = [("tenant-guard", "baseline", "tenant-guard / baseline module"),
             ("log-line-on", "log-line-off", "records.log_line true / false")]
    for first, second, label in twins:
        if second not in setups:
            continue
        for w, _ in plan:
            x, y = med.get((w.name, first)), med.get((w.name, second))
            if x and y:
                summary.append([f"{w.name}: {label}; CPU per request",
                                f"{x['rps'] / y['rps']:.2f}; {x['cpu_us'] - y['cpu_us']:+.1f} µs"])
    print(table(["ratio of medians: req/s (and the inverse ratio of Envoy CPU per request)",
                 "value"], summary))
    print()
    sizes = results["wasm_bytes"]
    print(f"tenant_guard.wasm: {sizes['tenant_guard']:,} bytes "
          f"({sizes['tenant_guard'] / 1024:.0f} KiB; budget 1 MiB = 1,048,576 bytes); "
          f"floor: {sizes['floor']:,} bytes")
    print()
    rows = [[setups[n].label, f"{results['startup_s'][n]:.2f} s",
             f"{results['rss_start_kib'][n] / 1024:.1f} MiB",
             f"{results.get('rss_end_kib', {}).get(n, 0) / 1024:.1f} MiB"] for n in setups]
    print(table(["setup (1 worker)", "ready after", "RSS at start", "RSS after the runs"], rows))
    print()

    if miss:
        hit = med.get(("get-h1", "tenant-guard"))
        hit_native = med.get(("get-h1", "native"))
        rows = []
        for alg in MISS_ALGS:
            tg, nat = miss.get(f"{alg}/tenant-guard"), miss.get(f"{alg}/native")
            cost = lambda r, h: f"{r['cpu_us'] - h['cpu_us']:.0f} µs" if r and h else "-"
            rows.append([alg, fmt_rate(tg["rps"]), fmt_us(tg["p50_us"]), cost(tg, hit),
                         fmt_rate(nat["rps"]), cost(nat, hit_native)])
        print(f"Cache miss: a new token on every request (GET, HTTP/1.1, one run of "
              f"{max(1, round(args.miss_duration))} s each); signature cost = Envoy CPU per request, "
              f"miss - hit")
        print(table(["alg", "tenant-guard req/s", "p50", "signature cost", "native req/s",
                     "native signature cost"], rows))
        print()

    if memory:
        def mem(t, w):
            return memory[f"mem-{t}-{w}"]
        worker3 = mem(3, 2)["rss_kib"] - mem(3, 1)["rss_kib"]
        worker10k = mem(10_000, 2)["rss_kib"] - mem(10_000, 1)["rss_kib"]
        rows = [[f"{t:,}", w, f"{mem(t, w)['startup_s']:.2f} s",
                 f"{mem(t, w)['rss_kib'] / 1024:.1f} MiB"]
                for t in (3, 10_000) for w in (1, 2)]
        print("10,000 tenants (fresh idle Envoys, one start each)")
        print(table(["tenants", "workers", "ready after", "RSS"], rows))
        load = mem(10_000, 1)["startup_s"] - mem(3, 1)["startup_s"]
        print(f"configuration load, 10,000 vs 3 tenants: +{load:.2f} s (target < 1 s); "
              f"one worker's RSS: {worker3 / 1024:.1f} MiB with 3 tenants, "
              f"{worker10k / 1024:.1f} MiB with 10,000: "
              f"+{(worker10k - worker3) / 1024:.1f} MiB per worker (target <= 4 MB); "
              f"whole process, 1 worker: "
              f"+{(mem(10_000, 1)['rss_kib'] - mem(3, 1)['rss_kib']) / 1024:.1f} MiB")
        results["tenants"] = {"load_s": load, "worker_rss_3_kib": worker3,
                              "worker_rss_10k_kib": worker10k}
    print(f"\nload average at start {' '.join(results['load_start'])}, "
          f"at end {' '.join(results['load_end'])}")


if __name__ == "__main__":
    sys.exit(main())
