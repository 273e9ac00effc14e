//! The in-process API client: the router over a CRM with the tobacco-retail
//! plugin and a token of every role, requests sent from a client address.

use app::tokens::{Role, Tokens};
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode, header};
use generate::Industry;
use serde_json::Value;
use server::http::{AppState, HttpConfig, router};
use std::net::SocketAddr;
use std::sync::Arc;
use tower::ServiceExt;

use crate::support::*;

pub(crate) struct Api {
    pub(crate) _dir: tempfile::TempDir,
    pub(crate) router: axum::Router,
    pub(crate) tokens: Vec<(Role, String)>,
    pub(crate) state: Arc<AppState>,
}

impl Api {
    pub(crate) fn new() -> Api {
        Api::with(app::Config::default(), HttpConfig::default())
    }

    /// An API over a CRM and an HTTP side set up as given (webhook
    /// deliveries retried after 50 ms unless set otherwise).
    pub(crate) fn with(config: app::Config, http: HttpConfig) -> Api {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("store");
        let store = open_store(&db);
        import(&*store, &dataset(Industry::Retail, 200, 3)).unwrap();
        let snapshot = app::checkpoint::build(&*store).unwrap();
        let registry = app::plugins::registry(&db).unwrap();
        registry
            .install(&plugin_package("tobacco-retail"), None)
            .unwrap();
        let tokens = Tokens::new(Arc::clone(&store));
        let tokens = Role::ALL
            .into_iter()
            .map(|role| (role, tokens.create(role.as_str(), role).unwrap()))
            .collect();
        let http = HttpConfig {
            webhook_retry: std::time::Duration::from_millis(50),
            ..http
        };
        let state = AppState::new(app::Crm::new(store, snapshot, registry, config), http);
        Api {
            _dir: dir,
            router: router(Arc::clone(&state)),
            state,
            tokens,
        }
    }

    pub(crate) fn token(&self, role: Role) -> &str {
        &self.tokens.iter().find(|(r, _)| *r == role).unwrap().1
    }

    /// Sends a request from `peer`; the status, content type and body.
    pub(crate) fn send(
        &self,
        method: &str,
        uri: &str,
        token: Option<&str>,
        peer: [u8; 4],
    ) -> (StatusCode, String, Value) {
        self.send_with(method, uri, token, peer, &[], String::new())
            .0
    }

    /// As `send`, with headers and a body; also the response's ETag.
    pub(crate) fn send_with(
        &self,
        method: &str,
        uri: &str,
        token: Option<&str>,
        peer: [u8; 4],
        headers: &[(&str, &str)],
        body: String,
    ) -> ((StatusCode, String, Value), Option<String>) {
        let (answer, headers) = self.exchange(method, uri, token, peer, headers, body);
        let etag = headers
            .get(header::ETAG)
            .map(|v| v.to_str().unwrap().to_owned());
        (answer, etag)
    }

    /// As `send_with`, answering every header of the response.
    pub(crate) fn exchange(
        &self,
        method: &str,
        uri: &str,
        token: Option<&str>,
        peer: [u8; 4],
        headers: &[(&str, &str)],
        body: String,
    ) -> ((StatusCode, String, Value), axum::http::HeaderMap) {
        let mut request = Request::builder().method(method).uri(uri);
        if let Some(t) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let mut request = request.body(Body::from(body)).unwrap();
        request
            .extensions_mut()
            .insert(ConnectInfo(SocketAddr::from((peer, 40_000))));
        block_on(async {
            let response = self.router.clone().oneshot(request).await.unwrap();
            let status = response.status();
            let kind = response
                .headers()
                .get(header::CONTENT_TYPE)
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default();
            assert!(response.headers().contains_key("x-request-id"));
            let headers = response.headers().clone();
            let bytes = axum::body::to_bytes(response.into_body(), 1 << 24)
                .await
                .unwrap();
            let body = serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
            ((status, kind, body), headers)
        })
    }
}

pub(crate) const HERE: [u8; 4] = [127, 0, 0, 1];

/// Runs one request on a runtime of its own, with timers as `crm serve`
/// has them.
pub(crate) fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

/// A new customer as the API takes it.
pub(crate) fn customer(id: &str, name: &str) -> Value {
    serde_json::json!({
        "customer_id": id, "name": name, "gender": "U", "birth_date": null,
        "region": "North", "city": "Pinecrest", "channel": "store",
        "joined_at": "2025-01-02", "tier": "bronze",
        "attributes": {
            "license_no": "250214704823", "store_type": "kiosk",
            "business_district": "school", "monthly_quota": 40
        }
    })
}

