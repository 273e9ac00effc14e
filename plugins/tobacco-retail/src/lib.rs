//! The tobacco retail industry plugin: customers are licensed retail
//! outlets (kiosks, convenience stores, supermarkets, tobacconists) that a
//! wholesaler supplies under a monthly quota of cartons.
//!
//! - validate: the licence number's region code must be the outlet's region;
//! - derive: quota utilisation over the last 3 months, regularity of orders;
//! - score `reorder-risk`: how likely the outlet is to stop reordering
//!   (overdue orders, falling volume, open complaints, silence);
//! - analysis `sales-by-band`: sales by price band x district x store type.

use std::collections::{BTreeMap, BTreeSet};

use crm_sdk::{
    Analysis, Cell, Column, Context, Customer, Field, Kind, Plugin, Score, Table, Verdict, field,
};

/// Licence region codes: the first two digits of a licence number.
const REGION_CODES: &[(&str, &str)] = &[
    ("Central", "11"),
    ("East", "18"),
    ("North", "25"),
    ("Northeast", "32"),
    ("South", "39"),
    ("Southwest", "46"),
    ("West", "53"),
    ("Northwest", "60"),
];

/// Days of the quota window.
const QUOTA_DAYS: i32 = 92;

#[derive(Default)]
pub struct TobaccoRetail;

/// Cartons bought in the last 3 months over three monthly quotas.
pub fn quota_utilisation(customer: &Customer, ctx: &Context) -> Option<f64> {
    let quota = customer.attr_i64("monthly_quota").filter(|&q| q > 0)?;
    let cartons: u64 = customer
        .lines()
        .iter()
        .filter(|l| l.day >= ctx.as_of - QUOTA_DAYS)
        .map(|l| l.quantity as u64)
        .sum();
    Some(cartons as f64 / (3 * quota) as f64)
}

/// Cartons a month over the last 3 months, and over the 9 months before
/// (the rest of the year of lines).
pub fn monthly_cartons(customer: &Customer, ctx: &Context) -> (f64, f64) {
    let (mut recent, mut before) = (0u64, 0u64);
    for line in customer.lines() {
        if line.day >= ctx.as_of - QUOTA_DAYS {
            recent += line.quantity as u64;
        } else if line.day >= ctx.as_of - 365 {
            before += line.quantity as u64;
        }
    }
    (recent as f64 / 3.0, before as f64 / 9.0)
}

/// Days between consecutive order days of the year of lines.
fn gaps(customer: &Customer) -> Vec<f64> {
    let days: BTreeSet<i32> = customer.lines().iter().map(|l| l.day).collect();
    let days: Vec<i32> = days.into_iter().collect();
    days.windows(2).map(|w| (w[1] - w[0]) as f64).collect()
}

/// 1 minus the coefficient of variation of the gaps between orders; at
/// least three gaps are needed.
pub fn order_regularity(customer: &Customer) -> Option<f64> {
    let gaps = gaps(customer);
    if gaps.len() < 3 {
        return None;
    }
    let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
    let variance = gaps.iter().map(|g| (g - mean) * (g - mean)).sum::<f64>() / gaps.len() as f64;
    Some(1.0 - variance.sqrt() / mean)
}

fn round(x: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (x * scale).round() / scale
}

/// The reorder-risk model: overdue orders, falling volume, open
/// complaints and the CRM's churn flag, each a weighted reason.
pub fn reorder_risk(customer: &Customer, ctx: &Context) -> Score {
    let m = customer.metrics();
    let Some(recency) = m.recency_days else {
        return Score::new(1.0, "no-orders").reason("orders", 1.0, "the outlet has never ordered");
    };
    let mut reasons: Vec<(&str, f64, String)> = Vec::new();
    let cycle = m.avg_interbasket_days.unwrap_or(90.0).max(7.0);
    let overdue = recency as f64 / cycle;
    if overdue > 1.0 {
        let weight = 0.5 * ((overdue - 1.0) / 2.0).min(1.0);
        reasons.push((
            "overdue",
            weight,
            format!("{recency} days since the last order, usually every {cycle:.0} days"),
        ));
    }
    let (recent, before) = monthly_cartons(customer, ctx);
    if before > 0.0 && recent < 0.5 * before {
        reasons.push((
            "volume",
            0.3 * (1.0 - recent / (0.5 * before)),
            format!(
                "{recent:.0} cartons a month in the last 3 months, {before:.0} in the 9 before"
            ),
        ));
    }
    if m.open_opinions > 0 {
        let weight = 0.1 * (m.open_opinions.min(2) as f64);
        reasons.push((
            "complaints",
            weight,
            format!("{} open complaint(s)", m.open_opinions),
        ));
    }
    let mut value: f64 = reasons.iter().map(|r| r.1).sum();
    if m.churn_risk {
        reasons.push((
            "silent",
            (0.6 - value).max(0.0),
            "silent for over twice its usual interval".into(),
        ));
        value = value.max(0.6);
    }
    let value = round(value.min(1.0), 4);
    let band = if value >= 0.6 {
        "high"
    } else if value >= 0.3 {
        "medium"
    } else {
        "low"
    };
    reasons.sort_by(|a, b| b.1.total_cmp(&a.1));
    reasons
        .into_iter()
        .fold(Score::new(value, band), |s, (feature, weight, detail)| {
            s.reason(feature, round(weight, 4), detail)
        })
}

