//! The two industry plugins of `plugins/`, built for wasm32-wasip2 and
//! driven through `crm plugin`, on data sets from `crm generate`: every
//! figure is computed again here from the CSV files.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use generate::Industry;
use model::Timestamp;
use serde_json::Value;

use crate::support::fixture::Fixture;
use crate::support::{crm, dataset, plugin_package};

struct Txn {
    customer: String,
    day: i32,
    sku: String,
    quantity: u32,
    cents: i64,
}

pub(crate) fn read_csv(path: &Path) -> Vec<HashMap<String, String>> {
    let mut reader = csv::Reader::from_path(path).unwrap();
    let headers = reader.headers().unwrap().clone();
    reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            headers
                .iter()
                .zip(r.iter())
                .map(|(h, v)| (h.to_owned(), v.to_owned()))
                .collect()
        })
        .collect()
}

pub(crate) fn cents(text: &str) -> i64 {
    (text.parse::<f64>().unwrap() * 100.0).round() as i64
}

/// The transactions, and the day after the last one (the data's "as of").
fn transactions(data: &Path) -> (Vec<Txn>, i32) {
    let txns: Vec<Txn> = read_csv(&data.join("transactions.csv"))
        .into_iter()
        .map(|r| Txn {
            customer: r["customer_id"].clone(),
            day: Timestamp::parse(&r["ts"]).unwrap().date().days(),
            sku: r["sku"].clone(),
            quantity: r["quantity"].parse().unwrap(),
            cents: cents(&r["amount"]),
        })
        .collect();
    let as_of = txns.iter().map(|t| t.day).max().unwrap() + 1;
    (txns, as_of)
}

/// Customer id -> (region, attributes).
fn customers(data: &Path) -> BTreeMap<String, (String, Value)> {
    read_csv(&data.join("customers.csv"))
        .into_iter()
        .map(|r| {
            let attrs = serde_json::from_str(&r["attributes"]).unwrap();
            (r["customer_id"].clone(), (r["region"].clone(), attrs))
        })
        .collect()
}

/// SKU -> (category, attributes).
fn products(data: &Path) -> HashMap<String, (String, Value)> {
    read_csv(&data.join("products.csv"))
        .into_iter()
        .map(|r| {
            let attrs = serde_json::from_str(&r["attributes"]).unwrap();
            (r["sku"].clone(), (r["category"].clone(), attrs))
        })
        .collect()
}

fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.parse().unwrap()),
        other => other.as_f64(),
    }
}

fn assert_close(got: Option<f64>, want: Option<f64>, what: &str) {
    match (got, want) {
        (None, None) => {}
        (Some(g), Some(w)) => assert!((g - w).abs() < 1e-9, "{what}: {g} != {w}"),
        _ => panic!("{what}: {got:?} != {want:?}"),
    }
}

