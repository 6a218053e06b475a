use super::*;
use crate::policy::jwks::fixtures::*;
use serde_json::json;
#[cfg(target_family = "wasm")]
use wasm_bindgen_test::wasm_bindgen_test as test;

fn parse_err(token: &str) -> String {
    match Token::parse(token) {
        Ok(_) => panic!("accepted: {token}"),
        Err(e) => e.detail,
    }
}

#[test]
fn parts_are_decoded_and_the_token_kept() {
    let token = mint("ES256", Some("k1"), &base_claims());
    let parsed = Token::parse(&token).unwrap();
    assert_eq!(parsed.alg, Alg::Es256);
    assert_eq!(parsed.kid.as_deref(), Some("k1"));
    assert_eq!(parsed.typ.as_deref(), Some("JWT"));
    assert_eq!(parsed.claims["sub"], "alice");
    assert_eq!(parsed.text, token);
}

#[test]
fn bad_base64_in_any_part_is_refused() {
    let token = mint("HS256", None, &base_claims());
    let parts: Vec<&str> = token.split('.').collect();
    let cases = [
        (
            format!("{}%.{}.{}", parts[0], parts[1], parts[2]),
            "malformed token header",
        ),
        (
            format!("{}.{}=.{}", parts[0], parts[1], parts[2]),
            "malformed token payload",
        ),
        (
            format!("{}.{}.{}/", parts[0], parts[1], parts[2]),
            "malformed token signature",
        ),
        (
            format!("{}.{}.a", parts[0], parts[1]),
            "malformed token signature",
        ),
        (
            format!("{}.{}.{}=", parts[0], parts[1], parts[2]),
            "malformed token signature",
        ),
    ];
    for (token, detail) in cases {
        assert_eq!(parse_err(&token), detail, "{token}");
    }
}

#[test]
fn non_canonical_base64url_is_refused_in_every_part() {
    // Signatures: 16 spellings of 256-byte (RSA-2048), 64-byte (ES256, EdDSA, HS512) values,
    // 4 of HS256's 32 bytes; only the canonical one is read.
    for (alg, others) in [
        ("RS256", 15),
        ("PS256", 15),
        ("ES256", 15),
        ("EdDSA", 15),
        ("HS512", 15),
        ("HS256", 3),
    ] {
        let token = mint(alg, None, &base_claims());
        assert!(Token::parse(&token).is_ok(), "{alg}");
        let variants = signature_respellings(&token);
        assert_eq!(variants.len(), others, "{alg}");
        for variant in variants {
            assert_eq!(parse_err(&variant), "malformed token signature", "{alg}");
        }
    }
    // Header and payload: padded until their encodings have unused bits.
    for pad in 0..3 {
        let header = json!({"alg": "HS256", "pad": "x".repeat(pad)});
        let claims = json!({"iss": ISSUER, "pad": "x".repeat(pad)});
        let token = forge(&header, &claims, &[1; 32]);
        assert!(Token::parse(&token).is_ok());
        let parts: Vec<&str> = token.split('.').collect();
        for variant in respellings(parts[0]) {
            let respelled = format!("{variant}.{}.{}", parts[1], parts[2]);
            assert_eq!(parse_err(&respelled), "malformed token header");
        }
        for variant in respellings(parts[1]) {
            let respelled = format!("{}.{variant}.{}", parts[0], parts[2]);
            assert_eq!(parse_err(&respelled), "malformed token payload");
        }
    }
}

/// A token from raw header and payload JSON text (which may repeat members).
fn raw(header: &str, payload: &str) -> String {
    format!(
        "{}.{}.{}",
        b64(header.as_bytes()),
        b64(payload.as_bytes()),
        b64(&[1; 32])
    )
}

