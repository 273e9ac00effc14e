//! The analysis snapshot: every record of the store as plain columns.
//!
//! Strings are dictionary-encoded (`Dict`), days and timestamps are
//! integers, money is integer cents. Each customer's transaction lines and
//! interactions are contiguous and in time order (`Lines`), so a customer's
//! history is a slice, a basket is a run of equal days, and an as-of date
//! cuts a prefix. A customer whose lines change gets them in an overlay
//! until the next `compact`, so a write never moves the columns of others.

use std::collections::HashMap;
use std::ops::Range;

use model::{
    Campaign, CampaignChannel, Customer, Date, EntityKind, Interaction, Product, Transaction,
};
use rayon::prelude::*;

/// Code of an absent value in a column of codes.
pub const NONE: u32 = u32::MAX;
/// An absent date.
pub const NO_DAY: i32 = i32::MIN;
/// An absent timestamp.
pub const NO_TS: i64 = i64::MIN;

/// Interned strings: each distinct value gets a code, in order of arrival.
#[derive(Clone, Debug, Default)]
pub struct Dict {
    values: Vec<String>,
    index: HashMap<String, u32>,
}

impl Dict {
    pub fn code(&mut self, value: &str) -> u32 {
        if let Some(&code) = self.index.get(value) {
            return code;
        }
        let code = self.values.len() as u32;
        self.values.push(value.to_owned());
        self.index.insert(value.to_owned(), code);
        code
    }

    pub fn find(&self, value: &str) -> Option<u32> {
        self.index.get(value).copied()
    }

    pub fn get(&self, code: u32) -> &str {
        &self.values[code as usize]
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    pub(crate) fn values(&self) -> &[String] {
        &self.values
    }

    pub(crate) fn from_values(values: Vec<String>) -> Dict {
        let index = values
            .iter()
            .enumerate()
            .map(|(i, v)| (v.clone(), i as u32))
            .collect();
        Dict { values, index }
    }
}

/// Many strings in one buffer; a string can be replaced (the old bytes stay
/// until the column is compacted). Every span starts and ends on a
/// character boundary, so reading one checks two bytes, not the string.
#[derive(Clone, Debug, Default)]
pub struct Strings {
    pub(crate) text: String,
    pub(crate) spans: Vec<(u64, u32)>,
}

impl Strings {
    pub fn get(&self, i: usize) -> &str {
        let (start, len) = self.spans[i];
        &self.text[start as usize..start as usize + len as usize]
    }

    pub fn push(&mut self, value: &str) {
        self.spans
            .push((self.text.len() as u64, value.len() as u32));
        self.text.push_str(value);
    }

    pub fn set(&mut self, i: usize, value: &str) {
        if self.get(i) != value {
            self.spans[i] = (self.text.len() as u64, value.len() as u32);
            self.text.push_str(value);
        }
    }

    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// Reads string `i`'s span and its first byte (0 beyond the end), for
    /// a caller that touches what it will read before reading it.
    pub fn touch(&self, i: usize) -> u64 {
        self.spans.get(i).map_or(0, |&(start, len)| {
            self.text
                .as_bytes()
                .get(start as usize)
                .copied()
                .unwrap_or(0) as u64
                + len as u64
        })
    }

    /// Bytes taken (approximately).
    pub fn memory_bytes(&self) -> usize {
        self.text.capacity() + self.spans.capacity() * 16
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// Whether the strings lie one after the other with nothing between.
    pub(crate) fn is_compact(&self) -> bool {
        let mut end = 0u64;
        for &(start, len) in &self.spans {
            if start != end {
                return false;
            }
            end += len as u64;
        }
        end == self.text.len() as u64
    }

    fn compacted(&mut self) {
        if self.is_compact() {
            return;
        }
        let mut res = Strings::default();
        for i in 0..self.len() {
            res.push(self.get(i));
        }
        *self = res;
    }
}

/// The ids of one kind of line, each kept as a number in a column: an id
/// made of a prefix and up to 13 digits (`T0001197303`) as its prefix's
/// code, its number of digits and their value; any other id as an index
/// into `other`. Ids come back exactly as they were given.
#[derive(Clone, Debug, Default)]
pub struct LineIds {
    pub(crate) prefixes: Dict,
    pub(crate) other: Strings,
}

/// Marks a code that indexes `LineIds::other`.
const OTHER_ID: u64 = 1 << 63;
const ID_DIGITS: usize = 13;
const ID_VALUE_BITS: u32 = 45;
const ID_WIDTH_BITS: u32 = 4;
const ID_PREFIXES: usize = 1 << 14;

impl LineIds {
    /// The code of `id`.
    pub fn code(&mut self, id: &str) -> u64 {
        let digits = id.len() - id.bytes().rev().take_while(u8::is_ascii_digit).count();
        let (prefix, number) = id.split_at(digits);
        if (1..=ID_DIGITS).contains(&number.len())
            && (self.prefixes.len() < ID_PREFIXES || self.prefixes.find(prefix).is_some())
        {
            let value: u64 = number.parse().expect("only ASCII digits");
            let prefix = self.prefixes.code(prefix) as u64;
            return prefix << (ID_VALUE_BITS + ID_WIDTH_BITS)
                | (number.len() as u64) << ID_VALUE_BITS
                | value;
        }
        self.other.push(id);
        OTHER_ID | (self.other.len() - 1) as u64
    }

