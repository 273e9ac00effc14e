//! The generated data holds what the analyses need to find.

use std::collections::{HashMap, HashSet};

use super::*;

struct Data {
    customers: Vec<csv::StringRecord>,
    transactions: Vec<csv::StringRecord>,
    interactions: Vec<csv::StringRecord>,
    campaigns: Vec<csv::StringRecord>,
}

fn read(dir: &Path, kind: EntityKind) -> Vec<csv::StringRecord> {
    let mut reader = csv::Reader::from_path(dir.join(kind.file_name())).unwrap();
    reader.records().map(Result::unwrap).collect()
}

fn data(industry: Industry) -> Data {
    let dir = tempfile::tempdir().unwrap();
    let summary = generate(
        &Config {
            industry,
            customers: 4000,
            seed: 3,
        },
        dir.path(),
    )
    .unwrap();
    let data = Data {
        customers: read(dir.path(), EntityKind::Customer),
        transactions: read(dir.path(), EntityKind::Transaction),
        interactions: read(dir.path(), EntityKind::Interaction),
        campaigns: read(dir.path(), EntityKind::Campaign),
    };
    assert_eq!(summary.customers, 4000);
    assert_eq!(summary.transactions, data.transactions.len() as u64);
    data
}

#[test]
fn value_is_long_tailed_and_some_customers_never_buy_or_churn() {
    for industry in [Industry::Retail, Industry::Banking] {
        let data = data(industry);
        let mut revenue: HashMap<&str, f64> = HashMap::new();
        let mut last: HashMap<&str, &str> = HashMap::new();
        for t in &data.transactions {
            *revenue.entry(&t[1]).or_default() += t[5].parse::<f64>().unwrap();
            last.insert(&t[1], &t[2]);
        }
        let never = data.customers.len() - revenue.len();
        let share = never as f64 / data.customers.len() as f64;
        assert!(
            (0.03..0.12).contains(&share),
            "{industry:?}: {share} never buy"
        );

        let mut values: Vec<f64> = revenue.values().copied().collect();
        values.sort_by(|a, b| b.total_cmp(a));
        let top =
            values[..values.len().div_ceil(5)].iter().sum::<f64>() / values.iter().sum::<f64>();
        assert!(
            top > 0.55,
            "{industry:?}: the top 20% hold only {top:.2} of revenue"
        );

        let churned =
            last.values().filter(|ts| **ts < "2025-08-01").count() as f64 / last.len() as f64;
        assert!(
            (0.3..0.6).contains(&churned),
            "{industry:?}: {churned:.2} stopped buying early"
        );

        let per_customer = data.transactions.len() as f64 / data.customers.len() as f64;
        assert!(
            (5.0..20.0).contains(&per_customer),
            "{industry:?}: {per_customer} lines per customer"
        );
    }
}

#[test]
fn campaigns_reach_customers_and_some_respond() {
    let data = data(Industry::Retail);
    assert_eq!(data.campaigns.len(), 36);
    let mut sent: HashMap<&str, usize> = HashMap::new();
    let mut responded: HashSet<&str> = HashSet::new();
    for i in &data.interactions {
        match &i[3] {
            "promotion_sent" => *sent.entry(&i[11]).or_default() += 1,
            "promotion_response" => {
                responded.insert(&i[11]);
            }
            _ => {}
        }
    }
    assert_eq!(sent.len(), 36, "every campaign reaches someone");
    assert!(
        responded.len() >= 30,
        "only {} campaigns had responses",
        responded.len()
    );
}

#[test]
fn cases_surveys_and_crowded_weeks_are_there() {
    let data = data(Industry::Banking);
    let count = |kind: &str| data.interactions.iter().filter(|i| &i[3] == kind).count();
    for kind in ["opinion", "consultation", "contact", "survey"] {
        assert!(count(kind) > 100, "{kind}: {}", count(kind));
    }
    let open = data
        .interactions
        .iter()
        .filter(|i| &i[3] == "opinion" && i[9].is_empty())
        .count();
    assert!(
        open > 0 && open < count("opinion") / 2,
        "{open} opinions are unresolved"
    );
    let ratings: HashSet<&str> = data
        .interactions
        .iter()
        .filter(|i| &i[3] == "survey")
        .map(|i| &i[10])
        .collect();
    assert_eq!(
        ratings.len(),
        5,
        "every rating from 1 to 5 occurs: {ratings:?}"
    );
}

#[test]
fn names_hold_commas_quotes_and_other_scripts() {
    let data = data(Industry::Retail);
    let names: Vec<&str> = data.customers.iter().map(|c| &c[1]).collect();
    assert!(names.iter().any(|n| n.contains(',')));
    assert!(names.iter().any(|n| n.contains('"')));
    assert!(names.iter().any(|n| n.contains('\'')));
    assert!(names.iter().any(|n| n.contains('ñ') || n.contains('í')));
    assert!(
        names
            .iter()
            .any(|n| n.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c)))
    );
}
