use crate::policy::usage::{inspect_request, with_stream_usage};
#[cfg(target_family = "wasm")]
use wasm_bindgen_test::wasm_bindgen_test as test;

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

#[test]
fn a_body_that_is_not_utf8_is_never_edited() {
    // Found by the `usage` fuzz target: invalid UTF-8 inside a string serde skips.
    let body = b"{\"model\": \"gpt\x9f\", \"stream\": true}";
    assert!(serde_json::from_slice::<serde_json::Value>(body).is_err());
    assert_eq!(with_stream_usage("/v1/chat/completions", body), None);
}
