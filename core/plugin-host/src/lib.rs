//! The plugin host: runs industry plugins (WebAssembly components built
//! with `crm-sdk`) in a sandbox, and keeps the installed plugins.
//!
//! Design decision: a fresh store and instance per call, made from a cached
//! pre-instantiated component with the pooling allocator (microseconds),
//! rather than long-lived instances: a plugin that traps, loops or runs out
//! of memory loses only its call, and memory never accumulates across
//! calls. Batches cross as compact bytes, so the per-customer cost of a
//! call is a copy, not the lowering of strings and lists.
//!
//! This is the only crate that names wasmtime.

mod fields;
mod manifest;
mod registry;
mod runtime;

pub use fields::Fields;
pub use manifest::{
    CustomerPart, Hooks, Inputs, Limits, MAX_BATCH, MAX_MEMORY_MIB, MAX_TIMEOUT_MS, Manifest,
    SUPPORTED_API, SchemaFile,
};
pub use registry::{FAILURES_BEFORE_DISABLE, PluginInfo, Registry};
pub use runtime::{Loaded, LoadedPlugin, pooling};

/// A line a plugin logged during a call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    pub level: &'static str,
    pub message: String,
}

/// Why a plugin call or a plugin operation failed.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("{plugin} ran past its time budget of {limit_ms} ms and was stopped")]
    Timeout { plugin: String, limit_ms: u32 },
    #[error("{plugin} ran out of memory (its limit is {limit_mib} MiB) and was stopped")]
    OutOfMemory { plugin: String, limit_mib: u32 },
    #[error("{plugin} overflowed its stack (too deep a recursion) and was stopped")]
    StackOverflow { plugin: String },
    #[error("{plugin} panicked: {message}")]
    Panicked { plugin: String, message: String },
    #[error("{plugin} trapped: {message}")]
    Trapped { plugin: String, message: String },
    #[error("{plugin} returned a result the host refuses: {message}")]
    BadOutput { plugin: String, message: String },
    #[error("{plugin} reported an error: {message}")]
    Failed { plugin: String, message: String },
    #[error("{0}")]
    Unknown(String),
    #[error("plugin {id} is disabled{}", reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default())]
    Disabled { id: String, reason: Option<String> },
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Host(String),
}

impl PluginError {
    /// Whether the plugin misbehaved (counts towards disabling it), as
    /// opposed to a request the host refused or a plugin's own verdict.
    pub fn is_plugin_fault(&self) -> bool {
        matches!(
            self,
            PluginError::Timeout { .. }
                | PluginError::OutOfMemory { .. }
                | PluginError::StackOverflow { .. }
                | PluginError::Panicked { .. }
                | PluginError::Trapped { .. }
                | PluginError::BadOutput { .. }
        )
    }
}
