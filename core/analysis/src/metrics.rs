//! The per-customer metrics: one definition for every part of the platform
//! (the customer's page, segments, plugins), consistent with the analyses.

use model::{Date, InteractionKind, Money};
use serde::Serialize;

use crate::context::Context;
use crate::sales::churn_risk;

/// What a customer's records say about them, as of the context's day.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Metrics {
    /// Sum of the amounts of their transaction lines.
    pub revenue: Money,
    pub cost: Money,
    pub margin: Money,
    pub lines: u32,
    /// Days with a purchase.
    pub baskets: u32,
    pub first_purchase: Option<Date>,
    pub last_purchase: Option<Date>,
    /// Days from the last purchase to the as-of day.
    pub recency_days: Option<i64>,
    /// Mean days between baskets (two baskets or more).
    pub avg_interbasket_days: Option<f64>,
    /// Recency, frequency and monetary scores among all buyers (1..5, 5 best).
    pub r: Option<u8>,
    pub f: Option<u8>,
    pub m: Option<u8>,
    /// The RFM segment: champions, loyal, new, at_risk, hibernating, potential.
    pub rfm_segment: Option<&'static str>,
    /// Silent for over 30 days and over twice their own interval.
    pub churn_risk: bool,
    pub avg_rating: Option<f64>,
    pub surveys: u32,
    /// Opinions not resolved (yet).
    pub open_opinions: u32,
    pub as_of: Option<Date>,
}

/// Which of the metrics that cost more than a lookup to compute.
#[derive(Clone, Copy, Debug)]
pub struct Parts {
    /// r, f, m and the RFM segment: ranks among all buyers (sorted once per context).
    pub scores: bool,
    /// avg_rating, surveys, open_opinions: read from the customer's interactions.
    pub interactions: bool,
}

impl Parts {
    pub const ALL: Parts = Parts {
        scores: true,
        interactions: true,
    };
}

/// The metrics of customer row `ci` (scores are ranked among the context's buyers).
pub fn customer_metrics(ctx: &Context<'_>, ci: u32) -> Metrics {
    customer_metrics_of(ctx, ci, Parts::ALL)
}

/// As [`customer_metrics`], computing only the `parts` asked for beside
/// the metrics of the customer's activity (the others are absent or 0).
pub fn customer_metrics_of(ctx: &Context<'_>, ci: u32, parts: Parts) -> Metrics {
    let a = ctx.activity()[ci as usize];
    let buyer = a.lines > 0;
    let scores = if parts.scores {
        ctx.scores()[ci as usize]
    } else {
        crate::Scores::default()
    };
    let lines = if parts.interactions {
        ctx.interactions(ci)
    } else {
        ctx.interactions(ci).prefix(0)
    };
    let buyer_scored = buyer && parts.scores;
    let (mut rating_sum, mut surveys, mut open) = (0u32, 0u32, 0u32);
    for i in 0..lines.len() {
        if lines.kind[i] == InteractionKind::Survey as u8 && lines.rating[i] > 0 {
            rating_sum += lines.rating[i] as u32;
            surveys += 1;
        }
        if lines.kind[i] == InteractionKind::Opinion as u8 && !ctx.resolved(lines.resolved[i]) {
            open += 1;
        }
    }
    let recency = buyer.then(|| ctx.recency(&a));
    Metrics {
        revenue: Money::from_cents(a.revenue),
        cost: Money::from_cents(a.cost),
        margin: Money::from_cents(a.revenue - a.cost),
        lines: a.lines,
        baskets: a.baskets,
        first_purchase: buyer.then(|| Date::from_days(a.first_day)),
        last_purchase: buyer.then(|| Date::from_days(a.last_day)),
        recency_days: recency,
        avg_interbasket_days: (a.baskets >= 2)
            .then(|| (a.last_day - a.first_day) as f64 / (a.baskets - 1) as f64),
        r: buyer_scored.then_some(scores.r),
        f: buyer_scored.then_some(scores.f),
        m: buyer_scored.then_some(scores.m),
        rfm_segment: buyer_scored.then(|| crate::rfm_segment(scores.r, scores.f)),
        churn_risk: buyer && churn_risk(&a, recency.unwrap_or(0)),
        avg_rating: (surveys > 0).then(|| rating_sum as f64 / surveys as f64),
        surveys,
        open_opinions: open,
        as_of: ctx.as_of,
    }
}
