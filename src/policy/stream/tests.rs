//! The stream's life in every order of events: one settlement per admitted request, the
//! reservation back where it was, and exactly the charge the charging rule says.

use super::*;
use crate::policy::cost::Price;
use crate::policy::plan::{Limits, Window};
use crate::policy::quota::{self, Actual, Kind, QuotaState};
use crate::policy::ratelimit::Answer as ServiceAnswer;
#[cfg(target_family = "wasm")]
use wasm_bindgen_test::wasm_bindgen_test as test;

const CHAT: &[u8] =
    br#"{"model":"gpt-4o","max_tokens":50,"messages":[{"role":"user","content":"hi"}]}"#;
const STREAMING_CHAT: &[u8] = br#"{"model":"gpt-4o","stream":true,"messages":[]}"#;
const USAGE: &[u8] = br#"{"model":"gpt-4o","usage":{"prompt_tokens":7,"completion_tokens":3}}"#;
const USAGE_TOKENS: u64 = 10;
const NOW: u64 = 1_700_000_000;
const CLAMP: OutputCap = OutputCap {
    min_output_tokens: 16,
};

const ISOLATION: IsolationRules = IsolationRules {
    provider_objects: crate::policy::isolation::ProviderObjects::Off,
    prompt_cache: crate::policy::isolation::PromptCache::Off,
    key: [9; 32],
    store: crate::policy::isolation::StoreRules {
        buckets: 0,
        ttl_s: 60,
    },
};

/// No object was ever seen created.
struct Nobody;

impl Owners for Nobody {
    fn owner_of(&self, _id: &str) -> Option<objects::OwnerDigest> {
        None
    }
}

fn usage_rules() -> UsageRules {
    UsageRules {
        default_reservation_tokens: 100,
        max_body_bytes: 4096,
        inject_stream_usage: true,
    }
}

fn pricing() -> Pricing {
    let mut pricing = Pricing::default();
    pricing
        .models
        .insert("gpt-4o".into(), Price::flat(2_500_000, 10_000_000));
    pricing
}

/// The rules of a gateway without a rate-limit service or isolation.
fn local_rules<'a>(usage: &'a UsageRules, pricing: &'a Pricing) -> Rules<'a> {
    Rules {
        usage,
        pricing,
        global: None,
        isolation: &ISOLATION,
        owners: &Nobody,
    }
}

fn global(failure_mode: FailureMode, model_entry: bool) -> GlobalRateLimit {
    GlobalRateLimit {
        cluster: "ratelimit".into(),
        domain: "tenant-guard".into(),
        timeout_ms: 50,
        failure_mode,
        extra_entries: if model_entry {
            vec![ExtraEntry::Model]
        } else {
            vec![]
        },
        lease: None,
    }
}

fn lease_rules() -> crate::policy::lease::LeaseRules {
    crate::policy::lease::LeaseRules {
        window_ms: 60_000,
        block_ms: 5_000,
        low_water_permille: 500,
        requests: crate::policy::lease::Blocks { min: 1, max: 10 },
        tokens: crate::policy::lease::Blocks { min: 1, max: 10 },
        stale_ms: 1_100,
    }
}

fn limits() -> Limits {
    Limits {
        requests: vec![Window {
            limit: 1_000_000,
            window_s: 86_400,
        }],
        tokens: vec![Window {
            limit: 1_000_000_000,
            window_s: 86_400,
        }],
        monthly_budget_micro_usd: Some(1_000_000_000),
        enforcement: Default::default(),
        output_cap: None,
        ..Limits::default()
    }
}

/// What the test's shell does: executes effects against one tenant's counters.
struct Books {
    state: QuotaState,
    limits: Limits,
    settlements: usize,
    charged_tokens: u64,
    admitted: u64,
}

impl Books {
    fn new() -> Books {
        Books {
            state: QuotaState::default(),
            limits: limits(),
            settlements: 0,
            charged_tokens: 0,
            admitted: 0,
        }
    }

    fn admit(&mut self, demand: Demand) -> Reservation {
        let admitted = quota::admit(&self.state, &self.limits, NOW, demand).unwrap();
        self.state = admitted.state;
        self.admitted += 1;
        admitted.reservation
    }

    /// Executes `effects` for `stream`, feeding back what the shell would (the body read, the
    /// new reservation); returns the settlement if one came.
    fn execute(
        &mut self,
        stream: &mut Stream,
        effects: Effects,
        body: &[u8],
        rules: &Rules<'_>,
    ) -> Option<Settlement> {
        let mut effects = effects;
        if effects.read_body {
            effects = stream.on(Event::RequestBody(body), rules);
        }
        if let Some(ask) = effects.cap {
            let held = stream.held().unwrap();
            let capping =
                match output_cap::reserve(&self.state, &self.limits, NOW, &held, &ask, CLAMP) {
                    Ok((state, reservation, cap)) => {
                        self.state = state;
                        Capping::Reserved(reservation, cap)
                    }
                    Err(refusal) => Capping::Refused(refusal),
                };
            effects = stream.capped(capping, rules);
        }
        if let Some(demand) = effects.reserve {
            let held = stream.held().unwrap();
            let (state, reservation) =
                quota::reserve(&self.state, &self.limits, NOW, &held, demand);
            self.state = state;
            stream.reserved(reservation);
        }
        for _ in effects.ask.quotas() {
            let more = stream.on(Event::CallSent, rules);
            assert_eq!(more, Effects::default());
        }
        let settlement = effects.settle;
        if let Some(s) = &settlement {
            self.settlements += 1;
            self.charged_tokens += s.charge().tokens;
            if let Some(reservation) = &s.reservation {
                self.state = quota::settle(&self.state, &self.limits, NOW, reservation, s.charge());
            }
        }
        settlement
    }

    /// (used, reserved) of the first window of `kind`.
    fn window(&self, kind: Kind) -> (u64, u64) {
        self.state
            .counts()
            .into_iter()
            .find(|(k, _, _)| *k == kind)
            .map_or((0, 0), |(_, used, reserved)| (used, reserved))
    }
}

/// One kind of thing that can happen to a request after its headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    BodyChunk,
    BodyEnd,
    RequestTrailers,
    Answer200,
    Answer400,
    UsageChunk,
    PlainChunk,
    ResponseEnd,
    ResponseTrailers,
    ServiceOk,
    ServiceOverLimit,
    ServiceFailed,
    /// The shell let held headers go before the body was read.
    Released,
}

const STEPS: [Step; 13] = [
    Step::BodyChunk,
    Step::BodyEnd,
    Step::RequestTrailers,
    Step::Answer200,
    Step::Answer400,
    Step::UsageChunk,
    Step::PlainChunk,
    Step::ResponseEnd,
    Step::ResponseTrailers,
    Step::ServiceOk,
    Step::ServiceOverLimit,
    Step::ServiceFailed,
    Step::Released,
];

/// The variations of a request and a gateway the walk covers.
#[derive(Debug, Clone, Copy)]
struct Variant {
    body_follows: bool,
    header_mode: HeaderMode,
    global: Option<(FailureMode, bool)>,
    streaming_body: bool,
    /// The plan caps output limits (`output_cap`).
    capped: bool,
}

fn variants() -> Vec<Variant> {
    let mut out = Vec::new();
    for body_follows in [true, false] {
        for header_mode in [HeaderMode::Held, HeaderMode::Forwarded, HeaderMode::Unknown] {
            for global in [
                None,
                Some((FailureMode::Deny, false)),
                Some((FailureMode::Allow, true)),
            ] {
                for streaming_body in [false, true] {
                    // Capping is a local matter: walked without the service, to keep it quick.
                    let capping: &[bool] = if global.is_none() {
                        &[false, true]
                    } else {
                        &[false]
                    };
                    for &capped in capping {
                        out.push(Variant {
                            body_follows,
                            header_mode,
                            global,
                            streaming_body,
                            capped,
                        });
                    }
                }
            }
        }
    }
    out
}

/// What the charging rule says a request is charged, from what happened before it settled.
#[derive(Default)]
struct Oracle {
    status: Option<u32>,
    usage_seen: bool,
    /// The estimate of the read body, once read before the settlement.
    body_estimate: Option<u64>,
    /// Refused before it was settled otherwise.
    refused: bool,
}

