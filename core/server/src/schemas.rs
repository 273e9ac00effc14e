//! The JSON Schemas of schemas/, built into the binary and served by the
//! API at /api/schemas/{name}.

macro_rules! schemas {
    ($($name:literal),+ $(,)?) => {
        const FILES: &[(&str, &str)] = &[
            $(($name, include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../schemas/", $name))),)+
        ];
    };
}

schemas!(
    "customer.schema.json",
    "product.schema.json",
    "campaign.schema.json",
    "transaction.schema.json",
    "interaction.schema.json",
    "plugin-manifest.schema.json",
);

/// The schema file `name` ("customer.schema.json", or "customer").
pub fn file(name: &str) -> Option<&'static str> {
    FILES
        .iter()
        .find(|(n, _)| *n == name || n.strip_suffix(".schema.json") == Some(name))
        .map(|(_, text)| *text)
}

pub fn names() -> Vec<&'static str> {
    FILES.iter().map(|(n, _)| *n).collect()
}
