//! `crm plugin`: industry plugins installed, upgraded, enabled, disabled,
//! removed, and their hooks run from the command line.

use super::*;

#[derive(Subcommand)]
pub(super) enum PluginCommand {
    /// Create the crate of a new plugin in DIR/NAME; it builds and passes its test at once
    New {
        /// Lowercase letters, digits and dashes
        name: String,
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
    /// Time a scoring model over every customer: compiling and loading the
    /// component, one call, building batches, scoring on one and on every core
    Bench {
        #[command(flatten)]
        db: Db,
        id: String,
        model: String,
    },
    /// Install and enable a plugin package: a directory with plugin.toml,
    /// its component and schemas (cargo xtask plugins builds them)
    Install {
        #[command(flatten)]
        db: Db,
        package: PathBuf,
        /// The plugin's configuration, a JSON file
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Replace an installed plugin with a newer version, without a restart
    Upgrade {
        #[command(flatten)]
        db: Db,
        package: PathBuf,
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// The installed plugins: version, state, failures, hooks and fields
    List {
        #[command(flatten)]
        db: Db,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    Enable {
        #[command(flatten)]
        db: Db,
        id: String,
    },
    Disable {
        #[command(flatten)]
        db: Db,
        id: String,
    },
    /// Uninstall a plugin and delete its files
    Remove {
        #[command(flatten)]
        db: Db,
        id: String,
    },
    /// Score customers with one of a plugin's models
    Score {
        #[command(flatten)]
        db: Db,
        id: String,
        model: String,
        /// Only these customers: a file of ids, one per line (- for stdin)
        #[arg(long, value_name = "FILE")]
        customers: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t = Output::Table)]
        format: Output,
        /// Only the count of customers per band, and the time taken
        #[arg(long)]
        summary: bool,
    },
    /// Compute a plugin's derived fields for customers
    Derive {
        #[command(flatten)]
        db: Db,
        id: String,
        #[arg(long, value_name = "FILE")]
        customers: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t = Output::Table)]
        format: Output,
        /// Store the values in the customers' attributes (the plugin's
        /// derived fields), instead of printing them
        #[arg(long)]
        save: bool,
    },
    /// Run one of a plugin's industry analyses over all customers
    Analyze {
        #[command(flatten)]
        db: Db,
        id: String,
        name: String,
        /// Parameters, a JSON object
        #[arg(long)]
        params: Option<String>,
        #[arg(long, value_enum, default_value_t = Output::Table)]
        format: Output,
    },
}

