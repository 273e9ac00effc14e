//! Bulk import and export on generated data sets.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use generate::Industry;
use model::{EntityKind, Record};

use crate::support::{
    assert_same_files, contents, copy_dataset, crm_bin, dataset, import, open_store,
};

/// The rows of a CSV file as (line text, fields), read independently of
/// the import code.
fn rows(path: &Path) -> Vec<(String, Vec<String>)> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut reader = csv::ReaderBuilder::new().from_reader(text.as_bytes());
    let lines: Vec<&str> = text.lines().skip(1).collect();
    reader
        .records()
        .zip(lines)
        .map(|(r, line)| {
            (
                format!("{line}\n"),
                r.unwrap().iter().map(str::to_owned).collect(),
            )
        })
        .collect()
}

#[test]
fn every_count_and_sampled_record_equals_the_csv() {
    let data = dataset(Industry::Retail, 2000, 7);
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let report = import(&*store, &data).unwrap();
    for kind in EntityKind::ALL {
        let rows = rows(&data.join(kind.file_name()));
        assert!(!rows.is_empty(), "{kind}: the generator wrote no rows");
        assert_eq!(store.count(kind).unwrap(), rows.len() as u64, "{kind}");
        let file = report.files.iter().find(|f| f.kind == kind).unwrap();
        assert_eq!(
            (file.rows, file.added),
            (rows.len() as u64, rows.len() as u64),
            "{kind}"
        );
        for (line, fields) in rows.iter().step_by(37) {
            let record = store
                .get(kind, &fields[0])
                .unwrap()
                .unwrap_or_else(|| panic!("{kind} {} is missing", fields[0]));
            let mut written = Vec::new();
            transfer::format::write_record(&record, &mut written);
            assert_eq!(String::from_utf8(written).unwrap(), *line);
            // A few fields checked one by one, against the CSV parsed by the csv crate.
            match &record {
                Record::Customer(c) => {
                    assert_eq!(c.name, fields[1]);
                    assert_eq!(
                        c.birth_date.map(|d| d.to_string()).unwrap_or_default(),
                        fields[3]
                    );
                    assert_eq!(c.attributes.as_str(), fields[9]);
                }
                Record::Transaction(t) => {
                    assert_eq!(t.ts.to_string(), fields[2]);
                    assert_eq!(t.amount.to_string(), fields[5]);
                }
                Record::Interaction(i) => {
                    assert_eq!(i.kind.as_str(), fields[3]);
                    assert_eq!(
                        i.rating.map(|r| r.to_string()).unwrap_or_default(),
                        fields[10]
                    );
                }
                _ => {}
            }
        }
    }
}

#[test]
fn export_gives_back_the_imported_files_byte_for_byte_and_round_trips() {
    for industry in [Industry::Retail, Industry::Banking] {
        let data = dataset(industry, 1500, 7);
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let store = open_store(a.path());
        import(&*store, &data).unwrap();
        let exported = tempfile::tempdir().unwrap();
        transfer::export(&*store, exported.path(), &transfer::Silent).unwrap();
        assert_same_files(&data, exported.path());

        // import -> export -> import: the second store holds the same records.
        let again = open_store(b.path());
        import(&*again, exported.path()).unwrap();
        assert_eq!(contents(&*again), contents(&*store));
    }
}

#[test]
fn importing_the_same_files_again_changes_nothing() {
    let data = dataset(Industry::Banking, 1000, 3);
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    import(&*store, &data).unwrap();
    let before = contents(&*store);
    let report = import(&*store, &data).unwrap();
    for file in &report.files {
        assert_eq!(
            (file.added, file.updated, file.unchanged),
            (0, 0, file.rows),
            "{:?}",
            file.kind
        );
    }
    assert_eq!(contents(&*store), before);
}

#[test]
fn a_reopened_store_holds_everything() {
    let data = dataset(Industry::Retail, 1000, 5);
    let dir = tempfile::tempdir().unwrap();
    let before = {
        let store = open_store(dir.path());
        import(&*store, &data).unwrap();
        contents(&*store)
    };
    let store = open_store(dir.path());
    assert_eq!(contents(&*store), before);
}

/// A store with seed 7's records, then an import of seed 8's files (the
/// same ids, other values) with one defect: the import is refused, with the
/// problems listed, and the store is unchanged. The error message.
fn refused(defect: impl FnOnce(&Path)) -> String {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    import(&*store, &dataset(Industry::Retail, 300, 7)).unwrap();
    let before = contents(&*store);
    let bad = copy_dataset(&dataset(Industry::Retail, 300, 8));
    defect(bad.path());
    let err = import(&*store, bad.path()).expect_err("the import was accepted");
    assert!(
        matches!(err, transfer::ImportError::Invalid { .. }),
        "{err}"
    );
    assert_eq!(
        contents(&*store),
        before,
        "a refused import changed the store"
    );
    err.to_string()
        .replace(&format!("{}/", bad.path().display()), "")
}

