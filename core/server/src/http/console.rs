//! The console: the web page served at `/` (HTML, one script and one style
//! sheet, embedded in the binary), the sessions it signs in with, and the
//! views people save of the customer list.
//!
//! A session is made by `POST /api/v1/session` with a token or a user's
//! name and password. The browser keeps it in a cookie that scripts cannot
//! read (HttpOnly), that other sites cannot send (SameSite=Strict), and
//! every change made with it must also carry the session's CSRF token in an
//! `X-CSRF-Token` header. Sessions live in the server's memory: a restart
//! signs everyone out. Pages are sent with a Content-Security-Policy that
//! allows scripts, styles and connections only from this server.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::Extension;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, NoContent, Response};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::problem::{Body, Path, Problem};
use super::{AppState, Caller};
use app::tokens::Role;
use app::tokens::hash as digest;

/// The cookie that carries the session.
pub const COOKIE: &str = "crm_session";
/// The header that carries the session's CSRF token on changes.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// A session ends after this long without a request.
pub const IDLE: Duration = Duration::from_secs(8 * 3600);

/// Who a session signs in as: checked again on every request, so that a
/// revoked token or a removed user ends it at once.
#[derive(Clone)]
enum Subject {
    Token(String),
    User(String),
}

struct Session {
    subject: Subject,
    csrf: String,
    last: Instant,
}

/// The sessions, by the SHA-256 of their cookie.
#[derive(Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, Session>>,
    /// Whether cookies are marked Secure (the console is served over HTTPS,
    /// by a proxy in front).
    pub secure: std::sync::atomic::AtomicBool,
}

fn hex_random(bytes: usize) -> Result<String, Problem> {
    app::tokens::random_hex(bytes).map_err(|e| Problem::internal(format!("{e:#}")))
}

/// The value of cookie `name` in the request's Cookie headers.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

impl Sessions {
    fn start(&self, subject: Subject) -> Result<(String, String), Problem> {
        let id = hex_random(32)?;
        let csrf = hex_random(24)?;
        let mut map = self.map.lock().expect("sessions lock");
        map.retain(|_, s| s.last.elapsed() < IDLE);
        map.insert(
            digest(&id),
            Session {
                subject,
                csrf: csrf.clone(),
                last: Instant::now(),
            },
        );
        Ok((id, csrf))
    }

    fn set_cookie(&self, value: &str, max_age: u64) -> HeaderValue {
        let secure = if self.secure.load(std::sync::atomic::Ordering::Relaxed) {
            "; Secure"
        } else {
            ""
        };
        HeaderValue::from_str(&format!(
            "{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
        ))
        .expect("cookie text is ASCII")
    }
}

/// The session of a request's cookie: who it signs in as, and its CSRF
/// token; `None` when the request has no session cookie.
fn session_of(state: &AppState, headers: &HeaderMap) -> Option<Result<(Caller, String), Problem>> {
    let id = cookie(headers, COOKIE)?;
    let key = digest(id);
    let (subject, csrf) = {
        let mut map = state.sessions.map.lock().expect("sessions lock");
        match map.get_mut(&key) {
            Some(s) if s.last.elapsed() < IDLE => {
                s.last = Instant::now();
                (s.subject.clone(), s.csrf.clone())
            }
            _ => {
                map.remove(&key);
                return Some(Err(Problem::new(
                    StatusCode::UNAUTHORIZED,
                    "Not signed in",
                    "the session has ended; sign in again",
                )));
            }
        }
    };
    Some(match who(state, &subject) {
        Some((name, role)) => Ok((
            Caller {
                name,
                role,
                user: matches!(subject, Subject::User(_)),
            },
            csrf,
        )),
        None => {
            state
                .sessions
                .map
                .lock()
                .expect("sessions lock")
                .remove(&key);
            Err(Problem::new(
                StatusCode::UNAUTHORIZED,
                "Not signed in",
                "the token or user of this session is gone; sign in again",
            ))
        }
    })
}

/// What the authentication layer makes of a request's session cookie:
/// `None` when it has none. Changes must carry the session's CSRF token.
pub(super) fn caller_of_session(
    state: &AppState,
    headers: &HeaderMap,
    method: &Method,
) -> Option<Result<Caller, Problem>> {
    let (caller, csrf) = match session_of(state, headers)? {
        Ok(found) => found,
        Err(problem) => return Some(Err(problem)),
    };
    let safe = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    let sent = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
    if !safe && sent != Some(csrf.as_str()) {
        return Some(Err(Problem::new(
            StatusCode::FORBIDDEN,
            "Missing CSRF token",
            "a change made with a session cookie needs the session's csrf token in the X-CSRF-Token header",
        )));
    }
    Some(Ok(caller))
}

