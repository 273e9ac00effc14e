//! Plugins over the API: list, install and upgrade by uploading a package
//! (a gzip-compressed tar of the plugin's directory), enable, disable,
//! remove, and each plugin's field schema.

use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use axum::Extension;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::NoContent;
use plugin_host::PluginError;
use schemars::JsonSchema;
use serde::Serialize;
use serde_json::Value;

use super::READERS;
use super::problem::{Created, Path, Problem};
use super::{AppState, Caller, require};
use app::tokens::Role;

/// Largest plugin package accepted.
pub(crate) const MAX_PACKAGE: usize = 64 << 20;

const MANAGERS: &[Role] = &[Role::Integrator];

/// An installed plugin.
#[derive(Serialize, JsonSchema)]
pub(crate) struct PluginView {
    pub id: String,
    pub name: String,
    pub version: String,
    pub description: String,
    pub enabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disabled_reason: Option<String>,
    /// Misbehaving calls in a row (it is disabled after too many).
    pub failures: u32,
    pub validates: bool,
    pub derives: Vec<String>,
    pub scores: Vec<String>,
    pub analyses: Vec<String>,
    /// The attribute keys it owns.
    pub fields: Vec<String>,
}

fn view(p: plugin_host::PluginInfo) -> PluginView {
    PluginView {
        id: p.id,
        name: p.name,
        version: p.version,
        description: p.description,
        enabled: p.enabled,
        disabled_reason: p.disabled_reason,
        failures: p.failures,
        validates: p.hooks.validate,
        derives: p.hooks.derive,
        scores: p.hooks.scores,
        analyses: p.hooks.analyses,
        fields: p.fields,
    }
}

fn problem(e: PluginError) -> Problem {
    match e {
        PluginError::Unknown(m) => Problem::not_found(m),
        PluginError::Invalid(m) if m.contains("installed already") => {
            Problem::new(StatusCode::CONFLICT, "Installed already", m)
        }
        other => Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Plugin refused",
            other.to_string(),
        ),
    }
}

#[derive(serde::Deserialize, JsonSchema)]
pub(crate) struct IdPath {
    pub id: String,
}

/// `GET /api/v1/plugins`.
pub(crate) async fn list(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Vec<PluginView>>, Problem> {
    require(&caller, READERS, "read plugins")?;
    let data = state.read();
    Ok(Json(
        data.base.registry.list().into_iter().map(view).collect(),
    ))
}

fn one(state: &AppState, id: &str) -> Result<PluginView, Problem> {
    state
        .read()
        .base
        .registry
        .list()
        .into_iter()
        .find(|p| p.id == id)
        .map(view)
        .ok_or_else(|| Problem::not_found(format!("no plugin '{id}' is installed")))
}

/// `GET /api/v1/plugins/{id}`.
pub(crate) async fn get(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(IdPath { id }): Path<IdPath>,
) -> Result<Json<PluginView>, Problem> {
    require(&caller, READERS, "read plugins")?;
    one(&state, &id).map(Json)
}

/// `GET /api/v1/plugins/{id}/fields`: the JSON Schema of its custom fields.
pub(crate) async fn fields(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(IdPath { id }): Path<IdPath>,
) -> Result<Json<Value>, Problem> {
    require(&caller, READERS, "read plugins")?;
    let plugin = state.read().base.registry.get(&id).map_err(problem)?;
    schema_of(&plugin).map(Json)
}

/// The JSON Schema of the fields `plugin` owns (an empty object schema
/// when it owns none).
fn schema_of(plugin: &plugin_host::LoadedPlugin) -> Result<Value, Problem> {
    let id = plugin.id();
    let Some(file) = &plugin.manifest.fields else {
        return Ok(serde_json::json!({"type": "object"}));
    };
    let text = std::fs::read_to_string(plugin.dir.join(&file.schema))
        .map_err(|e| Problem::internal(format!("reading the schema of {id}: {e}")))?;
    serde_json::from_str(&text).map_err(|e| Problem::internal(format!("the schema of {id}: {e}")))
}

/// The fields of one enabled plugin.
#[derive(Serialize, JsonSchema)]
pub(crate) struct PluginFields {
    pub plugin: String,
    pub name: String,
    /// The JSON Schema of its fields: titles, groups (x-crm-group), rules.
    pub schema: Value,
}

/// `GET /api/v1/plugin-fields`: the field schemas of every enabled plugin
/// that owns fields, in one answer (what a customer form lays out).
pub(crate) async fn all_fields(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Vec<PluginFields>>, Problem> {
    require(&caller, READERS, "read plugins")?;
    let registry = Arc::clone(&state.registry);
    let mut out = Vec::new();
    for p in registry.list() {
        if !p.enabled || p.fields.is_empty() {
            continue;
        }
        let plugin = registry.get(&p.id).map_err(problem)?;
        out.push(PluginFields {
            plugin: p.id.clone(),
            name: plugin.manifest.name.clone(),
            schema: schema_of(&plugin)?,
        });
    }
    Ok(Json(out))
}

/// A package body unpacked into a temporary directory; the directory that
/// holds plugin.toml.
fn unpack(body: &[u8]) -> Result<(tempfile::TempDir, PathBuf), Problem> {
    let bad = |why: String| Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "Invalid package", why);
    let dir = tempfile::tempdir().map_err(Problem::internal)?;
    let gz = flate2::read::GzDecoder::new(body);
    let mut archive = tar::Archive::new(gz);
    let entries = archive
        .entries()
        .map_err(|e| bad(format!("not a gzip-compressed tar archive: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| bad(format!("a damaged archive: {e}")))?;
        let kind = entry.header().entry_type();
        if !(kind.is_file() || kind.is_dir()) {
            return Err(bad(format!(
                "{} is a link or device; a package holds files and directories only",
                entry
                    .path()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            )));
        }
        // unpack_in refuses paths that leave the directory.
        let inside = entry
            .unpack_in(dir.path())
            .map_err(|e| bad(format!("unpacking: {e}")))?;
        if !inside {
            return Err(bad("a path in the archive leaves its directory".into()));
        }
    }
    let root = find_manifest(dir.path()).ok_or_else(|| {
        bad("no plugin.toml at the top of the archive or in its one top directory".into())
    })?;
    Ok((dir, root))
}

fn find_manifest(dir: &FsPath) -> Option<PathBuf> {
    if dir.join("plugin.toml").is_file() {
        return Some(dir.to_path_buf());
    }
    let subdirs: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    match subdirs.as_slice() {
        [only] if only.join("plugin.toml").is_file() => Some(only.clone()),
        _ => None,
    }
}

/// The body of an upload, checked to be a gzip archive.
fn package_body(headers: &axum::http::HeaderMap, body: &[u8]) -> Result<(), Problem> {
    let kind = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let kind = kind.split(';').next().unwrap_or("").trim();
    if ![
        "application/gzip",
        "application/x-gzip",
        "application/x-tar+gzip",
    ]
    .contains(&kind)
    {
        return Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Unsupported media type",
            "send the package as application/gzip: a tar.gz of the plugin's directory",
        ));
    }
    if body.len() > MAX_PACKAGE {
        return Err(Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Body too large",
            format!("a package is at most {MAX_PACKAGE} bytes"),
        ));
    }
    Ok(())
}

