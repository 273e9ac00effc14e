//! The one write path: every change to a record goes through here, from
//! the API, `crm put`, the import's apply pass and `crm plugin derive
//! --save` alike. A customer is checked (the model's rules, the fields the
//! plugins compute left as stored, every enabled plugin's field schema and
//! `validate` hook, whose patches are applied), then written with its audit
//! entry (actor, before, after) in one store transaction, and answered once
//! durable; what is handed on (to the snapshot, to webhook events) is the
//! record as stored, after the plugins' patches.
//!
//! Writes from the API meet in the `Flusher` (group commit): one thread
//! checks the customers gathered (one call of each validate hook for them
//! all), writes them in one store call and makes them durable with one
//! flush for every writer waiting.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use model::{Customer, EntityKind, Record};
use plugin_host::Registry;
use serde_json::{Map, Value};
use store::{Expect, Expected, Store, StoreError};

use crate::crm::Change;
use crate::plugins::FieldRules;

/// Why a write was not made. Each front end maps it once (the API to a
/// problem document, the command line to a message).
#[derive(Clone, Debug, thiserror::Error)]
pub enum WriteError {
    /// A value breaks a rule of the model.
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    /// A write sets a field that a plugin computes.
    #[error("{field} is computed by plugin {plugin} and cannot be set")]
    ReadOnly { field: String, plugin: String },
    /// A plugin's field schema or validate hook refused it: each issue
    /// with its field (`attributes.licence_no`, `region`).
    #[error("{}", issues_text(.issues))]
    Refused { issues: Vec<(String, String)> },
    /// A plugin failed while checking it (a trap, a timeout, bad output).
    #[error("{0}")]
    Plugin(String),
    /// The record changed since the revision the write expects.
    #[error("{0}")]
    Stale(String),
    /// Others depend on the record (lines name a product or campaign).
    #[error("{0}")]
    InUse(String),
    /// The store refused it (a conflict, a missing reference) or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The write may not be on disk.
    #[error("the write may not be durable: {0}")]
    NotDurable(String),
    /// The write path itself failed.
    #[error("{0}")]
    Failed(String),
}

fn issues_text(issues: &[(String, String)]) -> String {
    let all: Vec<String> = issues
        .iter()
        .map(|(field, message)| format!("{field}: {message}"))
        .collect();
    all.join("; ")
}

impl WriteError {
    /// A store error of a write that expected `expect`: a conflict over an
    /// expected revision is `Stale`.
    pub fn of_store(e: StoreError, expect: Expect) -> WriteError {
        match e {
            StoreError::Conflict(detail) if matches!(expect, Expect::Revision(_)) => {
                WriteError::Stale(detail)
            }
            other => WriteError::Store(other),
        }
    }
}

/// The model's own rules for a record on its own (the first problem).
pub fn check_record(record: &Record) -> Result<(), WriteError> {
    match record.problems().into_iter().next() {
        None => Ok(()),
        Some(p) => Err(WriteError::Invalid {
            field: p.field.to_string(),
            message: p.reason.clone(),
        }),
    }
}

/// Who a write of customers comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// A person or a program (the API, `crm put`, an import): the fields
    /// the plugins compute must be left as stored.
    Client,
    /// A plugin's derived values (`crm plugin derive --save`).
    Derived,
}

/// The fields the enabled plugins compute: their derived fields and the
/// fields their schema marks `readOnly`, each with its plugin.
pub fn computed_fields(registry: &Registry) -> Vec<(String, String)> {
    let mut computed = Vec::new();
    for p in registry.enabled() {
        let mut names: Vec<String> = p.manifest.hooks.derive.clone();
        if let Some(fields) = &p.fields
            && let Some(props) = fields.schema["properties"].as_object()
        {
            names.extend(
                props
                    .iter()
                    .filter(|(_, v)| v["readOnly"] == true)
                    .map(|(k, _)| k.clone()),
            );
        }
        names.sort();
        names.dedup();
        computed.extend(names.into_iter().map(|n| (n, p.id().to_owned())));
    }
    computed
}

/// The checks a customer being written passes, for the plugins enabled
/// when they were made.
pub struct Checks<'a> {
    registry: &'a Registry,
    store: &'a dyn Store,
    rules: FieldRules,
    computed: Vec<(String, String)>,
    validate: bool,
}