    /// Writes the id of `code` to `out`.
    pub fn write(&self, code: u64, out: &mut String) {
        if code & OTHER_ID != 0 {
            out.push_str(self.other.get((code & !OTHER_ID) as usize));
            return;
        }
        let mut value = code & ((1 << ID_VALUE_BITS) - 1);
        let width = ((code >> ID_VALUE_BITS) & ((1 << ID_WIDTH_BITS) - 1)) as usize;
        out.push_str(
            self.prefixes
                .get((code >> (ID_VALUE_BITS + ID_WIDTH_BITS)) as u32),
        );
        let mut digits = [b'0'; ID_DIGITS];
        for digit in digits[..width].iter_mut().rev() {
            *digit = b'0' + (value % 10) as u8;
            value /= 10;
        }
        out.push_str(std::str::from_utf8(&digits[..width]).expect("ASCII digits"));
    }

    /// The id of `code`.
    pub fn get(&self, code: u64) -> String {
        let mut out = String::new();
        self.write(code, &mut out);
        out
    }
}

/// Declares a set of line columns, its borrowed slice, and their plumbing.
macro_rules! columns {
    ($(#[$doc:meta])* $cols:ident, $slice:ident { $($field:ident: $ty:ty),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Debug, Default)]
        pub struct $cols {
            $(pub $field: Vec<$ty>,)+
        }

        /// One customer's lines (or a prefix of them), column by column.
        #[derive(Clone, Copy, Debug)]
        pub struct $slice<'a> {
            $(pub $field: &'a [$ty],)+
        }

        impl $cols {
            pub fn len(&self) -> usize {
                self.ts.len()
            }

            pub fn is_empty(&self) -> bool {
                self.ts.is_empty()
            }

            pub fn slice(&self, range: Range<usize>) -> $slice<'_> {
                $slice { $($field: &self.$field[range.clone()],)+ }
            }

            pub fn all(&self) -> $slice<'_> {
                self.slice(0..self.len())
            }

            pub fn extend(&mut self, from: $slice<'_>) {
                $(self.$field.extend_from_slice(from.$field);)+
            }

            pub(crate) fn columns_mut(&mut self) -> Vec<&mut dyn Column> {
                vec![$(&mut self.$field as &mut dyn Column,)+]
            }

            pub(crate) fn columns(&self) -> Vec<&dyn Column> {
                vec![$(&self.$field as &dyn Column,)+]
            }
        }

        impl<'a> $slice<'a> {
            pub fn len(&self) -> usize {
                self.ts.len()
            }

            pub fn is_empty(&self) -> bool {
                self.ts.is_empty()
            }

            /// The first `n` lines.
            pub fn prefix(&self, n: usize) -> $slice<'a> {
                $slice { $($field: &self.$field[..n],)+ }
            }

            /// The lines before `limit` (a timestamp): a prefix, as lines are in time order.
            pub fn before(&self, limit: i64) -> $slice<'a> {
                self.prefix(self.ts.partition_point(|&ts| ts < limit))
            }

            /// Reads every column's first and last value, so that their
            /// cache misses are waited for together (see `Snapshot::touch`).
            pub fn touch(&self) -> u64 {
                let mut sum = 0u64;
                $(
                    if let (Some(first), Some(last)) = (self.$field.first(), self.$field.last()) {
                        sum = sum.wrapping_add(*first as u64).wrapping_add(*last as u64);
                    }
                )+
                sum
            }
        }
    };
}

columns!(
    /// Transaction lines (`id`: the code of the line's id in `Dicts::txn_ids`).
    TxnCols, TxnSlice {
        ts: i64,
        product: u32,
        quantity: u32,
        amount: i64,
        cost: i64,
        channel: u8,
        region: u32,
        id: u64,
    }
);

columns!(
    /// Interactions (`id`: the code of the id in `Dicts::interaction_ids`).
    InteractionCols, InteractionSlice {
        ts: i64,
        kind: u8,
        department: u8,
        product: u32,
        rep: u32,
        region: u32,
        topic: u8,
        resolved: i64,
        rating: u8,
        campaign: u32,
        id: u64,
    }
);

/// Lines of every customer: customer `ci`'s are `main[start[ci]..start[ci + 1]]`,
/// unless they changed since the last compaction and are in `overlay`.
#[derive(Clone, Debug, Default)]
pub struct Lines<C> {
    pub(crate) main: C,
    pub(crate) start: Vec<u64>,
    pub(crate) overlay: HashMap<u32, C>,
    /// 1 for customers whose lines are in the overlay.
    pub(crate) overlaid: Vec<u8>,
}

