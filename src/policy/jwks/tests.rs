use serde_json::{json, Value};
#[cfg(target_family = "wasm")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use super::fixtures::*;
use super::*;

fn strict_err(jwks: Value) -> String {
    KeySet::from_value(&jwks).unwrap_err().to_string()
}

fn algs(set: &KeySet) -> Vec<Vec<&'static str>> {
    set.keys()
        .map(|k| {
            Alg::ALL
                .iter()
                .filter(|a| k.accepts(**a))
                .map(|a| a.as_str())
                .collect()
        })
        .collect()
}

#[test]
fn every_supported_key_type_loads_with_its_algorithm_family() {
    let set = KeySet::from_value(&json!({"keys": [
        rsa_jwk(RSA_A_PEM, Some("rsa")),
        p256_jwk(Some("p256")),
        p384_jwk(Some("p384")),
        ed25519_jwk(Some("ed")),
        oct_jwk(Some("oct")),
    ]}))
    .unwrap();
    assert_eq!(set.len(), 5);
    assert_eq!(
        algs(&set),
        vec![
            vec!["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"],
            vec!["ES256"],
            vec!["ES384"],
            vec!["EdDSA"],
            vec!["HS256", "HS384", "HS512"],
        ]
    );
}

#[test]
fn jwk_alg_restricts_the_key_to_that_algorithm() {
    let mut jwk = rsa_jwk(RSA_A_PEM, Some("rsa"));
    jwk["alg"] = json!("PS384");
    let set = KeySet::from_value(&json!({"keys": [jwk]})).unwrap();
    assert_eq!(algs(&set), vec![vec!["PS384"]]);
}

#[test]
fn jwk_alg_that_does_not_fit_the_key_type_is_refused() {
    let mut jwk = rsa_jwk(RSA_A_PEM, None);
    jwk["alg"] = json!("ES256");
    assert_eq!(
        strict_err(json!({"keys": [jwk]})),
        "keys[0].alg: alg ES256 does not fit a RSA key"
    );
    let mut jwk = p256_jwk(None);
    jwk["alg"] = json!("ES384");
    assert_eq!(
        strict_err(json!({"keys": [jwk]})),
        "keys[0].alg: alg ES384 does not fit a EC P-256 key"
    );
    let mut jwk = oct_jwk(None);
    jwk["alg"] = json!("none");
    assert_eq!(
        strict_err(json!({"keys": [jwk]})),
        "keys[0].alg: unsupported algorithm \"none\""
    );
}

#[test]
fn padded_base64url_is_tolerated_in_jwk_fields() {
    let mut jwk = ed25519_jwk(None);
    let x = format!("{}=", jwk["x"].as_str().unwrap());
    jwk["x"] = json!(x);
    assert_eq!(
        KeySet::from_value(&json!({"keys": [jwk]})).unwrap().len(),
        1
    );
}

#[test]
fn bad_rsa_modulus_is_reported_at_its_path() {
    let mut jwk = rsa_jwk(RSA_A_PEM, Some("a"));
    jwk["n"] = json!("not base64!");
    assert_eq!(
        strict_err(json!({"keys": [oct_jwk(None), jwk]})),
        "keys[1].n: not valid base64url"
    );
}

#[test]
fn rsa_modulus_under_2048_bits_is_refused() {
    let mut jwk = rsa_jwk(RSA_A_PEM, None);
    // A 1024-bit modulus (top bit set).
    jwk["n"] = json!(b64(&[0xC5; 128]));
    assert_eq!(
        strict_err(json!({"keys": [jwk]})),
        "keys[0].n: RSA modulus is 1024 bits; at least 2048 are required"
    );
}

#[test]
fn leading_zero_bytes_do_not_count_towards_the_modulus_size() {
    let mut jwk = rsa_jwk(RSA_A_PEM, None);
    let mut n = vec![0u8; 8];
    n.extend_from_slice(&[0x0F; 255]);
    jwk["n"] = json!(b64(&n));
    assert_eq!(
        strict_err(json!({"keys": [jwk]})),
        "keys[0].n: RSA modulus is 2036 bits; at least 2048 are required"
    );
}

#[test]
fn duplicate_kid_is_refused() {
    assert_eq!(
        strict_err(json!({"keys": [
            rsa_jwk(RSA_A_PEM, Some("k1")),
            p256_jwk(Some("k2")),
            rsa_jwk(RSA_B_PEM, Some("k1")),
        ]})),
        "keys[2].kid: duplicate kid \"k1\" (also keys[0])"
    );
}

