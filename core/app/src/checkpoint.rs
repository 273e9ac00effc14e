//! The analysis host: keeps the analysis snapshot current with the store
//! and saved as a checkpoint beside it.
//!
//! Opening reads the checkpoint and applies what changed in the store
//! since (the store's change log names the customers, products and
//! campaigns to read again). A missing or damaged checkpoint, or one that
//! is far behind (after a bulk import), is rebuilt by scanning the store,
//! transactions and interactions on two threads. Saving writes the
//! checkpoint to a temporary file, syncs it, renames it into place, and
//! only then trims the store's change log.

use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use analysis::Snapshot;
use analysis::snapshot::Builder;
use anyhow::{Context as _, Result};
use model::{EntityKind, Record};
use store::Store;

/// The checkpoint file inside a store directory.
pub const CHECKPOINT: &str = "crm-analysis.snapshot";

/// How the snapshot was made ready.
#[derive(Clone, Debug)]
pub enum Readiness {
    /// Read from the checkpoint, with this many changed ids applied.
    Loaded { changes: usize },
    /// Built by scanning the store, for this reason.
    Rebuilt { why: String },
}

pub struct Opened {
    pub snapshot: Snapshot,
    pub readiness: Readiness,
    pub took: Duration,
}

/// Changed ids beyond which a rebuild is cheaper than applying them.
fn rebuild_threshold(snapshot: &Snapshot) -> usize {
    (snapshot.customers.len() / 5).max(10_000)
}

pub fn checkpoint_path(store_dir: &Path) -> PathBuf {
    store_dir.join(CHECKPOINT)
}

/// The current snapshot of `store`, from the checkpoint at `path` when it
/// can be used; saved again when it had to be rebuilt or caught up far.
pub fn open(store: &dyn Store, path: &Path) -> Result<Opened> {
    open_with(store, path, false)
}

/// As `open`; with `rebuild`, the checkpoint is not read but built anew.
pub fn open_with(store: &dyn Store, path: &Path, rebuild: bool) -> Result<Opened> {
    let started = Instant::now();
    let loaded = if rebuild {
        Err("a rebuild was asked for".to_owned())
    } else {
        checkpoint_or_why(path)
    };
    let (snapshot, readiness) = match loaded {
        Ok(mut snapshot) => match catch_up(store, &mut snapshot)? {
            Some(changes) => (snapshot, Readiness::Loaded { changes }),
            None => (
                build(store)?,
                Readiness::Rebuilt {
                    why: "the checkpoint is of another store, or far behind this one".into(),
                },
            ),
        },
        Err(why) => (build(store)?, Readiness::Rebuilt { why }),
    };
    let mut opened = Opened {
        snapshot,
        readiness,
        took: Duration::ZERO,
    };
    let far = matches!(opened.readiness, Readiness::Loaded { changes } if changes > 1000);
    if matches!(opened.readiness, Readiness::Rebuilt { .. }) || far {
        save(store, &mut opened.snapshot, path)?;
    }
    opened.took = started.elapsed();
    Ok(opened)
}

fn checkpoint_or_why(path: &Path) -> Result<Snapshot, String> {
    match read_checkpoint(path) {
        Ok(Some(snapshot)) => Ok(snapshot),
        Ok(None) => Err("there was no checkpoint".to_owned()),
        Err(e) => Err(format!("{e:#}")),
    }
}

fn read_checkpoint(path: &Path) -> Result<Option<Snapshot>> {
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("opening {}", path.display())),
    };
    let len = file.metadata()?.len();
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let snapshot = analysis::persist::read(&mut reader, len)
        .with_context(|| format!("reading {}", path.display()))?;
    Ok(Some(snapshot))
}

/// Applies the store's changes since the snapshot; `None` when there are
/// so many that rebuilding is cheaper.
pub fn catch_up(store: &dyn Store, snapshot: &mut Snapshot) -> Result<Option<usize>> {
    // A checkpoint of another store, or one ahead of this store's log, is
    // not this store's: rebuild.
    if snapshot.store != store.identity() {
        return Ok(None);
    }
    for kind in EntityKind::ALL {
        if snapshot.position(kind) > store.change_position(kind)? {
            return Ok(None);
        }
    }
    let mut changes = Vec::new();
    let mut total = 0;
    for kind in EntityKind::ALL {
        let c = store.changes_since(kind, snapshot.position(kind))?;
        total += c.ids.len();
        if total > rebuild_threshold(snapshot) {
            return Ok(None);
        }
        changes.push((kind, c));
    }
    // Customers, products and campaigns before the lines that name them.
    for (kind, c) in changes {
        for id in &c.ids {
            if !apply(store, snapshot, kind, id)? {
                return Ok(None);
            }
        }
        snapshot.set_position(kind, c.position.max(snapshot.position(kind)));
    }
    Ok(Some(total))
}

