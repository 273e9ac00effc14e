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

mod analyses;
mod audit;
pub mod console;
mod export;
mod front;
mod imports;
mod log;
mod plugins;
mod problem;
mod records;
mod segments;
mod state;
mod tokens;
mod users;
mod view;
mod webhooks;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use aide::axum::ApiRouter;
use aide::axum::routing::get_with;
use aide::openapi::OpenApi;
use aide::transform::TransformOperation;
use anyhow::{Context as _, Result};
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use model::{Campaign, Customer, EntityKind, Interaction, Product, Transaction};

pub use log::LogGuard;
pub use problem::Problem;
pub use state::{AppState, HttpConfig};

use app::tokens::Role;

/// Largest request body accepted (413 beyond).
pub const MAX_BODY: usize = 1 << 20;

/// Requests and the seconds they took, by status.
type ByStatus = std::collections::BTreeMap<u16, (u64, f64)>;

/// Request counts and latencies, by route and status class.
#[derive(Default)]
pub struct Metrics {
    /// By route, then status: requests and seconds.
    requests: Mutex<std::collections::HashMap<String, ByStatus>>,
    in_flight: AtomicU64,
    ids: front::RequestIds,
}

impl Metrics {
    fn record(&self, route: &str, status: u16, seconds: f64) {
        let mut m = self.requests.lock().expect("metrics lock");
        let by_status = match m.get_mut(route) {
            Some(by_status) => by_status,
            None => m.entry(route.to_owned()).or_default(),
        };
        let e = by_status.entry(status).or_default();
        e.0 += 1;
        e.1 += seconds;
    }
}

/// Who sent the request (the token's or the user's name, and the role),
/// set by the authentication layer.
#[derive(Clone, Debug)]
pub struct Caller {
    pub name: Arc<str>,
    pub role: Role,
    /// Signed in as a user (with a password) rather than with a token.
    pub user: bool,
}

/// Failed authentications allowed per client in a minute before 429.
pub const FAILURES_PER_MINUTE: u32 = 20;

/// How `crm serve` serves.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    pub addr: SocketAddr,
    /// Failed authentications allowed per client address and minute.
    pub failed_sign_ins: u32,
    /// Mark the console's session cookie Secure (served over HTTPS by a
    /// proxy in front).
    pub secure_cookies: bool,
}

/// The answer to an address that failed to sign in too often.
pub(crate) fn too_many() -> Problem {
    Problem::new(
        StatusCode::TOO_MANY_REQUESTS,
        "Too many failed sign-ins",
        "too many requests with a wrong token or password from this address; wait a minute",
    )
}

/// The customer 360 of `id` (with `timeline` entries) as read from the
/// snapshot alone and as read from the store, as JSON; `None` where a path
/// gives none. The API answers from the first when it can: tests check
/// that the two agree.
#[doc(hidden)]
pub fn customer_360_both_ways(
    state: &AppState,
    id: &str,
    timeline: usize,
) -> (Option<serde_json::Value>, Option<serde_json::Value>) {
    let memory = view::view_from_memory(state, id, timeline)
        .map(|(_, json)| serde_json::from_slice(&json).expect("the view is JSON"));
    let store = view::view_from_store(state, id, timeline)
        .ok()
        .flatten()
        .map(|(_, view)| serde_json::to_value(view).expect("the view is JSON"));
    (memory, store)
}

/// The customer 360 of `id` as the API answers it from the snapshot, with
/// `timeline` entries; `None` where it would read the store instead.
#[doc(hidden)]
pub fn customer_360_json(state: &AppState, id: &str, timeline: usize) -> Option<Vec<u8>> {
    view::view_from_memory(state, id, timeline).map(|(_, json)| json)
}

/// Whether the saved segments' memberships are built (the 360 names a
/// customer's segments from then on).
#[doc(hidden)]
pub fn memberships_built(state: &AppState) -> bool {
    state.segments_of(0).is_some()
}

/// Works every customer's plugin scores out again if they are due (as the
/// server's own thread does every half second or so).
#[doc(hidden)]
pub fn refresh_scores(state: &AppState) {
    state.refresh_scores();
}

