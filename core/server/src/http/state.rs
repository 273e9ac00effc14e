//! What the handlers share: the store, the analysis snapshot with its
//! search index and segment workspace, and the writes that keep them in
//! step; acknowledged writes are durable, with one flush shared by the
//! writes that wait together (group commit).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock, RwLockWriteGuard, TryLockError};
use std::time::Instant;

use axum::http::StatusCode;
use model::{EntityKind, Record};
use store::{Actor, Expect, Store};

use super::problem::Problem;
use super::search::Search;
use super::{Caller, Metrics};
use crate::segments::Workspace;
use crate::tokens::Tokens;

/// The snapshot (in the segment workspace) and the search index over it;
/// read by lists and analyses, written with each change.
pub struct Data {
    pub work: Workspace,
    pub search: Search,
}

pub struct AppState {
    pub store: Arc<dyn Store>,
    /// The plugins (the workspace's), read without the data lock.
    pub registry: Arc<plugin_host::Registry>,
    pub data: RwLock<Data>,
    pub tokens: Tokens,
    pub users: crate::users::Users,
    pub(crate) sessions: super::console::Sessions,
    pub metrics: Metrics,
    /// Failed authentications per client address, for rate limiting.
    pub(super) failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
    /// Failed authentications allowed per client address and minute.
    pub(super) failed_sign_ins: std::sync::atomic::AtomicU32,
    pub(crate) flusher: Arc<Flusher>,
    /// Set while the snapshot is rebuilt after a delete.
    rebuilding: Mutex<bool>,
    /// Imports writing to the store around the snapshot (which catches up
    /// when they end).
    importing: AtomicU64,
    pub(crate) jobs: super::imports::Jobs,
    pub(crate) webhooks: Arc<super::webhooks::Webhooks>,
    pub(crate) memberships: super::live::Memberships,
    /// Grows whenever lines change (their customers' activity with them).
    lines_generation: AtomicU64,
    /// Every buyer's R, F and M scores (ranks among all buyers), and the
    /// lines generation they were worked out at.
    rfm: Mutex<Option<(u64, Arc<Vec<analysis::Scores>>)>>,
    /// Changes written to the store and not yet to the snapshot.
    pending: Arc<Mutex<Vec<Change>>>,
    /// Grows whenever the snapshot may change (under its write lock).
    generation: AtomicU64,
    /// When the generation last grew, in milliseconds since `started`.
    changed_at: AtomicU64,
    /// When it first grew after the score sheet was worked out (the time
    /// the sheet has been behind since), or `NOT_BEHIND`.
    scores_behind_since: AtomicU64,
    /// `SCORES_AFTER_QUIET` and `SCORES_AT_LEAST_EVERY` in milliseconds,
    /// unless set otherwise.
    scores_quiet: AtomicU64,
    scores_at_least_every: AtomicU64,
    started: Instant,
    /// Every customer's plugin scores, worked out ahead.
    pub(crate) scores: super::scores::Scores,
    /// Wakes the applier thread.
    applier: Condvar,
}

/// How long a writer waiting for the snapshot sleeps between tries.
const WRITE_RETRY: std::time::Duration = std::time::Duration::from_millis(1);

/// How long the snapshot stays unchanged before every customer's scores
/// are worked out again.
const SCORES_AFTER_QUIET: std::time::Duration = std::time::Duration::from_secs(2);

/// How long the scores go without being worked out again while writes
/// never pause: counted from the first write after they were worked out,
/// not from when they were (a first write after an idle hour does not
/// set every core to working them out in the middle of a run of writes).
const SCORES_AT_LEAST_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// `scores_behind_since` when no change came since the sheet was worked out.
const NOT_BEHIND: u64 = u64::MAX;

/// Held while an import writes to the store (`AppState::store_ahead`).
pub(crate) struct StoreAhead<'a>(&'a AppState);

