//! Plans (contract: `plans`, and a tenant's own `limits` over its plan's): the windows,
//! budget, enforcement and output cap a tenant's quotas run on.

use serde::Deserialize;

use crate::policy::alerts::compile_thresholds;
use crate::policy::config_error::{err, ConfigError};
use crate::policy::cost::micro_usd;
use crate::policy::models::{self, ModelList};
use crate::policy::word::words;
use std::rc::Rc;

/// A plan, or a tenant's `limits` overriding its plan field by field.
#[derive(Deserialize, Clone, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLimits {
    pub(crate) requests: Option<Vec<Window>>,
    pub(crate) tokens: Option<Vec<Window>>,
    pub(crate) monthly_budget_usd: Option<f64>,
    pub(crate) enforcement: Option<Enforcement>,
    pub(crate) output_cap: Option<OutputCapMode>,
    pub(crate) min_output_tokens: Option<u64>,
    /// `per_user`: each user's own limits inside the tenant's (`policy::user_quota`).
    pub(crate) per_user: Option<RawPerUser>,
    /// Alert thresholds, fractions of each token window and of the budget (`policy::alerts`).
    pub(crate) alerts: Option<Vec<f64>>,
    /// The models the plan's tenants may use (`crate::policy::models`).
    pub(crate) models: Option<Vec<String>>,
}

/// `output_cap`: how a request's output limit is held to what its quotas still cover.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OutputCapMode {
    /// Lower (or set) the body's output limit to what the tightest token window and the
    /// budget still cover.
    Clamp,
}

words!(OutputCapMode: "enum OutputCapMode", Clamp = "clamp");

/// A plan's `output_cap: "clamp"`, compiled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputCap {
    /// Below this many output tokens per choice the request is refused instead.
    pub min_output_tokens: u64,
}

/// Whether a plan's or a tenant's limits refuse requests (`enforce`) or only record what they
/// would have refused (`shadow`, for rolling out new limits).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Enforcement {
    #[default]
    Enforce,
    Shadow,
}

words!(Enforcement: "enum Enforcement", Enforce = "enforce", Shadow = "shadow");

/// One quota window: at most `limit` per `window_s` seconds.
#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Window {
    pub limit: u64,
    pub window_s: u64,
}

/// A tenant's effective limits (its plan with the tenant's own `limits` applied).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Limits {
    pub requests: Vec<Window>,
    pub tokens: Vec<Window>,
    /// Monthly budget in micro-USD; `None` = no budget.
    pub monthly_budget_micro_usd: Option<u64>,
    pub enforcement: Enforcement,
    /// `output_cap: "clamp"`; `None`: output limits are reserved as the client sent them.
    pub output_cap: Option<OutputCap>,
    /// Each user's own limits inside these (`per_user`); `None`: users are not counted.
    pub per_user: Option<PerUser>,
    /// `alerts`: thresholds in permille, ascending (empty: no alerts).
    pub alerts: Vec<u16>,
    /// The models the tenant may use; `None`: every model.
    pub models: Option<Rc<ModelList>>,
}

impl Limits {
    /// No window and no budget: nothing to count.
    pub fn is_empty(&self) -> bool {
        self.requests.is_empty()
            && self.tokens.is_empty()
            && self.monthly_budget_micro_usd.is_none()
    }
}

/// Checks the request and token windows of the limits found at `path`.
fn check_windows(
    path: &str,
    requests: &Option<Vec<Window>>,
    tokens: &Option<Vec<Window>>,
) -> Result<(), ConfigError> {
    for (kind, list) in [("requests", requests), ("tokens", tokens)] {
        for (i, w) in list.iter().flatten().enumerate() {
            if w.limit == 0 {
                return err(format!("{path}.{kind}[{i}].limit"), "must be at least 1");
            }
            if w.window_s == 0 {
                return err(format!("{path}.{kind}[{i}].window_s"), "must be at least 1");
            }
        }
    }
    Ok(())
}

/// Checks a plan, or a tenant's own `limits`, found at `path`.
pub(crate) fn check_limits(path: &str, limits: &RawLimits) -> Result<(), ConfigError> {
    check_windows(path, &limits.requests, &limits.tokens)?;
    if let Some(list) = &limits.models {
        models::check(&format!("{path}.models"), list)?;
    }
    if limits.min_output_tokens == Some(0) {
        return err(format!("{path}.min_output_tokens"), "must be at least 1");
    }
    if let Some(alerts) = &limits.alerts {
        compile_thresholds(&format!("{path}.alerts"), alerts)?;
    }
    if let Some(budget) = limits.monthly_budget_usd {
        micro_usd(budget).ok_or_else(|| ConfigError {
            path: format!("{path}.monthly_budget_usd"),
            message: "must be a non-negative amount of USD".into(),
        })?;
    }
    if let Some(per_user) = &limits.per_user {
        check_per_user(&format!("{path}.per_user"), per_user)?;
    }
    Ok(())
}

