//! What every request passes first, in one layer: its id (`x-request-id`,
//! the client's if it sent one), the body limit, under `/api/v1` the
//! caller (a bearer token or a session cookie, with the rate limit of
//! failed sign-ins), and once answered its metrics and log line.
//!
//! One hand-written layer rather than a `from_fn` middleware each: axum
//! keeps every route's layers as boxed services and clones the ones below
//! a layer on every call, and a `from_fn` middleware boxes its future and
//! the rest of the stack once more; with the body limit's two layers and
//! the authentication's, a request made some thirty allocations before
//! reaching its handler.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::Body;
use axum::body::HttpBody as _;
use axum::extract::{ConnectInfo, MatchedPath, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use pin_project_lite::pin_project;

use super::{AppState, Caller, Problem, console, imports, log};

pub(super) const X_REQUEST_ID: header::HeaderName = header::HeaderName::from_static("x-request-id");

/// The layer (`Router::layer`), over `state`.
#[derive(Clone)]
pub(super) struct Front {
    pub(super) state: Arc<AppState>,
}

impl<S> tower::Layer<S> for Front {
    type Service = FrontService<S>;

    fn layer(&self, inner: S) -> FrontService<S> {
        FrontService {
            state: Arc::clone(&self.state),
            inner,
        }
    }
}

#[derive(Clone)]
pub(super) struct FrontService<S> {
    state: Arc<AppState>,
    inner: S,
}

impl<S> tower::Service<Request> for FrontService<S>
where
    S: tower::Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Answer<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request) -> Answer<S::Future> {
        let started = Instant::now();
        let metrics = &self.state.metrics;
        let route = request.extensions().get::<MatchedPath>().cloned();
        let id = match request.headers().get(X_REQUEST_ID) {
            Some(given) => given.clone(),
            None => metrics.ids.next(),
        };
        metrics.in_flight.fetch_add(1, Ordering::Relaxed);
        let refused = limit_body(&mut request).or_else(|| {
            let api = route.as_ref().is_some_and(|r| {
                r.as_str().starts_with("/api/v1/") && r.as_str() != "/api/v1/session"
            });
            api.then(|| authenticate(&self.state, &mut request))
                .flatten()
        });
        let method = request.method().clone();
        let inner = match refused {
            Some(response) => Inner::Refused {
                response: Some(response),
            },
            None => Inner::Called {
                future: self.inner.call(request),
            },
        };
        Answer {
            inner,
            done: Some(Done {
                state: Arc::clone(&self.state),
                started,
                route,
                id,
                method,
            }),
        }
    }
}

pin_project! {
    /// The answer: the handler's, or the refusal; counted and logged once
    /// ready.
    pub(super) struct Answer<F> {
        #[pin]
        inner: Inner<F>,
        done: Option<Done>,
    }
}

pin_project! {
    #[project = InnerProjection]
    enum Inner<F> {
        Called { #[pin] future: F },
        Refused { response: Option<Response> },
    }
}

/// What the answer's metrics and log line need.
struct Done {
    state: Arc<AppState>,
    started: Instant,
    route: Option<MatchedPath>,
    id: HeaderValue,
    method: axum::http::Method,
}

impl<F: Future<Output = Result<Response, Infallible>>> Future for Answer<F> {
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = match this.inner.project() {
            InnerProjection::Called { future } => match future.poll(cx) {
                Poll::Ready(Ok(response)) => response,
                Poll::Pending => return Poll::Pending,
            },
            InnerProjection::Refused { response } => {
                response.take().expect("an answer is polled once ready")
            }
        };
        let mut done = this.done.take().expect("an answer is polled once ready");
        let metrics = &done.state.metrics;
        let elapsed = done.started.elapsed();
        let status = response.status().as_u16();
        let route = done.route.as_ref().map_or("unmatched", |p| p.as_str());
        metrics.record(route, status, elapsed.as_secs_f64());
        log::request(
            done.id.to_str().unwrap_or("-"),
            done.method.as_str(),
            route,
            status,
            elapsed,
        );
        let id = std::mem::replace(&mut done.id, HeaderValue::from_static(""));
        response.headers_mut().insert(X_REQUEST_ID, id);
        Poll::Ready(Ok(response))
    }
}

