//! Webhooks: signed, retried, logged, and following segments.

use app::tokens::Role;
use axum::http::StatusCode;
use serde_json::Value;

use crate::support::api::*;
use crate::support::receiver::*;

#[test]
fn webhooks_are_signed_retried_logged_and_follow_segments() {
    use hmac::Mac;
    let api = Api::new();
    let receiver = Receiver::start();
    let sub =
        serde_json::json!({"url": receiver.url, "events": ["customer.created", "segment.entered"]});
    let (status, body, _) = api.write("PUT", "/api/v1/webhooks/crm-test", Role::Agent, None, &sub);
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, created, _) = api.write(
        "PUT",
        "/api/v1/webhooks/crm-test",
        Role::Integrator,
        None,
        &sub,
    );
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let secret = created["secret"].as_str().unwrap().to_owned();
    for (bad, field) in [
        (
            serde_json::json!({"url": "ftp://example.com/x", "events": ["customer.created"]}),
            "url",
        ),
        (
            serde_json::json!({"url": receiver.url, "events": ["customer.deleted"]}),
            "events",
        ),
    ] {
        let (status, body, _) =
            api.write("PUT", "/api/v1/webhooks/bad", Role::Integrator, None, &bad);
        assert_eq!(
            (status, body["field"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some(field)),
            "{body}"
        );
    }
    let seg = serde_json::json!({"script": "c.tier == \"platinum\" && c.region == \"North\""});
    let (status, body, _) = api.write(
        "PUT",
        "/api/v1/segments/north-platinum",
        Role::Analyst,
        None,
        &seg,
    );
    assert_eq!(status, StatusCode::OK, "{body}");
    // Wait until the memberships are built with the new segment.
    let (_, page) = api.get("/api/v1/customers?limit=1", Role::Viewer);
    let any = ids(&page, "customer_id")[0].clone();
    for _ in 0..200 {
        let (_, view) = api.get(&format!("/api/v1/customers/{any}/view"), Role::Viewer);
        if view["segments"].is_array() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    let mut c = customer("C9600001", "Hooked");
    c["tier"] = "platinum".into();
    let (status, body, _) = api.write("POST", "/api/v1/customers", Role::Agent, None, &c);
    assert_eq!(status, StatusCode::CREATED, "{body}");

    let (headers, body) = receiver.wait_for("customer.created");
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    assert_eq!(header("x-crm-event"), "customer.created");
    let signature = header("x-crm-signature");
    let (t, v1) = signature.split_once(',').unwrap();
    let t = t.strip_prefix("t=").unwrap();
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.{body}").as_bytes());
    let want: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        v1.strip_prefix("v1=").unwrap(),
        want,
        "the signature checks"
    );
    let payload: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(payload["data"]["customer_id"], "C9600001");

    let (_, body) = receiver.wait_for("segment.entered");
    let payload: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(payload["data"]["segment"], "north-platinum");
    assert_eq!(
        payload["data"]["customer_ids"],
        serde_json::json!(["C9600001"])
    );
    let (_, view) = api.get("/api/v1/customers/C9600001/view", Role::Viewer);
    assert_eq!(view["segments"], serde_json::json!(["north-platinum"]));

    // The log: the first attempt of the first delivery got 500, the next 200.
    let (status, log) = api.get("/api/v1/webhooks/crm-test/deliveries", Role::Integrator);
    assert_eq!(status, StatusCode::OK, "{log}");
    let items = log["items"].as_array().unwrap();
    assert!(items.iter().all(|d| d["state"] == "delivered"), "{log}");
    let first = items.last().unwrap();
    assert_eq!(first["attempts"][0]["status"], 500, "{log}");
    assert_eq!(first["attempts"][1]["status"], 200, "{log}");
    let (status, list) = api.get("/api/v1/webhooks", Role::Integrator);
    assert_eq!(status, StatusCode::OK);
    assert!(list[0]["secret"].is_null(), "the secret is shown once");
    let (status, _) = api.delete("/api/v1/webhooks/crm-test", Role::Integrator, None);
    assert_eq!(status, StatusCode::NO_CONTENT);
}
