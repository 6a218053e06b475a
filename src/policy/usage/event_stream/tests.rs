use super::*;
use crate::policy::usage::tests::{
    seen, usage, with_parts, Lcg, BEDROCK_CONVERSE_STREAM, BEDROCK_INVOKE_STREAM,
};
#[cfg(target_family = "wasm")]
use wasm_bindgen_test::wasm_bindgen_test as test;

/// One message with string headers and `payload`, CRCs computed (as the harness does it in
/// tests/harness/eventstream.py; the fixtures come from there, checked by botocore).
fn message(headers: &[(&str, &str)], payload: &[u8]) -> Vec<u8> {
    let mut encoded = Vec::new();
    for (name, value) in headers {
        encoded.push(name.len() as u8);
        encoded.extend_from_slice(name.as_bytes());
        encoded.push(7);
        encoded.extend_from_slice(&(value.len() as u16).to_be_bytes());
        encoded.extend_from_slice(value.as_bytes());
    }
    let total = (12 + encoded.len() + payload.len() + 4) as u32;
    let mut out = Vec::new();
    out.extend_from_slice(&total.to_be_bytes());
    out.extend_from_slice(&(encoded.len() as u32).to_be_bytes());
    let prelude_crc = crc32fast::hash(&out);
    out.extend_from_slice(&prelude_crc.to_be_bytes());
    out.extend_from_slice(&encoded);
    out.extend_from_slice(payload);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

fn event(event_type: &str, payload: &str) -> Vec<u8> {
    message(
        &[
            (":event-type", event_type),
            (":content-type", "application/json"),
            (":message-type", "event"),
        ],
        payload.as_bytes(),
    )
}

const METADATA: &str =
    r#"{"metrics":{"latencyMs":1},"usage":{"inputTokens":7,"outputTokens":3,"totalTokens":10}}"#;

fn read(stream: &[u8], size: usize) -> EventStreamUsage {
    let mut reader = EventStreamUsage::new();
    for chunk in stream.chunks(size) {
        reader.feed(chunk);
    }
    reader
}

fn found(reader: &EventStreamUsage) -> Option<(Usage, Option<String>)> {
    reader
        .usage()
        .map(|u| (u, reader.model().map(str::to_owned)))
}

#[test]
fn the_empty_message_of_the_aws_test_vectors_is_read() {
    // aws-c-event-stream's `empty_message`: lengths 16 and 0, then both CRCs.
    let empty = [
        0, 0, 0, 0x10, 0, 0, 0, 0, 0x05, 0xc2, 0x48, 0xeb, 0x7d, 0x98, 0xc8, 0xff,
    ];
    assert_eq!(message(&[], b""), empty);
    let reader = read(&empty, 16);
    assert!(!reader.broken());
    assert_eq!(reader.usage(), None);
}

#[test]
fn converse_stream_yields_the_metadata_usage_and_the_text_it_delivered() {
    for size in [1, 3, 17, 100, BEDROCK_CONVERSE_STREAM.len()] {
        let reader = read(BEDROCK_CONVERSE_STREAM, size);
        assert!(!reader.broken());
        assert_eq!(
            found(&reader),
            with_parts(Some((usage(12 + 1500, 9, 0), None)), 1500, 0),
            "chunks of {size}"
        );
        // "Hello", " from", " Bedrock", ".": four events, 19 bytes.
        assert_eq!(
            reader.delivered(),
            Delivered {
                events: 4,
                bytes: 19
            }
        );
    }
    assert_eq!(
        from_event_stream(BEDROCK_CONVERSE_STREAM),
        with_parts(Some((usage(1512, 9, 0), None)), 1500, 0)
    );
}

#[test]
fn invoke_stream_reads_the_anthropic_events_inside_the_chunks() {
    let mut rng = Lcg(11);
    for round in 0..50 {
        let mut reader = EventStreamUsage::new();
        let mut rest = BEDROCK_INVOKE_STREAM;
        while !rest.is_empty() {
            let size = if round == 0 {
                1
            } else {
                1 + rng.below(90) as usize
            };
            let (chunk, tail) = rest.split_at(size.min(rest.len()));
            reader.feed(chunk);
            rest = tail;
        }
        // message_start: 25 input + 100 cache reads, 1 output; message_delta: 15 output.
        assert_eq!(
            found(&reader),
            seen(125, 15, 100, "claude-3-5-haiku-20241022")
        );
        assert_eq!(reader.delivered().events, 4);
    }
}

#[test]
fn a_cut_stream_keeps_the_verified_messages_only() {
    let stream = BEDROCK_CONVERSE_STREAM;
    let metadata_at = stream.len() - event("metadata", METADATA).len();
    // Every cut before the last message's CRC is complete: no usage, text delivered.
    for cut in [stream.len() - 1, stream.len() - 4, metadata_at + 20] {
        let reader = read(&stream[..cut], 7);
        assert!(!reader.broken());
        assert_eq!(reader.usage(), None, "cut at {cut}");
        assert_eq!(reader.delivered().bytes, 19);
    }
}

#[test]
fn a_wrong_crc_stops_the_reading_for_good() {
    let good = [event("contentBlockDelta", r#"{"delta":{"text":"hi"}}"#)].concat();
    let metadata = event("metadata", METADATA);
    // A flipped payload byte: the message CRC fails.
    let mut bad_payload = metadata.clone();
    let at = bad_payload.len() - 10;
    bad_payload[at] ^= 1;
    // A flipped length: the prelude CRC fails.
    let mut bad_prelude = metadata.clone();
    bad_prelude[3] ^= 1;
    // A flipped message CRC.
    let mut bad_crc = metadata.clone();
    let last = bad_crc.len() - 1;
    bad_crc[last] ^= 0x80;
    for bad in [bad_payload, bad_prelude, bad_crc] {
        let stream = [good.clone(), bad, metadata.clone()].concat();
        let reader = read(&stream, 5);
        assert!(reader.broken());
        assert_eq!(reader.usage(), None);
        assert_eq!(reader.delivered().bytes, 2);
    }
}

#[test]
fn lengths_out_of_bounds_break_the_stream() {
    let with_lengths = |total: u32, headers: u32| {
        let mut prelude = [total.to_be_bytes(), headers.to_be_bytes()].concat();
        let crc = crc32fast::hash(&prelude);
        prelude.extend_from_slice(&crc.to_be_bytes());
        prelude
    };
    for (total, headers) in [(15, 0), (0, 0), (16, 1), (40, 30), ((16 << 20) + 1, 0)] {
        let reader = read(&with_lengths(total, headers), 12);
        assert!(reader.broken(), "{total} {headers}");
    }
    let reader = read(&with_lengths(40, 24), 12);
    assert!(!reader.broken());
}

#[test]
fn exceptions_and_unknown_messages_are_not_read() {
    let exception = message(
        &[
            (":exception-type", "throttlingException"),
            (":message-type", "exception"),
        ],
        br#"{"usage":{"inputTokens":99,"outputTokens":99}}"#,
    );
    let no_type = message(&[], br#"{"usage":{"inputTokens":98}}"#);
    let stream = [exception, no_type, event("metadata", METADATA)].concat();
    let reader = read(&stream, 9);
    assert!(!reader.broken());
    assert_eq!(reader.usage(), Some(usage(7, 3, 0)));
}

#[test]
fn other_header_types_are_skipped_and_malformed_headers_ignore_the_message() {
    // bool true, byte, short, int, long, timestamp, uuid and byte-array headers first.
    let mut headers = Vec::new();
    for (kind, value) in [
        (0u8, vec![]),
        (2, vec![1]),
        (3, vec![0, 2]),
        (4, vec![0; 4]),
        (5, vec![0; 8]),
        (8, vec![0; 8]),
        (9, vec![0; 16]),
        (6, vec![0, 3, 1, 2, 3]),
    ] {
        headers.extend_from_slice(&[1, b'x', kind]);
        headers.extend_from_slice(&value);
    }
    let typed = [
        headers.clone(),
        b"\x0d:message-type\x07\x00\x05event".to_vec(),
    ]
    .concat();
    assert_eq!(event_kind(&typed), Some(EventKind::Other));
    assert_eq!(
        event_kind(&[headers.as_slice(), b"\x01x\x0a"].concat()),
        None
    );
    assert_eq!(event_kind(b"\x0d:message-type\x07\x00\x09event"), None);
    assert_eq!(event_kind(b"\x05:mess"), None);
}

#[test]
fn a_payload_over_the_bound_is_checked_and_counted_not_read() {
    let text = "x".repeat(MAX_PAYLOAD_BYTES);
    let big = event(
        "contentBlockDelta",
        &format!(r#"{{"delta":{{"text":"{text}"}},"usage":{{"inputTokens":5}}}}"#),
    );
    let stream = [big, event("metadata", METADATA)].concat();
    let reader = read(&stream, 4096);
    assert!(!reader.broken());
    assert_eq!(reader.usage(), Some(usage(7, 3, 0)));
    let delivered = reader.delivered();
    assert_eq!(delivered.events, 1);
    assert!(delivered.bytes >= (MAX_PAYLOAD_BYTES as u64) / 4 * 3);
}

#[test]
fn headers_over_the_bound_pass_unread() {
    let long = "v".repeat(MAX_HEADER_BYTES);
    let message = message(
        &[(":message-type", "event"), ("x-long", &long)],
        br#"{"usage":{"inputTokens":1}}"#,
    );
    let stream = [message, event("metadata", METADATA)].concat();
    let reader = read(&stream, 100);
    assert!(!reader.broken());
    assert_eq!(reader.usage(), Some(usage(7, 3, 0)));
}

#[test]
fn a_chunk_without_valid_base64_is_passed_over() {
    let stream = [
        event("chunk", r#"{"bytes":"not base64!"}"#),
        event("chunk", r#"{"bytes":12}"#),
        event("metadata", METADATA),
    ]
    .concat();
    let reader = read(&stream, 13);
    assert!(!reader.broken());
    assert_eq!(reader.usage(), Some(usage(7, 3, 0)));
}

#[test]
fn garbage_never_panics_and_memory_stays_bounded() {
    let mut rng = Lcg(5);
    let mut noise = vec![0u8; 1 << 16];
    for b in noise.iter_mut() {
        *b = rng.below(256) as u8;
    }
    let mut reader = EventStreamUsage::new();
    reader.feed(&noise);
    assert!(reader.headers.capacity() <= MAX_HEADER_BYTES);
    assert!(reader.payload.capacity() <= MAX_PAYLOAD_BYTES);
    // A stream of valid messages with noise spliced in at each position breaks at the noise.
    let stream = BEDROCK_CONVERSE_STREAM;
    for at in (0..stream.len()).step_by(37) {
        let spliced = [&stream[..at], b"\x00\x01", &stream[at..]].concat();
        let reader = read(&spliced, 11);
        assert!(reader.broken() || reader.usage().is_some(), "noise at {at}");
    }
}
