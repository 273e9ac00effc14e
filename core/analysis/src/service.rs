//! Which promotions pay and how customers are served: promotion, opinions,
//! contact_pressure, satisfaction.

use std::cmp::Reverse;
use std::collections::HashMap;

use model::{Date, Department, InteractionKind, Topic};
use rayon::prelude::*;

use crate::context::Context;
use crate::sales::{top, units};
use crate::snapshot::NONE;
use crate::snapshot::day;
use crate::table::{Table, Value, ratio, share};

const SENT: u8 = InteractionKind::PromotionSent as u8;
const RESPONSE: u8 = InteractionKind::PromotionResponse as u8;
const SURVEY: u8 = InteractionKind::Survey as u8;
const CONTACT: u8 = InteractionKind::Contact as u8;

pub(crate) fn promotion(ctx: &Context<'_>) -> Table {
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
    let campaigns = &ctx.s.campaigns;
    let n = campaigns.len();
    // Per campaign: customers sent to, customers who responded, and the
    // responders' revenue in [start, end + 14 days].
    let empty = || (vec![0u64; n], vec![0u64; n], vec![0i64; n]);
    let (sent, responded, revenue) = ctx
        .members
        .par_iter()
        .fold(empty, |mut acc, &ci| {
            let lines = ctx.interactions(ci);
            let mut seen: Vec<(u32, u8)> = Vec::new();
            for i in 0..lines.len() {
                let kind = lines.kind[i];
                if (kind == SENT || kind == RESPONSE) && lines.campaign[i] != NONE {
                    seen.push((lines.campaign[i], kind));
                }
            }
            seen.sort_unstable();
            seen.dedup();
            for (campaign, kind) in seen {
                let c = campaign as usize;
                if kind == SENT {
                    acc.0[c] += 1;
                    continue;
                }
                acc.1[c] += 1;
                let row = &campaigns[c];
                let txns = ctx.txns(ci);
                let from = txns.ts.partition_point(|&ts| day(ts) < row.start);
                let to = txns.ts.partition_point(|&ts| day(ts) <= row.end + 14);
                acc.2[c] += txns.amount[from..to.max(from)].iter().sum::<i64>();
            }
            acc
        })
        .reduce(empty, |mut a, b| {
            for c in 0..n {
                a.0[c] += b.0[c];
                a.1[c] += b.1[c];
                a.2[c] += b.2[c];
            }
            a
        });
    for (c, row) in campaigns.iter().enumerate() {
        let rate = if sent[c] == 0 {
            Value::Null
        } else {
            ratio(responded[c] as f64 / sent[c] as f64, 4)
        };
        t.push(vec![
            row.id.as_str().into(),
            row.channel.as_str().into(),
            sent[c].into(),
            responded[c].into(),
            rate,
            Value::Money(revenue[c]),
            Value::Money(row.cost),
            share(units(revenue[c] - row.cost), units(row.cost), 4),
        ]);
    }
    t
}

