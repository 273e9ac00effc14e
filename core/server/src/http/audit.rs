//! The audit log over HTTP (admins).

use std::sync::Arc;

use axum::Extension;
use axum::Json;
use axum::extract::State;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::problem::{Problem, Query};
use super::{AppState, Caller, require};

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