impl<'a> Checks<'a> {
    pub fn new(registry: &'a Registry, store: &'a dyn Store) -> Checks<'a> {
        Checks {
            rules: FieldRules::of(registry),
            computed: computed_fields(registry),
            validate: registry.enabled().iter().any(|p| p.manifest.hooks.validate),
            registry,
            store,
        }
    }

    /// Whether no plugin checks customers.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty() && self.computed.is_empty() && !self.validate
    }

    /// Checks customers being written (each on its own; one call of each
    /// validate hook for them all) and applies the plugins' patches: each
    /// customer as it is to be stored, or why it is refused, in order.
    pub fn customers(
        &self,
        customers: Vec<Customer>,
        source: Source,
    ) -> Vec<Result<Customer, WriteError>> {
        if self.is_empty() {
            return customers.into_iter().map(Ok).collect();
        }
        let open: Vec<Result<Customer, WriteError>> = customers
            .into_iter()
            .map(|c| match source {
                Source::Client => self.leaves_computed(c),
                Source::Derived => Ok(c),
            })
            .collect();
        crate::plugins::validate_writes(self.registry, &self.rules, open)
    }

    /// Refuses a customer that sets a field the plugins compute to anything
    /// but its stored value (so a record read and written back passes).
    /// Only a write naming such a field reads the stored record.
    fn leaves_computed(&self, customer: Customer) -> Result<Customer, WriteError> {
        if self.computed.is_empty() {
            return Ok(customer);
        }
        let given = customer.attributes.to_value();
        let named: Vec<&(String, String)> = self
            .computed
            .iter()
            .filter(|(field, _)| given.contains_key(field))
            .collect();
        if named.is_empty() {
            return Ok(customer);
        }
        let stored: Map<String, Value> = match self
            .store
            .get(EntityKind::Customer, customer.customer_id.as_str())?
        {
            Some(Record::Customer(c)) => c.attributes.to_value(),
            _ => Map::new(),
        };
        for (field, plugin) in named {
            if given.get(field) != stored.get(field) {
                return Err(WriteError::ReadOnly {
                    field: format!("attributes.{field}"),
                    plugin: plugin.clone(),
                });
            }
        }
        Ok(customer)
    }
}

impl transfer::Rules for Checks<'_> {
    fn apply(&self, records: &mut [Record]) -> Vec<Vec<transfer::format::FieldError>> {
        let mut problems = vec![Vec::new(); records.len()];
        let at: Vec<usize> = (0..records.len())
            .filter(|&i| matches!(records[i], Record::Customer(_)))
            .collect();
        if at.is_empty() || self.is_empty() {
            return problems;
        }
        let customers: Vec<Customer> = at
            .iter()
            .map(|&i| match &records[i] {
                Record::Customer(c) => c.clone(),
                _ => unreachable!("customers only"),
            })
            .collect();
        for (i, outcome) in at
            .into_iter()
            .zip(self.customers(customers, Source::Client))
        {
            let Record::Customer(given) = &records[i] else {
                unreachable!("customers only")
            };
            match outcome {
                Ok(customer) => records[i] = Record::Customer(customer),
                // A refused row whose fields break a plugin's schema is
                // reported with the schema rules it breaks (a file is fixed
                // from these); only refused rows are checked again for it.
                Err(e) => {
                    let schema = self.rules.check(&given.attributes.to_value());
                    problems[i] = if schema.is_empty() {
                        field_errors(e)
                    } else {
                        schema
                            .into_iter()
                            .map(|reason| transfer::format::FieldError {
                                column: "attributes",
                                reason,
                            })
                            .collect()
                    };
                }
            }
        }
        problems
    }
}

/// A refusal as the import reports it: the column, and the reason naming
/// the field inside it.
fn field_errors(e: WriteError) -> Vec<transfer::format::FieldError> {
    let column = |field: &str| -> &'static str {
        match field.split('.').next().unwrap_or("") {
            "customer_id" => "customer_id",
            "name" => "name",
            "gender" => "gender",
            "birth_date" => "birth_date",
            "region" => "region",
            "city" => "city",
            "channel" => "channel",
            "joined_at" => "joined_at",
            "tier" => "tier",
            _ => "attributes",
        }
    };
    match e {
        WriteError::Refused { issues } => issues
            .into_iter()
            .map(|(field, message)| transfer::format::FieldError {
                column: column(&field),
                reason: match field.strip_prefix("attributes.") {
                    Some(inner) => format!("{inner}: {message}"),
                    None => message,
                },
            })
            .collect(),
        WriteError::ReadOnly { field, plugin } => vec![transfer::format::FieldError {
            column: "attributes",
            reason: format!(
                "{} is computed by plugin {plugin} and cannot be imported; leave it out",
                field.trim_start_matches("attributes.")
            ),
        }],
        other => vec![transfer::format::FieldError {
            column: "attributes",
            reason: other.to_string(),
        }],
    }
}

