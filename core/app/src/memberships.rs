//! Segment memberships kept current while the server runs: built from the
//! saved segments when it starts (and again when segments, plugins or the
//! snapshot's rows change), refreshed after writes for the rows that
//! changed: half a second after, or later when refreshing takes long (the
//! work here takes at most a tenth of the time). The movements (who entered and who left) go out as
//! events (`Events`); the customer 360 view reads a customer's segments here.
//! Plugin failures are watched on the same beat.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use segments::Live;

use crate::base::{PluginScores, SPACE};
use crate::crm::Crm;
use crate::json::Json;

#[derive(Default)]
pub struct Memberships {
    live: Mutex<Option<Live>>,
    /// Rows written since the last refresh.
    changed: Mutex<Vec<u32>>,
    /// Set when the memberships must be built anew.
    stale: AtomicBool,
    /// Failures seen so far per plugin, to report new ones once.
    failures: Mutex<BTreeMap<String, (u32, bool)>>,
}

/// Most customer ids in one segment event; bigger movements are split.
const IDS_PER_EVENT: usize = 1000;

impl Memberships {
    pub fn start(state: &Arc<Crm>) {
        state.memberships.stale.store(true, Ordering::Release);
        let weak = Arc::downgrade(state);
        std::thread::Builder::new()
            .name("crm-memberships".into())
            .spawn(move || run(weak))
            .expect("starting the membership thread");
    }

    /// Rows whose customers (or their lines) were just written.
    pub fn touched(&self, row: u32) {
        self.changed.lock().expect("membership lock").push(row);
    }

    /// The segments must be built anew (a segment saved or deleted, plugins
    /// changed, rows renumbered).
    pub fn invalidate(&self) {
        self.stale.store(true, Ordering::Release);
    }

    /// The members of segment `name` by row, as last refreshed; `None`
    /// while the memberships are being built (or must be, after a segment
    /// changed), or for a segment they do not hold.
    pub fn members(&self, name: &str) -> Option<Vec<u32>> {
        if self.stale.load(Ordering::Acquire) {
            return None;
        }
        let live = self.live.lock().expect("membership lock");
        live.as_ref().and_then(|l| l.members(name))
    }

    /// Reads row `row`'s memberships (see `Snapshot::touch`).
    pub fn touch(&self, row: u32) -> u64 {
        let live = self.live.lock().expect("membership lock");
        live.as_ref().map_or(0, |l| l.touch(row))
    }

    /// Writes the segments of row `row` to `out` as a JSON array of their
    /// names; `false` (nothing written) while they are being built.
    pub fn write_json(&self, row: u32, out: &mut Json) -> bool {
        let live = self.live.lock().expect("membership lock");
        let Some(live) = live.as_ref() else {
            return false;
        };
        out.raw("[");
        for (n, name) in live.names_of(row).enumerate() {
            if n > 0 {
                out.raw(",");
            }
            out.text(name);
        }
        out.raw("]");
        true
    }

    /// The segments of row `row`; `None` while they are being built.
    pub fn of(&self, row: u32) -> Option<Vec<String>> {
        let live = self.live.lock().expect("membership lock");
        live.as_ref()
            .map(|l| l.segments_of(row).into_iter().map(str::to_owned).collect())
    }
}

fn run(state: Weak<Crm>) {
    // Work here (building, refreshing) takes at most a tenth of the time:
    // after a pass that took d, the next waits 10 d (at least half a second).
    let mut next = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let Some(state) = state.upgrade() else { return };
        if Instant::now() < next {
            continue;
        }
        let started = Instant::now();
        // The ranks first: plugin scores read them.
        state.refresh_rfm();
        state.refresh_scores();
        let m = &state.memberships;
        if m.stale.swap(false, Ordering::AcqRel) {
            m.changed.lock().expect("membership lock").clear();
            build(&state);
        } else {
            let rows = std::mem::take(&mut *m.changed.lock().expect("membership lock"));
            refresh(&state, rows);
        }
        watch_plugins(&state);
        next = Instant::now() + (started.elapsed() * 10).max(Duration::from_millis(500));
    }
}

/// Builds the memberships of every saved segment that compiles.
fn build(state: &Crm) {
    let data = state.read();
    let base = &data.base;
    let mut defs = Vec::new();
    for rev in base.store.definitions(SPACE).unwrap_or_default() {
        match crate::base::decode(&rev) {
            Ok(def) => match base.compile(&def) {
                Ok(_) => defs.push((rev.name, def)),
                Err(e) => {
                    tracing::warn!(segment = %rev.name, error = %e, "segment left out of the live memberships")
                }
            },
            Err(e) => {
                tracing::warn!(segment = %rev.name, error = %format!("{e:#}"), "segment unreadable")
            }
        }
    }
    let extra = PluginScores {
        registry: &base.registry,
        batches: crate::plugins::Batches::new(&base.snapshot),
    };
    let started = std::time::Instant::now();
    match Live::new(
        &base.snapshot,
        base.catalog.clone(),
        defs,
        base.limits,
        &extra,
    ) {
        Ok(live) => {
            tracing::info!(
                segments = live.names().len(),
                ms = started.elapsed().as_secs_f64() * 1000.0,
                "segment memberships built"
            );
            *state.memberships.live.lock().expect("membership lock") = Some(live);
        }
        Err(e) => {
            tracing::error!(error = %e, "building the segment memberships");
            *state.memberships.live.lock().expect("membership lock") = None;
        }
    }
}

fn refresh(state: &Crm, mut rows: Vec<u32>) {
    let data = state.read();
    let base = &data.base;
    let mut live = state.memberships.live.lock().expect("membership lock");
    let Some(live) = live.as_mut() else { return };
    rows.sort_unstable();
    rows.dedup();
    let extra = PluginScores {
        registry: &base.registry,
        batches: crate::plugins::Batches::with_rfm(&base.snapshot, state.rfm_scores()),
    };
    let movements = match live.refresh(&base.snapshot, &rows, &extra) {
        Ok(m) => m,
        Err(e) => {
            tracing::error!(error = %e, "refreshing the segment memberships");
            state.memberships.invalidate();
            return;
        }
    };
    let ids = |rows: &[u32]| -> Vec<String> {
        rows.iter()
            .map(|&r| base.snapshot.customers.id(r).to_owned())
            .collect()
    };
    for m in movements {
        for (event, moved) in [("segment.entered", &m.entered), ("segment.left", &m.left)] {
            for chunk in moved.chunks(IDS_PER_EVENT) {
                state.emit(
                    event,
                    || serde_json::json!({"segment": m.segment, "customer_ids": ids(chunk)}),
                );
            }
        }
    }
}

/// Reports plugins whose calls failed since the last look, or that the
/// host disabled for failing.
fn watch_plugins(state: &Crm) {
    let list = state.read().base.registry.list();
    let mut seen = state.memberships.failures.lock().expect("membership lock");
    for p in list {
        let now = (p.failures, !p.enabled && p.disabled_reason.is_some());
        let before = seen.insert(p.id.clone(), now).unwrap_or((0, false));
        let more_failures = now.0 > before.0;
        let newly_disabled = now.1 && !before.1 && p.failures > 0;
        if more_failures || newly_disabled {
            state.emit("plugin.failed", || {
                serde_json::json!({
                    "plugin": p.id,
                    "failures_in_a_row": p.failures,
                    "enabled": p.enabled,
                    "disabled_reason": p.disabled_reason,
                })
            });
        }
    }
}
