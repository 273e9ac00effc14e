//! Project automation, run as `cargo xtask <task>`.
//!
//! `cargo xtask test` is the one command that runs every test on a fresh
//! machine; `cargo xtask schemas` regenerates `schemas/` from the model types.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("schemas") => schemas(),
        Some("test") => test(&args[1..]),
        _ => {
            eprintln!(
                "usage: cargo xtask <task>\n\n\
                 tasks:\n  \
                 test      build everything and run all tests (extra arguments go to cargo test)\n  \
                 schemas   write schemas/ from the model types"
            );
            bail!("no task given")
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("xtask lives at core/xtask")
        .to_path_buf()
}

fn schemas() -> Result<()> {
    let dir = root().join("schemas");
    std::fs::create_dir_all(&dir)?;
    for (name, schema) in model::schema::all() {
        let path = dir.join(name);
        std::fs::write(&path, model::schema::to_file_text(&schema))
            .with_context(|| format!("writing {}", path.display()))?;
        println!("wrote schemas/{name}");
    }
    Ok(())
}

fn cargo(args: &[&str]) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(&cargo)
        .args(args)
        .current_dir(root())
        .status()
        .with_context(|| format!("running {cargo} {}", args.join(" ")))?;
    if !status.success() {
        bail!("`cargo {}` failed ({status})", args.join(" "));
    }
    Ok(())
}

fn test(extra: &[String]) -> Result<()> {
    // The integration tests run the `crm` binary as a child process, so it is
    // built first, in the same profile as the tests.
    cargo(&["build", "--bins"])?;
    let mut args = vec!["test"];
    args.extend(extra.iter().map(String::as_str));
    cargo(&args)
}
