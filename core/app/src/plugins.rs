//! Plugins and the rest of the CRM: the registry of a store, and the
//! batches of customers plugins are called with, built from the analysis
//! snapshot (core fields, attributes, the per-customer metrics, and the
//! transaction lines the manifest asks for).

use std::borrow::Cow;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use analysis::snapshot::NONE;
use analysis::{Context, Scope, Snapshot};
use anyhow::{Context as _, Result};
use crm_sdk::wire;
use model::{AcquisitionChannel, Gender, Record, SalesChannel};
use plugin_host::{LoadedPlugin, Registry};
use rayon::prelude::*;
use serde_json::{Map, Value};

use crate::write::WriteError;

/// The plugin registry of the store in directory `db`.
pub fn registry(db: &Path) -> Result<Registry> {
    Registry::open(&db.join("plugins"))
        .with_context(|| format!("opening the plugins of {}", db.display()))
}

/// Makes the batches plugins are called with; their text borrows from the
/// snapshot.
pub struct Batches<'s> {
    snapshot: &'s Snapshot,
    ctx: Context<'s>,
    products: Vec<wire::Product<'s>>,
    /// R, F and M scores of every buyer worked out before, if given: else
    /// they are worked out (sorting all buyers) the first time one is read.
    rfm: Option<std::sync::Arc<Vec<analysis::Scores>>>,
}

impl<'s> Batches<'s> {
    pub fn new(snapshot: &'s Snapshot) -> Batches<'s> {
        Batches::with(snapshot, Scope::default(), None)
    }

    /// Batches for the customers `rows` alone, with R, F and M scores worked
    /// out before (a long-running server keeps them).
    pub fn for_rows(
        snapshot: &'s Snapshot,
        rows: &[u32],
        rfm: Option<std::sync::Arc<Vec<analysis::Scores>>>,
    ) -> Batches<'s> {
        let scope = Scope {
            as_of: None,
            customers: Some(rows.to_vec()),
        };
        Batches::with(snapshot, scope, rfm)
    }

