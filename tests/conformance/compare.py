#!/usr/bin/env python3
"""Compare the CRM's results with DuckDB's reference results.

    python3 compare.py REFERENCE.json OURS.json [--only a,b]

Both files map an analysis name to a list of rows ({column: value}), the
shape run_reference.py writes. Every analysis in REFERENCE must be in OURS
with the same columns and the same rows in the same order. Integers, money
and text must match exactly; ratios (doubles rounded to a stated number of
decimals) may differ by one unit in their last decimal place. Exits 1 and
lists every difference otherwise.
"""

import argparse
import decimal
import json
import re
import sys

# Columns holding rounded doubles; everything else is compared exactly.
RATIO = re.compile(r"(share|rate|ratio|roi|lift|support|confidence|mean|avg|slope|intercept|median|new_customers)")


def decimals(value):
    text = repr(value)
    return len(text.split(".")[1]) if "." in text and "e" not in text else 0


def same(column, want, got):
    if want is None or got is None or isinstance(want, (str, bool)) or isinstance(got, (str, bool)):
        return want == got
    if RATIO.search(column) and isinstance(want, float):
        tolerance = 10.0 ** -max(decimals(want), decimals(got)) * 1.000001
        return abs(want - got) <= tolerance
    # Integers and money: exact, money compared at its two decimals.
    return decimal.Decimal(repr(want)).quantize(decimal.Decimal("0.01")) == \
        decimal.Decimal(repr(got)).quantize(decimal.Decimal("0.01"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("reference")
    ap.add_argument("ours")
    ap.add_argument("--only", help="comma-separated analyses to compare")
    args = ap.parse_args()
    reference = json.load(open(args.reference, encoding="utf-8"))
    ours = json.load(open(args.ours, encoding="utf-8"))
    names = args.only.split(",") if args.only else list(reference)
    problems = []
    for name in names:
        if name not in reference:
            problems.append(f"{name}: not in the reference results")
            continue
        if name not in ours:
            problems.append(f"{name}: missing from our results")
            continue
        want, got = reference[name], ours[name]
        if len(want) != len(got):
            problems.append(f"{name}: {len(got)} rows, the reference has {len(want)}")
        for i, (w, g) in enumerate(zip(want, got)):
            if list(w) != list(g):
                problems.append(f"{name} row {i + 1}: columns {list(g)}, the reference has {list(w)}")
                continue
            for column in w:
                if not same(column, w[column], g.get(column)):
                    problems.append(f"{name} row {i + 1} {column}: {g.get(column)!r}, the reference has {w[column]!r}")
    for p in problems[:200]:
        print(p)
    if len(problems) > 200:
        print(f"... and {len(problems) - 200} more differences")
    print(f"{len(names) - len({p.split(' ')[0].rstrip(':') for p in problems})} passed, "
          f"{len({p.split(' ')[0].rstrip(':') for p in problems})} failed: {', '.join(names)}")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
