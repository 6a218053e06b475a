#!/usr/bin/env bash
# Starts Redis, the development rate-limit service, the demo upstream and two Envoy replicas
# (envoy/global.yaml on 10000/9901 and a copy on 10001/9902) that share one quota through the
# service; prints curl lines for both and stops everything on Ctrl-C. Called by `make run-global`.
set -euo pipefail
envoy=$1
service=$2
cd "$(dirname "$0")/.."
mkdir -p .run
pids=()
trap 'kill "${pids[@]}" 2>/dev/null; wait 2>/dev/null' EXIT INT TERM

redis-server --bind 127.0.0.1 --port 16379 --save '' --appendonly no >.run/redis.log 2>&1 &
pids+=($!)
for _ in $(seq 50); do redis-cli -p 16379 ping >/dev/null 2>&1 && break; sleep 0.1; done

"$service" --listen 127.0.0.1:18081 --limits envoy/limits/limitador.yaml \
  --redis redis://127.0.0.1:16379 >.run/ratelimit.log 2>&1 &
pids+=($!)
.venv/bin/python tools/demo_upstream.py 18080 >.run/upstream.log 2>&1 &
pids+=($!)
sed -e 's/port_value: 10000/port_value: 10001/' -e 's/port_value: 9901/port_value: 9902/' \
  envoy/global.yaml >.run/global-b.yaml
for replica in a b; do
  config=envoy/global.yaml
  [ $replica = b ] && config=.run/global-b.yaml
  "$envoy" -c $config --concurrency 2 --use-dynamic-base-id --log-level info \
    --log-path .run/envoy-$replica.log >.run/access-$replica.log 2>&1 &
  pids+=($!)
done
for admin in 9901 9902; do
  for _ in $(seq 100); do
    curl -sf http://127.0.0.1:$admin/ready >/dev/null 2>&1 && break
    sleep 0.2
  done
done
grep -q "ready" .run/ratelimit.log || { cat .run/ratelimit.log; exit 1; }
token=$(.venv/bin/python tools/mint_token.py --tenant globex)
cat <<MSG

Two gateway replicas share globex's quota through the rate-limit service (plan free: 5 requests/min
per replica locally, 8 across both, so the last two of these ten curls get 429):
  replica A http://127.0.0.1:10000 (admin :9901), replica B http://127.0.0.1:10001 (admin :9902)
Logs in .run/ (envoy-a.log, envoy-b.log, ratelimit.log, redis.log).

for port in 10000 10001 10000 10001 10000 10001 10000 10001 10000 10001; do curl -s -o /dev/null -w "\$port %{http_code}\n" http://127.0.0.1:\$port/v1/models -H "Authorization: Bearer $token"; done

Ctrl-C stops everything.
MSG
wait "${pids[@]}"
