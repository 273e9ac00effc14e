//! Property tests: every analysis against its naive definition on random
//! data, and a snapshot kept current by edits against one built afresh.

use proptest::prelude::*;

use super::{Data, campaign, case, customer, interaction, naive, product, promotion, survey, txn};
use crate::table::Value;
use crate::{Context, Scope, Table};

const REGIONS: [&str; 3] = ["North", "South", "Ñorte"];
const TIERS: [&str; 5] = ["bronze", "silver", "gold", "platinum", "vip"];
const CATEGORIES: [&str; 3] = ["cigars", "pipes", "e_cigarettes"];
const KINDS: [&str; 6] = [
    "opinion",
    "consultation",
    "contact",
    "survey",
    "promotion_sent",
    "promotion_response",
];
const DEPARTMENTS: [&str; 6] = [
    "sales",
    "service",
    "marketing",
    "logistics",
    "finance",
    "compliance",
];
const TOPICS: [&str; 3] = ["price", "quality", "billing"];

fn day_text(day: u32) -> String {
    // 24 days spread over 2024-12 .. 2025-12, with leap-year and year ends.
    let days = [
        "2024-12-30",
        "2024-12-31",
        "2025-01-01",
        "2025-01-05",
        "2025-02-28",
        "2025-03-01",
        "2025-03-02",
        "2025-05-10",
        "2025-06-01",
        "2025-06-02",
        "2025-06-08",
        "2025-06-09",
        "2025-07-15",
        "2025-09-01",
        "2025-10-31",
        "2025-11-01",
        "2025-11-29",
        "2025-11-30",
        "2025-12-01",
        "2025-12-07",
        "2025-12-08",
        "2025-12-20",
        "2025-12-30",
        "2025-12-31",
    ];
    days[day as usize % days.len()].to_owned()
}

prop_compose! {
    fn data()(
        customers in prop::collection::vec((0u8..3, prop::option::of(0u32..40), 0usize..3, 0u32..24, 0usize..5), 0..10),
        n_products in 1usize..6,
        n_campaigns in 0usize..3,
        txns in prop::collection::vec((0usize..10, 0u32..24, 0u32..3, 0usize..6, 1u32..4, 0i64..4, 0i64..3), 0..90),
        interactions in prop::collection::vec((0usize..10, 0u32..24, 0u32..4, 0usize..6, 0usize..6, 0usize..3, prop::option::of(1i64..100), 1u8..6, 0usize..3), 0..60),
    ) -> Data {
        let mut data = Data::default();
        for (i, (g, birth, region, joined, tier)) in customers.iter().enumerate() {
            let birth = birth.map(|b| if b == 0 { "1996-02-29".to_owned() } else { format!("19{:02}-0{}-1{}", 50 + b, 1 + b % 9, b % 10) });
            data.customers.push(customer(&format!("C{i}"), ["M", "F", "U"][*g as usize], birth.as_deref(), REGIONS[*region], &day_text(*joined), TIERS[*tier]));
        }
        for p in 0..n_products {
            data.products.push(product(&format!("P{p}"), CATEGORIES[p % 3]));
        }
        for c in 0..n_campaigns {
            data.campaigns.push(campaign(&format!("K{c}"), "sms", &day_text(8 + c as u32 * 5), &day_text(10 + c as u32 * 5), c as i64 * 500));
        }
        let n = data.customers.len();
        if n == 0 {
            return data;
        }
        for (k, (c, day, hour, p, q, amount, cost)) in txns.into_iter().enumerate() {
            let ts = format!("{}T{:02}:00:00Z", day_text(day), 8 + hour * 3);
            data.txns.push(txn(&format!("T{k:03}"), &format!("C{}", c % n), &ts, &format!("P{}", p % n_products), q, amount * 250, cost * 200, ["store", "online"][hour as usize % 2], REGIONS[p % 3]));
        }
        for (k, (c, day, hour, kind, department, topic, resolve, rating, camp)) in interactions.into_iter().enumerate() {
            let id = format!("I{k:03}");
            let customer = format!("C{}", c % n);
            let ts = format!("{}T{:02}:00:00Z", day_text(day), 8 + hour * 2);
            let kind = KINDS[kind];
            let record = match kind {
                "opinion" | "consultation" => {
                    let resolved = resolve.map(|h| model::Timestamp::from_seconds(model::Timestamp::parse(&ts).unwrap().seconds() + h * 1800).to_string());
                    case(&id, &customer, &ts, kind, TOPICS[topic], DEPARTMENTS[department], resolved.as_deref())
                }
                "survey" => survey(&id, &customer, &ts, rating),
                "promotion_sent" | "promotion_response" if n_campaigns > 0 => promotion(&id, &customer, &ts, kind, &format!("K{}", camp % n_campaigns)),
                "promotion_sent" | "promotion_response" => interaction(&id, &customer, &ts, "contact", DEPARTMENTS[department]),
                _ => interaction(&id, &customer, &ts, kind, DEPARTMENTS[department]),
            };
            data.interactions.push(record);
        }
        data
    }
}

