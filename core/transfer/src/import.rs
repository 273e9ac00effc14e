//! Bulk import of a directory of CSV files.
//!
//! An import reads every file twice. The check pass parses and validates
//! every row (types, vocabularies, dates, money, the rules between fields,
//! references to customers, products and campaigns in the store or in the
//! same import, ids repeated within a file) and changes nothing. Only when
//! every file is valid, or with `skip_invalid`, does the apply pass read the
//! files again and upsert their rows in batches, in dependency order. So a
//! file with an invalid row changes nothing, and importing the same files
//! twice leaves the store as it was (records are upserted by id).
//!
//! Memory does not grow with the size of the files: rows stream through,
//! and what is kept is the ids of customers, products and campaigns (needed
//! to check references) and, only for line files whose ids are not in
//! increasing order, 16 bytes per line spilled to disk in bounded runs.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use model::{EntityKind, Record};
use store::{Store, StoreError, UpsertCounts};

use crate::dupes::DuplicateFinder;
use crate::format::{FieldError, references};
use crate::reader::{CsvFile, OpenError};

/// Problems listed in an error before the rest are only counted.
pub const MAX_LISTED_PROBLEMS: usize = 100;

#[derive(Clone, Copy, Default)]
pub struct ImportOptions<'a> {
    /// Import the valid rows and write the invalid ones, with their problems,
    /// to `<file>.rejected.csv` beside each input file.
    pub skip_invalid: bool,
    /// Rules beyond the core's, checked on every row that passes them: the
    /// custom fields and validate hooks of the enabled industry plugins.
    pub rules: Option<&'a dyn Rules>,
}

/// Rules records must follow beyond the core's own, such as the JSON
/// Schemas of industry plugins' custom fields and their validate hooks,
/// given a batch of records at a time (so that a plugin is called once per
/// batch, not per row).
pub trait Rules: Sync {
    /// Checks records of one kind and makes the changes the rules make to
    /// them (a plugin's patches to its own fields): the problems of each
    /// record, in order, each naming its column. The check pass reports
    /// them; the apply pass stores the records as changed.
    fn apply(&self, records: &mut [Record]) -> Vec<Vec<FieldError>>;
}

/// Rows checked against the rules together.
const RULES_BATCH: usize = 1000;

/// Receives progress as an import reads its files.
pub trait Progress: Sync {
    /// A new stage begins, e.g. "checking customers.csv", over `total_bytes`.
    fn stage(&self, label: &str, total_bytes: u64);
    /// Bytes and rows done in the current stage.
    fn advance(&self, bytes_done: u64, rows_done: u64);
    fn stage_done(&self);
}

/// Progress that goes nowhere.
pub struct Silent;

impl Progress for Silent {
    fn stage(&self, _: &str, _: u64) {}
    fn advance(&self, _: u64, _: u64) {}
    fn stage_done(&self) {}
}

/// What an import did with one file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileReport {
    pub kind: EntityKind,
    pub path: PathBuf,
    pub rows: u64,
    pub added: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub rejected: u64,
    /// Where the rejected rows were written, if any were.
    pub rejected_file: Option<PathBuf>,
}

#[derive(Clone, Debug, Default)]
pub struct ImportReport {
    pub files: Vec<FileReport>,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(
        "{dir} holds none of customers.csv, products.csv, campaigns.csv, transactions.csv, interactions.csv"
    )]
    NoFiles { dir: PathBuf },
    #[error("{}", invalid_message(problems, *total, *rows))]
    Invalid {
        /// The first problems, each `file:line: column: reason`.
        problems: Vec<String>,
        /// Problems in all.
        total: u64,
        /// Rows with a problem.
        rows: u64,
    },
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error(
        "{path} changed while it was being imported; nothing more was imported from it, run the import again"
    )]
    Changed { path: PathBuf },
    #[error(
        "a plugin refused, while the import was written, rows it accepted when they were checked; \
         the rows before them are imported, run the import again:\n{}",
        problems.join("\n")
    )]
    Refused { problems: Vec<String> },
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn invalid_message(problems: &[String], total: u64, rows: u64) -> String {
    let mut text = format!(
        "the import was refused and nothing was changed: {total} problem{} in {rows} row{}\n",
        if total == 1 { "" } else { "s" },
        if rows == 1 { "" } else { "s" },
    );
    for p in problems {
        text.push_str(p);
        text.push('\n');
    }
    if total > problems.len() as u64 {
        text.push_str(&format!("... and {} more\n", total - problems.len() as u64));
    }
    text.push_str("(fix the files, or import the valid rows with --skip-invalid)");
    text
}

