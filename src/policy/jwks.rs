//! JWK Sets (RFC 7517) turned into ready-to-use jwt-simple keys.
//!
//! Each usable JWK becomes one jwt-simple key object per JWS algorithm it may verify, built once
//! here, so verifying a token never re-parses key material. Which algorithms a key gets is
//! decided by its type alone (RSA → RS*/PS*, P-256 → ES256, P-384 → ES384, Ed25519 → EdDSA,
//! oct → the HS* its length allows), narrowed to exactly one when the JWK carries `alg`: that is
//! what makes algorithm-confusion attacks impossible.

use std::fmt;

use ct_codecs::{Base64UrlSafe, Base64UrlSafeNoPadding, Decoder};
use jwt_simple::prelude::{
    ECDSAP256PublicKeyLike, ECDSAP384PublicKeyLike, ES256PublicKey, ES384PublicKey,
    Ed25519PublicKey, EdDSAPublicKeyLike, HS256Key, HS384Key, HS512Key, JWTClaims, MACLike,
    NoCustomClaims, PS256PublicKey, PS384PublicKey, PS512PublicKey, RS256PublicKey, RS384PublicKey,
    RS512PublicKey, RSAPublicKeyLike, VerificationOptions,
};
use serde_json::{Map, Value};

use crate::policy::sorted;

