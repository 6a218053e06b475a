//! JWK Sets (RFC 7517) turned into ready-to-use verification keys.
//!
//! Each usable JWK becomes one checked public key (RustCrypto `rsa`, `p256`, `p384`;
//! `ed25519-compact`; an HMAC secret) and the JWS algorithms it may verify, built once here, so
//! verifying a token never re-parses key material. Which algorithms a key gets is
//! decided by its type alone (RSA → RS*/PS*, P-256 → ES256, P-384 → ES384, Ed25519 → EdDSA,
//! oct → HS*), narrowed to exactly one when the JWK carries `alg`: that is what makes
//! algorithm-confusion attacks impossible.

use std::collections::HashMap;
use std::fmt;

use serde_json::{Map, Value};

/// RSA moduli below this are refused (RFC 7518 §3.3 asks for at least 2048 bits).
const MIN_RSA_BITS: usize = 2048;
/// The `rsa` crate refuses larger public keys.
const MAX_RSA_BITS: usize = 4096;
/// HMAC secrets shorter than this are refused.
const MIN_OCT_BYTES: usize = 32;

/// A JWS algorithm this filter accepts. Anything else, `none` included, is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alg {
    Hs256,
    Hs384,
    Hs512,
    Rs256,
    Rs384,
    Rs512,
    Ps256,
    Ps384,
    Ps512,
    Es256,
    Es384,
    EdDsa,
}

const RSA_ALGS: [Alg; 6] = [
    Alg::Rs256,
    Alg::Rs384,
    Alg::Rs512,
    Alg::Ps256,
    Alg::Ps384,
    Alg::Ps512,
];
const HMAC_ALGS: [Alg; 3] = [Alg::Hs256, Alg::Hs384, Alg::Hs512];

impl Alg {
    pub const ALL: [Alg; 12] = [
        Alg::Hs256,
        Alg::Hs384,
        Alg::Hs512,
        Alg::Rs256,
        Alg::Rs384,
        Alg::Rs512,
        Alg::Ps256,
        Alg::Ps384,
        Alg::Ps512,
        Alg::Es256,
        Alg::Es384,
        Alg::EdDsa,
    ];