/// Imports whichever of the five files are in `dir`.
pub fn import(
    store: &dyn Store,
    dir: &Path,
    options: &ImportOptions,
    progress: &dyn Progress,
) -> Result<ImportReport, ImportError> {
    let files: Vec<(EntityKind, PathBuf)> = EntityKind::ALL
        .into_iter()
        .map(|kind| (kind, dir.join(kind.file_name())))
        .filter(|(_, path)| path.is_file())
        .collect();
    if files.is_empty() {
        return Err(ImportError::NoFiles {
            dir: dir.to_path_buf(),
        });
    }

    let mut known = Known::new(store);
    let mut problems = Problems::default();
    let mut checked = Vec::new();
    for (kind, path) in &files {
        checked.push(check_file(
            *kind,
            path,
            &mut known,
            &mut problems,
            options,
            progress,
        )?);
    }
    if problems.total > 0 && !options.skip_invalid {
        return Err(ImportError::Invalid {
            problems: problems.listed,
            total: problems.total,
            rows: problems.rows,
        });
    }
    drop(known);

    let mut report = ImportReport::default();
    for ((kind, path), checked) in files.iter().zip(checked) {
        let counts = apply_file(store, *kind, path, &checked, options.rules, progress)?;
        report.files.push(FileReport {
            kind: *kind,
            path: path.clone(),
            rows: checked.rows,
            added: counts.added,
            updated: counts.updated,
            unchanged: counts.unchanged,
            rejected: checked.rejected_lines.len() as u64,
            rejected_file: checked.rejected_file,
        });
    }
    store.flush()?;
    Ok(report)
}

/// The problems of the check pass: the first ones in full, then counts.
#[derive(Default)]
struct Problems {
    listed: Vec<String>,
    total: u64,
    rows: u64,
}

impl Problems {
    fn add_row(&mut self, path: &Path, line: u64, errors: &[FieldError]) {
        self.rows += 1;
        for error in errors {
            self.total += 1;
            if self.listed.len() < MAX_LISTED_PROBLEMS {
                let column = if error.column.is_empty() {
                    String::new()
                } else {
                    format!("{}: ", error.column)
                };
                self.listed.push(format!(
                    "{}:{line}: {column}{}",
                    path.display(),
                    error.reason
                ));
            }
        }
    }
}

/// Ids that exist: in the store, or among the valid rows checked so far.
struct Known<'s> {
    store: &'s dyn Store,
    /// Ids of the import's valid customers, products and campaigns, with
    /// the line where each appeared.
    imported: HashMap<EntityKind, HashMap<Box<str>, u64>>,
    /// Answers of the store, bounded in size.
    in_store: HashMap<(EntityKind, Box<str>), bool>,
}

const STORE_CACHE: usize = 1 << 16;

