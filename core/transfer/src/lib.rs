//! Moving records in and out of the CRM as CSV files: bulk import and export.
//!
//! The file format is the one of the reference data set (see `format`). An
//! import validates everything before it changes anything; an export gives
//! back exactly what was imported.

mod dupes;
mod export;
pub mod format;
mod import;
mod reader;

pub use export::{ExportError, ExportReport, export};
pub use import::{
    FileReport, ImportError, ImportOptions, ImportReport, MAX_LISTED_PROBLEMS, Progress, Rules,
    Silent, import,
};
