//! Customer segments written as rhai scripts.
//!
//! A segment is an expression over a customer `c` (or a script with
//! `fn matches(c)`): `c.margin > 500.0 && c.recency_days < 60 &&
//! c.store_type == "kiosk"`. A script reads the fields of a [`Catalog`]:
//! core fields, the per-customer metrics of the analysis host, the custom
//! fields of each enabled plugin (from its JSON Schema) and plugin scores.
//!
//! Design decisions:
//! - One locked-down engine ([`engine`]): strict variables, no loops but
//!   `for`, limits on operations, depth, calls, string, array and map
//!   sizes, a wall-clock deadline, no output, no modules, no clock.
//! - Names and types are checked when a segment is saved ([`compile`]):
//!   an unknown field fails with its line and column and the closest known
//!   name; a comparison the catalog knows cannot match (text with a
//!   number, a value outside an enum) is refused where it is written.
//! - Evaluation reads columns ([`Frame`]) built on both cores for the
//!   fields scripts read. The parts of an expression that compare fields
//!   with constants are evaluated over the columns in Rust; only the rest
//!   goes through the interpreter, for the customers the plain part lets
//!   through. Both give rhai's meaning: a comparison with an absent value
//!   is false (and `!=` true).
//! - [`Live`] keeps memberships current: after a change only the changed
//!   customers are evaluated again, unless a segment reads the as-of day
//!   (when it moved) or values ranked among all customers.

mod catalog;
mod engine;
mod frame;
mod live;
mod parse;
mod segment;

pub use catalog::{Catalog, Field, Reach, Source, Ty, closest, origin};
pub use engine::{Customer, Limits, engine};
pub use frame::{Column, Extra, Frame, NoExtra, Value};
pub use live::{Live, Movement};
pub use parse::Pos;
/// The engine scripts are compiled and run with, as `engine` builds it.
pub use rhai::Engine;
pub use segment::{
    Compiled, Definition, Explanation, Part, Read, RunError, ScriptError, Shape, compile,
};

#[cfg(test)]
mod tests;
