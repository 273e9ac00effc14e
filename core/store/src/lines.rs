//! Transaction lines and interactions, stored in blocks.
//!
//! A block is a sorted run of items in one key space, stored under the key
//! of its first item. Two kinds of block share one mechanism, [`BlockSet`]:
//!
//! - line blocks: one customer's lines ordered by (ts, id), in the key space
//!   `b` customer `0x00`, so a customer's history is one range scan;
//! - index blocks: `(id, customer, ts)` entries ordered by id, in the key
//!   space `i`, so a line is found by id with one range lookup.
//!
//! An item belongs to the block with the greatest first key not above its
//! own key (or to the first block of the space when it sorts before all of
//! them). Blocks that grow past their capacity are split evenly; empty ones
//! are removed. An upsert reads every block it touches once, edits it in
//! memory, and writes all changed blocks, index blocks and the count in one
//! atomic sled batch.

use std::collections::{BTreeMap, HashMap};
use std::marker::PhantomData;
use std::ops::Bound;
use std::sync::Mutex;

use model::{
    CampaignId, CustomerId, Department, Interaction, InteractionId, InteractionKind, Money,
    SalesChannel, Sku, Timestamp, Topic, Transaction, TxnId,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::records::{decode, encode, read_count, sled_error};
use crate::{StoreError, UpsertCounts, keys};

/// Most lines in one block (tiny in unit tests, so that they split often).
const LINES_PER_BLOCK: usize = if cfg!(test) { 8 } else { 256 };
/// Most entries in one index block.
const ENTRIES_PER_INDEX_BLOCK: usize = if cfg!(test) { 16 } else { 512 };

/// An item of a block: ordered by `(ts, id)` (index entries use ts 0).
pub(crate) trait BlockItem: Serialize + DeserializeOwned {
    const CAPACITY: usize;
    fn sort_key(&self) -> (i64, &str);
    /// The key of a block that starts with `first`, in the key space `space`.
    fn block_key(space: &[u8], first: &Self) -> Vec<u8>;
}

/// A record stored as a line of a customer: a transaction or an interaction.
pub(crate) trait Line: Sized {
    type Stored: BlockItem + Clone + PartialEq;
    fn customer(&self) -> &CustomerId;
    fn to_stored(&self) -> Self::Stored;
    fn from_stored(customer: &str, stored: Self::Stored) -> Result<Self, StoreError>;
}

/// Where a line is: its customer and time.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub(crate) struct IndexEntry {
    id: String,
    customer: String,
    ts: i64,
}

impl BlockItem for IndexEntry {
    const CAPACITY: usize = ENTRIES_PER_INDEX_BLOCK;

    fn sort_key(&self) -> (i64, &str) {
        (0, &self.id)
    }

    fn block_key(_space: &[u8], first: &Self) -> Vec<u8> {
        keys::index(&first.id)
    }
}

/// The blocks of one key space that an operation has read, with its edits.
struct BlockSet<'t, E> {
    tree: &'t sled::Tree,
    /// Loaded blocks by the lowest key they cover.
    slots: BTreeMap<Vec<u8>, Slot<E>>,
}

struct Slot<E> {
    /// The key space of the block.
    space: Vec<u8>,
    /// Keys at or above `hi` belong to the next block.
    hi: Option<Vec<u8>>,
    /// The block's key in the tree; `None` for a block not yet stored.
    key: Option<Vec<u8>>,
    items: Vec<E>,
    dirty: bool,
}

impl<E: BlockItem> Slot<E> {
    fn position(&self, ts: i64, id: &str) -> Result<usize, usize> {
        self.items.binary_search_by(|e| e.sort_key().cmp(&(ts, id)))
    }
}

