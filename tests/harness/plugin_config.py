"""The tenant-guard plugin configuration the main test Envoy runs with."""

import copy

from .keys import CORP_ISSUER, GLOBEX_ISSUER, REMOTE_ISSUER, AUDIENCE, KeyRing

# Identity tests send thousands of requests: their plans are far from any limit. Quotas are
# tested with their own Envoys and small plans (test_quotas.py).
PLANS = {
    "free": {"requests": [{"limit": 1000000, "window_s": 60}],
             "tokens": [{"limit": 1000000000, "window_s": 86400}],
             "monthly_budget_usd": 1000000.0},
    "pro": {"requests": [{"limit": 1000000, "window_s": 60}, {"limit": 100000, "window_s": 1}],
            "tokens": [{"limit": 1000000000, "window_s": 86400}],
            "monthly_budget_usd": 1000000.0},
}

BYPASS_PATHS = ["/healthz"]


def main_plugin_config(keys: KeyRing) -> dict:
    return {
        "providers": {
            "corp-idp": {"issuer": CORP_ISSUER, "audiences": [AUDIENCE],
                         "jwks": keys.corp_jwks()},
            "globex-idp": {"issuer": GLOBEX_ISSUER, "audiences": [AUDIENCE],
                           "jwks": keys.globex_jwks()},
            "remote-idp": {"issuer": REMOTE_ISSUER, "audiences": [AUDIENCE],
                           "remote_jwks": {"cluster": "jwks", "authority": "jwks.test",
                                           "path": "/jwks.json", "refresh_s": 1}},
        },
        "identity": {
            "token_sources": [{"header": "authorization", "prefix": "Bearer "},
                              {"header": "x-api-key"}],
            "tenant_claim": "tenant_id",
            "user_claim": "sub",
            "clock_skew_s": 60,
            "tenant_header": "x-tenant-id",
            "forward_claims": {"sub": "x-user-id", "email": "x-user-email"},
            "strip_token": True,
        },
        "tenants": {
            "acme": {"status": "active", "providers": ["corp-idp"], "plan": "pro"},
            "globex": {"status": "active", "providers": ["globex-idp"], "plan": "free"},
            "initech": {"status": "suspended", "providers": ["corp-idp"], "plan": "free"},
            "umbrella": {"status": "active", "providers": ["remote-idp"], "plan": "free"},
        },
        "default_tenant": {"providers": ["corp-idp"], "plan": "free"},
        "plans": copy.deepcopy(PLANS),
        "bypass_paths": list(BYPASS_PATHS),
    }


# === Configurations for quota, usage and namespace tests ===

def tenant(plan=None, *, limits=None, status="active", providers=("corp-idp",),
           namespace=None) -> dict:
    """One ``tenants`` entry."""
    entry = {"status": status, "providers": list(providers)}
    if plan is not None:
        entry["plan"] = plan
    if limits is not None:
        entry["limits"] = limits
    if namespace is not None:
        entry["namespace"] = namespace
    return entry


def windows(*pairs) -> list:
    """``windows((limit, window_s), ...)`` → a plan's list of windows."""
    return [{"limit": limit, "window_s": window_s} for limit, window_s in pairs]


def gateway_config(keys: KeyRing, tenants: dict, *, plans=None, default_tenant=None,
                   pricing=None, usage=None, stats=None, routing=None,
                   vector_stores=None, isolation=None) -> dict:
    """The main test identity setup (inline keys only) with the given tenants and sections."""
    config = main_plugin_config(keys)
    del config["providers"]["remote-idp"]
    config["tenants"] = tenants
    config["plans"] = plans or {}
    config.pop("default_tenant")
    for name, value in (("default_tenant", default_tenant), ("pricing", pricing),
                        ("usage", usage), ("stats", stats), ("routing", routing),
                        ("vector_stores", vector_stores), ("isolation", isolation)):
        if value is not None:
            config[name] = value
    return config


# What isolation.prompt_cache adds to OpenAI bodies (tenant-scoped tags).
ISOLATION_TAGS = ("prompt_cache_key", "safety_identifier")


def without_isolation_tags(body: dict) -> dict:
    """An upstream-bound OpenAI body without the tags the gateway sets, after checking that
    they are tags (``tg-`` and 32 hex digits), never a client's or user's raw value."""
    body = dict(body)
    for name in ISOLATION_TAGS:
        tag = body.pop(name, None)
        assert isinstance(tag, str) and tag.startswith("tg-") and len(tag) == 35, (name, tag)
    return body
