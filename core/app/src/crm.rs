//! `Crm`: the CRM as one value. It owns the store, the analysis snapshot
//! (with its search index and the segment catalog, behind one lock) and
//! its checkpoint, the plugins, the score sheet, the live memberships,
//! access (tokens, users) and the write path; front ends (the command
//! line, the HTTP API) hold one and add only what is theirs.
//!
//! Every write goes to the store first, then to the snapshot under its
//! write lock, and is answered once durable. No writer ever queues on that
//! lock (std's `RwLock` would then hold every new reader behind the
//! longest one running: a segment tested over every customer, the score
//! sheet): writers try it and sleep 1 ms between tries (`write_data`,
//! `write_data_async` in async code), or leave their change to the applier
//! thread, which does the same.
//!
//! Pending changes are applied from three places: the writer itself, right
//! after its write (so that its customer's next 360 is served from memory),
//! the applier thread (when the lock was busy), and a delete (which needs
//! the snapshot current before it checks what names the record). Each takes
//! the whole pending list under the snapshot's write lock, so every change
//! is applied once, in the order it was written.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, RwLock, RwLockWriteGuard, TryLockError};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use model::{EntityKind, Record};
use store::{Actor, Expect, Store};

use crate::base::Base;
use crate::search::Search;
use crate::tokens::Tokens;
use crate::write::{Begun, Flusher, WriteError};

/// What the CRM holds in memory about the customer base, behind one lock:
/// the snapshot with the plugins and the segment catalog (`base`), and the
/// folded names that search reads.
pub struct Current {
    pub base: Base,
    pub search: Search,
}

/// Settings of a `Crm`; `Config::default()` is what `crm serve` runs with.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    /// Memory for the store's cached pages, in bytes.
    pub cache_bytes: u64,
    /// How long writes must pause before every customer's plugin scores
    /// are worked out again.
    pub scores_after_quiet: Duration,
    /// How long the scores go without being worked out again while writes
    /// never pause: counted from the first write after they were worked
    /// out, not from when they were (a first write after an idle hour does
    /// not set every core to working them out in the middle of a run of
    /// writes).
    pub scores_at_least_every: Duration,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            cache_bytes: store::Options::default().cache_bytes,
            scores_after_quiet: Duration::from_secs(2),
            scores_at_least_every: Duration::from_secs(60),
        }
    }
}

/// Where the CRM's events go (the HTTP side delivers them as webhooks):
/// `customer.created`, `customer.updated`, `segment.entered`,
/// `segment.left`, `plugin.failed`.
pub trait Events: Send + Sync {
    /// Whether anyone listens for `event` (its payload is not built if not).
    fn wanted(&self, event: &str) -> bool;
    fn emit(&self, event: &str, payload: serde_json::Value);
}

pub struct Crm {
    pub store: Arc<dyn Store>,
    /// The plugins (the base's), read without the data lock.
    pub registry: Arc<plugin_host::Registry>,
    data: RwLock<Current>,
    pub tokens: Tokens,
    pub users: crate::users::Users,
    pub flusher: Arc<Flusher>,
    /// Set while the snapshot is rebuilt after a delete.
    rebuilding: Mutex<bool>,
    /// Imports writing to the store around the snapshot (which catches up
    /// when they end).
    importing: AtomicU64,
    pub memberships: crate::memberships::Memberships,
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
    config: Config,
    started: Instant,
    /// Every customer's plugin scores, worked out ahead.
    pub scores: crate::score_sheet::ScoreSheet,
    /// Wakes the applier thread.
    applier: Condvar,
    events: OnceLock<Arc<dyn Events>>,
    /// Where `open` found the snapshot: checkpointed there on `close`.
    opened: Option<Opened>,
}

/// Where and how `Crm::open` found the snapshot.
struct Opened {
    checkpoint: PathBuf,
    readiness: crate::checkpoint::Readiness,
    took: Duration,
}

