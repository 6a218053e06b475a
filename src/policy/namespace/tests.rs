use super::*;
#[cfg(target_family = "wasm")]
use wasm_bindgen_test::wasm_bindgen_test as test;

fn norm(raw: &str) -> String {
    match normalize(raw.as_bytes()) {
        Ok(p) => p.target(),
        Err(e) => panic!("{raw:?} refused: {}", e.detail),
    }
}

fn refused(raw: &[u8]) -> PathRefusal {
    match normalize(raw) {
        Ok(p) => panic!("{raw:?} accepted as {p:?}"),
        Err(e) => e,
    }
}

fn routing(prefix: Option<&str>) -> Routing {
    Routing {
        path_prefix: prefix.map(String::from),
        authority: None,
        namespace_header: None,
    }
}

fn placed(prefix: &str, raw: &str) -> Result<String, PathRefusal> {
    let path = normalize(raw.as_bytes())?;
    let placement = place(&routing(Some(prefix)), "acme", "acme-ns", &path)?;
    Ok(placement.path.unwrap_or_default())
}

#[test]
fn plain_paths_are_unchanged() {
    for p in ["/", "/v1/chat/completions", "/a/b/", "/a-b_c.d~e/f"] {
        assert_eq!(norm(p), p);
    }
}

#[test]
fn query_is_split_at_the_first_question_mark_and_kept_verbatim() {
    let p = normalize(b"/a/../b?x=%2F..&y=/../?z").unwrap();
    assert_eq!(p.path, "/b");
    assert_eq!(p.query.as_deref(), Some("x=%2F..&y=/../?z"));
    assert_eq!(normalize(b"/a?").unwrap().query.as_deref(), Some(""));
    assert_eq!(normalize(b"/a").unwrap().query, None);
}

#[test]
fn dot_segments_are_removed() {
    let cases = [
        ("/a/b/../c", "/a/c"),
        ("/a/./b", "/a/b"),
        ("/a/b/..", "/a/"),
        ("/a/b/.", "/a/b/"),
        ("/a/b/../../../../c", "/c"),
        ("/..", "/"),
        ("/../..", "/"),
        ("/.", "/"),
        ("/a/../b/./c/../d/", "/b/d/"),
        ("/tenants/acme/../globex/x", "/tenants/globex/x"),
        ("/...", "/..."),
        ("/a..b/..c/c..", "/a..b/..c/c.."),
    ];
    for (raw, want) in cases {
        assert_eq!(norm(raw), want, "{raw}");
    }
}

#[test]
fn repeated_slashes_are_merged_and_a_trailing_slash_is_kept() {
    assert_eq!(norm("//a///b//"), "/a/b/");
    assert_eq!(norm("///"), "/");
    assert_eq!(norm("/a//../b"), "/b");
}

#[test]
fn encoded_dots_are_decoded_before_dot_segments_are_removed() {
    assert_eq!(norm("/a/%2e%2e/b"), "/b");
    assert_eq!(norm("/a/%2E%2E/b"), "/b");
    assert_eq!(norm("/a/.%2e/b"), "/b");
    assert_eq!(norm("/a/%2e/b"), "/a/b");
    assert_eq!(norm("/tenants/acme/%2e%2e/%2e%2e/x"), "/x");
}

#[test]
fn unreserved_escapes_are_decoded_others_are_kept_in_upper_case() {
    assert_eq!(norm("/%41%62%30%2D%5F%7E"), "/Ab0-_~");
    assert_eq!(norm("/a%20b%3fc%3Bd%c3%a9"), "/a%20b%3Fc%3Bd%C3%A9");
    assert_eq!(norm("/a%2Bb%40"), "/a%2Bb%40");
}

#[test]
fn characters_not_allowed_in_paths_are_escaped() {
    assert_eq!(norm("/a b"), "/a%20b");
    assert_eq!(norm("/é"), "/%C3%A9");
    assert_eq!(norm("/{x}|<y>\"`^[]"), "/%7Bx%7D%7C%3Cy%3E%22%60%5E%5B%5D");
    assert_eq!(norm("/a:b@c!$&'()*+,;="), "/a:b@c!$&'()*+,;=");
}

#[test]
fn encoded_separators_and_percent_are_refused() {
    for raw in [
        "/a%2fb",
        "/a%2Fb",
        "/a%5cb",
        "/a%5Cb",
        "/a%00",
        "/a%25",
        "/a%252e%252e/b",
    ] {
        assert_eq!(refused(raw.as_bytes()).reason, Reason::InvalidPath, "{raw}");
    }
}

