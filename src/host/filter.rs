//! One HTTP stream: turns the proxy-wasm callbacks into the core's decisions and events
//! (`policy::decision`, `policy::stream`) and executes what they return (`filter/effects.rs`;
//! a stream's side of leased credit: `filter/leased.rs`).

use std::cell::RefCell;
use std::rc::Rc;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, BufferType, MapType};

use crate::host::abi;
use crate::host::global;
use crate::host::shared::QuotaKey;
use crate::host::worker::{Probe, Worker};
use crate::policy::audit;
use crate::policy::decision::{self, Admission, Decision, HeaderEdit, RequestFacts};
use crate::policy::denial::{self, LocalReply, Reason};
use crate::policy::header_map;
use crate::policy::isolation;
use crate::policy::isolation::objects::Owners;
use crate::policy::lease::Fetch;
use crate::policy::metering;
use crate::policy::models::ModelRule;
use crate::policy::plan::{Enforcement, Limits};
use crate::policy::quota::{self, Demand, Refusal, Reservation, WindowStatus};
use crate::policy::ratelimit;
use crate::policy::record::{Record, RequestInfo};
use crate::policy::state_fields::StateFields;
use crate::policy::stream::{
    self, CacheScope, Event, Flow, HeaderMode, Point, Rules, Setup, Stream, UserQuotas,
};
use crate::policy::user_quota;

mod effects;
mod leased;

/// Tells the client the output limit the filter set in its request (`output_cap`).
const OUTPUT_CAP_HEADER: &str = "x-tenant-guard-output-cap";

pub struct Filter {
    worker: Rc<RefCell<Worker>>,
    context_id: u32,
    /// Set once the request headers were decided; written to the log in `on_log`.
    record: Option<Record>,
    /// The admitted request, from its headers to its record.
    admitted: Option<Admitted>,
    /// Bytes of the request and response bodies Envoy held when the filter last read them
    /// (what a new body replaces).
    request_body_len: usize,
    response_body_len: usize,
    /// The client's `identity.tenant_header`, for the audit line.
    tenant_header: Option<Vec<u8>>,
    /// Audit lines of the thresholds this request's settlement crossed (`host::alerts`),
    /// already in the `audit` filter state: `on_log` keeps them before its own.
    alert_audit: Option<String>,
    /// The record's fields the policy sets as filter state (`records.filter_state`), read
    /// with the request headers.
    state_fields: StateFields,
}

/// What the filter read from the request headers, for the admission.
struct Received<'a> {
    method: &'a str,
    /// `:path` as received.
    path: &'a [u8],
    /// Seconds since the Unix epoch, from the host's clock when the headers came.
    now: u64,
    end_of_stream: bool,
}

struct Admitted {
    tenant: String,
    quota_id: String,
    user: Option<String>,
    plan: Option<String>,
    limits: Rc<Limits>,
    key: QuotaKey,
    /// The windows after the admission, for the remaining-quota response headers.
    windows: Vec<WindowStatus>,
    stream: Stream,
    /// Rate-limit service calls in flight: callout token and what it is.
    calls: Vec<(u32, Call)>,
    /// Tokens taken from leased credit: the credit's generation and the amount.
    lease_tokens: Option<(u32, u64)>,
    /// The request is the worker's probe of whether Envoy holds headers for the body.
    probe: bool,
}

/// A rate-limit service call of a stream.
#[derive(Debug, Clone, Copy)]
enum Call {
    /// The per-request check of a quota kind.
    Check(ratelimit::Quota),
    /// A fetch of leased credit the request waits for.
    Lease(Fetch),
}

impl Filter {
    pub fn new(worker: Rc<RefCell<Worker>>, context_id: u32) -> Filter {
        Filter {
            worker,
            context_id,
            record: None,
            admitted: None,
            request_body_len: 0,
            response_body_len: 0,
            tenant_header: None,
            alert_audit: None,
            state_fields: StateFields::ALL,
        }
    }

