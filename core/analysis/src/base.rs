//! Who the customers are and how the base grows: profiling_overview,
//! prospecting, prospecting_trend.

use model::{Date, Gender};
use rayon::prelude::*;

use crate::context::{Context, Months};
use crate::sales::tier_order;
use crate::snapshot::NO_DAY;
use crate::table::{Table, Value, ratio, share};

const AGE_BUCKETS: [&str; 7] = ["<25", "25-34", "35-44", "45-54", "55-64", "65+", "unknown"];

fn age_bucket(age: Option<i32>) -> usize {
    match age {
        None => 6,
        Some(a) if a < 25 => 0,
        Some(a) if a < 35 => 1,
        Some(a) if a < 45 => 2,
        Some(a) if a < 55 => 3,
        Some(a) if a < 65 => 4,
        Some(_) => 5,
    }
}

pub(crate) fn profiling_overview(ctx: &Context<'_>) -> Table {
    let mut t = Table::new(&["dimension", "bucket", "customers", "share"]);
    let c = &ctx.s.customers;
    let d = &ctx.s.dicts;
    let n = ctx.members.len();
    let as_of = ctx.as_of.map(Date::ymd);
    // Counts per gender, age bucket, region code and tier code, on both cores.
    let (n_regions, n_tiers) = (d.region.len(), d.tier.len());
    let width = 3 + 7 + n_regions + n_tiers;
    let counts = ctx
        .members
        .par_iter()
        .fold(
            || vec![0u64; width],
            |mut acc, &ci| {
                let i = ci as usize;
                acc[c.gender[i] as usize] += 1;
                let age = match (as_of, c.birth[i]) {
                    (Some((ay, am, ad)), birth) if birth != NO_DAY => {
                        let (by, bm, bd) = Date::from_days(birth).ymd();
                        Some(ay - by - i32::from((am, ad) < (bm, bd)))
                    }
                    _ => None,
                };
                acc[3 + age_bucket(age)] += 1;
                acc[10 + c.region[i] as usize] += 1;
                acc[10 + n_regions + c.tier[i] as usize] += 1;
                acc
            },
        )
        .reduce(
            || vec![0u64; width],
            |a, b| a.iter().zip(b).map(|(x, y)| x + y).collect(),
        );
    let mut push = |dimension: &str, bucket: &str, count: u64| {
        t.push(vec![
            dimension.into(),
            bucket.into(),
            count.into(),
            share(count as f64, n as f64, 4),
        ]);
    };
    push("total", "all", n as u64);
    let mut genders: Vec<(&str, u64)> = (0..3u8)
        .filter(|&g| counts[g as usize] > 0)
        .map(|g| {
            (
                Gender::from_index(g).map_or("", Gender::as_str),
                counts[g as usize],
            )
        })
        .collect();
    genders.sort();
    for (g, count) in genders {
        push("gender", g, count);
    }
    for (k, bucket) in AGE_BUCKETS.iter().enumerate() {
        push("age", bucket, counts[3 + k]);
    }
    let mut regions: Vec<(&str, u64)> = (0..n_regions)
        .filter(|&r| counts[10 + r] > 0)
        .map(|r| (d.region.get(r as u32), counts[10 + r]))
        .collect();
    regions.sort();
    for (r, count) in regions {
        push("region", r, count);
    }
    let mut tiers: Vec<(&str, u64)> = (0..n_tiers)
        .filter(|&k| counts[10 + n_regions + k] > 0)
        .map(|k| (d.tier.get(k as u32), counts[10 + n_regions + k]))
        .collect();
    tiers.sort_by(|a, b| tier_order(a.0).cmp(&tier_order(b.0)));
    for (name, count) in tiers {
        push("tier", name, count);
    }
    t
}

fn month_text(m: i32) -> String {
    format!("{:04}-{:02}", m.div_euclid(12), m.rem_euclid(12) + 1)
}

/// New customers per month of `months` (the members who joined then).
fn joined_per_month(ctx: &Context<'_>, first: i32, last: i32) -> Vec<u64> {
    let months = Months::new(first, last);
    let joined = &ctx.s.customers.joined;
    let width = (last - first + 1) as usize;
    ctx.members
        .par_iter()
        .fold(
            || vec![0u64; width],
            |mut acc, &ci| {
                if let Some(m) = months.of(joined[ci as usize]) {
                    acc[(m - first) as usize] += 1;
                }
                acc
            },
        )
        .reduce(
            || vec![0u64; width],
            |a, b| a.iter().zip(b).map(|(x, y)| x + y).collect(),
        )
}

/// The least-squares line through `(x, y)` points: (slope, intercept),
/// with population covariance and variance (as `regr_slope`).
fn least_squares(points: &[(f64, f64)]) -> (f64, f64) {
    let n = points.len() as f64;
    let mean_x = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
    let covariance = points
        .iter()
        .map(|p| (p.0 - mean_x) * (p.1 - mean_y))
        .sum::<f64>()
        / n;
    let variance = points
        .iter()
        .map(|p| (p.0 - mean_x) * (p.0 - mean_x))
        .sum::<f64>()
        / n;
    let slope = covariance / variance;
    (slope, mean_y - slope * mean_x)
}

/// The month before the as-of day (the month of the last transaction).
fn last_month(ctx: &Context<'_>) -> Option<i32> {
    ctx.as_of.map(|d| d.add_days(-1).month_index())
}

pub(crate) fn prospecting(ctx: &Context<'_>) -> Table {
    let mut t = Table::new(&["month", "kind", "new_customers"]);
    let Some(last) = last_month(ctx) else {
        return t;
    };
    // counts[x - 1] for x = 1..24: the months last - 23 ..= last.
    let counts: Vec<f64> = joined_per_month(ctx, last - 23, last)
        .into_iter()
        .map(|n| n as f64)
        .collect();
    for (x, &n) in (1..=24).zip(&counts) {
        t.push(vec![
            month_text(last - 24 + x).into(),
            "actual".into(),
            Value::Float(n),
        ]);
    }
    let fit: Vec<(f64, f64)> = (13..=24)
        .map(|x| ((x - 12) as f64, counts[x as usize - 1]))
        .collect();
    let (slope, intercept) = least_squares(&fit);
    for j in 1..=3 {
        t.push(vec![
            month_text(last + j).into(),
            "forecast".into(),
            ratio(intercept + slope * (12 + j) as f64, 2),
        ]);
    }
    t
}

pub(crate) fn prospecting_trend(ctx: &Context<'_>) -> Table {
    let mut t = Table::new(&["slope", "intercept", "months_fitted"]);
    let joined = match last_month(ctx) {
        Some(last) => joined_per_month(ctx, last - 11, last),
        None => vec![0; 12],
    };
    let points: Vec<(f64, f64)> = joined
        .iter()
        .enumerate()
        .map(|(k, &n)| ((k + 1) as f64, n as f64))
        .collect();
    let (slope, intercept) = least_squares(&points);
    t.push(vec![ratio(slope, 2), ratio(intercept, 2), 12u64.into()]);
    t
}
