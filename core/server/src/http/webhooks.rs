//! Outbound webhooks: subscriptions to events (a customer created or
//! updated, customers entering or leaving a segment, a plugin failing),
//! delivered as signed JSON POSTs with retries, and a log of every attempt.
//!
//! Deliveries go through a durable outbox (a queue in the store): an event
//! is written there before anything is sent, so deliveries pending when the
//! server stops are sent after it starts again. Each POST carries
//! `X-CRM-Event`, `X-CRM-Delivery` (its id) and `X-CRM-Signature:
//! t=UNIX_SECONDS,v1=HEX`, where HEX is HMAC-SHA256 with the subscription's
//! secret over `UNIX_SECONDS.BODY`. A 2xx answer is a delivery; anything
//! else (or no answer in 10 s) is tried again after 1, 2, 4, ... seconds,
//! 8 attempts in all.

use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use axum::Extension;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::NoContent;
use hmac::{Hmac, Mac};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::Sha256;
use store::Store;

use super::problem::{Accepted, Body, Path, Problem, Query, Saved};
use super::{AppState, Caller, NamePath, require};
use app::tokens::Role;

const SPACE: &str = "webhooks";
const OUTBOX: &str = "webhook-deliveries";
const ATTEMPTS: usize = 8;

/// The events a subscription can ask for.
pub(crate) const EVENTS: [&str; 5] = [
    "customer.created",
    "customer.updated",
    "segment.entered",
    "segment.left",
    "plugin.failed",
];

#[derive(Clone, Serialize, Deserialize)]
struct Subscription {
    url: String,
    events: Vec<String>,
    secret: String,
}

/// One delivery of an event to a subscription, with its attempts.
#[derive(Clone, Serialize, Deserialize, JsonSchema)]
pub(crate) struct Delivery {
    #[serde(default)]
    pub id: u64,
    pub webhook: String,
    pub event: String,
    pub url: String,
    /// pending, delivered or failed (after the last attempt).
    pub state: String,
    pub payload: Value,
    pub attempts: Vec<Attempt>,
    /// When the next attempt is due (UTC milliseconds), while pending.
    pub next_at_ms: i64,
}

#[derive(Clone, Serialize, Deserialize, JsonSchema)]
pub(crate) struct Attempt {
    pub at_ms: i64,
    /// The answer's status, if one came.
    pub status: Option<u16>,
    pub error: Option<String>,
    pub ms: f64,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The subscriptions by name.
type Subscriptions = Arc<Vec<(String, Subscription)>>;

/// The subscriptions and the sender of their deliveries.
pub(crate) struct Webhooks {
    store: Arc<dyn Store>,
    /// Deliveries waiting, by id: when each is due.
    pending: Mutex<BTreeMap<u64, i64>>,
    wake: Condvar,
    /// The wait before the second attempt; doubled for each one after.
    retry_base: Mutex<Duration>,
    /// The subscriptions as last read from the store; `None` after a change
    /// (only the API changes them, and it says so with `changed`).
    subscriptions: std::sync::RwLock<Option<Subscriptions>>,
}

/// The wait before a delivery is tried a second time, unless set otherwise.
pub(crate) const RETRY_BASE: Duration = Duration::from_secs(1);

impl app::Events for Webhooks {
    fn wanted(&self, event: &str) -> bool {
        Webhooks::wanted(self, event)
    }

    fn emit(&self, event: &str, payload: Value) {
        Webhooks::emit(self, event, payload)
    }
}

impl Webhooks {
    pub(crate) fn new(store: Arc<dyn Store>) -> Arc<Webhooks> {
        let hooks = Arc::new(Webhooks {
            store,
            pending: Mutex::new(BTreeMap::new()),
            wake: Condvar::new(),
            retry_base: Mutex::new(RETRY_BASE),
            subscriptions: std::sync::RwLock::new(None),
        });
        // Deliveries left pending by a previous run.
        let mut after = None;
        while let Ok(page) = hooks.store.queue_read(OUTBOX, after, 1000, false) {
            let Some(&(last, _)) = page.last() else { break };
            let mut pending = hooks.pending.lock().expect("webhook lock");
            for (id, body) in page {
                if let Ok(d) = serde_json::from_str::<Delivery>(&body)
                    && d.state == "pending"
                {
                    pending.insert(id, d.next_at_ms);
                }
            }
            after = Some(last);
        }
        let weak = Arc::downgrade(&hooks);
        std::thread::Builder::new()
            .name("crm-webhooks".into())
            .spawn(move || dispatch(weak))
            .expect("starting the webhook thread");
        hooks
    }

