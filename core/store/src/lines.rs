//! Transaction lines and interactions, stored in blocks.
//!
//! Each customer's lines form a history: a head record (one point lookup)
//! with the customer's earliest lines and a directory of overflow blocks
//! that hold the later ones, each block a run of up to a few hundred lines
//! ordered by (ts, id). Most customers fit in the head: one key each. The
//! write path reads heads and blocks with point lookups only, because every
//! sled iterator copies a whole tree node when it starts.
//!
//! Lines are found by id through an index of `(id, customer, ts)` entries
//! kept in blocks ordered by id ([`BlockSet`]); an index block is found with
//! one range lookup, made once per batch rather than once per line.
//!
//! An upsert reads every head and block it touches once, edits them in
//! memory, splits blocks that grew past their capacity, and writes all
//! changed blocks, index blocks and the count in one atomic sled batch.

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

use crate::audit::{Actor, AuditEntry, AuditLog};
use crate::codec::{decode, encode, sled_error};
use crate::records::{apply_audited, check_expected, read_count, to_json};
use crate::{Expect, StoreError, UpsertCounts, keys};

/// Most lines in one block (tiny in unit tests, so that they split often).
const LINES_PER_BLOCK: usize = if cfg!(test) { 8 } else { 256 };
/// Most entries in one index block. Each line written rewrites its index
/// block whole (about 40 bytes an entry) and each line read by id decodes
/// it: 64 keeps a single write to a few KB. A store written with bigger
/// blocks has them split as they are next written.
const ENTRIES_PER_INDEX_BLOCK: usize = if cfg!(test) { 16 } else { 64 };

/// An item of a block: ordered by `(ts, id)` (index entries use ts 0).
pub(crate) trait BlockItem: Serialize + DeserializeOwned {
    const CAPACITY: usize;
    fn sort_key(&self) -> (i64, &str);
    /// The key of a block that starts with `first`, in the key space `space`.
    fn block_key(space: &[u8], first: &Self) -> Vec<u8>;
}

/// A record stored as a line of a customer: a transaction or an interaction.
pub(crate) trait Line: Sized + Serialize {
    const KIND: model::EntityKind;
    type Stored: StoredLine;
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

/// A line as stored in a customer's history, ordered by `(ts, id)`.
pub(crate) trait StoredLine: Serialize + DeserializeOwned + Clone + PartialEq {
    fn sort_key(&self) -> (i64, &str);
}

/// The stored form of a transaction line (its customer is in the key).
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

impl StoredLine for StoredTxn {
    fn sort_key(&self) -> (i64, &str) {
        (self.ts, &self.id)
    }
}

fn corrupt(what: &str, e: model::InvalidValue) -> StoreError {
    StoreError::Corrupt(format!("stored {what}: {e}"))
}

impl Line for Transaction {
    const KIND: model::EntityKind = model::EntityKind::Transaction;
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

/// The stored form of an interaction (its customer is in the key).
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

impl StoredLine for StoredInteraction {
    fn sort_key(&self) -> (i64, &str) {
        (self.ts, &self.id)
    }
}

impl Line for Interaction {
    const KIND: model::EntityKind = model::EntityKind::Interaction;
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

/// The head of a customer's history: the earliest lines, and the blocks
/// that hold the later ones, in order.
#[derive(Serialize, Deserialize)]
#[serde(bound = "S: StoredLine")]
struct Head<S> {
    /// The number the next new block gets.
    next_block: u32,
    blocks: Vec<BlockStart>,
    lines: Vec<S>,
}

/// An overflow block and the sort key of its first line.
#[derive(Clone, Serialize, Deserialize)]
struct BlockStart {
    number: u32,
    ts: i64,
    id: String,
}

impl BlockStart {
    fn key(&self) -> (i64, &str) {
        (self.ts, &self.id)
    }
}

/// One customer's history, read and edited by an operation.
struct History<S> {
    customer: String,
    head: Head<S>,
    head_dirty: bool,
    /// Overflow blocks read so far: lines, and whether they changed.
    blocks: HashMap<u32, (Vec<S>, bool)>,
}

/// Where a line lives: the head (`None`) or an overflow block.
type Place = Option<u32>;

impl<S: StoredLine> History<S> {
    fn read(tree: &sled::Tree, customer: &str) -> Result<History<S>, StoreError> {
        let head = match tree.get(keys::head(customer)).map_err(sled_error)? {
            Some(bytes) => decode(&bytes)?,
            None => Head {
                next_block: 0,
                blocks: Vec::new(),
                lines: Vec::new(),
            },
        };
        Ok(History {
            customer: customer.to_owned(),
            head,
            head_dirty: false,
            blocks: HashMap::new(),
        })
    }

