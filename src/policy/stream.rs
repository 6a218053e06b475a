//! One admitted request's life, as a state machine without I/O (in the manner of quinn-proto or
//! h11): the shell turns every proxy-wasm callback into an [`Event`], hands it to
//! [`Stream::on`], and executes the [`Effects`] that come back (body edits, local replies,
//! rate-limit calls, quota updates, resumption). Nothing here knows about proxy-wasm.
//!
//! # Phases
//! ```text
//! Admitted ──body read / absent / too large──▶ EstimateKnown ──response headers──▶ ResponseStarted
//!    │                                              │                                  │
//!    └──────────── response headers (an upstream answering before the body ended) ─────┘
//!  every phase ──local reply after admission──▶ Refused      ResponseStarted ──body end / trailers──▶ Ended
//!  every phase ──Log without an ended response (client gone, reset, timeout)──▶ Aborted
//! ```
//! `Ended`, `Aborted` and `Refused` are settled: the request's reservation was returned and its
//! charge (see [`crate::policy::metering`]'s charging rule) taken, exactly once, in the one
//! [`Settlement`] the stream ever emits, whatever order the events come in.
//!
//! # Holding the request
//! The request waits (its callback answers `Pause`) while the rate-limit service is asked, and
//! while a body the filter must decide on is incomplete. When Envoy allows it
//! (`allow_on_headers_stop_iteration`, Envoy 1.35+: [`HeaderMode::Held`]), the *headers* wait
//! for such a body too, so nothing reaches the upstream before the body is decided and a
//! rewritten body goes with its own `content-length`. Without it ([`HeaderMode::Forwarded`])
//! the headers go on at once (Envoy hands a Wasm filter the body only after its headers
//! continued), and a body that may change loses its `content-length` there (the upstream learns
//! the length from the framing).
//!
//! Nothing in the ABI says which mode Envoy runs the filter in, so a worker starts
//! [`HeaderMode::Unknown`] and learns it from a request whose headers it holds: a body arriving
//! proves `Held`; if Envoy received the body but never delivered it, the shell lets the
//! headers go ([`Event::HeadersReleased`], without `content-length` when the body may change)
//! and Envoy delivers the body after them, to be decided as in `Forwarded`. One quirk of that
//! path, seen on Envoy 1.40: after such a "stop all" continuation, a body the filter buffers is
//! dropped when the request ends with trailers and the trailers answer `Continue`; answering
//! `Pause` and continuing at once ([`Effects::resume`]) delivers it.

use crate::policy::cost::Pricing;
use crate::policy::denial::{self, Reason};
use crate::policy::global_rate_limit::{FailureMode, GlobalRateLimit};
use crate::policy::isolation::objects::{self, IdField, ObjectPlan, Owners};
use crate::policy::isolation::prompt_cache::{self, Api};
use crate::policy::isolation::IsolationRules;
use crate::policy::metering::{self, Answer, Meter, UsageRules};
use crate::policy::models::{self, Endpoint, ModelRule};
use crate::policy::namespace::PathRefusal;
use crate::policy::output_cap;
use crate::policy::plan::OutputCap;
use crate::policy::provider_api;
use crate::policy::quota::{Demand, Reservation};
use crate::policy::ratelimit::{self, ExtraEntry, Verdict};
use crate::policy::usage;
use crate::policy::vector_store::{self, BodyPlan, ResponsePlan};

mod effects;
mod refusal;

pub use effects::{Ask, Capping, Effects, Event, Flow, Point, Settlement, UserQuotas};
use refusal::{over_limit, refusal_of};
pub use refusal::{quota_refusal, Refusal};

/// Where a request is in its life, as far as its quota and record are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Admitted from its headers; the request's body has not been read yet.
    Admitted,
    /// The body was read (or is absent, or too large to read): its estimate is held.
    EstimateKnown,
    /// The response has started, possibly before the request body ended.
    ResponseStarted,
    /// Settled: the response ended.
    Ended,
    /// Settled: the stream ended before its response did.
    Aborted,
    /// Settled: the filter refused the request after admitting it.
    Refused,
}

impl Phase {
    pub fn is_settled(self) -> bool {
        matches!(self, Phase::Ended | Phase::Aborted | Phase::Refused)
    }
}

