#!/usr/bin/env python3
"""`make validate`'s policy step: every policy in the given files, as `tenant-guard check
--print-policy` reads it (the filter's own code compiles it first), valid against the policy's
JSON Schema.

    validate_policy.py TENANT_GUARD SCHEMA FILE...

Exit status 0 when every file's policies compile and match the schema, 1 otherwise."""

import json
import subprocess
import sys
from pathlib import Path

import jsonschema


def printed_policies(cli: str, path: str) -> list:
    """The policies `check --print-policy` wrote: pretty JSON documents one after another."""
    result = subprocess.run([cli, "check", "--print-policy", path], capture_output=True,
                            text=True, timeout=120)
    if result.returncode != 0:
        raise ValueError(f"tenant-guard check refused it:\n{result.stderr}")
    decoder, text, docs, at = json.JSONDecoder(), result.stdout, [], 0
    while text[at:].strip():
        doc, end = decoder.raw_decode(text, len(text) - len(text[at:].lstrip()))
        docs.append(doc)
        at = end
    return docs


def main(cli: str, schema_path: str, files: list) -> int:
    schema = json.loads(Path(schema_path).read_text())
    validator = jsonschema.Draft7Validator(schema)
    failed = 0
    for path in files:
        try:
            docs = printed_policies(cli, path)
        except ValueError as e:
            print(f"schema {path}: {e}")
            failed += 1
            continue
        errors = [f"  {'.'.join(map(str, e.absolute_path)) or '(document)'}: {e.message}"
                  for doc in docs for e in validator.iter_errors(doc)]
        if errors:
            print(f"schema {path}: INVALID against {schema_path}")
            print("\n".join(errors))
            failed += 1
        else:
            print(f"schema {path}: {len(docs)} polic{'y' if len(docs) == 1 else 'ies'} valid")
    return 1 if failed else 0


if __name__ == "__main__":
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[2], sys.argv[3:]))