    /// Answers the client instead of the upstream, and turns the record into that denial.
    fn reply(&mut self, reason: Reason, detail: &str, reply: &LocalReply) {
        let fields = self.state_fields;
        if let Some(record) = &mut self.record {
            record.deny(reason, detail);
            write_filter_state(&record.filter_state(fields));
        }
        let headers: Vec<(&str, &str)> = reply
            .headers
            .iter()
            .map(|(n, v)| (*n, v.as_str()))
            .collect();
        if let Err(e) = abi::send_local_response(reply.status, &headers, reply.body.as_bytes()) {
            log::error!("tenant-guard: local reply not sent: {e:?}");
        }
    }

    /// Admits the request against every window of its user's quotas (`per_user`) and its
    /// tenant's, holding `demand` in both.
    fn admit_quota(
        &self,
        key: &QuotaKey,
        user: Option<&str>,
        limits: &Limits,
        demand: Demand,
        now: u64,
    ) -> QuotaAdmission {
        let outcome = {
            let mut worker = self.worker.borrow_mut();
            let mut books = worker.books(key, user, limits);
            user_quota::admit(&mut books, limits, now, demand)
        };
        match outcome {
            user_quota::Admission::Unlimited => QuotaAdmission::Unlimited,
            user_quota::Admission::Held(reservation, windows) => {
                QuotaAdmission::Held(reservation, windows)
            }
            user_quota::Admission::Refused(refusal) => QuotaAdmission::Refused(refusal),
            user_quota::Admission::Unavailable(why) => {
                log::error!("tenant-guard: quota state unavailable: {why}");
                QuotaAdmission::Refused(Refusal {
                    reason: Reason::RequestQuotaExceeded,
                    retry_after: 1,
                    windows: Vec::new(),
                })
            }
        }
    }

