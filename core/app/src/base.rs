//! The customer base as analyses and segments see it (`Base`: the store,
//! the analysis snapshot, the plugins, and the catalog and engine scripts
//! are compiled with), and the segments service: definitions in the store
//! (saved, deleted, shipped with a plugin: each written once, here), the
//! fields scripts can read (core, metrics, and the enabled plugins' fields
//! and scores), and plugin scores computed for the customers a script
//! needs them for.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use analysis::Snapshot;
use anyhow::{Context as _, Result, anyhow, bail};
use plugin_host::Registry;
use segments::{Catalog, Definition, Extra, Field, Frame, Limits, Source, Value};
use serde_json::Value as Json;
use store::{Expect, Store};

use crate::plugins::{Batches, per_batch};

/// The store's space for segment definitions.
pub const SPACE: &str = "segments";

/// A segment name: lowercase letters, digits, `_` and `-`, up to 64.
pub fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        && name.as_bytes()[0].is_ascii_alphanumeric();
    if !ok {
        bail!(
            "'{name}' is not a segment name: use lowercase letters, digits, _ and -, up to 64, starting with a letter or digit"
        );
    }
    Ok(())
}

/// The fields scripts can read in a store: core fields, metrics, and each
/// enabled plugin's custom fields and scores; and the plugin fields left
/// out because their names are taken.
pub fn catalog(registry: &Registry) -> (Catalog, Vec<String>) {
    let mut catalog = Catalog::core();
    let mut problems = Vec::new();
    for plugin in registry.enabled() {
        let id = plugin.id().to_owned();
        if let Some(fields) = &plugin.fields {
            problems.extend(catalog.add_plugin_fields(&id, &fields.schema));
        }
        for model in &plugin.manifest.hooks.scores {
            problems.extend(catalog.add_score(&id, model));
        }
    }
    (catalog, problems)
}

/// Plugin scores, computed by calling the plugins for the rows asked.
pub struct PluginScores<'a> {
    pub registry: &'a Registry,
    pub batches: Batches<'a>,
}

impl Extra for PluginScores<'_> {
    fn values(&self, fields: &[&Field], rows: &[u32]) -> Result<Vec<Vec<Value>>, String> {
        // One call per model, for its value and its band.
        // A customer the model declines to score (an error for that item) has no score.
        let mut scored: BTreeMap<(String, String), Vec<Option<crm_sdk::wire::Score>>> =
            BTreeMap::new();
        for field in fields {
            let Source::Score { plugin, model, .. } = &field.source else {
                return Err(format!("{} is not a score", field.name));
            };
            let key = (plugin.clone(), model.clone());
            if scored.contains_key(&key) {
                continue;
            }
            let loaded = self.registry.get(plugin).map_err(|e| e.to_string())?;
            let scores = per_batch(&self.batches, &loaded, rows, |batch| {
                self.registry
                    .counted(&loaded, |p| p.score(model, batch))
                    .map(|(results, _log)| results.into_iter().map(Result::ok).collect())
            })
            .map_err(|e| format!("plugin {plugin}, score {model}: {e}"))?;
            scored.insert(key, scores);
        }
        Ok(fields
            .iter()
            .map(|field| {
                let Source::Score {
                    plugin,
                    model,
                    band,
                } = &field.source
                else {
                    unreachable!("checked above")
                };
                scored[&(plugin.clone(), model.clone())]
                    .iter()
                    .map(|s| match s {
                        None => Value::Missing,
                        Some(s) if *band => Value::Text(s.band.as_str().into()),
                        Some(s) => Value::Float(s.value),
                    })
                    .collect()
            })
            .collect())
    }
}

/// A definition as stored.
pub fn decode(rev: &store::Revision) -> Result<Definition> {
    serde_json::from_str(&rev.body).with_context(|| {
        format!(
            "segment {} revision {} is unreadable",
            rev.name, rev.revision
        )
    })
}