impl<'t, E: BlockItem> BlockSet<'t, E> {
    fn new(tree: &'t sled::Tree) -> BlockSet<'t, E> {
        BlockSet {
            tree,
            slots: BTreeMap::new(),
        }
    }

    /// The block that holds, or would hold, the item with routing key `key`
    /// in the key space `space` (`key` starts with `space`).
    fn slot(&mut self, space: &[u8], key: &[u8]) -> Result<&mut Slot<E>, StoreError> {
        let cached = self
            .slots
            .range(..=key.to_vec())
            .next_back()
            .filter(|(lo, slot)| {
                lo.starts_with(space)
                    && slot.space == space
                    && slot.hi.as_deref().is_none_or(|hi| key < hi)
            })
            .map(|(lo, _)| lo.clone());
        let lo = match cached {
            Some(lo) => lo,
            None => {
                let (lo, slot) = self.load(space, key)?;
                self.slots.entry(lo).insert_entry(slot).key().clone()
            }
        };
        Ok(self
            .slots
            .get_mut(&lo)
            .expect("slot was just found or inserted"))
    }

    fn load(&self, space: &[u8], key: &[u8]) -> Result<(Vec<u8>, Slot<E>), StoreError> {
        let tree = self.tree;
        // Every key between `space` and `key` starts with `space`.
        let below = tree
            .range(space..=key)
            .next_back()
            .transpose()
            .map_err(sled_error)?;
        let found = match below {
            Some(entry) => Some(entry),
            None => tree
                .scan_prefix(space)
                .next()
                .transpose()
                .map_err(sled_error)?,
        };
        let Some((block_key, value)) = found else {
            let slot = Slot {
                space: space.to_vec(),
                hi: None,
                key: None,
                items: Vec::new(),
                dirty: false,
            };
            return Ok((space.to_vec(), slot));
        };
        let is_first = tree
            .range(space..&block_key[..])
            .next_back()
            .transpose()
            .map_err(sled_error)?
            .is_none();
        let hi = tree
            .range::<&[u8], _>((Bound::Excluded(&block_key[..]), Bound::Unbounded))
            .next()
            .transpose()
            .map_err(sled_error)?
            .map(|(k, _)| k.to_vec())
            .filter(|k| k.starts_with(space));
        let lo = if is_first {
            space.to_vec()
        } else {
            block_key.to_vec()
        };
        let items: Vec<E> = decode(&value)?;
        let slot = Slot {
            space: space.to_vec(),
            hi,
            key: Some(block_key.to_vec()),
            items,
            dirty: false,
        };
        Ok((lo, slot))
    }

    /// Writes every changed block into `batch`.
    fn write(self, batch: &mut sled::Batch) {
        let mut removed = Vec::new();
        let mut written = Vec::new();
        for slot in self.slots.into_values().filter(|s| s.dirty) {
            let n_chunks = slot.items.len().div_ceil(E::CAPACITY);
            let chunk_len = if n_chunks == 0 {
                1
            } else {
                slot.items.len().div_ceil(n_chunks)
            };
            let mut new_keys = Vec::with_capacity(n_chunks);
            for chunk in slot.items.chunks(chunk_len) {
                let key = E::block_key(&slot.space, &chunk[0]);
                new_keys.push(key.clone());
                written.push((key, encode(chunk)));
            }
            if let Some(old) = slot.key
                && !new_keys.contains(&old)
            {
                removed.push(old);
            }
        }
        // A batch keeps the last write of each key: removals go first so a
        // block that takes over a removed key is kept.
        for key in removed {
            batch.remove(key);
        }
        for (key, value) in written {
            batch.insert(key, value);
        }
    }
}

/// The stored form of a transaction line (its customer is in the block key).
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub(crate) struct StoredTxn {
    id: String,
    ts: i64,
    sku: String,
    quantity: u32,
    amount: i64,
    cost: i64,
    channel: SalesChannel,
    region: String,
}

impl BlockItem for StoredTxn {
    const CAPACITY: usize = LINES_PER_BLOCK;

    fn sort_key(&self) -> (i64, &str) {
        (self.ts, &self.id)
    }

    fn block_key(space: &[u8], first: &Self) -> Vec<u8> {
        keys::block(space, first.ts, &first.id)
    }
}

fn corrupt(what: &str, e: model::InvalidValue) -> StoreError {
    StoreError::Corrupt(format!("stored {what}: {e}"))
}

impl Line for Transaction {
    type Stored = StoredTxn;

    fn customer(&self) -> &CustomerId {
        &self.customer_id
    }

    fn to_stored(&self) -> StoredTxn {
        StoredTxn {
            id: self.txn_id.as_str().to_owned(),
            ts: self.ts.seconds(),
            sku: self.sku.as_str().to_owned(),
            quantity: self.quantity,
            amount: self.amount.cents(),
            cost: self.cost.cents(),
            channel: self.channel,
            region: self.region.clone(),
        }
    }

    fn from_stored(customer: &str, s: StoredTxn) -> Result<Transaction, StoreError> {
        let bad = |e| corrupt("transaction", e);
        Ok(Transaction {
            txn_id: TxnId::parse(&s.id).map_err(bad)?,
            customer_id: CustomerId::parse(customer).map_err(bad)?,
            ts: Timestamp::from_seconds(s.ts),
            sku: Sku::parse(&s.sku).map_err(bad)?,
            quantity: s.quantity,
            amount: Money::from_cents(s.amount),
            cost: Money::from_cents(s.cost),
            channel: s.channel,
            region: s.region,
        })
    }
}

/// The stored form of an interaction (its customer is in the block key).
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub(crate) struct StoredInteraction {
    id: String,
    ts: i64,
    kind: InteractionKind,
    department: Department,
    sku: Option<String>,
    rep: Option<String>,
    region: String,
    topic: Option<Topic>,
    resolved_ts: Option<i64>,
    rating: Option<u8>,
    campaign_id: Option<String>,
}

impl BlockItem for StoredInteraction {
    const CAPACITY: usize = LINES_PER_BLOCK;

