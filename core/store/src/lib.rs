//! Durable storage of the CRM's records.
//!
//! Callers see the [`Store`] trait and the model's record types only; the
//! embedded implementation on sled lives in [`embedded`], and a SQL backend
//! for deployments that outgrow one machine can implement the same trait.
//!
//! Design decision: sled's cost is set by the number of keys, not bytes
//! (about 100,000 keys per second on two cores, and reopen and scan times
//! that grow with the key count). So customers, products and campaigns get
//! one key each, but transaction lines and interactions are stored in
//! blocks: each block holds up to a few hundred consecutive lines of one
//! customer, keyed by customer and time, and their ids are found through an
//! index that is itself blocked. A data set of 1M customers and 12.6M lines
//! takes about 3M keys instead of 14M.
//!
//! Durability: `upsert` is atomic per entity for each call, and durable only
//! after `flush` returns; callers that acknowledge a write to a user call
//! `flush` (or share one flush among many writes) first.

mod audit;
mod changes;
mod codec;
mod definitions;
mod embedded;
mod keys;
mod lines;
mod queues;
mod records;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use model::{CustomerId, EntityKind, Interaction, Record, Transaction};

pub use audit::{Actor, AuditEntry, AuditQuery};
pub use embedded::{FORMAT_VERSION, SledStore};

/// Operations on stored records; implemented by each backend.
pub trait Store: Send + Sync {
    /// A description for messages: "store at /data/crm".
    fn location(&self) -> String;

    /// A number given to the store when it was created, that tells it from
    /// any other store (so a copy derived from one store is never taken
    /// for another's).
    fn identity(&self) -> u64;

    /// The record of `kind` with id `id`.
    fn get(&self, kind: EntityKind, id: &str) -> Result<Option<Record>, StoreError>;

    fn contains(&self, kind: EntityKind, id: &str) -> Result<bool, StoreError>;

    /// The customer of the transaction or interaction `id`, from the index
    /// alone (without reading the line); `None` if there is no such line
    /// (or `kind` is not a kind of line).
    fn line_customer(&self, kind: EntityKind, id: &str) -> Result<Option<String>, StoreError>;

    /// Inserts or replaces records by id. Records of each kind are applied
    /// atomically, in dependency order (customers before their lines).
    /// References (a line's customer, sku, campaign) must exist. Not durable
    /// until [`Store::flush`].
    fn upsert(&self, records: Vec<Record>) -> Result<UpsertCounts, StoreError>;