#[test]
fn backslashes_and_control_bytes_are_refused() {
    for raw in [
        &b"/a\\b"[..],
        b"/a\\..\\..\\b",
        b"/a\nb",
        b"/a\rb",
        b"/a\tb",
        b"/a\0b",
        b"/a\x7fb",
        b"/a?x=\n",
        b"/a%0a",
        b"/a%7F",
    ] {
        assert_eq!(refused(raw).reason, Reason::InvalidPath, "{raw:?}");
    }
}

#[test]
fn malformed_escapes_are_refused() {
    for raw in ["/a%", "/a%2", "/a%zz", "/a%2g", "/%%41"] {
        assert_eq!(refused(raw.as_bytes()).reason, Reason::InvalidPath, "{raw}");
    }
}

#[test]
fn non_utf8_asterisk_absolute_form_and_fragments_are_refused() {
    for raw in [
        &b"/a\xff"[..],
        b"*",
        b"",
        b"http://evil/x",
        b"a/b",
        b"/a#frag",
        b"/a?b#c",
    ] {
        assert_eq!(refused(raw).reason, Reason::InvalidPath, "{raw:?}");
    }
}

#[test]
fn dot_segments_with_parameters_are_refused() {
    for raw in [
        "/a/..;/b",
        "/a/.;x/b",
        "/a/%2e%2e;/b",
        "/a/..%3b/b",
        "/a/..%3B",
    ] {
        assert_eq!(refused(raw.as_bytes()).reason, Reason::InvalidPath, "{raw}");
    }
    assert_eq!(norm("/a/b;v=1/..."), "/a/b;v=1/...");
    assert_eq!(norm("/a/x..;/b"), "/a/x..;/b");
}

#[test]
fn refusal_details_are_printable_and_bounded() {
    let r = PathRefusal::new(Reason::InvalidPath, "bad\n\u{1b}[31m é".repeat(100));
    assert!(r.detail.chars().all(|c| c == ' ' || c.is_ascii_graphic()));
    assert!(r.detail.len() <= MAX_DETAIL_CHARS + 3);
    assert_eq!(quoted("a\"b\n"), "\"a\"b?\"");
}

/// Pieces that exercise every rule, combined into many paths.
const PIECES: [&str; 24] = [
    "/", "//", "a", "B", ".", "..", "%2e", "%2E", "%2e%2e", "%41", "%7e", "~", "%3b", ";", "é",
    " ", "{", "%c3%a9", "?", "?x=/../", "%zz", "%2f", "\\", "..;",
];

fn every_combination(len: usize) -> Vec<String> {
    let mut paths = vec![String::new()];
    for _ in 0..len {
        paths = paths
            .iter()
            .flat_map(|p| PIECES.iter().map(move |piece| format!("{p}{piece}")))
            .collect();
    }
    paths.into_iter().map(|p| format!("/{p}")).collect()
}

#[test]
fn normalisation_is_idempotent() {
    let mut accepted = 0;
    for raw in every_combination(3) {
        if let Ok(once) = normalize(raw.as_bytes()) {
            accepted += 1;
            let twice = normalize(once.target().as_bytes());
            assert_eq!(twice.as_ref(), Ok(&once), "{raw:?}");
        }
    }
    assert!(accepted > 5000, "only {accepted} accepted");
}

#[test]
fn paths_taken_as_already_normal_are_what_the_general_pass_returns() {
    let mut fast = 0;
    let samples = [
        "/",
        "/v1/models",
        "/v1/chat/completions/",
        "/.well-known/x",
        "/a:b@c!$&'()*+,=-_~",
    ];
    for raw in every_combination(3)
        .into_iter()
        .chain(samples.iter().map(|s| s.to_string()))
    {
        let path = raw.split('?').next().unwrap_or_default();
        if is_normal(path) {
            fast += 1;
            assert_eq!(normal_form(path).as_deref(), Ok(path), "{raw:?}");
        }
    }
    assert!(fast > 100, "only {fast} paths took the fast path");
}

#[test]
fn normalised_paths_have_no_dot_or_empty_segments() {
    for raw in every_combination(3) {
        let Ok(p) = normalize(raw.as_bytes()) else {
            continue;
        };
        assert!(p.path.starts_with('/'), "{raw:?}");
        let inner = p.path.trim_end_matches('/');
        for segment in inner.split('/').skip(1) {
            assert!(!matches!(segment, "" | "." | ".."), "{raw:?} -> {p:?}");
        }
        assert!(!p.path.contains('\\') && !p.path.contains('?'), "{raw:?}");
        assert!(p.path.is_ascii(), "{raw:?}");
    }
}

