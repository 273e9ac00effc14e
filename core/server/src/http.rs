//! The HTTP API (`crm serve`): axum on tokio.
//!
//! Every request gets an id (`x-request-id`, kept when the client sends
//! one) that appears in its log line; errors are RFC 9457 problem details
//! (`application/problem+json`) naming what is wrong; `/healthz` says the
//! process is up, `/readyz` that the store and the analysis snapshot are
//! open, `/metrics` gives Prometheus text. Routes under `/api/v1` need a
//! bearer token (`crm token create`), whose role decides what it may do.
//! SIGINT and SIGTERM stop taking connections, finish the requests in
//! flight, and flush the store.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use analysis::Snapshot;
use anyhow::{Context as _, Result};
use axum::extract::{Path as UrlPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use model::{EntityKind, Record};
use serde::Serialize;
use serde_json::{Value, json};
use store::Store;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};

use crate::tokens::{Role, Tokens};

/// Largest request body accepted (413 beyond).
pub const MAX_BODY: usize = 1 << 20;

/// What the handlers share.
pub struct AppState {
    pub store: Arc<dyn Store>,
    /// The store's plugins: their fields are checked and their validate
    /// hooks run on every write of a customer.
    pub plugins: Option<plugin_host::Registry>,
    pub snapshot: RwLock<Snapshot>,
    pub tokens: Tokens,
    pub metrics: Metrics,
    /// Failed authentications per client address, for rate limiting.
    failures: Mutex<std::collections::HashMap<std::net::IpAddr, (u32, Instant)>>,
}

impl AppState {
    pub fn new(
        store: Arc<dyn Store>,
        snapshot: Snapshot,
        plugins: Option<plugin_host::Registry>,
    ) -> Arc<AppState> {
        Arc::new(AppState {
            plugins,
            tokens: Tokens::new(Arc::clone(&store)),
            store,
            snapshot: RwLock::new(snapshot),
            metrics: Metrics::default(),
            failures: Mutex::new(Default::default()),
        })
    }
}

/// Request counts and latencies, by route and status class.
#[derive(Default)]
pub struct Metrics {
    requests: Mutex<std::collections::BTreeMap<(String, u16), (u64, f64)>>,
    in_flight: AtomicU64,
}

impl Metrics {
    fn record(&self, route: &str, status: u16, seconds: f64) {
        let mut m = self.requests.lock().expect("metrics lock");
        let e = m.entry((route.to_owned(), status)).or_default();
        e.0 += 1;
        e.1 += seconds;
    }
}

/// An RFC 9457 problem: the status, a title, and what exactly is wrong.
#[derive(Debug, Serialize)]
pub struct Problem {
    #[serde(skip)]
    pub status: StatusCode,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub title: &'static str,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl Problem {
    pub fn new(status: StatusCode, title: &'static str, detail: impl Into<String>) -> Problem {
        Problem {
            status,
            kind: "about:blank",
            title,
            detail: detail.into(),
            field: None,
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let mut body = serde_json::to_value(&self).unwrap_or(Value::Null);
        body["status"] = json!(self.status.as_u16());
        let mut response = (self.status, Json(body)).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        response
    }
}

impl From<store::StoreError> for Problem {
    fn from(e: store::StoreError) -> Problem {
        match e {
            store::StoreError::Conflict(detail) => {
                Problem::new(StatusCode::CONFLICT, "Conflict", detail)
            }
            other => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "Storage unavailable",
                other.to_string(),
            ),
        }
    }
}

/// The role of the request's bearer token, set by the authentication layer.
#[derive(Clone, Copy, Debug)]
pub struct Caller(pub Role);

/// Failed authentications allowed per client in a minute before 429.
const FAILURES_PER_MINUTE: u32 = 20;

async fn authenticate(
    State(state): State<Arc<AppState>>,
    mut request: Request,
    next: Next,
) -> Response {
    let peer = request
        .extensions()
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    if let Some(ip) = peer {
        let failures = state.failures.lock().expect("failures lock");
        if let Some(&(n, since)) = failures.get(&ip)
            && n >= FAILURES_PER_MINUTE
            && since.elapsed() < Duration::from_secs(60)
        {
            return Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                "Too many failed sign-ins",
                "too many requests with a wrong token from this address; wait a minute",
            )
            .into_response();
        }
    }
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let role = match token {
        None => Err("give a token as `Authorization: Bearer TOKEN` (crm token create makes one)"),
        Some(t) => state
            .tokens
            .role_of(t)
            .ok()
            .flatten()
            .ok_or("the token is not known (or was revoked)"),
    };
    match role {
        Ok(role) => {
            request.extensions_mut().insert(Caller(role));
            next.run(request).await
        }
        Err(why) => {
            if let Some(ip) = peer {
                let mut failures = state.failures.lock().expect("failures lock");
                let e = failures.entry(ip).or_insert((0, Instant::now()));
                if e.1.elapsed() >= Duration::from_secs(60) {
                    *e = (0, Instant::now());
                }
                e.0 += 1;
            }
            let mut response =
                Problem::new(StatusCode::UNAUTHORIZED, "Not signed in", why).into_response();
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            response
        }
    }
}

