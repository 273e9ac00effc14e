//! The bank cross-selling plugin: customers are persons with accounts,
//! cards, loans, insurance and funds; transaction lines are the bank's
//! revenue per product.
//!
//! - score `loan-propensity`: customers who hold deposits or cards but no
//!   loan, weighted by credit score, rising activity, income and work;
//! - score `next-best-product`: the product to offer next (the band), with
//!   the confidence as value;
//! - analysis `cross-sell-opportunity`: by risk level and employment, how
//!   many customers could take a loan, and how likely they are to.

use std::collections::{BTreeMap, BTreeSet};

use crm_sdk::{Analysis, Cell, Column, Context, Customer, Kind, Plugin, Score, Table};

#[derive(Default)]
pub struct BankCrossSell;

/// Half a year, in days: activity is compared between the last two.
const HALF_YEAR: i32 = 182;

/// The product types and categories a customer held in the year of lines.
pub struct Holdings {
    pub types: BTreeSet<String>,
    pub categories: BTreeSet<String>,
    /// Revenue of the last half year and of the half year before, in cents.
    pub recent: i64,
    pub earlier: i64,
}

pub fn holdings(customer: &Customer, ctx: &Context) -> Holdings {
    let mut h = Holdings {
        types: BTreeSet::new(),
        categories: BTreeSet::new(),
        recent: 0,
        earlier: 0,
    };
    for line in customer.lines() {
        if let Some(t) = ctx
            .product_attr(line, "product_type")
            .and_then(|v| v.as_str())
        {
            h.types.insert(t.to_owned());
        }
        if let Some(p) = ctx.product(line) {
            h.categories.insert(p.category.to_string());
        }
        if line.day >= ctx.as_of - HALF_YEAR {
            h.recent += line.amount;
        } else if line.day >= ctx.as_of - 2 * HALF_YEAR {
            h.earlier += line.amount;
        }
    }
    h
}

fn round(x: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (x * scale).round() / scale
}

/// Whether a customer holds a loan: a loan product in the year, or a mortgage.
pub fn has_loan(customer: &Customer, h: &Holdings) -> bool {
    h.types.contains("loan") || customer.attr_bool("has_mortgage") == Some(true)
}

/// The loan-propensity model.
pub fn loan_propensity(customer: &Customer, ctx: &Context) -> Score {
    let h = holdings(customer, ctx);
    if has_loan(customer, &h) {
        return Score::new(0.0, "has-loan").reason(
            "loan",
            0.0,
            "already holds a loan or a mortgage",
        );
    }
    if !h.types.contains("deposit") && !h.types.contains("card") {
        return Score::new(0.0, "not-a-client").reason(
            "products",
            0.0,
            "holds no deposit or card this year",
        );
    }
    let credit = customer.attr_i64("credit_score").unwrap_or(300);
    let credit_part = 0.4 * ((credit - 600) as f64 / 250.0).clamp(0.0, 1.0);
    let growth = if h.earlier > 0 {
        (h.recent - h.earlier) as f64 / h.earlier as f64
    } else if h.recent > 0 {
        1.0
    } else {
        0.0
    };
    let activity_part = 0.3 * (0.5 + growth / 2.0).clamp(0.0, 1.0);
    let income = customer.attr_f64("annual_income").unwrap_or(0.0);
    let income_part = 0.2 * (income / 100_000.0).clamp(0.0, 1.0);
    let work_part = match customer.attr_str("employment") {
        Some("salaried") => 0.1,
        Some("self_employed") => 0.07,
        Some("retired") => 0.03,
        _ => 0.0,
    };
    let value = round(credit_part + activity_part + income_part + work_part, 4);
    let band = if value >= 0.65 {
        "high"
    } else if value >= 0.4 {
        "medium"
    } else {
        "low"
    };
    let mut reasons = vec![
        (
            "credit_score",
            credit_part,
            format!("credit score {credit}"),
        ),
        (
            "activity",
            activity_part,
            format!(
                "revenue {:+.0}% against the half year before",
                growth * 100.0
            ),
        ),
        ("income", income_part, format!("annual income {income:.0}")),
        (
            "employment",
            work_part,
            customer
                .attr_str("employment")
                .unwrap_or("unknown")
                .to_owned(),
        ),
    ];
    reasons.sort_by(|a, b| b.1.total_cmp(&a.1));
    reasons
        .into_iter()
        .fold(Score::new(value, band), |s, (f, w, d)| {
            s.reason(f, round(w, 4), d)
        })
}

