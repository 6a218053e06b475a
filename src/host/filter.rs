//! One HTTP stream: gathers the request's facts, asks the core for decisions, executes them,
//! meters the response and writes the record.

use std::cell::RefCell;
use std::rc::Rc;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, BufferType, MapType};

use crate::host::global;
use crate::host::root::Worker;
use crate::host::shared::{self, UpdateError};
use crate::policy::config::{ExtraEntry, FailureMode, Limits};
use crate::policy::decision::{self, Admission, Decision, HeaderEdit, RequestFacts};
use crate::policy::denial::{self, LocalReply, Reason};
use crate::policy::metering::{self, Meter};
use crate::policy::quota::{self, Demand, Refusal, Reservation, WindowStatus};
use crate::policy::ratelimit::{self, Debit, Subject, Verdict};
use crate::policy::record::{Record, RequestInfo};
use crate::policy::vector_store::{self, BodyPlan, ResponsePlan};

pub struct Filter {
    worker: Rc<RefCell<Worker>>,
    /// Set once the request headers were decided; written to the log in `on_log`.
    record: Option<Record>,
    /// The admitted request, from its headers to the end of its response.
    admitted: Option<Admitted>,
    /// The filter answered the client itself: its own response callbacks see that local reply
    /// too and must leave it alone.
    replied: bool,
}

/// Where a request is when the filter asks the rate-limit service about it.
#[derive(Clone, Copy)]
enum Stage {
    Headers { body_follows: bool },
    Body,
}

struct Admitted {
    tenant: String,
    user: Option<String>,
    plan: Option<String>,
    limits: Limits,
    /// `:path` as sent upstream.
    path: String,
    body_plan: Option<BodyPlan>,
    response_plan: Option<ResponsePlan>,
    /// Set once the body was read (or will not be): until then the body is held. Settled
    /// once when the response ends.
    meter: Option<Meter>,
    reservation: Option<Reservation>,
    windows: Vec<WindowStatus>,
    /// Rate-limit service calls still out, by callout token.
    global_pending: Vec<(u32, ratelimit::Usage)>,
    settled: bool,
}

impl Filter {
    pub fn new(worker: Rc<RefCell<Worker>>) -> Filter {
        Filter {
            worker,
            record: None,
            admitted: None,
            replied: false,
        }
    }

    /// Answers the client instead of the upstream, and turns the record into that denial.
    fn refuse(&mut self, reason: Reason, detail: String, reply: LocalReply) -> Action {
        if let Some(record) = &mut self.record {
            record.deny(reason, detail);
            write_filter_state(&record.filter_state());
        }
        let headers = reply
            .headers
            .iter()
            .map(|(n, v)| (*n, v.as_str()))
            .collect();
        let _ = hostcalls::send_http_response(reply.status, headers, Some(reply.body.as_bytes()));
        self.replied = true;
        Action::Pause
    }

    /// Admits the request against every window of its tenant's quotas (from its headers,
    /// before the upstream sees anything).
    fn admit_quota(&mut self, end_of_stream: bool) -> Result<(), Refusal> {
        let Some(admitted) = &mut self.admitted else {
            return Ok(());
        };
        if admitted.limits.is_empty() {
            return Ok(());
        }
        // Held from this moment, so requests whose bodies come late cannot all pile in; the
        // body's own estimate replaces it.
        let demand = if end_of_stream {
            Demand::default()
        } else {
            let content_length =
                hostcalls::get_map_value(MapType::HttpRequestHeaders, "content-length")
                    .ok()
                    .flatten()
                    .and_then(|v| v.parse().ok());
            let worker = self.worker.borrow();
            metering::provisional_demand(
                content_length,
                &worker.config.usage,
                &worker.config.pricing,
            )
        };
        let now = super::now().unwrap_or(0);
        let limits = &admitted.limits;
        let outcome = shared::update(&shared::quota_key(&admitted.tenant), |bytes| {
            let state = quota::QuotaState::decode(bytes);
            quota::admit(&state, limits, now, demand)
                .map(|a| (a.state.encode(), (a.reservation, a.windows)))
        });
        match outcome {
            Ok((reservation, windows)) => {
                admitted.reservation = Some(reservation);
                admitted.windows = windows;
                Ok(())
            }
            Err(UpdateError::Refused(refusal)) => Err(refusal),
            Err(UpdateError::Unavailable(why)) => {
                log::error!("tenant-guard: quota state unavailable: {why}");
                Err(Refusal {
                    reason: Reason::RequestQuotaExceeded,
                    retry_after: 1,
                    windows: Vec::new(),
                })
            }
        }
    }