    /// The place of the line with sort key `(ts, id)`: the last block that
    /// starts at or before it, else the head.
    fn place(&self, ts: i64, id: &str) -> Place {
        let after = self.head.blocks.partition_point(|b| b.key() <= (ts, id));
        after.checked_sub(1).map(|i| self.head.blocks[i].number)
    }

    fn lines(&mut self, tree: &sled::Tree, place: Place) -> Result<&mut Vec<S>, StoreError> {
        let Some(number) = place else {
            return Ok(&mut self.head.lines);
        };
        if !self.blocks.contains_key(&number) {
            let bytes = tree
                .get(keys::overflow(&self.customer, number))
                .map_err(sled_error)?
                .ok_or_else(|| {
                    StoreError::Corrupt(format!("block {number} of {} is missing", self.customer))
                })?;
            self.blocks.insert(number, (decode(&bytes)?, false));
        }
        Ok(&mut self.blocks.get_mut(&number).expect("inserted above").0)
    }

    fn touch(&mut self, place: Place) {
        match place {
            None => self.head_dirty = true,
            Some(number) => {
                self.blocks
                    .get_mut(&number)
                    .expect("read before it changes")
                    .1 = true
            }
        }
    }

    fn find(&mut self, tree: &sled::Tree, ts: i64, id: &str) -> Result<Option<&S>, StoreError> {
        let lines = self.lines(tree, self.place(ts, id))?;
        Ok(lines
            .binary_search_by(|l| l.sort_key().cmp(&(ts, id)))
            .ok()
            .map(|p| &lines[p]))
    }

    /// Puts `line` in place of the line with its sort key, or adds it.
    fn put(&mut self, tree: &sled::Tree, line: S) -> Result<(), StoreError> {
        let place = {
            let (ts, id) = line.sort_key();
            self.place(ts, id)
        };
        let lines = self.lines(tree, place)?;
        match lines.binary_search_by(|l| l.sort_key().cmp(&line.sort_key())) {
            Ok(p) => lines[p] = line,
            Err(p) => lines.insert(p, line),
        }
        self.touch(place);
        Ok(())
    }

    fn remove(&mut self, tree: &sled::Tree, ts: i64, id: &str) -> Result<(), StoreError> {
        let place = self.place(ts, id);
        let lines = self.lines(tree, place)?;
        if let Ok(p) = lines.binary_search_by(|l| l.sort_key().cmp(&(ts, id))) {
            lines.remove(p);
            self.touch(place);
        }
        Ok(())
    }

