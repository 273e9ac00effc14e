use std::sync::Arc;
use std::time::{Duration, Instant};

use analysis::{Context, Scope, Snapshot, customer_metrics};
use model::{
    AcquisitionChannel, Attributes, Customer, CustomerId, Date, Gender, Money, Product,
    SalesChannel, Sku, Timestamp, Transaction, TxnId,
};
use serde_json::json;

use super::*;

/// A small deterministic random stream.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

const TYPES: [&str; 4] = ["convenience", "supermarket", "kiosk", "tobacconist"];
const TIERS: [&str; 3] = ["bronze", "silver", "gold"];

fn customer(i: u32, rng: &mut Lcg) -> Customer {
    let attributes = if rng.next(10) == 0 {
        // Some customers have no industry fields at all.
        "{}".to_owned()
    } else {
        json!({
            "store_type": TYPES[rng.next(4) as usize],
            "monthly_quota": rng.next(200),
        })
        .to_string()
    };
    Customer {
        customer_id: CustomerId::parse(&format!("C{i:05}")).unwrap(),
        name: format!("Outlet {i}"),
        gender: Gender::ALL[rng.next(3) as usize],
        birth_date: (rng.next(5) > 0).then(|| Date::from_days(-3000 + rng.next(12000) as i32)),
        region: ["North", "South"][rng.next(2) as usize].into(),
        city: "Harbour City".into(),
        channel: AcquisitionChannel::ALL[0],
        joined_at: Date::from_days(17000 + rng.next(2000) as i32),
        tier: TIERS[rng.next(3) as usize].into(),
        attributes: Attributes::parse(&attributes).unwrap(),
    }
}

fn lines(ci: u32, rng: &mut Lcg, serial: &mut u32) -> Vec<Transaction> {
    let n = rng.next(12);
    let mut day = 19000 + rng.next(200) as i64;
    (0..n)
        .map(|_| {
            day += rng.next(30) as i64;
            *serial += 1;
            Transaction {
                txn_id: TxnId::parse(&format!("T{serial:07}")).unwrap(),
                customer_id: CustomerId::parse(&format!("C{ci:05}")).unwrap(),
                ts: Timestamp::from_seconds(day * 86_400 + 3600),
                sku: Sku::parse("SKU1").unwrap(),
                quantity: 1 + rng.next(3) as u32,
                amount: Money::from_cents(500 + rng.next(40_000) as i64),
                cost: Money::from_cents(300 + rng.next(20_000) as i64),
                channel: SalesChannel::ALL[0],
                region: "North".into(),
            }
        })
        .collect()
}

fn data(n: u32) -> Snapshot {
    let mut rng = Lcg(7);
    let mut s = Snapshot::default();
    s.upsert_product(&Product {
        sku: Sku::parse("SKU1").unwrap(),
        name: "Carton".into(),
        category: "cigarettes".into(),
        brand: "Acme".into(),
        unit_price: Money::from_cents(5000),
        unit_cost: Money::from_cents(3000),
        attributes: Attributes::empty(),
    });
    let mut serial = 0;
    for i in 0..n {
        let c = customer(i, &mut rng);
        let ci = s.upsert_customer(&c);
        let t = lines(i, &mut rng, &mut serial);
        s.set_transactions(ci, &t);
    }
    s
}

fn catalog() -> Catalog {
    let mut c = Catalog::core();
    c.add_plugin_fields(
        "tobacco-retail",
        &json!({"properties": {
            "store_type": {"enum": TYPES},
            "monthly_quota": {"type": "integer"},
        }}),
    );
    c
}

fn def(script: &str) -> Definition {
    Definition {
        script: script.into(),
        ..Definition::default()
    }
}

struct Setup {
    catalog: Catalog,
    engine: rhai::Engine,
    frame: Arc<Frame>,
    today: Option<i64>,
}

