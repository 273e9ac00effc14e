//! The snapshot as a checkpoint file: column arrays written as raw bytes,
//! so that reading one back costs little more than reading the file.
//!
//! Layout: a header (magic, version, byte-order mark, the store's change
//! positions), then sections, each a length and its bytes: the large
//! columns as raw little-endian arrays, the small tables (products,
//! campaigns, dictionaries) in postcard; a CRC-32 of everything before it
//! ends the file. A file that does not check out is refused, never half used.

use std::collections::HashMap;
use std::io::{Read, Write};

use bytemuck::Pod;
use serde::{Deserialize, Serialize};

use crate::snapshot::{
    CampaignRow, Column, Customers, Dict, Dicts, InteractionCols, LineIds, Lines, Products,
    Snapshot, Strings, TxnCols,
};

const MAGIC: &[u8; 8] = b"CRMSNAP\0";
/// Version history: 1: first layout; 2: customers' revisions, line ids.
const VERSION: u32 = 2;
const BYTE_ORDER: u32 = 0x0102_0304;

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("reading or writing the checkpoint: {0}")]
    Io(#[from] std::io::Error),
    #[error("the checkpoint is not usable: {0}")]
    Invalid(String),
}

fn invalid(why: impl Into<String>) -> CheckpointError {
    CheckpointError::Invalid(why.into())
}

pub(crate) struct Out<'w> {
    writer: &'w mut dyn Write,
    crc: crc32fast::Hasher,
}

impl Out<'_> {
    fn raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.crc.update(bytes);
        self.writer.write_all(bytes)
    }

    fn array<T: Pod>(&mut self, values: &[T]) -> std::io::Result<()> {
        self.raw(&(values.len() as u64).to_le_bytes())?;
        self.raw(bytemuck::cast_slice(values))
    }

    /// A column as `array` writes it: its length, then its values' bytes.
    fn column(&mut self, column: &dyn Column) -> std::io::Result<()> {
        let (n, bytes) = column.raw();
        self.raw(&(n as u64).to_le_bytes())?;
        self.raw(bytes)
    }

    fn small<T: Serialize>(&mut self, value: &T) -> std::io::Result<()> {
        let bytes = postcard::to_allocvec(value).map_err(std::io::Error::other)?;
        self.array(&bytes)
    }
}

pub(crate) struct In<'r> {
    reader: &'r mut dyn Read,
    crc: crc32fast::Hasher,
    /// Bytes left in the file: no length read from it may ask for more.
    left: u64,
}

impl In<'_> {
    fn raw(&mut self, bytes: &mut [u8]) -> Result<(), CheckpointError> {
        if bytes.len() as u64 > self.left {
            return Err(invalid("it is truncated"));
        }
        self.reader.read_exact(bytes)?;
        self.left -= bytes.len() as u64;
        self.crc.update(bytes);
        Ok(())
    }

    fn u64(&mut self) -> Result<u64, CheckpointError> {
        let mut buf = [0u8; 8];
        self.raw(&mut buf)?;
        Ok(u64::from_le_bytes(buf))
    }

    fn array<T: Pod>(&mut self) -> Result<Vec<T>, CheckpointError> {
        let n = self.u64()?;
        let bytes = n
            .checked_mul(size_of::<T>() as u64)
            .ok_or_else(|| invalid("a length is too large"))?;
        if bytes > self.left {
            return Err(invalid("it is truncated"));
        }
        let mut values = vec![T::zeroed(); n as usize];
        self.raw(bytemuck::cast_slice_mut(&mut values))?;
        Ok(values)
    }

    /// Reads a column written by `Out::column` into `column`.
    fn column(&mut self, column: &mut dyn Column) -> Result<(), CheckpointError> {
        let n = self.u64()?;
        let bytes = n
            .checked_mul(column.value_size() as u64)
            .ok_or_else(|| invalid("a length is too large"))?;
        if bytes > self.left {
            return Err(invalid("it is truncated"));
        }
        self.raw(column.zeroed(n as usize))
    }

    fn small<T: for<'de> Deserialize<'de>>(&mut self) -> Result<T, CheckpointError> {
        let bytes: Vec<u8> = self.array()?;
        postcard::from_bytes(&bytes).map_err(|e| invalid(format!("a table does not decode: {e}")))
    }
}

#[derive(Serialize, Deserialize)]
struct SmallTables {
    skus: Vec<String>,
    names: Vec<String>,
    category: Vec<u32>,
    brand: Vec<u32>,
    price: Vec<i64>,
    cost: Vec<i64>,
    attributes: Vec<String>,
    campaigns: Vec<(String, String, u8, i32, i32, i64)>,
    dicts: Vec<Vec<String>>,
}

