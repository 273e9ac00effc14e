//! The customer 360 (`GET /api/v1/customers/{id}/view`): the customer,
//! their metrics, the plugins' scores with their reasons, their segments
//! and a timeline; from memory when the snapshot is current, else from
//! the store. And the values the customer list's filters can take.

mod memory;

use std::sync::Arc;

use axum::Extension;
use axum::Json;
use axum::extract::State;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::READERS;
use super::problem::{Path, Problem, Query, TaggedJson};
use super::records::{IdPath, Revised};
use super::{AppState, Caller, require};

/// A customer seen whole: the record, its metrics, the plugins' scores
/// with their reasons, and a timeline of purchases and interactions.
#[derive(Serialize, JsonSchema)]
pub(crate) struct CustomerView {
    pub customer: Revised<model::Customer>,
    /// Recency, frequency, revenue, margin and the rest, as of the latest
    /// day of the data (absent for a customer the snapshot has not seen).
    pub metrics: Option<Value>,
    pub scores: Vec<ScoreView>,
    /// The saved segments the customer is in (absent while the memberships
    /// are being built, after the server starts).
    pub segments: Option<Vec<String>>,
    /// Newest first.
    pub timeline: Vec<TimelineItem>,
    /// Lines not in the timeline (older than the ones shown).
    pub timeline_more: u64,
}

#[derive(Serialize, JsonSchema)]
pub(crate) struct ScoreView {
    pub plugin: String,
    pub model: String,
    pub value: f64,
    pub band: String,
    pub reasons: Vec<ReasonView>,
}

#[derive(Serialize, JsonSchema)]
pub(crate) struct ReasonView {
    pub feature: String,
    pub weight: f64,
    pub detail: String,
}

/// A purchase line or an interaction.
#[derive(Serialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum TimelineItem {
    Transaction(model::Transaction),
    Interaction(model::Interaction),
}

