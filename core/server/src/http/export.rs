//! Export of any kind of record as CSV, in the import format, streamed
//! from a store scan (also used by the customer list's CSV download).

use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use model::EntityKind;
use schemars::JsonSchema;
use serde::Deserialize;
use store::Store;

use super::READERS;
use super::problem::{Csv, Path, Problem};
use super::{AppState, Caller, require};

#[derive(Deserialize, JsonSchema)]
pub(crate) struct KindPath {
    /// customers, products, campaigns, transactions or interactions.
    pub kind: String,
}

/// `GET /api/v1/export/{kind}`: every record of a kind as CSV, in the
/// import format, streamed.
pub(crate) async fn export(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Caller>,
    Path(KindPath { kind }): Path<KindPath>,
) -> Result<Csv, Problem> {
    require(&caller, READERS, "export")?;
    let kind = EntityKind::ALL
        .into_iter()
        .find(|k| k.plural() == kind || k.file_name() == kind)
        .ok_or_else(|| {
            Problem::not_found(format!(
                "no kind '{kind}'; export customers, products, campaigns, transactions or interactions"
            ))
        })?;
    let body = csv_body(kind, Arc::clone(&state.store), move |store| {
        Box::new(store.scan(kind).map(|r| r.map(Some)))
    });
    Ok(Csv {
        file: kind.file_name().to_owned(),
        body,
    })
}

/// What a CSV export reads: records, or `None` for one gone meanwhile.
pub(crate) type Records<'a> =
    Box<dyn Iterator<Item = Result<Option<model::Record>, store::StoreError>> + 'a>;

/// The records `records` reads from `store` (on a blocking thread) as a
/// CSV body of `kind` in the import format, streamed in chunks of 64 KiB;
/// records gone meanwhile are left out, an error ends the body.
pub(crate) fn csv_body<F>(kind: EntityKind, store: Arc<dyn Store>, records: F) -> axum::body::Body
where
    F: for<'a> FnOnce(&'a dyn Store) -> Records<'a> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(8);
    tokio::task::spawn_blocking(move || {
        let mut chunk = Vec::with_capacity(1 << 16);
        transfer::format::write_header(kind, &mut chunk);
        for record in records(&*store) {
            match record {
                Ok(Some(r)) => transfer::format::write_record(&r, &mut chunk),
                Ok(None) => continue,
                Err(e) => {
                    let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
                    return;
                }
            }
            if chunk.len() >= 1 << 16 {
                if tx.blocking_send(Ok(std::mem::take(&mut chunk))).is_err() {
                    return;
                }
                chunk.reserve(1 << 16);
            }
        }
        let _ = tx.blocking_send(Ok(chunk));
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    axum::body::Body::from_stream(stream)
}