/// What the stream needs of the configuration and of the gateway's memory.
#[derive(Clone, Copy)]
pub struct Rules<'a> {
    pub usage: &'a UsageRules,
    pub pricing: &'a Pricing,
    pub global: Option<&'a GlobalRateLimit>,
    pub isolation: &'a IsolationRules,
    /// Who created which provider-side object.
    pub owners: &'a dyn Owners,
}

/// Whether Envoy lets a request's headers wait while the filter reads the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderMode {
    /// Not known yet (see the module doc).
    Unknown,
    /// It does (`allow_on_headers_stop_iteration`).
    Held,
    /// It does not.
    Forwarded,
}

/// The facts of an admitted request, from its headers.
pub struct Setup<'a> {
    pub method: &'a str,
    /// `:path` as sent upstream.
    pub path: &'a str,
    /// More request data follows the headers.
    pub body_follows: bool,
    /// The request's `content-length`, when it has one.
    pub content_length: Option<u64>,
    /// What the tenant's counters hold for the request (`None`: no quotas).
    pub held: Option<Reservation>,
    /// What the worker knows of Envoy's header mode.
    pub header_mode: HeaderMode,
    pub body_plan: Option<BodyPlan>,
    pub response_plan: Option<ResponsePlan>,
    /// Provider-side objects (`isolation.provider_objects`).
    pub objects: Option<ObjectPlan>,
    /// Scope the body's prompt-cache key and user identifiers to the tenant.
    pub cache_scope: Option<CacheScope>,
    /// Mark answers private for HTTP caches.
    pub private_cache: bool,
    /// The body is JSON (or says nothing of its type): read for the objects it names.
    pub json_body: bool,
    /// The tenant's limits are in shadow mode: the rate-limit service's refusals are only
    /// recorded.
    pub shadow: bool,
    /// The tenant's plan caps output limits (never in shadow mode).
    pub output_cap: Option<OutputCap>,
    /// The models the tenant may use (`None`: every model).
    pub models: Option<ModelRule>,
    /// The user's own quotas the plan has windows for.
    pub user_quotas: UserQuotas,
}

/// A body read while its capped reservation is made.
struct Pending {
    api: output_cap::Api,
    /// The body as the other rules left it.
    body: Vec<u8>,
    /// Those rules changed it.
    changed: bool,
}

/// Whose prompt cache and user identifiers a body gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheScope {
    pub api: Api,
    /// The tenant's quota id.
    pub tenant: String,
    pub user: Option<String>,
}

/// An answer held to be cut to the tenant's before the client sees it.
enum Listing {
    /// Qdrant collections (vector stores).
    Collections(ResponsePlan),
    /// Provider-side objects, held up to `max_bytes`.
    Objects { max_bytes: usize },
}

impl Listing {
    fn max_bytes(&self) -> usize {
        match self {
            Listing::Collections(plan) => plan.max_bytes,
            Listing::Objects { max_bytes } => *max_bytes,
        }
    }
}

/// The request body, as far as the filter is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Body {
    /// Still arriving; the filter buffers it.
    Awaited,
    /// Read, absent, or let through unread.
    Done,
}

pub struct Stream {
    phase: Phase,
    held: Option<Reservation>,
    meter: Meter,
    /// The answer is read for usage and charged ([`metering::meters`]).
    metered: bool,
    body: Body,
    /// The request headers wait for the body (they have not gone upstream yet).
    headers_held: bool,
    /// The body may be rewritten: the one predicate both stages obey.
    body_may_change: bool,
    add_stream_usage: bool,
    body_plan: Option<BodyPlan>,
    listing: Option<Listing>,
    objects: Option<ObjectPlan>,
    cache_scope: Option<CacheScope>,
    private_cache: bool,
    /// The body must be read whole to be decided (isolation), whatever its size.
    must_read: bool,
    /// The answer creates a provider-side object whose id is here.
    creates: Option<IdField>,
    shadow: bool,
    /// The API whose output limit is capped, and the plan's rule.
    clamp: Option<(output_cap::Api, OutputCap)>,
    pending: Option<Pending>,
    /// The output limit the filter set in the body.
    output_cap: Option<u64>,
    /// The tenant's model list, and what the endpoint says of the body's model.
    models: Option<(ModelRule, Endpoint)>,
    path: String,
    /// The token check at the rate-limit service waits for the body's model.
    token_check_waits: bool,
    /// The user's own quotas the rate-limit service is asked about (none with leased credit,
    /// which is the tenant's).
    users: UserQuotas,
    /// Rate-limit calls in flight.
    calls: u32,
    /// Where the request waits: the last request callback answered `Pause` there and nothing
    /// resumed it since.
    paused_at: Option<Point>,
    /// The shell let the held headers go before the body came.
    released: bool,
    /// The body ended with trailers.
    trailers: bool,
    /// The trailers must answer `Pause` once while a resumption is under way (see the module
    /// doc on released headers).
    replay: bool,
    refused: bool,
    status: Option<u32>,
}

