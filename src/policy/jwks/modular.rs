//! Arithmetic modulo an odd number of up to 384 bits, in Montgomery form (32-bit limbs, which
//! wasm32 multiplies natively). It serves ECDSA verification, which only ever handles public
//! values, so nothing here tries to run in constant time.

use std::cmp::Ordering;

pub(super) const LIMBS: usize = 12;

/// A number below 2^384, least significant limb first.
pub(super) type Limbs = [u32; LIMBS];

pub(super) const ZERO: Limbs = [0; LIMBS];

/// The number for big-endian `bytes`; None if it needs more than 384 bits.
pub(super) fn from_be_bytes(bytes: &[u8]) -> Option<Limbs> {
    let mut out = ZERO;
    let mut chunks = bytes.rchunks(4);
    for limb in out.iter_mut() {
        let Some(chunk) = chunks.next() else { break };
        *limb = chunk
            .iter()
            .fold(0u32, |acc, byte| (acc << 8) | u32::from(*byte));
    }
    chunks
        .all(|chunk| chunk.iter().all(|byte| *byte == 0))
        .then_some(out)
}

pub(super) fn cmp(a: &Limbs, b: &Limbs) -> Ordering {
    a.iter().rev().cmp(b.iter().rev())
}

pub(super) fn is_zero(a: &Limbs) -> bool {
    a.iter().all(|limb| *limb == 0)
}

/// `a - b` and whether it borrowed.
pub(super) fn sub(a: &Limbs, b: &Limbs) -> (Limbs, bool) {
    let mut out = ZERO;
    let mut borrow = false;
    for ((o, x), y) in out.iter_mut().zip(a).zip(b) {
        let (d, b1) = x.overflowing_sub(*y);
        let (d, b2) = d.overflowing_sub(u32::from(borrow));
        *o = d;
        borrow = b1 || b2;
    }
    (out, borrow)
}

/// `a + b` and whether it carried out of 384 bits.
fn add(a: &Limbs, b: &Limbs) -> (Limbs, bool) {
    let mut out = ZERO;
    let mut carry = false;
    for ((o, x), y) in out.iter_mut().zip(a).zip(b) {
        let (s, c1) = x.overflowing_add(*y);
        let (s, c2) = s.overflowing_add(u32::from(carry));
        *o = s;
        carry = c1 || c2;
    }
    (out, carry)
}

/// Bit `i` of `a`.
pub(super) fn bit(a: &Limbs, i: usize) -> bool {
    a.get(i / 32)
        .is_some_and(|limb| (limb >> (i % 32)) & 1 == 1)
}

/// An odd modulus `m` and what Montgomery multiplication needs for it (R = 2^(32·n), n the
/// limbs `m` uses).
pub(super) struct Modulus {
    m: Limbs,
    n: usize,
    /// -m⁻¹ mod 2^32.
    m_inv: u32,
    /// R mod m: one, in Montgomery form.
    one: Limbs,
    /// R² mod m.
    r2: Limbs,
}

impl Modulus {
    /// `m` must be odd and above 1.
    pub(super) fn new(m: Limbs) -> Modulus {
        let n = LIMBS - m.iter().rev().take_while(|limb| **limb == 0).count();
        let m0 = m.first().copied().unwrap_or(1);
        // Newton's iteration doubles the correct low bits of m0⁻¹ each round: 1 → 32 in 5.
        let inv = (0..5).fold(1u32, |inv, _| {
            inv.wrapping_mul(2u32.wrapping_sub(m0.wrapping_mul(inv)))
        });
        let mut modulus = Modulus {
            m,
            n,
            m_inv: inv.wrapping_neg(),
            one: ZERO,
            r2: ZERO,
        };
        // 2^k mod m by doubling: R at k = 32n, R² at k = 64n.
        let mut x = ZERO;
        if let Some(low) = x.first_mut() {
            *low = 1;
        }
        for k in 1..=64 * n {
            x = modulus.add(&x, &x);
            if k == 32 * n {
                modulus.one = x;
            }
        }
        modulus.r2 = x;
        modulus
    }

