use super::*;
use crate::policy::cost::Price;
#[cfg(target_family = "wasm")]
use wasm_bindgen_test::wasm_bindgen_test as test;

fn pricing() -> Pricing {
    let mut pricing = Pricing::default();
    pricing
        .models
        .insert("gpt-4o".into(), Price::flat(2_500_000, 10_000_000));
    pricing.models.insert(
        "gpt-4o-2024-08-06".into(),
        Price {
            cached_input_micro_usd_per_million: 1_250_000,
            ..Price::flat(2_500_000, 10_000_000)
        },
    );
    pricing
        .models
        .insert("cheap".into(), Price::flat(100_000, 200_000));
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

fn read(body: &[u8]) -> Meter {
    let mut meter = Meter::new(Demand::default(), None, None);
    meter.read_request(body, &rules(), &pricing());
    meter
}

const OK: Answer = Answer {
    status: Some(200),
    complete: true,
};

#[test]
fn reservation_is_input_estimate_plus_max_tokens_priced_by_the_request_model() {
    let meter = read(CHAT);
    let input = CHAT.len().div_ceil(4) as u64;
    assert_eq!(meter.demand().tokens, input + 50);
    // input × 2.5 + 50 × 10 micro-USD, rounded up.
    assert_eq!(meter.demand().micro_usd, (input * 25).div_ceil(10) + 500);
}

#[test]
fn without_max_tokens_the_default_is_reserved_and_before_the_body_what_was_held() {
    let meter = read(br#"{"model":"x"}"#);
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
    assert_eq!(Meter::new(held, Some(40), None).demand(), held);
}

#[test]
fn json_usage_read_in_chunks_is_priced_by_the_upstreams_model_and_charged() {
    let mut meter = read(CHAT);
    meter.response_started("application/json; charset=utf-8");
    let body = br#"{"id":"c1","model":"gpt-4o-2024-08-06","usage":{"prompt_tokens":1000,"completion_tokens":20,"total_tokens":1020,"prompt_tokens_details":{"cached_tokens":400}}}"#;
    for chunk in body.chunks(7) {
        meter.response_chunk(chunk);
    }
    let outcome = meter.outcome(&pricing(), OK, meter.demand());
    assert_eq!(outcome.source, UsageSource::Json);
    assert_eq!(
        outcome.model.as_deref(),
        Some("gpt-4o-2024-08-06"),
        "the upstream's model prices the answer"
    );
    let usage = outcome.usage.unwrap();
    assert_eq!((usage.input_tokens, usage.output_tokens), (1000, 20));
    // 600 × 2.5 + 400 × 1.25 + 20 × 10 micro-USD.
    assert_eq!(outcome.cost.unwrap().to_decimal_usd(), "0.0022");
    assert_eq!(
        outcome.charge,
        Actual {
            tokens: 1020,
            micro_usd: 2200
        }
    );
}

#[test]
fn a_client_chosen_model_does_not_pick_the_price_when_the_upstream_names_one() {
    let mut meter = read(br#"{"model":"cheap","max_tokens":1}"#);
    meter.response_started("application/json");
    meter.response_chunk(
        br#"{"model":"gpt-4o","usage":{"prompt_tokens":1000000,"completion_tokens":0}}"#,
    );
    let outcome = meter.outcome(&pricing(), OK, meter.demand());
    assert_eq!(outcome.model.as_deref(), Some("gpt-4o"));
    assert_eq!(outcome.cost.unwrap().to_decimal_usd(), "2.5");
}

#[test]
fn request_model_names_are_cleaned_before_they_reach_records_or_prices() {
    let long = format!(r#"{{"model":"{}"}}"#, "m".repeat(300));
    for body in [
        br#"{"model":"gpt-4o\ninjected"}"#.as_slice(),
        br#"{"model":"gpt 4o"}"#,
        long.as_bytes(),
    ] {
        assert_eq!(read(body).request_model(), Some("other"));
    }
    assert_eq!(read(br#"{"model":""}"#).request_model(), None);
    assert_eq!(read(CHAT).request_model(), Some("gpt-4o"));
}

#[test]
fn sse_usage_is_read_as_the_stream_passes() {
    let mut meter = read(CHAT);
    meter.response_started("text/event-stream");
    let stream = b"data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}],\"usage\":null}\n\n\
data: {\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":3}}\n\ndata: [DONE]\n\n";
    for chunk in stream.chunks(5) {
        meter.response_chunk(chunk);
    }
    let outcome = meter.outcome(&pricing(), OK, meter.demand());
    assert_eq!(outcome.source, UsageSource::Sse);
    assert_eq!(outcome.charge.tokens, 10);
}

#[test]
fn a_2xx_without_readable_usage_keeps_the_reservation_and_records_none() {
    let cases: [(&str, &[u8]); 2] = [
        ("application/json", b"{\"data\":[]}"),
        ("text/plain", b"usage: lots"),
    ];
    for (content_type, body) in cases {
        let mut meter = read(CHAT);
        meter.response_started(content_type);
        meter.response_chunk(body);
        let outcome = meter.outcome(&pricing(), OK, meter.demand());
        assert_eq!(outcome.source, UsageSource::None, "{content_type}");
        assert_eq!((outcome.usage, outcome.cost), (None, None));
        assert_eq!(outcome.charge.tokens, meter.demand().tokens);
        assert_eq!(outcome.charge.micro_usd, meter.demand().micro_usd);
    }
}

#[test]
fn an_error_answer_without_usage_is_charged_nothing() {
    for status in [400, 401, 413, 429, 500, 503] {
        let mut meter = read(CHAT);
        meter.response_started("application/json");
        meter.response_chunk(br#"{"error":{"message":"no"}}"#);
        let outcome = meter.outcome(
            &pricing(),
            Answer {
                status: Some(status),
                complete: true,
            },
            meter.demand(),
        );
        assert_eq!(outcome.charge, Actual::default(), "{status}");
        assert_eq!(outcome.usage, None);
    }
}

#[test]
fn an_error_answer_with_usage_is_charged_that_usage() {
    let mut meter = read(CHAT);
    meter.response_started("application/json");
    meter.response_chunk(br#"{"error":{},"usage":{"input_tokens":9,"output_tokens":0}}"#);
    let outcome = meter.outcome(
        &pricing(),
        Answer {
            status: Some(400),
            complete: true,
        },
        meter.demand(),
    );
    assert_eq!(outcome.charge.tokens, 9);
}

#[test]
fn a_request_never_answered_is_charged_nothing() {
    let meter = read(CHAT);
    let outcome = meter.outcome(
        &pricing(),
        Answer {
            status: None,
            complete: false,
        },
        meter.demand(),
    );
    assert_eq!(outcome.charge, Actual::default());
    assert_eq!(outcome.source, UsageSource::None);
}

#[test]
fn usage_of_an_early_answer_counts_before_the_request_body_was_read() {
    let mut meter = Meter::new(
        Demand {
            tokens: 600,
            micro_usd: 9,
        },
        Some(2000),
        None,
    );
    meter.response_started("application/json");
    meter
        .response_chunk(br#"{"model":"gpt-4o","usage":{"prompt_tokens":5,"completion_tokens":2}}"#);
    let outcome = meter.outcome(&pricing(), OK, meter.demand());
    assert_eq!(outcome.charge.tokens, 7);
    assert_eq!(outcome.model.as_deref(), Some("gpt-4o"));
}

#[test]
fn json_usage_is_read_past_any_size() {
    let mut meter = read(CHAT);
    meter.response_started("application/json");
    meter.response_chunk(br#"{"data":[{"embedding":["#);
    for _ in 0..10_000 {
        meter.response_chunk(b"0.0123456789,");
    }
    meter.response_chunk(br#"0]}],"usage":{"prompt_tokens":11,"total_tokens":11}}"#);
    let outcome = meter.outcome(&pricing(), OK, meter.demand());
    assert_eq!(outcome.source, UsageSource::Json);
    assert_eq!(outcome.charge.tokens, 11);
}

fn openai_deltas(texts: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    for text in texts {
        out.extend_from_slice(
            format!(
                "data: {{\"model\":\"gpt-4o\",\"choices\":[{{\"delta\":{{\"content\":\"{text}\"}}}}]}}\n\n"
            )
            .as_bytes(),
        );
    }
    out
}

#[test]
fn a_stream_cut_before_its_usage_is_charged_what_it_delivered() {
    let mut meter = read(CHAT);
    meter.response_started("text/event-stream");
    // 12 events of 3 bytes: at least 12 tokens (one per event).
    meter.response_chunk(&openai_deltas(&["abc"; 12]));
    let cut = Answer {
        status: Some(200),
        complete: false,
    };
    let outcome = meter.outcome(&pricing(), cut, meter.demand());
    assert_eq!(outcome.source, UsageSource::Estimate);
    let usage = outcome.usage.unwrap();
    assert_eq!(usage.output_tokens, 12);
    assert_eq!(usage.input_tokens, CHAT.len().div_ceil(4) as u64);
    assert_eq!(outcome.charge.tokens, usage.total());
    assert!(outcome.cost.is_some());
}

#[test]
fn a_stream_cut_before_its_body_was_read_takes_its_input_from_content_length() {
    let mut meter = Meter::new(Demand::default(), Some(401), None);
    meter.response_started("text/event-stream");
    meter.response_chunk(&openai_deltas(&["abc"; 2]));
    let cut = Answer {
        status: Some(200),
        complete: false,
    };
    let usage = meter
        .outcome(&pricing(), cut, meter.demand())
        .usage
        .unwrap();
    assert_eq!((usage.input_tokens, usage.output_tokens), (101, 2));
}

#[test]
fn long_deltas_count_one_token_per_four_bytes() {
    let mut meter = read(CHAT);
    meter.response_started("text/event-stream");
    let long = "x".repeat(400);
    meter.response_chunk(&openai_deltas(&[&long, &long]));
    let cut = Answer {
        status: Some(200),
        complete: false,
    };
    assert_eq!(
        meter
            .outcome(&pricing(), cut, meter.demand())
            .usage
            .unwrap()
            .output_tokens,
        200
    );
}

#[test]
fn a_cut_anthropic_stream_is_charged_at_least_what_it_delivered() {
    let mut meter = read(CHAT);
    meter.response_started("text/event-stream");
    meter.response_chunk(b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"model\":\"claude\",\"content\":[],\"usage\":{\"input_tokens\":30,\"output_tokens\":1}}}\n\n");
    for _ in 0..5 {
        meter.response_chunk(b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hello\"}}\n\n");
    }
    let cut = Answer {
        status: Some(200),
        complete: false,
    };
    let outcome = meter.outcome(&pricing(), cut, meter.demand());
    assert_eq!(outcome.source, UsageSource::Estimate);
    let usage = outcome.usage.unwrap();
    // Five events of 5 bytes: at least 5 tokens, and at least one per 4 bytes: 7.
    assert_eq!((usage.input_tokens, usage.output_tokens), (30, 7));
}

#[test]
fn a_complete_stream_is_charged_exactly_what_it_reported() {
    let mut meter = read(CHAT);
    meter.response_started("text/event-stream");
    let mut stream = openai_deltas(&["abcdefgh"; 30]);
    stream.extend_from_slice(
        b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":3}}\n\n",
    );
    meter.response_chunk(&stream);
    let outcome = meter.outcome(&pricing(), OK, meter.demand());
    assert_eq!(outcome.source, UsageSource::Sse);
    assert_eq!(outcome.charge.tokens, 10);
}

#[test]
fn stream_usage_goes_into_streaming_posts_to_completions_only() {
    let body = br#"{"model":"gpt-4o","stream":true,"messages":[]}"#;
    let edited = with_stream_usage("/v1/chat/completions", body).unwrap();
    assert!(usage::inspect_request(&edited).include_usage);
    assert_eq!(with_stream_usage("/v1/chat/completions", CHAT), None);
    assert!(may_add_stream_usage(
        &rules(),
        "POST",
        "/v1/chat/completions"
    ));
    for method in ["PUT", "PATCH", "post", "GET"] {
        assert!(
            !may_add_stream_usage(&rules(), method, "/v1/chat/completions"),
            "{method}"
        );
    }
    let off = UsageRules {
        inject_stream_usage: false,
        ..rules()
    };
    assert!(!may_add_stream_usage(&off, "POST", "/v1/chat/completions"));
}

#[test]
fn provisional_demand_comes_from_content_length_and_the_default_price() {
    let mut pricing = pricing();
    pricing.default = Some(Price::flat(1_000_000, 3_000_000));
    let d = provisional_demand(Some(400), rules().default_reservation_tokens, &pricing);
    assert_eq!(d.tokens, 100 + 100);
    assert_eq!(d.micro_usd, 100 + 300);
    assert_eq!(
        provisional_demand(None, 100, &Pricing::default()).tokens,
        100
    );
}

/// A meter for a request to `path`, its body read.
fn read_at(path: &str, body: &[u8], pricing: &Pricing) -> Meter {
    let mut meter = Meter::new(
        Demand::default(),
        None,
        crate::policy::provider_api::from_path(path),
    );
    meter.read_request(body, &rules(), pricing);
    meter
}

fn provider_pricing() -> Pricing {
    let mut pricing = pricing();
    for (model, input, output) in [
        ("gemini-2.0-flash", 100_000, 400_000),
        ("gemini-2.0-flash-001", 150_000, 600_000),
        (
            "us.anthropic.claude-3-5-haiku-20241022-v1:0",
            800_000,
            4_000_000,
        ),
        ("claude-3-5-haiku-20241022", 1, 1),
    ] {
        pricing
            .models
            .insert(model.into(), Price::flat(input, output));
    }
    pricing
}

const CUT: Answer = Answer {
    status: Some(200),
    complete: false,
};

#[test]
fn a_path_model_is_the_request_model_and_the_body_model_is_ignored() {
    let pricing = provider_pricing();
    let body = br#"{"model":"cheap","contents":[],"generationConfig":{"maxOutputTokens":10}}"#;
    let meter = read_at(
        "/v1beta/models/gemini-2.0-flash:generateContent",
        body,
        &pricing,
    );
    assert_eq!(meter.request_model(), Some("gemini-2.0-flash"));
    let input = body.len().div_ceil(4) as u64;
    assert_eq!(meter.demand().tokens, input + 10);
    assert_eq!(
        meter.demand().micro_usd,
        (input * 100_000 + 10 * 400_000).div_ceil(1_000_000)
    );
    // The model is known from the path before the body is read.
    let api = crate::policy::provider_api::from_path("/openai/deployments/gpt-4o/chat/completions");
    assert_eq!(
        Meter::new(Demand::default(), None, api).request_model(),
        Some("gpt-4o")
    );
}

#[test]
fn gemini_streamed_array_is_read_and_priced_at_the_model_version() {
    let pricing = provider_pricing();
    let mut meter = read_at(
        "/v1beta/models/gemini-2.0-flash:streamGenerateContent",
        br#"{"contents":[]}"#,
        &pricing,
    );
    meter.response_started("application/json; charset=UTF-8");
    let body = br#"[{"candidates":[{"content":{"parts":[{"text":"Hi"}]}}],"usageMetadata":{"promptTokenCount":8,"totalTokenCount":8},"modelVersion":"gemini-2.0-flash-001"}
,{"candidates":[{"content":{"parts":[{"text":" there"}]}}],"usageMetadata":{"promptTokenCount":8,"candidatesTokenCount":2,"thoughtsTokenCount":3,"totalTokenCount":13},"modelVersion":"gemini-2.0-flash-001"}]"#;
    for chunk in body.chunks(9) {
        meter.response_chunk(chunk);
    }
    let outcome = meter.outcome(&pricing, OK, meter.demand());
    assert_eq!(outcome.source, UsageSource::Json);
    assert_eq!(outcome.model.as_deref(), Some("gemini-2.0-flash-001"));
    let usage = outcome.usage.unwrap();
    assert_eq!(
        (
            usage.input_tokens,
            usage.output_tokens,
            usage.reasoning_tokens
        ),
        (8, 5, 3)
    );
    assert_eq!(outcome.cost.unwrap().pico_usd(), 8 * 150_000 + 5 * 600_000);
}

#[test]
fn a_gemini_array_cut_early_is_charged_what_it_delivered() {
    let pricing = provider_pricing();
    let mut meter = read_at(
        "/v1beta/models/gemini-2.0-flash:streamGenerateContent",
        br#"{"contents":[]}"#,
        &pricing,
    );
    meter.response_started("application/json");
    let text = "y".repeat(40);
    meter.response_chunk(
        format!(r#"[{{"candidates":[{{"content":{{"parts":[{{"text":"{text}"}}]}}}}]}}"#)
            .as_bytes(),
    );
    let outcome = meter.outcome(&pricing, CUT, meter.demand());
    assert_eq!(outcome.source, UsageSource::Estimate);
    assert_eq!(outcome.usage.unwrap().output_tokens, 10);
    // Priced at the path's model: the answer named none.
    assert_eq!(outcome.model.as_deref(), Some("gemini-2.0-flash"));
}

/// One event-stream message with JSON `payload` (CRCs computed).
fn aws_event(event_type: &str, payload: &str) -> Vec<u8> {
    let mut headers = Vec::new();
    for (name, value) in [(":event-type", event_type), (":message-type", "event")] {
        headers.push(name.len() as u8);
        headers.extend_from_slice(name.as_bytes());
        headers.push(7);
        headers.extend_from_slice(&(value.len() as u16).to_be_bytes());
        headers.extend_from_slice(value.as_bytes());
    }
    let total = (16 + headers.len() + payload.len()) as u32;
    let mut out = [total.to_be_bytes(), (headers.len() as u32).to_be_bytes()].concat();
    let prelude_crc = crc32fast::hash(&out);
    out.extend_from_slice(&prelude_crc.to_be_bytes());
    out.extend_from_slice(&headers);
    out.extend_from_slice(payload.as_bytes());
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

const CONVERSE_STREAM: &str =
    "/model/us.anthropic.claude-3-5-haiku-20241022-v1%3A0/converse-stream";

#[test]
fn bedrock_event_streams_are_read_and_priced_at_the_paths_model_id() {
    let pricing = provider_pricing();
    let mut meter = read_at(CONVERSE_STREAM, br#"{"messages":[]}"#, &pricing);
    meter.response_started("application/vnd.amazon.eventstream");
    let stream = [
        aws_event("contentBlockDelta", r#"{"delta":{"text":"Hi"}}"#),
        aws_event(
            "metadata",
            r#"{"usage":{"inputTokens":20,"outputTokens":4,"totalTokens":24}}"#,
        ),
    ]
    .concat();
    for chunk in stream.chunks(5) {
        meter.response_chunk(chunk);
    }
    let outcome = meter.outcome(&pricing, OK, meter.demand());
    assert_eq!(outcome.source, UsageSource::EventStream);
    assert_eq!(
        outcome.model.as_deref(),
        Some("us.anthropic.claude-3-5-haiku-20241022-v1:0")
    );
    assert_eq!(
        outcome.cost.unwrap().pico_usd(),
        20 * 800_000 + 4 * 4_000_000
    );
    assert_eq!(outcome.charge.tokens, 24);
}

#[test]
fn a_bedrock_stream_cut_before_its_metadata_is_charged_what_it_delivered() {
    let pricing = provider_pricing();
    let mut meter = read_at(CONVERSE_STREAM, br#"{"messages":[]}"#, &pricing);
    meter.response_started("application/vnd.amazon.eventstream");
    for _ in 0..6 {
        meter.response_chunk(&aws_event(
            "contentBlockDelta",
            r#"{"delta":{"text":"ab"}}"#,
        ));
    }
    let outcome = meter.outcome(&pricing, CUT, meter.demand());
    assert_eq!(outcome.source, UsageSource::Estimate);
    assert_eq!(outcome.usage.unwrap().output_tokens, 6);
    assert_eq!(
        outcome.model.as_deref(),
        Some("us.anthropic.claude-3-5-haiku-20241022-v1:0")
    );
}

#[test]
fn an_aws_event_stream_is_read_only_for_bedrocks_stream_operations() {
    let pricing = provider_pricing();
    let stream = aws_event(
        "metadata",
        r#"{"usage":{"inputTokens":20,"outputTokens":4}}"#,
    );
    for path in ["/v1/chat/completions", "/model/m/converse"] {
        let mut meter = read_at(path, b"{}", &pricing);
        meter.response_started("application/vnd.amazon.eventstream");
        meter.response_chunk(&stream);
        assert_eq!(
            meter.outcome(&pricing, OK, meter.demand()).source,
            UsageSource::None
        );
    }
    let mut meter = read_at("/model/m/invoke-with-response-stream", b"{}", &pricing);
    meter.response_started("Application/Vnd.Amazon.EventStream; x=1");
    meter.response_chunk(&stream);
    assert_eq!(
        meter.outcome(&pricing, OK, meter.demand()).source,
        UsageSource::EventStream
    );
}

#[test]
fn bedrock_converse_json_is_priced_at_the_path_model() {
    let pricing = provider_pricing();
    let mut meter = read_at(
        "/model/us.anthropic.claude-3-5-haiku-20241022-v1:0/invoke",
        br#"{"anthropic_version":"bedrock-2023-05-31","max_tokens":20,"messages":[]}"#,
        &pricing,
    );
    meter.response_started("application/json");
    meter.response_chunk(
        br#"{"id":"msg_1","model":"claude-3-5-haiku-20241022","usage":{"input_tokens":10,"output_tokens":2}}"#,
    );
    let outcome = meter.outcome(&pricing, OK, meter.demand());
    assert_eq!(
        outcome.model.as_deref(),
        Some("us.anthropic.claude-3-5-haiku-20241022-v1:0")
    );
    assert_eq!(
        outcome.cost.unwrap().pico_usd(),
        10 * 800_000 + 2 * 4_000_000
    );
}

#[test]
fn only_requests_that_can_spend_tokens_are_metered() {
    // (method, a body follows the headers, metered)
    let cases = [
        ("POST", true, true),
        ("POST", false, true), // a bodyless POST may still start work
        ("PUT", true, true),
        ("PATCH", false, true),
        ("GET", false, false), // GET /v1/responses/{id}: the usage of work charged already
        ("HEAD", false, false),
        ("DELETE", false, false),
        ("OPTIONS", false, false),
        ("GET", true, true), // a body is read and charged, whatever the method
        ("DELETE", true, true),
        ("get", false, true), // methods are case-sensitive: an odd spelling is metered
        ("Get", false, true),
        ("", false, true),
    ];
    for (method, body_follows, metered) in cases {
        assert_eq!(
            meters(method, body_follows),
            metered,
            "{method:?} body {body_follows}"
        );
    }
}
