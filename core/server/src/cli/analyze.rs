//! `crm analyze`: analyses on all customers, a segment, or a list of ids.

use super::*;

pub(super) struct AnalyzeRequest {
    pub(super) names: Vec<String>,
    pub(super) all: bool,
    pub(super) as_of: Option<String>,
    pub(super) customers: Option<PathBuf>,
    pub(super) format: Output,
    pub(super) timings: bool,
}

pub(super) fn analyze(
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
pub(super) fn segment_rows(snapshot: &analysis::Snapshot, path: &Path) -> Result<Vec<u32>> {
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