/// Opens the store in `dir`; a store that must already exist is not
/// created by a typo.
pub fn open_store(dir: &Path, create: bool, cache_bytes: u64) -> anyhow::Result<Arc<dyn Store>> {
    if !create && !dir.exists() {
        anyhow::bail!(
            "no store at {} (create one with `crm init --db {}`, or `crm import --db {} DIR`)",
            dir.display(),
            dir.display(),
            dir.display()
        );
    }
    match store::open(dir, &store::Options { cache_bytes }) {
        Err(store::StoreError::Locked { path }) => match serving(dir) {
            Some(addr) => anyhow::bail!(
                "the store at {} is held by `crm serve` on http://{}: stop it first, or make the change through its API (for example `curl -H 'Authorization: Bearer TOKEN' http://{}/api/v1/...`; the reference is at http://{}/api/docs)",
                path.display(),
                addr.trim(),
                addr.trim(),
                addr.trim()
            ),
            None => anyhow::bail!(
                "the store at {} is in use by another process (a running `crm serve` or command); wait for it or stop it",
                path.display()
            ),
        },
        other => other.with_context(|| format!("opening the store at {}", dir.display())),
    }
}

/// The file in a store's directory where `crm serve` notes its address
/// while it serves.
pub const SERVING: &str = "crm-serve.addr";

/// The address `crm serve` noted in `dir`, if a server answers there (a
/// server killed leaves its note behind).
fn serving(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join(SERVING)).ok()?;
    let addr: std::net::SocketAddr = text.trim().parse().ok()?;
    std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300)).ok()?;
    Some(addr.to_string())
}

/// How long a writer waiting for the snapshot sleeps between tries.
const WRITE_RETRY: std::time::Duration = std::time::Duration::from_millis(1);

/// `scores_behind_since` when no change came since the sheet was worked out.
const NOT_BEHIND: u64 = u64::MAX;

/// Held while an import writes to the store (`Crm::store_ahead`).
pub struct StoreAhead<'a>(&'a Crm);

