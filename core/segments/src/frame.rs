//! The values segments read, as columns over the snapshot's customer rows:
//! only the fields some segment reads are filled. Built on both cores;
//! rows can be refreshed one by one when customers change.

use std::collections::HashMap;

use analysis::snapshot::{NO_DAY, NONE};
use analysis::{Context, Parts, Scope, Snapshot, customer_metrics_of};
use model::{AcquisitionChannel, Gender};
use rayon::prelude::*;
use rhai::{Dynamic, ImmutableString};
use serde_json::Value as Json;

use crate::catalog::{Catalog, Field, Source, Ty};

/// Rows per unit of parallel work.
const CHUNK: usize = 4096;

/// One field's values by row; absent values are `i64::MIN`, NaN, `NONE`
/// and 2 respectively.
#[derive(Clone, Debug)]
pub enum Column {
    Int(Vec<i64>),
    Float(Vec<f64>),
    /// Codes into `dict`.
    Text {
        codes: Vec<u32>,
        dict: Vec<ImmutableString>,
        index: HashMap<ImmutableString, u32>,
    },
    Bool(Vec<u8>),
}

pub(crate) const NO_INT: i64 = i64::MIN;
const NO_BOOL: u8 = 2;

/// A value read from a column.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Missing,
    Int(i64),
    Float(f64),
    Text(ImmutableString),
    Bool(bool),
}

impl Value {
    pub fn to_json(&self, ty: Ty) -> Json {
        match self {
            Value::Missing => Json::Null,
            Value::Int(v) if ty == Ty::Day => {
                Json::String(model::Date::from_days(*v as i32).to_string())
            }
            Value::Int(v) => Json::from(*v),
            Value::Float(v) => serde_json::Number::from_f64(*v).map_or(Json::Null, Json::Number),
            Value::Text(s) => Json::String(s.to_string()),
            Value::Bool(b) => Json::Bool(*b),
        }
    }
}

impl Column {
    fn empty(ty: Ty) -> Column {
        match ty {
            Ty::Int | Ty::Day => Column::Int(Vec::new()),
            Ty::Float => Column::Float(Vec::new()),
            Ty::Text => Column::Text {
                codes: Vec::new(),
                dict: Vec::new(),
                index: HashMap::new(),
            },
            Ty::Bool => Column::Bool(Vec::new()),
        }
    }

    pub fn get(&self, row: u32) -> Value {
        let i = row as usize;
        match self {
            Column::Int(v) => match v.get(i) {
                Some(&x) if x != NO_INT => Value::Int(x),
                _ => Value::Missing,
            },
            Column::Float(v) => match v.get(i) {
                Some(&x) if !x.is_nan() => Value::Float(x),
                _ => Value::Missing,
            },
            Column::Text { codes, dict, .. } => match codes.get(i) {
                Some(&c) if c != NONE => Value::Text(dict[c as usize].clone()),
                _ => Value::Missing,
            },
            Column::Bool(v) => match v.get(i) {
                Some(&b) if b != NO_BOOL => Value::Bool(b == 1),
                _ => Value::Missing,
            },
        }
    }

    pub fn dynamic(&self, row: u32) -> Dynamic {
        let i = row as usize;
        match self {
            Column::Int(v) => match v.get(i) {
                Some(&x) if x != NO_INT => Dynamic::from_int(x),
                _ => Dynamic::UNIT,
            },
            Column::Float(v) => match v.get(i) {
                Some(&x) if !x.is_nan() => Dynamic::from_float(x),
                _ => Dynamic::UNIT,
            },
            Column::Text { codes, dict, .. } => match codes.get(i) {
                Some(&c) if c != NONE => Dynamic::from(dict[c as usize].clone()),
                _ => Dynamic::UNIT,
            },
            Column::Bool(v) => match v.get(i) {
                Some(&b) if b != NO_BOOL => Dynamic::from_bool(b == 1),
                _ => Dynamic::UNIT,
            },
        }
    }

