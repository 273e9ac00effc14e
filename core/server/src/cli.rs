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

/// A segment script given on the command line.
#[derive(clap::Args)]
struct ScriptArgs {
    /// The script as text: an expression over c, such as
    /// 'c.margin > 500.0 && c.recency_days < 60'
    #[arg(long, value_name = "TEXT")]
    expr: Option<String>,
    /// The script from a file (- for stdin): an expression, or fn matches(c) { ... }
    #[arg(long, value_name = "FILE")]
    script: Option<PathBuf>,
    /// A value the script reads as params.NAME (JSON, or text)
    #[arg(long = "param", value_name = "NAME=VALUE")]
    params: Vec<String>,
}

#[derive(Subcommand)]
enum UserCommand {
    /// Add a user who signs in to the console with a name and a password
    Create {
        #[command(flatten)]
        db: Db,
        /// The name to sign in with
        name: String,
        /// admin, integrator, analyst, agent or viewer (as for tokens)
        #[arg(long)]
        role: String,
        /// Read the password from the first line of standard input; without
        /// it a random password is made and printed once
        #[arg(long)]
        password_stdin: bool,
    },
    /// Set a user's password (and role, when given)
    Password {
        #[command(flatten)]
        db: Db,
        name: String,
        #[arg(long)]
        role: Option<String>,
        /// Read the password from the first line of standard input; without
        /// it a random password is made and printed once
        #[arg(long)]
        password_stdin: bool,
    },
    /// The users and their roles
    List {
        #[command(flatten)]
        db: Db,
    },
    /// Remove a user (the sessions they have end within a minute)
    Remove {
        #[command(flatten)]
        db: Db,
        name: String,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Make a token with a role; it is printed once and stored only as a hash
    Create {
        #[command(flatten)]
        db: Db,
        /// admin, integrator (plugins), analyst (segments, analyses),
        /// agent (customers, interactions) or viewer (reads)
        #[arg(long)]
        role: String,
        /// Who or what uses it
        #[arg(long)]
        name: String,
    },
    /// The tokens: name, role, id (never the token)
    List {
        #[command(flatten)]
        db: Db,
    },
    /// Revoke the tokens with this name or id
    Revoke {
        #[command(flatten)]
        db: Db,
        which: String,
    },
}

#[derive(Subcommand)]
enum SegmentCommand {
    /// Save a segment (checked against the fields of the store and its
    /// enabled plugins, and run on a sample first)
    Create {
        #[command(flatten)]
        db: Db,
        name: String,
        #[command(flatten)]
        script: ScriptArgs,
        /// What the segment is for (default: the script's leading // comment)
        #[arg(long)]
        description: Option<String>,
        /// Save a new revision of an existing segment
        #[arg(long)]
        replace: bool,
        /// With --replace: only if the current revision is this one
        #[arg(long, requires = "replace")]
        revision: Option<u64>,
    },
    /// The segments, with their member counts
    List {
        #[command(flatten)]
        db: Db,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// A segment's definition, and with --history every revision
    Show {
        #[command(flatten)]
        db: Db,
        name: String,
        #[arg(long)]
        history: bool,
    },
    /// Count and sample the members of a script without saving it
    Test {
        #[command(flatten)]
        db: Db,
        #[command(flatten)]
        script: ScriptArgs,
        /// Members to show
        #[arg(long, default_value_t = 10)]
        sample: usize,
    },
    /// The members of a segment, as ids or as CSV with the fields the script reads
    Members {
        #[command(flatten)]
        db: Db,
        name: String,
        #[arg(long, value_enum, default_value_t = MemberFormat::Ids)]
        format: MemberFormat,
        /// Write to this file instead of standard output
        #[arg(long, short, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Why a customer is or is not in a segment: each part of the script
    /// and the values it read
    Explain {
        #[command(flatten)]
        db: Db,
        name: String,
        customer: String,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Delete a segment (its history stays readable with show --history)
    Delete {
        #[command(flatten)]
        db: Db,
        name: String,
    },
    /// Time a 3-condition and a 10-condition segment (needs the
    /// tobacco-retail plugin): columns, interpreter, plain Rust
    Bench {
        #[command(flatten)]
        db: Db,
        /// Runs of each measurement (the best is shown)
        #[arg(long, default_value_t = 5)]
        runs: usize,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// The fields a script can read: core fields, metrics, plugin fields and scores
    Fields {
        #[command(flatten)]
        db: Db,
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum MemberFormat {
    /// One customer id per line
    Ids,
    /// customer_id, name, region, tier and the fields the script reads
    Csv,
}

#[derive(Subcommand)]
enum PluginCommand {
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

fn parse_kind(kind: &str) -> Result<EntityKind> {
    EntityKind::parse(kind).with_context(|| {
        format!("unknown kind '{kind}' (expected customer, product, campaign, transaction or interaction)")
    })
}

/// Reads records of one kind as JSON lines from stdin (the shape `crm get`
/// prints: a customer's `metrics` are computed and ignored, a `revision`
/// is the revision the write expects) and writes each through the write
/// path (the plugins' checks, an audit entry naming `cli`), durably before
/// acknowledging it with `ok <id> added|updated|unchanged`. Stops at the
/// first line refused; the lines before it are written.
fn put(store: &dyn Store, db: &Path, kind: EntityKind) -> Result<()> {
    use std::io::{BufRead, Write};
    let registry = app::plugins::registry(db)?;
    let actor = store::Actor::new("cli");
    let stdin = std::io::stdin().lock();
    let mut stdout = std::io::stdout().lock();
    for (n, line) in stdin.lines().enumerate() {
        let line = line.context("reading stdin")?;
        if line.trim().is_empty() {
            continue;
        }
        let at = || format!("stdin line {}", n + 1);
        let (record, expect) = parse_record(kind, &line).with_context(at)?;
        let id = record.id().to_owned();
        let what = if matches!(
            record,
            model::Record::Transaction(_) | model::Record::Interaction(_)
        ) {
            app::write::check_record(&record).with_context(at)?;
            let new = store.put_line(record, expect, &actor).with_context(at)?;
            if new { "added" } else { "updated" }
        } else {
            let before = store.get_revised(kind, &id).with_context(at)?;
            let write = store::Expected {
                record,
                expect,
                actor: actor.clone(),
            };
            let outcome = app::write::check_and_write(
                store,
                &registry,
                vec![write],
                app::Source::Client,
                &mut |_, _| {},
            )
            .pop()
            .expect("one outcome per write");
            let (revision, _) = outcome.with_context(at)?;
            match before {
                None => "added",
                Some((old, _)) if old == revision => "unchanged",
                Some(_) => "updated",
            }
        };
        store.flush().with_context(at)?;
        writeln!(stdout, "ok {id} {what}")?;
        stdout.flush()?;
    }
    Ok(())
}

/// One record as `crm get` prints it, and the revision its write expects
/// (its `revision` member, else whatever is stored).
fn parse_record(kind: EntityKind, json: &str) -> Result<(model::Record, store::Expect)> {
    use model::Record;
    let mut value: serde_json::Value = serde_json::from_str(json)?;
    let mut expect = store::Expect::Any;
    if let Some(object) = value.as_object_mut() {
        // Computed members of `crm get`'s output.
        object.remove("metrics");
        if let Some(revision) = object.remove("revision") {
            let revision = revision
                .as_u64()
                .with_context(|| format!("revision: expected a whole number, got {revision}"))?;
            expect = store::Expect::Revision(revision);
        }
    }
    let record = match kind {
        EntityKind::Customer => Record::Customer(serde_json::from_value(value)?),
        EntityKind::Product => Record::Product(serde_json::from_value(value)?),
        EntityKind::Campaign => Record::Campaign(serde_json::from_value(value)?),
        EntityKind::Transaction => Record::Transaction(serde_json::from_value(value)?),
        EntityKind::Interaction => Record::Interaction(serde_json::from_value(value)?),
    };
    let problems = record.problems();
    if !problems.is_empty() {
        let list: Vec<String> = problems.iter().map(ToString::to_string).collect();
        bail!("{}", list.join("; "));
    }
    Ok((record, expect))
}

/// Runs `crm snapshot --db DB` as a child process.
fn refresh_snapshot_in_child(db: &Path, quiet: bool) -> Result<()> {
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

struct AnalyzeRequest {
    names: Vec<String>,
    all: bool,
    as_of: Option<String>,
    customers: Option<PathBuf>,
    format: Output,
    timings: bool,
}

fn analyze(
    snapshot: &analysis::Snapshot,
    request: &AnalyzeRequest,
    members: Option<Vec<u32>>,
) -> Result<()> {
    let names: Vec<&str> = if request.all {
        analysis::NAMES.to_vec()
    } else if request.names.is_empty() {
        bail!("name the analyses to run, or give --all (--list shows them)");
    } else {
        request.names.iter().map(String::as_str).collect()
    };
    if let Some(unknown) = names.iter().find(|n| analysis::describe(n).is_none()) {
        bail!(
            "unknown analysis '{unknown}' (the analyses are {})",
            analysis::NAMES.join(", ")
        );
    }
    if request.format == Output::Csv && names.len() != 1 {
        bail!("csv output holds one analysis; name one");
    }
    let as_of = request
        .as_of
        .as_deref()
        .map(model::Date::parse)
        .transpose()
        .context("--as-of")?;
    let customers = match members {
        Some(rows) => Some(rows),
        None => request
            .customers
            .as_deref()
            .map(|path| segment_rows(snapshot, path))
            .transpose()?,
    };
    let scope = analysis::Scope { as_of, customers };
    let tables: Vec<analysis::Table> = if request.timings {
        // Each analysis alone, on a context of its own: it pays for all it needs.
        for name in &names {
            let started = Instant::now();
            let ctx = analysis::Context::new(snapshot, &scope);
            analysis::run(name, &ctx).expect("names were checked");
            eprintln!("{name:<22} {:>10.6}s", started.elapsed().as_secs_f64());
        }
        let started = Instant::now();
        let ctx = analysis::Context::new(snapshot, &scope);
        let tables = analysis::run_all(&names, &ctx);
        eprintln!(
            "{:<22} {:>10.6}s",
            "all_together",
            started.elapsed().as_secs_f64()
        );
        tables
            .into_iter()
            .map(|t| t.expect("names were checked"))
            .collect()
    } else {
        let ctx = analysis::Context::new(snapshot, &scope);
        analysis::run_all(&names, &ctx)
            .into_iter()
            .map(|t| t.expect("names were checked"))
            .collect()
    };
    match request.format {
        Output::Json => {
            let mut json = serde_json::Map::new();
            for (name, table) in names.iter().zip(&tables) {
                json.insert((*name).to_owned(), serde_json::to_value(table)?);
            }
            outln!("{}", serde_json::to_string_pretty(&json)?);
        }
        Output::Csv => out!("{}", tables[0].to_csv()),
        Output::Table => {
            for (name, table) in names.iter().zip(&tables) {
                outln!("== {name} ({} rows)", table.rows.len());
                outln!("{}", table.to_text());
            }
        }
    }
    Ok(())
}

/// The snapshot rows of the customer ids in a file (one per line; - for stdin).
fn segment_rows(snapshot: &analysis::Snapshot, path: &Path) -> Result<Vec<u32>> {
    let text = if path == Path::new("-") {
        std::io::read_to_string(std::io::stdin()).context("reading customer ids from stdin")?
    } else {
        std::fs::read_to_string(path)
            .with_context(|| format!("reading customer ids from {}", path.display()))?
    };
    let mut rows = Vec::new();
    let mut unknown = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let id = line.trim();
        if id.is_empty() {
            continue;
        }
        match snapshot.customers.find(id) {
            Some(ci) => rows.push(ci),
            None => unknown.push(format!("{}:{}: {id}", path.display(), n + 1)),
        }
    }
    if !unknown.is_empty() {
        bail!(
            "{} unknown customer id{}: {}{}",
            unknown.len(),
            if unknown.len() == 1 { "" } else { "s" },
            unknown
                .iter()
                .take(10)
                .cloned()
                .collect::<Vec<_>>()
                .join(", "),
            if unknown.len() > 10 { ", ..." } else { "" }
        );
    }
    Ok(rows)
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

fn import(store: &dyn Store, db: &Path, dir: &Path, skip_invalid: bool, quiet: bool) -> Result<()> {
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

/// Counts and sizes; with the store's directory, the analysis checkpoint's size too.
fn stats(store: &dyn Store, db: Option<&Path>) -> Result<()> {
    outln!("{}", store.location());
    for kind in EntityKind::ALL {
        outln!("{:<13} {:>12}", kind.plural(), store.count(kind)?);
    }
    outln!(
        "{:<13} {:>12}",
        "size on disk",
        HumanBytes(store.size_on_disk()?).to_string()
    );
    if let Some(db) = db
        && let Ok(meta) = std::fs::metadata(app::checkpoint::checkpoint_path(db))
    {
        outln!(
            "{:<13} {:>12}",
            "snapshot",
            HumanBytes(meta.len()).to_string()
        );
    }
    Ok(())
}

/// What the store holds in all: counts, the transaction period, totals.
#[derive(serde::Serialize)]
struct Summary {
    customers: u64,
    products: u64,
    transactions: u64,
    interactions: u64,
    campaigns: u64,
    first_ts: Option<model::Timestamp>,
    last_ts: Option<model::Timestamp>,
    /// The day after the last transaction's date: the date analyses are as of.
    as_of: Option<model::Date>,
    revenue: model::Money,
    cost: model::Money,
    quantity: u64,
}

fn dataset_summary(store: &dyn Store) -> Result<Summary> {
    let mut summary = Summary {
        customers: store.count(EntityKind::Customer)?,
        products: store.count(EntityKind::Product)?,
        transactions: store.count(EntityKind::Transaction)?,
        interactions: store.count(EntityKind::Interaction)?,
        campaigns: store.count(EntityKind::Campaign)?,
        first_ts: None,
        last_ts: None,
        as_of: None,
        revenue: model::Money::ZERO,
        cost: model::Money::ZERO,
        quantity: 0,
    };
    for record in store.scan(EntityKind::Transaction) {
        let model::Record::Transaction(t) = record? else {
            continue;
        };
        summary.first_ts = Some(summary.first_ts.map_or(t.ts, |f| f.min(t.ts)));
        summary.last_ts = Some(summary.last_ts.map_or(t.ts, |l| l.max(t.ts)));
        summary.revenue += t.amount;
        summary.cost += t.cost;
        summary.quantity += t.quantity as u64;
    }
    summary.as_of = summary.last_ts.map(|ts| ts.date().add_days(1));
    Ok(summary)
}

fn print_summary(summary: &Summary) -> Result<()> {
    let show = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    outln!(
        "{:<13} {}",
        "first sale",
        show(summary.first_ts.map(|t| t.to_string()))
    );
    outln!(
        "{:<13} {}",
        "last sale",
        show(summary.last_ts.map(|t| t.to_string()))
    );
    outln!(
        "{:<13} {}",
        "as of",
        show(summary.as_of.map(|d| d.to_string()))
    );
    outln!("{:<13} {:>12}", "revenue", summary.revenue.to_string());
    outln!("{:<13} {:>12}", "cost", summary.cost.to_string());
    outln!("{:<13} {:>12}", "quantity", summary.quantity);
    Ok(())
}

fn generate_data(industry: Industry, customers: u32, seed: u64, out: &Path) -> Result<()> {
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

/// Serves the store at `db` (the HTTP API and the console).
fn serve(db: &Path, cache_mib: u64, options: crate::http::Options) -> Result<()> {
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

fn demo(
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
fn demo_plugin(db: &Path, id: &str) -> Result<()> {
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

fn read_config(path: Option<&Path>) -> Result<Option<serde_json::Value>> {
    path.map(|p| -> Result<serde_json::Value> {
        let text =
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", p.display()))
    })
    .transpose()
}

/// Opens what a segment command works with.
fn segment_workspace(db: &Path) -> Result<app::Base> {
    workspace_of(open_store(db, false)?, db)
}

fn workspace_of(store: Arc<dyn Store>, db: &Path) -> Result<app::Base> {
    let opened = open_snapshot(&*store, db)?;
    Ok(app::Base::new(
        store,
        opened.snapshot,
        Arc::new(app::plugins::registry(db)?),
    ))
}

/// Saves the segments plugin `id` ships that the store does not have yet.
fn add_shipped_segments(store: Arc<dyn Store>, db: &Path, id: &str) -> Result<()> {
    for shipped in workspace_of(store, db)?.add_shipped(id)? {
        match shipped.saved {
            Ok(()) => eprintln!("added segment {}: {}", shipped.name, shipped.description),
            Err(err) => eprintln!("segment {} of {id} was not added: {err}", shipped.name),
        }
    }
    Ok(())
}

fn segment_definition(
    args: &ScriptArgs,
    description: Option<String>,
) -> Result<segments::Definition> {
    let script = app::base::script_text(args.script.as_deref(), args.expr.as_deref())?;
    Ok(segments::Definition {
        description: description.unwrap_or_else(|| app::base::leading_comment(&script)),
        script,
        params: app::base::parse_params(&args.params)?,
    })
}

fn share(part: usize, whole: usize) -> String {
    if whole == 0 {
        "0%".to_owned()
    } else {
        format!("{:.1}%", 100.0 * part as f64 / whole as f64)
    }
}

fn how_evaluated(evaluated: &app::base::Evaluated) -> &'static str {
    if evaluated.compiled.is_plain() {
        "over columns"
    } else {
        "with the interpreter"
    }
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

fn audit_command(
    db: &Db,
    kind: Option<String>,
    id: Option<String>,
    limit: usize,
    format: Format,
) -> Result<()> {
    let store = open_store(&db.db, false)?;
    let entries = store.audit_log(&store::AuditQuery {
        before: None,
        kind,
        id,
        limit,
    })?;
    if format == Format::Json {
        outln!("{}", serde_json::to_string_pretty(&entries)?);
        return Ok(());
    }
    for e in entries {
        let at = model::Timestamp::from_seconds(e.at_ms.div_euclid(1000));
        let what = match e.revision {
            Some(r) => format!("{} {} (revision {r})", e.kind, e.id),
            None => format!("{} {}", e.kind, e.id),
        };
        outln!("{:>8}  {at}  {:<28} {:<8} {what}", e.seq, e.actor, e.action);
        for (label, value) in [("before", &e.before), ("after ", &e.after)] {
            if let Some(v) = value {
                let text: String = v.to_string().chars().take(160).collect();
                outln!("          {label} {text}");
            }
        }
    }
    Ok(())
}

/// Saves user `name` with the password given on standard input, or a new
/// random one, printed once.
fn save_user(
    users: &app::users::Users,
    name: &str,
    role: app::tokens::Role,
    password_stdin: bool,
    replace: bool,
) -> Result<()> {
    let password = if password_stdin {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .context("reading the password from standard input")?;
        line.trim_end_matches(['\n', '\r']).to_owned()
    } else {
        app::users::random_password()?
    };
    users.save(name, role, &password, replace, "cli")?;
    eprintln!("user {name} ({}) saved", role.as_str());
    if !password_stdin {
        eprintln!("password (not shown again):");
        outln!("{password}");
    }
    Ok(())
}

fn user_command(command: UserCommand) -> Result<()> {
    use app::tokens::Role;
    use app::users::Users;
    match command {
        UserCommand::Create {
            db,
            name,
            role,
            password_stdin,
        } => {
            let role = Role::parse(&role)?;
            let users = Users::new(open_store(&db.db, false)?);
            save_user(&users, &name, role, password_stdin, false)?;
        }
        UserCommand::Password {
            db,
            name,
            role,
            password_stdin,
        } => {
            let users = Users::new(open_store(&db.db, false)?);
            let role = match role {
                Some(r) => Role::parse(&r)?,
                None => users
                    .role_of(&name)?
                    .with_context(|| format!("no user '{name}' (crm user create adds one)"))?,
            };
            save_user(&users, &name, role, password_stdin, true)?;
        }
        UserCommand::List { db } => {
            let users = Users::new(open_store(&db.db, false)?);
            for u in users.list()? {
                outln!(
                    "{:<24} {:<10} saved {}",
                    u.name,
                    u.role.as_str(),
                    model::Timestamp::from_seconds(u.saved)
                );
            }
        }
        UserCommand::Remove { db, name } => {
            let users = Users::new(open_store(&db.db, false)?);
            if !users.remove(&name, "cli")? {
                bail!("no user '{name}'");
            }
            outln!("removed user {name}");
        }
    }
    Ok(())
}

fn token_command(command: TokenCommand) -> Result<()> {
    use app::tokens::{Role, Tokens};
    match command {
        TokenCommand::Create { db, role, name } => {
            let role = Role::parse(&role)?;
            let tokens = Tokens::new(open_store(&db.db, false)?);
            let token = tokens.create(&name, role)?;
            eprintln!(
                "token for {name} ({}); it is not shown again:",
                role.as_str()
            );
            outln!("{token}");
        }
        TokenCommand::List { db } => {
            let tokens = Tokens::new(open_store(&db.db, false)?);
            for t in tokens.list()? {
                outln!(
                    "{}  {:<10} {}  created {}",
                    t.id,
                    t.role.as_str(),
                    t.name,
                    model::Timestamp::from_seconds(t.created)
                );
            }
        }
        TokenCommand::Revoke { db, which } => {
            let tokens = Tokens::new(open_store(&db.db, false)?);
            match tokens.revoke(&which)? {
                0 => bail!("no token named '{which}' or with id '{which}'"),
                n => outln!("revoked {n} token{}", if n == 1 { "" } else { "s" }),
            }
        }
    }
    Ok(())
}

fn segment_command(command: SegmentCommand) -> Result<()> {
    use app::base::{SPACE, decode};
    match command {
        SegmentCommand::Create {
            db,
            name,
            script,
            description,
            replace,
            revision,
        } => {
            app::base::check_name(&name)?;
            let def = segment_definition(&script, description)?;
            let ws = segment_workspace(&db.db)?;
            let expect = match (replace, revision) {
                (false, _) => store::Expect::New,
                (true, Some(r)) => store::Expect::Revision(r),
                (true, None) => store::Expect::Any,
            };
            if !replace && ws.store.definition(SPACE, &name)?.is_some() {
                bail!("segment {name} exists already; give --replace to save a new revision");
            }
            let rev = ws
                .save(&name, &def, expect, "cli")
                .with_context(|| format!("segment {name}"))?;
            let evaluated = ws.evaluate(&def, None)?;
            let n = ws.snapshot.customers.len();
            outln!(
                "saved segment {name}, revision {}: {} of {} customers ({})",
                rev.revision,
                evaluated.members.len(),
                n,
                share(evaluated.members.len(), n)
            );
            Ok(())
        }
        SegmentCommand::List { db, format } => {
            let ws = segment_workspace(&db.db)?;
            let n = ws.snapshot.customers.len();
            let mut rows = Vec::new();
            for rev in ws.store.definitions(SPACE)? {
                let def = decode(&rev)?;
                let members = ws.evaluate(&def, None).map(|e| e.members.len());
                rows.push((rev, def, members));
            }
            match format {
                Format::Json => {
                    let json: Vec<serde_json::Value> = rows
                        .iter()
                        .map(|(rev, def, members)| {
                            serde_json::json!({
                                "name": rev.name,
                                "revision": rev.revision,
                                "description": def.description,
                                "members": members.as_ref().ok(),
                                "error": members.as_ref().err().map(|e| format!("{e:#}")),
                            })
                        })
                        .collect();
                    outln!("{}", serde_json::to_string_pretty(&json)?);
                }
                Format::Text => {
                    if rows.is_empty() {
                        outln!("no segments (crm segment create NAME --expr '...' makes one)");
                    }
                    for (rev, def, members) in rows {
                        let count = match members {
                            Ok(m) => format!("{m:>9} {:>6}", share(m, n)),
                            Err(e) => format!("error: {e:#}"),
                        };
                        outln!(
                            "{:<28} r{:<3} {count}  {}",
                            rev.name,
                            rev.revision,
                            def.description
                        );
                    }
                }
            }
            Ok(())
        }
        SegmentCommand::Show { db, name, history } => {
            let store = open_store(&db.db, false)?;
            let revisions = if history {
                store.definition_history(SPACE, &name)?
            } else {
                store.definition(SPACE, &name)?.into_iter().collect()
            };
            if revisions.is_empty() {
                bail!("no segment '{name}' (crm segment list shows them)");
            }
            for rev in &revisions {
                let def = decode(rev)?;
                let saved = model::Timestamp::from_seconds(rev.saved_at);
                outln!(
                    "segment {} revision {} saved {saved}",
                    rev.name,
                    rev.revision
                );
                if !def.description.is_empty() {
                    outln!("description: {}", def.description);
                }
                if !def.params.is_empty() {
                    outln!("params: {}", serde_json::Value::Object(def.params.clone()));
                }
                outln!("{}", def.script.trim_end());
                outln!();
            }
            if history && store.definition(SPACE, &name)?.is_none() {
                outln!("(deleted)");
            }
            Ok(())
        }
        SegmentCommand::Test { db, script, sample } => {
            let def = segment_definition(&script, None)?;
            let ws = segment_workspace(&db.db)?;
            let evaluated = ws.evaluate(&def, None)?;
            let n = ws.snapshot.customers.len();
            outln!(
                "{} of {} customers ({}), evaluated {} in {:.1} ms",
                evaluated.members.len(),
                n,
                share(evaluated.members.len(), n),
                how_evaluated(&evaluated),
                evaluated.took.as_secs_f64() * 1000.0
            );
            let fields: Vec<&segments::Field> = evaluated
                .compiled
                .reads
                .iter()
                .map(|&f| &ws.catalog.fields()[f])
                .collect();
            for &ci in evaluated.members.iter().take(sample) {
                let values: Vec<String> = evaluated
                    .compiled
                    .reads
                    .iter()
                    .zip(&fields)
                    .map(|(&f, field)| {
                        let v = evaluated
                            .frame
                            .column(f)
                            .map_or(segments::Value::Missing, |c| c.get(ci));
                        format!("{}={}", field.name, v.to_json(field.ty))
                    })
                    .collect();
                outln!(
                    "  {} {}  {}",
                    ws.snapshot.customers.id(ci),
                    ws.snapshot.customers.names.get(ci as usize),
                    values.join(" ")
                );
            }
            Ok(())
        }
        SegmentCommand::Members {
            db,
            name,
            format,
            output,
        } => {
            let ws = segment_workspace(&db.db)?;
            let (_, def) = ws.definition(&name)?;
            let evaluated = ws
                .evaluate(&def, None)
                .with_context(|| format!("segment {name}"))?;
            let mut sink: Box<dyn std::io::Write> = match &output {
                Some(path) => Box::new(std::io::BufWriter::new(
                    std::fs::File::create(path)
                        .with_context(|| format!("creating {}", path.display()))?,
                )),
                None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
            };
            match format {
                MemberFormat::Ids => {
                    for &ci in &evaluated.members {
                        writeln!(sink, "{}", ws.snapshot.customers.id(ci))?;
                    }
                }
                MemberFormat::Csv => {
                    app::base::write_members_csv(&mut sink, &ws, &evaluated)?;
                }
            }
            sink.flush()?;
            if let Some(path) = output {
                eprintln!(
                    "{} members of {name} written to {}",
                    evaluated.members.len(),
                    path.display()
                );
            }
            Ok(())
        }
        SegmentCommand::Explain {
            db,
            name,
            customer,
            format,
        } => {
            let ws = segment_workspace(&db.db)?;
            let (_, def) = ws.definition(&name)?;
            let Some(ci) = ws.snapshot.customers.find(&customer) else {
                bail!("no customer '{customer}' in the {}", ws.store.location());
            };
            let compiled = ws.compile(&def).map_err(|e| anyhow::anyhow!("{e}"))?;
            let frame = ws.frame(&compiled.reads, None)?;
            let x = compiled
                .explain(&ws.engine, &ws.catalog, &frame, ci, ws.limits)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            match format {
                Format::Json => outln!("{}", serde_json::to_string_pretty(&x)?),
                Format::Text => {
                    outln!(
                        "{customer} is {}in segment {name}",
                        if x.matched { "" } else { "not " }
                    );
                    for part in &x.parts {
                        let mark = match (part.held, &part.error) {
                            (Some(true), _) => "yes".to_owned(),
                            (Some(false), _) => "no ".to_owned(),
                            (None, Some(e)) => format!("error: {e}"),
                            (None, None) => "?".to_owned(),
                        };
                        let reads: Vec<String> = part
                            .reads
                            .iter()
                            .map(|r| format!("{}={}", r.field, r.value))
                            .collect();
                        outln!(
                            "  {mark} {}{}{}",
                            "  ".repeat(part.depth),
                            part.text.split_whitespace().collect::<Vec<_>>().join(" "),
                            if !part.reads.is_empty() {
                                format!("   [{}]", reads.join(", "))
                            } else {
                                String::new()
                            }
                        );
                    }
                    outln!("values read:");
                    for r in &x.values {
                        outln!("  c.{} = {}", r.field, r.value);
                    }
                }
            }
            Ok(())
        }
        SegmentCommand::Delete { db, name } => {
            let store = open_store(&db.db, false)?;
            if !app::base::delete(&*store, &name, store::Expect::Any, "cli")? {
                bail!("no segment '{name}' (crm segment list shows them)");
            }
            store.flush()?;
            outln!(
                "deleted segment {name} (crm segment show {name} --history keeps its revisions)"
            );
            Ok(())
        }
        SegmentCommand::Bench { db, runs, format } => {
            let ws = segment_workspace(&db.db)?;
            let lines = app::base::bench(&ws, runs)?;
            match format {
                Format::Json => outln!("{}", serde_json::to_string_pretty(&lines)?),
                Format::Text => {
                    outln!(
                        "{} customers, best of {runs} runs",
                        ws.snapshot.customers.len()
                    );
                    for l in lines {
                        outln!(
                            "{:<14} {:<40} {:>9} members {:>10.1} ms",
                            l.segment,
                            l.how,
                            l.members,
                            l.seconds * 1000.0
                        );
                    }
                }
            }
            Ok(())
        }
        SegmentCommand::Fields { db, format } => {
            let registry = app::plugins::registry(&db.db)?;
            let (catalog, left_out) = app::base::catalog(&registry);
            for problem in &left_out {
                eprintln!("note: {problem}");
            }
            match format {
                Format::Json => outln!("{}", serde_json::to_string_pretty(catalog.fields())?),
                Format::Text => {
                    for f in catalog.fields() {
                        let values = if f.values.is_empty() {
                            String::new()
                        } else {
                            format!(" [{}]", f.values.join(", "))
                        };
                        outln!(
                            "c.{:<24} {:<13} {:<22} {}{values}",
                            f.name,
                            format!("{:?}", f.ty).to_lowercase(),
                            segments::origin(&f.source),
                            f.doc
                        );
                    }
                    outln!();
                    outln!("constants: today (the as-of day, a day number), params.NAME");
                    outln!(
                        "functions: date(\"2025-01-31\"), days_between(a, b), day_text(d), year(d), month(d), is_missing(v)"
                    );
                }
            }
            Ok(())
        }
    }
}

fn plugin_command(command: PluginCommand) -> Result<()> {
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
struct PluginRun {
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

/// A plugin's table as an analysis table.
fn print_table(name: &str, table: &analysis::Table, format: Output) -> Result<()> {
    match format {
        Output::Table => outln!("== {name} ({} rows)\n{}", table.rows.len(), table.to_text()),
        Output::Csv => out!("{}", table.to_csv()),
        Output::Json => outln!("{}", serde_json::to_string_pretty(table)?),
    }
    Ok(())
}