impl Drop for StoreAhead<'_> {
    fn drop(&mut self) {
        self.0.importing.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A change the snapshot has yet to take in.
enum Change {
    /// A customer, product or campaign, with its new revision.
    Record(Record, u64),
    /// A customer's lines of a kind changed (and those of the customer a
    /// line moved from).
    Lines(EntityKind, String, Option<String>),
}

impl Change {
    /// Whether applying it may change what the snapshot holds about
    /// customer `customer_id` (a product or a campaign may concern anyone).
    fn concerns(&self, customer_id: &str) -> bool {
        match self {
            Change::Record(Record::Customer(c), _) => c.customer_id.as_str() == customer_id,
            Change::Record(..) => true,
            Change::Lines(_, customer, old) => {
                customer == customer_id || old.as_deref() == Some(customer_id)
            }
        }
    }
}

impl AppState {
    pub fn new(
        store: Arc<dyn Store>,
        snapshot: analysis::Snapshot,
        registry: plugin_host::Registry,
    ) -> anyhow::Result<Arc<AppState>> {
        let search = Search::build(&snapshot.customers);
        let work = Workspace::new(Arc::clone(&store), snapshot, registry)?;
        let registry = Arc::clone(&work.registry);
        let pending = Arc::new(Mutex::new(Vec::new()));
        let flusher = Flusher::start(
            Arc::clone(&store),
            Arc::clone(&work.registry),
            Arc::clone(&pending),
        );
        let webhooks = super::webhooks::Webhooks::new(Arc::clone(&store));
        let state = Arc::new(AppState {
            tokens: Tokens::new(Arc::clone(&store)),
            users: crate::users::Users::new(Arc::clone(&store)),
            sessions: Default::default(),
            registry,
            store,
            data: RwLock::new(Data { work, search }),
            metrics: Metrics::default(),
            failures: Mutex::new(HashMap::new()),
            failed_sign_ins: std::sync::atomic::AtomicU32::new(super::FAILURES_PER_MINUTE),
            flusher,
            rebuilding: Mutex::new(false),
            importing: AtomicU64::new(0),
            jobs: Default::default(),
            webhooks,
            memberships: Default::default(),
            lines_generation: AtomicU64::new(0),
            rfm: Mutex::new(None),
            pending,
            generation: AtomicU64::new(0),
            changed_at: AtomicU64::new(0),
            scores_behind_since: AtomicU64::new(NOT_BEHIND),
            scores_quiet: AtomicU64::new(SCORES_AFTER_QUIET.as_millis() as u64),
            scores_at_least_every: AtomicU64::new(SCORES_AT_LEAST_EVERY.as_millis() as u64),
            started: Instant::now(),
            scores: Default::default(),
            applier: Condvar::new(),
        });
        AppState::start_applier(&state);
        super::live::Memberships::start(&state);
        Ok(state)
    }

    /// The flushes made so far and the writes they made durable (as
    /// `/metrics` gives them).
    pub fn flusher_counts(&self) -> (u64, u64) {
        (
            self.flusher.flushes.load(Ordering::Relaxed),
            self.flusher.flushed_writes.load(Ordering::Relaxed),
        )
    }

    /// The wait before a webhook delivery is tried a second time (doubled
    /// for each attempt after).
    pub fn set_webhook_retry(&self, base: std::time::Duration) {
        self.webhooks.set_retry_base(base);
    }

    /// The segments of a customer (by snapshot row); `None` while the
    /// memberships are being built.
    pub fn segments_of(&self, row: u32) -> Option<Vec<String>> {
        self.memberships.of(row)
    }

    /// Lines changed: the R, F and M ranks are worked out again.
    pub(crate) fn lines_changed(&self) {
        self.lines_generation.fetch_add(1, Ordering::AcqRel);
    }

    /// The R, F and M scores of every buyer, as last worked out (they may
    /// lag the latest lines by the time it takes to work them out again,
    /// about half a second at 1M customers); `None` before the first time.
    pub(crate) fn rfm_scores(&self) -> Option<Arc<Vec<analysis::Scores>>> {
        self.rfm
            .lock()
            .expect("rfm lock")
            .as_ref()
            .map(|(_, s)| Arc::clone(s))
    }

    /// Works the R, F and M scores out again if lines changed since.
    pub(crate) fn refresh_rfm(&self) {
        let generation = self.lines_generation.load(Ordering::Acquire);
        if matches!(&*self.rfm.lock().expect("rfm lock"), Some((g, _)) if *g == generation) {
            return;
        }
        // The inputs are copied under the lock (tens of milliseconds at 1M
        // customers); the sorting is done after, so that writes go on.
        let (activity, rank, as_of) = {
            let data = self.read();
            let s = &data.work.snapshot;
            (
                s.activity().to_vec(),
                s.customers.rank().to_vec(),
                s.default_as_of(),
            )
        };
        let buyers: Vec<u32> = (0..activity.len() as u32)
            .filter(|&ci| activity[ci as usize].lines > 0)
            .collect();
        let scores = analysis::rfm_scores(&activity, &rank, &buyers, as_of);
        *self.rfm.lock().expect("rfm lock") = Some((generation, Arc::new(scores)));
    }

    /// Segments were saved or deleted: memberships are built anew.
    pub fn segments_changed(&self) {
        self.memberships.invalidate();
    }

    /// Whether `ip` failed to sign in too often in the last minute.
    pub(crate) fn too_many_failures(&self, ip: IpAddr) -> bool {
        let failures = self.failures.lock().expect("failures lock");
        failures.get(&ip).is_some_and(|&(n, since)| {
            n >= self
                .failed_sign_ins
                .load(std::sync::atomic::Ordering::Relaxed)
                && since.elapsed() < std::time::Duration::from_secs(60)
        })
    }

    /// Counts a failed sign-in from `ip`.
    pub(crate) fn failed(&self, ip: IpAddr) {
        let mut failures = self.failures.lock().expect("failures lock");
        let e = failures.entry(ip).or_insert((0, Instant::now()));
        if e.1.elapsed() >= std::time::Duration::from_secs(60) {
            *e = (0, Instant::now());
        }
        e.0 += 1;
    }

    /// Marks session cookies Secure (when a proxy serves the console over
    /// HTTPS).
    pub fn set_secure_cookies(&self, secure: bool) {
        self.sessions
            .secure
            .store(secure, std::sync::atomic::Ordering::Relaxed);
    }

    /// Sets how many failed authentications a client address may make in a
    /// minute before it gets 429.
    pub fn set_failed_sign_ins(&self, n: u32) {
        self.failed_sign_ins.store(n, Ordering::Relaxed);
    }

    /// How long writes must pause before every customer's scores are
    /// worked out again.
    pub fn set_scores_quiet(&self, quiet: std::time::Duration) {
        self.scores_quiet
            .store(quiet.as_millis() as u64, Ordering::Relaxed);
    }

    /// How long the scores may stay behind the writes when writes never
    /// pause (counted from the first write they miss).
    pub fn set_scores_at_least_every(&self, every: std::time::Duration) {
        self.scores_at_least_every
            .store(every.as_millis() as u64, Ordering::Relaxed);
    }

    /// The snapshot, if it holds everything acknowledged so far about
    /// customer `customer_id`: no change of the customer or of their lines
    /// waits to be applied (nor of a product or campaign), no import writes
    /// around the snapshot, no rebuild after a delete is under way. Readers
    /// that would otherwise read the store (the customer 360) use it then;
    /// writes to other customers do not send them to the store.
    pub(crate) fn read_current(
        &self,
        customer_id: &str,
    ) -> Option<std::sync::RwLockReadGuard<'_, Data>> {
        let data = self.read();
        // Changes are taken from `pending` under the write lock: with the
        // read lock held, every change taken is applied.
        let current = !self
            .pending
            .lock()
            .expect("pending lock")
            .iter()
            .any(|change| change.concerns(customer_id))
            && self.importing.load(Ordering::Acquire) == 0
            && !*self.rebuilding.lock().expect("rebuild lock");
        current.then_some(data)
    }

    /// Marks the store as ahead of the snapshot until the guard is dropped
    /// (after the snapshot caught up).
    pub(crate) fn store_ahead(&self) -> StoreAhead<'_> {
        self.importing.fetch_add(1, Ordering::AcqRel);
        StoreAhead(self)
    }

    pub fn read(&self) -> std::sync::RwLockReadGuard<'_, Data> {
        self.data
            .read()
            .expect("a request panicked holding the data lock")
    }

    /// The snapshot to change (its generation grows), once no reader holds
    /// it. For threads of their own and blocking tasks; handlers use
    /// `write_data_async`.
    ///
    /// A writer never queues on the lock: std's `RwLock` then holds up every
    /// new reader (every 360, every list) behind the longest reader running
    /// (a segment tested over every customer, the score sheet worked out),
    /// seconds at 1M customers. It tries, and sleeps between tries.
    pub(crate) fn write_data(&self) -> RwLockWriteGuard<'_, Data> {
        loop {
            if let Some(data) = self.try_write_data() {
                return data;
            }
            std::thread::sleep(WRITE_RETRY);
        }
    }

    /// `write_data` for handlers: waits without holding up the runtime's
    /// thread.
    pub(crate) async fn write_data_async(&self) -> RwLockWriteGuard<'_, Data> {
        loop {
            if let Some(data) = self.try_write_data() {
                return data;
            }
            tokio::time::sleep(WRITE_RETRY).await;
        }
    }

    fn try_write_data(&self) -> Option<RwLockWriteGuard<'_, Data>> {
        match self.data.try_write() {
            Ok(data) => {
                self.next_generation();
                // Deletes, plugin changes, catching up, rebuilds.
                self.scores.everyone_changed();
                Some(data)
            }
            Err(TryLockError::WouldBlock) => None,
            Err(TryLockError::Poisoned(_)) => panic!("a request panicked holding the data lock"),
        }
    }

    fn next_generation(&self) {
        let now = self.started.elapsed().as_millis() as u64;
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.changed_at.store(now, Ordering::Release);
        let _ = self.scores_behind_since.compare_exchange(
            NOT_BEHIND,
            now,
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }

    /// The snapshot's generation: read under its read lock, it stays the
    /// same while the lock is held.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Works every customer's plugin scores out again if the snapshot, the
    /// R, F and M ranks or the plugins changed since, once writes have
    /// paused for `SCORES_AFTER_QUIET` (`set_scores_quiet`), or
    /// `SCORES_AT_LEAST_EVERY` after the first change since the last time
    /// if they never do (working them out takes both cores for a second or
    /// two at 1M customers: not after every write; until then, the 360
    /// calls the plugins itself for the customers written since).
    pub(crate) fn refresh_scores(&self) {
        let now = self.started.elapsed().as_millis() as u64;
        let quiet = now.saturating_sub(self.changed_at.load(Ordering::Acquire));
        let due = match self.scores_behind_since.load(Ordering::Acquire) {
            NOT_BEHIND => false,
            since => {
                now.saturating_sub(since) >= self.scores_at_least_every.load(Ordering::Relaxed)
            }
        };
        if self.generation() > 0 && quiet < self.scores_quiet.load(Ordering::Relaxed) && !due {
            return;
        }
        let rfm = self.rfm_scores();
        let plugins = self.registry.enabled();
        let data = self.read();
        let generation = self.generation();
        if self.scores.is_current(generation, &rfm, &plugins) {
            return;
        }
        let started = Instant::now();
        // The generation stays while the read lock is held: a change from
        // now on finds the sheet current and starts the clock again.
        self.scores_behind_since
            .store(NOT_BEHIND, Ordering::Release);
        self.scores
            .work_out(&data.work.snapshot, generation, &self.registry, rfm);
        tracing::info!(
            customers = data.work.snapshot.customers.len(),
            seconds = started.elapsed().as_secs_f64(),
            mib = self.scores.memory_bytes() as f64 / (1 << 20) as f64,
            "plugin scores worked out"
        );
    }

    /// Writes one record, brings the snapshot along, and returns once the
    /// write is durable; its new revision (for customers, products and
    /// campaigns). The snapshot is changed under its write lock when that is
    /// free within a few milliseconds, else by the applier thread as soon as
    /// it is: a write never waits for a long reader (an analysis, a segment
    /// evaluated over every customer).
    pub async fn write(
        &self,
        caller: &Caller,
        record: Record,
        expect: Expect,
    ) -> Result<Option<u64>, Problem> {
        let begun = self.flusher.begin();
        let actor = caller.actor();
        if !matches!(record, Record::Transaction(_) | Record::Interaction(_)) {
            return self.commit(begun, record, expect, actor).await.map(Some);
        }
        let old_customer = self.store.line_customer(record.kind(), record.id())?;
        self.store.put_line(record.clone(), expect, &actor)?;
        let customer = line_customer(&record).to_owned();
        self.pending
            .lock()
            .expect("pending lock")
            .push(Change::Lines(record.kind(), customer, old_customer));
        self.settle().await;
        self.flusher.durable(begun).await?;
        Ok(None)
    }

    /// Writes a customer, product or campaign through the flusher (which
    /// hands it to the snapshot); its revision, once durable.
    async fn commit(
        &self,
        begun: Begun<'_>,
        record: Record,
        expect: Expect,
        actor: Actor,
    ) -> Result<u64, Problem> {
        let event = if matches!(expect, Expect::New) {
            "customer.created"
        } else {
            "customer.updated"
        };
        let announced = match &record {
            Record::Customer(c) if self.webhooks.wanted(event) => Some(c.clone()),
            _ => None,
        };
        let write = store::Expected {
            record,
            expect,
            actor,
        };
        let revision = self.flusher.commit(begun, write).await?;
        if let Some(c) = announced {
            self.webhooks.emit(
                event,
                serde_json::json!({"customer_id": c.customer_id.as_str(), "revision": revision, "customer": c}),
            );
        }
        self.settle().await;
        Ok(revision)
    }

    /// Applies the pending changes to the snapshot if its write lock comes
    /// free within a few milliseconds; else the applier thread will.
    async fn settle(&self) {
        // One try; a write lock held by another request is let go within
        // microseconds, so a second try after yielding usually succeeds.
        for _ in 0..2 {
            let applied = match self.data.try_write() {
                Ok(mut data) => {
                    self.apply_pending(&mut data);
                    true
                }
                Err(std::sync::TryLockError::WouldBlock) => false,
                Err(std::sync::TryLockError::Poisoned(_)) => return,
            };
            if applied {
                return;
            }
            tokio::task::yield_now().await;
        }
        self.applier.notify_one();
    }

    /// Applies the changes written to the store but not yet to the snapshot,
    /// in the order they were written.
    fn apply_pending(&self, data: &mut Data) {
        let changes = std::mem::take(&mut *self.pending.lock().expect("pending lock"));
        if !changes.is_empty() {
            self.next_generation();
        }
        for change in changes {
            let result = match change {
                Change::Record(Record::Customer(c), revision) => {
                    let row = data.work.snapshot.upsert_customer_revised(&c, revision);
                    data.search.set(row as usize, &c.name);
                    self.customer_changed(row);
                    Ok(())
                }
                // Scores read the product list: memberships are built anew.
                Change::Record(Record::Product(p), _) => {
                    data.work.snapshot.upsert_product(&p);
                    self.memberships.invalidate();
                    self.scores.everyone_changed();
                    Ok(())
                }
                Change::Record(Record::Campaign(c), _) => {
                    data.work.snapshot.upsert_campaign(&c);
                    self.scores.everyone_changed();
                    Ok(())
                }
                Change::Record(..) => Ok(()),
                Change::Lines(kind, customer, old) => {
                    self.lines_changed();
                    for id in std::iter::once(&customer).chain(&old) {
                        if let Some(row) = data.work.snapshot.customers.find(id) {
                            self.customer_changed(row);
                        }
                    }
                    refresh_lines(&*self.store, data, kind, &customer).and_then(|()| {
                        match old.filter(|o| *o != customer) {
                            Some(old) => refresh_lines(&*self.store, data, kind, &old),
                            None => Ok(()),
                        }
                    })
                }
            };
            if let Err(e) = result {
                tracing::error!(detail = %e.detail, "applying a change to the snapshot; it is rebuilt");
                self.memberships.invalidate();
            }
        }
    }

    /// Customer `row` or their lines changed (under the snapshot's write
    /// lock): their segment memberships and scores are worked out again.
    fn customer_changed(&self, row: u32) {
        self.memberships.touched(row);
        self.scores.touched(row);
    }

    /// Applies pending changes whenever the snapshot's write lock can be had.
    fn start_applier(state: &Arc<AppState>) {
        let weak = Arc::downgrade(state);
        std::thread::Builder::new()
            .name("crm-applier".into())
            .spawn(move || {
                loop {
                    let Some(state) = weak.upgrade() else { return };
                    {
                        let pending = state.pending.lock().expect("pending lock");
                        let _ = state
                            .applier
                            .wait_timeout(pending, std::time::Duration::from_millis(50))
                            .expect("pending lock");
                    }
                    // Never queued as a waiting writer (which would hold up
                    // every reader behind a long one): it tries, and waits.
                    while !state.pending.lock().expect("pending lock").is_empty() {
                        if let Ok(mut data) = state.data.try_write() {
                            state.apply_pending(&mut data);
                            break;
                        }
                        std::thread::sleep(std::time::Duration::from_millis(2));
                    }
                }
            })
            .expect("starting the applier thread");
    }

    /// Deletes one record; false if there was none. Products and campaigns
    /// that lines name are refused; deleting a customer, product or campaign
    /// rebuilds the snapshot in the background.
    pub async fn delete(
        self: &Arc<Self>,
        caller: &Caller,
        kind: EntityKind,
        id: &str,
        expect: Expect,
    ) -> Result<bool, Problem> {
        let begun = self.flusher.begin();
        let actor = caller.actor();
        let deleted = {
            let mut data = self.write_data_async().await;
            self.apply_pending(&mut data);
            if let Some(why) = still_named(&data.work.snapshot, kind, id) {
                return Err(Problem::new(StatusCode::CONFLICT, "In use", why));
            }
            let deleted = self
                .store
                .delete(kind, id, expect, &actor)
                .map_err(|e| stale(e, expect))?;
            if let Some(line @ (Record::Transaction(_) | Record::Interaction(_))) = &deleted {
                let customer = line_customer(line);
                refresh_lines(&*self.store, &mut data, kind, customer)?;
                if matches!(line, Record::Transaction(_)) {
                    self.lines_changed();
                }
                if let Some(row) = data.work.snapshot.customers.find(customer) {
                    self.customer_changed(row);
                }
            }
            deleted
        };
        self.flusher.durable(begun).await?;
        if deleted.is_some()
            && matches!(
                kind,
                EntityKind::Customer | EntityKind::Product | EntityKind::Campaign
            )
        {
            self.rebuild_soon();
        }
        Ok(deleted.is_some())
    }

    /// Brings the snapshot up to the store after writes made around it (an
    /// import): applies the changes, or rebuilds when there are many.
    pub fn catch_up(self: &Arc<Self>) {
        let mut data = self.write_data();
        self.apply_pending(&mut data);
        let data = &mut *data;
        match crate::host::catch_up(&*self.store, &mut data.work.snapshot) {
            Ok(Some(_)) => {
                data.search = Search::build(&data.work.snapshot.customers);
                self.memberships.invalidate();
                self.lines_changed();
            }
            Ok(None) => self.rebuild_soon(),
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "catching the snapshot up");
                self.rebuild_soon();
            }
        }
    }

    /// Rebuilds the snapshot from the store (after deletes, which it cannot
    /// follow row by row), then applies what changed meanwhile.
    fn rebuild_soon(self: &Arc<Self>) {
        {
            let mut busy = self.rebuilding.lock().expect("rebuild lock");
            if *busy {
                return;
            }
            *busy = true;
        }
        let state = Arc::clone(self);
        std::thread::spawn(move || {
            // Deletes that land while this runs are seen by the change log.
            let result = crate::host::build(&*state.store).and_then(|mut fresh| {
                let mut data = state.write_data();
                match crate::host::catch_up(&*state.store, &mut fresh)? {
                    Some(_) => {}
                    None => fresh = crate::host::build(&*state.store)?,
                }
                data.search = Search::build(&fresh.customers);
                data.work.snapshot = fresh;
                state.memberships.invalidate();
                state.lines_changed();
                Ok(())
            });
            if let Err(e) = result {
                tracing::error!(error = %format!("{e:#}"), "rebuilding the snapshot after a delete");
            }
            *state.rebuilding.lock().expect("rebuild lock") = false;
        });
    }
}

