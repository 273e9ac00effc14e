//! What the integration tests share: data sets, stores, the `crm` binary
//! (run, and expected to succeed), the in-process API client (`api`),
//! `crm serve` on a socket (`serving`), a webhook receiver (`receiver`)
//! and a store with a plugin installed (`fixture`).

pub(crate) mod api;
pub(crate) mod fixture;
pub(crate) mod receiver;
pub(crate) mod serving;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, OnceLock};

use model::EntityKind;
use store::Store;

/// The `crm` binary of this build, built on first use in the profile of the
/// running tests (a no-op when it is up to date).
pub(crate) fn crm_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().expect("the test binary has a path");
        // target/<profile>/deps/integration-<hash>
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("tests run from target/<profile>/deps");
        let profile = profile_dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("debug");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut build = Command::new(cargo);
        build.args(["build", "--quiet", "--package", "server", "--bin", "crm"]);
        match profile {
            "debug" => {}
            "release" => {
                build.arg("--release");
            }
            other => {
                build.args(["--profile", other]);
            }
        }
        let target_dir = profile_dir.parent().expect("a target directory");
        // Cargo gives the test its package's variables; a build script that
        // watches one (ring's watches CARGO_MANIFEST_DIR) would rebuild.
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy().into_owned();
            if key.starts_with("CARGO_PKG_") || key.starts_with("CARGO_MANIFEST_") {
                build.env_remove(key);
            }
        }
        let status = build
            .env("CARGO_TARGET_DIR", target_dir)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building the crm binary failed");
        profile_dir.join("crm")
    })
}

/// Runs `crm` with arguments; its output.
pub(crate) fn crm(args: &[&str]) -> Output {
    Command::new(crm_bin())
        .args(args)
        .env_remove("CRM_DB")
        .output()
        .expect("crm runs")
}

/// Industry, customers and seed of a generated data set.
type DatasetKey = (String, u32, u64);

/// `crm put --db DB KIND` with `input` (JSON lines) on its standard input:
/// its standard output, standard error, and whether it succeeded.
pub(crate) fn crm_put(db: &Path, kind: &str, input: &str) -> (String, String, bool) {
    use std::io::Write;
    let mut child = Command::new(crm_bin())
        .args(["put", "--db", db.to_str().unwrap(), kind])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.success(),
    )
}

/// A data set written by the project's generator, once per test binary.
pub(crate) fn dataset(industry: generate::Industry, customers: u32, seed: u64) -> PathBuf {
    static SETS: OnceLock<std::sync::Mutex<Vec<(DatasetKey, tempfile::TempDir)>>> = OnceLock::new();
    let sets = SETS.get_or_init(Default::default);
    let mut sets = sets.lock().unwrap();
    let key = (format!("{industry:?}"), customers, seed);
    if let Some((_, dir)) = sets.iter().find(|(k, _)| *k == key) {
        return dir.path().to_path_buf();
    }
    let dir = tempfile::tempdir().unwrap();
    let config = generate::Config {
        industry,
        customers,
        seed,
    };
    generate::generate(&config, dir.path()).unwrap();
    let path = dir.path().to_path_buf();
    sets.push((key, dir));
    path
}

/// A copy of a data set's files in a new directory, to change them.
pub(crate) fn copy_dataset(from: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for kind in EntityKind::ALL {
        let src = from.join(kind.file_name());
        if src.exists() {
            std::fs::copy(&src, dir.path().join(kind.file_name())).unwrap();
        }
    }
    dir
}

pub(crate) fn open_store(path: &Path) -> Arc<dyn Store> {
    store::open(
        path,
        &store::Options {
            cache_bytes: 32 << 20,
        },
    )
    .unwrap()
}

/// Asserts that every record of `ids` acknowledged before a kill is in the
/// store at `path`.
pub(crate) fn assert_acknowledged_kept(path: &Path, kind: model::EntityKind, ids: &[String]) {
    let store = open_store(path);
    for id in ids {
        assert!(
            store.get(kind, id).unwrap().is_some(),
            "{id} was acknowledged but is missing after the kill"
        );
    }
}

pub(crate) fn import(
    store: &dyn Store,
    dir: &Path,
) -> Result<transfer::ImportReport, transfer::ImportError> {
    transfer::import(
        store,
        dir,
        &transfer::ImportOptions::default(),
        &transfer::Silent,
    )
}

/// Every record of the store as its CSV lines: a fingerprint of its content.
pub(crate) fn contents(store: &dyn Store) -> Vec<String> {
    let mut lines = Vec::new();
    for kind in EntityKind::ALL {
        lines.push(format!("{kind}: {}", store.count(kind).unwrap()));
        for record in store.scan(kind) {
            let mut line = Vec::new();
            transfer::format::write_record(&record.unwrap(), &mut line);
            lines.push(String::from_utf8(line).unwrap());
        }
    }
    lines
}

/// The files of two directories are equal, byte for byte.
pub(crate) fn assert_same_files(a: &Path, b: &Path) {
    for kind in EntityKind::ALL {
        let (fa, fb) = (a.join(kind.file_name()), b.join(kind.file_name()));
        let (ta, tb) = (std::fs::read(&fa).unwrap(), std::fs::read(&fb).unwrap());
        assert!(ta == tb, "{} and {} differ", fa.display(), fb.display());
    }
}

/// The package of a plugin (a directory with plugin.toml, its schemas and
/// `plugin.wasm`), built once per test binary by `cargo xtask plugins`.
pub(crate) fn plugin_package(name: &str) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let root = BUILT.get_or_init(|| {
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("tests/ is in the workspace")
            .to_path_buf();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["run", "--quiet", "--package", "xtask", "--", "plugins"])
            .current_dir(&workspace)
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building the plugins failed");
        workspace.join("target/plugins")
    });
    root.join(name)
}
