//! The result of an analysis: named columns and rows of typed values.

use std::borrow::Cow;

use model::{Date, Timestamp};
use serde::Serialize;
use serde::ser::SerializeMap;

/// A value of a result cell.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    /// Exact money in cents, shown with two decimals.
    Money(i64),
    /// A ratio already rounded to the decimals its analysis states.
    Float(f64),
    Text(String),
    Date(Date),
    Timestamp(Timestamp),
}

impl Value {
    /// Text for tables and CSV: money with two decimals, null as empty.
    pub fn text(&self) -> String {
        match self {
            Value::Null => String::new(),
            Value::Int(v) => v.to_string(),
            Value::Money(c) => model::Money::from_cents(*c).to_string(),
            Value::Float(v) => v.to_string(),
            Value::Text(s) => s.clone(),
            Value::Date(d) => d.to_string(),
            Value::Timestamp(t) => t.to_string(),
        }
    }

    pub fn is_number(&self) -> bool {
        matches!(self, Value::Int(_) | Value::Money(_) | Value::Float(_))
    }
}

impl From<i64> for Value {
    fn from(v: i64) -> Value {
        Value::Int(v)
    }
}

impl From<u64> for Value {
    fn from(v: u64) -> Value {
        Value::Int(v as i64)
    }
}

impl From<usize> for Value {
    fn from(v: usize) -> Value {
        Value::Int(v as i64)
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Value {
        Value::Text(v.to_owned())
    }
}

impl From<String> for Value {
    fn from(v: String) -> Value {
        Value::Text(v)
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Value {
        v.map_or(Value::Null, Into::into)
    }
}

/// `x` rounded half away from zero to `decimals` decimals; not a number
/// (a ratio of zero to zero) becomes null.
pub(crate) fn ratio(x: f64, decimals: i32) -> Value {
    if !x.is_finite() {
        return Value::Null;
    }
    let scale = 10f64.powi(decimals);
    Value::Float((x * scale).round() / scale)
}

/// `a / b` rounded, or null when `b` is zero.
pub(crate) fn share(a: f64, b: f64, decimals: i32) -> Value {
    if b == 0.0 {
        Value::Null
    } else {
        ratio(a / b, decimals)
    }
}

/// A table of results.
#[derive(Clone, Debug, PartialEq)]
pub struct Table {
    pub columns: Vec<Cow<'static, str>>,
    pub rows: Vec<Vec<Value>>,
}

impl Table {
    pub fn new(columns: &[&'static str]) -> Table {
        Table {
            columns: columns.iter().map(|c| Cow::Borrowed(*c)).collect(),
            rows: Vec::new(),
        }
    }

    /// A table whose column names are made at run time (a plugin's).
    pub fn with_columns(columns: Vec<String>) -> Table {
        Table {
            columns: columns.into_iter().map(Cow::Owned).collect(),
            rows: Vec::new(),
        }
    }

    pub fn push(&mut self, row: Vec<Value>) {
        debug_assert_eq!(row.len(), self.columns.len(), "a row of {:?}", self.columns);
        self.rows.push(row);
    }

    /// The value in `column` of row `row`.
    pub fn get(&self, row: usize, column: &str) -> &Value {
        let i = self
            .columns
            .iter()
            .position(|c| *c == column)
            .unwrap_or_else(|| panic!("no column {column}"));
        &self.rows[row][i]
    }

    /// Rows as `{column: value}` objects, the shape of the reference results.
    pub fn records(&self) -> Vec<Record<'_>> {
        self.rows
            .iter()
            .map(|row| Record {
                columns: &self.columns,
                row,
            })
            .collect()
    }

    /// CSV with a header row (RFC 4180 quoting).
    pub fn to_csv(&self) -> String {
        let mut out = String::new();
        let quote = |s: &str| {
            if s.contains([',', '"', '\n', '\r']) {
                format!("\"{}\"", s.replace('"', "\"\""))
            } else {
                s.to_owned()
            }
        };
        out.push_str(
            &self
                .columns
                .iter()
                .map(|c| quote(c))
                .collect::<Vec<_>>()
                .join(","),
        );
        out.push('\n');
        for row in &self.rows {
            out.push_str(
                &row.iter()
                    .map(|v| quote(&v.text()))
                    .collect::<Vec<_>>()
                    .join(","),
            );
            out.push('\n');
        }
        out
    }

    /// Aligned columns for a terminal: numbers right-aligned.
    pub fn to_text(&self) -> String {
        let cells: Vec<Vec<String>> = self
            .rows
            .iter()
            .map(|r| r.iter().map(Value::text).collect())
            .collect();
        let width = |i: usize| {
            cells
                .iter()
                .map(|r| r[i].chars().count())
                .chain([self.columns[i].chars().count()])
                .max()
                .unwrap_or(0)
        };
        let widths: Vec<usize> = (0..self.columns.len()).map(width).collect();
        let numeric: Vec<bool> = (0..self.columns.len())
            .map(|i| {
                self.rows.iter().any(|r| r[i].is_number())
                    && self
                        .rows
                        .iter()
                        .all(|r| r[i].is_number() || r[i] == Value::Null)
            })
            .collect();
        let line = |values: Vec<String>| {
            let mut parts = Vec::new();
            for (i, v) in values.iter().enumerate() {
                let pad = widths[i].saturating_sub(v.chars().count());
                parts.push(if numeric[i] {
                    format!("{}{v}", " ".repeat(pad))
                } else {
                    format!("{v}{}", " ".repeat(pad))
                });
            }
            parts.join("  ").trim_end().to_owned()
        };
        let mut out = vec![line(self.columns.iter().map(|c| c.to_string()).collect())];
        out.push(line(widths.iter().map(|w| "-".repeat(*w)).collect()));
        out.extend(cells.into_iter().map(line));
        out.join("\n") + "\n"
    }
}

/// One row as an object.
pub struct Record<'a> {
    columns: &'a [Cow<'static, str>],
    row: &'a [Value],
}

impl Serialize for Record<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.columns.len()))?;
        for (column, value) in self.columns.iter().zip(self.row) {
            map.serialize_entry(column.as_ref(), value)?;
        }
        map.end()
    }
}

impl Serialize for Value {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Value::Null => serializer.serialize_none(),
            Value::Int(v) => serializer.serialize_i64(*v),
            Value::Money(c) => serializer.serialize_f64(*c as f64 / 100.0),
            Value::Float(v) => serializer.serialize_f64(*v),
            Value::Text(s) => serializer.serialize_str(s),
            Value::Date(d) => d.serialize(serializer),
            Value::Timestamp(t) => t.serialize(serializer),
        }
    }
}

impl Serialize for Table {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.records().serialize(serializer)
    }
}
