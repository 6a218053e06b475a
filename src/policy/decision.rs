//! The request's plan, as data: from the facts of a request's headers to either the header
//! edits of an admission or a denial. The shell executes whatever comes back.

use std::rc::Rc;

use crate::policy::api_key::{self, ApiKey, Found};
use crate::policy::config::{Config, TokenSource};
use crate::policy::denial::Reason;
use crate::policy::identity::{self, VerifiedToken};
use crate::policy::isolation::objects::{self, ObjectPlan, Owners};
use crate::policy::isolation::prompt_cache::{self, Api};
use crate::policy::isolation::{PromptCache, ProviderObjects};
use crate::policy::namespace::{self, PathRefusal};
use crate::policy::plan::Limits;
use crate::policy::secret::Secret;
use crate::policy::tenant::BoundTenant;
use crate::policy::token_cache::TokenCache;
use crate::policy::vector_store::{self, BodyPlan, ResponsePlan, VectorRoute};

/// The token a request carries, as found in its headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    Missing,
    /// Found in the token source with this index.
    Present {
        source: usize,
        token: String,
    },
    /// A token source header is there but its bytes are not UTF-8.
    Unreadable,
    /// An API key, and the token sources it was found in (`identity.api_key_sources`).
    ApiKey {
        key: String,
        sources: Vec<usize>,
    },
    /// A credential header sent twice, or two headers with different credentials.
    Conflict(&'static str),
}

/// How the request's caller was identified (records' `auth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    Jwt,
    ApiKey,
}

impl Auth {
    pub fn as_str(self) -> &'static str {
        match self {
            Auth::Jwt => "jwt",
            Auth::ApiKey => "api_key",
        }
    }
}

/// Reads the request's credential. `header(name)`: a header's first line; `lines(name)`: all
/// of its lines. Without `identity.api_key_sources` the first token source present counts
/// ([`find_credential`]); with them, every source is read (see `policy::api_key`).
pub fn read_credential(
    config: &Config,
    header: impl FnMut(&str) -> Option<Vec<u8>>,
    lines: impl FnMut(&str) -> Vec<Vec<u8>>,
) -> Credential {
    if !config.api_keys.enabled() {
        return find_credential(&config.token_sources, header);
    }
    let sources = config
        .token_sources
        .iter()
        .map(|s| (s.header.as_str(), s.prefix.as_deref()));
    match config.api_keys.read(sources, header, lines) {
        Found::Missing => Credential::Missing,
        Found::Unreadable => Credential::Unreadable,
        Found::Token { source, token } => Credential::Present { source, token },
        Found::Key { key, sources } => Credential::ApiKey { key, sources },
        Found::Conflict(detail) => Credential::Conflict(detail),
    }
}

/// Reads the token from the first token source whose header is present and carries the
/// source's prefix (compared case-insensitively, as `Bearer` is in RFC 6750).
pub fn find_credential(
    sources: &[TokenSource],
    mut header: impl FnMut(&str) -> Option<Vec<u8>>,
) -> Credential {
    for (index, source) in sources.iter().enumerate() {
        let Some(value) = header(&source.header) else {
            continue;
        };
        let Ok(value) = String::from_utf8(value) else {
            return Credential::Unreadable;
        };
        let token = match &source.prefix {
            Some(prefix) => match value.get(..prefix.len()) {
                Some(head) if head.eq_ignore_ascii_case(prefix) => value.get(prefix.len()..),
                _ => None,
            },
            None => Some(value.as_str()),
        };
        if let Some(token) = token.map(str::trim).filter(|t| !t.is_empty()) {
            return Credential::Present {
                source: index,
                token: token.to_string(),
            };
        }
    }
    Credential::Missing
}