    pub(crate) fn set_retry_base(&self, base: Duration) {
        *self.retry_base.lock().expect("webhook lock") = base;
    }

    /// The subscriptions, read from the store once after each change: a
    /// write checks them, so they must cost no store scan.
    fn subscriptions(&self) -> Subscriptions {
        if let Some(subs) = &*self.subscriptions.read().expect("webhook lock") {
            return Arc::clone(subs);
        }
        let subs: Subscriptions = Arc::new(
            self.store
                .definitions(SPACE)
                .unwrap_or_default()
                .into_iter()
                .filter_map(|rev| Some((rev.name, serde_json::from_str(&rev.body).ok()?)))
                .collect(),
        );
        *self.subscriptions.write().expect("webhook lock") = Some(Arc::clone(&subs));
        subs
    }

    /// The subscriptions changed in the store.
    pub(crate) fn changed(&self) {
        *self.subscriptions.write().expect("webhook lock") = None;
    }

    /// Whether any subscription asks for `event` (so that its data need
    /// not be made otherwise).
    pub(crate) fn wanted(&self, event: &str) -> bool {
        self.subscriptions()
            .iter()
            .any(|(_, sub)| sub.events.iter().any(|e| e == event))
    }

    /// Queues `event` with `data` for every subscription that asks for it.
    pub(crate) fn emit(&self, event: &str, data: Value) {
        for (name, sub) in self.subscriptions().iter() {
            if sub.events.iter().any(|e| e == event) {
                self.queue(name, sub, event, data.clone());
            }
        }
    }

    fn queue(&self, name: &str, sub: &Subscription, event: &str, data: Value) {
        let delivery = Delivery {
            id: 0,
            webhook: name.to_owned(),
            event: event.to_owned(),
            url: sub.url.clone(),
            state: "pending".into(),
            payload: serde_json::json!({
                "event": event,
                "at_ms": now_ms(),
                "data": data,
            }),
            attempts: Vec::new(),
            next_at_ms: now_ms(),
        };
        let body = serde_json::to_string(&delivery).unwrap_or_default();
        match self.store.queue_push(OUTBOX, &body) {
            Ok(id) => {
                self.pending
                    .lock()
                    .expect("webhook lock")
                    .insert(id, delivery.next_at_ms);
                self.wake.notify_one();
            }
            Err(e) => {
                tracing::error!(error = %e, webhook = name, event, "queueing a webhook delivery")
            }
        }
    }
}

fn sign(secret: &str, t: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// Sends due deliveries until the webhooks are dropped.
fn dispatch(hooks: std::sync::Weak<Webhooks>) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .http_status_as_error(false)
        .build()
        .into();
    loop {
        let Some(hooks) = hooks.upgrade() else { return };
        let due: Vec<u64> = {
            let pending = hooks.pending.lock().expect("webhook lock");
            let now = now_ms();
            let due: Vec<u64> = pending
                .iter()
                .filter(|(_, at)| **at <= now)
                .map(|(id, _)| *id)
                .take(100)
                .collect();
            if due.is_empty() {
                let next = pending
                    .values()
                    .min()
                    .map_or(500, |at| (at - now).clamp(1, 500));
                let _ = hooks
                    .wake
                    .wait_timeout(pending, Duration::from_millis(next as u64))
                    .expect("webhook lock");
                continue;
            }
            due
        };
        let subs: BTreeMap<String, Subscription> = hooks.subscriptions().iter().cloned().collect();
        for id in due {
            send(&hooks, &agent, &subs, id);
        }
    }
}

fn send(hooks: &Webhooks, agent: &ureq::Agent, subs: &BTreeMap<String, Subscription>, id: u64) {
    let Ok(Some((_, body))) = hooks
        .store
        .queue_read(OUTBOX, Some(id - 1), 1, false)
        .map(|v| v.into_iter().next())
    else {
        hooks.pending.lock().expect("webhook lock").remove(&id);
        return;
    };
    let Ok(mut delivery) = serde_json::from_str::<Delivery>(&body) else {
        hooks.pending.lock().expect("webhook lock").remove(&id);
        return;
    };
    let Some(sub) = subs.get(&delivery.webhook) else {
        // The subscription was deleted: nothing more is sent.
        delivery.state = "failed".into();
        delivery.attempts.push(Attempt {
            at_ms: now_ms(),
            status: None,
            error: Some("the webhook was deleted".into()),
            ms: 0.0,
        });
        finish(hooks, id, &delivery, None);
        return;
    };
    let payload = serde_json::to_vec(&delivery.payload).unwrap_or_default();
    let t = now_ms() / 1000;
    let started = Instant::now();
    let result = agent
        .post(&sub.url)
        .header("content-type", "application/json")
        .header("x-crm-event", &delivery.event)
        .header("x-crm-delivery", &id.to_string())
        .header(
            "x-crm-signature",
            &format!("t={t},v1={}", sign(&sub.secret, t, &payload)),
        )
        .send(&payload[..]);
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    let (status, error) = match result {
        Ok(response) => {
            let status = response.status().as_u16();
            let ok = (200..300).contains(&status);
            (Some(status), (!ok).then(|| format!("answered {status}")))
        }
        Err(e) => (None, Some(e.to_string())),
    };
    delivery.attempts.push(Attempt {
        at_ms: now_ms(),
        status,
        error: error.clone(),
        ms,
    });
    let next = if error.is_none() {
        delivery.state = "delivered".into();
        None
    } else if delivery.attempts.len() >= ATTEMPTS {
        delivery.state = "failed".into();
        None
    } else {
        let base = *hooks.retry_base.lock().expect("webhook lock");
        let wait = base * (1 << (delivery.attempts.len() - 1));
        delivery.next_at_ms = now_ms() + wait.as_millis() as i64;
        Some(delivery.next_at_ms)
    };
    finish(hooks, id, &delivery, next);
}

fn finish(hooks: &Webhooks, id: u64, delivery: &Delivery, next: Option<i64>) {
    let body = serde_json::to_string(delivery).unwrap_or_default();
    if let Err(e) = hooks.store.queue_set(OUTBOX, id, &body) {
        tracing::error!(error = %e, "recording a webhook delivery");
    }
    let mut pending = hooks.pending.lock().expect("webhook lock");
    match next {
        Some(at) => pending.insert(id, at),
        None => pending.remove(&id),
    };
}

const MANAGERS: &[Role] = &[Role::Integrator];

/// A subscription as given.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct WebhookBody {
    /// Where to POST: an http or https URL.
    pub url: String,
    /// customer.created, customer.updated, segment.entered, segment.left, plugin.failed.
    pub events: Vec<String>,
}