    /// Batches of every customer, with R, F and M scores worked out before.
    pub fn with_rfm(
        snapshot: &'s Snapshot,
        rfm: Option<std::sync::Arc<Vec<analysis::Scores>>>,
    ) -> Batches<'s> {
        Batches::with(snapshot, Scope::default(), rfm)
    }

    fn with(
        snapshot: &'s Snapshot,
        scope: Scope,
        rfm: Option<std::sync::Arc<Vec<analysis::Scores>>>,
    ) -> Batches<'s> {
        let p = &snapshot.products;
        let products = (0..p.len())
            .map(|i| wire::Product {
                sku: Cow::Borrowed(&p.skus[i]),
                name: Cow::Borrowed(&p.names[i]),
                category: Cow::Borrowed(snapshot.dicts.category.get(p.category[i])),
                brand: Cow::Borrowed(snapshot.dicts.brand.get(p.brand[i])),
                unit_price: p.price[i],
                unit_cost: p.cost[i],
                attributes: Cow::Borrowed(&p.attributes[i]),
            })
            .collect();
        Batches {
            snapshot,
            ctx: Context::new(snapshot, &scope),
            products,
            rfm,
        }
    }

    /// The batch of customers `rows` as `plugin` reads them.
    pub fn batch(&self, plugin: &LoadedPlugin, rows: &[u32]) -> wire::Batch<'s> {
        let lines_days = plugin.manifest.inputs.lines_days as i32;
        let inputs = plugin.manifest.inputs.customer_bits();
        let as_of = self.ctx.as_of.map_or(0, |d| d.days());
        let mut customers: Vec<wire::Customer<'s>> = rows
            .iter()
            .map(|&ci| self.customer(ci, as_of - lines_days, lines_days > 0, inputs))
            .collect();
        // Only the products the lines refer to travel, renumbered in the
        // order they are first met (a customer or two refer to a handful).
        let mut products = Vec::new();
        if lines_days > 0 {
            let mut position = vec![u32::MAX; self.products.len()];
            for line in customers.iter_mut().flat_map(|c| c.lines.iter_mut()) {
                let Some(slot) = position.get_mut(line.product as usize) else {
                    continue;
                };
                if *slot == u32::MAX {
                    *slot = products.len() as u32;
                    products.push(self.products[line.product as usize].clone());
                }
                line.product = *slot;
            }
        }
        wire::Batch {
            as_of,
            products,
            customers,
        }
    }

    /// Customer `ci` with the parts `inputs` (the others empty).
    fn customer(&self, ci: u32, from_day: i32, with_lines: bool, inputs: u8) -> wire::Customer<'s> {
        let s = self.snapshot;
        let c = &s.customers;
        let i = ci as usize;
        let mut lines = Vec::new();
        if with_lines {
            let t = s.txns.of(ci);
            let start =
                t.ts.partition_point(|&ts| ts.div_euclid(86_400) < from_day as i64);
            lines.reserve(t.len() - start);
            for k in start..t.len() {
                lines.push(wire::Line {
                    day: t.ts[k].div_euclid(86_400) as i32,
                    product: if t.product[k] == NONE {
                        u32::MAX
                    } else {
                        t.product[k]
                    },
                    quantity: t.quantity[k],
                    amount: t.amount[k],
                    cost: t.cost[k],
                    channel: Cow::Borrowed(
                        SalesChannel::from_index(t.channel[k]).map_or("", |c| c.as_str()),
                    ),
                });
            }
        }
        let mut customer = wire::Customer {
            id: Cow::Borrowed(c.id(ci)),
            lines,
            ..wire::Customer::default()
        };
        if inputs & wire::inputs::PROFILE != 0 {
            let birth = c.birth[i];
            customer.name = Cow::Borrowed(c.names.get(i));
            customer.gender =
                Cow::Borrowed(Gender::from_index(c.gender[i]).map_or("U", Gender::as_str));
            customer.birth_date = (birth != analysis::snapshot::NO_DAY).then_some(birth);
            customer.region = Cow::Borrowed(s.dicts.region.get(c.region[i]));
            customer.city = Cow::Borrowed(s.dicts.city.get(c.city[i]));
            customer.channel = Cow::Borrowed(
                AcquisitionChannel::from_index(c.channel[i]).map_or("", |a| a.as_str()),
            );
            customer.joined_at = c.joined[i];
            customer.tier = Cow::Borrowed(s.dicts.tier.get(c.tier[i]));
        }
        if inputs & wire::inputs::ATTRIBUTES != 0 {
            customer.attributes = Cow::Borrowed(c.attributes.get(i));
        }
        if inputs & wire::inputs::METRICS != 0 {
            let m = match &self.rfm {
                None => analysis::customer_metrics(&self.ctx, ci),
                Some(rfm) => {
                    let mut m = analysis::customer_metrics_of(
                        &self.ctx,
                        ci,
                        analysis::Parts {
                            scores: false,
                            interactions: true,
                        },
                    );
                    if m.lines > 0
                        && let Some(s) = rfm.get(i)
                    {
                        (m.r, m.f, m.m) = (Some(s.r), Some(s.f), Some(s.m));
                    }
                    m
                }
            };
            customer.metrics = wire::Metrics {
                revenue: m.revenue.cents(),
                cost: m.cost.cents(),
                lines: m.lines,
                baskets: m.baskets,
                first_purchase: m.first_purchase.map(|d| d.days()),
                last_purchase: m.last_purchase.map(|d| d.days()),
                recency_days: m.recency_days,
                avg_interbasket_days: m.avg_interbasket_days,
                r: m.r.unwrap_or(0),
                f: m.f.unwrap_or(0),
                m: m.m.unwrap_or(0),
                churn_risk: m.churn_risk,
                avg_rating: m.avg_rating,
                open_opinions: m.open_opinions,
            };
        }
        customer
    }
}

/// Runs `call` over the customers `rows` in batches of the plugin's size,
/// on both cores; the per-customer results in the order of `rows`.
pub fn per_batch<T: Send>(
    views: &Batches<'_>,
    plugin: &LoadedPlugin,
    rows: &[u32],
    call: impl Fn(&wire::Batch) -> Result<Vec<T>, plugin_host::PluginError> + Sync,
) -> Result<Vec<T>, plugin_host::PluginError> {
    let size = plugin.manifest.limits.max_batch as usize;
    let chunks: Vec<Result<Vec<T>, plugin_host::PluginError>> = rows
        .par_chunks(size)
        .map(|chunk| call(&views.batch(plugin, chunk)))
        .collect();
    let mut res = Vec::with_capacity(rows.len());
    for chunk in chunks {
        res.extend(chunk?);
    }
    Ok(res)
}

/// The custom fields of the enabled plugins: the JSON Schema of each
/// plugin's namespace, checked on every import and write of a customer.
pub struct FieldRules {
    plugins: Vec<Arc<LoadedPlugin>>,
}

