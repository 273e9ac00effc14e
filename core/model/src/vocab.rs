//! The closed vocabularies of the core record types.
//!
//! These are the values the analyses group and branch on; a value outside a
//! vocabulary is refused on the way in, naming the allowed values. Industry
//! vocabularies (store types, employment, ...) live in attributes instead.

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::InvalidValue;

macro_rules! vocabulary {
    ($(#[$doc:meta])* $name:ident, $what:literal { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
        pub enum $name {
            $($variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }

            pub fn parse(text: &str) -> Result<$name, InvalidValue> {
                match text {
                    $($text => Ok($name::$variant),)+
                    _ => Err(InvalidValue::new(format!(
                        "unknown {} '{}' (expected {})",
                        $what,
                        text,
                        expected(&[$($text),+])
                    ))),
                }
            }

            /// Position in `ALL`, for compact storage.
            pub fn index(self) -> u8 {
                self as u8
            }

            pub fn from_index(index: u8) -> Option<$name> {
                $name::ALL.get(index as usize).copied()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                if serializer.is_human_readable() {
                    serializer.serialize_str(self.as_str())
                } else {
                    serializer.serialize_u8(self.index())
                }
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<$name, D::Error> {
                if deserializer.is_human_readable() {
                    let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                    $name::parse(&text).map_err(serde::de::Error::custom)
                } else {
                    let index = u8::deserialize(deserializer)?;
                    $name::from_index(index).ok_or_else(|| {
                        serde::de::Error::custom(format!("unknown {} number {index}", $what))
                    })
                }
            }
        }

        impl JsonSchema for $name {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($name).into()
            }

            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                schemars::json_schema!({
                    "type": "string",
                    "enum": [$($text),+]
                })
            }
        }
    };
}

fn expected(values: &[&str]) -> String {
    match values {
        [] => String::new(),
        [one] => (*one).to_owned(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

vocabulary!(
    /// Gender of a person (for retail outlets, of the owner).
    Gender, "gender" { Male = "M", Female = "F", Unknown = "U" }
);

vocabulary!(
    /// How a customer was acquired.
    AcquisitionChannel, "acquisition channel" {
        Store = "store", Online = "online", Phone = "phone", Referral = "referral", Field = "field",
    }
);

vocabulary!(
    /// Where a transaction line was sold.
    SalesChannel, "sales channel" {
        Store = "store", Online = "online", Phone = "phone", Field = "field",
    }
);

vocabulary!(
    /// What kind of contact an interaction records.
    InteractionKind, "interaction kind" {
        Opinion = "opinion",
        Consultation = "consultation",
        Contact = "contact",
        Survey = "survey",
        PromotionSent = "promotion_sent",
        PromotionResponse = "promotion_response",
    }
);

vocabulary!(
    /// The department that handled an interaction.
    Department, "department" {
        Sales = "sales",
        Service = "service",
        Marketing = "marketing",
        Logistics = "logistics",
        Finance = "finance",
        Compliance = "compliance",
    }
);

vocabulary!(
    /// What an opinion or a consultation is about.
    Topic, "topic" {
        Price = "price",
        Quality = "quality",
        Delivery = "delivery",
        Availability = "availability",
        Service = "service",
        Billing = "billing",
        ProductInfo = "product_info",
    }
);

vocabulary!(
    /// How a campaign reaches customers.
    CampaignChannel, "campaign channel" {
        Sms = "sms", Email = "email", Visit = "visit", Phone = "phone", App = "app",
    }
);

impl InteractionKind {
    /// Opinions and consultations are cases: they have a topic and may be resolved.
    pub fn is_case(self) -> bool {
        matches!(
            self,
            InteractionKind::Opinion | InteractionKind::Consultation
        )
    }

    /// Promotions sent and responses belong to a campaign.
    pub fn is_promotion(self) -> bool {
        matches!(
            self,
            InteractionKind::PromotionSent | InteractionKind::PromotionResponse
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_values_name_the_allowed_ones() {
        assert_eq!(Gender::parse("F").unwrap(), Gender::Female);
        assert_eq!(
            Gender::parse("female").unwrap_err().0,
            "unknown gender 'female' (expected M, F or U)"
        );
        assert_eq!(
            SalesChannel::parse("Store").unwrap_err().0,
            "unknown sales channel 'Store' (expected store, online, phone or field)"
        );
        for kind in InteractionKind::ALL {
            assert_eq!(InteractionKind::from_index(kind.index()), Some(*kind));
            assert_eq!(InteractionKind::parse(kind.as_str()).unwrap(), *kind);
        }
    }
}
