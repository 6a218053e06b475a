#!/usr/bin/env bash
# Starts the demo upstream and Envoy with envoy/demo.yaml, prints a ready-to-paste curl line,
# and stops both on Ctrl-C. Called by `make run`.
set -euo pipefail
envoy=$1
cd "$(dirname "$0")/.."
mkdir -p .run
.venv/bin/python tools/demo_upstream.py 18080 >.run/upstream.log 2>&1 &
upstream=$!
"$envoy" -c envoy/demo.yaml --concurrency 2 --log-level info --log-path .run/envoy.log &
envoy_pid=$!
trap 'kill $upstream $envoy_pid 2>/dev/null; wait 2>/dev/null' EXIT INT TERM
for _ in $(seq 100); do
  curl -sf http://127.0.0.1:9901/ready >/dev/null 2>&1 && break
  kill -0 $envoy_pid 2>/dev/null || { tail -20 .run/envoy.log; exit 1; }
  sleep 0.2
done
token=$(.venv/bin/python tools/mint_token.py --tenant acme)
cat <<MSG

tenant-guard demo is up: gateway http://127.0.0.1:10000, admin http://127.0.0.1:9901
Envoy log (records are the {"type":"tenant_guard.request"...} lines): .run/envoy.log
Audit stream (denials, cross-tenant events; hash-chained): .run/audit.log
Access log: this terminal. Other demo tenants: make token TENANT=globex (initech is suspended).

curl -s http://127.0.0.1:10000/v1/chat/completions -H "Authorization: Bearer $token" -H 'content-type: application/json' -d '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}'

Ctrl-C stops the demo.
MSG
wait $envoy_pid
