use super::*;
#[cfg(target_family = "wasm")]
use wasm_bindgen_test::wasm_bindgen_test as test;

macro_rules! fixture {
    ($name:literal) => {
        include_bytes!(concat!("../testdata/usage/", $name)).as_slice()
    };
}

const OPENAI_CHAT: &[u8] = fixture!("openai_chat.json");
const OPENAI_CHAT_STREAM: &[u8] = fixture!("openai_chat_stream.sse");
const OPENAI_CHAT_STREAM_MIXED: &[u8] = fixture!("openai_chat_stream_mixed_framing.sse");
const OPENAI_COMPLETIONS: &[u8] = fixture!("openai_completions.json");
const OPENAI_COMPLETIONS_STREAM: &[u8] = fixture!("openai_completions_stream.sse");
const OPENAI_RESPONSES: &[u8] = fixture!("openai_responses.json");
const OPENAI_RESPONSES_STREAM: &[u8] = fixture!("openai_responses_stream.sse");
const OPENAI_EMBEDDINGS: &[u8] = fixture!("openai_embeddings.json");
const ANTHROPIC: &[u8] = fixture!("anthropic_messages.json");
const ANTHROPIC_STREAM: &[u8] = fixture!("anthropic_messages_stream.sse");
const ANTHROPIC_STREAM_WEB_SEARCH: &[u8] = fixture!("anthropic_messages_stream_web_search.sse");

fn usage(input: u64, output: u64, cached: u64) -> Usage {
    Usage {
        input_tokens: input,
        output_tokens: output,
        cached_input_tokens: cached,
        ..Usage::default()
    }
}

/// What the readers return: usage and the response's model.
type Found = Option<(Usage, Option<String>)>;

fn seen(input: u64, output: u64, cached: u64, model: &str) -> Found {
    Some((usage(input, output, cached), Some(model.to_owned())))
}

/// Usage with the parts written to a prompt cache and spent reasoning.
fn with_parts(found: Found, cache_write: u64, reasoning: u64) -> Found {
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
fn streams() -> Vec<(&'static str, &'static [u8], Found)> {
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
    ]
}

/// Feeds `stream` cut at the given ascending offsets.
fn feed_split(stream: &[u8], cuts: &[usize]) -> Found {
    let mut reader = SseUsage::new();
    let mut from = 0;
    for &cut in cuts.iter().chain([stream.len()].iter()) {
        reader.feed(&stream[from..cut]);
        from = cut;
    }
    reader
        .usage()
        .map(|u| (u, reader.model().map(str::to_owned)))
}

/// A tiny deterministic generator (Knuth's MMIX LCG) for chunk sizes and noise.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Bytes the reader keeps between chunks, whatever it was fed.
fn retained(reader: &SseUsage) -> usize {
    let capture = reader.json.usage.as_ref().map_or(0, |c| c.bytes.capacity());
    capture
        + reader.json.kept.capacity()
        + reader.seen.model_raw.capacity()
        + reader.seen.model.as_ref().map_or(0, String::capacity)
}

// === JSON responses ===

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
fn usage_quoted_inside_strings_is_not_usage() {
    let body =
        br#"{"model":"m","choices":[{"message":{"content":"\"usage\": {\"prompt_tokens\": 5}"}}],
                   "note":"usage","x":{"usage":{"prompt_tokens":7}}}"#;
    assert_eq!(from_json(body), None);
}

#[test]
fn usage_deeper_than_the_known_places_is_ignored() {
    let body =
        br#"{"choices":[{"usage":{"prompt_tokens":5}}],"data":{"usage":{"prompt_tokens":6}}}"#;
    assert_eq!(from_json(body), None);
}

