use serde_json::{json, Value};
#[cfg(target_family = "wasm")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use super::*;
use crate::policy::jwks::fixtures::*;
use jwt_simple::prelude::RS256KeyPair;

fn keys(jwks: Vec<Value>) -> KeySet {
    KeySet::from_value(&json!({ "keys": jwks })).unwrap()
}

/// Provider "corp" for `ISSUER`/`AUDIENCE` with the given inline keys.
fn provider(jwks: Vec<Value>) -> Provider {
    Provider {
        name: "corp".into(),
        issuer: ISSUER.into(),
        audiences: Audiences::OneOf(vec![AUDIENCE.into()]),
        require_kid: false,
        token_types: TokenTypes::default(),
        inline_keys: Some(keys(jwks)),
        remote: RemoteKeys::NotConfigured,
    }
}

/// One key of every supported type, each with a kid naming its type.
fn all_keys() -> Vec<Value> {
    vec![
        rsa_jwk(RSA_A_PEM, Some("rsa")),
        p256_jwk(Some("p256")),
        p384_jwk(Some("p384")),
        ed25519_jwk(Some("ed")),
        oct_jwk(Some("oct")),
    ]
}

fn rules() -> IdentityRules {
    IdentityRules {
        tenant_claim: ClaimPath::parse("tenant_id").unwrap(),
        user_claim: ClaimPath::parse("sub"),
        clock_skew_s: 60,
        forward_claims: vec![],
        max_token_bytes: 8192,
    }
}

fn claims_with(changes: Value) -> Value {
    let mut claims = base_claims();
    for (k, v) in changes.as_object().unwrap() {
        if v.is_null() {
            claims.as_object_mut().unwrap().remove(k);
        } else {
            claims[k] = v.clone();
        }
    }
    claims
}

fn check(token: &str, providers: &[Provider]) -> Result<VerifiedToken, TokenRejection> {
    verify(token, providers, &rules(), NOW)
}

/// Expects an InvalidToken rejection and returns its detail, which must not leak the token.
fn refused(token: &str, providers: &[Provider]) -> String {
    let rejection = check(token, providers).unwrap_err();
    assert_eq!(
        rejection.reason,
        Reason::InvalidToken,
        "{}",
        rejection.detail
    );
    assert!(token.is_empty() || !rejection.detail.contains(token));
    rejection.detail
}

fn hs256(claims: &Value) -> String {
    mint("HS256", Some("oct"), claims)
}

#[test]
fn every_algorithm_verifies_with_the_right_key() {
    let providers = [provider(all_keys())];
    for (alg, kid) in [
        ("RS256", "rsa"),
        ("RS384", "rsa"),
        ("RS512", "rsa"),
        ("PS256", "rsa"),
        ("PS384", "rsa"),
        ("PS512", "rsa"),
        ("ES256", "p256"),
        ("ES384", "p384"),
        ("EdDSA", "ed"),
        ("HS256", "oct"),
        ("HS384", "oct"),
        ("HS512", "oct"),
    ] {
        let token = mint(alg, Some(kid), &base_claims());
        let verified = check(&token, &providers).unwrap_or_else(|r| panic!("{alg}: {r:?}"));
        assert_eq!(
            verified,
            VerifiedToken {
                provider: 0,
                tenant: "acme".into(),
                user: Some("alice".into()),
                forwarded: vec![],
                expires_at: NOW + 600 + 60,
            },
            "{alg}"
        );
    }
}

#[test]
fn tokens_without_kid_are_tried_against_every_compatible_key() {
    let providers = [provider(all_keys())];
    for alg in ["RS256", "ES384", "EdDSA", "HS512"] {
        assert!(
            check(&mint(alg, None, &base_claims()), &providers).is_ok(),
            "{alg}"
        );
    }
}

#[test]
fn alg_none_is_refused() {
    let providers = [provider(all_keys())];
    for alg in ["none", "None", "NONE"] {
        let token = forge(&json!({"alg": alg, "typ": "JWT"}), &base_claims(), b"");
        assert_eq!(
            refused(&token, &providers),
            format!("alg {alg} not accepted")
        );
        let token = format!("{token}AAAA"); // with a non-empty signature part
        assert_eq!(
            refused(&token, &providers),
            format!("alg {alg} not accepted")
        );
    }
}

#[test]
fn unsupported_algorithms_are_refused() {
    let providers = [provider(all_keys())];
    for alg in ["ES256K", "BLAKE2B", "HS1", "RSA-OAEP", "es256"] {
        let token = forge(&json!({"alg": alg}), &base_claims(), &[1; 64]);
        assert_eq!(
            refused(&token, &providers),
            format!("alg {alg} not accepted")
        );
    }
    let token = forge(&json!({"typ": "JWT"}), &base_claims(), &[1; 64]);
    assert_eq!(refused(&token, &providers), "token header has no alg");
}