/// What the filter knows about a request when its headers arrive.
pub struct RequestFacts<'a> {
    pub method: &'a str,
    /// `:path` as received, query string included.
    pub path: &'a [u8],
    pub credential: Credential,
    /// The client-sent value of `identity.tenant_header`, if any (repeated lines combined with
    /// `, `, so only one line equal to the verified tenant passes).
    pub tenant_header: Option<&'a [u8]>,
    /// `:authority` as received; read only when some upstream is told by its authority
    /// ([`crate::policy::upstream::Upstreams::by_authority`]).
    pub authority: Option<&'a [u8]>,
    pub now: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderEdit {
    /// Replace every copy of the header with this one value.
    Set(String, String),
    /// The same with a secret value (an upstream credential; `Debug` does not print it).
    SetSecret(String, Secret),
    Remove(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admission {
    pub tenant: String,
    /// Whose counters and objects these are: the tenant id for a listed tenant, `<provider>/<id>`
    /// for one admitted through `default_tenant` (two providers' default tenants never share).
    pub quota_id: String,
    pub user: Option<String>,
    /// The identity provider that signed the token; `None` for an API key.
    pub provider: Option<String>,
    pub plan: Option<String>,
    pub auth: Auth,
    /// The API key's id, for a request that came with one.
    pub key_id: Option<String>,
    /// The tenant's effective quota windows (empty: no quotas).
    pub limits: Rc<Limits>,
    /// The tenant is listed in the configuration (else admitted through `default_tenant`).
    pub listed: bool,
    /// Includes `:path` / `:authority` when the request was placed in the tenant's namespace.
    pub header_edits: Vec<HeaderEdit>,
    /// The new `:path`, when it differs from the one received.
    pub path_sent: Option<String>,
    /// `:path` or `:authority` changed: Envoy must select the route again.
    pub rerouted: bool,
    /// A vector-store body to confine before the request may go on.
    pub body_plan: Option<BodyPlan>,
    /// A vector-store response to filter before the client may see it.
    pub response_plan: Option<ResponsePlan>,
    /// Provider-side objects: what the request does to them and whose they may be.
    pub objects: Option<ObjectPlan>,
    /// The API whose prompt-cache key and user identifiers get scoped to the tenant.
    pub cache_scope: Option<Api>,
    /// A shared HTTP cache keys on host and path, and neither names the tenant: answers must
    /// be marked private.
    pub private_cache: bool,
    /// The fingerprint of the upstream credential the request goes with
    /// (`acme/openai#1a2b3c4d`), when it goes to an upstream with one.
    pub credential: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    pub reason: Reason,
    /// For logs only: never sent to the client, never contains the token.
    pub detail: String,
    pub tenant: Option<String>,
    pub user: Option<String>,
    pub provider: Option<String>,
    /// How the caller was identified, when that got so far.
    pub auth: Option<Auth>,
    pub key_id: Option<String>,
    /// The first 8 hex digits of a refused API key's SHA-256 (never the key).
    pub key_digest: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Bypass,
    Admit(Box<Admission>),
    Deny(Denial),
}

/// A denial that knows nothing of the tenant (token problems).
pub fn deny(reason: Reason, detail: impl Into<String>) -> Decision {
    Decision::Deny(Denial {
        reason,
        detail: detail.into(),
        tenant: None,
        user: None,
        provider: None,
        auth: None,
        key_id: None,
        key_digest: None,
    })
}

/// The denial of a refused API key: audited by its digest's first 8 hex digits, with its
/// tenant, user and id when it is a key of the policy.
fn key_denial(refusal: api_key::Refusal<'_>) -> Decision {
    Decision::Deny(Denial {
        reason: refusal.reason,
        detail: refusal.detail.to_string(),
        tenant: refusal.key.map(|k| k.tenant.clone()),
        user: refusal.key.map(|k| k.user().to_string()),
        provider: None,
        auth: Some(Auth::ApiKey),
        key_id: refusal.key.map(|k| k.id.clone()),
        key_digest: Some(refusal.digest),
    })
}

/// Who a request is, once its credential holds: a verified token, or a key of the policy.
struct Caller<'a> {
    tenant: &'a str,
    user: Option<&'a str>,
    /// The provider that signed the token; `None` for an API key.
    provider: Option<usize>,
    /// Claims to forward (an API key has none).
    forwarded: &'a [(String, String)],
    /// The token sources the credential came in.
    sources: &'a [usize],
    /// The API key's id, for a request that came with one.
    key_id: Option<&'a str>,
}

impl<'a> Caller<'a> {
    fn token(verified: &'a VerifiedToken, sources: &'a [usize]) -> Caller<'a> {
        Caller {
            tenant: &verified.tenant,
            user: verified.user.as_deref(),
            provider: Some(verified.provider),
            forwarded: &verified.forwarded,
            sources,
            key_id: None,
        }
    }

    fn key(key: &'a ApiKey, sources: &'a [usize]) -> Caller<'a> {
        Caller {
            tenant: &key.tenant,
            user: Some(key.user()),
            provider: None,
            forwarded: &[],
            sources,
            key_id: Some(&key.id),
        }
    }

    fn auth(&self) -> Auth {
        match self.key_id {
            Some(_) => Auth::ApiKey,
            None => Auth::Jwt,
        }
    }
}

