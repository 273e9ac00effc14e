//! Who buys, how often, how much, and what they earn the business:
//! dataset_summary, visits_distribution, rfm, rfm_top, pareto,
//! profitability, profitability_top, performance, persistency.

use std::cmp::Reverse;
use std::collections::HashMap;

use model::{SalesChannel, Timestamp};
use rayon::prelude::*;

use crate::context::Context;
use crate::snapshot::Activity;
use crate::snapshot::NONE;
use crate::table::{Table, Value, ratio, share};

/// The first `k` items by `key`, in order.
pub(crate) fn top<T: Copy + Send, K: Ord>(
    items: &[T],
    k: usize,
    key: impl Fn(&T) -> K + Sync,
) -> Vec<T> {
    let mut items = items.to_vec();
    if items.len() > k && k > 0 {
        items.select_nth_unstable_by(k - 1, |a, b| key(a).cmp(&key(b)));
        items.truncate(k);
    }
    items.sort_by_key(|a| key(a));
    items.truncate(k);
    items
}

/// Money as a double of currency units, as `CAST(decimal AS DOUBLE)` gives.
pub(crate) fn units(cents: i64) -> f64 {
    cents as f64 / 100.0
}

pub(crate) fn dataset_summary(ctx: &Context<'_>) -> Table {
    let mut t = Table::new(&[
        "customers",
        "products",
        "transactions",
        "interactions",
        "campaigns",
        "first_ts",
        "last_ts",
        "as_of",
        "revenue",
        "cost",
        "quantity",
    ]);
    let activity = ctx.activity();
    let (lines, revenue, cost, quantity, first, last) = ctx
        .members
        .par_iter()
        .map(|&ci| {
            let a = &activity[ci as usize];
            let (first, last) = if a.lines == 0 {
                (i64::MAX, i64::MIN)
            } else {
                (a.first_ts, a.last_ts)
            };
            (a.lines as u64, a.revenue, a.cost, a.quantity, first, last)
        })
        .reduce(
            || (0, 0, 0, 0, i64::MAX, i64::MIN),
            |a, b| {
                (
                    a.0 + b.0,
                    a.1 + b.1,
                    a.2 + b.2,
                    a.3 + b.3,
                    a.4.min(b.4),
                    a.5.max(b.5),
                )
            },
        );
    let interactions: usize = ctx
        .members
        .par_iter()
        .map(|&ci| ctx.interactions(ci).len())
        .sum();
    let any = lines > 0;
    t.push(vec![
        ctx.members.len().into(),
        ctx.s.products.len().into(),
        lines.into(),
        interactions.into(),
        ctx.s.campaigns.len().into(),
        if any {
            Value::Timestamp(Timestamp::from_seconds(first))
        } else {
            Value::Null
        },
        if any {
            Value::Timestamp(Timestamp::from_seconds(last))
        } else {
            Value::Null
        },
        ctx.as_of.map_or(Value::Null, Value::Date),
        if any {
            Value::Money(revenue)
        } else {
            Value::Null
        },
        if any { Value::Money(cost) } else { Value::Null },
        if any {
            Value::Int(quantity as i64)
        } else {
            Value::Null
        },
    ]);
    t
}

pub(crate) fn visits_distribution(ctx: &Context<'_>) -> Table {
    let mut t = Table::new(&["bucket", "customers", "share"]);
    let activity = ctx.activity();
    let mut counts = [0u64; 6];
    for &ci in &ctx.members {
        let bucket = match activity[ci as usize].baskets {
            0 => 0,
            1 => 1,
            2..=3 => 2,
            4..=7 => 3,
            8..=15 => 4,
            _ => 5,
        };
        counts[bucket] += 1;
    }
    let n = ctx.members.len() as f64;
    for (bucket, count) in ["0", "1", "2-3", "4-7", "8-15", "16+"]
        .into_iter()
        .zip(counts)
    {
        t.push(vec![bucket.into(), count.into(), share(count as f64, n, 4)]);
    }
    t
}

/// The RFM segment of a buyer's scores; first matching rule wins.
pub fn rfm_segment(r: u8, f: u8) -> &'static str {
    match (r, f) {
        (r, f) if r >= 4 && f >= 4 => "champions",
        (_, f) if f >= 4 => "loyal",
        (r, 1) if r >= 4 => "new",
        (r, f) if r <= 2 && f >= 3 => "at_risk",
        (r, f) if r <= 2 && f <= 2 => "hibernating",
        _ => "potential",
    }
}

const SEGMENTS: [&str; 6] = [
    "champions",
    "loyal",
    "new",
    "at_risk",
    "hibernating",
    "potential",
];

