"""`tenant-guard bill` over records written by a real Envoy: the month's totals per tenant,
per user and per model equal the sums of the records (exactly, in Decimal), estimate-charged
requests are marked, refusals are counted apart, month boundaries hold, malformed lines are
named by line number, and the JSON, CSV and table forms agree."""

import csv
import io
import json
import re
from collections import defaultdict
from datetime import datetime, timezone
from decimal import Decimal

import pytest

from harness import bootstrap as bs
from harness.answers import answer
from harness.cli import run
from harness.envoy_process import Envoy
from harness.keys import claims, mint
from harness.plugin_config import gateway_config, tenant
from harness.records import RECORD_MARKER, filter_record

# No default price: a model outside the list is admitted and metered, but unpriced.
PRICING = {"models": {
    "gpt-4o": {"input_per_million": 2.5, "output_per_million": 10.0,
               "cached_input_per_million": 1.25},
    "claude-sonnet-4": {"input_per_million": 3.0, "output_per_million": 15.0,
                        "cached_input_per_million": 0.3, "cache_write_per_million": 3.75}}}
PREFIX_TIME = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3})\]")
NUMBERS = ["input_tokens", "cached_input_tokens", "cache_write_tokens", "output_tokens",
           "reasoning_tokens"]


def chat(model="gpt-4o", **extra):
    return dict({"model": model, "messages": [{"role": "user", "content": "hello there"}]},
                **extra)


def anthropic(model="claude-sonnet-4", **extra):
    return dict({"model": model, "max_tokens": 200,
                 "messages": [{"role": "user", "content": "hello there"}]}, **extra)


@pytest.fixture(scope="module")
def bill_envoy(tmp_path_factory, wasm_path, upstream, jwks_server, keys):
    config = gateway_config(keys, {"acme": tenant(), "globex": tenant()}, pricing=PRICING,
                            isolation={"prompt_cache": "off"})
    with Envoy(tmp_path_factory.mktemp("bill-envoy"),
               bs.gateway(upstream.port, jwks_server.port,
                          [bs.wasm_filter(wasm_path, config)])) as proxy:
        yield proxy


@pytest.fixture(scope="module")
def traffic(bill_envoy, upstream, keys):
    """Sends a mix for two tenants and three users over JSON and SSE, OpenAI and Anthropic,
    with cache reads, writes and reasoning, an unpriced model, a stream the client abandons
    (charged on the filter's estimate), a failed upstream and refusals with and without a
    tenant; returns the filter's records of these requests (from the Envoy log)."""
    client = bill_envoy.client
    token = {user: mint(keys.corp_rsa, claims(tenant_id, sub=user))
             for tenant_id, user in (("acme", "alice"), ("acme", "bob"), ("globex", "carol"))}
    ids = []

    def send(user, path, body, kind, status=200, **usage):
        resp = client.post(path, token=token[user], body=body, headers=answer(kind, **usage))
        assert resp.status == status, resp
        ids.append(resp.request_id)

    send("alice", "/v1/chat/completions", chat(), "openai-json", in_=1000, out=300,
         cached=600, reasoning=120)
    send("alice", "/v1/chat/completions", chat(), "openai-json", in_=7, out=3)
    send("alice", "/v1/chat/completions", chat(stream=True), "openai-sse", in_=57, out=23)
    send("bob", "/v1/messages", anthropic(), "anthropic-json", in_=20, out=50, cached=3000,
         written=500)
    send("bob", "/v1/messages", anthropic(stream=True), "anthropic-sse", in_=40, out=60)
    send("bob", "/v1/chat/completions", chat(), "openai-json", in_=333, out=77)
    send("carol", "/v1/chat/completions", chat("mystery-model"), "openai-json", in_=10,
         out=10)
    send("carol", "/v1/messages", anthropic(), "anthropic-json", in_=123, out=45)
    send("carol", "/v1/chat/completions", chat(), "error", status=500)

    # bob abandons a stream after message_start and one delta: charged on the estimate.
    stream = client.open_stream(path="/v1/messages", token=token["bob"],
                                body=anthropic(stream=True),
                                headers=answer("anthropic-sse", in_=70, out=90, hold_after=4))
    upstream.leave_when_held(stream)
    ids.append(stream.request_id)

    # Refused: acme's token naming another tenant (a record of tenant acme), and no token.
    refused = client.chat(token=token["alice"], headers={"x-tenant-id": "globex"})
    assert refused.status == 403, refused
    ids.append(refused.request_id)
    anonymous = client.chat()
    assert anonymous.status == 401, anonymous
    ids.append(anonymous.request_id)

    records = [filter_record(bill_envoy, request_id) for request_id in ids]
    assert any(r.get("usage_source") == "estimate" for r in records), records
    return records