#[test]
fn tobacco_retail_derives_scores_and_analyses_generated_outlets() {
    let f = Fixture::new(Industry::Retail, 600, 23, "tobacco-retail");
    let (txns, as_of) = transactions(&f.data);
    let outlets = customers(&f.data);
    let products = products(&f.data);
    let mut by_customer: HashMap<&str, Vec<&Txn>> = HashMap::new();
    for t in &txns {
        by_customer.entry(&t.customer).or_default().push(t);
    }

    // Derived fields.
    let derived = f.rows(&["plugin", "derive", "tobacco-retail"]);
    assert_eq!(derived.len(), outlets.len());
    let mut regular = 0;
    for row in &derived {
        let id = row["customer_id"].as_str().unwrap();
        let lines = by_customer.get(id).cloned().unwrap_or_default();
        let quota = outlets[id].1["monthly_quota"].as_i64().unwrap();
        let cartons: u32 = lines
            .iter()
            .filter(|t| t.day >= as_of - 92)
            .map(|t| t.quantity)
            .sum();
        let want = round4(cartons as f64 / (3 * quota) as f64);
        assert_close(
            number(&row["quota_utilisation"]),
            Some(want),
            &format!("{id} quota_utilisation"),
        );

        let days: BTreeSet<i32> = lines
            .iter()
            .filter(|t| t.day >= as_of - 365)
            .map(|t| t.day)
            .collect();
        let days: Vec<i32> = days.into_iter().collect();
        let gaps: Vec<f64> = days.windows(2).map(|w| (w[1] - w[0]) as f64).collect();
        let want = (gaps.len() >= 3).then(|| {
            let n = gaps.len() as f64;
            let mean = gaps.iter().sum::<f64>() / n;
            let sd = (gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / n).sqrt();
            round4(1.0 - sd / mean)
        });
        regular += usize::from(want.is_some());
        assert_close(
            number(&row["order_regularity"]),
            want,
            &format!("{id} order_regularity"),
        );
    }
    assert!(regular > 50, "only {regular} outlets order regularly");

    // Saved, the derived values become the outlets' own fields.
    let out = f.run(&["plugin", "derive", "tobacco-retail", "--save"]);
    assert!(
        out.contains("derived fields saved for 600 customers (600 updated"),
        "{out}"
    );
    for row in derived.iter().step_by(37) {
        let id = row["customer_id"].as_str().unwrap();
        let json: Value = serde_json::from_str(&f.run(&["get", "customer", id])).unwrap();
        let attributes = &json["attributes"];
        assert_eq!(
            attributes["quota_utilisation"], row["quota_utilisation"],
            "{id}"
        );
        assert_eq!(
            attributes.get("order_regularity").unwrap_or(&Value::Null),
            &row["order_regularity"],
            "{id}"
        );
        assert_eq!(
            attributes["license_no"], outlets[id].1["license_no"],
            "{id}"
        );
    }
    let out = f.run(&["plugin", "derive", "tobacco-retail", "--save"]);
    assert!(
        out.contains("(0 updated, 600 unchanged, 0 failed)"),
        "{out}"
    );

    // The reorder-risk model.
    let scores = f.rows(&["plugin", "score", "tobacco-retail", "reorder-risk"]);
    assert_eq!(scores.len(), outlets.len());
    let mut bands = BTreeMap::<String, usize>::new();
    let mut falling = 0;
    for row in &scores {
        let id = row["customer_id"].as_str().unwrap();
        let value = row["value"].as_f64().unwrap();
        let band = row["band"].as_str().unwrap();
        let reasons = row["reasons"].as_str().unwrap();
        *bands.entry(band.to_owned()).or_default() += 1;
        let Some(lines) = by_customer.get(id) else {
            assert_eq!((value, band), (1.0, "no-orders"), "{id}");
            continue;
        };
        let want_band = match value {
            v if v >= 0.6 => "high",
            v if v >= 0.3 => "medium",
            _ => "low",
        };
        assert_eq!(band, want_band, "{id} {value}");
        let recent: u32 = lines
            .iter()
            .filter(|t| t.day >= as_of - 92)
            .map(|t| t.quantity)
            .sum();
        let before: u32 = lines
            .iter()
            .filter(|t| t.day < as_of - 92 && t.day >= as_of - 365)
            .map(|t| t.quantity)
            .sum();
        let (recent, before) = (recent as f64 / 3.0, before as f64 / 9.0);
        if before > 0.0 && recent < 0.5 * before {
            let weight = round4(0.3 * (1.0 - recent / (0.5 * before)));
            falling += 1;
            assert!(
                reasons.contains(&format!("volume {weight:+.3}")),
                "{id}: {reasons}"
            );
        } else {
            assert!(!reasons.contains("volume"), "{id}: {reasons}");
        }
    }
    assert!(bands.len() >= 3, "the model separates outlets: {bands:?}");
    assert!(
        falling > 10,
        "only {falling} outlets order less than before"
    );

    // Sales by price band x business district x store type, last 365 days.
    let mut want = BTreeMap::<(String, String, String), (BTreeSet<&str>, u64, i64)>::new();
    for t in txns.iter().filter(|t| t.day >= as_of - 365) {
        let attrs = &outlets[&t.customer].1;
        let band = products[&t.sku].1["price_band"]
            .as_str()
            .unwrap()
            .to_owned();
        let key = (
            band,
            attrs["business_district"].as_str().unwrap().to_owned(),
            attrs["store_type"].as_str().unwrap().to_owned(),
        );
        let cell = want.entry(key).or_default();
        cell.0.insert(&t.customer);
        cell.1 += t.quantity as u64;
        cell.2 += t.cents;
    }
    let table = f.rows(&["plugin", "analyze", "tobacco-retail", "sales-by-band"]);
    let got: BTreeMap<(String, String, String), (usize, u64, i64)> = table
        .iter()
        .map(|r| {
            let text = |k: &str| r[k].as_str().unwrap().to_owned();
            (
                (
                    text("price_band"),
                    text("business_district"),
                    text("store_type"),
                ),
                (
                    r["outlets"].as_u64().unwrap() as usize,
                    r["cartons"].as_u64().unwrap(),
                    (r["revenue"].as_f64().unwrap() * 100.0).round() as i64,
                ),
            )
        })
        .collect();
    let want: BTreeMap<_, _> = want
        .into_iter()
        .map(|(k, (o, c, r))| (k, (o.len(), c, r)))
        .collect();
    assert_eq!(got, want);
}