fn setup(s: &Snapshot) -> Setup {
    let catalog = catalog();
    let engine = engine(&catalog, Limits::default());
    let all: Vec<usize> = (0..catalog.fields().len()).collect();
    let frame = Arc::new(Frame::build(s, &catalog, &all, &NoExtra).unwrap());
    Setup {
        engine,
        frame,
        today: s.default_as_of().map(|d| d.days() as i64),
        catalog,
    }
}

fn members(s: &Snapshot, st: &Setup, d: &Definition) -> Vec<u32> {
    let compiled = compile(&st.engine, &st.catalog, d, st.today).unwrap();
    compiled
        .evaluate(
            &st.engine,
            &st.catalog,
            &st.frame,
            None,
            Limits::default(),
            &|r| s.customers.id(r).to_owned(),
        )
        .unwrap()
}

/// Membership by the interpreter alone, one customer at a time.
fn interpreted(s: &Snapshot, st: &Setup, d: &Definition) -> Vec<u32> {
    let compiled = compile(&st.engine, &st.catalog, d, st.today).unwrap();
    (0..s.customers.len() as u32)
        .filter(|&r| {
            compiled
                .matches(&st.engine, &st.frame, r, Limits::default())
                .unwrap()
        })
        .collect()
}

/// The same segments, computed directly from the snapshot in Rust.
#[test]
fn membership_is_what_rust_computes() {
    // More customers than one chunk of the frame's parallel build.
    let s = data(9000);
    let st = setup(&s);
    let ctx = Context::new(&s, &Scope::default());
    let attr = |ci: u32| -> serde_json::Value {
        serde_json::from_str(s.customers.attributes.get(ci as usize)).unwrap()
    };
    type Check<'a> = Box<dyn Fn(u32) -> bool + 'a>;
    let cases: Vec<(&str, Check)> = vec![
        (
            r#"c.margin > 100.0 && c.recency_days < 60 && c.store_type == "kiosk""#,
            Box::new(|ci| {
                let m = customer_metrics(&ctx, ci);
                m.margin.cents() > 10_000
                    && m.recency_days.is_some_and(|r| r < 60)
                    && attr(ci)["store_type"] == "kiosk"
            }),
        ),
        (
            r#"c.tier in ["gold", "silver"] || !(c.baskets >= 3)"#,
            Box::new(|ci| {
                let tier = s.dicts.tier.get(s.customers.tier[ci as usize]);
                tier == "gold" || tier == "silver" || customer_metrics(&ctx, ci).baskets < 3
            }),
        ),
        (
            // Absent quota: the comparison is false (and != true).
            "c.monthly_quota >= 100 || c.monthly_quota != 50 && c.churn_risk",
            Box::new(|ci| {
                let q = attr(ci)["monthly_quota"].as_i64();
                q.is_some_and(|q| q >= 100)
                    || q != Some(50) && customer_metrics(&ctx, ci).churn_risk
            }),
        ),
        (
            // Opaque parts go through the interpreter.
            "c.revenue / 2.0 > c.cost && c.age > 30",
            Box::new(|ci| {
                let m = customer_metrics(&ctx, ci);
                (m.revenue.cents() as f64 / 100.0) / 2.0 > m.cost.cents() as f64 / 100.0
                    && ctx.age(ci).is_some_and(|a| a > 30)
            }),
        ),
        (
            r#"fn matches(c) { if c.baskets == 0 { return false; } let per = c.revenue / c.baskets; per > 200.0 }"#,
            Box::new(|ci| {
                let m = customer_metrics(&ctx, ci);
                m.baskets > 0 && m.revenue.cents() as f64 / 100.0 / m.baskets as f64 > 200.0
            }),
        ),
        (
            r#"days_between(c.last_purchase, today) <= 45 && c.last_purchase >= date("2022-01-01")"#,
            Box::new(|ci| {
                let m = customer_metrics(&ctx, ci);
                m.last_purchase.is_some_and(|d| {
                    ctx.as_of.unwrap().days() - d.days() <= 45
                        && d >= Date::parse("2022-01-01").unwrap()
                })
            }),
        ),
    ];
    for (script, check) in cases {
        let expected: Vec<u32> = (0..s.customers.len() as u32)
            .filter(|&ci| check(ci))
            .collect();
        let d = def(script);
        assert!(!expected.is_empty(), "{script}: the test data has members");
        assert!(
            expected.len() < s.customers.len(),
            "{script}: and non-members"
        );
        assert_eq!(members(&s, &st, &d), expected, "{script}");
        assert_eq!(interpreted(&s, &st, &d), expected, "{script} (interpreter)");
    }
}