impl Oracle {
    fn charge(&self, provisional: u64) -> u64 {
        match self.status {
            None => 0,
            Some(_) if self.usage_seen => USAGE_TOKENS,
            Some(status) if status >= 400 => 0,
            Some(_) => self.body_estimate.unwrap_or(provisional),
        }
    }
}

/// Runs one request through `steps` (then `Log`), checking the books as it goes; returns the
/// tokens it was charged.
fn run(books: &mut Books, variant: Variant, steps: &[Step]) -> u64 {
    let global_rules = variant.global.map(|(mode, model)| global(mode, model));
    let usage = usage_rules();
    let pricing = pricing();
    let rules = Rules {
        usage: &usage,
        pricing: &pricing,
        global: global_rules.as_ref(),
        isolation: &ISOLATION,
        owners: &Nobody,
    };
    let body = if variant.streaming_body {
        STREAMING_CHAT
    } else {
        CHAT
    };
    let provisional = if variant.body_follows {
        metering::provisional_demand(
            Some(body.len() as u64),
            usage.default_reservation_tokens,
            &pricing,
        )
    } else {
        Demand::default()
    };
    let reservation = books.admit(provisional);
    let (mut stream, effects) = Stream::admit(
        Setup {
            method: "POST",
            path: "/v1/chat/completions",
            body_follows: variant.body_follows,
            content_length: variant.body_follows.then_some(body.len() as u64),
            held: Some(reservation),
            header_mode: variant.header_mode,
            body_plan: None,
            response_plan: None,
            objects: None,
            cache_scope: None,
            private_cache: false,
            json_body: true,
            shadow: false,
            output_cap: variant.capped.then_some(CLAMP),
            models: None,
            user_quotas: UserQuotas::default(),
        },
        &rules,
    );
    let mut oracle = Oracle::default();
    let mut settled: Option<Settlement> = books.execute(&mut stream, effects, body, &rules);
    let _ = stream.request_flow(Point::Headers);
    for &step in steps {
        let before = stream.phase();
        let event = match step {
            Step::BodyChunk => Event::RequestData {
                size: body.len() / 2,
                end: false,
            },
            Step::BodyEnd => Event::RequestData {
                size: body.len(),
                end: true,
            },
            Step::RequestTrailers => Event::RequestTrailers,
            Step::Released => Event::HeadersReleased,
            Step::Answer200 | Step::Answer400 => Event::ResponseHeaders {
                status: if step == Step::Answer200 { 200 } else { 400 },
                content_type: "application/json",
            },
            Step::UsageChunk => Event::ResponseData {
                chunk: Some(USAGE),
                size: USAGE.len(),
                end: false,
            },
            Step::PlainChunk => Event::ResponseData {
                chunk: Some(b"{}"),
                size: 2,
                end: false,
            },
            Step::ResponseEnd => Event::ResponseData {
                chunk: Some(b""),
                size: 0,
                end: true,
            },
            Step::ResponseTrailers => Event::ResponseTrailers { buffered: None },
            Step::ServiceOk | Step::ServiceOverLimit | Step::ServiceFailed => {
                if rules.global.is_none() {
                    continue;
                }
                let answer = ServiceAnswer {
                    verdict: if step == Step::ServiceOk {
                        Verdict::Ok
                    } else {
                        Verdict::OverLimit
                    },
                    reset_after: Some(3),
                    limit_remaining: None,
                    response_headers: vec![],
                };
                let answer = (step != Step::ServiceFailed).then_some(answer);
                let effects = answered(
                    &mut stream,
                    ratelimit::Quota::tenant(ratelimit::Usage::Requests),
                    answer.as_ref(),
                    &rules,
                );
                if effects.refuse.is_some() && settled.is_none() {
                    oracle.refused = true;
                }
                if let Some(s) = books.execute(&mut stream, effects, body, &rules) {
                    assert!(settled.replace(s).is_none(), "settled twice: {steps:?}");
                }
                continue;
            }
        };
        // What the oracle learns, as the upstream and the client behave, until the settlement.
        let live = !stream.phase().is_settled() && !stream.refused();
        let open = !stream.phase().is_settled();
        match step {
            Step::Answer200 | Step::Answer400
                if open && !stream.refused() && oracle.status.is_none() =>
            {
                oracle.status = Some(if step == Step::Answer200 { 200 } else { 400 });
            }
            Step::UsageChunk if live && oracle.status.is_some() => oracle.usage_seen = true,
            _ => {}
        }
        let effects = stream.on(event, &rules);
        if effects.read_body && live && before == Phase::Admitted {
            // Estimated from the body the client sent.
            let mut meter = Meter::new(Demand::default(), None, None);
            meter.read_request(body, &usage, &pricing);
            oracle.body_estimate = Some(meter.demand().tokens);
        }
        if effects.refuse.is_some() && settled.is_none() {
            oracle.refused = true;
        }
        if let Some(s) = books.execute(&mut stream, effects, body, &rules) {
            assert!(settled.replace(s).is_none(), "settled twice: {steps:?}");
        }
    }
    let effects = stream.on(Event::Log, &rules);
    if let Some(s) = books.execute(&mut stream, effects, body, &rules) {
        assert!(settled.replace(s).is_none(), "settled twice: {steps:?}");
    }
    let settlement = settled.unwrap_or_else(|| panic!("never settled: {variant:?} {steps:?}"));
    assert!(stream.phase().is_settled());
    assert_eq!(
        settlement.charge().tokens,
        oracle.charge(provisional.tokens),
        "charge for {variant:?} {steps:?}"
    );
    if oracle.refused && oracle.status.is_none() {
        assert_eq!(settlement.phase, Phase::Refused, "{steps:?}");
    }
    settlement.charge().tokens
}

fn check_books_after(books: &Books, requests: u64, charged: u64) {
    assert_eq!(books.settlements as u64, requests, "one settlement each");
    let (tokens_used, tokens_reserved) = books.window(Kind::Tokens);
    assert_eq!(tokens_reserved, 0, "every reservation returned");
    assert_eq!(tokens_used, charged, "used = the charges");
    assert_eq!(books.charged_tokens, charged);
    let (_, budget_reserved) = books.window(Kind::Budget);
    assert_eq!(budget_reserved, 0, "every budget reservation returned");
    assert_eq!(books.window(Kind::Requests), (requests, 0));
    assert_eq!(books.admitted, requests);
}

/// Every ordered choice of up to `depth` distinct steps, in every order.
fn orders(depth: usize) -> Vec<Vec<Step>> {
    let mut out = vec![vec![]];
    let mut frontier: Vec<Vec<Step>> = vec![vec![]];
    for _ in 0..depth {
        let mut next = Vec::new();
        for prefix in &frontier {
            for step in STEPS {
                if !prefix.contains(&step) {
                    let mut order = prefix.clone();
                    order.push(step);
                    next.push(order);
                }
            }
        }
        out.extend(next.iter().cloned());
        frontier = next;
    }
    out
}

#[test]
fn every_order_of_events_settles_once_and_charges_by_the_rule() {
    #[cfg(not(target_family = "wasm"))]
    const DEPTH: usize = 4;
    #[cfg(target_family = "wasm")]
    const DEPTH: usize = 3;
    let orders = orders(DEPTH);
    for variant in variants() {
        for steps in &orders {
            let mut books = Books::new();
            let charged = run(&mut books, variant, steps);
            check_books_after(&books, 1, charged);
        }
    }
}

/// A tiny deterministic generator (Knuth's MMIX LCG).
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) % n as u64) as usize
    }
}

#[test]
fn long_random_lives_with_repeated_events_settle_once() {
    let mut rng = Lcg(7);
    let variants = variants();
    for _ in 0..3000 {
        let variant = variants[rng.below(variants.len())];
        let len = rng.below(14);
        let steps: Vec<Step> = (0..len).map(|_| STEPS[rng.below(STEPS.len())]).collect();
        let mut books = Books::new();
        let charged = run(&mut books, variant, &steps);
        check_books_after(&books, 1, charged);
    }
}

#[test]
fn concurrent_requests_of_one_tenant_leave_the_books_exact() {
    // Requests interleave on one tenant's counters: each is run to its end in turn here, but
    // admitted all at once first, as concurrent requests are.
    let mut rng = Lcg(42);
    let variants = variants();
    for _ in 0..200 {
        let mut books = Books::new();
        let count = 1 + rng.below(8);
        let mut total = 0;
        for _ in 0..count {
            let variant = variants[rng.below(variants.len())];
            let len = rng.below(10);
            let steps: Vec<Step> = (0..len).map(|_| STEPS[rng.below(STEPS.len())]).collect();
            total += run(&mut books, variant, &steps);
        }
        check_books_after(&books, count as u64, total);
    }
}

