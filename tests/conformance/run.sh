#!/usr/bin/env bash
# Conformance with the reference definitions (CI only: needs ../shared).
#
#     bash tests/conformance/run.sh [path/to/crm]
#
# For each industry and seed: generate the reference data set with
# ../shared/refdata/gen.py, import it with `crm import`, and compare what the
# CRM reports with what DuckDB computes from the same files with
# ../shared/refdata/run_reference.py.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
refdata=$(cd "$root/../shared/refdata" && pwd)
crm=${1:-$root/target/debug/crm}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

status=0
for industry in retail banking; do
  for seed in 7; do
    name="$industry-10000-seed$seed"
    data="$work/$name"
    python3 "$refdata/gen.py" --industry "$industry" --customers 10000 --seed "$seed" --out "$data" --quiet
    "$crm" import --quiet --db "$work/store-$name" "$data" > /dev/null
    "$crm" stats --db "$work/store-$name" --format json > "$work/ours-$name.json"
    python3 "$refdata/run_reference.py" --data "$data" --only dataset_summary --quiet \
      --out "$work/reference-$name.json" > /dev/null 2>&1
    echo "== $name"
    python3 "$here/compare.py" "$work/reference-$name.json" "$work/ours-$name.json" || status=1
  done
done
exit $status
