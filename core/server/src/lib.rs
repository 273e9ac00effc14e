//! The CRM's entry points: the `crm` command line, and (with the HTTP API)
//! the server. This crate is the glue between the store, the import and
//! export, and the generator; it holds no domain logic of its own.

pub mod cli;
pub mod host;
pub mod http;
pub mod plugins;
mod progress;
mod scaffold;
pub mod schemas;
pub mod segments;
pub mod tokens;
pub mod users;
