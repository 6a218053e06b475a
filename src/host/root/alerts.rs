//! The alert webhook, sent from the root context (never from a request's path): bodies the
//! streams queued in the worker's outbox are POSTed through the operator's Envoy cluster, at
//! most `alerts::MAX_IN_FLIGHT` at once, each with the webhook's timeout; a failure (no answer,
//! a timeout, a status other than 2xx) is retried after a back-off up to `retries` times, then
//! dropped and counted. The audit line is the record of truth; this is best effort.

use std::time::Duration;

use proxy_wasm::hostcalls;
use proxy_wasm::types::MapType;

use super::Root;
use crate::host::shared;
use crate::policy::alerts::{self, Delivery};

impl Root {
    /// Sends the queued webhook bodies that are due, within the in-flight bound.
    pub(super) fn send_alerts(&mut self) {
        let Some(worker) = &self.worker else {
            return;
        };
        let mut worker = worker.borrow_mut();
        let Some(webhook) = worker.config.alerts_webhook.clone() else {
            return;
        };
        let now_ms = crate::host::now_ms().unwrap_or(0);
        while self.alerts_in_flight.len() < alerts::MAX_IN_FLIGHT {
            let Some(delivery) = worker.alerts.take_due(now_ms) else {
                break;
            };
            let headers = vec![
                (":method", "POST"),
                (":path", webhook.path.as_str()),
                (":authority", webhook.authority.as_str()),
                ("content-type", "application/json"),
                ("user-agent", "tenant-guard"),
            ];
            let timeout = Duration::from_millis(webhook.timeout_ms);
            match hostcalls::dispatch_http_call(
                &webhook.cluster,
                headers,
                Some(&delivery.body),
                vec![],
                timeout,
            ) {
                Ok(token) => {
                    self.alerts_in_flight.insert(token, delivery);
                }
                Err(status) => {
                    if shared::first_to_say("alerts-webhook-dispatch") {
                        log::warn!(
                            "tenant-guard: alert webhook not sent through cluster {}: {status:?} \
                             (the audit stream still has every threshold crossing)",
                            webhook.cluster
                        );
                    }
                    worker.stats.count("alerts.webhook_failed");
                    worker.alerts.failed(delivery, webhook.retries, now_ms);
                }
            }
        }
        let dropped = worker.alerts.take_dropped();
        worker.stats.count_by("alerts.webhook_dropped", dropped);
    }

    /// The webhook's answer (or its timeout) to `delivery`.
    pub(super) fn alert_answered(&mut self, delivery: Delivery) {
        let Some(worker) = &self.worker else {
            return;
        };
        let status = hostcalls::get_map_value(MapType::HttpCallResponseHeaders, ":status")
            .ok()
            .flatten();
        {
            let mut worker = worker.borrow_mut();
            let retries = worker
                .config
                .alerts_webhook
                .as_ref()
                .map_or(0, |w| w.retries);
            if alerts::delivered(status.as_deref()) {
                worker.stats.count("alerts.webhook_delivered");
            } else {
                worker.stats.count("alerts.webhook_failed");
                let now_ms = crate::host::now_ms().unwrap_or(0);
                worker.alerts.failed(delivery, retries, now_ms);
            }
        }
        // Room for the next one.
        self.send_alerts();
    }
}