fn who(state: &AppState, subject: &Subject) -> Option<(Arc<str>, Role)> {
    match subject {
        Subject::Token(t) => state.tokens.who(t).ok().flatten(),
        Subject::User(name) => state
            .users
            .role_of(name)
            .ok()
            .flatten()
            .map(|role| (Arc::from(name.as_str()), role)),
    }
}

/// How to sign in: a token, or a user's name and password.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SignIn {
    /// An API token (crm token create).
    pub token: Option<String>,
    /// A user name (crm user create), with `password`.
    pub user: Option<String>,
    pub password: Option<String>,
}

/// The signed-in session.
#[derive(Serialize, JsonSchema)]
pub(crate) struct SessionInfo {
    /// The user's or the token's name.
    pub name: String,
    pub role: Role,
    /// Send it as the X-CSRF-Token header with every change.
    pub csrf: String,
}

/// `POST /api/v1/session`: signs in; the session is set as a cookie.
pub(crate) async fn sign_in(
    State(state): State<Arc<AppState>>,
    connect: Option<Extension<ConnectInfo<SocketAddr>>>,
    Body(body): Body<SignIn>,
) -> Result<Response, Problem> {
    let peer = connect.map(|c| c.0.0.ip());
    if let Some(ip) = peer
        && state.too_many_failures(ip)
    {
        return Err(super::too_many());
    }
    let subject = match (body.token, body.user, body.password) {
        (Some(token), None, None) => Subject::Token(token),
        (None, Some(user), Some(password)) => {
            let state2 = Arc::clone(&state);
            let user2 = user.clone();
            let ok = tokio::task::spawn_blocking(move || state2.users.verify(&user2, &password))
                .await
                .map_err(Problem::internal)?
                .map_err(Problem::internal)?;
            if ok.is_none() {
                if let Some(ip) = peer {
                    state.failed(ip);
                }
                return Err(Problem::new(
                    StatusCode::UNAUTHORIZED,
                    "Not signed in",
                    "the user name or the password is wrong",
                ));
            }
            Subject::User(user)
        }
        (None, Some(_), None) => {
            return Err(
                Problem::bad_request("Invalid body", "give the user's password").at("password"),
            );
        }
        _ => {
            return Err(Problem::bad_request(
                "Invalid body",
                "give either a token, or a user and a password",
            ));
        }
    };
    let Some((name, role)) = who(&state, &subject) else {
        if let Some(ip) = peer {
            state.failed(ip);
        }
        return Err(Problem::new(
            StatusCode::UNAUTHORIZED,
            "Not signed in",
            "the token is not known (or was revoked)",
        ));
    };
    let (id, csrf) = state.sessions.start(subject)?;
    let mut response = (
        StatusCode::CREATED,
        axum::Json(SessionInfo {
            name: name.to_string(),
            role,
            csrf,
        }),
    )
        .into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        state.sessions.set_cookie(&id, IDLE.as_secs()),
    );
    Ok(response)
}