fn write_strings(out: &mut Out<'_>, strings: &Strings) -> std::io::Result<()> {
    if strings.is_compact() {
        let mut offsets = Vec::with_capacity(strings.len() + 1);
        offsets.push(0u64);
        offsets.extend(strings.spans.iter().map(|&(start, len)| start + len as u64));
        out.array(strings.text.as_bytes())?;
        return out.array(&offsets);
    }
    let mut offsets = Vec::with_capacity(strings.len() + 1);
    let mut bytes = Vec::with_capacity(strings.text.len());
    offsets.push(0u64);
    for i in 0..strings.len() {
        bytes.extend_from_slice(strings.get(i).as_bytes());
        offsets.push(bytes.len() as u64);
    }
    out.array(&bytes)?;
    out.array(&offsets)
}

fn read_strings(input: &mut In<'_>) -> Result<Strings, CheckpointError> {
    let bytes: Vec<u8> = input.array()?;
    let offsets: Vec<u64> = input.array()?;
    let malformed = || invalid("a string column is malformed");
    let text = String::from_utf8(bytes).map_err(|_| malformed())?;
    let mut spans = Vec::with_capacity(offsets.len().saturating_sub(1));
    for pair in offsets.windows(2) {
        let (start, end) = (pair[0], pair[1]);
        if start > end
            || end > text.len() as u64
            || !text.is_char_boundary(start as usize)
            || !text.is_char_boundary(end as usize)
        {
            return Err(malformed());
        }
        spans.push((start, (end - start) as u32));
    }
    Ok(Strings { text, spans })
}

fn dicts_of(d: &Dicts) -> Vec<Vec<String>> {
    [
        &d.region,
        &d.city,
        &d.tier,
        &d.category,
        &d.brand,
        &d.sale_region,
        &d.contact_region,
        &d.rep,
    ]
    .iter()
    .map(|d| d.values().to_vec())
    .chain([
        d.txn_ids.prefixes.values().to_vec(),
        d.interaction_ids.prefixes.values().to_vec(),
    ])
    .collect()
}

/// Writes a compacted snapshot (call `Snapshot::compact` first).
pub fn write(snapshot: &Snapshot, writer: &mut dyn Write) -> Result<(), CheckpointError> {
    let mut out = Out {
        writer,
        crc: crc32fast::Hasher::new(),
    };
    out.raw(MAGIC)?;
    out.raw(&VERSION.to_le_bytes())?;
    out.raw(&BYTE_ORDER.to_ne_bytes())?;
    out.array(&snapshot.positions)?;
    out.array(&[snapshot.store])?;

    let c = &snapshot.customers;
    let by_id = c.in_id_order();
    let rank = c.rank().to_vec();
    write_strings(&mut out, &c.ids)?;
    write_strings(&mut out, &c.names)?;
    write_strings(&mut out, &c.attributes)?;
    for column in [
        &c.gender as &dyn Column,
        &c.birth,
        &c.region,
        &c.city,
        &c.channel,
        &c.joined,
        &c.tier,
        &c.revision,
        &by_id,
        &rank,
    ] {
        out.column(column)?;
    }
    let p = &snapshot.products;
    out.small(&SmallTables {
        skus: p.skus.clone(),
        names: p.names.clone(),
        category: p.category.clone(),
        brand: p.brand.clone(),
        price: p.price.clone(),
        cost: p.cost.clone(),
        attributes: p.attributes.clone(),
        campaigns: snapshot
            .campaigns
            .iter()
            .map(|r| {
                (
                    r.id.clone(),
                    r.name.clone(),
                    r.channel.index(),
                    r.start,
                    r.end,
                    r.cost,
                )
            })
            .collect(),
        dicts: dicts_of(&snapshot.dicts),
    })?;
    if !snapshot.txns.overlay.is_empty() || !snapshot.interactions.overlay.is_empty() {
        return Err(invalid(
            "the snapshot must be compacted before it is written",
        ));
    }
    out.array(&snapshot.txns.start)?;
    for column in snapshot.txns.main.columns() {
        out.column(column)?;
    }
    out.array(&snapshot.interactions.start)?;
    for column in snapshot.interactions.main.columns() {
        out.column(column)?;
    }
    write_strings(&mut out, &snapshot.dicts.txn_ids.other)?;
    write_strings(&mut out, &snapshot.dicts.interaction_ids.other)?;
    let crc = out.crc.clone().finalize();
    out.writer.write_all(&crc.to_le_bytes())?;
    Ok(())
}