    /// The algorithm for a JOSE `alg` name (case-sensitive, as RFC 7515 requires).
    pub fn parse(name: &str) -> Option<Alg> {
        Some(match name {
            "HS256" => Alg::Hs256,
            "HS384" => Alg::Hs384,
            "HS512" => Alg::Hs512,
            "RS256" => Alg::Rs256,
            "RS384" => Alg::Rs384,
            "RS512" => Alg::Rs512,
            "PS256" => Alg::Ps256,
            "PS384" => Alg::Ps384,
            "PS512" => Alg::Ps512,
            "ES256" => Alg::Es256,
            "ES384" => Alg::Es384,
            "EdDSA" => Alg::EdDsa,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Alg::Hs256 => "HS256",
            Alg::Hs384 => "HS384",
            Alg::Hs512 => "HS512",
            Alg::Rs256 => "RS256",
            Alg::Rs384 => "RS384",
            Alg::Rs512 => "RS512",
            Alg::Ps256 => "PS256",
            Alg::Ps384 => "PS384",
            Alg::Ps512 => "PS512",
            Alg::Es256 => "ES256",
            Alg::Es384 => "ES384",
            Alg::EdDsa => "EdDSA",
        }
    }
}

impl fmt::Display for Alg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A JWK's public key, decoded and checked once when the key set is loaded.
#[derive(Clone)]
enum PublicKey {
    Rsa(rsa::RsaPublicKey),
    P256(p256::ecdsa::VerifyingKey),
    P384(p384::ecdsa::VerifyingKey),
    Ed25519(ed25519_compact::PublicKey),
    /// An HMAC secret.
    Oct(Vec<u8>),
}

impl PublicKey {
    /// Whether `signature` is valid for `input` under `alg`. An algorithm of another key
    /// type never verifies: a token cannot choose how its key is used.
    fn verify(&self, alg: Alg, input: &[u8], signature: &[u8]) -> bool {
        use hmac_sha256::Hash as Sha256;
        use hmac_sha512::{sha384::Hash as Sha384, Hash as Sha512};
        use rsa::{pss::Pss, Pkcs1v15Sign};
        match (self, alg) {
            (PublicKey::Oct(k), Alg::Hs256) => ct_eq(&hmac_sha256::HMAC::mac(input, k), signature),
            (PublicKey::Oct(k), Alg::Hs384) => {
                ct_eq(&hmac_sha512::sha384::HMAC::mac(input, k), signature)
            }
            (PublicKey::Oct(k), Alg::Hs512) => ct_eq(&hmac_sha512::HMAC::mac(input, k), signature),
            (PublicKey::Rsa(k), Alg::Rs256) => k
                .verify(
                    Pkcs1v15Sign::new::<Sha256>(),
                    &Sha256::hash(input),
                    signature,
                )
                .is_ok(),
            (PublicKey::Rsa(k), Alg::Rs384) => k
                .verify(
                    Pkcs1v15Sign::new::<Sha384>(),
                    &Sha384::hash(input),
                    signature,
                )
                .is_ok(),
            (PublicKey::Rsa(k), Alg::Rs512) => k
                .verify(
                    Pkcs1v15Sign::new::<Sha512>(),
                    &Sha512::hash(input),
                    signature,
                )
                .is_ok(),
            (PublicKey::Rsa(k), Alg::Ps256) => k
                .verify(Pss::new::<Sha256>(), &Sha256::hash(input), signature)
                .is_ok(),
            (PublicKey::Rsa(k), Alg::Ps384) => k
                .verify(Pss::new::<Sha384>(), &Sha384::hash(input), signature)
                .is_ok(),
            (PublicKey::Rsa(k), Alg::Ps512) => k
                .verify(Pss::new::<Sha512>(), &Sha512::hash(input), signature)
                .is_ok(),
            (PublicKey::P256(k), Alg::Es256) => {
                use p256::ecdsa::{signature::hazmat::PrehashVerifier, Signature};
                Signature::from_slice(signature)
                    .is_ok_and(|s| k.verify_prehash(&Sha256::hash(input), &s).is_ok())
            }
            (PublicKey::P384(k), Alg::Es384) => {
                use p384::ecdsa::{signature::hazmat::PrehashVerifier, Signature};
                Signature::from_slice(signature)
                    .is_ok_and(|s| k.verify_prehash(&Sha384::hash(input), &s).is_ok())
            }
            (PublicKey::Ed25519(k), Alg::EdDsa) => {
                ed25519_compact::Signature::from_slice(signature)
                    .is_ok_and(|s| k.verify(input, &s).is_ok())
            }
            _ => false,
        }
    }
}

/// Compares an HMAC tag in time that depends on the lengths only.
fn ct_eq(expected: &[u8], actual: &[u8]) -> bool {
    expected.len() == actual.len()
        && std::hint::black_box(
            expected
                .iter()
                .zip(actual)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b)),
        ) == 0
}

/// One usable JWK: its `kid`, the algorithms it may verify, and its public key.
#[derive(Clone)]
pub(crate) struct Key {
    kid: Option<String>,
    /// Human-readable type for `Debug` ("RSA", "EC P-256", ...).
    kind: &'static str,
    algs: Vec<Alg>,
    public: PublicKey,
}

impl Key {
    pub(crate) fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// Whether this key may be used with `alg`.
    pub(crate) fn accepts(&self, alg: Alg) -> bool {
        self.algs.contains(&alg)
    }

    /// Checks a JWS signature over `input` (`header.payload`); false for an algorithm this
    /// key may not be used with.
    pub(crate) fn verify(&self, alg: Alg, input: &[u8], signature: &[u8]) -> bool {
        self.accepts(alg) && self.public.verify(alg, input, signature)
    }
}

/// A parsed, validated JWK Set.
#[derive(Clone)]
pub struct KeySet {
    keys: Vec<Key>,
}

/// Why a JWK Set or one of its keys was refused. `path` is relative to the JWK Set
/// (`keys[1].n`); it is empty when the document as a whole is wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JwksError {
    pub path: String,
    pub message: String,
}

impl JwksError {
    fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        JwksError {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for JwksError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl fmt::Debug for KeySet {
    /// Lists key ids and types only: never key material.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(
                self.keys
                    .iter()
                    .map(|k| (k.kid.as_deref().unwrap_or("-"), k.kind)),
            )
            .finish()
    }
}

