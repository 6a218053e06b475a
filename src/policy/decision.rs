//! The request's plan, as data: from the facts of a request's headers to either the header
//! edits of an admission or a denial. The shell executes whatever comes back.

use crate::policy::config::{Config, TokenSource};
use crate::policy::denial::Reason;
use crate::policy::identity::{self, VerifiedToken};
use crate::policy::token_cache::TokenCache;

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
    /// `:path` without the query string.
    pub path: &'a [u8],
    pub credential: Credential,
    /// The client-sent value of `identity.tenant_header`, if any.
    pub tenant_header: Option<&'a [u8]>,
    pub now: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderEdit {
    /// Replace every copy of the header with this one value.
    Set(String, String),
    Remove(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admission {
    pub tenant: String,
    pub user: Option<String>,
    pub provider: String,
    pub plan: Option<String>,
    pub header_edits: Vec<HeaderEdit>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    pub reason: Reason,
    /// For logs only: never sent to the client, never contains the token.
    pub detail: String,
    pub tenant: Option<String>,
    pub user: Option<String>,
    pub provider: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Bypass,
    Admit(Admission),
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
    })
}

/// Decides a request from its headers. `cache` holds tokens this worker already verified.
pub fn decide(config: &Config, cache: &mut TokenCache, facts: RequestFacts<'_>) -> Decision {
    let is_bypass = std::str::from_utf8(facts.path)
        .map(|p| config.bypass_paths.contains(p))
        .unwrap_or(false);
    if is_bypass {
        return Decision::Bypass;
    }
    let (source, token) = match facts.credential {
        Credential::Missing => return deny(Reason::MissingToken, "no token in the request"),
        Credential::Unreadable => return deny(Reason::InvalidToken, "token is not valid UTF-8"),
        Credential::Present { source, token } => (source, token),
    };
    let verified = match cache.get(&token, facts.now) {
        Some(hit) => hit.clone(),
        None => match identity::verify(&token, &config.providers, &config.identity, facts.now) {
            Ok(verified) => {
                cache.insert(&token, verified.clone());
                verified
            }
            Err(rejection) => return deny(rejection.reason, rejection.detail),
        },
    };
    admit(config, source, verified, facts.tenant_header)
}

fn admit(
    config: &Config,
    source: usize,
    verified: VerifiedToken,
    client_tenant: Option<&[u8]>,
) -> Decision {
    let provider = config
        .providers
        .get(verified.provider)
        .map(|p| p.name.clone())
        .unwrap_or_default();
    let denial = |reason, detail: String| {
        Decision::Deny(Denial {
            reason,
            detail,
            tenant: Some(verified.tenant.clone()),
            user: verified.user.clone(),
            provider: Some(provider.clone()),
        })
    };
    let bound = match config.tenants.bind(&verified.tenant, verified.provider) {
        Ok(bound) => bound,
        Err(reason) => {
            let detail = match reason {
                Reason::TenantProviderMismatch => {
                    format!("provider {provider} may not vouch for this tenant")
                }
                Reason::TenantSuspended => "tenant is suspended".to_string(),
                _ => "tenant is not known".to_string(),
            };
            return denial(reason, detail);
        }
    };

    let mut header_edits = Vec::new();
    if let Some(header) = &config.tenant_header {
        if let Some(sent) = client_tenant {
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
        match verified.forwarded.iter().find(|(h, _)| h == header) {
            Some((_, value)) => header_edits.push(HeaderEdit::Set(header.clone(), value.clone())),
            None => header_edits.push(HeaderEdit::Remove(header.clone())),
        }
    }
    if config.strip_token {
        if let Some(s) = config.token_sources.get(source) {
            header_edits.push(HeaderEdit::Remove(s.header.clone()));
        }
    }
    Decision::Admit(Admission {
        tenant: bound.id.to_string(),
        user: verified.user,
        provider,
        plan: bound.plan.map(str::to_string),
        header_edits,
    })
}

#[cfg(test)]
mod tests;
