//! Tenant binding: is the tenant a verified token names known, active, and vouched for by the
//! provider that signed the token?

use std::borrow::Cow;
use std::collections::HashSet;
use std::rc::Rc;

use crate::policy::config_error::{err, ConfigError};
use crate::policy::denial::Reason;
use crate::policy::object_map::ObjectMap;
use crate::policy::plan::Limits;
use crate::policy::sorted;
use crate::policy::word::words;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Status {
    #[default]
    Active,
    Suspended,
}

words!(Status: "enum Status", Active = "active", Suspended = "suspended");

/// A tenant listed in the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    pub id: String,
    pub status: Status,
    /// Indices of the providers that may vouch for this tenant.
    pub providers: Vec<usize>,
    pub plan: Option<String>,
    pub namespace: String,
    /// Shared by the tenants of a plan that do not change its limits.
    pub limits: Rc<Limits>,
}

/// Admits tenants that are not listed, when their token comes from one of `providers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefaultTenant {
    /// The providers that may admit unlisted tenants: (index into the providers, name).
    pub providers: Vec<(usize, String)>,
    pub plan: Option<String>,
    pub limits: Rc<Limits>,
    /// Where a default tenant's namespace is: `{provider}` and `{tenant}` filled in.
    pub namespace: NamespaceTemplate,
    /// At most this many default tenants get quota counters of their own (shared data never
    /// frees a key); the quota shell enforces it.
    pub max_tenants: usize,
}

/// `default_tenant.namespace`: a namespace template holding `{provider}` and `{tenant}` once
/// each, in either order, with a non-empty separator between them (validated by the config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamespaceTemplate {
    pub head: String,
    pub separator: String,
    pub tail: String,
    pub provider_first: bool,
}

impl NamespaceTemplate {
    /// The namespace of default tenant `tenant` admitted by provider `provider`.
    pub fn expand(&self, provider: &str, tenant: &str) -> String {
        let (first, second) = if self.provider_first {
            (provider, tenant)
        } else {
            (tenant, provider)
        };
        format!(
            "{}{first}{}{second}{}",
            self.head, self.separator, self.tail
        )
    }

    /// Whether `namespace` is what this template gives `provider` for some tenant id.
    pub fn fits(&self, provider: &str, namespace: &str) -> bool {
        let (prefix, suffix) = if self.provider_first {
            (
                format!("{}{provider}{}", self.head, self.separator),
                self.tail.clone(),
            )
        } else {
            (
                self.head.clone(),
                format!("{}{provider}{}", self.separator, self.tail),
            )
        };
        namespace.len() > prefix.len() + suffix.len()
            && namespace.starts_with(&prefix)
            && namespace.ends_with(&suffix)
    }

    /// The fixed text next to the tenant id for `provider`: two providers' namespaces can
    /// coincide exactly when one's is a prefix (provider first) or a suffix (tenant first) of
    /// the other's.
    pub fn provider_part(&self, provider: &str) -> String {
        if self.provider_first {
            format!("{provider}{}", self.separator)
        } else {
            format!("{}{provider}", self.separator)
        }
    }
}

/// The tenant a request is bound to, once admitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundTenant<'a> {
    pub id: &'a str,
    /// A listed tenant's `namespace`; a default tenant's `default_tenant.namespace` expanded.
    pub namespace: Cow<'a, str>,
    pub plan: Option<&'a str>,
    pub limits: &'a Rc<Limits>,
    /// The provider that admitted an unlisted tenant through `default_tenant`; `None` for a
    /// listed tenant.
    pub default_provider: Option<&'a str>,
}

impl BoundTenant<'_> {
    /// Who the tenant's quotas belong to: a listed tenant's id; `<provider>/<tenant>` for a
    /// default tenant, so two default providers do not share one tenant id space (`/` never
    /// occurs in tenant ids, so this never names a listed tenant).
    pub fn quota_id(&self) -> Cow<'_, str> {
        match self.default_provider {
            Some(provider) => Cow::Owned(format!("{provider}/{}", self.id)),
            None => Cow::Borrowed(self.id),
        }
    }
}

/// Why a tenant was not bound: the reason code, and a detail for logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unbound {
    pub reason: Reason,
    pub detail: &'static str,
}

