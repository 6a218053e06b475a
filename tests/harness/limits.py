"""Quota answers: the 429 shape, the IETF RateLimit fields, and keeping a test clear of a
window's edge (windows are aligned to the Unix epoch)."""

import calendar
import json
import time

from .wait import wait_for


def parse_rate_limit_field(value: str) -> dict:
    """``"requests-60s";q=5;w=60, "tokens-3600s";q=1000;w=3600`` →
    ``{"requests-60s": {"q": 5, "w": 60}, ...}`` (insertion order kept)."""
    result = {}
    for item in value.split(","):
        name, *params = [p.strip() for p in item.strip().split(";")]
        assert name.startswith('"') and name.endswith('"'), f"policy name not quoted: {item!r}"
        parsed = {}
        for param in params:
            key, sep, number = param.partition("=")
            assert sep, f"parameter without a value in {item!r}"
            parsed[key] = int(number)
        result[name[1:-1]] = parsed
    return result


def window_name(kind: str, window_s: int) -> str:
    return f"{kind}-{window_s}s"


def seconds_to_window_end(window_s: int, now: float = None) -> float:
    now = time.time() if now is None else now
    return window_s - (now % window_s)


def seconds_to_month_end(now: float = None) -> float:
    now = time.time() if now is None else now
    t = time.gmtime(now)
    year, month = (t.tm_year + 1, 1) if t.tm_mon == 12 else (t.tm_year, t.tm_mon + 1)
    return calendar.timegm((year, month, 1, 0, 0, 0)) - now


def wait_clear_of_window_edge(window_s: int, margin_s: float = 3.0):
    """Returns once the current ``window_s`` window has more than ``margin_s`` seconds left
    (at most ``margin_s`` plus a little of waiting), so a short test stays inside one window."""
    wait_for(lambda: seconds_to_window_end(window_s) > margin_s
             and time.time() % window_s > 0.5,
             timeout=margin_s + 2, interval=0.1,
             message=f"the clock to leave the edge of a {window_s}s window")


def assert_quota_denied(resp, reason: str, windows: list, refusing: int = None,
                        upstream=None, exhausted=True) -> dict:
    """A 429 for ``reason`` with ``Retry-After`` and the RateLimit fields.

    ``windows``: the tenant's request and token windows as (kind, limit, window_s), in
    configuration order (requests first); ``RateLimit-Policy`` must list exactly these.
    ``refusing``: the window_s of the window that refuses (None: the monthly budget), for the
    Retry-After check. ``exhausted``: the refusing window has nothing left (False for a
    request refused because what is left is less than it needs, as with ``output_cap``).
    Returns {"policy": ..., "ratelimit": ..., "retry_after": ...}."""
    assert resp.status == 429, f"expected 429 {reason}, got {resp}"
    content_type = (resp.header("content-type") or "").split(";")[0].strip()
    assert content_type == "application/json", content_type
    body = json.loads(resp.body)
    error = body.get("error")
    assert isinstance(error, dict), body
    assert error.get("type") == "rate_limit_error", error
    assert error.get("code") == reason, error
    assert isinstance(error.get("message"), str) and error["message"], error
    retry = resp.header("retry-after")
    assert retry is not None and retry.isdigit(), f"retry-after is {retry!r}"
    retry = int(retry)
    assert retry >= 1
    expected = (seconds_to_month_end() if refusing is None
                else seconds_to_window_end(refusing))
    assert abs(retry - expected) <= 2, f"retry-after {retry}, window ends in {expected:.1f}s"

    names = [window_name(kind, w) for kind, _, w in windows]
    result = {"retry_after": retry, "policy": {}, "ratelimit": {}}
    if not windows:
        assert resp.header("ratelimit-policy") is None
        return result
    policy = parse_rate_limit_field(resp.header("ratelimit-policy") or "")
    assert list(policy) == names, f"ratelimit-policy {policy}"
    for (kind, limit, w), name in zip(windows, names):
        assert policy[name] == {"q": limit, "w": w}, f"{name}: {policy[name]}"
    current = parse_rate_limit_field(resp.header("ratelimit") or "")
    assert list(current) == names, f"ratelimit {current}"
    for (kind, limit, w), name in zip(windows, names):
        assert set(current[name]) == {"r", "t"}, current[name]
        assert 0 <= current[name]["r"] <= limit
        assert 0 <= current[name]["t"] <= w
        assert abs(current[name]["t"] - seconds_to_window_end(w)) <= 2, (name, current[name])
    if refusing is not None and exhausted:
        refusing_kind = {"request_quota_exceeded": "requests",
                         "token_quota_exceeded": "tokens"}[reason]
        refusing_names = [n for (kind, _, w), n in zip(windows, names)
                          if w == refusing and kind == refusing_kind]
        assert any(current[n]["r"] == 0 for n in refusing_names), current
    if upstream is not None:
        for one in upstream if isinstance(upstream, (list, tuple)) else [upstream]:
            assert one.find(resp.request_id) == [], "a refused request reached the upstream"
    result["policy"], result["ratelimit"] = policy, current
    return result


def remaining(resp, kind: str):
    """``x-ratelimit-remaining-<kind>`` as an int (None when absent)."""
    value = resp.header(f"x-ratelimit-remaining-{kind}")
    return None if value is None else int(value)
