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
        Some("plugins") => plugins(),
        Some("e2e") => e2e(E2e::Tests),
        Some("bench-console") => bench_console(&args[1..]),
        Some("bench-import") => bench_import(&args[1..]),
        Some("bench-analyses") => bench_analyses(&args[1..]),
        _ => {
            eprintln!(
                "usage: cargo xtask <task>\n\n\
                 tasks:\n  \
                 test          build everything and run all tests (extra arguments go to cargo test)\n  \
                 plugins       build the plugins for wasm32-wasip2 into packages in target/plugins/\n  \
                 e2e           the console's end-to-end tests in headless Chromium (screenshots in target/e2e/)\n  \
                 bench-console --store DIR  time to first render of the console's pages (see docs/BENCHMARKS.md)\n  \
                 schemas       write schemas/ from the model types\n  \
                 bench-import  [--customers N]... import benchmark (see docs/BENCHMARKS.md)\n  \
                 bench-analyses [--customers N]... analyses here and in DuckDB (see docs/BENCHMARKS.md)"
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
    // The manifest's schema is written by its test, so that xtask does not
    // build the plugin host.
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(&cargo)
        .args([
            "test",
            "--quiet",
            "-p",
            "plugin-host",
            "--lib",
            "the_published_schema_is_current",
        ])
        .env("CRM_WRITE_SCHEMAS", "1")
        .current_dir(root())
        .status()
        .with_context(|| format!("running {cargo} test"))?;
    anyhow::ensure!(
        status.success(),
        "writing the plugin manifest schema failed"
    );
    println!("wrote schemas/plugin-manifest.schema.json");
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
    // The integration tests run the `crm` binary as a child process and load
    // the plugins, so both are built first.
    plugins()?;
    cargo(&["build", "--bins"])?;
    let mut args = vec!["test"];
    args.extend(extra.iter().map(String::as_str));
    cargo(&args)?;
    if extra.is_empty() {
        e2e(E2e::Tests)?;
    }
    Ok(())
}

/// What `e2e` runs against the served console.
enum E2e {
    /// The end-to-end tests, on a demo store of their own.
    Tests,
    /// The time-to-first-render benchmark, on a store given.
    Bench { store: PathBuf, runs: u32 },
}

/// The Chromium the console is tested in: `CHROMIUM`, else Debian's.
fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    path.exists().then_some(path)
}