/// Replaces line `n` (1 = header) of a file with what `edit` makes of it.
fn edit_line(dir: &Path, file: &str, n: usize, edit: impl FnOnce(&str) -> String) {
    let path = dir.join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    lines[n - 1] = edit(&lines[n - 1]);
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
}

/// Replaces field `i` (0-based) of a simple CSV line without quotes before it.
fn with_field(line: &str, i: usize, value: &str) -> String {
    let mut fields: Vec<&str> = line.splitn(i + 2, ',').collect();
    fields[i] = value;
    fields.join(",")
}

#[test]
fn broken_quoting_is_refused_at_its_line() {
    let err = refused(|dir| {
        edit_line(dir, "customers.csv", 5, |l| {
            with_field(l, 1, "\"Unclosed name")
        })
    });
    assert!(err.contains("customers.csv:5: has "), "{err}");
    assert!(err.contains("is a quote left open"), "{err}");
}

#[test]
fn a_value_of_the_wrong_type_is_refused() {
    let err = refused(|dir| edit_line(dir, "transactions.csv", 4, |l| with_field(l, 4, "two")));
    assert!(
        err.contains("transactions.csv:4: quantity: 'two' is not a whole number of units"),
        "{err}"
    );
}

#[test]
fn a_transaction_of_an_unknown_customer_is_refused() {
    let err =
        refused(|dir| edit_line(dir, "transactions.csv", 3, |l| with_field(l, 1, "C9999999")));
    assert!(
        err.contains("transactions.csv:3: customer_id: no customer 'C9999999' in the store or in customers.csv"),
        "{err}"
    );
}

#[test]
fn an_id_repeated_within_a_file_is_refused() {
    let err = refused(|dir| {
        let path = dir.join("customers.csv");
        let text = std::fs::read_to_string(&path).unwrap();
        let second = text.lines().nth(1).unwrap().to_owned();
        std::fs::write(&path, format!("{text}{second}\n")).unwrap();
    });
    assert!(
        err.contains("customers.csv:302: customer_id: 'C0000001' appears again (first on line 2)"),
        "{err}"
    );

    // Line files find repeats at the end, in bounded memory.
    let err = refused(|dir| {
        let path = dir.join("transactions.csv");
        let text = std::fs::read_to_string(&path).unwrap();
        let n = text.lines().count();
        let third = text.lines().nth(2).unwrap().to_owned();
        std::fs::write(&path, format!("{text}{third}\n")).unwrap();
        assert!(n > 100);
    });
    assert!(
        err.contains("txn_id: 'T0000000002' appears again (first on line 3)"),
        "{err}"
    );
}

#[test]
fn a_missing_required_column_is_refused() {
    let err = refused(|dir| {
        let path = dir.join("campaigns.csv");
        let text = std::fs::read_to_string(&path).unwrap();
        // Drop the last column (cost) from every line.
        let cut: Vec<String> = text
            .lines()
            .map(|l| l[..l.rfind(',').unwrap()].to_owned())
            .collect();
        std::fs::write(&path, cut.join("\n") + "\n").unwrap();
    });
    assert!(
        err.contains("campaigns.csv:1: missing column 'cost'"),
        "{err}"
    );
}

#[test]
fn an_empty_file_and_a_header_without_rows_are_refused() {
    let err = refused(|dir| std::fs::write(dir.join("campaigns.csv"), "").unwrap());
    assert!(
        err.contains("campaigns.csv:1: the file is empty (expected a header row)"),
        "{err}"
    );
    let err = refused(|dir| {
        std::fs::write(
            dir.join("products.csv"),
            "sku,name,category,brand,unit_price,unit_cost,attributes\n",
        )
        .unwrap()
    });
    assert!(
        err.contains("products.csv:1: the file has a header but no rows"),
        "{err}"
    );
}

#[test]
fn invalid_utf8_is_refused_naming_the_column() {
    let err = refused(|dir| {
        let path = dir.join("customers.csv");
        let mut bytes = std::fs::read(&path).unwrap();
        // The first byte of line 3's name.
        let line3 = bytes
            .split(|&b| b == b'\n')
            .take(2)
            .map(|l| l.len() + 1)
            .sum::<usize>();
        let name = line3 + "C0000002,".len();
        bytes[name] = 0xff;
        std::fs::write(&path, bytes).unwrap();
    });
    assert!(
        err.contains("customers.csv:3: name: is not valid UTF-8 (byte 0xff at offset 0)"),
        "{err}"
    );
}

