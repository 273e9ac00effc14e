//! `crm segment`: segments written as rhai scripts, saved, tested,
//! explained and measured.

use super::*;

/// A segment script given on the command line.
#[derive(clap::Args)]
pub(super) struct ScriptArgs {
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
pub(super) enum SegmentCommand {
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
pub(super) enum MemberFormat {
    /// One customer id per line
    Ids,
    /// customer_id, name, region, tier and the fields the script reads
    Csv,
}

/// Opens what a segment command works with.
pub(super) fn segment_workspace(db: &Path) -> Result<app::Base> {
    workspace_of(open_store(db, false)?, db)
}

pub(super) fn workspace_of(store: Arc<dyn Store>, db: &Path) -> Result<app::Base> {
    let opened = open_snapshot(&*store, db)?;
    Ok(app::Base::new(
        store,
        opened.snapshot,
        Arc::new(app::plugins::registry(db)?),
    ))
}

/// Saves the segments plugin `id` ships that the store does not have yet.
pub(super) fn add_shipped_segments(store: Arc<dyn Store>, db: &Path, id: &str) -> Result<()> {
    for shipped in workspace_of(store, db)?.add_shipped(id)? {
        match shipped.saved {
            Ok(()) => eprintln!("added segment {}: {}", shipped.name, shipped.description),
            Err(err) => eprintln!("segment {} of {id} was not added: {err}", shipped.name),
        }
    }
    Ok(())
}

pub(super) fn segment_definition(
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

pub(super) fn share(part: usize, whole: usize) -> String {
    if whole == 0 {
        "0%".to_owned()
    } else {
        format!("{:.1}%", 100.0 * part as f64 / whole as f64)
    }
}

pub(super) fn how_evaluated(evaluated: &app::base::Evaluated) -> &'static str {
    if evaluated.compiled.is_plain() {
        "over columns"
    } else {
        "with the interpreter"
    }
}

pub(super) fn segment_command(command: SegmentCommand) -> Result<()> {
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