/// Reads one changed record (or a customer's lines) again; false when it
/// was deleted, which the snapshot cannot follow (it is rebuilt).
fn apply(store: &dyn Store, snapshot: &mut Snapshot, kind: EntityKind, id: &str) -> Result<bool> {
    let record = match kind {
        EntityKind::Customer => store.get_revised(kind, id)?,
        _ => store.get(kind, id)?.map(|r| (0, r)),
    };
    match (kind, record.map(|(revision, r)| (r, revision))) {
        (EntityKind::Customer, Some((Record::Customer(c), revision))) => {
            snapshot.upsert_customer_revised(&c, revision);
        }
        (EntityKind::Product, Some((Record::Product(p), _))) => snapshot.upsert_product(&p),
        (EntityKind::Campaign, Some((Record::Campaign(c), _))) => snapshot.upsert_campaign(&c),
        (EntityKind::Customer | EntityKind::Product | EntityKind::Campaign, None) => {
            return Ok(false);
        }
        (EntityKind::Transaction, _) => {
            if let Some(ci) = snapshot.customers.find(id) {
                let customer = model::CustomerId::parse(id)?;
                let txns = store.transactions_of(&customer)?;
                snapshot.set_transactions(ci, &txns);
            }
        }
        (EntityKind::Interaction, _) => {
            if let Some(ci) = snapshot.customers.find(id) {
                let customer = model::CustomerId::parse(id)?;
                let lines = store.interactions_of(&customer)?;
                snapshot.set_interactions(ci, &lines);
            }
        }
        _ => {}
    }
    Ok(true)
}

/// Builds the snapshot by scanning the store.
pub fn build(store: &dyn Store) -> Result<Snapshot> {
    let mut positions = [0u64; 5];
    for (i, kind) in EntityKind::ALL.into_iter().enumerate() {
        positions[i] = store.change_position(kind)?;
    }
    let mut builder = Builder::new();
    for record in store.scan_revised(EntityKind::Customer) {
        if let (revision, Record::Customer(c)) = record? {
            builder.customer_revised(&c, revision);
        }
    }
    for record in store.scan(EntityKind::Product) {
        if let Record::Product(p) = record? {
            builder.product(&p);
        }
    }
    for record in store.scan(EntityKind::Campaign) {
        if let Record::Campaign(c) = record? {
            builder.campaign(&c);
        }
    }
    let n_txns = store.count(EntityKind::Transaction)? as usize;
    let n_interactions = store.count(EntityKind::Interaction)? as usize;
    let mut lines = builder.lines_with_capacity(n_txns, n_interactions);
    let (snapshot, txns, interactions) =
        (&lines.snapshot, &mut lines.txns, &mut lines.interactions);
    // Transactions and interactions are separate trees: one thread each.
    std::thread::scope(|scope| -> Result<()> {
        let txns_thread = scope.spawn(|| -> Result<()> {
            for record in store.scan(EntityKind::Transaction) {
                if let Record::Transaction(t) = record? {
                    txns.add(&snapshot.customers, &snapshot.products, &t);
                }
            }
            Ok(())
        });
        for record in store.scan(EntityKind::Interaction) {
            if let Record::Interaction(i) = record? {
                interactions.add(
                    &snapshot.customers,
                    &snapshot.products,
                    &snapshot.campaigns,
                    &i,
                );
            }
        }
        txns_thread
            .join()
            .expect("the scanning thread does not panic")
    })?;
    let mut snapshot = lines.finish();
    snapshot.positions = positions;
    snapshot.store = store.identity();
    Ok(snapshot)
}

/// Saves the snapshot as the checkpoint and trims the change log it covers.
pub fn save(store: &dyn Store, snapshot: &mut Snapshot, path: &Path) -> Result<()> {
    snapshot.compact();
    let tmp = path.with_extension("partial");
    let file =
        std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let mut writer = BufWriter::with_capacity(1 << 20, file);
    analysis::persist::write(snapshot, &mut writer)
        .with_context(|| format!("writing {}", tmp.display()))?;
    writer.flush()?;
    writer
        .into_inner()
        .map_err(|e| e.into_error())?
        .sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming {}", tmp.display()))?;
    for kind in EntityKind::ALL {
        store.forget_changes(kind, snapshot.position(kind))?;
    }
    Ok(())
}