#[test]
fn hs256_signed_with_rsa_public_key_is_refused() {
    let rsa = rsa_jwk(RSA_A_PEM, Some("rsa"));
    let public_pem = RS256KeyPair::from_pem(RSA_A_PEM)
        .unwrap()
        .public_key()
        .to_pem()
        .unwrap();
    let n = {
        use ct_codecs::{Base64UrlSafeNoPadding, Decoder};
        Base64UrlSafeNoPadding::decode_to_vec(rsa["n"].as_str().unwrap(), None).unwrap()
    };
    // The classic confusion: the RSA public key (as PEM, or as raw modulus) used as HMAC secret.
    for secret in [public_pem.as_bytes(), n.as_slice()] {
        let with_kid = forge_hs256(
            &json!({"alg": "HS256", "kid": "rsa"}),
            &base_claims(),
            secret,
        );
        let without_kid = forge_hs256(&json!({"alg": "HS256"}), &base_claims(), secret);
        let rsa_only = [provider(vec![rsa.clone()])];
        assert_eq!(refused(&with_kid, &rsa_only), "no key for alg HS256");
        assert_eq!(refused(&without_kid, &rsa_only), "no key for alg HS256");
        // With an HMAC key present too, the RSA key still never serves as an HMAC secret.
        let mixed = [provider(vec![rsa.clone(), oct_jwk(Some("oct"))])];
        assert_eq!(refused(&with_kid, &mixed), "no key for alg HS256");
        assert_eq!(
            refused(&without_kid, &mixed),
            "signature verification failed"
        );
    }
}

#[test]
fn token_alg_must_fit_the_selected_key_type() {
    let providers = [provider(all_keys())];
    // An ES256 signature presented under an RSA key id, and an RS256 one under the EC key id.
    let es = mint("ES256", Some("rsa"), &base_claims());
    assert_eq!(refused(&es, &providers), "no key for alg ES256");
    let rs = mint("RS256", Some("p256"), &base_claims());
    assert_eq!(refused(&rs, &providers), "no key for alg RS256");
    // ES384 is only for P-384 keys.
    let only_p256 = [provider(vec![p256_jwk(None)])];
    assert_eq!(
        refused(&mint("ES384", None, &base_claims()), &only_p256),
        "no key for alg ES384"
    );
}

#[test]
fn tampered_payload_fails_signature_verification() {
    let providers = [provider(all_keys())];
    for alg in ["RS256", "ES256", "EdDSA", "HS256"] {
        let kid = match alg {
            "RS256" => "rsa",
            "ES256" => "p256",
            "EdDSA" => "ed",
            _ => "oct",
        };
        let token = mint(alg, Some(kid), &base_claims());
        let parts: Vec<&str> = token.split('.').collect();
        let evil = claims_with(json!({"tenant_id": "globex"}));
        let tampered = format!(
            "{}.{}.{}",
            parts[0],
            b64(evil.to_string().as_bytes()),
            parts[2]
        );
        assert_eq!(
            refused(&tampered, &providers),
            "signature verification failed",
            "{alg}"
        );
        // A signature from another token does not transfer either.
        let other = mint(alg, Some(kid), &evil);
        let spliced = format!(
            "{}.{}.{}",
            parts[0],
            parts[1],
            other.split('.').nth(2).unwrap()
        );
        assert_eq!(
            refused(&spliced, &providers),
            "signature verification failed",
            "{alg}"
        );
    }
}

#[test]
fn unknown_issuer_is_refused_with_a_sanitised_detail() {
    let providers = [provider(all_keys())];
    let token = hs256(&claims_with(json!({"iss": "https://evil.example.com"})));
    assert_eq!(
        refused(&token, &providers),
        "unknown issuer https://evil.example.com"
    );
    let long = format!("https://evil.example.com/\n\u{1b}[31m{}", "x".repeat(500));
    let token = hs256(&claims_with(json!({ "iss": long })));
    let shown = "https://evil.example.com/[31m";
    let expected = format!("unknown issuer {shown}{}…", "x".repeat(64 - shown.len()));
    assert_eq!(refused(&token, &providers), expected);
    let token = hs256(&claims_with(json!({"iss": null})));
    assert_eq!(
        refused(&token, &providers),
        "token iss missing or not a string"
    );
    let token = hs256(&claims_with(json!({"iss": ["https://idp.example.com"]})));
    assert_eq!(
        refused(&token, &providers),
        "token iss missing or not a string"
    );
}

#[test]
fn audience_must_be_one_of_the_providers_audiences() {
    let providers = [provider(all_keys())];
    let token = hs256(&claims_with(json!({"aud": "other-service"})));
    assert_eq!(refused(&token, &providers), "audience not accepted");
    let token = hs256(&claims_with(json!({"aud": null})));
    assert_eq!(refused(&token, &providers), "audience not accepted");
    let token = hs256(&claims_with(json!({"aud": ["other", AUDIENCE]})));
    assert!(check(&token, &providers).is_ok());
    // A provider that says "any" accepts any (or no) aud.
    let mut open = provider(all_keys());
    open.audiences = Audiences::Any;
    let token = hs256(&claims_with(json!({"aud": null})));
    assert!(check(&token, std::slice::from_ref(&open)).is_ok());
    let token = hs256(&claims_with(json!({"aud": "other-service"})));
    assert!(check(&token, &[open]).is_ok());
}