def record_lines(log_text):
    """(prefix time as UTC datetime, line) of every request record line in an Envoy log."""
    found = []
    for line in log_text.splitlines():
        if RECORD_MARKER in line:
            at = datetime.strptime(PREFIX_TIME.match(line).group(1), "%Y-%m-%d %H:%M:%S.%f")
            found.append((at.replace(tzinfo=timezone.utc), line))
    return found


def parse_record(line):
    return json.JSONDecoder().raw_decode(line[line.index(RECORD_MARKER):])[0]


def expected_bill(records, by):
    """Rows keyed by tenant (and user, model), summed here from the records themselves."""
    rows = defaultdict(lambda: {"requests": 0, "refused": 0, "cost_usd": Decimal(0),
                                "estimated_requests": 0, "estimated_cost_usd": Decimal(0),
                                "unpriced_requests": 0, **{n: 0 for n in NUMBERS}})
    for r in records:
        if r.get("tenant") is None:
            assert "cost_usd" not in r and not r.get("input_tokens"), r
            continue
        key = (r["tenant"],) + tuple(r.get(part) or "(none)" for part in by)
        row = rows[key]
        row["requests" if r["decision"] == "allow" else "refused"] += 1
        for n in NUMBERS:
            row[n] += r.get(n, 0)
        cost = Decimal(r.get("cost_usd", "0"))
        row["cost_usd"] += cost
        if r.get("usage_source") == "estimate":
            row["estimated_requests"] += 1
            row["estimated_cost_usd"] += cost
        if r["decision"] == "allow" and "cost_usd" not in r and \
                r.get("input_tokens", 0) + r.get("output_tokens", 0) > 0:
            row["unpriced_requests"] += 1
    return dict(rows)


def bill(*args, check=True):
    result = run("bill", *args)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def bill_json(*args):
    return json.loads(bill(*args, "--format", "json").stdout)


def as_expected(row):
    """A row of the bill's JSON in the form of expected_bill's, money as Decimal (and its text
    the filter's exact form: no exponent)."""
    for money in ("cost_usd", "estimated_cost_usd"):
        assert re.fullmatch(r"\d+(\.\d*[1-9])?", row[money]), row
    return {k: Decimal(v) if k.endswith("cost_usd") else v for k, v in row.items()
            if k not in ("tenant", "user", "model")}


@pytest.fixture(scope="module")
def month_log(tmp_path_factory, bill_envoy, traffic):
    """The Envoy log's record lines of this module's requests, and the month they are in."""
    ours = {r["request_id"] for r in traffic}
    lines = [(at, line) for at, line in record_lines(bill_envoy.read_log())
             if parse_record(line)["request_id"] in ours]
    assert len(lines) == len(traffic)
    # Normally one month; a run across midnight on the last of a month is billed in two.
    months = sorted({at.strftime("%Y-%m") for at, _ in lines})
    path = tmp_path_factory.mktemp("bill") / "envoy.log"
    # The whole Envoy log (its own lines, audit lines and all), for the tool to pick from.
    path.write_text(bill_envoy.read_log())
    return path, lines, months