fn stale(e: store::StoreError, expect: Expect) -> Problem {
    match e {
        store::StoreError::Conflict(detail) if matches!(expect, Expect::Revision(_)) => {
            Problem::new(
                StatusCode::PRECONDITION_FAILED,
                "Precondition failed",
                detail,
            )
            .at("If-Match")
        }
        other => other.into(),
    }
}

fn line_customer(record: &Record) -> &str {
    match record {
        Record::Transaction(t) => t.customer_id.as_str(),
        Record::Interaction(i) => i.customer_id.as_str(),
        other => other.id(),
    }
}

/// Re-reads a customer's lines of `kind` into the snapshot.
fn refresh_lines(
    store: &dyn Store,
    data: &mut Data,
    kind: EntityKind,
    customer: &str,
) -> Result<(), Problem> {
    let snapshot = &mut data.work.snapshot;
    let Some(row) = snapshot.customers.find(customer) else {
        return Ok(());
    };
    let id = model::CustomerId::parse(customer).map_err(|e| Problem::internal(e.to_string()))?;
    match kind {
        EntityKind::Transaction => snapshot.set_transactions(row, &store.transactions_of(&id)?),
        EntityKind::Interaction => snapshot.set_interactions(row, &store.interactions_of(&id)?),
        _ => {}
    }
    Ok(())
}

