//! The embedded store on sled: one directory, one process at a time.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use model::{
    Campaign, Customer, CustomerId, EntityKind, Interaction, Product, Record, Transaction,
};

use crate::audit::{Actor, AuditEntry, AuditLog, AuditQuery};
use crate::codec::sled_error;
use crate::definitions::Definitions;
use crate::lines::LineTree;
use crate::records::RecordTree;
use crate::{Changes, Expect, Expected, Options, Revision, Store, StoreError, UpsertCounts};

/// The on-disk format this build writes and reads. Version history:
/// 1: first format (record trees, line blocks, blocked id index).
pub const FORMAT_VERSION: u32 = 1;

const FORMAT_KEY: &[u8] = b"format_version";
const IDENTITY_KEY: &[u8] = b"identity";

pub struct SledStore {
    path: PathBuf,
    db: sled::Db,
    identity: u64,
    customers: RecordTree<Customer>,
    products: RecordTree<Product>,
    campaigns: RecordTree<Campaign>,
    transactions: LineTree<Transaction>,
    interactions: LineTree<Interaction>,
    definitions: Definitions,
    audit: AuditLog,
    queues: crate::queues::Queues,
    /// Held for reading by writes of lines, for writing by deletes of
    /// customers: a customer is never deleted while lines naming it are written.
    deletes: std::sync::RwLock<()>,
}

impl SledStore {
    pub fn open(path: &Path, options: &Options) -> Result<SledStore, StoreError> {
        let path = path.to_path_buf();
        refuse_foreign_directory(&path)?;
        let config = sled::Config::new()
            .path(&path)
            .cache_capacity(options.cache_bytes)
            .mode(sled::Mode::HighThroughput);
        let db = open_waiting(&config, &path)?;
        let meta = db.open_tree("meta").map_err(sled_error)?;
        match meta.get(FORMAT_KEY).map_err(sled_error)? {
            Some(bytes) => {
                let found = bytes[..]
                    .try_into()
                    .map(u32::from_be_bytes)
                    .map_err(|_| StoreError::Corrupt("malformed format version".into()))?;
                if found > FORMAT_VERSION {
                    return Err(StoreError::NewerFormat {
                        path,
                        found,
                        supported: FORMAT_VERSION,
                    });
                }
            }
            None => {
                if db.tree_names().len() > 2 {
                    return Err(StoreError::NotAStore { path });
                }
                meta.insert(FORMAT_KEY, &FORMAT_VERSION.to_be_bytes())
                    .map_err(sled_error)?;
                db.flush().map_err(sled_error)?;
            }
        }
        let identity = match meta.get(IDENTITY_KEY).map_err(sled_error)? {
            Some(bytes) => bytes[..]
                .try_into()
                .map(u64::from_be_bytes)
                .map_err(|_| StoreError::Corrupt("malformed store identity".into()))?,
            None => {
                let identity = new_identity(&path);
                meta.insert(IDENTITY_KEY, &identity.to_be_bytes())
                    .map_err(sled_error)?;
                db.flush().map_err(sled_error)?;
                identity
            }
        };
        let tree = |name: &str| db.open_tree(name).map_err(sled_error);
        Ok(SledStore {
            identity,
            customers: RecordTree::new(tree("customers")?),
            products: RecordTree::new(tree("products")?),
            campaigns: RecordTree::new(tree("campaigns")?),
            transactions: LineTree::new(tree("transactions")?),
            interactions: LineTree::new(tree("interactions")?),
            definitions: Definitions::new(tree("definitions")?),
            audit: AuditLog::new(db.clone(), tree("audit")?),
            queues: crate::queues::Queues::new(db.clone(), tree("queues")?),
            deletes: std::sync::RwLock::new(()),
            path,
            db,
        })
    }

    fn tree(&self, kind: EntityKind) -> &sled::Tree {
        match kind {
            EntityKind::Customer => self.customers.tree(),
            EntityKind::Product => self.products.tree(),
            EntityKind::Campaign => self.campaigns.tree(),
            EntityKind::Transaction => self.transactions.tree(),
            EntityKind::Interaction => self.interactions.tree(),
        }
    }

    /// Checks that every customer, sku and campaign the lines name exists.
    fn check_references<'a>(
        &self,
        kind: EntityKind,
        refs: impl Iterator<Item = (&'a str, &'static str, EntityKind, &'a str)>,
    ) -> Result<(), StoreError> {
        let mut known: HashSet<(EntityKind, &str)> = HashSet::new();
        for (id, field, target, value) in refs {
            if known.contains(&(target, value)) {
                continue;
            }
            if !self.contains(target, value)? {
                return Err(StoreError::MissingReference {
                    kind,
                    id: id.to_owned(),
                    field,
                    value: value.to_owned(),
                });
            }
            known.insert((target, value));
        }
        Ok(())
    }
}

