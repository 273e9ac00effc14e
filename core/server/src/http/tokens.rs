//! API tokens over HTTP (admins): list, make, revoke.

use std::sync::Arc;

use axum::Extension;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::NoContent;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::NamePath;
use super::problem::{Body, Created, Path, Problem};
use super::{AppState, Caller, require};
use app::tokens::Role;

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
