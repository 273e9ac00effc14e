//! Analyses and segments over the API.

use app::tokens::Role;
use axum::http::StatusCode;
use generate::Industry;
use serde_json::Value;

use crate::support::api::*;
use crate::support::*;

#[test]
fn analyses_run_on_everyone_or_on_a_segment() {
    let api = Api::new();
    let (status, list) = api.get("/api/v1/analyses", Role::Analyst);
    assert_eq!(status, StatusCode::OK);
    assert!(list.as_array().unwrap().len() >= 19);
    let (status, _) = api.get("/api/v1/analyses", Role::Agent);
    assert_eq!(status, StatusCode::FORBIDDEN);
    // The same figures as the analysis host gives on the same data.
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(&dir.path().join("same"));
    import(&*store, &dataset(Industry::Retail, 200, 3)).unwrap();
    let snapshot = app::checkpoint::build(&*store).unwrap();
    for name in ["rfm", "pareto", "performance"] {
        let (status, body) = api.get(
            &format!("/api/v1/analyses/{name}?as_of=2025-06-30"),
            Role::Viewer,
        );
        assert_eq!(status, StatusCode::OK, "{name}: {body}");
        let scope = analysis::Scope {
            as_of: Some(model::Date::parse("2025-06-30").unwrap()),
            customers: None,
        };
        let ctx = analysis::Context::new(&snapshot, &scope);
        let want = serde_json::to_value(analysis::run(name, &ctx).unwrap()).unwrap();
        assert_eq!(body, want, "{name}");
    }
    // On a segment's members.
    let seg = serde_json::json!({"script": "c.tier == \"gold\""});
    let (status, body, _) = api.write("PUT", "/api/v1/segments/gold", Role::Analyst, None, &seg);
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, members) = api.get("/api/v1/segments/gold/members?limit=1000", Role::Viewer);
    let rows: Vec<u32> = ids(&members, "customer_id")
        .iter()
        .map(|id| snapshot.customers.find(id).unwrap())
        .collect();
    assert!(!rows.is_empty());
    let (status, body) = api.get(
        "/api/v1/analyses/profiling_overview?segment=gold",
        Role::Analyst,
    );
    assert_eq!(status, StatusCode::OK, "{body}");
    let scope = analysis::Scope {
        as_of: None,
        customers: Some(rows),
    };
    let ctx = analysis::Context::new(&snapshot, &scope);
    let want = serde_json::to_value(analysis::run("profiling_overview", &ctx).unwrap()).unwrap();
    assert_eq!(body, want);
    let (status, body) = api.get("/api/v1/analyses/nope", Role::Analyst);
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = api.get("/api/v1/analyses/rfm?segment=nope", Role::Analyst);
    assert_eq!(
        (status, body["field"].as_str()),
        (StatusCode::NOT_FOUND, Some("segment"))
    );
}