fn unbound(reason: Reason, detail: &'static str) -> Unbound {
    Unbound { reason, detail }
}

pub struct Tenants {
    listed: ObjectMap<Tenant>,
    /// The listed tenants' namespaces that are not their own ids (see
    /// [`Tenants::is_listed_namespace`]).
    other_namespaces: HashSet<String>,
    default: Option<DefaultTenant>,
}

impl Tenants {
    pub fn new(listed: Vec<Tenant>, default: Option<DefaultTenant>) -> Tenants {
        Tenants {
            other_namespaces: listed
                .iter()
                .filter(|t| t.namespace != t.id)
                .map(|t| t.namespace.clone())
                .collect(),
            listed: listed.into_iter().map(|t| (t.id.clone(), t)).collect(),
            default,
        }
    }

    /// The listed tenants' ids, sorted (a stable order for every worker).
    pub fn listed_ids(&self) -> Vec<&str> {
        let mut ids: Vec<&str> = self.listed.keys().map(String::as_str).collect();
        sorted::sort_by(&mut ids, |id| (0, id));
        ids
    }

    /// The listed tenants whose limits have `per_user`, with its `max_users`, sorted.
    pub fn user_bounds(&self) -> Vec<(&str, usize)> {
        let mut out: Vec<(&str, usize)> = self
            .listed
            .values()
            .filter_map(|t| Some((t.id.as_str(), t.limits.per_user.as_ref()?.max_users)))
            .collect();
        sorted::sort_by(&mut out, |(id, _)| (0, id));
        out
    }

    /// Whether `id` is a listed tenant (not one admitted through `default_tenant`).
    pub fn is_listed(&self, id: &str) -> bool {
        self.listed.contains_key(id)
    }

    /// The quota identity of an admitted tenant (see [`BoundTenant::quota_id`]), from what an
    /// admission records: its tenant id and the name of the provider that vouched for it.
    pub fn quota_id<'a>(&self, tenant: &'a str, provider: &str) -> Cow<'a, str> {
        if self.is_listed(tenant) {
            Cow::Borrowed(tenant)
        } else {
            Cow::Owned(format!("{provider}/{tenant}"))
        }
    }

    /// Whether `name` is some listed tenant's namespace.
    fn is_listed_namespace(&self, name: &str) -> bool {
        self.listed.get(name).is_some_and(|t| t.namespace == t.id)
            || self.other_namespaces.contains(name)
    }

    /// `default_tenant`, when configured.
    pub fn default_tenant(&self) -> Option<&DefaultTenant> {
        self.default.as_ref()
    }

    /// Binds the tenant `id` named by a token that `provider` signed.
    ///
    /// The provider is checked before the status, so a foreign provider learns nothing about
    /// another tenant's standing. An unlisted id is admitted by `default_tenant` only when it
    /// is fit for paths and is not a listed tenant's namespace (`tenant_namespace_conflict`).
    pub fn bind<'a>(&'a self, id: &'a str, provider: usize) -> Result<BoundTenant<'a>, Unbound> {
        if let Some(t) = self.listed.get(id) {
            if !t.providers.contains(&provider) {
                return Err(unbound(
                    Reason::TenantProviderMismatch,
                    "the provider may not vouch for this tenant",
                ));
            }
            if t.status == Status::Suspended {
                return Err(unbound(Reason::TenantSuspended, "tenant is suspended"));
            }
            return Ok(BoundTenant {
                id: &t.id,
                namespace: Cow::Borrowed(&t.namespace),
                plan: t.plan.as_deref(),
                limits: &t.limits,
                default_provider: None,
            });
        }
        let unknown = unbound(Reason::UnknownTenant, "tenant is not known");
        let Some(d) = &self.default else {
            return Err(unknown);
        };
        let Some((_, name)) = d.providers.iter().find(|(index, _)| *index == provider) else {
            return Err(unknown);
        };
        if !is_valid_tenant_id(id) {
            return Err(unbound(
                Reason::UnknownTenant,
                "unlisted tenant id is not 1-128 characters of A-Z a-z 0-9 . _ -",
            ));
        }
        if self.is_listed_namespace(id) {
            return Err(unbound(
                Reason::TenantNamespaceConflict,
                "unlisted tenant id is a listed tenant's namespace",
            ));
        }
        let namespace = d.namespace.expand(name, id);
        if !is_valid_tenant_id(&namespace) {
            return Err(unbound(
                Reason::UnknownTenant,
                "unlisted tenant's namespace would be longer than 128 characters",
            ));
        }
        // The configuration already rules this out; checked again because it must never be.
        if self.is_listed_namespace(&namespace) || self.listed.contains_key(&namespace) {
            return Err(unbound(
                Reason::TenantNamespaceConflict,
                "unlisted tenant's namespace is a listed tenant's",
            ));
        }
        Ok(BoundTenant {
            id,
            namespace: Cow::Owned(namespace),
            plan: d.plan.as_deref(),
            limits: &d.limits,
            default_provider: Some(name),
        })
    }

    /// Binds the listed tenant that owns an API key: no provider vouches, the policy's key
    /// list did; the status counts as for a token.
    pub fn bind_key_owner<'a>(&'a self, id: &str) -> Result<BoundTenant<'a>, Unbound> {
        let Some(t) = self.listed.get(id) else {
            return Err(unbound(Reason::UnknownTenant, "tenant is not known"));
        };
        if t.status == Status::Suspended {
            return Err(unbound(Reason::TenantSuspended, "tenant is suspended"));
        }
        Ok(BoundTenant {
            id: &t.id,
            namespace: Cow::Borrowed(&t.namespace),
            plan: t.plan.as_deref(),
            limits: &t.limits,
            default_provider: None,
        })
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

