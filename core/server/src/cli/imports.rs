//! `crm import` (through `app::imports`, then the analysis snapshot in a
//! process of its own) and `crm generate`.

use super::*;

/// Runs `crm snapshot --db DB` as a child process.
pub(super) fn refresh_snapshot_in_child(db: &Path, quiet: bool) -> Result<()> {
    let exe = std::env::current_exe().context("finding the crm binary")?;
    let out = std::process::Command::new(exe)
        .arg("snapshot")
        .arg("--db")
        .arg(db)
        .output()
        .context("refreshing the analysis snapshot")?;
    if !out.status.success() {
        bail!(
            "refreshing the analysis snapshot failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    if !quiet {
        eprint!("{}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

pub(super) fn import(
    store: &dyn Store,
    db: &Path,
    dir: &Path,
    skip_invalid: bool,
    quiet: bool,
) -> Result<()> {
    let started = Instant::now();
    let registry = app::plugins::registry(db)?;
    let report = app::imports::import(
        store,
        &registry,
        dir,
        skip_invalid,
        &store::Actor::new("cli"),
        &dir.display().to_string(),
        &Reporter::for_stderr(quiet),
    )?;
    let mut rows = 0;
    for file in &report.files {
        outln!("{file}");
        rows += file.rows;
        if let Some(path) = &file.rejected_file {
            outln!(
                "{:<13} rejected rows and their problems: {}",
                "",
                path.display()
            );
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let memory = peak_memory()
        .map(|bytes| format!(", peak memory {}", HumanBytes(bytes)))
        .unwrap_or_default();
    outln!(
        "imported {} rows in {secs:.1}s ({}/s{memory}); the store is flushed to disk",
        HumanCount(rows),
        HumanCount((rows as f64 / secs.max(1e-3)) as u64)
    );
    Ok(())
}

pub(super) fn generate_data(
    industry: Industry,
    customers: u32,
    seed: u64,
    out: &Path,
) -> Result<()> {
    let started = Instant::now();
    let config = generate::Config {
        industry: industry.generator(),
        customers,
        seed,
    };
    let summary =
        generate::generate(&config, out).with_context(|| format!("writing {}", out.display()))?;
    outln!(
        "{}: {} customers, {} products, {} campaigns, {} transactions, {} interactions in {:.1}s",
        out.display(),
        summary.customers,
        summary.products,
        summary.campaigns,
        summary.transactions,
        summary.interactions,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