@pytest.mark.parametrize("by", [(), ("user",), ("model",), ("user", "model")],
                         ids=["tenant", "user", "model", "user-model"])
def test_the_bill_equals_the_sums_of_the_records(month_log, by):
    path, lines, months = month_log
    for month in months:
        records = [parse_record(line) for at, line in lines if at.strftime("%Y-%m") == month]
        flags = [f"--per-{part}" for part in by]
        doc = bill_json("--month", month, *flags, path)
        assert doc["month"] == month and doc["by"] == ["tenant", *by]
        got = {(row["tenant"],) + tuple(row[part] for part in by): as_expected(row)
               for row in doc["rows"]}
        assert got == expected_bill(records, by)
        total = as_expected(doc["total"])
        assert total["cost_usd"] == sum((Decimal(r.get("cost_usd", "0")) for r in records),
                                        Decimal(0))
        assert total["requests"] == sum(r["decision"] == "allow" and r.get("tenant") is not None
                                        for r in records)
        assert doc["read"]["unattributed"] == sum(r.get("tenant") is None for r in records)
        assert doc["read"]["audit_lines"] >= 2  # the refusals' audit lines were read, not billed
        tenants = {row["tenant"]: as_expected(row) for row in doc["tenants"]}
        assert tenants == {key[0]: row for key, row in expected_bill(records, ()).items()}


def test_estimates_refusals_and_unpriced_requests_are_marked(month_log, traffic):
    path, _, months = month_log
    by_user = {}
    for month in months:
        for row in bill_json("--month", month, "--per-user", path)["rows"]:
            by_user.setdefault((row["tenant"], row["user"]), []).append(row)
    bob = by_user[("acme", "bob")]
    assert sum(r["estimated_requests"] for r in bob) == 1
    estimate = next(r for r in traffic if r.get("usage_source") == "estimate")
    assert sum(Decimal(r["estimated_cost_usd"]) for r in bob) == Decimal(estimate["cost_usd"])
    alice = by_user[("acme", "alice")]
    assert sum(r["refused"] for r in alice) == 1
    assert sum(r["requests"] for r in alice) == 3
    carol = by_user[("globex", "carol")]
    assert sum(r["unpriced_requests"] for r in carol) == 1  # mystery-model
    assert sum(r["requests"] for r in carol) == 3  # the upstream's 500 was admitted


def test_the_table_and_csv_say_the_same(month_log):
    path, lines, months = month_log
    for month in months:
        doc = bill_json("--month", month, "--per-user", "--per-model", path)
        text = bill("--month", month, "--per-user", "--per-model", "--format", "csv",
                    path).stdout
        rows = list(csv.DictReader(io.StringIO(text)))
        assert len(rows) == len(doc["rows"])
        for row, want in zip(rows, doc["rows"]):
            assert (row["tenant"], row["user"], row["model"]) == \
                (want["tenant"], want["user"], want["model"])
            for name, value in want.items():
                assert row[name] == str(value), (name, row, want)
        assert sum(Decimal(r["cost_usd"]) for r in rows) == Decimal(doc["total"]["cost_usd"])
        table = bill("--month", month, "--per-user", path).stdout
        total_line = next(line for line in table.splitlines() if line.startswith("TOTAL"))
        cells = total_line.split()
        assert cells[1:8] == [str(doc["total"][n]) for n in
                              ("requests", "refused", *NUMBERS)]
        assert Decimal(cells[8]) == Decimal(doc["total"]["cost_usd"])
        if doc["total"]["estimated_requests"]:
            assert cells[9:] == ["*"] and "charged on the filter's estimate" in table