/// Runs the console's browser tests (tests/e2e, Playwright driving headless
/// Chromium) against `crm serve` on a loopback port.
fn e2e(what: E2e) -> Result<()> {
    let root = root();
    let Some(chromium) = chromium() else {
        let hint =
            "install Chromium (Debian: apt-get install chromium) or set CHROMIUM to its path";
        if std::env::var("CRM_E2E").as_deref() == Ok("required")
            || matches!(what, E2e::Bench { .. })
        {
            bail!("the console's browser tests need Chromium: {hint}");
        }
        eprintln!(
            "\n== the console's browser tests were NOT run: {hint}, then run `cargo xtask e2e`\n"
        );
        return Ok(());
    };
    let e2e = root.join("tests/e2e");
    if !e2e.join("node_modules/@playwright/test").exists() {
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
            .current_dir(&e2e)
            .status()
            .context("running npm (Node.js and npm are needed for the browser tests)")?;
        if !status.success() {
            bail!("npm ci in tests/e2e failed ({status})");
        }
    }
    // The tests reuse the debug build of `cargo xtask test`; the benchmark
    // measures the release build.
    let crm = match what {
        E2e::Tests => {
            cargo(&["build", "--bin", "crm"])?;
            root.join("target/debug/crm")
        }
        E2e::Bench { .. } => {
            cargo(&["build", "--release", "--bin", "crm"])?;
            root.join("target/release/crm")
        }
    };
    let out = root.join("target/e2e");
    let work = out.join("work");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let mut users = Vec::new();
    let store = match &what {
        E2e::Tests => {
            // The demo store: generated data, the tobacco-retail plugin and
            // its segments.
            let status = Command::new(&crm)
                .args(["demo", "--customers", "2000", "--no-serve", "--dir"])
                .arg(&work)
                .stdout(std::process::Stdio::null())
                .status()?;
            if !status.success() {
                bail!("crm demo failed ({status})");
            }
            let store = work.join("store-retail");
            for role in ["admin", "agent", "viewer", "analyst"] {
                let name = format!("e2e-{role}");
                let password = format!("{name}-password");
                if !crm_user(&crm, &store, "create", &name, role, &password)? {
                    bail!("crm user create {name} failed");
                }
                users.push((role, name, password));
            }
            store
        }
        E2e::Bench { store, .. } => {
            // The benchmark signs in as user `bench`, made (or its password
            // set) in the store given: only the store's users change.
            if !crm_user(&crm, store, "password", "bench", "viewer", "bench-password")?
                && !crm_user(&crm, store, "create", "bench", "viewer", "bench-password")?
            {
                bail!("making the benchmark's user failed");
            }
            users.push(("viewer", "bench".into(), "bench-password".into()));
            store.clone()
        }
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let addr = format!("127.0.0.1:{port}");
    let log = std::fs::File::create(out.join("server.log"))?;
    let mut server = Command::new(&crm)
        .args(["serve", "--addr", &addr, "--db"])
        .arg(&store)
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("starting crm serve")?;
    let result = (|| -> Result<()> {
        let started = std::time::Instant::now();
        while std::net::TcpStream::connect(&addr).is_err() {
            if started.elapsed() > std::time::Duration::from_secs(300) {
                bail!("crm serve did not listen on {addr} (see target/e2e/server.log)");
            }
            if let Some(status) = server.try_wait()? {
                bail!("crm serve stopped ({status}; see target/e2e/server.log)");
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let mut command = Command::new("node");
        match &what {
            E2e::Tests => {
                command.args(["node_modules/@playwright/test/cli.js", "test"]);
            }
            E2e::Bench { runs, .. } => {
                command.args(["bench.mjs", &runs.to_string()]);
            }
        }
        command
            .current_dir(&e2e)
            .env("CRM_URL", format!("http://{addr}"))
            .env("CRM_E2E_OUT", &out)
            .env("CRM_E2E_DATA", &work)
            .env("CHROMIUM", &chromium);
        for (role, name, password) in &users {
            command
                .env(format!("CRM_{}_USER", role.to_uppercase()), name)
                .env(format!("CRM_{}_PASSWORD", role.to_uppercase()), password);
        }
        let status = command.status().context("running node")?;
        if !status.success() {
            bail!(
                "the console's browser tests failed (screenshots, traces and the server log in target/e2e/)"
            );
        }
        Ok(())
    })();
    let _ = Command::new("kill").arg(server.id().to_string()).status();
    let _ = server.wait();
    result
}

/// Runs `crm user ACTION NAME --role ROLE` on `store` with `password` on
/// its standard input; whether it succeeded.
fn crm_user(
    crm: &Path,
    store: &Path,
    action: &str,
    name: &str,
    role: &str,
    password: &str,
) -> Result<bool> {
    use std::io::Write as _;
    let mut child = Command::new(crm)
        .args([
            "user",
            action,
            name,
            "--role",
            role,
            "--password-stdin",
            "--db",
        ])
        .arg(store)
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .context("running crm user")?;
    writeln!(child.stdin.take().context("stdin")?, "{password}")?;
    Ok(child.wait()?.success())
}

/// `cargo xtask bench-console --store DIR [--runs N]`.
fn bench_console(args: &[String]) -> Result<()> {
    let mut store = None;
    let mut runs = 10;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--store" => store = Some(PathBuf::from(it.next().context("--store needs a path")?)),
            "--runs" => runs = it.next().context("--runs needs a number")?.parse()?,
            other => bail!("unknown argument {other}"),
        }
    }
    let store = store.context("give the store to measure: --store DIR (cargo xtask bench-import makes target/bench/store-1000000)")?;
    e2e(E2e::Bench { store, runs })
}

/// The import benchmark of docs/BENCHMARKS.md: for each size, the reference
/// data set (from ../shared/refdata/gen.py when present, else `crm
/// generate`), imported by a release build into a new store; then the store
/// size, the reopen time, a second import of the same files, and DuckDB's
/// load time of the same files when the duckdb Python package is installed.
fn bench_sizes(args: &[String]) -> Result<Vec<u32>> {
    let mut sizes: Vec<u32> = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--customers" => sizes.push(
                it.next()
                    .context("--customers needs a number")?
                    .replace('_', "")
                    .parse()?,
            ),
            other => bail!("unknown argument {other}"),
        }
    }
    if sizes.is_empty() {
        sizes = vec![100_000, 1_000_000];
    }
    Ok(sizes)
}