    /// Executes an admission decided from the request headers.
    fn admitted_headers(&mut self, admission: Admission, request: &Received<'_>) -> Action {
        let end_of_stream = request.end_of_stream;
        apply(&admission.header_edits);
        if admission.private_cache {
            let map = MapType::HttpRequestHeaders;
            let existing = lossy(abi::header(map, "cache-control").ok().flatten());
            let existing = (!existing.is_empty()).then_some(existing.as_str());
            if let Some(value) = isolation::no_store_request(existing) {
                let _ = abi::set_header(map, "cache-control", value.as_bytes());
            }
        }
        if admission.rerouted {
            // Envoy 1.40 re-selects the route after a :path change on its own; asking for it
            // keeps routing right should that default change.
            let _ = hostcalls::call_foreign_function("clear_route_cache", None);
        }
        if let (Some(record), Some(sent)) = (&mut self.record, &admission.path_sent) {
            record.path_sent = Some(sent.clone());
        }
        let key = if admission.listed {
            QuotaKey::Listed(admission.tenant.clone())
        } else {
            QuotaKey::Default(admission.quota_id.clone())
        };
        // Held from this moment, so requests whose bodies come late cannot all pile in; the
        // body's own estimate replaces it.
        let content_length = (!end_of_stream)
            .then(|| request_header("content-length"))
            .flatten()
            .and_then(|v| std::str::from_utf8(&v).ok()?.trim().parse().ok());
        let shadow = admission.limits.enforcement == Enforcement::Shadow;
        let output_cap = admission.limits.output_cap.filter(|_| !shadow);
        let demand = if end_of_stream {
            Demand::default()
        } else {
            let worker = self.worker.borrow();
            // A capped request needs at least its minimum; it is capped once its body is read.
            let output = output_cap.map_or(worker.config.usage.default_reservation_tokens, |c| {
                c.min_output_tokens
            });
            metering::provisional_demand(content_length, output, &worker.config.pricing)
        };
        let user = admission.user.as_deref();
        let (held, windows) =
            match self.admit_quota(&key, user, &admission.limits, demand, request.now) {
                QuotaAdmission::Unlimited => (None, Vec::new()),
                QuotaAdmission::Held(reservation, windows) => (Some(reservation), windows),
                QuotaAdmission::Refused(refusal) if shadow => {
                    // Shadow mode: recorded as enforcement would refuse it, admitted off the books
                    // (as a refused request, it takes nothing from the tenant's windows).
                    let detail = format!("would refuse: retry after {}s", refusal.retry_after);
                    self.shadow_denied(&admission.tenant, refusal.reason, &detail);
                    (None, Vec::new())
                }
                QuotaAdmission::Refused(refusal) => return self.quota_refused(refusal),
            };
        let path = match &admission.path_sent {
            Some(sent) => sent.clone(),
            None => String::from_utf8_lossy(request.path).into_owned(),
        };
        // Only a body that may name objects is asked what it is (one whose prompt cache is
        // scoped is read whatever it says).
        let json_body = !end_of_stream
            && admission.objects.is_some()
            && request_header("content-type").is_none_or(|t| {
                String::from_utf8_lossy(&t)
                    .to_ascii_lowercase()
                    .contains("json")
            });
        let cache_scope = admission.cache_scope.map(|api| CacheScope {
            api,
            tenant: admission.quota_id.clone(),
            user: admission.user.clone(),
        });
        let mode = self.worker.borrow().header_mode;
        let (stream, effects) = {
            let worker = self.worker.borrow();
            let owners = worker.objects.at(request.now);
            let rules = rules(&worker, &owners);
            Stream::admit(
                Setup {
                    method: request.method,
                    path: &path,
                    body_follows: !end_of_stream,
                    content_length,
                    held,
                    header_mode: mode,
                    body_plan: admission.body_plan,
                    response_plan: admission.response_plan,
                    objects: admission.objects,
                    cache_scope,
                    private_cache: admission.private_cache,
                    json_body,
                    shadow,
                    output_cap,
                    models: admission.limits.models.clone().map(|list| ModelRule {
                        list,
                        plan: admission.plan.clone(),
                        tenant: admission.tenant.clone(),
                    }),
                    user_quotas: UserQuotas::of(admission.limits.per_user.as_ref()),
                },
                &rules,
            )
        };
        let probe = mode == HeaderMode::Unknown && stream.headers_held();
        self.admitted = Some(Admitted {
            quota_id: admission.quota_id,
            tenant: admission.tenant,
            user: admission.user,
            plan: admission.plan,
            limits: admission.limits,
            key,
            windows,
            stream,
            calls: Vec::new(),
            lease_tokens: None,
            probe,
        });
        if probe {
            let total_size = super::request_total_size();
            self.worker.borrow_mut().probes.push(Probe {
                context_id: self.context_id,
                since_ms: super::now_ms().unwrap_or(0),
                total_size,
                may_change_body: self
                    .admitted
                    .as_ref()
                    .is_some_and(|a| a.stream.body_may_change()),
            });
        }
        self.execute(effects);
        self.request_flow(Point::Headers)
    }

    /// Records what enforcement would have refused for a tenant in shadow mode.
    fn shadow_denied(&mut self, tenant: &str, reason: Reason, detail: &str) {
        let fields = self.state_fields;
        if let Some(record) = &mut self.record {
            record.shadow_denied(reason, detail);
            write_filter_state(&record.filter_state(fields));
        }
        let metric = format!("requests_shadow_denied.reason.{}", reason.code());
        self.worker.borrow_mut().stats.add(Some(tenant), &metric, 1);
    }

    fn quota_refused(&mut self, refusal: Refusal) -> Action {
        let refusal = stream::quota_refusal(&refusal);
        self.reply(refusal.reason, &refusal.detail, &refusal.reply);
        Action::Pause
    }

    /// Hands one event to the admitted request's stream and executes what comes back.
    fn event(&mut self, event: Event<'_>) {
        let effects = {
            let Some(admitted) = &mut self.admitted else {
                return;
            };
            let worker = self.worker.borrow();
            let owners = worker.objects.now();
            admitted.stream.on(event, &rules(&worker, &owners))
        };
        self.execute(effects);
    }