macro_rules! lines_impl {
    ($cols:ident, $slice:ident) => {
        impl Lines<$cols> {
            pub fn of(&self, ci: u32) -> $slice<'_> {
                let i = ci as usize;
                if self.overlaid.get(i).copied() == Some(1) {
                    return self.overlay[&ci].all();
                }
                match (self.start.get(i), self.start.get(i + 1)) {
                    (Some(&a), Some(&b)) => self.main.slice(a as usize..b as usize),
                    _ => self.main.slice(0..0),
                }
            }

            /// Replaces the lines of customer `ci` (in time order).
            pub fn set(&mut self, ci: u32, lines: $cols) {
                let i = ci as usize;
                if self.overlaid.len() <= i {
                    self.overlaid.resize(i + 1, 0);
                }
                self.overlaid[i] = 1;
                self.overlay.insert(ci, lines);
            }

            /// Lines in all (after the overlay).
            pub fn len(&self, n_customers: usize) -> usize {
                (0..n_customers as u32).map(|ci| self.of(ci).len()).sum()
            }

            /// Moves the overlay into the main columns.
            pub fn compact(&mut self, n_customers: usize) {
                if self.overlay.is_empty() && self.start.len() == n_customers + 1 {
                    return;
                }
                let mut main = $cols::default();
                let mut start = Vec::with_capacity(n_customers + 1);
                start.push(0);
                for ci in 0..n_customers as u32 {
                    main.extend(self.of(ci));
                    start.push(main.len() as u64);
                }
                *self = Lines {
                    main,
                    start,
                    overlay: HashMap::new(),
                    overlaid: Vec::new(),
                };
            }
        }
    };
}

lines_impl!(TxnCols, TxnSlice);
lines_impl!(InteractionCols, InteractionSlice);

/// Customers, one row each.
#[derive(Clone, Debug, Default)]
pub struct Customers {
    pub ids: Strings,
    pub names: Strings,
    pub attributes: Strings,
    pub gender: Vec<u8>,
    pub birth: Vec<i32>,
    pub region: Vec<u32>,
    pub city: Vec<u32>,
    pub channel: Vec<u8>,
    pub joined: Vec<i32>,
    pub tier: Vec<u32>,
    /// Each customer's revision in the store; 0 where it is not known (a
    /// snapshot built without revisions).
    pub revision: Vec<u64>,
    /// Customer rows in id order (but those in `recent`).
    pub(crate) by_id: Vec<u32>,
    /// The rows of `by_id` in a hash table by id (open addressing, row + 1
    /// per slot, 0 for none): a lookup reads a slot or two and the id, where
    /// a binary search over a million ids misses the cache at every step.
    /// Worked out again after a merge.
    pub(crate) by_hash: std::sync::OnceLock<Vec<u32>>,
    /// Rows added since `by_id` was last merged, by id: adding a customer
    /// does not move the rows of all the others.
    pub(crate) recent: std::collections::BTreeMap<String, u32>,
    /// Position of each row in id order (ties between customers are broken
    /// by id); worked out again after customers are added.
    pub(crate) rank: std::sync::OnceLock<Vec<u32>>,
}