    fn sort_key(&self) -> (i64, &str) {
        (self.ts, &self.id)
    }

    fn block_key(space: &[u8], first: &Self) -> Vec<u8> {
        keys::block(space, first.ts, &first.id)
    }
}

impl Line for Interaction {
    type Stored = StoredInteraction;

    fn customer(&self) -> &CustomerId {
        &self.customer_id
    }

    fn to_stored(&self) -> StoredInteraction {
        StoredInteraction {
            id: self.interaction_id.as_str().to_owned(),
            ts: self.ts.seconds(),
            kind: self.kind,
            department: self.department,
            sku: self.sku.as_ref().map(|s| s.as_str().to_owned()),
            rep: self.rep.clone(),
            region: self.region.clone(),
            topic: self.topic,
            resolved_ts: self.resolved_ts.map(Timestamp::seconds),
            rating: self.rating,
            campaign_id: self.campaign_id.as_ref().map(|c| c.as_str().to_owned()),
        }
    }

    fn from_stored(customer: &str, s: StoredInteraction) -> Result<Interaction, StoreError> {
        let bad = |e| corrupt("interaction", e);
        Ok(Interaction {
            interaction_id: InteractionId::parse(&s.id).map_err(bad)?,
            customer_id: CustomerId::parse(customer).map_err(bad)?,
            ts: Timestamp::from_seconds(s.ts),
            kind: s.kind,
            department: s.department,
            sku: s.sku.as_deref().map(Sku::parse).transpose().map_err(bad)?,
            rep: s.rep,
            region: s.region,
            topic: s.topic,
            resolved_ts: s.resolved_ts.map(Timestamp::from_seconds),
            rating: s.rating,
            campaign_id: s
                .campaign_id
                .as_deref()
                .map(CampaignId::parse)
                .transpose()
                .map_err(bad)?,
        })
    }
}

/// One entity's tree of line blocks and index blocks.
pub(crate) struct LineTree<L> {
    tree: sled::Tree,
    /// Upserts read, edit and write blocks: one at a time.
    write: Mutex<()>,
    line: PhantomData<fn() -> L>,
}

impl<L: Line> LineTree<L> {
    pub(crate) fn new(tree: sled::Tree) -> LineTree<L> {
        LineTree {
            tree,
            write: Mutex::new(()),
            line: PhantomData,
        }
    }

    pub(crate) fn count(&self) -> Result<u64, StoreError> {
        read_count(&self.tree)
    }

    /// Where the line with this id is, from the index.
    fn locate(&self, id: &str) -> Result<Option<IndexEntry>, StoreError> {
        let key = keys::index(id);
        let Some((_, value)) = self
            .tree
            .range(&[keys::INDEX][..]..=&key[..])
            .next_back()
            .transpose()
            .map_err(sled_error)?
        else {
            return Ok(None);
        };
        let entries: Vec<IndexEntry> = decode(&value)?;
        Ok(entries
            .binary_search_by(|e| e.id.as_str().cmp(id))
            .ok()
            .map(|i| entries[i].clone()))
    }

    pub(crate) fn get(&self, id: &str) -> Result<Option<L>, StoreError> {
        let Some(loc) = self.locate(id)? else {
            return Ok(None);
        };
        let space = keys::customer_blocks(&loc.customer);
        let key = keys::block(&space, loc.ts, id);
        let Some((_, value)) = self
            .tree
            .range(&space[..]..=&key[..])
            .next_back()
            .transpose()
            .map_err(sled_error)?
        else {
            return Err(StoreError::Corrupt(format!(
                "index names {id} but its block is missing"
            )));
        };
        let lines: Vec<L::Stored> = decode(&value)?;
        match lines.into_iter().find(|l| l.sort_key() == (loc.ts, id)) {
            Some(stored) => L::from_stored(&loc.customer, stored).map(Some),
            None => Err(StoreError::Corrupt(format!(
                "index names {id} but its block lacks it"
            ))),
        }
    }

    pub(crate) fn contains(&self, id: &str) -> Result<bool, StoreError> {
        Ok(self.locate(id)?.is_some())
    }

    /// A customer's lines in (ts, id) order.
    pub(crate) fn of_customer(&self, customer: &str) -> Result<Vec<L>, StoreError> {
        let mut res = Vec::new();
        for entry in self.tree.scan_prefix(keys::customer_blocks(customer)) {
            let (_, value) = entry.map_err(sled_error)?;
            for stored in decode::<Vec<L::Stored>>(&value)? {
                res.push(L::from_stored(customer, stored)?);
            }
        }
        Ok(res)
    }

