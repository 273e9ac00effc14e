//! The analysis host's computations: the 7P analyses and the per-customer
//! metrics, over a columnar snapshot of the store.
//!
//! Design decision: analyses never read the store. They read a `Snapshot`
//! (every record as plain columns: dictionary-encoded strings, integer
//! days, money in cents, each customer's lines contiguous and in time
//! order), which the host keeps current as records change and saves as a
//! checkpoint. The definitions follow `reference.sql` of the shared
//! reference data set exactly: the same rows, in the same order, rounded
//! the same way.
//!
//! This crate does no IO of its own (the checkpoint is written to and read
//! from a writer and a reader it is given) and cannot fail on the data:
//! empty inputs give empty or null results.

mod base;
mod baskets;
mod context;
mod metrics;
pub mod persist;
mod sales;
mod service;
pub mod snapshot;
mod table;

use rayon::prelude::*;

pub use context::{Context, Scope, Scores, age, rfm_scores};
pub use metrics::{Metrics, Parts, customer_metrics, customer_metrics_of};
pub use sales::{churn_risk, rfm_segment};
pub use snapshot::Activity;
pub use snapshot::Snapshot;
pub use table::{Table, Value};

/// Every analysis, in the order of the reference definitions.
pub const NAMES: [&str; 19] = [
    "dataset_summary",
    "profiling_overview",
    "visits_distribution",
    "rfm",
    "rfm_top",
    "pareto",
    "profitability",
    "profitability_top",
    "performance",
    "persistency",
    "prospecting",
    "prospecting_trend",
    "product_affinity",
    "product_distribution",
    "promotion",
    "opinions",
    "contact_pressure",
    "satisfaction",
    "cross_sell",
];

/// One line on what each analysis answers.
pub fn describe(name: &str) -> Option<&'static str> {
    Some(match name {
        "dataset_summary" => {
            "row counts, first and last transaction, as-of date, sums of amount, cost and quantity"
        }
        "profiling_overview" => "customers by gender, age bucket, region and tier, with shares",
        "visits_distribution" => "customers by number of baskets: 0, 1, 2-3, 4-7, 8-15, 16+",
        "rfm" => "buyers scored on recency, frequency and monetary value, counted per segment",
        "rfm_top" => "the 20 buyers with the highest monetary value, with their scores",
        "pareto" => "revenue share of the top 20% of buyers",
        "profitability" => "revenue, cost, margin and margin rate overall and per tier",
        "profitability_top" => "the 10 customers with the highest margin",
        "performance" => "revenue, quantity and lines by category, sales channel and region",
        "persistency" => "repeat rate, mean interval between baskets, customers at churn risk",
        "prospecting" => "new customers per month over 24 months, with a 3-month forecast",
        "prospecting_trend" => {
            "slope and intercept of the new-customer trend of the last 12 months"
        }
        "product_affinity" => "the 20 product pairs most often bought together, by lift",
        "product_distribution" => "quantity by category, region and month over the last 12 months",
        "promotion" => {
            "per campaign: sent, responded, responders' revenue, cost, return on investment"
        }
        "opinions" => {
            "opinions and consultations by kind, topic and department: resolution rate, median hours"
        }
        "contact_pressure" => "customers contacted by 3 or more departments within one week",
        "satisfaction" => {
            "the most and least satisfied fifth of surveyed customers, and who they are"
        }
        "cross_sell" => {
            "per category: its best partner category and the buyers who never bought it"
        }
        _ => return None,
    })
}

/// The Pareto curve on the scope: the revenue share of the top buyers for
/// each percent of buyers, 0 to 100 (its point at 20 is `pareto`'s share).
pub fn pareto_curve(ctx: &Context<'_>) -> Table {
    sales::pareto_curve(ctx)
}

/// Runs the analysis `name`; `None` for an unknown name.
pub fn run(name: &str, ctx: &Context<'_>) -> Option<Table> {
    Some(match name {
        "dataset_summary" => sales::dataset_summary(ctx),
        "profiling_overview" => base::profiling_overview(ctx),
        "visits_distribution" => sales::visits_distribution(ctx),
        "rfm" => sales::rfm(ctx),
        "rfm_top" => sales::rfm_top(ctx),
        "pareto" => sales::pareto(ctx),
        "profitability" => sales::profitability(ctx),
        "profitability_top" => sales::profitability_top(ctx),
        "performance" => sales::performance(ctx),
        "persistency" => sales::persistency(ctx),
        "prospecting" => base::prospecting(ctx),
        "prospecting_trend" => base::prospecting_trend(ctx),
        "product_affinity" => baskets::product_affinity(ctx),
        "product_distribution" => baskets::product_distribution(ctx),
        "promotion" => service::promotion(ctx),
        "opinions" => service::opinions(ctx),
        "contact_pressure" => service::contact_pressure(ctx),
        "satisfaction" => service::satisfaction(ctx),
        "cross_sell" => baskets::cross_sell(ctx),
        _ => return None,
    })
}

/// Runs several analyses on both cores; results in the order asked.
pub fn run_all(names: &[&str], ctx: &Context<'_>) -> Vec<Option<Table>> {
    // The shared per-customer facts first, so the analyses do not race to build them.
    ctx.activity();
    names.par_iter().map(|name| run(name, ctx)).collect()
}

#[cfg(test)]
mod tests;