/// The product to offer next: a loan to a likely borrower, else the first
/// everyday product the customer lacks.
pub fn next_best_product(customer: &Customer, ctx: &Context) -> Score {
    let propensity = loan_propensity(customer, ctx);
    let h = holdings(customer, ctx);
    let income = customer.attr_f64("annual_income").unwrap_or(0.0);
    let (product, confidence, why) = if propensity.value >= 0.5 {
        if income >= 60_000.0 && customer.attr_bool("has_mortgage") != Some(true) {
            (
                "mortgage",
                propensity.value,
                "likely borrower with the income for a mortgage".to_owned(),
            )
        } else {
            (
                "personal_loan",
                propensity.value,
                "likely borrower".to_owned(),
            )
        }
    } else if !h.categories.contains("credit_card")
        && customer.attr_i64("credit_score").unwrap_or(0) >= 620
    {
        (
            "credit_card",
            0.5,
            "no credit card and a fair credit score".to_owned(),
        )
    } else if !h.categories.contains("savings_account") {
        ("savings_account", 0.4, "no savings account".to_owned())
    } else if !h.types.contains("insurance") {
        ("home_insurance", 0.3, "no insurance".to_owned())
    } else {
        ("equity_fund", 0.2, "holds the everyday products".to_owned())
    };
    Score::new(confidence, product).reason("rule", confidence, why)
}

impl Plugin for BankCrossSell {
    fn score(&self, model: &str, customer: &Customer, ctx: &Context) -> Result<Score, String> {
        match model {
            "loan-propensity" => Ok(loan_propensity(customer, ctx)),
            "next-best-product" => Ok(next_best_product(customer, ctx)),
            other => Err(format!("no model {other}")),
        }
    }

    fn analysis(
        &self,
        name: &str,
        _params: &serde_json::Value,
    ) -> Result<Box<dyn Analysis>, String> {
        match name {
            "cross-sell-opportunity" => Ok(Box::new(Opportunity::default())),
            other => Err(format!("no analysis {other}")),
        }
    }
}

/// Per risk level and employment: customers, those who could take a loan
/// (deposit or card, no loan), the likely ones, and the mean propensity.
#[derive(Default)]
struct Opportunity {
    cells: BTreeMap<(String, String), (i64, i64, i64, f64)>,
}

impl Analysis for Opportunity {
    fn feed(&mut self, customer: &Customer, ctx: &Context) -> Result<(), String> {
        let key = (
            customer
                .attr_str("risk_level")
                .unwrap_or("unknown")
                .to_owned(),
            customer
                .attr_str("employment")
                .unwrap_or("unknown")
                .to_owned(),
        );
        let score = loan_propensity(customer, ctx);
        let cell = self.cells.entry(key).or_default();
        cell.0 += 1;
        if !matches!(score.band.as_str(), "has-loan" | "not-a-client") {
            cell.1 += 1;
            cell.3 += score.value;
            if score.band == "high" {
                cell.2 += 1;
            }
        }
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<Table, String> {
        Ok(Table {
            columns: vec![
                Column::new("risk_level", Kind::Text),
                Column::new("employment", Kind::Text),
                Column::new("customers", Kind::Integer),
                Column::new("eligible", Kind::Integer),
                Column::new("likely", Kind::Integer),
                Column::new("mean_propensity", Kind::Number),
            ],
            rows: self
                .cells
                .into_iter()
                .map(|((risk, work), (n, eligible, likely, sum))| {
                    let mean = if eligible > 0 {
                        Cell::Number(round(sum / eligible as f64, 4))
                    } else {
                        Cell::Null
                    };
                    vec![
                        Cell::Text(risk),
                        Cell::Text(work),
                        Cell::Integer(n),
                        Cell::Integer(eligible),
                        Cell::Integer(likely),
                        mean,
                    ]
                })
                .collect(),
        })
    }
}

crm_sdk::export_plugin!(BankCrossSell);

#[cfg(test)]
mod tests {
    use super::*;
    use crm_sdk::wire;