    /// Every record of a kind. Customers, products and campaigns come in id
    /// order; transactions and interactions grouped by customer (in customer
    /// id order) and in time order within a customer, then by id.
    fn scan<'a>(
        &'a self,
        kind: EntityKind,
    ) -> Box<dyn Iterator<Item = Result<Record, StoreError>> + 'a>;

    /// Every customer, product or campaign of a kind with its revision, in
    /// id order; nothing for lines.
    fn scan_revised<'a>(
        &'a self,
        kind: EntityKind,
    ) -> Box<dyn Iterator<Item = Result<(u64, Record), StoreError>> + 'a>;

    /// A customer's transaction lines in time order.
    fn transactions_of(&self, customer: &CustomerId) -> Result<Vec<Transaction>, StoreError>;

    /// A customer's interactions in time order.
    fn interactions_of(&self, customer: &CustomerId) -> Result<Vec<Interaction>, StoreError>;

    fn count(&self, kind: EntityKind) -> Result<u64, StoreError>;

    /// Blocks until everything written before the call is on disk.
    fn flush(&self) -> Result<(), StoreError>;

    /// Upserts, and returns only once the records are on disk: the write
    /// whose success may be reported to a user.
    fn upsert_durable(&self, records: Vec<Record>) -> Result<UpsertCounts, StoreError> {
        let counts = self.upsert(records)?;
        self.flush()?;
        Ok(counts)
    }

    /// A customer, product or campaign with its revision (which grows by
    /// one with every change); `None` for other kinds or a missing record.
    fn get_revised(&self, kind: EntityKind, id: &str) -> Result<Option<(u64, Record)>, StoreError>;

    /// Writes one customer, product or campaign if its current revision is
    /// as expected (`StoreError::Conflict` otherwise), with an audit entry
    /// naming `actor` in the same transaction; its new revision (the same
    /// when nothing changed). Durable after [`Store::flush`].
    fn upsert_expecting(
        &self,
        record: Record,
        expect: Expect,
        actor: &Actor,
    ) -> Result<u64, StoreError> {
        let write = Expected {
            record,
            expect,
            actor: actor.clone(),
        };
        self.upsert_each_expecting(std::slice::from_ref(&write))?
            .pop()
            .expect("one result per write")
    }

    /// Writes customers, products and campaigns as [`Store::upsert_expecting`]
    /// does, each write seeing the ones before it, with one transaction per
    /// kind for them all: each write's new revision, or the error that
    /// refused it (a conflict, a line given). An error of the store itself
    /// fails the call. Durable after [`Store::flush`].
    fn upsert_each_expecting(
        &self,
        writes: &[Expected],
    ) -> Result<Vec<Result<u64, StoreError>>, StoreError>;

    /// Writes one transaction line or interaction (`Expect::New` refuses an
    /// id that exists) with its audit entry; true if it is new. Durable
    /// after [`Store::flush`].
    fn put_line(&self, record: Record, expect: Expect, actor: &Actor) -> Result<bool, StoreError>;

    /// Deletes one record, with its audit entry; the record deleted (`None`
    /// if there was none). A customer with transactions or interactions is
    /// refused (`Conflict`): delete those first. Products and campaigns are
    /// deleted as asked: checking that no line names them is the caller's.
    /// Durable after [`Store::flush`].
    fn delete(
        &self,
        kind: EntityKind,
        id: &str,
        expect: Expect,
        actor: &Actor,
    ) -> Result<Option<Record>, StoreError>;

    /// Customers, products or campaigns with their revisions, in id order
    /// after `after`; up to `limit`.
    fn page(
        &self,
        kind: EntityKind,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(u64, Record)>, StoreError>;

    /// Transaction lines or interactions of the customers from `customer`
    /// on, in customer id order and then in time order, skipping `skip`;
    /// up to `limit`.
    fn lines_page(
        &self,
        kind: EntityKind,
        customer: Option<&str>,
        skip: usize,
        limit: usize,
    ) -> Result<Vec<Record>, StoreError>;

    /// Adds an entry to the audit log (for changes other than records:
    /// definitions, plugins, tokens, imports); its sequence number.
    fn audit(&self, entry: AuditEntry) -> Result<u64, StoreError>;

    /// Entries of the audit log, newest first.
    fn audit_log(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError>;

    /// Adds an entry (JSON) at the end of queue `queue` (the outbox of
    /// webhook deliveries); its sequence number. Durable after `flush`.
    fn queue_push(&self, queue: &str, body: &str) -> Result<u64, StoreError>;

    /// Replaces entry `seq` of queue `queue`.
    fn queue_set(&self, queue: &str, seq: u64, body: &str) -> Result<(), StoreError>;

    /// Up to `limit` entries of queue `queue`: after `after`, oldest first;
    /// or with `newest_first`, before `after`, newest first.
    fn queue_read(
        &self,
        queue: &str,
        after: Option<u64>,
        limit: usize,
        newest_first: bool,
    ) -> Result<Vec<(u64, String)>, StoreError>;

    /// Bytes the records take on disk.
    fn size_on_disk(&self) -> Result<u64, StoreError>;

    /// The sequence number of the last change to records of `kind`; it
    /// grows with every upsert that changes something.
    fn change_position(&self, kind: EntityKind) -> Result<u64, StoreError>;

    /// What changed after sequence number `after`: for customers, products
    /// and campaigns their ids, for transactions and interactions the ids
    /// of the customers whose lines changed; each id once.
    fn changes_since(&self, kind: EntityKind, after: u64) -> Result<Changes, StoreError>;

    /// Trims the change log of `kind` up to sequence number `upto`, once
    /// whoever follows it has saved what it derived.
    fn forget_changes(&self, kind: EntityKind, upto: u64) -> Result<(), StoreError>;

    /// The current revision of definition `name` in `space` ("segments").
    fn definition(&self, space: &str, name: &str) -> Result<Option<Revision>, StoreError>;

    /// The current revision of every definition in `space`, by name.
    fn definitions(&self, space: &str) -> Result<Vec<Revision>, StoreError>;

    /// Every revision of definition `name`, oldest first (also after a delete).
    fn definition_history(&self, space: &str, name: &str) -> Result<Vec<Revision>, StoreError>;

    /// Saves a new revision of `name` if its current revision is as
    /// expected (`StoreError::Conflict` otherwise); durable on return.
    fn save_definition(
        &self,
        space: &str,
        name: &str,
        body: &str,
        expect: Expect,
    ) -> Result<Revision, StoreError>;

    /// Deletes definition `name` (its history stays); false if there was none.
    fn delete_definition(
        &self,
        space: &str,
        name: &str,
        expect: Expect,
    ) -> Result<bool, StoreError>;
}

/// One saved revision of a definition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Revision {
    pub name: String,
    /// 1 for the first save, one more for each save after.
    pub revision: u32,
    /// When it was saved, in UTC seconds.
    pub saved_at: i64,
    /// The definition, as its owner encodes it (JSON).
    pub body: String,
}

