use super::*;
use crate::policy::config::Price;
#[cfg(target_family = "wasm")]
use wasm_bindgen_test::wasm_bindgen_test as test;

fn pricing() -> Pricing {
    let mut pricing = Pricing::default();
    pricing.models.insert(
        "gpt-4o".into(),
        Price {
            input_micro_usd_per_million: 2_500_000,
            output_micro_usd_per_million: 10_000_000,
        },
    );
    pricing
}

fn rules() -> UsageRules {
    UsageRules {
        default_reservation_tokens: 100,
        max_body_bytes: 1024,
        inject_stream_usage: true,
    }
}

const CHAT: &[u8] =
    br#"{"model":"gpt-4o","max_tokens":50,"messages":[{"role":"user","content":"hi"}]}"#;

#[test]
fn reservation_is_input_estimate_plus_max_tokens_priced_by_the_request_model() {
    let meter = Meter::new(Some(CHAT), Demand::default(), &rules(), &pricing());
    let input = CHAT.len().div_ceil(4) as u64;
    assert_eq!(meter.demand().tokens, input + 50);
    // input × 2.5 + 50 × 10 micro-USD, rounded up.
    assert_eq!(meter.demand().micro_usd, (input * 25).div_ceil(10) + 500);
}

#[test]
fn without_max_tokens_the_default_is_reserved_and_without_a_body_what_was_held() {
    let meter = Meter::new(
        Some(br#"{"model":"x"}"#),
        Demand::default(),
        &rules(),
        &pricing(),
    );
    assert_eq!(meter.demand().tokens, 4 + 100);
    assert_eq!(
        meter.demand().micro_usd,
        0,
        "no price for model x and no default"
    );
    let held = Demand {
        tokens: 7,
        micro_usd: 3,
    };
    assert_eq!(Meter::new(None, held, &rules(), &pricing()).demand(), held);
}

#[test]
fn json_usage_read_in_chunks_is_priced_and_charged() {
    let mut meter = Meter::new(Some(CHAT), Demand::default(), &rules(), &pricing());
    meter.response_started("application/json; charset=utf-8");
    let body = br#"{"id":"c1","model":"gpt-4o-2024-08-06","usage":{"prompt_tokens":1000,"completion_tokens":20,"total_tokens":1020}}"#;
    for chunk in body.chunks(7) {
        meter.response_chunk(chunk);
    }
    let outcome = meter.outcome(&pricing());
    assert_eq!(outcome.source, UsageSource::Json);
    assert_eq!(
        outcome.model.as_deref(),
        Some("gpt-4o"),
        "the request's model wins"
    );
    let usage = outcome.usage.unwrap();
    assert_eq!((usage.input_tokens, usage.output_tokens), (1000, 20));
    assert_eq!(outcome.cost.unwrap().to_decimal_usd(), "0.0027");
    assert_eq!(
        outcome.charge,
        Actual {
            tokens: 1020,
            micro_usd: 2700
        }
    );
}

#[test]
fn sse_usage_is_read_as_the_stream_passes() {
    let mut meter = Meter::new(Some(CHAT), Demand::default(), &rules(), &pricing());
    meter.response_started("text/event-stream");
    let stream = b"data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}],\"usage\":null}\n\n\
data: {\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":3}}\n\ndata: [DONE]\n\n";
    for chunk in stream.chunks(5) {
        meter.response_chunk(chunk);
    }
    let outcome = meter.outcome(&pricing());
    assert_eq!(outcome.source, UsageSource::Sse);
    assert_eq!(outcome.charge.tokens, 10);
}

#[test]
fn no_readable_usage_keeps_the_reservation_and_records_none() {
    let cases: [(&str, &[u8]); 3] = [
        (
            "application/json",
            b"{\"error\":{\"message\":\"upstream failed\"}}",
        ),
        ("text/plain", b"usage: lots"),
        ("application/json", &[b' '; 2048]),
    ];
    for (content_type, body) in cases {
        let mut meter = Meter::new(Some(CHAT), Demand::default(), &rules(), &pricing());
        meter.response_started(content_type);
        meter.response_chunk(body);
        let outcome = meter.outcome(&pricing());
        assert_eq!(outcome.source, UsageSource::None, "{content_type}");
        assert_eq!((outcome.usage, outcome.cost), (None, None));
        assert_eq!(outcome.charge.tokens, meter.demand().tokens);
        assert_eq!(outcome.charge.micro_usd, meter.demand().micro_usd);
    }
}

#[test]
fn json_over_the_cap_is_not_read_even_if_usage_follows() {
    let mut meter = Meter::new(Some(CHAT), Demand::default(), &rules(), &pricing());
    meter.response_started("application/json");
    meter.response_chunk(&[b' '; 1020]);
    meter.response_chunk(br#"{"usage":{"prompt_tokens":1,"completion_tokens":1}}"#);
    assert_eq!(meter.outcome(&pricing()).source, UsageSource::None);
}

#[test]
fn stream_usage_is_injected_only_when_the_rules_say_so() {
    let body = br#"{"model":"gpt-4o","stream":true,"messages":[]}"#;
    let edited = with_stream_usage(&rules(), "/v1/chat/completions", body).unwrap();
    assert!(usage::inspect_request(&edited).include_usage);
    let off = UsageRules {
        inject_stream_usage: false,
        ..rules()
    };
    assert_eq!(with_stream_usage(&off, "/v1/chat/completions", body), None);
    assert_eq!(
        with_stream_usage(&rules(), "/v1/chat/completions", CHAT),
        None
    );
}

#[test]
fn provisional_demand_comes_from_content_length_and_the_default_price() {
    let mut pricing = pricing();
    pricing.default = Some(Price {
        input_micro_usd_per_million: 1_000_000,
        output_micro_usd_per_million: 3_000_000,
    });
    let d = provisional_demand(Some(400), &rules(), &pricing);
    assert_eq!(d.tokens, 100 + 100);
    assert_eq!(d.micro_usd, 100 + 300);
    assert_eq!(
        provisional_demand(None, &rules(), &Pricing::default()).tokens,
        100
    );
}
