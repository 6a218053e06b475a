//! Global quotas (contract: `global_rate_limit`): which rate-limit service is asked, what a
//! request gets when it cannot decide, the extra descriptor entries, and leased credit.

use serde::Deserialize;

use crate::policy::config_error::{err, ConfigError};
use crate::policy::lease::{self, LeaseRules, RawLease};
use crate::policy::ratelimit::ExtraEntry;
use crate::policy::word::words;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGlobalRateLimit {
    cluster: String,
    domain: String,
    #[serde(default = "default_rls_timeout_ms")]
    timeout_ms: u64,
    #[serde(default)]
    failure_mode: FailureMode,
    #[serde(default)]
    extra_entries: Vec<ExtraEntry>,
    lease: Option<RawLease>,
}

fn default_rls_timeout_ms() -> u64 {
    50
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FailureMode {
    /// Fail closed: refuse the request when the rate-limit service cannot decide.
    #[default]
    Deny,
    /// Fail open.
    Allow,
}

words!(FailureMode: "enum FailureMode", Deny = "deny", Allow = "allow");

impl FailureMode {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureMode::Deny => "deny",
            FailureMode::Allow => "allow",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlobalRateLimit {
    pub cluster: String,
    pub domain: String,
    pub timeout_ms: u64,
    pub failure_mode: FailureMode,
    pub extra_entries: Vec<ExtraEntry>,
    /// Credit leased in blocks (`lease`); `None`: the service is asked for every request.
    pub lease: Option<LeaseRules>,
}

pub(crate) fn compile_global(raw: RawGlobalRateLimit) -> Result<GlobalRateLimit, ConfigError> {
    if raw.cluster.is_empty() {
        return err("global_rate_limit.cluster", "must not be empty");
    }
    if raw.domain.is_empty() {
        return err("global_rate_limit.domain", "must not be empty");
    }
    if raw.timeout_ms == 0 {
        return err(
            "global_rate_limit.timeout_ms",
            "must be at least 1 (0 would mean no timeout)",
        );
    }
    let lease = match raw.lease {
        Some(_) if !raw.extra_entries.is_empty() => {
            return err(
                "global_rate_limit.lease",
                "cannot be combined with extra_entries: leased credit is held per tenant, not \
                 per user or model",
            );
        }
        Some(lease) => Some(lease::compile(
            lease,
            "global_rate_limit.lease",
            raw.timeout_ms,
        )?),
        None => None,
    };
    Ok(GlobalRateLimit {
        cluster: raw.cluster,
        domain: raw.domain,
        timeout_ms: raw.timeout_ms,
        failure_mode: raw.failure_mode,
        extra_entries: raw.extra_entries,
        lease,
    })
}