#[test]
fn bank_cross_sell_scores_generated_customers() {
    let f = Fixture::new(Industry::Banking, 600, 29, "bank-cross-sell");
    let (txns, as_of) = transactions(&f.data);
    let people = customers(&f.data);
    let products = products(&f.data);
    let mut by_customer: HashMap<&str, Vec<&Txn>> = HashMap::new();
    for t in txns.iter().filter(|t| t.day >= as_of - 365) {
        by_customer.entry(&t.customer).or_default().push(t);
    }

    let scores = f.rows(&["plugin", "score", "bank-cross-sell", "loan-propensity"]);
    assert_eq!(scores.len(), people.len());
    let mut want_cells = BTreeMap::<(String, String), (i64, i64, i64)>::new();
    let mut bands = BTreeMap::<String, usize>::new();
    for row in &scores {
        let id = row["customer_id"].as_str().unwrap();
        let attrs = &people[id].1;
        let lines = by_customer.get(id).cloned().unwrap_or_default();
        let types: BTreeSet<&str> = lines
            .iter()
            .map(|t| products[&t.sku].1["product_type"].as_str().unwrap())
            .collect();
        let recent: i64 = lines
            .iter()
            .filter(|t| t.day >= as_of - 182)
            .map(|t| t.cents)
            .sum();
        let earlier: i64 = lines
            .iter()
            .filter(|t| t.day < as_of - 182 && t.day >= as_of - 364)
            .map(|t| t.cents)
            .sum();
        let (want_value, want_band) =
            if types.contains("loan") || attrs["has_mortgage"] == Value::Bool(true) {
                (0.0, "has-loan")
            } else if !types.contains("deposit") && !types.contains("card") {
                (0.0, "not-a-client")
            } else {
                let credit = attrs["credit_score"].as_i64().unwrap_or(300);
                let growth = if earlier > 0 {
                    (recent - earlier) as f64 / earlier as f64
                } else if recent > 0 {
                    1.0
                } else {
                    0.0
                };
                let income = attrs["annual_income"].as_f64().unwrap_or(0.0);
                let work = match attrs["employment"].as_str() {
                    Some("salaried") => 0.1,
                    Some("self_employed") => 0.07,
                    Some("retired") => 0.03,
                    _ => 0.0,
                };
                let value = round4(
                    0.4 * ((credit - 600) as f64 / 250.0).clamp(0.0, 1.0)
                        + 0.3 * (0.5 + growth / 2.0).clamp(0.0, 1.0)
                        + 0.2 * (income / 100_000.0).clamp(0.0, 1.0)
                        + work,
                );
                let band = match value {
                    v if v >= 0.65 => "high",
                    v if v >= 0.4 => "medium",
                    _ => "low",
                };
                (value, band)
            };
        let value = row["value"].as_f64().unwrap();
        let band = row["band"].as_str().unwrap();
        assert!(
            (value - want_value).abs() < 1e-9,
            "{id}: {value} != {want_value}"
        );
        assert_eq!(band, want_band, "{id}");
        *bands.entry(band.to_owned()).or_default() += 1;

        let key = (
            attrs["risk_level"].as_str().unwrap_or("unknown").to_owned(),
            attrs["employment"].as_str().unwrap_or("unknown").to_owned(),
        );
        let cell = want_cells.entry(key).or_default();
        cell.0 += 1;
        if !matches!(band, "has-loan" | "not-a-client") {
            cell.1 += 1;
            cell.2 += i64::from(band == "high");
        }
    }
    for band in ["has-loan", "low", "medium", "high"] {
        assert!(bands.contains_key(band), "no {band} customers: {bands:?}");
    }

    let table = f.rows(&[
        "plugin",
        "analyze",
        "bank-cross-sell",
        "cross-sell-opportunity",
    ]);
    let got: BTreeMap<(String, String), (i64, i64, i64)> = table
        .iter()
        .map(|r| {
            let text = |k: &str| r[k].as_str().unwrap().to_owned();
            let int = |k: &str| r[k].as_i64().unwrap();
            (
                (text("risk_level"), text("employment")),
                (int("customers"), int("eligible"), int("likely")),
            )
        })
        .collect();
    assert_eq!(got, want_cells);

    // The next best product for a likely borrower is a loan or a mortgage.
    let next = f.rows(&["plugin", "score", "bank-cross-sell", "next-best-product"]);
    assert_eq!(next.len(), scores.len());
    let loans = next
        .iter()
        .filter(|o| matches!(o["band"].as_str(), Some("mortgage" | "personal_loan")))
        .count();
    assert!(
        loans > 0 && loans < next.len(),
        "{loans} loans offered to {} customers",
        next.len()
    );
    for (propensity, offer) in scores.iter().zip(&next) {
        assert_eq!(propensity["customer_id"], offer["customer_id"]);
        let likely = propensity["value"].as_f64().unwrap() >= 0.5;
        let band = offer["band"].as_str().unwrap();
        assert_eq!(
            likely,
            matches!(band, "mortgage" | "personal_loan"),
            "{propensity:?} {offer:?}"
        );
    }
}

