//! Each analysis again, the obvious way: straight from the records, with
//! ordered maps and full sorts, written from the definitions without the
//! snapshot, the shared facts or any parallelism.

// The definitions' integer formulas are kept as they are written there:
// (n + 4) / 5 rather than n.div_ceil(5).
#![allow(clippy::manual_div_ceil)]

use std::collections::{BTreeMap, BTreeSet};

use model::{Date, InteractionKind};

use super::Data;
use crate::table::{Table, Value, ratio, share};

const DAY: i64 = 86_400;

fn day(ts: model::Timestamp) -> i32 {
    ts.seconds().div_euclid(DAY) as i32
}

fn as_of(data: &Data) -> Option<i32> {
    data.txns.iter().map(|t| day(t.ts)).max().map(|d| d + 1)
}

fn money(cents: i64) -> Value {
    Value::Money(cents)
}

fn units(cents: i64) -> f64 {
    cents as f64 / 100.0
}

/// Per buyer: (baskets, first day, last day, revenue, cost).
fn buyers(data: &Data) -> BTreeMap<String, (u64, i32, i32, i64, i64)> {
    let mut days: BTreeMap<String, BTreeSet<i32>> = BTreeMap::new();
    let mut money: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for t in &data.txns {
        days.entry(t.customer_id.to_string())
            .or_default()
            .insert(day(t.ts));
        let m = money.entry(t.customer_id.to_string()).or_default();
        m.0 += t.amount.cents();
        m.1 += t.cost.cents();
    }
    days.into_iter()
        .map(|(c, d)| {
            let (revenue, cost) = money[&c];
            (
                c,
                (
                    d.len() as u64,
                    *d.first().unwrap(),
                    *d.last().unwrap(),
                    revenue,
                    cost,
                ),
            )
        })
        .collect()
}

fn age(birth: Date, at: i32) -> i32 {
    crate::age(birth, Date::from_days(at))
}

/// R, F, M scores by customer.
fn scores(data: &Data) -> BTreeMap<String, (u64, u64, u64)> {
    let b = buyers(data);
    let n = b.len() as u64;
    let as_of = as_of(data).unwrap_or(0);
    let rank = |mut ids: Vec<(&String, i64)>| -> BTreeMap<String, u64> {
        ids.sort_by(|a, b| a.1.cmp(&b.1).then(a.0.cmp(b.0)));
        ids.iter()
            .enumerate()
            .map(|(i, (c, _))| ((*c).clone(), 1 + 5 * i as u64 / n))
            .collect()
    };
    let r = rank(
        b.iter()
            .map(|(c, v)| (c, -((as_of - v.2) as i64)))
            .collect(),
    );
    let f = rank(b.iter().map(|(c, v)| (c, v.0 as i64)).collect());
    let m = rank(b.iter().map(|(c, v)| (c, v.3)).collect());
    b.keys().map(|c| (c.clone(), (r[c], f[c], m[c]))).collect()
}

