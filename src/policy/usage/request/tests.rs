use super::*;
use crate::policy::usage::inspect_request;
#[cfg(target_family = "wasm")]
use wasm_bindgen_test::wasm_bindgen_test as test;

#[test]
fn openai_chat_request_is_read() {
    let body = br#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi \"model\": \"x\""}],
                   "max_completion_tokens":256,"stream":true,"stream_options":{"include_usage":true}}"#;
    assert_eq!(
        inspect_request(body),
        RequestBody {
            model: Some("gpt-4o".into()),
            max_output_tokens: Some(256),
            choices: 1,
            stream: true,
            include_usage: true,
            anthropic_version: false,
            ambiguous: false,
        }
    );
}

#[test]
fn anthropic_request_is_read() {
    let body = br#"{"model":"claude-sonnet-4-20250514","max_tokens":1024,"messages":[{"role":"user","content":"Hello"}],"stream":true}"#;
    let req = inspect_request(body);
    assert_eq!(req.model.as_deref(), Some("claude-sonnet-4-20250514"));
    assert_eq!(req.max_output_tokens, Some(1024));
    assert!(req.stream && !req.include_usage && !req.anthropic_version);
    let bedrock = br#"{"anthropic_version":"bedrock-2023-05-31","max_tokens":10,"messages":[]}"#;
    assert!(inspect_request(bedrock).anthropic_version);
}

#[test]
fn responses_request_max_output_tokens_is_read() {
    let body = br#"{"model":"o4-mini","input":"hi","max_output_tokens":5000}"#;
    assert_eq!(inspect_request(body).max_output_tokens, Some(5000));
}

#[test]
fn largest_output_limit_and_choices_make_the_estimate() {
    let body = br#"{"max_tokens":100,"max_completion_tokens":300,"n":3}"#;
    let req = inspect_request(body);
    assert_eq!(req.max_output_tokens, Some(300));
    assert_eq!(req.choices, 3);
    assert_eq!(req.output_estimate(4096), 900);
    let body = br#"{"prompt":"x","best_of":5,"n":2}"#;
    let req = inspect_request(body);
    assert_eq!(req.choices, 5);
    assert_eq!(req.output_estimate(16), 80);
    assert_eq!(inspect_request(br#"{"n":0}"#).choices, 1);
    let huge = inspect_request(br#"{"max_tokens":18446744073709551615,"n":2}"#);
    assert_eq!(huge.output_estimate(0), u64::MAX);
}

#[test]
fn missing_or_invalid_fields_are_left_empty() {
    let body = br#"{"model":7,"max_tokens":-1,"stream":"true","stream_options":null}"#;
    assert_eq!(inspect_request(body), RequestBody::default());
    assert_eq!(inspect_request(b"").output_estimate(512), 512);
}

#[test]
fn non_object_or_broken_bodies_give_defaults() {
    for body in [
        &b""[..],
        b"[]",
        b"\"model\"",
        b"{\"model\":\"gpt-4o\"",
        b"\xff\xfe",
    ] {
        assert_eq!(inspect_request(body), RequestBody::default());
    }
}

#[test]
fn duplicate_request_keys_last_one_wins() {
    let body = br#"{"model":"cheap","stream":true,"model":"gpt-4o","stream":false}"#;
    let req = inspect_request(body);
    assert_eq!(req.model.as_deref(), Some("gpt-4o"));
    assert!(!req.stream);
}

#[test]
fn input_estimate_is_a_quarter_of_the_body_rounded_up() {
    assert_eq!(estimate_input_tokens(0), 0);
    assert_eq!(estimate_input_tokens(1), 1);
    assert_eq!(estimate_input_tokens(4), 1);
    assert_eq!(estimate_input_tokens(4001), 1001);
}

#[test]
fn a_member_that_sizes_the_output_named_twice_is_ambiguous() {
    for body in [
        &br#"{"max_tokens":10,"max_tokens":100000}"#[..],
        br#"{"max_tokens":100000,"\u006dax_tokens":10}"#,
        br#"{"n":5,"n":1}"#,
        br#"{"best_of":1,"best_of":2}"#,
        br#"{"max_output_tokens":null,"max_output_tokens":3}"#,
    ] {
        assert!(
            inspect_request(body).ambiguous,
            "{}",
            String::from_utf8_lossy(body)
        );
    }
    for body in [
        &br#"{"max_tokens":10,"max_completion_tokens":20,"n":2,"best_of":3}"#[..],
        br#"{"model":"a","model":"b"}"#,
    ] {
        assert!(!inspect_request(body).ambiguous);
    }
}

#[test]
fn gemini_generation_config_sizes_the_output() {
    let body = br#"{"contents":[{"role":"user","parts":[{"text":"hi"}]}],
        "generationConfig":{"temperature":0.2,"maxOutputTokens":512,"candidateCount":2}}"#;
    let facts = inspect_request(body);
    assert_eq!(facts.max_output_tokens, Some(512));
    assert_eq!(facts.choices, 2);
    assert!(!facts.ambiguous);
    assert_eq!(facts.output_estimate(100), 1024);
    // Google's parser takes the proto names too.
    let snake = br#"{"generation_config":{"max_output_tokens":64,"candidate_count":3}}"#;
    let facts = inspect_request(snake);
    assert_eq!((facts.max_output_tokens, facts.choices), (Some(64), 3));
    // A null config says nothing.
    assert_eq!(
        inspect_request(br#"{"generationConfig":null}"#),
        RequestBody::default()
    );
}

#[test]
fn bedrock_inference_config_sizes_the_output() {
    let body = br#"{"messages":[{"role":"user","content":[{"text":"hi"}]}],
        "inferenceConfig":{"maxTokens":300,"temperature":0.5}}"#;
    assert_eq!(inspect_request(body).max_output_tokens, Some(300));
    // Anthropic on Bedrock (InvokeModel): max_tokens at the top.
    let invoke = br#"{"anthropic_version":"bedrock-2023-05-31","max_tokens":200,"messages":[]}"#;
    let facts = inspect_request(invoke);
    assert_eq!(facts.max_output_tokens, Some(200));
    assert!(facts.anthropic_version);
}

#[test]
fn an_output_config_spelled_twice_is_ambiguous_and_the_largest_limit_counts() {
    for body in [
        &br#"{"generationConfig":{"maxOutputTokens":10},"generation_config":{"maxOutputTokens":9000}}"#[..],
        br#"{"generationConfig":{"maxOutputTokens":10,"max_output_tokens":9000}}"#,
        br#"{"generationConfig":{"candidateCount":1,"candidate_count":4}}"#,
        br#"{"inferenceConfig":{"maxTokens":1},"inferenceConfig":{"maxTokens":9000}}"#,
    ] {
        let facts = inspect_request(body);
        assert!(facts.ambiguous, "{}", String::from_utf8_lossy(body));
        assert!(
            facts.max_output_tokens.unwrap_or(0) >= 9000 || facts.choices == 4,
            "{}",
            String::from_utf8_lossy(body)
        );
    }
}
