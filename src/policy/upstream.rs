//! Per-tenant upstream credentials: which requests go to which upstream (`upstreams`), the
//! credential each tenant has for it (`tenants.<id>.credentials`) or the platform's
//! (`default_credentials`), and a tenant's static upstream headers
//! (`tenants.<id>.upstream_headers`).
//!
//! The policy names an environment variable, never a value: the shell reads the Wasm VM's
//! environment at configure time and hands the values to [`Upstreams::load`]. A value is held
//! as a [`Secret`] and named elsewhere by its fingerprint, `acme/openai#1a2b3c4d` (the owner,
//! the upstream, and the first 8 hex digits of the value's SHA-256).
//!
//! For a request to an upstream: every header a credential for that upstream sets, and the
//! headers LLM providers take keys in ([`CREDENTIAL_HEADERS`]), are removed; then the tenant's
//! credential (or else the platform's) is set. A tenant without one, where some credential for
//! the upstream exists, is refused: a request never borrows another tenant's key.

use std::collections::HashMap;

use serde::Deserialize;

use crate::policy::config_error::{err, header_name, ConfigError};
use crate::policy::object_map::ObjectMap;
use crate::policy::secret::{self, Secret};
use crate::policy::sorted;
use crate::policy::tenant::is_valid_tenant_id;

/// Headers LLM providers read keys from (OpenAI and most: `authorization`; Anthropic:
/// `x-api-key`; Azure OpenAI: `api-key`; Google: `x-goog-api-key`). A client's copies never
/// reach an upstream of the policy.
pub const CREDENTIAL_HEADERS: [&str; 4] =
    ["authorization", "x-api-key", "api-key", "x-goog-api-key"];

/// The owner part of the platform's credentials' fingerprints (no tenant id has parentheses).
pub const DEFAULT_OWNER: &str = "(default)";

/// Headers the upstream headers of a tenant may not set: the request's framing and routing.
const FRAMING_HEADERS: [&str; 8] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "te",
    "upgrade",
    "keep-alive",
    "proxy-connection",
];

/// `upstreams.<name>`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    #[serde(default)]
    path_prefixes: Vec<String>,
    #[serde(default)]
    authorities: Vec<String>,
}

/// `tenants.<id>.credentials.<upstream>` and `default_credentials.<upstream>`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCredential {
    header: String,
    prefix: Option<String>,
    env: String,
}

/// One tenant's part: `credentials` and `upstream_headers`.
pub struct RawTenantUpstream {
    pub tenant: String,
    pub credentials: ObjectMap<RawCredential>,
    pub headers: ObjectMap<String>,
}

/// An upstream of the policy.
#[derive(Debug)]
struct Upstream {
    name: String,
    /// Lower case, without a trailing `/`; a request path matches at a segment boundary.
    path_prefixes: Vec<String>,
    /// Lower case.
    authorities: Vec<String>,
    /// Removed from every request to this upstream: [`CREDENTIAL_HEADERS`] and the header of
    /// every credential for it.
    strip: Vec<String>,
    /// Some credential (a tenant's or the platform's) exists for it: requests need one.
    required: bool,
}

/// A credential as the policy names it, and its value once loaded.
#[derive(Debug)]
struct Credential {
    header: String,
    prefix: String,
    env: String,
    /// Where the policy names it, for errors: `tenants.acme.credentials.openai`.
    path: String,
    /// `acme/openai`: the fingerprint without its digest.
    name: String,
    loaded: Option<Loaded>,
}

#[derive(Debug)]
struct Loaded {
    /// The header's value: the prefix and the variable's value.
    value: Secret,
    /// `acme/openai#1a2b3c4d`.
    fingerprint: String,
}

/// The compiled `upstreams`, credentials and upstream headers.
#[derive(Debug, Default)]
pub struct Upstreams {
    upstreams: Vec<Upstream>,
    /// A listed tenant's credentials, by upstream index.
    tenants: ObjectMap<Vec<Option<Credential>>>,
    /// The platform's credentials, by upstream index.
    default: Vec<Option<Credential>>,
    /// `tenants.<id>.upstream_headers`.
    headers: ObjectMap<Vec<(String, String)>>,
    /// Every header some tenant's `upstream_headers` set: the client's copies are removed from
    /// every admitted request.
    header_names: Vec<String>,
    /// Some upstream is told by its authority.
    by_authority: bool,
}

