//! Segments through `crm segment` on generated data with the industry
//! plugins installed: membership is computed again here from the CSV files
//! (and the plugins' own scores), errors carry their place, and analyses
//! run on a segment.

use std::collections::{BTreeMap, BTreeSet};

use generate::Industry;
use model::{Date, Timestamp};
use serde_json::Value;

use crate::industry::{cents, read_csv};
use crate::support::crm;
use crate::support::fixture::Fixture;

/// Per customer: revenue and margin in cents, lines, days with a purchase
/// (sorted); and the day after the last purchase of all.
struct Activity {
    revenue: i64,
    margin: i64,
    days: Vec<i32>,
}

fn activity(f: &Fixture) -> (BTreeMap<String, Activity>, i32) {
    let mut by: BTreeMap<String, Activity> = BTreeMap::new();
    let mut last = i32::MIN;
    for r in read_csv(&f.data.join("transactions.csv")) {
        let day = Timestamp::parse(&r["ts"]).unwrap().date().days();
        last = last.max(day);
        let a = by.entry(r["customer_id"].clone()).or_insert(Activity {
            revenue: 0,
            margin: 0,
            days: Vec::new(),
        });
        a.revenue += cents(&r["amount"]);
        a.margin += cents(&r["amount"]) - cents(&r["cost"]);
        a.days.push(day);
    }
    for a in by.values_mut() {
        a.days.sort_unstable();
        a.days.dedup();
    }
    (by, last + 1)
}

/// Customer id -> attributes, from customers.csv.
fn attributes(f: &Fixture) -> BTreeMap<String, Value> {
    read_csv(&f.data.join("customers.csv"))
        .into_iter()
        .map(|r| {
            (
                r["customer_id"].clone(),
                serde_json::from_str(&r["attributes"]).unwrap(),
            )
        })
        .collect()
}

fn fails(f: &Fixture, args: &[&str]) -> String {
    let (command, rest) = args.split_first().unwrap();
    let mut full = vec![*command, rest[0], "--db", f.db.to_str().unwrap()];
    full.extend(&rest[1..]);
    let out = crm(&full);
    assert!(!out.status.success(), "crm {} succeeded", full.join(" "));
    String::from_utf8(out.stderr).unwrap()
}

