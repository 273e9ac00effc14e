//! The installed plugins of a store: their files, state and loaded code.
//!
//! Layout under the registry directory:
//! `registry.json` (which version of each plugin is current, whether it is
//! enabled and why not, its configuration), `<id>/<version>/` (the files of
//! each installed version, kept for roll-back), and `cache/` (precompiled
//! components). Every change to `registry.json` is written to a temporary
//! file and renamed into place.
//!
//! Calls take the plugin's current `Arc<LoadedPlugin>`; an upgrade swaps
//! it, so calls already running finish on the old version and new calls
//! use the new one, without a restart. A plugin that misbehaves
//! `FAILURES_BEFORE_DISABLE` calls in a row is disabled, with the reason.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use crm_sdk::wire;
use serde::{Deserialize, Serialize};

use crate::runtime::LoadedPlugin;
use crate::{LogLine, Manifest, PluginError};

/// Consecutive misbehaving calls after which a plugin is disabled.
pub const FAILURES_BEFORE_DISABLE: u32 = 5;

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct State {
    plugins: BTreeMap<String, Entry>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Entry {
    version: String,
    enabled: bool,
    disabled_reason: Option<String>,
    config: serde_json::Value,
}

/// What `list` says of a plugin.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PluginInfo {
    pub id: String,
    pub name: String,
    pub version: String,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    /// Misbehaving calls in a row so far.
    pub failures: u32,
    pub hooks: crate::Hooks,
    /// The attribute keys it owns.
    pub fields: Vec<String>,
    pub description: String,
}

pub struct Registry {
    root: PathBuf,
    state: Mutex<State>,
    loaded: RwLock<HashMap<String, Arc<LoadedPlugin>>>,
    failures: Mutex<HashMap<String, u32>>,
    /// Calls and failed calls per plugin since the registry was opened.
    totals: Mutex<HashMap<String, (u64, u64)>>,
    /// Load problems of plugins that are enabled but could not be loaded.
    broken: Mutex<HashMap<String, String>>,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> PluginError + '_ {
    move |e| PluginError::Host(format!("{}: {e}", path.display()))
}

fn newer(a: &str, b: &str) -> bool {
    let parse = |v: &str| -> Vec<u64> { v.split('.').map(|p| p.parse().unwrap_or(0)).collect() };
    parse(a) > parse(b)
}

impl Registry {
    /// Opens (or creates) the registry in `root` and loads its enabled plugins.
    pub fn open(root: &Path) -> Result<Registry, PluginError> {
        std::fs::create_dir_all(root).map_err(io(root))?;
        let path = root.join("registry.json");
        let state: State = match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text)
                .map_err(|e| PluginError::Host(format!("{}: {e}", path.display())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::default(),
            Err(e) => return Err(io(&path)(e)),
        };
        let registry = Registry {
            root: root.to_path_buf(),
            state: Mutex::new(State::default()),
            loaded: RwLock::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
            totals: Mutex::new(HashMap::new()),
            broken: Mutex::new(HashMap::new()),
        };
        for (id, entry) in state.plugins.iter().filter(|(_, e)| e.enabled) {
            match LoadedPlugin::load(
                &registry.version_dir(id, &entry.version),
                &entry.config,
                &registry.cache(),
            ) {
                Ok(plugin) => {
                    registry
                        .loaded
                        .write()
                        .expect("registry lock")
                        .insert(id.clone(), Arc::new(plugin));
                }
                Err(e) => {
                    registry
                        .broken
                        .lock()
                        .expect("registry lock")
                        .insert(id.clone(), e.to_string());
                }
            }
        }
        *registry.state.lock().expect("registry lock") = state;
        Ok(registry)
    }

    fn version_dir(&self, id: &str, version: &str) -> PathBuf {
        self.root.join(id).join(version)
    }

    fn cache(&self) -> PathBuf {
        self.root.join("cache")
    }

    fn save(&self, state: &State) -> Result<(), PluginError> {
        let path = self.root.join("registry.json");
        let tmp = self.root.join("registry.json.partial");
        let text = serde_json::to_string_pretty(state).expect("the state serializes");
        std::fs::write(&tmp, text).map_err(io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io(&path))
    }

