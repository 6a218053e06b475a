//! The configuration contract (`shared/plugin-config.md`): serde types that mirror the JSON
//! document, and their validation into the compiled [`Config`] the filter runs on.
//!
//! Everything is checked at load time so that Envoy refuses a half-understood policy: unknown
//! fields, dangling plan or provider references, bad keys. Every error names the field path
//! ([`ConfigError`]).
//!
//! A section whose rules a domain module owns is read and checked there (`plans`: `plan`,
//! `pricing`: `cost`, `routing`: `namespace`, `global_rate_limit`, `vector_stores`,
//! `isolation`, `usage`: `metering`, tenants' namespaces: `tenant`); this module checks what
//! spans sections (references between tenants, plans and providers) and puts the [`Config`]
//! together, and `config/document.rs` reads the document (JSON or a Struct). Arrows run one
//! way: `config` → domain modules → `config_error`.

use std::collections::HashSet;
use std::rc::Rc;

use serde::Deserialize;

use crate::policy::alerts::{compile_alerts, RawAlerts, Webhook};
use crate::policy::api_key::{ApiKeys, RawApiKey};
use crate::policy::config_error::{err, header_name, ConfigError};
use crate::policy::cost::{compile_pricing, Pricing, RawPricing};
use crate::policy::global_rate_limit::{compile_global, GlobalRateLimit, RawGlobalRateLimit};
use crate::policy::identity::{
    Audiences, ClaimPath, IdentityRules, Provider, RemoteKeys, TokenTypes,
};
use crate::policy::isolation::{compile_isolation, IsolationRules, RawIsolation};
use crate::policy::jwks::KeySet;
use crate::policy::metering::UsageRules;
use crate::policy::models;
use crate::policy::namespace::{compile_routing, RawRouting, Routing};
use crate::policy::object_map::ObjectMap;
use crate::policy::plan::{
    check_limits, finish_limits, with_tenant_models, Enforcement, Limits, RawLimits,
};
use crate::policy::secret::Named;
use crate::policy::state_fields::StateFields;
use crate::policy::tenant::{
    check_default_namespaces, check_listed_namespaces, is_valid_tenant_id,
    parse_namespace_template, DefaultTenant, Status, Tenant, Tenants,
};
use crate::policy::upstream::{self, RawCredential, RawTenantUpstream, RawUpstream, Upstreams};
use crate::policy::vector_store::{self, RawVectorStore, VectorStores};

// === The document, as written by operators ===

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    providers: ObjectMap<RawProvider>,
    #[serde(default)]
    identity: RawIdentity,
    #[serde(default)]
    tenants: ObjectMap<ListedTenant>,
    default_tenant: Option<RawDefaultTenant>,
    #[serde(default)]
    plans: ObjectMap<RawLimits>,
    global_rate_limit: Option<RawGlobalRateLimit>,
    routing: Option<RawRouting>,
    pricing: Option<RawPricing>,
    #[serde(default)]
    bypass_paths: Vec<String>,
    #[serde(default)]
    vector_stores: Vec<RawVectorStore>,
    #[serde(default)]
    usage: UsageRules,
    #[serde(default)]
    stats: StatsRules,
    #[serde(default)]
    records: RecordRules,
    #[serde(default)]
    isolation: RawIsolation,
    #[serde(default)]
    upstreams: ObjectMap<RawUpstream>,
    #[serde(default)]
    default_credentials: ObjectMap<RawCredential>,
    audit: Option<RawAudit>,
    alerts: Option<RawAlerts>,
}

/// `audit`: the audit stream's options.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAudit {
    /// The environment variable holding the audit chain's HMAC key.
    key_env: Option<String>,
}

/// The shortest HMAC key the audit chain takes (a SHA-256 block's worth is the most it uses).
const MIN_AUDIT_KEY_BYTES: usize = 32;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProvider {
    issuer: String,
    audiences: Option<RawAudiences>,
    #[serde(default)]
    require_kid: bool,
    token_types: Option<Vec<String>>,
    jwks: Option<serde_json::Value>,
    remote_jwks: Option<RawRemoteJwks>,
}