#[test]
fn no_path_escapes_the_tenant_prefix() {
    let prefix = "/tenants/{namespace}";
    for raw in every_combination(3)
        .into_iter()
        .chain(
            every_combination(2)
                .into_iter()
                .map(|p| format!("/tenants{p}")),
        )
        .chain(
            every_combination(2)
                .into_iter()
                .map(|p| format!("/tenants/acme-ns{p}")),
        )
    {
        if let Ok(target) = placed(prefix, &raw) {
            let path = target.split('?').next().unwrap_or_default();
            assert!(
                path == "/tenants/acme-ns" || path.starts_with("/tenants/acme-ns/"),
                "{raw:?} -> {target:?}"
            );
        }
    }
}

#[test]
fn path_prefix_is_prepended_to_the_normalised_path_with_its_query() {
    assert_eq!(
        placed("/tenants/{namespace}", "/v1/chat/completions?stream=true").unwrap(),
        "/tenants/acme-ns/v1/chat/completions?stream=true"
    );
    assert_eq!(
        placed("/tenants/{namespace}", "/").unwrap(),
        "/tenants/acme-ns/"
    );
    assert_eq!(
        placed("/t/{tenant}/ns-{namespace}", "/v1//models/./x/../y").unwrap(),
        "/t/acme/ns-acme-ns/v1/models/y"
    );
}

#[test]
fn the_tenants_own_namespace_is_not_prefixed_twice() {
    for (prefix, raw) in [
        ("/tenants/{namespace}", "/tenants/acme-ns/v1/models?x=1"),
        ("/tenants/{namespace}", "/tenants/acme-ns"),
        (
            "/tenants/{namespace}",
            "/x/../tenants/acme-ns/v1/models?x=1",
        ),
        ("/t/{tenant}/ns-{namespace}", "/t/acme/ns-acme-ns/v1"),
    ] {
        let want = normalize(raw.as_bytes()).unwrap().target();
        assert_eq!(placed(prefix, raw).unwrap(), want, "{raw}");
    }
}

#[test]
fn another_tenants_namespace_is_refused_as_cross_tenant() {
    for (prefix, raw) in [
        ("/tenants/{namespace}", "/tenants/globex/v1/models"),
        ("/tenants/{namespace}", "/tenants/globex"),
        ("/tenants/{namespace}", "/tenants/ACME-NS/v1"),
        ("/tenants/{namespace}", "/tenants/acme-ns%20/v1"),
        ("/t/{tenant}/ns-{namespace}", "/t/acme/ns-globex/v1"),
        ("/t/{tenant}/ns-{namespace}", "/t/globex/ns-acme-ns/v1"),
    ] {
        let refusal = placed(prefix, raw).unwrap_err();
        assert_eq!(refusal.reason, Reason::CrossTenantPath, "{raw}");
    }
    let refusal = placed("/tenants/{namespace}", "/tenants/globex/x").unwrap_err();
    assert!(
        refusal.detail.contains("/tenants/globex"),
        "{}",
        refusal.detail
    );
}

#[test]
fn encoded_dot_segments_cannot_leave_the_namespace() {
    for raw in [
        "/tenants/acme-ns/%2e%2e/globex/v1",
        "/tenants/acme-ns/..%2F..%2Fglobex",
        "/tenants/acme-ns/.%2E/globex",
        "/v1/../../tenants/globex/x",
        "/tenants/acme-ns/..;/globex/x",
    ] {
        let result = placed("/tenants/{namespace}", raw);
        let reason = result.as_ref().map_err(|e| e.reason);
        assert!(
            matches!(
                reason,
                Err(Reason::CrossTenantPath) | Err(Reason::InvalidPath)
            ),
            "{raw} -> {result:?}"
        );
    }
}

#[test]
fn paths_that_only_resemble_the_template_are_prefixed() {
    for (raw, want) in [
        ("/tenants", "/tenants/acme-ns/tenants"),
        ("/tenants/", "/tenants/acme-ns/tenants/"),
        ("/tenant/globex/x", "/tenants/acme-ns/tenant/globex/x"),
    ] {
        assert_eq!(placed("/tenants/{namespace}", raw).unwrap(), want);
    }
    assert_eq!(
        placed("/t/{tenant}/ns-{namespace}", "/t/globex/other/x").unwrap(),
        "/t/acme/ns-acme-ns/t/globex/other/x"
    );
    assert_eq!(
        placed("/t/{tenant}/ns-{namespace}", "/t/globex/ns-/x").unwrap(),
        "/t/acme/ns-acme-ns/t/globex/ns-/x"
    );
}