impl<'s> Known<'s> {
    fn new(store: &'s dyn Store) -> Known<'s> {
        Known {
            store,
            imported: HashMap::new(),
            in_store: HashMap::new(),
        }
    }

    fn imported_line(&self, kind: EntityKind, id: &str) -> Option<u64> {
        self.imported
            .get(&kind)
            .and_then(|ids| ids.get(id))
            .copied()
    }

    fn exists(&mut self, kind: EntityKind, id: &str) -> Result<bool, StoreError> {
        if self.imported_line(kind, id).is_some() {
            return Ok(true);
        }
        if let Some(&found) = self.in_store.get(&(kind, id.into())) {
            return Ok(found);
        }
        let found = self.store.contains(kind, id)?;
        if self.in_store.len() >= STORE_CACHE {
            self.in_store.clear();
        }
        self.in_store.insert((kind, id.into()), found);
        Ok(found)
    }
}

/// What the check pass learned about a file.
struct Checked {
    rows: u64,
    /// Lines not to import, in increasing order.
    rejected_lines: Vec<u64>,
    rejected_file: Option<PathBuf>,
    stamp: (u64, Option<std::time::SystemTime>),
}

fn io_error(path: &Path) -> impl Fn(std::io::Error) -> ImportError + '_ {
    move |error| ImportError::Io {
        path: path.to_path_buf(),
        error,
    }
}

fn open(
    kind: EntityKind,
    path: &Path,
    problems: &mut Problems,
) -> Result<Option<CsvFile>, ImportError> {
    match CsvFile::open(kind, path) {
        Ok(file) => Ok(Some(file)),
        Err(OpenError::Io(error)) => Err(ImportError::Io {
            path: path.to_path_buf(),
            error,
        }),
        Err(OpenError::Header(reasons)) => {
            let errors: Vec<FieldError> = reasons
                .into_iter()
                .map(|reason| FieldError { column: "", reason })
                .collect();
            problems.add_row(path, 1, &errors);
            Ok(None)
        }
    }
}

fn check_file(
    kind: EntityKind,
    path: &Path,
    known: &mut Known<'_>,
    problems: &mut Problems,
    options: &ImportOptions,
    progress: &dyn Progress,
) -> Result<Checked, ImportError> {
    let io = io_error(path);
    let rejected_path = rejected_path(path);
    if options.skip_invalid && rejected_path.exists() {
        std::fs::remove_file(&rejected_path).map_err(io_error(&rejected_path))?;
    }
    let Some(mut file) = open(kind, path, problems)? else {
        if options.skip_invalid {
            // Without a usable header no row can be read: nothing is skipped
            // quietly, the import as a whole is refused.
            return Err(ImportError::Invalid {
                problems: std::mem::take(&mut problems.listed),
                total: problems.total,
                rows: problems.rows,
            });
        }
        return Ok(Checked {
            rows: 0,
            rejected_lines: Vec::new(),
            rejected_file: None,
            stamp: (0, None),
        });
    };
    progress.stage(&format!("checking {}", file_name(path)), file.stamp.0);
    let mut rejected = Rejected::new(rejected_path, file.header(), options.skip_invalid);
    let mut rows = 0u64;
    let mut dupes = matches!(kind, EntityKind::Transaction | EntityKind::Interaction)
        .then(DuplicateFinder::new);
    let mut waiting: Vec<Waiting> = Vec::new();
    let rules = options.rules;
    while file.next_row().map_err(&io)? {
        rows += 1;
        let line = file.line();
        let outcome = match file.parse() {
            Ok(record) => {
                let errors = check_record(kind, &record, known)?;
                if errors.is_empty() {
                    Ok(record)
                } else {
                    Err(errors)
                }
            }
            Err(errors) => Err(errors),
        };
        if let Ok(record) = &outcome {
            if let Some(dupes) = &mut dupes {
                dupes.add(record.id(), line).map_err(&io)?;
            } else {
                known
                    .imported
                    .entry(kind)
                    .or_default()
                    .insert(record.id().into(), line);
            }
        }
        if rules.is_some() {
            let fields = if options.skip_invalid {
                file.raw_fields()
            } else {
                Vec::new()
            };
            waiting.push((line, outcome, fields));
            if waiting.len() == RULES_BATCH {
                check_rules(
                    kind,
                    path,
                    rules,
                    &mut waiting,
                    known,
                    problems,
                    &mut rejected,
                )?;
            }
        } else if let Err(errors) = outcome {
            problems.add_row(path, line, &errors);
            rejected
                .add(line, &errors, &file.raw_fields())
                .map_err(io_error(&rejected.path))?;
        }
        if rows.is_multiple_of(4096) {
            progress.advance(file.offset(), rows);
        }
    }
    check_rules(
        kind,
        path,
        rules,
        &mut waiting,
        known,
        problems,
        &mut rejected,
    )?;
    if rows == 0 {
        problems.add_row(
            path,
            1,
            &[FieldError {
                column: "",
                reason: "the file has a header but no rows".into(),
            }],
        );
    }
    if let Some(dupes) = dupes {
        let groups = dupes.finish().map_err(&io)?;
        if !groups.is_empty() {
            report_duplicates(kind, path, groups, problems, &mut rejected)?;
        }
    }
    progress.advance(file.offset(), rows);
    progress.stage_done();
    let (rejected_lines, rejected_file) = rejected.finish().map_err(io_error(path))?;
    Ok(Checked {
        rows,
        rejected_lines,
        rejected_file,
        stamp: file.stamp,
    })
}