    /// Every line, grouped by customer in id order, then in (ts, id) order.
    pub(crate) fn scan(&self) -> impl Iterator<Item = Result<L, StoreError>> + '_ {
        self.tree.scan_prefix([keys::BLOCK]).flat_map(|entry| {
            let block = entry.map_err(sled_error).and_then(|(key, value)| {
                let customer = keys::block_customer(&key)
                    .ok_or_else(|| StoreError::Corrupt("malformed block key".into()))?
                    .to_owned();
                let lines: Vec<L::Stored> = decode(&value)?;
                Ok((customer, lines))
            });
            let lines: Box<dyn Iterator<Item = Result<L, StoreError>>> = match block {
                Ok((customer, lines)) => Box::new(
                    lines
                        .into_iter()
                        .map(move |stored| L::from_stored(&customer, stored)),
                ),
                Err(e) => Box::new(std::iter::once(Err(e))),
            };
            lines
        })
    }

    /// Inserts or replaces lines by id (the last of equal ids wins), in one
    /// atomic batch.
    pub(crate) fn upsert(&self, lines: Vec<L>) -> Result<UpsertCounts, StoreError> {
        let _write = self
            .write
            .lock()
            .expect("a writer panicked while holding the lock");
        let mut last: HashMap<String, usize> = HashMap::with_capacity(lines.len());
        let stored: Vec<(String, L::Stored)> = lines
            .iter()
            .map(|l| (l.customer().as_str().to_owned(), l.to_stored()))
            .collect();
        for (i, (_, s)) in stored.iter().enumerate() {
            last.insert(s.sort_key().1.to_owned(), i);
        }
        let mut order: Vec<usize> = last.into_values().collect();
        order.sort_by(|&a, &b| stored[a].1.sort_key().1.cmp(stored[b].1.sort_key().1));

        let mut index: BlockSet<IndexEntry> = BlockSet::new(&self.tree);
        let mut blocks: BlockSet<L::Stored> = BlockSet::new(&self.tree);
        let mut counts = UpsertCounts::default();
        let index_space = [keys::INDEX];
        for i in order {
            let (customer, line) = &stored[i];
            let (ts, id) = line.sort_key();
            let index_key = keys::index(id);
            let index_slot = index.slot(&index_space, &index_key)?;
            let known = index_slot.position(0, id);
            let old = known.ok().map(|p| index_slot.items[p].clone());
            let entry = IndexEntry {
                id: id.to_owned(),
                customer: customer.clone(),
                ts,
            };
            match old {
                Some(old) if old == entry => {
                    let space = keys::customer_blocks(customer);
                    let slot = blocks.slot(&space, &keys::block(&space, ts, id))?;
                    match slot.position(ts, id) {
                        Ok(p) if slot.items[p] == *line => counts.unchanged += 1,
                        Ok(p) => {
                            slot.items[p] = line.clone();
                            slot.dirty = true;
                            counts.updated += 1;
                        }
                        Err(p) => {
                            // The index knew the line but its block did not:
                            // write it back where it belongs.
                            slot.items.insert(p, line.clone());
                            slot.dirty = true;
                            counts.updated += 1;
                        }
                    }
                    continue;
                }
                Some(old) => {
                    let space = keys::customer_blocks(&old.customer);
                    let slot = blocks.slot(&space, &keys::block(&space, old.ts, id))?;
                    if let Ok(p) = slot.position(old.ts, id) {
                        slot.items.remove(p);
                        slot.dirty = true;
                    }
                    counts.updated += 1;
                }
                None => counts.added += 1,
            }
            let index_slot = index.slot(&index_space, &index_key)?;
            match index_slot.position(0, id) {
                Ok(p) => index_slot.items[p] = entry,
                Err(p) => index_slot.items.insert(p, entry),
            }
            index_slot.dirty = true;
            let space = keys::customer_blocks(customer);
            let slot = blocks.slot(&space, &keys::block(&space, ts, id))?;
            match slot.position(ts, id) {
                Ok(p) => slot.items[p] = line.clone(),
                Err(p) => slot.items.insert(p, line.clone()),
            }
            slot.dirty = true;
        }

        if counts.added == 0 && counts.updated == 0 {
            return Ok(counts);
        }
        let mut batch = sled::Batch::default();
        blocks.write(&mut batch);
        index.write(&mut batch);
        let total = read_count(&self.tree)? + counts.added;
        batch.insert(keys::COUNT, &total.to_be_bytes());
        self.tree.apply_batch(batch).map_err(sled_error)?;
        Ok(counts)
    }
}