    /// Starts metering once the body is known (or will not be read), and reserves the
    /// estimate it suggests against the tenant's token and budget windows.
    fn start_meter(&mut self, body: Option<&[u8]>) {
        let worker = self.worker.borrow();
        let Some(admitted) = &mut self.admitted else {
            return;
        };
        let held = admitted.reservation.map(|r| r.demand).unwrap_or_default();
        let meter = Meter::new(body, held, &worker.config.usage, &worker.config.pricing);
        let demand = meter.demand();
        admitted.meter = Some(meter);
        let Some(provisional) = admitted.reservation else {
            return;
        };
        if provisional.demand == demand {
            return;
        }
        let now = super::now().unwrap_or(0);
        let limits = &admitted.limits;
        let reserved = shared::update(&shared::quota_key(&admitted.tenant), |bytes| {
            let state = quota::QuotaState::decode(bytes);
            let (next, reservation) = quota::reserve(&state, limits, now, &provisional, demand);
            Ok::<_, ()>((next.encode(), reservation))
        });
        match reserved {
            Ok(reservation) => admitted.reservation = Some(reservation),
            Err(_) => log::error!("tenant-guard: could not reserve a request's estimate"),
        }
    }

    fn quota_refused(&mut self, refusal: Refusal) -> Action {
        let mut reply = denial::reply(refusal.reason);
        reply
            .headers
            .push(("retry-after", refusal.retry_after.to_string()));
        reply
            .headers
            .extend(quota::rate_limit_headers(&refusal.windows));
        let detail = format!("retry after {}s", refusal.retry_after);
        self.refuse(refusal.reason, detail, reply)
    }

    /// Settles the reservation with what the response said, once, and records the usage.
    fn settle(&mut self) {
        let Some(admitted) = &mut self.admitted else {
            return;
        };
        let Some(meter) = &admitted.meter else {
            return;
        };
        if admitted.settled {
            return;
        }
        admitted.settled = true;
        let mut worker = self.worker.borrow_mut();
        let outcome = meter.outcome(&worker.config.pricing);
        if let Some(reservation) = &admitted.reservation {
            let now = super::now().unwrap_or(reservation.admitted_at);
            let limits = &admitted.limits;
            // Refused after its admission (by the rate-limit service, a body rule): the
            // upstream never answered, so the reservation goes back.
            let charge = if self.replied {
                quota::Actual::default()
            } else {
                outcome.charge
            };
            let settled = shared::update(&shared::quota_key(&admitted.tenant), |bytes| {
                let state = quota::QuotaState::decode(bytes);
                let next = quota::settle(&state, limits, now, reservation, charge);
                Ok::<_, ()>((next.encode(), ()))
            });
            if let Err(UpdateError::Unavailable(why)) = settled {
                log::error!("tenant-guard: could not settle a reservation: {why}");
            }
        }
        if self.replied {
            return;
        }
        if worker.config.global_rate_limit.is_some() && outcome.charge.tokens > 0 {
            // Sent from the root context's next tick, where its answer can be seen and retried.
            worker.debits.push(Debit::new(
                admitted.tenant.clone(),
                admitted.plan.clone(),
                admitted.user.clone(),
                outcome.model.clone(),
                outcome.charge.tokens,
            ));
        }
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
        if let Some(record) = &mut self.record {
            record.meter(&outcome);
            write_filter_state(&record.usage_state());
        }
    }
}

/// A request header's raw bytes (client input: never assume UTF-8).
fn request_header(name: &str) -> Option<Vec<u8>> {
    hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, name)
        .ok()
        .flatten()
}

