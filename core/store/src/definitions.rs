//! Named definitions kept with their history: segments (and whatever else
//! users define and edit, such as saved views). Each save adds a revision;
//! a save names the revision it replaces, so two editors cannot overwrite
//! each other unknowingly.
//!
//! Keys of the `definitions` tree: `h` space `0x00` name → the current
//! revision number; `v` space `0x00` name `0x00` revision (7 bits per
//! byte) → the revision as JSON.

use serde::{Deserialize, Serialize};
use sled::transaction::{ConflictableTransactionError, TransactionError};

use crate::codec::sled_error;
use crate::{Expect, Revision, StoreError};

fn base(prefix: u8, space: &str, name: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(2 + space.len() + name.len());
    key.push(prefix);
    key.extend_from_slice(space.as_bytes());
    key.push(0);
    key.extend_from_slice(name.as_bytes());
    key
}

fn head(space: &str, name: &str) -> Vec<u8> {
    base(b'h', space, name)
}

fn version(space: &str, name: &str, revision: u32) -> Vec<u8> {
    let mut key = base(b'v', space, name);
    key.push(0);
    key.extend((0..5).rev().map(|i| ((revision >> (7 * i)) & 0x7f) as u8));
    key
}

#[derive(Serialize, Deserialize)]
struct Stored {
    revision: u32,
    saved_at: i64,
    body: String,
}

fn check_name(name: &str) -> Result<(), StoreError> {
    if name.is_empty() || name.chars().any(char::is_control) {
        return Err(StoreError::Invalid(format!(
            "the name {name:?} is empty or holds control characters"
        )));
    }
    Ok(())
}

pub(crate) struct Definitions {
    tree: sled::Tree,
}

fn decode(name: &str, bytes: &[u8]) -> Result<Revision, StoreError> {
    let s: Stored = serde_json::from_slice(bytes)
        .map_err(|e| StoreError::Corrupt(format!("definition {name}: {e}")))?;
    Ok(Revision {
        name: name.to_owned(),
        revision: s.revision,
        saved_at: s.saved_at,
        body: s.body,
    })
}

fn current_revision(bytes: Option<sled::IVec>) -> Result<Option<u32>, StoreError> {
    bytes
        .map(|b| {
            b[..]
                .try_into()
                .map(u32::from_be_bytes)
                .map_err(|_| StoreError::Corrupt("malformed definition head".into()))
        })
        .transpose()
}

impl Definitions {
    pub(crate) fn new(tree: sled::Tree) -> Definitions {
        Definitions { tree }
    }

    pub(crate) fn get(&self, space: &str, name: &str) -> Result<Option<Revision>, StoreError> {
        let Some(rev) = current_revision(self.tree.get(head(space, name)).map_err(sled_error)?)?
        else {
            return Ok(None);
        };
        match self
            .tree
            .get(version(space, name, rev))
            .map_err(sled_error)?
        {
            Some(bytes) => decode(name, &bytes).map(Some),
            None => Err(StoreError::Corrupt(format!(
                "definition {name}: revision {rev} is missing"
            ))),
        }
    }

    pub(crate) fn list(&self, space: &str) -> Result<Vec<Revision>, StoreError> {
        let mut prefix = vec![b'h'];
        prefix.extend_from_slice(space.as_bytes());
        prefix.push(0);
        let mut out = Vec::new();
        for entry in self.tree.scan_prefix(&prefix) {
            let (key, _) = entry.map_err(sled_error)?;
            let name = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
            if let Some(r) = self.get(space, &name)? {
                out.push(r);
            }
        }
        Ok(out)
    }

    pub(crate) fn history(&self, space: &str, name: &str) -> Result<Vec<Revision>, StoreError> {
        let mut prefix = base(b'v', space, name);
        prefix.push(0);
        self.tree
            .scan_prefix(&prefix)
            .map(|entry| {
                let (_, value) = entry.map_err(sled_error)?;
                decode(name, &value)
            })
            .collect()
    }

    pub(crate) fn save(
        &self,
        space: &str,
        name: &str,
        body: &str,
        expect: Expect,
        saved_at: i64,
    ) -> Result<Revision, StoreError> {
        check_name(name)?;
        let head_key = head(space, name);
        // Revisions keep counting after a delete, so a history never reuses
        // a number. (Forward iteration: sled 0.34's reverse iteration can
        // hang, see keys.rs.)
        let last = {
            let mut prefix = base(b'v', space, name);
            prefix.push(0);
            match self.tree.scan_prefix(&prefix).keys().last() {
                Some(key) => {
                    let key = key.map_err(sled_error)?;
                    key[key.len() - 5..]
                        .iter()
                        .fold(0u32, |acc, b| (acc << 7) | *b as u32)
                }
                None => 0,
            }
        };
        let result = self.tree.transaction(|tx| {
            let current = current_revision(tx.get(&head_key)?)
                .map_err(ConflictableTransactionError::Abort)?;
            let conflict =
                |why: String| ConflictableTransactionError::Abort(StoreError::Conflict(why));
            match (expect, current) {
                (Expect::New, Some(rev)) => {
                    return Err(conflict(format!("{name} exists already (revision {rev})")));
                }
                (Expect::Revision(want), Some(rev)) if want != rev as u64 => {
                    return Err(conflict(format!(
                        "{name} is at revision {rev}, not {want}: it was changed meanwhile"
                    )));
                }
                (Expect::Revision(_), None) => {
                    return Err(conflict(format!("{name} does not exist")));
                }
                _ => {}
            }
            let revision = current.unwrap_or(0).max(last) + 1;
            let stored = Stored {
                revision,
                saved_at,
                body: body.to_owned(),
            };
            let json = serde_json::to_vec(&stored).expect("a definition serializes");
            tx.insert(version(space, name, revision), json)?;
            tx.insert(head_key.as_slice(), &revision.to_be_bytes())?;
            Ok(Revision {
                name: name.to_owned(),
                revision,
                saved_at,
                body: body.to_owned(),
            })
        });
        let revision = result.map_err(|e| match e {
            TransactionError::Abort(e) => e,
            TransactionError::Storage(e) => sled_error(e),
        })?;
        self.tree.flush().map_err(sled_error)?;
        Ok(revision)
    }

    /// Removes the current definition; its history stays readable.
    pub(crate) fn delete(
        &self,
        space: &str,
        name: &str,
        expect: Expect,
    ) -> Result<bool, StoreError> {
        let head_key = head(space, name);
        let result = self.tree.transaction(|tx| {
            let current = current_revision(tx.get(&head_key)?)
                .map_err(ConflictableTransactionError::Abort)?;
            if let (Expect::Revision(want), Some(rev)) = (expect, current)
                && want != rev as u64
            {
                return Err(ConflictableTransactionError::Abort(StoreError::Conflict(
                    format!("{name} is at revision {rev}, not {want}: it was changed meanwhile"),
                )));
            }
            if current.is_some() {
                tx.remove(head_key.as_slice())?;
            }
            Ok(current.is_some())
        });
        let removed = result.map_err(|e| match e {
            TransactionError::Abort(e) => e,
            TransactionError::Storage(e) => sled_error(e),
        })?;
        self.tree.flush().map_err(sled_error)?;
        Ok(removed)
    }
}