/// A write of a customer, product or campaign, by `actor`, that expects
/// the record's current revision to be `expect`.
#[derive(Clone, Debug)]
pub struct Expected {
    pub record: Record,
    pub expect: Expect,
    pub actor: Actor,
}

/// What a save expects to replace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// Nothing: the name is new.
    New,
    /// This revision.
    Revision(u64),
    /// Whatever is there.
    Any,
}

/// Ids changed since a position of the change log, and the position reached.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Changes {
    pub ids: Vec<String>,
    pub position: u64,
}

/// How many records an upsert added, changed, and found already as given.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct UpsertCounts {
    pub added: u64,
    pub updated: u64,
    pub unchanged: u64,
}

impl std::ops::AddAssign for UpsertCounts {
    fn add_assign(&mut self, rhs: UpsertCounts) {
        self.added += rhs.added;
        self.updated += rhs.updated;
        self.unchanged += rhs.unchanged;
    }
}

/// Settings of the embedded store.
#[derive(Clone, Debug)]
pub struct Options {
    /// Memory for cached pages, in bytes.
    pub cache_bytes: u64,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            cache_bytes: 256 << 20,
        }
    }
}

/// Opens (or creates) the embedded store in the directory `path`.
pub fn open(path: &Path, options: &Options) -> Result<Arc<dyn Store>, StoreError> {
    Ok(Arc::new(SledStore::open(path, options)?))
}

#[derive(Clone, Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "the store at {path} has format version {found}, newer than version {supported} that this crm reads; \
         use a newer crm, or export the data with it and import it here"
    )]
    NewerFormat {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error("{path} is not a crm store (it holds other files); give an empty or new directory")]
    NotAStore { path: PathBuf },
    #[error("the store at {path} is in use by another process")]
    Locked { path: PathBuf },
    #[error("{kind} {id}: {field} '{value}' does not exist")]
    MissingReference {
        kind: EntityKind,
        id: String,
        field: &'static str,
        value: String,
    },
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    #[error("the store is damaged: {0}")]
    Corrupt(String),
    #[error("storage error: {0}")]
    Io(String),
}

#[cfg(test)]
mod tests;
