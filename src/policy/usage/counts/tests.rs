use crate::policy::usage::tests::{
    seen, usage, with_parts, ANTHROPIC, BEDROCK_CONVERSE, GEMINI, OPENAI_CHAT, OPENAI_COMPLETIONS,
    OPENAI_EMBEDDINGS, OPENAI_RESPONSES,
};
use crate::policy::usage::{from_json, from_sse};
#[cfg(target_family = "wasm")]
use wasm_bindgen_test::wasm_bindgen_test as test;

#[test]
fn openai_chat_json_maps_prompt_completion_and_cached_tokens() {
    assert_eq!(
        from_json(OPENAI_CHAT),
        seen(2006, 300, 1920, "gpt-4o-2024-08-06")
    );
}

#[test]
fn openai_completions_json_yields_usage() {
    assert_eq!(
        from_json(OPENAI_COMPLETIONS),
        seen(5, 7, 0, "gpt-3.5-turbo-instruct")
    );
}

#[test]
fn openai_responses_json_maps_input_and_output_tokens() {
    assert_eq!(
        from_json(OPENAI_RESPONSES),
        seen(36, 87, 0, "gpt-4.1-2025-04-14")
    );
}

#[test]
fn openai_embeddings_json_has_input_tokens_only() {
    assert_eq!(
        from_json(OPENAI_EMBEDDINGS),
        seen(8, 0, 0, "text-embedding-3-small")
    );
}

#[test]
fn anthropic_json_counts_cache_writes_and_reads_as_input() {
    assert_eq!(
        from_json(ANTHROPIC),
        with_parts(
            seen(21 + 188 + 1500, 393, 1500, "claude-sonnet-4-20250514"),
            188,
            0
        )
    );
}

#[test]
fn duplicate_usage_keys_last_one_wins() {
    let body =
        br#"{"usage":{"prompt_tokens":1,"completion_tokens":2},"usage":{"prompt_tokens":3}}"#;
    assert_eq!(from_json(body), Some((usage(3, 2, 0), None)));
}

#[test]
fn total_tokens_alone_counts_as_input() {
    let body = br#"{"model":"e5","usage":{"total_tokens":42}}"#;
    assert_eq!(from_json(body), seen(42, 0, 0, "e5"));
}

#[test]
fn non_integer_counts_are_ignored_and_integral_floats_accepted() {
    let body = br#"{"usage":{"prompt_tokens":-3,"completion_tokens":"7","input_tokens":12.0,"output_tokens":1.5}}"#;
    assert_eq!(from_json(body), Some((usage(12, 0, 0), None)));
}

#[test]
fn cached_tokens_never_exceed_input_tokens() {
    let body = br#"{"usage":{"prompt_tokens":10,"prompt_tokens_details":{"cached_tokens":50}}}"#;
    assert_eq!(from_json(body), Some((usage(10, 0, 10), None)));
}

#[test]
fn huge_counts_saturate_instead_of_overflowing() {
    let body = format!(
        r#"{{"usage":{{"input_tokens":{m},"cache_creation_input_tokens":{m},"cache_read_input_tokens":{m},"output_tokens":{m}}}}}"#,
        m = u64::MAX
    );
    let (u, _) = from_json(body.as_bytes()).unwrap();
    assert_eq!(u.input_tokens, u64::MAX);
    assert_eq!(u.total(), u64::MAX);
}

#[test]
fn anthropic_message_delta_counts_are_cumulative_so_the_last_wins() {
    let stream = b"event: message_start\n\
data: {\"type\":\"message_start\",\"message\":{\"model\":\"claude\",\"usage\":{\"input_tokens\":10,\"output_tokens\":1}}}\n\n\
event: message_delta\n\
data: {\"type\":\"message_delta\",\"delta\":{},\"usage\":{\"output_tokens\":7}}\n\n\
event: message_delta\n\
data: {\"type\":\"message_delta\",\"delta\":{},\"usage\":{\"output_tokens\":9,\"input_tokens\":null}}\n\n";
    assert_eq!(from_sse(stream), seen(10, 9, 0, "claude"));
}

#[test]
fn gemini_counts_thoughts_as_output_and_the_cache_as_part_of_the_prompt() {
    // promptTokenCount includes the cached content; thoughts are billed beside candidates.
    assert_eq!(
        from_json(GEMINI),
        with_parts(seen(2100, 54 + 845, 2048, "gemini-2.5-flash"), 0, 845)
    );
}

#[test]
fn gemini_tool_use_prompt_is_input_and_a_bare_total_is_input() {
    let tools = br#"{"usageMetadata":{"promptTokenCount":10,"toolUsePromptTokenCount":5,
        "candidatesTokenCount":3,"totalTokenCount":18}}"#;
    assert_eq!(from_json(tools), Some((usage(15, 3, 0), None)));
    let thoughts_only = br#"{"usageMetadata":{"promptTokenCount":4,"thoughtsTokenCount":7}}"#;
    assert_eq!(
        from_json(thoughts_only),
        with_parts(Some((usage(4, 7, 0), None)), 0, 7)
    );
    let total = br#"{"usageMetadata":{"totalTokenCount":9}}"#;
    assert_eq!(from_json(total), Some((usage(9, 0, 0), None)));
}

#[test]
fn bedrock_converse_adds_cache_reads_and_writes_to_input() {
    // inputTokens excludes the cache, as Anthropic's input_tokens does.
    assert_eq!(
        from_json(BEDROCK_CONVERSE),
        Some((usage(2054 + 1741, 223, 1741), None))
    );
    let writes = br#"{"usage":{"inputTokens":4,"outputTokens":2,"cacheWriteInputTokens":100}}"#;
    assert_eq!(
        from_json(writes),
        with_parts(Some((usage(104, 2, 0), None)), 100, 0)
    );
}