#[test]
fn plain_comparisons_are_evaluated_over_columns() {
    let s = data(50);
    let st = setup(&s);
    let plain = compile(
        &st.engine,
        &st.catalog,
        &def(r#"c.margin > 5.0 && (c.tier == "gold" || !c.churn_risk) && 10 <= c.lines"#),
        st.today,
    )
    .unwrap();
    assert!(plain.is_plain());
    let mixed = compile(
        &st.engine,
        &st.catalog,
        &def("c.margin > 5.0 && c.name.len() > 3"),
        st.today,
    )
    .unwrap();
    assert!(!mixed.is_plain());
}

#[test]
fn parameters_are_read_as_params() {
    let s = data(200);
    let st = setup(&s);
    let mut d = def("c.margin > params.min_margin && c.tier == params.tier");
    d.params.insert("min_margin".into(), json!(50.5));
    d.params.insert("tier".into(), json!("gold"));
    let expected = interpreted(&s, &st, &d);
    assert!(!expected.is_empty());
    assert_eq!(members(&s, &st, &d), expected);
    let e = compile(
        &st.engine,
        &st.catalog,
        &def("c.margin > params.min"),
        st.today,
    )
    .unwrap_err();
    assert!(e.message.contains("unknown parameter 'min'"), "{e}");
}

fn error(script: &str) -> ScriptError {
    let s = data(5);
    let st = setup(&s);
    match compile(&st.engine, &st.catalog, &def(script), st.today) {
        Ok(_) => panic!("{script} compiled"),
        Err(e) => e,
    }
}

#[test]
fn unknown_names_fail_at_save_time_with_place_and_suggestion() {
    let e = error("c.margin > 5.0 &&\n  c.recency_dyas < 60");
    assert_eq!(e.pos, Some(Pos { line: 2, column: 5 }));
    assert!(e.message.contains("unknown field 'recency_dyas'"), "{e}");
    assert!(e.message.contains("did you mean c.recency_days?"), "{e}");
    // A plugin field.
    let e = error("c.stor_type == \"kiosk\"");
    assert!(e.message.contains("did you mean c.store_type?"), "{e}");
    // A field without `c.`.
    let e = error("margin > 5");
    assert_eq!(e.pos, Some(Pos { line: 1, column: 1 }));
    assert!(e.message.contains("did you mean c.margin?"), "{e}");
    // In a function script, the customer variable is the parameter.
    let e = error("fn matches(x) { x.revnue > 1.0 }");
    assert!(e.message.contains("did you mean x.revenue?"), "{e}");
    // A syntax error keeps rhai's place.
    let e = error("c.margin > ");
    assert!(e.pos.is_some(), "{e}");
}

#[test]
fn type_mismatches_are_reported_where_the_schema_says_so() {
    let e = error("c.tier == \"gold\" && c.store_type > 5");
    assert_eq!(
        e.pos,
        Some(Pos {
            line: 1,
            column: 36
        })
    );
    assert!(
        e.message.contains(
            "c.store_type is text (plugin tobacco-retail) but is compared with the number 5"
        ),
        "{e}"
    );
    let e = error("c.monthly_quota == \"10\"");
    assert!(e.message.contains("write 10 without quotes"), "{e}");
    let e = error("c.last_purchase > \"2025-01-01\"");
    assert!(e.message.contains("write date(\"2025-01-01\")"), "{e}");
    let e = error("c.store_type == \"kisok\"");
    assert!(e.message.contains("did you mean \"kiosk\"?"), "{e}");
    let e = error("c.store_type in [\"kiosk\", \"bar\"]");
    assert!(
        e.message.contains("\"bar\" is not a value of c.store_type"),
        "{e}"
    );
    let e = error("10 < c.rfm_segment");
    assert_eq!(e.pos, Some(Pos { line: 1, column: 1 }));
}

fn run_error(script: &str) -> (RunError, Duration) {
    let s = data(30);
    let st = setup(&s);
    let limits = Limits {
        operations: 100_000,
        deadline: Duration::from_secs(2),
    };
    let engine = engine(&st.catalog, limits);
    let compiled = compile(&engine, &st.catalog, &def(script), st.today)
        .unwrap_or_else(|e| panic!("{script}: {e}"));
    let started = Instant::now();
    let e = compiled
        .evaluate(&engine, &st.catalog, &st.frame, None, limits, &|r| {
            s.customers.id(r).to_owned()
        })
        .unwrap_err();
    (e, started.elapsed())
}

#[test]
fn hostile_scripts_stop_with_a_clear_error() {
    let cases = [
        (
            "fn f(x) { f(x) + 1 } fn matches(c) { f(1) > 0 }",
            "calls itself too deeply",
        ),
        (r#""x".pad(100_000_000, "x") == """#, "grew beyond"),
        (
            r#"fn matches(c) { let s = "x"; for i in 0..40 { s += s; } s.len() > 0 }"#,
            "grew beyond",
        ),
        (
            "fn matches(c) { let a = []; a.pad(50_000_000, 0); a.len() > 0 }",
            "grew beyond",
        ),
        (
            "fn matches(c) { let n = 0; for i in 0..1_000_000_000 { n += 1; } n > 0 }",
            "more operations",
        ),
    ];
    for (script, expected) in cases {
        let (e, took) = run_error(script);
        assert!(e.to_string().contains(expected), "{script}: {e}");
        assert!(e.customer.is_some(), "{script}: names the customer");
        assert!(took < Duration::from_secs(3), "{script}: took {took:?}");
    }
    // No loops but `for`, no modules, no output.
    for script in [
        "fn matches(c) { while true {} true }",
        "fn matches(c) { loop {} true }",
        "fn matches(c) { import \"x\" as y; true }",
    ] {
        assert!(error(script).pos.is_some(), "{script}");
    }
}

/// A script cannot block its thread (and every analysis and segment test
/// queued behind it): rhai's `sleep` is replaced by one that refuses, also
/// when it is called through a function pointer.
#[test]
fn a_script_that_sleeps_stops_at_once_with_a_clear_error() {
    for script in [
        "fn matches(c) { sleep(5); true }",
        "fn matches(c) { sleep(5.0); true }",
        r#"fn matches(c) { Fn("sleep").call(5); true }"#,
    ] {
        let (e, _) = run_error(script);
        assert!(
            e.to_string()
                .contains("sleep is not available in segment scripts"),
            "{script}: {e}"
        );
    }
}

#[test]
fn the_deadline_stops_a_slow_segment() {
    // Each customer stays under the operation limit, together they do not
    // finish in time.
    let s = data(400);
    let st = setup(&s);
    let limits = Limits {
        operations: 50_000_000,
        deadline: Duration::from_millis(200),
    };
    let engine = engine(&st.catalog, limits);
    let compiled = compile(
        &engine,
        &st.catalog,
        &def("fn matches(c) { let n = 0; for i in 0..2_000_000 { n += 1; } n > 0 }"),
        st.today,
    )
    .unwrap();
    let started = Instant::now();
    let e = compiled
        .evaluate(&engine, &st.catalog, &st.frame, None, limits, &|r| {
            s.customers.id(r).to_owned()
        })
        .unwrap_err();
    assert!(e.to_string().contains("time limit"), "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn explain_shows_each_part_and_the_values_read() {
    let s = data(100);
    let st = setup(&s);
    let d = def(r#"c.tier == "gold" && (c.baskets > 2 || c.margin > 100.0)"#);
    let compiled = compile(&st.engine, &st.catalog, &d, st.today).unwrap();
    let row = (0..100)
        .find(|&r| s.dicts.tier.get(s.customers.tier[r as usize]) == "gold")
        .unwrap();
    let x = compiled
        .explain(&st.engine, &st.catalog, &st.frame, row, Limits::default())
        .unwrap();
    let texts: Vec<&str> = x.parts.iter().map(|p| p.text.as_str()).collect();
    assert_eq!(
        texts,
        [
            d.script.as_str(),
            "c.tier == \"gold\"",
            "c.baskets > 2 || c.margin > 100.0",
            "c.baskets > 2",
            "c.margin > 100.0"
        ]
    );
    assert_eq!(x.parts[1].held, Some(true));
    assert_eq!(x.parts[0].held, Some(x.matched));
    let m = customer_metrics(&Context::new(&s, &Scope::default()), row);
    assert_eq!(x.parts[3].held, Some(m.baskets > 2));
    assert_eq!(x.parts[3].reads[0].value, json!(m.baskets));
    assert_eq!(x.values.len(), 3);
}

/// After changes, refreshing only what changed gives the memberships a
/// full evaluation gives.
#[test]
fn incremental_refresh_equals_full_evaluation() {
    let mut s = data(300);
    let segments = vec![
        (
            "own".to_owned(),
            def(r#"c.store_type == "kiosk" && c.margin > 50.0"#),
        ),
        (
            "as_of".to_owned(),
            def("c.recency_days < 30 && c.baskets >= 2"),
        ),
        ("ranked".to_owned(), def("c.m >= 4 && c.r <= 2")),
        (
            "today".to_owned(),
            def("days_between(c.joined_at, today) > 1500"),
        ),
        (
            "script".to_owned(),
            def("fn matches(c) { c.monthly_quota > 100 || c.tier == \"gold\" }"),
        ),
    ];
    let mut live = Live::new(&s, catalog(), segments.clone(), Limits::default(), &NoExtra).unwrap();
    let mut rng = Lcg(99);
    let mut serial = 1_000_000;
    for round in 0..4 {
        let mut changed = Vec::new();
        for _ in 0..10 {
            let ci = rng.next(s.customers.len() as u64) as u32;
            let mut c = customer(ci, &mut rng);
            c.customer_id = CustomerId::parse(s.customers.id(ci)).unwrap();
            s.upsert_customer(&c);
            if round % 2 == 1 {
                // New lines, later than all others on the last round: the as-of day moves.
                let mut t = lines(ci, &mut rng, &mut serial);
                for line in &mut t {
                    line.customer_id = c.customer_id.clone();
                    if round == 3 {
                        line.ts = Timestamp::from_seconds(line.ts.seconds() + 400 * 86_400);
                    }
                }
                s.set_transactions(ci, &t);
            }
            changed.push(ci);
        }
        // And a new customer.
        let n = s.customers.len() as u32;
        let ci = s.upsert_customer(&customer(n, &mut rng));
        changed.push(ci);
        let movements = live.refresh(&s, &changed, &NoExtra).unwrap();
        let fresh =
            Live::new(&s, catalog(), segments.clone(), Limits::default(), &NoExtra).unwrap();
        for (name, _) in &segments {
            assert_eq!(
                live.members(name),
                fresh.members(name),
                "round {round}: {name}"
            );
        }
        assert!(!movements.is_empty(), "round {round}: someone moved");
    }
}
