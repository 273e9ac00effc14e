//! The `crm` command line: one subcommand per task, errors as one clear
//! line (plus the list of problems for a refused import), exit code 1 on
//! failure and 2 on a usage error.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{HumanBytes, HumanCount};
use model::EntityKind;
use store::Store;

use crate::progress::Reporter;

/// Writes a line to standard output; an error (such as a closed pipe) is
/// returned rather than a panic.
macro_rules! outln {
    () => { std::io::Write::write_all(&mut std::io::stdout().lock(), b"\n")? };
    ($($arg:tt)*) => {
        std::io::Write::write_all(&mut std::io::stdout().lock(), (format!($($arg)*) + "\n").as_bytes())?
    };
}

/// [`outln!`] without the line break.
macro_rules! out {
    ($($arg:tt)*) => {
        std::io::Write::write_all(&mut std::io::stdout().lock(), format!($($arg)*).as_bytes())?
    };
}

mod access;
mod analyze;
mod imports;
mod plugin;
mod records;
mod segment;
mod serve;

use access::*;
use analyze::*;
use imports::*;
use plugin::*;
use records::*;
use segment::*;
use serve::*;

#[derive(Parser)]
#[command(
    name = "crm",
    version,
    about = "An industry-customisable CRM: customer records, 7P analyses, plugins and segments",
    propagate_version = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Args)]
struct Db {
    /// Directory of the store (created by import when missing)
    #[arg(long, env = "CRM_DB", value_name = "PATH")]
    db: PathBuf,
}