/// Why a product or campaign cannot go: lines name it.
fn still_named(snapshot: &analysis::Snapshot, kind: EntityKind, id: &str) -> Option<String> {
    let n = snapshot.customers.len() as u32;
    match kind {
        EntityKind::Product => {
            let p = snapshot.products.find(id)?;
            let in_txns = (0..n).any(|r| snapshot.txns.of(r).product.contains(&p));
            let in_interactions = (0..n).any(|r| snapshot.interactions.of(r).product.contains(&p));
            (in_txns || in_interactions).then(|| {
                format!("product {id} is named by transactions or interactions; delete those first")
            })
        }
        EntityKind::Campaign => {
            let c = snapshot.campaign(id)?;
            (0..n)
                .any(|r| snapshot.interactions.of(r).campaign.contains(&c))
                .then(|| format!("campaign {id} is named by interactions; delete those first"))
        }
        _ => None,
    }
}

impl Caller {
    pub fn actor(&self) -> Actor {
        let kind = if self.user { "user" } else { "token" };
        Actor::new(format!("{kind} {} ({})", self.name, self.role.as_str()))
    }
}

/// Group commit: writers wait for a flush that started after their write;
/// one flush serves every writer waiting at the time, and each is woken
/// once, when its write is durable. Customers, products and campaigns are
/// also written here, together: the records gathered for a flush go to the
/// store in one call (one transaction per kind, so the counts, the change
/// log and the audit log's newest node are written once for them all),
/// then the flush makes them durable. A flush starts as soon as every
/// write under way waits for one (so a lone write is flushed at once), or
/// when the first waiter has waited `GATHER_MICROS`.
pub(crate) struct Flusher {
    /// Writes that asked to be made durable so far.
    asked: AtomicU64,
    /// Writes begun (`Flusher::begin`) that do not wait for a flush yet.
    under_way: AtomicU64,
    waiting: Mutex<Waiting>,
    wake: Condvar,
    /// Flushes made, the time they took, and the writes they made durable.
    pub(crate) flushes: AtomicU64,
    pub(crate) flush_micros: AtomicU64,
    pub(crate) flushed_writes: AtomicU64,
}

