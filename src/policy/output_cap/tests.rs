//! Output limits held to the room left: never more than is left, as close to it as the
//! minimum allows, and bodies that say exactly that.

use super::*;
use crate::policy::plan::Window;
use crate::policy::quota;
use serde_json::Value;
#[cfg(target_family = "wasm")]
use wasm_bindgen_test::wasm_bindgen_test as test;

const NOW: u64 = 1_700_000_000;
const RULE: OutputCap = OutputCap {
    min_output_tokens: 16,
};

fn limits(tokens: u64, budget_micro_usd: Option<u64>) -> Limits {
    Limits {
        requests: vec![],
        tokens: vec![Window {
            limit: tokens,
            window_s: 3600,
        }],
        monthly_budget_micro_usd: budget_micro_usd,
        output_cap: Some(RULE),
        ..Limits::default()
    }
}

fn ask(input: u64, requested: Option<u64>, choices: u64) -> Ask {
    Ask {
        input_tokens: input,
        requested,
        choices,
        price: Some(Price::flat(2_500_000, 10_000_000)),
        default_output: 1000,
    }
}

/// Admits a request whose provisional demand is `provisional`, then caps it.
fn admit_and_cap(
    state: &QuotaState,
    limits: &Limits,
    provisional: u64,
    ask: &Ask,
) -> Result<(QuotaState, Reservation, Cap), Refusal> {
    let demand = Demand {
        tokens: provisional,
        micro_usd: 0,
    };
    let admitted = quota::admit(state, limits, NOW, demand)?;
    reserve(
        &admitted.state,
        limits,
        NOW,
        &admitted.reservation,
        ask,
        RULE,
    )
}

#[test]
fn a_request_that_fits_keeps_its_limit_and_its_body() {
    let (_, reservation, cap) = admit_and_cap(
        &QuotaState::default(),
        &limits(10_000, None),
        5000,
        &ask(100, Some(500), 1),
    )
    .unwrap();
    assert_eq!(
        cap,
        Cap {
            per_choice: 500,
            rewrite: false,
            demand: ask(100, Some(500), 1).demand(500),
        }
    );
    assert_eq!(reservation.demand.tokens, 600);
}

#[test]
fn the_limit_is_lowered_to_the_tightest_token_window() {
    let mut limits = limits(10_000, None);
    limits.tokens.push(Window {
        limit: 700,
        window_s: 60,
    });
    let (state, reservation, cap) = admit_and_cap(
        &QuotaState::default(),
        &limits,
        5000,
        &ask(100, Some(1000), 1),
    )
    .unwrap();
    assert_eq!((cap.per_choice, cap.rewrite), (600, true));
    assert_eq!(reservation.demand.tokens, 700);
    // The provisional hold is gone: exactly the capped demand is reserved.
    let left: Vec<u64> = quota::statuses(&state, &limits, NOW)
        .iter()
        .map(|w| w.remaining)
        .collect();
    assert_eq!(left, vec![10_000 - 700, 0]);
}

#[test]
fn choices_share_the_room() {
    let (_, reservation, cap) = admit_and_cap(
        &QuotaState::default(),
        &limits(1000, None),
        10,
        &ask(100, Some(1000), 3),
    )
    .unwrap();
    assert_eq!(cap.per_choice, 300);
    assert_eq!(reservation.demand.tokens, 100 + 900);
}

#[test]
fn under_the_minimum_the_request_is_refused_as_a_full_window() {
    let refusal = admit_and_cap(
        &QuotaState::default(),
        &limits(115, None),
        10,
        &ask(100, Some(1000), 1),
    )
    .unwrap_err();
    assert_eq!(refusal.reason, Reason::TokenQuotaExceeded);
    assert!(refusal.retry_after >= 1 && refusal.retry_after <= 3600);
    // 16 left is enough.
    let (_, _, cap) = admit_and_cap(
        &QuotaState::default(),
        &limits(116, None),
        10,
        &ask(100, Some(1000), 1),
    )
    .unwrap();
    assert_eq!(cap.per_choice, 16);
}

#[test]
fn a_small_limit_under_the_minimum_is_kept_when_it_fits() {
    let (_, _, cap) = admit_and_cap(
        &QuotaState::default(),
        &limits(10_000, None),
        10,
        &ask(100, Some(5), 1),
    )
    .unwrap();
    assert_eq!((cap.per_choice, cap.rewrite), (5, false));
}

