//! Export of the store to a directory of CSV files.
//!
//! Each file is written to a temporary file in the target directory and
//! renamed into place when complete, so a reader never sees half a file.
//! Exporting a store into which a reference data set was imported gives the
//! imported files back byte for byte.

use std::io::Write;
use std::path::{Path, PathBuf};

use model::EntityKind;
use store::{Store, StoreError};

use crate::format::{write_header, write_record};
use crate::import::Progress;

#[derive(Clone, Debug, Default)]
pub struct ExportReport {
    /// Files written, with their number of rows.
    pub files: Vec<(EntityKind, PathBuf, u64)>,
    /// Kinds without records: no file is written, and an older one is removed.
    pub empty: Vec<EntityKind>,
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub fn export(
    store: &dyn Store,
    dir: &Path,
    progress: &dyn Progress,
) -> Result<ExportReport, ExportError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |error| ExportError::Io {
            path: path.clone(),
            error,
        }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let mut report = ExportReport::default();
    for kind in EntityKind::ALL {
        let path = dir.join(kind.file_name());
        let total = store.count(kind)?;
        if total == 0 {
            if path.exists() {
                std::fs::remove_file(&path).map_err(io(&path))?;
            }
            report.empty.push(kind);
            continue;
        }
        progress.stage(&format!("exporting {}", kind.file_name()), total);
        let tmp = dir.join(format!(".{}.partial", kind.file_name()));
        let file = std::fs::File::create(&tmp).map_err(io(&tmp))?;
        let mut writer = std::io::BufWriter::with_capacity(1 << 20, file);
        let mut buf = Vec::with_capacity(1 << 16);
        write_header(kind, &mut buf);
        let mut rows = 0u64;
        for record in store.scan(kind) {
            write_record(&record?, &mut buf);
            rows += 1;
            if buf.len() >= 1 << 16 {
                writer.write_all(&buf).map_err(io(&tmp))?;
                buf.clear();
            }
            if rows.is_multiple_of(65_536) {
                progress.advance(rows, rows);
            }
        }
        writer.write_all(&buf).map_err(io(&tmp))?;
        let file = writer.into_inner().map_err(|e| ExportError::Io {
            path: tmp.clone(),
            error: e.into_error(),
        })?;
        file.sync_all().map_err(io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        progress.advance(rows, rows);
        progress.stage_done();
        report.files.push((kind, path, rows));
    }
    Ok(report)
}