def test_month_boundaries_are_utc_and_half_open(month_log, tmp_path):
    """The same real record lines, their Envoy prefix moved to the last millisecond of November
    and the first of December: each is billed in its own month only."""
    _, lines, _ = month_log
    priced = [line for _, line in lines if "cost_usd" in parse_record(line)][:2]
    assert len(priced) == 2
    before = PREFIX_TIME.sub("[2026-11-30 23:59:59.999]", priced[0])
    after = PREFIX_TIME.sub("[2026-12-01 00:00:00.000]", priced[1])
    path = tmp_path / "boundary.log"
    path.write_text(before + "\n" + after + "\n")
    for month, line in (("2026-11", before), ("2026-12", after)):
        doc = bill_json("--month", month, path)
        assert doc["total"]["cost_usd"] == parse_record(line)["cost_usd"]
        assert doc["total"]["requests"] == 1 and doc["read"]["outside_month"] == 1
    for month in ("2026-10", "2027-01"):
        doc = bill_json("--month", month, path)
        assert doc["rows"] == [] and doc["total"]["cost_usd"] == "0"
        assert doc["read"]["outside_month"] == 2


def test_a_malformed_record_is_named_by_its_line(month_log, tmp_path):
    path, lines, months = month_log
    good = [line for _, line in lines if "cost_usd" in parse_record(line)]
    cost = parse_record(good[0])["cost_usd"]
    broken = good[0].replace(f'"cost_usd":"{cost}"', '"cost_usd":"1e-3"')
    assert broken != good[0]
    bad = tmp_path / "bad.log"
    bad.write_text("\n".join([good[1], "[2026-12-01 00:00:00.000][1][info][main] x", broken,
                              good[2]]) + "\n")
    month = next(at for at, line in lines if line == good[1]).strftime("%Y-%m")
    failed = bill("--month", month, bad, check=False)
    assert failed.returncode == 2 and failed.stdout == ""
    assert f"{bad}:3: cost_usd" in failed.stderr, failed.stderr
    skipped = bill("--month", month, "--skip-bad", "--format", "json", bad)
    assert f"{bad}:3: cost_usd" in skipped.stderr, skipped.stderr
    doc = json.loads(skipped.stdout)
    assert doc["read"]["skipped"] == 1
    in_month = [parse_record(line) for line in (good[1], good[2])
                if next(at for at, ln in lines if ln == line).strftime("%Y-%m") == month]
    assert Decimal(doc["total"]["cost_usd"]) == sum(Decimal(r["cost_usd"]) for r in in_month)


def test_the_access_log_bills_with_its_start_time(bill_envoy, traffic, tmp_path):
    """A JSON access log of the filter state with %START_TIME% bills the same requests: each
    line's usage as Envoy wrote it (an abandoned stream's usage is only in the Envoy log's
    record, so it is left out here)."""
    lines = bill_envoy.wait_access_log_flushed()
    ours = {r["request_id"] for r in traffic}
    mine = [line for line in lines if line.get("request_id") in ours]
    assert len(mine) == len(traffic) and all(line.get("start_time") for line in mine)
    path = tmp_path / "access.log"
    path.write_text("".join(json.dumps(line) + "\n" for line in mine))
    months = {line["start_time"][:7] for line in mine}
    total = Decimal(0)
    requests = 0
    for month in months:
        doc = bill_json("--month", month, path)
        total += Decimal(doc["total"]["cost_usd"])
        requests += doc["total"]["requests"] + doc["total"]["refused"]
    assert total == sum(Decimal(line["cost_usd"]) for line in mine if line["cost_usd"])
    assert requests == sum(line["tenant"] is not None for line in mine)


def test_bad_invocations_fail_clearly(month_log):
    path, _, _ = month_log
    for args, message in ((["--month", "2026-13", path], "not a calendar month"),
                          ([path], "--month YYYY-MM is required"),
                          (["--month", "2026-12", "--format", "xml", path], "--format"),
                          (["--month", "2026-12", "--nope", path], "unknown option --nope"),
                          (["--month", "2026-12", "/nonexistent/envoy.log"], "/nonexistent")):
        result = bill(*args, check=False)
        assert result.returncode == 2 and message in result.stderr, (args, result.stderr)