pub(crate) fn rfm(ctx: &Context<'_>) -> Table {
    let mut t = Table::new(&["segment", "customers", "share", "avg_monetary"]);
    let activity = ctx.activity();
    let scores = ctx.scores();
    let buyers = ctx.buyers();
    let mut count = [0u64; 6];
    let mut monetary = [0i64; 6];
    for &ci in &buyers {
        let s = scores[ci as usize];
        let i = SEGMENTS
            .iter()
            .position(|&seg| seg == rfm_segment(s.r, s.f))
            .expect("a known segment");
        count[i] += 1;
        monetary[i] += activity[ci as usize].revenue;
    }
    for i in 0..6 {
        let avg = if count[i] == 0 {
            Value::Null
        } else {
            ratio(units(monetary[i]) / count[i] as f64, 2)
        };
        t.push(vec![
            SEGMENTS[i].into(),
            count[i].into(),
            share(count[i] as f64, buyers.len() as f64, 4),
            avg,
        ]);
    }
    t
}

pub(crate) fn rfm_top(ctx: &Context<'_>) -> Table {
    let mut t = Table::new(&[
        "customer_id",
        "recency_days",
        "frequency",
        "monetary",
        "r",
        "f",
        "m",
    ]);
    let activity = ctx.activity();
    let scores = ctx.scores();
    let rank = ctx.s.customers.rank();
    for ci in top(&ctx.buyers(), 20, |&ci| {
        (Reverse(activity[ci as usize].revenue), rank[ci as usize])
    }) {
        let (a, s) = (&activity[ci as usize], scores[ci as usize]);
        t.push(vec![
            ctx.s.customers.id(ci).into(),
            ctx.recency(a).into(),
            (a.baskets as i64).into(),
            Value::Money(a.revenue),
            (s.r as i64).into(),
            (s.f as i64).into(),
            (s.m as i64).into(),
        ]);
    }
    t
}

pub(crate) fn pareto(ctx: &Context<'_>) -> Table {
    let mut t = Table::new(&["n", "k", "top_revenue", "total_revenue", "top_share"]);
    let activity = ctx.activity();
    let rank = ctx.s.customers.rank();
    let buyers = ctx.buyers();
    if buyers.is_empty() {
        return t;
    }
    let k = buyers.len().div_ceil(5);
    let total: i64 = buyers.iter().map(|&ci| activity[ci as usize].revenue).sum();
    let top_revenue: i64 = top(&buyers, k, |&ci| {
        (Reverse(activity[ci as usize].revenue), rank[ci as usize])
    })
    .iter()
    .map(|&ci| activity[ci as usize].revenue)
    .sum();
    t.push(vec![
        buyers.len().into(),
        k.into(),
        Value::Money(top_revenue),
        Value::Money(total),
        share(units(top_revenue), units(total), 4),
    ]);
    t
}

/// The Pareto curve behind `pareto`: for each percent of buyers (0 to
/// 100), the share of revenue of that many top buyers (the count rounded
/// up, as `pareto` takes its fifth).
pub(crate) fn pareto_curve(ctx: &Context<'_>) -> Table {
    let mut t = Table::new(&["buyers_percent", "buyers", "revenue_share"]);
    let activity = ctx.activity();
    let buyers = ctx.buyers();
    let mut revenue: Vec<i64> = buyers
        .iter()
        .map(|&ci| activity[ci as usize].revenue)
        .collect();
    revenue.sort_unstable_by(|a, b| b.cmp(a));
    let total: i64 = revenue.iter().sum();
    let mut running = Vec::with_capacity(revenue.len() + 1);
    running.push(0i64);
    for r in &revenue {
        running.push(running.last().copied().unwrap_or(0) + r);
    }
    for percent in 0..=100usize {
        let k = (revenue.len() * percent).div_ceil(100);
        t.push(vec![
            percent.into(),
            k.into(),
            share(units(running[k]), units(total), 4),
        ]);
    }
    t
}

/// Order of tiers: bronze, silver, gold, platinum, then the others by name.
pub(crate) fn tier_order(name: &str) -> (u8, &str) {
    let known = ["bronze", "silver", "gold", "platinum"];
    (
        known
            .iter()
            .position(|&k| k == name)
            .map_or(5, |p| p as u8 + 1),
        name,
    )
}

pub(crate) fn profitability(ctx: &Context<'_>) -> Table {
    let mut t = Table::new(&["tier", "buyers", "revenue", "cost", "margin", "margin_rate"]);
    let activity = ctx.activity();
    let tiers = &ctx.s.dicts.tier;
    let mut by_tier: HashMap<u32, (u64, i64, i64)> = HashMap::new();
    let mut all = (0u64, 0i64, 0i64);
    for &ci in &ctx.members {
        let a = &activity[ci as usize];
        if a.lines == 0 {
            continue;
        }
        let entry = by_tier
            .entry(ctx.s.customers.tier[ci as usize])
            .or_default();
        for acc in [entry, &mut all] {
            acc.0 += 1;
            acc.1 += a.revenue;
            acc.2 += a.cost;
        }
    }
    let row = |name: &str, (buyers, revenue, cost): (u64, i64, i64)| -> Vec<Value> {
        vec![
            name.into(),
            buyers.into(),
            Value::Money(revenue),
            Value::Money(cost),
            Value::Money(revenue - cost),
            share(units(revenue - cost), units(revenue), 4),
        ]
    };
    if all.0 == 0 {
        t.push(vec![
            "all".into(),
            0u64.into(),
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
        ]);
    } else {
        t.push(row("all", all));
    }
    let mut tiers_sold: Vec<(u32, (u64, i64, i64))> = by_tier.into_iter().collect();
    tiers_sold.sort_by(|a, b| tier_order(tiers.get(a.0)).cmp(&tier_order(tiers.get(b.0))));
    for (tier, sums) in tiers_sold {
        t.push(row(tiers.get(tier), sums));
    }
    t
}

