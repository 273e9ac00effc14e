//! `plugin.toml`: what a plugin is, which hooks it implements, the JSON
//! Schema of its fields, what it reads and what it may use.

use std::path::Path;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::PluginError;

/// The plugin API versions (`major.minor` of the WIT package) this host runs.
pub const SUPPORTED_API: &[&str] = &["0.1"];

/// A plugin's manifest, `plugin.toml`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Lowercase letters, digits and dashes; unique among installed plugins.
    #[schemars(regex(pattern = r"^[a-z0-9-]{1,64}$"))]
    pub id: String,
    /// A name for people.
    pub name: String,
    /// The plugin's own version, `major.minor.patch`.
    #[schemars(regex(pattern = r"^[0-9]+\.[0-9]+\.[0-9]+$"))]
    pub version: String,
    /// The plugin API it was built against, `major.minor` (see `crm-sdk`).
    pub api: String,
    #[serde(default)]
    pub description: String,
    /// The WebAssembly component, relative to the manifest.
    pub component: String,
    pub hooks: Hooks,
    /// The plugin's custom fields: the industry fields it owns in a
    /// customer's attributes.
    #[serde(default)]
    pub fields: Option<SchemaFile>,
    /// The plugin's configuration, set when it is installed.
    #[serde(default)]
    pub config: Option<SchemaFile>,
    /// What the plugin is given of each customer beyond its fields and metrics.
    #[serde(default)]
    pub inputs: Inputs,
    /// What the plugin asks for; the host caps it.
    #[serde(default)]
    pub limits: Limits,
    /// Capabilities beyond the host interface; none exist in API 0.1.
    #[serde(default)]
    pub capabilities: Vec<String>,
}

/// The hooks a plugin implements.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Hooks {
    /// Checks (and may patch) customers as they are written.
    #[serde(default)]
    pub validate: bool,
    /// Names of the derived fields it computes (declared in its fields schema).
    #[serde(default)]
    pub derive: Vec<String>,
    /// Names of its scoring models.
    #[serde(default)]
    pub scores: Vec<String>,
    /// Names of its industry analyses.
    #[serde(default)]
    pub analyses: Vec<String>,
}

/// A JSON Schema file, relative to the manifest.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SchemaFile {
    pub schema: String,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Inputs {
    /// Transaction lines of the last this many days (0: none).
    #[serde(default)]
    pub lines_days: u32,
    /// The parts of each customer the plugin reads besides its id: any of
    /// "profile" (name, gender, birth date, region, city, channel, joined,
    /// tier), "attributes", "metrics". All three when not given; a plugin
    /// that reads less is called with less, which is faster.
    #[serde(default)]
    pub customer: Option<Vec<CustomerPart>>,
}

/// A part of a customer a plugin can read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum CustomerPart {
    Profile,
    Attributes,
    Metrics,
}

impl Inputs {
    /// The parts asked for, as bits of `crm_sdk::wire::inputs`.
    pub fn customer_bits(&self) -> u8 {
        use crm_sdk::wire::inputs;
        match &self.customer {
            None => inputs::ALL,
            Some(parts) => parts.iter().fold(0, |bits, part| {
                bits | match part {
                    CustomerPart::Profile => inputs::PROFILE,
                    CustomerPart::Attributes => inputs::ATTRIBUTES,
                    CustomerPart::Metrics => inputs::METRICS,
                }
            }),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Linear memory of one instance, in MiB.
    #[serde(default = "default_memory")]
    #[schemars(range(min = 1, max = 256))]
    pub memory_mib: u32,
    /// Time for one call, in milliseconds.
    #[serde(default = "default_timeout")]
    #[schemars(range(min = 1, max = 30_000))]
    pub timeout_ms: u32,
    /// Most customers in one call.
    #[serde(default = "default_batch")]
    #[schemars(range(min = 1, max = 4096))]
    pub max_batch: u32,
}

fn default_memory() -> u32 {
    64
}

fn default_timeout() -> u32 {
    2000
}

fn default_batch() -> u32 {
    2048
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            memory_mib: default_memory(),
            timeout_ms: default_timeout(),
            max_batch: default_batch(),
        }
    }
}

/// Ceilings on what a manifest may ask for.
pub const MAX_MEMORY_MIB: u32 = 256;
pub const MAX_TIMEOUT_MS: u32 = 30_000;
pub const MAX_BATCH: u32 = 4096;

