//! `crm plugin new`: the crate of a new plugin that builds and passes its
//! test at once, with the SDK taken from this CRM's sources.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// Where this CRM's SDK sources are (the scaffold depends on them by path).
fn sdk_path() -> Result<PathBuf> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sdk");
    path.canonicalize().with_context(|| {
        format!(
            "the crm-sdk sources are not at {}; build crm from its sources",
            path.display()
        )
    })
}

/// Creates `dir/name`; the new crate's path.
pub(crate) fn create(name: &str, dir: &Path) -> Result<PathBuf> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && name.as_bytes()[0].is_ascii_lowercase();
    if !valid {
        bail!(
            "'{name}' is not a plugin name: lowercase letters, digits and dashes, starting with a letter"
        );
    }
    let root = dir.join(name);
    if root.exists() {
        bail!("{} exists already", root.display());
    }
    let sdk = sdk_path()?;
    let ty: String = name
        .split('-')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect();
    std::fs::create_dir_all(root.join("src"))?;
    let write = |file: &str, text: String| {
        std::fs::write(root.join(file), text).with_context(|| format!("writing {file}"))
    };
    write(
        "Cargo.toml",
        format!(
            r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"

[lib]
crate-type = ["cdylib"]

[dependencies]
crm-sdk = {{ path = "{sdk}" }}
serde_json = "1"

# Small components without debug information.
[profile.release]
strip = true
lto = true

[workspace]
"#,
            sdk = sdk.display()
        ),
    )?;
    write(
        "rust-toolchain.toml",
        "[toolchain]\nchannel = \"stable\"\ntargets = [\"wasm32-wasip2\"]\n".into(),
    )?;
    write(
        "plugin.toml",
        format!(
            r#"id = "{name}"
name = "{ty}"
version = "0.1.0"
api = "0.1"
description = "What this plugin adds to the CRM"
# Where `cargo build --release --target wasm32-wasip2` puts the component:
# `crm plugin install` copies it into the store, with this manifest.
component = "target/wasm32-wasip2/release/{file}.wasm"

[hooks]
scores = ["engagement"]

[fields]
schema = "fields.schema.json"
"#,
            file = name.replace('-', "_")
        ),
    )?;
    write(
        "fields.schema.json",
        r#"{
  "type": "object",
  "properties": {}
}
"#
        .into(),
    )?;
    write(
        "src/lib.rs",
        format!(
            r#"//! {ty}: a plugin for the CRM.

use crm_sdk::{{Context, Customer, Plugin, Score}};

#[derive(Default)]
struct {ty};

/// Engagement from 0 to 1: frequent and recent buyers score high.
fn engagement(baskets: u32, recency_days: Option<i64>) -> f64 {{
    let frequency = (baskets as f64 / 12.0).min(1.0);
    let recency = recency_days.map_or(0.0, |d| (1.0 - d as f64 / 365.0).max(0.0));
    (frequency + recency) / 2.0
}}

impl Plugin for {ty} {{
    fn score(&self, model: &str, customer: &Customer, _ctx: &Context) -> Result<Score, String> {{
        match model {{
            "engagement" => {{
                let m = customer.metrics();
                let value = engagement(m.baskets, m.recency_days);
                let band = if value >= 0.5 {{ "engaged" }} else {{ "quiet" }};
                Ok(Score::new(value, band).reason("baskets", value, format!("{{}} baskets", m.baskets)))
            }}
            other => Err(format!("no model {{other}}")),
        }}
    }}
}}

crm_sdk::export_plugin!({ty});

#[cfg(test)]
mod tests {{
    use super::*;

    #[test]
    fn engagement_grows_with_frequency_and_recency() {{
        assert_eq!(engagement(0, None), 0.0);
        assert_eq!(engagement(12, Some(0)), 1.0);
        assert!(engagement(6, Some(30)) > engagement(6, Some(200)));
    }}
}}
"#
        ),
    )?;
    write(
        "README.md",
        format!(
            r#"# {ty}

A plugin for the CRM.

    cargo test                                        # the plugin's logic, natively
    cargo build --release --target wasm32-wasip2      # the component

Install it into a store (this directory is the package: plugin.toml names
the component and the schemas), then score its customers:

    crm plugin install --db STORE .
    crm plugin score --db STORE {name} engagement

After a change, `cargo build --release --target wasm32-wasip2` and
`crm plugin upgrade --db STORE .` (raise the version in plugin.toml first).
"#
        ),
    )?;
    Ok(root)
}