#[test]
fn json_without_usage_or_with_null_usage_yields_none() {
    assert_eq!(from_json(br#"{"model":"gpt-4o","usage":null}"#), None);
    assert_eq!(from_json(br#"{"model":"gpt-4o","usage":{}}"#), None);
    let error =
        br#"{"error":{"message":"Rate limit","type":"requests","code":"rate_limit_exceeded"}}"#;
    assert_eq!(from_json(error), None);
    let anthropic_error =
        br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
    assert_eq!(from_json(anthropic_error), None);
}

#[test]
fn invalid_or_truncated_json_yields_none() {
    assert_eq!(from_json(b""), None);
    assert_eq!(from_json(b"not json"), None);
    assert_eq!(from_json(&OPENAI_CHAT[..OPENAI_CHAT.len() - 3]), None);
    assert_eq!(from_json(&[OPENAI_CHAT, b"x"].concat()), None);
    assert_eq!(from_json(OPENAI_CHAT_STREAM), None);
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
fn escaped_model_names_are_decoded_and_empty_ones_ignored() {
    let body = br#"{"model":"gpt\u002d4o","usage":{"prompt_tokens":1}}"#;
    assert_eq!(from_json(body), seen(1, 0, 0, "gpt-4o"));
    let body = br#"{"model":"","usage":{"prompt_tokens":1}}"#;
    assert_eq!(from_json(body), Some((usage(1, 0, 0), None)));
}

#[test]
fn overlong_model_names_are_not_kept() {
    let body = format!(
        r#"{{"model":"{}","usage":{{"prompt_tokens":1}}}}"#,
        "m".repeat(MAX_KEPT_BYTES + 1)
    );
    assert_eq!(from_json(body.as_bytes()), Some((usage(1, 0, 0), None)));
    let body = format!(
        r#"{{"model":"{}","usage":{{"prompt_tokens":1}}}}"#,
        "m".repeat(MAX_KEPT_BYTES)
    );
    assert_eq!(
        from_json(body.as_bytes()),
        seen(1, 0, 0, &"m".repeat(MAX_KEPT_BYTES))
    );
}

#[test]
fn oversized_usage_objects_are_ignored() {
    let padding = "x".repeat(MAX_USAGE_BYTES);
    let body = format!(r#"{{"usage":{{"prompt_tokens":1,"pad":"{padding}"}}}}"#);
    assert_eq!(from_json(body.as_bytes()), None);
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
    assert_eq!(UsageSource::None.as_str(), "none");
}

#[test]
fn event_stream_content_type_is_recognised() {
    assert!(is_event_stream("text/event-stream"));
    assert!(is_event_stream("Text/Event-Stream; charset=utf-8"));
    assert!(!is_event_stream("application/json"));
    assert!(!is_event_stream(""));
}

// === SSE streams ===

#[test]
fn every_fixture_stream_yields_its_usage_and_model() {
    for (name, stream, expected) in streams() {
        assert_eq!(from_sse(stream), expected, "{name}");
    }
}

#[test]
fn crlf_framing_yields_the_same_usage() {
    for (name, stream, expected) in streams() {
        let text = String::from_utf8(stream.to_vec()).unwrap();
        let crlf = text.replace("\r\n", "\n").replace('\n', "\r\n");
        assert_eq!(from_sse(crlf.as_bytes()), expected, "{name} crlf");
        let cr = text.replace("\r\n", "\n").replace('\n', "\r");
        assert_eq!(from_sse(cr.as_bytes()), expected, "{name} cr");
    }
}

#[test]
fn stream_split_at_every_byte_yields_the_same_usage() {
    for (name, stream, expected) in streams() {
        for cut in 0..=stream.len() {
            assert_eq!(feed_split(stream, &[cut]), expected, "{name} cut at {cut}");
        }
    }
}

#[test]
fn stream_in_random_sized_chunks_yields_the_same_usage() {
    let mut rng = Lcg(0x7e57_5eed);
    for (name, stream, expected) in streams() {
        for round in 0..200 {
            let max_chunk = [1, 2, 3, 7, 16, 64, 512][round % 7];
            let mut cuts = Vec::new();
            let mut at = 0usize;
            loop {
                at += 1 + rng.below(max_chunk) as usize;
                if at >= stream.len() {
                    break;
                }
                cuts.push(at);
            }
            assert_eq!(feed_split(stream, &cuts), expected, "{name} round {round}");
        }
    }
}

#[test]
fn byte_by_byte_feeding_yields_the_same_usage() {
    for (name, stream, expected) in streams() {
        let cuts: Vec<usize> = (1..stream.len()).collect();
        assert_eq!(feed_split(stream, &cuts), expected, "{name}");
    }
}

#[test]
fn json_bodies_read_incrementally_match_the_buffered_reading() {
    let mut rng = Lcg(7);
    for body in [
        OPENAI_CHAT,
        OPENAI_COMPLETIONS,
        OPENAI_RESPONSES,
        OPENAI_EMBEDDINGS,
        ANTHROPIC,
    ] {
        let expected = from_json(body);
        assert!(expected.is_some());
        for round in 0..100 {
            let mut reader = JsonUsage::new();
            let mut rest = body;
            while !rest.is_empty() {
                let size = if round == 0 {
                    1
                } else {
                    1 + rng.below(40) as usize
                };
                let (chunk, tail) = rest.split_at(size.min(rest.len()));
                reader.feed(chunk);
                rest = tail;
            }
            let got = reader
                .usage()
                .map(|u| (u, reader.model().map(str::to_owned)));
            assert_eq!(got, expected);
        }
    }
}

#[test]
fn incremental_json_reader_keeps_usage_of_a_body_cut_short() {
    let end = find(ANTHROPIC, b"\n    \"service_tier\"");
    let mut reader = JsonUsage::new();
    reader.feed(&ANTHROPIC[..end]);
    assert_eq!(reader.usage(), None);
    let end = find(ANTHROPIC, b"\n  }\n}");
    let mut reader = JsonUsage::new();
    reader.feed(&ANTHROPIC[..end + 4]);
    let expected = Usage {
        cache_write_tokens: 188,
        ..usage(1709, 393, 1500)
    };
    assert_eq!(reader.usage(), Some(expected));
    assert_eq!(from_json(&ANTHROPIC[..end + 4]), None);
}

#[test]
fn openai_stream_without_the_usage_chunk_has_no_usage() {
    let end = find(OPENAI_CHAT_STREAM, br#""choices":[],"usage""#);
    let mut reader = SseUsage::new();
    reader.feed(&OPENAI_CHAT_STREAM[..end]);
    assert_eq!(reader.usage(), None);
    assert_eq!(reader.model(), Some("gpt-4o-mini-2024-07-18"));
}

#[test]
fn aborted_anthropic_stream_keeps_message_start_usage() {
    let end = find(ANTHROPIC_STREAM, b"event: message_delta");
    assert_eq!(
        from_sse(&ANTHROPIC_STREAM[..end]),
        seen(2073, 1, 2048, "claude-3-5-haiku-20241022")
    );
}

#[test]
fn aborted_stream_settles_with_what_was_seen_at_every_prefix() {
    // Anthropic: nothing, then message_start's counts, then message_delta's.
    let start = seen(2073, 1, 2048, "claude-3-5-haiku-20241022");
    let done = seen(2073, 15, 2048, "claude-3-5-haiku-20241022");
    let delta_end = find(ANTHROPIC_STREAM, br#""output_tokens":15}"#) + 19;
    for len in 0..=ANTHROPIC_STREAM.len() {
        let got = from_sse(&ANTHROPIC_STREAM[..len]);
        if len >= delta_end {
            assert_eq!(got, done, "prefix {len}");
        } else {
            assert!(got.is_none() || got == start, "prefix {len}: {got:?}");
        }
    }
}

#[test]
fn usage_counts_once_its_object_is_complete_even_without_the_event_end() {
    let stream = br#"data: {"choices":[],"usage":{"prompt_tokens":4,"completion_tokens":2}"#;
    assert_eq!(from_sse(stream), Some((usage(4, 2, 0), None)));
    assert_eq!(from_sse(&stream[..stream.len() - 1]), None);
}

#[test]
fn responses_stream_before_completion_has_no_usage_but_a_model() {
    let end = find(OPENAI_RESPONSES_STREAM, b"event: response.completed");
    let mut reader = SseUsage::new();
    reader.feed(&OPENAI_RESPONSES_STREAM[..end]);
    assert_eq!(reader.usage(), None);
    assert_eq!(reader.model(), Some("o4-mini-2025-04-16"));
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
fn data_lines_of_one_event_are_joined_and_comments_skipped() {
    let stream = b": hello\nevent: x\ndata: {\"usage\":\ndata: {\"prompt_tokens\":3,\ndata:\"completion_tokens\":4}}\nid: 9\n\n";
    assert_eq!(from_sse(stream), Some((usage(3, 4, 0), None)));
}

#[test]
fn json_state_does_not_leak_across_events() {
    // An unterminated string and object in one event must not swallow the next one.
    let stream = b"data: {\"a\":\"open\n\ndata: {\"usage\":{\"prompt_tokens\":5}}\n\n";
    assert_eq!(from_sse(stream), Some((usage(5, 0, 0), None)));
}

#[test]
fn fields_other_than_data_are_ignored() {
    let stream =
        b"event: {\"usage\":{\"prompt_tokens\":1}}\nid: {\"usage\":{\"prompt_tokens\":1}}\n\
dataX: {\"usage\":{\"prompt_tokens\":1}}\n: {\"usage\":{\"prompt_tokens\":1}}\n\n";
    assert_eq!(from_sse(stream), None);
}

#[test]
fn done_marker_and_non_json_data_are_harmless() {
    let stream = b"data: [DONE]\n\ndata: hello\n\ndata\n\ndata:\n\n";
    assert_eq!(from_sse(stream), None);
}

#[test]
fn endless_line_is_scanned_in_bounded_memory() {
    let mut reader = SseUsage::new();
    reader.feed(b"data: {\"choices\":[{\"delta\":{\"content\":\"");
    let block = vec![b'a'; 64 * 1024];
    for _ in 0..64 {
        reader.feed(&block);
    }
    assert!(retained(&reader) <= 1024, "{}", retained(&reader));
    reader.feed(b"\"}}],\"usage\":{\"prompt_tokens\":2}}\n\n");
    assert_eq!(reader.usage(), Some(usage(2, 0, 0)));
}

#[test]
fn endless_usage_object_is_dropped_in_bounded_memory() {
    let mut reader = SseUsage::new();
    reader.feed(b"data: {\"usage\":{\"pad\":\"");
    for _ in 0..1024 {
        reader.feed(&[b'x'; 1024]);
    }
    assert!(retained(&reader) <= 2 * MAX_USAGE_BYTES);
    reader.feed(b"\",\"prompt_tokens\":3}}\n\n");
    assert_eq!(reader.usage(), None);
}

#[test]
fn deep_nesting_does_not_overflow_anything() {
    let mut reader = SseUsage::new();
    reader.feed(b"data: ");
    reader.feed(&vec![b'['; 1_000_000]);
    reader.feed(&vec![b'{'; 1_000_000]);
    reader.feed(b"\n\ndata: {\"usage\":{\"prompt_tokens\":1}}\n\n");
    assert_eq!(reader.usage(), Some(usage(1, 0, 0)));
    let deep = [vec![b'['; 100_000], vec![b']'; 100_000]].concat();
    assert_eq!(from_json(&deep), None);
    let usage_deep = [b"{\"usage\":".to_vec(), vec![b'{'; 2000], vec![b'}'; 2001]].concat();
    assert_eq!(from_json(&usage_deep), None);
}

#[test]
fn random_bytes_and_mutated_fixtures_never_panic() {
    let mut rng = Lcg(42);
    let alphabet = b"{}[]\":,\\ \r\nusagemodlr0123456789datevn";
    for _ in 0..2000 {
        let len = rng.below(300) as usize;
        let noise: Vec<u8> = (0..len)
            .map(|_| alphabet[rng.below(alphabet.len() as u64) as usize])
            .collect();
        exercise_everything(&noise);
    }
    for (_, stream, _) in streams() {
        for _ in 0..50 {
            let mut mutated = stream.to_vec();
            for _ in 0..1 + rng.below(8) {
                let at = rng.below(mutated.len() as u64) as usize;
                mutated[at] = rng.next() as u8;
            }
            exercise_everything(&mutated);
        }
    }
    for body in [OPENAI_CHAT, OPENAI_RESPONSES, ANTHROPIC, OPENAI_EMBEDDINGS] {
        for _ in 0..50 {
            let mut mutated = body.to_vec();
            let at = rng.below(mutated.len() as u64) as usize;
            mutated[at] = rng.next() as u8;
            exercise_everything(&mutated);
        }
    }
}

/// What a fuzz target would run on its input.
fn exercise_everything(data: &[u8]) {
    let _ = from_json(data);
    let _ = from_sse(data);
    JsonUsage::new().feed(data);
    let _ = inspect_request(data);
    let _ = with_stream_usage("/v1/chat/completions", data);
}

fn find(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap()
}

// === Requests ===

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

// === Adding stream_options.include_usage ===

const CHAT: &str = "/v1/chat/completions";

fn added(path: &str, body: &str) -> Option<String> {
    with_stream_usage(path, body.as_bytes()).map(|b| String::from_utf8(b).unwrap())
}

#[test]
fn include_usage_is_added_after_the_last_member() {
    let body = r#"{"model":"gpt-4o","messages":[{"role":"user","content":"}"}],"stream":true}"#;
    assert_eq!(
        added(CHAT, body).as_deref(),
        Some(
            r#"{"model":"gpt-4o","messages":[{"role":"user","content":"}"}],"stream":true,"stream_options":{"include_usage":true}}"#
        )
    );
}

#[test]
fn pretty_printed_body_keeps_every_other_byte() {
    let body = "{\n  \"model\": \"gpt-4o\",\n  \"temperature\": 0.30000000000000004,\n  \"stream\": true\n}\n";
    let out = added(CHAT, body).unwrap();
    assert_eq!(
        out,
        "{\n  \"model\": \"gpt-4o\",\n  \"temperature\": 0.30000000000000004,\n  \"stream\": true,\"stream_options\":{\"include_usage\":true}\n}\n"
    );
    assert!(inspect_request(out.as_bytes()).include_usage);
}

#[test]
fn existing_stream_options_are_completed_or_fixed() {
    let cases = [
        (
            r#"{"stream":true,"stream_options":{}}"#,
            r#"{"stream":true,"stream_options":{"include_usage":true}}"#,
        ),
        (
            r#"{"stream":true,"stream_options":{"include_obfuscation":false}}"#,
            r#"{"stream":true,"stream_options":{"include_obfuscation":false,"include_usage":true}}"#,
        ),
        (
            r#"{"stream":true,"stream_options":{"include_usage":false},"n":1}"#,
            r#"{"stream":true,"stream_options":{"include_usage":true},"n":1}"#,
        ),
        (
            r#"{"stream":true,"stream_options":null}"#,
            r#"{"stream":true,"stream_options":{"include_usage":true}}"#,
        ),
    ];
    for (body, want) in cases {
        assert_eq!(added(CHAT, body).as_deref(), Some(want), "{body}");
    }
    // Parsers disagree about which duplicate wins: such a body is left as it is.
    let duplicate =
        r#"{"stream_options":{"include_usage":false},"stream":true,"stream_options":{}}"#;
    assert_eq!(added(CHAT, duplicate), None);
}

#[test]
fn nothing_changes_when_usage_already_comes_or_no_stream() {
    for body in [
        r#"{"stream":true,"stream_options":{"include_usage":true}}"#,
        r#"{"model":"gpt-4o","messages":[]}"#,
        r#"{"stream":false}"#,
        r#"{"stream":"yes"}"#,
        r#"{"stream":true,"stream_options":"x"}"#,
        r#"{"stream":true"#,
        r#"[{"stream":true}]"#,
        "",
    ] {
        assert_eq!(added(CHAT, body), None, "{body}");
    }
}

#[test]
fn only_openai_completion_paths_get_stream_options() {
    let body = r#"{"model":"m","stream":true}"#;
    for path in [
        "/v1/chat/completions",
        "/v1/completions",
        "/tenants/acme/v1/chat/completions?x=1",
        "/openai/deployments/gpt4o/chat/completions?api-version=2024-10-21",
        "/v1/chat/completions/",
    ] {
        assert!(added(path, body).is_some(), "{path}");
    }
    for path in [
        "/v1/messages",
        "/v1/responses",
        "/v1/embeddings",
        "/",
        "",
        "/v1/completions-x",
    ] {
        assert_eq!(added(path, body), None, "{path}");
    }
    let bedrock = r#"{"anthropic_version":"bedrock-2023-05-31","stream":true}"#;
    assert_eq!(added(CHAT, bedrock), None);
}

// === Text a stream delivered ===

fn delivered(stream: &[u8]) -> Delivered {
    let mut reader = SseUsage::new();
    reader.feed(stream);
    reader.delivered()
}

#[test]
fn delivered_text_is_counted_per_provider_delta_shape() {
    let cases: [(&str, &[u8], Delivered); 6] = [
        (
            "openai chat content",
            b"data: {\"id\":\"c\",\"model\":\"m\",\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"Hello\"}}]}\n\n",
            Delivered { events: 1, bytes: 5 },
        ),
        (
            "openai tool-call arguments",
            b"data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"function\":{\"arguments\":\"{\\\"a\\\"\"}}]}}]}\n\n",
            // `{\"a\"` as JSON string bytes: escapes count as written.
            Delivered { events: 1, bytes: 6 },
        ),
        (
            "openai responses output_text delta",
            b"data: {\"type\":\"response.output_text.delta\",\"item_id\":\"msg_1\",\"delta\":\"Hi there\"}\n\n",
            Delivered { events: 1, bytes: 8 },
        ),
        (
            "anthropic text and thinking deltas",
            b"data: {\"type\":\"content_block_delta\",\"delta\":{\"type\":\"text_delta\",\"text\":\"abc\"}}\n\n\
data: {\"type\":\"content_block_delta\",\"delta\":{\"type\":\"thinking_delta\",\"thinking\":\"hmm\"}}\n\n",
            Delivered { events: 2, bytes: 6 },
        ),
        (
            "anthropic tool input",
            b"data: {\"type\":\"content_block_delta\",\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{}\"}}\n\n",
            Delivered { events: 1, bytes: 2 },
        ),
        (
            "role, ids, types, finish reasons and empty content are no text",
            b"data: {\"id\":\"content\",\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":\"stop\"}]}\n\n\
data: {\"type\":\"message_start\",\"message\":{\"content\":[],\"usage\":{\"input_tokens\":3}}}\n\n",
            Delivered { events: 0, bytes: 0 },
        ),
    ];
    for (name, stream, expected) in cases {
        assert_eq!(delivered(stream), expected, "{name}");
    }
}

#[test]
fn delivered_text_is_the_same_however_the_stream_is_cut() {
    let stream = OPENAI_CHAT_STREAM;
    let whole = delivered(stream);
    assert!(whole.events > 0 && whole.bytes > 0);
    for cut in 0..stream.len() {
        let mut reader = SseUsage::new();
        reader.feed(&stream[..cut]);
        reader.feed(&stream[cut..]);
        assert_eq!(reader.delivered(), whole, "cut at {cut}");
    }
}

#[test]
fn a_cut_event_counts_what_it_delivered() {
    let mut reader = SseUsage::new();
    reader.feed(b"data: {\"choices\":[{\"delta\":{\"content\":\"abcdefgh");
    assert_eq!(
        reader.delivered(),
        Delivered {
            events: 1,
            bytes: 8
        }
    );
}

#[test]
fn delivered_tokens_are_at_least_one_per_event_and_one_per_four_bytes() {
    assert_eq!(
        Delivered {
            events: 10,
            bytes: 12
        }
        .tokens(),
        10
    );
    assert_eq!(
        Delivered {
            events: 2,
            bytes: 401
        }
        .tokens(),
        101
    );
    assert_eq!(Delivered::default().tokens(), 0);
}

#[test]
fn json_answers_do_not_count_delivered_text() {
    let mut reader = JsonUsage::new();
    reader.feed(OPENAI_CHAT);
    assert!(reader.usage().is_some());
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

// === Ids of the objects an answer creates ===

#[test]
fn answers_name_the_ids_of_what_they_create() {
    let mut json = JsonUsage::new();
    json.feed(br#"{"id":"resp_1","object":"response","output":[{"id":"msg_9","type":"message"}],"usage":{"input_tokens":1}}"#);
    assert_eq!(json.ids().id.as_deref(), Some("resp_1"));
    let mut run = JsonUsage::new();
    run.feed(br#"{"id":"run_1","object":"thread.run","thread_id":"thread_7"}"#);
    assert_eq!(
        (run.ids().id.as_deref(), run.ids().thread_id.as_deref()),
        (Some("run_1"), Some("thread_7"))
    );
    let mut upload = JsonUsage::new();
    upload.feed(
        br#"{"id":"upload_1","status":"completed","file":{"id":"file-xyz","object":"file"}}"#,
    );
    assert_eq!(upload.ids().file_id.as_deref(), Some("file-xyz"));
}

#[test]
fn a_responses_stream_names_its_response_id_in_its_first_event() {
    let mut sse = SseUsage::new();
    sse.feed(OPENAI_RESPONSES_STREAM);
    let id = sse.ids().envelope_id.clone().unwrap();
    assert!(id.starts_with("resp_"), "{id}");
    assert_eq!(sse.ids().id, None);
}

#[test]
fn ids_deeper_than_the_top_or_an_envelope_are_not_taken() {
    let mut json = JsonUsage::new();
    json.feed(
        br#"{"choices":[{"message":{"tool_calls":[{"id":"call_1"}]}}],"data":[{"id":"file-a"}]}"#,
    );
    assert_eq!(json.ids(), &AnswerIds::default());
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
