use super::*;
use crate::policy::usage::scanner::MAX_USAGE_BYTES;
use crate::policy::usage::tests::{
    find, seen, streams, usage, Found, Lcg, ANTHROPIC, ANTHROPIC_STREAM, OPENAI_CHAT,
    OPENAI_CHAT_STREAM, OPENAI_EMBEDDINGS, OPENAI_RESPONSES, OPENAI_RESPONSES_STREAM,
};
use crate::policy::usage::{
    from_json, from_sse, inspect_request, with_stream_usage, JsonUsage, SseUsage,
};
#[cfg(target_family = "wasm")]
use wasm_bindgen_test::wasm_bindgen_test as test;

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

/// Bytes the reader keeps between chunks, whatever it was fed.
fn retained(reader: &SseUsage) -> usize {
    let capture = reader.json.usage.as_ref().map_or(0, |c| c.bytes.capacity());
    capture
        + reader.json.kept.capacity()
        + reader.seen.model_raw.capacity()
        + reader.seen.model.as_ref().map_or(0, String::capacity)
}

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
