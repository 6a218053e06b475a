use super::*;
use crate::policy::usage::tests::{seen, usage, OPENAI_RESPONSES_STREAM};
use crate::policy::usage::{from_json, JsonUsage, SseUsage};
#[cfg(target_family = "wasm")]
use wasm_bindgen_test::wasm_bindgen_test as test;

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