fn lossy(bytes: Option<Vec<u8>>) -> String {
    bytes
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// Filter state `wasm.<key>`, for `%FILTER_STATE(wasm.<key>:PLAIN)%` in access logs.
fn write_filter_state(entries: &[(&'static str, String)]) {
    for (key, value) in entries {
        let _ = hostcalls::set_property(vec![key], Some(value.as_bytes()));
    }
}

fn apply(edits: &[HeaderEdit]) {
    for edit in edits {
        let _ = match edit {
            HeaderEdit::Set(name, value) if name.starts_with(':') => {
                hostcalls::set_map_value(MapType::HttpRequestHeaders, name, Some(value))
            }
            HeaderEdit::Set(name, value) => {
                // Remove first, so no client-sent copy survives beside the new value.
                let _ = hostcalls::remove_map_value(MapType::HttpRequestHeaders, name);
                hostcalls::add_map_value(MapType::HttpRequestHeaders, name, value)
            }
            HeaderEdit::Remove(name) => {
                hostcalls::remove_map_value(MapType::HttpRequestHeaders, name)
            }
        };
    }
}

impl Context for Filter {
    fn on_grpc_call_response(&mut self, token_id: u32, status_code: u32, response_size: usize) {
        let Some(admitted) = &mut self.admitted else {
            return;
        };
        let Some(index) = admitted
            .global_pending
            .iter()
            .position(|(t, _)| *t == token_id)
        else {
            return;
        };
        let (_, usage) = admitted.global_pending.swap_remove(index);
        if self.replied {
            return;
        }
        let Some(answer) = global::answer(status_code, response_size) else {
            self.global_failed();
            return;
        };
        match answer.verdict {
            Verdict::Ok => {
                if admitted.global_pending.is_empty() {
                    let _ = hostcalls::resume_http_request();
                }
            }
            Verdict::OverLimit => {
                let reason = match usage {
                    ratelimit::Usage::Requests => Reason::RequestQuotaExceeded,
                    ratelimit::Usage::Tokens => Reason::TokenQuotaExceeded,
                };
                let retry_after = answer.reset_after.unwrap_or(1).max(1);
                let mut reply = denial::reply(reason);
                reply.headers.push(("retry-after", retry_after.to_string()));
                for (name, value) in answer.response_headers {
                    // The reply's header names are static; keep the service's known ones.
                    if let Some(known) = SERVICE_HEADERS
                        .iter()
                        .find(|h| h.eq_ignore_ascii_case(&name))
                    {
                        reply.headers.push((known, value));
                    }
                }
                let detail = format!("rate-limit service: {} over limit", usage.as_str());
                self.refuse(reason, detail, reply);
            }
            Verdict::Unknown => self.global_failed(),
        }
    }
}

/// Headers a rate-limit service may ask to add to a refusal (Limitador's draft-03 set and the
/// IETF fields); others are dropped.
const SERVICE_HEADERS: [&str; 5] = [
    "x-ratelimit-limit",
    "x-ratelimit-remaining",
    "x-ratelimit-reset",
    "ratelimit-policy",
    "ratelimit",
];

impl HttpContext for Filter {
    fn on_http_request_headers(&mut self, _headers: usize, end_of_stream: bool) -> Action {
        let raw_path = request_header(":path").unwrap_or_default();
        let method = lossy(request_header(":method"));
        let decision = match super::now() {
            Some(now) => {
                let mut worker = self.worker.borrow_mut();
                let Worker { config, cache, .. } = &mut *worker;
                let tenant_header = config.tenant_header.as_deref().and_then(request_header);
                let facts = RequestFacts {
                    method: &method,
                    path: &raw_path,
                    credential: decision::find_credential(&config.token_sources, request_header),
                    tenant_header: tenant_header.as_deref(),
                    now,
                };
                decision::decide(config, cache, facts)
            }
            // Without a clock no expiry can be checked: fail closed.
            None => decision::deny(Reason::InvalidToken, "host clock unavailable"),
        };

        let request_id = lossy(request_header("x-request-id"));
        let path = String::from_utf8_lossy(&raw_path);
        let record = Record::new(
            &decision,
            RequestInfo {
                request_id: &request_id,
                method: &method,
                path: &path,
            },
        );
        write_filter_state(&record.filter_state());
        self.record = Some(record);

        match decision {
            Decision::Bypass => Action::Continue,
            Decision::Deny(denial) => {
                let reply = denial::reply(denial.reason);
                self.refuse(denial.reason, denial.detail, reply)
            }
            Decision::Admit(admission) => {
                self.admitted_headers(*admission, &method, &path, end_of_stream)
            }
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let Some(admitted) = &self.admitted else {
            return Action::Continue;
        };
        if admitted.meter.is_some() || self.replied {
            return Action::Continue;
        }
        let max_body_bytes = self.worker.borrow().config.usage.max_body_bytes;
        let cap = admitted
            .body_plan
            .as_ref()
            .map_or(max_body_bytes, |plan| plan.max_bytes);
        if body_size > cap {
            if admitted.body_plan.is_some() {
                let reply = denial::reply(Reason::BodyTooLarge);
                let detail = format!("request body over {cap} bytes");
                return self.refuse(Reason::BodyTooLarge, detail, reply);
            }
            // Too large to read for metering: it goes on with what its headers were admitted.
            self.start_meter(None);
            return self.ask_global(Stage::Body);
        }
        if !end_of_stream {
            return Action::Pause;
        }
        let body = hostcalls::get_buffer(BufferType::HttpRequestBody, 0, body_size)
            .ok()
            .flatten()
            .unwrap_or_default();
        let mut rewritten = None;
        if let Some(plan) = &admitted.body_plan {
            match vector_store::rewrite_body(plan, &body) {
                Ok(new) => rewritten = Some(new),
                Err(refusal) => {
                    let reply = denial::reply(refusal.reason);
                    return self.refuse(refusal.reason, refusal.detail, reply);
                }
            }
        }
        let current = rewritten.as_deref().unwrap_or(&body);
        let usage_rules = self.worker.borrow().config.usage;
        if let Some(new) = metering::with_stream_usage(&usage_rules, &admitted.path, current) {
            rewritten = Some(new);
        }
        if let Some(new) = &rewritten {
            let _ = hostcalls::set_buffer(BufferType::HttpRequestBody, 0, body_size, new);
        }
        let body = rewritten.unwrap_or(body);
        self.start_meter(Some(&body));
        self.ask_global(Stage::Body)
    }

    fn on_http_response_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        if self.replied {
            return Action::Continue;
        }
        let Some(admitted) = &mut self.admitted else {
            return Action::Continue;
        };
        for (name, value) in quota::remaining_headers(&admitted.windows) {
            let _ = hostcalls::set_map_value(MapType::HttpResponseHeaders, name, Some(&value));
        }
        if admitted.response_plan.is_some() {
            // The body is rewritten below: its length will change.
            let _ = hostcalls::remove_map_value(MapType::HttpResponseHeaders, "content-length");
        }
        if let Some(meter) = &mut admitted.meter {
            let content_type =
                hostcalls::get_map_value(MapType::HttpResponseHeaders, "content-type")
                    .ok()
                    .flatten()
                    .unwrap_or_default();
            meter.response_started(&content_type);
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if self.replied {
            return Action::Continue;
        }
        let Some(admitted) = &mut self.admitted else {
            return Action::Continue;
        };
        if let Some(plan) = &admitted.response_plan {
            if !end_of_stream && body_size <= plan.max_bytes {
                return Action::Pause;
            }
            let body = hostcalls::get_buffer(BufferType::HttpResponseBody, 0, body_size)
                .ok()
                .flatten()
                .unwrap_or_default();
            // Never forward a listing that could not be confined to the tenant.
            let filtered = vector_store::filter_response(plan, &body).unwrap_or_else(|| {
                denial::reply(Reason::VectorOperationNotAllowed)
                    .body
                    .into_bytes()
            });
            let _ = hostcalls::set_buffer(BufferType::HttpResponseBody, 0, body_size, &filtered);
            if !end_of_stream {
                // Over the cap: what follows must not reach the client either.
                let _ = hostcalls::reset_http_response();
            }
            return Action::Continue;
        }
        if let Some(meter) = &mut admitted.meter {
            if let Ok(Some(chunk)) =
                hostcalls::get_buffer(BufferType::HttpResponseBody, 0, body_size)
            {
                meter.response_chunk(&chunk);
            }
        }
        if end_of_stream {
            // Settled before the access log is written, so it sees the usage.
            self.settle();
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        // An aborted stream settles with what it delivered.
        self.settle();
        let Some(mut record) = self.record.take() else {
            return;
        };
        record.status = hostcalls::get_property(vec!["response", "code"])
            .ok()
            .flatten()
            .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
            .map(u64::from_le_bytes)
            .and_then(|code| u32::try_from(code).ok());
        if record.reason != "bypass" {
            let metric = match record.decision {
                "allow" => "requests_allowed".to_string(),
                _ => format!("requests_denied.reason.{}", record.reason),
            };
            let mut worker = self.worker.borrow_mut();
            worker.stats.add(record.tenant.as_deref(), &metric, 1);
        }
        log::info!("{}", record.to_json());
    }
}

impl Filter {
    /// A rate-limit call failed or timed out while the headers wait: decide once.
    fn global_failed(&mut self) {
        if let Some(admitted) = &mut self.admitted {
            // Calls still out can no longer change the outcome.
            admitted.global_pending.clear();
        }
        self.global_unavailable(true);
    }

    /// Executes an admission decided from the request headers.
    fn admitted_headers(
        &mut self,
        admission: Admission,
        method: &str,
        path: &str,
        end_of_stream: bool,
    ) -> Action {
        apply(&admission.header_edits);
        if admission.rerouted {
            // Envoy 1.40 re-selects the route after a :path change on its own; asking for it
            // keeps routing right should that default change.
            let _ = hostcalls::call_foreign_function("clear_route_cache", None);
        }
        let sent_path = admission
            .header_edits
            .iter()
            .find_map(|e| match e {
                HeaderEdit::Set(name, value) if name == ":path" => Some(value.clone()),
                _ => None,
            })
            .unwrap_or_else(|| path.to_string());
        let usage_rules = self.worker.borrow().config.usage;
        let may_rewrite = admission.body_plan.is_some()
            || metering::may_add_stream_usage(&usage_rules, method, &sent_path);
        self.admitted = Some(Admitted {
            tenant: admission.tenant,
            user: admission.user,
            plan: admission.plan,
            limits: admission.limits,
            path: sent_path,
            body_plan: admission.body_plan,
            response_plan: admission.response_plan,
            meter: None,
            reservation: None,
            windows: Vec::new(),
            global_pending: Vec::new(),
            settled: false,
        });
        if let Err(refusal) = self.admit_quota(end_of_stream) {
            return self.quota_refused(refusal);
        }
        if end_of_stream {
            if let Some(plan) = self.admitted.as_ref().and_then(|a| a.body_plan.as_ref()) {
                // A vector-store operation that needs a body got none.
                if let Err(refusal) = vector_store::rewrite_body(plan, b"") {
                    let reply = denial::reply(refusal.reason);
                    return self.refuse(refusal.reason, refusal.detail, reply);
                }
            }
            self.start_meter(None);
        } else if may_rewrite {
            // Envoy delivers the body to this filter only once its headers went on (a paused
            // header phase holds the body back from this filter too), so a body that may be
            // rewritten loses its `content-length` now; the upstream learns the length from
            // the framing.
            let _ = hostcalls::remove_map_value(MapType::HttpRequestHeaders, "content-length");
        }
        self.ask_global(Stage::Headers {
            body_follows: !end_of_stream,
        })
    }

    /// After the local quotas said yes: asks the rate-limit service about the request and the
    /// tenant's tokens, holding the headers until it answers.
    fn ask_global(&mut self, stage: Stage) -> Action {
        let worker = self.worker.borrow();
        let Some(rules) = &worker.config.global_rate_limit else {
            return Action::Continue;
        };
        let Some(admitted) = &mut self.admitted else {
            return Action::Continue;
        };
        // With `model` among the descriptor entries, the token check waits for the body that
        // names the model; otherwise it goes out with the headers.
        let tokens_wait_for_body = rules.extra_entries.contains(&ExtraEntry::Model);
        let kinds: &[ratelimit::Usage] = match stage {
            Stage::Headers { body_follows } if body_follows && tokens_wait_for_body => {
                &[ratelimit::Usage::Requests]
            }
            Stage::Headers { .. } => &[ratelimit::Usage::Requests, ratelimit::Usage::Tokens],
            Stage::Body if tokens_wait_for_body => &[ratelimit::Usage::Tokens],
            Stage::Body => &[],
        };
        let subject = Subject {
            plan: admitted.plan.as_deref(),
            tenant: &admitted.tenant,
            user: admitted.user.as_deref(),
            model: admitted.meter.as_ref().and_then(Meter::request_model),
        };
        let mut pending = Vec::new();
        for &usage in kinds {
            // Requests count one; tokens are only checked (0) and debited after the response.
            let hits = match usage {
                ratelimit::Usage::Requests => 1,
                ratelimit::Usage::Tokens => 0,
            };
            match global::call(rules, usage, &subject, hits) {
                Ok(token) => pending.push((token, usage)),
                Err(status) => {
                    log::warn!("tenant-guard: rate-limit service call not sent: {status:?}");
                    drop(worker);
                    return self.global_unavailable(false);
                }
            }
        }
        if pending.is_empty() {
            return Action::Continue;
        }
        admitted.global_pending = pending;
        Action::Pause
    }

    /// The rate-limit service could not decide: `failure_mode` says what happens.
    /// `resume`: the headers are held and must be released when the request may go on.
    fn global_unavailable(&mut self, resume: bool) -> Action {
        let fail_open = self
            .worker
            .borrow()
            .config
            .global_rate_limit
            .as_ref()
            .is_some_and(|r| r.failure_mode == FailureMode::Allow);
        if !fail_open {
            let reason = Reason::RateLimitServiceUnavailable;
            let mut reply = denial::reply(reason);
            reply.headers.push(("retry-after", "1".into()));
            return self.refuse(reason, "rate-limit service unavailable".into(), reply);
        }
        if let Some(record) = &mut self.record {
            record.admitted_despite(Reason::RateLimitServiceUnavailable);
            write_filter_state(&record.filter_state());
        }
        if resume {
            let _ = hostcalls::resume_http_request();
        }
        Action::Continue
    }
}
