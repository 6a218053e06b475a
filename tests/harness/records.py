"""The filter's per-request record as a JSON line in the Envoy log."""

import json

from .wait import wait_for

RECORD_MARKER = '{"type":"tenant_guard.request"'


def filter_records(log_text: str) -> list:
    """Every tenant_guard.request JSON object found in the Envoy log, in order."""
    decoder = json.JSONDecoder()
    records = []
    for line in log_text.splitlines():
        start = line.find(RECORD_MARKER)
        if start < 0:
            continue
        try:
            record, _ = decoder.raw_decode(line[start:])
        except ValueError:
            continue
        records.append(record)
    return records


def filter_record(envoy, request_id, timeout=10.0) -> dict:
    """The single record of the request the client sent with ``x-request-id: request_id``
    (the record's ``client_request_id``; its ``request_id`` is the filter's own)."""
    def find():
        found = [r for r in filter_records(envoy.read_log())
                 if r.get("client_request_id") == request_id]
        assert len(found) <= 1, f"{len(found)} filter records for {request_id}: {found}"
        return found[0] if found else None
    return wait_for(find, timeout=timeout,
                    message=f"the filter's record of request {request_id} in the Envoy log")
