//! `crm put`, `crm get`'s kinds, and `crm stats`: records one at a time
//! through the write path, and what the store holds.

use super::*;

pub(super) fn parse_kind(kind: &str) -> Result<EntityKind> {
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
pub(super) fn put(store: &dyn Store, db: &Path, kind: EntityKind) -> Result<()> {
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
pub(super) fn parse_record(kind: EntityKind, json: &str) -> Result<(model::Record, store::Expect)> {
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

/// Counts and sizes; with the store's directory, the analysis checkpoint's size too.
pub(super) fn stats(store: &dyn Store, db: Option<&Path>) -> Result<()> {
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
pub(super) struct Summary {
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

pub(super) fn dataset_summary(store: &dyn Store) -> Result<Summary> {
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

pub(super) fn print_summary(summary: &Summary) -> Result<()> {
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