// === Configuration: the namespaces of listed and default tenants ===

/// Every listed tenant has a namespace of its own, and no namespace is another tenant's id.
pub(crate) fn check_listed_namespaces(tenants: &[Tenant]) -> Result<(), ConfigError> {
    let namespaces: Vec<Option<&str>> = tenants.iter().map(|t| Some(&*t.namespace)).collect();
    if let Some((i, first)) = sorted::first_repeat(&namespaces) {
        if let (Some(t), Some(other)) = (tenants.get(i), tenants.get(first)) {
            return err(
                format!("tenants.{}.namespace", t.id),
                format!(
                    "namespace \"{}\" is also tenant {}'s",
                    t.namespace, other.id
                ),
            );
        }
    }
    let mut ids: Vec<&str> = tenants.iter().map(|t| t.id.as_str()).collect();
    sorted::sort_by(&mut ids, |id| (0, id));
    match tenants
        .iter()
        .find(|t| t.namespace != t.id && sorted::contains(&ids, &t.namespace))
    {
        Some(t) => err(
            format!("tenants.{}.namespace", t.id),
            format!("namespace \"{}\" is the id of another tenant", t.namespace),
        ),
        None => Ok(()),
    }
}

/// `default_tenant.namespace`: `{provider}` and `{tenant}` once each, a separator between
/// them, otherwise characters allowed in namespaces.
pub(crate) fn parse_namespace_template(template: &str) -> Result<NamespaceTemplate, ConfigError> {
    const PATH: &str = "default_tenant.namespace";
    let (Some(provider_at), Some(tenant_at)) =
        (template.find("{provider}"), template.find("{tenant}"))
    else {
        return err(PATH, "must contain {provider} and {tenant}");
    };
    let literal = template
        .replacen("{provider}", "", 1)
        .replacen("{tenant}", "", 1);
    let literal_ok = literal
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !literal_ok || literal.len() > 64 {
        return err(
            PATH,
            "must contain {provider} and {tenant} once each and otherwise at most 64 \
             characters of A-Z a-z 0-9 . _ -",
        );
    }
    let provider_first = provider_at < tenant_at;
    let (first_at, first_len, second_at, second_len) = if provider_first {
        (provider_at, "{provider}".len(), tenant_at, "{tenant}".len())
    } else {
        (tenant_at, "{tenant}".len(), provider_at, "{provider}".len())
    };
    let piece = |from: usize, to: usize| template.get(from..to).unwrap_or_default().to_string();
    let separator = piece(first_at + first_len, second_at);
    if separator.is_empty() {
        return err(
            PATH,
            "needs a separator between {provider} and {tenant}, e.g. '.'",
        );
    }
    Ok(NamespaceTemplate {
        head: piece(0, first_at),
        separator,
        tail: piece(second_at + second_len, template.len()),
        provider_first,
    })
}

