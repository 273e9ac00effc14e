//! A plugin's custom fields: the JSON Schema of the attributes it owns.
//!
//! A plugin owns the top-level attribute keys its schema declares under
//! `properties` (two enabled plugins may not own the same key). On every
//! write and import, the owned part of a customer's attributes is checked
//! against the schema; derived values and patches are checked against the
//! schema of their field.
//!
//! Author-supplied schemas are held to a profile: at most 64 KiB, nested at
//! most 32 deep, an object at the root, `$ref` only within the document
//! (no remote or file references; the jsonschema crate is built without
//! them), and patterns run by the linear-time `regex` engine.

use std::collections::HashMap;
use std::path::Path;

use jsonschema::{Draft, PatternOptions, Validator};
use serde_json::{Map, Value, json};

use crate::PluginError;

const MAX_SCHEMA_BYTES: usize = 64 * 1024;
const MAX_DEPTH: usize = 32;

pub struct Fields {
    validator: Validator,
    owned: Vec<String>,
    /// A validator per field, for derived values and patches.
    per_field: HashMap<String, Validator>,
    pub schema: Value,
}

fn compile(schema: &Value) -> Result<Validator, String> {
    jsonschema::options()
        .with_draft(Draft::Draft202012)
        .with_pattern_options(PatternOptions::regex())
        .should_validate_formats(true)
        .build(schema)
        .map_err(|e| e.to_string())
}

fn depth_and_refs(value: &Value, depth: usize) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err(format!("it is nested more than {MAX_DEPTH} deep"));
    }
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                if (k == "$ref" || k == "$dynamicRef")
                    && !v.as_str().is_some_and(|r| r.starts_with('#'))
                {
                    return Err(format!("{k} {v} points outside the schema"));
                }
                depth_and_refs(v, depth + 1)?;
            }
            Ok(())
        }
        Value::Array(items) => items.iter().try_for_each(|v| depth_and_refs(v, depth + 1)),
        _ => Ok(()),
    }
}

impl Fields {
    /// Reads and compiles the fields schema of plugin `plugin`.
    pub fn load(path: &Path, plugin: &str) -> Result<Fields, PluginError> {
        let bad = |why: String| {
            PluginError::Invalid(format!("{plugin}: fields schema {}: {why}", path.display()))
        };
        let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
        Fields::from_text(&text, plugin).map_err(bad)
    }

    pub fn from_text(text: &str, plugin: &str) -> Result<Fields, String> {
        let _ = plugin;
        if text.len() > MAX_SCHEMA_BYTES {
            return Err(format!(
                "it is {} bytes, more than {MAX_SCHEMA_BYTES}",
                text.len()
            ));
        }
        let schema: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
        depth_and_refs(&schema, 0)?;
        if schema.get("type") != Some(&json!("object")) {
            return Err("its root must be \"type\": \"object\"".into());
        }
        let Some(properties) = schema.get("properties").and_then(Value::as_object) else {
            return Err("it declares no \"properties\"".into());
        };
        let owned: Vec<String> = properties.keys().cloned().collect();
        let validator = compile(&schema)?;
        let mut per_field = HashMap::new();
        for (name, sub) in properties {
            let mut one = json!({ "type": "object", "properties": { name: sub } });
            if let Some(defs) = schema.get("$defs") {
                one["$defs"] = defs.clone();
            }
            per_field.insert(name.clone(), compile(&one)?);
        }
        Ok(Fields {
            validator,
            owned,
            per_field,
            schema,
        })
    }

    /// The attribute keys this plugin owns.
    pub fn owned(&self) -> &[String] {
        &self.owned
    }

    pub fn owns(&self, field: &str) -> bool {
        self.per_field.contains_key(field)
    }

    /// The problems of a customer's attributes with this plugin's fields,
    /// each `/field: message (schema path)`.
    pub fn check(&self, attributes: &Map<String, Value>) -> Vec<String> {
        let mut mine = Map::new();
        for key in &self.owned {
            if let Some(v) = attributes.get(key) {
                mine.insert(key.clone(), v.clone());
            }
        }
        let mine = Value::Object(mine);
        if self.validator.is_valid(&mine) {
            return Vec::new();
        }
        self.validator
            .iter_errors(&mine)
            .map(|e| {
                let at = e.instance_path().to_string();
                let at = if at.is_empty() { "/".to_owned() } else { at };
                format!("{at}: {e} (schema {})", e.schema_path())
            })
            .collect()
    }

