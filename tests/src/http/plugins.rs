//! Plugins uploaded, enabled, disabled, upgraded and removed over the API.

use app::tokens::Role;
use axum::http::StatusCode;
use serde_json::Value;

use crate::support::api::*;

#[test]
fn plugins_are_uploaded_enabled_disabled_upgraded_and_removed() {
    let api = Api::new();
    let (status, list) = api.get("/api/v1/plugins", Role::Viewer);
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list[0]["id"], "tobacco-retail");
    assert_eq!(list[0]["enabled"], true);
    let (_, schema) = api.get("/api/v1/plugins/tobacco-retail/fields", Role::Viewer);
    assert!(schema["properties"]["license_no"].is_object(), "{schema}");

    let minimal = package("minimal");
    let (status, _) = api.upload(
        "POST",
        "/api/v1/plugins",
        Role::Agent,
        "application/gzip",
        minimal.clone(),
    );
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = api.upload(
        "POST",
        "/api/v1/plugins",
        Role::Integrator,
        "text/plain",
        minimal.clone(),
    );
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let (status, body) = api.upload(
        "POST",
        "/api/v1/plugins",
        Role::Integrator,
        "application/gzip",
        b"not a package".to_vec(),
    );
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, body) = api.upload(
        "POST",
        "/api/v1/plugins",
        Role::Integrator,
        "application/gzip",
        minimal.clone(),
    );
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(
        (body["id"].as_str(), body["enabled"].as_bool()),
        (Some("minimal"), Some(true))
    );
    let (status, _) = api.upload(
        "POST",
        "/api/v1/plugins",
        Role::Integrator,
        "application/gzip",
        minimal.clone(),
    );
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, body) = api.upload(
        "PUT",
        "/api/v1/plugins/minimal",
        Role::Integrator,
        "application/gzip",
        minimal,
    );
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("not newer"),
        "{body}"
    );
    let (status, body) = api.upload(
        "PUT",
        "/api/v1/plugins/tobacco-retail",
        Role::Integrator,
        "application/gzip",
        package("minimal"),
    );
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    let (status, body, _) = api.write(
        "POST",
        "/api/v1/plugins/tobacco-retail/disable",
        Role::Integrator,
        None,
        &Value::Null,
    );
    assert_eq!(
        (status, body["enabled"].as_bool()),
        (StatusCode::OK, Some(false)),
        "{body}"
    );
    // Disabled, its fields are no longer checked: a customer without them is taken.
    let mut plain = customer("C9400001", "No licence");
    plain["attributes"] = serde_json::json!({});
    let (status, body, _) = api.write("POST", "/api/v1/customers", Role::Agent, None, &plain);
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (_, fields) = api.get("/api/v1/segments/fields", Role::Viewer);
    assert!(
        !fields
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["name"] == "store_type")
    );
    let (status, body, _) = api.write(
        "POST",
        "/api/v1/plugins/tobacco-retail/enable",
        Role::Integrator,
        None,
        &Value::Null,
    );
    assert_eq!(
        (status, body["enabled"].as_bool()),
        (StatusCode::OK, Some(true))
    );
    plain["customer_id"] = "C9400002".into();
    let (status, body, _) = api.write("POST", "/api/v1/customers", Role::Agent, None, &plain);
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    // Each missing field is named, as the path to it in the customer.
    let fields: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert!(fields.contains(&"attributes.license_no"), "{body}");
    assert!(fields.contains(&"attributes.monthly_quota"), "{body}");
    assert_eq!(body["field"], fields[0]);
    // A field the plugin computes cannot be set.
    let mut computed = customer("C9400004", "Sets a computed field");
    computed["attributes"]["quota_utilisation"] = 0.5.into();
    let (status, body, _) = api.write("POST", "/api/v1/customers", Role::Agent, None, &computed);
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["field"], "attributes.quota_utilisation", "{body}");
    // A value the plugin's validate hook refuses: the licence of another region.
    let mut elsewhere = customer("C9400003", "Wrong licence");
    elsewhere["region"] = "Central".into();
    let (status, body, _) = api.write("POST", "/api/v1/customers", Role::Agent, None, &elsewhere);
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["field"], "attributes.license_no", "{body}");

    let (status, _) = api.delete("/api/v1/plugins/minimal", Role::Integrator, None);
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = api.get("/api/v1/plugins/minimal", Role::Viewer);
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, log) = api.get("/api/v1/audit?kind=plugin", Role::Admin);
    let actions: Vec<&str> = log["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["remove", "enable", "disable", "install"]);
}
