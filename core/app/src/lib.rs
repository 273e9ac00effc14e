//! The CRM as a library: one value, [`Crm`], owns the store, the analysis
//! snapshot and its checkpoint, the plugins and the rules they add to
//! writes, the segments service, the score sheet, the live memberships,
//! search, access (roles, tokens, users) and the one write path. It knows
//! nothing of HTTP or the command line: `server` puts both front ends over
//! it, and each maps its typed errors ([`WriteError`]) once.

pub mod base;
pub mod checkpoint;
mod crm;
pub mod imports;
pub mod json;
pub mod memberships;
pub mod plugins;
pub mod score_sheet;
pub mod search;
pub mod tokens;
pub mod users;
pub mod write;

pub use base::Base;
pub use crm::{Config, Crm, Current, Events, SERVING, StoreAhead, open_store};
pub use write::{Source, WriteError};
