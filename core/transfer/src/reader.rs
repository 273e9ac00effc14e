//! Reading one CSV file of an import row by row, with exact positions.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use model::{EntityKind, Record};

use crate::format::{FieldError, Layout, columns};

/// Why a file cannot be read at all.
pub(crate) enum OpenError {
    Io(std::io::Error),
    /// Problems of the file as a whole, reported at line 1.
    Header(Vec<String>),
}

impl From<std::io::Error> for OpenError {
    fn from(e: std::io::Error) -> OpenError {
        OpenError::Io(e)
    }
}

pub(crate) struct CsvFile {
    reader: csv::Reader<BufReader<File>>,
    record: csv::ByteRecord,
    layout: Layout,
    header: Vec<String>,
    /// Size and modification time when opened, to notice a file that changes
    /// between the check and the import.
    pub(crate) stamp: (u64, Option<std::time::SystemTime>),
}

impl CsvFile {
    pub(crate) fn open(kind: EntityKind, path: &Path) -> Result<CsvFile, OpenError> {
        let file = File::open(path)?;
        let meta = file.metadata()?;
        let stamp = (meta.len(), meta.modified().ok());
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .buffer_capacity(1 << 20)
            .from_reader(BufReader::with_capacity(1 << 20, file));
        let mut record = csv::ByteRecord::new();
        if !reader.read_byte_record(&mut record).map_err(csv_io)? {
            return Err(OpenError::Header(vec![
                "the file is empty (expected a header row)".into(),
            ]));
        }
        let mut header = Vec::with_capacity(record.len());
        for (i, field) in record.iter().enumerate() {
            let field = if i == 0 {
                field.strip_prefix("\u{feff}".as_bytes()).unwrap_or(field)
            } else {
                field
            };
            match std::str::from_utf8(field) {
                Ok(name) => header.push(name.to_owned()),
                Err(_) => {
                    return Err(OpenError::Header(vec![
                        "the header is not valid UTF-8".into(),
                    ]));
                }
            }
        }
        let names: Vec<&str> = header.iter().map(String::as_str).collect();
        let layout = Layout::from_header(kind, &names).map_err(OpenError::Header)?;
        Ok(CsvFile {
            reader,
            record,
            layout,
            header,
            stamp,
        })
    }

    pub(crate) fn header(&self) -> &[String] {
        &self.header
    }

    /// Reads the next row; `false` at the end of the file.
    pub(crate) fn next_row(&mut self) -> std::io::Result<bool> {
        self.reader
            .read_byte_record(&mut self.record)
            .map_err(|e| match csv_io(e) {
                OpenError::Io(e) => e,
                OpenError::Header(_) => unreachable!("csv_io only makes I/O errors"),
            })
    }

    /// The line the current row starts on (the header is line 1).
    pub(crate) fn line(&self) -> u64 {
        self.record.position().map_or(0, |p| p.line())
    }

    /// Bytes read so far.
    pub(crate) fn offset(&self) -> u64 {
        self.reader.position().byte()
    }

    /// The current row as a record, or every problem found in it.
    pub(crate) fn parse(&self) -> Result<Record, Vec<FieldError>> {
        let width = self.layout.width;
        let column_name = |i: usize| -> &'static str {
            self.header
                .get(i)
                .and_then(|name| columns(self.layout.kind).iter().find(|c| c.name == name))
                .map_or("", |c| c.name)
        };
        if self.record.len() != width {
            return Err(vec![FieldError {
                column: "",
                reason: format!(
                    "has {} fields, the header has {width} (is a quote left open, or a comma unquoted?)",
                    self.record.len()
                ),
            }]);
        }
        let mut fields = Vec::with_capacity(width);
        let mut errors = Vec::new();
        for (i, field) in self.record.iter().enumerate() {
            match std::str::from_utf8(field) {
                Ok(text) if text.contains(['\n', '\r']) => errors.push(FieldError {
                    column: column_name(i),
                    reason: "holds a line break (is a quote left open?)".into(),
                }),
                Ok(text) => fields.push(text),
                Err(e) => errors.push(FieldError {
                    column: column_name(i),
                    reason: format!(
                        "is not valid UTF-8 (byte 0x{:02x} at offset {})",
                        field[e.valid_up_to()],
                        e.valid_up_to()
                    ),
                }),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        self.layout.parse(&fields)
    }

    /// The current row's fields as text, invalid UTF-8 replaced.
    pub(crate) fn raw_fields(&self) -> Vec<String> {
        self.record
            .iter()
            .map(|f| String::from_utf8_lossy(f).into_owned())
            .collect()
    }
}

fn csv_io(e: csv::Error) -> OpenError {
    match e.into_kind() {
        csv::ErrorKind::Io(e) => OpenError::Io(e),
        other => OpenError::Io(std::io::Error::other(format!("{other:?}"))),
    }
}