/// Whether every customer's plugin scores are worked out for the snapshot
/// as it is (the 360 then takes them from there).
#[doc(hidden)]
pub fn scores_are_current(state: &AppState) -> bool {
    let data = state.read();
    let plugins = data.base.registry.enabled();
    state
        .scores
        .is_current(state.generation(), &state.rfm_scores(), &plugins)
}

/// Every role reads.
pub(crate) const READERS: &[Role] = &[Role::Integrator, Role::Analyst, Role::Agent, Role::Viewer];

/// A path naming a segment, an analysis or a token.
#[derive(serde::Deserialize, schemars::JsonSchema)]
pub(crate) struct NamePath {
    pub name: String,
}

/// Fails unless the caller's role is one of `allowed`.
pub fn require(caller: &Caller, allowed: &[Role], what: &str) -> Result<(), Problem> {
    if allowed.contains(&caller.role) || caller.role == Role::Admin {
        Ok(())
    } else {
        Err(Problem::new(
            StatusCode::FORBIDDEN,
            "Forbidden",
            format!("a token of role {} may not {what}", caller.role.as_str()),
        ))
    }
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
    let requests: std::collections::BTreeMap<(String, u16), (u64, f64)> = state
        .metrics
        .requests
        .lock()
        .expect("metrics lock")
        .iter()
        .flat_map(|(route, by_status)| {
            by_status
                .iter()
                .map(move |(status, v)| ((route.clone(), *status), *v))
        })
        .collect();
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
    let f = &state.flusher;
    let _ = writeln!(
        out,
        "# HELP crm_store_flushes_total Flushes that made acknowledged writes durable."
    );
    let _ = writeln!(out, "# TYPE crm_store_flushes_total counter");
    let _ = writeln!(
        out,
        "crm_store_flushes_total {}",
        f.flushes.load(Ordering::Relaxed)
    );
    let _ = writeln!(out, "# TYPE crm_store_flush_seconds_sum counter");
    let _ = writeln!(
        out,
        "crm_store_flush_seconds_sum {}",
        f.flush_micros.load(Ordering::Relaxed) as f64 / 1e6
    );
    let _ = writeln!(
        out,
        "# HELP crm_store_flushed_writes_total Writes made durable by those flushes."
    );
    let _ = writeln!(out, "# TYPE crm_store_flushed_writes_total counter");
    let _ = writeln!(
        out,
        "crm_store_flushed_writes_total {}",
        f.flushed_writes.load(Ordering::Relaxed)
    );
    let totals = state.registry.call_totals();
    let _ = writeln!(out, "# HELP crm_plugin_calls_total Calls into each plugin.");
    let _ = writeln!(out, "# TYPE crm_plugin_calls_total counter");
    for (id, calls, _) in &totals {
        let _ = writeln!(out, "crm_plugin_calls_total{{plugin=\"{id}\"}} {calls}");
    }
    let _ = writeln!(
        out,
        "# HELP crm_plugin_failures_total Calls into each plugin that failed."
    );
    let _ = writeln!(out, "# TYPE crm_plugin_failures_total counter");
    for (id, _, failed) in &totals {
        let _ = writeln!(out, "crm_plugin_failures_total{{plugin=\"{id}\"}} {failed}");
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}

async fn not_found() -> Problem {
    Problem::new(
        StatusCode::NOT_FOUND,
        "Not found",
        "no such route; the API is under /api/v1, the console at /",
    )
}

/// A text safe as one URL path segment.
pub fn percent_encode_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn tag_op<'a>(op: TransformOperation<'a>, tag: &'static str) -> TransformOperation<'a> {
    op.tag(tag)
}

fn doc(
    summary: &'static str,
    description: &'static str,
) -> impl FnOnce(TransformOperation) -> TransformOperation {
    move |op| {
        op.summary(summary)
            .description(description)
            .security_requirement("bearer")
    }
}

/// The five kinds of record: create, read, replace, delete and list.
fn record_routes<T: records::Entity>(
    api: ApiRouter<Arc<AppState>>,
    list: aide::axum::routing::ApiMethodRouter<Arc<AppState>>,
    tag: &'static str,
) -> ApiRouter<Arc<AppState>> {
    let plural = T::KIND.plural();
    api.api_route(
        &format!("/api/v1/{plural}"),
        list.post_with(records::create::<T>, move |op| {
            tag_op(op, tag)
                .summary("Create")
                .description("Creates a record; 409 when its id is taken.")
                .security_requirement("bearer")
        }),
    )
    .api_route(
        &format!("/api/v1/{plural}/{{id}}"),
        get_with(records::get_one::<T>, move |op| {
            tag_op(op, tag)
                .summary("Read")
                .description("The record, with its revision as ETag (customers, products, campaigns).")
                .security_requirement("bearer")
        })
        .put_with(records::replace::<T>, move |op| {
            tag_op(op, tag)
                .summary("Replace")
                .description("Replaces the record with the body: what GET returned, changed. Customers, products and campaigns need the revision read, as If-Match (the ETag) or as the body's `revision`: 428 without either, 412 when the record changed meanwhile.")
                .security_requirement("bearer")
        })
        .delete_with(records::delete::<T>, move |op| {
            tag_op(op, tag)
                .summary("Delete")
                .description("Deletes the record (If-Match checked when given). A customer with lines, or a product or campaign that lines name, is refused with 409.")
                .security_requirement("bearer")
        }),
    )
}

/// The limit of the routes that take uploads (plugin packages, CSV files)
/// instead of axum's 2 MiB; `front` cuts every body off there.
fn uploads() -> axum::extract::DefaultBodyLimit {
    axum::extract::DefaultBodyLimit::max(imports::MAX_UPLOAD)
}

/// The whole application.
pub fn router(state: Arc<AppState>) -> Router {
    aide::generate::on_error(|e| tracing::warn!(%e, "OpenAPI generation"));
    aide::generate::extract_schemas(true);
    let mut api = ApiRouter::new();
    api = record_routes::<Customer>(
        api,
        get_with(
            records::list_customers,
            doc(
                "List and search",
                "Customers filtered, searched (id prefix or name, case and accents ignored) and sorted, a page at a time.",
            ),
        ),
        "customers",
    );
    api = record_routes::<Product>(
        api,
        get_with(
            records::list_products,
            doc("List", "Products filtered and sorted, a page at a time."),
        ),
        "products",
    );
    api = record_routes::<Campaign>(
        api,
        get_with(
            records::list_campaigns,
            doc("List", "Campaigns in id order, a page at a time."),
        ),
        "campaigns",
    );
    api = record_routes::<Transaction>(
        api,
        get_with(
            records::list_lines::<Transaction>,
            doc(
                "List",
                "Transaction lines of one customer (customer_id) or of all, in customer and time order.",
            ),
        ),
        "transactions",
    );
    api = record_routes::<Interaction>(
        api,
        get_with(
            records::list_lines::<Interaction>,
            doc(
                "List",
                "Interactions of one customer (customer_id) or of all, in customer and time order.",
            ),
        ),
        "interactions",
    );
    let api = api
        .api_route(
            "/api/v1/customers/{id}/view",
            get_with(view::customer_view, doc("Customer 360", "The customer with its metrics, the plugins' scores with their reasons, and a timeline of purchases and interactions, newest first.")),
        )
        .api_route(
            "/api/v1/analyses",
            get_with(analyses::list_analyses, doc("List analyses", "The analyses and what each computes.")),
        )
        .api_route(
            "/api/v1/analyses/{name}",
            get_with(analyses::run_analysis, doc("Run an analysis", "Runs one analysis as of a day, on every customer or a segment's members; the same rows as `crm analyze --format json`.")),
        )
        .api_route(
            "/api/v1/analyses/{name}/csv",
            get_with(analyses::analysis_csv, doc("Run an analysis as CSV", "The same rows as CSV, as `crm analyze --format csv` prints them.")),
        )
        .api_route(
            "/api/v1/segments",
            get_with(segments::list_segments, doc("List segments", "The saved segments with their scripts.")),
        )
        .api_route(
            "/api/v1/segments/fields",
            get_with(segments::segment_fields, doc("Fields for scripts", "Every field a segment script can read as c.NAME: core fields, metrics, plugin fields and scores.")),
        )
        .api_route(
            "/api/v1/segments/test",
            aide::axum::routing::post_with(segments::test_segment, doc("Test a script", "Evaluates a script without saving it: the member count and a sample with the values read; errors at their line and column.")),
        )
        .api_route(
            "/api/v1/segments/{name}",
            get_with(segments::get_segment, doc("Read a segment", "The segment with its revision as ETag."))
                .put_with(segments::put_segment, doc("Save a segment", "Checks and saves a segment: new without If-Match, a new revision with it."))
                .delete_with(segments::delete_segment, doc("Delete a segment", "Deletes the segment; its history stays.")),
        )
        .api_route(
            "/api/v1/segments/{name}/members",
            get_with(segments::segment_members, doc("Members", "The segment's members in customer id order, a page at a time.")),
        )
        .api_route(
            "/api/v1/segments/{name}/history",
            get_with(segments::segment_history, doc("History", "Every saved revision of the segment, newest first.")),
        )
        .api_route(
            "/api/v1/facets/customers",
            get_with(view::customer_facets, doc("Filter values", "The values each filter of the customer list can take.")),
        )
        .api_route(
            "/api/v1/segments/{name}/explain",
            get_with(segments::explain_segment, doc("Explain", "Whether a customer is a member: each part of the expression and the values it read.")),
        )
        .api_route(
            "/api/v1/plugins",
            get_with(plugins::list, doc("List plugins", "The installed plugins: version, state, failures, hooks and fields."))
                .post_with(plugins::install, doc("Install a plugin", "Installs and enables a plugin from an uploaded package: a tar.gz of its directory (plugin.toml, the component, its schemas), sent as application/gzip. The segments it ships are added."))
                .layer(uploads()),
        )
        .api_route(
            "/api/v1/plugins/{id}",
            get_with(plugins::get, doc("Read a plugin", "One installed plugin."))
                .put_with(plugins::upgrade, doc("Upgrade a plugin", "Replaces the plugin with a newer version from an uploaded package (application/gzip)."))
                .delete_with(plugins::remove, doc("Remove a plugin", "Uninstalls the plugin; the values of its fields stay in the customers' attributes."))
                .layer(uploads()),
        )
        .api_route(
            "/api/v1/plugins/{id}/enable",
            aide::axum::routing::post_with(plugins::enable, doc("Enable a plugin", "Enables the plugin (again).")),
        )
        .api_route(
            "/api/v1/plugins/{id}/disable",
            aide::axum::routing::post_with(plugins::disable, doc("Disable a plugin", "Disables the plugin: its hooks are no longer called.")),
        )
        .api_route(
            "/api/v1/plugin-fields",
            get_with(plugins::all_fields, doc("Every plugin's fields", "The field schemas of every enabled plugin that owns fields: what a customer form lays out.")),
        )
        .api_route(
            "/api/v1/plugins/{id}/analyses/{name}",
            get_with(plugins::analysis, doc("Run a plugin's analysis", "Runs one of the plugin's industry analyses over every customer or a segment's members.")),
        )
        .api_route(
            "/api/v1/plugins/{id}/fields",
            get_with(plugins::fields, doc("A plugin's fields", "The JSON Schema of the custom fields the plugin owns.")),
        )
        .api_route(
            "/api/v1/imports",
            get_with(imports::list, doc("List imports", "The import jobs since the server started, newest first."))
                .post_with(imports::start, doc("Start an import", "Uploads CSV files (multipart/form-data; customers.csv, products.csv, campaigns.csv, transactions.csv, interactions.csv) and imports them in the background; 202 with the job to follow."))
                .layer(uploads()),
        )
        .api_route(
            "/api/v1/imports/{id}",
            get_with(imports::get, doc("Follow an import", "The job's progress while it runs; its report (or the problems that refused it) when it ends.")),
        )
        .api_route(
            "/api/v1/imports/{id}/rejected/{file}",
            get_with(imports::rejected, doc("Rejected rows", "The rows an import set aside, with their line numbers and problems, as CSV.")),
        )
        .api_route(
            "/api/v1/export/{kind}",
            get_with(export::export, doc("Export", "Every record of a kind as CSV, in the format import reads.")),
        )
        .api_route(
            "/api/v1/webhooks",
            get_with(webhooks::list, doc("List webhooks", "The webhook subscriptions: URL and events.")),
        )
        .api_route(
            "/api/v1/webhooks/{name}",
            aide::axum::routing::put_with(webhooks::put, doc("Save a webhook", "Creates a subscription (201, with its signing secret, shown this once) or changes its URL and events. Events: customer.created, customer.updated, segment.entered, segment.left, plugin.failed."))
                .delete_with(webhooks::delete, doc("Delete a webhook", "Deletes the subscription; nothing more is sent to it.")),
        )
        .api_route(
            "/api/v1/webhooks/{name}/deliveries",
            get_with(webhooks::deliveries, doc("Delivery log", "Every delivery to the webhook with each attempt's answer, newest first.")),
        )
        .api_route(
            "/api/v1/webhooks/{name}/ping",
            aide::axum::routing::post_with(webhooks::ping, doc("Ping a webhook", "Queues a ping event to this webhook alone.")),
        )
        .api_route(
            "/api/v1/tokens",
            get_with(tokens::list_tokens, doc("List tokens", "Each token's name, role and id; never the token (admins)."))
                .post_with(tokens::create_token, doc("Make a token", "Makes a token with a role; the answer is the only time it is shown (admins).")),
        )
        .api_route(
            "/api/v1/tokens/{name}",
            aide::axum::routing::delete_with(tokens::revoke_token, doc("Revoke tokens", "Revokes the tokens with this name or id (admins).")),
        )
        .api_route(
            "/api/v1/users",
            get_with(users::list_users, doc("List users", "The console's users and their roles; never their passwords (admins).")),
        )
        .api_route(
            "/api/v1/users/{name}",
            aide::axum::routing::put_with(users::put_user, doc("Save a user", "Adds a user who signs in to the console with a name and password (201), or sets an existing user's role and password (200); passwords are kept as Argon2id hashes (admins)."))
                .delete_with(users::delete_user, doc("Remove a user", "Removes the user; their sessions end at once (admins).")),
        )
        .api_route(
            "/api/v1/views",
            get_with(console::list_views, doc("Saved views", "The caller's saved views of the customer list: search, filters and sort.")),
        )
        .api_route(
            "/api/v1/views/{name}",
            aide::axum::routing::put_with(console::put_view, doc("Save a view", "Saves a view of the customer list under a name (replacing the view of that name)."))
                .delete_with(console::delete_view, doc("Delete a view", "Deletes one of the caller's saved views.")),
        )
        .api_route(
            "/api/v1/customers.csv",
            get_with(records::export_customers, doc("Export a list", "The customers a list's search and filters select, in its sort, as CSV in the import format.")),
        )
        .api_route(
            "/api/v1/charts/pareto",
            get_with(analyses::pareto_curve, doc("Pareto curve", "The share of revenue of the top buyers, for each percent of buyers (0 to 100), on every customer or a segment's members.")),
        )
        .api_route(
            "/api/v1/audit",
            get_with(audit::audit_log, doc("Audit log", "Every change: who, when, what, before and after; newest first (admins).")),
        );
    let api = api
        .api_route(
            "/api/v1/session",
            aide::axum::routing::post_with(console::sign_in, |op| {
                op.summary("Sign in")
                    .description("Signs in with a token, or a user's name and password (crm user create), and sets the session cookie. Changes made with the cookie need the answer's csrf as the X-CSRF-Token header.")
            })
            .get_with(console::current, |op| {
                op.summary("The session")
                    .description("Who the session cookie signs in as, with its CSRF token; null without a session.")
            })
            .delete_with(console::sign_out, |op| {
                op.summary("Sign out").description("Ends the session.")
            }),
        );
    let mut openapi = OpenApi {
        info: aide::openapi::Info {
            title: "CRM API".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: Some("Customers, products, campaigns, transactions and interactions; analyses, segments and plugins. Every route under /api/v1 needs a bearer token (crm token create).".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    // The API's routes carry their whole path: a router nested under
    // /api/v1 would cost every request a second routing step.
    let app = api.finish_api_with(&mut openapi, |t| {
        t.security_scheme(
            "bearer",
            aide::openapi::SecurityScheme::Http {
                scheme: "bearer".into(),
                bearer_format: Some("crm_ token".into()),
                description: Some(
                    "A token made with `crm token create --role ROLE --name NAME`.".into(),
                ),
                extensions: Default::default(),
            },
        )
    });
    let openapi = Arc::new(
        serde_json::to_value(&openapi)
            .map(|mut v| {
                v["servers"] = serde_json::json!([{"url": "/"}]);
                v
            })
            .unwrap_or_default(),
    );
    let reference = aide::scalar::Scalar::new("/api/openapi.json")
        .with_title("CRM API reference")
        .html();
    let console = Router::new()
        .route("/", axum::routing::get(console::page))
        .route("/signin", axum::routing::get(console::page))
        .route("/customers", axum::routing::get(console::page))
        .route("/customers/{id}", axum::routing::get(console::page))
        .route("/analyses", axum::routing::get(console::page))
        .route("/segments", axum::routing::get(console::page))
        .route("/plugins", axum::routing::get(console::page))
        .route("/imports", axum::routing::get(console::page))
        .route("/users", axum::routing::get(console::page))
        .route("/assets/{file}", axum::routing::get(console::asset))
        .layer(middleware::from_fn(console::secure_headers));
    app.merge(console)
        .route("/healthz", axum::routing::get(healthz))
        .route("/readyz", axum::routing::get(readyz))
        .route("/metrics", axum::routing::get(metrics))
        .route(
            "/api/openapi.json",
            axum::routing::get(move || {
                let openapi = Arc::clone(&openapi);
                async move { Json((*openapi).clone()) }
            }),
        )
        .route(
            "/api/docs",
            axum::routing::get(move || {
                let html = reference.clone();
                async move { axum::response::Html(html) }
            }),
        )
        .route("/api/schemas/{name}", axum::routing::get(schema_file))
        .fallback(not_found)
        .layer(front::Front {
            state: Arc::clone(&state),
        })
        .with_state(state)
}

/// The JSON Schemas of the record files and plugin manifests (schemas/).
async fn schema_file(axum::extract::Path(name): axum::extract::Path<String>) -> Response {
    match crate::schemas::file(&name) {
        Some(text) => ([(header::CONTENT_TYPE, "application/schema+json")], text).into_response(),
        None => Problem::not_found(format!(
            "no schema '{name}'; the schemas are {}",
            crate::schemas::names().join(", ")
        ))
        .into_response(),
    }
}

/// Sends the process's log lines (`RUST_LOG`, `info` by default) to `out`,
/// in batches written by a thread of their own (log.rs), until the guard
/// is dropped; what is left is written then. `ansi` colours them.
pub fn logging(out: Box<dyn std::io::Write + Send>, ansi: bool) -> LogGuard {
    let (writer, guard) = log::LogBuffer::new(out);
    let installed = tracing_subscriber::fmt()
        .with_writer(writer.clone())
        .with_ansi(ansi)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .try_init()
        .is_ok();
    if installed && !ansi {
        writer.take_requests();
    }
    guard
}

/// Serves the CRM of the store at `db` on `addr` until SIGINT or SIGTERM,
/// then closes it (the store flushed, the snapshot checkpointed).
pub fn serve(db: &Path, crm: Arc<app::Crm>, options: Options) -> Result<()> {
    let addr = options.addr;
    let log = logging(
        Box::new(std::io::stderr()),
        std::io::IsTerminal::is_terminal(&std::io::stderr()),
    );
    let state = AppState::new(
        Arc::clone(&crm),
        HttpConfig {
            failed_sign_ins: options.failed_sign_ins,
            secure_cookies: options.secure_cookies,
            ..HttpConfig::default()
        },
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let served = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("listening on {addr}"))?;
        let local = listener.local_addr()?;
        // Commands that find the store held say where it is served.
        let _ = std::fs::write(db.join(app::SERVING), local.to_string());
        tracing::info!(db = %db.display(), "serving on http://{local}");
        eprintln!("serving {} on http://{local}", db.display());
        // Answers go out as soon as they are written: without TCP_NODELAY a
        // streamed answer's (an export's) later pieces could wait for the
        // client's acknowledgement of the first.
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::warn!(error = %e, "setting TCP_NODELAY");
            }
        });
        axum::serve(
            listener,
            router(state).into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown())
        .await
        .context("serving")
    });
    // The lines still buffered go out before the last words; any later
    // line is written at once.
    drop(log);
    let _ = std::fs::remove_file(db.join(app::SERVING));
    served?;
    crm.close()?;
    eprintln!("stopped; the store is flushed and the analysis snapshot saved");
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
