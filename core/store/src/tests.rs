use std::collections::BTreeMap;

use model::{
    Attributes, Customer, CustomerId, Date, EntityKind, Gender, Money, Product, Record,
    SalesChannel, Sku, Timestamp, Transaction, TxnId,
};
use proptest::prelude::*;

use crate::{Expect, Options, SledStore, Store, StoreError, UpsertCounts};

fn customer(id: &str) -> Customer {
    Customer {
        customer_id: CustomerId::parse(id).unwrap(),
        name: format!("Customer {id}"),
        gender: Gender::Unknown,
        birth_date: None,
        region: "North".into(),
        city: "Northfield".into(),
        channel: model::AcquisitionChannel::Store,
        joined_at: Date::parse("2020-01-01").unwrap(),
        tier: "gold".into(),
        attributes: Attributes::parse(r#"{"store_type":"kiosk"}"#).unwrap(),
    }
}

fn product(sku: &str) -> Product {
    Product {
        sku: Sku::parse(sku).unwrap(),
        name: "Golden Crane 20s".into(),
        category: "mid_cigarettes".into(),
        brand: "Golden Crane".into(),
        unit_price: Money::from_cents(6000),
        unit_cost: Money::from_cents(5000),
        attributes: Attributes::empty(),
    }
}

fn txn(id: &str, customer: &str, ts: i64, quantity: u32) -> Transaction {
    Transaction {
        txn_id: TxnId::parse(id).unwrap(),
        customer_id: CustomerId::parse(customer).unwrap(),
        ts: Timestamp::from_seconds(ts),
        sku: Sku::parse("P1").unwrap(),
        quantity,
        amount: Money::from_cents(1234 * quantity as i64),
        cost: Money::from_cents(1000),
        channel: SalesChannel::Online,
        region: "North".into(),
    }
}

fn open(dir: &std::path::Path) -> SledStore {
    SledStore::open(
        dir,
        &Options {
            cache_bytes: 8 << 20,
        },
    )
    .unwrap()
}

const CUSTOMERS: [&str; 3] = ["C1", "C10", "C2"];

fn seeded(dir: &std::path::Path) -> SledStore {
    let store = open(dir);
    let mut records: Vec<Record> = CUSTOMERS
        .iter()
        .map(|c| Record::Customer(customer(c)))
        .collect();
    records.push(Record::Product(product("P1")));
    store.upsert(records).unwrap();
    store
}

#[test]
fn records_are_upserted_by_id_with_counts() {
    let dir = tempfile::tempdir().unwrap();
    let store = seeded(dir.path());
    assert_eq!(store.count(EntityKind::Customer).unwrap(), 3);
    let mut changed = customer("C1");
    changed.tier = "platinum".into();
    let counts = store
        .upsert(vec![
            Record::Customer(changed.clone()),
            Record::Customer(customer("C2")),
        ])
        .unwrap();
    assert_eq!(
        counts,
        UpsertCounts {
            added: 0,
            updated: 1,
            unchanged: 1
        }
    );
    assert_eq!(
        store.get(EntityKind::Customer, "C1").unwrap(),
        Some(Record::Customer(changed))
    );
    let ids: Vec<String> = store
        .scan(EntityKind::Customer)
        .map(|r| r.unwrap().id().to_owned())
        .collect();
    assert_eq!(ids, ["C1", "C10", "C2"]);
}

#[test]
fn lines_need_their_customer_and_product() {
    let dir = tempfile::tempdir().unwrap();
    let store = seeded(dir.path());
    let err = store
        .upsert(vec![Record::Transaction(txn("T1", "C9", 0, 1))])
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "transaction T1: customer_id 'C9' does not exist"
    );
    assert_eq!(store.count(EntityKind::Transaction).unwrap(), 0);
}