pub(crate) fn run(data: &Data, name: &str) -> Table {
    let as_of = as_of(data);
    let b = buyers(data);
    let customer = |id: &str| {
        data.customers
            .iter()
            .find(|c| c.customer_id.as_str() == id)
            .unwrap()
    };
    match name {
        "dataset_summary" => {
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
            let any = !data.txns.is_empty();
            let or_null = |v: Value| if any { v } else { Value::Null };
            t.push(vec![
                data.customers.len().into(),
                data.products.len().into(),
                data.txns.len().into(),
                data.interactions.len().into(),
                data.campaigns.len().into(),
                or_null(
                    data.txns
                        .iter()
                        .map(|t| t.ts)
                        .min()
                        .map_or(Value::Null, Value::Timestamp),
                ),
                or_null(
                    data.txns
                        .iter()
                        .map(|t| t.ts)
                        .max()
                        .map_or(Value::Null, Value::Timestamp),
                ),
                as_of.map_or(Value::Null, |d| Value::Date(Date::from_days(d))),
                or_null(money(data.txns.iter().map(|t| t.amount.cents()).sum())),
                or_null(money(data.txns.iter().map(|t| t.cost.cents()).sum())),
                or_null(Value::Int(
                    data.txns.iter().map(|t| t.quantity as i64).sum(),
                )),
            ]);
            t
        }
        "profiling_overview" => {
            let mut t = Table::new(&["dimension", "bucket", "customers", "share"]);
            let n = data.customers.len() as f64;
            let mut rows: Vec<(u8, u8, String, u64)> =
                vec![(1, 0, "all".into(), data.customers.len() as u64)];
            let mut count = |dim: u8, ord: u8, bucket: String| match rows
                .iter_mut()
                .find(|r| r.0 == dim && r.2 == bucket)
            {
                Some(r) => r.3 += 1,
                None => rows.push((dim, ord, bucket, 1)),
            };
            for c in &data.customers {
                count(2, 0, c.gender.as_str().into());
                count(4, 0, c.region.clone());
                let ord = ["bronze", "silver", "gold", "platinum"]
                    .iter()
                    .position(|t| *t == c.tier)
                    .map_or(5, |p| p as u8 + 1);
                count(5, ord, c.tier.clone());
            }
            let buckets = ["<25", "25-34", "35-44", "45-54", "55-64", "65+", "unknown"];
            for (i, bucket) in buckets.iter().enumerate() {
                let n = data
                    .customers
                    .iter()
                    .filter(|c| {
                        let a = c.birth_date.and_then(|b| as_of.map(|d| age(b, d)));
                        let k = match a {
                            None => 6,
                            Some(a) => [25, 35, 45, 55, 65]
                                .iter()
                                .position(|&limit| a < limit)
                                .unwrap_or(5),
                        };
                        k == i
                    })
                    .count();
                rows.push((3, i as u8 + 1, (*bucket).into(), n as u64));
            }
            rows.sort_by(|a, b| (a.0, a.1, &a.2).cmp(&(b.0, b.1, &b.2)));
            for (dim, _, bucket, count) in rows {
                let dimension = ["", "total", "gender", "age", "region", "tier"][dim as usize];
                t.push(vec![
                    dimension.into(),
                    bucket.into(),
                    count.into(),
                    share(count as f64, n, 4),
                ]);
            }
            t
        }
        "visits_distribution" => {
            let mut t = Table::new(&["bucket", "customers", "share"]);
            let n = data.customers.len() as f64;
            for (name, lo, hi) in [
                ("0", 0, 0),
                ("1", 1, 1),
                ("2-3", 2, 3),
                ("4-7", 4, 7),
                ("8-15", 8, 15),
                ("16+", 16, u64::MAX),
            ] {
                let count = data
                    .customers
                    .iter()
                    .filter(|c| {
                        let k = b.get(c.customer_id.as_str()).map_or(0, |v| v.0);
                        k >= lo && k <= hi
                    })
                    .count();
                t.push(vec![name.into(), count.into(), share(count as f64, n, 4)]);
            }
            t
        }
        "rfm" => {
            let mut t = Table::new(&["segment", "customers", "share", "avg_monetary"]);
            let s = scores(data);
            for seg in [
                "champions",
                "loyal",
                "new",
                "at_risk",
                "hibernating",
                "potential",
            ] {
                let members: Vec<&String> = s
                    .iter()
                    .filter(|(_, v)| crate::rfm_segment(v.0 as u8, v.1 as u8) == seg)
                    .map(|(c, _)| c)
                    .collect();
                let total: i64 = members.iter().map(|c| b[*c].3).sum();
                let avg = if members.is_empty() {
                    Value::Null
                } else {
                    ratio(units(total) / members.len() as f64, 2)
                };
                t.push(vec![
                    seg.into(),
                    members.len().into(),
                    share(members.len() as f64, s.len() as f64, 4),
                    avg,
                ]);
            }
            t
        }
        "rfm_top" => {
            let mut t = Table::new(&[
                "customer_id",
                "recency_days",
                "frequency",
                "monetary",
                "r",
                "f",
                "m",
            ]);
            let s = scores(data);
            let mut ids: Vec<&String> = b.keys().collect();
            ids.sort_by(|x, y| b[*y].3.cmp(&b[*x].3).then(x.cmp(y)));
            for c in ids.into_iter().take(20) {
                let v = b[c];
                let (r, f, m) = s[c];
                t.push(vec![
                    c.as_str().into(),
                    ((as_of.unwrap() - v.2) as i64).into(),
                    v.0.into(),
                    money(v.3),
                    r.into(),
                    f.into(),
                    m.into(),
                ]);
            }
            t
        }
        "pareto" => {
            let mut t = Table::new(&["n", "k", "top_revenue", "total_revenue", "top_share"]);
            if b.is_empty() {
                return t;
            }
            let mut revenues: Vec<(i64, &String)> = b.iter().map(|(c, v)| (v.3, c)).collect();
            revenues.sort_by(|x, y| y.0.cmp(&x.0).then(x.1.cmp(y.1)));
            let k = (b.len() + 4) / 5;
            let top: i64 = revenues[..k].iter().map(|r| r.0).sum();
            let total: i64 = revenues.iter().map(|r| r.0).sum();
            t.push(vec![
                b.len().into(),
                k.into(),
                money(top),
                money(total),
                share(units(top), units(total), 4),
            ]);
            t
        }
        "profitability" => {
            let mut t = Table::new(&["tier", "buyers", "revenue", "cost", "margin", "margin_rate"]);
            let mut groups: BTreeMap<(u8, String), (u64, i64, i64)> = BTreeMap::new();
            for (c, v) in &b {
                let tier = customer(c).tier.clone();
                let ord = ["bronze", "silver", "gold", "platinum"]
                    .iter()
                    .position(|t| *t == tier)
                    .map_or(5, |p| p as u8 + 1);
                for key in [(0, "all".to_owned()), (ord, tier)] {
                    let g = groups.entry(key).or_default();
                    g.0 += 1;
                    g.1 += v.3;
                    g.2 += v.4;
                }
            }
            if b.is_empty() {
                t.push(vec![
                    "all".into(),
                    0u64.into(),
                    Value::Null,
                    Value::Null,
                    Value::Null,
                    Value::Null,
                ]);
            }
            for ((_, tier), (n, revenue, cost)) in groups {
                t.push(vec![
                    tier.into(),
                    n.into(),
                    money(revenue),
                    money(cost),
                    money(revenue - cost),
                    share(units(revenue - cost), units(revenue), 4),
                ]);
            }
            t
        }
        "profitability_top" => {
            let mut t = Table::new(&["customer_id", "name", "tier", "revenue", "cost", "margin"]);
            let mut ids: Vec<&String> = b.keys().collect();
            ids.sort_by(|x, y| (b[*y].3 - b[*y].4).cmp(&(b[*x].3 - b[*x].4)).then(x.cmp(y)));
            for c in ids.into_iter().take(10) {
                let v = b[c];
                let cu = customer(c);
                t.push(vec![
                    c.as_str().into(),
                    cu.name.as_str().into(),
                    cu.tier.as_str().into(),
                    money(v.3),
                    money(v.4),
                    money(v.3 - v.4),
                ]);
            }
            t
        }
        "performance" => {
            let mut t = Table::new(&[
                "category", "channel", "region", "revenue", "quantity", "lines",
            ]);
            let mut groups: BTreeMap<(String, String, String), (i64, i64, i64)> = BTreeMap::new();
            for tx in &data.txns {
                let category = data
                    .products
                    .iter()
                    .find(|p| p.sku == tx.sku)
                    .unwrap()
                    .category
                    .clone();
                let g = groups
                    .entry((category, tx.channel.as_str().into(), tx.region.clone()))
                    .or_default();
                g.0 += tx.amount.cents();
                g.1 += tx.quantity as i64;
                g.2 += 1;
            }
            for ((c, ch, r), (revenue, q, n)) in groups {
                t.push(vec![
                    c.into(),
                    ch.into(),
                    r.into(),
                    money(revenue),
                    q.into(),
                    n.into(),
                ]);
            }
            t
        }
        "persistency" => {
            let mut t = Table::new(&[
                "buyers",
                "repeaters",
                "repeat_rate",
                "mean_interval_days",
                "churn_risk",
            ]);
            let repeaters: Vec<_> = b.values().filter(|v| v.0 >= 2).collect();
            let mean = if repeaters.is_empty() {
                Value::Null
            } else {
                ratio(
                    repeaters
                        .iter()
                        .map(|v| (v.2 - v.1) as f64 / (v.0 - 1) as f64)
                        .sum::<f64>()
                        / repeaters.len() as f64,
                    2,
                )
            };
            let risk = repeaters
                .iter()
                .filter(|v| {
                    let recency = (as_of.unwrap() - v.2) as i64;
                    recency > 30 && recency * (v.0 as i64 - 1) > 2 * (v.2 - v.1) as i64
                })
                .count();
            t.push(vec![
                b.len().into(),
                repeaters.len().into(),
                share(repeaters.len() as f64, b.len() as f64, 4),
                mean,
                risk.into(),
            ]);
            t
        }
        "prospecting" | "prospecting_trend" => {
            let Some(as_of) = as_of else {
                let mut t = Table::new(&["month", "kind", "new_customers"]);
                if name == "prospecting_trend" {
                    t = Table::new(&["slope", "intercept", "months_fitted"]);
                    t.push(vec![Value::Float(0.0), Value::Float(0.0), 12u64.into()]);
                }
                return t;
            };
            let last = Date::from_days(as_of - 1).month_index();
            let joined = |m: i32| {
                data.customers
                    .iter()
                    .filter(|c| c.joined_at.month_index() == m)
                    .count() as f64
            };
            let ys: Vec<f64> = (1..=12).map(|x| joined(last - 12 + x)).collect();
            let xs: Vec<f64> = (1..=12).map(|x| x as f64).collect();
            let (mx, my) = (xs.iter().sum::<f64>() / 12.0, ys.iter().sum::<f64>() / 12.0);
            let slope = xs
                .iter()
                .zip(&ys)
                .map(|(x, y)| (x - mx) * (y - my))
                .sum::<f64>()
                / xs.iter().map(|x| (x - mx) * (x - mx)).sum::<f64>();
            let intercept = my - slope * mx;
            if name == "prospecting_trend" {
                let mut t = Table::new(&["slope", "intercept", "months_fitted"]);
                t.push(vec![ratio(slope, 2), ratio(intercept, 2), 12u64.into()]);
                return t;
            }
            let mut t = Table::new(&["month", "kind", "new_customers"]);
            let text = |m: i32| format!("{:04}-{:02}", m.div_euclid(12), m.rem_euclid(12) + 1);
            for m in last - 23..=last {
                t.push(vec![
                    text(m).into(),
                    "actual".into(),
                    Value::Float(joined(m)),
                ]);
            }
            for j in 1..=3 {
                t.push(vec![
                    text(last + j).into(),
                    "forecast".into(),
                    ratio(intercept + slope * (12 + j) as f64, 2),
                ]);
            }
            t
        }
        "product_affinity" | "cross_sell" => affinity(data, name),
        "product_distribution" => {
            let mut t = Table::new(&["category", "region", "month", "quantity", "lines"]);
            let Some(as_of) = as_of else { return t };
            let last = Date::from_days(as_of - 1).month_index();
            let mut groups: BTreeMap<(String, String, i32), (i64, i64)> = BTreeMap::new();
            for tx in &data.txns {
                let m = Date::from_days(day(tx.ts)).month_index();
                if m > last - 12 && m <= last {
                    let category = data
                        .products
                        .iter()
                        .find(|p| p.sku == tx.sku)
                        .unwrap()
                        .category
                        .clone();
                    let g = groups.entry((category, tx.region.clone(), m)).or_default();
                    g.0 += tx.quantity as i64;
                    g.1 += 1;
                }
            }
            for ((c, r, m), (q, n)) in groups {
                t.push(vec![
                    c.into(),
                    r.into(),
                    format!("{:04}-{:02}", m.div_euclid(12), m.rem_euclid(12) + 1).into(),
                    q.into(),
                    n.into(),
                ]);
            }
            t
        }
        "promotion" => {
            let mut t = Table::new(&[
                "campaign_id",
                "channel",
                "sent",
                "responded",
                "response_rate",
                "revenue",
                "cost",
                "roi",
            ]);
            let mut campaigns = data.campaigns.clone();
            campaigns.sort_by(|a, b| a.campaign_id.cmp(&b.campaign_id));
            for c in campaigns {
                let who = |kind: InteractionKind| -> BTreeSet<String> {
                    data.interactions
                        .iter()
                        .filter(|i| {
                            i.kind == kind && i.campaign_id.as_ref() == Some(&c.campaign_id)
                        })
                        .map(|i| i.customer_id.to_string())
                        .collect()
                };
                let (sent, responded) = (
                    who(InteractionKind::PromotionSent),
                    who(InteractionKind::PromotionResponse),
                );
                let revenue: i64 = data
                    .txns
                    .iter()
                    .filter(|t| {
                        responded.contains(t.customer_id.as_str())
                            && day(t.ts) >= c.start_date.days()
                            && day(t.ts) <= c.end_date.days() + 14
                    })
                    .map(|t| t.amount.cents())
                    .sum();
                let rate = if sent.is_empty() {
                    Value::Null
                } else {
                    ratio(responded.len() as f64 / sent.len() as f64, 4)
                };
                t.push(vec![
                    c.campaign_id.as_str().into(),
                    c.channel.as_str().into(),
                    sent.len().into(),
                    responded.len().into(),
                    rate,
                    money(revenue),
                    money(c.cost.cents()),
                    share(units(revenue - c.cost.cents()), units(c.cost.cents()), 4),
                ]);
            }
            t
        }
        "opinions" => {
            let mut t = Table::new(&[
                "kind",
                "topic",
                "department",
                "cases",
                "resolved",
                "resolution_rate",
                "median_hours",
            ]);
            let mut groups: BTreeMap<(String, String, String), (u64, Vec<f64>)> = BTreeMap::new();
            for i in data.interactions.iter().filter(|i| i.kind.is_case()) {
                let g = groups
                    .entry((
                        i.kind.as_str().into(),
                        i.topic.unwrap().as_str().into(),
                        i.department.as_str().into(),
                    ))
                    .or_default();
                g.0 += 1;
                if let Some(r) = i.resolved_ts {
                    g.1.push((r.seconds() - i.ts.seconds()) as f64 / 3600.0);
                }
            }
            for ((k, tp, d), (cases, mut hours)) in groups {
                hours.sort_by(f64::total_cmp);
                let n = hours.len();
                let median = if n == 0 {
                    Value::Null
                } else if n % 2 == 1 {
                    ratio(hours[n / 2], 2)
                } else {
                    ratio((hours[n / 2 - 1] + hours[n / 2]) / 2.0, 2)
                };
                t.push(vec![
                    k.into(),
                    tp.into(),
                    d.into(),
                    cases.into(),
                    n.into(),
                    ratio(n as f64 / cases as f64, 4),
                    median,
                ]);
            }
            t
        }
        "contact_pressure" => {
            let mut t = Table::new(&["customers", "customer_weeks", "max_departments"]);
            let mut weeks: BTreeMap<(String, (i32, u32)), BTreeSet<&str>> = BTreeMap::new();
            for i in data.interactions.iter().filter(|i| {
                matches!(
                    i.kind,
                    InteractionKind::Contact | InteractionKind::PromotionSent
                )
            }) {
                weeks
                    .entry((i.customer_id.to_string(), i.ts.date().iso_week()))
                    .or_default()
                    .insert(i.department.as_str());
            }
            let crowded: Vec<_> = weeks.iter().filter(|(_, d)| d.len() >= 3).collect();
            let customers: BTreeSet<&String> = crowded.iter().map(|((c, _), _)| c).collect();
            let most = crowded.iter().map(|(_, d)| d.len()).max();
            t.push(vec![
                customers.len().into(),
                crowded.len().into(),
                most.map_or(Value::Null, |m| Value::Int(m as i64)),
            ]);
            t
        }
        "satisfaction" => {
            let mut t = Table::new(&[
                "group",
                "customers",
                "mean_rating",
                "share_female",
                "mean_age",
                "top_region",
                "mean_revenue",
            ]);
            let mut ratings: BTreeMap<String, (u64, u64)> = BTreeMap::new();
            for i in data
                .interactions
                .iter()
                .filter(|i| i.kind == InteractionKind::Survey)
            {
                let r = ratings.entry(i.customer_id.to_string()).or_default();
                r.0 += i.rating.unwrap() as u64;
                r.1 += 1;
            }
            if ratings.is_empty() {
                return t;
            }
            let avg: Vec<(String, f64)> = ratings
                .into_iter()
                .map(|(c, (s, n))| (c, s as f64 / n as f64))
                .collect();
            let k = (avg.len() + 4) / 5;
            let mut top = avg.clone();
            top.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            let mut bottom = avg.clone();
            bottom.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
            for (name, group) in [
                ("top", &top[..k]),
                ("bottom", &bottom[..k]),
                ("all", &avg[..]),
            ] {
                let n = group.len() as f64;
                let ages: Vec<i32> = group
                    .iter()
                    .filter_map(|(c, _)| customer(c).birth_date.map(|b| age(b, as_of.unwrap_or(0))))
                    .filter(|_| as_of.is_some())
                    .collect();
                let mut regions: BTreeMap<&str, u64> = BTreeMap::new();
                for (c, _) in group {
                    *regions.entry(customer(c).region.as_str()).or_default() += 1;
                }
                let most = regions.values().max().copied().unwrap_or(0);
                let top_region = regions
                    .iter()
                    .find(|entry| *entry.1 == most)
                    .map(|(r, _)| *r);
                let revenue: i64 = group.iter().map(|(c, _)| b.get(c).map_or(0, |v| v.3)).sum();
                t.push(vec![
                    name.into(),
                    group.len().into(),
                    ratio(group.iter().map(|g| g.1).sum::<f64>() / n, 4),
                    ratio(
                        group
                            .iter()
                            .filter(|(c, _)| customer(c).gender == model::Gender::Female)
                            .count() as f64
                            / n,
                        4,
                    ),
                    if ages.is_empty() {
                        Value::Null
                    } else {
                        ratio(
                            ages.iter().map(|&a| a as f64).sum::<f64>() / ages.len() as f64,
                            2,
                        )
                    },
                    top_region.into(),
                    ratio(units(revenue) / n, 2),
                ]);
            }
            t
        }
        other => panic!("no naive {other}"),
    }
}

