//! The five kinds of record over the API: created, replaced, listed,
//! deleted, refused with clear errors, and audited.

use app::tokens::Role;
use axum::http::StatusCode;
use serde_json::Value;

use crate::support::api::*;

#[test]
fn customers_are_created_and_replaced_with_optimistic_concurrency() {
    let api = Api::new();
    let agent = api.token(Role::Agent).to_owned();
    let json = [("content-type", "application/json")];
    let new = customer("C9000001", "Kiosk <script>alert(1)</script>");
    let ((status, _, body), etag) = api.send_with(
        "POST",
        "/api/v1/customers",
        Some(&agent),
        HERE,
        &json,
        new.to_string(),
    );
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(etag.as_deref(), Some("\"1\""));
    // Again: the id exists.
    let ((status, kind, _), _) = api.send_with(
        "POST",
        "/api/v1/customers",
        Some(&agent),
        HERE,
        &json,
        new.to_string(),
    );
    assert_eq!(
        (status, kind.as_str()),
        (StatusCode::CONFLICT, "application/problem+json")
    );
    // Read it back, with its metrics (from the snapshot, kept current).
    let ((status, _, body), etag) = api.send_with(
        "GET",
        "/api/v1/customers/C9000001/view",
        Some(&agent),
        HERE,
        &[],
        String::new(),
    );
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["customer"]["name"], "Kiosk <script>alert(1)</script>");
    assert_eq!(body["metrics"]["baskets"], 0);
    assert_eq!(etag.as_deref(), Some("\"1\""));

    let mut changed = new.clone();
    changed["tier"] = "gold".into();
    let uri = "/api/v1/customers/C9000001";
    let ((status, _, body), _) =
        api.send_with("PUT", uri, Some(&agent), HERE, &json, changed.to_string());
    assert_eq!(status, StatusCode::PRECONDITION_REQUIRED, "{body}");
    let with_match = [("content-type", "application/json"), ("if-match", "\"1\"")];
    let ((status, _, body), etag) = api.send_with(
        "PUT",
        uri,
        Some(&agent),
        HERE,
        &with_match,
        changed.to_string(),
    );
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(etag.as_deref(), Some("\"2\""));
    // A second writer who read revision 1 is refused.
    changed["tier"] = "silver".into();
    let ((status, _, body), _) = api.send_with(
        "PUT",
        uri,
        Some(&agent),
        HERE,
        &with_match,
        changed.to_string(),
    );
    assert_eq!(status, StatusCode::PRECONDITION_FAILED, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("revision 2, not 1"),
        "{body}"
    );
    let (_, _, body) = api.send("GET", uri, Some(&agent), HERE);
    assert_eq!(body["tier"], "gold");
}

#[test]
fn bad_writes_get_clear_errors_and_change_nothing() {
    let api = Api::new();
    let agent = api.token(Role::Agent).to_owned();
    let json = [("content-type", "application/json")];
    let post = |token: &str, headers: &[(&str, &str)], body: String| {
        api.send_with(
            "POST",
            "/api/v1/customers",
            Some(token),
            HERE,
            headers,
            body,
        )
        .0
    };
    let good = customer("C9000002", "Ana");
    let mut unknown = good.clone();
    unknown["nickname"] = "x".into();
    let (status, kind, body) = post(&agent, &json, unknown.to_string());
    assert_eq!(
        (status, kind.as_str()),
        (StatusCode::BAD_REQUEST, "application/problem+json")
    );
    assert_eq!(body["field"], "nickname", "{body}");
    let mut bad_date = good.clone();
    bad_date["joined_at"] = "2025-02-30".into();
    let (status, _, body) = post(&agent, &json, bad_date.to_string());
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["detail"].as_str().unwrap().contains("2025-02-30"),
        "{body}"
    );
    let (status, ..) = post(&agent, &[("content-type", "text/plain")], good.to_string());
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let (status, ..) = post(&agent, &json, "x".repeat(2 << 20));
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let (status, _, body) = post(api.token(Role::Viewer), &json, good.to_string());
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("viewer may not create customers")
    );
    // None of them was written.
    let (status, ..) = api.send("GET", "/api/v1/customers/C9000002", Some(&agent), HERE);
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, ..) = post(api.token(Role::Admin), &json, good.to_string());
    assert_eq!(status, StatusCode::CREATED);
}