#[test]
fn a_store_of_a_newer_format_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(seeded(dir.path()));
    {
        let config = sled::Config::new().path(dir.path());
        let db = crate::embedded::open_waiting(&config, dir.path()).unwrap();
        let meta = db.open_tree("meta").unwrap();
        meta.insert(b"format_version", &99u32.to_be_bytes())
            .unwrap();
        db.flush().unwrap();
    }
    let err = SledStore::open(dir.path(), &Options::default())
        .err()
        .unwrap();
    assert!(
        matches!(
            err,
            StoreError::NewerFormat {
                found: 99,
                supported: 1,
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("has format version 99, newer than version 1")
    );
}

#[test]
fn a_directory_of_other_files_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "mine").unwrap();
    let err = SledStore::open(dir.path(), &Options::default())
        .err()
        .unwrap();
    assert!(matches!(err, StoreError::NotAStore { .. }), "{err}");
    let file = dir.path().join("notes.txt");
    assert!(matches!(
        SledStore::open(&file, &Options::default()).err().unwrap(),
        StoreError::NotAStore { .. }
    ));
}

#[test]
fn a_store_in_use_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _store = seeded(dir.path());
    let err = SledStore::open(dir.path(), &Options::default())
        .err()
        .unwrap();
    assert!(matches!(err, StoreError::Locked { .. }), "{err}");
}

