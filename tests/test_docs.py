"""The documentation stays true to the tree: every relative link (file and #anchor) in
README.md and docs/ resolves, every `make X` it names is a Makefile target, every page of docs/
is on the README's map, and the policy reference (docs/policy.md) names exactly the fields of
the policy's JSON Schema (schema/policy.schema.json), which test_policy_schema.py holds to
the code's own parser. No Envoy needed."""

import re
import shlex
from pathlib import Path

import pytest

from harness import policy_schema as ps

REPO = Path(__file__).resolve().parent.parent
REFERENCE = REPO / "docs" / "policy.md"
DOCS = sorted([REPO / "README.md", REPO / "tests" / "README.md", *(REPO / "docs").glob("*.md")])

FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.M | re.S)
LINK = re.compile(r"(?<!!)\[[^\]\n]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t]*#*[ \t]*$", re.M)
# `make X` in code spans and in command lines of code blocks.
MAKE_SPAN = re.compile(r"`make\s+([^`]*)`")
MAKE_LINE = re.compile(r"^\s*(?:\$ )?make ([^\n#]*)", re.M)


def prose(text: str) -> str:
    """The text without fenced code blocks (links and headings there are not links or
    headings)."""
    return FENCE.sub("", text)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: markup dropped, lower case, punctuation other than `-`
    and `_` removed, spaces to `-`."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text
    text = text.replace("`", "").lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for match in HEADING.finditer(prose(path.read_text())):
        base = slug(match.group(2))
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def relative_links(path: Path) -> list[str]:
    return [t for t in LINK.findall(prose(path.read_text()))
            if not re.match(r"^[a-z][a-z0-9+.-]*:", t)]


def broken_links(path: Path) -> list[str]:
    broken = []
    for target in relative_links(path):
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and (dest.suffix != ".md" or anchor not in anchors(dest)):
            broken.append(f"{target}: no heading with anchor #{anchor} in {dest.name}")
    return broken


def make_targets() -> set[str]:
    makefile = (REPO / "Makefile").read_text()
    rules = re.findall(r"^([A-Za-z0-9_.-]+(?:[ \t]+[A-Za-z0-9_.-]+)*)[ \t]*:(?![=:])", makefile,
                       re.M)
    return {t for rule in rules for t in rule.split() if not t.startswith(".")}


def named_make_targets(path: Path) -> set[str]:
    text = path.read_text()
    commands = MAKE_SPAN.findall(text)
    for block in FENCE.finditer(text):
        commands += MAKE_LINE.findall(block.group(0))
    named = set()
    for command in commands:
        # `make test ENVOY_VERSION=1.36.2`, `make bench DURATION=5`: the words that are not
        # variable assignments or options are targets.
        named |= {w for w in shlex.split(command) if "=" not in w and not w.startswith("-")}
    return named


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_resolves(doc):
    assert broken_links(doc) == []


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_make_target_named_exists(doc):
    assert named_make_targets(doc) - make_targets() == set()


def test_the_readme_maps_every_page_of_docs():
    linked = {(REPO / t.partition("#")[0]).resolve() for t in relative_links(REPO / "README.md")}
    pages = set((REPO / "docs").glob("*.md"))
    assert pages - linked == set()


def test_the_checks_find_what_they_look_for(tmp_path):
    """The checks are not vacuous: a broken file link, a broken anchor and an unknown target
    are each found, and the real documents do name links, anchors and targets."""
    bad = tmp_path / "bad.md"
    bad.write_text("# Title\n\n[a](missing.md) [b](#nowhere) [c](#title) `make no-such-target`\n"
                   "```sh\nmake also-missing X=1\n```\n")
    assert broken_links(bad) == ["missing.md: no such file",
                                 "#nowhere: no heading with anchor #nowhere in bad.md"]
    assert named_make_targets(bad) - make_targets() == {"no-such-target", "also-missing"}
    assert sum(len(relative_links(d)) for d in DOCS) > 50
    assert sum("#" in t for d in DOCS for t in relative_links(d)) > 20
    assert {"run", "test", "validate", "bench"} <= set().union(*map(named_make_targets, DOCS))


def test_slugs_follow_github():
    assert slug("Output caps (zero overshoot)") == "output-caps-zero-overshoot"
    assert slug("Leased credit (`global_rate_limit.lease`)") == \
        "leased-credit-global_rate_limitlease"
    assert slug("Bodies and Envoy's header modes") == "bodies-and-envoys-header-modes"


# === The policy reference and the schema ===

def reference_fields(text: str) -> set[str]:
    """The fields the reference has a row for (`providers.<name>.issuer` → `providers.<>.issuer`)."""
    rows = re.findall(r"^\| `([^`]+)` \|", text, re.M)
    return {re.sub(r"<[^>]*>", "<>", row) for row in rows}


def undocumented(text: str) -> list[str]:
    """Fields of the schema the reference has no row for. A field of a definition used in
    several places (a plan's limits are also a tenant's `limits`, a price is also
    `pricing.default`) needs a row at one of them."""
    fields = ps.fields(ps.load())
    documented = {identity for path, identity in fields.items()
                  if path in reference_fields(text)}
    return sorted(path for path, identity in fields.items() if identity not in documented)


def test_the_reference_names_only_fields_of_the_schema():
    assert reference_fields(REFERENCE.read_text()) - set(ps.fields(ps.load())) == set()


def test_every_field_of_the_schema_is_in_the_reference():
    assert undocumented(REFERENCE.read_text()) == []


def test_the_reference_check_finds_a_missing_and_an_invented_field():
    text = REFERENCE.read_text()
    assert len(reference_fields(text)) > 90
    without = "\n".join(l for l in text.splitlines()
                        if not l.startswith("| `identity.strip_token` |"))
    assert undocumented(without) == ["identity.strip_token"]
    invented = text + "\n| `identity.strip_tokens` | a field the code does not have |\n"
    assert reference_fields(invented) - set(ps.fields(ps.load())) == {"identity.strip_tokens"}