impl Drop for Done {
    fn drop(&mut self) {
        // Answered, or dropped unanswered (the client went away).
        self.state.metrics.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The answer to a body declared over `imports::MAX_UPLOAD` (413); any
/// other body that may hold bytes is cut off there as it is read (handlers
/// set lower limits of their own: axum's extractors 2 MiB, JSON bodies
/// `MAX_BODY`).
fn limit_body(request: &mut Request) -> Option<Response> {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > imports::MAX_UPLOAD as u64) {
        return Some(
            Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Body too large",
                format!(
                    "the body is over the limit of {} bytes",
                    imports::MAX_UPLOAD
                ),
            )
            .into_response(),
        );
    }
    if !request.body().is_end_stream() {
        let body = std::mem::take(request.body_mut());
        *request.body_mut() = Body::new(http_body_util::Limited::new(body, imports::MAX_UPLOAD));
    }
    None
}

/// Finds who sent `request` and sets it as its `Caller`; otherwise the
/// answer refusing it: 429 for an address that failed too often, 401
/// without a known token or session, 403 for a change without the
/// session's CSRF token.
fn authenticate(state: &AppState, request: &mut Request) -> Option<Response> {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    if let Some(ip) = peer
        && state.too_many_failures(ip)
    {
        return Some(super::too_many().into_response());
    }
    let token = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let caller = match token {
        None => match console::caller_of_session(state, request.headers(), request.method()) {
            Some(Ok(caller)) => Ok(caller),
            // An ended session or a missing CSRF token is not a guess.
            Some(Err(problem)) => return Some(problem.into_response()),
            None => Err(
                "give a token as `Authorization: Bearer TOKEN` (crm token create makes one), or sign in with POST /api/v1/session",
            ),
        },
        Some(value) => match value.strip_prefix("Bearer ") {
            None => Err("give a token as `Authorization: Bearer TOKEN`"),
            Some(t) => state
                .tokens
                .who(t)
                .ok()
                .flatten()
                .map(|(name, role)| Caller {
                    name,
                    role,
                    user: false,
                })
                .ok_or("the token is not known (or was revoked)"),
        },
    };
    match caller {
        Ok(caller) => {
            request.extensions_mut().insert(caller);
            None
        }
        Err(why) => {
            if let Some(ip) = peer {
                state.failed(ip);
            }
            let mut response =
                Problem::new(StatusCode::UNAUTHORIZED, "Not signed in", why).into_response();
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            Some(response)
        }
    }
}

/// Request ids: a random prefix drawn when the server starts and a
/// sequence number (`9f3c51e2a07b4d18-000000000042`), unique across
/// restarts without a call for random bytes per request.
pub(super) struct RequestIds {
    prefix: [u8; 16],
    next: AtomicU64,
}

impl Default for RequestIds {
    fn default() -> RequestIds {
        use std::hash::BuildHasher;
        // std's hasher keys are drawn from the system's random source.
        let random = std::collections::hash_map::RandomState::new().hash_one(Instant::now());
        let mut prefix = [0u8; 16];
        hex::encode_to_slice(random.to_be_bytes(), &mut prefix).expect("16 hex digits");
        RequestIds {
            prefix,
            next: AtomicU64::new(1),
        }
    }
}

impl RequestIds {
    pub(super) fn next(&self) -> HeaderValue {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let mut digits = itoa::Buffer::new();
        let digits = digits.format(n).as_bytes();
        // At least twelve digits, zero-padded.
        let zeros = 12usize.saturating_sub(digits.len());
        let mut id = [b'0'; 16 + 1 + 20];
        id[..16].copy_from_slice(&self.prefix);
        id[16] = b'-';
        let end = 17 + zeros + digits.len();
        id[17 + zeros..end].copy_from_slice(digits);
        HeaderValue::from_bytes(&id[..end]).expect("hex digits, a dash and digits")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_a_prefix_and_a_sequence() {
        let ids = RequestIds::default();
        let first = ids.next();
        let second = ids.next();
        let (prefix, n) = first.to_str().unwrap().split_once('-').unwrap();
        assert_eq!(prefix.len(), 16);
        assert!(prefix.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(n, "000000000001");
        assert_eq!(second.to_str().unwrap(), format!("{prefix}-000000000002"));
        assert_ne!(RequestIds::default().prefix, ids.prefix);
        ids.next.store(1_234_567_890_123, Ordering::Relaxed);
        assert_eq!(
            ids.next().to_str().unwrap(),
            format!("{prefix}-1234567890123")
        );
    }
}