    /// As `check`, each problem with the field it is about (the missing one,
    /// for a required field) and the message.
    pub fn issues(&self, attributes: &Map<String, Value>) -> Vec<(String, String)> {
        let mut mine = Map::new();
        for key in &self.owned {
            if let Some(v) = attributes.get(key) {
                mine.insert(key.clone(), v.clone());
            }
        }
        let mine = Value::Object(mine);
        self.validator
            .iter_errors(&mine)
            .map(|e| {
                let field = match e.kind() {
                    jsonschema::error::ValidationErrorKind::Required { property } => {
                        property.as_str().unwrap_or_default().to_owned()
                    }
                    _ => e
                        .instance_path()
                        .to_string()
                        .trim_start_matches('/')
                        .split('/')
                        .next()
                        .unwrap_or_default()
                        .to_owned(),
                };
                let mut message = e.to_string();
                // A pattern says little to a person: the field's own
                // description says what is expected.
                if matches!(
                    e.kind(),
                    jsonschema::error::ValidationErrorKind::Pattern { .. }
                ) && let Some(about) = self.schema["properties"][&field]["description"].as_str()
                {
                    message = format!("{message}: {about}");
                }
                (field, message)
            })
            .collect()
    }

    /// Whether `value` fits field `field`.
    pub fn check_value(&self, field: &str, value: &Value) -> Result<(), String> {
        let Some(validator) = self.per_field.get(field) else {
            return Err(format!("'{field}' is not a field of this plugin"));
        };
        let instance = json!({ field: value });
        match validator.iter_errors(&instance).next() {
            None => Ok(()),
            Some(e) => Err(format!("{field}: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHEMA: &str = r#"{
        "type": "object",
        "required": ["license_no"],
        "properties": {
            "license_no": {"type": "string", "pattern": "^[0-9]{12}$"},
            "monthly_quota": {"type": "integer", "minimum": 0}
        }
    }"#;

    #[test]
    fn owned_fields_are_checked_and_others_ignored() {
        let fields = Fields::from_text(SCHEMA, "p").unwrap();
        assert_eq!(fields.owned(), ["license_no", "monthly_quota"]);
        let ok: Map<String, Value> =
            serde_json::from_str(r#"{"license_no":"123456789012","other":1}"#).unwrap();
        assert!(fields.check(&ok).is_empty());
        let bad: Map<String, Value> =
            serde_json::from_str(r#"{"license_no":"12AB","monthly_quota":-1}"#).unwrap();
        let problems = fields.check(&bad);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].starts_with("/license_no: \"12AB\" does not match \"^[0-9]{12}$\" (schema /properties/license_no/pattern)"), "{problems:?}");
        let missing = fields.check(&Map::new());
        assert!(
            missing[0].contains("\"license_no\" is a required property"),
            "{missing:?}"
        );
        assert!(fields.check_value("monthly_quota", &json!(5)).is_ok());
        assert!(fields.check_value("monthly_quota", &json!("five")).is_err());
        assert!(fields.check_value("tier", &json!("gold")).is_err());
    }

    #[test]
    fn hostile_schemas_are_refused() {
        let remote =
            r#"{"type":"object","properties":{"a":{"$ref":"https://example.com/s.json"}}}"#;
        assert!(
            Fields::from_text(remote, "p")
                .err()
                .unwrap()
                .contains("points outside the schema")
        );
        let deep = format!(
            "{}{}",
            "{\"type\":\"object\",\"properties\":{\"a\":".repeat(40),
            "{}".to_owned() + &"}}".repeat(40)
        );
        assert!(Fields::from_text(&deep, "p").is_err());
        let big = format!(
            r#"{{"type":"object","properties":{{"a":{{"enum":[{}]}}}}}}"#,
            vec!["1"; 40_000].join(",")
        );
        assert!(
            Fields::from_text(&big, "p")
                .err()
                .unwrap()
                .contains("more than 65536")
        );
        assert!(Fields::from_text(r#"{"type":"array"}"#, "p").is_err());
        // A pattern that backtracks catastrophically elsewhere: with the
        // linear-time engine this input is checked at once (a backtracking
        // engine would not finish).
        let redos = r#"{"type":"object","properties":{"a":{"type":"string","pattern":"^(a+)+$"}}}"#;
        let fields = Fields::from_text(redos, "p").unwrap();
        let input: Map<String, Value> =
            serde_json::from_value(json!({"a": format!("{}!", "a".repeat(50_000))})).unwrap();
        assert_eq!(fields.check(&input).len(), 1);
    }
}
