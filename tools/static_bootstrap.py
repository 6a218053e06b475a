#!/usr/bin/env python3
"""Prints a bootstrap whose file-based LDS listeners are inlined as static listeners, so
`envoy --mode validate` checks them too (validation mode does not read LDS files):

    tools/static_bootstrap.py envoy/dynamic/bootstrap.yaml > target/dynamic-static.yaml

Paths in the bootstrap are taken relative to the current directory, as Envoy takes them.
"""

import sys
from pathlib import Path

import yaml


def inline(bootstrap_path: str) -> dict:
    doc = yaml.safe_load(Path(bootstrap_path).read_text())
    lds = doc.get("dynamic_resources", {}).pop("lds_config", None)
    if not lds or "path_config_source" not in lds:
        raise SystemExit(f"{bootstrap_path}: no dynamic_resources.lds_config.path_config_source")
    response = yaml.safe_load(Path(lds["path_config_source"]["path"]).read_text())
    listeners = []
    for resource in response.get("resources", []):
        resource = dict(resource)
        kind = resource.pop("@type", "")
        if not kind.endswith("envoy.config.listener.v3.Listener"):
            raise SystemExit(f"not a listener: {kind}")
        listeners.append(resource)
    if not doc["dynamic_resources"]:
        del doc["dynamic_resources"]
    doc.setdefault("static_resources", {}).setdefault("listeners", []).extend(listeners)
    return doc


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    yaml.safe_dump(inline(sys.argv[1]), sys.stdout, sort_keys=False)
