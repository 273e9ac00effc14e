//! Running plugins: one engine for the process, a fresh store and instance
//! for every call, and nothing of the host reachable but what the plugin
//! contract offers.
//!
//! Each call gets its own `Store` (instances are made from a cached
//! pre-instantiated component with the pooling allocator), a memory limit,
//! and an epoch deadline: a ticker thread advances the epoch every 10 ms,
//! so a plugin that runs past its budget traps within about 10 ms of it.
//! WASI is linked because Rust's standard library on wasm32-wasip2 imports
//! it, but with no files, no environment, no arguments and no network;
//! stdout is discarded and stderr is kept (it holds panic messages).
//! A trapped store is dropped; the next call starts clean.

#![allow(unsafe_code)] // bindgen! expands to unsafe code; artifacts are loaded from our own cache (see `load_component`).

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crm_sdk::wire;
use sha2::{Digest, Sha256};
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Trap};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::fields::Fields;
use crate::manifest::{MAX_MEMORY_MIB, Manifest};
use crate::{LogLine, PluginError};

wasmtime::component::bindgen!({
    path: "../../sdk/wit",
    world: "plugin",
});

use crm::plugin::host::Level;

/// How often the epoch advances: the resolution of time budgets.
const TICK: Duration = Duration::from_millis(10);
/// Largest component accepted, in bytes.
const MAX_COMPONENT_BYTES: usize = 16 << 20;
/// Log output kept per call.
const MAX_LOG_LINES: usize = 64;
const MAX_LOG_LINE: usize = 512;
/// Limits on what a plugin returns.
const MAX_TEXT: usize = 1024;
const MAX_SHORT: usize = 128;
const MAX_REASONS: usize = 16;
const MAX_OUTPUT_BYTES: usize = 64 << 20;
const MAX_TABLE_ROWS: usize = 100_000;
const MAX_TABLE_COLUMNS: usize = 64;

/// The interfaces a plugin may import. Rust's std imports parts of WASI;
/// sockets and HTTP are not offered.
const ALLOWED_IMPORTS: &[&str] = &[
    "crm:plugin/host@0.1.",
    "wasi:cli/",
    "wasi:io/",
    "wasi:clocks/",
    "wasi:random/",
    "wasi:filesystem/",
];

pub(crate) struct HostState {
    limits: Limiter,
    wasi: WasiCtx,
    table: ResourceTable,
    now: i64,
    config: String,
    log: Vec<LogLine>,
    dropped_lines: usize,
    /// What the plugin wrote to stderr (panic messages).
    stderr: MemoryOutputPipe,
}

/// Caps memory and tables, and remembers whether it refused to grow.
struct Limiter {
    memory: usize,
    denied: bool,
}

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = desired <= self.memory;
        self.denied |= !allowed;
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl crm::plugin::host::Host for HostState {
    fn log(&mut self, level: Level, message: String) {
        if self.log.len() >= MAX_LOG_LINES {
            self.dropped_lines += 1;
            return;
        }
        let mut message = message;
        if message.len() > MAX_LOG_LINE {
            let mut end = MAX_LOG_LINE;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
            message.push('…');
        }
        let level = match level {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        };
        self.log.push(LogLine { level, message });
    }

    fn now(&mut self) -> i64 {
        self.now
    }

    fn config(&mut self) -> String {
        self.config.clone()
    }
}

pub(crate) struct Runtime {
    pub(crate) engine: Engine,
    linker: Linker<HostState>,
    /// Whether the pooling allocator is in use (it can be refused address space).
    pub(crate) pooling: bool,
}

/// The process's plugin runtime, made on first use.
pub(crate) fn runtime() -> Result<&'static Runtime, PluginError> {
    static RUNTIME: OnceLock<Result<Runtime, String>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| make_runtime().map_err(|e| format!("{e:#}")))
        .as_ref()
        .map_err(|e| PluginError::Host(format!("starting the plugin runtime: {e}")))
}