fn segment(f: &Fixture, args: &[&str]) -> String {
    let mut full = vec!["segment", args[0], "--db", f.db.to_str().unwrap()];
    full.extend(&args[1..]);
    let out = crm(&full);
    assert!(
        out.status.success(),
        "crm {}: {}",
        full.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn ids(text: &str) -> Vec<String> {
    text.lines().map(str::to_owned).collect()
}

#[test]
fn segments_are_created_tested_explained_and_analysed_from_the_command_line() {
    let f = Fixture::new(Industry::Retail, 800, 31, "tobacco-retail");
    let (activity, as_of) = activity(&f);
    let attrs = attributes(&f);
    // The plugin's segments came with it.
    let list = segment(&f, &["list"]);
    for shipped in [
        "school-kiosks-at-risk",
        "big-quota-reorder-risk",
        "steady-high-margin",
    ] {
        assert!(list.contains(shipped), "{list}");
    }

    let script = r#"c.margin > 200.0 && c.recency_days < 90 && c.store_type == "kiosk""#;
    let expected: Vec<String> = attrs
        .iter()
        .filter(|(id, a)| {
            activity
                .get(*id)
                .is_some_and(|x| x.margin > 20_000 && as_of - x.days.last().unwrap() < 90)
                && a["store_type"] == "kiosk"
        })
        .map(|(id, _)| id.clone())
        .collect();
    assert!(
        expected.len() > 5 && expected.len() < 400,
        "{}",
        expected.len()
    );

    // test: a count and a sample, nothing saved.
    let out = segment(&f, &["test", "--expr", script, "--sample", "3"]);
    assert!(
        out.starts_with(&format!("{} of 800 customers", expected.len())),
        "{out}"
    );
    assert_eq!(out.lines().count(), 4, "{out}");
    assert!(!segment(&f, &["list"]).contains("kiosks-margin"));

    let out = segment(
        &f,
        &[
            "create",
            "kiosks-margin",
            "--expr",
            script,
            "--description",
            "profitable active kiosks",
        ],
    );
    assert!(
        out.contains(&format!("revision 1: {} of 800 customers", expected.len())),
        "{out}"
    );
    assert_eq!(ids(&segment(&f, &["members", "kiosks-margin"])), expected);
    let csv = segment(&f, &["members", "kiosks-margin", "--format", "csv"]);
    assert!(
        csv.starts_with("customer_id,name,region,tier,margin,recency_days,store_type\n"),
        "{csv}"
    );
    assert_eq!(csv.lines().count(), expected.len() + 1);

    // Explain a member and a customer who is not one.
    let member = &expected[0];
    let out = segment(&f, &["explain", "kiosks-margin", member]);
    assert!(
        out.starts_with(&format!("{member} is in segment kiosks-margin")),
        "{out}"
    );
    assert!(
        out.contains("yes   c.store_type == \"kiosk\"   [store_type=\"kiosk\"]"),
        "{out}"
    );
    let outsider = attrs
        .iter()
        .find(|(_, a)| a["store_type"] != "kiosk")
        .unwrap()
        .0;
    let out = segment(
        &f,
        &["explain", "kiosks-margin", outsider, "--format", "json"],
    );
    let x: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(x["matched"], false);
    assert_eq!(x["parts"][3]["held"], false, "{x}");

    // Mistakes are refused with their place, and nothing is saved.
    let err = fails(
        &f,
        &[
            "segment",
            "create",
            "typo",
            "--expr",
            "c.margin > 5.0 &&\n c.recncy_days < 3",
        ],
    );
    assert!(
        err.contains("line 2, column 4: unknown field 'recncy_days'; did you mean c.recency_days?"),
        "{err}"
    );
    let err = fails(
        &f,
        &["segment", "create", "typo", "--expr", "c.store_type == 3"],
    );
    assert!(
        err.contains("line 1, column 17: c.store_type is text"),
        "{err}"
    );
    let err = fails(
        &f,
        &[
            "segment",
            "create",
            "typo",
            "--expr",
            "fn matches(c) { let n = 0; for i in 0..1_000_000_000 { n += 1; } n > 0 }",
        ],
    );
    assert!(err.contains("more operations"), "{err}");
    let err = fails(&f, &["segment", "create", "Bad Name", "--expr", "true"]);
    assert!(err.contains("is not a segment name"), "{err}");
    assert!(!segment(&f, &["list"]).contains("typo"));

    // New revisions, and a stale one refused.
    let err = fails(
        &f,
        &["segment", "create", "kiosks-margin", "--expr", "true"],
    );
    assert!(err.contains("exists already"), "{err}");
    let out = segment(
        &f,
        &[
            "create",
            "kiosks-margin",
            "--replace",
            "--revision",
            "1",
            "--expr",
            "c.margin > params.min && c.store_type == \"kiosk\"",
            "--param",
            "min=200.0",
        ],
    );
    assert!(out.contains("revision 2"), "{out}");
    let err = fails(
        &f,
        &[
            "segment",
            "create",
            "kiosks-margin",
            "--replace",
            "--revision",
            "1",
            "--expr",
            "true",
        ],
    );
    assert!(err.contains("at revision 2, not 1"), "{err}");
    let history = segment(&f, &["show", "kiosks-margin", "--history"]);
    assert!(
        history.contains("revision 1") && history.contains("revision 2"),
        "{history}"
    );
    assert!(history.contains("params: {\"min\":200.0}"), "{history}");

    // Any analysis runs on a segment: the same as on its members' ids.
    let members = segment(&f, &["members", "kiosks-margin"]);
    let file = f.db.parent().unwrap().join("members.txt");
    std::fs::write(&file, &members).unwrap();
    for name in ["profitability", "rfm", "performance"] {
        let on_segment = segment_analysis(&f, &[name, "--segment", "kiosks-margin"]);
        let on_ids = segment_analysis(&f, &[name, "--customers", file.to_str().unwrap()]);
        assert_eq!(on_segment, on_ids, "{name}");
        let all = segment_analysis(&f, &[name]);
        assert_ne!(on_segment, all, "{name}: the segment is a part");
    }

    // Delete: gone from the list, its history kept.
    assert!(segment(&f, &["delete", "kiosks-margin"]).contains("deleted"));
    assert!(!segment(&f, &["list"]).contains("kiosks-margin"));
    let err = fails(&f, &["segment", "members", "kiosks-margin"]);
    assert!(err.contains("no segment 'kiosks-margin'"), "{err}");
    assert!(segment(&f, &["show", "kiosks-margin", "--history"]).contains("(deleted)"));
}

fn segment_analysis(f: &Fixture, args: &[&str]) -> Value {
    let mut full = vec!["analyze"];
    full.extend(args);
    full.extend(["--format", "json"]);
    serde_json::from_str(&f.run(&full)).unwrap()
}

/// The score bands a plugin gives, by customer.
fn bands(f: &Fixture, plugin: &str, model: &str) -> BTreeMap<String, (f64, String)> {
    f.rows(&["plugin", "score", plugin, model])
        .into_iter()
        .map(|r| {
            (
                r["customer_id"].as_str().unwrap().to_owned(),
                (
                    r["value"].as_f64().unwrap(),
                    r["band"].as_str().unwrap().to_owned(),
                ),
            )
        })
        .collect()
}

#[test]
fn the_tobacco_segments_hold_who_they_describe() {
    let f = Fixture::new(Industry::Retail, 1500, 5, "tobacco-retail");
    let (activity, as_of) = activity(&f);
    let attrs = attributes(&f);
    let reorder = bands(&f, "tobacco-retail", "reorder-risk");
    let members = |name: &str| -> BTreeSet<String> {
        ids(&segment(&f, &["members", name])).into_iter().collect()
    };
    let want: BTreeSet<String> = attrs
        .iter()
        .filter(|(id, a)| reorder[*id].1 == "high" && a["monthly_quota"].as_i64().unwrap() >= 50)
        .map(|(id, _)| id.clone())
        .collect();
    assert!(!want.is_empty());
    assert_eq!(members("big-quota-reorder-risk"), want);
    let want: BTreeSet<String> = activity
        .iter()
        .filter(|(_, a)| {
            let n = a.days.len() as i64;
            if n < 6 {
                return false;
            }
            let cadence = (a.days[a.days.len() - 1] - a.days[0]) as f64 / (n - 1) as f64;
            let recency = (as_of - a.days[a.days.len() - 1]) as f64;
            cadence <= 21.0 && a.margin >= 100_000 && recency <= 2.0 * cadence
        })
        .map(|(id, _)| id.clone())
        .collect();
    assert!(!want.is_empty());
    assert_eq!(members("steady-high-margin"), want);
    // The third reads ranks and churn risk too: its members are kiosks near
    // schools, each at risk by the churn rule or the reorder model.
    let at_risk = members("school-kiosks-at-risk");
    assert!(
        !at_risk.is_empty(),
        "no school kiosk at risk in the data set"
    );
    for id in at_risk {
        assert_eq!(attrs[&id]["store_type"], "kiosk");
        assert_eq!(attrs[&id]["business_district"], "school");
        let a = &activity[&id];
        let recency = (as_of - a.days[a.days.len() - 1]) as i64;
        let span = (a.days[a.days.len() - 1] - a.days[0]) as i64;
        let n = a.days.len() as i64;
        let churn = n >= 2 && recency > 30 && recency * (n - 1) > 2 * span;
        assert!(churn || reorder[&id].1 == "high", "{id}");
    }
}

#[test]
fn the_banking_segments_hold_who_they_describe() {
    let f = Fixture::new(Industry::Banking, 1500, 5, "bank-cross-sell");
    let (_, as_of) = activity(&f);
    let people = read_csv(&f.data.join("customers.csv"));
    let propensity = bands(&f, "bank-cross-sell", "loan-propensity");
    let members = |name: &str| -> BTreeSet<String> {
        ids(&segment(&f, &["members", name])).into_iter().collect()
    };
    let attrs = |r: &std::collections::HashMap<String, String>| -> Value {
        serde_json::from_str(&r["attributes"]).unwrap()
    };
    let age = |r: &std::collections::HashMap<String, String>| -> Option<i32> {
        let birth = Date::parse(&r["birth_date"]).ok()?;
        Some(analysis::age(birth, Date::from_days(as_of)))
    };
    let want: BTreeSet<String> = people
        .iter()
        .filter(|r| {
            let a = attrs(r);
            a["annual_income"].as_f64().unwrap() >= 60_000.0
                && !a["has_mortgage"].as_bool().unwrap()
                && age(r).is_some_and(|y| (30..=55).contains(&y))
        })
        .map(|r| r["customer_id"].clone())
        .collect();
    assert!(!want.is_empty());
    assert_eq!(members("affluent-without-mortgage"), want);
    let want: BTreeSet<String> = people
        .iter()
        .filter(|r| {
            let a = attrs(r);
            let (_, band) = &propensity[&r["customer_id"]];
            a["employment"] == "salaried"
                && a["credit_score"].as_i64().unwrap() >= 700
                && band != "has-loan"
                && band != "not-a-client"
        })
        .map(|r| r["customer_id"].clone())
        .collect();
    assert!(!want.is_empty());
    assert_eq!(members("salaried-good-credit-no-loan"), want);
    let want: BTreeSet<String> = people
        .iter()
        .filter(|r| propensity[&r["customer_id"]].0 >= 0.65 && attrs(r)["risk_level"] != "high")
        .map(|r| r["customer_id"].clone())
        .collect();
    assert!(!want.is_empty(), "no likely borrower in the data set");
    assert_eq!(members("likely-borrowers"), want);
    assert!(segment(&f, &["list"]).contains("valuable-and-slipping"));
}