#[test]
fn unknown_kty_and_curves_are_refused() {
    assert_eq!(
        strict_err(json!({"keys": [{"kty": "XYZ"}]})),
        "keys[0].kty: unsupported key type \"XYZ\" (RSA, EC, OKP and oct are supported)"
    );
    let mut ec = p256_jwk(None);
    ec["crv"] = json!("secp256k1");
    assert_eq!(
        strict_err(json!({"keys": [ec]})),
        "keys[0].crv: unsupported EC curve \"secp256k1\" (P-256 and P-384 are supported)"
    );
    let mut okp = ed25519_jwk(None);
    okp["crv"] = json!("X25519");
    assert_eq!(
        strict_err(json!({"keys": [okp]})),
        "keys[0].crv: unsupported OKP curve \"X25519\" (Ed25519 is supported)"
    );
}

#[test]
fn short_oct_secret_is_refused() {
    assert_eq!(
        strict_err(json!({"keys": [{"kty": "oct", "k": b64(b"sixteen-byte-key")}]})),
        "keys[0].k: HMAC secret is 16 bytes; at least 32 are required"
    );
}

#[test]
fn encryption_keys_are_refused() {
    let mut jwk = rsa_jwk(RSA_A_PEM, None);
    jwk["use"] = json!("enc");
    assert_eq!(
        strict_err(json!({"keys": [jwk]})),
        "keys[0].use: \"enc\" keys cannot verify signatures; only \"sig\" is accepted"
    );
    let mut jwk = rsa_jwk(RSA_A_PEM, None);
    jwk["use"] = json!("sig");
    assert!(KeySet::from_value(&json!({"keys": [jwk]})).is_ok());
}

#[test]
fn private_key_material_is_refused() {
    let mut jwk = p256_jwk(None);
    jwk["d"] = json!(b64(&[7; 32]));
    assert_eq!(
        strict_err(json!({"keys": [jwk]})),
        "keys[0].d: private key material must not be configured; use the public key only"
    );
}

#[test]
fn ec_coordinates_must_have_the_curve_size_and_lie_on_it() {
    let mut jwk = p256_jwk(None);
    jwk["y"] = json!(b64(&[1; 31]));
    assert_eq!(
        strict_err(json!({"keys": [jwk]})),
        "keys[0].y: must be 32 bytes, got 31"
    );
    let mut jwk = p256_jwk(None);
    jwk["y"] = json!(b64(&[1; 32]));
    assert_eq!(
        strict_err(json!({"keys": [jwk]})),
        "keys[0]: invalid EC P-256 public key"
    );
}

#[test]
fn malformed_jwk_sets_are_refused() {
    assert_eq!(
        strict_err(json!({"keys": []})),
        "keys: must contain at least one key"
    );
    assert_eq!(strict_err(json!({})), "keys: missing");
    assert_eq!(strict_err(json!({"keys": {}})), "keys: must be an array");
    assert_eq!(strict_err(json!([])), "a JWK Set must be a JSON object");
    assert_eq!(
        strict_err(json!({"keys": [1]})),
        "keys[0]: a JWK must be a JSON object"
    );
    assert_eq!(
        strict_err(json!({"keys": [{"kty": 1}]})),
        "keys[0].kty: must be a string"
    );
    assert_eq!(
        strict_err(json!({"keys": [{"kty": "RSA", "e": "AQAB"}]})),
        "keys[0].n: missing"
    );
    let mut jwk = oct_jwk(None);
    jwk["kid"] = json!(5);
    assert_eq!(
        strict_err(json!({"keys": [jwk]})),
        "keys[0].kid: must be a string"
    );
}

#[test]
fn remote_set_skips_unusable_keys_and_reports_them() {
    let mut enc = rsa_jwk(RSA_B_PEM, Some("enc"));
    enc["use"] = json!("enc");
    let mut short = rsa_jwk(RSA_B_PEM, Some("short"));
    short["n"] = json!(b64(&[0xC5; 128]));
    let body = json!({"keys": [
        enc,
        rsa_jwk(RSA_A_PEM, Some("good")),
        {"kty": "EC", "crv": "secp256k1", "kid": "k256", "x": "AA", "y": "AA"},
        short,
        ed25519_jwk(Some("ed")),
    ]})
    .to_string();
    let (set, skipped) = KeySet::from_remote(body.as_bytes()).unwrap();
    assert_eq!(set.len(), 2);
    let kids: Vec<_> = set.keys().map(|k| k.kid().unwrap()).collect();
    assert_eq!(kids, ["good", "ed"]);
    let paths: Vec<_> = skipped.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, ["keys[0].use", "keys[2].crv", "keys[3].n"]);
}