impl KeySet {
    /// Strict (inline config): any bad key, unsupported kty/crv, `use` other than "sig",
    /// duplicate `kid` → Err. Empty `keys` → Err.
    pub fn from_value(jwks: &Value) -> Result<KeySet, JwksError> {
        let entries = key_entries(jwks)?;
        if entries.is_empty() {
            return Err(JwksError::new("keys", "must contain at least one key"));
        }
        let mut keys = Vec::with_capacity(entries.len());
        for (i, jwk) in entries.iter().enumerate() {
            keys.push(parse_key(jwk, &format!("keys[{i}]"))?);
        }
        check_unique_kids(&keys, |i| i)?;
        Ok(KeySet { keys })
    }

    /// Lenient (remote fetch body): keys that cannot be used are skipped and reported in the
    /// Vec, and so are symmetric (`oct`) keys, which a published JWKS must never hand out; Err
    /// only if the body is not a JWK Set, has duplicate kids among its usable keys, or no
    /// usable key remains.
    pub fn from_remote(body: &[u8]) -> Result<(KeySet, Vec<JwksError>), JwksError> {
        let doc: Value = serde_json::from_slice(body)
            .map_err(|e| JwksError::new("", format!("not valid JSON: {e}")))?;
        let entries = key_entries(&doc)?;
        let mut keys = Vec::new();
        let mut positions = Vec::new();
        let mut skipped = Vec::new();
        for (i, jwk) in entries.iter().enumerate() {
            let path = format!("keys[{i}]");
            if jwk.get("kty").and_then(Value::as_str) == Some("oct") {
                // A published JWKS is readable by anyone: a secret in it lets anyone sign.
                skipped.push(JwksError::new(
                    format!("{path}.kty"),
                    "symmetric (oct) keys are never taken from a remote JWKS; configure HMAC \
                     secrets inline (jwks)",
                ));
                continue;
            }
            match parse_key(jwk, &path) {
                Ok(key) => {
                    keys.push(key);
                    positions.push(i);
                }
                Err(e) => skipped.push(e),
            }
        }
        check_unique_kids(&keys, |i| positions.get(i).copied().unwrap_or(i))?;
        if keys.is_empty() {
            return Err(JwksError::new(
                "keys",
                format!("no usable key ({} skipped)", skipped.len()),
            ));
        }
        Ok((KeySet { keys }, skipped))
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub(crate) fn keys(&self) -> impl Iterator<Item = &Key> {
        self.keys.iter()
    }
}

/// The `keys` array of a JWK Set document.
fn key_entries(doc: &Value) -> Result<&Vec<Value>, JwksError> {
    let obj = doc
        .as_object()
        .ok_or_else(|| JwksError::new("", "a JWK Set must be a JSON object"))?;
    match obj.get("keys") {
        Some(Value::Array(keys)) => Ok(keys),
        Some(_) => Err(JwksError::new("keys", "must be an array")),
        None => Err(JwksError::new("keys", "missing")),
    }
}

/// `position` maps an index in `keys` back to the index in the document, for the error path.
fn check_unique_kids(keys: &[Key], position: impl Fn(usize) -> usize) -> Result<(), JwksError> {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, key) in keys.iter().enumerate() {
        if let Some(kid) = key.kid() {
            if let Some(first) = seen.insert(kid, i) {
                return Err(JwksError::new(
                    format!("keys[{}].kid", position(i)),
                    format!(
                        "duplicate kid \"{}\" (also keys[{}])",
                        printable(kid, 64),
                        position(first)
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Decoded public key material of one JWK, before it is checked.
enum Material {
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    /// SEC1 uncompressed point.
    P256(Vec<u8>),
    P384(Vec<u8>),
    Ed25519(Vec<u8>),
    Oct(Vec<u8>),
}

impl Material {
    fn kind(&self) -> &'static str {
        match self {
            Material::Rsa { .. } => "RSA",
            Material::P256(_) => "EC P-256",
            Material::P384(_) => "EC P-384",
            Material::Ed25519(_) => "OKP Ed25519",
            Material::Oct(_) => "oct",
        }
    }

    /// The algorithms this type of key can verify.
    fn family(&self) -> &'static [Alg] {
        match self {
            Material::Rsa { .. } => &RSA_ALGS,
            Material::P256(_) => &[Alg::Es256],
            Material::P384(_) => &[Alg::Es384],
            Material::Ed25519(_) => &[Alg::EdDsa],
            Material::Oct(_) => &HMAC_ALGS,
        }
    }

    /// The checked public key; None if the material is not a valid key of its type.
    fn public_key(self) -> Option<PublicKey> {
        Some(match self {
            Material::Rsa { n, e } => PublicKey::Rsa(
                rsa::RsaPublicKey::new(
                    rsa::BigUint::from_bytes_be(&n),
                    rsa::BigUint::from_bytes_be(&e),
                )
                .ok()?,
            ),
            Material::P256(point) => {
                PublicKey::P256(p256::ecdsa::VerifyingKey::from_sec1_bytes(&point).ok()?)
            }
            Material::P384(point) => {
                PublicKey::P384(p384::ecdsa::VerifyingKey::from_sec1_bytes(&point).ok()?)
            }
            Material::Ed25519(x) => {
                PublicKey::Ed25519(ed25519_compact::PublicKey::from_slice(&x).ok()?)
            }
            Material::Oct(k) => PublicKey::Oct(k),
        })
    }
}

fn parse_key(jwk: &Value, path: &str) -> Result<Key, JwksError> {
    let obj = jwk
        .as_object()
        .ok_or_else(|| JwksError::new(path, "a JWK must be a JSON object"))?;
    let field = |name: &str| format!("{path}.{name}");
    let kty = required_str(obj, "kty", path)?;
    if let Some(usage) = optional_str(obj, "use", path)? {
        if usage != "sig" {
            return Err(JwksError::new(
                field("use"),
                format!(
                    "\"{}\" keys cannot verify signatures; only \"sig\" is accepted",
                    printable(usage, 32)
                ),
            ));
        }
    }
    let kid = optional_str(obj, "kid", path)?.map(str::to_owned);
    let alg = match optional_str(obj, "alg", path)? {
        None => None,
        Some(name) => Some(Alg::parse(name).ok_or_else(|| {
            JwksError::new(
                field("alg"),
                format!("unsupported algorithm \"{}\"", printable(name, 32)),
            )
        })?),
    };
    if kty != "oct" && obj.contains_key("d") {
        return Err(JwksError::new(
            field("d"),
            "private key material must not be configured; use the public key only",
        ));
    }
    let material = parse_material(obj, kty, path)?;
    if let Some(alg) = alg {
        if !material.family().contains(&alg) {
            return Err(JwksError::new(
                field("alg"),
                format!("alg {alg} does not fit a {} key", material.kind()),
            ));
        }
    }
    let algs = material
        .family()
        .iter()
        .copied()
        .filter(|a| alg.is_none_or(|only| only == *a))
        .collect();
    let kind = material.kind();
    let public = material
        .public_key()
        .ok_or_else(|| JwksError::new(path, format!("invalid {kind} public key")))?;
    Ok(Key {
        kid,
        kind,
        algs,
        public,
    })
}

fn parse_material(obj: &Map<String, Value>, kty: &str, path: &str) -> Result<Material, JwksError> {
    let field = |name: &str| format!("{path}.{name}");
    match kty {
        "RSA" => {
            let n = b64_field(obj, "n", path)?;
            let e = b64_field(obj, "e", path)?;
            let bits = bit_length(&n);
            if bits < MIN_RSA_BITS {
                return Err(JwksError::new(
                    field("n"),
                    format!("RSA modulus is {bits} bits; at least {MIN_RSA_BITS} are required"),
                ));
            }
            if bits > MAX_RSA_BITS {
                return Err(JwksError::new(
                    field("n"),
                    format!("RSA modulus is {bits} bits; at most {MAX_RSA_BITS} are supported"),
                ));
            }
            Ok(Material::Rsa { n, e })
        }
        "EC" => {
            let crv = required_str(obj, "crv", path)?;
            let size = match crv {
                "P-256" => 32,
                "P-384" => 48,
                other => {
                    return Err(JwksError::new(
                        field("crv"),
                        format!(
                            "unsupported EC curve \"{}\" (P-256 and P-384 are supported)",
                            printable(other, 32)
                        ),
                    ))
                }
            };
            let x = sized_b64_field(obj, "x", path, size)?;
            let y = sized_b64_field(obj, "y", path, size)?;
            let mut point = Vec::with_capacity(1 + 2 * size);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            Ok(if size == 32 {
                Material::P256(point)
            } else {
                Material::P384(point)
            })
        }
        "OKP" => {
            let crv = required_str(obj, "crv", path)?;
            if crv != "Ed25519" {
                return Err(JwksError::new(
                    field("crv"),
                    format!(
                        "unsupported OKP curve \"{}\" (Ed25519 is supported)",
                        printable(crv, 32)
                    ),
                ));
            }
            Ok(Material::Ed25519(sized_b64_field(obj, "x", path, 32)?))
        }
        "oct" => {
            let k = b64_field(obj, "k", path)?;
            if k.len() < MIN_OCT_BYTES {
                return Err(JwksError::new(
                    field("k"),
                    format!(
                        "HMAC secret is {} bytes; at least {MIN_OCT_BYTES} are required",
                        k.len()
                    ),
                ));
            }
            Ok(Material::Oct(k))
        }
        other => Err(JwksError::new(
            field("kty"),
            format!(
                "unsupported key type \"{}\" (RSA, EC, OKP and oct are supported)",
                printable(other, 32)
            ),
        )),
    }
}

/// Number of significant bits of a big-endian unsigned integer.
fn bit_length(be: &[u8]) -> usize {
    match be.iter().position(|b| *b != 0) {
        None => 0,
        Some(first) => {
            let lead = be.get(first).map_or(0, |b| 8 - b.leading_zeros() as usize);
            (be.len() - first - 1) * 8 + lead
        }
    }
}

fn optional_str<'a>(
    obj: &'a Map<String, Value>,
    name: &str,
    path: &str,
) -> Result<Option<&'a str>, JwksError> {
    match obj.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(JwksError::new(format!("{path}.{name}"), "must be a string")),
    }
}

fn required_str<'a>(
    obj: &'a Map<String, Value>,
    name: &str,
    path: &str,
) -> Result<&'a str, JwksError> {
    optional_str(obj, name, path)?
        .ok_or_else(|| JwksError::new(format!("{path}.{name}"), "missing"))
}

