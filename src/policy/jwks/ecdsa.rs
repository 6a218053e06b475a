//! ECDSA signature verification (FIPS 186-4 §6.4) over NIST P-256 and P-384, for ES256 and
//! ES384. Only public values are involved (key, signature, message), so variable-time
//! arithmetic is fine. Points use Jacobian coordinates on y² = x³ − 3x + b.

use std::cmp::Ordering;

use super::modular::{self, bit, cmp, from_be_bytes, is_zero, Limbs, Modulus, ZERO};

/// A curve's parameters, as plain numbers.
pub(super) struct Curve {
    /// Bytes of a coordinate, a scalar and the message digest.
    size: usize,
    p: Limbs,
    n: Limbs,
    b: Limbs,
    gx: Limbs,
    gy: Limbs,
}

/// P-256 (FIPS 186-4 §D.1.2), limbs little-endian.
pub(super) static P256: Curve = Curve {
    size: 32,
    p: [
        0xffffffff, 0xffffffff, 0xffffffff, 0x00000000, 0x00000000, 0x00000000, 0x00000001,
        0xffffffff, 0x00000000, 0x00000000, 0x00000000, 0x00000000,
    ],
    n: [
        0xfc632551, 0xf3b9cac2, 0xa7179e84, 0xbce6faad, 0xffffffff, 0xffffffff, 0x00000000,
        0xffffffff, 0x00000000, 0x00000000, 0x00000000, 0x00000000,
    ],
    b: [
        0x27d2604b, 0x3bce3c3e, 0xcc53b0f6, 0x651d06b0, 0x769886bc, 0xb3ebbd55, 0xaa3a93e7,
        0x5ac635d8, 0x00000000, 0x00000000, 0x00000000, 0x00000000,
    ],
    gx: [
        0xd898c296, 0xf4a13945, 0x2deb33a0, 0x77037d81, 0x63a440f2, 0xf8bce6e5, 0xe12c4247,
        0x6b17d1f2, 0x00000000, 0x00000000, 0x00000000, 0x00000000,
    ],
    gy: [
        0x37bf51f5, 0xcbb64068, 0x6b315ece, 0x2bce3357, 0x7c0f9e16, 0x8ee7eb4a, 0xfe1a7f9b,
        0x4fe342e2, 0x00000000, 0x00000000, 0x00000000, 0x00000000,
    ],
};
/// P-384 (FIPS 186-4 §D.1.2), limbs little-endian.
pub(super) static P384: Curve = Curve {
    size: 48,
    p: [
        0xffffffff, 0x00000000, 0x00000000, 0xffffffff, 0xfffffffe, 0xffffffff, 0xffffffff,
        0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff,
    ],
    n: [
        0xccc52973, 0xecec196a, 0x48b0a77a, 0x581a0db2, 0xf4372ddf, 0xc7634d81, 0xffffffff,
        0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff,
    ],
    b: [
        0xd3ec2aef, 0x2a85c8ed, 0x8a2ed19d, 0xc656398d, 0x5013875a, 0x0314088f, 0xfe814112,
        0x181d9c6e, 0xe3f82d19, 0x988e056b, 0xe23ee7e4, 0xb3312fa7,
    ],
    gx: [
        0x72760ab7, 0x3a545e38, 0xbf55296c, 0x5502f25d, 0x82542a38, 0x59f741e0, 0x8ba79b98,
        0x6e1d3b62, 0xf320ad74, 0x8eb1c71e, 0xbe8b0537, 0xaa87ca22,
    ],
    gy: [
        0x90ea0e5f, 0x7a431d7c, 0x1d7e819d, 0x0a60b1ce, 0xb5f0b8c0, 0xe9da3113, 0x289a147c,
        0xf8f41dbd, 0x9292dc29, 0x5d9e98bf, 0x96262c6f, 0x3617de4a,
    ],
};
/// A public key checked to be a point of its curve (both curves have prime order, so any
/// point but infinity generates the whole group).
#[derive(Clone)]
pub(super) struct PublicKey {
    curve: &'static Curve,
    x: Limbs,
    y: Limbs,
}

