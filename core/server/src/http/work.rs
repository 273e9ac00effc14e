//! The customer 360 view, analyses, segments and the audit log.

mod memory;

use std::sync::Arc;

use axum::Extension;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::NoContent;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::problem::{Body, Created, Path, Problem, Query, Tagged, TaggedJson, if_match};
use super::records::{IdPath, READERS, Revised};
use super::{AppState, Caller, require};
use app::base::SPACE;
use app::tokens::Role;

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

/// An analysis the API can run.
#[derive(Serialize, JsonSchema)]
pub(crate) struct AnalysisInfo {
    pub name: String,
    pub description: String,
}

/// `GET /api/v1/analyses`.
pub(crate) async fn list_analyses(
    Extension(caller): Extension<Caller>,
) -> Result<Json<Vec<AnalysisInfo>>, Problem> {
    require(&caller, ANALYSTS_AND_VIEWERS, "run analyses")?;
    Ok(Json(
        analysis::NAMES
            .iter()
            .map(|n| AnalysisInfo {
                name: (*n).to_owned(),
                description: analysis::describe(n).unwrap_or_default().to_owned(),
            })
            .collect(),
    ))
}

const ANALYSTS_AND_VIEWERS: &[Role] = &[Role::Analyst, Role::Viewer];

#[derive(Deserialize, JsonSchema)]
pub(crate) struct NamePath {
    pub name: String,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AnalysisQuery {
    /// The day the analysis looks back from (YYYY-MM-DD); the latest day of
    /// the data by default.
    #[schemars(extend("format" = "date"))]
    pub as_of: Option<String>,
    /// Only the members of this saved segment.
    pub segment: Option<String>,
}

/// An analysis's result: one object per row, keyed by column, as
/// `crm analyze NAME --format json` prints it.
pub(crate) type AnalysisRows = Vec<serde_json::Map<String, Value>>;

/// Runs analysis `name` (or, for `None`, the Pareto curve) as the query
/// asks, off the async threads.
async fn analysis_table(
    state: Arc<AppState>,
    name: Option<String>,
    query: AnalysisQuery,
) -> Result<analysis::Table, Problem> {
    if let Some(name) = &name
        && analysis::describe(name).is_none()
    {
        return Err(Problem::not_found(format!(
            "no analysis '{name}'; the analyses are {}",
            analysis::NAMES.join(", ")
        )));
    }
    let as_of = query
        .as_of
        .as_deref()
        .map(model::Date::parse)
        .transpose()
        .map_err(|e| Problem::bad_request("Invalid date", e.to_string()).at("as_of"))?;
    tokio::task::spawn_blocking(move || -> Result<analysis::Table, Problem> {
        let data = state.read();
        let customers = match &query.segment {
            None => None,
            Some(segment) => Some(members(&data.base, segment)?),
        };
        let scope = analysis::Scope { as_of, customers };
        let ctx = analysis::Context::new(&data.base.snapshot, &scope);
        Ok(match &name {
            Some(name) => analysis::run(name, &ctx).expect("the name was checked"),
            None => analysis::pareto_curve(&ctx),
        })
    })
    .await
    .map_err(Problem::internal)?
}

pub(crate) fn rows_of(table: &analysis::Table) -> Result<Json<AnalysisRows>, Problem> {
    serde_json::to_value(table)
        .and_then(serde_json::from_value)
        .map(Json)
        .map_err(Problem::internal)
}

/// `GET /api/v1/analyses/{name}`.
pub(crate) async fn run_analysis(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(NamePath { name }): Path<NamePath>,
    Query(query): Query<AnalysisQuery>,
) -> Result<Json<AnalysisRows>, Problem> {
    require(&caller, ANALYSTS_AND_VIEWERS, "run analyses")?;
    rows_of(&analysis_table(state, Some(name), query).await?)
}

/// `GET /api/v1/analyses/{name}/csv`: the same rows as CSV.
pub(crate) async fn analysis_csv(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(NamePath { name }): Path<NamePath>,
    Query(query): Query<AnalysisQuery>,
) -> Result<super::problem::Csv, Problem> {
    require(&caller, ANALYSTS_AND_VIEWERS, "run analyses")?;
    let file = match &query.segment {
        Some(segment) => format!("{name}-{segment}.csv"),
        None => format!("{name}.csv"),
    };
    let file: String = file
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let table = analysis_table(state, Some(name), query).await?;
    Ok(super::problem::Csv {
        file,
        body: table.to_csv().into(),
    })
}

/// `GET /api/v1/charts/pareto`.
pub(crate) async fn pareto_curve(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Query(query): Query<AnalysisQuery>,
) -> Result<Json<AnalysisRows>, Problem> {
    require(&caller, ANALYSTS_AND_VIEWERS, "run analyses")?;
    rows_of(&analysis_table(state, None, query).await?)
}

/// The rows of a saved segment's members.
pub(crate) fn members(work: &app::Base, name: &str) -> Result<Vec<u32>, Problem> {
    let def = saved(work, name)?;
    work.evaluate(&def, None).map(|e| e.members).map_err(|e| {
        Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Segment failed",
            format!("{e:#}"),
        )
        .at("segment")
    })
}