#[derive(Default)]
struct Waiting {
    /// Writers whose write is in the store: its number, and how to wake them.
    flushes: Vec<(u64, Waiter)>,
    /// Records to write, each with how to tell its writer the outcome.
    records: Vec<(store::Expected, RecordWaiter)>,
}

impl Waiting {
    fn is_empty(&self) -> bool {
        self.flushes.is_empty() && self.records.is_empty()
    }
}

type Waiter = tokio::sync::oneshot::Sender<Result<(), String>>;
type RecordWaiter = tokio::sync::oneshot::Sender<Result<u64, Problem>>;

/// The longest a flush waits for the writes under way to join it.
const GATHER_MICROS: u64 = 2000;

/// A write under way: counted until it waits for its flush (or fails).
pub(crate) struct Begun<'a> {
    flusher: &'a Flusher,
    counted: bool,
}

impl Drop for Begun<'_> {
    /// A write that failed before waiting for its flush.
    fn drop(&mut self) {
        if self.counted {
            self.flusher.under_way.fetch_sub(1, Ordering::AcqRel);
            self.flusher.wake.notify_one();
        }
    }
}

impl Flusher {
    /// Starts the flusher thread. Customers it is given are checked against
    /// the plugins of `registry` before they are written; the records it
    /// writes are handed to the snapshot through `written`, in the order
    /// they were written.
    fn start(
        store: Arc<dyn Store>,
        registry: Arc<plugin_host::Registry>,
        written: Arc<Mutex<Vec<Change>>>,
    ) -> Arc<Flusher> {
        let flusher = Arc::new(Flusher {
            asked: AtomicU64::new(0),
            under_way: AtomicU64::new(0),
            waiting: Mutex::new(Waiting::default()),
            wake: Condvar::new(),
            flushes: AtomicU64::new(0),
            flush_micros: AtomicU64::new(0),
            flushed_writes: AtomicU64::new(0),
        });
        let weak = Arc::downgrade(&flusher);
        std::thread::Builder::new()
            .name("crm-flusher".into())
            .spawn(move || {
                // Writes up to this number are on disk.
                let mut flushed = 0;
                loop {
                    let Some(f) = weak.upgrade() else { return };
                    f.gather();
                    // Every write numbered up to `target` was made before
                    // this read: one flush now covers them all.
                    let target = f.asked.load(Ordering::Acquire);
                    let (behind, records) = {
                        let mut waiting = f.waiting.lock().expect("flusher lock");
                        (
                            waiting.flushes.iter().any(|(n, _)| *n > flushed),
                            std::mem::take(&mut waiting.records),
                        )
                    };
                    // A panic here drops the writers' senders (each is told
                    // its write failed); the thread goes on for the others.
                    let records = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        let records = validate_records(&registry, records);
                        write_records(&*store, records, &written)
                    }))
                    .unwrap_or_else(|_| {
                        tracing::error!(
                            "writing the gathered records failed; their writers are told"
                        );
                        Vec::new()
                    });
                    let mut error = None;
                    if behind || !records.is_empty() {
                        let started = Instant::now();
                        error = store.flush().err().map(|e| e.to_string());
                        f.flushes.fetch_add(1, Ordering::Relaxed);
                        f.flush_micros
                            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
                        if error.is_none() {
                            let written = records.iter().filter(|(_, o)| o.is_ok()).count();
                            f.flushed_writes
                                .fetch_add(target - flushed + written as u64, Ordering::Relaxed);
                            flushed = target;
                        }
                    }
                    let ready: Vec<(u64, Waiter)> = {
                        let mut waiting = f.waiting.lock().expect("flusher lock");
                        let (ready, later) = std::mem::take(&mut waiting.flushes)
                            .into_iter()
                            .partition(|(n, _)| *n <= target);
                        waiting.flushes = later;
                        ready
                    };
                    for (_, waiter) in ready {
                        let _ = waiter.send(match &error {
                            None => Ok(()),
                            Some(e) => Err(e.clone()),
                        });
                    }
                    for (waiter, outcome) in records {
                        let _ = waiter.send(match (&error, outcome) {
                            (Some(e), Ok(_)) => Err(not_durable(e)),
                            (_, outcome) => outcome,
                        });
                    }
                }
            })
            .expect("starting the flusher thread");
        flusher
    }

    /// Waits for a write to wait, then (up to `GATHER_MICROS`) for the
    /// writes under way to join it.
    fn gather(&self) {
        let waiting = self.waiting.lock().expect("flusher lock");
        let (waiting, _) = self
            .wake
            .wait_timeout_while(waiting, std::time::Duration::from_millis(200), |w| {
                w.is_empty()
            })
            .expect("flusher lock");
        if !waiting.is_empty() {
            let _ = self
                .wake
                .wait_timeout_while(
                    waiting,
                    std::time::Duration::from_micros(GATHER_MICROS),
                    |_| self.under_way.load(Ordering::Acquire) > 0,
                )
                .expect("flusher lock");
        }
    }

    /// Counts a write as under way until it calls `durable` or `commit`: a
    /// flush waits (a little) for it to join.
    pub(crate) fn begin(&self) -> Begun<'_> {
        self.under_way.fetch_add(1, Ordering::AcqRel);
        Begun {
            flusher: self,
            counted: true,
        }
    }

    /// Adds a waiting write (`wait`) and counts `begun` off, under one lock:
    /// the flusher sees each write either under way or waiting, never
    /// neither.
    fn join(&self, mut begun: Begun<'_>, wait: impl FnOnce(&mut Waiting)) {
        {
            let mut waiting = self.waiting.lock().expect("flusher lock");
            wait(&mut waiting);
            if std::mem::take(&mut begun.counted) {
                self.under_way.fetch_sub(1, Ordering::AcqRel);
            }
        }
        self.wake.notify_one();
    }

    /// Returns once everything written before the call is on disk.
    pub(crate) async fn durable(&self, begun: Begun<'_>) -> Result<(), Problem> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.join(begun, |waiting| {
            let ticket = self.asked.fetch_add(1, Ordering::AcqRel) + 1;
            waiting.flushes.push((ticket, tx));
        });
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(not_durable(&e)),
            Err(_) => Err(Problem::internal("the flusher stopped")),
        }
    }

    /// Writes a customer, product or campaign with the others gathered for
    /// the next flush; its new revision, once it is durable.
    pub(crate) async fn commit(
        &self,
        begun: Begun<'_>,
        write: store::Expected,
    ) -> Result<u64, Problem> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.join(begun, |waiting| waiting.records.push((write, tx)));
        rx.await.unwrap_or_else(|_| {
            Err(Problem::internal(
                "the server failed while writing this record: it may not be stored",
            ))
        })
    }
}