impl Drop for StoreAhead<'_> {
    fn drop(&mut self) {
        self.0.importing.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A change the snapshot has yet to take in.
pub(crate) enum Change {
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

impl Crm {
    /// Opens the CRM of the store in directory `dir` (created when
    /// `create`): the store, the analysis snapshot (from its checkpoint
    /// plus the changes since), the plugins; and starts the threads that
    /// keep the snapshot, the memberships and the score sheet current.
    pub fn open(dir: &Path, create: bool, config: Config) -> anyhow::Result<Arc<Crm>> {
        let store = open_store(dir, create, config.cache_bytes)?;
        let checkpoint = crate::checkpoint::checkpoint_path(dir);
        let opened = crate::checkpoint::open(&*store, &checkpoint)
            .context("preparing the analysis snapshot")?;
        let registry = crate::plugins::registry(dir)?;
        let from = Opened {
            checkpoint,
            readiness: opened.readiness,
            took: opened.took,
        };
        Ok(Crm::start(
            store,
            opened.snapshot,
            registry,
            config,
            Some(from),
        ))
    }

    /// The CRM of a store and snapshot already open (the snapshot is not
    /// checkpointed on `close`).
    pub fn new(
        store: Arc<dyn Store>,
        snapshot: analysis::Snapshot,
        registry: plugin_host::Registry,
        config: Config,
    ) -> Arc<Crm> {
        Crm::start(store, snapshot, registry, config, None)
    }

    fn start(
        store: Arc<dyn Store>,
        snapshot: analysis::Snapshot,
        registry: plugin_host::Registry,
        config: Config,
        opened: Option<Opened>,
    ) -> Arc<Crm> {
        let search = Search::build(&snapshot.customers);
        let registry = Arc::new(registry);
        let base = Base::new(Arc::clone(&store), snapshot, Arc::clone(&registry));
        let pending = Arc::new(Mutex::new(Vec::new()));
        let flusher = Flusher::start(
            Arc::clone(&store),
            Arc::clone(&registry),
            Arc::clone(&pending),
        );
        let crm = Arc::new(Crm {
            tokens: Tokens::new(Arc::clone(&store)),
            users: crate::users::Users::new(Arc::clone(&store)),
            registry,
            store,
            data: RwLock::new(Current { base, search }),
            flusher,
            rebuilding: Mutex::new(false),
            importing: AtomicU64::new(0),
            memberships: Default::default(),
            lines_generation: AtomicU64::new(0),
            rfm: Mutex::new(None),
            pending,
            generation: AtomicU64::new(0),
            changed_at: AtomicU64::new(0),
            scores_behind_since: AtomicU64::new(NOT_BEHIND),
            config,
            started: Instant::now(),
            scores: Default::default(),
            applier: Condvar::new(),
            events: OnceLock::new(),
            opened,
        });
        Crm::start_applier(&crm);
        crate::memberships::Memberships::start(&crm);
        crm
    }

    /// Sends the events (records created and updated, segment movements,
    /// plugin failures) to `events` from now on.
    pub fn send_events_to(&self, events: Arc<dyn Events>) {
        let _ = self.events.set(events);
    }

    pub fn emit(&self, event: &str, payload: impl FnOnce() -> serde_json::Value) {
        if let Some(events) = self.events.get()
            && events.wanted(event)
        {
            events.emit(event, payload());
        }
    }

    /// How the snapshot was opened by `open` (from its checkpoint, or
    /// built from the store, and why).
    pub fn readiness(&self) -> Option<(crate::checkpoint::Readiness, Duration)> {
        self.opened.as_ref().map(|o| (o.readiness.clone(), o.took))
    }

    /// Ends the CRM's work: every change applied, the store flushed, and
    /// (when it was opened with `open`) the snapshot saved as its
    /// checkpoint, so that the next open applies no change log and the
    /// log is trimmed.
    pub fn close(&self) -> anyhow::Result<()> {
        let mut data = self.write_data();
        self.apply_pending(&mut data);
        self.store.flush().context("flushing the store")?;
        if let Some(Opened { checkpoint, .. }) = &self.opened
            && !*self.rebuilding.lock().expect("rebuild lock")
            && self.importing.load(Ordering::Acquire) == 0
        {
            // The snapshot follows the writes as they are made, not the
            // store's change log: it catches up with the log (the changes
            // since it was opened, applied again) so that its checkpoint
            // records the log's position.
            let snapshot = &mut data.base.snapshot;
            match crate::checkpoint::catch_up(&*self.store, snapshot)? {
                Some(_) => crate::checkpoint::save(&*self.store, snapshot, checkpoint)
                    .context("saving the analysis checkpoint")?,
                None => tracing::warn!(
                    "the analysis snapshot is far behind the change log: not checkpointed, the next open rebuilds it"
                ),
            }
        }
        Ok(())
    }

    /// The flushes made so far and the writes they made durable (as
    /// `/metrics` gives them).
    pub fn flusher_counts(&self) -> (u64, u64) {
        (
            self.flusher.flushes.load(Ordering::Relaxed),
            self.flusher.flushed_writes.load(Ordering::Relaxed),
        )
    }

    /// The segments of a customer (by snapshot row); `None` while the
    /// memberships are being built.
    pub fn segments_of(&self, row: u32) -> Option<Vec<String>> {
        self.memberships.of(row)
    }

    /// Lines changed: the R, F and M ranks are worked out again.
    pub fn lines_changed(&self) {
        self.lines_generation.fetch_add(1, Ordering::AcqRel);
    }

    /// The R, F and M scores of every buyer, as last worked out (they may
    /// lag the latest lines by the time it takes to work them out again,
    /// about half a second at 1M customers); `None` before the first time.
    pub fn rfm_scores(&self) -> Option<Arc<Vec<analysis::Scores>>> {
        self.rfm
            .lock()
            .expect("rfm lock")
            .as_ref()
            .map(|(_, s)| Arc::clone(s))
    }

    /// Works the R, F and M scores out again if lines changed since.
    pub fn refresh_rfm(&self) {
        let generation = self.lines_generation.load(Ordering::Acquire);
        if matches!(&*self.rfm.lock().expect("rfm lock"), Some((g, _)) if *g == generation) {
            return;
        }
        // The inputs are copied under the lock (tens of milliseconds at 1M
        // customers); the sorting is done after, so that writes go on.
        let (activity, rank, as_of) = {
            let data = self.read();
            let s = &data.base.snapshot;
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

    /// The snapshot, if it holds everything acknowledged so far about
    /// customer `customer_id`: no change of the customer or of their lines
    /// waits to be applied (nor of a product or campaign), no import writes
    /// around the snapshot, no rebuild after a delete is under way. Readers
    /// that would otherwise read the store (the customer 360) use it then;
    /// writes to other customers do not send them to the store.
    pub fn read_current(
        &self,
        customer_id: &str,
    ) -> Option<std::sync::RwLockReadGuard<'_, Current>> {
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
    pub fn store_ahead(&self) -> StoreAhead<'_> {
        self.importing.fetch_add(1, Ordering::AcqRel);
        StoreAhead(self)
    }

    pub fn read(&self) -> std::sync::RwLockReadGuard<'_, Current> {
        self.data
            .read()
            .expect("a request panicked holding the data lock")
    }

    /// The snapshot to change (its generation grows), once no reader holds
    /// it. For threads of their own and blocking tasks; async code uses
    /// `write_data_async`.
    ///
    /// A writer never queues on the lock: std's `RwLock` then holds up every
    /// new reader (every 360, every list) behind the longest reader running
    /// (a segment tested over every customer, the score sheet worked out),
    /// seconds at 1M customers. It tries, and sleeps between tries.
    pub fn write_data(&self) -> RwLockWriteGuard<'_, Current> {
        loop {
            if let Some(data) = self.try_write_data() {
                return data;
            }
            std::thread::sleep(WRITE_RETRY);
        }
    }

    /// `write_data` for async code (request handlers): waits without holding up the runtime's
    /// thread.
    pub async fn write_data_async(&self) -> RwLockWriteGuard<'_, Current> {
        loop {
            if let Some(data) = self.try_write_data() {
                return data;
            }
            tokio::time::sleep(WRITE_RETRY).await;
        }
    }

    fn try_write_data(&self) -> Option<RwLockWriteGuard<'_, Current>> {
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
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Works every customer's plugin scores out again if the snapshot, the
    /// R, F and M ranks or the plugins changed since, once writes have
    /// paused for `SCORES_AFTER_QUIET` (`Config::scores_after_quiet`), or
    /// `SCORES_AT_LEAST_EVERY` after the first change since the last time
    /// if they never do (working them out takes both cores for a second or
    /// two at 1M customers: not after every write; until then, the 360
    /// calls the plugins itself for the customers written since).
    pub fn refresh_scores(&self) {
        let now = self.started.elapsed().as_millis() as u64;
        let quiet = now.saturating_sub(self.changed_at.load(Ordering::Acquire));
        let due = match self.scores_behind_since.load(Ordering::Acquire) {
            NOT_BEHIND => false,
            since => {
                now.saturating_sub(since) >= self.config.scores_at_least_every.as_millis() as u64
            }
        };
        if self.generation() > 0
            && quiet < self.config.scores_after_quiet.as_millis() as u64
            && !due
        {
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
            .work_out(&data.base.snapshot, generation, &self.registry, rfm);
        tracing::info!(
            customers = data.base.snapshot.customers.len(),
            seconds = started.elapsed().as_secs_f64(),
            mib = self.scores.memory_bytes() as f64 / (1 << 20) as f64,
            "plugin scores worked out"
        );
    }

    /// Writes one record through the write path (see `write`), brings the
    /// snapshot along, and returns once the write is durable; its new
    /// revision (for customers, products and campaigns). The snapshot is
    /// changed under its write lock when that is free within a few
    /// milliseconds, else by the applier thread as soon as it is: a write
    /// never waits for a long reader (an analysis, a segment evaluated over
    /// every customer).
    pub async fn write(
        &self,
        actor: Actor,
        record: Record,
        expect: Expect,
    ) -> Result<Option<u64>, WriteError> {
        let begun = self.flusher.begin();
        if !matches!(record, Record::Transaction(_) | Record::Interaction(_)) {
            return self.commit(begun, record, expect, actor).await.map(Some);
        }
        crate::write::check_record(&record)?;
        let old_customer = self.store.line_customer(record.kind(), record.id())?;
        self.store
            .put_line(record.clone(), expect, &actor)
            .map_err(|e| WriteError::of_store(e, expect))?;
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
    /// checks it and hands it to the snapshot); its revision, once durable.
    /// The event sent is built from the record as stored.
    async fn commit(
        &self,
        begun: Begun<'_>,
        record: Record,
        expect: Expect,
        actor: Actor,
    ) -> Result<u64, WriteError> {
        let event = if matches!(expect, Expect::New) {
            "customer.created"
        } else {
            "customer.updated"
        };
        let write = store::Expected {
            record,
            expect,
            actor,
        };
        let (revision, stored) = self.flusher.commit(begun, write).await?;
        if let Record::Customer(c) = &stored {
            self.emit(event, || {
                serde_json::json!({"customer_id": c.customer_id.as_str(), "revision": revision, "customer": c})
            });
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
    fn apply_pending(&self, data: &mut Current) {
        let changes = std::mem::take(&mut *self.pending.lock().expect("pending lock"));
        if !changes.is_empty() {
            self.next_generation();
        }
        for change in changes {
            let result = match change {
                Change::Record(Record::Customer(c), revision) => {
                    let row = data.base.snapshot.upsert_customer_revised(&c, revision);
                    data.search.set(row as usize, &c.name);
                    self.customer_changed(row);
                    Ok(())
                }
                // Scores read the product list: memberships are built anew.
                Change::Record(Record::Product(p), _) => {
                    data.base.snapshot.upsert_product(&p);
                    self.memberships.invalidate();
                    self.scores.everyone_changed();
                    Ok(())
                }
                Change::Record(Record::Campaign(c), _) => {
                    data.base.snapshot.upsert_campaign(&c);
                    self.scores.everyone_changed();
                    Ok(())
                }
                Change::Record(..) => Ok(()),
                Change::Lines(kind, customer, old) => {
                    self.lines_changed();
                    for id in std::iter::once(&customer).chain(&old) {
                        if let Some(row) = data.base.snapshot.customers.find(id) {
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
                tracing::error!(error = %e, "applying a change to the snapshot; it is rebuilt");
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
    fn start_applier(state: &Arc<Crm>) {
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
        actor: Actor,
        kind: EntityKind,
        id: &str,
        expect: Expect,
    ) -> Result<bool, WriteError> {
        let begun = self.flusher.begin();
        let deleted = {
            let mut data = self.write_data_async().await;
            self.apply_pending(&mut data);
            if let Some(why) = still_named(&data.base.snapshot, kind, id) {
                return Err(WriteError::InUse(why));
            }
            let deleted = self
                .store
                .delete(kind, id, expect, &actor)
                .map_err(|e| WriteError::of_store(e, expect))?;
            if let Some(line @ (Record::Transaction(_) | Record::Interaction(_))) = &deleted {
                let customer = line_customer(line);
                refresh_lines(&*self.store, &mut data, kind, customer)?;
                if matches!(line, Record::Transaction(_)) {
                    self.lines_changed();
                }
                if let Some(row) = data.base.snapshot.customers.find(customer) {
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
        match crate::checkpoint::catch_up(&*self.store, &mut data.base.snapshot) {
            Ok(Some(_)) => {
                data.search = Search::build(&data.base.snapshot.customers);
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
            let result = crate::checkpoint::build(&*state.store).and_then(|mut fresh| {
                let mut data = state.write_data();
                match crate::checkpoint::catch_up(&*state.store, &mut fresh)? {
                    Some(_) => {}
                    None => fresh = crate::checkpoint::build(&*state.store)?,
                }
                data.search = Search::build(&fresh.customers);
                data.base.snapshot = fresh;
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
    data: &mut Current,
    kind: EntityKind,
    customer: &str,
) -> Result<(), WriteError> {
    let snapshot = &mut data.base.snapshot;
    let Some(row) = snapshot.customers.find(customer) else {
        return Ok(());
    };
    let id = model::CustomerId::parse(customer).map_err(|e| WriteError::Failed(e.to_string()))?;
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
