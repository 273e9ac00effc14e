//! Every customer's plugin scores, worked out ahead for the customer 360.
//!
//! A score is a call into a plugin, and a fresh instance for each: worked
//! out one customer at a time per request it costs more than the rest of
//! the 360. The server works out every customer's scores in batches in the
//! background (`Memberships`' thread, after the R, F and M ranks they
//! read) and keeps them with what they were worked out from.
//!
//! A plugin scores a customer from the customer's own record and lines,
//! their R, F and M ranks, the product list and the as-of day. So a 360
//! takes a customer's scores from here while the enabled plugins, the
//! as-of day and the customer's ranks are the ones the sheet was worked out
//! with, the customer (and their lines) was not written since, and no
//! change that may concern everyone (a product, a delete, a rebuild) came
//! since; otherwise it calls the plugins itself. Writes to some customers
//! leave the others' scores in use.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use analysis::snapshot::{Dict, Snapshot, Strings};
use plugin_host::{LoadedPlugin, Registry};

use crate::json::Json;

/// The scores of one model for every customer, as columns.
struct ModelScores {
    plugin: String,
    model: String,
    value: Vec<f64>,
    /// Code in `bands`; `NONE` where the model declined the customer.
    band: Vec<u32>,
    bands: Dict,
    /// Customer `row`'s reasons are `reason_start[row]..reason_start[row + 1]`.
    reason_start: Vec<u32>,
    reason_feature: Vec<u32>,
    features: Dict,
    reason_weight: Vec<f64>,
    reason_detail: Strings,
}

const NONE: u32 = u32::MAX;

/// Every customer's scores, and what they were worked out from.
pub(crate) struct Sheet {
    /// The snapshot's generation, to know when to work them out again.
    generation: u64,
    /// `Scores::epoch` then.
    epoch: u64,
    as_of: Option<model::Date>,
    rfm: Option<Arc<Vec<analysis::Scores>>>,
    plugins: Vec<Arc<LoadedPlugin>>,
    models: Vec<ModelScores>,
    /// Rows whose customer or lines were written since, one bit each; set
    /// under the snapshot's write lock, so a reader of the snapshot sees
    /// the bits of what it reads.
    written: Vec<AtomicU64>,
}

#[derive(Default)]
pub struct ScoreSheet {
    sheet: RwLock<Option<Arc<Sheet>>>,
    /// Grows with every change that may concern every customer's scores.
    epoch: AtomicU64,
}

fn same<T>(a: &[Arc<T>], b: &[Arc<T>]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| Arc::ptr_eq(x, y))
}

fn same_rfm(
    a: &Option<Arc<Vec<analysis::Scores>>>,
    b: &Option<Arc<Vec<analysis::Scores>>>,
) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
        (None, None) => true,
        _ => false,
    }
}

/// Whether customer `row` has the same R, F and M ranks in both.
fn same_ranks(
    a: &Option<Arc<Vec<analysis::Scores>>>,
    b: &Option<Arc<Vec<analysis::Scores>>>,
    row: u32,
) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => Arc::ptr_eq(a, b) || a.get(row as usize) == b.get(row as usize),
        (None, None) => true,
        _ => false,
    }
}

impl ScoreSheet {
    /// Customer `row` or their lines were written (under the snapshot's
    /// write lock).
    pub fn touched(&self, row: u32) {
        let sheet = self.sheet.read().expect("scores lock");
        // Rows the sheet does not have are not taken from it anyway.
        if let Some(word) = sheet
            .as_ref()
            .and_then(|s| s.written.get(row as usize / 64))
        {
            word.fetch_or(1 << (row % 64), Ordering::Relaxed);
        }
    }

    /// A change that may concern every customer's scores (under the
    /// snapshot's write lock).
    pub fn everyone_changed(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }

    /// Writes customer `row`'s scores as the JSON array of `ScoreView`s
    /// to `out`, if the sheet's are still theirs (see the module's note)
    /// with the as-of day `as_of`, the ranks `rfm` and the plugins
    /// `plugins`; returns whether it did. Called under the snapshot's read
    /// lock.
    pub fn write_json(
        &self,
        row: u32,
        as_of: Option<model::Date>,
        rfm: &Option<Arc<Vec<analysis::Scores>>>,
        plugins: &[Arc<LoadedPlugin>],
        json: &mut Json,
    ) -> bool {
        let sheet = self.sheet.read().expect("scores lock");
        let Some(sheet) = sheet.as_ref().filter(|sheet| {
            sheet.epoch == self.epoch.load(Ordering::Acquire)
                && sheet.as_of == as_of
                && same_ranks(&sheet.rfm, rfm, row)
                && same(&sheet.plugins, plugins)
        }) else {
            return false;
        };
        let i = row as usize;
        if sheet.models.iter().any(|m| i >= m.band.len())
            || sheet
                .written
                .get(i / 64)
                .is_none_or(|word| word.load(Ordering::Relaxed) & (1 << (row % 64)) != 0)
        {
            return false;
        }
        // `Vec<ScoreView>` as its derived `Serialize` writes it.
        json.raw("[");
        for (n, m) in sheet
            .models
            .iter()
            .filter(|m| m.band[i] != NONE)
            .enumerate()
        {
            if n > 0 {
                json.raw(",");
            }
            json.raw("{\"plugin\":");
            json.text(&m.plugin);
            json.raw(",\"model\":");
            json.text(&m.model);
            json.raw(",\"value\":");
            json.f64(m.value[i]);
            json.raw(",\"band\":");
            json.text(m.bands.get(m.band[i]));
            json.raw(",\"reasons\":[");
            for r in m.reason_start[i] as usize..m.reason_start[i + 1] as usize {
                if r > m.reason_start[i] as usize {
                    json.raw(",");
                }
                json.raw("{\"feature\":");
                json.text(m.features.get(m.reason_feature[r]));
                json.raw(",\"weight\":");
                json.f64(m.reason_weight[r]);
                json.raw(",\"detail\":");
                json.text(m.reason_detail.get(r));
                json.raw("}");
            }
            json.raw("]}");
        }
        json.raw("]");
        true
    }

