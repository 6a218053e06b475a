use super::*;
#[cfg(target_family = "wasm")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use crate::policy::jwks::base64url_decode;
use crate::policy::jwks::fixtures::*;
use serde_json::json;

fn be(limbs: &Limbs, size: usize) -> Vec<u8> {
    let bytes: Vec<u8> = limbs.iter().rev().flat_map(|l| l.to_be_bytes()).collect();
    bytes[bytes.len() - size..].to_vec()
}

fn sec1(curve: &Curve, x: &Limbs, y: &Limbs) -> Vec<u8> {
    [vec![4], be(x, curve.size), be(y, curve.size)].concat()
}

/// A message digest and its signature.
type Signed = (Vec<u8>, Vec<u8>);

/// The test key of `curve` and `count` signatures jwt-simple made with it.
fn signed(curve: &'static Curve, count: u64) -> (PublicKey, Vec<Signed>) {
    let (alg, jwk) = if curve.size == 32 {
        ("ES256", p256_jwk(None))
    } else {
        ("ES384", p384_jwk(None))
    };
    let coordinate = |name: &str| base64url_decode(jwk[name].as_str().unwrap(), false).unwrap();
    let point = [vec![4], coordinate("x"), coordinate("y")].concat();
    let key = PublicKey::from_sec1(curve, &point).unwrap();
    let pairs = (0..count)
        .map(|i| {
            let token = mint(alg, None, &json!({ "n": i }));
            let (input, signature) = token.rsplit_once('.').unwrap();
            let digest = if curve.size == 32 {
                hmac_sha256::Hash::hash(input.as_bytes()).to_vec()
            } else {
                hmac_sha512::sha384::Hash::hash(input.as_bytes()).to_vec()
            };
            (digest, base64url_decode(signature, false).unwrap())
        })
        .collect();
    (key, pairs)
}

#[test]
fn signatures_by_an_independent_implementation_verify() {
    for curve in [&P256, &P384] {
        let (key, pairs) = signed(curve, 8);
        for (digest, signature) in &pairs {
            assert!(key.verify(digest, signature), "{}", curve.size);
        }
        // Each signature fits its own digest only.
        let (digest, _) = &pairs[0];
        let (_, other) = &pairs[1];
        assert!(!key.verify(digest, other));
    }
}

#[test]
fn any_changed_bit_fails() {
    for curve in [&P256, &P384] {
        let (key, pairs) = signed(curve, 1);
        let (digest, signature) = &pairs[0];
        for i in [0, curve.size - 1, curve.size, 2 * curve.size - 1] {
            let mut bad = signature.clone();
            bad[i] ^= 0x80;
            assert!(!key.verify(digest, &bad), "signature byte {i}");
        }
        let mut bad = digest.clone();
        bad[curve.size / 2] ^= 1;
        assert!(!key.verify(&bad, signature));
    }
}

#[test]
fn out_of_range_signatures_and_wrong_sizes_are_refused() {
    let (key, pairs) = signed(&P256, 1);
    let (digest, signature) = &pairs[0];
    let (r, s) = signature.split_at(32);
    let n = be(&P256.n, 32);
    for bad in [
        [&[0; 32][..], s].concat(),
        [r, &[0; 32][..]].concat(),
        [&n[..], s].concat(),
        [r, &n[..]].concat(),
        vec![0xff; 64],
        signature[..63].to_vec(),
        [&signature[..], &[0][..]].concat(),
    ] {
        assert!(!key.verify(digest, &bad), "{bad:?}");
    }
    assert!(!key.verify(&digest[1..], signature));
    // A P-256 signature is no P-384 one.
    let (key384, _) = signed(&P384, 0);
    assert!(!key384.verify(digest, signature));
}

#[test]
fn public_keys_must_be_points_of_the_curve() {
    for curve in [&P256, &P384] {
        let g = sec1(curve, &curve.gx, &curve.gy);
        assert!(PublicKey::from_sec1(curve, &g).is_some());
        let mut off = g.clone();
        *off.last_mut().unwrap() ^= 1;
        assert!(PublicKey::from_sec1(curve, &off).is_none());
        // Coordinates at or above p, compressed or truncated encodings, the other curve's size.
        assert!(PublicKey::from_sec1(curve, &sec1(curve, &curve.p, &curve.gy)).is_none());
        let mut compressed = g.clone();
        compressed[0] = 2;
        assert!(PublicKey::from_sec1(curve, &compressed).is_none());
        assert!(PublicKey::from_sec1(curve, &g[..g.len() - 1]).is_none());
        assert!(PublicKey::from_sec1(curve, &[]).is_none());
        assert!(PublicKey::from_sec1(curve, &[4; 200]).is_none());
    }
    assert!(PublicKey::from_sec1(&P384, &sec1(&P256, &P256.gx, &P256.gy)).is_none());
}

#[test]
fn the_generator_has_order_n() {
    for curve in [&P256, &P384] {
        let field = Field::new(curve);
        let g = field.point(&curve.gx, &curve.gy);
        let n_minus_1 = modular::sub(&curve.n, &[1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]).0;
        let zero = ZERO;
        // (n − 1)·G = −G, which has G's x; then n·G is infinity.
        let minus_g = field.double_mul(8 * curve.size, &n_minus_1, &g, &zero, &g);
        assert_eq!(field.affine_x(&minus_g), Some(curve.gx));
        assert!(field.affine_x(&field.add(&minus_g, &g)).is_none());
    }
}
