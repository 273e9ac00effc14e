//! The domain vocabulary of the CRM: customers, products, transaction lines,
//! interactions and campaigns, and the exact value types they are made of.
//!
//! Design decision: every value that enters the platform is parsed once into
//! a type that cannot hold an invalid value (`Date`, `Timestamp`, `Money`,
//! the id newtypes, the closed vocabularies), so the store, the analyses and
//! the API never re-validate. Money is integer cents; dates are days since
//! 1970-01-01; timestamps are whole seconds since 1970-01-01T00:00:00Z (UTC).
//!
//! This crate knows nothing about storage, HTTP, plugins or scripts.

mod attributes;
pub mod calendar;
mod id;
mod money;
mod record;
pub mod schema;
mod vocab;

pub use attributes::{Attributes, MAX_ATTRIBUTES_DEPTH, MAX_ATTRIBUTES_LEN};
pub use calendar::{Date, Timestamp};
pub use id::{CampaignId, CustomerId, InteractionId, MAX_ID_LEN, Sku, TxnId};
pub use money::Money;
pub use record::{
    Campaign, Customer, EntityKind, Interaction, MAX_TEXT_LEN, Problem, Product, Record,
    Transaction,
};
pub use vocab::{
    AcquisitionChannel, CampaignChannel, Department, Gender, InteractionKind, SalesChannel, Topic,
};

/// Why a single value was refused: a lowercase sentence naming the problem,
/// for example "invalid date '2025-02-30': February 2025 has 28 days".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidValue(pub String);

impl InvalidValue {
    pub fn new(reason: impl Into<String>) -> InvalidValue {
        InvalidValue(reason.into())
    }
}