/// product_affinity and cross_sell from baskets as sets.
fn affinity(data: &Data, name: &str) -> Table {
    let category = |sku: &model::Sku| {
        data.products
            .iter()
            .find(|p| &p.sku == sku)
            .unwrap()
            .category
            .clone()
    };
    let by_category = name == "cross_sell";
    let mut baskets: BTreeMap<(String, i32), BTreeSet<String>> = BTreeMap::new();
    for t in &data.txns {
        let item = if by_category {
            category(&t.sku)
        } else {
            t.sku.to_string()
        };
        baskets
            .entry((t.customer_id.to_string(), day(t.ts)))
            .or_default()
            .insert(item);
    }
    let n = baskets.len() as u64;
    let min = ((n + 999) / 1000).max(5);
    let mut single: BTreeMap<&String, u64> = BTreeMap::new();
    let mut pairs: BTreeMap<(&String, &String), u64> = BTreeMap::new();
    for items in baskets.values() {
        for a in items {
            *single.entry(a).or_default() += 1;
            for b in items {
                if a != b {
                    *pairs.entry((a, b)).or_default() += 1;
                }
            }
        }
    }
    let lift =
        |a: &String, b: &String, n_ab: u64| (n_ab * n) as f64 / (single[a] * single[b]) as f64;
    if !by_category {
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
        let mut rows: Vec<(f64, u64, &String, &String)> = pairs
            .iter()
            .filter(|((a, b), c)| a < b && **c >= min)
            .map(|((a, b), c)| (lift(a, b, *c), *c, *a, *b))
            .collect();
        rows.sort_by(|x, y| {
            y.0.total_cmp(&x.0)
                .then(y.1.cmp(&x.1))
                .then(x.2.cmp(y.2))
                .then(x.3.cmp(y.3))
        });
        for (l, c, a, b) in rows.into_iter().take(20) {
            let (na, nb) = (single[a], single[b]);
            t.push(vec![
                a.as_str().into(),
                b.as_str().into(),
                c.into(),
                na.into(),
                nb.into(),
                ratio(c as f64 / n as f64, 6),
                ratio(c as f64 / na as f64, 4),
                ratio(c as f64 / nb as f64, 4),
                ratio(l, 4),
            ]);
        }
        return t;
    }
    let mut t = Table::new(&["category", "partner", "lift", "co_baskets", "candidates"]);
    let categories: BTreeSet<String> = data.products.iter().map(|p| p.category.clone()).collect();
    let mut bought: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for tx in &data.txns {
        bought
            .entry(tx.customer_id.to_string())
            .or_default()
            .insert(category(&tx.sku));
    }
    for c in &categories {
        let mut best: Option<(f64, u64, &String)> = None;
        for ((a, b), &n_ab) in &pairs {
            if *a != c || n_ab < min {
                continue;
            }
            let cand = (lift(a, b, n_ab), n_ab, *b);
            best = match best {
                Some(x)
                    if x.0 > cand.0
                        || (x.0 == cand.0 && (x.1 > cand.1 || (x.1 == cand.1 && x.2 < cand.2))) =>
                {
                    Some(x)
                }
                _ => Some(cand),
            };
        }
        match best {
            None => t.push(vec![
                c.as_str().into(),
                Value::Null,
                Value::Null,
                Value::Null,
                0u64.into(),
            ]),
            Some((l, n_ab, d)) => {
                let candidates = bought
                    .values()
                    .filter(|cats| cats.contains(d) && !cats.contains(c))
                    .count();
                t.push(vec![
                    c.as_str().into(),
                    d.as_str().into(),
                    ratio(l, 4),
                    n_ab.into(),
                    candidates.into(),
                ]);
            }
        }
    }
    t
}
