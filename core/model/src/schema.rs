//! The JSON Schemas of the serializable model types, as published in `schemas/`.
//!
//! `schemas/` is generated from these types; a test fails when a checked-in
//! file differs from what the types say, and `cargo xtask schemas` rewrites
//! the files.

use schemars::{JsonSchema, generate::SchemaSettings};

use crate::{Campaign, Customer, Interaction, Product, Transaction};

/// `(file name, schema)` for every published model type.
pub fn all() -> Vec<(&'static str, serde_json::Value)> {
    vec![
        ("customer.schema.json", of::<Customer>()),
        ("product.schema.json", of::<Product>()),
        ("transaction.schema.json", of::<Transaction>()),
        ("interaction.schema.json", of::<Interaction>()),
        ("campaign.schema.json", of::<Campaign>()),
    ]
}

/// The JSON Schema (draft 2020-12) of one type, as a value.
pub fn of<T: JsonSchema>() -> serde_json::Value {
    let generator = SchemaSettings::draft2020_12().into_generator();
    serde_json::to_value(generator.into_root_schema_for::<T>()).expect("schemas serialize")
}

/// The text written to a schema file: pretty JSON with a final newline.
pub fn to_file_text(schema: &serde_json::Value) -> String {
    let mut text = serde_json::to_string_pretty(schema).expect("schemas serialize");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    #[test]
    fn checked_in_schemas_are_current() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas");
        let mut stale = Vec::new();
        for (name, schema) in super::all() {
            let want = super::to_file_text(&schema);
            let have = std::fs::read_to_string(dir.join(name)).unwrap_or_default();
            if have != want {
                stale.push(name);
            }
        }
        assert!(
            stale.is_empty(),
            "schemas/ is stale for {stale:?}: run `cargo xtask schemas` and commit the result"
        );
    }
}