/// RSA moduli below this are refused (RFC 7518 §3.3 asks for at least 2048 bits).
const MIN_RSA_BITS: usize = 2048;
/// The RSA backend (RustCrypto `rsa` via superboring) cannot load larger public keys.
const MAX_RSA_BITS: usize = 4096;
/// HMAC secrets shorter than this (HS256's hash output) are refused.
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

    /// The shortest HMAC secret this algorithm may use: the hash output's length (RFC 7518
    /// §3.2). Other algorithms: 0.
    pub fn hmac_key_bytes(self) -> usize {
        match self {
            Alg::Hs256 => 32,
            Alg::Hs384 => 48,
            Alg::Hs512 => 64,
            _ => 0,
        }
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

/// One jwt-simple key, bound to one algorithm.
#[derive(Clone)]
pub(crate) enum Verifier {
    Hs256(HS256Key),
    Hs384(HS384Key),
    Hs512(HS512Key),
    Rs256(RS256PublicKey),
    Rs384(RS384PublicKey),
    Rs512(RS512PublicKey),
    Ps256(PS256PublicKey),
    Ps384(PS384PublicKey),
    Ps512(PS512PublicKey),
    Es256(ES256PublicKey),
    Es384(ES384PublicKey),
    EdDsa(Ed25519PublicKey),
}

impl Verifier {
    fn alg(&self) -> Alg {
        match self {
            Verifier::Hs256(_) => Alg::Hs256,
            Verifier::Hs384(_) => Alg::Hs384,
            Verifier::Hs512(_) => Alg::Hs512,
            Verifier::Rs256(_) => Alg::Rs256,
            Verifier::Rs384(_) => Alg::Rs384,
            Verifier::Rs512(_) => Alg::Rs512,
            Verifier::Ps256(_) => Alg::Ps256,
            Verifier::Ps384(_) => Alg::Ps384,
            Verifier::Ps512(_) => Alg::Ps512,
            Verifier::Es256(_) => Alg::Es256,
            Verifier::Es384(_) => Alg::Es384,
            Verifier::EdDsa(_) => Alg::EdDsa,
        }
    }

    /// jwt-simple checks the signature, then the claims against `options`.
    pub(crate) fn verify(
        &self,
        token: &str,
        options: VerificationOptions,
    ) -> Result<JWTClaims<NoCustomClaims>, jwt_simple::Error> {
        let options = Some(options);
        match self {
            Verifier::Hs256(k) => k.verify_token(token, options),
            Verifier::Hs384(k) => k.verify_token(token, options),
            Verifier::Hs512(k) => k.verify_token(token, options),
            Verifier::Rs256(k) => k.verify_token(token, options),
            Verifier::Rs384(k) => k.verify_token(token, options),
            Verifier::Rs512(k) => k.verify_token(token, options),
            Verifier::Ps256(k) => k.verify_token(token, options),
            Verifier::Ps384(k) => k.verify_token(token, options),
            Verifier::Ps512(k) => k.verify_token(token, options),
            Verifier::Es256(k) => k.verify_token(token, options),
            Verifier::Es384(k) => k.verify_token(token, options),
            Verifier::EdDsa(k) => k.verify_token(token, options),
        }
    }
}

/// One usable JWK: its `kid` and a verifier per algorithm it may be used with.
#[derive(Clone)]
pub(crate) struct Key {
    kid: Option<String>,
    /// Human-readable type for `Debug` ("RSA", "EC P-256", ...).
    kind: &'static str,
    verifiers: Vec<Verifier>,
}

impl Key {
    pub(crate) fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The verifier for `alg`, if this key may be used with it.
    pub(crate) fn verifier(&self, alg: Alg) -> Option<&Verifier> {
        self.verifiers.iter().find(|v| v.alg() == alg)
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
    /// `key_ops` without "verify", duplicate `kid` → Err. Empty `keys` → Err.
    pub fn from_value(jwks: &Value) -> Result<KeySet, JwksError> {
        let entries = key_entries(jwks)?;
        if entries.is_empty() {
            return Err(JwksError::new("keys", "must contain at least one key"));
        }
        let mut keys = Vec::with_capacity(entries.len());
        for (i, jwk) in entries.iter().enumerate() {
            keys.push(parse_key(jwk, &format!("keys[{i}]"))?);
        }
        check_unique_kids(&keys)?;
        Ok(KeySet { keys })
    }

    /// Lenient (remote fetch body): keys that cannot be used are skipped and reported in the
    /// Vec, and so are symmetric (`oct`) keys, which a published JWKS must never hand out.
    /// Several keys may share a `kid` (a token naming it tries each, as Envoy's `jwt_authn`
    /// does). Err only if the body is not a JWK Set or no usable key remains.
    pub fn from_remote(body: &[u8]) -> Result<(KeySet, Vec<JwksError>), JwksError> {
        let doc: Value = crate::policy::json::from_slice(body)
            .map_err(|e| JwksError::new("", format!("not valid JSON: {e}")))?;
        let entries = key_entries(&doc)?;
        let mut keys = Vec::new();
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
                Ok(key) => keys.push(key),
                Err(e) => skipped.push(e),
            }
        }
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

/// An inline set names each key once: a duplicate `kid` is a configuration mistake.
fn check_unique_kids(keys: &[Key]) -> Result<(), JwksError> {
    let kids: Vec<Option<&str>> = keys.iter().map(Key::kid).collect();
    match sorted::first_repeat(&kids) {
        Some((i, first)) => Err(JwksError::new(
            format!("keys[{i}].kid"),
            format!(
                "duplicate kid \"{}\" (also keys[{first}])",
                printable(kids.get(i).copied().flatten().unwrap_or_default(), 64)
            ),
        )),
        None => Ok(()),
    }
}

/// Decoded public key material of one JWK, before jwt-simple objects are built.
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

    /// Whether the key is long enough for `alg`: an HMAC secret must be at least as long as
    /// the hash output (RFC 7518 §3.2); other keys were checked when decoded.
    fn strong_enough(&self, alg: Alg) -> bool {
        match self {
            Material::Oct(k) => k.len() >= alg.hmac_key_bytes(),
            _ => true,
        }
    }

    /// The jwt-simple key for `alg`, which must belong to `family()`.
    fn verifier(&self, alg: Alg) -> Result<Verifier, jwt_simple::Error> {
        Ok(match (self, alg) {
            (Material::Rsa { n, e }, Alg::Rs256) => {
                Verifier::Rs256(RS256PublicKey::from_components(n, e)?)
            }
            (Material::Rsa { n, e }, Alg::Rs384) => {
                Verifier::Rs384(RS384PublicKey::from_components(n, e)?)
            }
            (Material::Rsa { n, e }, Alg::Rs512) => {
                Verifier::Rs512(RS512PublicKey::from_components(n, e)?)
            }
            (Material::Rsa { n, e }, Alg::Ps256) => {
                Verifier::Ps256(PS256PublicKey::from_components(n, e)?)
            }
            (Material::Rsa { n, e }, Alg::Ps384) => {
                Verifier::Ps384(PS384PublicKey::from_components(n, e)?)
            }
            (Material::Rsa { n, e }, Alg::Ps512) => {
                Verifier::Ps512(PS512PublicKey::from_components(n, e)?)
            }
            (Material::P256(point), Alg::Es256) => {
                Verifier::Es256(ES256PublicKey::from_bytes(point)?)
            }
            (Material::P384(point), Alg::Es384) => {
                Verifier::Es384(ES384PublicKey::from_bytes(point)?)
            }
            (Material::Ed25519(x), Alg::EdDsa) => Verifier::EdDsa(Ed25519PublicKey::from_bytes(x)?),
            (Material::Oct(k), Alg::Hs256) => Verifier::Hs256(HS256Key::from_bytes(k)),
            (Material::Oct(k), Alg::Hs384) => Verifier::Hs384(HS384Key::from_bytes(k)),
            (Material::Oct(k), Alg::Hs512) => Verifier::Hs512(HS512Key::from_bytes(k)),
            _ => return Err(jwt_simple::JWTError::AlgorithmMismatch.into()),
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
    check_key_ops(obj, path)?;
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
    let kind = material.kind();
    if let Some(alg) = alg {
        if !material.family().contains(&alg) {
            return Err(JwksError::new(
                field("alg"),
                format!("alg {alg} does not fit a {kind} key"),
            ));
        }
        if let Material::Oct(k) = &material {
            if !material.strong_enough(alg) {
                return Err(JwksError::new(
                    field("k"),
                    format!(
                        "HMAC secret is {} bytes; {alg} needs at least {} (RFC 7518 §3.2)",
                        k.len(),
                        alg.hmac_key_bytes()
                    ),
                ));
            }
        }
    }
    let verifiers = material
        .family()
        .iter()
        .copied()
        .filter(|a| alg.is_none_or(|only| only == *a) && material.strong_enough(*a))
        .map(|a| material.verifier(a))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| JwksError::new(path, format!("invalid {kind} public key")))?;
    Ok(Key {
        kid,
        kind,
        verifiers,
    })
}

/// `key_ops` (RFC 7517 §4.3), when present, must allow "verify": a key for other operations
/// is no signature verification key.
fn check_key_ops(obj: &Map<String, Value>, path: &str) -> Result<(), JwksError> {
    let Some(ops) = obj.get("key_ops") else {
        return Ok(());
    };
    let path = format!("{path}.key_ops");
    let Some(ops) = ops.as_array() else {
        return Err(JwksError::new(path, "must be an array of strings"));
    };
    let mut verify = false;
    for op in ops {
        match op.as_str() {
            Some(op) => verify |= op == "verify",
            None => return Err(JwksError::new(path, "must be an array of strings")),
        }
    }
    if !verify {
        return Err(JwksError::new(
            path,
            "does not include \"verify\": the key may not verify signatures",
        ));
    }
    Ok(())
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
            let x = sized_b64_field(obj, "x", path, 32)?;
            check_ed25519_point(&x).map_err(|why| JwksError::new(field("x"), why))?;
            Ok(Material::Ed25519(x))
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

/// An Ed25519 public key must be the canonical encoding of a curve point of large order: a
/// small-order key would let forged signatures verify in lax verifiers, and can never sign.
fn check_ed25519_point(x: &[u8]) -> Result<(), &'static str> {
    use ed25519_compact::{Error, PublicKey};
    match PublicKey::from_slice(x).and_then(|key| key.validate()) {
        Ok(()) => Ok(()),
        Err(Error::WeakPublicKey) => Err("Ed25519 public key is a point of small order"),
        Err(_) => Err("not an Ed25519 public key (no canonical curve point)"),
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

/// A base64url JWK member (RFC 7518 §6): canonical, as ct-codecs decodes it; trailing `=`
/// padding is tolerated, as some publishers add it.
fn b64_field(obj: &Map<String, Value>, name: &str, path: &str) -> Result<Vec<u8>, JwksError> {
    let text = required_str(obj, name, path)?;
    let decoded = if text.ends_with('=') {
        Base64UrlSafe::decode_to_vec(text, None)
    } else {
        Base64UrlSafeNoPadding::decode_to_vec(text, None)
    };
    match decoded {
        Ok(bytes) if !bytes.is_empty() => Ok(bytes),
        Ok(_) => Err(JwksError::new(
            format!("{path}.{name}"),
            "must not be empty",
        )),
        Err(_) => Err(JwksError::new(
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