/// A default tenant's namespace can never be a listed tenant's, nor another default
/// provider's tenant's.
pub(crate) fn check_default_namespaces(
    d: &DefaultTenant,
    tenants: &[Tenant],
) -> Result<(), ConfigError> {
    for (i, (_, name)) in d.providers.iter().enumerate() {
        if !is_valid_tenant_id(name) {
            return err(
                format!("default_tenant.providers[{i}]"),
                format!(
                    "provider name \"{name}\" is placed in namespaces: it must be 1-128 \
                     characters of A-Z a-z 0-9 . _ -"
                ),
            );
        }
        let part = d.namespace.provider_part(name);
        for (_, other) in d.providers.iter().filter(|(_, o)| o != name) {
            let theirs = d.namespace.provider_part(other);
            let overlap = if d.namespace.provider_first {
                theirs.starts_with(&part)
            } else {
                theirs.ends_with(&part)
            };
            if overlap {
                return err(
                    "default_tenant.namespace",
                    format!(
                        "providers {name} and {other} would share namespaces under this template"
                    ),
                );
            }
        }
        if let Some(t) = tenants
            .iter()
            .find(|t| d.namespace.fits(name, &t.namespace))
        {
            return err(
                format!("tenants.{}.namespace", t.id),
                format!(
                    "namespace \"{}\" has the shape of a namespace default_tenant.namespace \
                     gives tenants of provider {name}",
                    t.namespace
                ),
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_family = "wasm")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    const CORP: usize = 0;
    const GLOBEX: usize = 1;
    const SIGNUP: usize = 2;

    fn tenant(id: &str, status: Status, providers: Vec<usize>) -> Tenant {
        Tenant {
            id: id.into(),
            status,
            providers,
            plan: Some("pro".into()),
            namespace: format!("ns-{id}"),
            limits: Default::default(),
        }
    }

    fn provider_first() -> NamespaceTemplate {
        NamespaceTemplate {
            head: String::new(),
            separator: ".".into(),
            tail: String::new(),
            provider_first: true,
        }
    }

    fn tenants(default: bool) -> Tenants {
        Tenants::new(
            vec![
                tenant("acme", Status::Active, vec![CORP]),
                tenant("initech", Status::Suspended, vec![CORP]),
            ],
            default.then(|| DefaultTenant {
                providers: vec![(CORP, "corp-idp".into()), (SIGNUP, "signup".into())],
                plan: Some("free".into()),
                limits: Default::default(),
                namespace: provider_first(),
                max_tenants: 1000,
            }),
        )
    }

    fn reason(result: Result<BoundTenant<'_>, Unbound>) -> Reason {
        result.unwrap_err().reason
    }

    #[test]
    fn listed_active_tenant_signed_by_its_provider_is_bound() {
        let t = tenants(false);
        let bound = t.bind("acme", CORP).unwrap();
        assert_eq!(bound.id, "acme");
        assert_eq!(bound.namespace, "ns-acme");
        assert_eq!(bound.plan, Some("pro"));
        assert_eq!(bound.default_provider, None);
        assert_eq!(bound.quota_id(), "acme");
    }

    #[test]
    fn token_for_acme_signed_by_globex_idp_is_refused() {
        assert_eq!(
            reason(tenants(true).bind("acme", GLOBEX)),
            Reason::TenantProviderMismatch
        );
    }

    #[test]
    fn suspended_tenant_is_refused() {
        assert_eq!(
            reason(tenants(false).bind("initech", CORP)),
            Reason::TenantSuspended
        );
    }

    #[test]
    fn foreign_provider_learns_nothing_about_a_suspended_tenant() {
        assert_eq!(
            reason(tenants(false).bind("initech", GLOBEX)),
            Reason::TenantProviderMismatch
        );
    }

    #[test]
    fn unlisted_tenant_without_default_is_unknown() {
        assert_eq!(
            reason(tenants(false).bind("hooli", CORP)),
            Reason::UnknownTenant
        );
    }

    #[test]
    fn default_tenant_admits_unlisted_tenant_from_its_providers_only() {
        let t = tenants(true);
        let bound = t.bind("hooli", CORP).unwrap();
        assert_eq!(
            (bound.id, bound.namespace.as_ref(), bound.plan),
            ("hooli", "corp-idp.hooli", Some("free"))
        );
        assert_eq!(bound.default_provider, Some("corp-idp"));
        assert_eq!(reason(t.bind("hooli", GLOBEX)), Reason::UnknownTenant);
    }

    #[test]
    fn two_default_providers_do_not_share_a_tenant() {
        let t = tenants(true);
        let corp = t.bind("hooli", CORP).unwrap();
        let signup = t.bind("hooli", SIGNUP).unwrap();
        assert_eq!(corp.namespace, "corp-idp.hooli");
        assert_eq!(signup.namespace, "signup.hooli");
        assert_eq!(corp.quota_id(), "corp-idp/hooli");
        assert_eq!(signup.quota_id(), "signup/hooli");
        // The same, from what an admission records (tenant id and provider name).
        assert_eq!(t.quota_id("hooli", "signup"), "signup/hooli");
        assert_eq!(t.quota_id("acme", "corp-idp"), "acme");
        assert!(t.is_listed("acme") && !t.is_listed("hooli"));
    }

    #[test]
    fn default_tenant_cannot_take_a_listed_tenants_namespace() {
        let t = tenants(true);
        // "ns-acme" is listed acme's namespace: as a self-chosen tenant id it is refused.
        let refused = t.bind("ns-acme", CORP).unwrap_err();
        assert_eq!(refused.reason, Reason::TenantNamespaceConflict);
        assert_eq!(
            reason(t.bind("ns-initech", SIGNUP)),
            Reason::TenantNamespaceConflict
        );
        // A listed id is bound as that listed tenant, never as a default tenant.
        assert_eq!(
            reason(t.bind("acme", SIGNUP)),
            Reason::TenantProviderMismatch
        );
    }

    #[test]
    fn default_tenant_refuses_ids_unfit_for_paths() {
        let t = tenants(true);
        for id in ["../acme", "a/b", "..", "", "sp ace", &"x".repeat(129)] {
            assert_eq!(reason(t.bind(id, CORP)), Reason::UnknownTenant, "{id}");
        }
    }

    #[test]
    fn default_tenant_whose_namespace_would_be_too_long_is_refused() {
        let t = tenants(true);
        // "corp-idp." is 9 characters: 119 more fit in 128.
        assert!(t.bind(&"x".repeat(119), CORP).is_ok());
        let refused = t.bind(&"x".repeat(120), CORP).unwrap_err();
        assert_eq!(refused.reason, Reason::UnknownTenant);
        assert!(refused.detail.contains("longer than 128"));
    }

    #[test]
    fn an_api_keys_owner_is_bound_by_its_status_alone() {
        let t = tenants(true);
        let bound = t.bind_key_owner("acme").unwrap();
        assert_eq!((bound.id, bound.default_provider), ("acme", None));
        assert_eq!(bound.quota_id(), "acme");
        assert_eq!(reason(t.bind_key_owner("initech")), Reason::TenantSuspended);
        // Keys are only ever listed tenants': default_tenant admits nobody by key.
        assert_eq!(reason(t.bind_key_owner("hooli")), Reason::UnknownTenant);
    }

    #[test]
    fn namespace_templates_expand_and_recognise_their_shape() {
        let p = provider_first();
        assert_eq!(p.expand("corp", "hooli"), "corp.hooli");
        assert!(p.fits("corp", "corp.hooli"));
        assert!(!p.fits("corp", "corp."));
        assert!(!p.fits("corp", "other.hooli"));
        let t = NamespaceTemplate {
            head: "d-".into(),
            separator: "~".into(),
            tail: "-x".into(),
            provider_first: false,
        };
        assert_eq!(t.expand("corp", "hooli"), "d-hooli~corp-x");
        assert!(t.fits("corp", "d-hooli~corp-x"));
        assert!(!t.fits("corp", "d-~corp-x"));
        assert_eq!(t.provider_part("corp"), "~corp");
    }
}