/// What a request to an upstream gets.
#[derive(Debug, PartialEq, Eq)]
pub struct Plan<'a> {
    /// Headers removed before the credential is set.
    pub remove: &'a [String],
    /// The credential's header and value.
    pub set: Option<(&'a str, &'a Secret)>,
    /// The credential's fingerprint, for records.
    pub fingerprint: Option<&'a str>,
}

/// Compiles the upstreams and every credential and upstream header naming them. `reserved`:
/// headers the filter sets itself (tenant header, forwarded claims, namespace header), which
/// neither a credential nor an upstream header may take.
pub fn compile(
    raw: ObjectMap<RawUpstream>,
    default: ObjectMap<RawCredential>,
    tenants: Vec<RawTenantUpstream>,
    reserved: &[&str],
) -> Result<Upstreams, ConfigError> {
    let mut upstreams = Vec::with_capacity(raw.len());
    for (name, u) in raw {
        upstreams.push(compile_upstream(name, u)?);
    }
    check_overlaps(&upstreams)?;
    let index = |path: &str, name: &str| -> Result<usize, ConfigError> {
        match upstreams.iter().position(|u| u.name == name) {
            Some(i) => Ok(i),
            None => err(path, format!("unknown upstream \"{name}\"")),
        }
    };
    let mut compiled = Upstreams {
        by_authority: upstreams.iter().any(|u| !u.authorities.is_empty()),
        ..Upstreams::default()
    };
    let mut envs: HashMap<String, String> = HashMap::new();
    let mut credential = |owner: &str, path: String, upstream: &str, c: RawCredential| {
        let header = header_name(&format!("{path}.header"), &c.header)?;
        if reserved.contains(&header.as_str()) {
            return err(
                format!("{path}.header"),
                format!("header \"{header}\" is already set by the filter"),
            );
        }
        if !secret::is_env_name(&c.env) {
            return err(
                format!("{path}.env"),
                "must be an environment variable name: A-Z a-z 0-9 _, not starting with a digit",
            );
        }
        let prefix = c.prefix.unwrap_or_default();
        if let Some(why) = secret::unusable(&prefix).filter(|_| !prefix.is_empty()) {
            return err(format!("{path}.prefix"), why);
        }
        // One variable serves one owner: a second tenant naming it would be served by the
        // first one's key.
        if let Some(other) = envs.get(&c.env).filter(|other| **other != owner) {
            return err(
                format!("{path}.env"),
                format!(
                    "environment variable {} also holds {}'s credential: one tenant's key never \
                     serves another tenant",
                    c.env,
                    if other == DEFAULT_OWNER {
                        "the platform"
                    } else {
                        other
                    }
                ),
            );
        }
        envs.insert(c.env.clone(), owner.to_string());
        Ok(Credential {
            header,
            prefix,
            env: c.env,
            name: format!("{owner}/{upstream}"),
            path,
            loaded: None,
        })
    };
    compiled.default = upstreams.iter().map(|_| None).collect();
    for (name, c) in default {
        let path = format!("default_credentials.{name}");
        let i = index(&path, &name)?;
        let c = credential(DEFAULT_OWNER, path, &name, c)?;
        if let Some(slot) = compiled.default.get_mut(i) {
            *slot = Some(c);
        }
    }
    let mut tenant_headers = Vec::new();
    for t in tenants {
        if !t.credentials.is_empty() {
            let mut slots: Vec<Option<Credential>> = upstreams.iter().map(|_| None).collect();
            for (name, c) in t.credentials {
                let path = format!("tenants.{}.credentials.{name}", t.tenant);
                let i = index(&path, &name)?;
                let c = credential(&t.tenant, path, &name, c)?;
                if let Some(slot) = slots.get_mut(i) {
                    *slot = Some(c);
                }
            }
            compiled.tenants.insert(t.tenant.clone(), slots);
        }
        if !t.headers.is_empty() {
            tenant_headers.push((t.tenant, t.headers));
        }
    }
    let credential_headers: Vec<&str> = compiled
        .default
        .iter()
        .chain(compiled.tenants.values().flatten())
        .flatten()
        .map(|c| c.header.as_str())
        .collect();
    for (tenant, raw_headers) in tenant_headers {
        let mut headers = Vec::with_capacity(raw_headers.len());
        for (name, value) in raw_headers {
            let path = format!("tenants.{tenant}.upstream_headers.{name}");
            let name = header_name(&path, &name)?;
            if CREDENTIAL_HEADERS.contains(&name.as_str())
                || credential_headers.contains(&name.as_str())
            {
                return err(
                    path,
                    "carries credentials: use credentials (values from the environment), not a \
                     value written in the policy",
                );
            }
            if reserved.contains(&name.as_str()) || FRAMING_HEADERS.contains(&name.as_str()) {
                return err(path, format!("header \"{name}\" cannot be set here"));
            }
            if value.len() > 1024 || secret::unusable(&value).is_some() {
                return err(path, "must be 1-1024 characters of printable ASCII");
            }
            if !compiled.header_names.contains(&name) {
                compiled.header_names.push(name.clone());
            }
            headers.push((name, value));
        }
        compiled.headers.insert(tenant, headers);
    }
    for (i, u) in upstreams.iter_mut().enumerate() {
        let credentials = compiled
            .tenants
            .values()
            .filter_map(|slots| slots.get(i)?.as_ref())
            .chain(compiled.default.get(i).and_then(Option::as_ref));
        for c in credentials {
            u.required = true;
            if !u.strip.contains(&c.header) {
                u.strip.push(c.header.clone());
            }
        }
    }
    compiled.upstreams = upstreams;
    Ok(compiled)
}

