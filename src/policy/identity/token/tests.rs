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
fn parts_are_decoded_and_the_signing_input_kept() {
    let token = mint("ES256", Some("k1"), &base_claims());
    let parsed = Token::parse(&token).unwrap();
    assert_eq!(parsed.alg, Alg::Es256);
    assert_eq!(parsed.kid.as_deref(), Some("k1"));
    assert_eq!(parsed.claims["sub"], "alice");
    let (input, signature) = token.rsplit_once('.').unwrap();
    assert_eq!(parsed.signing_input, input);
    assert_eq!(
        parsed.signature,
        base64url_decode(signature, false).unwrap()
    );
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
    ];
    for (token, detail) in cases {
        assert_eq!(parse_err(&token), detail, "{token}");
    }
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
fn the_header_must_name_an_accepted_alg_and_a_jwt() {
    let forged = |header| forge(&header, &base_claims(), &[1; 32]);
    let cases = [
        (json!({"alg": "none"}), "alg none not accepted"),
        (json!({"alg": "HS256 "}), "alg HS256  not accepted"),
        (json!({"alg": 256}), "token header has no alg"),
        (
            json!({"alg": "HS256", "kid": null}),
            "token kid is not a string",
        ),
        (
            json!({"alg": "HS256", "crit": ["b64"]}),
            "token has unsupported crit header",
        ),
        (
            json!({"alg": "HS256", "crit": "b64"}),
            "malformed token header",
        ),
        (
            json!({"alg": "HS256", "typ": "JWE"}),
            "token typ not accepted",
        ),
        (json!({"alg": "HS256", "typ": 1}), "malformed token header"),
    ];
    for (header, detail) in cases {
        assert_eq!(parse_err(&forged(header.clone())), detail, "{header}");
    }
    for header in [
        json!({"alg": "HS256", "crit": []}),
        json!({"alg": "HS256", "typ": "jwt"}),
        json!({"alg": "HS256", "typ": "at+JWT"}),
        json!({"alg": "HS256", "typ": null}),
    ] {
        assert!(Token::parse(&forged(header.clone())).is_ok(), "{header}");
    }
}

fn claims_check(
    claims: serde_json::Value,
    times: [Option<u64>; 3],
    audiences: &Audiences,
) -> Result<(), TokenRejection> {
    let rules = ClaimRules {
        audiences,
        now: NOW,
        clock_skew_s: 60,
    };
    check_claims(claims.as_object().unwrap(), times, &rules)
}

fn detail(result: Result<(), TokenRejection>) -> String {
    result.unwrap_err().detail
}

#[test]
fn times_are_checked_with_the_skew_at_their_exact_bounds() {
    let any = Audiences::Any;
    let ok = |times| claims_check(json!({}), times, &any).is_ok();
    assert!(ok([Some(NOW + 60), Some(NOW + 60), Some(NOW - 60)]));
    assert_eq!(
        detail(claims_check(json!({}), [Some(NOW + 61), None, None], &any)),
        "token issued in the future"
    );
    assert_eq!(
        detail(claims_check(json!({}), [None, Some(NOW + 61), None], &any)),
        "token not yet valid"
    );
    let expired = claims_check(json!({}), [None, None, Some(NOW - 61)], &any).unwrap_err();
    assert_eq!(
        (expired.reason, expired.detail.as_str()),
        (Reason::TokenExpired, "token expired")
    );
    // A clock earlier than the skew itself counts as expired rather than wrapping around.
    let rules = ClaimRules {
        audiences: &any,
        now: 10,
        clock_skew_s: 60,
    };
    let claims = serde_json::Map::new();
    assert!(check_claims(&claims, [None, None, Some(u64::from(u32::MAX))], &rules).is_err());
}

#[test]
fn registered_claims_must_have_their_types() {
    let any = Audiences::Any;
    for claims in [
        json!({"sub": 1}),
        json!({"jti": {}}),
        json!({"aud": 5}),
        json!({"aud": ["a", 5]}),
        json!({"aud": null}),
    ] {
        assert_eq!(
            detail(claims_check(claims.clone(), [None; 3], &any)),
            "malformed token claims",
            "{claims}"
        );
    }
    for claims in [
        json!({"sub": null, "jti": "x", "aud": []}),
        json!({"aud": "a"}),
    ] {
        assert!(
            claims_check(claims.clone(), [None; 3], &any).is_ok(),
            "{claims}"
        );
    }
}

#[test]
fn the_audience_must_be_one_of_the_providers() {
    let allowed = Audiences::OneOf(vec!["gw".into(), "api".into()]);
    for aud in [json!("gw"), json!(["x", "api"])] {
        assert!(claims_check(json!({ "aud": aud }), [None; 3], &allowed).is_ok());
    }
    for claims in [
        json!({}),
        json!({"aud": "GW"}),
        json!({"aud": []}),
        json!({"aud": ["x"]}),
    ] {
        assert_eq!(
            detail(claims_check(claims.clone(), [None; 3], &allowed)),
            "audience not accepted",
            "{claims}"
        );
    }
}
