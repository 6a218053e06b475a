"""Tenants stay apart under load: concurrent requests for different tenants, several requests
on one keep-alive connection, each request forwarded with its own verified identity only."""

import http.client
import json
import threading

from harness.client import new_request_id
from harness.keys import GLOBEX_ISSUER, claims, mint
from harness.plugin_config import without_isolation_tags


def _tokens(keys):
    return {
        "acme": ("alice", mint(keys.corp_rsa, claims("acme", sub="alice"))),
        "globex": ("gina", mint(keys.globex_rsa, claims("globex", sub="gina",
                                                        email="gina@globex.test",
                                                        iss=GLOBEX_ISSUER))),
        "hooli": ("gavin", mint(keys.corp_ec256, claims("hooli", sub="gavin",
                                                        email="gavin@hooli.test"))),
        "initech": (None, mint(keys.corp_ed, claims("initech", sub="peter"))),
        "none": (None, None),
    }


def _keep_alive_worker(port, plan, tokens, results, errors):
    """Send ``plan`` (a list of tenant names) over ONE keep-alive connection."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        for tenant in plan:
            user, token = tokens[tenant]
            request_id = new_request_id()
            headers = {"x-request-id": request_id, "content-type": "application/json"}
            if token:
                headers["authorization"] = f"Bearer {token}"
            body = json.dumps({"model": "gpt-4o", "messages": []})
            conn.request("POST", "/v1/chat/completions", body=body, headers=headers)
            resp = conn.getresponse()
            resp.read()
            results.append((tenant, user, request_id, resp.status))
    except Exception as exc:  # noqa: BLE001 - reported by the test
        errors.append(exc)
    finally:
        conn.close()


def test_concurrent_keep_alive_requests_carry_only_their_own_identity(client, upstream, keys):
    tokens = _tokens(keys)
    names = ["acme", "globex", "hooli", "initech", "none"]
    plans = [[names[(t + i) % len(names)] for i in range(15)] for t in range(4)]
    results, errors = [], []
    threads = [threading.Thread(target=_keep_alive_worker,
                                args=(client.port, plan, tokens, results, errors))
               for plan in plans]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert len(results) == 60
    expected_status = {"acme": 200, "globex": 200, "hooli": 200, "initech": 403, "none": 401}
    for tenant, user, request_id, status in results:
        assert status == expected_status[tenant], (tenant, status)
        seen = upstream.find(request_id)
        if status != 200:
            assert seen == []
            continue
        assert len(seen) == 1
        assert seen[0].header_values("x-tenant-id") == [tenant]
        assert seen[0].header_values("x-user-id") == [user]
        assert seen[0].header_values("authorization") == []


def test_large_request_body_reaches_the_upstream_intact(client, upstream, keys):
    content = "x" * (512 * 1024)
    body = {"model": "gpt-4o", "messages": [{"role": "user", "content": content}]}
    resp = client.chat(token=mint(keys.corp_rsa, claims("acme")), body=body)
    assert resp.status == 200, resp
    assert without_isolation_tags(json.loads(upstream.received(resp.request_id).body)) == body