/// The saved definition of segment `name` (404 naming the closest name).
fn saved(work: &app::Base, name: &str) -> Result<segments::Definition, Problem> {
    work.definition(name)
        .map(|(_, def)| def)
        .map_err(|e| Problem::not_found(format!("{e:#}")).at("segment"))
}

/// A segment: a rhai script over the fields of a customer.
#[derive(Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SegmentBody {
    #[serde(default)]
    pub description: String,
    /// An expression over `c` (`c.revenue > 1000.0 && c.tier == "gold"`), or
    /// a script that defines `fn matches(c)`.
    pub script: String,
    /// Values the script reads as `params.NAME`.
    #[serde(default)]
    pub params: serde_json::Map<String, Value>,
}

impl SegmentBody {
    fn definition(self) -> segments::Definition {
        segments::Definition {
            description: self.description,
            script: self.script,
            params: self.params,
        }
    }
}

/// A saved segment.
#[derive(Serialize, JsonSchema)]
pub(crate) struct SegmentInfo {
    pub name: String,
    pub revision: u32,
    /// When it was saved, in UTC seconds.
    pub saved_at: i64,
    #[serde(flatten)]
    pub definition: SegmentBody,
}

fn info(rev: &store::Revision) -> Result<SegmentInfo, Problem> {
    let def = app::base::decode(rev).map_err(|e| Problem::internal(format!("{e:#}")))?;
    Ok(SegmentInfo {
        name: rev.name.clone(),
        revision: rev.revision,
        saved_at: rev.saved_at,
        definition: SegmentBody {
            description: def.description,
            script: def.script,
            params: def.params,
        },
    })
}

const SEGMENT_EDITORS: &[Role] = &[Role::Analyst];

/// `GET /api/v1/segments`.
pub(crate) async fn list_segments(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Vec<SegmentInfo>>, Problem> {
    require(&caller, READERS, "read segments")?;
    let revs = state.store.definitions(SPACE)?;
    revs.iter().map(info).collect::<Result<_, _>>().map(Json)
}

/// `GET /api/v1/segments/{name}`.
pub(crate) async fn get_segment(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(NamePath { name }): Path<NamePath>,
) -> Result<Tagged<SegmentInfo>, Problem> {
    require(&caller, READERS, "read segments")?;
    let rev = state
        .store
        .definition(SPACE, &name)?
        .ok_or_else(|| Problem::not_found(format!("no segment '{name}'")))?;
    Ok(Tagged(rev.revision.into(), info(&rev)?))
}

fn script_problem(e: &segments::ScriptError) -> Problem {
    let mut p = Problem::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "Invalid script",
        e.to_string(),
    )
    .at("script");
    if let Some(pos) = e.pos {
        p.detail = format!("line {}, column {}: {}", pos.line, pos.column, e.message);
    }
    p
}