/// Writes made at the same moment are gathered into one store write and
/// one flush, and still each get their own answer: a conflict or a refusal
/// among them fails that write alone.
#[test]
fn concurrent_writes_each_get_their_own_answer() {
    let api = Api::new();
    let before = api.state.flusher_counts();
    let writers = 24;
    let barrier = std::sync::Barrier::new(writers);
    let answers: Vec<(usize, StatusCode, Value)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..writers)
            .map(|i| {
                let (api, barrier) = (&api, &barrier);
                s.spawn(move || {
                    // Pairs of writers create the same id; every fourth is
                    // refused by the plugin (a licence of another region).
                    let mut body = customer(&format!("C95{:05}", i / 2), &format!("Writer {i}"));
                    if i % 4 == 3 {
                        body["customer_id"] = format!("C96{i:05}").into();
                        body["region"] = "Central".into();
                    }
                    barrier.wait();
                    let (status, body, _) =
                        api.write("POST", "/api/v1/customers", Role::Agent, None, &body);
                    (i, status, body)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, status, body) in &answers {
        if i % 4 == 3 {
            assert_eq!(*status, StatusCode::UNPROCESSABLE_ENTITY, "{i}: {body}");
            assert_eq!(body["field"], "attributes.license_no", "{body}");
        }
    }
    // Of each pair of the same id, with no refusal, one is created and the
    // other finds it there.
    for pair in 0..writers / 2 {
        let statuses: Vec<StatusCode> = answers
            .iter()
            .filter(|(i, ..)| i / 2 == pair && i % 4 != 3)
            .map(|(_, status, _)| *status)
            .collect();
        let created = statuses
            .iter()
            .filter(|s| **s == StatusCode::CREATED)
            .count();
        assert_eq!(created, 1, "pair {pair}: {statuses:?}");
        assert!(
            statuses
                .iter()
                .all(|s| *s == StatusCode::CREATED || *s == StatusCode::CONFLICT),
            "pair {pair}: {statuses:?}"
        );
    }
    for pair in 0..writers / 2 {
        let (status, body) = api.get(&format!("/api/v1/customers/C95{pair:05}"), Role::Viewer);
        assert_eq!(status, StatusCode::OK, "{body}");
        let (i, ..) = answers
            .iter()
            .find(|(i, status, _)| i / 2 == pair && *status == StatusCode::CREATED)
            .unwrap();
        assert_eq!(
            body["name"],
            format!("Writer {i}"),
            "the write answered 201 is the one kept"
        );
    }
    let (status, _) = api.get("/api/v1/customers/C9600003", Role::Viewer);
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (flushes, writes) = api.state.flusher_counts();
    assert_eq!(
        writes - before.1,
        (writers / 2) as u64,
        "one durable write per id"
    );
    assert!(flushes > before.0);
}

#[test]
fn customers_are_listed_filtered_searched_sorted_and_paged() {
    let api = Api::new();
    // Every customer once, in id order, 37 at a time.
    let mut seen = Vec::new();
    let mut after = String::new();
    loop {
        let uri = format!("/api/v1/customers?limit=37{after}");
        let (status, page) = api.get(&uri, Role::Viewer);
        assert_eq!(status, StatusCode::OK, "{page}");
        assert_eq!(page["total"], 200);
        seen.extend(ids(&page, "customer_id"));
        match page["next"].as_str() {
            Some(next) => after = format!("&after={next}"),
            None => break,
        }
    }
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(seen, sorted);
    assert_eq!(seen.len(), 200);
    // A filter and a descending sort.
    let (_, all) = api.get("/api/v1/customers?limit=500", Role::Viewer);
    let region = all["items"][0]["region"].as_str().unwrap().to_owned();
    let want = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["region"] == region.as_str())
        .count();
    let (_, page) = api.get(
        &format!("/api/v1/customers?limit=500&region={region}&sort=-joined_at"),
        Role::Viewer,
    );
    assert_eq!(page["total"], want as u64);
    let joined: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["joined_at"].as_str().unwrap())
        .collect();
    assert!(joined.windows(2).all(|w| w[0] >= w[1]), "{joined:?}");
    // Search: accents and case ignored, Chinese names by their characters.
    for (id, name) in [("C9100001", "Wümpel Núñez"), ("C9100002", "王饕餮")] {
        add_customer(&api, id, name);
    }
    for (q, want) in [
        ("wumpel", "C9100001"),
        ("WÜMP", "C9100001"),
        ("饕餮", "C9100002"),
    ] {
        let (_, page) = api.get(
            &format!("/api/v1/customers?q={}", urlencode(q)),
            Role::Viewer,
        );
        assert_eq!(ids(&page, "customer_id"), [want], "{q}: {page}");
    }
    let (_, page) = api.get("/api/v1/customers?q=c91&sort=name", Role::Viewer);
    assert_eq!(ids(&page, "customer_id"), ["C9100001", "C9100002"]);
    // Bad parameters are named.
    let (status, body) = api.get("/api/v1/customers?sort=shoe_size", Role::Viewer);
    assert_eq!(
        (status, body["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("sort"))
    );
    let (status, body) = api.get("/api/v1/customers?limit=0", Role::Viewer);
    assert_eq!(
        (status, body["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("limit"))
    );
    let (status, _) = api.get("/api/v1/customers?joined_from=yesterday", Role::Viewer);
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = api.get("/api/v1/customers?colour=red", Role::Viewer);
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[test]
fn products_campaigns_and_lines_are_written_read_and_deleted() {
    let api = Api::new();
    let product = serde_json::json!({
        "sku": "NEW-1", "name": "Test pipe", "category": "accessories", "brand": "Acme",
        "unit_price": "12.50", "unit_cost": "7.00", "attributes": {}
    });
    let (status, body, etag) =
        api.write("POST", "/api/v1/products", Role::Integrator, None, &product);
    assert_eq!(
        (status, etag.as_deref()),
        (StatusCode::CREATED, Some("\"1\"")),
        "{body}"
    );
    // An agent may not manage products.
    let (status, _, _) = api.write("POST", "/api/v1/products", Role::Agent, None, &product);
    assert_eq!(status, StatusCode::FORBIDDEN);
    let mut dearer = product.clone();
    dearer["unit_price"] = "13.00".into();
    let (status, _, etag) = api.write(
        "PUT",
        "/api/v1/products/NEW-1",
        Role::Integrator,
        Some("\"1\""),
        &dearer,
    );
    assert_eq!((status, etag.as_deref()), (StatusCode::OK, Some("\"2\"")));
    let (_, page) = api.get("/api/v1/products?q=test%20pipe", Role::Viewer);
    assert_eq!(ids(&page, "sku"), ["NEW-1"]);
    assert_eq!(page["items"][0]["unit_price"], 13.0);

    // A line for a customer: a missing sku is named, then it is written.
    let (_, customers) = api.get("/api/v1/customers?limit=1", Role::Viewer);
    let cid = customers["items"][0]["customer_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut line = serde_json::json!({
        "txn_id": "TNEW1", "customer_id": cid, "ts": "2025-06-01T10:00:00Z", "sku": "NOPE",
        "quantity": 2, "amount": "26.00", "cost": "14.00", "channel": "store", "region": "North"
    });
    let (status, body, _) = api.write(
        "POST",
        "/api/v1/transactions",
        Role::Integrator,
        None,
        &line,
    );
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["field"], "sku");
    line["sku"] = "NEW-1".into();
    let (status, body, _) = api.write(
        "POST",
        "/api/v1/transactions",
        Role::Integrator,
        None,
        &line,
    );
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = api.get("/api/v1/transactions/TNEW1", Role::Viewer);
    assert_eq!(
        (status, body["sku"].as_str()),
        (StatusCode::OK, Some("NEW-1"))
    );
    let (_, page) = api.get(
        &format!("/api/v1/transactions?customer_id={cid}&limit=500"),
        Role::Viewer,
    );
    assert!(ids(&page, "txn_id").contains(&"TNEW1".to_owned()));
    assert!(
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["customer_id"] == cid.as_str())
    );
    // The product is in use: not deleted; the customer has lines: neither.
    let (status, body) = api.delete("/api/v1/products/NEW-1", Role::Integrator, None);
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, _) = api.delete(&format!("/api/v1/customers/{cid}"), Role::Agent, None);
    assert_eq!(status, StatusCode::CONFLICT);
    // Delete the line, then the product (a stale If-Match first).
    let (status, _) = api.delete("/api/v1/transactions/TNEW1", Role::Integrator, None);
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = api.get("/api/v1/transactions/TNEW1", Role::Viewer);
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = api.delete("/api/v1/products/NEW-1", Role::Integrator, Some("\"1\""));
    assert_eq!(status, StatusCode::PRECONDITION_FAILED);
    let (status, _) = api.delete("/api/v1/products/NEW-1", Role::Integrator, Some("\"2\""));
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = api.get("/api/v1/products/NEW-1", Role::Viewer);
    assert_eq!(status, StatusCode::NOT_FOUND);
    // A customer without lines can go.
    let (status, body, _) = api.write(
        "POST",
        "/api/v1/customers",
        Role::Agent,
        None,
        &customer("C9200001", "Brief"),
    );
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, _) = api.delete("/api/v1/customers/C9200001", Role::Agent, None);
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = api.delete("/api/v1/customers/C9200001", Role::Agent, None);
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Interactions: an agent logs an opinion; the campaign list pages.
    let opinion = serde_json::json!({
        "interaction_id": "INEW1", "customer_id": cid, "ts": "2025-06-02T09:30:00Z",
        "kind": "opinion", "department": "service", "sku": null, "rep": null,
        "region": "North", "topic": "price", "resolved_ts": null, "rating": null,
        "campaign_id": null
    });
    let (status, body, _) = api.write("POST", "/api/v1/interactions", Role::Agent, None, &opinion);
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, page) = api.get("/api/v1/campaigns?limit=2", Role::Viewer);
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(
        page["items"].as_array().unwrap().len().min(2),
        ids(&page, "campaign_id").len()
    );
}