#[test]
fn plugins_are_managed_from_the_command_line() {
    let f = Fixture::new(Industry::Retail, 200, 31, "tobacco-retail");
    let list = f.run(&["plugin", "list"]);
    assert!(
        list.contains("tobacco-retail 0.1.0  Tobacco retail  enabled"),
        "{list}"
    );
    assert!(list.contains("scores [reorder-risk]"), "{list}");

    f.run(&["plugin", "disable", "tobacco-retail"]);
    let db = f.db.to_str().unwrap();
    let out = crm(&[
        "plugin",
        "score",
        "--db",
        db,
        "tobacco-retail",
        "reorder-risk",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("plugin tobacco-retail is disabled"), "{err}");
    f.run(&["plugin", "enable", "tobacco-retail"]);
    let summary = f.run(&[
        "plugin",
        "score",
        "tobacco-retail",
        "reorder-risk",
        "--summary",
    ]);
    assert!(summary.contains("scored 200 customers"), "{summary}");

    let out = crm(&[
        "plugin",
        "score",
        "--db",
        db,
        "tobacco-retail",
        "no-such-model",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no-such-model"), "{err}");

    let out = crm(&["plugin", "install", "--db", db, "/nonexistent/plugin"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/plugin"), "{err}");

    f.run(&["plugin", "remove", "tobacco-retail"]);
    let list = f.run(&["plugin", "list"]);
    assert!(list.contains("no plugins are installed"), "{list}");
}

#[test]
fn a_new_plugin_is_scaffolded_that_builds_passes_its_test_and_installs() {
    let dir = tempfile::tempdir().unwrap();
    let out = crm(&[
        "plugin",
        "new",
        "wine-shop",
        "--dir",
        dir.path().to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = dir.path().join("wine-shop");
    let out = crm(&[
        "plugin",
        "new",
        "wine-shop",
        "--dir",
        dir.path().to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "an existing plugin is not overwritten"
    );

    // The workspace's build of the dependencies is reused, then the
    // component is put where the scaffold's plugin.toml expects it.
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/scaffold");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    for args in [
        &["test", "--quiet"][..],
        &["build", "--quiet", "--release", "--target", "wasm32-wasip2"],
    ] {
        let out = std::process::Command::new(&cargo)
            .args(args)
            .env("CARGO_TARGET_DIR", &target)
            .current_dir(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "cargo {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let release = path.join("target/wasm32-wasip2/release");
    std::fs::create_dir_all(&release).unwrap();
    std::fs::copy(
        target.join("wasm32-wasip2/release/wine_shop.wasm"),
        release.join("wine_shop.wasm"),
    )
    .unwrap();

    let f = Fixture {
        _dir: tempfile::tempdir().unwrap(),
        db: dir.path().join("store"),
        data: dataset(Industry::Retail, 100, 3),
    };
    f.run(&["import", "--quiet", f.data.to_str().unwrap()]);
    let out = f.run(&["plugin", "install", path.to_str().unwrap()]);
    assert!(out.contains("installed and enabled wine-shop"), "{out}");
    let summary = f.run(&["plugin", "score", "wine-shop", "engagement", "--summary"]);
    assert!(summary.contains("scored 100 customers"), "{summary}");
}

/// `crm put` of one JSON record; its output (stdout, stderr, success).
fn put(db: &Path, record: &Value) -> (String, String, bool) {
    crate::support::crm_put(db, "customer", &format!("{record}\n"))
}

#[test]
fn custom_fields_are_checked_on_import_and_on_every_write() {
    let f = Fixture::new(Industry::Retail, 200, 37, "tobacco-retail");
    let get = |id: &str| -> Value {
        let mut json: Value = serde_json::from_str(&f.run(&["get", "customer", id])).unwrap();
        json.as_object_mut().unwrap().remove("metrics");
        json
    };
    let before = get("C0000002");

    // An import with custom fields that break the plugin's schema is
    // refused with the file, the line, the field and the schema rule.
    let bad = crate::support::copy_dataset(&f.data);
    let path = bad.path().join("customers.csv");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let licence = before["attributes"]["license_no"].as_str().unwrap();
    lines[2] = lines[2].replace(licence, "12345");
    lines[4] = lines[4].replace("\"\"monthly_quota\"\":", "\"\"monthly_quota\"\":-");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let db = f.db.to_str().unwrap();
    let out = crm(&[
        "import",
        "--db",
        db,
        "--quiet",
        bad.path().to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "customers.csv:3: attributes: tobacco-retail: /license_no: \"12345\" does not match \"^[0-9]{12}$\" (schema /properties/license_no/pattern)"
        ),
        "{err}"
    );
    assert!(
        err.contains("customers.csv:5: attributes: tobacco-retail: /monthly_quota: -"),
        "{err}"
    );
    assert!(err.contains("2 problems in 2 rows"), "{err}");
    assert_eq!(get("C0000002"), before, "a refused import changes nothing");

    // A write: accepted, then refused by the schema and by the plugin's
    // validate hook, which checks the licence against the region.
    let mut renamed = before.clone();
    renamed["name"] = "Estanco Nuevo".into();
    let (out, err, ok) = put(&f.db, &renamed);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "ok C0000002 updated");
    assert_eq!(get("C0000002")["name"], "Estanco Nuevo");

    let mut no_quota = renamed.clone();
    no_quota["attributes"]["monthly_quota"] = "many".into();
    let (_, err, ok) = put(&f.db, &no_quota);
    assert!(!ok);
    assert!(
        err.contains(
            "stdin line 1: attributes.monthly_quota: \"many\" is not of type \"integer\" (tobacco-retail)"
        ),
        "{err}"
    );

    let mut moved = renamed.clone();
    let region = if renamed["region"] == "Central" {
        "West"
    } else {
        "Central"
    };
    moved["region"] = region.into();
    let (_, err, ok) = put(&f.db, &moved);
    assert!(!ok);
    assert!(
        err.contains("attributes.license_no: ") && err.contains("(tobacco-retail)"),
        "{err}"
    );
    assert!(
        err.contains(&format!("but the outlet is in {region}")),
        "{err}"
    );
    assert_eq!(get("C0000002"), renamed, "a refused write changes nothing");

    // A plugin's validate hook may patch its own fields as the record is written.
    let config = f._dir.path().join("fixture.json");
    std::fs::write(&config, r#"{"version": 1}"#).unwrap();
    let package = plugin_package("fixture");
    f.run(&[
        "plugin",
        "install",
        "--config",
        config.to_str().unwrap(),
        package.to_str().unwrap(),
    ]);
    let (_, err, ok) = put(&f.db, &renamed);
    assert!(ok, "{err}");
    assert_eq!(get("C0000002")["attributes"]["fixture_seen"], true);
}

#[test]
fn a_plugin_gets_only_the_parts_of_customers_it_asks_for() {
    // `minimal` asks for no part of its customers: their ids (and lines
    // when asked) travel, their metrics arrive empty.
    let f = Fixture::new(Industry::Retail, 300, 3, "minimal");
    let noop = f.rows(&["plugin", "score", "minimal", "noop"]);
    assert_eq!(noop.len(), 300);
    let undeclared = f.rows(&["plugin", "score", "minimal", "undeclared"]);
    assert!(undeclared.iter().all(|r| r["value"].as_f64() == Some(0.0)));
    // A customer who bought has baskets, which the plugin was not sent.
    let (txns, _) = transactions(&f.data);
    let buyer = &txns[0].customer;
    let json: Value = serde_json::from_str(&f.run(&["get", "customer", buyer])).unwrap();
    assert!(json["metrics"]["baskets"].as_u64().unwrap() > 0, "{json}");
    let score = undeclared
        .iter()
        .find(|r| r["customer_id"] == buyer.as_str())
        .unwrap();
    assert_eq!(score["value"].as_f64(), Some(0.0));
}
