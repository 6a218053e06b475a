#!/usr/bin/env python3
"""`make bench-global`: what global quotas cost, with and without leased credit: calls to the
rate-limit service per 1,000 requests, and the latency they add.

Three setups, each two Envoy replicas (one worker each) in front of the same direct-response
routes as `make bench` (an LLM-shaped POST answered with a chat completion and its usage):
tenant-guard with local quotas only; with `global_rate_limit` asking the service for every
request (a requests call and a tokens check at admission, a token debit after the answer);
and with `global_rate_limit.lease` (blocks of credit). One rate-limit service
(`tools/ratelimit-service`: Limitador's engine, counters in Redis) serves the global setups,
with limits no run reaches. Each run loads both replicas of a setup at once with `wrk`, first
with `--connections` each (saturated: what the calls cost in throughput and queueing), then
with one connection each (the round trips a request waits for); the setups are measured
alternately, round after round, and medians are reported. A run in which
Envoy counted one non-2xx answer is invalid and makes the benchmark fail.

    bench/global.py --duration 3 --rounds 3 [--connections 16]

Reports, it does not assert. Raw numbers go to target/bench-global/results.json.
"""

import argparse
import json
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "bench"))

import run as bench  # noqa: E402  (bench/run.py: routes, filters, wrk, report helpers)
from harness import bootstrap as bs  # noqa: E402
from harness import keys as K  # noqa: E402
from harness.envoy_process import Envoy  # noqa: E402
from harness.ratelimit import RateLimitService, Redis, limit  # noqa: E402

OUT = REPO / "target" / "bench-global"
TENANT = "acme"
BIG = 10 ** 15
LIMITS = [limit("bench-requests", usage="requests", plan="pro", max_value=BIG),
          limit("bench-tokens", usage="tokens", plan="pro", max_value=BIG)]
LEASE = {"window_s": 3600}

SETUPS = {
    "local": "local quotas only",
    "per-request": "global, a call per request",
    "lease": "global, leased credit",
}


def plugin_config(jwks, setup, service_port):
    doc = json.loads(bench.tenant_guard_config(jwks))
    if setup != "local":
        doc["global_rate_limit"] = {"cluster": "ratelimit", "domain": "tenant-guard",
                                    "timeout_ms": 200, "failure_mode": "deny"}
        if setup == "lease":
            doc["global_rate_limit"]["lease"] = LEASE
    return json.dumps(doc)


def make_bootstrap(configuration, service_port):
    filters = [bench.wasm_filter("tenant_guard", bench.TG_WASM, configuration)]
    plain = bench.make_bootstrap(filters)

    def make(envoy):
        doc = plain(envoy)
        doc["static_resources"]["clusters"] = [bs.grpc_cluster("ratelimit", service_port)]
        return doc
    return make


class Replica:
    """One Envoy of a setup, as `bench.run_wrk` and `bench.Setup.counts` want it."""

    def __init__(self, name, make):
        self.name = name
        self.envoy = Envoy(OUT / name, make, concurrency=1)

    @property
    def url(self):
        return f"http://127.0.0.1:{self.envoy.listener_port}"

    def counts(self):
        return bench.Setup.counts(self)

    def calls_made(self):
        return self.envoy.stat("wasmcustom.tenant_guard.global.calls")


def signed_us(x):
    """A latency difference: +1.49 ms, -347 µs."""
    sign = "-" if x < 0 else "+"
    return sign + bench.fmt_us(abs(x))


