#!/usr/bin/env python3
"""Builds the filter's OCI image as a plain OCI image layout directory (no container engine):

    oci_image.py --wasm target/.../tenant_guard.wasm --out target/oci --tag 0.1.0

The image follows the *oci* variant of the Wasm image specification that Istio and Envoy Gateway
pull (https://github.com/solo-io/wasm/blob/master/spec/spec.md): two layers, the runtime
configuration (``application/vnd.module.wasm.config.v1+json``, also the manifest's config) and
the module itself, byte for byte (``application/vnd.module.wasm.content.layer.v1+wasm``). Both
pullers require exactly two layers and take the one with the Wasm media type.

Nothing in it depends on the time of the build: the same .wasm gives the same image digest.
Prints the .wasm's SHA-256 (Envoy's ``remote.sha256``, Envoy Gateway's ``code.http.sha256``) and
the image digest (Istio's ``sha256`` for ``oci://`` URLs, Envoy Gateway's ``code.image.sha256``,
``@sha256:`` references). ``--json`` prints them as JSON.
"""

import argparse
import hashlib
import json
import os
import re
import shutil
import sys
from pathlib import Path

OCI_LAYOUT = {"imageLayoutVersion": "1.0.0"}
INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"
MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
WASM_CONFIG_MEDIA_TYPE = "application/vnd.module.wasm.config.v1+json"
WASM_LAYER_MEDIA_TYPE = "application/vnd.module.wasm.content.layer.v1+wasm"
# proxy-wasm ABI the module exports (proxy-wasm-rust-sdk 0.2).
ABI_VERSION = "proxy_abi_version_0_2_1"
ROOT_ID = "tenant_guard"


def canonical(doc) -> bytes:
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()


class Layout:
    def __init__(self, out: Path):
        self.out = out
        self.blobs = out / "blobs" / "sha256"

    def add(self, data: bytes, media_type: str, annotations=None) -> dict:
        digest = hashlib.sha256(data).hexdigest()
        path = self.blobs / digest
        if not path.exists():
            tmp = path.with_name(f".{digest}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)
        descriptor = {"mediaType": media_type, "digest": f"sha256:{digest}", "size": len(data)}
        if annotations:
            descriptor["annotations"] = annotations
        return descriptor


def crate_version(repo: Path) -> str:
    text = (repo / "Cargo.toml").read_text()
    match = re.search(r'^version\s*=\s*"([^"]+)"', text, re.M)
    return match.group(1) if match else "0.0.0"


def build(wasm: Path, out: Path, tag: str, version: str) -> dict:
    module = wasm.read_bytes()
    if not module.startswith(b"\0asm"):
        raise SystemExit(f"{wasm} is not a WebAssembly module")
    if out.exists():
        shutil.rmtree(out)
    layout = Layout(out)
    layout.blobs.mkdir(parents=True)
    (out / "oci-layout").write_bytes(canonical(OCI_LAYOUT))

    runtime = {"type": "envoy_proxy", "abiVersions": [ABI_VERSION],
               "config": {"rootIds": [ROOT_ID]}}
    config = layout.add(canonical(runtime), WASM_CONFIG_MEDIA_TYPE)
    config_layer = dict(config, annotations={"org.opencontainers.image.title":
                                             "runtime-config.json"})
    wasm_layer = layout.add(module, WASM_LAYER_MEDIA_TYPE,
                            {"org.opencontainers.image.title": "plugin.wasm"})
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": config,
        "layers": [config_layer, wasm_layer],
        "annotations": {
            "module.wasm.runtime/type": "envoy_proxy",
            "module.wasm.runtime/abi_version": ABI_VERSION,
            "org.opencontainers.image.title": "tenant-guard",
            "org.opencontainers.image.description":
                "tenant-guard: Envoy proxy-wasm filter for multi-tenant GenAI gateways",
            "org.opencontainers.image.version": version,
            "org.opencontainers.image.licenses": "Apache-2.0",
        },
    }
    manifest_descriptor = layout.add(canonical(manifest), MANIFEST_MEDIA_TYPE,
                                     {"org.opencontainers.image.ref.name": tag})
    index = {"schemaVersion": 2, "mediaType": INDEX_MEDIA_TYPE,
             "manifests": [manifest_descriptor]}
    (out / "index.json").write_bytes(canonical(index))
    return {
        "layout": str(out),
        "tag": tag,
        "wasm_sha256": wasm_layer["digest"].split(":", 1)[1],
        "wasm_size": len(module),
        "image_digest": manifest_descriptor["digest"],
    }


def main(argv=None):
    repo = Path(__file__).resolve().parent.parent
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wasm", required=True, type=Path, help="the .wasm to package")
    parser.add_argument("--out", required=True, type=Path, help="layout directory (replaced)")
    parser.add_argument("--tag", default=None, help="tag (default: the crate's version)")
    parser.add_argument("--json", action="store_true", help="print the digests as JSON")
    args = parser.parse_args(argv)
    version = crate_version(repo)
    result = build(args.wasm, args.out, args.tag or version, version)
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    print(f"OCI image layout: {result['layout']} (tag {result['tag']})")
    print(f".wasm sha256:     {result['wasm_sha256']}  ({result['wasm_size']} bytes)")
    print(f"image digest:     {result['image_digest']}")
    print("Push it without a container engine, e.g.:")
    print(f"  oras cp --from-oci-layout {result['layout']}:{result['tag']} "
          f"REGISTRY/tenant-guard:{result['tag']}")
    print(f"  crane push {result['layout']} REGISTRY/tenant-guard:{result['tag']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