/// Decides a request from its headers. `cache` holds tokens this worker already verified;
/// `owners` who created which provider-side object.
pub fn decide(
    config: &Config,
    cache: &mut TokenCache,
    owners: &dyn Owners,
    facts: RequestFacts<'_>,
) -> Decision {
    let path_only = facts.path.split(|b| *b == b'?').next().unwrap_or_default();
    let is_bypass = std::str::from_utf8(path_only)
        .map(|p| config.bypass_paths.contains(p))
        .unwrap_or(false);
    if is_bypass {
        return Decision::Bypass;
    }
    let (source, token) = match &facts.credential {
        Credential::Missing => return deny(Reason::MissingToken, "no token in the request"),
        Credential::Unreadable => return deny(Reason::InvalidToken, "token is not valid UTF-8"),
        Credential::Conflict(detail) => return deny(Reason::InvalidApiKey, *detail),
        Credential::ApiKey { key, sources } => {
            return match config.api_keys.check(key, facts.now) {
                Ok(found) => admit(config, &Caller::key(found, sources), owners, &facts),
                Err(refusal) => key_denial(refusal),
            };
        }
        Credential::Present { source, token } => (*source, token.as_str()),
    };
    let sources = [source];
    if let Some(hit) = cache.get(token, facts.now) {
        return admit(config, &Caller::token(hit, &sources), owners, &facts);
    }
    match identity::verify(token, &config.providers, &config.identity, facts.now) {
        Ok(verified) => {
            let decision = admit(config, &Caller::token(&verified, &sources), owners, &facts);
            cache.insert(token, verified);
            decision
        }
        Err(rejection) => deny(rejection.reason, rejection.detail),
    }
}