fn config(pooling: bool) -> Config {
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        // Each call gets a fresh instance: copying the (small) data segments
        // into memory kept resident is cheaper than mapping the image anew,
        // whose unmapping flushes the TLB of every core.
        .memory_init_cow(false)
        .cranelift_opt_level(wasmtime::OptLevel::Speed);
    if pooling {
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(200)
            .total_core_instances(1000)
            .total_memories(200)
            .total_tables(1000)
            .max_memory_size((MAX_MEMORY_MIB as usize) << 20)
            .max_component_instance_size(1 << 20)
            .linear_memory_keep_resident(16 << 20)
            .table_keep_resident(1 << 16)
            // Where the kernel can say which pages a call wrote (Linux 6.7
            // and later), only those are reset for the next instance.
            .pagemap_scan(wasmtime::Enabled::Auto);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    config
}

fn make_runtime() -> wasmtime::Result<Runtime> {
    // The pooling allocator reserves address space up front; where that is
    // refused (a tight ulimit -v), allocate on demand instead.
    let (engine, pooling) = match Engine::new(&config(true)) {
        Ok(engine) => (engine, true),
        Err(_) => (Engine::new(&config(false))?, false),
    };
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("plugin-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(TICK);
            }
        })?;
    let mut linker = Linker::new(&engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
    Plugin::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state)?;
    Ok(Runtime {
        engine,
        linker,
        pooling,
    })
}

/// Compiles a component, or loads its precompiled artifact from `cache`.
/// Artifacts are named by the SHA-256 of the component and the engine's
/// compatibility hash, and only this host writes that directory, so a
/// file found there was compiled by it from the same bytes; any error
/// reading one (another wasmtime build) is a miss. Returns the component,
/// its SHA-256 and whether it came from the cache.
pub(crate) fn load_component(
    wasm: &[u8],
    cache: &Path,
) -> Result<(Component, String, bool), PluginError> {
    let rt = runtime()?;
    if wasm.len() > MAX_COMPONENT_BYTES {
        return Err(PluginError::Invalid(format!(
            "the component is {} bytes, more than {MAX_COMPONENT_BYTES}",
            wasm.len()
        )));
    }
    let sha = hex::encode(Sha256::digest(wasm));
    let mut engine_hash = Sha256::new();
    std::hash::Hash::hash(
        &rt.engine.precompile_compatibility_hash(),
        &mut HashWriter(&mut engine_hash),
    );
    let artifact = cache.join(format!(
        "{sha}-{}.cwasm",
        &hex::encode(engine_hash.finalize())[..16]
    ));
    if artifact.exists() {
        // SAFETY: see above: the file is our own compilation of these bytes.
        if let Ok(component) = unsafe { Component::deserialize_file(&rt.engine, &artifact) } {
            return Ok((component, sha, true));
        }
    }
    let compiled = rt
        .engine
        .precompile_component(wasm)
        .map_err(|e| PluginError::Invalid(format!("the component does not compile: {e:#}")))?;
    std::fs::create_dir_all(cache)
        .map_err(|e| PluginError::Host(format!("creating {}: {e}", cache.display())))?;
    let tmp = artifact.with_extension("partial");
    std::fs::write(&tmp, &compiled)
        .and_then(|()| std::fs::rename(&tmp, &artifact))
        .map_err(|e| PluginError::Host(format!("writing {}: {e}", artifact.display())))?;
    // SAFETY: `compiled` was produced by this engine just now.
    let component = unsafe { Component::deserialize(&rt.engine, &compiled) }
        .map_err(|e| PluginError::Host(format!("loading the compiled component: {e:#}")))?;
    Ok((component, sha, false))
}

struct HashWriter<'a>(&'a mut Sha256);

impl std::hash::Hasher for HashWriter<'_> {
    fn finish(&self) -> u64 {
        0
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

/// An installed plugin version, compiled and ready to instantiate.
pub struct LoadedPlugin {
    pub manifest: Manifest,
    /// Where its files are.
    pub dir: PathBuf,
    pub fields: Option<Fields>,
    /// Its configuration, a JSON object.
    pub config: String,
    pub sha256: String,
    /// Whether its compiled code came from the cache.
    pub from_cache: bool,
    pre: PluginPre<HostState>,
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} ({})",
            self.manifest.id,
            self.manifest.version,
            self.dir.display()
        )
    }
}