#[test]
fn provider_requiring_a_kid_refuses_kidless_tokens_before_trying_keys() {
    let mut strict = provider(all_keys());
    strict.require_kid = true;
    let providers = [strict];
    assert_eq!(
        refused(&mint("HS256", None, &base_claims()), &providers),
        "provider corp requires a kid in the token header"
    );
    assert!(check(&hs256(&base_claims()), &providers).is_ok());
    // The same kid-less token is tried against every HMAC key when kids are not required.
    assert!(check(
        &mint("HS256", None, &base_claims()),
        &[provider(all_keys())]
    )
    .is_ok());
}

#[test]
fn expired_token_is_refused_but_accepted_within_clock_skew() {
    let providers = [provider(all_keys())];
    let token = hs256(&claims_with(json!({"iat": NOW - 3600, "exp": NOW - 30})));
    let verified = check(&token, &providers).unwrap();
    assert_eq!(verified.expires_at, NOW + 30);
    // Valid up to and including exp + skew.
    assert!(verify(&token, &providers, &rules(), NOW + 30).is_ok());
    let rejection = verify(&token, &providers, &rules(), NOW + 31).unwrap_err();
    assert_eq!(
        rejection,
        TokenRejection {
            reason: Reason::TokenExpired,
            detail: "token expired".into()
        }
    );
    let long_ago = hs256(&claims_with(json!({"iat": NOW - 7200, "exp": NOW - 3600})));
    assert_eq!(
        check(&long_ago, &providers).unwrap_err().reason,
        Reason::TokenExpired
    );
}

#[test]
fn token_not_yet_valid_is_refused_beyond_clock_skew() {
    let providers = [provider(all_keys())];
    let token = hs256(&claims_with(json!({"nbf": NOW + 300})));
    assert_eq!(refused(&token, &providers), "token not yet valid");
    let token = hs256(&claims_with(json!({"nbf": NOW + 60})));
    assert!(check(&token, &providers).is_ok());
    let token = hs256(&claims_with(json!({"iat": NOW + 300})));
    assert_eq!(refused(&token, &providers), "token issued in the future");
}

#[test]
fn token_without_exp_is_refused() {
    let providers = [provider(all_keys())];
    let token = hs256(&claims_with(json!({"exp": null})));
    assert_eq!(refused(&token, &providers), "token has no exp");
}

#[test]
fn malformed_time_claims_are_refused() {
    let providers = [provider(all_keys())];
    for exp in [
        json!("1700000600"),
        json!(-1),
        json!(4_294_967_296u64 + NOW),
        json!(1e300),
    ] {
        let token = hs256(&claims_with(json!({ "exp": exp })));
        assert_eq!(
            refused(&token, &providers),
            "token exp is not a valid NumericDate",
            "{exp}"
        );
    }
    let token = hs256(&claims_with(json!({"nbf": -5})));
    assert_eq!(
        refused(&token, &providers),
        "token nbf is not a valid NumericDate"
    );
    // Fractional NumericDates are fine (RFC 7519 §2) and truncated.
    let token = hs256(&claims_with(json!({"exp": (NOW + 10) as f64 + 0.75})));
    assert_eq!(check(&token, &providers).unwrap().expires_at, NOW + 70);
}

#[test]
fn unknown_kid_is_refused() {
    let providers = [provider(all_keys())];
    let token = mint("RS256", Some("rotated-away"), &base_claims());
    assert_eq!(refused(&token, &providers), "unknown key id");
}

#[test]
fn token_without_kid_signed_by_a_foreign_key_is_refused() {
    let providers = [provider(all_keys())];
    let token = mint_with("RS256", RSA_B_PEM, None, &base_claims());
    assert_eq!(refused(&token, &providers), "signature verification failed");
}

#[test]
fn kid_selects_the_key_among_several() {
    let providers = [provider(vec![
        rsa_jwk(RSA_A_PEM, Some("a")),
        rsa_jwk(RSA_B_PEM, Some("b")),
        oct_jwk(Some("h")),
    ])];
    assert!(check(
        &mint_with("RS256", RSA_B_PEM, Some("b"), &base_claims()),
        &providers
    )
    .is_ok());
    assert!(check(
        &mint_with("PS256", RSA_A_PEM, Some("a"), &base_claims()),
        &providers
    )
    .is_ok());
    // Signed by key A but naming key B: only B is tried.
    let token = mint_with("RS256", RSA_A_PEM, Some("b"), &base_claims());
    assert_eq!(refused(&token, &providers), "signature verification failed");
    // Without kid, both RSA keys are tried.
    assert!(check(
        &mint_with("RS256", RSA_B_PEM, None, &base_claims()),
        &providers
    )
    .is_ok());
}