#[test]
fn record_changes_are_audited_with_before_and_after() {
    let api = Api::new();
    let new = customer("C9300001", "Audited");
    api.write("POST", "/api/v1/customers", Role::Agent, None, &new);
    let mut changed = new.clone();
    changed["tier"] = "gold".into();
    let (status, _, _) = api.write(
        "PUT",
        "/api/v1/customers/C9300001",
        Role::Agent,
        Some("\"1\""),
        &changed,
    );
    assert_eq!(status, StatusCode::OK);
    let (_, log) = api.get("/api/v1/audit?id=C9300001", Role::Admin);
    let items = log["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{log}");
    assert_eq!(items[0]["action"], "update");
    assert_eq!(items[0]["kind"], "customer");
    assert_eq!(items[0]["actor"], "token agent (agent)");
    assert_eq!(items[0]["before"]["tier"], "bronze");
    assert_eq!(items[0]["after"]["tier"], "gold");
    assert_eq!(items[0]["revision"], 2);
    assert_eq!(items[1]["action"], "create");
    // Paged by sequence number.
    let (_, first) = api.get("/api/v1/audit?limit=1", Role::Admin);
    let next = first["next"].as_u64().unwrap();
    let (_, second) = api.get(&format!("/api/v1/audit?limit=1&before={next}"), Role::Admin);
    assert!(second["items"][0]["seq"].as_u64().unwrap() < next);
}