    /// Sets row `row` (growing the column as needed).
    fn set(&mut self, row: usize, value: Value) {
        fn grow<T: Clone>(v: &mut Vec<T>, row: usize, fill: T) {
            if v.len() <= row {
                v.resize(row + 1, fill);
            }
        }
        match self {
            Column::Int(v) => {
                grow(v, row, NO_INT);
                v[row] = match value {
                    Value::Int(x) => x,
                    _ => NO_INT,
                };
            }
            Column::Float(v) => {
                grow(v, row, f64::NAN);
                v[row] = match value {
                    Value::Float(x) => x,
                    Value::Int(x) => x as f64,
                    _ => f64::NAN,
                };
            }
            Column::Text { codes, dict, index } => {
                grow(codes, row, NONE);
                codes[row] = match value {
                    Value::Text(s) => *index.entry(s.clone()).or_insert_with(|| {
                        dict.push(s);
                        (dict.len() - 1) as u32
                    }),
                    _ => NONE,
                };
            }
            Column::Bool(v) => {
                grow(v, row, NO_BOOL);
                v[row] = match value {
                    Value::Bool(b) => b as u8,
                    _ => NO_BOOL,
                };
            }
        }
    }

    /// Appends one value.
    fn push(&mut self, value: Value) {
        let row = self.len();
        self.set(row, value);
    }

    /// Appends a text value without allocating for values seen before.
    fn push_text(&mut self, value: &str) {
        match self {
            Column::Text { codes, dict, index } => {
                let code = match index.get(value) {
                    Some(&code) => code,
                    None => {
                        let s = ImmutableString::from(value);
                        dict.push(s.clone());
                        index.insert(s, (dict.len() - 1) as u32);
                        (dict.len() - 1) as u32
                    }
                };
                codes.push(code);
            }
            other => other.push(Value::Missing),
        }
    }

    /// Appends another column of the same type.
    fn append(&mut self, other: Column) {
        match (self, other) {
            (Column::Int(a), Column::Int(b)) => a.extend(b),
            (Column::Float(a), Column::Float(b)) => a.extend(b),
            (Column::Bool(a), Column::Bool(b)) => a.extend(b),
            (this @ Column::Text { .. }, Column::Text { codes, dict, .. }) => {
                let Column::Text {
                    codes: to_codes,
                    dict: to_dict,
                    index,
                } = this
                else {
                    unreachable!("matched above")
                };
                let map: Vec<u32> = dict
                    .into_iter()
                    .map(|s| {
                        *index.entry(s.clone()).or_insert_with(|| {
                            to_dict.push(s);
                            (to_dict.len() - 1) as u32
                        })
                    })
                    .collect();
                to_codes.extend(
                    codes
                        .into_iter()
                        .map(|c| if c == NONE { NONE } else { map[c as usize] }),
                );
            }
            (this, other) => {
                for r in 0..other.len() {
                    this.push(other.get(r as u32));
                }
            }
        }
    }

