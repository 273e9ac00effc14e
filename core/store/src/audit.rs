//! The audit log: every change to the records and definitions, with who
//! made it, when, and the values before and after.
//!
//! An entry is written in the same sled transaction as the change it
//! describes, so a change is never on disk without its entry (nor an entry
//! without its change). Keys: `a` sequence (7 bits per byte, so byte order
//! is numeric order and no byte is 0xff) → the entry as JSON; the entries
//! of changes written together (the API's gathered writes) are one value, a
//! JSON array of entries numbered on from the key's, so that sled writes
//! one key for them rather than one each.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::StoreError;
use crate::codec::sled_error;

/// Who makes a change: "token alice (agent)", "cli", "import orders.csv".
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor(pub String);

impl Actor {
    pub fn new(name: impl Into<String>) -> Actor {
        Actor(name.into())
    }
}

/// One change.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AuditEntry {
    /// Grows with every entry; the cursor for reading the log.
    pub seq: u64,
    /// When, in UTC milliseconds since 1970.
    pub at_ms: i64,
    /// Who: the token's name and role, or the command line.
    pub actor: String,
    /// create, update, delete, save, install, import, ...
    pub action: String,
    /// What kind of thing changed: customer, product, campaign, transaction,
    /// interaction, segment, plugin, token, import.
    pub kind: String,
    /// Its id or name.
    pub id: String,
    /// Its revision after the change, for records and definitions that have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<Value>,
}

impl AuditEntry {
    /// An entry for `actor`'s `action` on `kind` `id`; numbered and timed
    /// when it is written.
    pub fn change(
        actor: &Actor,
        action: &str,
        kind: &str,
        id: &str,
        revision: Option<u64>,
        before: Option<Value>,
        after: Option<Value>,
    ) -> AuditEntry {
        AuditEntry {
            seq: 0,
            at_ms: 0,
            actor: actor.0.clone(),
            action: action.to_owned(),
            kind: kind.to_owned(),
            id: id.to_owned(),
            revision,
            before,
            after,
        }
    }
}

/// Which entries to read: newest first, before the cursor `before`.
#[derive(Clone, Debug, Default)]
pub struct AuditQuery {
    pub before: Option<u64>,
    pub kind: Option<String>,
    pub id: Option<String>,
    pub limit: usize,
}

pub(crate) fn key(seq: u64) -> Vec<u8> {
    let mut key = Vec::with_capacity(11);
    key.push(b'a');
    key.extend((0..10).rev().map(|i| ((seq >> (7 * i)) & 0x7f) as u8));
    key
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

pub(crate) struct AuditLog {
    db: sled::Db,
    tree: sled::Tree,
    /// Held while entries are numbered, so that the entries written
    /// together have consecutive numbers with no other entry between.
    numbering: std::sync::Mutex<()>,
}

/// An entry ready to be written with its change.
pub(crate) struct Pending {
    pub(crate) key: Vec<u8>,
    pub(crate) value: Vec<u8>,
    pub(crate) seq: u64,
}

impl AuditLog {
    pub(crate) fn new(db: sled::Db, tree: sled::Tree) -> AuditLog {
        AuditLog {
            db,
            tree,
            numbering: std::sync::Mutex::new(()),
        }
    }

    pub(crate) fn tree(&self) -> &sled::Tree {
        &self.tree
    }

    /// Numbers entries and encodes them as one value, to be written with
    /// their changes (`None` for no entries).
    pub(crate) fn prepare(
        &self,
        mut entries: Vec<AuditEntry>,
    ) -> Result<Option<Pending>, StoreError> {
        if entries.is_empty() {
            return Ok(None);
        }
        let now = now_ms();
        {
            let _numbering = self.numbering.lock().expect("audit numbering lock");
            for entry in &mut entries {
                // sled's ids grow across restarts; 0 is never given out here.
                entry.seq = self.db.generate_id().map_err(sled_error)? + 1;
                if entry.at_ms == 0 {
                    entry.at_ms = now;
                }
            }
        }
        let seq = entries[0].seq;
        let value = if entries.len() == 1 {
            serde_json::to_vec(&entries[0])
        } else {
            serde_json::to_vec(&entries)
        }
        .map_err(|e| StoreError::Invalid(format!("audit entry: {e}")))?;
        Ok(Some(Pending {
            key: key(seq),
            value,
            seq,
        }))
    }

    /// Writes an entry on its own (for changes outside the record trees).
    pub(crate) fn append(&self, entry: AuditEntry) -> Result<u64, StoreError> {
        let pending = self.prepare(vec![entry])?.expect("one entry");
        self.tree
            .insert(pending.key, pending.value)
            .map_err(sled_error)?;
        Ok(pending.seq)
    }

    pub(crate) fn read(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        let upper = query.before.map_or_else(|| vec![b'b'], key);
        let mut out = Vec::new();
        // Keys hold no 0xff byte, so reverse iteration is safe (see keys.rs).
        for entry in self.tree.range(vec![b'a']..upper).rev() {
            let (_, bytes) = entry.map_err(sled_error)?;
            let written: Vec<AuditEntry> = if bytes.first() == Some(&b'[') {
                serde_json::from_slice(&bytes)
            } else {
                serde_json::from_slice(&bytes).map(|e| vec![e])
            }
            .map_err(|e| StoreError::Corrupt(format!("audit entry: {e}")))?;
            for e in written.into_iter().rev() {
                if query.before.is_some_and(|before| e.seq >= before)
                    || query.kind.as_deref().is_some_and(|k| k != e.kind)
                    || query.id.as_deref().is_some_and(|i| i != e.id)
                {
                    continue;
                }
                out.push(e);
                if out.len() >= query.limit.max(1) {
                    return Ok(out);
                }
            }
        }
        Ok(out)
    }
}
