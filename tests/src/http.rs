//! The HTTP API: every route through the router in process (with the
//! client address a connection would give), and one run of `crm serve` on
//! a loopback socket, stopped with SIGTERM.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode, header};
use generate::Industry;
use serde_json::Value;
use server::http::{AppState, router};
use server::tokens::{Role, Tokens};
use tower::ServiceExt;

use crate::support::{crm, crm_bin, dataset, import, open_store};

struct Api {
    _dir: tempfile::TempDir,
    state: Arc<AppState>,
    tokens: Vec<(Role, String)>,
}

impl Api {
    fn new() -> Api {
        let dir = tempfile::tempdir().unwrap();
        let store = open_store(&dir.path().join("store"));
        import(&*store, &dataset(Industry::Retail, 200, 3)).unwrap();
        let snapshot = server::host::build(&*store).unwrap();
        let tokens = Tokens::new(Arc::clone(&store));
        let tokens = Role::ALL
            .into_iter()
            .map(|role| (role, tokens.create(role.as_str(), role).unwrap()))
            .collect();
        Api {
            _dir: dir,
            state: AppState::new(store, snapshot, None),
            tokens,
        }
    }

    fn token(&self, role: Role) -> &str {
        &self.tokens.iter().find(|(r, _)| *r == role).unwrap().1
    }

    /// Sends a request from `peer`; the status, content type and body.
    fn send(
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
    fn send_with(
        &self,
        method: &str,
        uri: &str,
        token: Option<&str>,
        peer: [u8; 4],
        headers: &[(&str, &str)],
        body: String,
    ) -> ((StatusCode, String, Value), Option<String>) {
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
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async {
            let response = router(Arc::clone(&self.state))
                .oneshot(request)
                .await
                .unwrap();
            let status = response.status();
            let kind = response
                .headers()
                .get(header::CONTENT_TYPE)
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default();
            assert!(response.headers().contains_key("x-request-id"));
            let etag = response
                .headers()
                .get(header::ETAG)
                .map(|v| v.to_str().unwrap().to_owned());
            let bytes = axum::body::to_bytes(response.into_body(), 1 << 24)
                .await
                .unwrap();
            let body = serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
            ((status, kind, body), etag)
        })
    }
}

const HERE: [u8; 4] = [127, 0, 0, 1];

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
        assert!(body["metrics"]["baskets"].is_u64(), "{body}");
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
}

/// One HTTP/1.1 GET over a socket; the status line and body.
fn get(addr: &str, path: &str, token: Option<&str>) -> (String, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_owned(), body.to_owned())
}

#[test]
fn crm_serve_answers_on_a_loopback_socket_and_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("store");
    import(&*open_store(&db), &dataset(Industry::Retail, 50, 3)).unwrap();
    let db_arg = db.to_str().unwrap();
    let out = crm(&[
        "token", "create", "--db", db_arg, "--role", "viewer", "--name", "smoke",
    ]);
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let mut child = Command::new(crm_bin())
        .args(["serve", "--db", db_arg, "--addr", "127.0.0.1:0"])
        .env_remove("CRM_DB")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut addr = None;
    let mut line = String::new();
    while stderr.read_line(&mut line).unwrap() > 0 {
        if let Some(rest) = line.trim().split(" on http://").nth(1)
            && line.starts_with("serving")
        {
            addr = Some(rest.to_owned());
            break;
        }
        line.clear();
    }
    let addr = addr.expect("crm serve prints its address");
    assert_eq!(get(&addr, "/healthz", None).0, "HTTP/1.1 200 OK");
    let (status, body) = get(&addr, "/api/v1/customers/C0000001", Some(&token));
    assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
    assert!(body.contains("\"customer_id\":\"C0000001\""), "{body}");
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).unwrap();
    assert!(status.success(), "{rest}");
    assert!(rest.contains("the store is flushed"), "{rest}");
    assert!(
        rest.contains("route=/api/v1/customers/{id} status=200"),
        "{rest}"
    );
}

/// A new customer as the API takes it.
fn customer(id: &str, name: &str) -> Value {
    serde_json::json!({
        "customer_id": id, "name": name, "gender": "U", "birth_date": null,
        "region": "North", "city": "Pinecrest", "channel": "store",
        "joined_at": "2025-01-02", "tier": "bronze", "attributes": {}
    })
}

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
        "/api/v1/customers/C9000001",
        Some(&agent),
        HERE,
        &[],
        String::new(),
    );
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["name"], "Kiosk <script>alert(1)</script>");
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