impl Stream {
    /// A stream for a request just admitted from its headers, and what to do about it now.
    pub fn admit(setup: Setup<'_>, rules: &Rules<'_>) -> (Stream, Effects) {
        let held_demand = setup.held.map(|r| r.demand).unwrap_or_default();
        let add_stream_usage =
            metering::may_add_stream_usage(rules.usage, setup.method, setup.path);
        let path_api = provider_api::from_path(setup.path);
        let api = path_api.as_ref().map(|found| found.api);
        let clamp = setup
            .output_cap
            .filter(|_| setup.held.is_some() && setup.body_follows)
            .and_then(|rule| Some((output_cap::Api::of(setup.method, setup.path, api)?, rule)));
        // A list holding `*` reads nothing.
        let model_rule = setup.models.filter(|rule| !rule.list.allows_all());
        let models = model_rule.map(|rule| (rule, models::endpoint(setup.method, setup.path, api)));
        // What the path says is decided now: its model, or a form the filter does not read.
        let path_model = models.as_ref().and_then(|(rule, endpoint)| {
            let form = match endpoint {
                Endpoint::Form => rule.check_body(Endpoint::Form, b""),
                _ => Ok(()),
            };
            rule.check_path(path_api.as_ref()).and(form).err()
        });
        // The body's model is decided before the upstream sees it (in shadow mode it is only
        // noted when the body is read anyway).
        let reads_model = !setup.shadow
            && models.as_ref().is_some_and(|(_, endpoint)| {
                matches!(endpoint, Endpoint::Required | Endpoint::InPath)
            });
        let body_may_change = setup.body_plan.is_some()
            || add_stream_usage
            || setup.cache_scope.is_some()
            || clamp.is_some();
        // The token check waits for the body when it names the model, and with leased credit,
        // which the body's estimate is taken from.
        let token_check_waits = setup.body_follows
            && rules
                .global
                .is_some_and(|g| g.extra_entries.contains(&ExtraEntry::Model) || g.lease.is_some());
        // A JSON body may name objects: it is decided before the upstream sees it.
        // A capped request must be read whole: its limit cannot be set otherwise.
        // A body whose prompt cache is scoped is read whatever its content-type: those APIs
        // take JSON only, and one the gateway cannot read is refused, never sent unscoped.
        let must_read = clamp.is_some()
            || reads_model
            || setup.cache_scope.is_some()
            || (setup.json_body && setup.objects.is_some());
        let wants_held = body_may_change || token_check_waits || must_read;
        let users = match rules.global {
            Some(global) if global.lease.is_none() => setup.user_quotas,
            _ => UserQuotas::default(),
        };
        let headers_held = setup.body_follows
            && wants_held
            && match setup.header_mode {
                HeaderMode::Held => true,
                HeaderMode::Forwarded => false,
                HeaderMode::Unknown => true,
            };
        let mut stream = Stream {
            phase: Phase::Admitted,
            held: setup.held,
            meter: Meter::new(held_demand, setup.content_length, path_api),
            metered: metering::meters(setup.method, setup.body_follows),
            body: Body::Awaited,
            headers_held,
            body_may_change,
            add_stream_usage,
            body_plan: setup.body_plan,
            listing: match (setup.response_plan, &setup.objects) {
                (Some(plan), _) => Some(Listing::Collections(plan)),
                (None, Some(objects)) if objects.route.lists => Some(Listing::Objects {
                    max_bytes: rules.usage.max_body_bytes,
                }),
                _ => None,
            },
            creates: setup
                .objects
                .as_ref()
                .and_then(|o| o.route.creates)
                .filter(|c| !setup.body_follows && c.is_stored(None))
                .map(|c| c.id_field),
            objects: setup.objects,
            cache_scope: setup.cache_scope,
            private_cache: setup.private_cache,
            must_read,
            shadow: setup.shadow,
            clamp,
            pending: None,
            output_cap: None,
            models,
            path: setup.path.to_string(),
            token_check_waits,
            users,
            calls: 0,
            paused_at: None,
            released: false,
            trailers: false,
            replay: false,
            refused: false,
            status: None,
        };
        let mut effects = Effects {
            ask: Ask {
                // The tenant's request counter waits for the user's (see `verdict`).
                requests: rules.global.is_some() && !users.requests,
                tokens: rules.global.is_some() && !token_check_waits,
                user_requests: users.requests,
                user_tokens: users.tokens && !token_check_waits,
            },
            drop_content_length: setup.body_follows && body_may_change && !headers_held,
            plain_answer: stream.reads_response() || stream.listing.is_some(),
            ..Effects::default()
        };
        if let Some(refused) = path_model {
            let refusal = Refusal {
                reason: refused.reason,
                detail: refused.detail,
                reply: refused.reply,
            };
            if !stream.shadow {
                // Nothing of it goes on: its headers are not held for a body either.
                stream.headers_held = false;
                let effects = stream.refuse(refusal, rules);
                return (stream, effects);
            }
            effects.shadowed = Some((refusal.reason, refusal.detail));
        }
        if !setup.body_follows {
            stream.body = Body::Done;
            stream.phase = Phase::EstimateKnown;
            if let Err(refusal) = stream.check_body_models(b"") {
                if !stream.shadow {
                    effects = stream.refuse(refusal, rules);
                    return (stream, effects);
                }
                effects.shadowed = Some((refusal.reason, refusal.detail));
            }
            if let Some(plan) = &stream.body_plan {
                // A vector-store operation that needs a body got none.
                if let Err(refusal) = vector_store::rewrite_body(plan, b"") {
                    let refusal = refusal_of(refusal.reason, refusal.detail);
                    effects = stream.refuse(refusal, rules);
                }
            }
        }
        (stream, effects)
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The reservation now held for the request.
    pub fn held(&self) -> Option<Reservation> {
        self.held
    }

    /// The request headers wait for the body (they have not gone upstream).
    pub fn headers_held(&self) -> bool {
        self.headers_held
    }

    /// The body may be rewritten (so a `content-length` sent ahead of it would go stale).
    pub fn body_may_change(&self) -> bool {
        self.body_may_change
    }

    /// The output limit the filter set in the request body, if it set one.
    pub fn output_cap(&self) -> Option<u64> {
        self.output_cap
    }

    /// What the request is estimated to use now: its reservation, or without quotas the
    /// meter's estimate (what leased credit is taken for).
    pub fn demand(&self) -> Demand {
        self.held.map_or(self.meter.demand(), |r| r.demand)
    }

    /// The request body's model, once read (for the rate-limit descriptor).
    pub fn request_model(&self) -> Option<&str> {
        self.meter.request_model()
    }

    /// The shell replaced the reservation as [`Effects::reserve`] asked.
    pub fn reserved(&mut self, reservation: Reservation) {
        self.held = Some(reservation);
    }

    /// Whether the filter answered the client itself after admitting the request: its own
    /// response callbacks see that reply and must leave it alone.
    pub fn refused(&self) -> bool {
        self.refused
    }

    /// How a request callback (headers, body, trailers) answers Envoy now. The shell asks after
    /// executing the callback's effects, so calls it failed to send are already counted.
    pub fn request_flow(&mut self, at: Point) -> Flow {
        if std::mem::take(&mut self.replay) {
            return Flow::Pause;
        }
        if self.waits(at) {
            self.paused_at = Some(at);
            Flow::Pause
        } else {
            self.paused_at = None;
            Flow::Continue
        }
    }

    /// Whether a request paused at `at` must stay paused.
    fn waits(&self, at: Point) -> bool {
        self.refused
            || self.calls > 0
            || (self.body == Body::Awaited && (at == Point::Body || self.headers_held))
    }

    /// Resumes a paused request once nothing holds it any more (after an asynchronous event).
    fn resume_if_free(&mut self, mut effects: Effects) -> Effects {
        if let Some(at) = self.paused_at {
            if !self.waits(at) {
                self.paused_at = None;
                effects.resume = true;
            }
        }
        effects
    }

    /// Whether the shell should read the response body bytes for this callback.
    pub fn wants_response_bytes(&self, size: usize, end: bool) -> bool {
        if self.refused {
            return false;
        }
        match &self.listing {
            Some(listing) => end || size > listing.max_bytes(),
            None => self.reads_response() && !self.phase.is_settled(),
        }
    }

    /// Whether the response's `content-type` and body are read as they pass: for its usage, or
    /// for the id of the object it creates. When not, the shell does not read them, and
    /// [`Event::ResponseHeaders`] carries status 0 and an empty `content_type`.
    pub fn reads_response(&self) -> bool {
        (self.metered || self.creates.is_some()) && !self.refused
    }

    /// Whether a response body is being held (a listing to filter).
    pub fn holds_response(&self) -> bool {
        self.listing.is_some() && !self.refused
    }

    /// Takes one event; returns what the shell must do.
    pub fn on(&mut self, event: Event<'_>, rules: &Rules<'_>) -> Effects {
        match event {
            Event::RequestData { size, end } => self.request_data(size, end, rules),
            Event::RequestTrailers => {
                self.trailers = true;
                self.request_data(0, true, rules)
            }
            Event::RequestBody(body) => self.request_body(body, rules),
            Event::CallSent => {
                self.calls = self.calls.saturating_add(1);
                Effects::default()
            }
            Event::CallAnswered { quota, answer } => self.call_answered(quota, answer, rules),
            Event::HeadersReleased => self.headers_released(),
            Event::ResponseHeaders {
                status,
                content_type,
            } => self.response_headers(status, content_type),
            Event::ResponseData { chunk, size, end } => self.response_data(chunk, size, end, rules),
            Event::ResponseTrailers { buffered } => match buffered {
                Some(body) if self.holds_response() => {
                    let size = body.len();
                    self.response_data(Some(body), size, true, rules)
                }
                _ => self.response_data(None, 0, true, rules),
            },
            Event::Log => Effects {
                settle: self.settle(Phase::Aborted, rules),
                ..Effects::default()
            },
        }
    }

    fn request_data(&mut self, size: usize, end: bool, rules: &Rules<'_>) -> Effects {
        if self.body == Body::Done || self.refused {
            return Effects::default();
        }
        let cap = self
            .body_plan
            .as_ref()
            .map_or(rules.usage.max_body_bytes, |plan| plan.max_bytes);
        if size > cap {
            if self.body_plan.is_some() || self.must_read {
                let refusal = refusal_of(
                    Reason::BodyTooLarge,
                    format!("request body over {cap} bytes"),
                );
                return self.refuse(refusal, rules);
            }
            // Too large to read for metering: it goes on with what its headers reserved.
            return self.body_decided(false, rules);
        }
        Effects {
            read_body: end,
            ..Effects::default()
        }
    }

    fn request_body(&mut self, body: &[u8], rules: &Rules<'_>) -> Effects {
        if self.body == Body::Done || self.refused {
            return Effects::default();
        }
        let Err(refusal) = self.check_body_models(body) else {
            return self.request_body_allowed(body, rules);
        };
        if !self.shadow {
            return self.refuse(refusal, rules);
        }
        let mut effects = self.request_body_allowed(body, rules);
        effects.shadowed = effects.shadowed.or(Some((refusal.reason, refusal.detail)));
        effects
    }

    /// The body's models must be on the tenant's list (`models`). A form was decided at
    /// admission.
    fn check_body_models(&self, body: &[u8]) -> Result<(), Refusal> {
        let Some((rule, endpoint)) = self.models.as_ref().filter(|(_, e)| *e != Endpoint::Form)
        else {
            return Ok(());
        };
        rule.check_body(*endpoint, body).map_err(|refused| Refusal {
            reason: refused.reason,
            detail: refused.detail,
            reply: refused.reply,
        })
    }

    /// The request body, once its models are allowed.
    fn request_body_allowed(&mut self, body: &[u8], rules: &Rules<'_>) -> Effects {
        let mut rewritten = None;
        if let Some(plan) = &self.body_plan {
            match vector_store::rewrite_body(plan, body) {
                Ok(new) => rewritten = Some(new),
                Err(refusal) => {
                    return self.refuse(refusal_of(refusal.reason, refusal.detail), rules);
                }
            }
        }
        if let Err(refusal) = self.check_objects(body, rules) {
            return self.refuse(refusal_of(refusal.reason, refusal.detail), rules);
        }
        if let Some(scope) = &self.cache_scope {
            let current = rewritten.as_deref().unwrap_or(body);
            let tenant_scope = prompt_cache::Scope {
                key: &rules.isolation.key,
                tenant: &scope.tenant,
                user: scope.user.as_deref(),
            };
            match prompt_cache::scope(current, scope.api, &tenant_scope) {
                Ok(new) => rewritten = Some(new),
                Err(refusal) => {
                    return self.refuse(refusal_of(refusal.reason, refusal.detail), rules);
                }
            }
        }
        if self.add_stream_usage {
            let current = rewritten.as_deref().unwrap_or(body);
            if let Some(new) = metering::with_stream_usage(&self.path, current) {
                rewritten = Some(new);
            }
        }
        // Estimated from the body the client sent (what the gateway adds is not prompt).
        self.meter.read_request(body, rules.usage, rules.pricing);
        // An answer that started already was not capped by this body: nothing to do.
        let clamp = self.clamp.filter(|_| self.phase == Phase::Admitted);
        if let Some((api, _)) = clamp {
            let facts = usage::inspect_request(body);
            if facts.ambiguous {
                let detail = "an output limit, n or best_of is named twice".to_string();
                return self.refuse(refusal_of(Reason::InvalidBody, detail), rules);
            }
            let price = metering::price(rules.pricing, self.meter.request_model());
            let ask = output_cap::Ask::of(
                &facts,
                usage::estimate_input_tokens(body.len()),
                price,
                rules.usage.default_reservation_tokens,
            );
            let changed = rewritten.is_some();
            self.pending = Some(Pending {
                api,
                body: rewritten.unwrap_or_else(|| body.to_vec()),
                changed,
            });
            return Effects {
                cap: Some(ask),
                ..Effects::default()
            };
        }
        self.body_read(rewritten, rules)
    }

    /// The shell made the capped reservation [`Effects::cap`] asked for (or could not).
    pub fn capped(&mut self, capping: Capping, rules: &Rules<'_>) -> Effects {
        let Some(pending) = self.pending.take() else {
            return Effects::default();
        };
        let (reservation, cap) = match capping {
            Capping::Reserved(reservation, cap) => (reservation, cap),
            Capping::Refused(refusal) => return self.refuse(quota_refusal(&refusal), rules),
            Capping::Unavailable => {
                return self.body_read(pending.changed.then_some(pending.body), rules);
            }
        };
        self.held = Some(reservation);
        self.meter.hold(cap.demand);
        if !cap.rewrite {
            return self.body_read(pending.changed.then_some(pending.body), rules);
        }
        match output_cap::apply(&pending.body, pending.api, cap.per_choice) {
            Ok(body) => {
                self.output_cap = Some(cap.per_choice);
                self.body_read(Some(body), rules)
            }
            Err(_) => {
                let detail = "the output limit cannot be set in this body".to_string();
                self.refuse(refusal_of(Reason::InvalidBody, detail), rules)
            }
        }
    }

    /// The request body was read and decided; `rewritten` replaces it.
    fn body_read(&mut self, rewritten: Option<Vec<u8>>, rules: &Rules<'_>) -> Effects {
        let mut effects = self.body_decided(true, rules);
        // A call about to leave, or one in flight, resumes the request when it is answered.
        if self.released && self.trailers && !effects.ask.tokens && self.calls == 0 {
            self.replay = true;
            effects.resume = true;
        }
        if let Some(new) = rewritten {
            debug_assert!(self.body_may_change);
            if self.headers_held {
                effects.content_length = Some(new.len());
            }
            effects.new_body = Some(new);
        }
        effects
    }

    /// The objects a body names must be the tenant's; notes whether it creates one.
    fn check_objects(&mut self, body: &[u8], rules: &Rules<'_>) -> Result<(), PathRefusal> {
        let Some(plan) = &self.objects else {
            return Ok(());
        };
        for id in objects::references(body)? {
            plan.allows(&id, rules.owners)?;
        }
        self.creates = plan
            .route
            .creates
            .filter(|c| c.is_stored(Some(body)))
            .map(|c| c.id_field);
        Ok(())
    }

    /// The held headers went on before the body came: the body is decided when Envoy delivers
    /// it after them.
    fn headers_released(&mut self) -> Effects {
        if std::mem::replace(&mut self.headers_held, false) {
            self.released = true;
            if self.paused_at == Some(Point::Headers) {
                self.paused_at = None;
            }
        }
        Effects::default()
    }

    /// The body is decided (`read`: it was read, else it goes through unread): the estimate is
    /// known, the held headers may go, the model's token check may leave.
    fn body_decided(&mut self, read: bool, rules: &Rules<'_>) -> Effects {
        self.body = Body::Done;
        let mut effects = Effects::default();
        if self.phase == Phase::Admitted {
            self.phase = Phase::EstimateKnown;
            let demand = self.meter.demand();
            if read && self.held.is_some_and(|held| held.demand != demand) {
                effects.reserve = Some(demand);
            }
        }
        effects.ask.tokens = self.token_check_waits && rules.global.is_some();
        effects.ask.user_tokens = self.token_check_waits && self.users.tokens;
        effects
    }

    fn call_answered(
        &mut self,
        quota: ratelimit::Quota,
        answer: Option<&ratelimit::Answer>,
        rules: &Rules<'_>,
    ) -> Effects {
        self.calls = self.calls.saturating_sub(1);
        self.verdict(quota, answer, rules)
    }

    /// A rate-limit answer known before the request callback that asked returns (leased
    /// credit): no call was in flight, and that callback's own flow ([`Stream::request_flow`])
    /// lets the request go, so no resumption is asked for.
    pub fn answered_at_once(
        &mut self,
        usage: ratelimit::Usage,
        answer: Option<&ratelimit::Answer>,
        rules: &Rules<'_>,
    ) -> Effects {
        let mut effects = self.verdict(ratelimit::Quota::tenant(usage), answer, rules);
        effects.resume = false;
        effects
    }

    /// What the service's answer about `quota` means for the request.
    fn verdict(
        &mut self,
        quota: ratelimit::Quota,
        answer: Option<&ratelimit::Answer>,
        rules: &Rules<'_>,
    ) -> Effects {
        if self.refused {
            return Effects::default();
        }
        let verdict = answer.map(|a| &a.verdict);
        match (verdict, answer) {
            (Some(Verdict::Ok), _) => self.go_on(quota, Effects::default()),
            (Some(Verdict::OverLimit), Some(answer)) if self.shadow => {
                let refusal = over_limit(quota, answer);
                self.go_on(
                    quota,
                    Effects {
                        shadowed: Some((refusal.reason, refusal.detail)),
                        ..Effects::default()
                    },
                )
            }
            (Some(Verdict::OverLimit), Some(answer)) => {
                self.refuse(over_limit(quota, answer), rules)
            }
            _ => {
                let fail_open = rules
                    .global
                    .is_some_and(|g| g.failure_mode == FailureMode::Allow);
                if fail_open {
                    self.go_on(
                        quota,
                        Effects {
                            admitted_despite: Some(Reason::RateLimitServiceUnavailable),
                            ..Effects::default()
                        },
                    )
                } else {
                    let mut refusal = refusal_of(
                        Reason::RateLimitServiceUnavailable,
                        "rate-limit service unavailable".into(),
                    );
                    refusal.reply.headers.push(("retry-after", "1".into()));
                    self.refuse(refusal, rules)
                }
            }
        }
    }

    /// The request may go on as far as `quota` is concerned. A user's request counter is
    /// asked before the tenant's, which is asked only then: a user over their own limit never
    /// spends the tenant's requests (a request the tenant's counter refuses still counts in
    /// the user's, the user's own loss).
    fn go_on(&mut self, quota: ratelimit::Quota, mut effects: Effects) -> Effects {
        if quota == ratelimit::Quota::user(ratelimit::Usage::Requests) {
            // A stream already over (its client left) asks nothing more.
            effects.ask.requests = !self.phase.is_settled();
            return effects;
        }
        self.resume_if_free(effects)
    }

    fn response_headers(&mut self, status: u32, content_type: &str) -> Effects {
        if self.refused || self.status.is_some() {
            // The filter's own local reply; or headers seen already.
            return Effects::default();
        }
        self.status = Some(status);
        if !self.phase.is_settled() {
            self.phase = Phase::ResponseStarted;
        }
        if self.reads_response() {
            self.meter.response_started(content_type);
        }
        Effects {
            drop_response_length: self.listing.is_some(),
            private_cache: self.private_cache,
            ..Effects::default()
        }
    }

    fn response_data(
        &mut self,
        chunk: Option<&[u8]>,
        size: usize,
        end: bool,
        rules: &Rules<'_>,
    ) -> Effects {
        if self.refused {
            return Effects::default();
        }
        if let Some(listing) = &self.listing {
            if !end && size <= listing.max_bytes() {
                return Effects {
                    hold_response: true,
                    ..Effects::default()
                };
            }
            // Never forward a listing that could not be confined to the tenant.
            let filtered = chunk
                .and_then(|body| match listing {
                    Listing::Collections(plan) => vector_store::filter_response(plan, body),
                    Listing::Objects { .. } => {
                        let plan = self.objects.as_ref()?;
                        objects::filter_listing(body, |id| plan.allows(id, rules.owners).is_ok())
                    }
                })
                .unwrap_or_else(|| {
                    denial::reply(Reason::VectorOperationNotAllowed)
                        .body
                        .into_bytes()
                });
            return Effects {
                new_response_body: Some(filtered),
                // Over the cap: what follows must not reach the client either.
                reset_response: !end,
                settle: if end {
                    self.settle(Phase::Ended, rules)
                } else {
                    None
                },
                ..Effects::default()
            };
        }
        if let Some(chunk) = chunk {
            self.meter.response_chunk(chunk);
        }
        Effects {
            settle: if end {
                self.settle(Phase::Ended, rules)
            } else {
                None
            },
            ..Effects::default()
        }
    }

    /// Refuses the request after its admission: the client gets `refusal`, the request is
    /// settled (it was never answered: nothing is charged) and nothing else happens to it.
    fn refuse(&mut self, refusal: Refusal, rules: &Rules<'_>) -> Effects {
        self.refused = true;
        Effects {
            refuse: Some(refusal),
            settle: self.settle(Phase::Refused, rules),
            ..Effects::default()
        }
    }

    /// The request's one settlement, by the charging rule; `None` once settled.
    fn settle(&mut self, end: Phase, rules: &Rules<'_>) -> Option<Settlement> {
        if self.phase.is_settled() {
            return None;
        }
        self.phase = end;
        // The filter's own reply is no answer from the upstream: it never sets `status`.
        let answer = Answer {
            status: self.status,
            complete: end == Phase::Ended,
        };
        let held = self.held.map_or(self.meter.demand(), |r| r.demand);
        let outcome = self
            .metered
            .then(|| self.meter.outcome(rules.pricing, answer, held));
        let debit_tokens = match &outcome {
            Some(outcome) if rules.global.is_some() => outcome.charge.tokens,
            _ => 0,
        };
        // The provider keeps what a successful answer created, also when the stream was cut.
        let answered_ok = self.status.is_some_and(|s| (200..300).contains(&s));
        let created = self
            .creates
            .filter(|_| answered_ok)
            .and_then(|field| self.meter.created_id(field));
        Some(Settlement {
            reservation: self.held,
            outcome,
            created,
            debit_tokens,
            debit_user: self.users.tokens && debit_tokens > 0,
            phase: end,
        })
    }
}

#[cfg(test)]
mod tests;
