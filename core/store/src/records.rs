//! Customers, products and campaigns: one key per record.
//!
//! A stored record carries a revision that grows by one with every change,
//! for optimistic concurrency in the API.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::Mutex;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::audit::{Actor, AuditEntry, AuditLog};
use crate::{StoreError, UpsertCounts, keys};

pub(crate) fn sled_error(e: sled::Error) -> StoreError {
    StoreError::Io(e.to_string())
}

pub(crate) fn encode<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    postcard::to_allocvec(value).expect("records serialize to postcard")
}

pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    postcard::from_bytes(bytes).map_err(|e| StoreError::Corrupt(format!("undecodable value: {e}")))
}

pub(crate) fn read_count(tree: &sled::Tree) -> Result<u64, StoreError> {
    match tree.get(keys::COUNT).map_err(sled_error)? {
        None => Ok(0),
        Some(bytes) => {
            let bytes: [u8; 8] = bytes[..]
                .try_into()
                .map_err(|_| StoreError::Corrupt("malformed record count".into()))?;
            Ok(u64::from_be_bytes(bytes))
        }
    }
}

/// A record with an id of its own.
pub(crate) trait Keyed: Serialize + DeserializeOwned + PartialEq {
    const KIND: model::EntityKind;
    fn id(&self) -> &str;
}

impl Keyed for model::Customer {
    const KIND: model::EntityKind = model::EntityKind::Customer;
    fn id(&self) -> &str {
        self.customer_id.as_str()
    }
}

impl Keyed for model::Product {
    const KIND: model::EntityKind = model::EntityKind::Product;
    fn id(&self) -> &str {
        self.sku.as_str()
    }
}

impl Keyed for model::Campaign {
    const KIND: model::EntityKind = model::EntityKind::Campaign;
    fn id(&self) -> &str {
        self.campaign_id.as_str()
    }
}

pub(crate) struct RecordTree<T> {
    tree: sled::Tree,
    /// Upserts read the old revision before writing: one at a time.
    write: Mutex<()>,
    record: PhantomData<fn() -> T>,
}

impl<T: Keyed> RecordTree<T> {
    pub(crate) fn new(tree: sled::Tree) -> RecordTree<T> {
        RecordTree {
            tree,
            write: Mutex::new(()),
            record: PhantomData,
        }
    }

    pub(crate) fn get(&self, id: &str) -> Result<Option<T>, StoreError> {
        match self.tree.get(keys::record(id)).map_err(sled_error)? {
            None => Ok(None),
            Some(bytes) => decode::<(u64, T)>(&bytes).map(|(_, record)| Some(record)),
        }
    }

    pub(crate) fn get_revised(&self, id: &str) -> Result<Option<(u64, T)>, StoreError> {
        match self.tree.get(keys::record(id)).map_err(sled_error)? {
            None => Ok(None),
            Some(bytes) => decode::<(u64, T)>(&bytes).map(Some),
        }
    }

    /// Writes one record if its current revision is as expected, with its
    /// audit entry in the same transaction; its new revision.
    pub(crate) fn upsert_expecting(
        &self,
        record: &T,
        expect: crate::Expect,
        audit: &AuditLog,
        actor: &Actor,
    ) -> Result<u64, StoreError> {
        let _write = self
            .write
            .lock()
            .expect("a writer panicked while holding the lock");
        let current = self.get_revised(record.id())?;
        let id = record.id();
        check_expected(id, expect, current.as_ref().map(|(rev, _)| *rev))?;
        let rev = match &current {
            Some((rev, old)) if old == record => return Ok(*rev),
            Some((rev, _)) => rev + 1,
            None => 1,
        };
        let mut batch = sled::Batch::default();
        batch.insert(keys::record(id), encode(&(rev, record)));
        if current.is_none() {
            let total = read_count(&self.tree)? + 1;
            batch.insert(keys::COUNT, &total.to_be_bytes());
        }
        crate::changes::record(&self.tree, &mut batch, [id])?;
        let entry = AuditEntry::change(
            actor,
            if current.is_some() {
                "update"
            } else {
                "create"
            },
            T::KIND.singular(),
            id,
            Some(rev),
            current.map(|(_, old)| to_json(&old)),
            Some(to_json(record)),
        );
        apply_audited(&self.tree, batch, audit, entry)?;
        Ok(rev)
    }

    /// Removes one record if its current revision is as expected, with its
    /// audit entry; the record removed (`None` when there was none).
    pub(crate) fn delete(
        &self,
        id: &str,
        expect: crate::Expect,
        audit: &AuditLog,
        actor: &Actor,
    ) -> Result<Option<T>, StoreError> {
        let _write = self
            .write
            .lock()
            .expect("a writer panicked while holding the lock");
        let Some((rev, old)) = self.get_revised(id)? else {
            return Ok(None);
        };
        check_expected(id, expect, Some(rev))?;
        let mut batch = sled::Batch::default();
        batch.remove(keys::record(id));
        let total = read_count(&self.tree)?.saturating_sub(1);
        batch.insert(keys::COUNT, &total.to_be_bytes());
        crate::changes::record(&self.tree, &mut batch, [id])?;
        let entry = AuditEntry::change(
            actor,
            "delete",
            T::KIND.singular(),
            id,
            Some(rev),
            Some(to_json(&old)),
            None,
        );
        apply_audited(&self.tree, batch, audit, entry)?;
        Ok(Some(old))
    }

