//! Per-tenant Envoy counters. Envoy has no tag API for Wasm metrics, so the tenant and the
//! reason are parts of the name, and the gateway's `stats_config.stats_tags` turn them into
//! labels (see `envoy/demo.yaml`):
//!
//! `tenant_guard.tenant.<tenant>.requests_allowed`
//! `tenant_guard.header_mode.held` / `.forwarded` (workers that learnt Envoy's header mode)
//! `tenant_guard.global.calls` (calls to the rate-limit service), `global.lease.from_credit`
//! (quota asks answered from leased credit, without a call), `global.lease.granted.requests` /
//! `.tokens` (units the service granted to this Envoy's leases)
//! `tenant_guard.tenant.<tenant>.requests_denied.reason.<reason>`
//! `tenant_guard.tenant.<tenant>.input_tokens` / `output_tokens` / `cost_micro_usd`
//!
//! Only the first `stats.max_tenant_series` configured tenants (in sorted order) get series of
//! their own; all others (and tenants admitted by `default_tenant`) count as `_other`, requests
//! without a verified tenant as `_none`, so the number of series stays bounded. A `.` in a
//! tenant id becomes `_` in the name, so the tag regexes can find the tenant's end.

use std::collections::{HashMap, HashSet};

use crate::host::abi;

pub struct Stats {
    /// Tenants with series of their own.
    named: HashSet<String>,
    /// Metric ids defined so far on this worker, by full name.
    ids: HashMap<String, u32>,
}

impl Stats {
    pub fn new<'a>(tenants: impl Iterator<Item = &'a str>, max_tenant_series: usize) -> Stats {
        Stats {
            named: tenants
                .take(max_tenant_series)
                .map(str::to_string)
                .collect(),
            ids: HashMap::new(),
        }
    }

    fn label(&self, tenant: Option<&str>) -> String {
        match tenant {
            None => "_none".into(),
            Some(t) if self.named.contains(t) => t.replace('.', "_"),
            Some(_) => "_other".into(),
        }
    }

    /// Adds `value` (> 0) to `tenant_guard.tenant.<tenant>.<metric>`.
    pub fn add(&mut self, tenant: Option<&str>, metric: &str, value: u64) {
        if value == 0 {
            return;
        }
        let name = format!("tenant_guard.tenant.{}.{metric}", self.label(tenant));
        self.increment(name, value);
    }

    /// Adds one to `tenant_guard.<metric>` (a counter of the whole gateway).
    pub fn count(&mut self, metric: &str) {
        self.increment(format!("tenant_guard.{metric}"), 1);
    }

    /// Adds `value` (> 0) to `tenant_guard.<metric>`.
    pub fn count_by(&mut self, metric: &str, value: u64) {
        if value > 0 {
            self.increment(format!("tenant_guard.{metric}"), value);
        }
    }

    fn increment(&mut self, name: String, value: u64) {
        let id = match self.ids.get(&name) {
            Some(id) => *id,
            None => match abi::define_counter(&name) {
                Ok(id) => {
                    self.ids.insert(name, id);
                    id
                }
                Err(_) => return,
            },
        };
        let _ = abi::increment_counter(id, i64::try_from(value).unwrap_or(i64::MAX));
    }
}