#[test]
fn interleaved_streams_share_one_set_of_counters_exactly() {
    // Several streams alive at once, their events interleaved step by step.
    let usage = usage_rules();
    let pricing = pricing();
    let rules = local_rules(&usage, &pricing);
    let mut rng = Lcg(99);
    for _ in 0..300 {
        let mut books = Books::new();
        let n = 2 + rng.below(5);
        let mut streams: Vec<(Stream, Vec<Step>, Option<Settlement>)> = (0..n)
            .map(|_| {
                let provisional = metering::provisional_demand(
                    Some(CHAT.len() as u64),
                    usage.default_reservation_tokens,
                    &pricing,
                );
                let reservation = books.admit(provisional);
                let (stream, effects) = Stream::admit(
                    Setup {
                        method: "POST",
                        path: "/v1/chat/completions",
                        body_follows: true,
                        content_length: Some(CHAT.len() as u64),
                        held: Some(reservation),
                        header_mode: [HeaderMode::Held, HeaderMode::Forwarded, HeaderMode::Unknown]
                            [rng.below(3)],
                        body_plan: None,
                        response_plan: None,
                        objects: None,
                        cache_scope: None,
                        private_cache: false,
                        json_body: true,
                        shadow: false,
                        output_cap: (rng.below(2) == 0).then_some(CLAMP),
                        models: None,
                        user_quotas: UserQuotas::default(),
                    },
                    &rules,
                );
                assert_eq!(effects.settle, None);
                let mut script = vec![Step::BodyEnd, Step::Answer200];
                match rng.below(4) {
                    0 => script.push(Step::UsageChunk),
                    1 => script.push(Step::PlainChunk),
                    _ => {}
                }
                if rng.below(2) == 0 {
                    script.push(Step::ResponseEnd);
                }
                script.reverse();
                (stream, script, None)
            })
            .collect();
        let mut charged = 0;
        loop {
            let live: Vec<usize> = (0..n).filter(|&i| !streams[i].1.is_empty()).collect();
            if live.is_empty() {
                break;
            }
            let i = live[rng.below(live.len())];
            let (stream, script, settled) = &mut streams[i];
            let step = script.pop().unwrap();
            let event = match step {
                Step::BodyEnd => Event::RequestData {
                    size: CHAT.len(),
                    end: true,
                },
                Step::Answer200 => Event::ResponseHeaders {
                    status: 200,
                    content_type: "application/json",
                },
                Step::UsageChunk => Event::ResponseData {
                    chunk: Some(USAGE),
                    size: USAGE.len(),
                    end: false,
                },
                Step::PlainChunk => Event::ResponseData {
                    chunk: Some(b"{}"),
                    size: 2,
                    end: false,
                },
                _ => Event::ResponseData {
                    chunk: None,
                    size: 0,
                    end: true,
                },
            };
            let effects = stream.on(event, &rules);
            if let Some(s) = books.execute(stream, effects, CHAT, &rules) {
                assert!(settled.replace(s).is_none());
            }
        }
        for (stream, _, settled) in &mut streams {
            let effects = stream.on(Event::Log, &rules);
            if let Some(s) = books.execute(stream, effects, CHAT, &rules) {
                assert!(settled.replace(s).is_none());
            }
            charged += settled.as_ref().unwrap().charge().tokens;
        }
        check_books_after(&books, n as u64, charged);
    }
}

// === The table, line by line ===

/// The stream's effects of the rate-limit service's answer for `quota`.
fn answered(
    stream: &mut Stream,
    quota: ratelimit::Quota,
    answer: Option<&ServiceAnswer>,
    rules: &Rules<'_>,
) -> Effects {
    stream.on(Event::CallAnswered { quota, answer }, rules)
}

/// An answer of the rate-limit service without headers or remaining counts.
fn service_answer(verdict: Verdict, reset_after: Option<u64>) -> ServiceAnswer {
    ServiceAnswer {
        verdict,
        reset_after,
        limit_remaining: None,
        response_headers: vec![],
    }
}

fn rules_without_global() -> (UsageRules, Pricing) {
    (usage_rules(), pricing())
}

fn setup(body_follows: bool, headers_can_wait: bool) -> Setup<'static> {
    Setup {
        method: "POST",
        path: "/v1/chat/completions",
        body_follows,
        content_length: None,
        held: None,
        header_mode: if headers_can_wait {
            HeaderMode::Held
        } else {
            HeaderMode::Forwarded
        },
        body_plan: None,
        response_plan: None,
        objects: None,
        cache_scope: None,
        private_cache: false,
        json_body: true,
        shadow: false,
        output_cap: None,
        models: None,
        user_quotas: UserQuotas::default(),
    }
}

#[test]
fn headers_wait_for_a_body_that_may_change_only_when_envoy_allows_it() {
    let (usage, pricing) = rules_without_global();
    let rules = local_rules(&usage, &pricing);
    let (mut held, effects) = Stream::admit(setup(true, true), &rules);
    assert!(held.headers_held());
    assert!(!effects.drop_content_length, "the length is fixed later");
    assert_eq!(held.request_flow(Point::Headers), Flow::Pause);

    let (mut forwarded, effects) = Stream::admit(setup(true, false), &rules);
    assert!(!forwarded.headers_held());
    assert!(
        effects.drop_content_length,
        "the body may change after headers went"
    );
    assert_eq!(forwarded.request_flow(Point::Headers), Flow::Continue);
    assert_eq!(forwarded.request_flow(Point::Body), Flow::Pause);
}

#[test]
fn a_put_to_completions_may_not_change_its_body_in_either_stage() {
    let (usage, pricing) = rules_without_global();
    let rules = local_rules(&usage, &pricing);
    for can_wait in [true, false] {
        let (mut stream, effects) = Stream::admit(
            Setup {
                method: "PUT",
                ..setup(true, can_wait)
            },
            &rules,
        );
        assert!(!stream.body_may_change());
        assert!(!effects.drop_content_length);
        let effects = stream.on(Event::RequestBody(STREAMING_CHAT), &rules);
        assert_eq!(
            effects.new_body, None,
            "a PUT keeps its body and its length"
        );
    }
}

#[test]
fn a_rewritten_body_carries_its_new_length_while_the_headers_wait() {
    let (usage, pricing) = rules_without_global();
    let rules = local_rules(&usage, &pricing);
    let (mut stream, _) = Stream::admit(setup(true, true), &rules);
    let read = stream.on(
        Event::RequestData {
            size: STREAMING_CHAT.len(),
            end: true,
        },
        &rules,
    );
    assert!(read.read_body);
    let effects = stream.on(Event::RequestBody(STREAMING_CHAT), &rules);
    let body = effects.new_body.unwrap();
    assert!(crate::policy::usage::inspect_request(&body).include_usage);
    assert_eq!(effects.content_length, Some(body.len()));
    assert_eq!(stream.request_flow(Point::Body), Flow::Continue);
}

#[test]
fn request_trailers_end_the_body_like_end_of_stream() {
    let (usage, pricing) = rules_without_global();
    let rules = local_rules(&usage, &pricing);
    let (mut stream, _) = Stream::admit(setup(true, true), &rules);
    assert!(
        !stream
            .on(
                Event::RequestData {
                    size: 10,
                    end: false
                },
                &rules
            )
            .read_body
    );
    assert!(stream.on(Event::RequestTrailers, &rules).read_body);
    let effects = stream.on(Event::RequestBody(STREAMING_CHAT), &rules);
    assert!(
        effects.new_body.is_some(),
        "the body rule ran at the trailers"
    );
    assert_eq!(stream.phase(), Phase::EstimateKnown);
}