    /// Up to `limit` records with their revisions, in id order, after `after`.
    pub(crate) fn page(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(u64, T)>, StoreError> {
        let start = match after {
            Some(id) => std::ops::Bound::Excluded(keys::record(id)),
            None => std::ops::Bound::Included(vec![keys::RECORD]),
        };
        let end = std::ops::Bound::Excluded(vec![keys::RECORD + 1]);
        self.tree
            .range::<Vec<u8>, _>((start, end))
            .take(limit)
            .map(|entry| {
                let (_, bytes) = entry.map_err(sled_error)?;
                decode::<(u64, T)>(&bytes)
            })
            .collect()
    }

    pub(crate) fn contains(&self, id: &str) -> Result<bool, StoreError> {
        self.tree.contains_key(keys::record(id)).map_err(sled_error)
    }

    pub(crate) fn count(&self) -> Result<u64, StoreError> {
        read_count(&self.tree)
    }

    pub(crate) fn tree(&self) -> &sled::Tree {
        &self.tree
    }

    /// Every record in id order.
    pub(crate) fn scan(&self) -> impl Iterator<Item = Result<T, StoreError>> + '_ {
        self.tree.scan_prefix([keys::RECORD]).map(|entry| {
            let (_, bytes) = entry.map_err(sled_error)?;
            decode::<(u64, T)>(&bytes).map(|(_, record)| record)
        })
    }

    /// Inserts or replaces records by id (the last of equal ids wins), in
    /// one atomic batch.
    pub(crate) fn upsert(&self, records: &[T]) -> Result<UpsertCounts, StoreError> {
        let _write = self
            .write
            .lock()
            .expect("a writer panicked while holding the lock");
        let mut last: HashMap<&str, usize> = HashMap::with_capacity(records.len());
        for (i, record) in records.iter().enumerate() {
            last.insert(record.id(), i);
        }
        let mut batch = sled::Batch::default();
        let mut counts = UpsertCounts::default();
        let mut changed = Vec::new();
        for (i, record) in records.iter().enumerate() {
            if last[record.id()] != i {
                continue;
            }
            let key = keys::record(record.id());
            let rev = match self.tree.get(&key).map_err(sled_error)? {
                None => {
                    counts.added += 1;
                    1
                }
                Some(bytes) => {
                    let (rev, old) = decode::<(u64, T)>(&bytes)?;
                    if old == *record {
                        counts.unchanged += 1;
                        continue;
                    }
                    counts.updated += 1;
                    rev + 1
                }
            };
            batch.insert(key, encode(&(rev, record)));
            changed.push(record.id());
        }
        if counts.added == 0 && counts.updated == 0 {
            return Ok(counts);
        }
        let total = read_count(&self.tree)? + counts.added;
        batch.insert(keys::COUNT, &total.to_be_bytes());
        crate::changes::record(&self.tree, &mut batch, changed)?;
        self.tree.apply_batch(batch).map_err(sled_error)?;
        Ok(counts)
    }
}

/// Fails unless the current revision (`None`: no record) is as expected.
pub(crate) fn check_expected(
    id: &str,
    expect: crate::Expect,
    current: Option<u64>,
) -> Result<(), StoreError> {
    match (expect, current) {
        (crate::Expect::New, Some(rev)) => Err(StoreError::Conflict(format!(
            "{id} exists already (revision {rev})"
        ))),
        (crate::Expect::Revision(want), Some(rev)) if want != rev => Err(StoreError::Conflict(
            format!("{id} is at revision {rev}, not {want}: it was changed meanwhile"),
        )),
        (crate::Expect::Revision(_), None) => {
            Err(StoreError::Conflict(format!("{id} does not exist")))
        }
        _ => Ok(()),
    }
}

pub(crate) fn to_json<T: Serialize>(value: &T) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or(serde_json::Value::Null)
}

/// Applies `batch` to `tree` and writes the audit entry, in one transaction.
pub(crate) fn apply_audited(
    tree: &sled::Tree,
    batch: sled::Batch,
    audit: &AuditLog,
    entry: AuditEntry,
) -> Result<u64, StoreError> {
    use sled::Transactional;
    let pending = audit.prepare(entry)?;
    (tree, audit.tree())
        .transaction(|(t, a)| {
            t.apply_batch(&batch)?;
            a.insert(pending.key.as_slice(), pending.value.as_slice())?;
            Ok::<(), sled::transaction::ConflictableTransactionError<()>>(())
        })
        .map_err(|e| match e {
            sled::transaction::TransactionError::Storage(e) => sled_error(e),
            sled::transaction::TransactionError::Abort(()) => {
                StoreError::Io("the write was aborted".into())
            }
        })?;
    Ok(pending.seq)
}
