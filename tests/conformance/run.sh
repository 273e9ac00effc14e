#!/usr/bin/env bash
# Conformance with the reference definitions (CI only: needs ../shared).
#
#     bash tests/conformance/run.sh [path/to/crm]
#
# For each industry and seed: generate the reference data set with
# ../shared/refdata/gen.py, import it with `crm import`, run every analysis
# with `crm analyze --all --format json`, and compare the results with what
# DuckDB computes from the same files with ../shared/refdata/run_reference.py
# (integers, money and text exactly; ratios within one unit of their last
# decimal). Also checks `crm stats --format json` against dataset_summary,
# and the members of the benchmark segments against the same filters in
# DuckDB (segments.py).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
refdata=$(cd "$root/../shared/refdata" && pwd)
crm=${1:-$root/target/debug/crm}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

status=0
for industry in retail banking; do
  for seed in 7 11; do
    name="$industry-10000-seed$seed"
    data="$work/$name"
    python3 "$refdata/gen.py" --industry "$industry" --customers 10000 --seed "$seed" --out "$data" --quiet
    "$crm" import --quiet --db "$work/store-$name" "$data" > /dev/null
    "$crm" analyze --db "$work/store-$name" --all --format json > "$work/ours-$name.json"
    "$crm" stats --db "$work/store-$name" --format json > "$work/stats-$name.json"
    python3 "$refdata/run_reference.py" --data "$data" --quiet \
      --out "$work/reference-$name.json" > /dev/null 2>&1
    echo "== $name"
    python3 "$here/compare.py" "$work/reference-$name.json" "$work/ours-$name.json" || status=1
    python3 "$here/compare.py" --only dataset_summary "$work/reference-$name.json" "$work/stats-$name.json" || status=1
    if [ "$industry" = retail ] && [ "$seed" = 7 ]; then
      # The benchmark segments have the members DuckDB finds with the same filters.
      "$crm" plugin install --db "$work/store-$name" "$root/target/plugins/tobacco-retail" > /dev/null 2>&1
      python3 "$here/segments.py" --data "$data" --db "$work/store-$name" --crm "$crm" --runs 1 || status=1
    fi
  done
done
exit $status