#[test]
fn remote_set_never_hands_out_hmac_secrets() {
    let body =
        json!({"keys": [oct_jwk(Some("hmac")), rsa_jwk(RSA_A_PEM, Some("rsa"))]}).to_string();
    let (set, skipped) = KeySet::from_remote(body.as_bytes()).unwrap();
    let kids: Vec<_> = set.keys().map(|k| k.kid().unwrap()).collect();
    assert_eq!(kids, ["rsa"]);
    assert_eq!(skipped.len(), 1);
    assert_eq!(skipped[0].path, "keys[0].kty");
    assert!(skipped[0].message.contains("symmetric"), "{}", skipped[0]);
    // Alone, an oct key leaves nothing usable: the fetch fails (the last good set stays).
    let body = json!({"keys": [oct_jwk(Some("hmac"))]}).to_string();
    assert_eq!(
        KeySet::from_remote(body.as_bytes())
            .unwrap_err()
            .to_string(),
        "keys: no usable key (1 skipped)"
    );
    // Inline configuration may still carry them.
    assert!(KeySet::from_value(&json!({"keys": [oct_jwk(Some("hmac"))]})).is_ok());
}

#[test]
fn remote_set_with_no_usable_key_or_bad_shape_is_an_error() {
    let mut enc = rsa_jwk(RSA_A_PEM, None);
    enc["use"] = json!("enc");
    let body = json!({"keys": [enc]}).to_string();
    assert_eq!(
        KeySet::from_remote(body.as_bytes())
            .unwrap_err()
            .to_string(),
        "keys: no usable key (1 skipped)"
    );
    assert!(KeySet::from_remote(b"<html>")
        .unwrap_err()
        .message
        .starts_with("not valid JSON"));
    assert_eq!(
        KeySet::from_remote(b"{\"keys\": 3}")
            .unwrap_err()
            .to_string(),
        "keys: must be an array"
    );
}

#[test]
fn remote_set_with_duplicate_kids_is_an_error() {
    let body = json!({"keys": [
        rsa_jwk(RSA_A_PEM, Some("k")),
        {"kty": "nope", "kid": "k"},
        p256_jwk(Some("k")),
    ]})
    .to_string();
    assert_eq!(
        KeySet::from_remote(body.as_bytes())
            .unwrap_err()
            .to_string(),
        "keys[2].kid: duplicate kid \"k\" (also keys[0])"
    );
}

#[test]
fn debug_output_shows_kids_but_no_key_material() {
    let set =
        KeySet::from_value(&json!({"keys": [oct_jwk(Some("hmac")), p256_jwk(None)]})).unwrap();
    let shown = format!("{set:?}");
    assert_eq!(shown, r#"[("hmac", "oct"), ("-", "EC P-256")]"#);
}

#[test]
fn base64url_decoding_is_strict() {
    assert_eq!(base64url_decode("aGk", false).unwrap(), b"hi");
    assert_eq!(base64url_decode("aGk=", true).unwrap(), b"hi");
    assert!(base64url_decode("aGk=", false).is_none());
    assert!(base64url_decode("aGk===", true).is_none());
    assert!(base64url_decode("a", false).is_none());
    assert!(base64url_decode("a+b/", false).is_none());
    assert_eq!(base64url_decode("-_-_", false).unwrap(), [0xfb, 0xff, 0xbf]);
    assert_eq!(base64url_decode("", false).unwrap(), b"");
    let all: Vec<u8> = (0..=255).collect();
    assert_eq!(base64url_decode(&b64(&all), false).unwrap(), all);
}

#[test]
fn printable_strips_control_characters_and_truncates() {
    assert_eq!(printable("a\nb\u{7}c", 10), "abc");
    assert_eq!(printable("abcdef", 3), "abc…");
    assert_eq!(printable("abc", 3), "abc");
}

/// One key of each type, `kid` = its type.
fn every_key_type() -> KeySet {
    KeySet::from_value(&json!({"keys": [
        rsa_jwk(RSA_A_PEM, Some("rsa")),
        p256_jwk(Some("p256")),
        p384_jwk(Some("p384")),
        ed25519_jwk(Some("ed")),
        oct_jwk(Some("oct")),
    ]}))
    .unwrap()
}

/// A token minted by jwt-simple for `alg`, as (signing input, signature bytes).
fn signed(alg: Alg) -> (String, Vec<u8>) {
    let token = mint(alg.as_str(), None, &base_claims());
    let (input, signature) = token.rsplit_once('.').unwrap();
    (
        input.to_owned(),
        base64url_decode(signature, false).unwrap(),
    )
}

fn verifies(set: &KeySet, alg: Alg, input: &[u8], signature: &[u8]) -> Vec<&'static str> {
    set.keys()
        .filter(|k| k.verify(alg, input, signature))
        .map(|k| k.kind)
        .collect()
}