impl LoadedPlugin {
    /// Loads the plugin in `dir` (its `plugin.toml` and files).
    pub fn load(
        dir: &Path,
        config: &serde_json::Value,
        cache: &Path,
    ) -> Result<LoadedPlugin, PluginError> {
        let manifest = Manifest::read(&dir.join("plugin.toml"))?;
        let id = manifest.id.clone();
        let wasm_path = dir.join(&manifest.component);
        let wasm = std::fs::read(&wasm_path).map_err(|e| {
            PluginError::Invalid(format!("{id}: reading {}: {e}", wasm_path.display()))
        })?;
        let (component, sha256, from_cache) = load_component(&wasm, cache)?;
        let rt = runtime()?;
        let ty = component.component_type();
        for (name, _) in ty.imports(&rt.engine) {
            if !ALLOWED_IMPORTS
                .iter()
                .any(|allowed| name.starts_with(allowed))
            {
                return Err(PluginError::Invalid(format!(
                    "{id}: the component imports {name}, which plugins may not use"
                )));
            }
        }
        let exports_hooks = ty
            .exports(&rt.engine)
            .any(|(name, _)| name.starts_with("crm:plugin/hooks@0.1."));
        if !exports_hooks {
            return Err(PluginError::Invalid(format!(
                "{id}: the component does not export crm:plugin/hooks@0.1"
            )));
        }
        let pre = rt
            .linker
            .instantiate_pre(&component)
            .and_then(PluginPre::new)
            .map_err(|e| {
                PluginError::Invalid(format!("{id}: the component does not link: {e:#}"))
            })?;
        let fields = match &manifest.fields {
            Some(f) => Some(Fields::load(&dir.join(&f.schema), &id)?),
            None => None,
        };
        for derived in &manifest.hooks.derive {
            if !fields.as_ref().is_some_and(|f| f.owns(derived)) {
                return Err(PluginError::Invalid(format!(
                    "{id}: derived field '{derived}' is not declared in its fields schema"
                )));
            }
        }
        if let Some(c) = &manifest.config {
            let path = dir.join(&c.schema);
            let text = std::fs::read_to_string(&path).map_err(|e| {
                PluginError::Invalid(format!("{id}: reading {}: {e}", path.display()))
            })?;
            let schema: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| PluginError::Invalid(format!("{id}: {}: {e}", path.display())))?;
            let validator = jsonschema::options()
                .with_pattern_options(jsonschema::PatternOptions::regex())
                .build(&schema)
                .map_err(|e| PluginError::Invalid(format!("{id}: config schema: {e}")))?;
            if let Some(e) = validator.iter_errors(config).next() {
                return Err(PluginError::Invalid(format!(
                    "{id}: configuration {}: {e}",
                    e.instance_path()
                )));
            }
        }
        Ok(LoadedPlugin {
            manifest,
            dir: dir.to_path_buf(),
            fields,
            config: config.to_string(),
            sha256,
            from_cache,
            pre,
        })
    }

    pub fn id(&self) -> &str {
        &self.manifest.id
    }

    /// Runs `f` on a fresh instance, within the plugin's limits.
    fn call<R>(
        &self,
        f: impl FnOnce(&Plugin, &mut Store<HostState>) -> wasmtime::Result<Result<R, String>>,
    ) -> Result<(R, Vec<LogLine>), PluginError> {
        let mut store = self.store()?;
        let instance = self
            .pre
            .instantiate(&mut store)
            .map_err(|e| self.classify(e, &store))?;
        let result = f(&instance, &mut store);
        self.finish(result, store)
    }

    fn store(&self) -> Result<Store<HostState>, PluginError> {
        let rt = runtime()?;
        let stderr = MemoryOutputPipe::new(16 << 10);
        let wasi = WasiCtxBuilder::new().stderr(stderr.clone()).build();
        let stderr_kept = stderr;
        let state = HostState {
            limits: Limiter {
                memory: (self.manifest.limits.memory_mib as usize) << 20,
                denied: false,
            },
            wasi,
            table: ResourceTable::new(),
            now: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64),
            config: self.config.clone(),
            log: Vec::new(),
            dropped_lines: 0,
            stderr: stderr_kept,
        };
        let mut store = Store::new(&rt.engine, state);
        store.limiter(|s| &mut s.limits);
        self.arm(&mut store);
        Ok(store)
    }

    /// Sets the time budget of the next call.
    fn arm(&self, store: &mut Store<HostState>) {
        let ticks = (self.manifest.limits.timeout_ms as u64).div_ceil(TICK.as_millis() as u64) + 1;
        store.set_epoch_deadline(ticks);
        store.epoch_deadline_trap();
    }

    fn finish<R>(
        &self,
        result: wasmtime::Result<Result<R, String>>,
        mut store: Store<HostState>,
    ) -> Result<(R, Vec<LogLine>), PluginError> {
        let mut log = std::mem::take(&mut store.data_mut().log);
        let dropped = store.data().dropped_lines;
        if dropped > 0 {
            log.push(LogLine {
                level: "warn",
                message: format!("{dropped} more log lines were dropped"),
            });
        }
        match result {
            Ok(Ok(value)) => Ok((value, log)),
            Ok(Err(message)) => Err(PluginError::Failed {
                plugin: self.id().into(),
                message: truncate(&message, MAX_TEXT),
            }),
            Err(e) => Err(self.classify(e, &store)),
        }
    }

    fn classify(&self, e: wasmtime::Error, store: &Store<HostState>) -> PluginError {
        let plugin = self.id().to_owned();
        let stderr = String::from_utf8_lossy(&store.data().stderr.contents()).into_owned();
        if store.data().limits.denied {
            return PluginError::OutOfMemory {
                plugin,
                limit_mib: self.manifest.limits.memory_mib,
            };
        }
        match e.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => PluginError::Timeout {
                plugin,
                limit_ms: self.manifest.limits.timeout_ms,
            },
            Some(Trap::StackOverflow) => PluginError::StackOverflow { plugin },
            Some(Trap::UnreachableCodeReached) => {
                // Rust writes "thread '..' panicked at FILE:LINE:COL:" and
                // the message on the next line.
                let lines: Vec<&str> = stderr.lines().collect();
                let message = match lines.iter().position(|l| l.contains("panicked at ")) {
                    Some(i) => {
                        let at = lines[i]
                            .split("panicked at ")
                            .nth(1)
                            .unwrap_or("")
                            .trim_end_matches(':');
                        let what = lines.get(i + 1).map_or("", |l| l.trim());
                        truncate(&format!("{what} (at {at})"), MAX_TEXT)
                    }
                    None => "it stopped (a panic or an abort)".into(),
                };
                PluginError::Panicked { plugin, message }
            }
            Some(trap) => PluginError::Trapped {
                plugin,
                message: trap.to_string(),
            },
            None => PluginError::Trapped {
                plugin,
                message: truncate(&format!("{e:#}"), MAX_TEXT),
            },
        }
    }

    fn check_count<T>(&self, results: &[T], expected: usize) -> Result<(), PluginError> {
        if results.len() != expected {
            return Err(self.bad(format!(
                "it returned {} results for {expected} customers",
                results.len()
            )));
        }
        Ok(())
    }

    fn bad(&self, why: String) -> PluginError {
        PluginError::BadOutput {
            plugin: self.id().into(),
            message: why,
        }
    }

    fn decode<T: serde::de::DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, PluginError> {
        if bytes.len() > MAX_OUTPUT_BYTES {
            return Err(self.bad(format!(
                "it returned {} bytes, more than {MAX_OUTPUT_BYTES}",
                bytes.len()
            )));
        }
        wire::decode(bytes).map_err(|e| self.bad(e))
    }

    fn short(&self, what: &str, text: &str, max: usize) -> Result<(), PluginError> {
        if text.len() > max {
            return Err(self.bad(format!("{what} is {} bytes, more than {max}", text.len())));
        }
        Ok(())
    }

    /// The `validate` hook: per customer, issues and patches (patches only
    /// to the plugin's own fields, with values that fit their schema).
    pub fn validate(
        &self,
        batch: &wire::Batch,
    ) -> Result<(wire::Results<wire::Verdict>, Vec<LogLine>), PluginError> {
        let bytes = batch.encode();
        let (out, log) = self.call(|p, s| p.crm_plugin_hooks().call_validate(s, &bytes))?;
        let results: wire::Results<wire::Verdict> = self.decode(&out)?;
        self.check_count(&results, batch.customers.len())?;
        let fields = self.fields.as_ref();
        for verdict in results.iter().flatten() {
            for issue in &verdict.issues {
                self.short("an issue's field", &issue.field, MAX_SHORT)?;
                self.short("an issue's message", &issue.message, MAX_TEXT)?;
            }
            for patch in &verdict.patches {
                let Some(fields) = fields.filter(|f| f.owns(&patch.field)) else {
                    return Err(self.bad(format!(
                        "it patched '{}', a field it does not own",
                        patch.field
                    )));
                };
                if let Some(value) = &patch.value {
                    let value: serde_json::Value = serde_json::from_str(value).map_err(|e| {
                        self.bad(format!("patch of '{}' is not JSON: {e}", patch.field))
                    })?;
                    fields
                        .check_value(&patch.field, &value)
                        .map_err(|e| self.bad(format!("patch {e}")))?;
                }
            }
        }
        Ok((results, log))
    }

    /// The `derive` hook: per customer, values of the declared derived fields.
    pub fn derive(
        &self,
        batch: &wire::Batch,
    ) -> Result<(wire::Results<Vec<wire::Field>>, Vec<LogLine>), PluginError> {
        let bytes = batch.encode();
        let (out, log) = self.call(|p, s| p.crm_plugin_hooks().call_derive(s, &bytes))?;
        let results: wire::Results<Vec<wire::Field>> = self.decode(&out)?;
        self.check_count(&results, batch.customers.len())?;
        for fields in results.iter().flatten() {
            for field in fields {
                if !self.manifest.hooks.derive.contains(&field.name) {
                    return Err(self.bad(format!(
                        "it derived '{}', which its manifest does not declare",
                        field.name
                    )));
                }
                let value: serde_json::Value = serde_json::from_str(&field.value)
                    .map_err(|e| self.bad(format!("derived '{}' is not JSON: {e}", field.name)))?;
                if let Some(f) = &self.fields {
                    f.check_value(&field.name, &value)
                        .map_err(|e| self.bad(format!("derived {e}")))?;
                }
            }
        }
        Ok((results, log))
    }

    /// The `score` hook with a declared model: per customer, a finite
    /// value, a band and bounded reasons.
    pub fn score(
        &self,
        model: &str,
        batch: &wire::Batch,
    ) -> Result<(wire::Results<wire::Score>, Vec<LogLine>), PluginError> {
        if !self.manifest.hooks.scores.iter().any(|m| m == model) {
            return Err(PluginError::Unknown(format!(
                "{} has no model '{model}' (it has {})",
                self.id(),
                self.manifest.hooks.scores.join(", ")
            )));
        }
        let bytes = batch.encode();
        let (out, log) = self.call(|p, s| p.crm_plugin_hooks().call_score(s, model, &bytes))?;
        let results: wire::Results<wire::Score> = self.decode(&out)?;
        self.check_count(&results, batch.customers.len())?;
        for score in results.iter().flatten() {
            if !score.value.is_finite() {
                return Err(self.bad(format!("it scored {} (not a finite number)", score.value)));
            }
            self.short("a band", &score.band, MAX_SHORT)?;
            if score.reasons.len() > MAX_REASONS {
                return Err(self.bad(format!(
                    "it gave {} reasons, more than {MAX_REASONS}",
                    score.reasons.len()
                )));
            }
            for r in &score.reasons {
                self.short("a reason's feature", &r.feature, MAX_SHORT)?;
                self.short("a reason's detail", &r.detail, MAX_TEXT)?;
                if !r.weight.is_finite() {
                    return Err(self.bad("a reason's weight is not a finite number".into()));
                }
            }
        }
        Ok((results, log))
    }

    /// Runs a declared industry analysis over `batches`, in one instance.
    pub fn analysis(
        &self,
        name: &str,
        params: &str,
        batches: &mut dyn Iterator<Item = wire::Batch>,
    ) -> Result<(wire::Table, Vec<LogLine>), PluginError> {
        if !self.manifest.hooks.analyses.iter().any(|a| a == name) {
            return Err(PluginError::Unknown(format!(
                "{} has no analysis '{name}' (it has {})",
                self.id(),
                self.manifest.hooks.analyses.join(", ")
            )));
        }
        let mut store = self.store()?;
        let instance = self
            .pre
            .instantiate(&mut store)
            .map_err(|e| self.classify(e, &store))?;
        let hooks = instance.crm_plugin_hooks();
        let result = (|| -> wasmtime::Result<Result<Vec<u8>, String>> {
            if let Err(e) = hooks.call_analysis_begin(&mut store, name, params)? {
                return Ok(Err(e));
            }
            for batch in batches {
                self.arm(&mut store);
                if let Err(e) = hooks.call_analysis_feed(&mut store, &wire::encode(&batch))? {
                    return Ok(Err(e));
                }
            }
            self.arm(&mut store);
            hooks.call_analysis_finish(&mut store)
        })();
        let (out, log) = self.finish(result, store)?;
        let table: wire::Table = self.decode(&out)?;
        if table.columns.len() > MAX_TABLE_COLUMNS || table.rows.len() > MAX_TABLE_ROWS {
            return Err(self.bad(format!(
                "its table has {} columns and {} rows",
                table.columns.len(),
                table.rows.len()
            )));
        }
        for c in &table.columns {
            self.short("a column name", &c.name, MAX_SHORT)?;
        }
        for row in &table.rows {
            if row.len() != table.columns.len() {
                return Err(self.bad(format!(
                    "a row has {} cells for {} columns",
                    row.len(),
                    table.columns.len()
                )));
            }
            for cell in row {
                match cell {
                    wire::Cell::Text(t) => self.short("a cell", t, MAX_TEXT)?,
                    wire::Cell::Number(n) if !n.is_finite() => {
                        return Err(self.bad("a cell is not a finite number".into()));
                    }
                    _ => {}
                }
            }
        }
        Ok((table, log))
    }
}

fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// Whether the runtime uses the pooling allocator (for reports).
pub fn pooling() -> Result<bool, PluginError> {
    Ok(runtime()?.pooling)
}

/// Shared handle type for a loaded plugin.
pub type Loaded = Arc<LoadedPlugin>;