fn admit(
    config: &Config,
    caller: &Caller<'_>,
    owners: &dyn Owners,
    facts: &RequestFacts<'_>,
) -> Decision {
    let provider = caller
        .provider
        .and_then(|p| config.providers.get(p))
        .map(|p| p.name.clone());
    let denial = |reason, detail: String| {
        Decision::Deny(Denial {
            reason,
            detail,
            tenant: Some(caller.tenant.to_string()),
            user: caller.user.map(str::to_string),
            provider: provider.clone(),
            auth: Some(caller.auth()),
            key_id: caller.key_id.map(str::to_string),
            key_digest: None,
        })
    };
    let bound = match caller.provider {
        Some(p) => config.tenants.bind(caller.tenant, p),
        None => config.tenants.bind_key_owner(caller.tenant),
    };
    let bound = match bound {
        Ok(bound) => bound,
        Err(unbound) => {
            let detail = match unbound.reason {
                Reason::TenantProviderMismatch => format!(
                    "provider {} may not vouch for this tenant",
                    provider.as_deref().unwrap_or_default()
                ),
                _ => unbound.detail.to_string(),
            };
            return denial(unbound.reason, detail);
        }
    };

    let mut header_edits = Vec::new();
    if let Some(header) = &config.tenant_header {
        if let Some(sent) = facts.tenant_header {
            if sent != bound.id.as_bytes() {
                return denial(
                    Reason::TenantHeaderMismatch,
                    format!("client sent {header} for another tenant"),
                );
            }
        }
        header_edits.push(HeaderEdit::Set(header.clone(), bound.id.to_string()));
    }
    for (_, header) in &config.identity.forward_claims {
        match caller.forwarded.iter().find(|(h, _)| h == header) {
            Some((_, value)) => header_edits.push(HeaderEdit::Set(header.clone(), value.clone())),
            None => header_edits.push(HeaderEdit::Remove(header.clone())),
        }
    }
    // An API key never goes upstream; a token does unless `strip_token`.
    if config.strip_token || caller.key_id.is_some() {
        for s in caller
            .sources
            .iter()
            .filter_map(|&i| config.token_sources.get(i))
        {
            header_edits.push(HeaderEdit::Remove(s.header.clone()));
        }
    }
    let place = match placement(config, &bound, facts) {
        Ok(place) => place,
        Err(refusal) => return denial(refusal.reason, refusal.detail),
    };
    header_edits.extend(place.edits);
    let listed = bound.default_provider.is_none();
    let quota_id = bound.quota_id().into_owned();
    let isolation = &config.isolation;
    let mut object_plan = None;
    let mut cache_scope = None;
    if isolation.provider_objects == ProviderObjects::Owner
        || isolation.prompt_cache == PromptCache::Tenant
    {
        let path = match namespace::normalize(facts.path) {
            Ok(path) => path.path,
            Err(refusal) => return denial(refusal.reason, refusal.detail),
        };
        if isolation.provider_objects == ProviderObjects::Owner {
            let plan = ObjectPlan::new(
                objects::route(facts.method, &path),
                &quota_id,
                config
                    .object_prefixes
                    .get(bound.id)
                    .cloned()
                    .unwrap_or_default(),
            );
            if let Some(id) = &plan.route.named {
                if let Err(refusal) = plan.allows(id, owners) {
                    return denial(refusal.reason, refusal.detail);
                }
            }
            object_plan = Some(plan);
        }
        if isolation.prompt_cache == PromptCache::Tenant {
            cache_scope = prompt_cache::api(facts.method, &path);
        }
    }
    let token_header = caller
        .sources
        .first()
        .and_then(|&i| config.token_sources.get(i))
        .map(|s| s.header.as_str());
    let credential = match upstream_edits(config, &bound, token_header, facts, &mut header_edits) {
        Ok(credential) => credential,
        Err(refusal) => return denial(refusal.reason, refusal.detail),
    };
    let private_cache = !config.routing.as_ref().is_some_and(|r| {
        let names_tenant = |t: &Option<String>| {
            t.as_deref()
                .is_some_and(|t| t.contains("{tenant}") || t.contains("{namespace}"))
        };
        names_tenant(&r.path_prefix) || names_tenant(&r.authority)
    });
    Decision::Admit(Box::new(Admission {
        quota_id,
        tenant: bound.id.to_string(),
        user: caller.user.map(str::to_string),
        provider,
        auth: caller.auth(),
        key_id: caller.key_id.map(str::to_string),
        plan: bound.plan.map(str::to_string),
        limits: bound.limits.clone(),
        listed,
        header_edits,
        path_sent: place.path,
        rerouted: place.rerouted,
        body_plan: place.body_plan,
        response_plan: place.response_plan,
        objects: object_plan,
        cache_scope,
        private_cache,
        credential,
    }))
}

