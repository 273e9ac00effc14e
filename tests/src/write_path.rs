//! The one write path, from every front end: `crm put`, `crm import`,
//! `crm plugin derive --save` and the API check customers the same way
//! (the plugins' fields and validate hooks, the fields they compute left
//! alone), audit each change with its actor, and hand on the record as
//! stored; a server that stops leaves its analysis checkpoint behind.

use std::path::Path;

use axum::http::StatusCode;
use generate::Industry;
use serde_json::Value;

use crate::support::api::{Api, customer};
use crate::support::fixture::Fixture;
use crate::support::receiver::Receiver;
use crate::support::serving::{post, serve, store_with_token};
use crate::support::{copy_dataset, crm, crm_put, plugin_package};

/// `crm put` of JSON lines; (stdout, stderr, success).
fn put(db: &Path, kind: &str, lines: &[Value]) -> (String, String, bool) {
    let input: String = lines.iter().map(|l| format!("{l}\n")).collect();
    crm_put(db, kind, &input)
}

/// The audit log's entries (newest first) about `kind`, as `crm audit`
/// prints them in JSON.
fn audit(f: &Fixture, kind: &str, limit: usize) -> Vec<Value> {
    let limit = limit.to_string();
    let out = f.run(&[
        "audit", "--kind", kind, "--limit", &limit, "--format", "json",
    ]);
    serde_json::from_str::<Value>(&out)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

/// `crm import` of `dir` into the fixture's store, which must refuse it
/// (exit 1); what it said.
fn import_refused(f: &Fixture, dir: &Path) -> String {
    let out = crm(&[
        "import",
        "--db",
        f.db.to_str().unwrap(),
        "--quiet",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Rewrites one column of one data row (0 is the first after the header)
/// of a CSV file.
fn set_cell(path: &Path, row: usize, column: &str, value: &str) {
    let mut reader = csv::Reader::from_path(path).unwrap();
    let header = reader.headers().unwrap().clone();
    let at = header.iter().position(|h| h == column).unwrap();
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    let mut writer = csv::Writer::from_path(path).unwrap();
    writer.write_record(&header).unwrap();
    for (n, record) in rows.iter().enumerate() {
        if n == row {
            let mut changed: Vec<&str> = record.iter().collect();
            changed[at] = value;
            writer.write_record(&changed).unwrap();
        } else {
            writer.write_record(record).unwrap();
        }
    }
    writer.flush().unwrap();
}

#[test]
fn crm_put_accepts_what_crm_get_prints_and_is_audited_with_its_actor() {
    let f = Fixture::new(Industry::Retail, 200, 41, "tobacco-retail");
    let printed: Value = serde_json::from_str(&f.run(&["get", "customer", "C0000003"])).unwrap();
    assert!(printed["metrics"].is_object(), "{printed}");
    // What `crm get` prints goes back in as it is (its metrics are
    // computed and ignored), renamed.
    let mut renamed = printed.clone();
    renamed["name"] = "Estanco Reescrito".into();
    let (out, err, ok) = put(&f.db, "customer", &[renamed]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "ok C0000003 updated");
    let entries = audit(&f, "customer", 5);
    let entry = entries
        .iter()
        .find(|e| e["id"] == "C0000003")
        .unwrap_or_else(|| panic!("no audit entry for C0000003: {entries:?}"));
    assert_eq!(entry["actor"], "cli");
    assert_eq!(entry["after"]["name"], "Estanco Reescrito", "{entry}");
    assert_eq!(entry["before"]["name"], printed["name"], "{entry}");

    // A revision given is the one the write expects: a stale one is refused.
    let revision = entry["revision"].as_u64().unwrap();
    let mut stale = printed.clone();
    stale["revision"] = (revision - 1).into();
    stale["name"] = "Too Late".into();
    let (_, err, ok) = put(&f.db, "customer", &[stale]);
    assert!(!ok);
    assert!(err.contains("stdin line 1"), "{err}");
    let mut current = printed.clone();
    current["revision"] = revision.into();
    current["name"] = "In Time".into();
    let (out, err, ok) = put(&f.db, "customer", &[current]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "ok C0000003 updated");

    // Derived values saved are audited as the plugin's, one entry each.
    let out = f.run(&["plugin", "derive", "tobacco-retail", "--save"]);
    let updated: usize = out
        .split(" updated")
        .next()
        .and_then(|s| s.rsplit('(').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{out}"));
    assert!(updated > 100, "{out}");
    let entries = audit(&f, "customer", 1000);
    let by_plugin = entries
        .iter()
        .filter(|e| e["actor"] == "plugin tobacco-retail")
        .count();
    assert_eq!(by_plugin, updated, "{out}");
    let one = entries
        .iter()
        .find(|e| e["actor"] == "plugin tobacco-retail")
        .unwrap();
    assert!(
        one["after"]["attributes"]["quota_utilisation"].is_number(),
        "{one}"
    );
}

#[test]
fn an_import_runs_the_validate_hooks_once_per_batch() {
    let f = Fixture::new(Industry::Retail, 200, 43, "tobacco-retail");
    let before = f.run(&["get", "customer", "C0000004"]);
    let bad = copy_dataset(&f.data);
    let customers = bad.path().join("customers.csv");
    // The licence of the outlet on line 5 no longer fits its region: the
    // plugin's validate hook refuses it (the schema alone would not).
    let region = crate::industry::read_csv(&customers)[3]["region"].clone();
    let other = if region == "Central" {
        "West"
    } else {
        "Central"
    };
    set_cell(&customers, 3, "region", other);
    let err = import_refused(&f, bad.path());
    assert!(
        err.contains("customers.csv:5: attributes: license_no: ")
            && err.contains(&format!("but the outlet is in {other} (code "))
            && err.contains("(tobacco-retail)"),
        "{err}"
    );
    assert!(err.contains("1 problem in 1 row"), "{err}");
    assert_eq!(
        f.run(&["get", "customer", "C0000004"]),
        before,
        "a refused import changes nothing"
    );

    // Set aside, the row is written to the rejected file with its problem,
    // and the other rows are imported.
    let out = crm(&[
        "import",
        "--db",
        f.db.to_str().unwrap(),
        "--quiet",
        "--skip-invalid",
        bad.path().to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("rejected rows"), "{stdout}");
    let rejected = std::fs::read_to_string(bad.path().join("customers.rejected.csv")).unwrap();
    assert!(
        rejected.contains("5,") && rejected.contains("but the outlet is in"),
        "{rejected}"
    );
    let stored: Value = serde_json::from_str(&f.run(&["get", "customer", "C0000004"])).unwrap();
    assert_eq!(
        stored["region"],
        region.as_str(),
        "the refused row was not imported"
    );
}

/// The import's rules call each validate hook once per batch of rows, and
/// apply its patches to the rows it accepts.
#[test]
fn the_import_rules_call_a_validate_hook_once_per_batch() {
    use transfer::Rules;
    let dir = tempfile::tempdir().unwrap();
    let store = crate::support::open_store(&dir.path().join("store"));
    let registry = plugin_host::Registry::open(&dir.path().join("plugins")).unwrap();
    registry
        .install(
            &plugin_package("fixture"),
            Some(serde_json::json!({"version": 1})),
        )
        .unwrap();
    let mut records: Vec<model::Record> = (0..300)
        .map(|n| {
            let mut c = customer(&format!("C97100{n:02}"), "Batched");
            if n == 7 {
                c["attributes"] = serde_json::json!({"fixture_reject": true});
            }
            model::Record::Customer(serde_json::from_value(c).unwrap())
        })
        .collect();
    let checks = app::write::Checks::new(&registry, &*store);
    let problems = checks.apply(&mut records);
    let calls: u64 = registry
        .call_totals()
        .iter()
        .map(|(_, calls, _)| calls)
        .sum();
    assert_eq!(calls, 1, "one call of the hook for 300 rows");
    assert_eq!(problems.iter().filter(|p| !p.is_empty()).count(), 1);
    assert!(
        problems[7][0]
            .reason
            .contains("the fixture rejects this customer"),
        "{:?}",
        problems[7]
    );
    let model::Record::Customer(c) = &records[0] else {
        unreachable!()
    };
    assert_eq!(c.attributes.to_value()["fixture_seen"], true, "patched");
}

#[test]
fn a_read_only_field_cannot_be_set_through_any_path() {
    let f = Fixture::new(Industry::Retail, 200, 47, "tobacco-retail");
    let mut record: Value = serde_json::from_str(&f.run(&["get", "customer", "C0000005"])).unwrap();
    record["attributes"]["quota_utilisation"] = (-99.0).into();
    let (_, err, ok) = put(&f.db, "customer", &[record.clone()]);
    assert!(!ok);
    assert!(
        err.contains("stdin line 1: attributes.quota_utilisation is computed by plugin tobacco-retail and cannot be set"),
        "{err}"
    );

    // An import naming it is refused at its line.
    let bad = copy_dataset(&f.data);
    let customers = bad.path().join("customers.csv");
    let rows = crate::industry::read_csv(&customers);
    let mut attributes: serde_json::Map<String, Value> =
        serde_json::from_str(&rows[1]["attributes"]).unwrap();
    // A value the field's schema allows: only the plugin may set it.
    attributes.insert("quota_utilisation".into(), 0.75.into());
    set_cell(
        &customers,
        1,
        "attributes",
        &Value::Object(attributes).to_string(),
    );
    let err = import_refused(&f, bad.path());
    assert!(
        err.contains("customers.csv:3: attributes: quota_utilisation is computed by plugin tobacco-retail and cannot be imported"),
        "{err}"
    );

    // Over the API.
    let api = Api::new();
    let mut c = customer("C9700001", "Reader Only");
    c["attributes"]["order_regularity"] = 0.5.into();
    let (status, body, _) = api.write(
        "POST",
        "/api/v1/customers",
        app::tokens::Role::Agent,
        None,
        &c,
    );
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["title"], "Read-only field", "{body}");
    assert_eq!(body["field"], "attributes.order_regularity", "{body}");
}

#[test]
fn the_event_of_a_patched_customer_is_the_stored_record() {
    let api = Api::new();
    // The fixture's validate hook patches its own field as customers are
    // written.
    let config = serde_json::json!({"version": 1});
    api.state
        .registry
        .install(&plugin_package("fixture"), Some(config))
        .unwrap();
    api.state.write_data().base.refresh_plugins();
    let receiver = Receiver::start();
    let sub = serde_json::json!({"url": receiver.url, "events": ["customer.created"]});
    let (status, body, _) = api.write(
        "PUT",
        "/api/v1/webhooks/patched",
        app::tokens::Role::Integrator,
        None,
        &sub,
    );
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // The receiver answers its first request 500; this one is retried.
    let c = customer("C9700002", "Patched On Write");
    let (status, body, _) = api.write(
        "POST",
        "/api/v1/customers",
        app::tokens::Role::Agent,
        None,
        &c,
    );
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (_, delivered) = receiver.wait_for("C9700002");
    let payload: Value = serde_json::from_str(&delivered).unwrap();
    let (status, stored) = api.get("/api/v1/customers/C9700002", app::tokens::Role::Viewer);
    assert_eq!(status, StatusCode::OK, "{stored}");
    assert_eq!(stored["attributes"]["fixture_seen"], true, "{stored}");
    let mut sent = payload["data"]["customer"].clone();
    let mut kept = stored.clone();
    for v in [&mut sent, &mut kept] {
        v.as_object_mut().unwrap().remove("revision");
    }
    assert_eq!(sent, kept, "the event carries the customer as stored");
}

#[test]
fn a_stopped_server_leaves_a_checkpoint_the_next_open_uses() {
    let (dir, token) = store_with_token(30, "agent");
    let db = dir.path().join("store");
    let (mut child, _stderr, addr) = serve(db.to_str().unwrap());
    for n in 0..5 {
        let body = customer(&format!("C98000{n:02}"), "Written Before Stop").to_string();
        assert_eq!(post(&addr, "/api/v1/customers", &token, &body), 201);
    }
    let pid = child.id().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    assert!(child.wait().unwrap().success());
    let out = crm(&["snapshot", "--db", db.to_str().unwrap()]);
    assert!(out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("loaded from its checkpoint, 0 changes applied")
            && said.contains("35 customers"),
        "{said}"
    );
}

#[test]
fn an_empty_store_takes_plugins_before_its_first_import_and_a_held_store_names_its_server() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("store");
    let db_arg = db.to_str().unwrap();
    let out = crm(&["init", "--db", db_arg]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("created an empty store"));
    let package = plugin_package("tobacco-retail");
    let out = crm(&[
        "plugin",
        "install",
        "--db",
        db_arg,
        package.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The first import is checked by the plugin already.
    let bad = copy_dataset(&crate::support::dataset(Industry::Retail, 50, 53));
    set_cell(
        &bad.path().join("customers.csv"),
        0,
        "attributes",
        r#"{"license_no":"12"}"#,
    );
    let out = crm(&[
        "import",
        "--db",
        db_arg,
        "--quiet",
        bad.path().to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("customers.csv:2: attributes: tobacco-retail: /license_no"),
        "{err}"
    );
    let again = crm(&["init", "--db", db_arg]);
    assert!(!again.status.success());

    let (mut child, _stderr, addr) = serve(db_arg);
    let (_, err, ok) = put(&db, "customer", &[customer("C9900001", "Held")]);
    let _ = child.kill();
    let _ = child.wait();
    assert!(!ok);
    assert!(
        err.contains(&format!("is held by `crm serve` on http://{addr}")),
        "{err}"
    );
}

/// Attributes nested too deep are refused where they are parsed, on every
/// path, with a clear error: they used to pass the checks and then panic
/// inside the thread that writes every client's customers.
#[test]
fn deeply_nested_attributes_are_refused_where_they_are_parsed() {
    // A customer whose attributes nest `levels` deep (the object is one).
    let nested = |id: &str, levels: usize| -> String {
        let mut c = customer(id, "Deep");
        c["attributes"] = Value::String("ATTRIBUTES".into());
        let attributes = format!(
            r#"{{"license_no":"250214704823","store_type":"kiosk","business_district":"school","monthly_quota":40,"x":{}1{}}}"#,
            "[".repeat(levels - 1),
            "]".repeat(levels - 1)
        );
        c.to_string().replace("\"ATTRIBUTES\"", &attributes)
    };
    let api = Api::new();
    let ((status, _, answer), _) = api.send_with(
        "POST",
        "/api/v1/customers",
        Some(api.token(app::tokens::Role::Agent)),
        crate::support::api::HERE,
        &[("content-type", "application/json")],
        nested("C9700100", 127),
    );
    assert_eq!(
        (status, &answer["field"]),
        (StatusCode::BAD_REQUEST, &Value::from("attributes")),
        "{answer}"
    );
    assert!(
        answer["detail"]
            .as_str()
            .is_some_and(|d| d.contains("nested 127 levels deep, more than the limit of 32")),
        "{answer}"
    );
    // The writes of others go on.
    let (status, answer, _) = api.write(
        "POST",
        "/api/v1/customers",
        app::tokens::Role::Agent,
        None,
        &customer("C9700101", "Shallow"),
    );
    assert_eq!(status, StatusCode::CREATED, "{answer}");

    let f = Fixture::new(Industry::Retail, 50, 59, "tobacco-retail");
    let (_, err, ok) = crm_put(&f.db, "customer", &(nested("C9700102", 40) + "\n"));
    assert!(!ok);
    assert!(
        err.contains("stdin line 1") && err.contains("nested 40 levels deep"),
        "{err}"
    );
}