pub(super) fn plugin_command(command: PluginCommand) -> Result<()> {
    match command {
        PluginCommand::New { name, dir } => {
            let path = crate::scaffold::create(&name, &dir)?;
            outln!("created {}", path.display());
            outln!(
                "\n  cd {}\n  cargo test\n  cargo build --release --target wasm32-wasip2\n  crm plugin install --db STORE .",
                path.display()
            );
            Ok(())
        }
        PluginCommand::Bench { db, id, model } => {
            let store = open_store(&db.db, false)?;
            let opened = open_snapshot(&*store, &db.db)?;
            let plugin = app::plugins::registry(&db.db)?.get(&id)?;
            let r = app::plugins::bench(&opened.snapshot, &plugin, &model)?;
            let n = r.customers.max(1) as f64;
            let per = |d: std::time::Duration| d.as_secs_f64() * 1e9 / n;
            let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
            outln!(
                "{id} {model}: {} customers in {} calls",
                r.customers,
                r.calls
            );
            outln!(
                "{:<34} {:>10.1} ms",
                "compile (empty cache)",
                ms(r.cold_load)
            );
            outln!(
                "{:<34} {:>10.2} ms",
                "load (precompiled cache)",
                ms(r.cached_load)
            );
            outln!(
                "{:<34} {:>10.1} µs",
                "instantiate + empty call (median)",
                r.empty_call.as_secs_f64() * 1e6
            );
            outln!(
                "{:<34} {:>10.1} ms {:>8.0} ns/customer",
                "build batches, 1 core",
                ms(r.batches),
                per(r.batches)
            );
            outln!(
                "{:<34} {:>10.1} ms {:>8.0} ns/customer",
                "  and encode them",
                ms(r.encoded),
                per(r.encoded)
            );
            outln!(
                "{:<34} {:>10.1} ms {:>8.0} ns/customer",
                "score, 1 core",
                ms(r.one_core),
                per(r.one_core)
            );
            outln!(
                "{:<34} {:>10.1} ms {:>8.0} ns/customer",
                "  of which in the plugin call",
                ms(r.one_core.saturating_sub(r.batches)),
                per(r.one_core.saturating_sub(r.batches))
            );
            outln!(
                "{:<34} {:>10.1} ms {:>8.0} ns/customer",
                "score, all cores (crm plugin score)",
                ms(r.all_cores),
                per(r.all_cores)
            );
            let bands: Vec<String> = r.bands.iter().map(|(b, n)| format!("{b} {n}")).collect();
            outln!("bands: {}", bands.join(", "));
            Ok(())
        }
        PluginCommand::Install {
            db,
            package,
            config,
        } => {
            let store = open_store(&db.db, false)?;
            let registry = app::plugins::registry(&db.db)?;
            let plugin = registry.install(&package, read_config(config.as_deref())?)?;
            audit_cli(
                &*store,
                "install",
                "plugin",
                plugin.id(),
                None,
                Some(serde_json::json!({"version": plugin.manifest.version})),
            );
            outln!(
                "installed and enabled {} {} ({})",
                plugin.id(),
                plugin.manifest.version,
                plugin.manifest.name
            );
            drop(registry);
            add_shipped_segments(store, &db.db, plugin.id())
        }
        PluginCommand::Upgrade {
            db,
            package,
            config,
        } => {
            let store = open_store(&db.db, false)?;
            let registry = app::plugins::registry(&db.db)?;
            let plugin = registry.upgrade(&package, read_config(config.as_deref())?)?;
            audit_cli(
                &*store,
                "upgrade",
                "plugin",
                plugin.id(),
                None,
                Some(serde_json::json!({"version": plugin.manifest.version})),
            );
            outln!("upgraded {} to {}", plugin.id(), plugin.manifest.version);
            Ok(())
        }
        PluginCommand::List { db, format } => {
            let registry = app::plugins::registry(&db.db)?;
            let list = registry.list();
            if format == Format::Json {
                outln!("{}", serde_json::to_string_pretty(&list)?);
                return Ok(());
            }
            if list.is_empty() {
                outln!("no plugins are installed");
            }
            for p in list {
                let state = if p.enabled {
                    "enabled".to_owned()
                } else {
                    format!(
                        "disabled{}",
                        p.disabled_reason
                            .map(|r| format!(" ({r})"))
                            .unwrap_or_default()
                    )
                };
                outln!("{} {}  {}  {}", p.id, p.version, p.name, state);
                let hooks = &p.hooks;
                outln!(
                    "  hooks: validate {}, derive [{}], scores [{}], analyses [{}]",
                    hooks.validate,
                    hooks.derive.join(", "),
                    hooks.scores.join(", "),
                    hooks.analyses.join(", ")
                );
                if !p.fields.is_empty() {
                    outln!("  fields: {}", p.fields.join(", "));
                }
                if p.failures > 0 {
                    outln!("  failed calls in a row: {}", p.failures);
                }
            }
            Ok(())
        }
        PluginCommand::Enable { db, id } => {
            let store = open_store(&db.db, false)?;
            app::plugins::registry(&db.db)?.enable(&id)?;
            audit_cli(&*store, "enable", "plugin", &id, None, None);
            outln!("enabled {id}");
            Ok(())
        }
        PluginCommand::Disable { db, id } => {
            let store = open_store(&db.db, false)?;
            app::plugins::registry(&db.db)?.disable(&id, Some("disabled by hand".into()))?;
            audit_cli(&*store, "disable", "plugin", &id, None, None);
            outln!("disabled {id}");
            Ok(())
        }
        PluginCommand::Remove { db, id } => {
            let store = open_store(&db.db, false)?;
            app::plugins::registry(&db.db)?.remove(&id)?;
            audit_cli(&*store, "remove", "plugin", &id, None, None);
            outln!("removed {id}");
            Ok(())
        }
        PluginCommand::Score {
            db,
            id,
            model,
            customers,
            format,
            summary,
        } => {
            let run = PluginRun::open(&db.db, &id)?;
            let (registry, plugin) = (&run.registry, &run.plugin);
            let snapshot = &run.opened.snapshot;
            let rows = run.rows(customers.as_deref())?;
            let views = app::plugins::Batches::new(snapshot);
            let started = Instant::now();
            let scores = app::plugins::per_batch(&views, plugin, &rows, |batch| {
                registry
                    .counted(plugin, |p| p.score(&model, batch))
                    .map(|(scores, _)| scores)
            })?;
            let took = started.elapsed();
            if summary {
                let mut bands: std::collections::BTreeMap<String, u64> = Default::default();
                for s in &scores {
                    *bands
                        .entry(
                            s.as_ref()
                                .map_or_else(|e| format!("error: {e}"), |s| s.band.clone()),
                        )
                        .or_default() += 1;
                }
                for (band, n) in bands {
                    outln!("{band:<24} {n:>10}");
                }
                outln!(
                    "scored {} customers in {:.3}s",
                    rows.len(),
                    took.as_secs_f64()
                );
                return Ok(());
            }
            let mut table = analysis::Table::new(&["customer_id", "value", "band", "reasons"]);
            for (&ci, s) in rows.iter().zip(&scores) {
                let id = snapshot.customers.id(ci).into();
                table.push(match s {
                    Ok(s) => {
                        let reasons: Vec<String> = s
                            .reasons
                            .iter()
                            .map(|r| format!("{} {:+.3}: {}", r.feature, r.weight, r.detail))
                            .collect();
                        vec![
                            id,
                            analysis::Value::Float(s.value),
                            s.band.clone().into(),
                            reasons.join("; ").into(),
                        ]
                    }
                    Err(e) => vec![id, analysis::Value::Null, "error".into(), e.clone().into()],
                });
            }
            print_table(&format!("{id} {model}"), &table, format)
        }
        PluginCommand::Derive {
            db,
            id,
            customers,
            format,
            save,
        } => {
            let run = PluginRun::open(&db.db, &id)?;
            let (store, registry, plugin) = (&run.store, &run.registry, &run.plugin);
            let snapshot = &run.opened.snapshot;
            let rows = run.rows(customers.as_deref())?;
            let views = app::plugins::Batches::new(snapshot);
            let derived = app::plugins::per_batch(&views, plugin, &rows, |batch| {
                registry
                    .counted(plugin, |p| p.derive(batch))
                    .map(|(fields, _)| fields)
            })?;
            let names = &plugin.manifest.hooks.derive;
            if save {
                let ids = rows.iter().map(|&ci| snapshot.customers.id(ci));
                let report =
                    app::plugins::save_derived(&**store, registry, &id, names, ids.zip(&derived))?;
                let refused = match report.refused.len() {
                    0 => String::new(),
                    n => format!("; {n} refused by the plugins' checks"),
                };
                outln!(
                    "{id}: derived fields saved for {} customers ({} updated, {} unchanged, {} failed){refused}",
                    rows.len(),
                    report.counts.updated,
                    report.counts.unchanged,
                    report.failed
                );
                for (customer, why) in report.refused.iter().take(10) {
                    outln!("  {customer}: {why}");
                }
                return Ok(());
            }
            let mut columns = vec!["customer_id".to_owned()];
            columns.extend(names.iter().cloned());
            let mut table = analysis::Table::with_columns(columns);
            for (&ci, fields) in rows.iter().zip(&derived) {
                let mut row = vec![analysis::Value::from(snapshot.customers.id(ci))];
                for name in names {
                    let value = fields
                        .as_ref()
                        .ok()
                        .and_then(|f| f.iter().find(|f| f.name == *name))
                        .and_then(|f| serde_json::from_str::<serde_json::Value>(&f.value).ok());
                    row.push(match value {
                        None | Some(serde_json::Value::Null) => analysis::Value::Null,
                        Some(serde_json::Value::Number(n)) if n.is_i64() => {
                            analysis::Value::Int(n.as_i64().unwrap_or_default())
                        }
                        Some(serde_json::Value::Number(n)) => {
                            analysis::Value::Float(n.as_f64().unwrap_or(f64::NAN))
                        }
                        Some(serde_json::Value::String(text)) => analysis::Value::Text(text),
                        Some(other) => analysis::Value::Text(other.to_string()),
                    });
                }
                table.push(row);
            }
            print_table(&format!("{id} derived fields"), &table, format)
        }
        PluginCommand::Analyze {
            db,
            id,
            name,
            params,
            format,
        } => {
            let run = PluginRun::open(&db.db, &id)?;
            let (registry, plugin) = (&run.registry, &run.plugin);
            let views = app::plugins::Batches::new(&run.opened.snapshot);
            let rows = run.rows(None)?;
            let size = plugin.manifest.limits.max_batch as usize;
            let mut batches = rows.chunks(size).map(|chunk| views.batch(plugin, chunk));
            let (table, _) =
                registry.analysis(&id, &name, params.as_deref().unwrap_or(""), &mut batches)?;
            print_table(
                &format!("{id} {name}"),
                &app::plugins::table_of(table),
                format,
            )
        }
    }
}

/// What a `crm plugin` command over customers works with: the store, its
/// snapshot, its plugins and the one called.
pub(super) struct PluginRun {
    store: Arc<dyn Store>,
    opened: app::checkpoint::Opened,
    registry: plugin_host::Registry,
    plugin: Arc<plugin_host::LoadedPlugin>,
}

impl PluginRun {
    fn open(db: &Path, id: &str) -> Result<PluginRun> {
        let store = open_store(db, false)?;
        let opened = open_snapshot(&*store, db)?;
        let registry = app::plugins::registry(db)?;
        let plugin = registry.get(id)?;
        Ok(PluginRun {
            store,
            opened,
            registry,
            plugin,
        })
    }

    /// The customers listed in `customers` (see `--customers`), or all.
    fn rows(&self, customers: Option<&Path>) -> Result<Vec<u32>> {
        let snapshot = &self.opened.snapshot;
        match customers {
            Some(path) => segment_rows(snapshot, path),
            None => Ok((0..snapshot.customers.len() as u32).collect()),
        }
    }
}