#[test]
fn the_budget_caps_at_the_output_price_exactly() {
    // $10 per million output tokens = 10 micro-USD per token; input 100 tokens at $2.5 per
    // million = 250 micro-USD.
    let budget = 250 + 10 * 444 + 7;
    let (_, reservation, cap) = admit_and_cap(
        &QuotaState::default(),
        &limits(1_000_000, Some(budget)),
        10,
        &ask(100, Some(1000), 1),
    )
    .unwrap();
    assert_eq!(cap.per_choice, 444);
    assert!(reservation.demand.micro_usd <= budget);
    assert_eq!(reservation.demand.micro_usd, 250 + 4440);

    let refusal = admit_and_cap(
        &QuotaState::default(),
        &limits(1_000_000, Some(250 + 150)),
        10,
        &ask(100, Some(1000), 1),
    )
    .unwrap_err();
    assert_eq!(refusal.reason, Reason::BudgetExceeded);
}

#[test]
fn a_body_without_a_limit_gets_the_default_lowered_to_the_room() {
    let (_, _, cap) = admit_and_cap(
        &QuotaState::default(),
        &limits(10_000, None),
        10,
        &ask(100, None, 1),
    )
    .unwrap();
    assert_eq!((cap.per_choice, cap.rewrite), (1000, true));
    let (_, _, cap) = admit_and_cap(
        &QuotaState::default(),
        &limits(400, None),
        10,
        &ask(100, None, 1),
    )
    .unwrap();
    assert_eq!((cap.per_choice, cap.rewrite), (300, true));
}

#[test]
fn concurrent_requests_never_reserve_more_than_the_window() {
    // Fifty requests admitted one after another, none settled yet: the reservations add up to
    // at most the window, and every one but the last refused has at least the minimum.
    let limits = limits(10_000, Some(50_000));
    let mut state = QuotaState::default();
    let mut reserved = 0;
    let mut budget = 0;
    let mut admitted = 0;
    for _ in 0..50 {
        if let Ok((next, reservation, cap)) =
            admit_and_cap(&state, &limits, 2000, &ask(40, Some(1000), 1))
        {
            assert!(cap.per_choice >= RULE.min_output_tokens);
            state = next;
            reserved += reservation.demand.tokens;
            budget += reservation.demand.micro_usd;
            admitted += 1;
        }
    }
    assert!(
        reserved <= 10_000 && budget <= 50_000,
        "{reserved} {budget}"
    );
    assert!(admitted >= 4, "{admitted}");
    // What is left is under what one more request needs.
    let left = quota::statuses(&state, &limits, NOW);
    let tokens_left = left
        .iter()
        .find(|w| w.kind == Kind::Tokens)
        .unwrap()
        .remaining;
    let budget_left = left
        .iter()
        .find(|w| w.kind == Kind::Budget)
        .unwrap()
        .remaining;
    assert!(
        tokens_left < 40 + 16 || budget_left < 100 + 160,
        "{tokens_left} {budget_left}"
    );
}

#[test]
fn apis_by_path() {
    assert_eq!(
        Api::of("POST", "/v1/chat/completions", None),
        Some(Api::ChatCompletions)
    );
    assert_eq!(
        Api::of(
            "POST",
            "/tenants/a/openai/deployments/x/chat/completions?api-version=1",
            Some(ProviderApi::AzureDeployment)
        ),
        Some(Api::ChatCompletions)
    );
    assert_eq!(
        Api::of("POST", "/v1/completions", None),
        Some(Api::Completions)
    );
    assert_eq!(Api::of("POST", "/v1/responses", None), Some(Api::Responses));
    assert_eq!(Api::of("POST", "/v1/messages", None), Some(Api::Messages));
    assert_eq!(Api::of("POST", "/v1/messages/count_tokens", None), None);
    assert_eq!(Api::of("POST", "/v1/embeddings", None), None);
    assert_eq!(Api::of("GET", "/v1/chat/completions", None), None);
    assert_eq!(Api::of("POST", "/v1/responses/resp_1/cancel", None), None);
}

#[test]
fn apis_named_in_the_path() {
    use crate::policy::provider_api::from_path;
    let of = |path: &str| Api::of("POST", path, from_path(path).map(|found| found.api));
    assert_eq!(
        of("/v1beta/models/gemini-2.0-flash:generateContent"),
        Some(Api::GenerateContent)
    );
    assert_eq!(
        of("/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse"),
        Some(Api::GenerateContent)
    );
    assert_eq!(of("/v1beta/models/gemini-2.0-flash:countTokens"), None);
    assert_eq!(
        of("/v1/projects/p/locations/l/publishers/anthropic/models/claude:rawPredict"),
        Some(Api::PlatformMessages)
    );
    assert_eq!(
        of("/model/amazon.nova-lite-v1:0/converse"),
        Some(Api::Converse)
    );
    assert_eq!(
        of("/model/amazon.nova-lite-v1:0/converse-stream"),
        Some(Api::Converse)
    );
    assert_eq!(
        of("/model/anthropic.claude-3-haiku-20240307-v1:0/invoke"),
        Some(Api::PlatformMessages)
    );
    assert_eq!(
        of("/model/m/invoke-with-response-stream"),
        Some(Api::PlatformMessages)
    );
    assert_eq!(
        Api::of(
            "GET",
            "/model/m/converse",
            Some(ProviderApi::Bedrock(BedrockOperation::Converse))
        ),
        None
    );
}