/// The customer base as analyses and segments see it.
pub struct Base {
    pub store: Arc<dyn Store>,
    pub snapshot: Snapshot,
    /// Shared: a server reads it without the lock around the workspace.
    pub registry: Arc<Registry>,
    pub catalog: Catalog,
    /// Plugin fields left out of the catalog, and why.
    pub left_out: Vec<String>,
    pub engine: segments::Engine,
    pub limits: Limits,
}

/// A segment evaluated: its members and what it took.
pub struct Evaluated {
    pub compiled: segments::Compiled,
    pub frame: Arc<Frame>,
    pub members: Vec<u32>,
    pub took: std::time::Duration,
}

impl Base {
    pub fn new(store: Arc<dyn Store>, snapshot: Snapshot, registry: Arc<Registry>) -> Base {
        let (catalog, left_out) = catalog(&registry);
        let limits = Limits::default();
        Base {
            left_out,
            engine: segments::engine(&catalog, limits),
            store,
            snapshot,
            registry,
            catalog,
            limits,
        }
    }

    /// Takes the plugins' fields and scores in again after plugins were
    /// installed, upgraded, enabled, disabled or removed.
    pub fn refresh_plugins(&mut self) {
        let (catalog, left_out) = catalog(&self.registry);
        self.engine = segments::engine(&catalog, self.limits);
        self.catalog = catalog;
        self.left_out = left_out;
    }

    pub fn today(&self) -> Option<i64> {
        self.snapshot.default_as_of().map(|d| d.days() as i64)
    }

    pub fn compile(&self, def: &Definition) -> Result<segments::Compiled, segments::ScriptError> {
        segments::compile(&self.engine, &self.catalog, def, self.today())
    }

    /// The saved definition of `name`.
    pub fn definition(&self, name: &str) -> Result<(store::Revision, Definition)> {
        let rev = self.store.definition(SPACE, name)?.with_context(|| {
            let names: Vec<String> = self
                .store
                .definitions(SPACE)
                .unwrap_or_default()
                .into_iter()
                .map(|r| r.name)
                .collect();
            match segments::closest(name, names.iter().map(String::as_str)) {
                Some(s) => format!("no segment '{name}'; did you mean '{s}'?"),
                None => format!("no segment '{name}' (crm segment list shows them)"),
            }
        })?;
        let def = decode(&rev)?;
        Ok((rev, def))
    }

    /// The columns of the fields `reads` (catalog indexes) for every
    /// customer, or for the first `sample`; plugin scores by calling the plugins.
    pub fn frame(&self, reads: &[usize], sample: Option<usize>) -> Result<Arc<Frame>> {
        let extra = PluginScores {
            registry: &self.registry,
            batches: Batches::new(&self.snapshot),
        };
        let n = sample.unwrap_or(self.snapshot.customers.len());
        Frame::build_first(&self.snapshot, &self.catalog, reads, n, &extra)
            .map(Arc::new)
            .map_err(|e| anyhow!(e))
    }

    /// Builds the columns the script reads (over all customers, or the
    /// first `sample`) and evaluates it.
    pub fn evaluate(&self, def: &Definition, sample: Option<usize>) -> Result<Evaluated> {
        let compiled = self.compile(def).map_err(|e| anyhow!("{e}"))?;
        let started = Instant::now();
        let frame = self.frame(&compiled.reads, sample)?;
        let members = compiled
            .evaluate(
                &self.engine,
                &self.catalog,
                &frame,
                None,
                self.limits,
                &|r| self.snapshot.customers.id(r).to_owned(),
            )
            .map_err(|e| anyhow!("{e}"))?;
        Ok(Evaluated {
            compiled,
            frame,
            members,
            took: started.elapsed(),
        })
    }

    /// Checks a definition before it is saved: it compiles against the
    /// catalog and runs on a sample of customers without error.
    pub fn check(&self, def: &Definition) -> Result<()> {
        self.evaluate(def, Some(1000))
            .map(|_| ())
            .context("the script fails on the first 1,000 customers")
    }