impl TimelineItem {
    fn ts(&self) -> model::Timestamp {
        match self {
            TimelineItem::Transaction(t) => t.ts,
            TimelineItem::Interaction(i) => i.ts,
        }
    }
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ViewQuery {
    /// Timeline entries to give, newest first (100 by default, at most 1,000).
    #[schemars(range(max = 1000))]
    pub timeline: Option<u32>,
}

/// `GET /api/v1/customers/{id}/view`.
pub(crate) async fn customer_view(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(IdPath { id }): Path<IdPath>,
    Query(query): Query<ViewQuery>,
) -> Result<TaggedJson<CustomerView>, Problem> {
    require(&caller, READERS, "read customers")?;
    let limit = match query.timeline {
        None => 100,
        Some(n) if n <= 1000 => n as usize,
        Some(n) => {
            return Err(Problem::bad_request(
                "Invalid timeline",
                format!("timeline {n} is over 1000"),
            )
            .at("timeline"));
        }
    };
    if let Some((revision, json)) = view_from_memory(&state, &id, limit) {
        return Ok(TaggedJson::new(revision, json));
    }
    match view_from_store(&state, &id, limit)? {
        Some((revision, view)) => Ok(TaggedJson::new(
            revision,
            serde_json::to_vec(&view).map_err(Problem::internal)?,
        )),
        None => Err(Problem::not_found(format!("no customer '{id}'"))),
    }
}

/// The 360 of customer `id` and its revision, from the snapshot alone;
/// `None` when the snapshot may not hold everything acknowledged (see
/// `AppState::read_current`) or does not know the customer's revision.
pub(crate) fn view_from_memory(state: &AppState, id: &str, limit: usize) -> Option<(u64, Vec<u8>)> {
    let data = state.read_current(id)?;
    let row = data.base.snapshot.customers.find(id)?;
    std::hint::black_box(
        data.base.snapshot.touch(row) ^ state.scores.touch(row) ^ state.memberships.touch(row),
    );
    let revision = data.base.snapshot.customers.revision[row as usize];
    if revision == 0 {
        return None;
    }
    let rfm = state.rfm_scores();
    let metrics = metrics_of(&data.base.snapshot, row, &rfm);
    let plugins = data.base.registry.enabled();
    let as_of = data.base.snapshot.default_as_of();
    // The scores worked out ahead if they are current, else the plugins'.
    let scores = |out: &mut app::json::Json| {
        state.scores.write_json(row, as_of, &rfm, &plugins, out)
            || serde_json::to_writer(&mut out.0, &scores_of(&data.base, row, rfm.clone())).is_ok()
    };
    let segments = |out: &mut app::json::Json| {
        if !state.memberships.write_json(row, out) {
            out.raw("null");
        }
    };
    memory::view_json(&data.base.snapshot, row, limit, metrics, scores, segments)
        .map(|json| (revision, json))
}

/// The 360 of customer `id` and its revision, with the record and the
/// lines read from the store.
pub(crate) fn view_from_store(
    state: &AppState,
    id: &str,
    limit: usize,
) -> Result<Option<(u64, CustomerView)>, Problem> {
    let Some((revision, model::Record::Customer(customer))) =
        state.store.get_revised(model::EntityKind::Customer, id)?
    else {
        return Ok(None);
    };
    let cid = customer.customer_id.clone();
    let mut timeline: Vec<TimelineItem> = state
        .store
        .transactions_of(&cid)?
        .into_iter()
        .map(TimelineItem::Transaction)
        .chain(
            state
                .store
                .interactions_of(&cid)?
                .into_iter()
                .map(TimelineItem::Interaction),
        )
        .collect();
    timeline.sort_by_key(|t| std::cmp::Reverse(t.ts()));
    let more = timeline.len().saturating_sub(limit) as u64;
    timeline.truncate(limit);
    let data = state.read();
    let (metrics, scores, segments) = match data.base.snapshot.customers.find(cid.as_str()) {
        None => (None, Vec::new(), Some(Vec::new())),
        Some(row) => {
            let (metrics, scores, segments) = derived_of(state, &data, row);
            (serde_json::to_value(metrics).ok(), scores, segments)
        }
    };
    Ok(Some((
        revision,
        CustomerView {
            customer: Revised {
                revision: Some(revision),
                record: customer,
            },
            metrics,
            scores,
            segments,
            timeline,
            timeline_more: more,
        },
    )))
}

/// The metrics, scores and segments of the customer at snapshot row `row`,
/// the scores from the plugins' calls.
fn derived_of(
    state: &AppState,
    data: &app::Current,
    row: u32,
) -> (analysis::Metrics, Vec<ScoreView>, Option<Vec<String>>) {
    let rfm = state.rfm_scores();
    let metrics = metrics_of(&data.base.snapshot, row, &rfm);
    let scores = scores_of(&data.base, row, rfm);
    (metrics, scores, state.segments_of(row))
}

/// The customer's own metrics now, with the R, F and M ranks among all
/// buyers from the cache the server keeps current.
fn metrics_of(
    snapshot: &analysis::Snapshot,
    row: u32,
    rfm: &Option<Arc<Vec<analysis::Scores>>>,
) -> analysis::Metrics {
    let scope = analysis::Scope {
        as_of: None,
        customers: Some(vec![row]),
    };
    let ctx = analysis::Context::new(snapshot, &scope);
    let mut metrics = analysis::customer_metrics_of(
        &ctx,
        row,
        analysis::Parts {
            scores: false,
            interactions: true,
        },
    );
    if metrics.lines > 0
        && let Some(s) = rfm.as_ref().and_then(|all| all.get(row as usize))
    {
        metrics.r = Some(s.r);
        metrics.f = Some(s.f);
        metrics.m = Some(s.m);
        metrics.rfm_segment = Some(analysis::rfm_segment(s.r, s.f));
    }
    metrics
}

/// The scores of every enabled plugin's models for one customer; a model
/// that fails or declines is left out (its failures are counted).
fn scores_of(
    work: &app::Base,
    row: u32,
    rfm: Option<Arc<Vec<analysis::Scores>>>,
) -> Vec<ScoreView> {
    let views = app::plugins::Batches::for_rows(&work.snapshot, &[row], rfm);
    let mut out = Vec::new();
    for plugin in work.registry.enabled() {
        let batch = views.batch(&plugin, &[row]);
        for model in &plugin.manifest.hooks.scores {
            let result = work
                .registry
                .counted(&plugin, |p| p.score(model, &batch))
                .map(|(results, _)| results.into_iter().next());
            if let Ok(Some(Ok(score))) = result {
                out.push(ScoreView {
                    plugin: plugin.manifest.id.clone(),
                    model: model.clone(),
                    value: score.value,
                    band: score.band,
                    reasons: score
                        .reasons
                        .into_iter()
                        .map(|r| ReasonView {
                            feature: r.feature,
                            weight: r.weight,
                            detail: r.detail,
                        })
                        .collect(),
                });
            }
        }
    }
    out
}

/// The values the customer list can be filtered by.
#[derive(Serialize, JsonSchema)]
pub(crate) struct Facets {
    pub region: Vec<String>,
    pub city: Vec<String>,
    pub tier: Vec<String>,
    pub channel: Vec<String>,
    pub gender: Vec<String>,
}

/// `GET /api/v1/facets/customers`: the values each filter of the customer
/// list can take, sorted.
pub(crate) async fn customer_facets(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Facets>, Problem> {
    require(&caller, READERS, "read customers")?;
    let data = state.read();
    let dicts = &data.base.snapshot.dicts;
    let values = |d: &analysis::snapshot::Dict| {
        let mut v: Vec<String> = (0..d.len() as u32).map(|c| d.get(c).to_owned()).collect();
        v.sort();
        v.dedup();
        v
    };
    Ok(Json(Facets {
        region: values(&dicts.region),
        city: values(&dicts.city),
        tier: values(&dicts.tier),
        channel: model::AcquisitionChannel::ALL
            .iter()
            .map(|c| c.as_str().to_owned())
            .collect(),
        gender: model::Gender::ALL
            .iter()
            .map(|g| g.as_str().to_owned())
            .collect(),
    }))
}