/// `PUT /api/v1/segments/{name}`: saves a segment after checking it (its
/// fields, types and a run on 1,000 customers). Without If-Match the name
/// must be new; with it, the revision must be current.
pub(crate) async fn put_segment(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(NamePath { name }): Path<NamePath>,
    headers: HeaderMap,
    Body(body): Body<SegmentBody>,
) -> Result<Tagged<SegmentInfo>, Problem> {
    require(&caller, SEGMENT_EDITORS, "save segments")?;
    app::base::check_name(&name)
        .map_err(|e| Problem::bad_request("Invalid name", format!("{e:#}")).at("name"))?;
    let expect = match if_match(&headers)? {
        Some(rev) => store::Expect::Revision(rev),
        None => store::Expect::New,
    };
    let def = body.definition();
    let state2 = Arc::clone(&state);
    let name2 = name.clone();
    let rev = tokio::task::spawn_blocking(move || -> Result<store::Revision, Problem> {
        let data = state2.read();
        let work = &data.base;
        let before = work.store.definition(SPACE, &name2)?;
        work.compile(&def).map_err(|e| script_problem(&e))?;
        work.check(&def).map_err(|e| {
            Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Script failed",
                format!("{e:#}"),
            )
            .at("script")
        })?;
        let body = serde_json::to_string(&def).map_err(Problem::internal)?;
        let saved = work
            .store
            .save_definition(SPACE, &name2, &body, expect)
            .map_err(|e| match e {
                store::StoreError::Conflict(d) if matches!(expect, store::Expect::New) => {
                    Problem::new(
                        StatusCode::CONFLICT,
                        "Exists already",
                        format!("{d}; send If-Match with its revision to replace it"),
                    )
                }
                store::StoreError::Conflict(d) => {
                    Problem::new(StatusCode::PRECONDITION_FAILED, "Precondition failed", d)
                        .at("If-Match")
                }
                other => other.into(),
            })?;
        work.store.audit(store::AuditEntry {
            seq: 0,
            at_ms: 0,
            actor: caller.actor().0,
            action: "save".into(),
            kind: "segment".into(),
            id: name2.clone(),
            revision: Some(saved.revision.into()),
            before: before.and_then(|b| serde_json::from_str(&b.body).ok()),
            after: serde_json::from_str(&saved.body).ok(),
        })?;
        Ok(saved)
    })
    .await
    .map_err(Problem::internal)??;
    state.segments_changed();
    Ok(Tagged(rev.revision.into(), info(&rev)?))
}

/// `DELETE /api/v1/segments/{name}` (its history stays).
pub(crate) async fn delete_segment(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(NamePath { name }): Path<NamePath>,
    headers: HeaderMap,
) -> Result<NoContent, Problem> {
    require(&caller, SEGMENT_EDITORS, "delete segments")?;
    let expect = match if_match(&headers)? {
        Some(rev) => store::Expect::Revision(rev),
        None => store::Expect::Any,
    };
    if !app::base::delete(&*state.store, &name, expect, &caller.actor().0)? {
        return Err(Problem::not_found(format!("no segment '{name}'")));
    }
    state.segments_changed();
    Ok(NoContent)
}

/// How many customers a script selects, and some of them.
#[derive(Serialize, JsonSchema)]
pub(crate) struct TestResult {
    pub members: u64,
    pub customers: u64,
    /// The first members (up to 20) with the values the script read.
    pub sample: Vec<SampleMember>,
    pub milliseconds: f64,
}

#[derive(Serialize, JsonSchema)]
pub(crate) struct SampleMember {
    pub customer_id: String,
    pub name: String,
    pub values: serde_json::Map<String, Value>,
}

/// `POST /api/v1/segments/test`: evaluates a script without saving it;
/// errors come at their line and column (422).
pub(crate) async fn test_segment(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Body(body): Body<SegmentBody>,
) -> Result<Json<TestResult>, Problem> {
    require(&caller, &[Role::Analyst, Role::Viewer], "test segments")?;
    let def = body.definition();
    tokio::task::spawn_blocking(move || -> Result<TestResult, Problem> {
        let data = state.read();
        let work = &data.base;
        work.compile(&def).map_err(|e| script_problem(&e))?;
        let evaluated = work.evaluate(&def, None).map_err(|e| {
            Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Script failed",
                format!("{e:#}"),
            )
            .at("script")
        })?;
        let snapshot = &work.snapshot;
        let sample = evaluated
            .members
            .iter()
            .take(20)
            .map(|&row| SampleMember {
                customer_id: snapshot.customers.id(row).to_owned(),
                name: snapshot.customers.names.get(row as usize).to_owned(),
                values: evaluated
                    .compiled
                    .reads
                    .iter()
                    .map(|&f| {
                        let field = &work.catalog.fields()[f];
                        let v = evaluated
                            .frame
                            .column(f)
                            .map_or(segments::Value::Missing, |c| c.get(row));
                        (field.name.clone(), v.to_json(field.ty))
                    })
                    .collect(),
            })
            .collect();
        Ok(TestResult {
            members: evaluated.members.len() as u64,
            customers: snapshot.customers.len() as u64,
            sample,
            milliseconds: evaluated.took.as_secs_f64() * 1000.0,
        })
    })
    .await
    .map_err(Problem::internal)?
    .map(Json)
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct MembersQuery {
    /// The `next` of the previous page.
    pub after: Option<String>,
    /// Items per page, 1 to 1,000 (100 by default).
    #[schemars(range(min = 1, max = 1000))]
    pub limit: Option<u32>,
}