    /// Saves a definition (after checking it), and notes who saved it in
    /// the audit log.
    pub fn save(
        &self,
        name: &str,
        def: &Definition,
        expect: Expect,
        actor: &str,
    ) -> Result<store::Revision> {
        check_name(name)?;
        self.check(def)?;
        let body = serde_json::to_string(def)?;
        let before = self.store.definition(SPACE, name)?;
        let saved = self.store.save_definition(SPACE, name, &body, expect)?;
        self.store.audit(store::AuditEntry {
            seq: 0,
            at_ms: 0,
            actor: actor.to_owned(),
            action: "save".into(),
            kind: "segment".into(),
            id: name.to_owned(),
            revision: Some(saved.revision.into()),
            before: before.and_then(|b| serde_json::from_str(&b.body).ok()),
            after: serde_json::from_str(&saved.body).ok(),
        })?;
        Ok(saved)
    }
}

/// Deletes segment `name` (its history stays) and notes who deleted it in
/// the audit log; false if there was none. A revision expected and no
/// longer current is `Stale`.
pub fn delete(
    store: &dyn Store,
    name: &str,
    expect: Expect,
    actor: &str,
) -> Result<bool, crate::WriteError> {
    let before = store.definition(SPACE, name)?;
    let deleted = store
        .delete_definition(SPACE, name, expect)
        .map_err(|e| crate::WriteError::of_store(e, expect))?;
    if deleted {
        store.audit(store::AuditEntry {
            seq: 0,
            at_ms: 0,
            actor: actor.to_owned(),
            action: "delete".into(),
            kind: "segment".into(),
            id: name.to_owned(),
            revision: None,
            before: before.and_then(|b| serde_json::from_str(&b.body).ok()),
            after: None,
        })?;
    }
    Ok(deleted)
}

/// A segment shipped with a plugin, and what became of it.
pub struct Shipped {
    pub name: String,
    pub description: String,
    /// Saved, or why not (its name is taken, or it does not check out).
    pub saved: Result<(), String>,
}

impl Base {
    /// Saves the segments plugin `id` ships (`segments/*.rhai` in its
    /// package) whose names are free, each noted as saved by `plugin ID`.
    pub fn add_shipped(&self, id: &str) -> Result<Vec<Shipped>> {
        let plugin = self.registry.get(id)?;
        let mut res = Vec::new();
        for (name, def) in shipped(&plugin.dir)? {
            let saved = if self.store.definition(SPACE, &name)?.is_some() {
                Err(format!("a segment named {name} exists already"))
            } else {
                self.save(&name, &def, Expect::New, &format!("plugin {id}"))
                    .map(|_| ())
                    .map_err(|e| format!("{e:#}"))
            };
            res.push(Shipped {
                name,
                description: def.description,
                saved,
            });
        }
        Ok(res)
    }
}

/// `--param NAME=VALUE`: VALUE as JSON when it reads as JSON, else as text.
pub fn parse_params(params: &[String]) -> Result<serde_json::Map<String, Json>> {
    let mut map = serde_json::Map::new();
    for p in params {
        let Some((name, value)) = p.split_once('=') else {
            bail!("--param {p}: write NAME=VALUE");
        };
        let value = serde_json::from_str(value).unwrap_or_else(|_| Json::String(value.into()));
        map.insert(name.trim().to_owned(), value);
    }
    Ok(map)
}

/// The script of `--script FILE` (- for stdin) or `--expr TEXT`.
pub fn script_text(script: Option<&Path>, expr: Option<&str>) -> Result<String> {
    match (script, expr) {
        (Some(_), Some(_)) => bail!("give --script or --expr, not both"),
        (None, None) => bail!("give the segment as --expr 'c.revenue > 100' or --script FILE"),
        (None, Some(e)) => Ok(e.to_owned()),
        (Some(p), None) if p == Path::new("-") => {
            std::io::read_to_string(std::io::stdin()).context("reading the script from stdin")
        }
        (Some(p), None) => std::fs::read_to_string(p)
            .with_context(|| format!("reading the script {}", p.display())),
    }
}

