"""`make oci`: a plain OCI image layout whose digests hold and whose Wasm layer is, byte for byte,
the module `make wasm` ships; laid out the way Istio's and Envoy Gateway's pullers read it."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TOOL = REPO / "tools" / "oci_image.py"
WASM_LAYER = "application/vnd.module.wasm.content.layer.v1+wasm"
WASM_CONFIG = "application/vnd.module.wasm.config.v1+json"


def build(wasm: Path, out: Path, *extra) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(TOOL), "--wasm", str(wasm), "--out", str(out),
                           *extra], capture_output=True, text=True, timeout=60, check=True)


@pytest.fixture
def image(tmp_path, wasm_path):
    """The layout `make oci` made (TENANT_GUARD_OCI, exported by make), else one built here
    from the same module."""
    made = os.environ.get("TENANT_GUARD_OCI")
    if made:
        return Path(made)
    out = tmp_path / "oci"
    build(wasm_path, out)
    return out


def blob(layout: Path, descriptor: dict) -> bytes:
    algorithm, digest = descriptor["digest"].split(":")
    assert algorithm == "sha256"
    data = (layout / "blobs" / "sha256" / digest).read_bytes()
    assert hashlib.sha256(data).hexdigest() == digest, descriptor
    assert len(data) == descriptor["size"], descriptor
    return data


def test_layout_digests_hold_and_the_layer_is_the_shipped_module(image, wasm_path):
    assert json.loads((image / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads((image / "index.json").read_text())
    assert index["schemaVersion"] == 2
    assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
    [entry] = index["manifests"]
    assert entry["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert entry["annotations"]["org.opencontainers.image.ref.name"]
    manifest = json.loads(blob(image, entry))
    assert manifest["schemaVersion"] == 2
    assert manifest["mediaType"] == entry["mediaType"]

    runtime = json.loads(blob(image, manifest["config"]))
    assert manifest["config"]["mediaType"] == WASM_CONFIG
    assert runtime["type"] == "envoy_proxy" and runtime["config"]["rootIds"] == ["tenant_guard"]

    # What Istio's and Envoy Gateway's *oci* variant reader demands: exactly two layers, the
    # module found by its media type and read as it is (not a tarball, not compressed).
    layers = manifest["layers"]
    assert len(layers) == 2
    assert sorted(layer["mediaType"] for layer in layers) == sorted([WASM_CONFIG, WASM_LAYER])
    [wasm_layer] = [layer for layer in layers if layer["mediaType"] == WASM_LAYER]
    assert blob(image, wasm_layer) == wasm_path.read_bytes()
    assert wasm_layer["annotations"]["org.opencontainers.image.title"] == "plugin.wasm"
    for layer in layers:
        blob(image, layer)

    # Nothing else in the layout.
    referenced = {d["digest"].split(":")[1] for d in [entry, manifest["config"], *layers]}
    present = {p.name for p in (image / "blobs" / "sha256").iterdir()}
    assert present == referenced


def test_the_digests_printed_are_the_modules_and_the_images(tmp_path, wasm_path):
    out = tmp_path / "oci"
    printed = json.loads(build(wasm_path, out, "--json", "--tag", "v-test").stdout)
    assert printed["wasm_sha256"] == hashlib.sha256(wasm_path.read_bytes()).hexdigest()
    index = json.loads((out / "index.json").read_text())
    assert printed["image_digest"] == index["manifests"][0]["digest"]
    assert index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"] == "v-test"
    text = build(wasm_path, tmp_path / "again").stdout
    assert f".wasm sha256:     {printed['wasm_sha256']}" in text


def test_the_image_is_reproducible(tmp_path, wasm_path):
    first = json.loads(build(wasm_path, tmp_path / "a", "--json").stdout)
    second = json.loads(build(wasm_path, tmp_path / "b", "--json").stdout)
    assert first["image_digest"] == second["image_digest"]


def test_a_file_that_is_not_wasm_is_refused(tmp_path):
    bogus = tmp_path / "bogus.wasm"
    bogus.write_bytes(b"#!/bin/sh\n")
    result = subprocess.run([sys.executable, str(TOOL), "--wasm", str(bogus), "--out",
                             str(tmp_path / "oci")], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "not a WebAssembly module" in result.stderr