#[test]
fn jwk_alg_restricts_which_tokens_a_key_verifies() {
    let mut jwk = rsa_jwk(RSA_A_PEM, Some("rsa"));
    jwk["alg"] = json!("RS256");
    let providers = [provider(vec![jwk])];
    assert!(check(&mint("RS256", Some("rsa"), &base_claims()), &providers).is_ok());
    assert_eq!(
        refused(&mint("PS256", Some("rsa"), &base_claims()), &providers),
        "no key for alg PS256"
    );
    assert_eq!(
        refused(&mint("RS512", None, &base_claims()), &providers),
        "no key for alg RS512"
    );
}

#[test]
fn remote_keys_are_used_once_loaded() {
    let token = mint("ES256", Some("p256"), &base_claims());
    let mut remote_only = Provider {
        name: "corp".into(),
        issuer: ISSUER.into(),
        audiences: Audiences::Any,
        require_kid: false,
        token_types: TokenTypes::default(),
        inline_keys: None,
        remote: RemoteKeys::Pending,
    };
    assert_eq!(
        refused(&token, std::slice::from_ref(&remote_only)),
        "keys of provider corp not fetched yet"
    );
    let body = json!({"keys": [p256_jwk(Some("p256"))]}).to_string();
    remote_only.remote =
        RemoteKeys::loaded(KeySet::from_remote(body.as_bytes()).unwrap().0, NOW, 3600);
    assert!(check(&token, std::slice::from_ref(&remote_only)).is_ok());
    // Loaded keys answer "unknown key id" like inline ones.
    let other = mint("ES256", Some("nope"), &base_claims());
    assert_eq!(refused(&other, &[remote_only]), "unknown key id");
}

#[test]
fn inline_keys_work_while_remote_keys_are_pending() {
    let mut both = provider(vec![oct_jwk(Some("oct"))]);
    both.remote = RemoteKeys::Pending;
    let providers = [both];
    assert!(check(&hs256(&base_claims()), &providers).is_ok());
    assert_eq!(
        refused(&mint("ES256", Some("p256"), &base_claims()), &providers),
        "keys of provider corp not fetched yet"
    );
}

#[test]
fn providers_sharing_an_issuer_are_all_tried() {
    let mut first = provider(vec![oct_jwk(Some("oct"))]);
    first.name = "first".into();
    first.audiences = Audiences::OneOf(vec!["somebody-else".into()]);
    let mut second = provider(vec![oct_jwk(Some("oct"))]);
    second.name = "second".into();
    let mut elsewhere = provider(vec![oct_jwk(Some("oct"))]);
    elsewhere.issuer = "https://other.example.com".into();
    let providers = [elsewhere, first, second];
    assert_eq!(
        check(&hs256(&base_claims()), &providers).unwrap().provider,
        2
    );
    // When none accepts, the most informative failure wins.
    let token = hs256(&claims_with(json!({"aud": "nobody"})));
    assert_eq!(refused(&token, &providers), "audience not accepted");
}

#[test]
fn dotted_tenant_claim_reaches_nested_objects() {
    let providers = [provider(all_keys())];
    let mut rules = rules();
    rules.tenant_claim = ClaimPath::parse("org.id").unwrap();
    let token = hs256(&claims_with(
        json!({"org": {"id": "globex", "name": "Globex"}}),
    ));
    assert_eq!(
        verify(&token, &providers, &rules, NOW).unwrap().tenant,
        "globex"
    );
    let token = hs256(&claims_with(json!({"org": "globex"})));
    let detail = verify(&token, &providers, &rules, NOW).unwrap_err().detail;
    assert_eq!(detail, "tenant claim org.id missing or not a valid string");
    // A top-level claim whose name contains dots (namespaced claims) is found as is.
    rules.tenant_claim = ClaimPath::parse("https://example.com/tenant").unwrap();
    let token = hs256(&claims_with(
        json!({"https://example.com/tenant": "initech"}),
    ));
    assert_eq!(
        verify(&token, &providers, &rules, NOW).unwrap().tenant,
        "initech"
    );
}

#[test]
fn tenant_claim_must_be_a_short_printable_string() {
    let providers = [provider(all_keys())];
    let bad = [
        json!(42),
        json!(""),
        json!("x".repeat(129)),
        json!("ac\nme"),
        json!(null),
        json!(["acme"]),
    ];
    for tenant in bad {
        let token = hs256(&claims_with(json!({ "tenant_id": tenant })));
        assert_eq!(
            refused(&token, &providers),
            "tenant claim tenant_id missing or not a valid string",
            "{tenant}"
        );
    }
    let token = hs256(&claims_with(json!({"tenant_id": "x".repeat(128)})));
    assert_eq!(check(&token, &providers).unwrap().tenant.len(), 128);
}