#[test]
fn without_a_path_prefix_the_normalised_target_is_forwarded() {
    let path = normalize(b"/a//b/../c?q=1").unwrap();
    let placement = place(&routing(None), "acme", "acme-ns", &path).unwrap();
    assert_eq!(placement.path.as_deref(), Some("/a/c?q=1"));
    assert_eq!(placement.authority, None);
    assert_eq!(placement.namespace_header, None);
}

#[test]
fn authority_and_namespace_header_are_set_for_the_tenant() {
    let routing = Routing {
        path_prefix: None,
        authority: Some("{namespace}.{tenant}.models.internal".into()),
        namespace_header: Some("x-tenant-namespace".into()),
    };
    let path = normalize(b"/v1").unwrap();
    let placement = place(&routing, "acme", "acme-ns", &path).unwrap();
    assert_eq!(
        placement.authority.as_deref(),
        Some("acme-ns.acme.models.internal")
    );
    assert_eq!(
        placement.namespace_header,
        Some(("x-tenant-namespace".into(), "acme-ns".into()))
    );
}

#[test]
fn templates_expand_in_one_pass() {
    assert_eq!(expand("/{tenant}/{namespace}/x", "a", "b"), "/a/b/x");
    assert_eq!(
        expand("{namespace}{tenant}", "{namespace}", "n"),
        "n{namespace}"
    );
    assert_eq!(expand("no placeholders", "a", "b"), "no placeholders");
}

#[test]
fn template_shape_needs_every_placeholder_to_hold_a_character() {
    assert!(fits("{namespace}", "x"));
    assert!(!fits("{namespace}", ""));
    assert!(fits("ns-{namespace}", "ns-x"));
    assert!(!fits("ns-{namespace}", "ns-"));
    assert!(!fits("ns-{namespace}", "xns-y"));
    assert!(fits("{tenant}-{namespace}", "a-b-c"));
    assert!(!fits("{tenant}-{namespace}", "-b"));
    assert!(!fits("{tenant}-{namespace}", "a-"));
    assert!(fits("{tenant}{namespace}", "ab"));
    assert!(!fits("{tenant}{namespace}", "a"));
    assert!(fits("lit", "lit"));
    assert!(!fits("lit", "lit2"));
}

#[test]
fn a_bedrock_model_arn_keeps_its_encoded_slash() {
    // boto3 escapes a model id's ':' and '/' (botocore's percent_encode of a URI label).
    let arn = "arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile%2Fus.anthropic.claude-3-5-haiku-20241022-v1%3A0";
    for operation in [
        "converse",
        "converse-stream",
        "invoke",
        "invoke-with-response-stream",
    ] {
        let raw = format!("/model/{arn}/{operation}");
        assert_eq!(norm(&raw), raw, "{raw}");
        let raw = format!("/bedrock/./x/../model/{arn}/{operation}?a=1");
        let p = normalize(raw.as_bytes()).unwrap();
        assert_eq!(p.path, format!("/bedrock/model/{arn}/{operation}"));
    }
    let provisioned =
        "/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A1%3Aprovisioned-model%2Fabc%2Fdef/invoke";
    assert_eq!(norm(provisioned), provisioned);
}

#[test]
fn an_encoded_slash_elsewhere_or_in_a_dubious_arn_is_refused() {
    for raw in [
        // Not a Bedrock model path, or not at its end.
        "/model/arn%3Aaws%2Fx/other",
        "/models/arn%3Aaws%2Fx/converse",
        "/model/arn%3Aaws%2Fx/converse/",
        "/model/arn%3Aaws%2Fx/converse/more",
        "/x%2Fy/model/arn%3Aaws%2Fx/converse",
        // Not an ARN.
        "/model/us.anthropic%2Fx/converse",
        // Pieces a decoding server would read as dot segments or escapes.
        "/model/arn%3Aaws%2F..%2F..%2Fadmin/converse",
        "/model/arn%3Aaws%2F.%2Fx/converse",
        "/model/arn%3Aaws%2F%2Fx/converse",
        "/model/arn%3Aaws%2F/converse",
        "/model/arn%3Aaws%2Fx%25/converse",
        "/model/arn%3Aaws%2Fx%5C/converse",
        "/model/arn%3Aaws%2Fx%3B/converse",
        "/model/arn%3Aaws%2Fx%2/converse",
    ] {
        assert_eq!(refused(raw.as_bytes()).reason, Reason::InvalidPath, "{raw}");
    }
}