/// A tenant's upstream headers and, for a request to one of the policy's upstreams, its
/// credential: the client's credential headers go (and the header that carried the tenant's
/// own token, when a credential replaces it), then the tenant's credential or the platform's
/// is set. Returns the credential's fingerprint. Nothing to do, and nothing paid, when the
/// policy has no upstreams and no upstream headers.
fn upstream_edits(
    config: &Config,
    tenant: &BoundTenant<'_>,
    token_header: Option<&str>,
    facts: &RequestFacts<'_>,
    edits: &mut Vec<HeaderEdit>,
) -> Result<Option<String>, PathRefusal> {
    let upstreams = &config.upstreams;
    if upstreams.is_empty() {
        return Ok(None);
    }
    // Credentials and upstream headers are listed tenants'; a default tenant has the
    // platform's only.
    let listed = tenant.default_provider.is_none().then_some(tenant.id);
    let (names, own) = upstreams.tenant_headers(listed);
    for name in names.iter().filter(|n| !own.iter().any(|(o, _)| o == *n)) {
        edits.push(HeaderEdit::Remove(name.clone()));
    }
    for (name, value) in own {
        edits.push(HeaderEdit::Set(name.clone(), value.clone()));
    }
    if !upstreams.has_upstreams() {
        return Ok(None);
    }
    let path = namespace::normalize(facts.path)?;
    let authority = facts.authority.and_then(|a| std::str::from_utf8(a).ok());
    let Some(upstream) = upstreams.route(&path.path, authority) else {
        return Ok(None);
    };
    let plan = upstreams
        .plan(upstream, listed)
        .map_err(|detail| PathRefusal::new(Reason::NoUpstreamCredential, detail))?;
    for header in plan.remove {
        edits.push(HeaderEdit::Remove(header.clone()));
    }
    if let Some((header, value)) = plan.set {
        if let Some(token_header) = token_header.filter(|t| *t != header) {
            edits.push(HeaderEdit::Remove(token_header.to_string()));
        }
        edits.push(HeaderEdit::SetSecret(header.to_string(), value.clone()));
    }
    Ok(plan.fingerprint.map(str::to_string))
}

/// Where an admitted request goes: its tenant's namespace (`routing`) or a confined
/// vector-store operation (`vector_stores`).
#[derive(Default)]
struct Place {
    edits: Vec<HeaderEdit>,
    path: Option<String>,
    rerouted: bool,
    body_plan: Option<BodyPlan>,
    response_plan: Option<ResponsePlan>,
}

fn placement(
    config: &Config,
    tenant: &BoundTenant<'_>,
    facts: &RequestFacts<'_>,
) -> Result<Place, PathRefusal> {
    let routing = config.routing.as_ref();
    let mut place = Place::default();
    if routing.is_none() && config.vector_stores.is_empty() {
        // Nothing to confine: the path goes on as received.
        return Ok(place);
    }
    let path = namespace::normalize(facts.path)?;
    let route = vector_store::route(
        &config.vector_stores,
        facts.method,
        &path,
        tenant.id,
        &tenant.namespace,
    );
    let target = match route {
        VectorRoute::Deny(refusal) => return Err(refusal),
        VectorRoute::Forward { path } => path,
        VectorRoute::RewriteBody { path, plan } => {
            place.body_plan = Some(plan);
            path
        }
        VectorRoute::FilterResponse { path, plan } => {
            place.response_plan = Some(plan);
            path
        }
        VectorRoute::NotVectorStore => match routing {
            None => path.target(),
            Some(routing) => namespace::place(routing, tenant.id, &tenant.namespace, &path)?
                .path
                .unwrap_or_else(|| path.target()),
        },
    };
    // Every request, vector-store ones too, gets the tenant's authority: routes that pick a
    // per-tenant backend by host never see the client's.
    if let Some(template) = routing.and_then(|r| r.authority.as_deref()) {
        let authority = namespace::expand(template, tenant.id, &tenant.namespace);
        place
            .edits
            .push(HeaderEdit::Set(":authority".into(), authority));
        place.rerouted = true;
    }
    if target.as_bytes() != facts.path {
        place
            .edits
            .push(HeaderEdit::Set(":path".into(), target.clone()));
        place.path = Some(target);
        place.rerouted = true;
    }
    if let Some(header) = routing.and_then(|r| r.namespace_header.as_ref()) {
        place.edits.push(HeaderEdit::Set(
            header.clone(),
            tenant.namespace.to_string(),
        ));
    }
    Ok(place)
}

#[cfg(test)]
mod tests;
