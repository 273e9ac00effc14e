//! What sells together and where: product_affinity, product_distribution,
//! cross_sell. A basket is all lines of one customer on one UTC day.

use std::collections::HashMap;

use rayon::prelude::*;

use crate::context::{Context, Months};
use crate::snapshot::day;
use crate::snapshot::{NONE, TxnSlice};
use crate::table::{Table, Value, ratio};

/// Calls `f` with the distinct items of each basket of `lines` (items are
/// `item(product)`, sorted, without `NONE`).
fn for_each_basket(lines: TxnSlice<'_>, item: impl Fn(u32) -> u32, mut f: impl FnMut(&[u32])) {
    let mut basket: Vec<u32> = Vec::with_capacity(16);
    let mut i = 0;
    while i < lines.len() {
        let d = day(lines.ts[i]);
        basket.clear();
        while i < lines.len() && day(lines.ts[i]) == d {
            if lines.product[i] != NONE {
                basket.push(item(lines.product[i]));
            }
            i += 1;
        }
        basket.sort_unstable();
        basket.dedup();
        f(&basket);
    }
}

/// Counts of baskets, of baskets holding each item, and of baskets holding
/// each pair of items `a < b`.
struct CoCounts {
    baskets: u64,
    single: Vec<u64>,
    pairs: Pairs,
}

/// Pair counts: a dense matrix for small catalogues, a map for large ones.
enum Pairs {
    Dense { n: usize, counts: Vec<u32> },
    Sparse(HashMap<(u32, u32), u32>),
}

/// Largest number of items whose pair counts fit a dense matrix (16 MiB).
const DENSE_ITEMS: usize = 2048;

impl Pairs {
    fn new(n: usize) -> Pairs {
        if n <= DENSE_ITEMS {
            Pairs::Dense {
                n,
                counts: vec![0; n * n],
            }
        } else {
            Pairs::Sparse(HashMap::new())
        }
    }

    fn add(&mut self, a: u32, b: u32, by: u32) {
        match self {
            Pairs::Dense { n, counts } => counts[a as usize * *n + b as usize] += by,
            Pairs::Sparse(map) => *map.entry((a, b)).or_default() += by,
        }
    }

    fn merge(&mut self, other: Pairs) {
        match other {
            Pairs::Dense { n, counts } => {
                for (i, c) in counts.into_iter().enumerate().filter(|(_, c)| *c > 0) {
                    self.add((i / n) as u32, (i % n) as u32, c);
                }
            }
            Pairs::Sparse(map) => {
                for ((a, b), c) in map {
                    self.add(a, b, c);
                }
            }
        }
    }

    fn each(&self, mut f: impl FnMut(u32, u32, u64)) {
        match self {
            Pairs::Dense { n, counts } => {
                for (i, &c) in counts.iter().enumerate().filter(|(_, c)| **c > 0) {
                    f((i / n) as u32, (i % n) as u32, c as u64);
                }
            }
            Pairs::Sparse(map) => {
                for (&(a, b), &c) in map {
                    f(a, b, c as u64);
                }
            }
        }
    }
}

/// Co-occurrence of items in the members' baskets, counted on both cores.
/// Items are numbered `0..n_items`; pairs are counted for `a < b`, or in
/// both directions with `ordered`.
fn co_counts(
    ctx: &Context<'_>,
    n_items: usize,
    item: impl Fn(u32) -> u32 + Sync,
    ordered: bool,
) -> CoCounts {
    let empty = || CoCounts {
        baskets: 0,
        single: vec![0; n_items],
        pairs: Pairs::new(n_items),
    };
    ctx.members
        .par_iter()
        .fold(empty, |mut acc, &ci| {
            for_each_basket(ctx.txns(ci), &item, |basket| {
                acc.baskets += 1;
                for (k, &a) in basket.iter().enumerate() {
                    acc.single[a as usize] += 1;
                    for &b in &basket[k + 1..] {
                        acc.pairs.add(a, b, 1);
                        if ordered {
                            acc.pairs.add(b, a, 1);
                        }
                    }
                }
            });
            acc
        })
        .reduce(empty, |mut a, b| {
            a.baskets += b.baskets;
            for (x, y) in a.single.iter_mut().zip(b.single) {
                *x += y;
            }
            a.pairs.merge(b.pairs);
            a
        })
}

/// Fewest baskets a pair needs: max(5, ceil(N / 1000)).
fn min_count(baskets: u64) -> u64 {
    baskets.div_ceil(1000).max(5)
}

/// Lift of a pair: the products in exact integers, then one double division.
fn lift(n_ab: u64, n_baskets: u64, n_a: u64, n_b: u64) -> f64 {
    (n_ab * n_baskets) as f64 / (n_a * n_b) as f64
}

