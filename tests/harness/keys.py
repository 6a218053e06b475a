"""Signing keys, their public JWKs, and tokens: honest ones minted with PyJWT and hand-crafted
forgeries (alg none, HMAC keyed with an RSA public key, tampered payloads)."""

import base64
import hashlib
import hmac
import json
import os
import time
from dataclasses import dataclass, field

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

CORP_ISSUER = "https://idp.corp.test"
GLOBEX_ISSUER = "https://idp.globex.test"
REMOTE_ISSUER = "https://idp.remote.test"
AUDIENCE = "genai-gateway"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_json(value) -> str:
    return b64url(json.dumps(value, separators=(",", ":")).encode())


def b64url_uint(number: int, length: int = 0) -> str:
    size = max(length, (number.bit_length() + 7) // 8 or 1)
    return b64url(number.to_bytes(size, "big"))


@dataclass
class Key:
    """A signing key: ``private`` is a cryptography key object (or the secret bytes for
    HMAC); ``jwk`` is what a provider publishes; ``algs`` the JWS algorithms it signs with."""

    kid: str
    kty: str
    private: object
    jwk: dict
    algs: tuple

    @property
    def default_alg(self):
        return self.algs[0]

    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    def with_kid(self, kid: str) -> "Key":
        """The same key material published (or claimed) under another kid."""
        return Key(kid, self.kty, self.private, dict(self.jwk, kid=kid), self.algs)


def rsa_key(kid: str) -> Key:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    numbers = private.public_key().public_numbers()
    jwk = {"kty": "RSA", "kid": kid, "use": "sig",
           "n": b64url_uint(numbers.n), "e": b64url_uint(numbers.e)}
    return Key(kid, "RSA", private, jwk,
               ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512"))


def ec_key(kid: str, curve: str) -> Key:
    curve_obj, size, alg = {"P-256": (ec.SECP256R1(), 32, "ES256"),
                            "P-384": (ec.SECP384R1(), 48, "ES384")}[curve]
    private = ec.generate_private_key(curve_obj)
    numbers = private.public_key().public_numbers()
    jwk = {"kty": "EC", "kid": kid, "use": "sig", "crv": curve,
           "x": b64url_uint(numbers.x, size), "y": b64url_uint(numbers.y, size)}
    return Key(kid, "EC", private, jwk, (alg,))


def ed25519_key(kid: str) -> Key:
    private = ed25519.Ed25519PrivateKey.generate()
    raw = private.public_key().public_bytes(serialization.Encoding.Raw,
                                            serialization.PublicFormat.Raw)
    jwk = {"kty": "OKP", "kid": kid, "use": "sig", "crv": "Ed25519", "x": b64url(raw)}
    return Key(kid, "OKP", private, jwk, ("EdDSA",))


def hmac_key(kid: str, size: int = 64) -> Key:
    secret = os.urandom(size)
    jwk = {"kty": "oct", "kid": kid, "use": "sig", "k": b64url(secret)}
    return Key(kid, "oct", secret, jwk, ("HS256", "HS384", "HS512"))


def jwk_set(*keys: Key) -> dict:
    return {"keys": [dict(k.jwk) for k in keys]}


@dataclass
class KeyRing:
    """Every key a test session uses, generated fresh per session."""

    corp_rsa: Key = field(default_factory=lambda: rsa_key("rsa-1"))
    corp_ec256: Key = field(default_factory=lambda: ec_key("ec256-1", "P-256"))
    corp_ec384: Key = field(default_factory=lambda: ec_key("ec384-1", "P-384"))
    corp_ed: Key = field(default_factory=lambda: ed25519_key("ed-1"))
    corp_hs: Key = field(default_factory=lambda: hmac_key("hs-1"))
    globex_rsa: Key = field(default_factory=lambda: rsa_key("globex-1"))
    stranger_rsa: Key = field(default_factory=lambda: rsa_key("stranger-1"))
    remote_rsa: Key = field(default_factory=lambda: rsa_key("remote-1"))
    remote_rsa_next: Key = field(default_factory=lambda: rsa_key("remote-2"))

    @property
    def corp_keys(self):
        return (self.corp_rsa, self.corp_ec256, self.corp_ec384, self.corp_ed, self.corp_hs)

    def corp_jwks(self):
        return jwk_set(*self.corp_keys)

    def globex_jwks(self):
        return jwk_set(self.globex_rsa)


# === Claims and tokens ===

def claims(tenant="acme", *, iss=CORP_ISSUER, aud=AUDIENCE, sub="alice",
           email="alice@acme.test", ttl=600, now=None, tenant_claim="tenant_id",
           **extra) -> dict:
    """A claim set; pass ``None`` for any of tenant/iss/aud/sub/email/ttl to leave it out.
    ``ttl`` is exp relative to now (negative for expired)."""
    now = int(time.time() if now is None else now)
    body = {"iat": now}
    for name, value in (("iss", iss), ("aud", aud), ("sub", sub), ("email", email),
                        (tenant_claim, tenant)):
        if value is not None:
            body[name] = value
    if ttl is not None:
        body["exp"] = now + ttl
    body.update(extra)
    return body


def mint(key: Key, payload: dict, alg: str = None, headers: dict = None) -> str:
    """A correctly signed JWS with ``kid`` = the key's kid (override via ``headers``)."""
    header = {"kid": key.kid}
    header.update(headers or {})
    # PyJWS signs the claims as given (PyJWT's jwt.encode would refuse the wrongly typed
    # claims that robustness tests need).
    body = json.dumps(payload, separators=(",", ":")).encode()
    return jwt.api_jws.PyJWS().encode(body, key.private, algorithm=alg or key.default_alg,
                                      headers=header)


def forge_alg_none(payload: dict, kid="rsa-1") -> str:
    return f"{b64url_json({'alg': 'none', 'typ': 'JWT', 'kid': kid})}.{b64url_json(payload)}."


def forge_hmac_with_public_key(rsa: Key, payload: dict, alg="HS256") -> str:
    """The classic key-confusion attack: HMAC-sign with the RSA public key's PEM as the secret
    and claim the RSA key's kid."""
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]
    signing_input = f"{b64url_json({'alg': alg, 'typ': 'JWT', 'kid': rsa.kid})}." \
                    f"{b64url_json(payload)}"
    signature = hmac.new(rsa.public_pem(), signing_input.encode(), digest).digest()
    return f"{signing_input}.{b64url(signature)}"


def tamper_payload(token: str, payload: dict) -> str:
    """Keep the header and signature of ``token``, replace its payload."""
    header, _, signature = token.split(".")
    return f"{header}.{b64url_json(payload)}.{signature}"


def decoded_header(token: str) -> dict:
    header = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))