/// The slot where the search for `id` starts in a table of `mask + 1`
/// slots: FxHash over the id's 8-byte words, its high bits.
fn id_slot(id: &[u8], mask: usize) -> usize {
    let mut h = 0u64;
    for word in id.chunks(8) {
        let mut bytes = [0u8; 8];
        bytes[..word.len()].copy_from_slice(word);
        h = (h.rotate_left(5) ^ u64::from_le_bytes(bytes)).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    (h >> 32) as usize & mask
}

/// Customers added before `recent` is merged into `by_id`: at least this
/// many, and at least a sixteenth of the rows, so that a merge (which moves
/// every row) costs each added customer a few row moves, not hundreds.
const RECENT: usize = 4096;

impl Customers {
    pub fn len(&self) -> usize {
        self.gender.len()
    }

    pub fn is_empty(&self) -> bool {
        self.gender.is_empty()
    }

    /// The row of the customer with this id.
    pub fn find(&self, id: &str) -> Option<u32> {
        let table = self.by_hash.get_or_init(|| {
            let mut table = vec![0u32; (self.by_id.len() * 2).next_power_of_two().max(16)];
            let mask = table.len() - 1;
            for &ci in &self.by_id {
                let mut slot = id_slot(self.ids.get(ci as usize).as_bytes(), mask);
                while table[slot] != 0 {
                    slot = (slot + 1) & mask;
                }
                table[slot] = ci + 1;
            }
            table
        });
        let mask = table.len() - 1;
        let mut slot = id_slot(id.as_bytes(), mask);
        loop {
            match table[slot] {
                0 => return self.recent.get(id).copied(),
                row if self.ids.get(row as usize - 1) == id => {
                    return Some(row - 1);
                }
                _ => slot = (slot + 1) & mask,
            }
        }
    }

    /// Each row's position in id order.
    pub fn rank(&self) -> &[u32] {
        self.rank.get_or_init(|| {
            let mut rank = vec![0; self.len()];
            for (p, ci) in self.in_id_order().into_iter().enumerate() {
                rank[ci as usize] = p as u32;
            }
            rank
        })
    }

    /// The rows in id order (descending with `desc`) whose ids come after
    /// `after` in that order, lazily: a page of a list in id order reads
    /// only the rows it shows.
    pub fn in_id_order_after<'a>(
        &'a self,
        after: Option<&'a str>,
        desc: bool,
    ) -> Box<dyn Iterator<Item = u32> + 'a> {
        use std::ops::Bound;
        let key = |ci: &u32| self.ids.get(*ci as usize);
        if !desc {
            let start = after.map_or(0, |a| self.by_id.partition_point(|ci| key(ci) <= a));
            let recent = self.recent.range::<str, _>((
                after.map_or(Bound::Unbounded, Bound::Excluded),
                Bound::Unbounded,
            ));
            let mut recent = recent.peekable();
            let mut base = self.by_id[start..].iter().peekable();
            Box::new(std::iter::from_fn(move || {
                match (base.peek(), recent.peek()) {
                    (Some(b), Some((r, _))) if r.as_str() < key(b) => {
                        recent.next().map(|(_, &ci)| ci)
                    }
                    (Some(_), _) => base.next().copied(),
                    (None, _) => recent.next().map(|(_, &ci)| ci),
                }
            }))
        } else {
            let end = after.map_or(self.by_id.len(), |a| {
                self.by_id.partition_point(|ci| key(ci) < a)
            });
            let recent = self.recent.range::<str, _>((
                Bound::Unbounded,
                after.map_or(Bound::Unbounded, Bound::Excluded),
            ));
            let mut recent = recent.rev().peekable();
            let mut base = self.by_id[..end].iter().rev().peekable();
            Box::new(std::iter::from_fn(move || {
                match (base.peek(), recent.peek()) {
                    (Some(b), Some((r, _))) if r.as_str() > key(b) => {
                        recent.next().map(|(_, &ci)| ci)
                    }
                    (Some(_), _) => base.next().copied(),
                    (None, _) => recent.next().map(|(_, &ci)| ci),
                }
            }))
        }
    }

    /// Every row in id order.
    pub fn in_id_order(&self) -> Vec<u32> {
        if self.recent.is_empty() {
            return self.by_id.clone();
        }
        let mut merged = Vec::with_capacity(self.by_id.len() + self.recent.len());
        let mut recent = self.recent.iter().peekable();
        for &ci in &self.by_id {
            let id = self.ids.get(ci as usize);
            while let Some((_, &r)) = recent.next_if(|(rid, _)| rid.as_str() < id) {
                merged.push(r);
            }
            merged.push(ci);
        }
        merged.extend(recent.map(|(_, &r)| r));
        merged
    }

    /// Merges the recently added rows into `by_id`.
    pub(crate) fn merge_recent(&mut self) {
        if !self.recent.is_empty() {
            self.by_id = self.in_id_order();
            self.by_hash = std::sync::OnceLock::new();
            self.recent.clear();
        }
    }

    pub fn id(&self, ci: u32) -> &str {
        self.ids.get(ci as usize)
    }
}

/// Products, one row each.
#[derive(Clone, Debug, Default)]
pub struct Products {
    pub skus: Vec<String>,
    pub names: Vec<String>,
    pub category: Vec<u32>,
    pub brand: Vec<u32>,
    pub price: Vec<i64>,
    pub cost: Vec<i64>,
    pub attributes: Vec<String>,
    pub(crate) index: HashMap<String, u32>,
}

impl Products {
    pub fn len(&self) -> usize {
        self.skus.len()
    }

    pub fn is_empty(&self) -> bool {
        self.skus.is_empty()
    }

    pub fn find(&self, sku: &str) -> Option<u32> {
        self.index.get(sku).copied()
    }
}

/// A campaign.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CampaignRow {
    pub id: String,
    pub name: String,
    pub channel: CampaignChannel,
    pub start: i32,
    pub end: i32,
    pub cost: i64,
}

/// The dictionaries of the string columns.
#[derive(Clone, Debug, Default)]
pub struct Dicts {
    /// Customer regions.
    pub region: Dict,
    pub city: Dict,
    pub tier: Dict,
    pub category: Dict,
    pub brand: Dict,
    /// Regions of transaction lines.
    pub sale_region: Dict,
    /// Regions of interactions.
    pub contact_region: Dict,
    pub rep: Dict,
    pub txn_ids: LineIds,
    pub interaction_ids: LineIds,
}

/// Every record, as columns.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub customers: Customers,
    pub products: Products,
    /// In id order.
    pub campaigns: Vec<CampaignRow>,
    pub txns: Lines<TxnCols>,
    pub interactions: Lines<InteractionCols>,
    pub dicts: Dicts,
    /// For each kind (in `EntityKind::ALL` order), the position of the
    /// store's change log that this snapshot includes.
    pub positions: [u64; 5],
    /// The identity of the store this snapshot was made from.
    pub store: u64,
    /// Each customer's activity over all their lines, kept current with them.
    pub(crate) activity: Vec<Activity>,
    /// The time of the last transaction line of all.
    pub(crate) last_ts: Option<i64>,
}

fn kind_index(kind: EntityKind) -> usize {
    EntityKind::ALL
        .iter()
        .position(|&k| k == kind)
        .expect("every kind is in ALL")
}

