//! Segments over HTTP: list, read, save, delete, test, members, explain,
//! history, and the fields scripts can read.

use std::sync::Arc;

use axum::Extension;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::NoContent;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::NamePath;
use super::READERS;
use super::problem::{Body, Path, Problem, Query, Tagged, if_match};
use super::{AppState, Caller, require};
use app::base::SPACE;
use app::tokens::Role;

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
