use super::*;
use crate::policy::usage::tests::{
    find, seen, usage, Lcg, ANTHROPIC, BEDROCK_CONVERSE, GEMINI, GEMINI_STREAM_ARRAY, OPENAI_CHAT,
    OPENAI_CHAT_STREAM, OPENAI_COMPLETIONS, OPENAI_EMBEDDINGS, OPENAI_RESPONSES,
};
use crate::policy::usage::Delivered;
use crate::policy::usage::{from_json, JsonUsage};
#[cfg(target_family = "wasm")]
use wasm_bindgen_test::wasm_bindgen_test as test;

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
fn json_bodies_read_incrementally_match_the_buffered_reading() {
    let mut rng = Lcg(7);
    for body in [
        OPENAI_CHAT,
        OPENAI_COMPLETIONS,
        OPENAI_RESPONSES,
        OPENAI_EMBEDDINGS,
        ANTHROPIC,
        GEMINI,
        BEDROCK_CONVERSE,
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
fn json_answers_do_not_count_delivered_text() {
    let mut reader = JsonUsage::new();
    reader.feed(OPENAI_CHAT);
    assert!(reader.usage().is_some());
    assert_eq!(reader.delivered(), Delivered::default());
}

/// Feeds `body` to a fresh array reader in chunks of `size` bytes.
fn read_array(body: &[u8], size: usize) -> JsonUsage {
    let mut reader = JsonUsage::answers_in_array();
    for chunk in body.chunks(size) {
        reader.feed(chunk);
    }
    reader
}

#[test]
fn gemini_streamed_array_reads_each_answer_and_counts_its_text() {
    for size in [1, 2, 7, 64, GEMINI_STREAM_ARRAY.len()] {
        let reader = read_array(GEMINI_STREAM_ARRAY, size);
        let got = reader
            .usage()
            .map(|u| (u, reader.model().map(str::to_owned)));
        assert_eq!(
            got,
            seen(8, 6, 0, "gemini-2.0-flash-001"),
            "chunks of {size}"
        );
        // "The", " quick brown fox", " jumps.": three answers, 26 bytes.
        assert_eq!(
            reader.delivered(),
            Delivered {
                events: 3,
                bytes: 26
            }
        );
    }
    // The array's elements are not top-level for the plain reader.
    assert_eq!(from_json(GEMINI_STREAM_ARRAY), None);
}

#[test]
fn gemini_array_cut_short_keeps_what_it_delivered() {
    let second = find(GEMINI_STREAM_ARRAY, b"quick");
    let reader = read_array(&GEMINI_STREAM_ARRAY[..second + 5], 5);
    // The prompt was reported by the first answer; the second is cut inside its text.
    assert_eq!(reader.usage(), Some(usage(8, 0, 0)));
    assert_eq!(
        reader.delivered(),
        Delivered {
            events: 2,
            bytes: 3 + 6
        }
    );
}

#[test]
fn array_reader_reads_a_single_answer_or_an_error_as_the_plain_reader() {
    for body in [GEMINI, OPENAI_CHAT, br#"{"error":{"code":429}}"#.as_slice()] {
        let reader = read_array(body, 3);
        let got = reader
            .usage()
            .map(|u| (u, reader.model().map(str::to_owned)));
        assert_eq!(got, from_json(body));
    }
    // Nested arrays are not answers.
    let nested = br#"[[{"usageMetadata":{"promptTokenCount":5}}]]"#;
    assert_eq!(read_array(nested, 4).usage(), None);
}

#[test]
fn only_the_first_byte_makes_a_body_an_array_of_answers() {
    // Found by the answer_array fuzz target: an object, then an array at the top.
    for body in [
        &br#"{"a": 1} [{"usageMetadata": {"promptTokenCount": 8}}]"#[..],
        br#"7 [{"usageMetadata": {"promptTokenCount": 8}}]"#,
    ] {
        let mut array = JsonUsage::answers_in_array();
        array.feed(body);
        let mut plain = JsonUsage::new();
        plain.feed(body);
        assert_eq!(array.usage(), plain.usage());
        assert_eq!(array.usage(), None);
    }
    let mut array = JsonUsage::answers_in_array();
    array.feed(br#" [{"usageMetadata": {"promptTokenCount": 8}}]"#);
    assert_eq!(array.usage().map(|u| u.input_tokens), Some(8));
}
