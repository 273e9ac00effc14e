//! The `crm` binary's front ends over the CRM core (`app`): the command
//! line (`cli`) and the HTTP API with its console (`http`). Each maps the
//! core's errors once; neither holds domain logic of its own.

pub mod cli;
pub mod http;
mod progress;
mod scaffold;
pub mod schemas;