#[test]
fn user_claim_is_optional_and_may_be_a_number() {
    let providers = [provider(all_keys())];
    let mut rules = rules();
    rules.user_claim = ClaimPath::parse("uid");
    let token = hs256(&claims_with(json!({"uid": 1234})));
    assert_eq!(
        verify(&token, &providers, &rules, NOW)
            .unwrap()
            .user
            .as_deref(),
        Some("1234")
    );
    for uid in [
        json!(null),
        json!({"id": 1}),
        json!(true),
        json!("bad\u{0}user"),
    ] {
        let token = hs256(&claims_with(json!({ "uid": uid })));
        assert_eq!(
            verify(&token, &providers, &rules, NOW).unwrap().user,
            None,
            "{uid}"
        );
    }
    rules.user_claim = None;
    let verified = verify(&hs256(&base_claims()), &providers, &rules, NOW).unwrap();
    assert_eq!(verified.user, None);
}

#[test]
fn registered_claims_of_the_wrong_type_are_refused() {
    // Registered claims are typed strictly: RFC 7519 makes `sub` a string.
    let providers = [provider(all_keys())];
    for claims in [json!({"sub": 1234}), json!({"aud": 5}), json!({"jti": []})] {
        let token = hs256(&claims_with(claims));
        assert_eq!(refused(&token, &providers), "malformed token claims");
    }
}

#[test]
fn forwarded_claims_render_scalars_and_skip_the_rest() {
    let providers = [provider(all_keys())];
    let mut rules = rules();
    let paths = [
        ("sub", "x-user-id"),
        ("org.plan", "x-plan"),
        ("level", "x-level"),
        ("admin", "x-admin"),
        ("org", "x-org"),
        ("groups", "x-groups"),
        ("missing", "x-missing"),
        ("bad", "x-bad"),
        ("huge", "x-huge"),
        ("empty", "x-empty"),
    ];
    rules.forward_claims = paths
        .iter()
        .map(|(c, h)| (ClaimPath::parse(c).unwrap(), h.to_string()))
        .collect();
    let token = hs256(&claims_with(json!({
        "org": {"plan": "pro"},
        "level": 3.5,
        "admin": false,
        "groups": ["a", "b"],
        "bad": "line\r\nbreak",
        "huge": "x".repeat(1025),
        "empty": "",
    })));
    let verified = verify(&token, &providers, &rules, NOW).unwrap();
    let expected: Vec<(String, String)> = [
        ("x-user-id", "alice"),
        ("x-plan", "pro"),
        ("x-level", "3.5"),
        ("x-admin", "false"),
        ("x-empty", ""),
    ]
    .iter()
    .map(|(h, v)| (h.to_string(), v.to_string()))
    .collect();
    assert_eq!(verified.forwarded, expected);
}

#[test]
fn malformed_tokens_are_refused() {
    let providers = [provider(all_keys())];
    let good = hs256(&base_claims());
    let parts: Vec<&str> = good.split('.').collect();
    let cases = [
        (
            format!("{}.{}", parts[0], parts[1]),
            "token must have three dot-separated parts",
        ),
        (
            format!("{good}.extra"),
            "token must have three dot-separated parts",
        ),
        (String::new(), "token must have three dot-separated parts"),
        ("..".to_string(), "malformed token header"),
        (
            format!("{}!.{}.{}", parts[0], parts[1], parts[2]),
            "malformed token header",
        ),
        (
            format!("{}.{}.{}", b64(b"not json"), parts[1], parts[2]),
            "malformed token header",
        ),
        (
            format!("{}.{}.{}", b64(b"[1,2]"), parts[1], parts[2]),
            "malformed token header",
        ),
        (
            format!("{}=.{}.{}", parts[0], parts[1], parts[2]),
            "malformed token header",
        ),
        (
            format!("{}.{}.{}", parts[0], b64(b"{\"iss\":"), parts[2]),
            "malformed token payload",
        ),
        (
            format!("{}.{}.{}", parts[0], b64(b"\"acme\""), parts[2]),
            "malformed token payload",
        ),
        (
            format!("{}.{}*.{}", parts[0], parts[1], parts[2]),
            "malformed token payload",
        ),
        (
            format!("{}.{}.", parts[0], parts[1]),
            "malformed token signature",
        ),
        (
            format!("{}.{}.{}+", parts[0], parts[1], parts[2]),
            "malformed token signature",
        ),
    ];
    for (token, detail) in cases {
        assert_eq!(refused(&token, &providers), detail, "{token}");
    }
    let token = forge(&json!({"alg": "HS256", "kid": 7}), &base_claims(), &[0; 32]);
    assert_eq!(refused(&token, &providers), "token kid is not a string");
}

#[test]
fn oversized_token_is_refused_before_parsing() {
    let providers = [provider(all_keys())];
    let huge = "a".repeat(100_000);
    assert_eq!(refused(&huge, &providers), "token too long");
    let mut rules = rules();
    let token = hs256(&base_claims());
    rules.max_token_bytes = token.len();
    assert!(verify(&token, &providers, &rules, NOW).is_ok());
    rules.max_token_bytes = token.len() - 1;
    assert_eq!(
        verify(&token, &providers, &rules, NOW).unwrap_err().detail,
        "token too long"
    );
}