    /// How a request callback answers Envoy, once its effects were executed.
    fn request_flow(&mut self, at: Point) -> Action {
        match self.admitted.as_mut().map(|a| a.stream.request_flow(at)) {
            Some(Flow::Pause) => Action::Pause,
            Some(Flow::Continue) | None => Action::Continue,
        }
    }

    /// A body callback came while this request probed the header mode: Envoy holds headers
    /// while the body is read. Also learns when the root let the probe's headers go.
    fn note_body_arrived(&mut self) {
        let Some(admitted) = &mut self.admitted else {
            return;
        };
        if !std::mem::replace(&mut admitted.probe, false) {
            return;
        }
        let released = {
            let mut worker = self.worker.borrow_mut();
            let released = worker.take_released(self.context_id);
            if !released {
                worker.learn_header_mode(HeaderMode::Held);
            }
            released
        };
        if released {
            self.event(Event::HeadersReleased);
        }
    }
}

enum QuotaAdmission {
    /// The tenant has no quotas.
    Unlimited,
    Held(Reservation, Vec<WindowStatus>),
    Refused(Refusal),
}

fn rules<'a>(worker: &'a Worker, owners: &'a dyn Owners) -> Rules<'a> {
    Rules {
        usage: &worker.config.usage,
        pricing: &worker.config.pricing,
        global: worker.config.global_rate_limit.as_ref(),
        isolation: &worker.config.isolation,
        owners,
    }
}

/// A request header's raw bytes (client input: never assume UTF-8).
fn request_header(name: &str) -> Option<Vec<u8>> {
    abi::header(MapType::HttpRequestHeaders, name)
        .ok()
        .flatten()
}