/// The median of `values` (the mean of the two middle ones for an even count).
fn median(values: &mut [f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let m = values.len() / 2;
    Some(if values.len() % 2 == 1 {
        values[m]
    } else {
        (values[m - 1] + values[m]) / 2.0
    })
}

pub(crate) fn opinions(ctx: &Context<'_>) -> Table {
    let mut t = Table::new(&[
        "kind",
        "topic",
        "department",
        "cases",
        "resolved",
        "resolution_rate",
        "median_hours",
    ]);
    type Groups = HashMap<(u8, u8, u8), (u64, Vec<f64>)>;
    let groups: Groups = ctx
        .members
        .par_iter()
        .fold(Groups::new, |mut acc, &ci| {
            let lines = ctx.interactions(ci);
            for i in 0..lines.len() {
                let kind = lines.kind[i];
                if kind != InteractionKind::Opinion as u8
                    && kind != InteractionKind::Consultation as u8
                {
                    continue;
                }
                let entry = acc
                    .entry((kind, lines.topic[i], lines.department[i]))
                    .or_default();
                entry.0 += 1;
                if ctx.resolved(lines.resolved[i]) {
                    entry
                        .1
                        .push((lines.resolved[i] - lines.ts[i]) as f64 / 3600.0);
                }
            }
            acc
        })
        .reduce(Groups::new, |mut a, b| {
            for (k, (cases, hours)) in b {
                let e = a.entry(k).or_default();
                e.0 += cases;
                e.1.extend(hours);
            }
            a
        });
    let text = |kind: u8, topic: u8, department: u8| {
        (
            InteractionKind::from_index(kind).map_or("", InteractionKind::as_str),
            Topic::from_index(topic).map(Topic::as_str),
            Department::from_index(department).map_or("", Department::as_str),
        )
    };
    let mut rows: Vec<_> = groups.into_iter().collect();
    // NULL topics sort last, as in SQL.
    rows.sort_by(|a, b| {
        let (ka, ta, da) = text(a.0.0, a.0.1, a.0.2);
        let (kb, tb, db) = text(b.0.0, b.0.1, b.0.2);
        (ka, ta.is_none(), ta, da).cmp(&(kb, tb.is_none(), tb, db))
    });
    for ((kind, topic, department), (cases, mut hours)) in rows {
        let (kind, topic, department) = text(kind, topic, department);
        let resolved = hours.len() as u64;
        t.push(vec![
            kind.into(),
            topic.into(),
            department.into(),
            cases.into(),
            resolved.into(),
            ratio(resolved as f64 / cases as f64, 4),
            median(&mut hours).map_or(Value::Null, |m| ratio(m, 2)),
        ]);
    }
    t
}

pub(crate) fn contact_pressure(ctx: &Context<'_>) -> Table {
    let mut t = Table::new(&["customers", "customer_weeks", "max_departments"]);
    // Per member: (crowded weeks, most departments in one of them).
    let per_member = ctx.per_member(|ci| {
        let lines = ctx.interactions(ci);
        let mut weeks: HashMap<(i32, u32), u8> = HashMap::new();
        for i in 0..lines.len() {
            let kind = lines.kind[i];
            if kind == CONTACT || kind == SENT {
                let week = Date::from_days(day(lines.ts[i])).iso_week();
                *weeks.entry(week).or_default() |= 1 << lines.department[i];
            }
        }
        let crowded: Vec<u32> = weeks
            .values()
            .map(|d| d.count_ones())
            .filter(|&n| n >= 3)
            .collect();
        (crowded.len() as u64, crowded.into_iter().max())
    });
    let customers = per_member.iter().filter(|(weeks, _)| *weeks > 0).count();
    let weeks: u64 = per_member.iter().map(|(weeks, _)| weeks).sum();
    let most = per_member.iter().filter_map(|(_, most)| *most).max();
    t.push(vec![
        customers.into(),
        weeks.into(),
        most.map_or(Value::Null, |m| Value::Int(m as i64)),
    ]);
    t
}

pub(crate) fn satisfaction(ctx: &Context<'_>) -> Table {
    let mut t = Table::new(&[
        "group",
        "customers",
        "mean_rating",
        "share_female",
        "mean_age",
        "top_region",
        "mean_revenue",
    ]);
    let ratings: Vec<Option<f64>> = ctx.per_member(|ci| {
        let lines = ctx.interactions(ci);
        let (mut sum, mut count) = (0u64, 0u64);
        for i in 0..lines.len() {
            if lines.kind[i] == SURVEY && lines.rating[i] > 0 {
                sum += lines.rating[i] as u64;
                count += 1;
            }
        }
        (count > 0).then(|| sum as f64 / count as f64)
    });
    let rated: Vec<(u32, f64)> = ctx
        .members
        .iter()
        .zip(ratings)
        .filter_map(|(&ci, r)| r.map(|r| (ci, r)))
        .collect();
    if rated.is_empty() {
        return t;
    }
    let k = rated.len().div_ceil(5);
    let rank = ctx.s.customers.rank();
    // Ratings are in [1, 5]: their bits order them.
    let top_k = top(&rated, k, |&(ci, r)| {
        (Reverse(r.to_bits()), rank[ci as usize])
    });
    let bottom_k = top(&rated, k, |&(ci, r)| (r.to_bits(), rank[ci as usize]));
    let activity = ctx.activity();
    let c = &ctx.s.customers;
    let female = model::Gender::Female.index();
    for (name, group) in [("top", &top_k), ("bottom", &bottom_k), ("all", &rated)] {
        let n = group.len() as f64;
        let mean_rating = group.iter().map(|g| g.1).sum::<f64>() / n;
        let females = group
            .iter()
            .filter(|g| c.gender[g.0 as usize] == female)
            .count();
        let ages: Vec<i32> = group.iter().filter_map(|g| ctx.age(g.0)).collect();
        let mean_age = if ages.is_empty() {
            Value::Null
        } else {
            ratio(
                ages.iter().map(|&a| a as f64).sum::<f64>() / ages.len() as f64,
                2,
            )
        };
        let mut regions: HashMap<u32, u64> = HashMap::new();
        for g in group {
            *regions.entry(c.region[g.0 as usize]).or_default() += 1;
        }
        let top_region = regions
            .into_iter()
            .map(|(r, count)| (Reverse(count), ctx.s.dicts.region.get(r)))
            .min()
            .map(|(_, r)| r);
        let revenue: i64 = group.iter().map(|g| activity[g.0 as usize].revenue).sum();
        t.push(vec![
            name.into(),
            group.len().into(),
            ratio(mean_rating, 4),
            ratio(females as f64 / n, 4),
            mean_age,
            top_region.into(),
            ratio(units(revenue) / n, 2),
        ]);
    }
    t
}