    /// Writes what changed: blocks over capacity are split, empty ones
    /// removed, and the head rewritten when it or its directory changed.
    fn write(mut self, batch: &mut sled::Batch) {
        let customer = self.customer.clone();
        let mut blocks = std::mem::take(&mut self.blocks);
        // Overflow blocks first: splitting them adds directory entries.
        let mut numbers: Vec<u32> = blocks
            .iter()
            .filter(|(_, (_, dirty))| *dirty)
            .map(|(n, _)| *n)
            .collect();
        numbers.sort_unstable();
        for number in numbers {
            let (lines, _) = blocks.remove(&number).expect("listed above");
            let at = self
                .head
                .blocks
                .iter()
                .position(|b| b.number == number)
                .expect("a block in the directory");
            if lines.is_empty() {
                batch.remove(keys::overflow(&customer, number));
                self.head.blocks.remove(at);
                self.head_dirty = true;
                continue;
            }
            let mut chunks = split(lines);
            let first = chunks.remove(0);
            let (ts, id) = first[0].sort_key();
            if self.head.blocks[at].key() != (ts, id) {
                self.head.blocks[at] = BlockStart {
                    number,
                    ts,
                    id: id.to_owned(),
                };
                self.head_dirty = true;
            }
            batch.insert(keys::overflow(&customer, number), encode(&first));
            for (i, chunk) in chunks.into_iter().enumerate() {
                let start = self.new_block(&chunk, batch);
                self.head.blocks.insert(at + 1 + i, start);
                self.head_dirty = true;
            }
        }
        if !self.head_dirty {
            return;
        }
        if self.head.lines.len() > LINES_PER_BLOCK {
            let mut chunks = split(std::mem::take(&mut self.head.lines));
            self.head.lines = chunks.remove(0);
            for (i, chunk) in chunks.into_iter().enumerate() {
                let start = self.new_block(&chunk, batch);
                self.head.blocks.insert(i, start);
            }
        }
        if self.head.lines.is_empty() && self.head.blocks.is_empty() {
            batch.remove(keys::head(&customer));
        } else {
            batch.insert(keys::head(&customer), encode(&self.head));
        }
    }

    fn new_block(&mut self, lines: &[S], batch: &mut sled::Batch) -> BlockStart {
        let number = self.head.next_block;
        self.head.next_block += 1;
        batch.insert(keys::overflow(&self.customer, number), encode(lines));
        let (ts, id) = lines[0].sort_key();
        BlockStart {
            number,
            ts,
            id: id.to_owned(),
        }
    }

    /// Every line, in order, reading the overflow blocks.
    fn into_lines(mut self, tree: &sled::Tree) -> Result<Vec<S>, StoreError> {
        let mut res = std::mem::take(&mut self.head.lines);
        for start in std::mem::take(&mut self.head.blocks) {
            let lines = std::mem::take(self.lines(tree, Some(start.number))?);
            res.extend(lines);
        }
        Ok(res)
    }
}

/// Splits a run of lines into even chunks of at most the block capacity.
fn split<S>(lines: Vec<S>) -> Vec<Vec<S>> {
    let n_chunks = lines.len().div_ceil(LINES_PER_BLOCK).max(1);
    let chunk_len = lines.len().div_ceil(n_chunks).max(1);
    let mut chunks = Vec::with_capacity(n_chunks);
    let mut lines = lines.into_iter().peekable();
    while lines.peek().is_some() {
        chunks.push(lines.by_ref().take(chunk_len).collect());
    }
    if chunks.is_empty() {
        chunks.push(Vec::new());
    }
    chunks
}

/// One entity's tree of histories and index blocks.
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

    pub(crate) fn tree(&self) -> &sled::Tree {
        &self.tree
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
        let mut history: History<L::Stored> = History::read(&self.tree, &loc.customer)?;
        match history.find(&self.tree, loc.ts, id)? {
            Some(stored) => L::from_stored(&loc.customer, stored.clone()).map(Some),
            None => Err(StoreError::Corrupt(format!(
                "the index names {id} but its block lacks it"
            ))),
        }
    }

    pub(crate) fn contains(&self, id: &str) -> Result<bool, StoreError> {
        Ok(self.locate(id)?.is_some())
    }

    /// The customer of line `id`, from the index.
    pub(crate) fn customer_of(&self, id: &str) -> Result<Option<String>, StoreError> {
        Ok(self.locate(id)?.map(|entry| entry.customer))
    }

    /// A customer's lines in (ts, id) order.
    pub(crate) fn of_customer(&self, customer: &str) -> Result<Vec<L>, StoreError> {
        let history: History<L::Stored> = History::read(&self.tree, customer)?;
        history
            .into_lines(&self.tree)?
            .into_iter()
            .map(|stored| L::from_stored(customer, stored))
            .collect()
    }