impl Snapshot {
    /// Reads one value of everything customer `row` has in every column:
    /// its row in the customer columns, and its lines. Reading a customer
    /// touches some 40 places far apart in memory; read one after another
    /// as a 360 is written, each waits for memory in turn. Touched first,
    /// with nothing in between, their cache misses overlap. Returns a
    /// value to hand to `std::hint::black_box`, so the reads are kept.
    pub fn touch(&self, row: u32) -> u64 {
        let c = &self.customers;
        let i = row as usize;
        if i >= c.len() {
            return 0;
        }
        let span = |s: &Strings| s.touch(i);
        let mut sum = span(&c.ids)
            .wrapping_add(span(&c.names))
            .wrapping_add(span(&c.attributes))
            .wrapping_add(c.gender[i] as u64)
            .wrapping_add(c.birth[i] as u64)
            .wrapping_add(c.region[i] as u64)
            .wrapping_add(c.city[i] as u64)
            .wrapping_add(c.channel[i] as u64)
            .wrapping_add(c.joined[i] as u64)
            .wrapping_add(c.tier[i] as u64)
            .wrapping_add(c.revision.get(i).copied().unwrap_or(0))
            .wrapping_add(self.activity.get(i).map_or(0, |a| a.lines as u64));
        sum = sum
            .wrapping_add(self.txns.of(row).touch())
            .wrapping_add(self.interactions.of(row).touch());
        sum
    }

    pub fn position(&self, kind: EntityKind) -> u64 {
        self.positions[kind_index(kind)]
    }

    pub fn set_position(&mut self, kind: EntityKind, position: u64) {
        self.positions[kind_index(kind)] = position;
    }

    /// Adds a customer, or replaces the one with the same id; its row. A new
    /// customer has no lines until they are set.
    pub fn upsert_customer(&mut self, customer: &Customer) -> u32 {
        self.upsert_customer_revised(customer, 0)
    }

    /// As `upsert_customer`, with the customer's revision in the store.
    pub fn upsert_customer_revised(&mut self, customer: &Customer, revision: u64) -> u32 {
        let d = &mut self.dicts;
        let c = &mut self.customers;
        let region = d.region.code(&customer.region);
        let city = d.city.code(&customer.city);
        let tier = d.tier.code(&customer.tier);
        let birth = customer.birth_date.map_or(NO_DAY, Date::days);
        let id = customer.customer_id.as_str();
        match c.find(id) {
            Some(ci) => {
                let i = ci as usize;
                c.names.set(i, &customer.name);
                c.attributes.set(i, customer.attributes.as_str());
                c.gender[i] = customer.gender.index();
                c.birth[i] = birth;
                c.region[i] = region;
                c.city[i] = city;
                c.channel[i] = customer.channel.index();
                c.joined[i] = customer.joined_at.days();
                c.tier[i] = tier;
                c.revision[i] = revision;
                ci
            }
            None => {
                let ci = c.len() as u32;
                c.ids.push(id);
                c.names.push(&customer.name);
                c.attributes.push(customer.attributes.as_str());
                c.gender.push(customer.gender.index());
                c.birth.push(birth);
                c.region.push(region);
                c.city.push(city);
                c.channel.push(customer.channel.index());
                c.joined.push(customer.joined_at.days());
                c.tier.push(tier);
                c.revision.push(revision);
                c.recent.insert(id.to_owned(), ci);
                if c.recent.len() >= RECENT.max(c.by_id.len() / 16) {
                    c.merge_recent();
                }
                c.rank = std::sync::OnceLock::new();
                self.activity.push(Activity::default());
                ci
            }
        }
    }

    pub fn upsert_product(&mut self, product: &Product) {
        let category = self.dicts.category.code(&product.category);
        let brand = self.dicts.brand.code(&product.brand);
        let p = &mut self.products;
        let i = match p.index.get(product.sku.as_str()) {
            Some(&i) => i as usize,
            None => {
                let i = p.len();
                p.skus.push(product.sku.as_str().to_owned());
                p.names.push(String::new());
                p.category.push(0);
                p.brand.push(0);
                p.price.push(0);
                p.cost.push(0);
                p.attributes.push(String::new());
                p.index.insert(product.sku.as_str().to_owned(), i as u32);
                i
            }
        };
        p.names[i] = product.name.clone();
        p.category[i] = category;
        p.brand[i] = brand;
        p.price[i] = product.unit_price.cents();
        p.cost[i] = product.unit_cost.cents();
        p.attributes[i] = product.attributes.as_str().to_owned();
    }

    pub fn upsert_campaign(&mut self, campaign: &Campaign) {
        let row = CampaignRow {
            id: campaign.campaign_id.as_str().to_owned(),
            name: campaign.name.clone(),
            channel: campaign.channel,
            start: campaign.start_date.days(),
            end: campaign.end_date.days(),
            cost: campaign.cost.cents(),
        };
        match self
            .campaigns
            .binary_search_by(|c| c.id.as_str().cmp(&row.id))
        {
            Ok(i) => self.campaigns[i] = row,
            Err(i) => self.campaigns.insert(i, row),
        }
    }

    pub fn campaign(&self, id: &str) -> Option<u32> {
        self.campaigns
            .binary_search_by(|c| c.id.as_str().cmp(id))
            .ok()
            .map(|i| i as u32)
    }

