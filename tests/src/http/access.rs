//! Health, readiness and metrics, tokens and the rate limit of failed
//! authentications, and the OpenAPI document.

use app::tokens::{Role, Tokens};
use axum::http::StatusCode;
use generate::Industry;
use serde_json::Value;
use std::sync::Arc;

use crate::support::api::*;
use crate::support::*;

#[test]
fn health_readiness_and_metrics_need_no_token() {
    let api = Api::new();
    assert_eq!(api.send("GET", "/healthz", None, HERE).0, StatusCode::OK);
    assert_eq!(api.send("GET", "/readyz", None, HERE).0, StatusCode::OK);
    api.send("GET", "/api/v1/customers/C0000001", None, HERE);
    let (status, kind, body) = api.send("GET", "/metrics", None, HERE);
    assert_eq!(status, StatusCode::OK);
    assert!(kind.starts_with("text/plain"), "{kind}");
    let text = body.as_str().unwrap();
    assert!(
        text.contains("crm_http_requests_total{route=\"/api/v1/customers/{id}\",status=\"401\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("crm_records{kind=\"customers\"} 200"),
        "{text}"
    );
    // A customer 360 calls the plugin's score: counted per plugin.
    api.send(
        "GET",
        "/api/v1/customers/C0000001/view",
        Some(api.token(Role::Viewer)),
        HERE,
    );
    let (_, _, body) = api.send("GET", "/metrics", None, HERE);
    let text = body.as_str().unwrap();
    assert!(
        text.contains("crm_plugin_calls_total{plugin=\"tobacco-retail\"}"),
        "{text}"
    );
    assert!(text.contains("crm_plugin_failures_total{plugin=\"tobacco-retail\"} 0"));
    assert!(text.contains("crm_store_flushes_total "), "{text}");
}

#[test]
fn a_customer_is_read_with_a_token_of_any_role() {
    let api = Api::new();
    for role in Role::ALL {
        let (status, kind, body) = api.send(
            "GET",
            "/api/v1/customers/C0000001",
            Some(api.token(role)),
            HERE,
        );
        assert_eq!(status, StatusCode::OK, "{role:?}: {body}");
        assert_eq!(kind, "application/json");
        assert_eq!(body["customer_id"], "C0000001");
        assert!(body["revision"].is_u64(), "{body}");
    }
    let (status, kind, body) = api.send(
        "GET",
        "/api/v1/customers/C9999999",
        Some(api.token(Role::Viewer)),
        HERE,
    );
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(kind, "application/problem+json");
    assert_eq!(body["status"], 404);
    assert!(body["detail"].as_str().unwrap().contains("C9999999"));
    let (status, kind, _) = api.send("GET", "/nothing/here", None, HERE);
    assert_eq!(
        (status, kind.as_str()),
        (StatusCode::NOT_FOUND, "application/problem+json")
    );
}

#[test]
fn requests_without_a_known_token_are_refused_and_then_rate_limited() {
    let api = Api::new();
    let (status, kind, body) = api.send("GET", "/api/v1/customers/C0000001", None, HERE);
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(kind, "application/problem+json");
    assert!(
        body["detail"].as_str().unwrap().contains("Bearer"),
        "{body}"
    );
    let attacker = [10, 0, 0, 9];
    for _ in 0..20 {
        let (status, ..) = api.send(
            "GET",
            "/api/v1/customers/C0000001",
            Some("crm_guess"),
            attacker,
        );
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    // The 21st wrong try in a minute, and even a right one, from there: 429.
    let (status, _, body) = api.send(
        "GET",
        "/api/v1/customers/C0000001",
        Some("crm_guess"),
        attacker,
    );
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    let viewer = api.token(Role::Viewer).to_owned();
    let (status, ..) = api.send("GET", "/api/v1/customers/C0000001", Some(&viewer), attacker);
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    // Other clients are not affected.
    let (status, ..) = api.send("GET", "/api/v1/customers/C0000001", Some(&viewer), HERE);
    assert_eq!(status, StatusCode::OK);
}

#[test]
fn tokens_are_stored_as_hashes_and_can_be_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("store");
    import(&*open_store(&db), &dataset(Industry::Retail, 50, 3)).unwrap();
    let db_arg = db.to_str().unwrap();
    let out = crm(&[
        "token",
        "create",
        "--db",
        db_arg,
        "--role",
        "agent",
        "--name",
        "front desk",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(token.starts_with("crm_") && token.len() == 68, "{token}");
    let store = open_store(&db);
    let stored: Vec<String> = store
        .definitions("tokens")
        .unwrap()
        .into_iter()
        .map(|r| format!("{} {}", r.name, r.body))
        .collect();
    assert_eq!(stored.len(), 1);
    assert!(!stored[0].contains(&token[4..]), "only a hash is kept");
    assert_eq!(
        Tokens::new(Arc::clone(&store)).role_of(&token).unwrap(),
        Some(Role::Agent)
    );
    drop(store);
    let out = crm(&[
        "token", "create", "--db", db_arg, "--role", "boss", "--name", "x",
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown role 'boss'"));
    let list = crm(&["token", "list", "--db", db_arg]);
    assert!(String::from_utf8_lossy(&list.stdout).contains("agent      front desk"));
    let out = crm(&["token", "revoke", "--db", db_arg, "front desk"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("revoked 1 token"));
    let store = open_store(&db);
    assert_eq!(Tokens::new(store).role_of(&token).unwrap(), None);
    // Both are in the audit log, read from the command line.
    let out = crm(&["audit", "--db", db_arg, "--kind", "token"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("token front desk"))
        .collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(
        lines[0].contains("cli") && lines[0].contains("revoke"),
        "{text}"
    );
    assert!(lines[1].contains("create"), "{text}");
    let out = crm(&["audit", "--db", db_arg, "--format", "json", "--limit", "1"]);
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json[0]["action"], "revoke");
}

#[test]
fn the_openapi_document_and_schemas_are_served() {
    let api = Api::new();
    let (status, _, doc) = api.send("GET", "/api/openapi.json", None, HERE);
    assert_eq!(status, StatusCode::OK);
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    let paths = doc["paths"].as_object().unwrap();
    for path in [
        "/api/v1/customers",
        "/api/v1/customers/{id}",
        "/api/v1/customers/{id}/view",
        "/api/v1/products/{id}",
        "/api/v1/campaigns",
        "/api/v1/transactions/{id}",
        "/api/v1/interactions",
        "/api/v1/analyses/{name}",
        "/api/v1/segments/{name}/members",
        "/api/v1/audit",
    ] {
        assert!(paths.contains_key(path), "{path} missing");
    }
    // A problem always has these; `field` and `errors` only when they apply.
    let problem = &doc["components"]["schemas"]["ProblemDoc"];
    assert_eq!(
        problem["required"],
        serde_json::json!(["type", "title", "status", "detail"]),
        "{problem}"
    );
    let put = &doc["paths"]["/api/v1/customers/{id}"]["put"];
    assert!(put["responses"]["412"].is_object() && put["responses"]["428"].is_object());
    assert!(put["requestBody"]["content"]["application/json"].is_object());
    let (status, kind, html) = api.send("GET", "/api/docs", None, HERE);
    assert_eq!(status, StatusCode::OK);
    assert!(kind.starts_with("text/html"));
    assert!(html.as_str().unwrap().contains("/api/openapi.json"));
    let (status, kind, schema) = api.send("GET", "/api/schemas/customer", None, HERE);
    assert_eq!(
        (status, kind.as_str()),
        (StatusCode::OK, "application/schema+json")
    );
    assert_eq!(schema["title"], "Customer");
}

#[test]
fn admins_make_and_revoke_tokens_over_the_api() {
    let api = Api::new();
    let body = serde_json::json!({"name": "till 3", "role": "agent"});
    let (status, _, _) = api.write("POST", "/api/v1/tokens", Role::Integrator, None, &body);
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, made, _) = api.write("POST", "/api/v1/tokens", Role::Admin, None, &body);
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let token = made["token"].as_str().unwrap().to_owned();
    let (status, ..) = api.send("GET", "/api/v1/customers?limit=1", Some(&token), HERE);
    assert_eq!(status, StatusCode::OK);
    let (_, list) = api.get("/api/v1/tokens", Role::Admin);
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "till 3" && t["role"] == "agent")
    );
    assert!(
        !list.to_string().contains(&token[4..]),
        "never the token itself"
    );
    let (status, body, _) = api.write(
        "POST",
        "/api/v1/tokens",
        Role::Admin,
        None,
        &serde_json::json!({"name": "x", "role": "boss"}),
    );
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["field"], "role");
    let (status, _) = api.delete("/api/v1/tokens/till%203", Role::Admin, None);
    assert_eq!(status, StatusCode::NO_CONTENT);
    // Revoked: refused at once, though it was seen before.
    let (status, ..) = api.send("GET", "/api/v1/customers?limit=1", Some(&token), HERE);
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (_, log) = api.get("/api/v1/audit?kind=token&limit=2", Role::Admin);
    assert_eq!(log["items"][0]["action"], "revoke");
    assert_eq!(log["items"][0]["actor"], "token admin (admin)");
}
