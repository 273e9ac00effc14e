//! Industry fields of a customer or product: a JSON object kept as its text.
//!
//! The text is kept exactly as it was given (key order, number spelling such
//! as `52345.10`), so what is imported is what is exported, byte for byte.
//! It is checked once, on the way in: it must be one JSON object whose keys
//! are unique. Plugins declare and validate the fields inside it.

use std::collections::HashSet;
use std::fmt;

use schemars::JsonSchema;
use serde::de::{self, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;

use crate::InvalidValue;

/// Largest attributes text accepted, in bytes.
pub const MAX_ATTRIBUTES_LEN: usize = 64 * 1024;

/// Deepest nesting of objects and arrays accepted in attributes (the
/// attributes object itself is level 1). Checked before anything reads
/// the values, whose readers (serde_json's `Value`) stop at 128 levels.
pub const MAX_ATTRIBUTES_DEPTH: usize = 32;

#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct Attributes(String);

impl Attributes {
    /// `{}`, no industry fields.
    pub fn empty() -> Attributes {
        Attributes("{}".to_owned())
    }

    pub fn parse(text: &str) -> Result<Attributes, InvalidValue> {
        if text.len() > MAX_ATTRIBUTES_LEN {
            return Err(InvalidValue::new(format!(
                "attributes are {} bytes, more than the limit of {MAX_ATTRIBUTES_LEN}",
                text.len()
            )));
        }
        let depth = nesting(text);
        if depth > MAX_ATTRIBUTES_DEPTH {
            return Err(InvalidValue::new(format!(
                "attributes are nested {depth} levels deep, more than the limit of {MAX_ATTRIBUTES_DEPTH}"
            )));
        }
        let mut de = serde_json::Deserializer::from_str(text);
        de.deserialize_any(ObjectCheck)
            .and_then(|()| de.end())
            .map_err(|e| InvalidValue::new(format!("invalid attributes JSON: {e}")))?;
        Ok(Attributes(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The attributes as a JSON value (object), for code that reads fields.
    pub fn to_value(&self) -> serde_json::Map<String, serde_json::Value> {
        serde_json::from_str(&self.0).expect("attributes were checked to be a JSON object")
    }
}

impl Default for Attributes {
    fn default() -> Attributes {
        Attributes::empty()
    }
}

impl fmt::Display for Attributes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The deepest nesting of objects and arrays in JSON text (brackets inside
/// strings do not count).
fn nesting(text: &str) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for b in text.bytes() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// Accepts exactly one JSON object with unique keys, ignoring the values.
struct ObjectCheck;

impl<'de> Visitor<'de> for ObjectCheck {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if !seen.insert(key.clone()) {
                return Err(de::Error::custom(format!("duplicate key \"{key}\"")));
            }
            map.next_value::<IgnoredAny>()?;
        }
        Ok(())
    }
}

// JSON embeds the object itself; compact binary formats carry the text.
impl Serialize for Attributes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            let raw: &RawValue =
                serde_json::from_str(&self.0).map_err(serde::ser::Error::custom)?;
            raw.serialize(serializer)
        } else {
            serializer.serialize_str(&self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Attributes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Attributes, D::Error> {
        if deserializer.is_human_readable() {
            let raw = <Box<RawValue>>::deserialize(deserializer)?;
            Attributes::parse(raw.get()).map_err(de::Error::custom)
        } else {
            String::deserialize(deserializer).map(Attributes)
        }
    }
}

impl JsonSchema for Attributes {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Attributes".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "object",
            "description": "Industry fields, declared by the enabled plugins' JSON Schemas.",
            "examples": [{"store_type": "kiosk", "monthly_quota": 60}]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An object holding `levels - 1` nested arrays, with brackets inside
    /// a string that do not count.
    fn nested(levels: usize) -> String {
        format!(
            r#"{{"k":{}"[[{{\"]]"{}}}"#,
            "[".repeat(levels - 1),
            "]".repeat(levels - 1)
        )
    }

    #[test]
    fn nesting_is_limited_where_attributes_are_parsed() {
        let deepest = Attributes::parse(&nested(MAX_ATTRIBUTES_DEPTH)).unwrap();
        assert_eq!(deepest.to_value().len(), 1, "read back without trouble");
        for levels in [MAX_ATTRIBUTES_DEPTH + 1, 127, 10_000] {
            let e = Attributes::parse(&nested(levels)).unwrap_err();
            assert!(
                e.to_string().contains(&format!(
                    "nested {levels} levels deep, more than the limit of 32"
                )),
                "{levels}: {e}"
            );
        }
    }

    #[test]
    fn keeps_the_text_exactly() {
        let text = r#"{"credit_score":712,"annual_income":52345.10,"has_mortgage":false}"#;
        let attrs = Attributes::parse(text).unwrap();
        assert_eq!(attrs.as_str(), text);
        let json = serde_json::to_string(&attrs).unwrap();
        assert_eq!(json, text);
        let back: Attributes = serde_json::from_str(&json).unwrap();
        assert_eq!(back, attrs);
    }

    #[test]
    fn refuses_what_is_not_one_object() {
        for (text, why) in [
            (
                "[1]",
                "invalid attributes JSON: invalid type: sequence, expected a JSON object",
            ),
            (
                "{\"a\":1",
                "invalid attributes JSON: EOF while parsing an object",
            ),
            (
                "{\"a\":1,\"a\":2}",
                "invalid attributes JSON: duplicate key \"a\"",
            ),
            ("{} {}", "invalid attributes JSON: trailing characters"),
        ] {
            let err = Attributes::parse(text).unwrap_err();
            assert!(err.0.starts_with(why), "{text}: {}", err.0);
        }
    }
}
