"""Quota answers: the 429 shape, the IETF RateLimit fields with exact reset times, and
keeping a test clear of a window's or a month's edge (windows are aligned to the Unix epoch,
budgets to calendar months)."""

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


# Windows far longer than any test (ten years, and twenty): no window of these can reset while
# a test runs (windows are aligned to the epoch; the next edge of both is in December 2029).
# Tests about resets use short windows and wait for the edge instead.
LONG = 10 * 365 * 86400
LONGER = 2 * LONG


def window_end(window_s: int, at: int) -> int:
    """When the ``window_s`` window holding Unix second ``at`` ends."""
    return (at // window_s + 1) * window_s


def month_end(at: int) -> int:
    """When the calendar month (UTC) holding Unix second ``at`` ends."""
    t = time.gmtime(at)
    year, month = (t.tm_year + 1, 1) if t.tm_mon == 12 else (t.tm_year, t.tm_mon + 1)
    return calendar.timegm((year, month, 1, 0, 0, 0))


def seconds_to_window_end(window_s: int, now: float = None) -> float:
    now = time.time() if now is None else now
    return window_s - (now % window_s)


def seconds_to_month_end(now: float = None) -> float:
    now = time.time() if now is None else now
    return month_end(int(now)) - now


def wait_clear_of_window_edge(window_s: int, margin_s: float = 3.0):
    """Returns once the current ``window_s`` window has more than ``margin_s`` seconds left
    (at most ``margin_s`` plus a little of waiting), so a short test stays inside one window."""
    wait_for(lambda: seconds_to_window_end(window_s) > margin_s
             and time.time() % window_s > 0.5,
             timeout=margin_s + 2, interval=0.1,
             message=f"the clock to leave the edge of a {window_s}s window")


def wait_clear_of_month_edge(margin_s: float = 120.0):
    """Monthly budgets reset when the calendar month (UTC) ends: a budget test that starts
    within ``margin_s`` of the month's end waits for the new month (once a month, at most
    ``margin_s``), so its budget cannot reset while it runs."""
    wait_for(lambda: seconds_to_month_end() > margin_s, timeout=margin_s + 5, interval=0.5,
             message="the next calendar month")


def decision_seconds(resp) -> range:
    """The whole Unix seconds the gateway's clock may have read while deciding about
    ``resp``: from when the request was sent to when its answer was read."""
    assert resp.sent_at and resp.received_at, \
        f"{resp!r} has no send/receive times (send it with harness.client)"
    return range(int(resp.sent_at), int(resp.received_at) + 1)


def expected_resets(resp, window_s: int = None) -> set:
    """The ``RateLimit`` reset values (``t``) possible for a window of ``window_s`` (None: the
    calendar month) in the answer ``resp``: the window's end minus the second the gateway
    decided in."""
    end = month_end if window_s is None else (lambda at: window_end(window_s, at))
    return {end(at) - at for at in decision_seconds(resp)}


def assert_quota_denied(resp, reason: str, windows: list, refusing: int = None,
                        upstream=None, exhausted=True) -> dict:
    """A 429 for ``reason`` with ``Retry-After`` and the RateLimit fields.

    ``windows``: the tenant's request and token windows as (kind, limit, window_s), in
    configuration order (requests first); ``RateLimit-Policy`` must list exactly these.
    ``refusing``: the window_s of the window that refuses (None: the monthly budget).
    ``exhausted``: the refusing window has nothing left (False for a request refused because
    what is left is less than it needs, as with ``output_cap``).
    Reset times are checked exactly: there must be one second, between sending the request
    and reading its answer, at which every window's ``t`` is its end minus that second, and
    ``Retry-After`` (at least 1) is the latest end among the full windows (``r`` = 0, and the
    budget when it refuses) for a refusal of full windows, the refusing window's end for one
    that was not exhausted.
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

    names = [window_name(kind, w) for kind, _, w in windows]
    result = {"retry_after": retry, "policy": {}, "ratelimit": {}}
    current = {}
    if not windows:
        assert resp.header("ratelimit-policy") is None
        assert resp.header("ratelimit") is None
    else:
        policy = parse_rate_limit_field(resp.header("ratelimit-policy") or "")
        assert list(policy) == names, f"ratelimit-policy {policy}"
        for (kind, limit, w), name in zip(windows, names):
            assert policy[name] == {"q": limit, "w": w}, f"{name}: {policy[name]}"
        current = parse_rate_limit_field(resp.header("ratelimit") or "")
        assert list(current) == names, f"ratelimit {current}"
        for (kind, limit, w), name in zip(windows, names):
            assert set(current[name]) == {"r", "t"}, current[name]
            assert 0 <= current[name]["r"] <= limit
        result["policy"], result["ratelimit"] = policy, current

    def retry_after_at(at):
        """Retry-After if the gateway decided in second ``at``."""
        if not exhausted:
            return (month_end(at) if refusing is None else window_end(refusing, at)) - at
        ends = [window_end(w, at) for (_, _, w), name in zip(windows, names)
                if current[name]["r"] == 0]
        if refusing is None:
            ends.append(month_end(at))
        return max(ends, default=at) - at

    def consistent(at):
        for (_, _, w), name in zip(windows, names):
            if current[name]["t"] != window_end(w, at) - at:
                return False
        return retry == max(1, retry_after_at(at))
    seconds = decision_seconds(resp)
    assert any(consistent(at) for at in seconds), \
        f"retry-after {retry} and ratelimit {current} fit no second between sending " \
        f"({resp.sent_at:.3f}) and the answer ({resp.received_at:.3f}): expected resets " \
        f"{[(name, sorted(expected_resets(resp, w))) for (_, _, w), name in zip(windows, names)]}" \
        f", retry-after {sorted(max(1, retry_after_at(at)) for at in seconds)}"

    if refusing is not None and exhausted:
        refusing_kind = {"request_quota_exceeded": "requests",
                         "token_quota_exceeded": "tokens",
                         "user_request_quota_exceeded": "requests",
                         "user_token_quota_exceeded": "tokens"}[reason]
        refusing_names = [n for (kind, _, w), n in zip(windows, names)
                          if w == refusing and kind == refusing_kind]
        assert refusing_names, f"no {refusing_kind} window of {refusing}s in {windows}"
        assert any(current[n]["r"] == 0 for n in refusing_names), current
    if upstream is not None:
        for one in upstream if isinstance(upstream, (list, tuple)) else [upstream]:
            assert one.find(resp.request_id) == [], "a refused request reached the upstream"
    return result


def remaining(resp, kind: str):
    """``x-ratelimit-remaining-<kind>`` as an int (None when absent)."""
    value = resp.header(f"x-ratelimit-remaining-{kind}")
    return None if value is None else int(value)