/// Why the plugins refuse a customer (fields and validate hooks).
fn refused(e: anyhow::Error) -> Problem {
    match e.downcast_ref::<crate::plugins::Refused>() {
        Some(refused) => {
            let mut p = Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Refused by a rule",
                refused.to_string(),
            );
            p.field = refused.issues.first().map(|(f, _)| f.clone());
            p.errors = refused
                .issues
                .iter()
                .map(|(field, message)| super::problem::FieldIssue {
                    field: field.clone(),
                    message: message.clone(),
                })
                .collect();
            p
        }
        None => Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Refused by a plugin",
            format!("{e:#}"),
        ),
    }
}

/// Checks the customers among the gathered records against the plugins
/// (fields, and one call of each validate hook for them all), applying
/// their patches; the writers of refused ones are told at once. The
/// records left to write.
fn validate_records(
    registry: &plugin_host::Registry,
    records: Vec<(store::Expected, RecordWaiter)>,
) -> Vec<(store::Expected, RecordWaiter)> {
    let rules = crate::plugins::FieldRules::of(registry);
    let nothing_to_check =
        rules.is_empty() && !registry.enabled().iter().any(|p| p.manifest.hooks.validate);
    if nothing_to_check
        || !records
            .iter()
            .any(|(w, _)| matches!(w.record, Record::Customer(_)))
    {
        return records;
    }
    let (customers, mut left): (Vec<_>, Vec<_>) = records
        .into_iter()
        .partition(|(w, _)| matches!(w.record, Record::Customer(_)));
    let mut people = Vec::with_capacity(customers.len());
    let mut writers = Vec::with_capacity(customers.len());
    for (write, waiter) in customers {
        if let Record::Customer(c) = write.record {
            people.push(c);
            writers.push((write.expect, write.actor, waiter));
        }
    }
    let outcomes = crate::plugins::validate_writes(registry, &rules, people);
    for ((expect, actor, waiter), outcome) in writers.into_iter().zip(outcomes) {
        match outcome {
            Ok(customer) => left.push((
                store::Expected {
                    record: Record::Customer(customer),
                    expect,
                    actor,
                },
                waiter,
            )),
            Err(e) => {
                let _ = waiter.send(Err(refused(e)));
            }
        }
    }
    left
}