/// `GET /api/v1/session`: who the session cookie signs in as, with its
/// CSRF token; `null` without a session (or when it has ended).
pub(crate) async fn current(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> axum::Json<Option<SessionInfo>> {
    axum::Json(
        session_of(&state, &headers)
            .and_then(Result::ok)
            .map(|(caller, csrf)| SessionInfo {
                name: caller.name.to_string(),
                role: caller.role,
                csrf,
            }),
    )
}

/// `DELETE /api/v1/session`: signs out.
pub(crate) async fn sign_out(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> super::problem::NoContentWith {
    if let Some(id) = cookie(&headers, COOKIE) {
        state
            .sessions
            .map
            .lock()
            .expect("sessions lock")
            .remove(&digest(id));
    }
    super::problem::NoContentWith(header::SET_COOKIE, state.sessions.set_cookie("", 0))
}

/// A saved view of the customer list: its search, filters and sort.
#[derive(Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SavedView {
    /// The list's query parameters (q, segment, region, city, tier,
    /// channel, gender, joined_from, joined_to, sort).
    pub params: std::collections::BTreeMap<String, String>,
}

/// A saved view with its name.
#[derive(Serialize, JsonSchema)]
pub(crate) struct NamedView {
    pub name: String,
    pub params: std::collections::BTreeMap<String, String>,
}

const VIEWS: &str = "views";
const VIEW_PARAMS: [&str; 10] = [
    "q",
    "segment",
    "region",
    "city",
    "tier",
    "channel",
    "gender",
    "joined_from",
    "joined_to",
    "sort",
];

/// The views of each caller are kept under a prefix made from their name
/// (names may hold any character, the prefix only hex digits).
fn view_key(caller: &Caller, name: &str) -> String {
    let who = if caller.user { "user" } else { "token" };
    format!(
        "{}:{name}",
        &digest(&format!("{who} {}", caller.name))[..16]
    )
}

#[derive(Deserialize, JsonSchema)]
pub(crate) struct ViewPath {
    /// The view's name.
    pub name: String,
}

/// `GET /api/v1/views`: the caller's saved views of the customer list.
pub(crate) async fn list_views(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
) -> Result<axum::Json<Vec<NamedView>>, Problem> {
    let prefix = view_key(&caller, "");
    let mut out = Vec::new();
    for rev in state.store.definitions(VIEWS)? {
        if let Some(name) = rev.name.strip_prefix(&prefix) {
            let view: SavedView = serde_json::from_str(&rev.body).map_err(Problem::internal)?;
            out.push(NamedView {
                name: name.to_owned(),
                params: view.params,
            });
        }
    }
    Ok(axum::Json(out))
}

/// `PUT /api/v1/views/{name}`: saves a view (replacing one of that name).
pub(crate) async fn put_view(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(ViewPath { name }): Path<ViewPath>,
    Body(view): Body<SavedView>,
) -> Result<NoContent, Problem> {
    let name = name.trim();
    if name.is_empty() || name.len() > 80 || name.chars().any(char::is_control) {
        return Err(
            Problem::bad_request("Invalid name", "a view's name is 1 to 80 characters").at("name"),
        );
    }
    if let Some(bad) = view
        .params
        .keys()
        .find(|k| !VIEW_PARAMS.contains(&k.as_str()))
    {
        return Err(Problem::bad_request(
            "Invalid view",
            format!(
                "'{bad}' is not a parameter of the customer list ({})",
                VIEW_PARAMS.join(", ")
            ),
        )
        .at(format!("params.{bad}")));
    }
    let body = serde_json::to_string(&view).map_err(Problem::internal)?;
    state
        .store
        .save_definition(VIEWS, &view_key(&caller, name), &body, store::Expect::Any)?;
    Ok(NoContent)
}

/// `DELETE /api/v1/views/{name}`.
pub(crate) async fn delete_view(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(ViewPath { name }): Path<ViewPath>,
) -> Result<NoContent, Problem> {
    let key = view_key(&caller, &name);
    if state.store.definition(VIEWS, &key)?.is_none() {
        return Err(Problem::not_found(format!("no saved view '{name}'")));
    }
    state
        .store
        .delete_definition(VIEWS, &key, store::Expect::Any)?;
    Ok(NoContent)
}

/// The page, its script and its style sheet.
const INDEX: &str = include_str!("../../console/index.html");
const SCRIPT: &str = include_str!("../../console/app.js");
const STYLE: &str = include_str!("../../console/app.css");

/// The policy every console response carries: nothing from elsewhere, no
/// inline script or style, no framing.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The console's file `name` as built in, or, when `CRM_CONSOLE_DIR` names
/// a directory (while working on the console), as it is there now.
fn console_file(name: &str, built_in: &'static str) -> std::borrow::Cow<'static, str> {
    match std::env::var_os("CRM_CONSOLE_DIR") {
        Some(dir) => std::fs::read_to_string(std::path::Path::new(&dir).join(name))
            .map_or(built_in.into(), Into::into),
        None => built_in.into(),
    }
}

/// `GET /` and the console's other pages: the one HTML page (the script
/// draws the page the path names).
pub(crate) async fn page() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        console_file("index.html", INDEX),
    )
        .into_response()
}

/// `GET /assets/{file}`.
pub(crate) async fn asset(axum::extract::Path(file): axum::extract::Path<String>) -> Response {
    let (kind, body) = match file.as_str() {
        "app.js" => ("text/javascript; charset=utf-8", SCRIPT),
        "app.css" => ("text/css; charset=utf-8", STYLE),
        _ => return Problem::not_found(format!("no asset '{file}'")).into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        console_file(&file, body),
    )
        .into_response()
}

/// Adds the console's security headers to a response.
pub(crate) async fn secure_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    response
}