fn compile_upstream(name: String, raw: RawUpstream) -> Result<Upstream, ConfigError> {
    let path = format!("upstreams.{name}");
    if !is_valid_tenant_id(&name) {
        return err(
            path,
            "upstream name must be 1-128 characters of A-Z a-z 0-9 . _ -",
        );
    }
    if raw.path_prefixes.is_empty() && raw.authorities.is_empty() {
        return err(path, "needs path_prefixes, authorities, or both");
    }
    let mut path_prefixes = Vec::with_capacity(raw.path_prefixes.len());
    for (i, prefix) in raw.path_prefixes.iter().enumerate() {
        let trimmed = prefix.strip_suffix('/').unwrap_or(prefix);
        let segments_ok = trimmed
            .split('/')
            .skip(1)
            .all(|s| !s.is_empty() && s != "." && s != "..");
        if !prefix.starts_with('/') || !segments_ok || prefix.contains(['%', '?', '#', '\\', ';']) {
            return err(
                format!("{path}.path_prefixes[{i}]"),
                "must be '/' then non-empty segments (no '.', '..', '%', '?', '#', ';', '\\')",
            );
        }
        path_prefixes.push(trimmed.to_ascii_lowercase());
    }
    let mut authorities = Vec::with_capacity(raw.authorities.len());
    for (i, authority) in raw.authorities.iter().enumerate() {
        let fine = !authority.is_empty()
            && authority.bytes().all(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']')
            });
        if !fine {
            return err(
                format!("{path}.authorities[{i}]"),
                "must be a host name, or host:port",
            );
        }
        authorities.push(authority.to_ascii_lowercase());
    }
    let strip = CREDENTIAL_HEADERS.iter().map(|h| h.to_string()).collect();
    Ok(Upstream {
        name,
        path_prefixes,
        authorities,
        strip,
        required: false,
    })
}

