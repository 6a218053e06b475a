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

use crate::policy::config_error::{err, ConfigError};
use crate::policy::word::words;
use objects::BUCKET_ENTRIES;

/// `isolation.provider_objects`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ProviderObjects {
    /// Objects are usable by the tenant that created them only.
    #[default]
    Owner,
    Off,
}

words!(ProviderObjects: "enum ProviderObjects", Owner = "owner", Off = "off");

/// `isolation.prompt_cache`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PromptCache {
    /// Cache keys and user identifiers scoped to the tenant.
    #[default]
    Tenant,
    Off,
}

words!(PromptCache: "enum PromptCache", Tenant = "tenant", Off = "off");

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

// === Configuration (contract: `isolation`) ===

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawIsolation {
    #[serde(default)]
    provider_objects: ProviderObjects,
    #[serde(default)]
    prompt_cache: PromptCache,
    key: Option<String>,
    #[serde(default)]
    objects: RawObjectStore,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawObjectStore {
    max_objects: usize,
    ttl_s: u64,
}

impl Default for RawObjectStore {
    fn default() -> Self {
        RawObjectStore {
            max_objects: 131_072,
            ttl_s: 30 * 86_400,
        }
    }
}

pub(crate) fn compile_isolation(
    raw: RawIsolation,
    derived_key: [u8; 32],
) -> Result<IsolationRules, ConfigError> {
    let key = match raw.key {
        Some(key) if key.len() < 32 => {
            return err("isolation.key", "must be at least 32 characters of secret");
        }
        Some(key) => hmac_sha256::Hash::hash(key.as_bytes()),
        None => derived_key,
    };
    let objects = raw.objects;
    if !(BUCKET_ENTRIES..=10_000_000).contains(&objects.max_objects) {
        return err(
            "isolation.objects.max_objects",
            format!("must be between {BUCKET_ENTRIES} and 10000000"),
        );
    }
    if objects.ttl_s < 60 {
        return err("isolation.objects.ttl_s", "must be at least 60");
    }
    Ok(IsolationRules {
        provider_objects: raw.provider_objects,
        prompt_cache: raw.prompt_cache,
        key,
        store: StoreRules {
            buckets: objects.max_objects.div_ceil(BUCKET_ENTRIES),
            ttl_s: objects.ttl_s,
        },
    })
}

// === Answers and HTTP caches ===

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
