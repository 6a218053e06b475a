"""A Weaviate stand-in answering the REST and GraphQL shapes of Weaviate's API reference
(https://weaviate.io/developers/weaviate/api/rest, .../api/graphql) for the parts the v4
Python client's REST paths use: ``/v1/meta``, ``/v1/.well-known/ready``, object create, read,
exists, delete, and GraphQL ``Get``. Weaviate itself (a Go server, shipped as a container
image) cannot run on the test machine; this keeps its rules that matter for tenant isolation:
a multi-tenant collection refuses a request without a tenant or with an unknown one (422), a
collection without multi-tenancy refuses one with a tenant, and data is kept per collection and
tenant. Every request is recorded (what reached the store)."""

import json
import re
import threading
import time
import uuid as uuid_module
from urllib.parse import parse_qs, urlsplit

from .servers import RecordedRequest, _Handler, _Server

VERSION = "1.32.4"


class _WeaviateHandler(_Handler):
    def _handle(self):
        try:
            body = self._read_body()
        except ConnectionError:
            return
        store = self.owner
        store._record(RecordedRequest(self.command, self.path,
                                      [(k.lower(), v) for k, v in self.headers.items()], body))
        status, answer = store._answer(self.command, self.path, body)
        if status in (204,) or answer is None:
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()
            return
        self._send(status, json.dumps(answer).encode())


def _error(message):
    return {"error": [{"message": message}]}


class WeaviateStore(_Server):
    """``collections``: {name: multi_tenant (bool)}; ``tenants``: the tenants of every
    multi-tenant collection."""

    def __init__(self, collections: dict, tenants=()):
        self._lock = threading.Lock()
        self._requests = []
        self.collections = dict(collections)
        self.tenants = set(tenants)
        self.objects = {}  # (collection, tenant or None) -> {id: object}
        super().__init__(_WeaviateHandler)

    # --- what reached the store ---

    def _record(self, request):
        with self._lock:
            self._requests.append(request)

    @property
    def requests(self) -> list:
        with self._lock:
            return list(self._requests)

    def paths(self) -> list:
        return [r.path for r in self.requests]

    # --- Weaviate's rules ---

    def _place(self, collection, tenant):
        """The (collection, tenant) key of the data, or a 422/404 answer."""
        if collection not in self.collections:
            return None, (422, _error(f"class {collection!r} not found in schema"))
        if self.collections[collection]:
            if not tenant:
                return None, (422, _error(f"class {collection} has multi-tenancy enabled, "
                                          "but request was without tenant"))
            if tenant not in self.tenants:
                return None, (422, _error(f"tenant not found: {tenant!r}"))
            return (collection, tenant), None
        if tenant:
            return None, (422, _error(f"class {collection} has multi-tenancy disabled, "
                                      "but request was with tenant"))
        return (collection, None), None

    def _answer(self, method, target, body):
        parts = urlsplit(target)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        segments = [s for s in parts.path.split("/") if s]
        if segments[:1] != ["v1"]:
            return 404, _error(f"no route {parts.path}")
        segments = segments[1:]
        if method == "GET" and segments == ["meta"]:
            return 200, {"hostname": "http://[::]:8080", "modules": {}, "version": VERSION,
                         "grpcMaxMessageSize": 104858000}
        if method == "GET" and segments == [".well-known", "ready"]:
            return 200, None
        if method == "POST" and segments == ["objects"]:
            obj = json.loads(body)
            key, refusal = self._place(obj.get("class"), obj.get("tenant"))
            if refusal:
                return refusal
            now = int(time.time() * 1000)
            stored = dict(obj, id=obj.get("id") or str(uuid_module.uuid4()),
                          creationTimeUnix=now, lastUpdateTimeUnix=now)
            with self._lock:
                self.objects.setdefault(key, {})[stored["id"]] = stored
            return 200, stored
        if len(segments) == 3 and segments[0] == "objects" and method in ("GET", "HEAD",
                                                                          "DELETE"):
            key, refusal = self._place(segments[1], query.get("tenant"))
            if refusal:
                return refusal
            with self._lock:
                found = self.objects.get(key, {}).get(segments[2])
                if found is not None and method == "DELETE":
                    del self.objects[key][segments[2]]
            if found is None:
                return 404, None
            return (200, found) if method == "GET" else (204, None)
        if method == "POST" and segments == ["graphql"]:
            return 200, self._graphql(json.loads(body)["query"])
        return 404, _error(f"no route {method} {parts.path}")

    def _graphql(self, query):
        """``{ Get { C[(args)] { props } ... } }``: each collection's objects in the tenant
        the arguments name."""
        found = re.search(r"Get\s*\{(.*)\}\s*\}\s*$", query, re.S)
        data, errors = {}, []
        for name, args, props in re.findall(r"(\w+)\s*(?:\(([^)]*)\))?\s*\{([^{}]*)\}",
                                            found.group(1) if found else ""):
            tenant = re.search(r'tenant\s*:\s*"([^"]*)"', args or "")
            key, refusal = self._place(name, tenant.group(1) if tenant else None)
            if refusal:
                data[name] = None
                errors.append({"locations": [{"column": 3, "line": 1}],
                               "message": refusal[1]["error"][0]["message"],
                               "path": ["Get", name]})
                continue
            with self._lock:
                objects = list(self.objects.get(key, {}).values())
            data[name] = [{p: o["properties"].get(p) for p in props.split()} for o in objects]
        answer = {"data": {"Get": data}}
        if errors:
            answer["errors"] = errors
        return answer