    /// Copies a package (a directory with `plugin.toml`, the component and
    /// its schemas) to `<id>/<version>/` and loads it from there.
    fn stage(
        &self,
        package: &Path,
        config: &serde_json::Value,
    ) -> Result<LoadedPlugin, PluginError> {
        let manifest = Manifest::read(&package.join("plugin.toml"))?;
        let dir = self.version_dir(&manifest.id, &manifest.version);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(io(&dir))?;
        }
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let mut files = vec![
            PathBuf::from("plugin.toml"),
            PathBuf::from(&manifest.component),
        ];
        files.extend(manifest.fields.iter().map(|f| PathBuf::from(&f.schema)));
        files.extend(manifest.config.iter().map(|c| PathBuf::from(&c.schema)));
        // Segment scripts shipped with the plugin, if any.
        if let Ok(entries) = std::fs::read_dir(package.join("segments")) {
            for entry in entries.flatten() {
                let name = entry.file_name();
                if Path::new(&name).extension().is_some_and(|x| x == "rhai") {
                    files.push(Path::new("segments").join(name));
                }
            }
        }
        for file in files {
            let (from, to) = (package.join(&file), dir.join(&file));
            if let Some(parent) = to.parent() {
                std::fs::create_dir_all(parent).map_err(io(parent))?;
            }
            std::fs::copy(&from, &to).map_err(io(&from))?;
        }
        LoadedPlugin::load(&dir, config, &self.cache())
    }

    /// Fails when another enabled plugin owns one of `plugin`'s fields.
    fn check_ownership(&self, plugin: &LoadedPlugin) -> Result<(), PluginError> {
        let Some(fields) = &plugin.fields else {
            return Ok(());
        };
        for other in self.loaded.read().expect("registry lock").values() {
            if other.id() == plugin.id() {
                continue;
            }
            if let Some(theirs) = &other.fields
                && let Some(shared) = fields.owned().iter().find(|f| theirs.owns(f))
            {
                return Err(PluginError::Invalid(format!(
                    "{} and {} both declare the field '{shared}'; a field belongs to one plugin",
                    plugin.id(),
                    other.id()
                )));
            }
        }
        Ok(())
    }

    /// Installs and enables the plugin package in `package`.
    pub fn install(
        &self,
        package: &Path,
        config: Option<serde_json::Value>,
    ) -> Result<Arc<LoadedPlugin>, PluginError> {
        let manifest = Manifest::read(&package.join("plugin.toml"))?;
        let mut state = self.state.lock().expect("registry lock");
        if state.plugins.contains_key(&manifest.id) {
            return Err(PluginError::Invalid(format!(
                "{} is installed already (version {}); use upgrade",
                manifest.id, state.plugins[&manifest.id].version
            )));
        }
        let config = config.unwrap_or_else(|| serde_json::json!({}));
        let plugin = Arc::new(self.stage(package, &config)?);
        self.check_ownership(&plugin)?;
        state.plugins.insert(
            manifest.id.clone(),
            Entry {
                version: manifest.version.clone(),
                enabled: true,
                disabled_reason: None,
                config,
            },
        );
        self.save(&state)?;
        self.loaded
            .write()
            .expect("registry lock")
            .insert(manifest.id.clone(), plugin.clone());
        Ok(plugin)
    }

    /// Replaces an installed plugin with a newer version of it, without a
    /// restart: calls running finish on the old version.
    pub fn upgrade(
        &self,
        package: &Path,
        config: Option<serde_json::Value>,
    ) -> Result<Arc<LoadedPlugin>, PluginError> {
        let manifest = Manifest::read(&package.join("plugin.toml"))?;
        let mut state = self.state.lock().expect("registry lock");
        let Some(entry) = state.plugins.get(&manifest.id).cloned() else {
            return Err(PluginError::Invalid(format!(
                "{} is not installed; use install",
                manifest.id
            )));
        };
        if !newer(&manifest.version, &entry.version) {
            return Err(PluginError::Invalid(format!(
                "{} {} is not newer than the installed {}",
                manifest.id, manifest.version, entry.version
            )));
        }
        let config = config.unwrap_or(entry.config.clone());
        let plugin = Arc::new(self.stage(package, &config)?);
        self.check_ownership(&plugin)?;
        state.plugins.insert(
            manifest.id.clone(),
            Entry {
                version: manifest.version.clone(),
                enabled: entry.enabled,
                disabled_reason: entry.disabled_reason,
                config,
            },
        );
        self.save(&state)?;
        if state.plugins[&manifest.id].enabled {
            self.loaded
                .write()
                .expect("registry lock")
                .insert(manifest.id.clone(), plugin.clone());
        }
        self.failures
            .lock()
            .expect("registry lock")
            .remove(&manifest.id);
        Ok(plugin)
    }

    pub fn enable(&self, id: &str) -> Result<(), PluginError> {
        let mut state = self.state.lock().expect("registry lock");
        let entry = state
            .plugins
            .get(id)
            .cloned()
            .ok_or_else(|| not_installed(id))?;
        let plugin = Arc::new(LoadedPlugin::load(
            &self.version_dir(id, &entry.version),
            &entry.config,
            &self.cache(),
        )?);
        self.check_ownership(&plugin)?;
        state.plugins.insert(
            id.into(),
            Entry {
                enabled: true,
                disabled_reason: None,
                ..entry
            },
        );
        self.save(&state)?;
        self.loaded
            .write()
            .expect("registry lock")
            .insert(id.into(), plugin);
        self.failures.lock().expect("registry lock").remove(id);
        self.broken.lock().expect("registry lock").remove(id);
        Ok(())
    }

    pub fn disable(&self, id: &str, reason: Option<String>) -> Result<(), PluginError> {
        let mut state = self.state.lock().expect("registry lock");
        let entry = state.plugins.get_mut(id).ok_or_else(|| not_installed(id))?;
        entry.enabled = false;
        entry.disabled_reason = reason;
        let state_copy = state.clone();
        self.save(&state_copy)?;
        self.loaded.write().expect("registry lock").remove(id);
        Ok(())
    }

    /// Uninstalls a plugin and deletes its files.
    pub fn remove(&self, id: &str) -> Result<(), PluginError> {
        let mut state = self.state.lock().expect("registry lock");
        state.plugins.remove(id).ok_or_else(|| not_installed(id))?;
        self.save(&state)?;
        self.loaded.write().expect("registry lock").remove(id);
        let dir = self.root.join(id);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(io(&dir))?;
        }
        Ok(())
    }

    pub fn list(&self) -> Vec<PluginInfo> {
        let state = self.state.lock().expect("registry lock").clone();
        let failures = self.failures.lock().expect("registry lock").clone();
        let broken = self.broken.lock().expect("registry lock").clone();
        state
            .plugins
            .iter()
            .map(|(id, entry)| {
                let manifest =
                    Manifest::read(&self.version_dir(id, &entry.version).join("plugin.toml")).ok();
                let loaded = self.loaded.read().expect("registry lock").get(id).cloned();
                PluginInfo {
                    id: id.clone(),
                    name: manifest
                        .as_ref()
                        .map_or_else(|| id.clone(), |m| m.name.clone()),
                    version: entry.version.clone(),
                    enabled: entry.enabled && loaded.is_some(),
                    disabled_reason: entry
                        .disabled_reason
                        .clone()
                        .or_else(|| broken.get(id).cloned()),
                    failures: failures.get(id).copied().unwrap_or(0),
                    hooks: manifest
                        .as_ref()
                        .map(|m| m.hooks.clone())
                        .unwrap_or_default(),
                    fields: loaded
                        .and_then(|p| p.fields.as_ref().map(|f| f.owned().to_vec()))
                        .unwrap_or_default(),
                    description: manifest.map(|m| m.description).unwrap_or_default(),
                }
            })
            .collect()
    }

    /// The current version of an enabled plugin.
    pub fn get(&self, id: &str) -> Result<Arc<LoadedPlugin>, PluginError> {
        if let Some(plugin) = self.loaded.read().expect("registry lock").get(id) {
            return Ok(plugin.clone());
        }
        let state = self.state.lock().expect("registry lock");
        match state.plugins.get(id) {
            None => Err(not_installed(id)),
            Some(entry) => Err(PluginError::Disabled {
                id: id.into(),
                reason: entry
                    .disabled_reason
                    .clone()
                    .or_else(|| self.broken.lock().expect("registry lock").get(id).cloned()),
            }),
        }
    }

    /// Every enabled plugin.
    pub fn enabled(&self) -> Vec<Arc<LoadedPlugin>> {
        let mut all: Vec<_> = self
            .loaded
            .read()
            .expect("registry lock")
            .values()
            .cloned()
            .collect();
        all.sort_by(|a, b| a.id().cmp(b.id()));
        all
    }

    /// Counts a call's outcome: a plugin that misbehaves too many calls in a
    /// row is disabled.
    pub fn record<T>(&self, id: &str, outcome: &Result<T, PluginError>) {
        {
            let mut totals = self.totals.lock().expect("registry lock");
            let t = totals.entry(id.to_owned()).or_default();
            t.0 += 1;
            if outcome.is_err() {
                t.1 += 1;
            }
        }
        let mut failures = self.failures.lock().expect("registry lock");
        match outcome {
            Err(e) if e.is_plugin_fault() => {
                let n = failures.entry(id.to_owned()).or_default();
                *n += 1;
                if *n >= FAILURES_BEFORE_DISABLE {
                    let reason = format!("disabled after {n} failed calls in a row; the last: {e}");
                    drop(failures);
                    let _ = self.disable(id, Some(reason));
                }
            }
            Err(_) => {}
            Ok(_) => {
                failures.remove(id);
            }
        }
    }

    /// Calls and failed calls per plugin since the registry was opened.
    pub fn call_totals(&self) -> Vec<(String, u64, u64)> {
        let totals = self.totals.lock().expect("registry lock");
        let mut all: Vec<(String, u64, u64)> = totals
            .iter()
            .map(|(id, (calls, failed))| (id.clone(), *calls, *failed))
            .collect();
        all.sort();
        all
    }

    /// Runs `call` on a loaded plugin and counts its outcome towards the
    /// plugin's failures in a row (see [`Registry::record`]).
    pub fn counted<T>(
        &self,
        plugin: &LoadedPlugin,
        call: impl FnOnce(&LoadedPlugin) -> Result<T, PluginError>,
    ) -> Result<T, PluginError> {
        let outcome = call(plugin);
        self.record(plugin.id(), &outcome);
        outcome
    }

    /// Scores with an enabled plugin's model, counting the outcome.
    pub fn score(
        &self,
        id: &str,
        model: &str,
        batch: &wire::Batch,
    ) -> Result<(wire::Results<wire::Score>, Vec<LogLine>), PluginError> {
        self.counted(&*self.get(id)?, |p| p.score(model, batch))
    }

    pub fn derive(
        &self,
        id: &str,
        batch: &wire::Batch,
    ) -> Result<(wire::Results<Vec<wire::Field>>, Vec<LogLine>), PluginError> {
        self.counted(&*self.get(id)?, |p| p.derive(batch))
    }

    pub fn validate(
        &self,
        id: &str,
        batch: &wire::Batch,
    ) -> Result<(wire::Results<wire::Verdict>, Vec<LogLine>), PluginError> {
        self.counted(&*self.get(id)?, |p| p.validate(batch))
    }

    pub fn analysis(
        &self,
        id: &str,
        name: &str,
        params: &str,
        batches: &mut dyn Iterator<Item = wire::Batch>,
    ) -> Result<(wire::Table, Vec<LogLine>), PluginError> {
        self.counted(&*self.get(id)?, |p| p.analysis(name, params, batches))
    }
}

fn not_installed(id: &str) -> PluginError {
    PluginError::Unknown(format!("no plugin '{id}' is installed"))
}