/// Tables equal, ratios within one unit of their last decimal.
fn assert_same(name: &str, got: &Table, want: &Table) {
    assert_eq!(got.columns, want.columns, "{name}: columns");
    assert_eq!(
        got.rows.len(),
        want.rows.len(),
        "{name}: rows\n{}\n{}",
        got.to_csv(),
        want.to_csv()
    );
    for (g, w) in got.rows.iter().zip(&want.rows) {
        for (a, b) in g.iter().zip(w) {
            let same = match (a, b) {
                (Value::Float(x), Value::Float(y)) => {
                    (x - y).abs() <= 1e-6 * x.abs().max(1.0) + 1e-9 || (x - y).abs() <= 0.0101
                }
                _ => a == b,
            };
            assert!(
                same,
                "{name}: {a:?} != {b:?}\n{}\n{}",
                got.to_csv(),
                want.to_csv()
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn every_analysis_equals_its_naive_definition(data in data()) {
        let snapshot = data.snapshot();
        let ctx = Context::new(&snapshot, &Scope::default());
        for name in crate::NAMES {
            let got = crate::run(name, &ctx).unwrap();
            assert_same(name, &got, &naive::run(&data, name));
        }
    }

    /// A snapshot of data `a` brought to data `b` by customer and line
    /// edits (as the host applies the store's changes), and then compacted,
    /// answers like a snapshot built from `b`.
    #[test]
    fn edits_give_the_same_answers_as_a_rebuild(a in data(), b in data()) {
        // Products and campaigns of both; b's customers keep a's ids.
        let mut b = b;
        let mut merged: Vec<model::Product> = Vec::new();
        for p in a.products.iter().chain(&b.products) {
            if !merged.iter().any(|m| m.sku == p.sku) {
                merged.push(p.clone());
            }
        }
        b.products = merged;
        let mut campaigns: Vec<model::Campaign> = Vec::new();
        for c in a.campaigns.iter().chain(&b.campaigns) {
            if !campaigns.iter().any(|m| m.campaign_id == c.campaign_id) {
                campaigns.push(c.clone());
            }
        }
        b.campaigns = campaigns;
        // Customers of a that b lacks stay (nothing is deleted), without lines.
        for c in &a.customers {
            if !b.customers.iter().any(|x| x.customer_id == c.customer_id) {
                b.customers.push(c.clone());
            }
        }
        let mut snapshot = a.snapshot();
        for p in &b.products {
            snapshot.upsert_product(p);
        }
        for c in &b.campaigns {
            snapshot.upsert_campaign(c);
        }
        for c in &b.customers {
            snapshot.upsert_customer(c);
        }
        for c in &b.customers {
            let ci = snapshot.customers.find(c.customer_id.as_str()).unwrap();
            let mut txns: Vec<_> = b.txns.iter().filter(|t| t.customer_id == c.customer_id).cloned().collect();
            txns.sort_by(|x, y| (x.ts, &x.txn_id).cmp(&(y.ts, &y.txn_id)));
            snapshot.set_transactions(ci, &txns);
            let mut lines: Vec<_> = b.interactions.iter().filter(|i| i.customer_id == c.customer_id).cloned().collect();
            lines.sort_by(|x, y| (x.ts, &x.interaction_id).cmp(&(y.ts, &y.interaction_id)));
            snapshot.set_interactions(ci, &lines);
        }
        let rebuilt = b.snapshot();
        for step in ["edited", "compacted"] {
            if step == "compacted" {
                snapshot.compact();
            }
            let (x, y) = (Context::new(&snapshot, &Scope::default()), Context::new(&rebuilt, &Scope::default()));
            for name in crate::NAMES {
                assert_same(&format!("{name} ({step})"), &crate::run(name, &x).unwrap(), &crate::run(name, &y).unwrap());
            }
        }
    }
}
