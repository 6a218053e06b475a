//! A stream's side of leased credit (`global_rate_limit.lease`): its quota asks are answered
//! from credit in shared data when there is some (at once, no call), else by a fetch the
//! request waits for. Blocks fetched ahead of need are left to the root context.

use crate::host::lease;
use crate::host::worker::{Holder, Refill};
use crate::policy::lease::{Ended, Fetch, LeaseRules, Step, Take};
use crate::policy::ratelimit::{Answer, Quota, Usage, Verdict};
use crate::policy::stream::Event;

use super::{rules, Call, Filter};

/// The answer the stream gets for a unit taken from credit.
fn granted() -> Answer {
    Answer {
        verdict: Verdict::Ok,
        reset_after: None,
        limit_remaining: None,
        response_headers: Vec::new(),
    }
}

/// The answer the stream gets when nothing more is granted: a 429 with `Retry-After`, and the
/// service's own headers when it said so itself.
fn refused(retry_after_s: u64, service: Option<&Answer>) -> Answer {
    Answer {
        verdict: Verdict::OverLimit,
        reset_after: Some(retry_after_s),
        limit_remaining: None,
        response_headers: service
            .filter(|a| a.verdict == Verdict::OverLimit)
            .map(|a| a.response_headers.clone())
            .unwrap_or_default(),
    }
}

impl Filter {
    fn holder(&self) -> Option<Holder> {
        let admitted = self.admitted.as_ref()?;
        Some(Holder {
            key: admitted.key.clone(),
            tenant: admitted.tenant.clone(),
            plan: admitted.plan.clone(),
        })
    }

    /// Answers the stream's ask about `usage` from leased credit, or fetches it.
    pub(super) fn take_credit(&mut self, usage: Usage, rules: &LeaseRules) {
        let (Some(holder), Some(admitted)) = (self.holder(), &self.admitted) else {
            return;
        };
        if admitted.stream.refused() {
            // Refused by the answer to its other ask: it takes nothing more.
            return;
        }
        let need = match usage {
            Usage::Requests => 1,
            Usage::Tokens => admitted.stream.demand().tokens.max(1),
        };
        let now_ms = super::super::now_ms().unwrap_or(0);
        let taken = {
            let mut worker = self.worker.borrow_mut();
            let taken = lease::take(&mut worker, &holder, rules, usage, need, now_ms);
            let refill = match &taken {
                Ok(Take::Covered { refill, .. }) => *refill,
                Ok(Take::Unavailable { probe }) => *probe,
                _ => None,
            };
            if let Some(fetch) = refill {
                worker.refills.push(Refill {
                    holder: holder.clone(),
                    fetch,
                });
                worker.wake_root();
            }
            if let Ok(Take::Covered { .. }) = &taken {
                worker.stats.count("global.lease.from_credit");
            }
            taken
        };
        match taken {
            Ok(Take::Covered { generation, .. }) => {
                self.note_taken(usage, generation, need);
                self.answer_at_once(usage, Some(&granted()));
            }
            Ok(Take::Fetch(fetch)) | Ok(Take::Ask(fetch)) => {
                self.event(Event::CallSent);
                self.send_fetch(&holder, fetch);
            }
            Ok(Take::Exhausted { retry_after_s }) => {
                self.answer_at_once(usage, Some(&refused(retry_after_s, None)));
            }
            Ok(Take::Unavailable { .. }) => self.answer_at_once(usage, None),
            Err(why) => {
                log::error!("tenant-guard: leased credit unavailable: {why}");
                self.answer_at_once(usage, None);
            }
        }
    }

    /// Remembers the tokens a request took from credit, to settle them when it ends.
    fn note_taken(&mut self, usage: Usage, generation: u32, units: u64) {
        if let (Usage::Tokens, Some(admitted)) = (usage, &mut self.admitted) {
            admitted.lease_tokens = Some((generation, units));
        }
    }

    /// Tokens granted to a request that was refused meanwhile (its stream already settled)
    /// go back to the credit.
    fn give_back_if_settled(&mut self, usage: Usage, holder: &Holder) {
        let Some(admitted) = &mut self.admitted else {
            return;
        };
        if usage != Usage::Tokens || !admitted.stream.phase().is_settled() {
            return;
        }
        let Some((generation, units)) = admitted.lease_tokens.take() else {
            return;
        };
        let now_ms = super::super::now_ms().unwrap_or(0);
        let mut worker = self.worker.borrow_mut();
        if let Err(why) =
            lease::settle(&mut worker, &holder.key, Some(generation), units, 0, now_ms)
        {
            log::error!("tenant-guard: leased credit not settled: {why}");
        }
    }

    /// Tells the stream an answer known now, inside the request callback that asked.
    fn answer_at_once(&mut self, usage: Usage, answer: Option<&Answer>) {
        let effects = {
            let Some(admitted) = &mut self.admitted else {
                return;
            };
            let worker = self.worker.borrow();
            let owners = worker.objects.now();
            admitted
                .stream
                .answered_at_once(usage, answer, &rules(&worker, &owners))
        };
        self.execute(effects);
    }

    /// Sends the next call of a fetch the request waits for (the stream counts it in flight).
    fn send_fetch(&mut self, holder: &Holder, fetch: Fetch) {
        let sent = {
            let mut worker = self.worker.borrow_mut();
            let Some(rules) = worker.config.global_rate_limit.clone() else {
                return;
            };
            lease::send(&mut worker, &rules, holder, &fetch)
        };
        match sent {
            Ok(token) => {
                if let Some(admitted) = &mut self.admitted {
                    admitted.calls.push((token, Call::Lease(fetch)));
                }
            }
            Err(status) => {
                log::warn!("tenant-guard: lease call not sent: {status:?}");
                self.fetch_answered(fetch, None);
            }
        }
    }

    /// Takes the answer to a call of the fetch the request waits for; tells the stream once
    /// the fetch ended.
    pub(super) fn fetch_answered(&mut self, fetch: Fetch, answer: Option<&Answer>) {
        let Some(holder) = self.holder() else {
            return;
        };
        let step = {
            let mut worker = self.worker.borrow_mut();
            let Some(rules) = worker
                .config
                .global_rate_limit
                .as_ref()
                .and_then(|g| g.lease)
            else {
                return;
            };
            let now_ms = super::super::now_ms().unwrap_or(0);
            lease::answered(&mut worker, &holder, &rules, &fetch, answer, now_ms)
        };
        let usage = fetch.usage;
        let outcome = match step {
            Ok(Step::Again(next)) => return self.send_fetch(&holder, next),
            Ok(Step::Done(Ended::Admitted { generation })) => {
                self.note_taken(usage, generation, fetch.need());
                self.give_back_if_settled(usage, &holder);
                Some(granted())
            }
            Ok(Step::Done(Ended::Refused { retry_after_s })) => {
                Some(refused(retry_after_s, answer))
            }
            Ok(Step::Done(Ended::Failed | Ended::Granted)) => None,
            Err(why) => {
                log::error!("tenant-guard: leased credit not updated: {why}");
                None
            }
        };
        self.event(Event::CallAnswered {
            quota: Quota::tenant(usage),
            answer: outcome.as_ref(),
        });
    }
}
