#!/usr/bin/env bash
# Fuzzes the HTTP API from its own OpenAPI document with schemathesis: every
# operation, at least 50 examples each, with an admin token on a small
# generated data set. Fails on any 5xx, any response that breaks the
# documented schema, status code, content type or headers, and any request
# that breaks the schema yet is accepted.
#
# Not checked: that every schema-valid request is accepted
# (positive_data_acceptance). The schema says what a request looks like; the
# API also refuses well-formed requests that break a rule, and says so with
# a 4xx problem: a reference to a customer or sku that does not exist (422),
# a stale If-Match (412), a customer that still has lines (409).
#
# Usage: tests/api/schemathesis.sh path/to/crm
set -euo pipefail
crm=$(realpath "$1")
work=$(mktemp -d)
trap 'kill "$server" 2>/dev/null || true; rm -rf "$work"' EXIT
cd "$work"
"$crm" generate --customers 300 --seed 11 --out data >/dev/null
"$crm" import --db db data >/dev/null 2>&1
token=$("$crm" token create --db db --role admin --name schemathesis 2>/dev/null)
# Schemathesis sends requests without a token on purpose: allow them all.
"$crm" serve --db db --addr 127.0.0.1:0 --failed-sign-ins 1000000000 2>serve.log &
server=$!
for _ in $(seq 100); do
  addr=$(grep -o 'on http://[0-9.:]*' serve.log | head -1 | cut -d/ -f3 || true)
  [ -n "$addr" ] && break
  sleep 0.1
done
[ -n "$addr" ] || { cat serve.log; exit 1; }
status=0
run() {
  schemathesis run "http://$addr/api/openapi.json" \
    -H "Authorization: Bearer $token" \
    --max-examples 50 \
    --checks all --exclude-checks positive_data_acceptance \
    --seed 1 \
    --no-color "$@" || status=$?
}
# Revoking tokens last: schemathesis finds the token's own name in the
# token list and would revoke it before the other operations ran.
run --exclude-path /api/v1/tokens/{name}
run --include-path /api/v1/tokens/{name}
if grep -q ' status=5' serve.log; then
  echo "the server answered 5xx:"
  grep ' status=5' serve.log | head
  status=1
fi
exit $status