#[test]
fn unsupported_header_features_are_refused() {
    let providers = [provider(all_keys())];
    let secret = hmac_secret();
    let crit = forge_hs256(
        &json!({"alg": "HS256", "crit": ["exp"]}),
        &base_claims(),
        &secret,
    );
    assert_eq!(
        refused(&crit, &providers),
        "token has unsupported crit header"
    );
    let typ = forge_hs256(
        &json!({"alg": "HS256", "typ": "dpop"}),
        &base_claims(),
        &secret,
    );
    assert_eq!(refused(&typ, &providers), "token typ not accepted");
    let at_jwt = forge_hs256(
        &json!({"alg": "HS256", "typ": "at+jwt"}),
        &base_claims(),
        &secret,
    );
    assert!(check(&at_jwt, &providers).is_ok());
}

#[test]
fn extreme_clock_values_are_refused_without_panicking() {
    let providers = [provider(all_keys())];
    let token = hs256(&base_claims());
    let mut rules = rules();
    rules.clock_skew_s = u64::MAX;
    assert_eq!(
        verify(&token, &providers, &rules, NOW).unwrap_err().detail,
        "clock or clock_skew_s out of supported range"
    );
    let at_the_end_of_time = verify(&token, &providers, &self::rules(), u64::MAX).unwrap_err();
    assert_eq!(
        (
            at_the_end_of_time.reason,
            at_the_end_of_time.detail.as_str()
        ),
        (
            Reason::InvalidToken,
            "clock or clock_skew_s out of supported range"
        )
    );
    assert_eq!(
        verify(&token, &providers, &self::rules(), 0)
            .unwrap_err()
            .reason,
        Reason::InvalidToken
    );
}

#[test]
fn claim_paths_must_not_have_empty_segments() {
    assert_eq!(ClaimPath::parse("org.id").unwrap().as_str(), "org.id");
    for bad in ["", ".", "org.", ".id", "org..id"] {
        assert!(ClaimPath::parse(bad).is_none(), "{bad}");
    }
}

// === Second spellings and looser checks an outside review found (issue 18) ===

#[test]
fn a_token_has_one_spelling_of_its_signature() {
    let providers = [provider(all_keys())];
    for (alg, kid, others) in [
        ("ES256", "p256", 15),
        ("RS256", "rsa", 15),
        ("PS256", "rsa", 15),
        ("EdDSA", "ed", 15),
        ("HS512", "oct", 15),
        ("HS256", "oct", 3),
    ] {
        let token = mint(alg, Some(kid), &base_claims());
        assert!(check(&token, &providers).is_ok(), "{alg}");
        let variants = signature_respellings(&token);
        assert_eq!(variants.len(), others, "{alg}");
        for variant in variants {
            assert_eq!(
                refused(&variant, &providers),
                "malformed token signature",
                "{alg}"
            );
        }
    }
}

#[test]
fn pss_signature_plus_the_modulus_is_refused() {
    use ct_codecs::{Base64UrlSafeNoPadding, Decoder};
    let decode = |text: &str| Base64UrlSafeNoPadding::decode_to_vec(text, None).unwrap();
    let providers = [provider(all_keys())];
    let n = decode(rsa_jwk(RSA_A_PEM, None)["n"].as_str().unwrap());
    let mut respelled = 0;
    for i in 0..64 {
        let token = mint(
            "PS256",
            Some("rsa"),
            &claims_with(json!({"jti": format!("t{i}")})),
        );
        let (input, signature) = token.rsplit_once('.').unwrap();
        // s + n, if it still fits the modulus length.
        let Some(sum) = plus_modulus(&decode(signature), &n) else {
            continue;
        };
        respelled += 1;
        let second = format!("{input}.{}", b64(&sum));
        assert_eq!(
            refused(&second, &providers),
            "signature verification failed"
        );
    }
    assert!(respelled > 0);
}

/// A token with raw header and payload JSON text (which may repeat members), HMAC-SHA256-signed
/// with the fixture secret, so only the repeat can refuse it.
fn signed_raw(header: &str, payload: &str) -> String {
    let input = format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()));
    let tag = hmac_sha256::HMAC::mac(input.as_bytes(), hmac_secret());
    format!("{input}.{}", b64(&tag))
}