fn lossy(bytes: Option<Vec<u8>>) -> String {
    bytes
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// The whole body Envoy holds now (empty when there is none).
fn read_buffer(buffer: BufferType) -> Vec<u8> {
    abi::buffer(buffer).unwrap_or_default()
}

/// Filter state `wasm.<key>`, for `%FILTER_STATE(wasm.<key>:PLAIN)%` in access logs.
fn write_filter_state(entries: &[(&'static str, String)]) {
    for (key, value) in entries {
        let _ = abi::set_filter_state(key, value.as_bytes());
    }
}

fn apply(edits: &[HeaderEdit]) {
    let map = MapType::HttpRequestHeaders;
    for edit in edits {
        let _ = match edit {
            // Envoy replaces every client-sent copy (`HeaderMap::setCopy`).
            HeaderEdit::Set(name, value) => abi::set_header(map, name, value.as_bytes()),
            HeaderEdit::SetSecret(name, value) => {
                abi::set_header(map, name, value.expose().as_bytes())
            }
            HeaderEdit::Remove(name) => abi::remove_header(map, name),
        };
    }
}

impl Context for Filter {
    fn on_grpc_call_response(&mut self, token_id: u32, status_code: u32, _size: usize) {
        let Some(admitted) = &mut self.admitted else {
            return;
        };
        let Some(index) = admitted.calls.iter().position(|(t, _)| *t == token_id) else {
            return;
        };
        let (_, call) = admitted.calls.swap_remove(index);
        let answer = global::answer(status_code);
        match call {
            Call::Check(quota) => self.event(Event::CallAnswered {
                quota,
                answer: answer.as_ref(),
            }),
            Call::Lease(fetch) => self.fetch_answered(fetch, answer.as_ref()),
        }
    }
}

impl HttpContext for Filter {
    fn on_http_request_headers(&mut self, _headers: usize, end_of_stream: bool) -> Action {
        let raw_path = request_header(":path").unwrap_or_default();
        let method = request_header(":method").unwrap_or_default();
        let method_text = String::from_utf8_lossy(&method);
        let now = super::now();
        let decision = match now {
            Some(now) => {
                let mut worker = self.worker.borrow_mut();
                let Worker {
                    config,
                    cache,
                    objects,
                    ..
                } = &mut *worker;
                let owners = objects.at(now);
                // A first line found, every line counts: a second one may name another tenant.
                self.tenant_header = config.tenant_header.as_deref().and_then(|name| {
                    request_header(name)?;
                    abi::combined_header(MapType::HttpRequestHeaders, name)
                        .ok()
                        .flatten()
                });
                let authority = config
                    .upstreams
                    .by_authority()
                    .then(|| request_header(":authority"))
                    .flatten();
                let mut all_headers = None;
                let facts = RequestFacts {
                    method: &method_text,
                    path: &raw_path,
                    credential: decision::read_credential(config, request_header, |name| {
                        // Read once, when a key makes every line count.
                        let map = all_headers.get_or_insert_with(|| {
                            abi::header_map(MapType::HttpRequestHeaders).unwrap_or_default()
                        });
                        header_map::lines(map, name).unwrap_or_default()
                    }),
                    tenant_header: self.tenant_header.as_deref(),
                    authority: authority.as_deref(),
                    now,
                };
                decision::decide(config, cache, &owners, facts)
            }
            // Without a clock no expiry can be checked: fail closed.
            None => decision::deny(Reason::InvalidToken, "host clock unavailable"),
        };

        let client_request_id = request_header("x-request-id");
        let request_id = self.worker.borrow_mut().record_ids.next_id();
        let mut record = Record::new(
            &decision,
            RequestInfo {
                request_id,
                client_request_id: client_request_id.as_deref(),
                method: &method,
                path: &raw_path,
            },
        );
        {
            let worker = self.worker.borrow();
            record.auth_state = worker.config.api_keys.enabled();
            self.state_fields = worker.config.records.filter_state;
        }
        write_filter_state(&record.filter_state(self.state_fields));
        self.record = Some(record);

        match decision {
            Decision::Bypass => Action::Continue,
            Decision::Deny(denial) => {
                let reply = denial::reply(denial.reason);
                self.reply(denial.reason, &denial.detail, &reply);
                Action::Pause
            }
            Decision::Admit(admission) => {
                let request = Received {
                    method: &method_text,
                    path: &raw_path,
                    now: now.unwrap_or(0),
                    end_of_stream,
                };
                self.admitted_headers(*admission, &request)
            }
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if self.admitted.is_none() {
            return Action::Continue;
        }
        self.note_body_arrived();
        self.request_data(Event::RequestData {
            size: body_size,
            end: end_of_stream,
        })
    }

    fn on_http_request_trailers(&mut self, _trailers: usize) -> Action {
        if self.admitted.is_none() {
            return Action::Continue;
        }
        self.note_body_arrived();
        self.request_data(Event::RequestTrailers)
    }

    fn on_http_response_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        let Some(admitted) = &self.admitted else {
            return Action::Continue;
        };
        if admitted.stream.refused() {
            return Action::Continue;
        }
        let map = MapType::HttpResponseHeaders;
        for (name, value) in quota::remaining_headers(&admitted.windows) {
            let _ = abi::set_header(map, name, value.as_bytes());
        }
        if let Some(cap) = admitted.stream.output_cap() {
            let _ = abi::set_header(map, OUTPUT_CAP_HEADER, cap.to_string().as_bytes());
        }
        // What the stream does not read is not asked of Envoy.
        let (status, content_type) = if admitted.stream.reads_response() {
            let status = abi::header(map, ":status")
                .ok()
                .flatten()
                .and_then(|s| std::str::from_utf8(&s).ok()?.parse().ok())
                .unwrap_or(0);
            (
                status,
                lossy(abi::header(map, "content-type").ok().flatten()),
            )
        } else {
            (0, String::new())
        };
        self.event(Event::ResponseHeaders {
            status,
            content_type: &content_type,
        });
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let Some(admitted) = &self.admitted else {
            return Action::Continue;
        };
        let chunk = admitted
            .stream
            .wants_response_bytes(body_size, end_of_stream)
            .then(|| read_buffer(BufferType::HttpResponseBody));
        self.response_body_len = chunk.as_ref().map_or(0, Vec::len);
        let effects = {
            let Some(admitted) = &mut self.admitted else {
                return Action::Continue;
            };
            let worker = self.worker.borrow();
            admitted.stream.on(
                Event::ResponseData {
                    chunk: chunk.as_deref(),
                    size: body_size,
                    end: end_of_stream,
                },
                &rules(&worker, &worker.objects.now()),
            )
        };
        let hold = effects.hold_response;
        self.execute(effects);
        if hold {
            Action::Pause
        } else {
            Action::Continue
        }
    }

    fn on_http_response_trailers(&mut self, _trailers: usize) -> Action {
        let Some(admitted) = &self.admitted else {
            return Action::Continue;
        };
        let buffered = admitted
            .stream
            .holds_response()
            .then(|| read_buffer(BufferType::HttpResponseBody));
        self.response_body_len = buffered.as_ref().map_or(0, Vec::len);
        self.event(Event::ResponseTrailers {
            buffered: buffered.as_deref(),
        });
        Action::Continue
    }

    fn on_log(&mut self) {
        // Whatever did not end by now never will: the stream settles what it saw.
        self.event(Event::Log);
        if self.admitted.as_ref().is_some_and(|a| a.probe) {
            let context_id = self.context_id;
            let mut worker = self.worker.borrow_mut();
            worker.probes.retain(|p| p.context_id != context_id);
            worker.take_released(context_id);
        }
        let Some(mut record) = self.record.take() else {
            return;
        };
        record.status =
            abi::integer_property(&["response", "code"]).and_then(|code| u32::try_from(code).ok());
        let mut worker = self.worker.borrow_mut();
        if record.reason != "bypass" {
            let metric = match record.decision {
                "allow" => std::borrow::Cow::Borrowed("requests_allowed"),
                _ => format!("requests_denied.reason.{}", record.reason).into(),
            };
            worker.stats.add(record.tenant.as_deref(), &metric, 1);
        }
        if worker.config.records.log_line {
            log::info!("{}", record.to_json());
        }
        // Only an audited request needs the time and the client's address.
        let facts = || audit::Facts {
            time: audit::rfc3339_millis(super::now_ms().unwrap_or(0)),
            source: abi::property(&["source", "address"])
                .ok()
                .flatten()
                .map(|a| String::from_utf8_lossy(&a).into_owned()),
            tenant_header: self.tenant_header.as_deref(),
        };
        if let Some(event) = audit::of(&record, facts) {
            let line = worker.audit.line(&event);
            log::info!("{line}");
            // Also as filter state, for an access log of its own (Envoy 1.40 writes the HCM's
            // access logs after on_log); the chain's start line goes with its first event.
            let state = match worker.audit_start.take() {
                Some(start) => format!("{start}\n{line}"),
                None => line,
            };
            let state = match self.alert_audit.take() {
                Some(alerts) => format!("{alerts}\n{state}"),
                None => state,
            };
            let _ = abi::set_filter_state("audit", state.as_bytes());
        }
    }
}

impl Filter {
    /// A request body or trailers callback: data in, and the body read when it is complete.
    fn request_data(&mut self, event: Event<'_>) -> Action {
        let effects = {
            let Some(admitted) = &mut self.admitted else {
                return Action::Continue;
            };
            let worker = self.worker.borrow();
            let owners = worker.objects.now();
            let rules = rules(&worker, &owners);
            let mut effects = admitted.stream.on(event, &rules);
            if effects.read_body {
                let body = read_buffer(BufferType::HttpRequestBody);
                self.request_body_len = body.len();
                effects = admitted.stream.on(Event::RequestBody(&body), &rules);
            }
            effects
        };
        self.execute(effects);
        self.request_flow(Point::Body)
    }
}
