"""The benchmark segments here and in DuckDB: the same filters, the same
members, and how long each takes.

    python3 tests/conformance/segments.py --data DIR --db STORE [--crm PATH] [--runs N]

DIR holds the reference CSV files of a retail data set (gen.py), STORE is
the store they were imported into, with the tobacco-retail plugin enabled.
DuckDB loads the files with the set-up of ../shared/refdata/reference.sql
(not timed), then runs each segment as one query over the tables: the
per-customer aggregates and the filter. `crm segment bench` times the
platform. Exits 1 when a member count differs.
"""

import argparse
import json
import pathlib
import subprocess
import sys
import time

import duckdb

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent.parent
REFERENCE = ROOT.parent / "shared" / "refdata" / "reference.sql"

# Per customer: the metrics the segments read, by the reference definitions
# (as_of is the day after the last transaction; churn risk as in persistency).
METRICS = """
WITH p AS (SELECT CAST(max(ts) AS DATE) + 1 AS as_of FROM transactions),
lines AS (
  SELECT customer_id, sum(amount) AS revenue, sum(amount) - sum(cost) AS margin,
         count(*) AS lines, count(DISTINCT CAST(ts AS DATE)) AS baskets,
         min(CAST(ts AS DATE)) AS first_day, max(CAST(ts AS DATE)) AS last_day
  FROM transactions GROUP BY customer_id),
m AS (
  SELECT c.*, l.revenue, l.margin, l.lines, l.baskets,
         p.as_of - l.last_day AS recency_days,
         (l.baskets >= 2 AND p.as_of - l.last_day > 30
          AND (p.as_of - l.last_day) * (l.baskets - 1) > 2 * (l.last_day - l.first_day)) AS churn_risk,
         json_extract_string(c.attributes, '$.store_type') AS store_type,
         CAST(json_extract(c.attributes, '$.monthly_quota') AS BIGINT) AS monthly_quota
  FROM customers c JOIN lines l USING (customer_id), p)
"""

SEGMENTS = {
    "3 conditions": "margin > 500 AND recency_days < 60 AND store_type = 'kiosk'",
    "10 conditions": (
        "margin > 200 AND recency_days < 120 AND store_type <> 'supermarket' AND baskets >= 3"
        " AND tier <> 'bronze' AND region <> 'North' AND revenue < 100000 AND lines >= 5"
        " AND monthly_quota >= 10 AND NOT churn_risk"
    ),
}


def setup_sql() -> str:
    text = REFERENCE.read_text()
    return text[: text.index("-- Set-up: helper views")].rsplit("\n--", 1)[0]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--db", required=True)
    ap.add_argument("--crm", default=str(ROOT / "target" / "debug" / "crm"))
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()

    con = duckdb.connect()
    con.execute(f"SET VARIABLE data_dir = '{pathlib.Path(args.data).resolve()}'")
    con.execute(setup_sql())
    duck = {}
    for name, where in SEGMENTS.items():
        best, count = float("inf"), None
        for _ in range(args.runs):
            started = time.perf_counter()
            count = con.execute(f"{METRICS} SELECT count(*) FROM m WHERE {where}").fetchone()[0]
            best = min(best, time.perf_counter() - started)
        duck[name] = (count, best)

    out = subprocess.run(
        [args.crm, "segment", "bench", "--db", args.db, "--runs", str(args.runs), "--format", "json"],
        check=True, capture_output=True, text=True,
    )
    ours = json.loads(out.stdout)
    status = 0
    for name, (count, seconds) in duck.items():
        print(f"{name:<14} {'DuckDB, one query over the loaded tables':<40} {count:>9} members {seconds * 1000:>10.1f} ms")
        for line in ours:
            if line["segment"] != name:
                continue
            print(f"{name:<14} {line['how']:<40} {line['members']:>9} members {line['seconds'] * 1000:>10.1f} ms")
            if line["how"] != "building the columns it reads" and line["members"] != count:
                print(f"  MISMATCH: {line['members']} members here, {count} in DuckDB")
                status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