/// The description a script file gives itself: its leading `//` comment lines.
pub fn leading_comment(script: &str) -> String {
    script
        .lines()
        .map(str::trim)
        .take_while(|l| l.starts_with("//"))
        .map(|l| l.trim_start_matches('/').trim())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The segments shipped with a plugin: `segments/*.rhai` in its package,
/// by file name.
pub fn shipped(dir: &Path) -> Result<Vec<(String, Definition)>> {
    let dir = dir.join("segments");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(Vec::new());
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "rhai"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let script =
                std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
            let name = p
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            Ok((
                name,
                Definition {
                    description: leading_comment(&script),
                    script,
                    params: Default::default(),
                },
            ))
        })
        .collect()
}

/// Writes members as CSV: id, name, region, tier, then each field the
/// script reads.
pub fn write_members_csv(out: &mut dyn Write, ws: &Base, evaluated: &Evaluated) -> Result<()> {
    let s = &ws.snapshot;
    let mut w = csv::Writer::from_writer(out);
    let fields: Vec<&Field> = evaluated
        .compiled
        .reads
        .iter()
        .map(|&f| &ws.catalog.fields()[f])
        .collect();
    let mut header = vec!["customer_id", "name", "region", "tier"];
    header.extend(fields.iter().map(|f| f.name.as_str()));
    w.write_record(&header)?;
    for &ci in &evaluated.members {
        let i = ci as usize;
        let mut record = vec![
            s.customers.id(ci).to_owned(),
            s.customers.names.get(i).to_owned(),
            s.dicts.region.get(s.customers.region[i]).to_owned(),
            s.dicts.tier.get(s.customers.tier[i]).to_owned(),
        ];
        for (k, f) in fields.iter().enumerate() {
            let column = evaluated.compiled.reads[k];
            let v = evaluated
                .frame
                .column(column)
                .map_or(Value::Missing, |c| c.get(ci));
            record.push(match v.to_json(f.ty) {
                Json::Null => String::new(),
                Json::String(s) => s,
                other => other.to_string(),
            });
        }
        w.write_record(&record)?;
    }
    w.flush()?;
    Ok(())
}

/// The segments of the benchmark: 3 and 10 conditions over core fields,
/// metrics and the tobacco-retail plugin's fields.
pub const BENCH_3: &str = r#"c.margin > 500.0 && c.recency_days < 60 && c.store_type == "kiosk""#;
pub const BENCH_10: &str = r#"c.margin > 200.0 && c.recency_days < 120 && c.store_type != "supermarket" && c.baskets >= 3 && c.tier != "bronze" && c.region != "North" && c.revenue < 100000.0 && c.lines >= 5 && c.monthly_quota >= 10 && !c.churn_risk"#;

/// One measured way of finding the members.
#[derive(serde::Serialize)]
pub struct BenchLine {
    pub segment: &'static str,
    pub how: &'static str,
    pub members: usize,
    /// Best of the runs, in seconds.
    pub seconds: f64,
}

