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
use crate::codec::{decode, encode, sled_error};
use crate::{StoreError, UpsertCounts, keys};

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

    /// Writes records, each if its current revision is as expected (a
    /// write sees the ones before it), with an audit entry for each change,
    /// all in one transaction: each write's new revision or the conflict
    /// that refused it. An error of the store fails them all.
    pub(crate) fn upsert_each_expecting(
        &self,
        writes: &[(&T, crate::Expect, &Actor)],
        audit: &AuditLog,
    ) -> Result<Vec<Result<u64, StoreError>>, StoreError> {
        let _write = self
            .write
            .lock()
            .expect("a writer panicked while holding the lock");
        let mut results = Vec::with_capacity(writes.len());
        // What the earlier writes of this call left.
        let mut written: HashMap<&str, (u64, &T)> = HashMap::new();
        let mut batch = sled::Batch::default();
        let mut added = 0;
        let mut changed = Vec::new();
        let mut entries = Vec::new();
        for &(record, expect, actor) in writes {
            let id = record.id();
            let stored;
            let current = match written.get(id) {
                Some(&(rev, old)) => Some((rev, old)),
                None => {
                    stored = self.get_revised(id)?;
                    stored.as_ref().map(|(rev, old)| (*rev, old))
                }
            };
            if let Err(e) = check_expected(id, expect, current.map(|(rev, _)| rev)) {
                results.push(Err(e));
                continue;
            }
            let rev = match current {
                Some((rev, old)) if old == record => {
                    results.push(Ok(rev));
                    continue;
                }
                Some((rev, _)) => rev + 1,
                None => {
                    added += 1;
                    1
                }
            };
            batch.insert(keys::record(id), encode(&(rev, record)));
            changed.push(id);
            entries.push(AuditEntry::change(
                actor,
                if current.is_some() {
                    "update"
                } else {
                    "create"
                },
                T::KIND.singular(),
                id,
                Some(rev),
                current.map(|(_, old)| to_json(old)),
                Some(to_json(record)),
            ));
            written.insert(id, (rev, record));
            results.push(Ok(rev));
        }
        if changed.is_empty() {
            return Ok(results);
        }
        if added > 0 {
            let total = read_count(&self.tree)? + added;
            batch.insert(keys::COUNT, &total.to_be_bytes());
        }
        crate::changes::record(&self.tree, &mut batch, changed)?;
        apply_audited(&self.tree, batch, audit, entries)?;
        Ok(results)
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
        apply_audited(&self.tree, batch, audit, vec![entry])?;
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
        self.scan_revised().map(|r| r.map(|(_, record)| record))
    }

    /// Every record in id order, with its revision.
    pub(crate) fn scan_revised(&self) -> impl Iterator<Item = Result<(u64, T), StoreError>> + '_ {
        self.tree.scan_prefix([keys::RECORD]).map(|entry| {
            let (_, bytes) = entry.map_err(sled_error)?;
            decode::<(u64, T)>(&bytes)
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

/// Applies `batch` to `tree` and writes the audit entries, in one
/// transaction.
pub(crate) fn apply_audited(
    tree: &sled::Tree,
    batch: sled::Batch,
    audit: &AuditLog,
    entries: Vec<AuditEntry>,
) -> Result<(), StoreError> {
    use sled::Transactional;
    let pending = audit.prepare(entries)?;
    (tree, audit.tree())
        .transaction(|(t, a)| {
            t.apply_batch(&batch)?;
            if let Some(entry) = &pending {
                a.insert(entry.key.as_slice(), entry.value.as_slice())?;
            }
            Ok::<(), sled::transaction::ConflictableTransactionError<()>>(())
        })
        .map_err(|e| match e {
            sled::transaction::TransactionError::Storage(e) => sled_error(e),
            sled::transaction::TransactionError::Abort(()) => {
                StoreError::Io("the write was aborted".into())
            }
        })
}