/// A subscription as listed (the secret only once, when it is created).
#[derive(Serialize, JsonSchema)]
pub(crate) struct WebhookView {
    pub name: String,
    pub url: String,
    pub events: Vec<String>,
    /// The key of the signatures: shown once, when the webhook is created.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

/// `GET /api/v1/webhooks`.
pub(crate) async fn list(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Vec<WebhookView>>, Problem> {
    require(&caller, MANAGERS, "read webhooks")?;
    Ok(Json(
        state
            .webhooks
            .subscriptions()
            .iter()
            .cloned()
            .map(|(name, s)| WebhookView {
                name,
                url: s.url,
                events: s.events,
                secret: None,
            })
            .collect(),
    ))
}

fn check(body: &WebhookBody) -> Result<(), Problem> {
    let uri: axum::http::Uri = body.url.parse().map_err(|e| {
        Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid URL",
            format!("{}: {e}", body.url),
        )
        .at("url")
    })?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
        return Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid URL",
            format!("{} is not an http or https URL with a host", body.url),
        )
        .at("url"));
    }
    if body.events.is_empty() {
        return Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "No events",
            format!("name one or more of {}", EVENTS.join(", ")),
        )
        .at("events"));
    }
    if let Some(e) = body.events.iter().find(|e| !EVENTS.contains(&e.as_str())) {
        return Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Unknown event",
            format!("'{e}' is not one of {}", EVENTS.join(", ")),
        )
        .at("events"));
    }
    Ok(())
}