#[test]
fn a_repeated_member_name_anywhere_is_refused() {
    let claims = r#"{"iss":"https://idp.example.com","exp":1700000600}"#;
    for header in [
        r#"{"alg":"HS256","alg":"none"}"#,
        r#"{"alg":"HS256","kid":"a","kid":"b"}"#,
        r#"{"alg":"HS256","typ":"JWT","typ":"logout+jwt"}"#,
        r#"{"alg":"HS256","x":{"y":1,"y":2}}"#,
        // The same name once escaped: JSON compares the decoded names.
        r#"{"alg":"HS256","\u0061lg":"HS256"}"#,
    ] {
        assert_eq!(
            parse_err(&raw(header, claims)),
            "malformed token header",
            "{header}"
        );
    }
    let header = r#"{"alg":"HS256"}"#;
    for payload in [
        r#"{"iss":"a","aud":"other","aud":"genai-gateway"}"#,
        r#"{"iss":"a","exp":1,"exp":1700000600}"#,
        r#"{"iss":"https://evil","iss":"https://idp.example.com"}"#,
        r#"{"iss":"a","tenant_id":"acme","tenant_id":"globex"}"#,
        r#"{"iss":"a","org":{"id":"acme","id":"globex"}}"#,
        r#"{"iss":"a","groups":[{"n":1},{"n":2,"n":3}]}"#,
        r#"{"iss":"a","t\u0065nant_id":"acme","tenant_id":"globex"}"#,
    ] {
        assert_eq!(
            parse_err(&raw(header, payload)),
            "malformed token payload",
            "{payload}"
        );
    }
    // The same name at different levels, or in different objects, is no repeat.
    let fine = r#"{"iss":"a","id":1,"org":{"id":2,"sub":{"id":3}},"l":[{"id":4},{"id":5}]}"#;
    let token = raw(header, fine);
    let parsed = Token::parse(&token).unwrap();
    assert_eq!(parsed.claims["org"]["sub"]["id"], 3);
}

#[test]
fn oversized_headers_are_refused_before_decoding() {
    let padding = "x".repeat(6200);
    let token = forge(
        &json!({"alg": "HS256", "pad": padding}),
        &base_claims(),
        &[1; 32],
    );
    assert_eq!(parse_err(&token), "token header too large");
    let token = forge(
        &json!({"alg": "HS256", "pad": "x"}),
        &base_claims(),
        &[1; 32],
    );
    assert!(Token::parse(&token).is_ok());
}

#[test]
fn the_header_must_name_an_accepted_alg_and_have_typed_members() {
    let forged = |header| forge(&header, &base_claims(), &[1; 32]);
    let cases = [
        (json!({"alg": "none"}), "alg none not accepted"),
        (json!({"alg": "HS256 "}), "alg HS256  not accepted"),
        (json!({"alg": 256}), "token header has no alg"),
        (
            json!({"alg": "HS256", "kid": null}),
            "token kid is not a string",
        ),
        (json!({"alg": "HS256", "typ": 1}), "malformed token header"),
        // Members jwt-simple reads, of the wrong type.
        (
            json!({"alg": "HS256", "crit": "b64"}),
            "malformed token header",
        ),
        (
            json!({"alg": "HS256", "x5c": "MII"}),
            "malformed token header",
        ),
        (json!({"alg": "HS256", "cty": 1}), "malformed token header"),
    ];
    for (header, detail) in cases {
        assert_eq!(parse_err(&forged(header.clone())), detail, "{header}");
    }
    for (header, typ) in [
        (json!({"alg": "HS256", "crit": []}), None),
        (json!({"alg": "HS256", "typ": "jwt"}), Some("jwt")),
        (
            json!({"alg": "HS256", "typ": "logout+jwt"}),
            Some("logout+jwt"),
        ),
        (json!({"alg": "HS256", "typ": null}), None),
    ] {
        let token = forged(header.clone());
        let parsed = Token::parse(&token).unwrap_or_else(|e| panic!("{header}: {e:?}"));
        assert_eq!(parsed.typ.as_deref(), typ, "{header}");
    }
}
