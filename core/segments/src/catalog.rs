//! The fields a segment script can read on a customer, `c.NAME`: core
//! fields, the per-customer metrics, each enabled plugin's custom fields
//! (from its JSON Schema) and its scores. One catalog drives the checks at
//! save time (unknown names, type mismatches, values outside an enum), the
//! getters of the engine, and the field list shown to analysts.

use serde::Serialize;
use serde_json::Value;

/// The type of a field as scripts see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Ty {
    Int,
    /// Money is a float in currency units (cents / 100).
    Float,
    Text,
    Bool,
    /// A day number (days since 1970-01-01), as `date("2025-01-31")` and `today` give.
    Day,
}

impl Ty {
    pub fn describe(self) -> &'static str {
        match self {
            Ty::Int => "an integer",
            Ty::Float => "a number",
            Ty::Text => "text",
            Ty::Bool => "true or false",
            Ty::Day => "a day number",
        }
    }

    pub fn is_numeric(self) -> bool {
        matches!(self, Ty::Int | Ty::Float | Ty::Day)
    }
}

/// What a field's value depends on beyond the customer's own records; it
/// decides what a change makes stale.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reach {
    /// Only the customer's own records.
    Own,
    /// Also the as-of day (recency, age, churn risk).
    AsOf,
    /// Also every other customer (ranks).
    Population,
}

/// Where a field's values come from.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Source {
    Core,
    Metric,
    /// A top-level key of the customer's attributes, owned by a plugin.
    Attribute {
        plugin: String,
        key: String,
    },
    /// A plugin score model: its value, or its band.
    Score {
        plugin: String,
        model: String,
        band: bool,
    },
}

#[derive(Clone, Debug, Serialize)]
pub struct Field {
    pub name: String,
    pub ty: Ty,
    pub doc: String,
    pub source: Source,
    pub reach: Reach,
    /// The allowed values, for a text field with an enum.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

/// Every field a script can read, by name.
#[derive(Clone, Debug)]
pub struct Catalog {
    fields: Vec<Field>,
}

const CORE: &[(&str, Ty, Reach, &str)] = &[
    ("id", Ty::Text, Reach::Own, "customer id"),
    ("name", Ty::Text, Reach::Own, "display name"),
    ("gender", Ty::Text, Reach::Own, "F, M or U"),
    ("birth_date", Ty::Day, Reach::Own, "day of birth"),
    (
        "age",
        Ty::Int,
        Reach::AsOf,
        "completed years at the as-of day",
    ),
    ("region", Ty::Text, Reach::Own, "sales region"),
    ("city", Ty::Text, Reach::Own, "city"),
    (
        "channel",
        Ty::Text,
        Reach::Own,
        "how the customer was acquired",
    ),
    (
        "joined_at",
        Ty::Day,
        Reach::Own,
        "first day of the relationship",
    ),
    (
        "tenure_days",
        Ty::Int,
        Reach::AsOf,
        "days from joining to the as-of day",
    ),
    ("tier", Ty::Text, Reach::Own, "service tier"),
];

const METRICS: &[(&str, Ty, Reach, &str)] = &[
    (
        "revenue",
        Ty::Float,
        Reach::Own,
        "sum of the amounts of their lines",
    ),
    (
        "cost",
        Ty::Float,
        Reach::Own,
        "sum of the costs of their lines",
    ),
    ("margin", Ty::Float, Reach::Own, "revenue minus cost"),
    ("lines", Ty::Int, Reach::Own, "transaction lines"),
    ("baskets", Ty::Int, Reach::Own, "days with a purchase"),
    (
        "avg_basket",
        Ty::Float,
        Reach::Own,
        "revenue per basket (missing without baskets)",
    ),
    (
        "first_purchase",
        Ty::Day,
        Reach::Own,
        "day of the first purchase",
    ),
    (
        "last_purchase",
        Ty::Day,
        Reach::Own,
        "day of the last purchase",
    ),
    (
        "recency_days",
        Ty::Int,
        Reach::AsOf,
        "days from the last purchase to the as-of day",
    ),
    (
        "avg_interbasket_days",
        Ty::Float,
        Reach::Own,
        "mean days between baskets (two baskets or more)",
    ),
    (
        "r",
        Ty::Int,
        Reach::Population,
        "recency score among all buyers, 1..5 (5 best)",
    ),
    (
        "f",
        Ty::Int,
        Reach::Population,
        "frequency score among all buyers, 1..5",
    ),
    (
        "m",
        Ty::Int,
        Reach::Population,
        "monetary score among all buyers, 1..5",
    ),
    (
        "rfm_segment",
        Ty::Text,
        Reach::Population,
        "champions, loyal, new, at_risk, hibernating or potential",
    ),
    (
        "churn_risk",
        Ty::Bool,
        Reach::AsOf,
        "silent for over 30 days and over twice their own interval",
    ),
    (
        "avg_rating",
        Ty::Float,
        Reach::Own,
        "mean survey rating (1..5)",
    ),
    (
        "surveys",
        Ty::Int,
        Reach::Own,
        "surveys answered with a rating",
    ),
    (
        "open_opinions",
        Ty::Int,
        Reach::Own,
        "opinions not resolved",
    ),
];

/// Names a script may not use for fields (the customer variable and the
/// constants).
const RESERVED: &[&str] = &["c", "today", "params"];

impl Catalog {
    /// Core fields and metrics only.
    pub fn core() -> Catalog {
        let fields = CORE
            .iter()
            .map(|f| (f, Source::Core))
            .chain(METRICS.iter().map(|f| (f, Source::Metric)))
            .map(|(&(name, ty, reach, doc), source)| Field {
                name: name.to_owned(),
                ty,
                doc: doc.to_owned(),
                source,
                reach,
                values: match name {
                    "gender" => vec!["F".into(), "M".into(), "U".into()],
                    "rfm_segment" => [
                        "champions",
                        "loyal",
                        "new",
                        "at_risk",
                        "hibernating",
                        "potential",
                    ]
                    .map(String::from)
                    .to_vec(),
                    _ => Vec::new(),
                },
            })
            .collect();
        Catalog { fields }
    }

