"""The plugin configurations the bad-config tests use: each refused at load time, with the
beginning of the filter's log line (the field path, then the problem; serde's trailing "at
line L column C" left out). Shared by test_bad_config.py (Envoy refuses them) and
test_policy_schema.py (`tenant-guard check` refuses them the same way)."""

import json

from .keys import ec_key


def _unknown_top_level_field(cfg):
    cfg["tennants"] = {}


def _unknown_plan(cfg):
    cfg["tenants"]["acme"]["plan"] = "gold"


def _unknown_provider(cfg):
    cfg["tenants"]["acme"]["providers"] = ["corp-idp", "nope-idp"]


def _empty_providers(cfg):
    cfg["providers"] = {}
    cfg["tenants"] = {}
    cfg.pop("default_tenant")


def _bad_jwk(cfg):
    cfg["providers"]["corp-idp"]["jwks"]["keys"][0]["n"] = "!!! not base64url !!!"


def _duplicate_kid(cfg):
    keys = cfg["providers"]["corp-idp"]["jwks"]["keys"]
    keys.append(dict(ec_key("rsa-1", "P-256").jwk))


def _unknown_nested_field(cfg):
    cfg["identity"]["tenant_claims"] = "tenant_id"


def _bad_status(cfg):
    cfg["tenants"]["acme"]["status"] = "paused"


def _token_type_not_jwt(cfg):
    cfg["providers"]["corp-idp"]["token_types"] = ["JWT", "jose"]


def _keys_stale_before_a_refresh(cfg):
    cfg["providers"]["remote-idp"]["remote_jwks"]["max_stale_s"] = 2


def _key_ops_without_verify(cfg):
    cfg["providers"]["corp-idp"]["jwks"]["keys"][0]["key_ops"] = ["encrypt"]


def _per_user_max_users_zero(cfg):
    cfg["plans"]["free"]["per_user"] = {"requests": [{"limit": 5, "window_s": 60}],
                                        "max_users": 0}


def _per_user_without_limits(cfg):
    cfg["plans"]["free"]["per_user"] = {"max_users": 5}


def _alerts_unsorted(cfg):
    cfg["plans"]["pro"]["alerts"] = [0.8, 0.5]


def _alerts_webhook_retries(cfg):
    cfg["alerts"] = {"webhook": {"cluster": "hooks", "path": "/alerts", "retries": 50}}


def _model_star_inside(cfg):
    cfg["plans"]["free"]["models"] = ["gpt-4o-mini", "claude-*-haiku"]


def _empty_model(cfg):
    cfg["tenants"]["acme"]["models"] = [""]


def _models_in_tenant_limits(cfg):
    cfg["tenants"]["acme"]["limits"] = {"models": ["gpt-4o"]}


# name: (mutation of main_plugin_config, how the filter's log line begins after
# "invalid configuration: ")
BAD_CONFIGS = {
    "unknown_top_level_field": (_unknown_top_level_field, "tennants: unknown field `tennants`"),
    "unknown_plan": (_unknown_plan, 'tenants.acme.plan: unknown plan "gold"'),
    "unknown_provider": (_unknown_provider,
                         'tenants.acme.providers[1]: unknown provider "nope-idp"'),
    "empty_providers": (_empty_providers, "providers: at least one provider is required"),
    "bad_jwk": (_bad_jwk, "providers.corp-idp.jwks.keys[0].n: not valid base64url"),
    "duplicate_kid": (_duplicate_kid,
                      'providers.corp-idp.jwks.keys[5].kid: duplicate kid "rsa-1" (also keys[0])'),
    "unknown_nested_field": (_unknown_nested_field,
                             "identity.tenant_claims: unknown field `tenant_claims`"),
    "bad_status": (_bad_status, "tenants.acme.status: unknown variant `paused`, expected "
                                "`active` or `suspended`"),
    "token_type_not_jwt": (_token_type_not_jwt,
                           'providers.corp-idp.token_types[1]: not a JWT type: "JWT", a name '
                           'ending in "+jwt", or "" for no typ'),
    "keys_stale_before_a_refresh": (
        _keys_stale_before_a_refresh,
        "providers.remote-idp.remote_jwks.max_stale_s: must be at least refresh_s plus the "
        "fetch timeout (6 s), so a refresh can complete before the keys go stale"),
    "key_ops_without_verify": (_key_ops_without_verify,
                               'providers.corp-idp.jwks.keys[0].key_ops: does not include '
                               '"verify": the key may not verify signatures'),
    "per_user_max_users_zero": (_per_user_max_users_zero,
                                "plans.free.per_user.max_users: must be between 1 and 10000"),
    "per_user_without_limits": (_per_user_without_limits,
                                "plans.free.per_user: names no limit (give requests, tokens or "
                                "monthly_budget_usd)"),
    "alerts_unsorted": (_alerts_unsorted,
                        "plans.pro.alerts[1]: thresholds must be sorted ascending, each once"),
    "alerts_webhook_retries": (_alerts_webhook_retries,
                               "alerts.webhook.retries: must be at most 5"),
    "model_star_inside": (_model_star_inside,
                          "plans.free.models[1]: \"claude-*-haiku\": '*' may only end a "
                          "pattern (a prefix such as \"claude-3-5-haiku-*\")"),
    "empty_model": (_empty_model, "tenants.acme.models[0]: must not be empty"),
    "models_in_tenant_limits": (_models_in_tenant_limits,
                                "tenants.acme.limits.models: a tenant's own models are "
                                "tenants.acme.models"),
}


# Documents that are not a configuration object at all: (text, beginning of the log line).
RAW_CONFIGS = {
    # No bytes are also an empty serialized google.protobuf.Struct: an empty document.
    "empty": ("", "configuration: missing field `providers`"),
    "not_json": ("not json", "configuration: neither JSON (expected ident at line 1 column 2) "
                             "nor a serialized google.protobuf.Struct"),
    "array": ("[]", "configuration: invalid length 0, expected struct"),
    "wrong_type": (json.dumps({"providers": 1}),
                   "providers: invalid type: integer `1`, expected a map"),
}