/// Fails unless the caller's role is one of `allowed`.
pub fn require(caller: Caller, allowed: &[Role], what: &str) -> Result<(), Problem> {
    if allowed.contains(&caller.0) || caller.0 == Role::Admin {
        Ok(())
    } else {
        Err(Problem::new(
            StatusCode::FORBIDDEN,
            "Forbidden",
            format!("a token of role {} may not {what}", caller.0.as_str()),
        ))
    }
}

/// Logs each request with its id, and counts it.
async fn observe(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_owned();
    state.metrics.in_flight.fetch_add(1, Ordering::Relaxed);
    let response = next.run(request).await;
    state.metrics.in_flight.fetch_sub(1, Ordering::Relaxed);
    let seconds = started.elapsed().as_secs_f64();
    let status = response.status().as_u16();
    state.metrics.record(&route, status, seconds);
    tracing::info!(request_id = %id, %method, route = %route, status, ms = seconds * 1000.0, "request");
    response
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    match state.store.count(EntityKind::Customer) {
        Ok(_) => "ready\n".into_response(),
        Err(e) => Problem::new(StatusCode::SERVICE_UNAVAILABLE, "Not ready", e.to_string())
            .into_response(),
    }
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP crm_http_requests_total HTTP requests by route and status."
    );
    let _ = writeln!(out, "# TYPE crm_http_requests_total counter");
    let requests = state.metrics.requests.lock().expect("metrics lock").clone();
    for ((route, status), (n, _)) in &requests {
        let _ = writeln!(
            out,
            "crm_http_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
        );
    }
    let _ = writeln!(
        out,
        "# HELP crm_http_request_seconds_sum Time spent answering, by route and status."
    );
    let _ = writeln!(out, "# TYPE crm_http_request_seconds_sum counter");
    for ((route, status), (_, s)) in &requests {
        let _ = writeln!(
            out,
            "crm_http_request_seconds_sum{{route=\"{route}\",status=\"{status}\"}} {s}"
        );
    }
    let _ = writeln!(out, "# TYPE crm_http_requests_in_flight gauge");
    let _ = writeln!(
        out,
        "crm_http_requests_in_flight {}",
        state.metrics.in_flight.load(Ordering::Relaxed)
    );
    if let Ok(bytes) = state.store.size_on_disk() {
        let _ = writeln!(out, "# TYPE crm_store_bytes gauge");
        let _ = writeln!(out, "crm_store_bytes {bytes}");
    }
    for kind in EntityKind::ALL {
        if let Ok(n) = state.store.count(kind) {
            let _ = writeln!(out, "crm_records{{kind=\"{}\"}} {n}", kind.plural());
        }
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

/// `GET /api/v1/customers/{id}`: the customer, with its metrics; the
/// revision as ETag.
async fn get_customer(
    State(state): State<Arc<AppState>>,
    axum::Extension(caller): axum::Extension<Caller>,
    UrlPath(id): UrlPath<String>,
) -> Result<Response, Problem> {
    require(
        caller,
        &[Role::Integrator, Role::Analyst, Role::Agent, Role::Viewer],
        "read customers",
    )?;
    let Some((revision, Record::Customer(customer))) =
        state.store.get_revised(EntityKind::Customer, &id)?
    else {
        return Err(Problem::new(
            StatusCode::NOT_FOUND,
            "Not found",
            format!("no customer '{id}'"),
        ));
    };
    let mut body = serde_json::to_value(&customer).unwrap_or(Value::Null);
    let snapshot = state.snapshot.read().expect("snapshot lock");
    if let Some(ci) = snapshot.customers.find(&id) {
        let ctx = analysis::Context::new(&snapshot, &analysis::Scope::default());
        body["metrics"] =
            serde_json::to_value(analysis::customer_metrics(&ctx, ci)).unwrap_or(Value::Null);
    }
    Ok(with_etag(Json(body).into_response(), revision))
}

fn with_etag(mut response: Response, revision: u64) -> Response {
    if let Ok(v) = HeaderValue::from_str(&format!("\"{revision}\"")) {
        response.headers_mut().insert(header::ETAG, v);
    }
    response
}

/// A JSON request body as `T`: 415 for another content type, 400 naming
/// the field (or the place) that is wrong.
fn json_body<T: serde::de::DeserializeOwned>(
    headers: &axum::http::HeaderMap,
    body: &[u8],
) -> Result<T, Problem> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|m| m.trim() == "application/json")
        });
    if !json {
        return Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Unsupported media type",
            "send the body as application/json",
        ));
    }
    serde_json::from_slice(body).map_err(|e| {
        let text = e.to_string();
        // serde names the field in "unknown field `x`" and "missing field `x`".
        let field = text
            .split('`')
            .nth(1)
            .filter(|_| text.contains(" field `"))
            .map(str::to_owned);
        let mut p = Problem::new(StatusCode::BAD_REQUEST, "Invalid body", text);
        p.field = field;
        p
    })
}

