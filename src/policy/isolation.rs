//! No memory shared between tenants behind one provider account (contract: `isolation`):
//! provider-side objects belong to the tenant that created them ([`objects`]), prompt caches
//! and end-user identifiers are scoped to the tenant ([`prompt_cache`]), and no shared HTTP
//! cache keyed on host and path may hand one tenant's answer to another: unless the tenant's
//! namespace is in the path or authority, requests that go on say `no-store` (for an Envoy
//! cache filter after this one, which sees answers before this filter does) and answers say
//! `private` (for caches in front of the gateway).

pub mod objects;
pub mod prompt_cache;

use serde::Deserialize;

/// `isolation.provider_objects`.
#[derive(Deserialize, Debug, Clone, Copy, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ProviderObjects {
    /// Objects are usable by the tenant that created them only.
    #[default]
    Owner,
    Off,
}

/// `isolation.prompt_cache`.
#[derive(Deserialize, Debug, Clone, Copy, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum PromptCache {
    /// Cache keys and user identifiers scoped to the tenant.
    #[default]
    Tenant,
    Off,
}

/// The compiled `isolation` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsolationRules {
    pub provider_objects: ProviderObjects,
    pub prompt_cache: PromptCache,
    /// The key of the tenant-scoped tags (prompt-cache keys, user identifiers).
    pub key: [u8; 32],
    /// The ownership store: buckets (shared-data keys) and how long an object is remembered.
    pub store: StoreRules,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreRules {
    pub buckets: usize,
    pub ttl_s: u64,
}

/// A `cache-control` for an answer that an HTTP cache keyed on host and path must not hand to
/// another tenant: `private` added (and `public` dropped); `None` when it already says
/// `private` or `no-store`.
pub fn private_cache_control(existing: Option<&str>) -> Option<String> {
    let directives: Vec<&str> = existing
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .collect();
    let says = |name: &str| {
        directives.iter().any(|d| {
            let key = d.split('=').next().unwrap_or_default().trim();
            key.eq_ignore_ascii_case(name)
        })
    };
    if says("private") || says("no-store") {
        return None;
    }
    let kept = directives.into_iter().filter(|d| {
        let key = d.split('=').next().unwrap_or_default().trim();
        !key.eq_ignore_ascii_case("public") && !key.eq_ignore_ascii_case("s-maxage")
    });
    Some(
        std::iter::once("private")
            .chain(kept)
            .collect::<Vec<_>>()
            .join(", "),
    )
}

/// A request `cache-control` that keeps caches after the gateway from storing or serving the
/// answer: `no-store` added; `None` when it is already there.
pub fn no_store_request(existing: Option<&str>) -> Option<String> {
    let existing = existing.unwrap_or_default().trim();
    let says = existing
        .split(',')
        .any(|d| d.trim().eq_ignore_ascii_case("no-store"));
    match (says, existing.is_empty()) {
        (true, _) => None,
        (false, true) => Some("no-store".into()),
        (false, false) => Some(format!("{existing}, no-store")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_family = "wasm")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn answers_become_private_unless_they_already_are() {
        assert_eq!(private_cache_control(None).as_deref(), Some("private"));
        assert_eq!(
            private_cache_control(Some("public, max-age=60, s-maxage=600")).as_deref(),
            Some("private, max-age=60")
        );
        assert_eq!(private_cache_control(Some("Private")), None);
        assert_eq!(private_cache_control(Some("no-store")), None);
    }

    #[test]
    fn requests_say_no_store_once() {
        assert_eq!(no_store_request(None).as_deref(), Some("no-store"));
        assert_eq!(
            no_store_request(Some("max-age=0")).as_deref(),
            Some("max-age=0, no-store")
        );
        assert_eq!(no_store_request(Some("No-Store")), None);
    }
}
