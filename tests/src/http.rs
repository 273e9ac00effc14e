//! The HTTP API: every route through the router in process (with the
//! client address a connection would give), and `crm serve` on a loopback
//! socket, stopped with SIGTERM or killed; a module per feature.

mod access;
mod imports;
mod plugins;
mod records;
mod segments;
mod socket;
mod view;
mod webhooks;