pub(crate) fn product_affinity(ctx: &Context<'_>) -> Table {
    let mut t = Table::new(&[
        "sku_a",
        "sku_b",
        "n_ab",
        "n_a",
        "n_b",
        "support",
        "confidence_ab",
        "confidence_ba",
        "lift",
    ]);
    let skus = &ctx.s.products.skus;
    // Items are products numbered in sku order, so that a < b is sku_a < sku_b.
    let mut order: Vec<u32> = (0..skus.len() as u32).collect();
    order.sort_by(|&a, &b| skus[a as usize].cmp(&skus[b as usize]));
    let mut item_of = vec![0u32; skus.len()];
    for (item, &product) in order.iter().enumerate() {
        item_of[product as usize] = item as u32;
    }
    let counts = co_counts(ctx, skus.len(), |p| item_of[p as usize], false);
    let n = counts.baskets;
    let min = min_count(n);
    let mut pairs: Vec<(f64, u64, u32, u32)> = Vec::new();
    counts.pairs.each(|a, b, n_ab| {
        if n_ab >= min {
            pairs.push((
                lift(
                    n_ab,
                    n,
                    counts.single[a as usize],
                    counts.single[b as usize],
                ),
                n_ab,
                a,
                b,
            ));
        }
    });
    pairs.sort_by(|x, y| {
        y.0.total_cmp(&x.0)
            .then(y.1.cmp(&x.1))
            .then(x.2.cmp(&y.2))
            .then(x.3.cmp(&y.3))
    });
    for (l, n_ab, a, b) in pairs.into_iter().take(20) {
        let (n_a, n_b) = (counts.single[a as usize], counts.single[b as usize]);
        t.push(vec![
            skus[order[a as usize] as usize].as_str().into(),
            skus[order[b as usize] as usize].as_str().into(),
            n_ab.into(),
            n_a.into(),
            n_b.into(),
            ratio(n_ab as f64 / n as f64, 6),
            ratio(n_ab as f64 / n_a as f64, 4),
            ratio(n_ab as f64 / n_b as f64, 4),
            ratio(l, 4),
        ]);
    }
    t
}

pub(crate) fn product_distribution(ctx: &Context<'_>) -> Table {
    let mut t = Table::new(&["category", "region", "month", "quantity", "lines"]);
    let Some(as_of) = ctx.as_of else {
        return t;
    };
    let last = as_of.add_days(-1).month_index();
    let months = Months::new(last - 11, last);
    let s = ctx.s;
    let sums: HashMap<(u32, u32, i32), (i64, i64)> = ctx
        .members
        .par_iter()
        .fold(
            HashMap::new,
            |mut acc: HashMap<(u32, u32, i32), (i64, i64)>, &ci| {
                let lines = ctx.txns(ci);
                for i in 0..lines.len() {
                    let Some(m) = months.of(day(lines.ts[i])) else {
                        continue;
                    };
                    if lines.product[i] == NONE {
                        continue;
                    }
                    let key = (
                        s.products.category[lines.product[i] as usize],
                        lines.region[i],
                        m,
                    );
                    let entry = acc.entry(key).or_default();
                    entry.0 += lines.quantity[i] as i64;
                    entry.1 += 1;
                }
                acc
            },
        )
        .reduce(HashMap::new, |mut a, b| {
            for (k, v) in b {
                let e = a.entry(k).or_default();
                e.0 += v.0;
                e.1 += v.1;
            }
            a
        });
    let mut rows: Vec<(&str, &str, i32, (i64, i64))> = sums
        .into_iter()
        .map(|((c, r, m), v)| (s.dicts.category.get(c), s.dicts.sale_region.get(r), m, v))
        .collect();
    rows.sort_by(|a, b| (a.0, a.1, a.2).cmp(&(b.0, b.1, b.2)));
    for (category, region, m, (quantity, lines)) in rows {
        let month = format!("{:04}-{:02}", m.div_euclid(12), m.rem_euclid(12) + 1);
        t.push(vec![
            category.into(),
            region.into(),
            month.into(),
            quantity.into(),
            lines.into(),
        ]);
    }
    t
}

pub(crate) fn cross_sell(ctx: &Context<'_>) -> Table {
    let mut t = Table::new(&["category", "partner", "lift", "co_baskets", "candidates"]);
    let s = ctx.s;
    let categories = &s.dicts.category;
    let n_cat = categories.len();
    let category_of = |p: u32| s.products.category[p as usize];
    let counts = co_counts(ctx, n_cat, category_of, true);
    let n = counts.baskets;
    let min = min_count(n);
    // partner[c] = (lift, n_cd, d) of the best partner d of c.
    let mut best: Vec<Option<(f64, u64, u32)>> = vec![None; n_cat];
    counts.pairs.each(|c, d, n_cd| {
        if n_cd < min {
            return;
        }
        let candidate = (
            lift(
                n_cd,
                n,
                counts.single[c as usize],
                counts.single[d as usize],
            ),
            n_cd,
            d,
        );
        let better = match best[c as usize] {
            None => true,
            Some((l, n_best, d_best)) => candidate
                .0
                .total_cmp(&l)
                .then(candidate.1.cmp(&n_best))
                .then(categories.get(d_best).cmp(categories.get(d)))
                .is_gt(),
        };
        if better {
            best[c as usize] = Some(candidate);
        }
    });
    // Categories each member ever bought, as a bit set (or a sorted list).
    let bought: Vec<Vec<u32>> = ctx.per_member(|ci| {
        let lines = ctx.txns(ci);
        let mut cats: Vec<u32> = lines
            .product
            .iter()
            .filter(|&&p| p != NONE)
            .map(|&p| category_of(p))
            .collect();
        cats.sort_unstable();
        cats.dedup();
        cats
    });
    let mut candidates = vec![0u64; n_cat];
    for cats in &bought {
        for (c, best) in best.iter().enumerate() {
            if let Some((_, _, partner)) = best
                && cats.binary_search(partner).is_ok()
                && cats.binary_search(&(c as u32)).is_err()
            {
                candidates[c] += 1;
            }
        }
    }
    // One row per category of the products, in code point order.
    let mut listed: Vec<u32> = s.products.category.clone();
    listed.sort_unstable_by(|a, b| categories.get(*a).cmp(categories.get(*b)));
    listed.dedup();
    for c in listed {
        match best[c as usize] {
            Some((l, n_cd, d)) => t.push(vec![
                categories.get(c).into(),
                categories.get(d).into(),
                ratio(l, 4),
                n_cd.into(),
                candidates[c as usize].into(),
            ]),
            None => t.push(vec![
                categories.get(c).into(),
                Value::Null,
                Value::Null,
                Value::Null,
                0u64.into(),
            ]),
        }
    }
    t
}