/// Times the benchmark segments: building their columns, evaluating over
/// columns, through the interpreter alone, and as plain Rust over the
/// same columns; the best of `runs` runs each.
pub fn bench(ws: &Base, runs: usize) -> Result<Vec<BenchLine>> {
    use rayon::prelude::*;
    let best = |f: &mut dyn FnMut() -> Result<usize>| -> Result<(usize, f64)> {
        let mut best = f64::MAX;
        let mut members = 0;
        for _ in 0..runs.max(1) {
            let started = Instant::now();
            members = f()?;
            best = best.min(started.elapsed().as_secs_f64());
        }
        Ok((members, best))
    };
    let mut lines = Vec::new();
    let n = ws.snapshot.customers.len();
    for (segment, script) in [("3 conditions", BENCH_3), ("10 conditions", BENCH_10)] {
        let def = Definition {
            script: script.to_owned(),
            ..Definition::default()
        };
        let compiled = ws.compile(&def).map_err(|e| anyhow!("{e}"))?;
        let mut frame = None;
        let (_, build) = best(&mut || {
            frame = Some(ws.frame(&compiled.reads, None)?);
            Ok(0)
        })?;
        let frame = frame.expect("built");
        lines.push(BenchLine {
            segment,
            how: "building the columns it reads",
            members: n,
            seconds: build,
        });
        let ids = |r: u32| ws.snapshot.customers.id(r).to_owned();
        let (members, columns) = best(&mut || {
            Ok(compiled
                .evaluate(&ws.engine, &ws.catalog, &frame, None, ws.limits, &ids)
                .map_err(|e| anyhow!("{e}"))?
                .len())
        })?;
        lines.push(BenchLine {
            segment,
            how: "evaluating over columns",
            members,
            seconds: columns,
        });
        let interpreted = ws.compile(&def).map_err(|e| anyhow!("{e}"))?.interpreted();
        let (members_i, interp) = best(&mut || {
            Ok(interpreted
                .evaluate(&ws.engine, &ws.catalog, &frame, None, ws.limits, &ids)
                .map_err(|e| anyhow!("{e}"))?
                .len())
        })?;
        anyhow::ensure!(members_i == members, "the interpreter disagrees");
        lines.push(BenchLine {
            segment,
            how: "evaluating with the interpreter alone",
            members,
            seconds: interp,
        });
        // Plain Rust over the same columns.
        let col = |name: &str| {
            let i = ws.catalog.index(name).expect("a catalog field");
            frame.column(i).expect("a built column")
        };
        let floats = |name: &str| match col(name) {
            segments::Column::Float(v) => v.as_slice(),
            _ => panic!("{name} is a float column"),
        };
        let ints = |name: &str| match col(name) {
            segments::Column::Int(v) => v.as_slice(),
            _ => panic!("{name} is an int column"),
        };
        let bools = |name: &str| match col(name) {
            segments::Column::Bool(v) => v.as_slice(),
            _ => panic!("{name} is a bool column"),
        };
        let text = |name: &str, value: &str| match col(name) {
            segments::Column::Text { codes, index, .. } => (
                codes.as_slice(),
                index.get(value).copied().unwrap_or(u32::MAX - 1),
            ),
            _ => panic!("{name} is a text column"),
        };
        const NO: i64 = i64::MIN;
        let (members_r, rust) = if segment == "3 conditions" {
            let (margin, recency) = (floats("margin"), ints("recency_days"));
            let (store, kiosk) = text("store_type", "kiosk");
            best(&mut || {
                Ok((0..n)
                    .into_par_iter()
                    .filter(|&i| {
                        margin[i] > 500.0
                            && recency[i] != NO
                            && recency[i] < 60
                            && store[i] == kiosk
                    })
                    .count())
            })?
        } else {
            let (margin, revenue) = (floats("margin"), floats("revenue"));
            let (recency, baskets, lines_, quota) = (
                ints("recency_days"),
                ints("baskets"),
                ints("lines"),
                ints("monthly_quota"),
            );
            let (store, supermarket) = text("store_type", "supermarket");
            let (tier, bronze) = text("tier", "bronze");
            let (region, north) = text("region", "North");
            let churn = bools("churn_risk");
            best(&mut || {
                Ok((0..n)
                    .into_par_iter()
                    .filter(|&i| {
                        margin[i] > 200.0
                            && recency[i] != NO
                            && recency[i] < 120
                            && store[i] != supermarket
                            && baskets[i] >= 3
                            && tier[i] != bronze
                            && region[i] != north
                            && revenue[i] < 100_000.0
                            && lines_[i] >= 5
                            && quota[i] != NO
                            && quota[i] >= 10
                            && churn[i] == 0
                    })
                    .count())
            })?
        };
        anyhow::ensure!(
            members_r == members,
            "plain Rust disagrees: {members_r} against {members}"
        );
        lines.push(BenchLine {
            segment,
            how: "plain Rust over the same columns",
            members,
            seconds: rust,
        });
    }
    Ok(lines)
}