/// No request may match two upstreams equally well: the same path prefix (or none) under a
/// shared authority (or none).
fn check_overlaps(upstreams: &[Upstream]) -> Result<(), ConfigError> {
    for (i, a) in upstreams.iter().enumerate() {
        for b in upstreams.iter().skip(i + 1) {
            let authorities_meet = if a.authorities.is_empty() || b.authorities.is_empty() {
                a.authorities.is_empty() && b.authorities.is_empty()
            } else {
                a.authorities.iter().any(|x| b.authorities.contains(x))
            };
            let prefixes_meet = if a.path_prefixes.is_empty() || b.path_prefixes.is_empty() {
                a.path_prefixes.is_empty() && b.path_prefixes.is_empty()
            } else {
                a.path_prefixes.iter().any(|x| b.path_prefixes.contains(x))
            };
            if authorities_meet && prefixes_meet {
                return err(
                    format!("upstreams.{}", b.name),
                    format!(
                        "matches the same requests as upstreams.{}: give one another path \
                         prefix or authority",
                        a.name
                    ),
                );
            }
        }
    }
    Ok(())
}

/// Whether `prefix` (lower case, no trailing `/`) is a prefix of `path` at a segment boundary,
/// ASCII case ignored (a client must not step around an upstream by writing `/V1/`).
fn prefix_matches(path: &str, prefix: &str) -> bool {
    let Some(head) = path.get(..prefix.len()) else {
        return false;
    };
    head.eq_ignore_ascii_case(prefix)
        && path.as_bytes().get(prefix.len()).is_none_or(|b| *b == b'/')
}

/// Whether `authority` (as received) names `wanted` (lower case): the same host and port, or
/// the same host when `wanted` has no port.
fn authority_matches(authority: &str, wanted: &str) -> bool {
    if authority.eq_ignore_ascii_case(wanted) {
        return true;
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if !wanted.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            host.eq_ignore_ascii_case(wanted)
        }
        _ => false,
    }
}

impl Upstreams {
    /// Nothing configured: requests pay nothing.
    pub fn is_empty(&self) -> bool {
        self.upstreams.is_empty() && self.header_names.is_empty()
    }

    /// Whether some upstream is told by authority (only then does the shell read it).
    pub fn by_authority(&self) -> bool {
        self.by_authority
    }

    pub fn has_upstreams(&self) -> bool {
        !self.upstreams.is_empty()
    }

    /// The upstream of a request: of those whose lists match (each list given must), the one
    /// matched by authority, then by the longest path prefix. `path`: normalised, no query.
    pub fn route(&self, path: &str, authority: Option<&str>) -> Option<usize> {
        let mut best: Option<(usize, (bool, usize))> = None;
        for (i, u) in self.upstreams.iter().enumerate() {
            let by_authority = !u.authorities.is_empty();
            if by_authority {
                let Some(authority) = authority else {
                    continue;
                };
                if !u
                    .authorities
                    .iter()
                    .any(|a| authority_matches(authority, a))
                {
                    continue;
                }
            }
            let prefix_len = if u.path_prefixes.is_empty() {
                0
            } else {
                match u
                    .path_prefixes
                    .iter()
                    .filter(|p| prefix_matches(path, p))
                    .map(String::len)
                    .max()
                {
                    // The root prefix "/" is stored empty: it matches every path.
                    Some(len) => len + 1,
                    None => continue,
                }
            };
            let rank = (by_authority, prefix_len);
            if best.is_none_or(|(_, r)| rank > r) {
                best = Some((i, rank));
            }
        }
        best.map(|(i, _)| i)
    }

    /// The upstream's name (for details).
    pub fn name(&self, upstream: usize) -> &str {
        self.upstreams.get(upstream).map_or("", |u| u.name.as_str())
    }

