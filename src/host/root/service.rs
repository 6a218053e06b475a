//! The root's side of the rate-limit service: the cluster check on the first tick, and the
//! token debits and refills of leased credit that streams leave on the worker's queues, sent
//! from here (their answers come back to the root context) and retried or followed up.

use super::Root;
use crate::host::global;
use crate::host::lease;
use crate::host::shared;
use crate::host::worker::Refill;
use crate::policy::lease::{Ended, Step};
use crate::policy::ratelimit::{Answer, Debit, Subject};

impl Root {
    /// On the first tick: can the rate-limit service's cluster be called at all? A missing or
    /// wrong cluster gets one clear error line now, not a puzzle at the first request.
    pub(super) fn check_rate_limit_cluster(&mut self) {
        if std::mem::replace(&mut self.cluster_checked, true) {
            return;
        }
        let Some(worker) = &self.worker else {
            return;
        };
        let worker = worker.borrow();
        let Some(rules) = &worker.config.global_rate_limit else {
            return;
        };
        match global::probe(rules) {
            Ok(token) => self.cluster_probe = Some(token),
            Err(status) => {
                if shared::first_to_say("rate-limit-cluster") {
                    log::error!(
                        "tenant-guard: global_rate_limit.cluster \"{}\" cannot be called \
                         ({status:?}): is it defined and does it speak HTTP/2? Until it can, \
                         every request follows failure_mode \"{}\"",
                        rules.cluster,
                        rules.failure_mode.as_str()
                    );
                }
            }
        }
    }

    /// Sends what streams left for the root: token debits and refills of leased credit.
    pub(super) fn send_queued(&mut self) {
        let (debits, refills) = match &self.worker {
            Some(worker) => {
                let mut worker = worker.borrow_mut();
                (
                    std::mem::take(&mut worker.debits),
                    std::mem::take(&mut worker.refills),
                )
            }
            None => return,
        };
        for debit in debits {
            self.send_debit(debit);
        }
        for refill in refills {
            self.send_refill(refill);
        }
    }

    /// Sends the next call of a refill; the answer comes back to this root context.
    fn send_refill(&mut self, refill: Refill) {
        let Some(worker) = self.worker.clone() else {
            return;
        };
        let sent = {
            let mut worker = worker.borrow_mut();
            let Some(rules) = worker.config.global_rate_limit.clone() else {
                return;
            };
            lease::send(&mut worker, &rules, &refill.holder, &refill.fetch)
        };
        match sent {
            Ok(token) => {
                self.refills_in_flight.insert(token, refill);
            }
            Err(status) => {
                log::warn!("tenant-guard: lease call not sent: {status:?}");
                self.refill_answered(refill, None);
            }
        }
    }

    /// Takes the answer to a refill's call into the tenant's credit; sends the next call.
    pub(super) fn refill_answered(&mut self, refill: Refill, answer: Option<&Answer>) {
        let Some(worker) = self.worker.clone() else {
            return;
        };
        let step = {
            let mut worker = worker.borrow_mut();
            let Some(rules) = worker
                .config
                .global_rate_limit
                .as_ref()
                .and_then(|g| g.lease)
            else {
                return;
            };
            let now_ms = super::super::now_ms().unwrap_or(0);
            lease::answered(
                &mut worker,
                &refill.holder,
                &rules,
                &refill.fetch,
                answer,
                now_ms,
            )
        };
        match step {
            Ok(Step::Again(fetch)) => self.send_refill(Refill { fetch, ..refill }),
            Ok(Step::Done(Ended::Failed)) => {
                if shared::first_to_say("lease-fetch-failed") {
                    log::warn!(
                        "tenant-guard: leased credit could not be fetched for tenant {} (the \
                         rate-limit service failed); held credit is spent, then requests follow \
                         failure_mode",
                        refill.holder.tenant
                    );
                }
            }
            Ok(Step::Done(_)) => {}
            Err(why) => log::error!("tenant-guard: leased credit not updated: {why}"),
        }
    }

    /// Sends (or sends again) a token debit; the answer comes back to this root context.
    fn send_debit(&mut self, debit: Debit) {
        let Some(worker) = &self.worker else {
            return;
        };
        let mut worker = worker.borrow_mut();
        worker.stats.count("global.calls");
        let Some(rules) = &worker.config.global_rate_limit else {
            return;
        };
        let subject = Subject {
            plan: debit.plan.as_deref(),
            tenant: &debit.tenant,
            user: debit.user.as_deref(),
            model: debit.model.as_deref(),
        };
        match global::call(rules, debit.quota, &subject, debit.hits()) {
            Ok(token) => {
                self.debits_in_flight.insert(token, debit);
            }
            Err(status) => {
                log::warn!(
                    "tenant-guard: token debit for tenant {} not sent: {status:?}",
                    debit.tenant
                );
                drop(worker);
                // As a failed call: retried a few times, and its round still ends.
                self.debit_answered(debit, None);
            }
        }
    }

    /// Takes the answer to a debit's call (`None`: it failed); sends what follows.
    pub(super) fn debit_answered(&mut self, debit: Debit, answer: Option<&Answer>) {
        let tenant = debit.tenant.clone();
        let next = self.debits.answered(debit, answer);
        if let Some(tokens) = next.gave_up {
            log::warn!(
                "tenant-guard: rate-limit service took no debit of {tokens} tokens for tenant \
                 {tenant}"
            );
        }
        for debit in next.send {
            self.send_debit(debit);
        }
    }
}
