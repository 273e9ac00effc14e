//! A store with a data set imported and one plugin installed, driven
//! through the `crm` binary.

use std::path::PathBuf;

use serde_json::Value;

use crate::support::{crm, dataset, plugin_package};

/// A store with a data set imported and one plugin installed.
pub(crate) struct Fixture {
    pub(crate) _dir: tempfile::TempDir,
    pub(crate) db: PathBuf,
    pub(crate) data: PathBuf,
}

impl Fixture {
    pub(crate) fn new(
        industry: generate::Industry,
        customers: u32,
        seed: u64,
        plugin: &str,
    ) -> Fixture {
        let data = dataset(industry, customers, seed);
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("store");
        let fixture = Fixture {
            _dir: dir,
            db,
            data,
        };
        fixture.run(&["import", "--quiet", fixture.data.to_str().unwrap()]);
        let package = plugin_package(plugin);
        let out = fixture.run(&["plugin", "install", package.to_str().unwrap()]);
        assert!(
            out.contains(&format!("installed and enabled {plugin}")),
            "{out}"
        );
        fixture
    }

    /// Runs `crm` on the store; its standard output.
    pub(crate) fn run(&self, args: &[&str]) -> String {
        let (command, rest) = args.split_first().unwrap();
        let mut full = vec![*command];
        if *command == "plugin" {
            full.push(rest[0]);
            full.extend(["--db", self.db.to_str().unwrap()]);
            full.extend(&rest[1..]);
        } else {
            full.extend(["--db", self.db.to_str().unwrap()]);
            full.extend(rest);
        }
        let out = crm(&full);
        assert!(
            out.status.success(),
            "crm {}: {}",
            full.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// The rows of a `--format json` table, as objects.
    pub(crate) fn rows(&self, args: &[&str]) -> Vec<serde_json::Map<String, Value>> {
        let mut args = args.to_vec();
        args.extend(["--format", "json"]);
        let json: Value = serde_json::from_str(&self.run(&args)).unwrap();
        json.as_array()
            .unwrap()
            .iter()
            .map(|row| row.as_object().unwrap().clone())
            .collect()
    }
}