fn not_durable(e: &str) -> Problem {
    Problem::internal(format!("the write may not be durable: {e}"))
}

/// Writes the gathered records in one call and hands the ones written to
/// the snapshot; each writer with its outcome (to be sent once flushed).
fn write_records(
    store: &dyn Store,
    records: Vec<(store::Expected, RecordWaiter)>,
    written: &Mutex<Vec<Change>>,
) -> Vec<(RecordWaiter, Result<u64, Problem>)> {
    if records.is_empty() {
        return Vec::new();
    }
    let (writes, waiters): (Vec<store::Expected>, Vec<RecordWaiter>) = records.into_iter().unzip();
    match store.upsert_each_expecting(&writes) {
        Ok(results) => {
            let mut written = written.lock().expect("pending lock");
            writes
                .into_iter()
                .zip(results)
                .zip(waiters)
                .map(|((write, result), waiter)| {
                    let expect = write.expect;
                    if let Ok(revision) = result {
                        written.push(Change::Record(write.record, revision));
                    }
                    (waiter, result.map_err(|e| stale(e, expect)))
                })
                .collect()
        }
        Err(e) => {
            let problem = Problem::from(e);
            waiters
                .into_iter()
                .map(|waiter| (waiter, Err(problem.clone())))
                .collect()
        }
    }
}
