use super::*;
#[cfg(target_family = "wasm")]
use wasm_bindgen_test::wasm_bindgen_test as test;

fn num(v: u128) -> Limbs {
    from_be_bytes(&v.to_be_bytes()).unwrap()
}

#[test]
fn big_endian_bytes_become_limbs() {
    assert_eq!(num(0x0102_0304_0506), {
        let mut l = ZERO;
        l[0] = 0x0304_0506;
        l[1] = 0x0102;
        l
    });
    assert_eq!(from_be_bytes(&[0; 60]), Some(ZERO));
    assert!(from_be_bytes(&[[1].as_slice(), &[0; 48]].concat()).is_none());
    assert_eq!(from_be_bytes(&[]), Some(ZERO));
}

#[test]
fn montgomery_arithmetic_matches_plain_arithmetic() {
    // A 127-bit prime (2^127 − 1) and a small odd composite: products, sums, powers.
    for m in [(1u128 << 127) - 1, 1_000_003 * 999_983] {
        let md = Modulus::new(num(m));
        let pairs = [
            (3u128, 5u128),
            (m - 1, m - 1),
            (m / 3, m / 7),
            (0, m - 2),
            (1, 1),
        ];
        for (a, b) in pairs {
            let (am, bm) = (md.mont(&num(a)), md.mont(&num(b)));
            let product = md.plain(&md.mul(&am, &bm));
            let expected = mul_mod(a, b, m);
            assert_eq!(product, num(expected), "{a}·{b} mod {m}");
            assert_eq!(md.add(&num(a), &num(b)), num((a + b) % m));
            assert_eq!(md.sub(&num(a), &num(b)), num((a + m - b) % m));
        }
    }
    let p = (1u128 << 127) - 1;
    let md = Modulus::new(num(p));
    let a = md.mont(&num(123_456_789));
    assert_eq!(md.plain(&md.mul(&a, &md.inv(&a))), num(1));
    assert_eq!(
        md.plain(&md.pow(&a, &num(3))),
        num(mul_mod(
            mul_mod(123_456_789, 123_456_789, p),
            123_456_789,
            p
        ))
    );
}

/// `a·b mod m` by shift-and-add (no overflow for m < 2^127).
fn mul_mod(a: u128, b: u128, m: u128) -> u128 {
    let (mut acc, mut a, mut b) = (0u128, a % m, b);
    while b > 0 {
        if b & 1 == 1 {
            acc = (acc + a) % m;
        }
        a = (a + a) % m;
        b >>= 1;
    }
    acc
}

#[test]
fn products_near_a_256_bit_modulus_stay_reduced() {
    // The P-256 prime: (−1)·(−1) = 1 and (−1)·(−2) = 2 take the final subtraction, which must
    // not spill into the unused limbs.
    let mut p = ZERO;
    p[..8].copy_from_slice(&[
        0xffff_ffff,
        0xffff_ffff,
        0xffff_ffff,
        0,
        0,
        0,
        1,
        0xffff_ffff,
    ]);
    let md = Modulus::new(p);
    let minus = |k: u32| md.mont(&sub(&p, &num(u128::from(k))).0);
    assert_eq!(md.plain(&md.mul(&minus(1), &minus(1))), num(1));
    assert_eq!(md.plain(&md.mul(&minus(1), &minus(2))), num(2));
    for k in 1..50 {
        let square = md.mul(&minus(k), &minus(k));
        assert!(square[8..].iter().all(|l| *l == 0));
        assert_eq!(md.plain(&square), num(u128::from(k * k)));
    }
}