/// `audiences`: a list, or the word `"any"`.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawAudiences {
    List(Vec<String>),
    Word(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRemoteJwks {
    cluster: String,
    authority: Option<String>,
    path: String,
    #[serde(default = "default_refresh_s")]
    refresh_s: u64,
    #[serde(default = "default_fetch_timeout_ms")]
    timeout_ms: u64,
    max_stale_s: Option<u64>,
}

fn default_refresh_s() -> u64 {
    300
}
/// `remote_jwks.max_stale_s` unless given: an hour, or two refreshes and a timeout when longer.
const DEFAULT_MAX_STALE_S: u64 = 3600;
fn default_fetch_timeout_ms() -> u64 {
    5000
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIdentity {
    #[serde(default = "default_token_sources")]
    token_sources: Vec<RawTokenSource>,
    #[serde(default = "default_tenant_claim")]
    tenant_claim: String,
    user_claim: Option<String>,
    #[serde(default = "default_clock_skew_s")]
    clock_skew_s: u64,
    tenant_header: Option<String>,
    #[serde(default)]
    forward_claims: ObjectMap<String>,
    #[serde(default)]
    strip_token: bool,
    #[serde(default = "default_max_token_bytes")]
    max_token_bytes: usize,
    #[serde(default = "default_token_cache_size")]
    token_cache_size: usize,
    /// Where tenant API keys are read (`tenants.<id>.api_keys`); also token sources.
    #[serde(default)]
    api_key_sources: Vec<RawTokenSource>,
}

impl Default for RawIdentity {
    fn default() -> Self {
        RawIdentity {
            token_sources: default_token_sources(),
            tenant_claim: default_tenant_claim(),
            user_claim: None,
            clock_skew_s: default_clock_skew_s(),
            tenant_header: None,
            forward_claims: ObjectMap::default(),
            strip_token: false,
            max_token_bytes: default_max_token_bytes(),
            token_cache_size: default_token_cache_size(),
            api_key_sources: Vec::new(),
        }
    }
}

fn default_token_sources() -> Vec<RawTokenSource> {
    vec![RawTokenSource {
        header: "authorization".into(),
        prefix: Some("Bearer ".into()),
    }]
}
fn default_tenant_claim() -> String {
    "tenant_id".into()
}
fn default_clock_skew_s() -> u64 {
    60
}
fn default_max_token_bytes() -> usize {
    8192
}
fn default_token_cache_size() -> usize {
    1024
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTokenSource {
    header: String,
    prefix: Option<String>,
}

/// A listed tenant as read into the document's list of tenants, before it is compiled: the
/// list of 10,000 tenants grows by doubling while serde reads it, and what it peaks at stays
/// with the VM, so a tenant with nothing but a status, providers and a plan (most) takes 28
/// bytes there (wasm32), and only one with more takes a whole [`RawTenant`] (104), boxed.
#[derive(Deserialize)]
#[serde(from = "RawTenant")]
enum ListedTenant {
    Plain {
        status: Status,
        providers: Vec<String>,
        plan: Option<String>,
    },
    Full(Box<RawTenant>),
}

impl From<RawTenant> for ListedTenant {
    fn from(t: RawTenant) -> Self {
        let plain = t.namespace.is_none()
            && t.limits.is_none()
            && t.enforcement.is_none()
            && t.models.is_none()
            && t.object_prefixes.is_empty()
            && t.credentials.is_empty()
            && t.upstream_headers.is_empty()
            && t.api_keys.is_empty();
        if plain {
            ListedTenant::Plain {
                status: t.status,
                providers: t.providers,
                plan: t.plan,
            }
        } else {
            ListedTenant::Full(Box::new(t))
        }
    }
}

impl From<ListedTenant> for RawTenant {
    fn from(t: ListedTenant) -> Self {
        match t {
            ListedTenant::Plain {
                status,
                providers,
                plan,
            } => RawTenant {
                status,
                providers,
                plan,
                namespace: None,
                limits: None,
                enforcement: None,
                models: None,
                object_prefixes: Vec::new(),
                credentials: ObjectMap::default(),
                upstream_headers: ObjectMap::default(),
                api_keys: Vec::new(),
            },
            ListedTenant::Full(t) => *t,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTenant {
    #[serde(default)]
    status: Status,
    /// May be empty for a tenant known by its API keys alone.
    #[serde(default)]
    providers: Vec<String>,
    plan: Option<String>,
    namespace: Option<String>,
    /// Boxed: most tenants have none, and 10,000 tenants are read into one list.
    limits: Option<Box<RawLimits>>,
    /// Overrides the plan's `enforcement`.
    enforcement: Option<Enforcement>,
    /// Replaces the plan's `models`.
    models: Option<Vec<String>>,
    /// Ids of provider objects the tenant may use though the gateway never saw them created.
    #[serde(default)]
    object_prefixes: Vec<String>,
    /// The tenant's own credential per upstream (`upstreams`), from the environment.
    #[serde(default)]
    credentials: ObjectMap<RawCredential>,
    /// Static, not secret headers for the upstream; the client's copies are removed.
    #[serde(default)]
    upstream_headers: ObjectMap<String>,
    /// The digests of the tenant's API keys.
    #[serde(default)]
    api_keys: Vec<RawApiKey>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDefaultTenant {
    providers: Vec<String>,
    plan: Option<String>,
    #[serde(default = "default_tenant_namespace")]
    namespace: String,
    #[serde(default = "default_max_default_tenants")]
    max_tenants: u64,
}

fn default_tenant_namespace() -> String {
    "{provider}.{tenant}".into()
}
fn default_max_default_tenants() -> u64 {
    1000
}

// === The compiled configuration ===

/// Where a request's token is read from: a header, with an optional prefix such as `Bearer `.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSource {
    /// Lower-case header name.
    pub header: String,
    pub prefix: Option<String>,
}

/// Where a provider's keys are fetched from, through an Envoy cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteJwks {
    /// Index into [`Config::providers`].
    pub provider: usize,
    pub cluster: String,
    pub authority: String,
    pub path: String,
    pub refresh_s: u64,
    pub timeout_ms: u64,
    /// How long after the last good fetch the keys may still be used.
    pub max_stale_s: u64,
}

/// Per-tenant Envoy stats (an addition to the contract).
#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct StatsRules {
    /// At most this many tenants get series of their own; the others share `_other`.
    pub max_tenant_series: usize,
}

impl Default for StatsRules {
    fn default() -> Self {
        StatsRules {
            max_tenant_series: 100,
        }
    }
}

/// `records`: where the filter writes its per-request records besides Envoy's filter state.
#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct RecordRules {
    /// `records.log_line`: each record as one JSON line in the Envoy log too. Audit lines are
    /// written whatever it says.
    pub log_line: bool,
    /// `records.filter_state`: the record's fields set as Envoy filter state (all by default).
    pub filter_state: StateFields,
}

impl Default for RecordRules {
    fn default() -> Self {
        RecordRules {
            log_line: true,
            filter_state: StateFields::ALL,
        }
    }
}

/// The validated configuration of one filter instance.
pub struct Config {
    /// SHA-256 of the document (of its canonical JSON text when it came as a Struct, whose
    /// map order Envoy does not fix): names the configuration in the audit chain.
    pub document_sha256: [u8; 32],
    pub providers: Vec<Provider>,
    pub remote_jwks: Vec<RemoteJwks>,
    pub identity: IdentityRules,
    pub token_sources: Vec<TokenSource>,
    pub tenant_header: Option<String>,
    pub strip_token: bool,
    pub token_cache_size: usize,
    pub tenants: Tenants,
    pub global_rate_limit: Option<GlobalRateLimit>,
    pub routing: Option<Routing>,
    pub pricing: Pricing,
    pub bypass_paths: HashSet<String>,
    pub vector_stores: VectorStores,
    pub usage: UsageRules,
    pub stats: StatsRules,
    /// `records`: whether the record goes to the Envoy log as well as to filter state.
    pub records: RecordRules,
    pub isolation: IsolationRules,
    /// `tenants.<id>.object_prefixes`, for the tenants that have some.
    pub object_prefixes: ObjectMap<Vec<String>>,
    /// `upstreams`, the credentials for them and the tenants' upstream headers.
    pub upstreams: Upstreams,
    /// `identity.api_key_sources` and the tenants' `api_keys`.
    pub api_keys: ApiKeys,
    /// `audit.key_env`: the audit chain's HMAC key.
    pub audit_key: Option<Named>,
    /// `alerts.webhook`: where threshold crossings are POSTed (best effort).
    pub alerts_webhook: Option<Webhook>,
}

impl Config {
    /// The environment variables the policy names, in the order the shell loads them:
    /// `(field path, variable)`. Names only: values are the VM's.
    pub fn secret_variables(&self) -> Vec<(String, &str)> {
        let mut out: Vec<(String, &str)> = self
            .upstreams
            .variables()
            .into_iter()
            .map(|(path, env)| (format!("{path}.env"), env))
            .collect();
        if let Some(key) = &self.audit_key {
            out.push(("audit.key_env".to_string(), key.env()));
        }
        out
    }
}

// === Validation ===

/// Validates `raw`, read from `text`: the JSON document as given, or the canonical text of a
/// Struct.
fn compile(raw: RawConfig, text: &[u8]) -> Result<Config, ConfigError> {
    let document_sha256 = hmac_sha256::Hash::hash(text);
    // Without `isolation.key`, tags are keyed by the document itself: stable across workers
    // and restarts, new with every configuration change.
    let derived_key = {
        let mut hash = hmac_sha256::Hash::new();
        hash.update(b"tenant-guard isolation key\0");
        hash.update(text);
        hash.finalize()
    };
    if raw.providers.is_empty() && raw.identity.api_key_sources.is_empty() {
        return err(
            "providers",
            "at least one provider is required (or identity.api_key_sources)",
        );
    }
    let mut providers = Vec::new();
    let mut remote_jwks = Vec::new();
    for (index, (name, p)) in raw.providers.into_iter().enumerate() {
        let path = format!("providers.{name}");
        if p.issuer.is_empty() {
            return err(format!("{path}.issuer"), "must not be empty");
        }
        let audiences = compile_audiences(&format!("{path}.audiences"), p.audiences)?;
        let token_types = match &p.token_types {
            None => TokenTypes::default(),
            Some(list) => TokenTypes::from_list(list).or_else(|(i, why)| {
                err(
                    match i {
                        Some(i) => format!("{path}.token_types[{i}]"),
                        None => format!("{path}.token_types"),
                    },
                    why,
                )
            })?,
        };
        let inline_keys = match &p.jwks {
            Some(value) => Some(KeySet::from_value(value).map_err(|e| ConfigError {
                path: match e.path.as_str() {
                    "" => format!("{path}.jwks"),
                    key => format!("{path}.jwks.{key}"),
                },
                message: e.message,
            })?),
            None => None,
        };
        let remote = match p.remote_jwks {
            Some(r) => {
                remote_jwks.push(compile_remote(index, &path, r)?);
                RemoteKeys::Pending
            }
            None if inline_keys.is_none() => {
                return err(path, "needs `jwks` or `remote_jwks`");
            }
            None => RemoteKeys::NotConfigured,
        };
        providers.push(Provider {
            name,
            issuer: p.issuer,
            audiences,
            require_kid: p.require_kid,
            token_types,
            inline_keys,
            remote,
        });
    }

    let identity = raw.identity;
    let (rules, token_sources, tenant_header, key_sources) = compile_identity(&identity)?;
    let mut api_keys = ApiKeys::new(key_sources);

    let plans = &raw.plans;
    for (name, plan) in plans {
        check_limits(&format!("plans.{name}"), plan)?;
    }
    let provider_index = |path: &str, names: &[String]| -> Result<Vec<usize>, ConfigError> {
        if names.is_empty() {
            return err(path, "must name at least one provider");
        }
        names
            .iter()
            .enumerate()
            .map(|(i, n)| match providers.iter().position(|p| &p.name == n) {
                Some(idx) => Ok(idx),
                None => err(format!("{path}[{i}]"), format!("unknown provider \"{n}\"")),
            })
            .collect()
    };
    let plan_limits = |path: &str, plan: &Option<String>| -> Result<RawLimits, ConfigError> {
        match plan {
            None => Ok(RawLimits::default()),
            Some(name) => match plans.get(name) {
                Some(limits) => Ok(limits.clone()),
                None => err(path, format!("unknown plan \"{name}\"")),
            },
        }
    };

    // One copy of each plan's limits, for the tenants that take them as they are.
    let shared: ObjectMap<Rc<Limits>> = plans
        .iter()
        .map(|(name, plan)| (name.clone(), Rc::new(finish_limits(plan.clone()))))
        .collect();
    let mut tenants = Vec::with_capacity(raw.tenants.len());
    let mut object_prefixes = ObjectMap::default();
    let mut tenant_upstreams = Vec::new();
    for (id, t) in raw.tenants {
        let t = RawTenant::from(t);
        if !t.credentials.is_empty() || !t.upstream_headers.is_empty() {
            tenant_upstreams.push(RawTenantUpstream {
                tenant: id.clone(),
                credentials: t.credentials,
                headers: t.upstream_headers,
            });
        }
        let as_planned = t.limits.is_none() && t.enforcement.is_none() && t.models.is_none();
        let path = format!("tenants.{id}");
        let known_by_keys = !t.api_keys.is_empty();
        if known_by_keys && !api_keys.enabled() {
            return err(
                format!("{path}.api_keys"),
                "keys are never read: identity.api_key_sources is empty",
            );
        }
        api_keys.add(&id, &format!("{path}.api_keys"), t.api_keys)?;
        if let Some(i) = t.object_prefixes.iter().position(|p| p.len() < 4) {
            return err(
                format!("{path}.object_prefixes[{i}]"),
                "must be at least 4 characters (a prefix of ids, not a wildcard)",
            );
        }
        if !t.object_prefixes.is_empty() {
            object_prefixes.insert(id.clone(), t.object_prefixes.clone());
        }
        if !is_valid_tenant_id(&id) {
            return err(
                path,
                "tenant id must be 1-128 characters of A-Z a-z 0-9 . _ -",
            );
        }
        let namespace = t.namespace.unwrap_or_else(|| id.clone());
        if !is_valid_tenant_id(&namespace) {
            return err(
                format!("{path}.namespace"),
                "must be 1-128 characters of A-Z a-z 0-9 . _ -",
            );
        }
        let mut limits = plan_limits(&format!("{path}.plan"), &t.plan)?;
        if let Some(own) = t.limits {
            check_limits(&format!("{path}.limits"), &own)?;
            if own.models.is_some() {
                return err(
                    format!("{path}.limits.models"),
                    format!("a tenant's own models are {path}.models"),
                );
            }
            limits = RawLimits {
                requests: own.requests.or(limits.requests),
                tokens: own.tokens.or(limits.tokens),
                monthly_budget_usd: own.monthly_budget_usd.or(limits.monthly_budget_usd),
                enforcement: own.enforcement.or(limits.enforcement),
                output_cap: own.output_cap.or(limits.output_cap),
                min_output_tokens: own.min_output_tokens.or(limits.min_output_tokens),
                per_user: own.per_user.or(limits.per_user),
                alerts: own.alerts.or(limits.alerts),
                models: limits.models,
            };
        }
        limits.enforcement = t.enforcement.or(limits.enforcement);
        if let Some(own) = &t.models {
            models::check(&format!("{path}.models"), own)?;
        }
        let limits = match t.plan.as_deref().and_then(|p| shared.get(p)) {
            Some(shared) if as_planned => Rc::clone(shared),
            _ => Rc::new(with_tenant_models(
                finish_limits(limits),
                t.models.as_deref(),
            )),
        };
        let providers = if t.providers.is_empty() && known_by_keys {
            Vec::new()
        } else {
            provider_index(&format!("{path}.providers"), &t.providers)?
        };
        tenants.push(Tenant {
            providers,
            id,
            status: t.status,
            plan: t.plan,
            namespace,
            limits,
        });
    }
    check_listed_namespaces(&tenants)?;
    let default_tenant = match raw.default_tenant {
        Some(d) => {
            let indices = provider_index("default_tenant.providers", &d.providers)?;
            let default = DefaultTenant {
                providers: indices.into_iter().zip(d.providers).collect(),
                limits: Rc::new(finish_limits(plan_limits("default_tenant.plan", &d.plan)?)),
                plan: d.plan,
                namespace: parse_namespace_template(&d.namespace)?,
                max_tenants: match d.max_tenants {
                    n @ 1..=100_000 => usize::try_from(n).unwrap_or(usize::MAX),
                    _ => return err("default_tenant.max_tenants", "must be between 1 and 100000"),
                },
            };
            check_default_namespaces(&default, &tenants)?;
            Some(default)
        }
        None => None,
    };

    let global_rate_limit = raw.global_rate_limit.map(compile_global).transpose()?;
    let routing = raw.routing.map(compile_routing).transpose()?;
    let vector_stores = vector_store::compile(raw.vector_stores)?;
    if let Some(d) = default_tenant.as_ref().filter(|d| d.providers.len() > 1) {
        check_tenant_placeholders(d, routing.as_ref(), &vector_stores)?;
    }
    let pricing = compile_pricing(raw.pricing)?;

    if !(1024..=64 << 20).contains(&raw.usage.max_body_bytes) {
        return err("usage.max_body_bytes", "must be between 1024 and 67108864");
    }
    if raw.stats.max_tenant_series > 10_000 {
        return err("stats.max_tenant_series", "must be at most 10000");
    }

    let mut bypass_paths = HashSet::new();
    for (i, p) in raw.bypass_paths.into_iter().enumerate() {
        if !p.starts_with('/') || p.contains('?') {
            return err(
                format!("bypass_paths[{i}]"),
                "must be an exact path starting with '/' (no query)",
            );
        }
        bypass_paths.insert(p);
    }

    let isolation = compile_isolation(raw.isolation, derived_key)?;
    let mut reserved: Vec<&str> = rules
        .forward_claims
        .iter()
        .map(|(_, header)| header.as_str())
        .chain(tenant_header.as_deref())
        .collect();
    if let Some(header) = routing.as_ref().and_then(|r| r.namespace_header.as_deref()) {
        reserved.push(header);
    }
    let audit_key = raw
        .audit
        .and_then(|a| a.key_env)
        .map(|env| Named::new("audit.key_env", env, MIN_AUDIT_KEY_BYTES))
        .transpose()?;
    let alerts_webhook = raw.alerts.map(compile_alerts).transpose()?.flatten();
    let upstreams = upstream::compile(
        raw.upstreams,
        raw.default_credentials,
        tenant_upstreams,
        &reserved,
    )?;

    Ok(Config {
        document_sha256,
        providers,
        remote_jwks,
        identity: rules,
        token_sources,
        tenant_header,
        strip_token: identity.strip_token,
        token_cache_size: identity.token_cache_size,
        tenants: Tenants::new(tenants, default_tenant),
        global_rate_limit,
        routing,
        pricing,
        bypass_paths,
        vector_stores,
        usage: raw.usage,
        stats: raw.stats,
        records: raw.records,
        isolation,
        object_prefixes,
        upstreams,
        api_keys,
        audit_key,
        alerts_webhook,
    })
}

/// A provider must say which audiences it accepts: a token minted for another service of
/// the same IdP must not pass by default.
fn compile_audiences(path: &str, raw: Option<RawAudiences>) -> Result<Audiences, ConfigError> {
    match raw {
        None => err(
            path,
            "required: a list of accepted audiences, or \"any\" to accept every audience",
        ),
        Some(RawAudiences::Word(word)) if word == "any" => Ok(Audiences::Any),
        Some(RawAudiences::Word(word)) => err(
            path,
            format!(
                "must be a list of audiences or \"any\", not \"{}\"",
                word.escape_debug()
            ),
        ),
        Some(RawAudiences::List(list)) if list.is_empty() => err(
            path,
            "must name at least one audience (or say \"any\" to accept every audience)",
        ),
        Some(RawAudiences::List(list)) if list.iter().any(String::is_empty) => {
            err(path, "must not contain empty strings")
        }
        Some(RawAudiences::List(list)) => Ok(Audiences::OneOf(list)),
    }
}

/// With two or more default providers, the same tenant id may come from each: a template that
/// places tenants by `{tenant}` would put them in one place. Such templates must use
/// `{namespace}`, which holds the provider.
fn check_tenant_placeholders(
    d: &DefaultTenant,
    routing: Option<&Routing>,
    stores: &VectorStores,
) -> Result<(), ConfigError> {
    let mut templates: Vec<(String, &str)> = Vec::new();
    if let Some(r) = routing {
        if let Some(t) = &r.path_prefix {
            templates.push(("routing.path_prefix".into(), t));
        }
        if let Some(t) = &r.authority {
            templates.push(("routing.authority".into(), t));
        }
    }
    templates.extend(stores.templates());
    match templates.iter().find(|(_, t)| t.contains("{tenant}")) {
        Some((path, _)) => err(
            path.as_str(),
            format!(
                "uses {{tenant}} while default_tenant has {} providers, whose tenants may share \
                 ids: use {{namespace}}",
                d.providers.len()
            ),
        ),
        None => Ok(()),
    }
}

fn compile_remote(
    provider: usize,
    path: &str,
    r: RawRemoteJwks,
) -> Result<RemoteJwks, ConfigError> {
    let path = format!("{path}.remote_jwks");
    if r.cluster.is_empty() {
        return err(format!("{path}.cluster"), "must not be empty");
    }
    if !r.path.starts_with('/') {
        return err(format!("{path}.path"), "must start with '/'");
    }
    if r.refresh_s == 0 {
        return err(format!("{path}.refresh_s"), "must be at least 1");
    }
    if r.timeout_ms == 0 {
        return err(
            format!("{path}.timeout_ms"),
            "must be at least 1 (0 would mean no timeout)",
        );
    }
    // A refresh and its timeout must fit before the keys go stale.
    let one_refresh = r.refresh_s.saturating_add(r.timeout_ms.div_ceil(1000));
    let max_stale_s = match r.max_stale_s {
        None => DEFAULT_MAX_STALE_S.max(one_refresh.saturating_add(r.refresh_s)),
        Some(max) if max < one_refresh => {
            return err(
                format!("{path}.max_stale_s"),
                format!(
                    "must be at least refresh_s plus the fetch timeout ({one_refresh} s), so a \
                     refresh can complete before the keys go stale"
                ),
            )
        }
        Some(max) => max,
    };
    Ok(RemoteJwks {
        provider,
        authority: r.authority.unwrap_or_else(|| r.cluster.clone()),
        cluster: r.cluster,
        path: r.path,
        refresh_s: r.refresh_s,
        timeout_ms: r.timeout_ms,
        max_stale_s,
    })
}

/// The rules, the token sources (`identity.api_key_sources` appended, a source already there
/// shared), the tenant header, and which token sources are API key sources.
type CompiledIdentity = (IdentityRules, Vec<TokenSource>, Option<String>, Vec<usize>);

fn compile_identity(raw: &RawIdentity) -> Result<CompiledIdentity, ConfigError> {
    if raw.token_sources.is_empty() {
        return err(
            "identity.token_sources",
            "at least one token source is required",
        );
    }
    let mut token_sources = Vec::new();
    for (i, s) in raw.token_sources.iter().enumerate() {
        let header = header_name(&format!("identity.token_sources[{i}].header"), &s.header)?;
        token_sources.push(TokenSource {
            header,
            prefix: s.prefix.clone().filter(|p| !p.is_empty()),
        });
    }
    let mut key_sources = Vec::new();
    for (i, s) in raw.api_key_sources.iter().enumerate() {
        let source = TokenSource {
            header: header_name(&format!("identity.api_key_sources[{i}].header"), &s.header)?,
            prefix: s.prefix.clone().filter(|p| !p.is_empty()),
        };
        let index = match token_sources.iter().position(|t| *t == source) {
            Some(index) => index,
            None => {
                token_sources.push(source);
                token_sources.len() - 1
            }
        };
        if !key_sources.contains(&index) {
            key_sources.push(index);
        }
    }
    let claim = |path: &str, value: &str| {
        ClaimPath::parse(value).ok_or_else(|| ConfigError {
            path: path.into(),
            message: format!("\"{value}\" is not a claim name or dotted path"),
        })
    };
    let tenant_claim = claim("identity.tenant_claim", &raw.tenant_claim)?;
    let user_claim = match &raw.user_claim {
        Some(c) => Some(claim("identity.user_claim", c)?),
        None => None,
    };
    let tenant_header = match &raw.tenant_header {
        Some(h) => Some(header_name("identity.tenant_header", h)?),
        None => None,
    };
    let mut forward_claims = Vec::new();
    for (name, header) in &raw.forward_claims {
        let path = format!("identity.forward_claims.{name}");
        let header = header_name(&path, header)?;
        if tenant_header.as_deref() == Some(header.as_str())
            || token_sources.iter().any(|s| s.header == header)
        {
            return err(
                path,
                format!("header \"{header}\" is already used by the filter"),
            );
        }
        forward_claims.push((claim(&path, name)?, header));
    }
    if raw.clock_skew_s > 3600 {
        return err("identity.clock_skew_s", "must be at most 3600");
    }
    if !(256..=65536).contains(&raw.max_token_bytes) {
        return err("identity.max_token_bytes", "must be between 256 and 65536");
    }
    if raw.token_cache_size > 100_000 {
        return err("identity.token_cache_size", "must be at most 100000");
    }
    let rules = IdentityRules {
        tenant_claim,
        user_claim,
        clock_skew_s: raw.clock_skew_s,
        forward_claims,
        max_token_bytes: raw.max_token_bytes,
    };
    Ok((rules, token_sources, tenant_header, key_sources))
}

mod document;
mod position;

#[cfg(test)]
mod tests;
