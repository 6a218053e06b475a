//! Executing what a stream's core returns ([`Effects`]), in the order it must happen: body
//! and header edits, reservations and output caps in shared data, local replies, rate-limit
//! calls, and the one settlement of the request (counters, leased credit or a token debit,
//! object ownership, stats, the record's usage).

use proxy_wasm::types::{BufferType, MapType};

use super::{lossy, rules, write_filter_state, Call, Filter};
use crate::host::abi;
use crate::host::global;
use crate::host::lease;
use crate::policy::cost;
use crate::policy::isolation;
use crate::policy::isolation::objects::{self, Inserted};
use crate::policy::output_cap;
use crate::policy::quota::{self, Demand};
use crate::policy::ratelimit::{self, Debit, Quota, Subject, Usage};
use crate::policy::stream::{self, Capping, Effects, Event};
use crate::policy::user_quota;

impl Filter {
    /// Executes the core's effects, in the order they must happen.
    pub(super) fn execute(&mut self, effects: Effects) {
        if let Some(ask) = effects.cap {
            let capping = self.cap(&ask);
            let more = {
                let Some(admitted) = &mut self.admitted else {
                    return;
                };
                let worker = self.worker.borrow();
                let owners = worker.objects.now();
                admitted.stream.capped(capping, &rules(&worker, &owners))
            };
            let cap = self.admitted.as_ref().and_then(|a| a.stream.output_cap());
            if let (Some(cap), Some(record)) = (cap, &mut self.record) {
                record.output_cap = Some(cap);
            }
            self.execute(more);
        }
        if effects.plain_answer {
            let _ = abi::remove_header(MapType::HttpRequestHeaders, "accept-encoding");
        }
        if effects.drop_content_length {
            let _ = abi::remove_header(MapType::HttpRequestHeaders, "content-length");
        }
        if let Some(body) = &effects.new_body {
            let _ = abi::set_buffer(BufferType::HttpRequestBody, self.request_body_len, body);
        }
        if let Some(length) = effects.content_length {
            let value = length.to_string();
            let _ = abi::set_header(
                MapType::HttpRequestHeaders,
                "content-length",
                value.as_bytes(),
            );
        }
        if let Some(demand) = effects.reserve {
            self.reserve(demand);
        }
        if let Some((reason, detail)) = &effects.shadowed {
            let tenant = self.admitted.as_ref().map(|a| a.tenant.clone());
            self.shadow_denied(tenant.as_deref().unwrap_or_default(), *reason, detail);
        }
        if let Some(reason) = effects.admitted_despite {
            let fields = self.state_fields;
            if let Some(record) = &mut self.record {
                record.admitted_despite(reason);
                write_filter_state(&record.filter_state(fields));
            }
        }
        if let Some(refusal) = &effects.refuse {
            self.reply(refusal.reason, &refusal.detail, &refusal.reply);
        }
        if let Some(settlement) = effects.settle {
            self.settle(settlement);
        }
        if effects.drop_response_length {
            let _ = abi::remove_header(MapType::HttpResponseHeaders, "content-length");
        }
        if effects.private_cache {
            let map = MapType::HttpResponseHeaders;
            let existing = lossy(abi::header(map, "cache-control").ok().flatten());
            let existing = (!existing.is_empty()).then_some(existing.as_str());
            if let Some(value) = isolation::private_cache_control(existing) {
                let _ = abi::set_header(map, "cache-control", value.as_bytes());
            }
        }
        if let Some(body) = &effects.new_response_body {
            let _ = abi::set_buffer(BufferType::HttpResponseBody, self.response_body_len, body);
        }
        if effects.reset_response {
            let _ = abi::reset_response();
        }
        for quota in effects.ask.quotas() {
            self.ask(quota);
        }
        if effects.resume {
            let _ = abi::resume_request();
        }
    }

