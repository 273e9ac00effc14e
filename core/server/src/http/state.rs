//! What the handlers share: the CRM (`app::Crm`, which handlers reach
//! through `AppState`'s `Deref`) and what only HTTP has: sessions, the
//! failed sign-ins per address, request metrics, import jobs and the
//! webhook sender.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use app::Crm;
use store::Actor;

use super::Caller;
use super::Metrics;

pub struct AppState {
    pub crm: Arc<Crm>,
    pub(crate) sessions: super::console::Sessions,
    pub metrics: Metrics,
    /// Failed authentications per client address, for rate limiting.
    pub(super) failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
    /// Failed authentications allowed per client address and minute.
    pub(super) failed_sign_ins: AtomicU32,
    pub(crate) jobs: super::imports::Jobs,
    pub(crate) webhooks: Arc<super::webhooks::Webhooks>,
}

/// What only the HTTP side sets.
#[derive(Clone, Copy, Debug)]
pub struct HttpConfig {
    /// Failed authentications allowed per client address and minute.
    pub failed_sign_ins: u32,
    /// Mark the console's session cookie Secure (served over HTTPS by a
    /// proxy in front).
    pub secure_cookies: bool,
    /// The wait before a webhook delivery is tried a second time (doubled
    /// for each attempt after).
    pub webhook_retry: Duration,
}

impl Default for HttpConfig {
    fn default() -> HttpConfig {
        HttpConfig {
            failed_sign_ins: super::FAILURES_PER_MINUTE,
            secure_cookies: false,
            webhook_retry: super::webhooks::RETRY_BASE,
        }
    }
}

impl std::ops::Deref for AppState {
    type Target = Crm;

    fn deref(&self) -> &Crm {
        &self.crm
    }
}

impl AppState {
    /// The HTTP side of `crm`: its events go out as webhooks.
    pub fn new(crm: Arc<Crm>, config: HttpConfig) -> Arc<AppState> {
        let webhooks = super::webhooks::Webhooks::new(Arc::clone(&crm.store));
        webhooks.set_retry_base(config.webhook_retry);
        crm.send_events_to(Arc::clone(&webhooks) as Arc<dyn app::Events>);
        let sessions = super::console::Sessions::default();
        sessions
            .secure
            .store(config.secure_cookies, Ordering::Relaxed);
        Arc::new(AppState {
            crm,
            sessions,
            metrics: Metrics::default(),
            failures: Mutex::new(HashMap::new()),
            failed_sign_ins: AtomicU32::new(config.failed_sign_ins),
            jobs: Default::default(),
            webhooks,
        })
    }

    /// The flushes made so far and the writes they made durable (as
    /// `/metrics` gives them).
    pub fn flusher_counts(&self) -> (u64, u64) {
        (
            self.flusher.flushes.load(Ordering::Relaxed),
            self.flusher.flushed_writes.load(Ordering::Relaxed),
        )
    }

    /// Whether `ip` failed to sign in too often in the last minute.
    pub(crate) fn too_many_failures(&self, ip: IpAddr) -> bool {
        let failures = self.failures.lock().expect("failures lock");
        failures.get(&ip).is_some_and(|&(n, since)| {
            n >= self.failed_sign_ins.load(Ordering::Relaxed)
                && since.elapsed() < Duration::from_secs(60)
        })
    }

    /// Counts a failed sign-in from `ip`.
    pub(crate) fn failed(&self, ip: IpAddr) {
        let mut failures = self.failures.lock().expect("failures lock");
        let e = failures.entry(ip).or_insert((0, Instant::now()));
        if e.1.elapsed() >= Duration::from_secs(60) {
            *e = (0, Instant::now());
        }
        e.0 += 1;
    }
}

impl Caller {
    /// Who the audit log names for this caller's changes.
    pub fn actor(&self) -> Actor {
        let kind = if self.user { "user" } else { "token" };
        Actor::new(format!("{kind} {} ({})", self.name, self.role.as_str()))
    }
}