fn b64_field(obj: &Map<String, Value>, name: &str, path: &str) -> Result<Vec<u8>, JwksError> {
    let text = required_str(obj, name, path)?;
    match base64url_decode(text, true) {
        Some(bytes) if !bytes.is_empty() => Ok(bytes),
        Some(_) => Err(JwksError::new(
            format!("{path}.{name}"),
            "must not be empty",
        )),
        None => Err(JwksError::new(
            format!("{path}.{name}"),
            "not valid base64url",
        )),
    }
}

fn sized_b64_field(
    obj: &Map<String, Value>,
    name: &str,
    path: &str,
    size: usize,
) -> Result<Vec<u8>, JwksError> {
    let bytes = b64_field(obj, name, path)?;
    if bytes.len() != size {
        return Err(JwksError::new(
            format!("{path}.{name}"),
            format!("must be {size} bytes, got {}", bytes.len()),
        ));
    }
    Ok(bytes)
}

/// Decodes base64url (RFC 4648 §5). Trailing `=` padding is accepted only when
/// `allow_padding` (JWK fields); JWS compact parts never carry it.
pub(crate) fn base64url_decode(text: &str, allow_padding: bool) -> Option<Vec<u8>> {
    let data = if allow_padding {
        let trimmed = text.trim_end_matches('=');
        if text.len() - trimmed.len() > 2 {
            return None;
        }
        trimmed
    } else {
        text
    };
    if data.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(data.len() / 4 * 3 + 2);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in data.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// `text` made safe for a log line: control characters dropped, at most `max` characters.
pub(crate) fn printable(text: &str, max: usize) -> String {
    let mut chars = text.chars().filter(|c| !c.is_control());
    let mut out: String = chars.by_ref().take(max).collect();
    if chars.next().is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
#[path = "testdata/fixtures.rs"]
pub(crate) mod fixtures;

#[cfg(test)]
mod tests;