/// What `GET` returns goes back with `PUT` as it is: the body's revision is
/// the precondition when If-Match is not given, and must agree with it
/// when it is.
#[test]
fn a_record_read_is_written_back_as_it_is() {
    let api = Api::new();
    add_customer(&api, "C9000101", "Read And Written");
    let (status, mut read) = api.get("/api/v1/customers/C9000101", Role::Agent);
    assert_eq!(status, StatusCode::OK, "{read}");
    assert_eq!(read["revision"], 1, "{read}");
    read["name"] = "Written Back".into();
    let (status, body, _) = api.write(
        "PUT",
        "/api/v1/customers/C9000101",
        Role::Agent,
        None,
        &read,
    );
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["revision"], 2, "{body}");
    // The same body again is stale: its revision is 1.
    let (status, body, _) = api.write(
        "PUT",
        "/api/v1/customers/C9000101",
        Role::Agent,
        None,
        &read,
    );
    assert_eq!(status, StatusCode::PRECONDITION_FAILED, "{body}");
    // A body and an If-Match that disagree are refused.
    read["revision"] = 2.into();
    let (status, body, _) = api.write(
        "PUT",
        "/api/v1/customers/C9000101",
        Role::Agent,
        Some("\"1\""),
        &read,
    );
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["field"], "revision", "{body}");
    let (status, got) = api.get("/api/v1/customers/C9000101", Role::Viewer);
    assert_eq!(
        (status, &got["name"]),
        (StatusCode::OK, &"Written Back".into())
    );
}