    /// The customer and the stored lines of the history whose head is
    /// `value` under `key`.
    fn lines_of_head(
        &self,
        key: &[u8],
        value: &[u8],
    ) -> Result<(String, Vec<L::Stored>), StoreError> {
        let customer = keys::head_customer(key)
            .ok_or_else(|| StoreError::Corrupt("malformed history key".into()))?
            .to_owned();
        let history = History {
            customer: customer.clone(),
            head: decode::<Head<L::Stored>>(value)?,
            head_dirty: false,
            blocks: HashMap::new(),
        };
        let lines = history.into_lines(&self.tree)?;
        Ok((customer, lines))
    }

    /// Every line, grouped by customer in id order, then in (ts, id) order.
    pub(crate) fn scan(&self) -> impl Iterator<Item = Result<L, StoreError>> + '_ {
        self.tree.scan_prefix([keys::HEAD]).flat_map(move |entry| {
            let lines = entry
                .map_err(sled_error)
                .and_then(|(key, value)| self.lines_of_head(&key, &value));
            let lines: Box<dyn Iterator<Item = Result<L, StoreError>>> = match lines {
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
        let (counts, batch) = self.prepare(lines)?;
        if let Some(batch) = batch {
            self.tree.apply_batch(batch).map_err(sled_error)?;
        }
        Ok(counts)
    }

    /// Writes one line, with its audit entry in the same transaction;
    /// `Expect::New` refuses an id that exists. True if the line is new.
    pub(crate) fn put_one(
        &self,
        line: L,
        expect: Expect,
        audit: &AuditLog,
        actor: &Actor,
    ) -> Result<bool, StoreError> {
        let _write = self
            .write
            .lock()
            .expect("a writer panicked while holding the lock");
        let id = line.to_stored().sort_key().1.to_owned();
        let before = self.get(&id)?;
        check_expected(&id, expect, before.as_ref().map(|_| 1))?;
        let after = to_json(&line);
        let (_, batch) = self.prepare(vec![line])?;
        let Some(batch) = batch else {
            return Ok(false);
        };
        let entry = AuditEntry::change(
            actor,
            if before.is_some() { "update" } else { "create" },
            L::KIND.singular(),
            &id,
            None,
            before.as_ref().map(to_json),
            Some(after),
        );
        let created = before.is_none();
        apply_audited(&self.tree, batch, audit, vec![entry])?;
        Ok(created)
    }

    /// Removes one line, with its audit entry; the line removed.
    pub(crate) fn delete(
        &self,
        id: &str,
        audit: &AuditLog,
        actor: &Actor,
    ) -> Result<Option<L>, StoreError> {
        let _write = self
            .write
            .lock()
            .expect("a writer panicked while holding the lock");
        let Some(loc) = self.locate(id)? else {
            return Ok(None);
        };
        let Some(old) = self.get(id)? else {
            return Ok(None);
        };
        let tree = &self.tree;
        let mut index: BlockSet<IndexEntry> = BlockSet::new(tree);
        let index_space = [keys::INDEX];
        let index_key = keys::index(id);
        let slot = index.slot(&index_space, &index_key)?;
        if let Ok(p) = slot.position(0, id) {
            slot.items.remove(p);
            slot.dirty = true;
        }
        let mut history: History<L::Stored> = History::read(tree, &loc.customer)?;
        history.remove(tree, loc.ts, id)?;
        let mut batch = sled::Batch::default();
        history.write(&mut batch);
        crate::changes::record(tree, &mut batch, [loc.customer.as_str()])?;
        index.write(&mut batch);
        let total = read_count(tree)?.saturating_sub(1);
        batch.insert(keys::COUNT, &total.to_be_bytes());
        let entry = AuditEntry::change(
            actor,
            "delete",
            L::KIND.singular(),
            id,
            None,
            Some(to_json(&old)),
            None,
        );
        apply_audited(tree, batch, audit, vec![entry])?;
        Ok(Some(old))
    }

    /// Whether the customer has any line.
    pub(crate) fn has_lines(&self, customer: &str) -> Result<bool, StoreError> {
        let history: History<L::Stored> = History::read(&self.tree, customer)?;
        Ok(!history.head.lines.is_empty() || !history.head.blocks.is_empty())
    }

    /// Every line of the customers from `customer` on (in customer id
    /// order, then time), skipping the first `skip`; up to `limit`.
    pub(crate) fn page(
        &self,
        customer: Option<&str>,
        skip: usize,
        limit: usize,
    ) -> Result<Vec<L>, StoreError> {
        let start = customer.map_or_else(|| vec![keys::HEAD], keys::head);
        let end = vec![keys::HEAD + 1];
        let mut out = Vec::new();
        let mut skip = skip;
        for entry in self.tree.range(start..end) {
            let (key, value) = entry.map_err(sled_error)?;
            let (customer, lines) = self.lines_of_head(&key, &value)?;
            for stored in lines {
                if skip > 0 {
                    skip -= 1;
                    continue;
                }
                out.push(L::from_stored(&customer, stored)?);
                if out.len() >= limit {
                    return Ok(out);
                }
            }
        }
        Ok(out)
    }

    /// The batch that writes `lines`, with what it adds and changes
    /// (`None` when nothing changes); the caller holds the write lock.
    fn prepare(&self, lines: Vec<L>) -> Result<(UpsertCounts, Option<sled::Batch>), StoreError> {
        let stored: Vec<(String, L::Stored)> = lines
            .iter()
            .map(|l| (l.customer().as_str().to_owned(), l.to_stored()))
            .collect();
        let mut last: HashMap<&str, usize> = HashMap::with_capacity(stored.len());
        for (i, (_, s)) in stored.iter().enumerate() {
            last.insert(s.sort_key().1, i);
        }
        let mut order: Vec<usize> = last.into_values().collect();
        // In id order, so that consecutive lines share index blocks.
        order.sort_by(|&a, &b| stored[a].1.sort_key().1.cmp(stored[b].1.sort_key().1));

        let tree = &self.tree;
        let mut index: BlockSet<IndexEntry> = BlockSet::new(tree);
        let mut histories: HashMap<String, History<L::Stored>> = HashMap::new();
        let mut counts = UpsertCounts::default();
        let index_space = [keys::INDEX];
        for i in order {
            let (customer, line) = &stored[i];
            let (ts, id) = line.sort_key();
            let index_key = keys::index(id);
            let index_slot = index.slot(&index_space, &index_key)?;
            let old = index_slot
                .position(0, id)
                .ok()
                .map(|p| index_slot.items[p].clone());
            let entry = IndexEntry {
                id: id.to_owned(),
                customer: customer.clone(),
                ts,
            };
            match old {
                Some(old) if old == entry => {
                    let history = history_of(&mut histories, tree, customer)?;
                    match history.find(tree, ts, id)? {
                        Some(found) if found == line => {
                            counts.unchanged += 1;
                            continue;
                        }
                        // Changed, or known to the index but lost from its
                        // block: written (back) in place.
                        _ => counts.updated += 1,
                    }
                }
                Some(old) => {
                    history_of(&mut histories, tree, &old.customer)?.remove(tree, old.ts, id)?;
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
            history_of(&mut histories, tree, customer)?.put(tree, line.clone())?;
        }

        if counts.added == 0 && counts.updated == 0 {
            return Ok((counts, None));
        }
        let mut batch = sled::Batch::default();
        let customers: Vec<String> = histories.keys().cloned().collect();
        for history in histories.into_values() {
            history.write(&mut batch);
        }
        crate::changes::record(tree, &mut batch, customers.iter().map(String::as_str))?;
        index.write(&mut batch);
        let total = read_count(tree)? + counts.added;
        batch.insert(keys::COUNT, &total.to_be_bytes());
        Ok((counts, Some(batch)))
    }
}

/// The history of `customer` among those an upsert has read, read on first use.
fn history_of<'h, S: StoredLine>(
    histories: &'h mut HashMap<String, History<S>>,
    tree: &sled::Tree,
    customer: &str,
) -> Result<&'h mut History<S>, StoreError> {
    if !histories.contains_key(customer) {
        histories.insert(customer.to_owned(), History::read(tree, customer)?);
    }
    Ok(histories.get_mut(customer).expect("inserted above"))
}