    const AS_OF: i32 = 20_000;

    fn products() -> Vec<wire::Product<'static>> {
        let product = |category: &'static str, kind: &str| wire::Product {
            category: category.into(),
            attributes: format!(r#"{{"product_type":"{kind}"}}"#).into(),
            ..wire::Product::default()
        };
        vec![
            product("checking_account", "deposit"),
            product("credit_card", "card"),
            product("personal_loan", "loan"),
        ]
    }

    /// A customer with lines (days ago, product, cents).
    fn person<'a>(attributes: &'a str, lines: &[(i32, u32, i64)]) -> wire::Customer<'a> {
        wire::Customer {
            id: "C1".into(),
            attributes: attributes.into(),
            lines: lines
                .iter()
                .map(|&(ago, product, amount)| wire::Line {
                    day: AS_OF - ago,
                    product,
                    quantity: 1,
                    amount,
                    ..wire::Line::default()
                })
                .collect(),
            ..wire::Customer::default()
        }
    }

    fn score(model: &str, c: &wire::Customer) -> Score {
        let (products, config) = (products(), serde_json::Value::Null);
        let ctx = Context::new(AS_OF, &products, &config);
        BankCrossSell.score(model, &Customer::new(c), &ctx).unwrap()
    }

    #[test]
    fn borrowers_and_strangers_are_not_loan_prospects() {
        let borrower = person(r#"{"credit_score":800}"#, &[(10, 0, 100), (20, 2, 500)]);
        assert_eq!(score("loan-propensity", &borrower).band, "has-loan");
        let mortgaged = person(r#"{"has_mortgage":true}"#, &[(10, 0, 100)]);
        assert_eq!(score("loan-propensity", &mortgaged).band, "has-loan");
        let stranger = person("{}", &[]);
        assert_eq!(score("loan-propensity", &stranger).band, "not-a-client");
    }

    #[test]
    fn loan_propensity_adds_its_weighted_parts() {
        // Credit 725: 0.4 * 0.5. Revenue 300 against 200: +50%, 0.3 * 0.75.
        // Income 50,000: 0.2 * 0.5. Salaried: 0.1.
        let c = person(
            r#"{"credit_score":725,"annual_income":50000,"employment":"salaried"}"#,
            &[(300, 0, 200), (100, 1, 300)],
        );
        let s = score("loan-propensity", &c);
        assert_eq!(s.value, 0.625);
        assert_eq!(s.band, "medium");
        let features: Vec<&str> = s.reasons.iter().map(|r| r.feature.as_str()).collect();
        assert_eq!(
            features,
            ["activity", "credit_score", "income", "employment"]
        );
    }

    #[test]
    fn next_best_product_follows_the_ladder() {
        let likely = person(
            r#"{"credit_score":850,"annual_income":90000,"employment":"salaried"}"#,
            &[(300, 0, 200), (100, 0, 400)],
        );
        assert_eq!(score("next-best-product", &likely).band, "mortgage");
        let fair = person(r#"{"credit_score":640}"#, &[(300, 0, 200)]);
        assert_eq!(score("next-best-product", &fair).band, "credit_card");
        let poor = person(r#"{"credit_score":500}"#, &[(30, 1, 200)]);
        assert_eq!(score("next-best-product", &poor).band, "savings_account");
    }
}