/// The limits a checked plan (or a tenant's merged `limits`) compiles to.
pub(crate) fn finish_limits(raw: RawLimits) -> Limits {
    Limits {
        requests: raw.requests.unwrap_or_default(),
        tokens: raw.tokens.unwrap_or_default(),
        monthly_budget_micro_usd: raw.monthly_budget_usd.and_then(micro_usd),
        enforcement: raw.enforcement.unwrap_or_default(),
        output_cap: raw.output_cap.map(|OutputCapMode::Clamp| OutputCap {
            min_output_tokens: raw.min_output_tokens.unwrap_or(DEFAULT_MIN_OUTPUT_TOKENS),
        }),
        per_user: raw.per_user.map(finish_per_user),
        // Checked by `check_limits`.
        alerts: raw
            .alerts
            .as_deref()
            .and_then(|a| compile_thresholds("", a).ok())
            .unwrap_or_default(),
        models: raw.models.as_deref().map(models::compile),
    }
}

/// `per_user` as written: each user's own limits inside a tenant's (`policy::user_quota`).
#[derive(Deserialize, Clone, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPerUser {
    requests: Option<Vec<Window>>,
    tokens: Option<Vec<Window>>,
    monthly_budget_usd: Option<f64>,
    max_users: Option<usize>,
}

/// `per_user.max_users` when the policy does not say.
pub const DEFAULT_MAX_USERS: usize = 100;
/// The most `per_user.max_users` may be (every user slot is a shared-data key made at load).
pub const MAX_MAX_USERS: usize = 10_000;

/// Each user's limits inside a tenant's, compiled.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PerUser {
    /// The user's windows and budget (enforcement and output cap follow the tenant's).
    pub limits: Box<Limits>,
    /// At most this many users of a tenant get counters of their own.
    pub max_users: usize,
}

/// Checks `per_user` found at `path`.
pub(crate) fn check_per_user(path: &str, raw: &RawPerUser) -> Result<(), ConfigError> {
    check_windows(path, &raw.requests, &raw.tokens)?;
    if let Some(budget) = raw.monthly_budget_usd {
        if micro_usd(budget).is_none() {
            return err(
                format!("{path}.monthly_budget_usd"),
                "must be a non-negative amount of USD",
            );
        }
    }
    if let Some(max) = raw.max_users {
        if max == 0 || max > MAX_MAX_USERS {
            return err(
                format!("{path}.max_users"),
                format!("must be between 1 and {MAX_MAX_USERS}"),
            );
        }
    }
    let names_none = raw.requests.as_ref().is_none_or(Vec::is_empty)
        && raw.tokens.as_ref().is_none_or(Vec::is_empty)
        && raw.monthly_budget_usd.is_none();
    if names_none {
        return err(
            path.to_string(),
            "names no limit (give requests, tokens or monthly_budget_usd)",
        );
    }
    Ok(())
}

/// The per-user limits a checked `per_user` compiles to.
pub(crate) fn finish_per_user(raw: RawPerUser) -> PerUser {
    PerUser {
        limits: Box::new(Limits {
            requests: raw.requests.unwrap_or_default(),
            tokens: raw.tokens.unwrap_or_default(),
            monthly_budget_micro_usd: raw.monthly_budget_usd.and_then(micro_usd),
            ..Limits::default()
        }),
        max_users: raw.max_users.unwrap_or(DEFAULT_MAX_USERS),
    }
}

/// A tenant's limits with its own model list (`tenants.<id>.models`, already checked) in place
/// of its plan's.
pub(crate) fn with_tenant_models(mut limits: Limits, own: Option<&[String]>) -> Limits {
    if let Some(own) = own {
        let mut list = models::compile(own);
        Rc::make_mut(&mut list).by_tenant = true;
        limits.models = Some(list);
    }
    limits
}

/// `min_output_tokens` when a plan with `output_cap` does not say.
pub const DEFAULT_MIN_OUTPUT_TOKENS: u64 = 16;