/// A number that tells this store from any other: from the time, the
/// process and the path, through the standard library's random hasher keys.
fn new_identity(path: &Path) -> u64 {
    use std::hash::{BuildHasher, Hash, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    std::time::SystemTime::now().hash(&mut hasher);
    std::process::id().hash(&mut hasher);
    path.hash(&mut hasher);
    hasher.finish()
}

/// sled creates its files in any directory it is given: refuse one that
/// holds something else.
fn refuse_foreign_directory(path: &Path) -> Result<(), StoreError> {
    let Ok(entries) = std::fs::read_dir(path) else {
        if path.exists() {
            return Err(StoreError::NotAStore {
                path: path.to_path_buf(),
            });
        }
        return Ok(());
    };
    let mut names = HashSet::new();
    for entry in entries {
        let entry =
            entry.map_err(|e| StoreError::Io(format!("reading {}: {e}", path.display())))?;
        names.insert(entry.file_name().to_string_lossy().into_owned());
    }
    let is_store = names.contains("conf") && names.contains("db");
    if !names.is_empty() && !is_store {
        return Err(StoreError::NotAStore {
            path: path.to_path_buf(),
        });
    }
    Ok(())
}

/// How long opening waits for a store that another handle is letting go
/// of before reporting it in use.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Opens the sled database of `config` (at `path`), waiting up to
/// `LOCK_WAIT` for its file lock: sled lets go of the lock from its own
/// threads after the last handle is dropped, so a process that has just
/// closed the store (the import before its snapshot child) may hold it a
/// moment longer.
pub(crate) fn open_waiting(config: &sled::Config, path: &Path) -> Result<sled::Db, StoreError> {
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    loop {
        match config.open().map_err(|e| open_error(path, e)) {
            Err(StoreError::Locked { .. }) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            result => return result,
        }
    }
}

fn open_error(path: &Path, e: sled::Error) -> StoreError {
    let text = e.to_string();
    if text.contains("could not acquire lock") || text.contains("WouldBlock") {
        StoreError::Locked {
            path: path.to_path_buf(),
        }
    } else {
        StoreError::Io(format!("opening the store at {}: {text}", path.display()))
    }
}

impl Store for SledStore {
    fn location(&self) -> String {
        format!("store at {}", self.path.display())
    }

    fn identity(&self) -> u64 {
        self.identity
    }

    fn get(&self, kind: EntityKind, id: &str) -> Result<Option<Record>, StoreError> {
        Ok(match kind {
            EntityKind::Customer => self.customers.get(id)?.map(Record::Customer),
            EntityKind::Product => self.products.get(id)?.map(Record::Product),
            EntityKind::Campaign => self.campaigns.get(id)?.map(Record::Campaign),
            EntityKind::Transaction => self.transactions.get(id)?.map(Record::Transaction),
            EntityKind::Interaction => self.interactions.get(id)?.map(Record::Interaction),
        })
    }

    fn contains(&self, kind: EntityKind, id: &str) -> Result<bool, StoreError> {
        match kind {
            EntityKind::Customer => self.customers.contains(id),
            EntityKind::Product => self.products.contains(id),
            EntityKind::Campaign => self.campaigns.contains(id),
            EntityKind::Transaction => self.transactions.contains(id),
            EntityKind::Interaction => self.interactions.contains(id),
        }
    }

    fn line_customer(&self, kind: EntityKind, id: &str) -> Result<Option<String>, StoreError> {
        match kind {
            EntityKind::Transaction => self.transactions.customer_of(id),
            EntityKind::Interaction => self.interactions.customer_of(id),
            _ => Ok(None),
        }
    }

    fn upsert(&self, records: Vec<Record>) -> Result<UpsertCounts, StoreError> {
        let mut customers = Vec::new();
        let mut products = Vec::new();
        let mut campaigns = Vec::new();
        let mut transactions = Vec::new();
        let mut interactions = Vec::new();
        for record in records {
            match record {
                Record::Customer(r) => customers.push(r),
                Record::Product(r) => products.push(r),
                Record::Campaign(r) => campaigns.push(r),
                Record::Transaction(r) => transactions.push(r),
                Record::Interaction(r) => interactions.push(r),
            }
        }
        let mut counts = UpsertCounts::default();
        if !customers.is_empty() {
            counts += self.customers.upsert(&customers)?;
        }
        if !products.is_empty() {
            counts += self.products.upsert(&products)?;
        }
        if !campaigns.is_empty() {
            counts += self.campaigns.upsert(&campaigns)?;
        }
        let _deletes = self.deletes.read().expect("delete lock");
        if !transactions.is_empty() {
            self.check_references(
                EntityKind::Transaction,
                transactions.iter().flat_map(|t| {
                    let id = t.txn_id.as_str();
                    [
                        (
                            id,
                            "customer_id",
                            EntityKind::Customer,
                            t.customer_id.as_str(),
                        ),
                        (id, "sku", EntityKind::Product, t.sku.as_str()),
                    ]
                }),
            )?;
            counts += self.transactions.upsert(transactions)?;
        }
        if !interactions.is_empty() {
            self.check_references(
                EntityKind::Interaction,
                interactions.iter().flat_map(|i| {
                    let id = i.interaction_id.as_str();
                    let customer = (
                        id,
                        "customer_id",
                        EntityKind::Customer,
                        i.customer_id.as_str(),
                    );
                    let sku = i
                        .sku
                        .as_ref()
                        .map(|s| (id, "sku", EntityKind::Product, s.as_str()));
                    let campaign = i
                        .campaign_id
                        .as_ref()
                        .map(|c| (id, "campaign_id", EntityKind::Campaign, c.as_str()));
                    std::iter::once(customer).chain(sku).chain(campaign)
                }),
            )?;
            counts += self.interactions.upsert(interactions)?;
        }
        Ok(counts)
    }

    fn scan<'a>(
        &'a self,
        kind: EntityKind,
    ) -> Box<dyn Iterator<Item = Result<Record, StoreError>> + 'a> {
        match kind {
            EntityKind::Customer => {
                Box::new(self.customers.scan().map(|r| r.map(Record::Customer)))
            }
            EntityKind::Product => Box::new(self.products.scan().map(|r| r.map(Record::Product))),
            EntityKind::Campaign => {
                Box::new(self.campaigns.scan().map(|r| r.map(Record::Campaign)))
            }
            EntityKind::Transaction => {
                Box::new(self.transactions.scan().map(|r| r.map(Record::Transaction)))
            }
            EntityKind::Interaction => {
                Box::new(self.interactions.scan().map(|r| r.map(Record::Interaction)))
            }
        }
    }

    fn scan_revised<'a>(
        &'a self,
        kind: EntityKind,
    ) -> Box<dyn Iterator<Item = Result<(u64, Record), StoreError>> + 'a> {
        fn revised<T>(
            scan: impl Iterator<Item = Result<(u64, T), StoreError>>,
            wrap: fn(T) -> Record,
        ) -> impl Iterator<Item = Result<(u64, Record), StoreError>> {
            scan.map(move |r| r.map(|(revision, record)| (revision, wrap(record))))
        }
        match kind {
            EntityKind::Customer => {
                Box::new(revised(self.customers.scan_revised(), Record::Customer))
            }
            EntityKind::Product => Box::new(revised(self.products.scan_revised(), Record::Product)),
            EntityKind::Campaign => {
                Box::new(revised(self.campaigns.scan_revised(), Record::Campaign))
            }
            EntityKind::Transaction | EntityKind::Interaction => Box::new(std::iter::empty()),
        }
    }

    fn transactions_of(&self, customer: &CustomerId) -> Result<Vec<Transaction>, StoreError> {
        self.transactions.of_customer(customer.as_str())
    }

    fn interactions_of(&self, customer: &CustomerId) -> Result<Vec<Interaction>, StoreError> {
        self.interactions.of_customer(customer.as_str())
    }

    fn count(&self, kind: EntityKind) -> Result<u64, StoreError> {
        match kind {
            EntityKind::Customer => self.customers.count(),
            EntityKind::Product => self.products.count(),
            EntityKind::Campaign => self.campaigns.count(),
            EntityKind::Transaction => self.transactions.count(),
            EntityKind::Interaction => self.interactions.count(),
        }
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.db.flush().map(|_| ()).map_err(sled_error)
    }

    fn change_position(&self, kind: EntityKind) -> Result<u64, StoreError> {
        crate::changes::position(self.tree(kind))
    }

    fn changes_since(&self, kind: EntityKind, after: u64) -> Result<Changes, StoreError> {
        crate::changes::since(self.tree(kind), after)
    }

    fn forget_changes(&self, kind: EntityKind, upto: u64) -> Result<(), StoreError> {
        crate::changes::forget(self.tree(kind), upto)
    }

    fn get_revised(&self, kind: EntityKind, id: &str) -> Result<Option<(u64, Record)>, StoreError> {
        Ok(match kind {
            EntityKind::Customer => self
                .customers
                .get_revised(id)?
                .map(|(r, c)| (r, Record::Customer(c))),
            EntityKind::Product => self
                .products
                .get_revised(id)?
                .map(|(r, p)| (r, Record::Product(p))),
            EntityKind::Campaign => self
                .campaigns
                .get_revised(id)?
                .map(|(r, c)| (r, Record::Campaign(c))),
            EntityKind::Transaction | EntityKind::Interaction => None,
        })
    }

    fn upsert_each_expecting(
        &self,
        writes: &[Expected],
    ) -> Result<Vec<Result<u64, StoreError>>, StoreError> {
        fn each<T: crate::records::Keyed>(
            tree: &RecordTree<T>,
            audit: &AuditLog,
            writes: &[Expected],
            results: &mut [Option<Result<u64, StoreError>>],
            pick: fn(&Record) -> Option<&T>,
        ) -> Result<(), StoreError> {
            let (at, mine): (Vec<usize>, Vec<(&T, Expect, &Actor)>) = writes
                .iter()
                .enumerate()
                .filter_map(|(i, w)| pick(&w.record).map(|r| (i, (r, w.expect, &w.actor))))
                .unzip();
            if mine.is_empty() {
                return Ok(());
            }
            for (i, result) in at
                .into_iter()
                .zip(tree.upsert_each_expecting(&mine, audit)?)
            {
                results[i] = Some(result);
            }
            Ok(())
        }
        let mut results: Vec<Option<Result<u64, StoreError>>> =
            writes.iter().map(|_| None).collect();
        let audit = &self.audit;
        each(&self.customers, audit, writes, &mut results, |r| match r {
            Record::Customer(c) => Some(c),
            _ => None,
        })?;
        each(&self.products, audit, writes, &mut results, |r| match r {
            Record::Product(p) => Some(p),
            _ => None,
        })?;
        each(&self.campaigns, audit, writes, &mut results, |r| match r {
            Record::Campaign(c) => Some(c),
            _ => None,
        })?;
        Ok(results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| {
                    Err(StoreError::Invalid(
                        "transactions and interactions have no revisions".into(),
                    ))
                })
            })
            .collect())
    }

    fn put_line(&self, record: Record, expect: Expect, actor: &Actor) -> Result<bool, StoreError> {
        let _deletes = self.deletes.read().expect("delete lock");
        match record {
            Record::Transaction(t) => {
                self.check_references(
                    EntityKind::Transaction,
                    [
                        (
                            t.txn_id.as_str(),
                            "customer_id",
                            EntityKind::Customer,
                            t.customer_id.as_str(),
                        ),
                        (
                            t.txn_id.as_str(),
                            "sku",
                            EntityKind::Product,
                            t.sku.as_str(),
                        ),
                    ]
                    .into_iter(),
                )?;
                self.transactions.put_one(t, expect, &self.audit, actor)
            }
            Record::Interaction(i) => {
                let id = i.interaction_id.as_str();
                let mut refs = vec![(
                    id,
                    "customer_id",
                    EntityKind::Customer,
                    i.customer_id.as_str(),
                )];
                if let Some(sku) = &i.sku {
                    refs.push((id, "sku", EntityKind::Product, sku.as_str()));
                }
                if let Some(c) = &i.campaign_id {
                    refs.push((id, "campaign_id", EntityKind::Campaign, c.as_str()));
                }
                self.check_references(EntityKind::Interaction, refs.into_iter())?;
                self.interactions.put_one(i, expect, &self.audit, actor)
            }
            _ => Err(StoreError::Invalid(
                "only transactions and interactions are lines".into(),
            )),
        }
    }

    fn delete(
        &self,
        kind: EntityKind,
        id: &str,
        expect: Expect,
        actor: &Actor,
    ) -> Result<Option<Record>, StoreError> {
        let audit = &self.audit;
        Ok(match kind {
            EntityKind::Customer => {
                let _deletes = self.deletes.write().expect("delete lock");
                if self.transactions.has_lines(id)? || self.interactions.has_lines(id)? {
                    return Err(StoreError::Conflict(format!(
                        "customer {id} has transactions or interactions; delete those first"
                    )));
                }
                self.customers
                    .delete(id, expect, audit, actor)?
                    .map(Record::Customer)
            }
            EntityKind::Product => self
                .products
                .delete(id, expect, audit, actor)?
                .map(Record::Product),
            EntityKind::Campaign => self
                .campaigns
                .delete(id, expect, audit, actor)?
                .map(Record::Campaign),
            EntityKind::Transaction => self
                .transactions
                .delete(id, audit, actor)?
                .map(Record::Transaction),
            EntityKind::Interaction => self
                .interactions
                .delete(id, audit, actor)?
                .map(Record::Interaction),
        })
    }

    fn page(
        &self,
        kind: EntityKind,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(u64, Record)>, StoreError> {
        fn wrap<T>(page: Vec<(u64, T)>, f: fn(T) -> Record) -> Vec<(u64, Record)> {
            page.into_iter().map(|(r, t)| (r, f(t))).collect()
        }
        Ok(match kind {
            EntityKind::Customer => wrap(self.customers.page(after, limit)?, Record::Customer),
            EntityKind::Product => wrap(self.products.page(after, limit)?, Record::Product),
            EntityKind::Campaign => wrap(self.campaigns.page(after, limit)?, Record::Campaign),
            EntityKind::Transaction | EntityKind::Interaction => {
                return Err(StoreError::Invalid(
                    "lines are paged by customer (lines_page)".into(),
                ));
            }
        })
    }

    fn lines_page(
        &self,
        kind: EntityKind,
        customer: Option<&str>,
        skip: usize,
        limit: usize,
    ) -> Result<Vec<Record>, StoreError> {
        Ok(match kind {
            EntityKind::Transaction => self
                .transactions
                .page(customer, skip, limit)?
                .into_iter()
                .map(Record::Transaction)
                .collect(),
            EntityKind::Interaction => self
                .interactions
                .page(customer, skip, limit)?
                .into_iter()
                .map(Record::Interaction)
                .collect(),
            _ => {
                return Err(StoreError::Invalid(
                    "customers, products and campaigns are paged by id (page)".into(),
                ));
            }
        })
    }

    fn audit(&self, entry: AuditEntry) -> Result<u64, StoreError> {
        self.audit.append(entry)
    }

    fn audit_log(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        self.audit.read(query)
    }

    fn queue_push(&self, queue: &str, body: &str) -> Result<u64, StoreError> {
        self.queues.push(queue, body)
    }

    fn queue_set(&self, queue: &str, seq: u64, body: &str) -> Result<(), StoreError> {
        self.queues.set(queue, seq, body)
    }

    fn queue_read(
        &self,
        queue: &str,
        after: Option<u64>,
        limit: usize,
        newest_first: bool,
    ) -> Result<Vec<(u64, String)>, StoreError> {
        self.queues.read(queue, after, limit, newest_first)
    }

    fn definition(&self, space: &str, name: &str) -> Result<Option<Revision>, StoreError> {
        self.definitions.get(space, name)
    }

    fn definitions(&self, space: &str) -> Result<Vec<Revision>, StoreError> {
        self.definitions.list(space)
    }

    fn definition_history(&self, space: &str, name: &str) -> Result<Vec<Revision>, StoreError> {
        self.definitions.history(space, name)
    }

    fn save_definition(
        &self,
        space: &str,
        name: &str,
        body: &str,
        expect: Expect,
    ) -> Result<Revision, StoreError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        self.definitions.save(space, name, body, expect, now)
    }

    fn delete_definition(
        &self,
        space: &str,
        name: &str,
        expect: Expect,
    ) -> Result<bool, StoreError> {
        self.definitions.delete(space, name, expect)
    }

    fn size_on_disk(&self) -> Result<u64, StoreError> {
        // sled's own files only (conf, db, snap.*, blobs/): other files in
        // the directory, such as the analysis checkpoint, are not the store.
        fn walk(dir: &Path) -> std::io::Result<u64> {
            let mut total = 0;
            for entry in std::fs::read_dir(dir)? {
                let entry = entry?;
                let meta = entry.metadata()?;
                total += if meta.is_dir() {
                    walk(&entry.path())?
                } else {
                    meta.len()
                };
            }
            Ok(total)
        }
        let measure = || -> std::io::Result<u64> {
            let mut total = 0;
            for entry in std::fs::read_dir(&self.path)? {
                let entry = entry?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if name == "blobs" {
                    total += walk(&entry.path())?;
                } else if name == "conf" || name == "db" || name.starts_with("snap.") {
                    total += entry.metadata()?.len();
                }
            }
            Ok(total)
        };
        measure().map_err(|e| StoreError::Io(format!("measuring {}: {e}", self.path.display())))
    }
}