    /// Replaces the request's reservation by one for `demand` (the body's estimate), in its
    /// tenant's counters and its user's.
    fn reserve(&mut self, demand: Demand) {
        let Some(admitted) = &mut self.admitted else {
            return;
        };
        let Some(provisional) = admitted.stream.held() else {
            return;
        };
        let now = super::super::now().unwrap_or(0);
        let reserved = {
            let mut worker = self.worker.borrow_mut();
            let mut books = worker.books(&admitted.key, admitted.user.as_deref(), &admitted.limits);
            user_quota::reserve(&mut books, &admitted.limits, now, &provisional, demand)
        };
        match reserved {
            Some(reservation) => admitted.stream.reserved(reservation),
            None => log::error!("tenant-guard: could not reserve a request's estimate"),
        }
    }

    /// Replaces the request's reservation by one for its output limit capped to the room left
    /// in its user's and its tenant's windows (`output_cap`), or learns that nothing fits.
    fn cap(&mut self, ask: &output_cap::Ask) -> Capping {
        let Some(admitted) = &self.admitted else {
            return Capping::Unavailable;
        };
        let (Some(provisional), Some(rule)) = (admitted.stream.held(), admitted.limits.output_cap)
        else {
            return Capping::Unavailable;
        };
        let now = super::super::now().unwrap_or(0);
        let capped = {
            let mut worker = self.worker.borrow_mut();
            let mut books = worker.books(&admitted.key, admitted.user.as_deref(), &admitted.limits);
            user_quota::cap(&mut books, &admitted.limits, now, &provisional, ask, rule)
        };
        match capped {
            user_quota::Capped::Reserved(reservation, cap) => Capping::Reserved(reservation, cap),
            user_quota::Capped::Refused(refusal) => Capping::Refused(refusal),
            user_quota::Capped::Unavailable(why) => {
                log::error!("tenant-guard: could not cap a request's output: {why}");
                Capping::Unavailable
            }
        }
    }

    /// Sends one rate-limit call about the admitted request, and tells its stream; with a
    /// lease, takes leased credit instead.
    fn ask(&mut self, quota: ratelimit::Quota) {
        let lease = {
            let worker = self.worker.borrow();
            worker
                .config
                .global_rate_limit
                .as_ref()
                .and_then(|g| g.lease)
        };
        if let Some(rules) = lease {
            // Leased credit is the tenant's: a stream never asks about a user's with a lease.
            if !quota.user {
                self.take_credit(quota.usage, &rules);
            }
            return;
        }
        let sent = {
            let Some(admitted) = &self.admitted else {
                return;
            };
            let worker = self.worker.borrow();
            let Some(rules) = &worker.config.global_rate_limit else {
                return;
            };
            let pricing = &worker.config.pricing;
            let subject = Subject {
                plan: admitted.plan.as_deref(),
                tenant: &admitted.tenant,
                user: admitted.user.as_deref(),
                model: admitted
                    .stream
                    .request_model()
                    .map(|m| cost::known_model(pricing, m)),
            };
            // Requests count one; tokens are only checked (0) and debited after the response.
            let hits = match quota.usage {
                ratelimit::Usage::Requests => 1,
                ratelimit::Usage::Tokens => 0,
            };
            let sent = global::call(rules, quota, &subject, hits);
            drop(worker);
            self.worker.borrow_mut().stats.count("global.calls");
            sent
        };
        match sent {
            Ok(token) => {
                if let Some(admitted) = &mut self.admitted {
                    admitted.calls.push((token, Call::Check(quota)));
                }
                self.event(Event::CallSent);
            }
            Err(status) => {
                log::warn!("tenant-guard: rate-limit service call not sent: {status:?}");
                // Counted as sent, then answered: the stream's count of calls in flight stays
                // right while others are still out.
                self.event(Event::CallSent);
                self.event(Event::CallAnswered {
                    quota,
                    answer: None,
                });
            }
        }
    }