/// A row waiting for the rules, in order: its line, its record or its
/// problems, and (to write it aside if it is refused) its fields.
type Waiting = (u64, Result<Record, Vec<FieldError>>, Vec<String>);

/// Checks the rows waiting against the rules (one call for them all) and
/// reports the refused ones, in order with the rows refused before. A row
/// the rules refuse is no longer known to the import (lines naming it are
/// then refused too).
fn check_rules(
    kind: EntityKind,
    path: &Path,
    rules: Option<&dyn Rules>,
    waiting: &mut Vec<Waiting>,
    known: &mut Known<'_>,
    problems: &mut Problems,
    rejected: &mut Rejected,
) -> Result<(), ImportError> {
    let Some(rules) = rules else {
        return Ok(());
    };
    let rows = std::mem::take(waiting);
    let mut records: Vec<Record> = rows
        .iter()
        .filter_map(|(_, outcome, _)| outcome.as_ref().ok().cloned())
        .collect();
    let mut verdicts = rules.apply(&mut records).into_iter();
    for (line, outcome, fields) in rows {
        let errors = match outcome {
            Ok(record) => {
                let errors = verdicts.next().unwrap_or_default();
                if !errors.is_empty()
                    && let Some(ids) = known.imported.get_mut(&kind)
                    && ids.get(record.id()) == Some(&line)
                {
                    ids.remove(record.id());
                }
                errors
            }
            Err(errors) => errors,
        };
        if !errors.is_empty() {
            problems.add_row(path, line, &errors);
            rejected
                .add(line, &errors, &fields)
                .map_err(io_error(&rejected.path))?;
        }
    }
    Ok(())
}

/// What a single row cannot show: references, and ids repeated in the file
/// (for customers, products and campaigns; line files are checked at the end).
fn check_record(
    kind: EntityKind,
    record: &Record,
    known: &mut Known<'_>,
) -> Result<Vec<FieldError>, StoreError> {
    let mut errors = Vec::new();
    if let Some(first) = known.imported_line(kind, record.id()) {
        errors.push(FieldError {
            column: id_column(kind),
            reason: format!("'{}' appears again (first on line {first})", record.id()),
        });
    }
    for (column, target, id) in references(record) {
        if !known.exists(target, id)? {
            errors.push(FieldError {
                column,
                reason: format!(
                    "no {target} '{id}' in the store or in {}",
                    target.file_name()
                ),
            });
        }
    }
    Ok(errors)
}

fn id_column(kind: EntityKind) -> &'static str {
    crate::format::columns(kind)[0].name
}