    /// The transaction lines as columns, for customer `ci`'s lines in time order.
    pub fn txn_columns(&mut self, lines: &[Transaction]) -> TxnCols {
        let mut cols = TxnCols::default();
        for t in lines {
            cols.ts.push(t.ts.seconds());
            cols.product
                .push(self.products.find(t.sku.as_str()).unwrap_or(NONE));
            cols.quantity.push(t.quantity);
            cols.amount.push(t.amount.cents());
            cols.cost.push(t.cost.cents());
            cols.channel.push(t.channel.index());
            cols.region.push(self.dicts.sale_region.code(&t.region));
            cols.id.push(self.dicts.txn_ids.code(t.txn_id.as_str()));
        }
        cols
    }

    pub fn interaction_columns(&mut self, lines: &[Interaction]) -> InteractionCols {
        let mut cols = InteractionCols::default();
        for i in lines {
            cols.ts.push(i.ts.seconds());
            cols.kind.push(i.kind.index());
            cols.department.push(i.department.index());
            cols.product.push(
                i.sku
                    .as_ref()
                    .and_then(|s| self.products.find(s.as_str()))
                    .unwrap_or(NONE),
            );
            cols.rep
                .push(i.rep.as_deref().map_or(NONE, |r| self.dicts.rep.code(r)));
            cols.region.push(self.dicts.contact_region.code(&i.region));
            cols.topic.push(i.topic.map_or(u8::MAX, |t| t.index()));
            cols.resolved
                .push(i.resolved_ts.map_or(NO_TS, |t| t.seconds()));
            cols.rating.push(i.rating.unwrap_or(0));
            cols.campaign.push(
                i.campaign_id
                    .as_ref()
                    .and_then(|c| self.campaign(c.as_str()))
                    .unwrap_or(NONE),
            );
            cols.id
                .push(self.dicts.interaction_ids.code(i.interaction_id.as_str()));
        }
        cols
    }

    /// Replaces customer `ci`'s transaction lines (given in time order).
    pub fn set_transactions(&mut self, ci: u32, lines: &[Transaction]) {
        let cols = self.txn_columns(lines);
        let new = activity(cols.all());
        let old = std::mem::replace(&mut self.activity[ci as usize], new);
        self.txns.set(ci, cols);
        if new.lines > 0 && self.last_ts.is_none_or(|last| new.last_ts > last) {
            self.last_ts = Some(new.last_ts);
        } else if old.lines > 0
            && Some(old.last_ts) == self.last_ts
            && (new.lines == 0 || new.last_ts < old.last_ts)
        {
            // This customer held the last transaction of all: look again.
            self.last_ts = last_ts(&self.activity);
        }
    }

    /// Recomputes what is derived from the lines (after reading a checkpoint).
    pub(crate) fn derive(&mut self) {
        let n = self.customers.len() as u32;
        self.activity = (0..n)
            .into_par_iter()
            .map(|ci| activity(self.txns.of(ci)))
            .collect();
        self.last_ts = last_ts(&self.activity);
    }

    /// The day after the last transaction's day.
    /// Each customer's activity over all their lines, by row.
    pub fn activity(&self) -> &[Activity] {
        &self.activity
    }

    pub fn default_as_of(&self) -> Option<Date> {
        self.last_ts.map(|ts| Date::from_days(day(ts) + 1))
    }

    /// Replaces customer `ci`'s interactions (given in time order).
    pub fn set_interactions(&mut self, ci: u32, lines: &[Interaction]) {
        let cols = self.interaction_columns(lines);
        self.interactions.set(ci, cols);
    }

    /// Moves every change into the main columns and drops replaced strings.
    pub fn compact(&mut self) {
        let n = self.customers.len();
        self.txns.compact(n);
        self.interactions.compact(n);
        let c = &mut self.customers;
        c.merge_recent();
        c.ids.compacted();
        c.names.compacted();
        c.attributes.compacted();
    }

    /// Number of transaction lines.
    pub fn n_transactions(&self) -> usize {
        self.txns.len(self.customers.len())
    }

    pub fn n_interactions(&self) -> usize {
        self.interactions.len(self.customers.len())
    }

    /// Bytes of memory the columns take (approximately).
    pub fn memory_bytes(&self) -> usize {
        let strings = Strings::memory_bytes;
        let c = &self.customers;
        let mut total = strings(&c.ids) + strings(&c.names) + strings(&c.attributes);
        total += c.gender.capacity() + c.channel.capacity();
        total += 4
            * (c.birth.capacity() + c.region.capacity() + c.city.capacity() + c.joined.capacity());
        total +=
            4 * (c.tier.capacity() + c.by_id.capacity() + c.rank.get().map_or(0, Vec::capacity));
        total += 8 * (c.revision.capacity() + c.by_hash.get().map_or(0, |t| t.capacity() / 2));
        total += strings(&self.dicts.txn_ids.other) + strings(&self.dicts.interaction_ids.other);
        total += c.recent.len() * 48;
        for column in self.txns.main.columns() {
            total += column.bytes();
        }
        for column in self.interactions.main.columns() {
            total += column.bytes();
        }
        total += self.txns.start.capacity() * 8 + self.interactions.start.capacity() * 8;
        total += self.activity.capacity() * size_of::<Activity>();
        total
    }
}