/// Checks a customer against the plugins (fields and validate hooks).
fn checked_customer(
    state: &AppState,
    customer: model::Customer,
) -> Result<model::Customer, Problem> {
    let Some(registry) = &state.plugins else {
        return Ok(customer);
    };
    let rules = crate::plugins::FieldRules::of(registry);
    crate::plugins::validate_write(registry, &rules, customer).map_err(|e| {
        Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Refused by a rule",
            format!("{e:#}"),
        )
    })
}

/// Writes a customer and brings the snapshot along.
fn write_customer(
    state: &AppState,
    customer: model::Customer,
    expect: store::Expect,
) -> Result<u64, Problem> {
    let revision = state
        .store
        .upsert_expecting(Record::Customer(customer.clone()), expect)
        .map_err(|e| match e {
            store::StoreError::Conflict(detail) if matches!(expect, store::Expect::Revision(_)) => {
                Problem::new(
                    StatusCode::PRECONDITION_FAILED,
                    "Precondition failed",
                    detail,
                )
            }
            other => other.into(),
        })?;
    state
        .snapshot
        .write()
        .expect("snapshot lock")
        .upsert_customer(&customer);
    Ok(revision)
}

const WRITERS: &[Role] = &[Role::Agent];

/// `POST /api/v1/customers`: creates a customer (409 when the id exists).
async fn create_customer(
    State(state): State<Arc<AppState>>,
    axum::Extension(caller): axum::Extension<Caller>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, Problem> {
    require(caller, WRITERS, "create customers")?;
    let customer: model::Customer = json_body(&headers, &body)?;
    let customer = checked_customer(&state, customer)?;
    let id = customer.customer_id.as_str().to_owned();
    let revision = write_customer(&state, customer, store::Expect::New)?;
    let mut response = (
        StatusCode::CREATED,
        Json(json!({"customer_id": id, "revision": revision})),
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("/api/v1/customers/{id}")) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    Ok(with_etag(response, revision))
}

/// `PUT /api/v1/customers/{id}`: replaces a customer; `If-Match` with the
/// revision read is required (428 without, 412 when it changed meanwhile).
async fn replace_customer(
    State(state): State<Arc<AppState>>,
    axum::Extension(caller): axum::Extension<Caller>,
    UrlPath(id): UrlPath<String>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, Problem> {
    require(caller, WRITERS, "change customers")?;
    let Some(expected) = headers
        .get(header::IF_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.trim()
                .trim_start_matches("W/")
                .trim_matches('"')
                .to_owned()
        })
    else {
        return Err(Problem::new(
            StatusCode::PRECONDITION_REQUIRED,
            "If-Match required",
            "send the ETag of the customer you read as If-Match, so that changes made meanwhile are not overwritten",
        ));
    };
    let expected: u64 = expected.parse().map_err(|_| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "Invalid If-Match",
            format!("If-Match {expected:?} is not an ETag this API gave"),
        )
    })?;
    let customer: model::Customer = json_body(&headers, &body)?;
    if customer.customer_id.as_str() != id {
        let mut p = Problem::new(
            StatusCode::BAD_REQUEST,
            "Invalid body",
            format!(
                "the body is customer {}, the URL customer {id}",
                customer.customer_id.as_str()
            ),
        );
        p.field = Some("customer_id".into());
        return Err(p);
    }
    let customer = checked_customer(&state, customer)?;
    let revision = write_customer(&state, customer, store::Expect::Revision(expected))?;
    Ok(with_etag(
        Json(json!({"customer_id": id, "revision": revision})).into_response(),
        revision,
    ))
}

async fn not_found() -> Problem {
    Problem::new(
        StatusCode::NOT_FOUND,
        "Not found",
        "no such route; the API is under /api/v1",
    )
}

/// The whole application.
pub fn router(state: Arc<AppState>) -> Router {
    let api = Router::new()
        .route("/customers", axum::routing::post(create_customer))
        .route("/customers/{id}", get(get_customer).put(replace_customer))
        .route_layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            authenticate,
        ));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .nest("/api/v1", api)
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(Arc::clone(&state), observe))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(MAX_BODY))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .with_state(state)
}

/// Serves the store at `db` on `addr` until SIGINT or SIGTERM.
pub fn serve(
    db: &Path,
    store: Arc<dyn Store>,
    snapshot: Snapshot,
    plugins: plugin_host::Registry,
    addr: SocketAddr,
) -> Result<()> {
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .try_init();
    let state = AppState::new(Arc::clone(&store), snapshot, Some(plugins));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("listening on {addr}"))?;
        let local = listener.local_addr()?;
        tracing::info!(db = %db.display(), "serving on http://{local}");
        eprintln!("serving {} on http://{local}", db.display());
        axum::serve(
            listener,
            router(state).into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown())
        .await
        .context("serving")
    })?;
    store.flush().context("flushing the store")?;
    eprintln!("stopped; the store is flushed");
    Ok(())
}

async fn shutdown() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let terminate = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {},
        _ = terminate => {},
    }
    tracing::info!("stopping: finishing the requests in flight");
}
