//! The change log of an entity tree: which ids each upsert changed.
//!
//! Every upsert that changes something adds one entry, in the same atomic
//! batch as the change itself, so the log never misses a write and never
//! names one that did not happen. Readers that keep a derived copy of the
//! records (the analysis snapshot) remember the sequence number they have
//! seen, ask for the ids changed since, and let the log be trimmed once
//! their copy is saved.

use std::collections::BTreeSet;

use crate::codec::{decode, encode, sled_error};
use crate::{Changes, StoreError, keys};

/// The sequence number of the last change (0 before the first).
pub(crate) fn position(tree: &sled::Tree) -> Result<u64, StoreError> {
    match tree.get(keys::SEQUENCE).map_err(sled_error)? {
        None => Ok(0),
        Some(bytes) => bytes[..]
            .try_into()
            .map(u64::from_be_bytes)
            .map_err(|_| StoreError::Corrupt("malformed change sequence".into())),
    }
}

/// Adds the entry for a change of `ids` to `batch`.
pub(crate) fn record<'a>(
    tree: &sled::Tree,
    batch: &mut sled::Batch,
    ids: impl IntoIterator<Item = &'a str>,
) -> Result<(), StoreError> {
    let sequence = position(tree)? + 1;
    let ids: Vec<&str> = ids.into_iter().collect();
    batch.insert(keys::change(sequence), encode(&ids));
    batch.insert(keys::SEQUENCE, &sequence.to_be_bytes());
    Ok(())
}

pub(crate) fn since(tree: &sled::Tree, after: u64) -> Result<Changes, StoreError> {
    let mut ids = BTreeSet::new();
    let mut position = after;
    let end = [keys::CHANGE + 1];
    for entry in tree.range(keys::change(after.saturating_add(1))..end.to_vec()) {
        let (key, value) = entry.map_err(sled_error)?;
        let changed: Vec<String> = decode(&value)?;
        ids.extend(changed);
        position = key[1..].iter().fold(0u64, |n, &b| (n << 7) | b as u64);
    }
    Ok(Changes {
        ids: ids.into_iter().collect(),
        position,
    })
}

pub(crate) fn forget(tree: &sled::Tree, upto: u64) -> Result<(), StoreError> {
    let mut batch = sled::Batch::default();
    for entry in tree.range(keys::change(0)..=keys::change(upto)) {
        let (key, _) = entry.map_err(sled_error)?;
        batch.remove(key);
    }
    tree.apply_batch(batch).map_err(sled_error)
}
