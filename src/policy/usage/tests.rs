use super::*;
#[cfg(target_family = "wasm")]
use wasm_bindgen_test::wasm_bindgen_test as test;

macro_rules! fixture {
    ($name:literal) => {
        include_bytes!(concat!("../testdata/usage/", $name)).as_slice()
    };
}

pub(super) const OPENAI_CHAT: &[u8] = fixture!("openai_chat.json");
pub(super) const OPENAI_CHAT_STREAM: &[u8] = fixture!("openai_chat_stream.sse");
pub(super) const OPENAI_CHAT_STREAM_MIXED: &[u8] = fixture!("openai_chat_stream_mixed_framing.sse");
pub(super) const OPENAI_COMPLETIONS: &[u8] = fixture!("openai_completions.json");
pub(super) const OPENAI_COMPLETIONS_STREAM: &[u8] = fixture!("openai_completions_stream.sse");
pub(super) const OPENAI_RESPONSES: &[u8] = fixture!("openai_responses.json");
pub(super) const OPENAI_RESPONSES_STREAM: &[u8] = fixture!("openai_responses_stream.sse");
pub(super) const OPENAI_EMBEDDINGS: &[u8] = fixture!("openai_embeddings.json");
pub(super) const ANTHROPIC: &[u8] = fixture!("anthropic_messages.json");
pub(super) const ANTHROPIC_STREAM: &[u8] = fixture!("anthropic_messages_stream.sse");
pub(super) const ANTHROPIC_STREAM_WEB_SEARCH: &[u8] =
    fixture!("anthropic_messages_stream_web_search.sse");
pub(super) const GEMINI: &[u8] = fixture!("gemini_generate.json");
pub(super) const GEMINI_STREAM: &[u8] = fixture!("gemini_stream.sse");
pub(super) const GEMINI_STREAM_ARRAY: &[u8] = fixture!("gemini_stream_array.json");
pub(super) const BEDROCK_CONVERSE: &[u8] = fixture!("bedrock_converse.json");
pub(super) const BEDROCK_CONVERSE_STREAM: &[u8] = fixture!("bedrock_converse_stream.bin");
pub(super) const BEDROCK_INVOKE_STREAM: &[u8] = fixture!("bedrock_invoke_stream.bin");

pub(super) fn usage(input: u64, output: u64, cached: u64) -> Usage {
    Usage {
        input_tokens: input,
        output_tokens: output,
        cached_input_tokens: cached,
        ..Usage::default()
    }
}

/// What the readers return: usage and the response's model.
pub(super) type Found = Option<(Usage, Option<String>)>;

pub(super) fn seen(input: u64, output: u64, cached: u64, model: &str) -> Found {
    Some((usage(input, output, cached), Some(model.to_owned())))
}

/// Usage with the parts written to a prompt cache and spent reasoning.
pub(super) fn with_parts(found: Found, cache_write: u64, reasoning: u64) -> Found {
    found.map(|(usage, model)| {
        let usage = Usage {
            cache_write_tokens: cache_write,
            reasoning_tokens: reasoning,
            ..usage
        };
        (usage, model)
    })
}

/// Every SSE fixture with what it must yield.
pub(super) fn streams() -> Vec<(&'static str, &'static [u8], Found)> {
    vec![
        (
            "openai chat",
            OPENAI_CHAT_STREAM,
            seen(19, 10, 0, "gpt-4o-mini-2024-07-18"),
        ),
        (
            "openai chat, mixed framing",
            OPENAI_CHAT_STREAM_MIXED,
            seen(12, 2, 0, "gpt-4o-2024-08-06"),
        ),
        (
            "openai completions",
            OPENAI_COMPLETIONS_STREAM,
            seen(6, 4, 0, "gpt-3.5-turbo-instruct"),
        ),
        (
            "openai responses",
            OPENAI_RESPONSES_STREAM,
            with_parts(seen(1300, 120, 1024, "o4-mini-2025-04-16"), 0, 64),
        ),
        (
            "anthropic",
            ANTHROPIC_STREAM,
            seen(25 + 2048, 15, 2048, "claude-3-5-haiku-20241022"),
        ),
        (
            "anthropic web search",
            ANTHROPIC_STREAM_WEB_SEARCH,
            seen(10682, 510, 0, "claude-sonnet-4-20250514"),
        ),
        (
            "gemini alt=sse",
            GEMINI_STREAM,
            seen(8, 6, 0, "gemini-2.0-flash-001"),
        ),
    ]
}

/// A tiny deterministic generator (Knuth's MMIX LCG) for chunk sizes and noise.
pub(super) struct Lcg(pub(super) u64);

impl Lcg {
    pub(super) fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }

    pub(super) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

pub(super) fn find(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap()
}

#[test]
fn usage_total_adds_input_and_output() {
    assert_eq!(usage(10, 5, 4).total(), 15);
    assert_eq!(usage(u64::MAX, 1, 0).total(), u64::MAX);
}

#[test]
fn usage_source_strings_are_stable() {
    assert_eq!(UsageSource::Json.as_str(), "json");
    assert_eq!(UsageSource::Sse.as_str(), "sse");
    assert_eq!(UsageSource::EventStream.as_str(), "event_stream");
    assert_eq!(UsageSource::None.as_str(), "none");
}

#[test]
fn event_stream_content_type_is_recognised() {
    assert!(is_event_stream("text/event-stream"));
    assert!(is_event_stream("Text/Event-Stream; charset=utf-8"));
    assert!(!is_event_stream("application/json"));
    assert!(!is_event_stream(""));
}

#[test]
fn model_names_are_printable_bounded_or_other() {
    assert_eq!(model_name("gpt-4o").as_deref(), Some("gpt-4o"));
    assert_eq!(model_name("").as_deref(), None);
    for bad in ["a\nb", "a b", "é", "\u{7f}"] {
        assert_eq!(model_name(bad).as_deref(), Some("other"), "{bad:?}");
    }
    assert_eq!(model_name(&"m".repeat(256)).map(|m| m.len()), Some(256));
    assert_eq!(model_name(&"m".repeat(257)).as_deref(), Some("other"));
}