#[test]
fn a_refused_request_is_settled_with_nothing_and_ignores_its_own_reply() {
    let (usage, pricing) = rules_without_global();
    let global = global(FailureMode::Deny, false);
    let rules = Rules {
        usage: &usage,
        pricing: &pricing,
        global: Some(&global),
        isolation: &ISOLATION,
        owners: &Nobody,
    };
    let reservation = Reservation {
        demand: Demand {
            tokens: 500,
            micro_usd: 5,
        },
        admitted_at: NOW,
    };
    let (mut stream, effects) = Stream::admit(
        Setup {
            held: Some(reservation),
            ..setup(false, true)
        },
        &rules,
    );
    assert_eq!(
        effects.ask,
        Ask {
            requests: true,
            tokens: true,
            ..Ask::default()
        }
    );
    let _ = stream.on(Event::CallSent, &rules);
    let _ = stream.on(Event::CallSent, &rules);
    assert_eq!(stream.request_flow(Point::Headers), Flow::Pause);
    let effects = answered(
        &mut stream,
        ratelimit::Quota::tenant(ratelimit::Usage::Requests),
        None,
        &rules,
    );
    let refusal = effects.refuse.unwrap();
    assert_eq!(refusal.reason, Reason::RateLimitServiceUnavailable);
    assert_eq!(refusal.reply.status, 503);
    let settlement = effects.settle.unwrap();
    assert_eq!(settlement.phase, Phase::Refused);
    assert_eq!(settlement.charge(), Actual::default());
    assert_eq!(settlement.reservation, Some(reservation));
    // The local reply passes the filter's own response callbacks.
    let effects = stream.on(
        Event::ResponseHeaders {
            status: 503,
            content_type: "application/json",
        },
        &rules,
    );
    assert_eq!(effects, Effects::default());
    assert_eq!(stream.on(Event::Log, &rules), Effects::default());
    // The other call's answer changes nothing.
    let late = answered(
        &mut stream,
        ratelimit::Quota::tenant(ratelimit::Usage::Tokens),
        None,
        &rules,
    );
    assert_eq!(late, Effects::default());
}

#[test]
fn the_services_answer_resumes_the_request_once_nothing_else_holds_it() {
    let (usage, pricing) = rules_without_global();
    let global = global(FailureMode::Deny, false);
    let rules = Rules {
        usage: &usage,
        pricing: &pricing,
        global: Some(&global),
        isolation: &ISOLATION,
        owners: &Nobody,
    };
    let ok = service_answer(Verdict::Ok, None);
    // Headers held for the body and for two calls: only the body's end lets them go.
    let (mut stream, _) = Stream::admit(setup(true, true), &rules);
    let _ = stream.on(Event::CallSent, &rules);
    let _ = stream.on(Event::CallSent, &rules);
    assert_eq!(stream.request_flow(Point::Headers), Flow::Pause);
    for usage in [ratelimit::Usage::Requests, ratelimit::Usage::Tokens] {
        let effects = answered(
            &mut stream,
            ratelimit::Quota::tenant(usage),
            Some(&ok),
            &rules,
        );
        assert!(!effects.resume, "the body is still awaited");
    }
    let _ = stream.on(Event::RequestBody(CHAT), &rules);
    assert_eq!(stream.request_flow(Point::Body), Flow::Continue);

    // Headers going on at once wait only for the calls.
    let (mut stream, _) = Stream::admit(setup(true, false), &rules);
    let _ = stream.on(Event::CallSent, &rules);
    assert_eq!(stream.request_flow(Point::Headers), Flow::Pause);
    let effects = answered(
        &mut stream,
        ratelimit::Quota::tenant(ratelimit::Usage::Requests),
        Some(&ok),
        &rules,
    );
    assert!(effects.resume);
}

#[test]
fn over_limit_answers_become_429s_with_the_services_reset_and_known_headers() {
    let (usage, pricing) = rules_without_global();
    let global = global(FailureMode::Allow, false);
    let rules = Rules {
        usage: &usage,
        pricing: &pricing,
        global: Some(&global),
        isolation: &ISOLATION,
        owners: &Nobody,
    };
    let (mut stream, _) = Stream::admit(setup(false, true), &rules);
    let _ = stream.on(Event::CallSent, &rules);
    let answer = ServiceAnswer {
        verdict: Verdict::OverLimit,
        reset_after: Some(42),
        limit_remaining: None,
        response_headers: vec![
            ("X-RateLimit-Limit".into(), "5".into()),
            ("set-cookie".into(), "evil".into()),
        ],
    };
    let effects = answered(
        &mut stream,
        ratelimit::Quota::tenant(ratelimit::Usage::Tokens),
        Some(&answer),
        &rules,
    );
    let refusal = effects.refuse.unwrap();
    assert_eq!(refusal.reason, Reason::TokenQuotaExceeded);
    assert_eq!(refusal.reply.status, 429);
    let names: Vec<&str> = refusal.reply.headers.iter().map(|(n, _)| *n).collect();
    assert!(names.contains(&"retry-after") && names.contains(&"x-ratelimit-limit"));
    assert!(!names.contains(&"set-cookie"));
}

#[test]
fn a_failing_service_with_failure_mode_allow_lets_the_request_on_and_says_so() {
    let (usage, pricing) = rules_without_global();
    let global = global(FailureMode::Allow, false);
    let rules = Rules {
        usage: &usage,
        pricing: &pricing,
        global: Some(&global),
        isolation: &ISOLATION,
        owners: &Nobody,
    };
    let (mut stream, _) = Stream::admit(setup(false, true), &rules);
    let _ = stream.on(Event::CallSent, &rules);
    assert_eq!(stream.request_flow(Point::Headers), Flow::Pause);
    let effects = answered(
        &mut stream,
        ratelimit::Quota::tenant(ratelimit::Usage::Requests),
        None,
        &rules,
    );
    assert_eq!(
        effects.admitted_despite,
        Some(Reason::RateLimitServiceUnavailable)
    );
    assert!(effects.resume);
    assert!(effects.refuse.is_none());
}

#[test]
fn the_models_token_check_waits_for_the_body_that_names_it() {
    let (usage, pricing) = rules_without_global();
    let global = global(FailureMode::Deny, true);
    let rules = Rules {
        usage: &usage,
        pricing: &pricing,
        global: Some(&global),
        isolation: &ISOLATION,
        owners: &Nobody,
    };
    let (mut stream, effects) = Stream::admit(setup(true, true), &rules);
    assert_eq!(
        effects.ask,
        Ask {
            requests: true,
            tokens: false,
            ..Ask::default()
        }
    );
    assert!(
        stream.headers_held(),
        "the check decides before the upstream"
    );
    let effects = stream.on(Event::RequestBody(CHAT), &rules);
    assert!(effects.ask.tokens);
    assert_eq!(stream.request_model(), Some("gpt-4o"));
}

#[test]
fn with_leased_credit_tokens_are_asked_for_with_the_bodys_estimate() {
    let (usage, pricing) = rules_without_global();
    let mut global = global(FailureMode::Deny, false);
    global.lease = Some(lease_rules());
    let rules = Rules {
        usage: &usage,
        pricing: &pricing,
        global: Some(&global),
        isolation: &ISOLATION,
        owners: &Nobody,
    };
    let (mut stream, effects) = Stream::admit(setup(true, true), &rules);
    assert_eq!(
        effects.ask,
        Ask {
            requests: true,
            tokens: false,
            ..Ask::default()
        }
    );
    let provisional = stream.demand().tokens;
    let effects = stream.on(Event::RequestBody(CHAT), &rules);
    assert!(effects.ask.tokens);
    // No local quotas: the meter's estimate of the body (input plus max_tokens 50).
    assert!(stream.demand().tokens > 50, "{}", stream.demand().tokens);
    assert_ne!(stream.demand().tokens, provisional);
    // Without a body, at the headers.
    let (_, effects) = Stream::admit(setup(false, true), &rules);
    assert!(effects.ask.tokens);
}

#[test]
fn released_headers_get_their_body_decided_after_them() {
    let (usage, pricing) = rules_without_global();
    let rules = local_rules(&usage, &pricing);
    let (mut stream, effects) = Stream::admit(
        Setup {
            header_mode: HeaderMode::Unknown,
            ..setup(true, true)
        },
        &rules,
    );
    assert!(stream.headers_held(), "a held request probes the mode");
    assert!(
        !effects.drop_content_length,
        "its releaser drops the length"
    );
    assert!(stream.body_may_change());
    assert_eq!(stream.request_flow(Point::Headers), Flow::Pause);
    assert_eq!(
        stream.on(Event::HeadersReleased, &rules),
        Effects::default()
    );
    assert!(!stream.headers_held());
    let read = stream.on(
        Event::RequestData {
            size: STREAMING_CHAT.len(),
            end: true,
        },
        &rules,
    );
    assert!(read.read_body);
    let effects = stream.on(Event::RequestBody(STREAMING_CHAT), &rules);
    assert!(effects.new_body.is_some(), "still decided and rewritten");
    assert_eq!(effects.content_length, None, "the headers are gone");
    assert!(!effects.resume);
    assert_eq!(stream.request_flow(Point::Body), Flow::Continue);
}