impl PublicKey {
    /// From an uncompressed SEC1 point (`04 || x || y`); None if it is not on the curve.
    pub(super) fn from_sec1(curve: &'static Curve, point: &[u8]) -> Option<PublicKey> {
        let (tag, xy) = point.split_first()?;
        if *tag != 4 || xy.len() != 2 * curve.size {
            return None;
        }
        let (x, y) = xy.split_at(curve.size);
        let (x, y) = (from_be_bytes(x)?, from_be_bytes(y)?);
        if cmp(&x, &curve.p) != Ordering::Less || cmp(&y, &curve.p) != Ordering::Less {
            return None;
        }
        let f = Modulus::new(curve.p);
        let (xm, ym) = (f.mont(&x), f.mont(&y));
        // y² = x³ − 3x + b
        let x3 = f.mul(&f.mul(&xm, &xm), &xm);
        let three_x = f.add(&f.add(&xm, &xm), &xm);
        let rhs = f.add(&f.sub(&x3, &three_x), &f.mont(&curve.b));
        (f.mul(&ym, &ym) == rhs).then_some(PublicKey { curve, x, y })
    }

    /// Whether this key is a point of `curve`.
    pub(super) fn is(&self, curve: &'static Curve) -> bool {
        std::ptr::eq(self.curve, curve)
    }

    /// Whether `signature` (`r || s`, big-endian, `size` bytes each) signs `digest` (the hash
    /// of the message, `size` bytes).
    pub(super) fn verify(&self, digest: &[u8], signature: &[u8]) -> bool {
        let curve = self.curve;
        if signature.len() != 2 * curve.size || digest.len() != curve.size {
            return false;
        }
        let (r, s) = signature.split_at(curve.size);
        let (Some(r), Some(s), Some(e)) =
            (from_be_bytes(r), from_be_bytes(s), from_be_bytes(digest))
        else {
            return false;
        };
        let in_range = |v: &Limbs| !is_zero(v) && cmp(v, &curve.n) == Ordering::Less;
        if !in_range(&r) || !in_range(&s) {
            return false;
        }
        let scalars = Modulus::new(curve.n);
        // The digest is as long as n, so below 2n: one subtraction reduces it.
        let e = reduce_once(&e, scalars.modulus());
        let s_inv = scalars.inv(&scalars.mont(&s));
        // (x·R)·(s⁻¹·R)·R⁻¹ = x·s⁻¹·R, out of Montgomery form: x·s⁻¹.
        let u1 = scalars.plain(&scalars.mul(&scalars.mont(&e), &s_inv));
        let u2 = scalars.plain(&scalars.mul(&scalars.mont(&r), &s_inv));

        let f = Field::new(curve);
        let g = f.point(&curve.gx, &curve.gy);
        let q = f.point(&self.x, &self.y);
        let Some(x) = f.affine_x(&f.double_mul(8 * curve.size, &u1, &g, &u2, &q)) else {
            return false;
        };
        reduce_once(&x, scalars.modulus()) == r
    }
}

/// `v - m` if `v >= m`: for `v` below 2m.
fn reduce_once(v: &Limbs, m: &Limbs) -> Limbs {
    if cmp(v, m) == Ordering::Less {
        *v
    } else {
        modular::sub(v, m).0
    }
}

/// A point in Jacobian coordinates (x = X/Z², y = Y/Z³), Montgomery form; Z = 0 is infinity.
#[derive(Clone, Copy, PartialEq)]
struct Point {
    x: Limbs,
    y: Limbs,
    z: Limbs,
}

/// The curve's field and its point arithmetic.
struct Field {
    f: Modulus,
}

impl Field {
    fn new(curve: &Curve) -> Field {
        Field {
            f: Modulus::new(curve.p),
        }
    }

    fn point(&self, x: &Limbs, y: &Limbs) -> Point {
        Point {
            x: self.f.mont(x),
            y: self.f.mont(y),
            z: self.f.one(),
        }
    }