#[derive(Clone, Debug)]
enum Op {
    /// Upsert lines: (id number, customer number, ts, quantity).
    Upsert(Vec<(u16, usize, i64, u32)>),
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => prop::collection::vec((0u16..700, 0usize..3, -50i64..50, 1u32..3), 0..400).prop_map(Op::Upsert),
        1 => Just(Op::Reopen),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Lines upserted in random batches (new ids, updates, lines that move
    /// to another customer or time, blocks that split) read back exactly as
    /// a plain map of the same writes, before and after reopening.
    #[test]
    fn line_blocks_behave_like_a_map(ops in prop::collection::vec(op(), 1..8)) {
        let dir = tempfile::tempdir().unwrap();
        let mut store = seeded(dir.path());
        let mut model: BTreeMap<String, Transaction> = BTreeMap::new();
        for op in ops {
            match op {
                Op::Reopen => {
                    drop(store);
                    store = open(dir.path());
                }
                Op::Upsert(lines) => {
                    let lines: Vec<Transaction> = lines
                        .iter()
                        .map(|&(id, c, ts, q)| txn(&format!("T{id:04}"), CUSTOMERS[c], ts, q))
                        .collect();
                    let mut want = UpsertCounts::default();
                    let mut after = model.clone();
                    let mut last = BTreeMap::new();
                    for line in &lines {
                        last.insert(line.txn_id.as_str().to_owned(), line.clone());
                    }
                    for (id, line) in last {
                        match after.insert(id, line.clone()) {
                            None => want.added += 1,
                            Some(old) if old == line => want.unchanged += 1,
                            Some(_) => want.updated += 1,
                        }
                    }
                    let counts = store
                        .upsert(lines.into_iter().map(Record::Transaction).collect())
                        .unwrap();
                    prop_assert_eq!(counts, want);
                    model = after;
                }
            }
            prop_assert_eq!(store.count(EntityKind::Transaction).unwrap(), model.len() as u64);
            for (id, line) in &model {
                prop_assert_eq!(
                    store.get(EntityKind::Transaction, id).unwrap(),
                    Some(Record::Transaction(line.clone()))
                );
            }
            prop_assert_eq!(store.get(EntityKind::Transaction, "T9999").unwrap(), None);
            let mut want: Vec<&Transaction> = model.values().collect();
            want.sort_by(|a, b| {
                (a.customer_id.as_str(), a.ts, a.txn_id.as_str())
                    .cmp(&(b.customer_id.as_str(), b.ts, b.txn_id.as_str()))
            });
            let scanned: Vec<Transaction> = store
                .scan(EntityKind::Transaction)
                .map(|r| match r.unwrap() {
                    Record::Transaction(t) => t,
                    other => panic!("scan gave {other:?}"),
                })
                .collect();
            prop_assert_eq!(scanned.iter().collect::<Vec<_>>(), want.clone());
            for c in CUSTOMERS {
                let of = store.transactions_of(&CustomerId::parse(c).unwrap()).unwrap();
                let expected: Vec<&Transaction> =
                    want.iter().copied().filter(|t| t.customer_id.as_str() == c).collect();
                prop_assert_eq!(of.iter().collect::<Vec<_>>(), expected);
            }
        }
    }
}

#[test]
fn the_change_log_names_what_each_upsert_changed() {
    let dir = tempfile::tempdir().unwrap();
    let store = seeded(dir.path());
    assert_eq!(store.change_position(EntityKind::Transaction).unwrap(), 0);
    let lines = vec![
        txn("T1", "C2", 5, 1),
        txn("T2", "C1", 6, 1),
        txn("T3", "C2", 7, 1),
    ];
    store
        .upsert(lines.iter().cloned().map(Record::Transaction).collect())
        .unwrap();
    let changes = store.changes_since(EntityKind::Transaction, 0).unwrap();
    assert_eq!(
        changes,
        crate::Changes {
            ids: vec!["C1".into(), "C2".into()],
            position: 1
        }
    );

    // Nothing changed: no entry.
    store
        .upsert(lines.into_iter().map(Record::Transaction).collect())
        .unwrap();
    assert_eq!(store.change_position(EntityKind::Transaction).unwrap(), 1);

    // A line that moves names both customers.
    store
        .upsert(vec![Record::Transaction(txn("T1", "C10", 5, 1))])
        .unwrap();
    let changes = store.changes_since(EntityKind::Transaction, 1).unwrap();
    assert_eq!(
        changes,
        crate::Changes {
            ids: vec!["C10".into(), "C2".into()],
            position: 2
        }
    );

    let mut tier = customer("C1");
    tier.tier = "silver".into();
    store.upsert(vec![Record::Customer(tier)]).unwrap();
    let before = store.change_position(EntityKind::Customer).unwrap();
    assert_eq!(
        store
            .changes_since(EntityKind::Customer, before - 1)
            .unwrap()
            .ids,
        ["C1"]
    );

    store.forget_changes(EntityKind::Transaction, 1).unwrap();
    assert_eq!(
        store.changes_since(EntityKind::Transaction, 0).unwrap().ids,
        ["C10", "C2"]
    );
    store.forget_changes(EntityKind::Transaction, 2).unwrap();
    assert_eq!(
        store.changes_since(EntityKind::Transaction, 0).unwrap().ids,
        Vec::<String>::new()
    );
    assert_eq!(store.change_position(EntityKind::Transaction).unwrap(), 2);
}

#[test]
fn definitions_keep_their_history_and_refuse_stale_saves() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path(), &Options::default()).unwrap();
    let first = store
        .save_definition("segments", "gold", "{\"a\":1}", Expect::New)
        .unwrap();
    assert_eq!(first.revision, 1);
    let again = store.save_definition("segments", "gold", "{}", Expect::New);
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
    let second = store
        .save_definition("segments", "gold", "{\"a\":2}", Expect::Revision(1))
        .unwrap();
    assert_eq!(second.revision, 2);
    let stale = store.save_definition("segments", "gold", "{}", Expect::Revision(1));
    assert!(matches!(stale, Err(StoreError::Conflict(m)) if m.contains("revision 2")));
    store
        .save_definition("segments", "silver", "{}", Expect::Any)
        .unwrap();
    store
        .save_definition("views", "gold", "{}", Expect::Any)
        .unwrap();
    drop(store);
    let store = SledStore::open(dir.path(), &Options::default()).unwrap();
    let names: Vec<String> = store
        .definitions("segments")
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(names, ["gold", "silver"]);
    assert_eq!(
        store.definition("segments", "gold").unwrap().unwrap().body,
        "{\"a\":2}"
    );
    assert!(
        store
            .delete_definition("segments", "gold", Expect::Any)
            .unwrap()
    );
    assert!(store.definition("segments", "gold").unwrap().is_none());
    assert_eq!(
        store.definition_history("segments", "gold").unwrap().len(),
        2
    );
    // A new definition of the name continues the numbering.
    let third = store
        .save_definition("segments", "gold", "{}", Expect::New)
        .unwrap();
    assert_eq!(third.revision, 3);
    assert!(
        !store
            .delete_definition("segments", "nothing", Expect::Any)
            .unwrap()
    );
}

