//! TEST-ONLY key material and token minting for the policy unit tests (see README.md here).
//! Compiled only under `cfg(test)`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use jwt_simple::prelude::*;
use serde_json::{json, Map, Value};

pub const RSA_A_PEM: &str = include_str!("rsa-2048-a.pem");
pub const RSA_B_PEM: &str = include_str!("rsa-2048-b.pem");
pub const P256_PEM: &str = include_str!("p256.pem");
pub const P384_PEM: &str = include_str!("p384.pem");
pub const ED25519_PEM: &str = include_str!("ed25519.pem");
pub const HMAC_SECRET_HEX: &str = include_str!("hmac-secret.hex");

/// The "current time" of every test.
pub const NOW: u64 = 1_700_000_000;
pub const ISSUER: &str = "https://idp.example.com";
pub const AUDIENCE: &str = "genai-gateway";

/// base64url without padding.
pub fn b64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

pub fn hmac_secret() -> Vec<u8> {
    let hex = HMAC_SECRET_HEX.trim();
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

fn with_kid(mut jwk: Value, kid: Option<&str>) -> Value {
    if let Some(kid) = kid {
        jwk["kid"] = json!(kid);
    }
    jwk
}

pub fn rsa_jwk(pem: &str, kid: Option<&str>) -> Value {
    let c = RS256KeyPair::from_pem(pem)
        .unwrap()
        .public_key()
        .to_components();
    with_kid(json!({"kty": "RSA", "n": b64(&c.n), "e": b64(&c.e)}), kid)
}

pub fn p256_jwk(kid: Option<&str>) -> Value {
    let pk = ES256KeyPair::from_pem(P256_PEM).unwrap().public_key();
    let point = pk.public_key().to_bytes_uncompressed();
    with_kid(
        json!({"kty": "EC", "crv": "P-256", "x": b64(&point[1..33]), "y": b64(&point[33..65])}),
        kid,
    )
}

pub fn p384_jwk(kid: Option<&str>) -> Value {
    let pk = ES384KeyPair::from_pem(P384_PEM).unwrap().public_key();
    let point = pk.public_key().to_bytes_uncompressed();
    with_kid(
        json!({"kty": "EC", "crv": "P-384", "x": b64(&point[1..49]), "y": b64(&point[49..97])}),
        kid,
    )
}

pub fn ed25519_jwk(kid: Option<&str>) -> Value {
    let pk = Ed25519KeyPair::from_pem(ED25519_PEM).unwrap().public_key();
    with_kid(
        json!({"kty": "OKP", "crv": "Ed25519", "x": b64(&pk.to_bytes())}),
        kid,
    )
}

pub fn oct_jwk(kid: Option<&str>) -> Value {
    with_kid(json!({"kty": "oct", "k": b64(&hmac_secret())}), kid)
}

/// Claims every test token starts from: valid at `NOW` for 10 minutes.
pub fn base_claims() -> Value {
    json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "alice",
        "tenant_id": "acme",
        "iat": NOW,
        "exp": NOW + 600,
    })
}

/// jwt-simple claims whose JSON is exactly `payload`: every claim goes into `custom`.
pub fn exact_claims(payload: &Value) -> JWTClaims<Map<String, Value>> {
    JWTClaims {
        issued_at: None,
        expires_at: None,
        invalid_before: None,
        issuer: None,
        subject: None,
        audiences: None,
        jwt_id: None,
        nonce: None,
        custom: payload.as_object().unwrap().clone(),
    }
}

/// Signs `payload` (serialized exactly as given) with the test key for `alg`, RSA key A for
/// RS*/PS*. The header carries `kid` when given.
pub fn mint(alg: &str, kid: Option<&str>, payload: &Value) -> String {
    mint_with(alg, RSA_A_PEM, kid, payload)
}

/// Like `mint`, with the RSA key given as PEM (ignored by non-RSA algorithms).
pub fn mint_with(alg: &str, rsa_pem: &str, kid: Option<&str>, payload: &Value) -> String {
    let claims = exact_claims(payload);
    macro_rules! sign {
        ($key:expr, $method:ident) => {{
            let key = $key;
            let key = match kid {
                Some(kid) => key.with_key_id(kid),
                None => key,
            };
            key.$method(claims).unwrap()
        }};
    }
    let secret = hmac_secret();
    match alg {
        "HS256" => sign!(HS256Key::from_bytes(&secret), authenticate),
        "HS384" => sign!(HS384Key::from_bytes(&secret), authenticate),
        "HS512" => sign!(HS512Key::from_bytes(&secret), authenticate),
        "RS256" => sign!(RS256KeyPair::from_pem(rsa_pem).unwrap(), sign),
        "RS384" => sign!(RS384KeyPair::from_pem(rsa_pem).unwrap(), sign),
        "RS512" => sign!(RS512KeyPair::from_pem(rsa_pem).unwrap(), sign),
        "PS256" => sign!(PS256KeyPair::from_pem(rsa_pem).unwrap(), sign),
        "PS384" => sign!(PS384KeyPair::from_pem(rsa_pem).unwrap(), sign),
        "PS512" => sign!(PS512KeyPair::from_pem(rsa_pem).unwrap(), sign),
        "ES256" => sign!(ES256KeyPair::from_pem(P256_PEM).unwrap(), sign),
        "ES384" => sign!(ES384KeyPair::from_pem(P384_PEM).unwrap(), sign),
        "EdDSA" => sign!(Ed25519KeyPair::from_pem(ED25519_PEM).unwrap(), sign),
        other => panic!("no test key for {other}"),
    }
}

/// A token with arbitrary header and payload JSON and the given raw signature bytes.
pub fn forge(header: &Value, payload: &Value, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        b64(header.to_string().as_bytes()),
        b64(payload.to_string().as_bytes()),
        b64(signature)
    )
}

/// A token with arbitrary header and payload JSON, HMAC-SHA256-signed with `key`.
pub fn forge_hs256(header: &Value, payload: &Value, key: &[u8]) -> String {
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(payload.to_string().as_bytes())
    );
    let tag = hmac_sha256::HMAC::mac(input.as_bytes(), key);
    format!("{input}.{}", b64(&tag))
}

/// Every other spelling of the base64url `part`: its last character with the same data bits and
/// other values in the unused low bits (none when the length is a multiple of 4). A lax decoder
/// reads each as the same bytes.
pub fn respellings(part: &str) -> Vec<String> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let unused_bits = match part.len() % 4 {
        2 => 4,
        3 => 2,
        _ => 0,
    };
    let (head, last) = part.split_at(part.len() - 1);
    let index = ALPHABET
        .iter()
        .position(|c| *c == last.as_bytes()[0])
        .unwrap();
    (1..1 << unused_bits)
        .map(|low| format!("{head}{}", ALPHABET[index | low] as char))
        .collect()
}

/// `token` with each other spelling of its signature.
pub fn signature_respellings(token: &str) -> Vec<String> {
    let (input, signature) = token.rsplit_once('.').unwrap();
    respellings(signature)
        .into_iter()
        .map(|variant| format!("{input}.{variant}"))
        .collect()
}

/// `s + n` for big-endian numbers of the same length (an RSA signature value plus the
/// modulus); None if the sum needs another byte.
pub fn plus_modulus(s: &[u8], n: &[u8]) -> Option<Vec<u8>> {
    let mut sum = vec![0u8; s.len()];
    let mut carry = 0u16;
    for i in (0..s.len()).rev() {
        let digit = u16::from(s[i]) + u16::from(n[i]) + carry;
        sum[i] = digit as u8;
        carry = digit >> 8;
    }
    (carry == 0).then_some(sum)
}
