//! CSV imports by upload, exports, and the limits on bodies.

use app::tokens::Role;
use axum::http::StatusCode;

use crate::support::api::*;

#[test]
fn csv_files_are_imported_by_upload_with_a_report_and_exported() {
    let api = Api::new();
    let (status, _, csv) = api.send(
        "GET",
        "/api/v1/export/customers",
        Some(api.token(Role::Viewer)),
        HERE,
    );
    assert_eq!(status, StatusCode::OK);
    let csv = csv.as_str().unwrap().to_owned();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 201, "a header and 200 customers");
    // Two new customers from existing rows; the second has a bad date.
    let good = lines[1].replacen("C0000001", "C9500001", 1);
    let mut bad: Vec<String> =
        csv::Reader::from_reader(format!("{}\n{}\n", lines[0], lines[2]).as_bytes())
            .records()
            .next()
            .unwrap()
            .unwrap()
            .iter()
            .map(str::to_owned)
            .collect();
    bad[0] = "C9500002".into();
    bad[2] = "Q".into();
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer.write_record(&bad).unwrap();
    let bad = String::from_utf8(writer.into_inner().unwrap()).unwrap();
    let bad = bad.trim_end();
    let file = format!("{}\n{good}\n{bad}\n", lines[0]);
    let (kind, body) = multipart(&[("customers.csv", &file)]);
    // Refused whole without skip_invalid: nothing changes.
    let (status, job) = api.upload(
        "POST",
        "/api/v1/imports",
        Role::Integrator,
        &kind,
        body.clone(),
    );
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    let job = wait_for_job(
        &api,
        &format!("/api/v1/imports/{}", job["id"].as_str().unwrap()),
    );
    assert_eq!(job["state"], "failed", "{job}");
    assert!(
        job["problems"][0]
            .as_str()
            .unwrap()
            .contains("customers.csv:3"),
        "{job}"
    );
    let (status, _) = api.get("/api/v1/customers/C9500001", Role::Viewer);
    assert_eq!(status, StatusCode::NOT_FOUND);
    // With skip_invalid: the good row goes in, the bad one is set aside.
    let (status, job) = api.upload(
        "POST",
        "/api/v1/imports?skip_invalid=true",
        Role::Integrator,
        &kind,
        body,
    );
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    let job = wait_for_job(
        &api,
        &format!("/api/v1/imports/{}", job["id"].as_str().unwrap()),
    );
    assert_eq!(job["state"], "done", "{job}");
    let file = &job["files"][0];
    assert_eq!(
        (file["added"].as_u64(), file["rejected"].as_u64()),
        (Some(1), Some(1)),
        "{job}"
    );
    let (status, _, rejected) = api.send(
        "GET",
        file["rejected_rows"].as_str().unwrap(),
        Some(api.token(Role::Integrator)),
        HERE,
    );
    assert_eq!(status, StatusCode::OK);
    assert!(
        rejected.as_str().unwrap().contains("C9500002"),
        "{rejected}"
    );
    let (status, _) = api.get("/api/v1/customers/C9500001", Role::Viewer);
    assert_eq!(status, StatusCode::OK);
    // The snapshot caught up: the new customer is listed.
    let (_, page) = api.get("/api/v1/customers?q=C95", Role::Viewer);
    assert_eq!(ids(&page, "customer_id"), ["C9500001"]);
    // Bad uploads.
    let (kind, body) = multipart(&[("people.csv", "x")]);
    let (status, body) = api.upload("POST", "/api/v1/imports", Role::Integrator, &kind, body);
    assert_eq!(
        (status, body["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("people.csv")),
        "{body}"
    );
    let (kind, body) = multipart(&[("customers.csv", "x")]);
    let (status, _) = api.upload("POST", "/api/v1/imports", Role::Viewer, &kind, body);
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (_, log) = api.get("/api/v1/audit?kind=import", Role::Admin);
    assert_eq!(log["items"].as_array().unwrap().len(), 2);
}

#[test]
fn bodies_are_limited_where_they_are_read() {
    let api = Api::new();
    // An upload is not held to the 2 MiB of other bodies: 20,000 customers
    // in a 3 MB file.
    let (_, _, csv) = api.send(
        "GET",
        "/api/v1/export/customers",
        Some(api.token(Role::Viewer)),
        HERE,
    );
    let csv = csv.as_str().unwrap().to_owned();
    let mut lines = csv.lines();
    let header = lines.next().unwrap();
    let row = lines.next().unwrap();
    let mut file = format!("{header}\n");
    for n in 0..20_000 {
        file.push_str(&row.replacen("C0000001", &format!("C97{n:05}"), 1));
        file.push('\n');
    }
    assert!(file.len() > 3 << 20, "{} bytes", file.len());
    let (kind, body) = multipart(&[("customers.csv", &file)]);
    let (status, job) = api.upload("POST", "/api/v1/imports", Role::Integrator, &kind, body);
    assert_eq!(status, StatusCode::ACCEPTED, "{job}");
    let job = wait_for_job(
        &api,
        &format!("/api/v1/imports/{}", job["id"].as_str().unwrap()),
    );
    assert_eq!(job["files"][0]["added"].as_u64(), Some(20_000), "{job}");
    // A JSON body over 1 MiB is refused, as is one over 2 MiB read by an
    // extractor, and any body declared over the upload limit before it is
    // read (counted and logged like any answer).
    let agent = api.token(Role::Agent);
    let json = [("content-type", "application/json")];
    for size in [(1 << 20) + 1, 3 << 20] {
        let ((status, kind, body), _) = api.send_with(
            "POST",
            "/api/v1/customers",
            Some(agent),
            HERE,
            &json,
            format!("{{\"name\": \"{}\"}}", "x".repeat(size)),
        );
        assert_eq!(
            (status, kind.as_str()),
            (StatusCode::PAYLOAD_TOO_LARGE, "application/problem+json"),
            "{body}"
        );
    }
    let ((status, kind, body), headers) = api.exchange(
        "POST",
        "/api/v1/imports",
        Some(api.token(Role::Integrator)),
        HERE,
        &[("content-length", "5000000000")],
        String::from("x"),
    );
    assert_eq!(
        (status, kind.as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, "application/problem+json"),
        "{body}"
    );
    assert!(
        body["detail"].as_str().unwrap().contains("over the limit"),
        "{body}"
    );
    assert!(headers.contains_key("x-request-id"));
    let (_, _, metrics) = api.send("GET", "/metrics", None, HERE);
    assert!(
        metrics
            .as_str()
            .unwrap()
            .contains("crm_http_requests_total{route=\"/api/v1/imports\",status=\"413\"} 1"),
        "{metrics}"
    );
}
