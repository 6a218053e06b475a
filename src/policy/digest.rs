//! Digests as text: lowercase hex, and the short SHA-256 prefixes that name secrets and keys in
//! records without revealing them. A leaf: it imports nothing of the policy.

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        for nibble in [b >> 4, b & 0x0f] {
            if let Some(&d) = DIGITS.get(usize::from(nibble)) {
                out.push(char::from(d));
            }
        }
    }
    out
}

/// The first `digits` hex digits (at most 64) of the SHA-256 of `bytes`.
pub fn sha256_prefix(bytes: &[u8], digits: usize) -> String {
    let digest = hmac_sha256::Hash::hash(bytes);
    let mut text = hex(&digest);
    text.truncate(digits);
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_family = "wasm")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn hex_and_sha256_prefixes() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
        // printf %s abc | sha256sum: ba7816bf8f01cfea414140de5dae2223...
        assert_eq!(sha256_prefix(b"abc", 8), "ba7816bf");
        assert_eq!(sha256_prefix(b"abc", 16), "ba7816bf8f01cfea");
        assert_eq!(sha256_prefix(b"abc", 99).len(), 64);
    }
}