fn bench_import(args: &[String]) -> Result<()> {
    let sizes = bench_sizes(args)?;
    let root = root();
    cargo(&["build", "--release", "--bin", "crm"])?;
    let crm = root.join("target/release/crm");
    let bench = root.join("target/bench");
    std::fs::create_dir_all(&bench)?;
    let gen_py = root.join("../shared/refdata/gen.py");
    let reference_sql = root.join("../shared/refdata/reference.sql");
    let mut rows = Vec::new();
    for n in sizes {
        let data = bench.join(format!("retail-{n}"));
        if !data.join("interactions.csv").exists() {
            let n_text = n.to_string();
            let data_text = data.display().to_string();
            let options = [
                "--industry",
                "retail",
                "--customers",
                &n_text,
                "--seed",
                "7",
                "--out",
                &data_text,
            ];
            if gen_py.exists() {
                let script = gen_py.display().to_string();
                run(
                    "python3",
                    &[&[script.as_str()][..], &options, &["--quiet"]].concat(),
                )?;
            } else {
                run(
                    &crm.display().to_string(),
                    &[&["generate"][..], &options].concat(),
                )?;
            }
        }
        let csv_bytes = dir_size(&data)?;
        let store = bench.join(format!("store-{n}"));
        let _ = std::fs::remove_dir_all(&store);
        let store_arg = store.to_str().context("a UTF-8 path")?;
        let import = [
            "import",
            "--db",
            store_arg,
            data.to_str().context("a UTF-8 path")?,
        ];
        let started = std::time::Instant::now();
        let run = Command::new(&crm).args(import).output()?;
        let wall = started.elapsed().as_secs_f64();
        if !run.status.success() {
            bail!(
                "crm import failed: {}",
                String::from_utf8_lossy(&run.stderr)
            );
        }
        let out = String::from_utf8_lossy(&run.stdout).into_owned();
        let summary = out.lines().last().unwrap_or_default().to_owned();
        // "imported N rows in S s (...)": the import's own time; the
        // analysis snapshot is refreshed after it, by a process of its own.
        let secs: f64 = summary
            .split(" rows in ")
            .nth(1)
            .and_then(|s| s.split('s').next())
            .and_then(|s| s.parse().ok())
            .unwrap_or(wall);
        let snapshot = wall - secs;
        let peak = summary
            .split("peak memory ")
            .nth(1)
            .and_then(|s| s.split(')').next())
            .unwrap_or("?")
            .to_owned();
        let lines: u64 = summary
            .split_whitespace()
            .nth(1)
            .unwrap_or("0")
            .replace(',', "")
            .parse()
            .unwrap_or(0);
        // The records only: the analysis checkpoint beside them is reported apart.
        let checkpoint_bytes = std::fs::metadata(store.join(CHECKPOINT)).map_or(0, |m| m.len());
        let store_bytes = dir_size(&store)? - checkpoint_bytes;
        let mut reopen: Vec<f64> = (0..3)
            .map(|_| timed(&crm, &["stats", "--db", store_arg]).map(|(s, _)| s))
            .collect::<Result<_>>()?;
        reopen.sort_by(f64::total_cmp);
        let (again, _) = timed(&crm, &import)?;
        let duckdb = duckdb_load(&reference_sql, &data);
        rows.push(format!(
            "| {n} | {lines} | {secs:.1} s | {:.0} | {peak} | {:.2} GB | {:.2} GB ({:.2}x) | {:.2} s | {again:.1} s | {} | {snapshot:.1} s, {:.2} GB |",
            lines as f64 / secs,
            csv_bytes as f64 / 1e9,
            store_bytes as f64 / 1e9,
            store_bytes as f64 / csv_bytes as f64,
            reopen[1],
            duckdb.map_or_else(|| "not installed".to_owned(), |d| format!("{d:.2} s ({:.1}x)", secs / d)),
            checkpoint_bytes as f64 / 1e9,
        ));
    }
    println!(
        "\n| customers | rows | import | rows/s | peak memory | CSV | store on disk | reopen | import again (unchanged) | DuckDB load | then analysis snapshot |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for row in rows {
        println!("{row}");
    }
    Ok(())
}

fn run(program: &str, args: &[&str]) -> Result<()> {
    let status = Command::new(program)
        .args(args)
        .status()
        .with_context(|| format!("running {program}"))?;
    if !status.success() {
        bail!("{program} {} failed ({status})", args.join(" "));
    }
    Ok(())
}