#[test]
fn released_headers_with_a_body_ending_in_trailers_pause_the_trailers_once() {
    let (usage, pricing) = rules_without_global();
    let rules = local_rules(&usage, &pricing);
    let (mut stream, _) = Stream::admit(
        Setup {
            header_mode: HeaderMode::Unknown,
            ..setup(true, true)
        },
        &rules,
    );
    let _ = stream.request_flow(Point::Headers);
    let _ = stream.on(Event::HeadersReleased, &rules);
    let _ = stream.on(
        Event::RequestData {
            size: 10,
            end: false,
        },
        &rules,
    );
    assert_eq!(stream.request_flow(Point::Body), Flow::Pause);
    assert!(stream.on(Event::RequestTrailers, &rules).read_body);
    let effects = stream.on(Event::RequestBody(STREAMING_CHAT), &rules);
    assert!(effects.resume, "continue the paused trailers at once");
    assert_eq!(stream.request_flow(Point::Body), Flow::Pause);
    // Envoy delivers the body and the trailers again: both go on.
    let _ = stream.on(
        Event::RequestData {
            size: 60,
            end: false,
        },
        &rules,
    );
    assert_eq!(stream.request_flow(Point::Body), Flow::Continue);
    assert_eq!(
        stream.on(Event::RequestTrailers, &rules),
        Effects::default()
    );
    assert_eq!(stream.request_flow(Point::Body), Flow::Continue);
}

#[test]
fn a_body_over_the_cap_goes_through_unread_on_its_provisional_estimate() {
    let (usage, pricing) = rules_without_global();
    let rules = local_rules(&usage, &pricing);
    let held = Reservation {
        demand: Demand {
            tokens: 300,
            micro_usd: 1,
        },
        admitted_at: NOW,
    };
    let (mut stream, _) = Stream::admit(
        Setup {
            held: Some(held),
            ..setup(true, true)
        },
        &rules,
    );
    let effects = stream.on(
        Event::RequestData {
            size: usage.max_body_bytes + 1,
            end: false,
        },
        &rules,
    );
    assert!(!effects.read_body && effects.reserve.is_none() && effects.new_body.is_none());
    assert_eq!(stream.request_flow(Point::Body), Flow::Continue);
    assert_eq!(stream.phase(), Phase::EstimateKnown);
}

// === Isolation: provider-side objects and prompt caches ===