#[derive(Subcommand)]
enum Command {
    /// Create an empty store, so that plugins can be installed (and check
    /// the first import) before any data comes in
    Init {
        #[command(flatten)]
        db: Db,
    },
    /// Import customers.csv, products.csv, campaigns.csv, transactions.csv
    /// and interactions.csv (whichever are in DIR), after checking every row
    Import {
        #[command(flatten)]
        db: Db,
        /// Directory holding the CSV files
        dir: PathBuf,
        /// Import the valid rows; write the others, with their problems, to
        /// <file>.rejected.csv beside each file
        #[arg(long)]
        skip_invalid: bool,
        /// No progress output
        #[arg(long, short)]
        quiet: bool,
    },
    /// Run analyses (all with --all) and print their results
    Analyze {
        #[command(flatten)]
        db: Db,
        /// Analyses to run (see --list)
        names: Vec<String>,
        /// Run every analysis
        #[arg(long)]
        all: bool,
        /// List the analyses and what each answers
        #[arg(long)]
        list: bool,
        /// Analyse the data as it was on this day (YYYY-MM-DD): later lines
        /// and customers who joined later are left out
        #[arg(long, value_name = "DATE")]
        as_of: Option<String>,
        /// Only these customers: a file of customer ids, one per line (- for stdin)
        #[arg(long, value_name = "FILE", conflicts_with = "segment")]
        customers: Option<PathBuf>,
        /// Only the members of this segment
        #[arg(long, value_name = "NAME")]
        segment: Option<String>,
        #[arg(long, value_enum, default_value_t = Output::Table)]
        format: Output,
        /// Print to stderr how long each analysis takes alone, and all together
        #[arg(long)]
        timings: bool,
    },
    /// Bring the analysis snapshot of a store up to date and save it (crm
    /// import does this itself)
    Snapshot {
        #[command(flatten)]
        db: Db,
        /// Build it anew from the store instead of reading its checkpoint
        #[arg(long)]
        rebuild: bool,
    },
    /// Industry plugins: create, install, list, enable, disable, upgrade,
    /// remove, and run their scores, derived fields and analyses
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
    /// Customer segments as rhai scripts: create, list, show, test,
    /// members, explain, delete, and the fields scripts can read
    Segment {
        #[command(subcommand)]
        command: SegmentCommand,
    },
    /// Serve the HTTP API (/api/v1, /healthz, /readyz, /metrics) until
    /// SIGINT or SIGTERM
    Serve {
        #[command(flatten)]
        db: Db,
        /// Address to listen on (port 0: any free port)
        #[arg(long, default_value = "127.0.0.1:8080")]
        addr: std::net::SocketAddr,
        /// Requests with a wrong token allowed per client address and minute
        /// before the address gets 429 for the rest of the minute
        #[arg(long, default_value_t = crate::http::FAILURES_PER_MINUTE)]
        failed_sign_ins: u32,
        /// Memory for the store's cache of pages, in MiB (records read
        /// again are served from it instead of the disk)
        #[arg(long, default_value_t = 1024)]
        cache_mib: u64,
        /// Mark the console's session cookie Secure: set it when a proxy in
        /// front serves the console over HTTPS
        #[arg(long)]
        secure_cookies: bool,
    },
    /// The audit log: who changed what and when, newest first
    Audit {
        #[command(flatten)]
        db: Db,
        /// Only changes of this kind: customer, product, campaign,
        /// transaction, interaction, segment, plugin, token, webhook, import
        #[arg(long)]
        kind: Option<String>,
        /// Only changes of this id or name
        #[arg(long)]
        id: Option<String>,
        /// How many entries
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// API tokens: create (printed once), list, revoke
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Console users: create, list, set a password, remove
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Write the store's records as the same five CSV files into DIR
    Export {
        #[command(flatten)]
        db: Db,
        /// Directory to write the CSV files into (created when missing)
        dir: PathBuf,
        #[arg(long, short)]
        quiet: bool,
    },
    /// Write a synthetic data set (deterministic per seed) into DIR
    Generate {
        #[arg(long, value_enum, default_value_t = Industry::Retail)]
        industry: Industry,
        /// Number of customers
        #[arg(long, default_value_t = 10_000)]
        customers: u32,
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// Directory to write the CSV files into (created when missing)
        #[arg(long)]
        out: PathBuf,
    },
    /// Write records given as JSON, one per line on stdin; each line is
    /// acknowledged on stdout once it is on disk
    Put {
        #[command(flatten)]
        db: Db,
        /// customer, product, campaign, transaction or interaction
        kind: String,
    },
    /// Print one record as JSON
    Get {
        #[command(flatten)]
        db: Db,
        /// customer, product, campaign, transaction or interaction
        kind: String,
        id: String,
    },
    /// Records per entity and size on disk
    Stats {
        #[command(flatten)]
        db: Db,
        /// Also the first and last transaction, as-of date, and the sums of
        /// amount, cost and quantity (reads every transaction)
        #[arg(long)]
        summary: bool,
        /// text, or json (always with the summary, shaped as `dataset_summary`)
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Generate a demo data set, import it into a store, and show what is in it
    Demo {
        /// Directory for the demo data and store
        #[arg(long, default_value = "demo")]
        dir: PathBuf,
        #[arg(long, value_enum, default_value_t = Industry::Retail)]
        industry: Industry,
        #[arg(long, default_value_t = 10_000)]
        customers: u32,
        /// Where the console is served when the store is ready
        #[arg(long, default_value = "127.0.0.1:8080")]
        addr: std::net::SocketAddr,
        /// Prepare the store and stop, without serving the console
        #[arg(long)]
        no_serve: bool,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    /// Aligned columns for a terminal
    Table,
    /// One object: analysis name -> list of rows ({column: value})
    Json,
    /// CSV with a header row (one analysis)
    Csv,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Text,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum Industry {
    /// Tobacco retail outlets supplied by a wholesaler
    Retail,
    /// Persons with bank accounts, cards, loans, insurance and funds
    Banking,
}

impl Industry {
    fn generator(self) -> generate::Industry {
        match self {
            Industry::Retail => generate::Industry::Retail,
            Industry::Banking => generate::Industry::Banking,
        }
    }
}

/// Runs the command line; the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        // A reader that stops early (`crm analyze ... | head`) is not an error.
        Err(err) if closed_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn closed_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn run(command: Command) -> Result<()> {
    match command {
        Command::Init { db } => {
            if db.db.join("db").exists() || db.db.join("conf").exists() {
                bail!("{} holds a store already", db.db.display());
            }
            let store = open_store(&db.db, true)?;
            store.flush()?;
            outln!(
                "created an empty store at {}; install plugins with `crm plugin install --db {} PACKAGE`, then import with `crm import --db {} DIR`",
                db.db.display(),
                db.db.display(),
                db.db.display()
            );
            Ok(())
        }
        Command::Import {
            db,
            dir,
            skip_invalid,
            quiet,
        } => {
            let store = open_store(&db.db, true)?;
            import(&*store, &db.db, &dir, skip_invalid, quiet)?;
            // The snapshot is refreshed by a process of its own, so that the
            // import's memory and the snapshot's are not added up.
            drop(store);
            refresh_snapshot_in_child(&db.db, quiet)
        }
        Command::Snapshot { db, rebuild } => {
            let store = open_store(&db.db, false)?;
            let path = app::checkpoint::checkpoint_path(&db.db);
            let opened = app::checkpoint::open_with(&*store, &path, rebuild)
                .context("preparing the analysis snapshot")?;
            eprintln!("{}", describe_readiness(&opened));
            Ok(())
        }
        Command::Analyze {
            db,
            names,
            all,
            list,
            as_of,
            customers,
            segment,
            format,
            timings,
        } => {
            if list {
                for name in analysis::NAMES {
                    outln!(
                        "{name:<22} {}",
                        analysis::describe(name).unwrap_or_default()
                    );
                }
                return Ok(());
            }
            let store = open_store(&db.db, false)?;
            let opened = open_snapshot(&*store, &db.db)?;
            if timings {
                eprintln!("{}", describe_readiness(&opened));
            }
            let members = match segment {
                Some(name) => {
                    let ws = app::Base::new(
                        store,
                        opened.snapshot,
                        Arc::new(app::plugins::registry(&db.db)?),
                    );
                    let (_, def) = ws.definition(&name)?;
                    let members = ws
                        .evaluate(&def, None)
                        .with_context(|| format!("segment {name}"))?
                        .members;
                    return analyze(
                        &ws.snapshot,
                        &AnalyzeRequest {
                            names,
                            all,
                            as_of,
                            customers: None,
                            format,
                            timings,
                        },
                        Some(members),
                    );
                }
                None => None,
            };
            let request = AnalyzeRequest {
                names,
                all,
                as_of,
                customers,
                format,
                timings,
            };
            analyze(&opened.snapshot, &request, members)
        }
        Command::Export { db, dir, quiet } => {
            let store = open_store(&db.db, false)?;
            let started = Instant::now();
            let report = transfer::export(&*store, &dir, &Reporter::for_stderr(quiet))
                .with_context(|| format!("exporting to {}", dir.display()))?;
            for (kind, path, rows) in &report.files {
                outln!(
                    "{:<13} {:>10} rows -> {}",
                    kind.plural(),
                    rows,
                    path.display()
                );
            }
            for kind in &report.empty {
                outln!("{:<13} no records, no file", kind.plural());
            }
            outln!("exported in {:.1}s", started.elapsed().as_secs_f64());
            Ok(())
        }
        Command::Generate {
            industry,
            customers,
            seed,
            out,
        } => generate_data(industry, customers, seed, &out),
        Command::Put { db, kind } => {
            let kind = parse_kind(&kind)?;
            let store = open_store(&db.db, true)?;
            put(&*store, &db.db, kind)
        }
        Command::Get { db, kind, id } => {
            let kind = parse_kind(&kind)?;
            let store = open_store(&db.db, false)?;
            let Some(record) = store.get(kind, &id)? else {
                bail!("no {kind} '{id}' in the {}", store.location());
            };
            let mut json = serde_json::to_value(&record)?;
            if kind == EntityKind::Customer {
                let opened = open_snapshot(&*store, &db.db)?;
                let snapshot = &opened.snapshot;
                if let Some(ci) = snapshot.customers.find(&id) {
                    let ctx = analysis::Context::new(snapshot, &analysis::Scope::default());
                    json["metrics"] = serde_json::to_value(analysis::customer_metrics(&ctx, ci))?;
                }
            }
            outln!("{}", serde_json::to_string_pretty(&json)?);
            Ok(())
        }
        Command::Stats {
            db,
            summary,
            format,
        } => {
            let store = open_store(&db.db, false)?;
            match format {
                Format::Text => {
                    stats(&*store, Some(&db.db))?;
                    if summary {
                        print_summary(&dataset_summary(&*store)?)?;
                    }
                    Ok(())
                }
                Format::Json => {
                    let summary = dataset_summary(&*store)?;
                    let json = serde_json::json!({ "dataset_summary": [summary] });
                    outln!("{}", serde_json::to_string_pretty(&json)?);
                    Ok(())
                }
            }
        }
        Command::Plugin { command } => plugin_command(command),
        Command::Segment { command } => segment_command(command),
        Command::Serve {
            db,
            addr,
            failed_sign_ins,
            cache_mib,
            secure_cookies,
        } => serve(
            &db.db,
            cache_mib,
            crate::http::Options {
                addr,
                failed_sign_ins,
                secure_cookies,
            },
        ),
        Command::Token { command } => token_command(command),
        Command::User { command } => user_command(command),
        Command::Audit {
            db,
            kind,
            id,
            limit,
            format,
        } => audit_command(&db, kind, id, limit, format),
        Command::Demo {
            dir,
            industry,
            customers,
            addr,
            no_serve,
        } => demo(&dir, industry, customers, (!no_serve).then_some(addr)),
    }
}

/// The analysis snapshot of the store in directory `db`, current.
fn open_snapshot(store: &dyn Store, db: &Path) -> Result<app::checkpoint::Opened> {
    app::checkpoint::open(store, &app::checkpoint::checkpoint_path(db))
        .context("preparing the analysis snapshot")
}

fn describe_readiness(opened: &app::checkpoint::Opened) -> String {
    describe_snapshot(&opened.snapshot, &opened.readiness, opened.took)
}

fn describe_snapshot(
    s: &analysis::Snapshot,
    readiness: &app::checkpoint::Readiness,
    took: std::time::Duration,
) -> String {
    let what = match readiness {
        app::checkpoint::Readiness::Loaded { changes } => {
            format!("loaded from its checkpoint, {changes} changes applied")
        }
        app::checkpoint::Readiness::Rebuilt { why } => format!("built from the store ({why})"),
    };
    format!(
        "analysis snapshot: {} customers, {} transactions, {} interactions, {} in memory; {what} in {:.2}s",
        HumanCount(s.customers.len() as u64),
        HumanCount(s.n_transactions() as u64),
        HumanCount(s.n_interactions() as u64),
        HumanBytes(s.memory_bytes() as u64),
        took.as_secs_f64()
    )
}

/// Opens the store; a store that must already exist is not created by a
/// typo. Commands that mostly read (all but writing ones) use a small page
/// cache: they scan or look up, and the memory is better left to the
/// analysis snapshot.
fn open_store(path: &Path, create: bool) -> Result<Arc<dyn Store>> {
    let cache_bytes = if create {
        store::Options::default().cache_bytes
    } else {
        32 << 20
    };
    app::open_store(path, create, cache_bytes)
}

/// How to run this binary again from the current directory: `crm` when it
/// is on the PATH, else its path (e.g. `target/release/crm`).
fn this_command() -> String {
    let Ok(exe) = std::env::current_exe() else {
        return "crm".into();
    };
    let on_path = std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join("crm") == exe));
    if on_path {
        return "crm".into();
    }
    let cwd = std::env::current_dir().unwrap_or_default();
    exe.strip_prefix(&cwd).unwrap_or(&exe).display().to_string()
}

/// The process's peak resident memory, where the system tells (Linux).
fn peak_memory() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn read_config(path: Option<&Path>) -> Result<Option<serde_json::Value>> {
    path.map(|p| -> Result<serde_json::Value> {
        let text =
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", p.display()))
    })
    .transpose()
}

/// Notes a change made from the command line in the audit log (a failure
/// to note it is reported, the change stands).
fn audit_cli(
    store: &dyn Store,
    action: &str,
    kind: &str,
    id: &str,
    before: Option<serde_json::Value>,
    after: Option<serde_json::Value>,
) {
    let entry = store::AuditEntry {
        seq: 0,
        at_ms: 0,
        actor: "cli".into(),
        action: action.into(),
        kind: kind.into(),
        id: id.into(),
        revision: None,
        before,
        after,
    };
    if let Err(e) = store.audit(entry).and_then(|_| store.flush()) {
        eprintln!("warning: the audit log was not written: {e}");
    }
}

/// A plugin's table as an analysis table.
fn print_table(name: &str, table: &analysis::Table, format: Output) -> Result<()> {
    match format {
        Output::Table => outln!("== {name} ({} rows)\n{}", table.rows.len(), table.to_text()),
        Output::Csv => out!("{}", table.to_csv()),
        Output::Json => outln!("{}", serde_json::to_string_pretty(table)?),
    }
    Ok(())
}
