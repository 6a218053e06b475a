"""Gateway replicas for global quotas: Envoys running tenant-guard with a ``global_rate_limit``
section and a ``ratelimit`` gRPC cluster, started side by side."""

import copy

from . import bootstrap as bs
from .envoy_process import Envoy, EnvoyStartError
from .limits import LONG
from .plugin_config import gateway_config, windows

# Local plans are generous in these tests, so only the global limit bites.
GENEROUS = {"requests": windows((1000000, LONG)), "tokens": windows((1000000000, LONG))}

# How long the filter waits for the rate-limit service, unless a test is about that wait: far
# longer than the service needs even on a busy machine, so a slow answer is never mistaken for
# a failure (failure_mode deny would turn it into a 503).
PATIENT_TIMEOUT_MS = 5000


def global_config(keys, tenants, *, plans, failure_mode="deny", timeout_ms=PATIENT_TIMEOUT_MS,
                  extra_entries=None, domain="tenant-guard", lease=None, **sections) -> dict:
    """The quota test identity setup plus ``global_rate_limit`` naming the ``ratelimit``
    cluster. ``plans``: plan names → local plan (``GENEROUS`` unless given); ``lease``: the
    ``global_rate_limit.lease`` object."""
    config = gateway_config(keys, tenants,
                            plans={name: copy.deepcopy(plan or GENEROUS)
                                   for name, plan in plans.items()}, **sections)
    config["global_rate_limit"] = {"cluster": "ratelimit", "domain": domain,
                                   "timeout_ms": timeout_ms, "failure_mode": failure_mode}
    if extra_entries is not None:
        config["global_rate_limit"]["extra_entries"] = list(extra_entries)
    if lease is not None:
        config["global_rate_limit"]["lease"] = dict(lease)
    return config


def replica(workdir, wasm_path, upstream_port, jwks_port, config, service_port,
            concurrency=2) -> Envoy:
    make = bs.with_clusters(
        bs.gateway(upstream_port, jwks_port, [bs.wasm_filter(wasm_path, config)]),
        bs.grpc_cluster("ratelimit", service_port))
    return Envoy(workdir, make, concurrency=concurrency)


def start_all(proxies, timeout=30.0):
    """Launches every Envoy first, then waits for each (so they load their Wasm side by side);
    one that lost a port race is started again with new ports. If one cannot start, all are
    stopped and the error raised."""
    try:
        for proxy in proxies:
            proxy.launch()
        for proxy in proxies:
            try:
                proxy.wait_ready(timeout)
            except EnvoyStartError as exc:
                proxy.stop()
                if "Address already in use" not in str(exc):
                    raise
                proxy.start(timeout)
    except BaseException:
        for proxy in proxies:
            proxy.stop()
        raise
    return proxies
