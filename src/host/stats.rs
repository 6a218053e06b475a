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
//! `tenant_guard.tenant.<tenant>.used_permille.<window>`: a gauge, the fraction of a token
//! window (`tokens_<window_s>s`) or of the monthly budget (`budget`) used, in permille, as of
//! the tenant's last settled request (tenants with series of their own only; see
//! `host::alerts`)
//! `tenant_guard.alerts.budget_threshold` (crossings announced), `alerts.webhook_delivered` /
//! `.webhook_failed` (attempts) / `.webhook_dropped` (deliveries given up or pushed out)
//! `tenant_guard.provider.<provider>.jwks_stale`: a gauge, the filter's VMs (one per worker and
//! one on Envoy's main thread, each fetching) whose remote keys of that provider are stale (no
//! good fetch for `remote_jwks.max_stale_s`; 0 when all is well)
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
    /// Metric ids of the per-tenant series defined so far on this worker: by the tenant's key
    /// (see [`Stats::key`]), then by metric.
    tenants: HashMap<String, HashMap<String, u32>>,
    /// Metric ids of the gateway's own counters, by metric.
    gateway: HashMap<String, u32>,
    /// Metric ids of the gateway's gauges, by metric.
    gauges: HashMap<String, u32>,
}

impl Stats {
    pub fn new<'a>(tenants: impl Iterator<Item = &'a str>, max_tenant_series: usize) -> Stats {
        Stats {
            named: tenants
                .take(max_tenant_series)
                .map(str::to_string)
                .collect(),
            tenants: HashMap::new(),
            gateway: HashMap::new(),
            gauges: HashMap::new(),
        }
    }

    /// The tenant's series key: its id when it has series of its own (the label is then
    /// derived from it), else the shared label.
    fn key<'a>(&self, tenant: Option<&'a str>) -> &'a str {
        match tenant {
            None => "_none",
            Some(t) if self.named.contains(t) => t,
            Some(_) => "_other",
        }
    }

    /// Adds `value` (> 0) to `tenant_guard.tenant.<tenant>.<metric>`.
    pub fn add(&mut self, tenant: Option<&str>, metric: &str, value: u64) {
        if value == 0 {
            return;
        }
        let key = self.key(tenant);
        let known = self.tenants.get(key).and_then(|ids| ids.get(metric));
        let id = match known {
            Some(id) => *id,
            None => {
                // Named tenants' ids with a `.` are labelled with `_`; others are labels already.
                let label = key.replace('.', "_");
                let Ok(id) = abi::define_counter(&format!("tenant_guard.tenant.{label}.{metric}"))
                else {
                    return;
                };
                self.tenants
                    .entry(key.to_string())
                    .or_default()
                    .insert(metric.to_string(), id);
                id
            }
        };
        increment(id, value);
    }

    /// Adds one to `tenant_guard.<metric>` (a counter of the whole gateway).
    pub fn count(&mut self, metric: &str) {
        self.count_by(metric, 1);
    }

    /// Adds `value` (> 0) to `tenant_guard.<metric>`.
    pub fn count_by(&mut self, metric: &str, value: u64) {
        if value == 0 {
            return;
        }
        let id = match self.gateway.get(metric) {
            Some(id) => *id,
            None => {
                let Ok(id) = abi::define_counter(&format!("tenant_guard.{metric}")) else {
                    return;
                };
                self.gateway.insert(metric.to_string(), id);
                id
            }
        };
        increment(id, value);
    }

    /// Moves the gauge `tenant_guard.provider.<provider>.jwks_stale` by `by` (`.` in the
    /// provider's name becomes `_`).
    pub fn jwks_stale(&mut self, provider: &str, by: i64) {
        let metric = format!("provider.{}.jwks_stale", provider.replace('.', "_"));
        let id = match self.gauges.get(&metric) {
            Some(id) => *id,
            None => {
                let Ok(id) = abi::define_gauge(&format!("tenant_guard.{metric}")) else {
                    return;
                };
                self.gauges.insert(metric, id);
                id
            }
        };
        let _ = abi::increment_counter(id, by);
    }
}

impl Stats {
    /// Whether `tenant` has stats of its own (`stats.tenants`).
    pub fn has_tenant(&self, tenant: &str) -> bool {
        self.named.contains(tenant)
    }

    /// Sets the gauge `tenant_guard.tenant.<tenant>.<metric>` of a tenant with series of its
    /// own; others have none (a shared `_other` gauge would mean nothing).
    pub fn set_tenant_gauge(&mut self, tenant: &str, metric: &str, value: u64) {
        if !self.named.contains(tenant) {
            return;
        }
        let name = format!("tenant.{}.{metric}", tenant.replace('.', "_"));
        let id = match self.gauges.get(&name) {
            Some(id) => *id,
            None => {
                let Ok(id) = abi::define_gauge(&format!("tenant_guard.{name}")) else {
                    return;
                };
                self.gauges.insert(name, id);
                id
            }
        };
        let _ = abi::record_metric(id, value);
    }
}

fn increment(id: u32, value: u64) {
    let _ = abi::increment_counter(id, i64::try_from(value).unwrap_or(i64::MAX));
}
