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