    /// Returns the request's reservation, charges what the charging rule says, and records it.
    fn settle(&mut self, settlement: stream::Settlement) {
        let Some(admitted) = &self.admitted else {
            return;
        };
        let mut worker = self.worker.borrow_mut();
        let charge = settlement.charge();
        // Nothing held and nothing used: the counters stay as they are.
        let reservation = settlement
            .reservation
            .as_ref()
            .filter(|r| r.demand != Demand::default() || charge != quota::Actual::default());
        if let Some(reservation) = reservation {
            let now = super::super::now().unwrap_or(reservation.admitted_at);
            let mut books = worker.books(&admitted.key, admitted.user.as_deref(), &admitted.limits);
            let settled =
                user_quota::settle(&mut books, &admitted.limits, now, reservation, charge);
            match settled {
                Ok(Some(state)) => {
                    let request_id = self.record.as_ref().map(|r| r.request_id.as_str());
                    let lines = crate::host::alerts::settled(
                        &mut worker,
                        &admitted.key,
                        &admitted.tenant,
                        &admitted.limits,
                        &state,
                        now,
                        request_id.unwrap_or_default(),
                    );
                    if !lines.is_empty() {
                        // Filter state for the audit access log; on_log adds its own line.
                        let mut text = worker.audit_start.take().unwrap_or_default();
                        for line in lines {
                            if !text.is_empty() {
                                text.push('\n');
                            }
                            text.push_str(&line);
                        }
                        let _ = abi::set_filter_state("audit", text.as_bytes());
                        self.alert_audit = Some(text);
                    }
                }
                Ok(None) => {}
                Err(why) => {
                    log::error!("tenant-guard: could not settle a reservation: {why}");
                }
            }
        }
        if worker
            .config
            .global_rate_limit
            .as_ref()
            .is_some_and(|g| g.lease.is_some())
        {
            // What the request took from leased credit goes back, or what it used beyond.
            let (generation, reserved) = match admitted.lease_tokens {
                Some((generation, reserved)) => (Some(generation), reserved),
                None => (None, 0),
            };
            if reserved > 0 || settlement.debit_tokens > 0 {
                let now_ms = super::super::now_ms().unwrap_or(0);
                let used = settlement.debit_tokens;
                if let Err(why) = lease::settle(
                    &mut worker,
                    &admitted.key,
                    generation,
                    reserved,
                    used,
                    now_ms,
                ) {
                    log::error!("tenant-guard: leased credit not settled: {why}");
                }
            }
        } else if settlement.debit_tokens > 0 {
            // Sent by the root context, woken at once, where its answer can be seen and
            // retried. The descriptor the admission's check used: the request's model.
            let model = admitted
                .stream
                .request_model()
                .map(|m| cost::known_model(&worker.config.pricing, m).to_string());
            let debit = |quota| {
                Debit::new(
                    quota,
                    admitted.tenant.clone(),
                    admitted.plan.clone(),
                    admitted.user.clone(),
                    model.clone(),
                    settlement.debit_tokens,
                )
            };
            worker.debits.push(debit(Quota::tenant(Usage::Tokens)));
            if settlement.debit_user {
                worker.debits.push(debit(Quota::user(Usage::Tokens)));
            }
            worker.wake_root();
        }
        if let Some(id) = &settlement.created {
            let owner = objects::owner_digest(&admitted.quota_id);
            let now = super::super::now().unwrap_or(0);
            match worker.objects.record(id, owner, now) {
                Ok(Inserted::Added) => {}
                Ok(Inserted::Evicted) => worker.stats.count("objects.evicted"),
                Err(why) => log::error!("tenant-guard: object ownership not recorded: {why}"),
            }
        }
        if settlement.phase == stream::Phase::Refused {
            return;
        }
        let Some(outcome) = &settlement.outcome else {
            return;
        };
        let tenant = Some(admitted.tenant.as_str());
        if let Some(usage) = outcome.usage {
            worker.stats.add(tenant, "input_tokens", usage.input_tokens);
            worker
                .stats
                .add(tenant, "output_tokens", usage.output_tokens);
        }
        if let Some(cost) = outcome.cost {
            worker
                .stats
                .add(tenant, "cost_micro_usd", cost.micro_usd_ceil());
        }
        let fields = self.state_fields;
        if let Some(record) = &mut self.record {
            record.meter(outcome);
            write_filter_state(&record.usage_state(fields));
        }
    }
}