#[test]
fn writes_gathered_in_one_call_each_get_their_own_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let store = seeded(dir.path());
    let position = store.change_position(EntityKind::Customer).unwrap();
    let write = |record: Record, expect: Expect, who: &str| crate::Expected {
        record,
        expect,
        actor: crate::Actor::new(who),
    };
    let mut renamed = customer("Z1");
    renamed.name = "Zed One".into();
    let mut stale = customer("C1");
    stale.tier = "platinum".into();
    let outcomes = store
        .upsert_each_expecting(&[
            write(Record::Customer(customer("Z1")), Expect::New, "alice"),
            // Sees the write before it in the same call.
            write(Record::Customer(renamed), Expect::Revision(1), "bob"),
            write(Record::Customer(customer("Z1")), Expect::New, "carol"),
            write(Record::Customer(stale), Expect::Revision(7), "dave"),
            write(Record::Product(product("P2")), Expect::New, "erin"),
            write(Record::Customer(customer("C2")), Expect::Any, "frank"),
            write(
                Record::Transaction(txn("T1", "C1", 1_700_000_000, 1)),
                Expect::New,
                "gina",
            ),
        ])
        .unwrap();
    assert_eq!(outcomes[0].as_ref().unwrap(), &1);
    assert_eq!(outcomes[1].as_ref().unwrap(), &2);
    assert!(matches!(&outcomes[2], Err(StoreError::Conflict(m)) if m.contains("exists already")));
    assert!(matches!(&outcomes[3], Err(StoreError::Conflict(m)) if m.contains("not 7")));
    assert_eq!(outcomes[4].as_ref().unwrap(), &1);
    // Unchanged: its revision, nothing written.
    assert_eq!(outcomes[5].as_ref().unwrap(), &1);
    assert!(matches!(&outcomes[6], Err(StoreError::Invalid(_))));

    let (rev, record) = store
        .get_revised(EntityKind::Customer, "Z1")
        .unwrap()
        .unwrap();
    assert!(rev == 2 && matches!(record, Record::Customer(c) if c.name == "Zed One"));
    let stored_c1 = store.get(EntityKind::Customer, "C1").unwrap();
    assert!(matches!(stored_c1, Some(Record::Customer(c)) if c.tier == "gold"));
    assert_eq!(store.count(EntityKind::Customer).unwrap(), 4);
    assert_eq!(store.count(EntityKind::Product).unwrap(), 2);
    let changes = store.changes_since(EntityKind::Customer, position).unwrap();
    assert_eq!(changes.ids, ["Z1"]);
    let log = store
        .audit_log(&crate::AuditQuery {
            limit: 10,
            ..Default::default()
        })
        .unwrap();
    let seen: Vec<(&str, &str, &str)> = log
        .iter()
        .map(|e| (e.actor.as_str(), e.action.as_str(), e.id.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            ("erin", "create", "P2"),
            ("bob", "update", "Z1"),
            ("alice", "create", "Z1")
        ]
    );
    assert_eq!(log[1].before.as_ref().unwrap()["name"], "Customer Z1");
    assert_eq!(log[1].seq, log[2].seq + 1);
    // A cursor between entries written together.
    let older = store
        .audit_log(&crate::AuditQuery {
            before: Some(log[1].seq),
            limit: 10,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(older.len(), 1);
    assert_eq!(older[0].actor, "alice");
    let only_bob = store
        .audit_log(&crate::AuditQuery {
            id: Some("Z1".into()),
            limit: 1,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(only_bob.len(), 1);
    assert_eq!(only_bob[0].actor, "bob");

    // Reopened, the call's writes are there.
    drop(store);
    let store = open(dir.path());
    assert_eq!(store.count(EntityKind::Customer).unwrap(), 4);
    assert!(store.contains(EntityKind::Product, "P2").unwrap());
}

#[test]
fn single_writes_and_deletes_are_audited_and_keep_references() {
    let dir = tempfile::tempdir().unwrap();
    let store = seeded(dir.path());
    let alice = crate::Actor::new("token alice (agent)");
    // Create, update, and a stale revision refused.
    let created = store
        .upsert_expecting(Record::Customer(customer("Z9")), crate::Expect::New, &alice)
        .unwrap();
    assert_eq!(created, 1);
    let mut changed = customer("Z9");
    changed.name = "Zoë Quist".into();
    let rev = store
        .upsert_expecting(
            Record::Customer(changed.clone()),
            crate::Expect::Revision(1),
            &alice,
        )
        .unwrap();
    assert_eq!(rev, 2);
    assert!(matches!(
        store.upsert_expecting(
            Record::Customer(changed),
            crate::Expect::Revision(1),
            &alice
        ),
        Err(StoreError::Conflict(_))
    ));
    // A line: created once, refused a second time as new, then deleted.
    let line = Record::Transaction(txn("T900", "Z9", 1_700_000_000, 2));
    assert!(
        store
            .put_line(line.clone(), crate::Expect::New, &alice)
            .unwrap()
    );
    assert!(matches!(
        store.put_line(line, crate::Expect::New, &alice),
        Err(StoreError::Conflict(_))
    ));
    let customer_of = |kind, id| store.line_customer(kind, id).unwrap();
    assert_eq!(
        customer_of(EntityKind::Transaction, "T900").as_deref(),
        Some("Z9")
    );
    assert_eq!(customer_of(EntityKind::Interaction, "T900"), None);
    assert_eq!(customer_of(EntityKind::Transaction, "T899"), None);
    assert_eq!(customer_of(EntityKind::Customer, "Z9"), None);
    let missing = Record::Transaction(txn("T901", "NOBODY", 1_700_000_000, 1));
    assert!(matches!(
        store.put_line(missing, crate::Expect::New, &alice),
        Err(StoreError::MissingReference { .. })
    ));
    // The customer has a line: not deleted.
    assert!(matches!(
        store.delete(EntityKind::Customer, "Z9", crate::Expect::Any, &alice),
        Err(StoreError::Conflict(_))
    ));
    let before = store.count(EntityKind::Transaction).unwrap();
    assert!(
        store
            .delete(EntityKind::Transaction, "T900", crate::Expect::Any, &alice)
            .unwrap()
            .is_some()
    );
    assert_eq!(store.count(EntityKind::Transaction).unwrap(), before - 1);
    assert!(
        store
            .get(EntityKind::Transaction, "T900")
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .transactions_of(&CustomerId::parse("Z9").unwrap())
            .unwrap()
            .is_empty()
    );
    // Now it can go; a stale revision is refused first.
    assert!(matches!(
        store.delete(
            EntityKind::Customer,
            "Z9",
            crate::Expect::Revision(1),
            &alice
        ),
        Err(StoreError::Conflict(_))
    ));
    let gone = store
        .delete(
            EntityKind::Customer,
            "Z9",
            crate::Expect::Revision(2),
            &alice,
        )
        .unwrap();
    assert!(matches!(gone, Some(Record::Customer(c)) if c.name == "Zoë Quist"));
    assert!(store.get(EntityKind::Customer, "Z9").unwrap().is_none());
    // The log, newest first: who, what, before and after.
    let log = store
        .audit_log(&crate::AuditQuery {
            id: Some("Z9".into()),
            limit: 10,
            ..Default::default()
        })
        .unwrap();
    let actions: Vec<&str> = log.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions, ["delete", "update", "create"]);
    assert!(log.iter().all(|e| e.actor == "token alice (agent)"));
    assert_eq!(log[1].before.as_ref().unwrap()["name"], "Customer Z9");
    assert_eq!(log[1].after.as_ref().unwrap()["name"], "Zoë Quist");
    assert!(log[0].after.is_none());
    assert!(log[0].seq > log[1].seq && log[1].seq > log[2].seq);
    let older = store
        .audit_log(&crate::AuditQuery {
            before: Some(log[1].seq),
            id: Some("Z9".into()),
            limit: 10,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(older.len(), 1);
    assert_eq!(older[0].action, "create");
}

#[test]
fn records_and_lines_are_paged_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = seeded(dir.path());
    let ids: Vec<String> = (0..7).map(|i| format!("P{i:02}")).collect();
    store
        .upsert(ids.iter().map(|i| Record::Customer(customer(i))).collect())
        .unwrap();
    let all: Vec<String> = store
        .scan(EntityKind::Customer)
        .map(|r| match r.unwrap() {
            Record::Customer(c) => c.customer_id.as_str().to_owned(),
            _ => unreachable!(),
        })
        .collect();
    let mut paged = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store
            .page(EntityKind::Customer, after.as_deref(), 3)
            .unwrap();
        if page.is_empty() {
            break;
        }
        for (_, r) in &page {
            if let Record::Customer(c) = r {
                paged.push(c.customer_id.as_str().to_owned());
            }
        }
        after = paged.last().cloned();
    }
    assert_eq!(paged, all);
    // Lines of P01 and P03, then paged two by two with skips.
    let lines: Vec<Record> = (0..5)
        .map(|i| {
            let c = if i < 3 { "P01" } else { "P03" };
            Record::Transaction(txn(&format!("L{i}"), c, 1_700_000_000 + i, 1))
        })
        .collect();
    store.upsert(lines).unwrap();
    let first = store
        .lines_page(EntityKind::Transaction, Some("P01"), 0, 10)
        .unwrap();
    let page = store
        .lines_page(EntityKind::Transaction, Some("P01"), 2, 2)
        .unwrap();
    assert_eq!(page, first[2..4].to_vec());
    let from_p02 = store
        .lines_page(EntityKind::Transaction, Some("P02"), 0, 10)
        .unwrap();
    assert_eq!(from_p02, first[3..].to_vec());
}

#[test]
fn queues_keep_their_entries_in_order_and_apart() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let a: Vec<u64> = (0..5)
        .map(|i| store.queue_push("outbox", &format!("a{i}")).unwrap())
        .collect();
    store.queue_push("other", "b0").unwrap();
    store.queue_set("outbox", a[1], "a1 delivered").unwrap();
    let all = store.queue_read("outbox", None, 10, false).unwrap();
    let bodies: Vec<&str> = all.iter().map(|(_, b)| b.as_str()).collect();
    assert_eq!(bodies, ["a0", "a1 delivered", "a2", "a3", "a4"]);
    let after = store.queue_read("outbox", Some(a[2]), 10, false).unwrap();
    assert_eq!(after.iter().map(|(s, _)| *s).collect::<Vec<_>>(), a[3..]);
    let newest = store.queue_read("outbox", None, 2, true).unwrap();
    assert_eq!(
        newest.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        [a[4], a[3]]
    );
    let before = store.queue_read("outbox", Some(a[1]), 10, true).unwrap();
    assert_eq!(before.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [a[0]]);
    drop(store);
    let store = open(dir.path());
    assert_eq!(
        store.queue_read("other", None, 10, false).unwrap()[0].1,
        "b0"
    );
    assert!(store.queue_push("bad\0name", "x").is_err());
}