/// Reads a checkpoint of `len` bytes.
pub fn read(reader: &mut dyn Read, len: u64) -> Result<Snapshot, CheckpointError> {
    let mut input = In {
        reader,
        crc: crc32fast::Hasher::new(),
        left: len.saturating_sub(4),
    };
    let mut head = [0u8; 16];
    input.raw(&mut head)?;
    if &head[..8] != MAGIC {
        return Err(invalid("it is not a snapshot checkpoint"));
    }
    let version = u32::from_le_bytes(head[8..12].try_into().expect("4 bytes"));
    if version != VERSION {
        return Err(invalid(format!(
            "it has version {version}, this build reads version {VERSION}"
        )));
    }
    if u32::from_ne_bytes(head[12..16].try_into().expect("4 bytes")) != BYTE_ORDER {
        return Err(invalid("it was written on a machine of another byte order"));
    }
    let positions: Vec<u64> = input.array()?;
    let positions: [u64; 5] = positions
        .try_into()
        .map_err(|_| invalid("malformed change positions"))?;
    let store: Vec<u64> = input.array()?;
    let store = *store.first().ok_or_else(|| invalid("no store identity"))?;

    let mut customers = Customers {
        ids: read_strings(&mut input)?,
        names: read_strings(&mut input)?,
        attributes: read_strings(&mut input)?,
        ..Customers::default()
    };
    let mut rank: Vec<u32> = Vec::new();
    {
        let c = &mut customers;
        for column in [
            &mut c.gender as &mut dyn Column,
            &mut c.birth,
            &mut c.region,
            &mut c.city,
            &mut c.channel,
            &mut c.joined,
            &mut c.tier,
            &mut c.revision,
            &mut c.by_id,
            &mut rank,
        ] {
            input.column(column)?;
        }
    }
    let n_rank = rank.len();
    customers.rank = std::sync::OnceLock::from(rank);
    let tables: SmallTables = input.small()?;
    let mut txns = Lines::<TxnCols> {
        start: input.array()?,
        ..Lines::default()
    };
    for column in txns.main.columns_mut() {
        input.column(column)?;
    }
    let mut interactions = Lines::<InteractionCols> {
        start: input.array()?,
        ..Lines::default()
    };
    for column in interactions.main.columns_mut() {
        input.column(column)?;
    }
    let txn_ids_other = read_strings(&mut input)?;
    let interaction_ids_other = read_strings(&mut input)?;
    let computed = input.crc.clone().finalize();
    let mut crc = [0u8; 4];
    input.reader.read_exact(&mut crc)?;
    if u32::from_le_bytes(crc) != computed {
        return Err(invalid("its checksum does not match (the file is damaged)"));
    }

    let n = customers.gender.len();
    let consistent = [
        customers.ids.len(),
        customers.names.len(),
        customers.attributes.len(),
        customers.birth.len(),
        customers.region.len(),
        customers.city.len(),
        customers.channel.len(),
        customers.joined.len(),
        customers.tier.len(),
        customers.revision.len(),
        customers.by_id.len(),
        n_rank,
    ]
    .iter()
    .all(|&len| len == n)
        && txns.start.len() == n + 1
        && interactions.start.len() == n + 1
        && txns.start.last().copied() == Some(txns.main.len() as u64)
        && interactions.start.last().copied() == Some(interactions.main.len() as u64);
    if !consistent {
        return Err(invalid("its columns disagree in length"));
    }
    let mut dicts = tables.dicts.into_iter().map(Dict::from_values);
    let mut next = || dicts.next().unwrap_or_default();
    let dicts = Dicts {
        region: next(),
        city: next(),
        tier: next(),
        category: next(),
        brand: next(),
        sale_region: next(),
        contact_region: next(),
        rep: next(),
        txn_ids: LineIds {
            prefixes: next(),
            other: txn_ids_other,
        },
        interaction_ids: LineIds {
            prefixes: next(),
            other: interaction_ids_other,
        },
    };
    let index: HashMap<String, u32> = tables
        .skus
        .iter()
        .enumerate()
        .map(|(i, s)| (s.clone(), i as u32))
        .collect();
    let products = Products {
        skus: tables.skus,
        names: tables.names,
        category: tables.category,
        brand: tables.brand,
        price: tables.price,
        cost: tables.cost,
        attributes: tables.attributes,
        index,
    };
    let campaigns = tables
        .campaigns
        .into_iter()
        .map(|(id, name, channel, start, end, cost)| {
            let channel = model::CampaignChannel::from_index(channel)
                .ok_or_else(|| invalid("unknown campaign channel"))?;
            Ok(CampaignRow {
                id,
                name,
                channel,
                start,
                end,
                cost,
            })
        })
        .collect::<Result<Vec<_>, CheckpointError>>()?;
    let mut snapshot = Snapshot {
        customers,
        products,
        campaigns,
        txns,
        interactions,
        dicts,
        positions,
        store,
        activity: Vec::new(),
        last_ts: None,
    };
    snapshot.derive();
    Ok(snapshot)
}