impl FieldRules {
    pub fn of(registry: &Registry) -> FieldRules {
        FieldRules {
            plugins: registry
                .enabled()
                .into_iter()
                .filter(|p| p.fields.is_some())
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.plugins.is_empty()
    }

    /// Each problem as `plugin: /field: message (schema path)`.
    pub fn check(&self, attributes: &Map<String, Value>) -> Vec<String> {
        let mut problems = Vec::new();
        for plugin in &self.plugins {
            if let Some(fields) = &plugin.fields {
                problems.extend(
                    fields
                        .check(attributes)
                        .into_iter()
                        .map(|p| format!("{}: {p}", plugin.id())),
                );
            }
        }
        problems
    }
}

/// The customer's fields that are not attributes.
const CORE_FIELDS: [&str; 9] = [
    "customer_id",
    "name",
    "gender",
    "birth_date",
    "region",
    "city",
    "channel",
    "joined_at",
    "tier",
];

fn field_path(field: &str) -> String {
    if CORE_FIELDS.contains(&field) || field.starts_with("attributes") {
        field.to_owned()
    } else {
        format!("attributes.{field}")
    }
}

impl FieldRules {
    /// The problems of the plugins' fields, each with its field.
    pub fn issues(&self, attributes: &Map<String, Value>) -> Vec<(String, String)> {
        let mut issues = Vec::new();
        for plugin in &self.plugins {
            if let Some(fields) = &plugin.fields {
                issues.extend(
                    fields
                        .issues(attributes)
                        .into_iter()
                        .map(|(f, m)| (field_path(&f), format!("{} ({})", m, plugin.id()))),
                );
            }
        }
        issues
    }
}

/// A customer being written, as the validate hook sees it: its fields and
/// attributes, without metrics or lines.
fn written(customer: &model::Customer) -> wire::Customer<'_> {
    wire::Customer {
        id: customer.customer_id.as_str().into(),
        name: customer.name.as_str().into(),
        gender: customer.gender.as_str().into(),
        birth_date: customer.birth_date.map(|d| d.days()),
        region: customer.region.as_str().into(),
        city: customer.city.as_str().into(),
        channel: customer.channel.as_str().into(),
        joined_at: customer.joined_at.days(),
        tier: customer.tier.as_str().into(),
        attributes: customer.attributes.as_str().into(),
        ..wire::Customer::default()
    }
}

/// Runs the validate hook of every enabled plugin that has one on the
/// customers being written that are still open (`Ok`), with one call of
/// each hook for them all, applies their patches to their own fields and
/// checks every plugin's fields on the result. A call that fails as a
/// whole (a trap, a timeout) is made again for each customer alone, so
/// that only the customers it fails on are refused. Each customer's
/// outcome, in order.
pub fn validate_writes(
    registry: &Registry,
    rules: &FieldRules,
    mut outcomes: Vec<Result<model::Customer, WriteError>>,
) -> Vec<Result<model::Customer, WriteError>> {
    for plugin in registry
        .enabled()
        .iter()
        .filter(|p| p.manifest.hooks.validate)
    {
        // The customers no plugin has refused yet.
        let open: Vec<&model::Customer> = outcomes.iter().filter_map(|o| o.as_ref().ok()).collect();
        if open.is_empty() {
            break;
        }
        let call = |customers: &[&model::Customer]| {
            // The customers as written: their profiles and attributes
            // (metrics are those of their records, not part of a write).
            let batch = wire::Batch {
                as_of: 0,
                products: Vec::new(),
                customers: customers.iter().map(|c| written(c)).collect(),
            };
            registry
                .counted(plugin, |p| p.validate(&batch))
                .map(|(verdicts, _)| verdicts)
                .map_err(|e| WriteError::Plugin(format!("plugin {}: {e:#}", plugin.id())))
        };
        let verdicts = match call(&open) {
            Ok(verdicts) => verdicts.into_iter().map(Ok).collect::<Vec<_>>(),
            Err(e) if open.len() == 1 => vec![Err(e)],
            Err(_) => open
                .iter()
                .map(|c| {
                    call(std::slice::from_ref(c))
                        .map(|mut v| v.pop().expect("one result per customer"))
                })
                .collect(),
        };
        // The verdicts are those of the open customers, in order.
        let mut verdicts = verdicts.into_iter();
        outcomes = outcomes
            .into_iter()
            .map(|outcome| {
                let customer = outcome?;
                let verdict = verdicts.next().expect("one verdict per open customer")?;
                let verdict = verdict
                    .map_err(|e| WriteError::Plugin(format!("plugin {}: {e}", plugin.id())))?;
                apply_verdict(plugin, customer, verdict)
            })
            .collect();
    }
    outcomes
        .into_iter()
        .map(|outcome| {
            let customer = outcome?;
            let issues = rules.issues(&customer.attributes.to_value());
            if issues.is_empty() {
                Ok(customer)
            } else {
                Err(WriteError::Refused { issues })
            }
        })
        .collect()
}