#[test]
fn each_algorithm_verifies_with_exactly_its_key() {
    let set = every_key_type();
    for alg in Alg::ALL {
        let (input, signature) = signed(alg);
        let expected = match alg {
            Alg::Hs256 | Alg::Hs384 | Alg::Hs512 => "oct",
            Alg::Es256 => "EC P-256",
            Alg::Es384 => "EC P-384",
            Alg::EdDsa => "OKP Ed25519",
            _ => "RSA",
        };
        assert_eq!(
            verifies(&set, alg, input.as_bytes(), &signature),
            [expected],
            "{alg}"
        );
    }
}

#[test]
fn tampered_signatures_and_inputs_do_not_verify() {
    let set = every_key_type();
    for alg in Alg::ALL {
        let (input, signature) = signed(alg);
        for i in [0, signature.len() / 2, signature.len() - 1] {
            let mut bad = signature.clone();
            bad[i] ^= 0x01;
            assert!(
                verifies(&set, alg, input.as_bytes(), &bad).is_empty(),
                "{alg} byte {i}"
            );
        }
        let mut input = input.into_bytes();
        input[3] ^= 0x01;
        assert!(verifies(&set, alg, &input, &signature).is_empty(), "{alg}");
    }
}

#[test]
fn a_signature_never_verifies_under_another_algorithm() {
    // Same key, other hash or padding (RS256 vs PS256 vs RS384, HS256 vs HS512), or another key
    // type altogether: no algorithm confusion.
    let set = every_key_type();
    for signed_as in Alg::ALL {
        let (input, signature) = signed(signed_as);
        for alg in Alg::ALL.into_iter().filter(|a| *a != signed_as) {
            assert!(
                verifies(&set, alg, input.as_bytes(), &signature).is_empty(),
                "{signed_as} signature checked as {alg}"
            );
        }
    }
}

#[test]
fn a_key_restricted_by_alg_refuses_its_other_algorithms() {
    let mut jwk = rsa_jwk(RSA_A_PEM, None);
    jwk["alg"] = json!("PS256");
    let set = KeySet::from_value(&json!({"keys": [jwk]})).unwrap();
    let (input, signature) = signed(Alg::Rs256);
    assert!(verifies(&set, Alg::Rs256, input.as_bytes(), &signature).is_empty());
    let (input, signature) = signed(Alg::Ps256);
    assert_eq!(
        verifies(&set, Alg::Ps256, input.as_bytes(), &signature),
        ["RSA"]
    );
}

#[test]
fn another_key_of_the_same_type_does_not_verify() {
    let set = KeySet::from_value(&json!({"keys": [
        rsa_jwk(RSA_B_PEM, None),
        {"kty": "oct", "k": b64(&[7; 32])},
    ]}))
    .unwrap();
    for alg in [Alg::Rs256, Alg::Ps512, Alg::Hs256, Alg::Hs384] {
        let (input, signature) = signed(alg);
        assert!(
            verifies(&set, alg, input.as_bytes(), &signature).is_empty(),
            "{alg}"
        );
    }
}

#[test]
fn signatures_of_the_wrong_size_are_refused_without_panicking() {
    let set = every_key_type();
    for alg in Alg::ALL {
        let (input, signature) = signed(alg);
        let mut long = signature.clone();
        long.push(0);
        let huge = vec![0xff; 64 * 1024];
        for bad in [&[][..], &signature[..1], &signature[1..], &long, &huge] {
            assert!(
                verifies(&set, alg, input.as_bytes(), bad).is_empty(),
                "{alg}: {} bytes",
                bad.len()
            );
        }
    }
    // An all-zero ECDSA signature (r = s = 0) is invalid, not a crash.
    let (input, _) = signed(Alg::Es256);
    assert!(verifies(&set, Alg::Es256, input.as_bytes(), &[0; 64]).is_empty());
}

#[test]
fn hmac_tags_compare_in_full() {
    assert!(ct_eq(b"abc", b"abc"));
    assert!(!ct_eq(b"abc", b"abd"));
    assert!(!ct_eq(b"abc", b"ab"));
    assert!(!ct_eq(b"", b"a"));
}