def with_header(token: str, **changes) -> str:
    """Rewrite fields of the JOSE header (keeping payload and signature)."""
    header, payload, signature = token.split(".")
    decoded = decoded_header(token)
    decoded.update(changes)
    return f"{b64url_json(decoded)}.{payload}.{signature}"


# === Second spellings and odd JOSE texts (what a careless or hostile client may send) ===

B64URL_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def respellings(part: str) -> list:
    """The other spellings of a base64url ``part``: its last character with the same data bits
    and other values in the unused low bits (2 or 4 of them; none when the length is a multiple
    of 4). Lax decoders read every one as the same bytes."""
    unused = {2: 4, 3: 2}.get(len(part) % 4, 0)
    index = B64URL_ALPHABET.index(part[-1])
    return [part[:-1] + B64URL_ALPHABET[index | low] for low in range(1, 1 << unused)]


def signature_respellings(token: str) -> list:
    """``token`` with each other spelling of its signature."""
    head, _, signature = token.rpartition(".")
    return [f"{head}.{variant}" for variant in respellings(signature)]


def sign_raw(key: Key, header_json: str, payload_json: str, alg: str = None) -> str:
    """A JWS over exactly these header and payload texts (which may repeat members), signed
    with ``key`` by PyJWT's algorithm for ``alg``."""
    algorithm = jwt.algorithms.get_default_algorithms()[alg or key.default_alg]
    signing_input = f"{b64url(header_json.encode())}.{b64url(payload_json.encode())}"
    signature = algorithm.sign(signing_input.encode(), algorithm.prepare_key(key.private))
    return f"{signing_input}.{b64url(signature)}"


def rsa_signature_plus_modulus(token: str, rsa: Key):
    """``token`` with its RSA signature value s replaced by s + n, the same number modulo n,
    when that still fits the modulus length; None otherwise (s is then too close to n)."""
    head, _, signature = token.rpartition(".")
    raw = base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))
    n = rsa.private.public_key().public_numbers().n
    bigger = int.from_bytes(raw, "big") + n
    if bigger.bit_length() > 8 * len(raw):
        return None
    return f"{head}.{b64url(bigger.to_bytes(len(raw), 'big'))}"