/// A customer with a plugin's verdict applied: refused with its issues, or
/// with its patches made.
fn apply_verdict(
    plugin: &LoadedPlugin,
    mut customer: model::Customer,
    verdict: wire::Verdict,
) -> Result<model::Customer, WriteError> {
    if !verdict.issues.is_empty() {
        return Err(WriteError::Refused {
            issues: verdict
                .issues
                .iter()
                .map(|i| {
                    (
                        field_path(&i.field),
                        format!("{} ({})", i.message, plugin.id()),
                    )
                })
                .collect(),
        });
    }
    if !verdict.patches.is_empty() {
        let bad = |e: String| WriteError::Plugin(format!("plugin {}: {e}", plugin.id()));
        let mut attributes = customer.attributes.to_value();
        for patch in verdict.patches {
            match patch.value {
                Some(json) => {
                    attributes.insert(
                        patch.field,
                        serde_json::from_str(&json).map_err(|e| bad(e.to_string()))?,
                    );
                }
                None => {
                    attributes.remove(&patch.field);
                }
            }
        }
        customer.attributes = model::Attributes::parse(&Value::Object(attributes).to_string())
            .map_err(|e| bad(e.to_string()))?;
    }
    Ok(customer)
}

/// What `crm plugin bench` measures of one plugin model.
pub struct BenchReport {
    pub customers: usize,
    pub calls: usize,
    /// Compiling the component with an empty cache.
    pub cold_load: Duration,
    /// Loading it again from the precompiled artifact.
    pub cached_load: Duration,
    /// One call with an empty batch: instantiation plus the call itself
    /// (median of 200).
    pub empty_call: Duration,
    /// Building the batches of every customer, on one core.
    pub batches: Duration,
    /// Building and encoding them.
    pub encoded: Duration,
    /// Scoring every customer, on one core: batches, encoding, the calls
    /// and decoding.
    pub one_core: Duration,
    /// Scoring every customer as `crm plugin score` does, on every core.
    pub all_cores: Duration,
    /// The model's bands and how many customers have each.
    pub bands: std::collections::BTreeMap<String, usize>,
}

/// Times `model` of `plugin` over every customer of `snapshot`.
pub fn bench(snapshot: &Snapshot, plugin: &LoadedPlugin, model: &str) -> Result<BenchReport> {
    let scratch = tempfile::tempdir().context("creating a scratch directory")?;
    let config: Value = serde_json::from_str(&plugin.config)?;
    let started = Instant::now();
    let cold = LoadedPlugin::load(&plugin.dir, &config, scratch.path())?;
    let cold_load = started.elapsed();
    drop(cold);
    let started = Instant::now();
    let plugin = LoadedPlugin::load(&plugin.dir, &config, scratch.path())?;
    let cached_load = started.elapsed();
    anyhow::ensure!(plugin.from_cache, "the second load did not use the cache");

    let empty = wire::Batch::default();
    let mut times: Vec<Duration> = (0..200)
        .map(|_| {
            let started = Instant::now();
            plugin.score(model, &empty).map(|_| started.elapsed())
        })
        .collect::<Result<_, _>>()?;
    times.sort();
    let empty_call = times[times.len() / 2];

    let views = Batches::new(snapshot);
    let rows: Vec<u32> = (0..snapshot.customers.len() as u32).collect();
    let size = plugin.manifest.limits.max_batch as usize;
    // A first pass brings the snapshot's columns into memory.
    for chunk in rows.chunks(size) {
        std::hint::black_box(views.batch(&plugin, chunk));
    }
    let started = Instant::now();
    for chunk in rows.chunks(size) {
        std::hint::black_box(views.batch(&plugin, chunk));
    }
    let batches = started.elapsed();
    let started = Instant::now();
    for chunk in rows.chunks(size) {
        std::hint::black_box(wire::encode(&views.batch(&plugin, chunk)));
    }
    let encoded = started.elapsed();

    let started = Instant::now();
    for chunk in rows.chunks(size) {
        std::hint::black_box(plugin.score(model, &views.batch(&plugin, chunk))?);
    }
    let one_core = started.elapsed();

    let started = Instant::now();
    let scores = per_batch(&views, &plugin, &rows, |batch| {
        plugin.score(model, batch).map(|(s, _)| s)
    })?;
    let all_cores = started.elapsed();
    let mut bands = std::collections::BTreeMap::new();
    for score in &scores {
        let band = score.as_ref().map_or("error", |s| s.band.as_str());
        *bands.entry(band.to_owned()).or_default() += 1;
    }
    Ok(BenchReport {
        customers: rows.len(),
        calls: rows.len().div_ceil(size),
        cold_load,
        cached_load,
        empty_call,
        batches,
        encoded,
        one_core,
        all_cores,
        bands,
    })
}