    /// Appends the values of one chunk, in row order.
    fn extend(&mut self, values: Vec<Value>) {
        let start = self.len();
        for (k, v) in values.into_iter().enumerate() {
            self.set(start + k, v);
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Column::Int(v) => v.len(),
            Column::Float(v) => v.len(),
            Column::Text { codes, .. } => codes.len(),
            Column::Bool(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Values that do not come from the snapshot: plugin scores. Given the
/// fields (all of `Source::Score`) and the rows, returns one column of
/// values per field, in row order.
pub trait Extra: Sync {
    fn values(&self, fields: &[&Field], rows: &[u32]) -> Result<Vec<Vec<Value>>, String>;
}

/// No plugin scores.
pub struct NoExtra;

impl Extra for NoExtra {
    fn values(&self, fields: &[&Field], _rows: &[u32]) -> Result<Vec<Vec<Value>>, String> {
        match fields.first() {
            None => Ok(Vec::new()),
            Some(f) => Err(format!("no plugin provides the score {}", f.name)),
        }
    }
}

/// Columns for the catalog fields that are needed, by catalog index.
#[derive(Clone, Debug)]
pub struct Frame {
    pub rows: usize,
    pub columns: Vec<Option<Column>>,
    /// The as-of day the values were computed for.
    pub as_of: Option<i64>,
}

impl Frame {
    pub fn column(&self, field: usize) -> Option<&Column> {
        self.columns.get(field).and_then(Option::as_ref)
    }

    /// Builds the columns `needed` (catalog indexes) for every customer row.
    pub fn build(
        snapshot: &Snapshot,
        catalog: &Catalog,
        needed: &[usize],
        extra: &dyn Extra,
    ) -> Result<Frame, String> {
        Frame::build_first(snapshot, catalog, needed, snapshot.customers.len(), extra)
    }

    /// As [`Frame::build`], for the first `n` customer rows only (a sample).
    pub fn build_first(
        snapshot: &Snapshot,
        catalog: &Catalog,
        needed: &[usize],
        n: usize,
        extra: &dyn Extra,
    ) -> Result<Frame, String> {
        let ctx = Context::new(snapshot, &Scope::default());
        let n = n.min(snapshot.customers.len());
        let mut frame = Frame {
            rows: n,
            columns: vec![None; catalog.fields().len()],
            as_of: ctx.as_of.map(|d| d.days() as i64),
        };
        for &f in needed {
            frame.columns[f] = Some(Column::empty(catalog.fields()[f].ty));
        }
        let rows: Vec<u32> = (0..n as u32).collect();
        frame.fill(&ctx, catalog, needed, &rows, extra)?;
        Ok(frame)
    }

    /// Adds columns that are not there yet.
    pub fn add(
        &mut self,
        snapshot: &Snapshot,
        catalog: &Catalog,
        needed: &[usize],
        extra: &dyn Extra,
    ) -> Result<(), String> {
        let missing: Vec<usize> = needed
            .iter()
            .copied()
            .filter(|&f| self.column(f).is_none())
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        if self.columns.len() < catalog.fields().len() {
            self.columns.resize(catalog.fields().len(), None);
        }
        let built = Frame::build(snapshot, catalog, &missing, extra)?;
        for (f, column) in built.columns.into_iter().enumerate() {
            if column.is_some() {
                self.columns[f] = column;
            }
        }
        Ok(())
    }

    /// Recomputes the present columns for `rows` (which may be new rows).
    pub fn refresh(
        &mut self,
        snapshot: &Snapshot,
        catalog: &Catalog,
        rows: &[u32],
        extra: &dyn Extra,
    ) -> Result<(), String> {
        let ctx = Context::new(snapshot, &Scope::default());
        self.rows = snapshot.customers.len();
        self.as_of = ctx.as_of.map(|d| d.days() as i64);
        let present: Vec<usize> = (0..self.columns.len())
            .filter(|&f| self.columns[f].is_some())
            .collect();
        let mut part = Frame {
            rows: 0,
            columns: vec![None; self.columns.len()],
            as_of: None,
        };
        for &f in &present {
            part.columns[f] = Some(Column::empty(catalog.fields()[f].ty));
        }
        part.fill(&ctx, catalog, &present, rows, extra)?;
        for &f in &present {
            let (Some(target), Some(source)) = (&mut self.columns[f], &part.columns[f]) else {
                continue;
            };
            for (k, &row) in rows.iter().enumerate() {
                target.set(row as usize, source.get(k as u32));
            }
        }
        // New rows with nothing set yet still read as absent.
        for column in self.columns.iter_mut().flatten() {
            if column.len() < self.rows {
                column.set(self.rows - 1, Value::Missing);
            }
        }
        Ok(())
    }

    /// Appends the values of `rows` to the columns `needed`.
    fn fill(
        &mut self,
        ctx: &Context<'_>,
        catalog: &Catalog,
        needed: &[usize],
        rows: &[u32],
        extra: &dyn Extra,
    ) -> Result<(), String> {
        let fields: Vec<&Field> = needed.iter().map(|&f| &catalog.fields()[f]).collect();
        let (scores, local): (Vec<usize>, Vec<usize>) =
            (0..fields.len()).partition(|&k| matches!(fields[k].source, Source::Score { .. }));
        let reader = Reader::new(ctx, &fields, &local);
        let chunks: Vec<Vec<Column>> = rows
            .par_chunks(CHUNK)
            .map(|chunk| reader.chunk(chunk))
            .collect();
        for chunk in chunks {
            for (k, part) in local.iter().zip(chunk) {
                self.columns[needed[*k]]
                    .as_mut()
                    .expect("needed columns exist")
                    .append(part);
            }
        }
        if !scores.is_empty() {
            let score_fields: Vec<&Field> = scores.iter().map(|&k| fields[k]).collect();
            let values = extra.values(&score_fields, rows)?;
            for (k, values) in scores.iter().zip(values) {
                self.columns[needed[*k]]
                    .as_mut()
                    .expect("needed columns exist")
                    .extend(values);
            }
        }
        Ok(())
    }
}

/// Reads the snapshot-backed fields of customers.
struct Reader<'a, 's> {
    ctx: &'a Context<'s>,
    fields: Vec<&'a Field>,
    /// Which metrics beyond the activity are needed, if any metric is.
    metrics: Option<Parts>,
    /// Attribute keys read, in the order of `fields` that are attributes.
    keys: Vec<&'a str>,
}

impl<'a, 's> Reader<'a, 's> {
    fn new(ctx: &'a Context<'s>, all: &[&'a Field], local: &[usize]) -> Reader<'a, 's> {
        let fields: Vec<&Field> = local.iter().map(|&k| all[k]).collect();
        let metric = |names: &[&str]| {
            fields
                .iter()
                .any(|f| f.source == Source::Metric && names.contains(&f.name.as_str()))
        };
        let metrics = fields
            .iter()
            .any(|f| f.source == Source::Metric)
            .then(|| Parts {
                scores: metric(&["r", "f", "m", "rfm_segment"]),
                interactions: metric(&["avg_rating", "surveys", "open_opinions"]),
            });
        if metrics.is_some_and(|p| p.scores) {
            // Shared facts once, before the threads.
            ctx.scores();
        }
        let keys = fields
            .iter()
            .filter_map(|f| match &f.source {
                Source::Attribute { key, .. } => Some(key.as_str()),
                _ => None,
            })
            .collect();
        Reader {
            ctx,
            metrics,
            keys,
            fields,
        }
    }

    /// The columns of the fields for the rows of one chunk.
    fn chunk(&self, rows: &[u32]) -> Vec<Column> {
        let mut out: Vec<Column> = self.fields.iter().map(|f| Column::empty(f.ty)).collect();
        let mut attributes = vec![None; self.keys.len()];
        for &ci in rows {
            let metrics = self
                .metrics
                .map(|parts| customer_metrics_of(self.ctx, ci, parts));
            if !self.keys.is_empty() {
                attributes_of(
                    self.ctx.s.customers.attributes.get(ci as usize),
                    &self.keys,
                    &mut attributes,
                );
            }
            let mut key = 0;
            for (k, field) in self.fields.iter().enumerate() {
                match &field.source {
                    Source::Core => self.core(&field.name, ci, &mut out[k]),
                    Source::Metric => {
                        out[k].push(metric(&field.name, metrics.as_ref().expect("metrics read")))
                    }
                    Source::Attribute { .. } => {
                        let v = attributes[key]
                            .as_ref()
                            .map_or(Value::Missing, |v| json_value(v, field.ty));
                        key += 1;
                        out[k].push(v);
                    }
                    Source::Score { .. } => out[k].push(Value::Missing),
                }
            }
        }
        out
    }

    fn core(&self, name: &str, ci: u32, out: &mut Column) {
        let s = self.ctx.s;
        let c = &s.customers;
        let i = ci as usize;
        let day = |d: i32| {
            if d == NO_DAY {
                Value::Missing
            } else {
                Value::Int(d as i64)
            }
        };
        let text = match name {
            "id" => c.id(ci),
            "name" => c.names.get(i),
            "gender" => Gender::from_index(c.gender[i]).map_or("U", Gender::as_str),
            "region" => s.dicts.region.get(c.region[i]),
            "city" => s.dicts.city.get(c.city[i]),
            "channel" => AcquisitionChannel::from_index(c.channel[i]).map_or("", |a| a.as_str()),
            "tier" => s.dicts.tier.get(c.tier[i]),
            _ => {
                out.push(match name {
                    "birth_date" => day(c.birth[i]),
                    "age" => self
                        .ctx
                        .age(ci)
                        .map_or(Value::Missing, |a| Value::Int(a as i64)),
                    "joined_at" => day(c.joined[i]),
                    "tenure_days" => self.ctx.as_of.map_or(Value::Missing, |d| {
                        Value::Int((d.days() - c.joined[i]) as i64)
                    }),
                    _ => Value::Missing,
                });
                return;
            }
        };
        out.push_text(text);
    }
}

/// The values of `keys` in a customer's attributes (a JSON object), read
/// without building the whole object.
fn attributes_of(text: &str, keys: &[&str], out: &mut [Option<Json>]) {
    use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, Visitor};
    struct Wanted<'k, 'o> {
        keys: &'k [&'k str],
        out: &'o mut [Option<Json>],
    }
    impl<'de> Visitor<'de> for Wanted<'_, '_> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                match self.keys.iter().position(|k| *k == key) {
                    Some(i) => self.out[i] = Some(map.next_value()?),
                    None => {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
            }
            Ok(())
        }
    }
    impl<'de> DeserializeSeed<'de> for Wanted<'_, '_> {
        type Value = ();
        fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_map(self)
        }
    }
    out.iter_mut().for_each(|v| *v = None);
    let mut de = serde_json::Deserializer::from_str(text);
    // Attributes were checked on the way in; anything else reads as absent.
    // Keep what was read before a problem.
    let _ = (Wanted { keys, out }).deserialize(&mut de);
}

fn money(m: model::Money) -> Value {
    Value::Float(m.cents() as f64 / 100.0)
}

fn metric(name: &str, m: &analysis::Metrics) -> Value {
    let int = |v: Option<i64>| v.map_or(Value::Missing, Value::Int);
    let float = |v: Option<f64>| v.map_or(Value::Missing, Value::Float);
    match name {
        "revenue" => money(m.revenue),
        "cost" => money(m.cost),
        "margin" => money(m.margin),
        "lines" => Value::Int(m.lines as i64),
        "baskets" => Value::Int(m.baskets as i64),
        "avg_basket" => {
            float((m.baskets > 0).then(|| m.revenue.cents() as f64 / 100.0 / m.baskets as f64))
        }
        "first_purchase" => int(m.first_purchase.map(|d| d.days() as i64)),
        "last_purchase" => int(m.last_purchase.map(|d| d.days() as i64)),
        "recency_days" => int(m.recency_days),
        "avg_interbasket_days" => float(m.avg_interbasket_days),
        "r" => int(m.r.map(i64::from)),
        "f" => int(m.f.map(i64::from)),
        "m" => int(m.m.map(i64::from)),
        "rfm_segment" => m
            .rfm_segment
            .map_or(Value::Missing, |s| Value::Text(ImmutableString::from(s))),
        "churn_risk" => Value::Bool(m.churn_risk),
        "avg_rating" => float(m.avg_rating),
        "surveys" => Value::Int(m.surveys as i64),
        "open_opinions" => Value::Int(m.open_opinions as i64),
        _ => Value::Missing,
    }
}

/// An attribute's JSON value as a field of type `ty`; a value of another
/// type reads as absent.
fn json_value(v: &Json, ty: Ty) -> Value {
    match (ty, v) {
        (Ty::Int, Json::Number(n)) => n.as_i64().map_or(Value::Missing, Value::Int),
        (Ty::Float, Json::Number(n)) => n.as_f64().map_or(Value::Missing, Value::Float),
        (Ty::Text, Json::String(s)) => Value::Text(ImmutableString::from(s.as_str())),
        (Ty::Bool, Json::Bool(b)) => Value::Bool(*b),
        (Ty::Day, Json::String(s)) => {
            model::Date::parse(s).map_or(Value::Missing, |d| Value::Int(d.days() as i64))
        }
        _ => Value::Missing,
    }
}