mod isolation {
    use super::*;
    use crate::policy::isolation::objects::{owner_digest, route, ObjectPlan, Remembered};
    use crate::policy::isolation::prompt_cache::Api;
    #[cfg(target_family = "wasm")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn plan(method: &str, path: &str) -> ObjectPlan {
        ObjectPlan::new(route(method, path), "acme", vec![])
    }

    fn owners() -> Remembered {
        let mut owners = Remembered::default();
        owners.0.insert("resp_acme".into(), owner_digest("acme"));
        owners
            .0
            .insert("resp_globex".into(), owner_digest("globex"));
        owners
    }

    pub(super) fn with_objects(method: &'static str, path: &'static str) -> Setup<'static> {
        Setup {
            method,
            path,
            objects: Some(plan(method, path)),
            ..setup(true, true)
        }
    }

    #[test]
    fn a_body_naming_another_tenants_object_is_refused_before_the_upstream_sees_it() {
        let (usage, pricing) = rules_without_global();
        let owners = owners();
        let rules = Rules {
            usage: &usage,
            pricing: &pricing,
            global: None,
            isolation: &ISOLATION,
            owners: &owners,
        };
        let (stream, _) = Stream::admit(with_objects("POST", "/v1/responses"), &rules);
        assert!(
            stream.headers_held(),
            "a JSON body that may name objects is decided first"
        );
        for (body, refused) in [
            (br#"{"previous_response_id":"resp_acme"}"#.as_slice(), false),
            (br#"{"previous_response_id":"resp_globex"}"#, true),
            (br#"{"input":[{"file_id":"file-unseen"}]}"#, true),
        ] {
            let (mut stream, _) = Stream::admit(with_objects("POST", "/v1/responses"), &rules);
            let effects = stream.on(Event::RequestBody(body), &rules);
            match effects.refuse {
                Some(refusal) => {
                    assert!(refused, "{}", String::from_utf8_lossy(body));
                    assert_eq!(refusal.reason, Reason::ProviderObjectNotFound);
                    assert_eq!(refusal.reply.status, 404);
                    assert_eq!(effects.settle.unwrap().charge(), Actual::default());
                }
                None => assert!(!refused, "{}", String::from_utf8_lossy(body)),
            }
        }
    }

    #[test]
    fn a_successful_answer_names_the_object_it_created() {
        let (usage, pricing) = rules_without_global();
        let owners = owners();
        let rules = Rules {
            usage: &usage,
            pricing: &pricing,
            global: None,
            isolation: &ISOLATION,
            owners: &owners,
        };
        let created = |status: u32, body: &[u8]| {
            let (mut stream, _) = Stream::admit(with_objects("POST", "/v1/responses"), &rules);
            let _ = stream.on(Event::RequestBody(body), &rules);
            let _ = stream.on(
                Event::ResponseHeaders {
                    status,
                    content_type: "application/json",
                },
                &rules,
            );
            let answer = br#"{"id":"resp_new","object":"response"}"#;
            let effects = stream.on(
                Event::ResponseData {
                    chunk: Some(answer),
                    size: answer.len(),
                    end: true,
                },
                &rules,
            );
            effects.settle.unwrap().created
        };
        assert_eq!(created(200, b"{}").as_deref(), Some("resp_new"));
        assert_eq!(created(500, b"{}"), None, "a failed answer created nothing");
        assert_eq!(created(200, br#"{"store":false}"#), None, "not stored");
    }

    #[test]
    fn a_listing_is_cut_to_the_tenants_objects() {
        let (usage, pricing) = rules_without_global();
        let owners = owners();
        let rules = Rules {
            usage: &usage,
            pricing: &pricing,
            global: None,
            isolation: &ISOLATION,
            owners: &owners,
        };
        let (mut stream, _) = Stream::admit(
            Setup {
                body_follows: false,
                ..with_objects("GET", "/v1/files")
            },
            &rules,
        );
        assert!(stream.holds_response());
        let _ = stream.on(
            Event::ResponseHeaders {
                status: 200,
                content_type: "application/json",
            },
            &rules,
        );
        let listing = br#"{"data":[{"id":"resp_acme"},{"id":"resp_globex"}]}"#;
        let held = stream.on(
            Event::ResponseData {
                chunk: None,
                size: listing.len(),
                end: false,
            },
            &rules,
        );
        assert!(held.hold_response);
        let effects = stream.on(
            Event::ResponseData {
                chunk: Some(listing),
                size: listing.len(),
                end: true,
            },
            &rules,
        );
        let body = effects.new_response_body.unwrap();
        assert_eq!(body, br#"{"data":[{"id":"resp_acme"}]}"#);
    }

    /// A body whose prompt cache is scoped never goes on unscoped: one the gateway cannot read
    /// is refused, and so is one over the cap, whatever content-type it claims.
    #[test]
    fn a_body_that_cannot_be_scoped_is_refused() {
        let (usage, pricing) = rules_without_global();
        let rules = local_rules(&usage, &pricing);
        let scoped = |json_body: bool| Setup {
            cache_scope: Some(CacheScope {
                api: Api::OpenAi,
                tenant: "acme".into(),
                user: None,
            }),
            json_body,
            ..setup(true, true)
        };
        for body in [
            &br#"{"model":"gpt-4o","prompt_cache_key":"mine","temperature":1e400}"#[..],
            br#"{"model":"gpt-4o","prompt_cache_key":"mine","user":"\ud800"}"#,
            b"prompt_cache_key=mine",
        ] {
            for json_body in [true, false] {
                let (mut stream, _) = Stream::admit(scoped(json_body), &rules);
                let effects = stream.on(Event::RequestBody(body), &rules);
                assert_eq!(effects.new_body, None);
                let refusal = effects.refuse.expect("refused");
                assert_eq!(refusal.reason, Reason::InvalidBody);
            }
        }
        let (mut stream, _) = Stream::admit(scoped(false), &rules);
        let effects = over_the_cap(&mut stream, &rules);
        assert_eq!(effects.refuse.unwrap().reason, Reason::BodyTooLarge);
    }

    /// The first data of a body larger than `usage.max_body_bytes`.
    fn over_the_cap(stream: &mut Stream, rules: &Rules<'_>) -> Effects {
        stream.on(
            Event::RequestData {
                size: rules.usage.max_body_bytes + 1,
                end: false,
            },
            rules,
        )
    }

    #[test]
    fn bodies_get_tenant_cache_keys_and_json_bodies_over_the_cap_are_refused() {
        let (usage, pricing) = rules_without_global();
        let owners = owners();
        let rules = Rules {
            usage: &usage,
            pricing: &pricing,
            global: None,
            isolation: &ISOLATION,
            owners: &owners,
        };
        let scoped = || Setup {
            cache_scope: Some(CacheScope {
                api: Api::OpenAi,
                tenant: "acme".into(),
                user: Some("alice".into()),
            }),
            ..setup(true, true)
        };
        let (mut stream, _) = Stream::admit(scoped(), &rules);
        assert!(stream.body_may_change());
        let effects = stream.on(Event::RequestBody(CHAT), &rules);
        let body: serde_json::Value = serde_json::from_slice(&effects.new_body.unwrap()).unwrap();
        assert!(body["prompt_cache_key"]
            .as_str()
            .unwrap()
            .starts_with("tg-"));
        let (mut stream, _) = Stream::admit(scoped(), &rules);
        let effects = over_the_cap(&mut stream, &rules);
        assert_eq!(effects.refuse.unwrap().reason, Reason::BodyTooLarge);
        let (mut stream, _) = Stream::admit(
            Setup {
                json_body: false,
                ..with_objects("POST", "/v1/files")
            },
            &rules,
        );
        let effects = over_the_cap(&mut stream, &rules);
        assert!(effects.refuse.is_none(), "an upload passes unread");
    }
}

// === Output limits capped to the room left (`output_cap`) ===

fn capped_setup(held: Reservation) -> Setup<'static> {
    Setup {
        held: Some(held),
        content_length: Some(CHAT.len() as u64),
        output_cap: Some(CLAMP),
        ..setup(true, true)
    }
}

/// A capped request on `books` whose token window has `tokens` left: the effects of its body.
fn capped_body(books: &mut Books, body: &[u8], rules: &Rules<'_>) -> (Stream, Effects) {
    let provisional =
        metering::provisional_demand(Some(body.len() as u64), CLAMP.min_output_tokens, &pricing());
    let held = books.admit(provisional);
    let (mut stream, effects) = Stream::admit(capped_setup(held), rules);
    assert!(stream.headers_held() && stream.body_may_change());
    assert!(effects.cap.is_none());
    let effects = stream.on(
        Event::RequestData {
            size: body.len(),
            end: true,
        },
        rules,
    );
    assert!(effects.read_body);
    let effects = stream.on(Event::RequestBody(body), rules);
    let ask = effects.cap.expect("the body asks for a capped reservation");
    assert_eq!(effects.new_body, None, "the body waits for its cap");
    let capping = match output_cap::reserve(
        &books.state,
        &books.limits,
        NOW,
        &stream.held().unwrap(),
        &ask,
        CLAMP,
    ) {
        Ok((state, reservation, cap)) => {
            books.state = state;
            Capping::Reserved(reservation, cap)
        }
        Err(refusal) => Capping::Refused(refusal),
    };
    let effects = stream.capped(capping, rules);
    (stream, effects)
}

fn small_window(tokens: u64) -> Books {
    let mut books = Books::new();
    books.limits.tokens = vec![Window {
        limit: tokens,
        window_s: 3600,
    }];
    books
}

#[test]
fn a_capped_body_says_the_room_left_with_its_own_length() {
    let (usage, pricing) = rules_without_global();
    let rules = local_rules(&usage, &pricing);
    // CHAT asks for 50 output tokens; its input estimate is ⌈len / 4⌉.
    let input = usage::estimate_input_tokens(CHAT.len());
    let mut books = small_window(input + 30);
    let (stream, effects) = capped_body(&mut books, CHAT, &rules);
    let body = effects.new_body.expect("the limit is lowered");
    assert_eq!(effects.content_length, Some(body.len()));
    assert_eq!(usage::inspect_request(&body).max_output_tokens, Some(30));
    assert_eq!(stream.output_cap(), Some(30));
    assert_eq!(stream.held().unwrap().demand.tokens, input + 30);
    assert_eq!(books.window(Kind::Tokens), (0, input + 30));
}

#[test]
fn a_capped_body_that_fits_goes_unchanged() {
    let (usage, pricing) = rules_without_global();
    let rules = local_rules(&usage, &pricing);
    let mut books = small_window(10_000);
    let (stream, effects) = capped_body(&mut books, CHAT, &rules);
    assert_eq!(effects.new_body, None);
    assert_eq!(stream.output_cap(), None);
    assert_eq!(effects.refuse, None);
}

#[test]
fn a_capped_request_without_room_is_refused_and_settled_at_nothing() {
    let (usage, pricing) = rules_without_global();
    let rules = local_rules(&usage, &pricing);
    let input = usage::estimate_input_tokens(CHAT.len());
    let mut books = small_window(input + 15);
    let (mut stream, effects) = capped_body(&mut books, CHAT, &rules);
    let refusal = effects.refuse.expect("refused");
    assert_eq!(refusal.reason, Reason::TokenQuotaExceeded);
    assert_eq!(refusal.reply.status, 429);
    assert!(refusal
        .reply
        .headers
        .iter()
        .any(|(n, _)| *n == "retry-after"));
    let settlement = effects.settle.expect("settled");
    assert_eq!(settlement.charge(), Actual::default());
    assert_eq!(settlement.phase, Phase::Refused);
    assert_eq!(stream.request_flow(Point::Body), Flow::Pause);
}

#[test]
fn a_capped_body_naming_its_limit_twice_is_refused() {
    let (usage, pricing) = rules_without_global();
    let rules = local_rules(&usage, &pricing);
    let mut books = small_window(10_000);
    let body = br#"{"model":"gpt-4o","max_tokens":100000,"max_tokens":10}"#;
    let held = books.admit(Demand::default());
    let (mut stream, _) = Stream::admit(capped_setup(held), &rules);
    let effects = stream.on(Event::RequestBody(body), &rules);
    assert_eq!(effects.cap, None);
    assert_eq!(effects.refuse.map(|r| r.reason), Some(Reason::InvalidBody));
}

#[test]
fn counters_out_of_reach_leave_the_request_uncapped() {
    let (usage, pricing) = rules_without_global();
    let rules = local_rules(&usage, &pricing);
    let mut books = small_window(10_000);
    let held = books.admit(Demand::default());
    let (mut stream, _) = Stream::admit(capped_setup(held), &rules);
    let effects = stream.on(Event::RequestBody(CHAT), &rules);
    assert!(effects.cap.is_some());
    let effects = stream.capped(Capping::Unavailable, &rules);
    assert_eq!(effects.new_body, None);
    assert_eq!(effects.refuse, None);
    // It reserves its estimate as an uncapped request does.
    assert!(effects.reserve.is_some());
    assert_eq!(stream.output_cap(), None);
}

// === Models per plan ===

fn model_rule(entries: &[&str]) -> crate::policy::models::ModelRule {
    let entries: Vec<String> = entries.iter().map(|e| e.to_string()).collect();
    crate::policy::models::ModelRule {
        list: crate::policy::models::compile(&entries),
        plan: Some("free".into()),
        tenant: "acme".into(),
    }
}

fn embeddings(body_follows: bool, can_wait: bool, shadow: bool) -> Setup<'static> {
    Setup {
        path: "/v1/embeddings",
        shadow,
        models: Some(model_rule(&["text-embedding-3-small"])),
        ..setup(body_follows, can_wait)
    }
}

#[test]
fn a_model_list_holds_the_headers_until_the_body_names_an_allowed_model() {
    let (usage, pricing) = rules_without_global();
    let rules = local_rules(&usage, &pricing);
    // Without a list, nothing holds an embeddings request's headers.
    let (open, _) = Stream::admit(
        Setup {
            path: "/v1/embeddings",
            ..setup(true, true)
        },
        &rules,
    );
    assert!(!open.headers_held());
    for (model, allowed) in [
        ("text-embedding-3-small", true),
        ("text-embedding-3-large", false),
    ] {
        let (mut stream, effects) = Stream::admit(embeddings(true, true, false), &rules);
        assert!(stream.headers_held(), "the upstream sees nothing yet");
        assert!(effects.refuse.is_none());
        assert_eq!(stream.request_flow(Point::Headers), Flow::Pause);
        let body = format!(r#"{{"model":"{model}","input":"x"}}"#);
        let effects = stream.on(Event::RequestBody(body.as_bytes()), &rules);
        if allowed {
            assert!(effects.refuse.is_none());
            assert_eq!(stream.request_flow(Point::Body), Flow::Continue);
        } else {
            let refusal = effects.refuse.unwrap();
            assert_eq!(refusal.reason, Reason::ModelNotAllowed);
            assert_eq!(refusal.reply.status, 403);
            assert!(refusal.reply.body.contains("text-embedding-3-large"));
            assert_eq!(effects.settle.unwrap().phase, Phase::Refused);
            assert!(stream.refused());
            assert_eq!(stream.request_flow(Point::Body), Flow::Pause);
        }
    }
}

#[test]
fn without_held_headers_a_refused_body_never_continues() {
    let (usage, pricing) = rules_without_global();
    let rules = local_rules(&usage, &pricing);
    let (mut stream, _) = Stream::admit(embeddings(true, false, false), &rules);
    assert!(!stream.headers_held());
    assert_eq!(stream.request_flow(Point::Headers), Flow::Continue);
    // The body is read whole, however large it is up to the cap.
    let read = stream.on(
        Event::RequestData {
            size: 10,
            end: false,
        },
        &rules,
    );
    assert!(!read.read_body);
    assert_eq!(stream.request_flow(Point::Body), Flow::Pause);
    let effects = stream.on(
        Event::RequestBody(br#"{"model":"gpt-4o","input":"x"}"#),
        &rules,
    );
    assert_eq!(effects.refuse.unwrap().reason, Reason::ModelNotAllowed);
    assert_eq!(stream.request_flow(Point::Body), Flow::Pause);
    // A body over the cap cannot be read: refused, never passed on unread.
    let (mut large, _) = Stream::admit(embeddings(true, false, false), &rules);
    let too_large = usage.max_body_bytes + 1;
    let effects = large.on(
        Event::RequestData {
            size: too_large,
            end: false,
        },
        &rules,
    );
    assert_eq!(effects.refuse.unwrap().reason, Reason::BodyTooLarge);
}

#[test]
fn a_path_model_outside_the_list_is_refused_at_admission() {
    let (usage, pricing) = rules_without_global();
    let global = global(FailureMode::Deny, false);
    let mut rules = local_rules(&usage, &pricing);
    rules.global = Some(&global);
    let (stream, effects) = Stream::admit(
        Setup {
            path: "/openai/deployments/gpt-4o/chat/completions?api-version=1",
            models: Some(model_rule(&["gpt-4o-mini"])),
            ..setup(true, true)
        },
        &rules,
    );
    let refusal = effects.refuse.unwrap();
    assert_eq!(refusal.reason, Reason::ModelNotAllowed);
    assert!(refusal.detail.starts_with("model \"gpt-4o\" (in the path)"));
    assert_eq!(effects.ask, Ask::default(), "nothing asked of the service");
    assert!(!stream.headers_held());
    assert_eq!(stream.phase(), Phase::Refused);
    // The same deployment with an allowed body model is still refused; an allowed
    // deployment with a refused body model too.
    let (mut stream, effects) = Stream::admit(
        Setup {
            path: "/openai/deployments/gpt-4o-mini/chat/completions",
            models: Some(model_rule(&["gpt-4o-mini"])),
            ..setup(true, true)
        },
        &rules,
    );
    assert!(effects.refuse.is_none() && stream.headers_held());
    let effects = stream.on(Event::RequestBody(br#"{"model":"gpt-4o"}"#), &rules);
    assert_eq!(effects.refuse.unwrap().reason, Reason::ModelNotAllowed);
}

#[test]
fn a_request_without_a_body_on_a_model_endpoint_is_refused() {
    let (usage, pricing) = rules_without_global();
    let rules = local_rules(&usage, &pricing);
    let (stream, effects) = Stream::admit(embeddings(false, true, false), &rules);
    assert_eq!(effects.refuse.unwrap().reason, Reason::ModelRequired);
    assert_eq!(stream.phase(), Phase::Refused);
}

#[test]
fn in_shadow_mode_a_refused_model_is_only_noted() {
    let (usage, pricing) = rules_without_global();
    let rules = local_rules(&usage, &pricing);
    let (mut stream, effects) = Stream::admit(embeddings(true, true, true), &rules);
    assert!(effects.refuse.is_none());
    assert!(
        !stream.headers_held(),
        "shadow mode holds nothing for the model"
    );
    let effects = stream.on(Event::RequestBody(br#"{"model":"gpt-4o"}"#), &rules);
    assert!(effects.refuse.is_none());
    assert_eq!(effects.shadowed.unwrap().0, Reason::ModelNotAllowed);
    assert!(!stream.refused());
}

#[test]
fn a_list_holding_a_star_reads_nothing() {
    let (usage, pricing) = rules_without_global();
    let rules = local_rules(&usage, &pricing);
    let (mut stream, effects) = Stream::admit(
        Setup {
            path: "/v1/embeddings",
            models: Some(model_rule(&["*"])),
            ..setup(true, true)
        },
        &rules,
    );
    assert!(effects.refuse.is_none() && !stream.headers_held());
    let effects = stream.on(Event::RequestBody(b"{}"), &rules);
    assert!(effects.refuse.is_none());
}

#[test]
fn in_shadow_mode_a_refused_path_or_form_is_noted_once_at_admission() {
    let (usage, pricing) = rules_without_global();
    let rules = local_rules(&usage, &pricing);
    for path in [
        "/v1/audio/transcriptions",
        "/openai/deployments/gpt-4o/chat/completions",
    ] {
        let (mut stream, effects) = Stream::admit(
            Setup {
                path,
                shadow: true,
                models: Some(model_rule(&["gpt-4o-mini"])),
                ..setup(true, true)
            },
            &rules,
        );
        assert!(effects.refuse.is_none(), "{path}");
        assert_eq!(effects.shadowed.unwrap().0, Reason::ModelNotAllowed);
        let effects = stream.on(Event::RequestBody(b"{}"), &rules);
        assert!(
            effects.refuse.is_none() && effects.shadowed.is_none(),
            "{path}"
        );
    }
}

/// The rules of a gateway asking `global`, for streams of nobody's objects.
fn with_global<'a>(
    usage: &'a UsageRules,
    pricing: &'a Pricing,
    global: &'a GlobalRateLimit,
) -> Rules<'a> {
    Rules {
        usage,
        pricing,
        global: Some(global),
        isolation: &ISOLATION,
        owners: &Nobody,
    }
}

/// A stream of a tenant whose plan gives users windows of both kinds (`per_user`).
fn with_user_quotas(body_follows: bool) -> Setup<'static> {
    Setup {
        user_quotas: UserQuotas {
            requests: true,
            tokens: true,
        },
        ..setup(body_follows, true)
    }
}

#[test]
fn users_quotas_are_asked_beside_the_tenants_and_their_refusals_name_the_user() {
    let (usage, pricing) = rules_without_global();
    let global = global(FailureMode::Deny, false);
    let rules = with_global(&usage, &pricing, &global);
    // The tenant's request counter is asked once the user's said yes: a user over their own
    // limit never spends the tenant's requests.
    let (mut stream, effects) = Stream::admit(with_user_quotas(false), &rules);
    let asked: Vec<&str> = effects.ask.quotas().map(|q| q.as_str()).collect();
    assert_eq!(asked, ["user_requests", "tokens", "user_tokens"]);
    for _ in 0..3 {
        let _ = stream.on(Event::CallSent, &rules);
    }
    assert_eq!(stream.request_flow(Point::Headers), Flow::Pause);
    let ok = service_answer(Verdict::Ok, None);
    let effects = answered(
        &mut stream,
        ratelimit::Quota::user(ratelimit::Usage::Requests),
        Some(&ok),
        &rules,
    );
    assert_eq!(
        effects.ask,
        Ask {
            requests: true,
            ..Ask::default()
        }
    );
    assert!(!effects.resume);
    let _ = stream.on(Event::CallSent, &rules);
    for quota in [
        ratelimit::Quota::tenant(ratelimit::Usage::Tokens),
        ratelimit::Quota::user(ratelimit::Usage::Tokens),
    ] {
        let effects = answered(&mut stream, quota, Some(&ok), &rules);
        assert!(
            !effects.resume,
            "the tenant's request counter is still asked"
        );
    }
    let effects = answered(
        &mut stream,
        ratelimit::Quota::tenant(ratelimit::Usage::Requests),
        Some(&ok),
        &rules,
    );
    assert!(effects.resume);

    let (mut stream, _) = Stream::admit(with_user_quotas(false), &rules);
    for _ in 0..3 {
        let _ = stream.on(Event::CallSent, &rules);
    }
    let over = service_answer(Verdict::OverLimit, Some(7));
    let effects = answered(
        &mut stream,
        ratelimit::Quota::user(ratelimit::Usage::Tokens),
        Some(&over),
        &rules,
    );
    let refusal = effects.refuse.unwrap();
    assert_eq!(refusal.reason, Reason::UserTokenQuotaExceeded);
    assert_eq!(refusal.reply.status, 429);
    assert!(refusal.reply.headers.contains(&("retry-after", "7".into())));
    assert_eq!(refusal.detail, "rate-limit service: user_tokens over limit");

    let (mut stream, _) = Stream::admit(with_user_quotas(false), &rules);
    let effects = answered(
        &mut stream,
        ratelimit::Quota::user(ratelimit::Usage::Requests),
        Some(&over),
        &rules,
    );
    assert!(!effects.ask.requests, "the tenant's counter is not asked");
    assert_eq!(
        effects.refuse.unwrap().reason,
        Reason::UserRequestQuotaExceeded
    );

    // A client that left before the user's answer: the tenant's counter is not asked.
    let (mut stream, _) = Stream::admit(with_user_quotas(false), &rules);
    let _ = stream.on(Event::CallSent, &rules);
    let _ = stream.on(Event::Log, &rules);
    let effects = answered(
        &mut stream,
        ratelimit::Quota::user(ratelimit::Usage::Requests),
        Some(&ok),
        &rules,
    );
    assert!(!effects.ask.requests && !effects.resume);
}

#[test]
fn a_users_token_check_waits_with_the_tenants_and_the_debit_goes_to_both() {
    let (usage, pricing) = rules_without_global();
    let global = global(FailureMode::Deny, true);
    let rules = with_global(&usage, &pricing, &global);
    // The model entry makes the token checks wait for the body that names the model.
    let (mut stream, effects) = Stream::admit(with_user_quotas(true), &rules);
    assert_eq!(
        effects.ask,
        Ask {
            user_requests: true,
            ..Ask::default()
        }
    );
    let effects = stream.on(Event::RequestBody(CHAT), &rules);
    assert!(effects.ask.tokens && effects.ask.user_tokens);
    assert!(!effects.ask.requests && !effects.ask.user_requests);
    let _ = stream.on(
        Event::ResponseHeaders {
            status: 200,
            content_type: "application/json",
        },
        &rules,
    );
    let answer = br#"{"model":"gpt-4o","usage":{"prompt_tokens":10,"completion_tokens":5}}"#;
    let effects = stream.on(
        Event::ResponseData {
            chunk: Some(answer),
            size: answer.len(),
            end: true,
        },
        &rules,
    );
    let settlement = effects.settle.unwrap();
    assert_eq!(settlement.debit_tokens, 15);
    assert!(settlement.debit_user);

    // A plan without user token windows debits the tenant only.
    let (mut stream, _) = Stream::admit(
        Setup {
            user_quotas: UserQuotas {
                requests: true,
                tokens: false,
            },
            ..setup(false, true)
        },
        &rules,
    );
    let effects = stream.on(Event::Log, &rules);
    assert!(!effects.settle.unwrap().debit_user);
}

#[test]
fn leased_credit_is_the_tenants_and_never_asks_about_users() {
    let (usage, pricing) = rules_without_global();
    let mut global = global(FailureMode::Deny, false);
    global.lease = Some(lease_rules());
    let rules = with_global(&usage, &pricing, &global);
    let (mut stream, effects) = Stream::admit(with_user_quotas(false), &rules);
    assert!(!effects.ask.user_requests && !effects.ask.user_tokens);
    assert!(effects.ask.requests);
    assert!(!stream.on(Event::Log, &rules).settle.unwrap().debit_user);

    // Without a global service nothing is asked at all.
    let rules = Rules {
        global: None,
        ..rules
    };
    let (_, effects) = Stream::admit(with_user_quotas(false), &rules);
    assert_eq!(effects.ask, Ask::default());
}

/// A bodyless GET whose answer reports usage (a stored response fetched again) is neither read
/// nor charged: its settlement has no outcome; a POST with the same answer is charged.
#[test]
fn a_bodyless_get_is_not_metered_whatever_its_answer_reports() {
    let (usage, pricing) = rules_without_global();
    let rules = local_rules(&usage, &pricing);
    let settle = |method: &'static str, body_follows: bool| {
        let mut books = Books::new();
        let held = books.admit(Demand::default());
        let (mut stream, _) = Stream::admit(
            Setup {
                method,
                path: "/v1/responses/resp_1",
                held: Some(held),
                ..setup(body_follows, true)
            },
            &rules,
        );
        if body_follows {
            let _ = stream.on(Event::RequestBody(b"{}"), &rules);
        }
        let _ = stream.on(
            Event::ResponseHeaders {
                status: 200,
                content_type: "application/json",
            },
            &rules,
        );
        let reads = stream.reads_response();
        assert_eq!(
            stream.wants_response_bytes(USAGE.len(), true),
            reads,
            "{method}"
        );
        let effects = stream.on(
            Event::ResponseData {
                chunk: reads.then_some(USAGE),
                size: USAGE.len(),
                end: true,
            },
            &rules,
        );
        (reads, effects.settle.unwrap())
    };
    let (reads, got) = settle("GET", false);
    assert!(!reads);
    assert_eq!((got.charge(), got.outcome), (Actual::default(), None));
    let (reads, deleted) = settle("DELETE", false);
    assert!(!reads);
    assert_eq!(deleted.outcome, None);
    for (method, body_follows) in [("POST", false), ("GET", true)] {
        let (reads, charged) = settle(method, body_follows);
        assert!(reads, "{method}");
        assert_eq!(charged.charge().tokens, USAGE_TOKENS, "{method}");
        let outcome = charged.outcome.unwrap();
        assert_eq!(outcome.source, crate::policy::usage::UsageSource::Json);
    }
}

/// An answer the filter reads is asked for uncompressed; one it does not read keeps the
/// client's `accept-encoding`.
#[test]
fn only_answers_the_filter_reads_are_asked_for_uncompressed() {
    let (usage, pricing) = rules_without_global();
    let rules = local_rules(&usage, &pricing);
    let plain = |method: &'static str, path: &'static str, body_follows: bool| {
        let (_, effects) = Stream::admit(
            Setup {
                method,
                path,
                ..setup(body_follows, true)
            },
            &rules,
        );
        effects.plain_answer
    };
    assert!(plain("POST", "/v1/chat/completions", true));
    assert!(plain("POST", "/v1/responses/resp_1/cancel", false));
    assert!(plain("GET", "/v1/responses/resp_1", true));
    assert!(!plain("GET", "/v1/responses/resp_1", false));
    assert!(!plain("DELETE", "/v1/files/file_1", false));
    // A listing is read to be cut to the tenant's own, whatever its method.
    let (_, effects) = Stream::admit(
        Setup {
            body_follows: false,
            ..isolation::with_objects("GET", "/v1/files")
        },
        &rules,
    );
    assert!(effects.plain_answer);
}
