"""The policy's JSON Schema (schema/policy.schema.json) walked as a tree of fields, for the
tests that hold it to the code (test_policy_schema.py) and to the reference
(test_docs.py).

A path is a tuple of steps: ``("key", name)`` for a named field, ``("map",)`` for the values
of an object whose keys the operator chooses (``providers.<name>``), ``("item",)`` for the
entries of a list (``vector_stores[]``)."""

import json
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent
SCHEMA_PATH = REPO / "schema" / "policy.schema.json"


def load() -> dict:
    return json.loads(SCHEMA_PATH.read_text())


def resolve(schema: dict, node: dict) -> tuple[dict, str | None]:
    """The node behind a ``$ref`` (or an ``allOf`` of one ``$ref``, which carries a
    description beside it), and the definition's name when there was one."""
    if "allOf" in node and len(node["allOf"]) == 1 and "$ref" in node["allOf"][0]:
        node = node["allOf"][0]
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        return schema["definitions"][name], name
    return node, None


def kind(node: dict) -> str:
    """``closed``: an object of named fields and no others (a serde struct with
    deny_unknown_fields); ``map``: an object of operator-chosen keys; ``list``; ``leaf``:
    anything else (scalars, and objects whose content is not the policy's, such as a JWK
    Set)."""
    if node.get("type") == "array" and isinstance(node.get("items"), dict):
        return "list"
    if node.get("type") == "object" and node.get("additionalProperties") is False:
        return "closed"
    if node.get("type") == "object" and isinstance(node.get("additionalProperties"), dict):
        return "map"
    return "leaf"


def walk(schema: dict):
    """Every node: yields ``(path, node, kind, identity)``, every ``$ref`` expanded where it
    is used. ``identity`` names a field once however many places use its definition:
    ``(definition, path inside it)``, or ``(None, path)`` outside definitions."""

    def go(path, node, definition, inner):
        # A field that uses a definition is a field of where it is used; what is inside the
        # definition is the definition's.
        identity = (definition, inner)
        node, name = resolve(schema, node)
        if name is not None:
            definition, inner = name, ()
        k = kind(node)
        yield path, node, k, identity
        if k == "closed":
            for key, child in node.get("properties", {}).items():
                step = ("key", key)
                yield from go(path + (step,), child, definition, inner + (step,))
        elif k == "map":
            yield from go(path + (("map",),), node["additionalProperties"], definition,
                          inner + (("map",),))
        elif k == "list":
            yield from go(path + (("item",),), node["items"], definition, inner + (("item",),))

    yield from go((), schema, None, ())


def dotted(path, map_key="<>", item="[]") -> str:
    """``providers.<>.remote_jwks.cluster``, ``vector_stores[].kind`` (or, with other
    spellings for map keys and items, the path the filter names in its errors)."""
    out = ""
    for step in path:
        if step[0] == "key":
            out += ("." if out else "") + step[1]
        elif step[0] == "map":
            out += ("." if out else "") + map_key
        else:
            out += item
    return out


def fields(schema: dict) -> dict:
    """Every named field as ``{dotted path: identity}``, definitions expanded everywhere."""
    return {dotted(path): identity for path, _, _, identity in walk(schema)
            if path and path[-1][0] == "key"}
