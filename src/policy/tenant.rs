//! Tenant binding: is the tenant a verified token names known, active, and vouched for by the
//! provider that signed the token?

use std::collections::HashMap;

use serde::Deserialize;

use crate::policy::config::Limits;
use crate::policy::denial::Reason;

#[derive(Deserialize, Debug, Clone, Copy, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    #[default]
    Active,
    Suspended,
}

/// A tenant listed in the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    pub id: String,
    pub status: Status,
    /// Indices of the providers that may vouch for this tenant.
    pub providers: Vec<usize>,
    pub plan: Option<String>,
    pub namespace: String,
    pub limits: Limits,
}

/// Admits tenants that are not listed, when their token comes from one of `providers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefaultTenant {
    pub providers: Vec<usize>,
    pub plan: Option<String>,
    pub limits: Limits,
}

/// The tenant a request is bound to, once admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BoundTenant<'a> {
    pub id: &'a str,
    pub namespace: &'a str,
    pub plan: Option<&'a str>,
    pub limits: &'a Limits,
}

pub struct Tenants {
    listed: HashMap<String, Tenant>,
    default: Option<DefaultTenant>,
}

impl Tenants {
    pub fn new(listed: Vec<Tenant>, default: Option<DefaultTenant>) -> Tenants {
        Tenants {
            listed: listed.into_iter().map(|t| (t.id.clone(), t)).collect(),
            default,
        }
    }

    /// The listed tenants' ids, sorted (a stable order for every worker).
    pub fn listed_ids(&self) -> Vec<&str> {
        let mut ids: Vec<&str> = self.listed.keys().map(String::as_str).collect();
        ids.sort_unstable();
        ids
    }

    /// Whether `id` is a listed tenant (not one admitted through `default_tenant`).
    pub fn is_listed(&self, id: &str) -> bool {
        self.listed.contains_key(id)
    }

    /// Binds the tenant `id` named by a token that `provider` signed.
    ///
    /// The provider is checked before the status, so a foreign provider learns nothing about
    /// another tenant's standing.
    pub fn bind<'a>(&'a self, id: &'a str, provider: usize) -> Result<BoundTenant<'a>, Reason> {
        if let Some(t) = self.listed.get(id) {
            if !t.providers.contains(&provider) {
                return Err(Reason::TenantProviderMismatch);
            }
            if t.status == Status::Suspended {
                return Err(Reason::TenantSuspended);
            }
            return Ok(BoundTenant {
                id: &t.id,
                namespace: &t.namespace,
                plan: t.plan.as_deref(),
                limits: &t.limits,
            });
        }
        match &self.default {
            Some(d) if d.providers.contains(&provider) && is_valid_tenant_id(id) => {
                Ok(BoundTenant {
                    id,
                    namespace: id,
                    plan: d.plan.as_deref(),
                    limits: &d.limits,
                })
            }
            _ => Err(Reason::UnknownTenant),
        }
    }
}

/// Tenant ids and namespaces end up in paths, headers and metric names: keep them plain.
pub fn is_valid_tenant_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && id != "."
        && id != ".."
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_family = "wasm")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const CORP: usize = 0;
    const GLOBEX: usize = 1;

    fn tenant(id: &str, status: Status, providers: Vec<usize>) -> Tenant {
        Tenant {
            id: id.into(),
            status,
            providers,
            plan: Some("pro".into()),
            namespace: format!("ns-{id}"),
            limits: Limits::default(),
        }
    }

    fn tenants(default: bool) -> Tenants {
        Tenants::new(
            vec![
                tenant("acme", Status::Active, vec![CORP]),
                tenant("initech", Status::Suspended, vec![CORP]),
            ],
            default.then(|| DefaultTenant {
                providers: vec![CORP],
                plan: Some("free".into()),
                limits: Limits::default(),
            }),
        )
    }

    #[test]
    fn listed_active_tenant_signed_by_its_provider_is_bound() {
        let t = tenants(false);
        let bound = t.bind("acme", CORP).unwrap();
        assert_eq!(bound.id, "acme");
        assert_eq!(bound.namespace, "ns-acme");
        assert_eq!(bound.plan, Some("pro"));
    }

    #[test]
    fn token_for_acme_signed_by_globex_idp_is_refused() {
        assert_eq!(
            tenants(true).bind("acme", GLOBEX),
            Err(Reason::TenantProviderMismatch)
        );
    }

    #[test]
    fn suspended_tenant_is_refused() {
        assert_eq!(
            tenants(false).bind("initech", CORP),
            Err(Reason::TenantSuspended)
        );
    }

    #[test]
    fn foreign_provider_learns_nothing_about_a_suspended_tenant() {
        assert_eq!(
            tenants(false).bind("initech", GLOBEX),
            Err(Reason::TenantProviderMismatch)
        );
    }

    #[test]
    fn unlisted_tenant_without_default_is_unknown() {
        assert_eq!(
            tenants(false).bind("hooli", CORP),
            Err(Reason::UnknownTenant)
        );
    }

    #[test]
    fn default_tenant_admits_unlisted_tenant_from_its_providers_only() {
        let t = tenants(true);
        let bound = t.bind("hooli", CORP).unwrap();
        assert_eq!(
            (bound.id, bound.namespace, bound.plan),
            ("hooli", "hooli", Some("free"))
        );
        assert_eq!(t.bind("hooli", GLOBEX), Err(Reason::UnknownTenant));
    }

    #[test]
    fn default_tenant_refuses_ids_unfit_for_paths() {
        let t = tenants(true);
        for id in ["../acme", "a/b", "..", "", "sp ace", &"x".repeat(129)] {
            assert_eq!(t.bind(id, CORP), Err(Reason::UnknownTenant), "{id}");
        }
    }
}
