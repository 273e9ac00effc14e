//! The `crm` command as a user runs it: output, errors and exit codes.

use generate::Industry;

use crate::support::{copy_dataset, crm, dataset};

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn help_lists_every_command() {
    let out = crm(&["--help"]);
    assert!(out.status.success());
    for command in ["import", "export", "generate", "get", "stats", "demo"] {
        assert!(
            stdout(&out).contains(command),
            "{command} is missing from --help"
        );
    }
    let out = crm(&["import", "--help"]);
    assert!(stdout(&out).contains("--skip-invalid"));
    let out = crm(&["import"]);
    assert_eq!(out.status.code(), Some(2), "a usage error exits with 2");
}

#[test]
fn import_get_stats_and_export_from_the_command_line() {
    let data = dataset(Industry::Banking, 400, 7);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("store");
    let (db, data_dir) = (db.to_str().unwrap(), data.to_str().unwrap());

    let out = crm(&["import", "--db", db, data_dir]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("customers            400 rows:        400 added"),
        "{}",
        stdout(&out)
    );
    // Not a terminal: plain progress lines, no bar.
    assert!(
        stderr(&out).contains("importing transactions.csv: done"),
        "{}",
        stderr(&out)
    );

    let out = crm(&["get", "--db", db, "customer", "C0000001"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json["customer_id"], "C0000001");
    assert!(json["attributes"]["credit_score"].is_number(), "{json}");

    let out = crm(&["get", "--db", db, "customer", "C9999999"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).starts_with("error: no customer 'C9999999' in the store at "),
        "{}",
        stderr(&out)
    );

    let out = crm(&["get", "--db", db, "shop", "S1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("unknown kind 'shop'"),
        "{}",
        stderr(&out)
    );

    let out = crm(&["stats", "--db", db]);
    assert!(out.status.success());
    assert!(
        stdout(&out).contains("customers              400"),
        "{}",
        stdout(&out)
    );
    assert!(stdout(&out).contains("size on disk"));

    let exported = dir.path().join("export");
    let out = crm(&["export", "--db", db, exported.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    crate::support::assert_same_files(&data, &exported);
}

#[test]
fn a_store_that_does_not_exist_is_not_created_by_a_read() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("typo");
    let out = crm(&["stats", "--db", db.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).starts_with("error: no store at "),
        "{}",
        stderr(&out)
    );
    assert!(!db.exists());
}

#[test]
fn a_refused_import_prints_every_problem_and_exits_1() {
    let data = copy_dataset(&dataset(Industry::Retail, 200, 7));
    let path = data.path().join("transactions.csv");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replacen(",store,", ",shop,", 2);
    std::fs::write(&path, text).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("store");
    let out = crm(&[
        "import",
        "-q",
        "--db",
        db.to_str().unwrap(),
        data.path().to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.starts_with(
            "error: the import was refused and nothing was changed: 2 problems in 2 rows"
        ),
        "{err}"
    );
    assert!(err.contains("transactions.csv:2: channel: unknown sales channel 'shop' (expected store, online, phone or field)"), "{err}");
    assert!(err.contains("--skip-invalid"), "{err}");
}

#[test]
fn the_generator_is_deterministic_per_seed() {
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    for (dir, seed) in dirs.iter().zip(["5", "5", "6"]) {
        let out = crm(&[
            "generate",
            "--industry",
            "banking",
            "--customers",
            "300",
            "--seed",
            seed,
            "--out",
            dir.path().to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    crate::support::assert_same_files(dirs[0].path(), dirs[1].path());
    let a = std::fs::read(dirs[0].path().join("transactions.csv")).unwrap();
    let c = std::fs::read(dirs[2].path().join("transactions.csv")).unwrap();
    assert_ne!(a, c, "another seed gives other data");
}

#[test]
fn put_writes_json_records_and_names_the_bad_line() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("store");
    let customer = r#"{"customer_id":"C1","name":"Taylor, Zoë","gender":"F","birth_date":"1980-02-29","region":"South","city":"Córdoba","channel":"referral","joined_at":"2019-05-01","tier":"gold","attributes":{"store_type":"kiosk","monthly_quota":60}}"#;
    let input = format!(
        "{customer}\n{customer}\n{}\n",
        customer.replace("\"tier\"", "\"tear\"")
    );
    let mut child = std::process::Command::new(crate::support::crm_bin())
        .args(["put", "--db", db.to_str().unwrap(), "customer"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(stdout(&out), "ok C1 added\nok C1 unchanged\n");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).starts_with("error: stdin line 3: unknown field `tear`"),
        "{}",
        stderr(&out)
    );

    let out = crm(&["get", "--db", db.to_str().unwrap(), "customer", "C1"]);
    let json: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(json["name"], "Taylor, Zoë");
    assert_eq!(json["attributes"]["monthly_quota"], 60);
}

/// Every write that `crm put` acknowledged is in the store after the
/// process is killed with SIGKILL at an arbitrary moment.
#[test]
fn acknowledged_writes_survive_a_kill() {
    use std::io::{BufRead, BufReader, Write};
    let data = dataset(Industry::Retail, 50, 7);
    for kill_after in [1, 37, 150] {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("store");
        let out = crm(&[
            "import",
            "-q",
            "--db",
            db.to_str().unwrap(),
            data.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        let mut child = std::process::Command::new(crate::support::crm_bin())
            .args(["put", "--db", db.to_str().unwrap(), "transaction"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let writer = std::thread::spawn(move || {
            for i in 0..10_000 {
                let line = format!(
                    r#"{{"txn_id":"X{i:06}","customer_id":"C{:07}","ts":"2025-06-01T10:00:00Z","sku":"P0001","quantity":1,"amount":12.5,"cost":10,"channel":"online","region":"North"}}"#,
                    1 + i % 50
                );
                if writeln!(stdin, "{line}").is_err() {
                    break;
                }
            }
        });
        let mut acked = Vec::new();
        for line in BufReader::new(child.stdout.take().unwrap()).lines() {
            let line = line.unwrap();
            acked.push(line.split(' ').nth(1).unwrap().to_owned());
            if acked.len() == kill_after {
                child.kill().unwrap();
                break;
            }
        }
        child.wait().unwrap();
        let _ = writer.join();
        crate::support::assert_acknowledged_kept(&db, model::EntityKind::Transaction, &acked);
    }
}