/// Reads the candidate lines again and reports those that repeat an id.
fn report_duplicates(
    kind: EntityKind,
    path: &Path,
    groups: Vec<Vec<u64>>,
    problems: &mut Problems,
    rejected: &mut Rejected,
) -> Result<(), ImportError> {
    let io = io_error(path);
    let wanted: HashSet<u64> = groups.iter().flatten().copied().collect();
    let mut ids: HashMap<u64, (String, Vec<String>)> = HashMap::new();
    let Some(mut file) = open(kind, path, &mut Problems::default())? else {
        return Err(ImportError::Changed {
            path: path.to_path_buf(),
        });
    };
    while file.next_row().map_err(&io)? {
        let line = file.line();
        if wanted.contains(&line) {
            let fields = file.raw_fields();
            ids.insert(line, (fields[0].clone(), fields));
        }
    }
    let mut repeats: Vec<(u64, u64)> = Vec::new();
    for group in groups {
        let mut first_of: HashMap<&str, u64> = HashMap::new();
        for line in &group {
            let Some((id, _)) = ids.get(line) else {
                continue;
            };
            match first_of.get(id.as_str()) {
                Some(&first) => repeats.push((*line, first)),
                None => {
                    first_of.insert(id, *line);
                }
            }
        }
    }
    repeats.sort_unstable();
    for (line, first) in repeats {
        let (id, fields) = &ids[&line];
        let errors = [FieldError {
            column: id_column(kind),
            reason: format!("'{id}' appears again (first on line {first})"),
        }];
        problems.add_row(path, line, &errors);
        rejected
            .add(line, &errors, fields)
            .map_err(io_error(&rejected.path))?;
    }
    Ok(())
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// `dir/transactions.csv` -> `dir/transactions.rejected.csv`.
fn rejected_path(path: &Path) -> PathBuf {
    let stem = path
        .file_stem()
        .map_or_else(String::new, |s| s.to_string_lossy().into_owned());
    path.with_file_name(format!("{stem}.rejected.csv"))
}

/// The rejected rows of a file, written beside it when skipping invalid rows.
struct Rejected {
    path: PathBuf,
    header: Vec<String>,
    writer: Option<std::io::BufWriter<std::fs::File>>,
    enabled: bool,
    lines: Vec<u64>,
}

impl Rejected {
    fn new(path: PathBuf, header: &[String], enabled: bool) -> Rejected {
        Rejected {
            path,
            header: header.to_vec(),
            writer: None,
            enabled,
            lines: Vec::new(),
        }
    }

    fn add(&mut self, line: u64, errors: &[FieldError], fields: &[String]) -> std::io::Result<()> {
        self.lines.push(line);
        if !self.enabled {
            return Ok(());
        }
        if self.writer.is_none() {
            let mut writer = std::io::BufWriter::new(std::fs::File::create(&self.path)?);
            let mut head = vec!["line".to_owned(), "problems".to_owned()];
            head.extend(self.header.iter().cloned());
            write_csv_line(&mut writer, &head)?;
            self.writer = Some(writer);
        }
        let reasons: Vec<String> = errors
            .iter()
            .map(|e| {
                if e.column.is_empty() {
                    e.reason.clone()
                } else {
                    format!("{}: {}", e.column, e.reason)
                }
            })
            .collect();
        let mut row = vec![line.to_string(), reasons.join("; ")];
        row.extend(fields.iter().cloned());
        write_csv_line(self.writer.as_mut().expect("created above"), &row)
    }

    fn finish(mut self) -> std::io::Result<(Vec<u64>, Option<PathBuf>)> {
        self.lines.sort_unstable();
        self.lines.dedup();
        match self.writer.take() {
            Some(mut writer) => {
                writer.flush()?;
                Ok((self.lines, Some(self.path)))
            }
            None => Ok((self.lines, None)),
        }
    }
}

fn write_csv_line(out: &mut impl Write, fields: &[String]) -> std::io::Result<()> {
    let mut line = String::new();
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            line.push(',');
        }
        if field.contains([',', '"', '\n', '\r']) {
            line.push('"');
            line.push_str(&field.replace('"', "\"\""));
            line.push('"');
        } else {
            line.push_str(field);
        }
    }
    line.push('\n');
    out.write_all(line.as_bytes())
}