    /// Adds the custom fields a plugin declares in its JSON Schema
    /// (`properties`): their type from `type` or `enum`. A name that is
    /// already taken (core fields and metrics come first) is left out,
    /// and each such problem is returned.
    pub fn add_plugin_fields(&mut self, plugin: &str, schema: &Value) -> Vec<String> {
        let mut problems = Vec::new();
        let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
            return problems;
        };
        for (key, spec) in properties {
            let (ty, values) = schema_type(spec);
            let Some(ty) = ty else { continue };
            let title = spec.get("title").and_then(Value::as_str);
            let description = spec.get("description").and_then(Value::as_str);
            let doc = match (title, description) {
                (Some(t), Some(d)) => format!("{t}: {d}"),
                (Some(t), None) => t.to_owned(),
                (None, Some(d)) => d.to_owned(),
                (None, None) => String::new(),
            };
            let added = self.add(Field {
                name: key.clone(),
                ty,
                doc,
                source: Source::Attribute {
                    plugin: plugin.to_owned(),
                    key: key.clone(),
                },
                reach: Reach::Own,
                values,
            });
            problems.extend(added.err());
        }
        problems
    }

    /// Adds a plugin's score model `model`: `c.<model>` (its value) and
    /// `c.<model>_band`, with `-` written `_`; the problems of names already taken.
    pub fn add_score(&mut self, plugin: &str, model: &str) -> Vec<String> {
        let name = model.replace('-', "_");
        let mut problems = Vec::new();
        for band in [false, true] {
            let added = self.add(Field {
                name: if band {
                    format!("{name}_band")
                } else {
                    name.clone()
                },
                ty: if band { Ty::Text } else { Ty::Float },
                doc: format!(
                    "{} of the {model} score of plugin {plugin}",
                    if band { "band" } else { "value" }
                ),
                source: Source::Score {
                    plugin: plugin.to_owned(),
                    model: model.to_owned(),
                    band,
                },
                // A plugin scores each customer from their own profile,
                // attributes and metrics (which depend on the as-of day) and
                // the product list; whoever changes products refreshes all.
                reach: Reach::AsOf,
                values: Vec::new(),
            });
            problems.extend(added.err());
        }
        problems
    }

    fn add(&mut self, field: Field) -> Result<(), String> {
        if RESERVED.contains(&field.name.as_str()) {
            return Err(format!(
                "{}: the field '{}' is left out of segments, as the name is reserved",
                origin(&field.source),
                field.name
            ));
        }
        if let Some(other) = self.get(&field.name) {
            return Err(format!(
                "{}: the field '{}' is left out of segments, as {} has a field of that name",
                origin(&field.source),
                field.name,
                origin(&other.source)
            ));
        }
        self.fields.push(field);
        Ok(())
    }

    pub fn fields(&self) -> &[Field] {
        &self.fields
    }

    pub fn index(&self, name: &str) -> Option<usize> {
        self.fields.iter().position(|f| f.name == name)
    }

    pub fn get(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// The known name closest to `name`, if one is close enough to be a typo.
    pub fn suggest(&self, name: &str) -> Option<&str> {
        closest(name, self.fields.iter().map(|f| f.name.as_str()))
    }
}

/// Where a field comes from, for messages: "core", "metrics", "plugin tobacco-retail".
pub fn origin(source: &Source) -> String {
    match source {
        Source::Core => "core".to_owned(),
        Source::Metric => "metrics".to_owned(),
        Source::Attribute { plugin, .. } | Source::Score { plugin, .. } => {
            format!("plugin {plugin}")
        }
    }
}

/// The candidate closest to `word` by edit distance, when close enough.
pub fn closest<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).max(2);
    candidates
        .map(|c| (strsim::damerau_levenshtein(word, c), c))
        .filter(|&(d, _)| d <= limit)
        .min_by_key(|&(d, c)| (d, c.len()))
        .map(|(_, c)| c)
}

/// A field's type from its schema: `type`, or an enum of strings.
fn schema_type(spec: &Value) -> (Option<Ty>, Vec<String>) {
    if let Some(values) = spec.get("enum").and_then(Value::as_array)
        && values.iter().all(Value::is_string)
    {
        let values = values
            .iter()
            .filter_map(|v| v.as_str().map(String::from))
            .collect();
        return (Some(Ty::Text), values);
    }
    let ty = match spec.get("type") {
        Some(Value::String(t)) => Some(t.as_str()),
        // ["integer", "null"] and the like: the non-null type.
        Some(Value::Array(types)) => {
            let types: Vec<&str> = types
                .iter()
                .filter_map(Value::as_str)
                .filter(|t| *t != "null")
                .collect();
            (types.len() == 1).then(|| types[0])
        }
        _ => None,
    };
    let ty = match ty {
        Some("integer") => Some(Ty::Int),
        Some("number") => Some(Ty::Float),
        Some("string") => Some(
            if spec.get("format").and_then(Value::as_str) == Some("date") {
                Ty::Day
            } else {
                Ty::Text
            },
        ),
        Some("boolean") => Some(Ty::Bool),
        _ => None,
    };
    (ty, Vec::new())
}