/// Creates customer `id` named `name`, as an agent.
pub(crate) fn add_customer(api: &Api, id: &str, name: &str) {
    let (status, body, _) = api.write(
        "POST",
        "/api/v1/customers",
        Role::Agent,
        None,
        &customer(id, name),
    );
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

impl Api {
    pub(crate) fn get(&self, uri: &str, role: Role) -> (StatusCode, Value) {
        let (status, _, body) = self.send("GET", uri, Some(self.token(role)), HERE);
        (status, body)
    }

    /// A JSON write; the status, body and ETag.
    pub(crate) fn write(
        &self,
        method: &str,
        uri: &str,
        role: Role,
        if_match: Option<&str>,
        body: &Value,
    ) -> (StatusCode, Value, Option<String>) {
        let mut headers = vec![("content-type", "application/json")];
        if let Some(m) = if_match {
            headers.push(("if-match", m));
        }
        let ((status, _, body), etag) = self.send_with(
            method,
            uri,
            Some(self.token(role)),
            HERE,
            &headers,
            body.to_string(),
        );
        (status, body, etag)
    }

    /// A request with a raw body of `kind`.
    pub(crate) fn upload(
        &self,
        method: &str,
        uri: &str,
        role: Role,
        kind: &str,
        body: Vec<u8>,
    ) -> (StatusCode, Value) {
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header(
                header::AUTHORIZATION,
                format!("Bearer {}", self.token(role)),
            )
            .header(header::CONTENT_TYPE, kind)
            .body(Body::from(body))
            .unwrap();
        request
            .extensions_mut()
            .insert(ConnectInfo(SocketAddr::from((HERE, 40_000))));
        block_on(async {
            let response = self.router.clone().oneshot(request).await.unwrap();
            let status = response.status();
            let bytes = axum::body::to_bytes(response.into_body(), 1 << 24)
                .await
                .unwrap();
            let body = serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
            (status, body)
        })
    }

    pub(crate) fn delete(
        &self,
        uri: &str,
        role: Role,
        if_match: Option<&str>,
    ) -> (StatusCode, Value) {
        let headers: Vec<(&str, &str)> = if_match.map(|m| ("if-match", m)).into_iter().collect();
        let ((status, _, body), _) = self.send_with(
            "DELETE",
            uri,
            Some(self.token(role)),
            HERE,
            &headers,
            String::new(),
        );
        (status, body)
    }
}

pub(crate) fn ids(page: &Value, key: &str) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i[key].as_str().unwrap().to_owned())
        .collect()
}

pub(crate) fn urlencode(text: &str) -> String {
    text.bytes().map(|b| format!("%{b:02X}")).collect()
}

/// Waits until the segment memberships and every customer's scores are
/// worked out (in the background).
pub(crate) fn settled(api: &Api) {
    for _ in 0..200 {
        if api.state.segments_of(0).is_some() && server::http::scores_are_current(&api.state) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("the scores were not worked out in 10 s");
}

/// Calls into plugin `id` so far, from /metrics.
pub(crate) fn plugin_calls(api: &Api, id: &str) -> u64 {
    let (_, _, metrics) = api.send("GET", "/metrics", None, HERE);
    let prefix = format!("crm_plugin_calls_total{{plugin=\"{id}\"}} ");
    metrics
        .as_str()
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no {prefix} in /metrics"))
        .parse()
        .unwrap()
}

/// Reads the record at `uri`, changes it with `edit`, and writes it back
/// with its revision as If-Match.
pub(crate) fn edit_record(api: &Api, uri: &str, role: Role, edit: impl FnOnce(&mut Value)) {
    let (status, mut record) = api.get(uri, Role::Viewer);
    assert_eq!(status, StatusCode::OK, "{record}");
    let revision = record["revision"].as_u64().unwrap();
    record.as_object_mut().unwrap().remove("revision");
    edit(&mut record);
    let if_match = format!("\"{revision}\"");
    let (status, body, _) = api.write("PUT", uri, role, Some(&if_match), &record);
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// A transaction line of `customer`, of the first product, as JSON.
pub(crate) fn transaction_line(api: &Api, txn_id: &str, customer: &str) -> Value {
    let (_, products) = api.get("/api/v1/products?limit=1", Role::Viewer);
    serde_json::json!({
        "txn_id": txn_id, "customer_id": customer, "ts": "2025-06-01T10:00:00Z",
        "sku": products["items"][0]["sku"], "quantity": 40, "amount": "900.00", "cost": "100.00",
        "channel": "phone", "region": "North"
    })
}

pub(crate) fn post_line(api: &Api, line: &Value) {
    let (status, body, _) = api.write("POST", "/api/v1/transactions", Role::Integrator, None, line);
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

/// The 360 as the API serves it from the snapshot, against the same
/// document read from the store, for `ids`.
pub(crate) fn assert_360_agrees(api: &Api, ids: &[String], timeline: usize) {
    for id in ids {
        // The R, F and M ranks and the memberships are worked out again in
        // the background after a write: one of them may land between the
        // two reads, never twice in a row.
        let mut tries = 0;
        loop {
            let (memory, store) = server::http::customer_360_both_ways(&api.state, id, timeline);
            let memory = memory.unwrap_or_else(|| panic!("{id}: no 360 from memory"));
            tries += 1;
            if tries < 20 && Some(&memory) != store.as_ref() {
                std::thread::sleep(std::time::Duration::from_millis(100));
                continue;
            }
            assert_eq!(Some(&memory), store.as_ref(), "{id}, timeline {timeline}");
            break;
        }
    }
}

/// A plugin's directory as the API takes it: a tar.gz.
pub(crate) fn package(name: &str) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    tar.append_dir_all(name, plugin_package(name)).unwrap();
    tar.into_inner().unwrap().finish().unwrap()
}

/// A multipart/form-data body with one file per part.
pub(crate) fn multipart(files: &[(&str, &str)]) -> (String, Vec<u8>) {
    let boundary = "crm-test-boundary-7d1f";
    let mut body = String::new();
    for (name, text) in files {
        body.push_str(&format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{name}\"\r\nContent-Type: text/csv\r\n\r\n{text}\r\n"
        ));
    }
    body.push_str(&format!("--{boundary}--\r\n"));
    (
        format!("multipart/form-data; boundary={boundary}"),
        body.into_bytes(),
    )
}

pub(crate) fn wait_for_job(api: &Api, location: &str) -> Value {
    for _ in 0..600 {
        let (status, job) = api.get(location, Role::Integrator);
        assert_eq!(status, StatusCode::OK, "{job}");
        if job["state"] != "running" {
            return job;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("the import did not end");
}