    /// Reads one value of each of customer `row`'s columns in the sheet, so
    /// that their cache misses overlap with the snapshot's (see
    /// `Snapshot::touch`); a value for `std::hint::black_box`.
    pub fn touch(&self, row: u32) -> u64 {
        let sheet = self.sheet.read().expect("scores lock");
        let i = row as usize;
        let mut sum = 0u64;
        for m in sheet.iter().flat_map(|s| &s.models) {
            if let (Some(&value), Some(&band), Some(&start)) =
                (m.value.get(i), m.band.get(i), m.reason_start.get(i))
            {
                sum = sum
                    .wrapping_add(value.to_bits())
                    .wrapping_add(band.into())
                    .wrapping_add(start.into());
                if let (Some(&feature), Some(&weight)) = (
                    m.reason_feature.get(start as usize),
                    m.reason_weight.get(start as usize),
                ) {
                    sum = sum
                        .wrapping_add(feature.into())
                        .wrapping_add(weight.to_bits())
                        .wrapping_add(m.reason_detail.touch(start as usize));
                }
            }
        }
        sum
    }

    /// Whether the sheet is current for this generation, ranks and plugins.
    pub fn is_current(
        &self,
        generation: u64,
        rfm: &Option<Arc<Vec<analysis::Scores>>>,
        plugins: &[Arc<LoadedPlugin>],
    ) -> bool {
        self.sheet
            .read()
            .expect("scores lock")
            .as_ref()
            .is_some_and(|s| {
                s.generation == generation && same_rfm(&s.rfm, rfm) && same(&s.plugins, plugins)
            })
    }

    /// Works every customer's scores out (on both cores, in the plugins'
    /// batches) and keeps them; under the snapshot's read lock. A model
    /// whose call fails is left out of the sheet altogether: the 360 then
    /// calls the plugins itself.
    pub fn work_out(
        &self,
        snapshot: &Snapshot,
        generation: u64,
        registry: &Registry,
        rfm: Option<Arc<Vec<analysis::Scores>>>,
    ) {
        let epoch = self.epoch.load(Ordering::Acquire);
        let plugins = registry.enabled();
        let views = crate::plugins::Batches::with_rfm(snapshot, rfm.clone());
        let rows: Vec<u32> = (0..snapshot.customers.len() as u32).collect();
        let mut models = Vec::new();
        for plugin in &plugins {
            for model in &plugin.manifest.hooks.scores {
                let results = crate::plugins::per_batch(&views, plugin, &rows, |batch| {
                    registry
                        .counted(plugin, |p| p.score(model, batch))
                        .map(|(results, _log)| results)
                });
                let Ok(results) = results else {
                    // Left to the 360's own calls, which count the failure.
                    *self.sheet.write().expect("scores lock") = None;
                    return;
                };
                let mut m = ModelScores {
                    plugin: plugin.manifest.id.clone(),
                    model: model.clone(),
                    value: Vec::with_capacity(rows.len()),
                    band: Vec::with_capacity(rows.len()),
                    bands: Dict::default(),
                    reason_start: Vec::with_capacity(rows.len() + 1),
                    reason_feature: Vec::new(),
                    features: Dict::default(),
                    reason_weight: Vec::new(),
                    reason_detail: Strings::default(),
                };
                m.reason_start.push(0);
                for result in results {
                    match result {
                        Ok(score) => {
                            m.value.push(score.value);
                            m.band.push(m.bands.code(&score.band));
                            for r in score.reasons {
                                m.reason_feature.push(m.features.code(&r.feature));
                                m.reason_weight.push(r.weight);
                                m.reason_detail.push(&r.detail);
                            }
                        }
                        Err(_) => {
                            m.value.push(0.0);
                            m.band.push(NONE);
                        }
                    }
                    m.reason_start.push(m.reason_feature.len() as u32);
                }
                models.push(m);
            }
        }
        let customers = snapshot.customers.len();
        *self.sheet.write().expect("scores lock") = Some(Arc::new(Sheet {
            generation,
            epoch,
            as_of: snapshot.default_as_of(),
            rfm,
            plugins,
            models,
            written: (0..customers.div_ceil(64))
                .map(|_| AtomicU64::new(0))
                .collect(),
        }));
    }

    /// Bytes the sheet takes (approximately), for the log.
    pub fn memory_bytes(&self) -> usize {
        let sheet = self.sheet.read().expect("scores lock");
        sheet.as_ref().map_or(0, |s| {
            s.models
                .iter()
                .map(|m| {
                    m.value.capacity() * 8
                        + m.band.capacity() * 4
                        + m.reason_start.capacity() * 4
                        + m.reason_feature.capacity() * 4
                        + m.reason_weight.capacity() * 8
                        + m.reason_detail.memory_bytes()
                })
                .sum()
        })
    }
}