#[test]
fn apply_sets_nested_limits_of_gemini_and_bedrock() {
    let gemini = br#"{"contents":[],"generationConfig":{"temperature":1,"maxOutputTokens":8192}}"#;
    let out = apply(gemini, Api::GenerateContent, 300).unwrap();
    assert_eq!(
        out,
        br#"{"contents":[],"generationConfig":{"temperature":1,"maxOutputTokens":300}}"#
    );
    // No config: one is added, with the limit.
    let out = apply(br#"{"contents":[]}"#, Api::GenerateContent, 64).unwrap();
    let value: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(value["generationConfig"]["maxOutputTokens"], 64);
    // Every spelling Google accepts is lowered.
    let out = apply(
        br#"{"generation_config":{"max_output_tokens":5000}}"#,
        Api::GenerateContent,
        64,
    )
    .unwrap();
    assert_eq!(out, br#"{"generation_config":{"max_output_tokens":64}}"#);
    let converse = br#"{"messages":[],"inferenceConfig":{"maxTokens":4096,"topP":0.9}}"#;
    let out = apply(converse, Api::Converse, 100).unwrap();
    assert_eq!(
        out,
        br#"{"messages":[],"inferenceConfig":{"maxTokens":100,"topP":0.9}}"#
    );
    let out = apply(br#"{"messages":[]}"#, Api::Converse, 100).unwrap();
    assert_eq!(
        out,
        br#"{"messages":[],"inferenceConfig":{"maxTokens":100}}"#
    );
}

#[test]
fn apply_takes_anthropic_bodies_only_on_bedrock_and_vertex() {
    let anthropic = br#"{"anthropic_version":"bedrock-2023-05-31","max_tokens":4096}"#;
    let out = apply(anthropic, Api::PlatformMessages, 50).unwrap();
    assert_eq!(
        out,
        br#"{"anthropic_version":"bedrock-2023-05-31","max_tokens":50}"#
    );
    // Titan's body puts its limit elsewhere: it cannot be capped.
    let titan = br#"{"inputText":"hi","textGenerationConfig":{"maxTokenCount":4096}}"#;
    assert!(apply(titan, Api::PlatformMessages, 50).is_err());
}

fn limit_of(body: &[u8]) -> Option<u64> {
    usage::inspect_request(body).max_output_tokens
}

#[test]
fn apply_lowers_every_limit_member_and_keeps_the_rest() {
    let body = br#"{"model":"m", "max_tokens": 900,"max_completion_tokens":1e3,"messages":[]}"#;
    let out = apply(body, Api::ChatCompletions, 300).unwrap();
    assert_eq!(
        out,
        br#"{"model":"m", "max_tokens": 300,"max_completion_tokens":300,"messages":[]}"#
    );
    // One that already fits stays what it was.
    let body = br#"{"max_tokens":20,"max_completion_tokens":500}"#;
    let out = apply(body, Api::ChatCompletions, 300).unwrap();
    assert_eq!(out, br#"{"max_tokens":20,"max_completion_tokens":300}"#);
}

#[test]
fn apply_adds_the_apis_own_member_when_none_is_named() {
    for (api, member) in [
        (Api::ChatCompletions, "max_completion_tokens"),
        (Api::Completions, "max_tokens"),
        (Api::Responses, "max_output_tokens"),
        (Api::Messages, "max_tokens"),
    ] {
        let out = apply(br#"{"model":"m","stream":true}"#, api, 64).unwrap();
        let value: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(value[member], 64, "{api:?}");
        assert_eq!(limit_of(&out), Some(64));
    }
    // `null` is no limit: it is set.
    let out = apply(br#"{"max_tokens":null}"#, Api::Messages, 64).unwrap();
    assert_eq!(limit_of(&out), Some(64));
}

#[test]
fn apply_refuses_what_it_cannot_make_unambiguous() {
    for body in [
        &br#"{"max_tokens":10,"max_tokens":100000}"#[..],
        br#"{"max_tokens":100000,"\u006dax_tokens":10}"#,
        br#"[1]"#,
        br#"not json"#,
    ] {
        assert!(
            apply(body, Api::Messages, 64).is_err(),
            "{}",
            String::from_utf8_lossy(body)
        );
    }
    // A limit named with an escape is the same member.
    let out = apply(br#"{"\u006dax_tokens":1000}"#, Api::Messages, 64).unwrap();
    assert_eq!(limit_of(&out), Some(64));
    assert!(!String::from_utf8_lossy(&out).contains("1000"));
}