/// Builds a snapshot from records read in the store's scan order: customers
/// in id order, then products and campaigns, then each kind of line grouped
/// by customer in id order and in time order within a customer.
#[derive(Default)]
pub struct Builder {
    snapshot: Snapshot,
}

impl Builder {
    pub fn new() -> Builder {
        Builder::default()
    }

    pub fn customer(&mut self, customer: &Customer) {
        self.customer_revised(customer, 0);
    }

    /// As `customer`, with the customer's revision in the store.
    pub fn customer_revised(&mut self, customer: &Customer, revision: u64) {
        let c = &mut self.snapshot.customers;
        let d = &mut self.snapshot.dicts;
        let ci = c.len() as u32;
        c.ids.push(customer.customer_id.as_str());
        c.names.push(&customer.name);
        c.attributes.push(customer.attributes.as_str());
        c.gender.push(customer.gender.index());
        c.birth.push(customer.birth_date.map_or(NO_DAY, Date::days));
        c.region.push(d.region.code(&customer.region));
        c.city.push(d.city.code(&customer.city));
        c.channel.push(customer.channel.index());
        c.joined.push(customer.joined_at.days());
        c.tier.push(d.tier.code(&customer.tier));
        c.revision.push(revision);
        c.by_id.push(ci);
        c.by_hash = std::sync::OnceLock::new();
    }

    pub fn product(&mut self, product: &Product) {
        self.snapshot.upsert_product(product);
    }

    pub fn campaign(&mut self, campaign: &Campaign) {
        self.snapshot.upsert_campaign(campaign);
    }

    /// Customers, products and campaigns are in: lines can follow.
    pub fn lines(self) -> LineBuilders {
        self.lines_with_capacity(0, 0)
    }

    /// As `lines`, with room for this many lines of each kind, so the
    /// columns are allocated once at their final size.
    pub fn lines_with_capacity(self, txns: usize, interactions: usize) -> LineBuilders {
        let snapshot = self.snapshot;
        let n = snapshot.customers.len();
        let mut builders = LineBuilders {
            txns: LineBuilder::new(n),
            interactions: LineBuilder::new(n),
            snapshot,
        };
        for column in builders.txns.cols.columns_mut() {
            column.reserve(txns);
        }
        for column in builders.interactions.cols.columns_mut() {
            column.reserve(interactions);
        }
        builders
    }
}

/// The snapshot's customers, products and campaigns, and one builder per
/// kind of line: the two can be filled on two threads.
pub struct LineBuilders {
    pub snapshot: Snapshot,
    pub txns: LineBuilder<TxnCols>,
    pub interactions: LineBuilder<InteractionCols>,
}

/// Lines arriving grouped by customer in id order.
pub struct LineBuilder<C> {
    cols: C,
    start: Vec<u64>,
    current: Option<u32>,
    customer_id: String,
    pub(crate) region: Dict,
    rep: Dict,
    ids: LineIds,
}

impl<C: Default> LineBuilder<C> {
    fn new(n_customers: usize) -> LineBuilder<C> {
        let mut start = Vec::with_capacity(n_customers + 1);
        start.push(0);
        LineBuilder {
            cols: C::default(),
            start,
            current: None,
            customer_id: String::new(),
            region: Dict::default(),
            rep: Dict::default(),
            ids: LineIds::default(),
        }
    }
}

macro_rules! line_builder_common {
    ($cols:ident) => {
        impl LineBuilder<$cols> {
            /// The row of the customer `id`, closing the runs of those before it.
            fn enter(&mut self, customers: &Customers, id: &str) -> Option<u32> {
                if self.current.is_some() && self.customer_id == id {
                    return self.current;
                }
                let ci = customers.find(id)?;
                // Customers without lines in between get empty runs.
                while self.start.len() <= ci as usize {
                    self.start.push(self.cols.len() as u64);
                }
                self.current = Some(ci);
                self.customer_id.clear();
                self.customer_id.push_str(id);
                Some(ci)
            }

            fn finish(mut self, n_customers: usize) -> (Lines<$cols>, Dict, Dict, LineIds) {
                while self.start.len() <= n_customers {
                    self.start.push(self.cols.len() as u64);
                }
                for column in self.cols.columns_mut() {
                    column.shrink();
                }
                let lines = Lines {
                    main: self.cols,
                    start: self.start,
                    overlay: HashMap::new(),
                    overlaid: Vec::new(),
                };
                (lines, self.region, self.rep, self.ids)
            }
        }
    };
}

line_builder_common!(TxnCols);
line_builder_common!(InteractionCols);

impl LineBuilder<TxnCols> {
    /// Adds a line; lines of customers the snapshot does not know are skipped.
    pub fn add(&mut self, customers: &Customers, products: &Products, t: &Transaction) {
        if self.enter(customers, t.customer_id.as_str()).is_none() {
            return;
        }
        let c = &mut self.cols;
        c.ts.push(t.ts.seconds());
        c.product
            .push(products.find(t.sku.as_str()).unwrap_or(NONE));
        c.quantity.push(t.quantity);
        c.amount.push(t.amount.cents());
        c.cost.push(t.cost.cents());
        c.channel.push(t.channel.index());
        c.region.push(self.region.code(&t.region));
        c.id.push(self.ids.code(t.txn_id.as_str()));
    }
}

