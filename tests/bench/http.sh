#!/usr/bin/env bash
# The HTTP benchmark: wrk with 2 threads and 64 connections on loopback,
# sharing the machine's cores with the server.
#   1. a bare axum handler (core/server/examples/bare.rs), for comparison;
#   2. GET /api/v1/customers/{id}/view (the customer 360) on random customers;
#   3. POST /api/v1/customers, new customers, each answered once durable.
# The store is copied first, so the one given is left as it was.
#
# Usage: tests/bench/http.sh STORE [SECONDS]
#   e.g. tests/bench/http.sh target/bench/store-1000000 10
set -euo pipefail
store=$(realpath "$1")
seconds=${2:-10}
cd "$(dirname "$0")/../.."
cargo build --release --quiet -p server --bin crm --example bare
crm=$PWD/target/release/crm
bare=$PWD/target/release/examples/bare
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT

wait_for() { # URL
  for _ in $(seq 600); do
    curl -sf -o /dev/null "$1" && return 0
    sleep 0.1
  done
  echo "no answer from $1"; return 1
}

echo "== bare axum handler"
"$bare" 127.0.0.1:18090 2>/dev/null &
bare_pid=$!
wait_for http://127.0.0.1:18090/
wrk -t2 -c64 -d"${seconds}s" --latency http://127.0.0.1:18090/ | grep -E "Requests/sec|50%|99%|Non-2xx|Socket errors"
kill $bare_pid; wait $bare_pid 2>/dev/null || true

echo "== copying the store"
cp -r "$store" "$work/store"
customers=$("$crm" stats --db "$work/store" | awk '$1 == "customers" {print $2}')
export CRM_TOKEN=$("$crm" token create --db "$work/store" --role admin --name bench 2>/dev/null)
"$crm" serve --db "$work/store" --addr 127.0.0.1:18080 --failed-sign-ins 1000000000 2>"$work/serve.log" &
wait_for http://127.0.0.1:18080/readyz
# The segment memberships are built in the background once the server is up.
for _ in $(seq 600); do
  grep -q "segment memberships built" "$work/serve.log" && break
  sleep 0.5
done
grep "analysis snapshot\|segment memberships built" "$work/serve.log" | cut -c1-200

cat > "$work/view.lua" <<LUA
local token = os.getenv("CRM_TOKEN")
math.randomseed(os.time())
request = function()
  local id = string.format("C%07d", math.random(1, $customers))
  return wrk.format("GET", "/api/v1/customers/" .. id .. "/view?timeline=20", {["Authorization"] = "Bearer " .. token})
end
LUA
cat > "$work/post.lua" <<'LUA'
local token = os.getenv("CRM_TOKEN")
local n = 0
function setup(thread)
  n = n + 1
  thread:set("tid", n)
end
function init(args)
  counter = 0
end
function request()
  counter = counter + 1
  local id = string.format("W%s-%d-%d", os.getenv("STAMP") or "0", tid, counter)
  local body = '{"customer_id":"' .. id .. '","name":"Bench ' .. id .. '","gender":"U","birth_date":null,'
    .. '"region":"North","city":"Pinecrest","channel":"store","joined_at":"2025-01-02","tier":"bronze",'
    .. '"attributes":{"license_no":"250214704823","store_type":"kiosk","business_district":"school","monthly_quota":40}}'
  return wrk.format("POST", "/api/v1/customers",
    {["Authorization"] = "Bearer " .. token, ["Content-Type"] = "application/json"}, body)
end
LUA

sed 's|/view?timeline=20||' "$work/view.lua" > "$work/record.lua"
echo "== GET /api/v1/customers/{id} (one record from the store, for reference)"
wrk -t2 -c64 -d"${seconds}s" --latency -s "$work/record.lua" http://127.0.0.1:18080 | grep -E "Requests/sec|50%|99%|Non-2xx|Socket errors"
echo "== GET /api/v1/customers/{id}/view (customer 360, random of $customers customers)"
# A first pass warms the page cache; the second is the one measured.
wrk -t2 -c64 -d"${seconds}s" -s "$work/view.lua" http://127.0.0.1:18080 >/dev/null
wrk -t2 -c64 -d"${seconds}s" --latency -s "$work/view.lua" http://127.0.0.1:18080 | grep -E "Requests/sec|50%|99%|Non-2xx|Socket errors"
echo "== POST /api/v1/customers (durable on answer)"
export STAMP=$(date +%s)
wrk -t2 -c64 -d"${seconds}s" --latency -s "$work/post.lua" http://127.0.0.1:18080 | grep -E "Requests/sec|50%|99%|Non-2xx|Socket errors"
curl -s http://127.0.0.1:18080/metrics | grep -E "^crm_store_flush(es|ed_writes)_total" || true
