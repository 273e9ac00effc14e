//! Analyses over HTTP: the list, one run as JSON or CSV, the Pareto curve.

use std::sync::Arc;

use axum::Extension;
use axum::Json;
use axum::extract::State;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::problem::{Path, Problem, Query};
use super::segments::members;
use super::{AppState, Caller, NamePath, require};
use app::tokens::Role;

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