#[test]
fn a_day_that_does_not_exist_is_refused() {
    let err = refused(|dir| {
        edit_line(dir, "customers.csv", 6, |l| {
            // joined_at is the 8th field; fields before it hold no quoted commas
            // only when the name has none, so edit from the end instead.
            let (head, attrs) = l.split_at(l.find(",\"{").unwrap());
            let mut fields: Vec<&str> = head.rsplitn(3, ',').collect();
            fields[1] = "2025-02-30";
            fields.reverse();
            format!("{}{attrs}", fields.join(","))
        })
    });
    assert!(
        err.contains(
            "customers.csv:6: joined_at: invalid date '2025-02-30': February 2025 has 28 days"
        ),
        "{err}"
    );
}

#[test]
fn a_negative_quantity_is_refused() {
    let err = refused(|dir| edit_line(dir, "transactions.csv", 7, |l| with_field(l, 4, "-3")));
    assert!(
        err.contains("transactions.csv:7: quantity: must be at least 1, got -3"),
        "{err}"
    );
}

#[test]
fn the_error_lists_the_first_hundred_problems_then_a_count() {
    let err = refused(|dir| {
        for n in 2..=152 {
            edit_line(dir, "transactions.csv", n, |l| with_field(l, 4, "0"));
        }
    });
    assert!(
        err.starts_with(
            "the import was refused and nothing was changed: 151 problems in 151 rows\n"
        ),
        "{err}"
    );
    assert_eq!(
        err.lines()
            .filter(|l| l.starts_with("transactions.csv:"))
            .count(),
        100,
        "{err}"
    );
    assert!(err.contains("\n... and 51 more\n"), "{err}");
}

#[test]
fn skip_invalid_imports_the_valid_rows_and_writes_the_rejected_ones() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path());
    let data = copy_dataset(&dataset(Industry::Retail, 300, 7));
    edit_line(data.path(), "transactions.csv", 3, |l| {
        with_field(l, 4, "-1")
    });
    edit_line(data.path(), "customers.csv", 2, |l| with_field(l, 2, "X"));
    let options = transfer::ImportOptions {
        skip_invalid: true,
        ..Default::default()
    };
    let report = transfer::import(&*store, data.path(), &options, &transfer::Silent).unwrap();
    let customers = report
        .files
        .iter()
        .find(|f| f.kind == EntityKind::Customer)
        .unwrap();
    assert_eq!((customers.added, customers.rejected), (299, 1));
    assert!(
        store
            .get(EntityKind::Customer, "C0000001")
            .unwrap()
            .is_none()
    );
    let txns = report
        .files
        .iter()
        .find(|f| f.kind == EntityKind::Transaction)
        .unwrap();
    // The bad line, and every line of the rejected customer C0000001.
    assert!(
        txns.rejected > 1 && txns.added == txns.rows - txns.rejected,
        "{txns:?}"
    );
    let rejected = std::fs::read_to_string(txns.rejected_file.as_ref().unwrap()).unwrap();
    let mut lines = rejected.lines();
    assert_eq!(
        lines.next(),
        Some("line,problems,txn_id,customer_id,ts,sku,quantity,amount,cost,channel,region")
    );
    let first = lines.next().unwrap();
    assert!(
        first.starts_with(
            "2,customer_id: no customer 'C0000001' in the store or in customers.csv,T0000000001,"
        ),
        "{first}"
    );
    let line3 = std::fs::read_to_string(data.path().join("transactions.csv"))
        .unwrap()
        .lines()
        .nth(2)
        .unwrap()
        .to_owned();
    assert_eq!(
        lines.next(),
        Some(format!("3,\"quantity: must be at least 1, got -1\",{line3}").as_str())
    );
    assert_eq!(store.count(EntityKind::Transaction).unwrap(), txns.added);
}

/// Kills a real `crm import` at several points with SIGKILL; the store
/// opens afterwards, and importing again completes to the same final state.
#[test]
fn an_import_killed_part_way_can_be_run_again_to_the_same_end() {
    let data = dataset(Industry::Retail, 12_000, 11);
    for (stage, delay_ms) in [
        ("importing customers.csv", 50),
        ("importing transactions.csv", 300),
        ("importing interactions.csv", 30),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("store");
        let mut child = Command::new(crm_bin())
            .args([
                "import",
                "--db",
                db.to_str().unwrap(),
                data.to_str().unwrap(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let mut reached = false;
        for line in stderr.lines() {
            if line.unwrap().starts_with(&format!("{stage} ...")) {
                reached = true;
                break;
            }
        }
        assert!(reached, "the import never reached {stage}");
        std::thread::sleep(Duration::from_millis(delay_ms));
        child.kill().unwrap(); // SIGKILL
        let status = child.wait().unwrap();
        assert!(
            !status.success(),
            "the import finished before it was killed ({stage})"
        );

        let store = open_store(&db);
        import(&*store, &data).unwrap();
        let exported = tempfile::tempdir().unwrap();
        transfer::export(&*store, exported.path(), &transfer::Silent).unwrap();
        assert_same_files(&data, exported.path());
    }
}