impl Plugin for TobaccoRetail {
    fn validate(&self, customer: &Customer, _ctx: &Context) -> Result<Verdict, String> {
        let mut verdict = Verdict::default();
        let region = &customer.core().region;
        if let (Some(licence), Some((_, code))) = (
            customer.attr_str("license_no"),
            REGION_CODES.iter().find(|(r, _)| r == region),
        ) && licence.len() == 12
            && !licence.starts_with(code)
        {
            let issued = REGION_CODES
                .iter()
                .find(|(_, c)| licence.starts_with(c))
                .map_or("no known region", |(r, _)| r);
            verdict = verdict.issue(
                "license_no",
                format!("{licence} was issued in {issued} ({}), but the outlet is in {region} (code {code})", &licence[..2]),
            );
        }
        Ok(verdict)
    }

    fn derive(&self, customer: &Customer, ctx: &Context) -> Result<Vec<Field>, String> {
        let mut fields = Vec::new();
        if let Some(used) = quota_utilisation(customer, ctx) {
            fields.push(field("quota_utilisation", round(used, 4)));
        }
        if let Some(regularity) = order_regularity(customer) {
            fields.push(field("order_regularity", round(regularity, 4)));
        }
        Ok(fields)
    }

    fn score(&self, model: &str, customer: &Customer, ctx: &Context) -> Result<Score, String> {
        match model {
            "reorder-risk" => Ok(reorder_risk(customer, ctx)),
            other => Err(format!("no model {other}")),
        }
    }

    fn analysis(
        &self,
        name: &str,
        _params: &serde_json::Value,
    ) -> Result<Box<dyn Analysis>, String> {
        match name {
            "sales-by-band" => Ok(Box::new(SalesByBand::default())),
            other => Err(format!("no analysis {other}")),
        }
    }
}

/// Sales of the year of lines by price band x business district x store type.
#[derive(Default)]
struct SalesByBand {
    /// (price band, business district, store type) -> totals.
    cells: BTreeMap<(String, String, String), BandTotals>,
}

#[derive(Default)]
struct BandTotals {
    outlets: BTreeSet<String>,
    cartons: i64,
    revenue: i64,
}

impl Analysis for SalesByBand {
    fn feed(&mut self, customer: &Customer, ctx: &Context) -> Result<(), String> {
        let district = customer
            .attr_str("business_district")
            .unwrap_or("unknown")
            .to_owned();
        let store = customer
            .attr_str("store_type")
            .unwrap_or("unknown")
            .to_owned();
        for line in customer.lines() {
            let band = ctx
                .product_attr(line, "price_band")
                .and_then(|v| v.as_str())
                .unwrap_or("unknown");
            let cell = self
                .cells
                .entry((band.to_owned(), district.clone(), store.clone()))
                .or_default();
            cell.outlets.insert(customer.id().to_owned());
            cell.cartons += line.quantity as i64;
            cell.revenue += line.amount;
        }
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<Table, String> {
        Ok(Table {
            columns: vec![
                Column::new("price_band", Kind::Text),
                Column::new("business_district", Kind::Text),
                Column::new("store_type", Kind::Text),
                Column::new("outlets", Kind::Integer),
                Column::new("cartons", Kind::Integer),
                Column::new("revenue", Kind::Money),
            ],
            rows: self
                .cells
                .into_iter()
                .map(|((band, district, store), totals)| {
                    vec![
                        Cell::Text(band),
                        Cell::Text(district),
                        Cell::Text(store),
                        Cell::Integer(totals.outlets.len() as i64),
                        Cell::Integer(totals.cartons),
                        Cell::Money(totals.revenue),
                    ]
                })
                .collect(),
        })
    }
}

crm_sdk::export_plugin!(TobaccoRetail);

#[cfg(test)]
mod tests {
    use super::*;
    use crm_sdk::wire;