/// `PUT /api/v1/webhooks/{name}`: creates a subscription (answering its
/// secret, once) or changes its URL and events (the secret stays).
pub(crate) async fn put(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(NamePath { name }): Path<NamePath>,
    Body(body): Body<WebhookBody>,
) -> Result<Saved<WebhookView>, Problem> {
    require(&caller, MANAGERS, "manage webhooks")?;
    app::base::check_name(&name)
        .map_err(|e| Problem::bad_request("Invalid name", format!("{e:#}")).at("name"))?;
    check(&body)?;
    let old = state.store.definition(SPACE, &name)?;
    let (secret, created) = match &old {
        Some(rev) => {
            let s: Subscription = serde_json::from_str(&rev.body).map_err(Problem::internal)?;
            (s.secret, false)
        }
        None => {
            let mut bytes = [0u8; 24];
            getrandom::fill(&mut bytes).map_err(|e| Problem::internal(e.to_string()))?;
            (format!("whsec_{}", hex::encode(bytes)), true)
        }
    };
    let sub = Subscription {
        url: body.url,
        events: body.events,
        secret,
    };
    let text = serde_json::to_string(&sub).map_err(Problem::internal)?;
    state
        .store
        .save_definition(SPACE, &name, &text, store::Expect::Any)?;
    state.webhooks.changed();
    let public = |s: &Subscription| serde_json::json!({"url": s.url, "events": s.events});
    state.store.audit(store::AuditEntry {
        seq: 0,
        at_ms: 0,
        actor: caller.actor().0,
        action: if created { "create" } else { "update" }.into(),
        kind: "webhook".into(),
        id: name.clone(),
        revision: None,
        before: old
            .and_then(|r| serde_json::from_str::<Subscription>(&r.body).ok())
            .map(|s| public(&s)),
        after: Some(public(&sub)),
    })?;
    Ok(Saved {
        created,
        body: WebhookView {
            name,
            url: sub.url,
            events: sub.events,
            secret: created.then_some(sub.secret),
        },
    })
}

/// `DELETE /api/v1/webhooks/{name}`.
pub(crate) async fn delete(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(NamePath { name }): Path<NamePath>,
) -> Result<NoContent, Problem> {
    require(&caller, MANAGERS, "manage webhooks")?;
    let deleted = state
        .store
        .delete_definition(SPACE, &name, store::Expect::Any)?;
    state.webhooks.changed();
    if !deleted {
        return Err(Problem::not_found(format!("no webhook '{name}'")));
    }
    state.store.audit(store::AuditEntry {
        seq: 0,
        at_ms: 0,
        actor: caller.actor().0,
        action: "delete".into(),
        kind: "webhook".into(),
        id: name,
        revision: None,
        before: None,
        after: None,
    })?;
    Ok(NoContent)
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeliveryQuery {
    /// The `next` of the previous page: deliveries older than this id.
    pub before: Option<u64>,
    /// 1 to 200 (50 by default).
    #[schemars(range(min = 1, max = 200))]
    pub limit: Option<u32>,
}

#[derive(Serialize, JsonSchema)]
pub(crate) struct DeliveryPage {
    pub items: Vec<Delivery>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<u64>,
}

/// `GET /api/v1/webhooks/{name}/deliveries`: the delivery log, newest first.
pub(crate) async fn deliveries(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(NamePath { name }): Path<NamePath>,
    Query(q): Query<DeliveryQuery>,
) -> Result<Json<DeliveryPage>, Problem> {
    require(&caller, MANAGERS, "read webhooks")?;
    let limit = super::problem::page_limit(q.limit, 50, 200)?;
    if state.store.definition(SPACE, &name)?.is_none() {
        return Err(Problem::not_found(format!("no webhook '{name}'")));
    }
    let mut items = Vec::new();
    let mut before = q.before;
    let mut more = false;
    'scan: loop {
        let page = state.store.queue_read(OUTBOX, before, 500, true)?;
        let Some(&(last, _)) = page.last() else { break };
        for (id, body) in page {
            if let Ok(mut d) = serde_json::from_str::<Delivery>(&body)
                && d.webhook == name
            {
                if items.len() == limit {
                    more = true;
                    break 'scan;
                }
                d.id = id;
                items.push(d);
            }
        }
        before = Some(last);
    }
    Ok(Json(DeliveryPage {
        next: items.last().filter(|_| more).map(|d| d.id),
        items,
    }))
}

#[derive(Serialize, JsonSchema)]
pub(crate) struct Queued {
    pub queued: bool,
}

/// `POST /api/v1/webhooks/{name}/ping`: queues a `ping` event to this
/// webhook alone, to try it.
pub(crate) async fn ping(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(NamePath { name }): Path<NamePath>,
) -> Result<Accepted<Queued>, Problem> {
    require(&caller, MANAGERS, "manage webhooks")?;
    let rev = state
        .store
        .definition(SPACE, &name)?
        .ok_or_else(|| Problem::not_found(format!("no webhook '{name}'")))?;
    let sub: Subscription = serde_json::from_str(&rev.body).map_err(Problem::internal)?;
    state.webhooks.queue(
        &name,
        &sub,
        "ping",
        serde_json::json!({"by": &*caller.name}),
    );
    Ok(Accepted {
        location: Some(format!("/api/v1/webhooks/{name}/deliveries")),
        body: Queued { queued: true },
    })
}
