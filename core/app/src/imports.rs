//! Imports of CSV directories, as every front end runs them: the rows are
//! checked by the write path's rules (the plugins' field schemas and
//! validate hooks, once per batch of rows; the fields the plugins compute
//! left as stored), imported by `transfer::import`, and the import is
//! audited as one operation naming its actor, with what it did per file.

use std::path::Path;

use plugin_host::Registry;
use store::{Actor, Store};
use transfer::{ImportError, ImportOptions, ImportReport, Progress};

use crate::write::Checks;

/// Imports the files in `dir` (see `transfer::import`) with the rules of
/// the plugins enabled in `registry`, and adds the import's audit entry
/// (`id` names it: the directory, or the API's job), whether it succeeded
/// or was refused.
pub fn import(
    store: &dyn Store,
    registry: &Registry,
    dir: &Path,
    skip_invalid: bool,
    actor: &Actor,
    id: &str,
    progress: &dyn Progress,
) -> Result<ImportReport, ImportError> {
    let checks = Checks::new(registry, store);
    let options = ImportOptions {
        skip_invalid,
        rules: (!checks.is_empty()).then_some(&checks as &dyn transfer::Rules),
    };
    let result = transfer::import(store, dir, &options, progress);
    let after = match &result {
        Ok(report) => serde_json::json!({ "files": files(report) }),
        Err(e) => serde_json::json!({ "refused": e.to_string() }),
    };
    if let Err(e) = store.audit(store::AuditEntry {
        seq: 0,
        at_ms: 0,
        actor: actor.0.clone(),
        action: "import".into(),
        kind: "import".into(),
        id: id.to_owned(),
        revision: None,
        before: None,
        after: Some(after),
    }) {
        tracing::error!(error = %e, "writing the audit log");
    }
    result
}

/// What an import did per file, as its audit entry holds it.
fn files(report: &ImportReport) -> Vec<serde_json::Value> {
    report
        .files
        .iter()
        .map(|f| {
            serde_json::json!({
                "file": f.kind.file_name(), "rows": f.rows, "added": f.added,
                "updated": f.updated, "unchanged": f.unchanged, "rejected": f.rejected,
            })
        })
        .collect()
}