/// Wall time and stdout of a command that must succeed.
fn timed(program: &Path, args: &[&str]) -> Result<(f64, String)> {
    let started = std::time::Instant::now();
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("running {}", program.display()))?;
    let secs = started.elapsed().as_secs_f64();
    if !out.status.success() {
        bail!(
            "{} {} failed: {}",
            program.display(),
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok((secs, String::from_utf8_lossy(&out.stdout).into_owned()))
}

fn dir_size(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            dir_size(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}

/// DuckDB's time to load the five files into native tables (the set-up of
/// reference.sql), median of three, with 2 threads; `None` without DuckDB.
fn duckdb_load(reference_sql: &Path, data: &Path) -> Option<f64> {
    if !reference_sql.exists() {
        return None;
    }
    let script = r#"
import duckdb, re, sys, time
sql = open(sys.argv[1]).read()
setup = sql[:re.search(r'^-- name:', sql, re.M).start()]
times = []
for _ in range(3):
    con = duckdb.connect(':memory:')
    con.execute('SET threads = 2')
    con.execute('SET enable_progress_bar = false')
    con.execute('SET VARIABLE data_dir = ?', [sys.argv[2]])
    t = time.perf_counter()
    for statement in con.extract_statements(setup):
        con.execute(statement)
    times.append(time.perf_counter() - t)
    con.close()
print(sorted(times)[1])
"#;
    let out = Command::new("python3")
        .args(["-c", script, reference_sql.to_str()?, data.to_str()?])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()?
        .trim()
        .parse()
        .ok()
}

/// The analysis benchmark of docs/BENCHMARKS.md: on the same data set,
/// every analysis here (store imported, snapshot loaded; each analysis
/// alone, computing all it needs; three runs, medians) and in DuckDB
/// (run_reference.py: tables loaded, three runs, medians), with their
/// ratio; all analyses together; the snapshot's memory and the time from
/// starting `crm` to the first answer.
fn bench_analyses(args: &[String]) -> Result<()> {
    let sizes = bench_sizes(args)?;
    let root = root();
    cargo(&["build", "--release", "--bin", "crm"])?;
    let crm = root.join("target/release/crm");
    let bench = root.join("target/bench");
    let run_reference = root.join("../shared/refdata/run_reference.py");
    let gen_py = root.join("../shared/refdata/gen.py");
    if !run_reference.exists() {
        bail!(
            "this benchmark compares with DuckDB and needs ../shared/refdata (and `pip install duckdb`)"
        );
    }
    for n in sizes {
        let data = bench.join(format!("retail-{n}"));
        if !data.join("interactions.csv").exists() {
            let (n_text, data_text, script) = (
                n.to_string(),
                data.display().to_string(),
                gen_py.display().to_string(),
            );
            run(
                "python3",
                &[
                    &script,
                    "--industry",
                    "retail",
                    "--customers",
                    &n_text,
                    "--seed",
                    "7",
                    "--out",
                    &data_text,
                    "--quiet",
                ],
            )?;
        }
        let store = bench.join(format!("store-{n}"));
        let store_arg = store.to_str().context("a UTF-8 path")?;
        if !store.join(CHECKPOINT).exists() {
            let _ = std::fs::remove_dir_all(&store);
            timed(
                &crm,
                &[
                    "import",
                    "-q",
                    "--db",
                    store_arg,
                    data.to_str().context("a UTF-8 path")?,
                ],
            )?;
        }
        // Start to first answer: a new process opens the store, reads the
        // checkpoint and answers one analysis.
        let mut first: Vec<f64> = (0..3)
            .map(|_| {
                timed(
                    &crm,
                    &[
                        "analyze",
                        "--db",
                        store_arg,
                        "dataset_summary",
                        "--format",
                        "json",
                    ],
                )
                .map(|(s, _)| s)
            })
            .collect::<Result<_>>()?;
        first.sort_by(f64::total_cmp);
        let mut ours: std::collections::BTreeMap<String, Vec<f64>> = Default::default();
        let mut readiness = String::new();
        for _ in 0..3 {
            let out = Command::new(&crm)
                .args([
                    "analyze",
                    "--db",
                    store_arg,
                    "--all",
                    "--timings",
                    "--format",
                    "json",
                ])
                .output()?;
            if !out.status.success() {
                bail!(
                    "crm analyze failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            for line in String::from_utf8_lossy(&out.stderr).lines() {
                if line.starts_with("analysis snapshot:") {
                    readiness = line.to_owned();
                    continue;
                }
                let mut parts = line.split_whitespace();
                if let (Some(name), Some(secs)) = (parts.next(), parts.next())
                    && let Ok(secs) = secs.trim_end_matches('s').parse::<f64>()
                {
                    ours.entry(name.to_owned()).or_default().push(secs);
                }
            }
        }
        let times = bench.join(format!("duckdb-times-{n}.json"));
        let out = Command::new("python3")
            .args([
                run_reference.to_str().context("a UTF-8 path")?,
                "--data",
                data.to_str().context("a UTF-8 path")?,
                "--repeat",
                "3",
                "--threads",
                "2",
                "--quiet",
                "--times-out",
                times.to_str().context("a UTF-8 path")?,
            ])
            .output()?;
        if !out.status.success() {
            bail!(
                "run_reference.py failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let duck: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&times)?)?;
        let median = |v: &Vec<f64>| {
            let mut v = v.clone();
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        println!("\n{n} customers ({readiness})");
        println!(
            "start to first answer (new process, median of 3): {:.2} s",
            first[1]
        );
        println!("\n| analysis | crm | DuckDB | crm / DuckDB |");
        println!("|---|---|---|---|");
        let (mut total_ours, mut total_duck) = (0.0, 0.0);
        let together = ours.get("all_together").map(median).unwrap_or(f64::NAN);
        let names: Vec<String> = duck["analyses_s"]
            .as_object()
            .context("DuckDB times")?
            .keys()
            .cloned()
            .collect();
        for name in names {
            let d = duck["analyses_s"][&name].as_f64().unwrap_or(0.0);
            let o = ours.get(&name).map(median).unwrap_or(f64::NAN);
            total_ours += o;
            total_duck += d;
            println!(
                "| {name} | {:.2} ms | {:.1} ms | {:.3} |",
                o * 1000.0,
                d * 1000.0,
                o / d
            );
        }
        println!(
            "| **all, each alone** | **{:.1} ms** | **{:.1} ms** | **{:.3}** |",
            total_ours * 1000.0,
            total_duck * 1000.0,
            total_ours / total_duck
        );
        println!(
            "| **all together (`--all`: shared facts, both cores)** | **{:.1} ms** | | **{:.3}** |",
            together * 1000.0,
            together / total_duck
        );
        println!(
            "DuckDB load of the same files: {:.2} s",
            duck["load_s"].as_f64().unwrap_or(0.0)
        );
    }
    Ok(())
}

const CHECKPOINT: &str = "crm-analysis.snapshot";

/// The plugin crates: (directory, package name).
const PLUGINS: &[(&str, &str)] = &[
    ("plugins/tobacco-retail", "tobacco-retail"),
    ("plugins/bank-cross-sell", "bank-cross-sell"),
    ("tests/plugins/fixture", "plugin-fixture"),
    ("tests/plugins/minimal", "plugin-minimal"),
    ("tests/plugins/sockets", "plugin-sockets"),
];

/// Builds every plugin as a wasm32-wasip2 component (installing the target
/// when it is missing) and writes a package per plugin to
/// `target/plugins/<directory name>/`: its plugin.toml, schemas and
/// component (`plugin.wasm`), ready for `crm plugin install`.
fn plugins() -> Result<()> {
    let root = root();
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output();
    let has_target = installed.as_ref().is_ok_and(|o| {
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .any(|l| l.trim() == "wasm32-wasip2")
    });
    if !has_target {
        run("rustup", &["target", "add", "wasm32-wasip2"])?;
    }
    let mut args = vec![
        "build",
        "--quiet",
        "--profile",
        "plugin",
        "--target",
        "wasm32-wasip2",
    ];
    for (_, package) in PLUGINS {
        args.extend(["--package", package]);
    }
    cargo(&args)?;
    for (dir, package) in PLUGINS {
        let source = root.join(dir);
        let name = Path::new(dir).file_name().context("a plugin directory")?;
        let target = root.join("target/plugins").join(name);
        let _ = std::fs::remove_dir_all(&target);
        std::fs::create_dir_all(&target)?;
        for entry in std::fs::read_dir(&source)? {
            let path = entry?.path();
            let file = path
                .file_name()
                .context("a file name")?
                .to_string_lossy()
                .into_owned();
            if file == "plugin.toml" || file.ends_with(".schema.json") || file == "README.md" {
                std::fs::copy(&path, target.join(&file))?;
            }
            // The segments shipped with the plugin.
            if file == "segments" && path.is_dir() {
                std::fs::create_dir_all(target.join("segments"))?;
                for script in std::fs::read_dir(&path)? {
                    let script = script?.path();
                    if script.extension().is_some_and(|x| x == "rhai") {
                        std::fs::copy(
                            &script,
                            target
                                .join("segments")
                                .join(script.file_name().context("a file name")?),
                        )?;
                    }
                }
            }
        }
        let wasm = root
            .join("target/wasm32-wasip2/plugin")
            .join(format!("{}.wasm", package.replace('-', "_")));
        std::fs::copy(&wasm, target.join("plugin.wasm"))
            .with_context(|| format!("copying {}", wasm.display()))?;
    }
    println!("plugins built into target/plugins/");
    Ok(())
}
