//! Alerts before the limit, on the stream's side: after a request's settlement, the tenant's
//! gauges of the fraction used, and the thresholds its real usage crossed, announced once per
//! period for the whole process by compare-and-swap on the tenant's marks (`policy::alerts`):
//! an audit line, and a webhook body queued for the worker's root context, which sends it
//! (`host::root::alerts`). Nothing here waits on the network or refuses a request.

use crate::host::shared::{QuotaKey, UpdateError};
use crate::host::worker::Worker;
use crate::policy::alerts::{self, Marks};
use crate::policy::audit;
use crate::policy::plan::Limits;
use crate::policy::quota::{self, QuotaState};

/// What a settled request of `tenant` left in its counters (`state`, at `now`): gauges set,
/// crossings announced. The audit lines written, for the request's filter state.
pub fn settled(
    worker: &mut Worker,
    key: &QuotaKey,
    tenant: &str,
    limits: &Limits,
    state: &QuotaState,
    now: u64,
    request_id: &str,
) -> Vec<String> {
    let gauges = worker.stats.has_tenant(tenant);
    if !gauges && limits.alerts.is_empty() {
        // Neither gauges nor alerts: nothing to compute for this request.
        return Vec::new();
    }
    let usages = quota::usage(state, limits, now);
    if gauges {
        for usage in &usages {
            let metric = format!("used_permille.{}", usage.meter.name());
            worker
                .stats
                .set_tenant_gauge(tenant, &metric, usage.permille());
        }
    }
    if limits.alerts.is_empty() || usages.is_empty() {
        return Vec::new();
    }
    let thresholds = &limits.alerts;
    let announced = worker.quotas.update_alert_marks(key, |bytes| {
        let marks = Marks::decode(bytes);
        let (next, crossings) = alerts::announce(&marks, thresholds, &usages);
        if next == marks {
            // Nothing new: no write.
            return Err(());
        }
        Ok((next.encode(), crossings))
    });
    let crossings = match announced {
        Ok(crossings) => crossings,
        Err(UpdateError::Refused(())) => return Vec::new(),
        Err(UpdateError::Unavailable(why)) => {
            log::error!("tenant-guard: alert marks of tenant {tenant} not updated: {why}");
            return Vec::new();
        }
    };
    let now_ms = super::now_ms().unwrap_or(now.saturating_mul(1000));
    let mut lines = Vec::with_capacity(crossings.len());
    for crossing in &crossings {
        let event = alerts::Event::new(
            crossing,
            tenant,
            request_id,
            audit::rfc3339_millis(now_ms),
            audit::rfc3339_millis,
        );
        let line = worker.audit.line(&event);
        log::info!("{line}");
        lines.push(line);
        worker.stats.count("alerts.budget_threshold");
        if worker.config.alerts_webhook.is_some() {
            worker.alerts.push_body(event.webhook_body(), now_ms);
        }
    }
    if worker.config.alerts_webhook.is_some() && !crossings.is_empty() {
        worker.wake_root();
    }
    lines
}