#[test]
fn repeated_members_in_header_or_claims_are_refused() {
    let providers = [provider(all_keys())];
    let claims = |extra: &str| {
        format!(
            r#"{{"iss":"{ISSUER}","sub":"alice","iat":{NOW},"exp":{}{extra}}}"#,
            NOW + 600
        )
    };
    let header = r#"{"alg":"HS256","kid":"oct"}"#;
    // The token as it should be: admitted.
    let good = signed_raw(
        header,
        &claims(r#","aud":"genai-gateway","tenant_id":"acme""#),
    );
    assert_eq!(check(&good, &providers).unwrap().tenant, "acme");
    for extra in [
        r#","aud":"other","aud":"genai-gateway","tenant_id":"acme""#,
        r#","aud":"genai-gateway","tenant_id":"globex","tenant_id":"acme""#,
        r#","aud":"genai-gateway","tenant_id":"acme","exp":99999999999"#,
        r#","aud":"genai-gateway","tenant_id":"acme","iss":"https://idp.example.com""#,
    ] {
        assert_eq!(
            refused(&signed_raw(header, &claims(extra)), &providers),
            "malformed token payload",
            "{extra}"
        );
    }
    for header in [
        r#"{"alg":"HS256","kid":"oct","alg":"HS256"}"#,
        r#"{"alg":"HS256","kid":"oct","kid":"oct"}"#,
    ] {
        let token = signed_raw(
            header,
            &claims(r#","aud":"genai-gateway","tenant_id":"acme""#),
        );
        assert_eq!(
            refused(&token, &providers),
            "malformed token header",
            "{header}"
        );
    }
    // A dotted tenant claim: a repeat inside the nested object is refused too.
    let mut rules = rules();
    rules.tenant_claim = ClaimPath::parse("org.id").unwrap();
    let nested = signed_raw(
        header,
        &claims(r#","aud":"genai-gateway","org":{"id":"globex","id":"acme"}"#),
    );
    let rejection = verify(&nested, &providers, &rules, NOW).unwrap_err();
    assert_eq!(rejection.detail, "malformed token payload");
}

#[test]
fn short_hmac_keys_verify_only_the_hashes_their_length_allows() {
    let secret = hmac_secret();
    let short = json!({"kty": "oct", "kid": "oct", "k": b64(&secret[..32])});
    let providers = [provider(vec![short])];
    let with = |alg: &str| {
        use jwt_simple::prelude::{HS256Key, HS384Key, HS512Key, MACLike};
        let (key, claims) = (&secret[..32], exact_claims(&base_claims()));
        match alg {
            "HS256" => HS256Key::from_bytes(key).authenticate(claims),
            "HS384" => HS384Key::from_bytes(key).authenticate(claims),
            _ => HS512Key::from_bytes(key).authenticate(claims),
        }
        .unwrap()
    };
    assert!(check(&with("HS256"), &providers).is_ok());
    assert_eq!(refused(&with("HS384"), &providers), "no key for alg HS384");
    assert_eq!(refused(&with("HS512"), &providers), "no key for alg HS512");
}

fn remote_provider(set: KeySet, loaded_at: u64) -> Provider {
    Provider {
        name: "corp".into(),
        issuer: ISSUER.into(),
        audiences: Audiences::Any,
        require_kid: false,
        token_types: TokenTypes::default(),
        inline_keys: None,
        remote: RemoteKeys::loaded(set, loaded_at, 3600),
    }
}

fn remote_set(jwks: Vec<Value>) -> KeySet {
    let body = json!({ "keys": jwks }).to_string();
    KeySet::from_remote(body.as_bytes()).unwrap().0
}

#[test]
fn remote_keys_sharing_a_kid_are_each_tried() {
    let set = remote_set(vec![
        rsa_jwk(RSA_A_PEM, Some("k")),
        rsa_jwk(RSA_B_PEM, Some("k")),
    ]);
    let providers = [remote_provider(set, NOW)];
    for pem in [RSA_A_PEM, RSA_B_PEM] {
        assert!(check(
            &mint_with("RS256", pem, Some("k"), &base_claims()),
            &providers
        )
        .is_ok());
    }
}

#[test]
fn remote_keys_past_max_stale_s_verify_nothing() {
    let set = remote_set(vec![p256_jwk(Some("p256"))]);
    let token = mint("ES256", Some("p256"), &base_claims());
    // Fetched an hour ago: usable up to and including NOW.
    let mut providers = [remote_provider(set, NOW - 3600)];
    let verified = check(&token, &providers).unwrap();
    // The identity is not reused past the moment the keys go stale.
    assert_eq!(verified.expires_at, NOW);
    let rejection = verify(&token, &providers, &rules(), NOW + 1).unwrap_err();
    assert_eq!(
        (rejection.reason, rejection.detail.as_str()),
        (Reason::InvalidToken, "keys of provider corp are stale")
    );
    assert!(!providers[0].remote.is_stale(NOW));
    assert!(providers[0].remote.is_stale(NOW + 1));
    // A good fetch (of the same set) makes them usable again for max_stale_s.
    providers[0].remote.refreshed(NOW + 1, 3600);
    let verified = verify(&token, &providers, &rules(), NOW + 1).unwrap();
    assert_eq!(verified.expires_at, NOW + 600 + 60);
    // Inline keys of the provider keep working while its remote keys are stale.
    providers[0].inline_keys = Some(keys(vec![oct_jwk(Some("oct"))]));
    let later = NOW + 1 + 3601;
    let hs = hs256(&claims_with(json!({"iat": later, "exp": later + 600})));
    assert!(verify(&hs, &providers, &rules(), later).is_ok());
    let es = mint(
        "ES256",
        Some("p256"),
        &claims_with(json!({"iat": later, "exp": later + 600})),
    );
    assert_eq!(
        verify(&es, &providers, &rules(), later).unwrap_err().detail,
        "keys of provider corp are stale"
    );
    // Never-fetched keys are not stale: they are pending.
    assert!(!RemoteKeys::Pending.is_stale(u64::MAX));
}

#[test]
fn a_key_is_skipped_only_when_both_kids_are_present_and_differ() {
    // An IdP whose JWKS omits kid: tokens that carry one still verify (as with Envoy).
    let kidless = [provider(vec![rsa_jwk(RSA_A_PEM, None), p256_jwk(None)])];
    assert!(check(&mint("RS256", Some("whatever"), &base_claims()), &kidless).is_ok());
    assert!(check(&mint("ES256", Some("k9"), &base_claims()), &kidless).is_ok());
    assert!(check(&mint("ES256", None, &base_claims()), &kidless).is_ok());
    // A key with another kid is skipped; a kid-less one beside it is tried.
    let mixed = [provider(vec![
        rsa_jwk(RSA_A_PEM, Some("a")),
        rsa_jwk(RSA_B_PEM, None),
    ])];
    let by_b = mint_with("RS256", RSA_B_PEM, Some("x"), &base_claims());
    assert!(check(&by_b, &mixed).is_ok());
    let by_a = mint_with("RS256", RSA_A_PEM, Some("x"), &base_claims());
    assert_eq!(refused(&by_a, &mixed), "signature verification failed");
    // Keys that all have other kids: unknown key id, as before.
    let named = [provider(vec![rsa_jwk(RSA_A_PEM, Some("a"))])];
    assert_eq!(refused(&by_a, &named), "unknown key id");
    // require_kid still asks the token for a kid, whatever the keys carry.
    let mut strict = provider(vec![rsa_jwk(RSA_A_PEM, None)]);
    strict.require_kid = true;
    let strict = [strict];
    assert!(check(&mint("RS256", Some("any"), &base_claims()), &strict).is_ok());
    assert_eq!(
        refused(&mint("RS256", None, &base_claims()), &strict),
        "provider corp requires a kid in the token header"
    );
}

#[test]
fn only_the_providers_token_types_are_accepted() {
    let providers = [provider(all_keys())];
    let secret = hmac_secret();
    let with_typ = |typ: Value| {
        forge_hs256(
            &json!({"alg": "HS256", "kid": "oct", "typ": typ}),
            &base_claims(),
            &secret,
        )
    };
    // Default: no typ, JWT and at+jwt (RFC 9068), without case, `application/` optional.
    for typ in [
        json!(null),
        json!("JWT"),
        json!("jwt"),
        json!("at+jwt"),
        json!("AT+JWT"),
        json!("application/at+jwt"),
        json!("application/JWT"),
    ] {
        assert!(check(&with_typ(typ.clone()), &providers).is_ok(), "{typ}");
    }
    assert!(check(&hs256(&base_claims()), &providers).is_ok());
    let untyped = forge_hs256(
        &json!({"alg": "HS256", "kid": "oct"}),
        &base_claims(),
        &secret,
    );
    assert!(check(&untyped, &providers).is_ok());
    for typ in [
        "logout+jwt",
        "secevent+jwt",
        "application/logout+jwt",
        "dpop+jwt",
        "JOSE",
        "JWE",
        "",
        "application/",
        "jwt ",
    ] {
        assert_eq!(
            refused(&with_typ(json!(typ)), &providers),
            "token typ not accepted",
            "{typ}"
        );
    }
    // A provider's own list: here tokens must declare at+jwt.
    let mut strict = provider(all_keys());
    strict.token_types = TokenTypes::from_list(&["at+jwt".to_owned()]).unwrap();
    let strict = [strict];
    assert!(check(&with_typ(json!("application/at+jwt")), &strict).is_ok());
    assert_eq!(refused(&untyped, &strict), "token typ not accepted");
    assert_eq!(
        refused(&with_typ(json!("JWT")), &strict),
        "token typ not accepted"
    );
}

#[test]
fn token_type_lists_name_jwt_types_only() {
    let list = |items: &[&str]| {
        TokenTypes::from_list(&items.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    };
    let only_none = list(&[""]).unwrap();
    assert!(only_none.accepts(None));
    assert!(!only_none.accepts(Some("JWT")));
    assert!(!only_none.accepts(Some("")));
    let types = list(&["Application/Logout+JWT", "JWT"]).unwrap();
    assert!(types.accepts(Some("logout+jwt")));
    assert!(types.accepts(Some("application/jwt")));
    assert!(!types.accepts(None));
    assert_eq!(list(&[]).unwrap_err().0, None);
    assert_eq!(list(&["JWT", "jose"]).unwrap_err().0, Some(1));
    assert_eq!(
        list(&["jwt", "application/JWT"]).unwrap_err(),
        (Some(1), "listed twice")
    );
    assert_eq!(list(&["a\n+jwt"]).unwrap_err().0, Some(0));
    for bad in ["application/", "+jwt", "APPLICATION/+JWT", "jwt2"] {
        assert_eq!(list(&["", bad]).unwrap_err().0, Some(1), "{bad}");
    }
    assert_eq!(TokenTypes::default(), list(&["", "JWT", "at+jwt"]).unwrap());
}
