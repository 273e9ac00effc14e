//! The console's users over HTTP (admins): list, save, remove. A user
//! removed loses their sessions at once (they are looked up on every
//! request).

use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::NoContent;
use schemars::JsonSchema;
use serde::Deserialize;

use super::problem::{Body, Path, Problem};
use super::{AppState, Caller};
use app::tokens::Role;

/// A user to save: the role, and the password to sign in with.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct UserBody {
    pub role: Role,
    /// At least 10 characters.
    pub password: String,
}

#[derive(Deserialize, JsonSchema)]
pub(crate) struct UserPath {
    /// The name the user signs in with.
    pub name: String,
}

/// `GET /api/v1/users` (admins): the console's users and their roles.
pub(crate) async fn list_users(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
) -> Result<axum::Json<Vec<app::users::UserInfo>>, Problem> {
    super::require(&caller, &[], "manage users")?;
    state
        .users
        .list()
        .map(axum::Json)
        .map_err(|e| Problem::internal(format!("{e:#}")))
}

/// `PUT /api/v1/users/{name}` (admins): adds a user (201) or sets an
/// existing one's role and password (200).
pub(crate) async fn put_user(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(UserPath { name }): Path<UserPath>,
    Body(body): Body<UserBody>,
) -> Result<super::problem::Saved<app::users::UserInfo>, Problem> {
    super::require(&caller, &[], "manage users")?;
    let exists = state
        .users
        .role_of(&name)
        .map_err(|e| Problem::internal(format!("{e:#}")))?
        .is_some();
    if body.password.chars().count() < app::users::MIN_PASSWORD {
        return Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Password too short",
            format!(
                "a password has at least {} characters",
                app::users::MIN_PASSWORD
            ),
        )
        .at("password"));
    }
    let state2 = Arc::clone(&state);
    let actor = caller.actor().0;
    let name2 = name.clone();
    tokio::task::spawn_blocking(move || {
        state2
            .users
            .save(&name2, body.role, &body.password, true, &actor)
    })
    .await
    .map_err(Problem::internal)?
    .map_err(|e| Problem::bad_request("Invalid user", format!("{e:#}")).at("name"))?;
    let info = state
        .users
        .list()
        .map_err(|e| Problem::internal(format!("{e:#}")))?
        .into_iter()
        .find(|u| u.name == name)
        .ok_or_else(|| Problem::internal("the user just saved is gone"))?;
    Ok(super::problem::Saved {
        created: !exists,
        body: info,
    })
}

/// `DELETE /api/v1/users/{name}` (admins): removes a user; their sessions
/// end at once.
pub(crate) async fn delete_user(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(UserPath { name }): Path<UserPath>,
) -> Result<NoContent, Problem> {
    super::require(&caller, &[], "manage users")?;
    if caller.user && *caller.name == *name {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "Cannot remove yourself",
            "sign in as another admin to remove this user",
        ));
    }
    match state.users.remove(&name, &caller.actor().0) {
        Ok(true) => Ok(NoContent),
        Ok(false) => Err(Problem::not_found(format!("no user '{name}'"))),
        Err(e) => Err(Problem::internal(format!("{e:#}"))),
    }
}
