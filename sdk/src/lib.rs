//! `crm-sdk`: write an industry plugin for the CRM.
//!
//! A plugin is a Rust crate built as a WebAssembly component
//! (`crate-type = ["cdylib"]`, `cargo build --target wasm32-wasip2`). It
//! implements [`Plugin`] for a type and exports it with [`export_plugin!`]:
//!
//! ```ignore
//! use crm_sdk::{Context, Customer, Plugin, Score};
//!
//! #[derive(Default)]
//! struct Loyalty;
//!
//! impl Plugin for Loyalty {
//!     fn score(&self, model: &str, customer: &Customer, _ctx: &Context) -> Result<Score, String> {
//!         match model {
//!             "loyalty" => {
//!                 let baskets = customer.metrics().baskets as f64;
//!                 Ok(Score::new(baskets.min(10.0) / 10.0, if baskets >= 5.0 { "loyal" } else { "casual" })
//!                     .reason("baskets", 1.0, format!("{baskets} baskets")))
//!             }
//!             other => Err(format!("unknown model {other}")),
//!         }
//!     }
//! }
//!
//! crm_sdk::export_plugin!(Loyalty);
//! ```
//!
//! The hooks are called per customer; the SDK takes care of the batches,
//! their encoding and the plugin contract (`sdk/wit/plugin.wit`). Every
//! method has a default, so a plugin implements only the hooks its
//! `plugin.toml` declares.

pub mod wire;

#[cfg(feature = "guest")]
mod guest;

#[cfg(feature = "guest")]
pub use guest::*;

/// The plugin API version this SDK builds against (the WIT package version).
pub const API_VERSION: &str = "0.1.0";