/// Checks customers, products and campaigns and writes those that pass in
/// one store call, each with its audit entry (durable after the store's
/// flush). Each write's outcome in order: its new revision and the record
/// as stored, or why it was refused; `written` sees each record stored.
pub fn check_and_write(
    store: &dyn Store,
    registry: &Registry,
    writes: Vec<Expected>,
    source: Source,
    written: &mut dyn FnMut(&Record, u64),
) -> Vec<Result<(u64, Record), WriteError>> {
    let mut outcomes: Vec<Option<Result<(u64, Record), WriteError>>> =
        (0..writes.len()).map(|_| None).collect();
    let mut checked: Vec<Option<Expected>> = Vec::with_capacity(writes.len());
    let mut customers = Vec::new();
    let mut customer_at = Vec::new();
    for (i, write) in writes.into_iter().enumerate() {
        if let Err(e) = check_record(&write.record) {
            outcomes[i] = Some(Err(e));
            checked.push(None);
            continue;
        }
        match write.record {
            Record::Customer(c) => {
                customers.push(c);
                customer_at.push((i, write.expect, write.actor));
                checked.push(None);
            }
            record => checked.push(Some(Expected { record, ..write })),
        }
    }
    if !customers.is_empty() {
        let verdicts = Checks::new(registry, store).customers(customers, source);
        for ((i, expect, actor), verdict) in customer_at.into_iter().zip(verdicts) {
            match verdict {
                Ok(c) => {
                    checked[i] = Some(Expected {
                        record: Record::Customer(c),
                        expect,
                        actor,
                    })
                }
                Err(e) => outcomes[i] = Some(Err(e)),
            }
        }
    }
    let (at, to_write): (Vec<usize>, Vec<Expected>) = checked
        .into_iter()
        .enumerate()
        .filter_map(|(i, w)| w.map(|w| (i, w)))
        .unzip();
    if !to_write.is_empty() {
        match store.upsert_each_expecting(&to_write) {
            Ok(results) => {
                for ((i, write), result) in at.into_iter().zip(to_write).zip(results) {
                    outcomes[i] = Some(match result {
                        Ok(revision) => {
                            written(&write.record, revision);
                            Ok((revision, write.record))
                        }
                        Err(e) => Err(WriteError::of_store(e, write.expect)),
                    });
                }
            }
            Err(e) => {
                let e = WriteError::Store(e);
                for i in at {
                    outcomes[i] = Some(Err(e.clone()));
                }
            }
        }
    }
    outcomes
        .into_iter()
        .map(|o| o.expect("every write has an outcome"))
        .collect()
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
pub struct Flusher {
    /// Writes that asked to be made durable so far.
    asked: AtomicU64,
    /// Writes begun (`Flusher::begin`) that do not wait for a flush yet.
    under_way: AtomicU64,
    waiting: Mutex<Waiting>,
    wake: Condvar,
    /// Flushes made, the time they took, and the writes they made durable.
    pub flushes: AtomicU64,
    pub flush_micros: AtomicU64,
    pub flushed_writes: AtomicU64,
}

#[derive(Default)]
struct Waiting {
    /// Writers whose write is in the store: its number, and how to wake them.
    flushes: Vec<(u64, Waiter)>,
    /// Records to write, each with how to tell its writer the outcome.
    records: Vec<(Expected, RecordWaiter)>,
}

impl Waiting {
    fn is_empty(&self) -> bool {
        self.flushes.is_empty() && self.records.is_empty()
    }
}

type Waiter = tokio::sync::oneshot::Sender<Result<(), String>>;
/// What a write of a customer, product or campaign comes to: its new
/// revision and the record as stored, or why it was not made.
pub type Written = Result<(u64, Record), WriteError>;

type RecordWaiter = tokio::sync::oneshot::Sender<Written>;

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
    pub(crate) fn start(
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
                        write_gathered(&*store, &registry, records, &written)
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
    pub(crate) async fn durable(&self, begun: Begun<'_>) -> Result<(), WriteError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.join(begun, |waiting| {
            let ticket = self.asked.fetch_add(1, Ordering::AcqRel) + 1;
            waiting.flushes.push((ticket, tx));
        });
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(not_durable(&e)),
            Err(_) => Err(WriteError::Failed("the flusher stopped".into())),
        }
    }

    /// Writes a customer, product or campaign with the others gathered for
    /// the next flush; its new revision, once it is durable.
    pub(crate) async fn commit(
        &self,
        begun: Begun<'_>,
        write: Expected,
    ) -> Result<(u64, Record), WriteError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.join(begun, |waiting| waiting.records.push((write, tx)));
        rx.await.unwrap_or_else(|_| {
            Err(WriteError::Failed(
                "the server failed while writing this record: it may not be stored".into(),
            ))
        })
    }
}

/// Writes the gathered records through [`check_and_write`] and hands the
/// ones written to the snapshot; each writer with its outcome (to be sent
/// once flushed).
fn write_gathered(
    store: &dyn Store,
    registry: &Registry,
    records: Vec<(Expected, RecordWaiter)>,
    pending: &Mutex<Vec<Change>>,
) -> Vec<(RecordWaiter, Written)> {
    if records.is_empty() {
        return Vec::new();
    }
    let (writes, waiters): (Vec<Expected>, Vec<RecordWaiter>) = records.into_iter().unzip();
    let mut changes = Vec::new();
    let outcomes = check_and_write(
        store,
        registry,
        writes,
        Source::Client,
        &mut |record, revision| changes.push(Change::Record(record.clone(), revision)),
    );
    pending.lock().expect("pending lock").extend(changes);
    waiters.into_iter().zip(outcomes).collect()
}

fn not_durable(e: &str) -> WriteError {
    WriteError::NotDurable(e.to_owned())
}