    const AS_OF: i32 = 20_000;

    fn outlet<'a>(
        region: &'a str,
        attributes: &'a str,
        lines: &[(i32, u32)],
    ) -> wire::Customer<'a> {
        wire::Customer {
            id: "C1".into(),
            region: region.into(),
            attributes: attributes.into(),
            lines: lines
                .iter()
                .map(|&(ago, quantity)| wire::Line {
                    day: AS_OF - ago,
                    quantity,
                    amount: 1000 * quantity as i64,
                    ..wire::Line::default()
                })
                .collect(),
            ..wire::Customer::default()
        }
    }

    fn with<R>(c: &wire::Customer, f: impl FnOnce(&Customer, &Context) -> R) -> R {
        let config = serde_json::Value::Null;
        f(&Customer::new(c), &Context::new(AS_OF, &[], &config))
    }

    #[test]
    fn quota_utilisation_counts_the_last_three_months() {
        let c = outlet(
            "North",
            r#"{"monthly_quota":10}"#,
            &[(200, 50), (92, 4), (10, 2)],
        );
        with(&c, |c, ctx| {
            assert_eq!(quota_utilisation(c, ctx), Some(0.2))
        });
        let no_quota = outlet("North", r#"{"monthly_quota":0}"#, &[(10, 2)]);
        with(&no_quota, |c, ctx| {
            assert_eq!(quota_utilisation(c, ctx), None)
        });
    }

    #[test]
    fn order_regularity_needs_three_gaps() {
        let clockwork = outlet("North", "{}", &[(28, 1), (21, 1), (14, 1), (7, 1), (7, 3)]);
        with(&clockwork, |c, _| {
            assert_eq!(order_regularity(c), Some(1.0))
        });
        let uneven = outlet("North", "{}", &[(40, 1), (30, 1), (10, 1), (0, 1)]);
        // Gaps 10, 20, 10: mean 13.33, deviation 4.71.
        with(&uneven, |c, _| {
            let r = order_regularity(c).unwrap();
            assert!((r - (1.0 - 4.714_045 / 13.333_333)).abs() < 1e-6, "{r}");
        });
        let short = outlet("North", "{}", &[(20, 1), (10, 1), (0, 1)]);
        with(&short, |c, _| assert_eq!(order_regularity(c), None));
    }

    #[test]
    fn a_licence_from_another_region_is_rejected() {
        let plugin = TobaccoRetail;
        let wrong = outlet("Central", r#"{"license_no":"250214704823"}"#, &[]);
        with(&wrong, |c, ctx| {
            let verdict = plugin.validate(c, ctx).unwrap();
            assert_eq!(verdict.issues.len(), 1);
            assert_eq!(verdict.issues[0].field, "license_no");
            assert!(
                verdict.issues[0].message.contains("issued in North (25)"),
                "{}",
                verdict.issues[0].message
            );
        });
        let right = outlet("North", r#"{"license_no":"250214704823"}"#, &[]);
        with(&right, |c, ctx| {
            assert!(plugin.validate(c, ctx).unwrap().issues.is_empty())
        });
    }

    #[test]
    fn reorder_risk_weighs_overdue_orders_and_falling_volume() {
        let never = outlet("North", "{}", &[]);
        with(&never, |c, ctx| {
            let s = reorder_risk(c, ctx);
            assert_eq!((s.value, s.band.as_str()), (1.0, "no-orders"));
        });

        let mut c = outlet("North", "{}", &[(300, 90), (200, 90), (60, 9)]);
        c.metrics.recency_days = Some(60);
        c.metrics.avg_interbasket_days = Some(20.0);
        with(&c, |c, ctx| {
            let s = reorder_risk(c, ctx);
            // Overdue: 60 / 20 = 3 cycles, the full 0.5. Volume: 3 a month
            // against 20 before, 0.3 * (1 - 3 / 10).
            assert_eq!(s.reasons[0].feature, "overdue");
            assert_eq!(s.reasons[0].weight, 0.5);
            assert_eq!(s.reasons[1].feature, "volume");
            assert_eq!(s.reasons[1].weight, 0.21);
            assert_eq!((s.value, s.band.as_str()), (0.71, "high"));
        });
    }
}