impl Manifest {
    /// Reads and checks `plugin.toml`.
    pub fn read(path: &Path) -> Result<Manifest, PluginError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| PluginError::Invalid(format!("reading {}: {e}", path.display())))?;
        Manifest::parse(&text).map_err(|e| PluginError::Invalid(format!("{}: {e}", path.display())))
    }

    /// Parses and checks the text of a `plugin.toml`.
    pub fn parse(text: &str) -> Result<Manifest, PluginError> {
        let manifest: Manifest =
            toml::from_str(text).map_err(|e| PluginError::Invalid(e.to_string()))?;
        manifest.check()?;
        Ok(manifest)
    }

    /// The JSON Schema (draft 2020-12) of `plugin.toml`, published as
    /// `schemas/plugin-manifest.schema.json` for editors and CI checks.
    pub fn json_schema() -> serde_json::Value {
        let generator = schemars::generate::SchemaSettings::draft2020_12().into_generator();
        serde_json::to_value(generator.into_root_schema_for::<Manifest>())
            .expect("schemas serialize")
    }

    fn check(&self) -> Result<(), PluginError> {
        let bad = |why: String| Err(PluginError::Invalid(why));
        let id_ok = !self.id.is_empty()
            && self.id.len() <= 64
            && self
                .id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !id_ok {
            return bad(format!(
                "id '{}' must be 1 to 64 lowercase letters, digits or dashes",
                self.id
            ));
        }
        let parts: Vec<&str> = self.version.split('.').collect();
        if parts.len() != 3
            || parts
                .iter()
                .any(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()))
        {
            return bad(format!(
                "version '{}' must be major.minor.patch",
                self.version
            ));
        }
        if !SUPPORTED_API.contains(&self.api.as_str()) {
            return bad(format!(
                "api '{}' is not supported by this crm (it runs {})",
                self.api,
                SUPPORTED_API.join(", ")
            ));
        }
        let mut files = vec![("component", &self.component)];
        files.extend(self.fields.iter().map(|f| ("fields.schema", &f.schema)));
        files.extend(self.config.iter().map(|c| ("config.schema", &c.schema)));
        for (key, file) in files {
            let path = std::path::Path::new(file);
            let inside = path
                .components()
                .all(|c| matches!(c, std::path::Component::Normal(_)));
            if file.is_empty() || !inside {
                return bad(format!(
                    "{key} '{file}' must be a path inside the package, without '..'"
                ));
            }
        }
        let h = &self.hooks;
        if !h.validate && h.derive.is_empty() && h.scores.is_empty() && h.analyses.is_empty() {
            return bad("[hooks] declares no hook".into());
        }
        if (h.validate || !h.derive.is_empty()) && self.fields.is_none() {
            return bad(
                "validate and derive need [fields] with the schema of the plugin's fields".into(),
            );
        }
        if let Some(c) = self.capabilities.first() {
            return bad(format!(
                "capability '{c}' does not exist in plugin API {}",
                self.api
            ));
        }
        let l = &self.limits;
        if l.memory_mib == 0 || l.memory_mib > MAX_MEMORY_MIB {
            return bad(format!("limits.memory_mib must be 1 to {MAX_MEMORY_MIB}"));
        }
        if l.timeout_ms == 0 || l.timeout_ms > MAX_TIMEOUT_MS {
            return bad(format!("limits.timeout_ms must be 1 to {MAX_TIMEOUT_MS}"));
        }
        if l.max_batch == 0 || l.max_batch > MAX_BATCH {
            return bad(format!("limits.max_batch must be 1 to {MAX_BATCH}"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    const MINIMAL: &str = r#"
id = "wine-shop"
name = "Wine shop"
version = "1.2.3"
api = "0.1"
component = "plugin.wasm"

[hooks]
scores = ["engagement"]
"#;

    #[test]
    fn a_minimal_manifest_gets_the_default_limits() {
        let m = Manifest::parse(MINIMAL).unwrap();
        assert_eq!(m.limits, Limits::default());
        assert_eq!(m.hooks.scores, ["engagement"]);
        assert_eq!(m.inputs.lines_days, 0);
        assert_eq!(m.inputs.customer_bits(), crm_sdk::wire::inputs::ALL);
    }

    #[test]
    fn a_plugin_asks_for_the_parts_of_customers_it_reads() {
        use crm_sdk::wire::inputs;
        let with = |parts: &str| {
            Manifest::parse(&format!("{MINIMAL}\n[inputs]\ncustomer = [{parts}]\n"))
                .map(|m| m.inputs.customer_bits())
        };
        assert_eq!(with("").unwrap(), 0);
        assert_eq!(with("\"metrics\"").unwrap(), inputs::METRICS);
        assert_eq!(
            with("\"profile\", \"attributes\"").unwrap(),
            inputs::PROFILE | inputs::ATTRIBUTES
        );
        let err = with("\"metric\"").unwrap_err().to_string();
        assert!(err.contains("unknown variant `metric`"), "{err}");
    }

    #[test]
    fn mistakes_are_named() {
        let cases = [
            ("id = \"wine-shop\"", "id = \"Wine Shop\"", "id 'Wine Shop'"),
            (
                "version = \"1.2.3\"",
                "version = \"1.2\"",
                "major.minor.patch",
            ),
            (
                "api = \"0.1\"",
                "api = \"9.0\"",
                "api '9.0' is not supported",
            ),
            ("scores = [\"engagement\"]", "", "declares no hook"),
            (
                "scores = [\"engagement\"]",
                "validate = true",
                "validate and derive need [fields]",
            ),
            (
                "component = \"plugin.wasm\"",
                "component = \"../../etc/passwd\"",
                "inside the package",
            ),
            (
                "component = \"plugin.wasm\"",
                "component = \"/tmp/plugin.wasm\"",
                "inside the package",
            ),
            (
                "[hooks]",
                "capabilities = [\"network\"]\n[hooks]",
                "capability 'network'",
            ),
            (
                "[hooks]",
                "[limits]\nmemory_mib = 4096\n[hooks]",
                "memory_mib must be",
            ),
            (
                "[hooks]",
                "colour = \"red\"\n[hooks]",
                "unknown field `colour`",
            ),
        ];
        for (from, to, expected) in cases {
            let text = MINIMAL.replace(from, to);
            let err = Manifest::parse(&text).unwrap_err().to_string();
            assert!(err.contains(expected), "{to}: {err}");
        }
    }

    /// `schemas/plugin-manifest.schema.json` is what the types say;
    /// `cargo xtask schemas` rewrites it.
    #[test]
    fn the_published_schema_is_current() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas/plugin-manifest.schema.json");
        let mut want = serde_json::to_string_pretty(&Manifest::json_schema()).unwrap();
        want.push('\n');
        if std::env::var_os("CRM_WRITE_SCHEMAS").is_some() {
            std::fs::write(&path, &want).unwrap();
        }
        let have = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            have == want,
            "{} is stale: run `cargo xtask schemas` and commit the result",
            path.display()
        );
    }
}