def measure(replicas, service, workload, duration, connections, token):
    """Both replicas loaded at once for `duration` seconds."""
    before = [r.counts() for r in replicas]
    calls_before = len(service.calls_for(TENANT, "requests")) + \
        len(service.calls_for(TENANT, "tokens"))
    with ThreadPoolExecutor(max_workers=len(replicas)) as pool:
        runs = list(pool.map(lambda r: bench.run_wrk(r, workload, duration, connections, token),
                             replicas))
    time.sleep(0.3)  # debits of the last answers
    after = [r.counts() for r in replicas]
    requests = sum(a[0] - b[0] for a, b in zip(after, before))
    ok = sum(a[1] - b[1] for a, b in zip(after, before))
    calls = len(service.calls_for(TENANT, "requests")) + \
        len(service.calls_for(TENANT, "tokens")) - calls_before
    return {"rps": sum(r["rps"] for r in runs),
            "p50_us": statistics.mean(r["p50_us"] for r in runs),
            "p99_us": statistics.mean(r["p99_us"] for r in runs),
            "requests": requests, "non_2xx": requests - ok, "calls": calls,
            "calls_per_1000": 1000.0 * calls / requests if requests else float("nan")}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=16,
                        help="wrk connections per replica")
    args = parser.parse_args()
    duration = max(1, round(args.duration))
    OUT.mkdir(parents=True, exist_ok=True)
    bench.OUT.mkdir(parents=True, exist_ok=True)  # wrk scripts

    ring = K.KeyRing()
    jwks = ring.corp_jwks()
    now = int(time.time())
    token = K.mint(ring.corp_rsa, K.claims(TENANT, now=now, ttl=7200))
    workload = bench.Workload("post-h1", "h1", "POST", bench.CHAT_PATH, bench.CHAT_BODY,
                              label="LLM-shaped POST, JSON answer with usage, HTTP/1.1")

    redis = Redis(OUT / "redis").start()
    service = None
    setups = {}
    invalid = []
    results = {"config": vars(args), "load_start": bench.load_average()}
    try:
        service = RateLimitService(OUT / "service", LIMITS, redis_url=redis.url).start()
        for name in SETUPS:
            configuration = plugin_config(jwks, name, service.port)
            setups[name] = [Replica(f"{name}-{i}",
                                    make_bootstrap(configuration, service.port))
                            for i in "ab"]
        for replicas in setups.values():
            for replica in replicas:
                replica.envoy.start(timeout=120)
        print("  started 3 setups × 2 replicas, the rate-limit service and Redis", flush=True)

        # Warm-up: every setup once, not counted (the first requests fetch the first blocks).
        for name, replicas in setups.items():
            r = measure(replicas, service, workload, 1, args.connections, token)
            if r["non_2xx"]:
                invalid.append(f"warm-up on {name}: {r['non_2xx']} non-2xx")
        # Saturated (what the calls cost in throughput) and one connection per replica (the
        # round trips a request waits for).
        loads = [args.connections, 1]
        runs = {(load, name): [] for load in loads for name in SETUPS}
        for rnd in range(args.rounds):
            for load in loads:
                for name, replicas in setups.items():
                    r = measure(replicas, service, workload, duration, load, token)
                    runs[(load, name)].append(r)
                    if r["non_2xx"] or not r["requests"]:
                        invalid.append(f"round {rnd + 1} on {name}, {load} connections: "
                                       f"{r['non_2xx']} non-2xx of {r['requests']}")
            print(f"  round {rnd + 1}/{args.rounds} done, load average "
                  f"{' '.join(bench.load_average())}", flush=True)
        results["filter_calls"] = {name: sum(r.calls_made() for r in replicas)
                                   for name, replicas in setups.items()}
    finally:
        for replicas in setups.values():
            for replica in replicas:
                replica.envoy.stop()
        if service is not None:
            service.stop()
        redis.stop()

    results["load_end"] = bench.load_average()
    med = {key: {m: statistics.median(r[m] for r in v)
                 for m in ("rps", "p50_us", "p99_us", "calls_per_1000")}
           for key, v in runs.items()}
    for load in loads:
        base = med[(load, "local")]
        rows = []
        for name, label in SETUPS.items():
            m = med[(load, name)]
            rows.append([label, bench.fmt_rate(m["rps"]), bench.fmt_us(m["p50_us"]),
                         bench.fmt_us(m["p99_us"]),
                         "-" if name == "local" else signed_us(m["p50_us"] - base["p50_us"]),
                         "-" if name == "local" else signed_us(m["p99_us"] - base["p99_us"]),
                         f"{m['calls_per_1000']:.1f}"])
        print()
        print(f"{workload.label}; two replicas, {load} connection{'s' if load > 1 else ''} "
              f"each, {duration} s runs, medians of {args.rounds} rounds")
        print(bench.table(["setup", "req/s (both)", "p50", "p99", "p50 added", "p99 added",
                           "service calls per 1,000 requests"], rows))
    print(f"\nload average at start {' '.join(results['load_start'])}, "
          f"at end {' '.join(results['load_end'])}")
    med = {f"{load}/{name}": v for (load, name), v in med.items()}
    runs = {f"{load}/{name}": v for (load, name), v in runs.items()}
    results["medians"] = med
    results["runs"] = runs
    return bench.finish(results, invalid, OUT)


if __name__ == "__main__":
    sys.exit(main())
