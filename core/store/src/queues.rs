//! Named queues of JSON entries kept in order: the outbox of webhook
//! deliveries (each entry updated as its attempts go). Keys: `q` name
//! `0x00` sequence (7 bits per byte, so no byte is 0xff and byte order is
//! numeric order).

use crate::StoreError;
use crate::codec::sled_error;

fn key(queue: &str, seq: u64) -> Vec<u8> {
    let mut key = prefix(queue);
    key.extend((0..10).rev().map(|i| ((seq >> (7 * i)) & 0x7f) as u8));
    key
}

fn prefix(queue: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(queue.len() + 12);
    key.push(b'q');
    key.extend_from_slice(queue.as_bytes());
    key.push(0);
    key
}

fn seq_of(key: &[u8]) -> u64 {
    key[key.len() - 10..]
        .iter()
        .fold(0u64, |n, b| (n << 7) | u64::from(*b))
}

pub(crate) struct Queues {
    db: sled::Db,
    tree: sled::Tree,
}

impl Queues {
    pub(crate) fn new(db: sled::Db, tree: sled::Tree) -> Queues {
        Queues { db, tree }
    }

    fn check(queue: &str) -> Result<(), StoreError> {
        if queue.is_empty() || queue.bytes().any(|b| b == 0 || b >= 0x80) {
            return Err(StoreError::Invalid(format!(
                "queue name {queue:?} is empty or not plain ASCII"
            )));
        }
        Ok(())
    }

    pub(crate) fn push(&self, queue: &str, body: &str) -> Result<u64, StoreError> {
        Self::check(queue)?;
        let seq = self.db.generate_id().map_err(sled_error)? + 1;
        self.tree
            .insert(key(queue, seq), body.as_bytes())
            .map_err(sled_error)?;
        Ok(seq)
    }

    pub(crate) fn set(&self, queue: &str, seq: u64, body: &str) -> Result<(), StoreError> {
        Self::check(queue)?;
        self.tree
            .insert(key(queue, seq), body.as_bytes())
            .map_err(sled_error)?;
        Ok(())
    }

    /// Entries after `after`, oldest first; or with `newest_first`, entries
    /// before `after`, newest first.
    pub(crate) fn read(
        &self,
        queue: &str,
        after: Option<u64>,
        limit: usize,
        newest_first: bool,
    ) -> Result<Vec<(u64, String)>, StoreError> {
        Self::check(queue)?;
        let start = prefix(queue);
        let mut end = prefix(queue);
        *end.last_mut().expect("a prefix ends with 0") = 1;
        let decode = |(k, v): (sled::IVec, sled::IVec)| {
            let text = String::from_utf8(v.to_vec())
                .map_err(|_| StoreError::Corrupt(format!("queue {queue}: not UTF-8")))?;
            Ok((seq_of(&k), text))
        };
        let mut out = Vec::new();
        if newest_first {
            let upper = after.map_or(end, |a| key(queue, a));
            for entry in self.tree.range(start..upper).rev().take(limit) {
                out.push(decode(entry.map_err(sled_error)?)?);
            }
        } else {
            let lower = after.map_or(start, |a| key(queue, a + 1));
            for entry in self.tree.range(lower..end).take(limit) {
                out.push(decode(entry.map_err(sled_error)?)?);
            }
        }
        Ok(out)
    }
}