    /// What a request of `tenant` (a listed tenant's id; `None` for one admitted through
    /// `default_tenant`) to `upstream` gets; `Err` with a detail when the upstream needs a
    /// credential and the tenant has none (nor the platform), or it was never loaded.
    pub fn plan(&self, upstream: usize, tenant: Option<&str>) -> Result<Plan<'_>, String> {
        let Some(u) = self.upstreams.get(upstream) else {
            return Err("unknown upstream".into());
        };
        let own = tenant
            .and_then(|t| self.tenants.get(t))
            .and_then(|slots| slots.get(upstream)?.as_ref());
        let credential = own.or_else(|| self.default.get(upstream)?.as_ref());
        let Some(credential) = credential else {
            if u.required {
                return Err(format!(
                    "the tenant has no credential for upstream {} and the platform has none",
                    u.name
                ));
            }
            return Ok(Plan {
                remove: &u.strip,
                set: None,
                fingerprint: None,
            });
        };
        let Some(loaded) = &credential.loaded else {
            return Err(format!("credential {} was not loaded", credential.name));
        };
        Ok(Plan {
            remove: &u.strip,
            set: Some((credential.header.as_str(), &loaded.value)),
            fingerprint: Some(loaded.fingerprint.as_str()),
        })
    }

    /// The upstream headers every admitted request of `tenant` gets: the names whose client
    /// copies go, and the tenant's own values.
    pub fn tenant_headers(&self, tenant: Option<&str>) -> (&[String], &[(String, String)]) {
        let own = tenant
            .and_then(|t| self.headers.get(t))
            .map_or(&[][..], Vec::as_slice);
        (&self.header_names, own)
    }

    /// The environment variables the policy names, with where: `(path, variable)`.
    pub fn variables(&self) -> Vec<(&str, &str)> {
        let mut out: Vec<(&str, &str)> = self
            .all()
            .map(|c| (c.path.as_str(), c.env.as_str()))
            .collect();
        sorted::sort_by(&mut out, |(path, _)| (0, path));
        out
    }

    fn all(&self) -> impl Iterator<Item = &Credential> {
        self.default
            .iter()
            .chain(self.tenants.values().flatten())
            .flatten()
    }

    /// Loads every credential's value with `lookup` (the Wasm VM's environment, read by the
    /// shell). A variable that is missing or unusable refuses the configuration; the error
    /// names the variable, never a value. Two owners whose variables hold one value are
    /// refused too: that key would serve both.
    pub fn load(
        &mut self,
        lookup: &mut dyn FnMut(&str) -> Option<String>,
    ) -> Result<(), ConfigError> {
        let mut credentials: Vec<&mut Credential> = self
            .default
            .iter_mut()
            .chain(self.tenants.values_mut().flatten())
            .flatten()
            .collect();
        sorted::sort_by(&mut credentials, |c| (0, &c.path));
        // Full digest of each value → (owner, path).
        let mut seen: HashMap<[u8; 32], (String, String)> = HashMap::new();
        for c in credentials {
            let path = format!("{}.env", c.path);
            let Some(value) = lookup(&c.env) else {
                return Err(secret::not_set(&path, &c.env));
            };
            if let Some(why) = secret::unusable(&value) {
                return err(path, format!("environment variable {} {why}", c.env));
            }
            let owner = c.name.split('/').next().unwrap_or_default().to_string();
            let digest = hmac_sha256::Hash::hash(value.as_bytes());
            if let Some((other, other_path)) = seen.get(&digest) {
                if *other != owner {
                    return err(
                        path,
                        format!(
                            "environment variable {} holds the same value as {other_path}: one \
                             tenant's key never serves another tenant",
                            c.env
                        ),
                    );
                }
            }
            seen.insert(digest, (owner, c.path.clone()));
            let fingerprint = format!("{}#{}", c.name, Secret::new(&value).fingerprint());
            c.loaded = Some(Loaded {
                value: Secret::new(&format!("{}{value}", c.prefix)),
                fingerprint,
            });
        }
        Ok(())
    }

    /// The fingerprints of the loaded credentials, sorted (for the log line at configure).
    pub fn fingerprints(&self) -> Vec<&str> {
        let mut out: Vec<&str> = self
            .all()
            .filter_map(|c| c.loaded.as_ref())
            .map(|l| l.fingerprint.as_str())
            .collect();
        sorted::sort_by(&mut out, |fingerprint| (0, fingerprint));
        out
    }
}

#[cfg(test)]
mod tests;