#[test]
fn segments_are_tested_saved_explained_and_audited() {
    let api = Api::new();
    let typo = serde_json::json!({"script": "c.tier == \"gold\" && c.revenu > 10.0"});
    let (status, body, _) = api.write("POST", "/api/v1/segments/test", Role::Analyst, None, &typo);
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let detail = body["detail"].as_str().unwrap();
    assert!(
        detail.contains("line 1, column 23") && detail.contains("c.revenue"),
        "{detail}"
    );
    let good = serde_json::json!({"description": "gold buyers", "script": "c.tier == \"gold\" && c.revenue > 10.0"});
    let (status, test, _) = api.write("POST", "/api/v1/segments/test", Role::Analyst, None, &good);
    assert_eq!(status, StatusCode::OK, "{test}");
    assert_eq!(test["customers"], 200);
    let (status, _, _) = api.write(
        "PUT",
        "/api/v1/segments/gold-buyers",
        Role::Viewer,
        None,
        &good,
    );
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, saved, etag) = api.write(
        "PUT",
        "/api/v1/segments/gold-buyers",
        Role::Analyst,
        None,
        &good,
    );
    assert_eq!(
        (status, etag.as_deref()),
        (StatusCode::OK, Some("\"1\"")),
        "{saved}"
    );
    let (status, _, _) = api.write(
        "PUT",
        "/api/v1/segments/gold-buyers",
        Role::Analyst,
        None,
        &good,
    );
    assert_eq!(status, StatusCode::CONFLICT);
    let wider = serde_json::json!({"script": "c.tier == \"gold\""});
    let (status, _, etag) = api.write(
        "PUT",
        "/api/v1/segments/gold-buyers",
        Role::Analyst,
        Some("\"1\""),
        &wider,
    );
    assert_eq!((status, etag.as_deref()), (StatusCode::OK, Some("\"2\"")));
    let (status, _, _) = api.write(
        "PUT",
        "/api/v1/segments/gold-buyers",
        Role::Analyst,
        Some("\"1\""),
        &good,
    );
    assert_eq!(status, StatusCode::PRECONDITION_FAILED);
    let (_, members) = api.get("/api/v1/segments/gold-buyers/members", Role::Viewer);
    let (_, all) = api.get("/api/v1/customers?tier=gold&limit=500", Role::Viewer);
    assert_eq!(members["total"], all["total"]);
    let first = ids(&members, "customer_id")[0].clone();
    let (status, x) = api.get(
        &format!("/api/v1/segments/gold-buyers/explain?customer_id={first}"),
        Role::Viewer,
    );
    assert_eq!(
        (status, x["matched"].as_bool()),
        (StatusCode::OK, Some(true)),
        "{x}"
    );
    let (_, fields) = api.get("/api/v1/segments/fields", Role::Viewer);
    assert!(
        fields
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["name"] == "store_type")
    );
    let (status, _) = api.delete("/api/v1/segments/gold-buyers", Role::Analyst, None);
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = api.get("/api/v1/segments/gold-buyers", Role::Viewer);
    assert_eq!(status, StatusCode::NOT_FOUND);
    // The audit log: each save and the delete, with who and what.
    let (status, _) = api.get("/api/v1/audit?kind=segment", Role::Analyst);
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, log) = api.get("/api/v1/audit?kind=segment", Role::Admin);
    assert_eq!(status, StatusCode::OK, "{log}");
    let actions: Vec<&str> = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["delete", "save", "save"]);
    assert_eq!(log["items"][0]["actor"], "token analyst (analyst)");
    assert_eq!(log["items"][1]["after"]["script"], "c.tier == \"gold\"");
}

/// A customer's segments follow their lines: a line added, moved to
/// another customer (both customers' segments change) and deleted.
#[test]
fn segments_follow_lines_added_moved_and_deleted() {
    let api = Api::new();
    for (id, name) in [("C9700001", "Mover A"), ("C9700002", "Mover B")] {
        add_customer(&api, id, name);
    }
    let seg = serde_json::json!({
        "script": "(c.name == \"Mover A\" || c.name == \"Mover B\") && c.lines > 0"
    });
    let (status, body, _) = api.write(
        "PUT",
        "/api/v1/segments/movers-buying",
        Role::Analyst,
        None,
        &seg,
    );
    assert_eq!(status, StatusCode::OK, "{body}");
    // Customer `id` is in the segment or not, within 10 s.
    let wait_for = |id: &str, member: bool| {
        let mut view = Value::Null;
        for _ in 0..400 {
            view = api
                .get(&format!("/api/v1/customers/{id}/view"), Role::Viewer)
                .1;
            if view["segments"]
                .as_array()
                .is_some_and(|s| s.iter().any(|name| name == "movers-buying") == member)
            {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
        panic!("{id} in movers-buying should be {member}: {view}");
    };
    wait_for("C9700001", false);
    let mut line = transaction_line(&api, "T-mover-1", "C9700001");
    post_line(&api, &line);
    wait_for("C9700001", true);
    wait_for("C9700002", false);

    line["customer_id"] = "C9700002".into();
    let (status, body, _) = api.write(
        "PUT",
        "/api/v1/transactions/T-mover-1",
        Role::Integrator,
        None,
        &line,
    );
    assert_eq!(status, StatusCode::OK, "{body}");
    wait_for("C9700002", true);
    wait_for("C9700001", false);

    let (status, body) = api.delete("/api/v1/transactions/T-mover-1", Role::Integrator, None);
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    wait_for("C9700002", false);
}
