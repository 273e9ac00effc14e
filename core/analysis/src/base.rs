//! Who the customers are and how the base grows: profiling_overview,
//! prospecting, prospecting_trend.

use std::collections::HashMap;

use model::{Date, Gender};

use crate::context::Context;
use crate::sales::tier_order;
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
    let mut gender: HashMap<u8, u64> = HashMap::new();
    let mut ages = [0u64; 7];
    let mut region: HashMap<u32, u64> = HashMap::new();
    let mut tier: HashMap<u32, u64> = HashMap::new();
    for &ci in &ctx.members {
        let i = ci as usize;
        *gender.entry(c.gender[i]).or_default() += 1;
        ages[age_bucket(ctx.age(ci))] += 1;
        *region.entry(c.region[i]).or_default() += 1;
        *tier.entry(c.tier[i]).or_default() += 1;
    }
    let mut push = |dimension: &str, bucket: &str, count: u64| {
        t.push(vec![
            dimension.into(),
            bucket.into(),
            count.into(),
            share(count as f64, n as f64, 4),
        ]);
    };
    push("total", "all", n as u64);
    let mut genders: Vec<(&str, u64)> = gender
        .into_iter()
        .map(|(g, count)| (Gender::from_index(g).map_or("", Gender::as_str), count))
        .collect();
    genders.sort();
    for (g, count) in genders {
        push("gender", g, count);
    }
    for (bucket, count) in AGE_BUCKETS.iter().zip(ages) {
        push("age", bucket, count);
    }
    let mut regions: Vec<(&str, u64)> = region
        .into_iter()
        .map(|(r, count)| (d.region.get(r), count))
        .collect();
    regions.sort();
    for (r, count) in regions {
        push("region", r, count);
    }
    let mut tiers: Vec<(&str, u64)> = tier
        .into_iter()
        .map(|(r, count)| (d.tier.get(r), count))
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

/// New customers per month index, for the members.
fn joined_per_month(ctx: &Context<'_>) -> HashMap<i32, u64> {
    let mut res = HashMap::new();
    for &ci in &ctx.members {
        *res.entry(Date::from_days(ctx.s.customers.joined[ci as usize]).month_index())
            .or_default() += 1;
    }
    res
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
    let joined = joined_per_month(ctx);
    let counts: Vec<f64> = (1..=24)
        .map(|x| *joined.get(&(last - 24 + x)).unwrap_or(&0) as f64)
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
        Some(_) => joined_per_month(ctx),
        None => HashMap::new(),
    };
    let last = last_month(ctx).unwrap_or(0);
    let points: Vec<(f64, f64)> = (1..=12)
        .map(|x| (x as f64, *joined.get(&(last - 12 + x)).unwrap_or(&0) as f64))
        .collect();
    let (slope, intercept) = least_squares(&points);
    t.push(vec![ratio(slope, 2), ratio(intercept, 2), 12u64.into()]);
    t
}