/// Members of a segment, in customer id order.
#[derive(Serialize, JsonSchema)]
pub(crate) struct MembersPage {
    pub items: Vec<MemberItem>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
    pub total: u64,
}

#[derive(Serialize, JsonSchema)]
pub(crate) struct MemberItem {
    pub customer_id: String,
    pub name: String,
}

/// `GET /api/v1/segments/{name}/members`.
pub(crate) async fn segment_members(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(NamePath { name }): Path<NamePath>,
    Query(query): Query<MembersQuery>,
) -> Result<Json<MembersPage>, Problem> {
    require(&caller, READERS, "read segments")?;
    let limit = super::problem::page_limit(query.limit, 100, 1000)?;
    tokio::task::spawn_blocking(move || -> Result<MembersPage, Problem> {
        let data = state.read();
        let work = &data.base;
        let c = &work.snapshot.customers;
        let mut ids: Vec<u32> = members(work, &name)?;
        ids.sort_unstable_by(|&a, &b| c.id(a).cmp(c.id(b)));
        let total = ids.len() as u64;
        let start = query
            .after
            .as_deref()
            .map_or(0, |a| ids.partition_point(|&r| c.id(r) <= a));
        let page: Vec<u32> = ids[start..].iter().take(limit).copied().collect();
        let more = ids.len() > start + page.len();
        Ok(MembersPage {
            next: page.last().filter(|_| more).map(|&r| c.id(r).to_owned()),
            items: page
                .iter()
                .map(|&r| MemberItem {
                    customer_id: c.id(r).to_owned(),
                    name: c.names.get(r as usize).to_owned(),
                })
                .collect(),
            total,
        })
    })
    .await
    .map_err(Problem::internal)?
    .map(Json)
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExplainQuery {
    pub customer_id: String,
}

/// `GET /api/v1/segments/{name}/explain?customer_id=`: whether the customer
/// is a member, each part of the expression and the values it read.
pub(crate) async fn explain_segment(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(NamePath { name }): Path<NamePath>,
    Query(query): Query<ExplainQuery>,
) -> Result<Json<Value>, Problem> {
    require(&caller, READERS, "read segments")?;
    tokio::task::spawn_blocking(move || -> Result<Value, Problem> {
        let data = state.read();
        let work = &data.base;
        let def = saved(work, &name)?;
        let row = work
            .snapshot
            .customers
            .find(&query.customer_id)
            .ok_or_else(|| {
                Problem::not_found(format!("no customer '{}'", query.customer_id)).at("customer_id")
            })?;
        let compiled = work.compile(&def).map_err(|e| script_problem(&e))?;
        let frame = work
            .frame(&compiled.reads, None)
            .map_err(|e| Problem::internal(format!("{e:#}")))?;
        let x = compiled
            .explain(&work.engine, &work.catalog, &frame, row, work.limits)
            .map_err(|e| script_problem(&e))?;
        serde_json::to_value(&x).map_err(Problem::internal)
    })
    .await
    .map_err(Problem::internal)?
    .map(Json)
}

/// The fields a segment script can read.
#[derive(Serialize, JsonSchema)]
pub(crate) struct FieldInfo {
    pub name: String,
    /// int, float, text, bool or day.
    #[serde(rename = "type")]
    pub ty: String,
    pub doc: String,
    /// Where it comes from: core, metric, or the plugin.
    pub origin: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

/// `GET /api/v1/segments/{name}/history`: every saved revision of the
/// segment, newest first.
pub(crate) async fn segment_history(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(NamePath { name }): Path<NamePath>,
) -> Result<Json<Vec<SegmentInfo>>, Problem> {
    require(&caller, READERS, "read segments")?;
    let mut revisions = state.store.definition_history(SPACE, &name)?;
    if revisions.is_empty() {
        return Err(Problem::not_found(format!(
            "segment '{name}' was never saved"
        )));
    }
    revisions.sort_by_key(|r| std::cmp::Reverse(r.revision));
    revisions
        .iter()
        .map(info)
        .collect::<Result<_, _>>()
        .map(Json)
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

/// `GET /api/v1/segments/fields`.
pub(crate) async fn segment_fields(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Vec<FieldInfo>>, Problem> {
    require(&caller, READERS, "read segments")?;
    let data = state.read();
    Ok(Json(
        data.base
            .catalog
            .fields()
            .iter()
            .map(|f| FieldInfo {
                name: f.name.clone(),
                ty: serde_json::to_value(f.ty)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                doc: f.doc.clone(),
                origin: segments::origin(&f.source),
                values: f.values.clone(),
            })
            .collect(),
    ))
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuditParams {
    /// The `next` of the previous page: entries older than this sequence number.
    pub before: Option<u64>,
    /// customer, product, campaign, transaction, interaction, segment, token, ...
    pub kind: Option<String>,
    pub id: Option<String>,
    /// 1 to 500 (50 by default).
    #[schemars(range(min = 1, max = 500))]
    pub limit: Option<u32>,
}

#[derive(Serialize, JsonSchema)]
pub(crate) struct AuditPage {
    pub items: Vec<store::AuditEntry>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<u64>,
}

/// `GET /api/v1/audit`: the changes, newest first.
pub(crate) async fn audit_log(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<AuditParams>,
) -> Result<Json<AuditPage>, Problem> {
    require(&caller, &[], "read the audit log")?;
    let limit = super::problem::page_limit(q.limit, 50, 500)?;
    let items = state.store.audit_log(&store::AuditQuery {
        before: q.before,
        kind: q.kind,
        id: q.id,
        limit: limit + 1,
    })?;
    let more = items.len() > limit;
    let items: Vec<store::AuditEntry> = items.into_iter().take(limit).collect();
    Ok(Json(AuditPage {
        next: items.last().filter(|_| more).map(|e| e.seq),
        items,
    }))
}

/// A token to make.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct TokenBody {
    /// Who or what uses it.
    pub name: String,
    pub role: Role,
}

/// A token just made: the only time it is shown.
#[derive(Serialize, JsonSchema)]
pub(crate) struct NewToken {
    pub token: String,
    pub name: String,
    pub role: Role,
}

/// `GET /api/v1/tokens` (admins): name, role and id of each, never the token.
pub(crate) async fn list_tokens(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Vec<app::tokens::TokenInfo>>, Problem> {
    require(&caller, &[], "manage tokens")?;
    state
        .tokens
        .list()
        .map(Json)
        .map_err(|e| Problem::internal(format!("{e:#}")))
}

/// `POST /api/v1/tokens` (admins).
pub(crate) async fn create_token(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Body(body): Body<TokenBody>,
) -> Result<Created<NewToken>, Problem> {
    require(&caller, &[], "manage tokens")?;
    if body.name.trim().is_empty() {
        return Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid name",
            "give the token a name (who or what uses it)",
        )
        .at("name"));
    }
    let token = state
        .tokens
        .create_by(&body.name, body.role, &caller.actor().0)
        .map_err(|e| Problem::internal(format!("{e:#}")))?;
    Ok(Created {
        location: "/api/v1/tokens".into(),
        revision: None,
        body: NewToken {
            token,
            name: body.name,
            role: body.role,
        },
    })
}

/// `DELETE /api/v1/tokens/{name}` (admins): revokes the tokens with this
/// name or id.
pub(crate) async fn revoke_token(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(NamePath { name }): Path<NamePath>,
) -> Result<NoContent, Problem> {
    require(&caller, &[], "manage tokens")?;
    match state.tokens.revoke_by(&name, &caller.actor().0) {
        Ok(0) => Err(Problem::not_found(format!(
            "no token named '{name}' or with id '{name}'"
        ))),
        Ok(_) => Ok(NoContent),
        Err(e) => Err(Problem::internal(format!("{e:#}"))),
    }
}