    fn infinity() -> Point {
        Point {
            x: ZERO,
            y: ZERO,
            z: ZERO,
        }
    }

    /// 2P ("dbl-2001-b", a = −3).
    fn double(&self, p: &Point) -> Point {
        let f = &self.f;
        let delta = f.mul(&p.z, &p.z);
        let gamma = f.mul(&p.y, &p.y);
        let beta = f.mul(&p.x, &gamma);
        let t = f.mul(&f.sub(&p.x, &delta), &f.add(&p.x, &delta));
        let alpha = f.add(&f.add(&t, &t), &t);
        let beta2 = f.add(&beta, &beta);
        let beta4 = f.add(&beta2, &beta2);
        let beta8 = f.add(&beta4, &beta4);
        let x = f.sub(&f.mul(&alpha, &alpha), &beta8);
        let yz = f.add(&p.y, &p.z);
        let z = f.sub(&f.sub(&f.mul(&yz, &yz), &gamma), &delta);
        let gamma2 = f.mul(&gamma, &gamma);
        let g2 = f.add(&gamma2, &gamma2);
        let g4 = f.add(&g2, &g2);
        let g8 = f.add(&g4, &g4);
        let y = f.sub(&f.mul(&alpha, &f.sub(&beta4, &x)), &g8);
        Point { x, y, z }
    }

    /// P + Q ("add-2007-bl"), infinity and P = Q included.
    fn add(&self, p: &Point, q: &Point) -> Point {
        let f = &self.f;
        if is_zero(&p.z) {
            return *q;
        }
        if is_zero(&q.z) {
            return *p;
        }
        let z1z1 = f.mul(&p.z, &p.z);
        let z2z2 = f.mul(&q.z, &q.z);
        let u1 = f.mul(&p.x, &z2z2);
        let u2 = f.mul(&q.x, &z1z1);
        let s1 = f.mul(&f.mul(&p.y, &q.z), &z2z2);
        let s2 = f.mul(&f.mul(&q.y, &p.z), &z1z1);
        let h = f.sub(&u2, &u1);
        let s = f.sub(&s2, &s1);
        if is_zero(&h) {
            return if is_zero(&s) {
                self.double(p)
            } else {
                Self::infinity()
            };
        }
        let r = f.add(&s, &s);
        let h2 = f.add(&h, &h);
        let i = f.mul(&h2, &h2);
        let j = f.mul(&h, &i);
        let v = f.mul(&u1, &i);
        let x = f.sub(&f.sub(&f.mul(&r, &r), &j), &f.add(&v, &v));
        let s1j = f.mul(&s1, &j);
        let y = f.sub(&f.mul(&r, &f.sub(&v, &x)), &f.add(&s1j, &s1j));
        let zz = f.add(&p.z, &q.z);
        let z = f.mul(&f.sub(&f.sub(&f.mul(&zz, &zz), &z1z1), &z2z2), &h);
        Point { x, y, z }
    }

    /// a·P + b·Q for scalars of `bits` bits, both at once (Shamir's trick).
    fn double_mul(&self, bits: usize, a: &Limbs, p: &Point, b: &Limbs, q: &Point) -> Point {
        let pq = self.add(p, q);
        let mut acc = Self::infinity();
        for i in (0..bits).rev() {
            acc = self.double(&acc);
            acc = match (bit(a, i), bit(b, i)) {
                (true, true) => self.add(&acc, &pq),
                (true, false) => self.add(&acc, p),
                (false, true) => self.add(&acc, q),
                (false, false) => acc,
            };
        }
        acc
    }

    /// The affine x of `p`, a plain number; None for infinity.
    fn affine_x(&self, p: &Point) -> Option<Limbs> {
        if is_zero(&p.z) {
            return None;
        }
        let z2 = self.f.mul(&p.z, &p.z);
        Some(self.f.plain(&self.f.mul(&p.x, &self.f.inv(&z2))))
    }
}

#[cfg(test)]
mod tests;
