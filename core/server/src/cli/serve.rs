//! `crm serve` and `crm demo`.

use super::*;

/// Serves the store at `db` (the HTTP API and the console).
pub(super) fn serve(db: &Path, cache_mib: u64, options: crate::http::Options) -> Result<()> {
    let crm = app::Crm::open(
        db,
        false,
        app::Config {
            cache_bytes: cache_mib << 20,
            ..app::Config::default()
        },
    )?;
    if let Some((readiness, took)) = crm.readiness() {
        eprintln!(
            "{}",
            describe_snapshot(&crm.read().base.snapshot, &readiness, took)
        );
    }
    crate::http::serve(db, crm, options)
}

pub(super) fn demo(
    dir: &Path,
    industry: Industry,
    customers: u32,
    serve_on: Option<std::net::SocketAddr>,
) -> Result<()> {
    let name = match industry {
        Industry::Retail => "retail",
        Industry::Banking => "banking",
    };
    let data = dir.join(format!("data-{name}-{customers}"));
    if !data.join("customers.csv").exists() {
        generate_data(industry, customers, 7, &data)?;
    }
    let db = dir.join(format!("store-{name}"));
    let (plugin, model) = match industry {
        Industry::Retail => ("tobacco-retail", "reorder-risk"),
        Industry::Banking => ("bank-cross-sell", "loan-propensity"),
    };
    // The industry plugin goes in first, so that its fields are checked as
    // the data comes in.
    let store = open_store(&db, true)?;
    let installed = match demo_plugin(&db, plugin) {
        Ok(()) => true,
        Err(err) => {
            eprintln!("the demo runs without the {plugin} plugin: {err:#}");
            false
        }
    };
    import(&*store, &db, &data, false, false)?;
    eprintln!("{}", describe_readiness(&open_snapshot(&*store, &db)?));
    if installed {
        add_shipped_segments(Arc::clone(&store), &db, plugin)?;
    }
    outln!();
    stats(&*store, Some(&db))?;
    print_summary(&dataset_summary(&*store)?)?;
    outln!(
        "\ntry:\n  {crm} get --db {db} customer C0000001\n  {crm} stats --db {db} --summary\n  {crm} analyze --db {db} --all\n  {crm} export --db {db} {dir}/export",
        crm = this_command(),
        db = db.display(),
        dir = dir.display()
    );
    if installed {
        outln!(
            "  {crm} plugin list --db {db}\n  {crm} plugin score --db {db} {plugin} {model} --summary\n  {crm} segment list --db {db}\n  {crm} segment fields --db {db}",
            crm = this_command(),
            db = db.display(),
        );
    }
    // A demo user to sign in to the console with, with a new password each
    // time the demo starts.
    let password = app::users::random_password()?;
    let users = app::users::Users::new(Arc::clone(&store));
    users.save("demo", app::tokens::Role::Admin, &password, true, "demo")?;
    drop(users);
    drop(store);
    outln!(
        "  {crm} serve --db {db}   (the console and the HTTP API; {crm} user create and {crm} token create give access)",
        crm = this_command(),
        db = db.display(),
    );
    let Some(addr) = serve_on else {
        outln!("\nsign in to the console as user demo, password {password}");
        return Ok(());
    };
    outln!(
        "\nthe console: http://{addr}/  (sign in as user demo, password {password})\nthe API reference: http://{addr}/api/docs\nCtrl-C stops the server.",
    );
    serve(
        &db,
        1024,
        crate::http::Options {
            addr,
            failed_sign_ins: crate::http::FAILURES_PER_MINUTE,
            secure_cookies: false,
        },
    )
}

/// Builds the plugins from this CRM's sources (`cargo xtask plugins`) and
/// installs, or upgrades, `id` in the store at `db`.
pub(super) fn demo_plugin(db: &Path, id: &str) -> Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    if !root.join("plugins").join(id).is_dir() {
        bail!("its sources are not at {}", root.join("plugins").display());
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("building the plugins (cargo xtask plugins) ...");
    let status = std::process::Command::new(&cargo)
        .args(["run", "--quiet", "--package", "xtask", "--", "plugins"])
        .current_dir(&root)
        .status()
        .with_context(|| format!("running {cargo}"))?;
    if !status.success() {
        bail!("cargo xtask plugins failed");
    }
    let package = root.join("target/plugins").join(id);
    let registry = app::plugins::registry(db)?;
    let installed = registry.list().into_iter().find(|p| p.id == id);
    let built = plugin_host::Manifest::read(&package.join("plugin.toml"))?;
    let plugin = match installed {
        Some(p) if p.version != built.version => registry.upgrade(&package, None)?,
        Some(_) => {
            // The same version, perhaps rebuilt from changed sources.
            registry.remove(id)?;
            registry.install(&package, None)?
        }
        None => registry.install(&package, None)?,
    };
    registry.enable(id)?;
    eprintln!("{} {} is installed", plugin.id(), plugin.manifest.version);
    Ok(())
}
