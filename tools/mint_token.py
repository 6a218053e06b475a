#!/usr/bin/env python3
"""Print a demo token (RS256 JWT) for the tenant-guard demo gateway, and nothing else on stdout.

    tools/mint_token.py --tenant acme [--key envoy/demo-keys/demo-rs256.pem] [--kid demo-rs256]
                        [--issuer https://idp.demo.tenant-guard.test] [--audience genai-gateway]
                        [--sub demo-user] [--ttl 3600]

Signs with the `cryptography` package when it is installed (it is in the test venv), else with
the `openssl` command. The demo key is DEMO ONLY: anyone can read it.
"""

import argparse
import base64
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_KEY = REPO / "envoy" / "demo-keys" / "demo-rs256.pem"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def sign_rs256(key_path: Path, message: bytes) -> bytes:
    pem = key_path.read_bytes()
    try:
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import padding
    except ImportError:
        return _sign_with_openssl(key_path, message)
    key = serialization.load_pem_private_key(pem, password=None)
    return key.sign(message, padding.PKCS1v15(), hashes.SHA256())


def _sign_with_openssl(key_path: Path, message: bytes) -> bytes:
    if not shutil.which("openssl"):
        raise SystemExit("mint_token: needs the Python package `cryptography` or `openssl`")
    result = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(key_path)],
                            input=message, capture_output=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"mint_token: openssl failed: {result.stderr.decode(errors='replace')}")
    return result.stdout


def ensure_demo_key(key_path: Path):
    """Create the default demo key if it is missing (never a user-given one)."""
    if key_path.exists() or key_path != DEFAULT_KEY:
        return
    key_path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["openssl", "genrsa", "-out", str(key_path), "2048"], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    readme = key_path.parent / "README.md"
    if not readme.exists():
        readme.write_text("# DEMO ONLY\n\nThrow-away keys for the tenant-guard demo. "
                          "Never trust them anywhere real.\n")
    print(f"mint_token: created demo key {key_path}; put its public half in the demo "
          "gateway's JWKS", file=sys.stderr)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tenant", required=True, help="tenant_id claim")
    parser.add_argument("--key", type=Path, default=DEFAULT_KEY,
                        help="RSA private key, PEM (default: the demo key)")
    parser.add_argument("--kid", default="demo-rs256")
    parser.add_argument("--issuer", default="https://idp.demo.tenant-guard.test")
    parser.add_argument("--audience", default="genai-gateway")
    parser.add_argument("--sub", default="demo-user")
    parser.add_argument("--ttl", type=int, default=3600, help="seconds until exp")
    args = parser.parse_args(argv)

    ensure_demo_key(args.key)
    if not args.key.exists():
        raise SystemExit(f"mint_token: key file {args.key} not found")
    now = int(time.time())
    header = {"alg": "RS256", "typ": "JWT", "kid": args.kid}
    claims = {"iss": args.issuer, "aud": args.audience, "sub": args.sub,
              "tenant_id": args.tenant, "iat": now, "nbf": now, "exp": now + args.ttl}
    signing_input = ".".join(b64url(json.dumps(part, separators=(",", ":")).encode())
                             for part in (header, claims))
    signature = sign_rs256(args.key, signing_input.encode())
    sys.stdout.write(f"{signing_input}.{b64url(signature)}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
