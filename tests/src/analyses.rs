//! The analysis host on a real store: `crm analyze`, the snapshot's
//! checkpoint and its catching up with writes, and per-customer metrics.

use generate::Industry;
use model::{EntityKind, Record};

use crate::support::{crm, dataset, import, open_store};

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Every analysis of a store, as JSON text, from a snapshot built afresh.
fn fresh_results(store: &dyn store::Store) -> String {
    let snapshot = app::checkpoint::build(store).unwrap();
    results(&snapshot)
}

fn results(snapshot: &analysis::Snapshot) -> String {
    let ctx = analysis::Context::new(snapshot, &analysis::Scope::default());
    let tables = analysis::run_all(&analysis::NAMES, &ctx);
    let mut json = serde_json::Map::new();
    for (name, table) in analysis::NAMES.iter().zip(tables) {
        json.insert(
            (*name).to_owned(),
            serde_json::to_value(table.unwrap()).unwrap(),
        );
    }
    serde_json::to_string(&json).unwrap()
}

#[test]
fn analyze_prints_json_tables_and_csv() {
    let data = dataset(Industry::Retail, 600, 7);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("store");
    let (db, data_dir) = (db.to_str().unwrap(), data.to_str().unwrap());
    assert!(
        crm(&["import", "-q", "--db", db, data_dir])
            .status
            .success()
    );

    let out = crm(&["analyze", "--db", db, "--all", "--format", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let names: Vec<&str> = json
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(names, analysis::NAMES);
    let summary = &json["dataset_summary"][0];
    assert_eq!(summary["customers"], 600);
    assert_eq!(summary["as_of"], "2026-01-01");
    let columns: Vec<&str> = json["rfm"][0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(columns, ["segment", "customers", "share", "avg_monetary"]);

    let out = crm(&["analyze", "--db", db, "pareto", "visits_distribution"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "== pareto (1 rows)");
    let header: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(
        header,
        ["n", "k", "top_revenue", "total_revenue", "top_share"]
    );
    assert!(lines[2].starts_with("---  ---"), "{text}");
    assert!(text.contains("== visits_distribution (6 rows)"), "{text}");

    let out = crm(&["analyze", "--db", db, "rfm", "--format", "csv"]);
    assert!(
        stdout(&out).starts_with("segment,customers,share,avg_monetary\nchampions,"),
        "{}",
        stdout(&out)
    );

    let out = crm(&["analyze", "--db", db, "rfmm"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out)
            .starts_with("error: unknown analysis 'rfmm' (the analyses are dataset_summary, "),
        "{}",
        stderr(&out)
    );
    let out = crm(&["analyze", "--db", db]);
    assert!(
        stderr(&out).contains("name the analyses to run, or give --all"),
        "{}",
        stderr(&out)
    );
    let out = crm(&["analyze", "--list", "--db", db]);
    assert!(
        stdout(&out).contains("cross_sell             per category: its best partner category")
    );
}

#[test]
fn analyses_run_on_a_segment_and_as_of_a_day() {
    let data = dataset(Industry::Banking, 400, 3);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("store");
    let (db_text, data_dir) = (db.to_str().unwrap(), data.to_str().unwrap());
    assert!(
        crm(&["import", "-q", "--db", db_text, data_dir])
            .status
            .success()
    );
    let ids = dir.path().join("ids.txt");
    std::fs::write(&ids, "C0000001\nC0000002\n\nC0000010\n").unwrap();
    let out = crm(&[
        "analyze",
        "--db",
        db_text,
        "dataset_summary",
        "--customers",
        ids.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json["dataset_summary"][0]["customers"], 3);
    let store = open_store(&db);
    let lines: usize = ["C0000001", "C0000002", "C0000010"]
        .iter()
        .map(|id| {
            store
                .transactions_of(&model::CustomerId::parse(id).unwrap())
                .unwrap()
                .len()
        })
        .sum();
    assert_eq!(json["dataset_summary"][0]["transactions"], lines as u64);
    drop(store);

    std::fs::write(&ids, "C0000001\nNOPE\n").unwrap();
    let out = crm(&[
        "analyze",
        "--db",
        db_text,
        "rfm",
        "--customers",
        ids.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("1 unknown customer id: "),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("ids.txt:2: NOPE"), "{}", stderr(&out));

    let out = crm(&[
        "analyze",
        "--db",
        db_text,
        "dataset_summary",
        "--as-of",
        "2025-01-01",
        "--format",
        "json",
    ]);
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let summary = &json["dataset_summary"][0];
    assert_eq!(summary["as_of"], "2025-01-01");
    assert!(summary["last_ts"].as_str().unwrap() < "2025-01-01");
    let out = crm(&["analyze", "--db", db_text, "rfm", "--as-of", "2025-02-30"]);
    assert!(
        stderr(&out).contains("--as-of: invalid date '2025-02-30': February 2025 has 28 days"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn the_snapshot_follows_writes_and_survives_a_damaged_checkpoint() {
    let data = dataset(Industry::Retail, 500, 5);
    let dir = tempfile::tempdir().unwrap();
    let checkpoint = app::checkpoint::checkpoint_path(dir.path());
    let store = open_store(dir.path());
    import(&*store, &data).unwrap();

    // The first open builds the snapshot and saves it; the next one loads it.
    let first = app::checkpoint::open(&*store, &checkpoint).unwrap();
    assert!(
        matches!(first.readiness, app::checkpoint::Readiness::Rebuilt { .. }),
        "{:?}",
        first.readiness
    );
    let loaded = app::checkpoint::open(&*store, &checkpoint).unwrap();
    assert!(
        matches!(
            loaded.readiness,
            app::checkpoint::Readiness::Loaded { changes: 0 }
        ),
        "{:?}",
        loaded.readiness
    );
    assert_eq!(results(&loaded.snapshot), results(&first.snapshot));

    // Writes after the checkpoint: a changed customer, a moved line, a new one.
    let Some(Record::Customer(mut c)) = store.get(EntityKind::Customer, "C0000003").unwrap() else {
        panic!()
    };
    c.tier = "diamond".into();
    let Some(Record::Transaction(mut moved)) =
        store.get(EntityKind::Transaction, "T0000000001").unwrap()
    else {
        panic!()
    };
    moved.customer_id = model::CustomerId::parse("C0000007").unwrap();
    let mut added = moved.clone();
    added.txn_id = model::TxnId::parse("T9999999999").unwrap();
    added.ts = model::Timestamp::parse("2026-03-01T10:00:00Z").unwrap();
    store
        .upsert_durable(vec![
            Record::Customer(c),
            Record::Transaction(moved),
            Record::Transaction(added),
        ])
        .unwrap();
    let caught_up = app::checkpoint::open(&*store, &checkpoint).unwrap();
    assert!(
        matches!(caught_up.readiness, app::checkpoint::Readiness::Loaded { changes } if changes > 0),
        "{:?}",
        caught_up.readiness
    );
    assert_eq!(results(&caught_up.snapshot), fresh_results(&*store));
    assert_eq!(
        caught_up.snapshot.default_as_of(),
        Some(model::Date::parse("2026-03-02").unwrap())
    );

    // A damaged checkpoint is rebuilt, not trusted.
    let mut bytes = std::fs::read(&checkpoint).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&checkpoint, bytes).unwrap();
    let rebuilt = app::checkpoint::open(&*store, &checkpoint).unwrap();
    match &rebuilt.readiness {
        app::checkpoint::Readiness::Rebuilt { why } => assert!(why.contains("checksum"), "{why}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(results(&rebuilt.snapshot), fresh_results(&*store));
}

#[test]
fn get_customer_shows_the_metrics() {
    let data = dataset(Industry::Retail, 300, 7);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("store");
    let (db, data_dir) = (db.to_str().unwrap(), data.to_str().unwrap());
    assert!(
        crm(&["import", "-q", "--db", db, data_dir])
            .status
            .success()
    );
    let out = crm(&["get", "--db", db, "customer", "C0000002"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let metrics = &json["metrics"];
    let keys: Vec<&str> = json
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys.first(), Some(&"customer_id"));
    // Revenue equals the sum of the customer's lines in the file.
    let text = std::fs::read_to_string(data.join("transactions.csv")).unwrap();
    let cents: i64 = text
        .lines()
        .filter(|l| l.split(',').nth(1) == Some("C0000002"))
        .map(|l| {
            model::Money::parse(l.split(',').nth(5).unwrap())
                .unwrap()
                .cents()
        })
        .sum();
    assert_eq!(
        (metrics["revenue"].as_f64().unwrap() * 100.0).round() as i64,
        cents
    );
    for key in [
        "baskets",
        "recency_days",
        "r",
        "f",
        "m",
        "churn_risk",
        "open_opinions",
        "avg_rating",
    ] {
        assert!(metrics.get(key).is_some(), "metrics lack {key}: {metrics}");
    }
}

#[test]
fn a_checkpoint_of_another_store_is_not_used() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let store_a = open_store(a.path());
    import(&*store_a, &dataset(Industry::Retail, 200, 1)).unwrap();
    app::checkpoint::open(&*store_a, &app::checkpoint::checkpoint_path(a.path())).unwrap();
    let store_b = open_store(b.path());
    import(&*store_b, &dataset(Industry::Retail, 200, 2)).unwrap();
    std::fs::copy(
        app::checkpoint::checkpoint_path(a.path()),
        app::checkpoint::checkpoint_path(b.path()),
    )
    .unwrap();
    let opened =
        app::checkpoint::open(&*store_b, &app::checkpoint::checkpoint_path(b.path())).unwrap();
    match &opened.readiness {
        app::checkpoint::Readiness::Rebuilt { why } => {
            assert!(why.contains("another store"), "{why}")
        }
        other => panic!("the checkpoint of another store was used: {other:?}"),
    }
    assert_eq!(results(&opened.snapshot), fresh_results(&*store_b));
}
