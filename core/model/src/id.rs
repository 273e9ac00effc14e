//! Record identifiers: the stable external keys of the five entities.
//!
//! An id is 1 to 64 characters with no whitespace and no control
//! characters. Ids are compared and ordered as UTF-8 bytes, which for the
//! zero-padded ids of the reference data (`C0000042`) is numeric order.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};

use crate::InvalidValue;

pub const MAX_ID_LEN: usize = 64;

fn check_id(what: &str, text: &str) -> Result<(), InvalidValue> {
    if text.is_empty() {
        return Err(InvalidValue::new(format!("{what} is empty")));
    }
    if text.len() > MAX_ID_LEN {
        return Err(InvalidValue::new(format!(
            "{what} '{}…' is longer than {MAX_ID_LEN} bytes",
            text.chars().take(16).collect::<String>()
        )));
    }
    if let Some(c) = text.chars().find(|c| c.is_whitespace() || c.is_control()) {
        return Err(InvalidValue::new(format!(
            "{what} '{}' contains {}",
            text.escape_debug(),
            if c.is_whitespace() {
                "whitespace"
            } else {
                "a control character"
            }
        )));
    }
    Ok(())
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $what:literal, $example:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn parse(text: &str) -> Result<$name, InvalidValue> {
                check_id($what, text)?;
                Ok($name(text.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<$name, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                $name::parse(&text).map_err(serde::de::Error::custom)
            }
        }

        impl JsonSchema for $name {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($name).into()
            }

            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                schemars::json_schema!({
                    "type": "string",
                    "minLength": 1,
                    "maxLength": MAX_ID_LEN,
                    "pattern": "^[^\\s\\u0000-\\u001f\\u007f-\\u009f]+$",
                    "description": concat!("The ", $what, ": 1 to 64 characters without whitespace or control characters."),
                    "examples": [$example]
                })
            }
        }
    };
}

id_type!(
    /// The stable external key of a customer, e.g. `C0000042`.
    CustomerId, "customer id", "C0000042"
);
id_type!(
    /// The stock-keeping unit that identifies a product, e.g. `P0107`.
    Sku, "sku", "P0107"
);
id_type!(
    /// The id of one transaction line, e.g. `T0000000001`.
    TxnId, "transaction id", "T0000000001"
);
id_type!(
    /// The id of one interaction, e.g. `I0000000001`.
    InteractionId, "interaction id", "I0000000001"
);
id_type!(
    /// The id of a campaign, e.g. `CMP001`.
    CampaignId, "campaign id", "CMP001"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked() {
        assert_eq!(CustomerId::parse("C0000042").unwrap().as_str(), "C0000042");
        assert_eq!(CustomerId::parse("").unwrap_err().0, "customer id is empty");
        assert_eq!(
            CustomerId::parse("C 1").unwrap_err().0,
            "customer id 'C 1' contains whitespace"
        );
        assert_eq!(
            Sku::parse("P\u{1}").unwrap_err().0,
            "sku 'P\\u{1}' contains a control character"
        );
        assert!(TxnId::parse(&"T".repeat(65)).is_err());
        assert!(TxnId::parse(&"T".repeat(64)).is_ok());
        assert!(serde_json::from_str::<CampaignId>("\"\"").is_err());
    }
}