/// What `save_derived` did.
pub struct SaveReport {
    pub counts: store::UpsertCounts,
    /// Customers whose derivation failed (left as they were).
    pub failed: usize,
    /// Customers the write path refused (the plugins' checks), with why.
    pub refused: Vec<(String, WriteError)>,
}

/// Customers written by `save_derived` in one store call.
const DERIVED_PER_WRITE: usize = 1000;

/// Writes derived values into the customers' attributes through the write
/// path (the plugins' checks, an audit entry per customer naming
/// `plugin ID`): each of the plugin's derived fields `names` is set to its
/// value, or removed when the plugin gave none. Customers left as they
/// were are not written. The store is flushed at the end.
pub fn save_derived<'a>(
    store: &dyn store::Store,
    registry: &Registry,
    plugin: &str,
    names: &[String],
    derived: impl Iterator<Item = (&'a str, &'a Result<Vec<wire::Field>, String>)>,
) -> Result<SaveReport> {
    let mut report = SaveReport {
        counts: store::UpsertCounts::default(),
        failed: 0,
        refused: Vec::new(),
    };
    let actor = store::Actor::new(format!("plugin {plugin}"));
    let mut batch = Vec::new();
    let write = |batch: Vec<store::Expected>, report: &mut SaveReport| {
        let ids: Vec<String> = batch.iter().map(|w| w.record.id().to_owned()).collect();
        let outcomes = crate::write::check_and_write(
            store,
            registry,
            batch,
            crate::write::Source::Derived,
            &mut |_, _| {},
        );
        for (id, outcome) in ids.into_iter().zip(outcomes) {
            match outcome {
                Ok(_) => report.counts.updated += 1,
                Err(e) => report.refused.push((id, e)),
            }
        }
    };
    for (id, fields) in derived {
        let Ok(fields) = fields else {
            report.failed += 1;
            continue;
        };
        let Some((revision, Record::Customer(mut customer))) =
            store.get_revised(model::EntityKind::Customer, id)?
        else {
            continue;
        };
        let before = customer.attributes.to_value();
        let mut attributes = before.clone();
        for name in names {
            match fields.iter().find(|f| f.name == *name) {
                Some(f) => {
                    attributes.insert(name.clone(), serde_json::from_str(&f.value)?);
                }
                None => {
                    attributes.remove(name);
                }
            }
        }
        if attributes == before {
            report.counts.unchanged += 1;
            continue;
        }
        customer.attributes = model::Attributes::parse(&Value::Object(attributes).to_string())
            .map_err(|e| anyhow::anyhow!("customer {id}: {e}"))?;
        batch.push(store::Expected {
            record: Record::Customer(customer),
            expect: store::Expect::Revision(revision),
            actor: actor.clone(),
        });
        if batch.len() == DERIVED_PER_WRITE {
            write(std::mem::take(&mut batch), &mut report);
        }
    }
    if !batch.is_empty() {
        write(batch, &mut report);
    }
    store.flush()?;
    Ok(report)
}

/// A plugin analysis's table as the analysis host's.
pub fn table_of(table: crm_sdk::wire::Table) -> analysis::Table {
    let mut res =
        analysis::Table::with_columns(table.columns.iter().map(|c| c.name.clone()).collect());
    for row in table.rows {
        res.push(
            row.into_iter()
                .map(|cell| match cell {
                    crm_sdk::wire::Cell::Null => analysis::Value::Null,
                    crm_sdk::wire::Cell::Text(t) => analysis::Value::Text(t),
                    crm_sdk::wire::Cell::Integer(i) => analysis::Value::Int(i),
                    crm_sdk::wire::Cell::Number(n) => analysis::Value::Float(n),
                    crm_sdk::wire::Cell::Money(c) => analysis::Value::Money(c),
                    crm_sdk::wire::Cell::Boolean(b) => analysis::Value::Text(b.to_string()),
                })
                .collect(),
        );
    }
    res
}