    pub(super) fn modulus(&self) -> &Limbs {
        &self.m
    }

    /// `a + b mod m`, for `a`, `b` below m.
    pub(super) fn add(&self, a: &Limbs, b: &Limbs) -> Limbs {
        let (s, carry) = add(a, b);
        if carry || cmp(&s, &self.m) != Ordering::Less {
            sub(&s, &self.m).0
        } else {
            s
        }
    }

    /// `a - b mod m`, for `a`, `b` below m.
    pub(super) fn sub(&self, a: &Limbs, b: &Limbs) -> Limbs {
        let (d, borrow) = sub(a, b);
        if borrow {
            add(&d, &self.m).0
        } else {
            d
        }
    }

    /// `a·b·R⁻¹ mod m` (CIOS), for `a`, `b` below m.
    pub(super) fn mul(&self, a: &Limbs, b: &Limbs) -> Limbs {
        let n = self.n;
        let mut t = [0u32; LIMBS + 2];
        for ai in a.iter().take(n) {
            let mut carry = 0u64;
            for (tj, bj) in t.iter_mut().zip(b).take(n) {
                let s = u64::from(*tj) + u64::from(*ai) * u64::from(*bj) + carry;
                *tj = s as u32;
                carry = s >> 32;
            }
            add_at(&mut t, n, carry);
            let u = t.first().copied().unwrap_or(0).wrapping_mul(self.m_inv);
            let mut carry = 0u64;
            for (tj, mj) in t.iter_mut().zip(&self.m).take(n) {
                let s = u64::from(*tj) + u64::from(u) * u64::from(*mj) + carry;
                *tj = s as u32;
                carry = s >> 32;
            }
            add_at(&mut t, n, carry);
            // The low limb is now zero: divide by 2^32.
            t.copy_within(1..n + 2, 0);
            if let Some(top) = t.get_mut(n + 1) {
                *top = 0;
            }
        }
        // t < 2m: its limb n, if any, comes along, so the subtraction below is exact; only a
        // 384-bit modulus can leave a carry outside `out`.
        let mut out = ZERO;
        for (o, ti) in out.iter_mut().zip(&t).take(n + 1) {
            *o = *ti;
        }
        let overflow = n == LIMBS && t.get(n).is_some_and(|limb| *limb != 0);
        if overflow || cmp(&out, &self.m) != Ordering::Less {
            sub(&out, &self.m).0
        } else {
            out
        }
    }

    /// `a` (below m) in Montgomery form.
    pub(super) fn mont(&self, a: &Limbs) -> Limbs {
        self.mul(a, &self.r2)
    }

    /// `a` out of Montgomery form.
    pub(super) fn plain(&self, a: &Limbs) -> Limbs {
        let mut one = ZERO;
        if let Some(low) = one.first_mut() {
            *low = 1;
        }
        self.mul(a, &one)
    }

    pub(super) fn one(&self) -> Limbs {
        self.one
    }

    /// `a^e`, `a` and the result in Montgomery form, `e` a plain number.
    pub(super) fn pow(&self, a: &Limbs, e: &Limbs) -> Limbs {
        let mut acc = self.one;
        for i in (0..32 * self.n).rev() {
            acc = self.mul(&acc, &acc);
            if bit(e, i) {
                acc = self.mul(&acc, a);
            }
        }
        acc
    }

    /// `a⁻¹` (Fermat: m must be prime), in Montgomery form; zero for zero.
    pub(super) fn inv(&self, a: &Limbs) -> Limbs {
        let mut two = ZERO;
        if let Some(low) = two.first_mut() {
            *low = 2;
        }
        self.pow(a, &sub(&self.m, &two).0)
    }
}

/// Adds `carry` into `t` from limb `at` up.
fn add_at(t: &mut [u32], at: usize, carry: u64) {
    let mut carry = carry;
    for limb in t.iter_mut().skip(at) {
        if carry == 0 {
            break;
        }
        let s = u64::from(*limb) + carry;
        *limb = s as u32;
        carry = s >> 32;
    }
}

#[cfg(test)]
mod tests;
