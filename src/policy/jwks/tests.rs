use serde_json::{json, Value};
#[cfg(target_family = "wasm")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use super::fixtures::*;
use super::*;
use jwt_simple::prelude::{Duration, UnixTimeStamp};

fn strict_err(jwks: Value) -> String {
    KeySet::from_value(&jwks).unwrap_err().to_string()
}

fn algs(set: &KeySet) -> Vec<Vec<&'static str>> {
    set.keys()
        .map(|k| {
            Alg::ALL
                .iter()
                .filter(|a| k.verifier(**a).is_some())
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
fn remote_set_may_repeat_a_kid_and_keeps_every_usable_key() {
    // As Envoy's jwt_authn: an IdP rolling a key may publish two under one kid.
    let body = json!({"keys": [
        rsa_jwk(RSA_A_PEM, Some("k")),
        {"kty": "nope", "kid": "k"},
        p256_jwk(Some("k")),
        rsa_jwk(RSA_B_PEM, Some("k")),
    ]})
    .to_string();
    let (set, skipped) = KeySet::from_remote(body.as_bytes()).unwrap();
    let kinds: Vec<_> = set.keys().map(|k| (k.kid().unwrap(), k.kind)).collect();
    assert_eq!(kinds, [("k", "RSA"), ("k", "EC P-256"), ("k", "RSA")]);
    assert_eq!(skipped.len(), 1);
}

#[test]
fn debug_output_shows_kids_but_no_key_material() {
    let set =
        KeySet::from_value(&json!({"keys": [oct_jwk(Some("hmac")), p256_jwk(None)]})).unwrap();
    let shown = format!("{set:?}");
    assert_eq!(shown, r#"[("hmac", "oct"), ("-", "EC P-256")]"#);
}

#[test]
fn jwk_members_must_be_canonical_base64url() {
    let jwk = ed25519_jwk(None);
    // 32 bytes: 43 characters, the last carrying 2 unused bits.
    let variants = respellings(jwk["x"].as_str().unwrap());
    assert_eq!(variants.len(), 3);
    for variant in variants {
        let mut respelled = jwk.clone();
        respelled["x"] = json!(variant);
        assert_eq!(
            strict_err(json!({"keys": [respelled]})),
            "keys[0].x: not valid base64url"
        );
    }
    for bad in ["a+b/", "a", "aGk==", "aGk==="] {
        let mut jwk = oct_jwk(None);
        jwk["k"] = json!(bad);
        assert_eq!(
            strict_err(json!({"keys": [jwk]})),
            "keys[0].k: not valid base64url",
            "{bad}"
        );
    }
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

/// A token minted by jwt-simple for `alg` (RSA key A), without kid.
fn signed(alg: Alg) -> String {
    mint(alg.as_str(), None, &base_claims())
}

/// The types of the keys whose verifier for `alg` accepts `token` (jwt-simple at `NOW`).
fn verifies(set: &KeySet, alg: Alg, token: &str) -> Vec<&'static str> {
    let options = VerificationOptions {
        artificial_time: Some(UnixTimeStamp::from_secs(NOW)),
        time_tolerance: Some(Duration::from_secs(60)),
        ..VerificationOptions::default()
    };
    set.keys()
        .filter(|k| {
            k.verifier(alg)
                .is_some_and(|v| v.verify(token, options.clone()).is_ok())
        })
        .map(|k| k.kind)
        .collect()
}

/// `token` with its signature replaced by `signature`.
fn with_signature(token: &str, signature: &[u8]) -> String {
    let (input, _) = token.rsplit_once('.').unwrap();
    format!("{input}.{}", b64(signature))
}

fn signature_of(token: &str) -> Vec<u8> {
    use ct_codecs::{Base64UrlSafeNoPadding, Decoder};
    Base64UrlSafeNoPadding::decode_to_vec(token.rsplit_once('.').unwrap().1, None).unwrap()
}

#[test]
fn each_algorithm_verifies_with_exactly_its_key() {
    let set = every_key_type();
    for alg in Alg::ALL {
        let expected = match alg {
            Alg::Hs256 | Alg::Hs384 | Alg::Hs512 => "oct",
            Alg::Es256 => "EC P-256",
            Alg::Es384 => "EC P-384",
            Alg::EdDsa => "OKP Ed25519",
            _ => "RSA",
        };
        assert_eq!(verifies(&set, alg, &signed(alg)), [expected], "{alg}");
    }
}

#[test]
fn tampered_signatures_and_inputs_do_not_verify() {
    let set = every_key_type();
    for alg in Alg::ALL {
        let token = signed(alg);
        let signature = signature_of(&token);
        for i in [0, signature.len() / 2, signature.len() - 1] {
            let mut bad = signature.clone();
            bad[i] ^= 0x01;
            assert!(
                verifies(&set, alg, &with_signature(&token, &bad)).is_empty(),
                "{alg} byte {i}"
            );
        }
        let evil = json!({"tenant_id": "globex"}).to_string();
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        parts[1] = b64(evil.as_bytes());
        assert!(verifies(&set, alg, &parts.join(".")).is_empty(), "{alg}");
    }
}

#[test]
fn a_signature_never_verifies_under_another_algorithm() {
    // Same key, other hash or padding (RS256 vs PS256 vs RS384, HS256 vs HS512), or another key
    // type altogether: no algorithm confusion.
    let set = every_key_type();
    for signed_as in Alg::ALL {
        let token = signed(signed_as);
        let (header, rest) = token.split_once('.').unwrap();
        let _ = header;
        for alg in Alg::ALL.into_iter().filter(|a| *a != signed_as) {
            let relabelled = format!(
                "{}.{rest}",
                b64(json!({"alg": alg.as_str(), "typ": "JWT"})
                    .to_string()
                    .as_bytes())
            );
            assert!(
                verifies(&set, alg, &relabelled).is_empty(),
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
    assert!(verifies(&set, Alg::Rs256, &signed(Alg::Rs256)).is_empty());
    assert_eq!(verifies(&set, Alg::Ps256, &signed(Alg::Ps256)), ["RSA"]);
}

#[test]
fn another_key_of_the_same_type_does_not_verify() {
    let set = KeySet::from_value(&json!({"keys": [
        rsa_jwk(RSA_B_PEM, None),
        {"kty": "oct", "k": b64(&[7; 64])},
    ]}))
    .unwrap();
    for alg in [Alg::Rs256, Alg::Ps512, Alg::Hs256, Alg::Hs384] {
        assert!(verifies(&set, alg, &signed(alg)).is_empty(), "{alg}");
    }
}

#[test]
fn signatures_of_the_wrong_size_are_refused_without_panicking() {
    let set = every_key_type();
    for alg in Alg::ALL {
        let token = signed(alg);
        let signature = signature_of(&token);
        let mut long = signature.clone();
        long.push(0);
        let huge = vec![0xff; 64 * 1024];
        for bad in [&[][..], &signature[..1], &signature[1..], &long, &huge] {
            assert!(
                verifies(&set, alg, &with_signature(&token, bad)).is_empty(),
                "{alg}: {} bytes",
                bad.len()
            );
        }
    }
    // An all-zero ECDSA signature (r = s = 0) is invalid, not a crash.
    let token = with_signature(&signed(Alg::Es256), &[0; 64]);
    assert!(verifies(&set, Alg::Es256, &token).is_empty());
}

#[test]
fn rsa_signature_values_at_or_above_the_modulus_are_refused() {
    // s' = s + n is congruent to s: a verifier that only checks the length (as rsa's
    // `RsaPublicKey::verify` with `Pss`) takes it; RFC 8017 §8.1.2 (and §8.2.2) require s < n,
    // which jwt-simple's backend (rsa's pss/pkcs1v15 VerifyingKey) checks.
    use ct_codecs::{Base64UrlSafeNoPadding, Decoder};
    let jwk = rsa_jwk(RSA_A_PEM, None);
    let n = Base64UrlSafeNoPadding::decode_to_vec(jwk["n"].as_str().unwrap(), None).unwrap();
    let set = every_key_type();
    for alg in [Alg::Ps256, Alg::Ps384, Alg::Ps512, Alg::Rs256] {
        let mut respelled = 0;
        for jti in 0..64 {
            let mut claims = base_claims();
            claims["jti"] = json!(format!("j{jti}"));
            let token = mint(alg.as_str(), None, &claims);
            assert_eq!(verifies(&set, alg, &token), ["RSA"], "{alg}");
            let Some(second) = plus_modulus(&signature_of(&token), &n) else {
                continue;
            };
            assert_eq!(second.len(), 256);
            let token = with_signature(&token, &second);
            assert!(
                verifies(&set, alg, &token).is_empty(),
                "{alg}: s + n verified"
            );
            respelled += 1;
        }
        assert!(respelled > 0, "{alg}: no signature had room for s + n");
    }
}

#[test]
fn non_canonical_signature_spellings_do_not_verify_in_jwt_simple_either() {
    // The front check refuses them first (identity::token); jwt-simple decodes with ct-codecs
    // and refuses them on its own.
    let set = every_key_type();
    for alg in [Alg::Es256, Alg::Rs256, Alg::EdDsa, Alg::Hs512] {
        let variants = signature_respellings(&signed(alg));
        assert_eq!(variants.len(), 15, "{alg}");
        for variant in variants {
            assert!(verifies(&set, alg, &variant).is_empty(), "{alg}");
        }
    }
}

#[test]
fn hmac_keys_verify_only_the_algorithms_their_length_allows() {
    // RFC 7518 §3.2: a key at least as long as the hash output.
    for (bytes, expected) in [
        (32, vec!["HS256"]),
        (47, vec!["HS256"]),
        (48, vec!["HS256", "HS384"]),
        (63, vec!["HS256", "HS384"]),
        (64, vec!["HS256", "HS384", "HS512"]),
    ] {
        let set = KeySet::from_value(&json!({"keys": [{"kty": "oct", "k": b64(&vec![7; bytes])}]}))
            .unwrap();
        assert_eq!(algs(&set), vec![expected], "{bytes} bytes");
    }
    // A 32-byte key gets no HS384 or HS512 verifier, though jwt-simple alone would take such a
    // token (it asks for 12 bytes): the length rule is the filter's.
    let secret = [9u8; 32];
    let set = KeySet::from_value(&json!({"keys": [{"kty": "oct", "k": b64(&secret)}]})).unwrap();
    for alg in [Alg::Hs384, Alg::Hs512] {
        assert!(set.keys().all(|k| k.verifier(alg).is_none()), "{alg}");
    }
    use jwt_simple::prelude::{Claims, HS384Key, MACLike};
    let key = HS384Key::from_bytes(&secret);
    let token = key
        .authenticate(Claims::create(Duration::from_secs(600)))
        .unwrap();
    assert!(Verifier::Hs384(key)
        .verify(&token, VerificationOptions::default())
        .is_ok());
}

#[test]
fn hmac_key_whose_alg_its_length_does_not_allow_is_refused() {
    for (alg, bytes, needed) in [("HS384", 32, 48), ("HS512", 48, 64), ("HS512", 63, 64)] {
        assert_eq!(
            strict_err(json!({"keys": [{"kty": "oct", "alg": alg, "k": b64(&vec![7; bytes])}]})),
            format!("keys[0].k: HMAC secret is {bytes} bytes; {alg} needs at least {needed} (RFC 7518 §3.2)")
        );
    }
    let set =
        KeySet::from_value(&json!({"keys": [{"kty": "oct", "alg": "HS384", "k": b64(&[7; 48])}]}))
            .unwrap();
    assert_eq!(algs(&set), vec![vec!["HS384"]]);
}

#[test]
fn key_ops_without_verify_make_no_signing_key() {
    let with_ops = |ops: Value| {
        let mut jwk = rsa_jwk(RSA_A_PEM, Some("k"));
        jwk["key_ops"] = ops;
        jwk
    };
    for ops in [json!(["encrypt"]), json!(["sign"]), json!([])] {
        assert_eq!(
            strict_err(json!({"keys": [with_ops(ops.clone())]})),
            "keys[0].key_ops: does not include \"verify\": the key may not verify signatures",
            "{ops}"
        );
    }
    for ops in [json!("verify"), json!([1])] {
        assert_eq!(
            strict_err(json!({"keys": [with_ops(ops.clone())]})),
            "keys[0].key_ops: must be an array of strings",
            "{ops}"
        );
    }
    for ops in [json!(["verify"]), json!(["sign", "verify"])] {
        assert!(KeySet::from_value(&json!({"keys": [with_ops(ops)]})).is_ok());
    }
    // A remote set skips such a key.
    let body = json!({"keys": [with_ops(json!(["encrypt"])), p256_jwk(Some("ec"))]}).to_string();
    let (set, skipped) = KeySet::from_remote(body.as_bytes()).unwrap();
    assert_eq!(set.len(), 1);
    assert_eq!(skipped[0].path, "keys[0].key_ops");
}

#[test]
fn ed25519_keys_are_validated_when_loaded() {
    let with_x = |x: &[u8]| {
        let mut jwk = ed25519_jwk(None);
        jwk["x"] = json!(b64(x));
        json!({"keys": [jwk]})
    };
    // Small-order points: the identity, the point of order 2 (y = -1), one of order 4 (y = 0).
    let identity = {
        let mut p = [0u8; 32];
        p[0] = 1;
        p
    };
    let mut minus_one = [0xffu8; 32];
    minus_one[0] = 0xec;
    minus_one[31] = 0x7f;
    for point in [identity, minus_one, [0u8; 32]] {
        assert_eq!(
            strict_err(with_x(&point)),
            "keys[0].x: Ed25519 public key is a point of small order"
        );
    }
    // y = 2: no x satisfies the curve equation; y = p (non-canonical encoding of 0).
    let mut two = [0u8; 32];
    two[0] = 2;
    let mut p = [0xffu8; 32];
    p[0] = 0xed;
    p[31] = 0x7f;
    for point in [two, p] {
        assert_eq!(
            strict_err(with_x(&point)),
            "keys[0].x: not an Ed25519 public key (no canonical curve point)"
        );
    }
    // A remote set skips it.
    let body = json!({"keys": [with_x(&identity)["keys"][0], ed25519_jwk(Some("ok"))]}).to_string();
    let (set, skipped) = KeySet::from_remote(body.as_bytes()).unwrap();
    assert_eq!(set.len(), 1);
    assert_eq!(skipped[0].path, "keys[0].x");
}