pub(crate) fn profitability_top(ctx: &Context<'_>) -> Table {
    let mut t = Table::new(&["customer_id", "name", "tier", "revenue", "cost", "margin"]);
    let activity = ctx.activity();
    let c = &ctx.s.customers;
    let margin = |a: &Activity| a.revenue - a.cost;
    for ci in top(&ctx.buyers(), 10, |&ci| {
        (
            Reverse(margin(&activity[ci as usize])),
            c.rank()[ci as usize],
        )
    }) {
        let a = &activity[ci as usize];
        t.push(vec![
            c.id(ci).into(),
            c.names.get(ci as usize).into(),
            ctx.s.dicts.tier.get(c.tier[ci as usize]).into(),
            Value::Money(a.revenue),
            Value::Money(a.cost),
            Value::Money(margin(a)),
        ]);
    }
    t
}

/// Revenue, quantity and lines of a cell.
type Sums = (i64, i64, i64);

pub(crate) fn performance(ctx: &Context<'_>) -> Table {
    let mut t = Table::new(&[
        "category", "channel", "region", "revenue", "quantity", "lines",
    ]);
    let s = ctx.s;
    let n_regions = s.dicts.sale_region.len().max(1);
    let n_channels = SalesChannel::ALL.len();
    let cells = s.dicts.category.len() * n_channels * n_regions;
    // (revenue, quantity, lines) per category x channel x region, summed on both cores.
    let sums = ctx
        .members
        .par_iter()
        .fold(
            || vec![(0i64, 0i64, 0i64); cells],
            |mut acc, &ci| {
                let lines = ctx.txns(ci);
                for i in 0..lines.len() {
                    let product = lines.product[i];
                    if product == NONE {
                        continue;
                    }
                    let category = s.products.category[product as usize] as usize;
                    let cell = (category * n_channels + lines.channel[i] as usize) * n_regions
                        + lines.region[i] as usize;
                    acc[cell].0 += lines.amount[i];
                    acc[cell].1 += lines.quantity[i] as i64;
                    acc[cell].2 += 1;
                }
                acc
            },
        )
        .reduce(
            || vec![(0i64, 0i64, 0i64); cells],
            |mut a, b| {
                for (x, y) in a.iter_mut().zip(b) {
                    x.0 += y.0;
                    x.1 += y.1;
                    x.2 += y.2;
                }
                a
            },
        );
    let mut rows: Vec<(&str, &str, &str, Sums)> = Vec::new();
    for (cell, &sum) in sums.iter().enumerate() {
        if sum.2 == 0 {
            continue;
        }
        let region = cell % n_regions;
        let channel = cell / n_regions % n_channels;
        let category = cell / n_regions / n_channels;
        rows.push((
            s.dicts.category.get(category as u32),
            SalesChannel::ALL[channel].as_str(),
            s.dicts.sale_region.get(region as u32),
            sum,
        ));
    }
    rows.sort_by(|a, b| (a.0, a.1, a.2).cmp(&(b.0, b.1, b.2)));
    for (category, channel, region, (revenue, quantity, lines)) in rows {
        t.push(vec![
            category.into(),
            channel.into(),
            region.into(),
            Value::Money(revenue),
            quantity.into(),
            lines.into(),
        ]);
    }
    t
}

/// Whether a buyer is at churn risk: two baskets or more, silent for over
/// 30 days and for over twice their own average interval.
pub fn churn_risk(a: &Activity, recency: i64) -> bool {
    let span = (a.last_day - a.first_day) as i64;
    a.baskets >= 2 && recency > 30 && recency * (a.baskets as i64 - 1) > 2 * span
}

pub(crate) fn persistency(ctx: &Context<'_>) -> Table {
    let mut t = Table::new(&[
        "buyers",
        "repeaters",
        "repeat_rate",
        "mean_interval_days",
        "churn_risk",
    ]);
    let activity = ctx.activity();
    let buyers = ctx.buyers();
    let (mut repeaters, mut intervals, mut at_risk) = (0u64, 0.0f64, 0u64);
    for &ci in &buyers {
        let a = &activity[ci as usize];
        if a.baskets >= 2 {
            repeaters += 1;
            intervals += (a.last_day - a.first_day) as f64 / (a.baskets - 1) as f64;
            if churn_risk(a, ctx.recency(a)) {
                at_risk += 1;
            }
        }
    }
    let mean_interval = if repeaters == 0 {
        Value::Null
    } else {
        ratio(intervals / repeaters as f64, 2)
    };
    t.push(vec![
        buyers.len().into(),
        repeaters.into(),
        share(repeaters as f64, buyers.len() as f64, 4),
        mean_interval,
        at_risk.into(),
    ]);
    t
}