impl LineBuilder<InteractionCols> {
    pub fn add(
        &mut self,
        customers: &Customers,
        products: &Products,
        campaigns: &[CampaignRow],
        i: &Interaction,
    ) {
        if self.enter(customers, i.customer_id.as_str()).is_none() {
            return;
        }
        let campaign = i
            .campaign_id
            .as_ref()
            .and_then(|c| {
                campaigns
                    .binary_search_by(|r| r.id.as_str().cmp(c.as_str()))
                    .ok()
            })
            .map_or(NONE, |i| i as u32);
        let rep = i.rep.as_deref().map_or(NONE, |r| self.rep.code(r));
        let c = &mut self.cols;
        c.ts.push(i.ts.seconds());
        c.kind.push(i.kind.index());
        c.department.push(i.department.index());
        c.product.push(
            i.sku
                .as_ref()
                .and_then(|s| products.find(s.as_str()))
                .unwrap_or(NONE),
        );
        c.rep.push(rep);
        c.region.push(self.region.code(&i.region));
        c.topic.push(i.topic.map_or(u8::MAX, |t| t.index()));
        c.resolved
            .push(i.resolved_ts.map_or(NO_TS, |t| t.seconds()));
        c.rating.push(i.rating.unwrap_or(0));
        c.campaign.push(campaign);
        c.id.push(self.ids.code(i.interaction_id.as_str()));
    }
}

impl LineBuilders {
    /// The finished snapshot.
    pub fn finish(self) -> Snapshot {
        let mut snapshot = self.snapshot;
        let n = snapshot.customers.len();
        let (txns, sale_region, _, txn_ids) = self.txns.finish(n);
        let (interactions, contact_region, rep, interaction_ids) = self.interactions.finish(n);
        snapshot.txns = txns;
        snapshot.interactions = interactions;
        snapshot.dicts.sale_region = sale_region;
        snapshot.dicts.contact_region = contact_region;
        snapshot.dicts.rep = rep;
        snapshot.dicts.txn_ids = txn_ids;
        snapshot.dicts.interaction_ids = interaction_ids;
        snapshot.derive();
        snapshot
    }
}

/// The last transaction time over all customers' activity.
fn last_ts(activity: &[Activity]) -> Option<i64> {
    activity
        .par_iter()
        .filter(|a| a.lines > 0)
        .map(|a| a.last_ts)
        .max()
}

const DAY: i64 = 86_400;

/// The day of a timestamp.
pub(crate) fn day(ts: i64) -> i32 {
    ts.div_euclid(DAY) as i32
}

/// A customer's activity as a buyer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Activity {
    pub lines: u32,
    pub baskets: u32,
    pub first_day: i32,
    pub last_day: i32,
    /// Timestamps of the first and last line.
    pub first_ts: i64,
    pub last_ts: i64,
    /// Sum of amounts and costs, in cents.
    pub revenue: i64,
    pub cost: i64,
    pub quantity: u64,
}

/// A customer's activity from their lines (in time order).
pub(crate) fn activity(lines: TxnSlice<'_>) -> Activity {
    let mut a = Activity {
        first_day: NO_DAY,
        last_day: NO_DAY,
        ..Activity::default()
    };
    let mut previous = NO_DAY;
    for i in 0..lines.len() {
        let d = day(lines.ts[i]);
        if d != previous {
            a.baskets += 1;
            previous = d;
        }
        a.revenue += lines.amount[i];
        a.cost += lines.cost[i];
        a.quantity += lines.quantity[i] as u64;
    }
    a.lines = lines.len() as u32;
    if let (Some(&first), Some(&last)) = (lines.ts.first(), lines.ts.last()) {
        a.first_day = day(first);
        a.last_day = day(last);
        a.first_ts = first;
        a.last_ts = last;
    }
    a
}

/// A column of plain values: what it takes in memory, and its values as
/// raw bytes (the checkpoint writes and reads them as they are).
pub(crate) trait Column {
    fn bytes(&self) -> usize;
    fn reserve(&mut self, additional: usize);
    fn shrink(&mut self);
    /// The size of one value, in bytes.
    fn value_size(&self) -> usize;
    /// The number of values, and their bytes.
    fn raw(&self) -> (usize, &[u8]);
    /// Replaces the values with `n` zeroed ones; their bytes, to fill.
    fn zeroed(&mut self, n: usize) -> &mut [u8];
}

impl<T: bytemuck::Pod> Column for Vec<T> {
    fn bytes(&self) -> usize {
        self.capacity() * size_of::<T>()
    }

    fn reserve(&mut self, additional: usize) {
        self.reserve_exact(additional);
    }

    fn shrink(&mut self) {
        self.shrink_to_fit();
    }

    fn value_size(&self) -> usize {
        size_of::<T>()
    }

    fn raw(&self) -> (usize, &[u8]) {
        (self.len(), bytemuck::cast_slice(self))
    }

    fn zeroed(&mut self, n: usize) -> &mut [u8] {
        *self = vec![T::zeroed(); n];
        bytemuck::cast_slice_mut(self)
    }
}