/// Rows per upsert: keyed records are one key each; lines share blocks.
fn batch_len(kind: EntityKind) -> usize {
    match kind {
        EntityKind::Transaction | EntityKind::Interaction => 4096,
        _ => 1000,
    }
}

fn apply_file(
    store: &dyn Store,
    kind: EntityKind,
    path: &Path,
    checked: &Checked,
    rules: Option<&dyn Rules>,
    progress: &dyn Progress,
) -> Result<UpsertCounts, ImportError> {
    let io = io_error(path);
    let changed = || ImportError::Changed {
        path: path.to_path_buf(),
    };
    let mut file = match CsvFile::open(kind, path) {
        Ok(file) => file,
        Err(OpenError::Io(error)) => {
            return Err(ImportError::Io {
                path: path.to_path_buf(),
                error,
            });
        }
        Err(OpenError::Header(_)) => return Err(changed()),
    };
    if file.stamp != checked.stamp {
        return Err(changed());
    }
    progress.stage(&format!("importing {}", file_name(path)), file.stamp.0);
    let batch_len = batch_len(kind);
    // Parsing runs on its own thread while the store writes the previous batch.
    let (sender, receiver) = mpsc::sync_channel::<(Vec<Record>, u64, u64)>(2);
    let mut counts = UpsertCounts::default();
    std::thread::scope(|scope| -> Result<(), ImportError> {
        let reader = scope.spawn(move || -> Result<(), ImportError> {
            let mut skip = checked.rejected_lines.iter().peekable();
            let mut batch = Vec::with_capacity(batch_len);
            let mut lines = Vec::with_capacity(batch_len);
            let mut rows = 0u64;
            // The rules change records as they did in the check pass (a
            // plugin's patches), on this thread, while the store writes.
            let ruled = |batch: &mut Vec<Record>, lines: &mut Vec<u64>| {
                let Some(rules) = rules else {
                    return Ok(());
                };
                let verdicts = rules.apply(batch);
                let mut refused = Problems::default();
                for (line, errors) in lines.drain(..).zip(verdicts) {
                    if !errors.is_empty() {
                        refused.add_row(path, line, &errors);
                    }
                }
                lines.clear();
                if refused.total == 0 {
                    return Ok(());
                }
                Err(ImportError::Refused {
                    problems: refused.listed,
                })
            };
            while file.next_row().map_err(&io)? {
                rows += 1;
                let line = file.line();
                while skip.next_if(|&&l| l < line).is_some() {}
                if skip.next_if(|&&l| l == line).is_some() {
                    continue;
                }
                batch.push(file.parse().map_err(|_| changed())?);
                lines.push(line);
                if batch.len() == batch_len {
                    ruled(&mut batch, &mut lines)?;
                    let full = std::mem::replace(&mut batch, Vec::with_capacity(batch_len));
                    if sender.send((full, file.offset(), rows)).is_err() {
                        return Ok(());
                    }
                }
            }
            if rows != checked.rows {
                return Err(changed());
            }
            ruled(&mut batch, &mut lines)?;
            let _ = sender.send((batch, file.offset(), rows));
            Ok(())
        });
        let mut result = Ok(());
        for (batch, offset, rows) in receiver.iter() {
            match store.upsert(batch) {
                Ok(c) => counts += c,
                Err(e) => {
                    result = Err(ImportError::Store(e));
                    break;
                }
            }
            progress.advance(offset, rows);
        }
        drop(receiver);
        let read = reader.join().expect("the reader thread does not panic");
        result.and(read)
    })?;
    progress.stage_done();
    Ok(counts)
}

impl fmt::Display for FileReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:<13} {:>10} rows: {:>10} added, {:>10} updated, {:>10} unchanged, {:>8} rejected",
            self.kind.plural(),
            self.rows,
            self.added,
            self.updated,
            self.unchanged,
            self.rejected
        )
    }
}