/// `POST /api/v1/plugins`: installs and enables an uploaded package, and
/// adds the segments it ships (whose names are free).
pub(crate) async fn install(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Result<Created<PluginView>, Problem> {
    require(&caller, MANAGERS, "install plugins")?;
    package_body(&headers, &body)?;
    let state2 = Arc::clone(&state);
    let view = tokio::task::spawn_blocking(move || -> Result<PluginView, Problem> {
        let (_dir, root) = unpack(&body)?;
        let mut data = state2.write_data();
        let plugin = data.base.registry.install(&root, None).map_err(problem)?;
        data.base.refresh_plugins();
        state2.segments_changed();
        let id = plugin.id().to_owned();
        audit(&state2, &caller, "install", &id, None, Some(&plugin.manifest.version));
        for shipped in data.base.add_shipped(&id).unwrap_or_default() {
            if let Err(e) = shipped.saved {
                tracing::warn!(segment = %shipped.name, plugin = %id, error = %e, "a shipped segment was not added");
            }
        }
        drop(data);
        one(&state2, &id)
    })
    .await
    .map_err(Problem::internal)??;
    Ok(Created {
        location: format!("/api/v1/plugins/{}", view.id),
        revision: None,
        body: view,
    })
}

/// `PUT /api/v1/plugins/{id}`: upgrades a plugin to an uploaded newer version.
pub(crate) async fn upgrade(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(IdPath { id }): Path<IdPath>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<PluginView>, Problem> {
    require(&caller, MANAGERS, "upgrade plugins")?;
    package_body(&headers, &body)?;
    let state2 = Arc::clone(&state);
    tokio::task::spawn_blocking(move || -> Result<PluginView, Problem> {
        let (_dir, root) = unpack(&body)?;
        let manifest = plugin_host::Manifest::read(&root.join("plugin.toml")).map_err(problem)?;
        if manifest.id != id {
            return Err(Problem::bad_request(
                "Wrong package",
                format!("the package is plugin {}, the URL plugin {id}", manifest.id),
            ));
        }
        let mut data = state2.write_data();
        let before = data
            .base
            .registry
            .get(&id)
            .map(|p| p.manifest.version.clone())
            .ok();
        let plugin = data.base.registry.upgrade(&root, None).map_err(problem)?;
        data.base.refresh_plugins();
        state2.segments_changed();
        drop(data);
        audit(
            &state2,
            &caller,
            "upgrade",
            &id,
            before.as_deref(),
            Some(&plugin.manifest.version),
        );
        one(&state2, &id)
    })
    .await
    .map_err(Problem::internal)?
    .map(Json)
}

/// `POST /api/v1/plugins/{id}/enable`.
pub(crate) async fn enable(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(IdPath { id }): Path<IdPath>,
) -> Result<Json<PluginView>, Problem> {
    require(&caller, MANAGERS, "enable plugins")?;
    {
        let mut data = state.write_data_async().await;
        data.base.registry.enable(&id).map_err(problem)?;
        data.base.refresh_plugins();
        state.segments_changed();
    }
    audit(&state, &caller, "enable", &id, None, None);
    one(&state, &id).map(Json)
}

/// `POST /api/v1/plugins/{id}/disable`.
pub(crate) async fn disable(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(IdPath { id }): Path<IdPath>,
) -> Result<Json<PluginView>, Problem> {
    require(&caller, MANAGERS, "disable plugins")?;
    {
        let mut data = state.write_data_async().await;
        data.base
            .registry
            .disable(&id, Some(format!("disabled by {}", caller.name)))
            .map_err(problem)?;
        data.base.refresh_plugins();
        state.segments_changed();
    }
    audit(&state, &caller, "disable", &id, None, None);
    one(&state, &id).map(Json)
}

/// `DELETE /api/v1/plugins/{id}`.
pub(crate) async fn remove(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(IdPath { id }): Path<IdPath>,
) -> Result<NoContent, Problem> {
    require(&caller, MANAGERS, "remove plugins")?;
    {
        let mut data = state.write_data_async().await;
        data.base.registry.remove(&id).map_err(problem)?;
        data.base.refresh_plugins();
        state.segments_changed();
    }
    audit(&state, &caller, "remove", &id, None, None);
    Ok(NoContent)
}

fn audit(
    state: &AppState,
    caller: &Caller,
    action: &str,
    id: &str,
    before: Option<&str>,
    after: Option<&str>,
) {
    let entry = store::AuditEntry {
        seq: 0,
        at_ms: 0,
        actor: caller.actor().0,
        action: action.into(),
        kind: "plugin".into(),
        id: id.into(),
        revision: None,
        before: before.map(|v| serde_json::json!({ "version": v })),
        after: after.map(|v| serde_json::json!({ "version": v })),
    };
    if let Err(e) = state.store.audit(entry) {
        tracing::error!(error = %e, "writing the audit log");
    }
}

#[derive(serde::Deserialize, JsonSchema)]
pub(crate) struct AnalysisPath {
    pub id: String,
    /// One of the plugin's analyses.
    pub name: String,
}

#[derive(serde::Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PluginAnalysisQuery {
    /// Only the members of this saved segment.
    pub segment: Option<String>,
    /// Parameters the analysis reads, as the plugin documents them.
    pub params: Option<String>,
}

/// `GET /api/v1/plugins/{id}/analyses/{name}`: runs one of a plugin's
/// industry analyses over every customer or a segment's members.
pub(crate) async fn analysis(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(AnalysisPath { id, name }): Path<AnalysisPath>,
    super::problem::Query(query): super::problem::Query<PluginAnalysisQuery>,
) -> Result<Json<super::analyses::AnalysisRows>, Problem> {
    require(&caller, &[Role::Analyst, Role::Viewer], "run analyses")?;
    let plugin = one(&state, &id)?;
    if !plugin.analyses.contains(&name) {
        return Err(Problem::not_found(format!(
            "plugin {id} has no analysis '{name}' (it has {})",
            plugin.analyses.join(", ")
        )));
    }
    if !plugin.enabled {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            "Plugin disabled",
            format!("plugin {id} is disabled; enable it to run its analyses"),
        ));
    }
    let table = tokio::task::spawn_blocking(move || -> Result<analysis::Table, Problem> {
        let data = state.read();
        let rows: Vec<u32> = match &query.segment {
            Some(segment) => super::segments::members(&data.base, segment)?,
            None => (0..data.base.snapshot.customers.len() as u32).collect(),
        };
        let loaded = data.base.registry.get(&id).map_err(Problem::internal)?;
        let views = app::plugins::Batches::new(&data.base.snapshot);
        let size = loaded.manifest.limits.max_batch as usize;
        let mut batches = rows
            .chunks(size.max(1))
            .map(|chunk| views.batch(&loaded, chunk));
        let (table, _) = data
            .base
            .registry
            .analysis(
                &id,
                &name,
                query.params.as_deref().unwrap_or(""),
                &mut batches,
            )
            .map_err(|e| {
                Problem::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Analysis failed",
                    e.to_string(),
                )
            })?;
        Ok(app::plugins::table_of(table))
    })
    .await
    .map_err(Problem::internal)??;
    super::analyses::rows_of(&table)
}
