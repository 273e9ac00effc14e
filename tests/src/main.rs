//! Integration tests of the CRM: real data sets, real files, the real `crm`
//! binary. One module per area; `support` holds what they share.

mod analyses;
mod cli;
mod console;
mod http;
mod import;
mod industry;
mod plugins;
mod segments;
mod support;
mod write_path;
