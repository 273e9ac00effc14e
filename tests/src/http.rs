//! The HTTP API: every route through the router in process (with the
//! client address a connection would give), and one run of `crm serve` on
//! a loopback socket, stopped with SIGTERM.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Arc;

use app::tokens::{Role, Tokens};
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode, header};
use generate::Industry;
use serde_json::Value;
use server::http::{AppState, HttpConfig, router};
use tower::ServiceExt;

use crate::support::{crm, crm_bin, dataset, import, open_store, plugin_package};

pub(crate) struct Api {
    _dir: tempfile::TempDir,
    router: axum::Router,
    tokens: Vec<(Role, String)>,
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
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

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

/// A retail store of `customers` in `DIR/store`, and a token of `role` made
/// by `crm token create`.
pub(crate) fn store_with_token(customers: u32, role: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("store");
    import(&*open_store(&db), &dataset(Industry::Retail, customers, 3)).unwrap();
    let out = crm(&[
        "token",
        "create",
        "--db",
        db.to_str().unwrap(),
        "--role",
        role,
        "--name",
        role,
    ]);
    assert!(out.status.success());
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    (dir, token)
}

/// `crm serve` on a free loopback port: the process, its log and its address.
pub(crate) fn serve(
    db: &str,
) -> (
    std::process::Child,
    BufReader<std::process::ChildStderr>,
    String,
) {
    let mut child = Command::new(crm_bin())
        .args(["serve", "--db", db, "--addr", "127.0.0.1:0"])
        .env_remove("CRM_DB")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while stderr.read_line(&mut line).unwrap() > 0 {
        if let Some(rest) = line.trim().split(" on http://").nth(1)
            && line.starts_with("serving")
        {
            let addr = rest.to_owned();
            return (child, stderr, addr);
        }
        line.clear();
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("crm serve did not print its address");
}

/// One HTTP/1.1 POST of a JSON body over a socket; the status code, or 0
/// when no answer came (the server was killed, or is gone).
pub(crate) fn post(addr: &str, path: &str, token: &str, body: &str) -> u16 {
    let Ok(mut stream) = TcpStream::connect(addr) else {
        return 0;
    };
    let sent = write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut response = String::new();
    if sent.is_err() || stream.read_to_string(&mut response).is_err() {
        return 0;
    }
    response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

/// Writers answered together share a flush (group commit): every customer
/// the API answered 201 for is in the store after `crm serve` is killed
/// with SIGKILL while writers are still sending, and the flushes made count
/// fewer than the writes.
#[test]
fn acknowledged_api_writes_survive_a_kill() {
    for kill_after in [1, 150] {
        let (dir, token) = store_with_token(20, "agent");
        let db = dir.path().join("store");
        let (mut child, _stderr, addr) = serve(db.to_str().unwrap());
        let acked = Arc::new(std::sync::Mutex::new(Vec::new()));
        let writers: Vec<_> = (0..6)
            .map(|w| {
                let (addr, token, acked) = (addr.clone(), token.clone(), Arc::clone(&acked));
                std::thread::spawn(move || {
                    for i in 0..400 {
                        let id = format!("K{w}{i:05}");
                        let mut body = customer(&id, "Kill test");
                        body.as_object_mut().unwrap().remove("attributes");
                        match post(&addr, "/api/v1/customers", &token, &body.to_string()) {
                            201 => acked.lock().unwrap().push(id),
                            0 => return,
                            other => panic!("POST {id}: status {other}"),
                        }
                    }
                })
            })
            .collect();
        while acked.lock().unwrap().len() < kill_after {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        if kill_after > 1 {
            let (status, metrics) = get(&addr, "/metrics", Some(&token));
            assert_eq!(status, "HTTP/1.1 200 OK");
            let count = |name: &str| -> u64 {
                metrics
                    .lines()
                    .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
                    .unwrap_or_else(|| panic!("{name} in {metrics}"))
            };
            let (flushes, flushed) = (
                count("crm_store_flushes_total "),
                count("crm_store_flushed_writes_total "),
            );
            assert!(flushed >= kill_after as u64, "{flushed} writes flushed");
            assert!(flushes < flushed, "{flushes} flushes for {flushed} writes");
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        for writer in writers {
            writer.join().unwrap();
        }
        let acked = acked.lock().unwrap().clone();
        assert!(acked.len() >= kill_after);
        crate::support::assert_acknowledged_kept(&db, model::EntityKind::Customer, &acked);
    }
}

#[test]
fn crm_serve_answers_on_a_loopback_socket_and_stops_cleanly() {
    let (dir, token) = store_with_token(50, "viewer");
    let db = dir.path().join("store");
    let (mut child, mut stderr, addr) = serve(db.to_str().unwrap());
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
    // The request's line, as `tracing`'s formatter writes an event:
    // `2026-12-05T00:05:39.100048Z  INFO server::http: request
    // request_id=… method=GET route=… status=200 ms=0.123`.
    let line = rest
        .lines()
        .find(|l| l.contains("route=/api/v1/customers/{id}"))
        .unwrap();
    let (time, fields) = line
        .split_once("Z  INFO server::http: request request_id=")
        .unwrap_or_else(|| panic!("{line}"));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let (seconds, micros) = time.split_once('.').unwrap();
    assert!(
        model::Timestamp::parse(&format!("{seconds}Z")).is_ok(),
        "{line}"
    );
    assert!(micros.len() == 6 && digits(micros), "{line}");
    let fields: Vec<&str> = fields.split(' ').collect();
    let (prefix, n) = fields[0].split_once('-').unwrap();
    assert!(prefix.len() == 16 && n.len() >= 12 && digits(n), "{line}");
    assert_eq!(
        fields[1..4],
        ["method=GET", "route=/api/v1/customers/{id}", "status=200"],
        "{line}"
    );
    let (whole, fraction) = fields[4]
        .strip_prefix("ms=")
        .unwrap()
        .split_once('.')
        .unwrap();
    assert!(
        digits(whole) && fraction.len() == 3 && digits(fraction),
        "{line}"
    );
    assert_eq!(fields.len(), 5, "{line}");
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
fn add_customer(api: &Api, id: &str, name: &str) {
    let (status, body, _) = api.write(
        "POST",
        "/api/v1/customers",
        Role::Agent,
        None,
        &customer(id, name),
    );
    assert_eq!(status, StatusCode::CREATED, "{body}");
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
    fn upload(
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

    fn delete(&self, uri: &str, role: Role, if_match: Option<&str>) -> (StatusCode, Value) {
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

fn ids(page: &Value, key: &str) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i[key].as_str().unwrap().to_owned())
        .collect()
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

fn urlencode(text: &str) -> String {
    text.bytes().map(|b| format!("%{b:02X}")).collect()
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
fn the_customer_360_merges_lines_with_metrics_and_scores() {
    let api = Api::new();
    let (_, page) = api.get("/api/v1/customers?limit=500", Role::Viewer);
    // A customer with purchases.
    let mut found = false;
    for cid in ids(&page, "customer_id") {
        let (status, view) = api.get(&format!("/api/v1/customers/{cid}/view"), Role::Agent);
        assert_eq!(status, StatusCode::OK, "{view}");
        let baskets = view["metrics"]["baskets"].as_u64().unwrap();
        if baskets == 0 {
            continue;
        }
        found = true;
        let (_, txns) = api.get(
            &format!("/api/v1/transactions?customer_id={cid}&limit=500"),
            Role::Viewer,
        );
        let (_, interactions) = api.get(
            &format!("/api/v1/interactions?customer_id={cid}&limit=500"),
            Role::Viewer,
        );
        let timeline = view["timeline"].as_array().unwrap();
        let n = txns["items"].as_array().unwrap().len()
            + interactions["items"].as_array().unwrap().len();
        assert_eq!(
            timeline.len() + view["timeline_more"].as_u64().unwrap() as usize,
            n
        );
        let times: Vec<&str> = timeline.iter().map(|t| t["ts"].as_str().unwrap()).collect();
        assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first");
        assert!(timeline.iter().any(|t| t["type"] == "transaction"));
        let scores = view["scores"].as_array().unwrap();
        assert!(
            scores
                .iter()
                .any(|s| s["plugin"] == "tobacco-retail" && s["reasons"].is_array()),
            "{view}"
        );
        break;
    }
    assert!(found);
}

/// Waits until the segment memberships and every customer's scores are
/// worked out (in the background).
fn settled(api: &Api) {
    for _ in 0..200 {
        if api.state.segments_of(0).is_some() && server::http::scores_are_current(&api.state) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("the scores were not worked out in 10 s");
}

/// Calls into plugin `id` so far, from /metrics.
fn plugin_calls(api: &Api, id: &str) -> u64 {
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
fn edit_record(api: &Api, uri: &str, role: Role, edit: impl FnOnce(&mut Value)) {
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
fn transaction_line(api: &Api, txn_id: &str, customer: &str) -> Value {
    let (_, products) = api.get("/api/v1/products?limit=1", Role::Viewer);
    serde_json::json!({
        "txn_id": txn_id, "customer_id": customer, "ts": "2025-06-01T10:00:00Z",
        "sku": products["items"][0]["sku"], "quantity": 40, "amount": "900.00", "cost": "100.00",
        "channel": "phone", "region": "North"
    })
}

fn post_line(api: &Api, line: &Value) {
    let (status, body, _) = api.write("POST", "/api/v1/transactions", Role::Integrator, None, line);
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

/// The 360 as the API serves it from the snapshot, against the same
/// document read from the store, for `ids`.
fn assert_360_agrees(api: &Api, ids: &[String], timeline: usize) {
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

#[test]
fn the_customer_360_from_memory_is_the_one_read_from_the_store() {
    let api = Api::new();
    let (_, page) = api.get("/api/v1/customers?limit=500", Role::Viewer);
    let all = ids(&page, "customer_id");
    assert_eq!(all.len(), 200);
    // Segment memberships and every customer's scores are worked out in
    // the background: the 360 from memory reads the scores from there,
    // the store path calls the plugin.
    settled(&api);
    for timeline in [0, 3, 100, 1000] {
        assert_360_agrees(&api, &all, timeline);
    }
    // Every kind of timeline entry and value the model has, after writes
    // through the API: a changed customer (its revision grows), a line
    // whose id has no digits, lines of the same second, an interaction
    // with a product, a representative, a campaign and a rating.
    let cid = all[7].clone();
    let (_, view) = api.get(&format!("/api/v1/customers/{cid}/view"), Role::Viewer);
    let revision = view["customer"]["revision"].as_u64().unwrap();
    let mut record = view["customer"].clone();
    record.as_object_mut().unwrap().remove("revision");
    record["name"] = "Zoë Ünlü 陈".into();
    record["birth_date"] = Value::Null;
    let (status, body, _) = api.write(
        "PUT",
        &format!("/api/v1/customers/{cid}"),
        Role::Agent,
        Some(&format!("\"{revision}\"")),
        &record,
    );
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, products) = api.get("/api/v1/products?limit=1", Role::Viewer);
    let sku = products["items"][0]["sku"].as_str().unwrap().to_owned();
    let (_, campaigns) = api.get("/api/v1/campaigns?limit=1", Role::Viewer);
    let campaign = campaigns["items"][0]["campaign_id"]
        .as_str()
        .unwrap()
        .to_owned();
    for txn_id in ["odd-line", "T-000042", "T-42", "X9999999999999999"] {
        let line = serde_json::json!({
            "txn_id": txn_id, "customer_id": cid, "ts": "2025-06-01T10:00:00Z", "sku": sku,
            "quantity": 2, "amount": "26.05", "cost": "14.00", "channel": "phone", "region": "Far East"
        });
        let (status, body, _) = api.write(
            "POST",
            "/api/v1/transactions",
            Role::Integrator,
            None,
            &line,
        );
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    for interaction in [
        serde_json::json!({
            "interaction_id": "survey/7", "customer_id": cid, "ts": "2025-06-01T10:00:00Z",
            "kind": "survey", "department": "sales", "sku": sku, "rep": "Ana Núñez",
            "region": "North", "topic": null, "resolved_ts": null, "rating": 4,
            "campaign_id": null
        }),
        serde_json::json!({
            "interaction_id": "I-answer-1", "customer_id": cid, "ts": "2025-05-30T08:00:00Z",
            "kind": "promotion_response", "department": "marketing", "sku": null, "rep": null,
            "region": "North", "topic": null, "resolved_ts": null, "rating": null,
            "campaign_id": campaign
        }),
        serde_json::json!({
            "interaction_id": "I9000000099", "customer_id": cid, "ts": "2025-05-29T08:00:00Z",
            "kind": "consultation", "department": "service", "sku": sku, "rep": "Ana Núñez",
            "region": "South", "topic": "price", "resolved_ts": "2025-05-31T09:00:00Z",
            "rating": null, "campaign_id": null
        }),
    ] {
        let (status, body, _) = api.write(
            "POST",
            "/api/v1/interactions",
            Role::Agent,
            None,
            &interaction,
        );
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let (status, view) = api.get(
        &format!("/api/v1/customers/{cid}/view?timeline=5"),
        Role::Viewer,
    );
    assert_eq!(status, StatusCode::OK);
    assert_eq!(view["customer"]["revision"], revision + 1);
    assert_eq!(view["customer"]["name"], "Zoë Ünlü 陈");
    let shown: Vec<&str> = view["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            t["txn_id"]
                .as_str()
                .or(t["interaction_id"].as_str())
                .unwrap()
        })
        .collect();
    assert!(
        shown.contains(&"odd-line") && shown.contains(&"survey/7"),
        "{view}"
    );
    let changed = vec![cid.clone(), all[8].clone()];
    for timeline in [0, 2, 5, 100] {
        assert_360_agrees(&api, &changed, timeline);
    }
    // Worked out again after the writes.
    settled(&api);
    assert_360_agrees(&api, &all, 100);
    // A new customer, then read at once.
    let (status, body, _) = api.write(
        "POST",
        "/api/v1/customers",
        Role::Agent,
        None,
        &customer("C9300001", "Nuevo"),
    );
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_360_agrees(&api, &["C9300001".to_owned()], 100);
}

/// After writes, a 360 takes the scores worked out ahead for the customers
/// the writes left as they were, and calls the plugin for the others; both
/// agree with the plugin's answer read through the store.
#[test]
fn writes_leave_the_other_customers_scores_in_use() {
    // Not worked out again in this test once settled: what follows reads
    // the sheet made before the writes.
    let api = Api::with(
        app::Config {
            scores_after_quiet: std::time::Duration::from_secs(3600),
            ..app::Config::default()
        },
        HttpConfig::default(),
    );
    settled(&api);
    let (_, page) = api.get("/api/v1/customers?limit=500", Role::Viewer);
    let all = ids(&page, "customer_id");
    let plugin = "tobacco-retail";
    let view = |id: &str| {
        let (status, view) = api.get(&format!("/api/v1/customers/{id}/view"), Role::Viewer);
        assert_eq!(status, StatusCode::OK, "{view}");
        assert!(!view["scores"].as_array().unwrap().is_empty(), "{view}");
        view
    };
    let calls = plugin_calls(&api, plugin);
    for id in &all[..10] {
        view(id);
    }
    assert_eq!(
        plugin_calls(&api, plugin),
        calls,
        "every score from the sheet"
    );

    // One customer written: their scores from the plugin, the others' not.
    let written = &all[3];
    edit_record(
        &api,
        &format!("/api/v1/customers/{written}"),
        Role::Agent,
        |record| {
            record["attributes"]["monthly_quota"] = 9_999.into();
            record["attributes"]["business_district"] = "school".into();
        },
    );
    let calls = plugin_calls(&api, plugin);
    view(written);
    assert_eq!(plugin_calls(&api, plugin), calls + 1, "the written one's");
    for id in all[..10].iter().filter(|id| *id != written) {
        view(id);
    }
    assert_eq!(
        plugin_calls(&api, plugin),
        calls + 1,
        "the others' from the sheet"
    );
    assert_360_agrees(&api, &all, 20);

    // A line: its customer's ranks, and anyone's, may move.
    let line = transaction_line(&api, "T-scores-1", &all[5]);
    post_line(&api, &line);
    assert_360_agrees(&api, &all, 20);
    let sku = line["sku"].as_str().unwrap();

    // A product concerns everyone: every score from the plugin.
    edit_record(
        &api,
        &format!("/api/v1/products/{sku}"),
        Role::Admin,
        |product| product["name"] = "Renamed".into(),
    );
    let calls = plugin_calls(&api, plugin);
    view(&all[0]);
    assert_eq!(
        plugin_calls(&api, plugin),
        calls + 1,
        "after a product change"
    );
    assert_360_agrees(&api, &all, 20);
    assert!(
        !server::http::scores_are_current(&api.state),
        "the sheet stayed the one made before the writes"
    );
}

/// While writes never pause, the scores are worked out again once they have
/// been behind for the longest allowed, counted from the first write they
/// miss: a sheet made long ago, and current until now, is not worked out
/// again at the first write.
#[test]
fn scores_behind_for_too_long_are_worked_out_again_counted_from_the_first_write() {
    use std::time::{Duration, Instant};
    let every = Duration::from_secs(3);
    let api = Api::with(
        app::Config {
            scores_after_quiet: Duration::from_secs(3600),
            scores_at_least_every: every,
            ..app::Config::default()
        },
        HttpConfig::default(),
    );
    settled(&api);
    // The sheet is older than `every`, and current all along.
    std::thread::sleep(every + Duration::from_millis(500));
    server::http::refresh_scores(&api.state);
    assert!(server::http::scores_are_current(&api.state));

    let (_, page) = api.get("/api/v1/customers?limit=1", Role::Viewer);
    let id = ids(&page, "customer_id").remove(0);
    edit_record(
        &api,
        &format!("/api/v1/customers/{id}"),
        Role::Agent,
        |record| record["name"] = "Behind Sheet".into(),
    );
    let written = Instant::now();
    // Once the write is in the snapshot, the sheet is behind.
    let deadline = written + Duration::from_secs(2);
    while server::http::scores_are_current(&api.state) {
        assert!(
            Instant::now() < deadline,
            "the write never reached the snapshot"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    server::http::refresh_scores(&api.state);
    assert!(
        !server::http::scores_are_current(&api.state),
        "worked out again at the first write"
    );
    // `every` after the write, they are.
    std::thread::sleep(every.saturating_sub(written.elapsed()) + Duration::from_millis(100));
    server::http::refresh_scores(&api.state);
    assert!(
        server::http::scores_are_current(&api.state),
        "still behind {:?} after the first write",
        written.elapsed()
    );
    let (_, view) = api.get(&format!("/api/v1/customers/{id}/view"), Role::Viewer);
    assert_eq!(view["customer"]["name"], "Behind Sheet", "{view}");
}

/// A write waits for the readers running and holds up none meanwhile: a
/// 360 is answered while a delete waits behind a long reader (a segment
/// tested over every customer, the score sheet worked out).
#[test]
fn a_waiting_write_holds_up_no_reader() {
    use std::sync::mpsc;
    use std::time::Duration;
    let api = &Api::new();
    let (_, page) = api.get("/api/v1/interactions?limit=1", Role::Viewer);
    let id = page["items"][0]["interaction_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let customer = page["items"][0]["customer_id"].as_str().unwrap().to_owned();
    let view_uri = format!("/api/v1/customers/{customer}/view?timeline=1000");
    let in_timeline = |view: &Value| {
        view["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["interaction_id"] == id.as_str())
    };
    std::thread::scope(|s| {
        let long_reader = api.state.read();
        let (deleted_tx, deleted) = mpsc::channel();
        let delete_uri = format!("/api/v1/interactions/{id}");
        s.spawn(move || {
            deleted_tx
                .send(api.delete(&delete_uri, Role::Agent, None))
                .unwrap()
        });
        // The delete is waiting for the lock by now.
        std::thread::sleep(Duration::from_millis(300));
        let (viewed_tx, viewed) = mpsc::channel();
        let view_uri = &view_uri;
        s.spawn(move || viewed_tx.send(api.get(view_uri, Role::Viewer)).unwrap());
        let view = viewed.recv_timeout(Duration::from_secs(30));
        let waited = deleted.try_recv().is_err();
        drop(long_reader);
        let (status, view) = view.expect("a 360 is answered while the delete waits");
        assert_eq!(status, StatusCode::OK, "{view}");
        assert!(waited, "the delete waits for the reader");
        assert!(in_timeline(&view), "not deleted yet: {view}");
        let (status, body) = deleted
            .recv_timeout(Duration::from_secs(30))
            .expect("the delete goes through once the reader is done");
        assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    });
    let (status, _) = api.get(&format!("/api/v1/interactions/{id}"), Role::Viewer);
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, view) = api.get(&view_uri, Role::Viewer);
    assert!(!in_timeline(&view), "{view}");
}

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

/// A plugin's directory as the API takes it: a tar.gz.
fn package(name: &str) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    tar.append_dir_all(name, plugin_package(name)).unwrap();
    tar.into_inner().unwrap().finish().unwrap()
}

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

/// A multipart/form-data body with one file per part.
fn multipart(files: &[(&str, &str)]) -> (String, Vec<u8>) {
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

fn wait_for_job(api: &Api, location: &str) -> Value {
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

/// A webhook receiver on a loopback port: answers 500 to the first request
/// and 200 to the rest, and keeps each request's headers and body.
/// A request as received: its headers (names lowercased) and body.
pub(crate) type Received = (Vec<(String, String)>, String);

pub(crate) struct Receiver {
    pub(crate) url: String,
    got: Arc<std::sync::Mutex<Vec<Received>>>,
}

impl Receiver {
    pub(crate) fn start() -> Receiver {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let got = Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = Arc::clone(&got);
        std::thread::spawn(move || {
            for (n, stream) in listener.incoming().enumerate() {
                let mut stream = stream.unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut headers = Vec::new();
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                loop {
                    line.clear();
                    reader.read_line(&mut line).unwrap();
                    let l = line.trim_end();
                    if l.is_empty() {
                        break;
                    }
                    let (k, v) = l.split_once(':').unwrap();
                    headers.push((k.trim().to_lowercase(), v.trim().to_owned()));
                }
                let length: usize = headers
                    .iter()
                    .find(|(k, _)| k == "content-length")
                    .map_or(0, |(_, v)| v.parse().unwrap());
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap();
                kept.lock()
                    .unwrap()
                    .push((headers, String::from_utf8(body).unwrap()));
                let status = if n == 0 {
                    "500 Internal Server Error"
                } else {
                    "200 OK"
                };
                write!(
                    stream,
                    "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                )
                .unwrap();
            }
        });
        Receiver { url, got }
    }

    /// Waits for a delivered request whose body holds `text`.
    pub(crate) fn wait_for(&self, text: &str) -> Received {
        for _ in 0..400 {
            let got = self.got.lock().unwrap();
            // The first request of all was answered 500: not delivered.
            if let Some(hit) = got.iter().skip(1).find(|(_, b)| b.contains(text)) {
                return hit.clone();
            }
            drop(got);
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
        panic!(
            "no webhook delivery with {text}: {:?}",
            self.got.lock().unwrap()
        );
    }
}

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
