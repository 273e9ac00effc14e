//! The plugin host with real components built from `plugins/` and
//! `tests/plugins/`: the contract, the sandbox, the registry.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crm_sdk::wire;
use plugin_host::{PluginError, Registry};

use crate::support::plugin_package;

/// Three customers with 0, 2 and 5 baskets.
pub(crate) fn batch() -> wire::Batch<'static> {
    let customer = |id: &'static str, baskets: u32| wire::Customer {
        id: id.into(),
        region: if baskets > 1 {
            "North".into()
        } else {
            "South".into()
        },
        attributes: "{}".into(),
        metrics: wire::Metrics {
            baskets,
            ..wire::Metrics::default()
        },
        ..wire::Customer::default()
    };
    wire::Batch {
        as_of: 20_454,
        products: Vec::new(),
        customers: vec![customer("A", 0), customer("B", 2), customer("C", 5)],
    }
}

fn registry(dir: &Path) -> Registry {
    let registry = Registry::open(dir).unwrap();
    registry
        .install(
            &plugin_package("fixture"),
            Some(serde_json::json!({"version": 1})),
        )
        .unwrap();
    registry
}

fn values(results: &wire::Results<wire::Score>) -> Vec<f64> {
    results.iter().map(|r| r.as_ref().unwrap().value).collect()
}

#[test]
fn hooks_run_per_customer_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let registry = registry(dir.path());
    let (scores, _) = registry.score("fixture", "baskets", &batch()).unwrap();
    assert_eq!(values(&scores), [0.0, 2.0, 5.0]);

    let (derived, _) = registry.derive("fixture", &batch()).unwrap();
    let values: Vec<String> = derived
        .iter()
        .map(|d| d.as_ref().unwrap()[0].value.clone())
        .collect();
    assert_eq!(values, ["0", "2", "5"]);

    let mut rejected = batch();
    rejected.customers[1].attributes = r#"{"fixture_reject":true}"#.into();
    let (verdicts, _) = registry.validate("fixture", &rejected).unwrap();
    let verdicts: Vec<&wire::Verdict> = verdicts.iter().map(|v| v.as_ref().unwrap()).collect();
    assert!(verdicts[0].issues.is_empty());
    assert_eq!(
        verdicts[1].issues[0].message,
        "the fixture rejects this customer"
    );
    assert_eq!(
        verdicts[0].patches[0],
        wire::Patch {
            field: "fixture_seen".into(),
            value: Some("true".into())
        }
    );

    let mut chunks = vec![batch(), batch()].into_iter();
    let (table, _) = registry
        .analysis("fixture", "regions", "", &mut chunks)
        .unwrap();
    assert_eq!(
        table.rows,
        vec![
            vec![wire::Cell::Text("North".into()), wire::Cell::Integer(4)],
            vec![wire::Cell::Text("South".into()), wire::Cell::Integer(2)],
        ]
    );

    let err = registry
        .score("fixture", "no-such-model", &batch())
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("fixture has no model 'no-such-model' (it has noop, baskets"),
        "{err}"
    );
}

/// Each hostile behaviour ends in its own classified error, and the next
/// normal call succeeds.
#[test]
fn hostile_plugins_get_classified_errors_and_the_host_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let registry = registry(dir.path());
    let plugin = registry.get("fixture").unwrap();
    let check = |model: &str, expect: &dyn Fn(&PluginError) -> bool| {
        let started = std::time::Instant::now();
        let err = plugin
            .score(model, &batch())
            .err()
            .unwrap_or_else(|| panic!("{model} succeeded"));
        assert!(expect(&err), "{model}: {err}");
        eprintln!("{model}: {err} ({:?})", started.elapsed());
        let (scores, _) = plugin.score("baskets", &batch()).unwrap();
        assert_eq!(values(&scores), [0.0, 2.0, 5.0], "after {model}");
    };
    check("loop", &|e| {
        matches!(e, PluginError::Timeout { limit_ms: 500, .. })
    });
    check("recursion", &|e| {
        matches!(e, PluginError::StackOverflow { .. })
    });
    check("memory", &|e| {
        matches!(e, PluginError::OutOfMemory { limit_mib: 32, .. })
    });
    check(
        "huge",
        &|e| matches!(e, PluginError::BadOutput { message, .. } if message.starts_with("a band is 2097152 bytes")),
    );
    check(
        "nan",
        &|e| matches!(e, PluginError::BadOutput { message, .. } if message.contains("NaN (not a finite number)")),
    );
    check(
        "panic",
        &|e| matches!(e, PluginError::Panicked { message, .. } if message.contains("the fixture panics in score")),
    );
    check(
        "wrong-length",
        &|e| matches!(e, PluginError::BadOutput { message, .. } if message == "it returned 0 results for 3 customers"),
    );
    check(
        "garbage",
        &|e| matches!(e, PluginError::BadOutput { message, .. } if message.starts_with("undecodable batch")),
    );

    let mut panicking = batch();
    panicking.customers[0].id = "PANIC".into();
    for err in [
        plugin.validate(&panicking).err(),
        plugin.derive(&panicking).err(),
        plugin
            .analysis("regions", "", &mut std::iter::once(panicking.clone()))
            .err(),
    ] {
        assert!(matches!(err, Some(PluginError::Panicked { .. })), "{err:?}");
    }

    let mut escaping = batch();
    escaping.customers[2].id = "ESCAPE".into();
    let err = plugin.validate(&escaping).unwrap_err();
    assert_eq!(
        err.to_string(),
        "fixture returned a result the host refuses: it patched 'tier', a field it does not own"
    );

    // Logging is bounded: 64 lines kept, the rest counted.
    let (scores, log) = plugin.score("log-flood", &batch()).unwrap();
    assert_eq!(scores.len(), 3);
    assert_eq!(log.len(), 65);
    assert!(log[0].message.len() <= 520);
    assert_eq!(log[64].message, "29936 more log lines were dropped");
}

#[test]
fn a_plugin_that_imports_the_network_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::open(dir.path()).unwrap();
    let err = registry
        .install(&plugin_package("sockets"), None)
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with("sockets: the component imports wasi:sockets/"),
        "{text}"
    );
    assert!(text.ends_with(", which plugins may not use"), "{text}");
    assert!(registry.list().is_empty());
}

#[test]
fn a_plugin_failing_again_and_again_is_disabled_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let registry = registry(dir.path());
    for _ in 0..plugin_host::FAILURES_BEFORE_DISABLE {
        assert!(registry.score("fixture", "panic", &batch()).is_err());
    }
    let err = registry.score("fixture", "baskets", &batch()).unwrap_err();
    assert!(matches!(err, PluginError::Disabled { .. }), "{err}");
    let info = &registry.list()[0];
    assert!(!info.enabled);
    let reason = info.disabled_reason.as_deref().unwrap();
    assert!(
        reason.starts_with("disabled after 5 failed calls in a row; the last: fixture panicked"),
        "{reason}"
    );
    // The state survives a restart, and enabling brings it back.
    drop(registry);
    let registry = Registry::open(dir.path()).unwrap();
    assert!(!registry.list()[0].enabled);
    registry.enable("fixture").unwrap();
    assert!(registry.score("fixture", "baskets", &batch()).is_ok());
}

#[test]
fn compiled_plugins_are_cached_by_content() {
    let dir = tempfile::tempdir().unwrap();
    let registry = registry(dir.path());
    assert!(!registry.get("fixture").unwrap().from_cache);
    drop(registry);
    let reopened = Registry::open(dir.path()).unwrap();
    assert!(reopened.get("fixture").unwrap().from_cache);
    assert_eq!(
        std::fs::read_dir(dir.path().join("cache")).unwrap().count(),
        1
    );
}

/// Calls keep running through an upgrade: none fails, and once the new
/// version is in, every call uses it.
#[test]
fn an_upgrade_swaps_the_plugin_while_calls_run() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Arc::new(registry(dir.path()));
    // Version 2 of the fixture: the same component with a newer manifest.
    let v2 = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(plugin_package("fixture")).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, v2.path().join(path.file_name().unwrap())).unwrap();
    }
    let manifest = std::fs::read_to_string(v2.path().join("plugin.toml")).unwrap();
    std::fs::write(
        v2.path().join("plugin.toml"),
        manifest.replace("version = \"1.0.0\"", "version = \"2.0.0\""),
    )
    .unwrap();

    let upgraded = Arc::new(AtomicBool::new(false));
    let callers: Vec<_> = (0..3)
        .map(|_| {
            let (registry, upgraded) = (registry.clone(), upgraded.clone());
            std::thread::spawn(move || {
                let mut seen = Vec::new();
                loop {
                    let done = upgraded.load(Ordering::SeqCst);
                    let (scores, _) = registry
                        .score("fixture", "version", &batch())
                        .expect("no call fails");
                    seen.push(scores[0].as_ref().unwrap().value);
                    if done {
                        return seen;
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(100));
    registry
        .upgrade(v2.path(), Some(serde_json::json!({"version": 2})))
        .unwrap();
    upgraded.store(true, Ordering::SeqCst);
    for caller in callers {
        let seen = caller.join().unwrap();
        assert!(
            seen.windows(2).all(|w| w[0] <= w[1]),
            "versions went back: {seen:?}"
        );
        assert_eq!(
            seen.last(),
            Some(&2.0),
            "the last call did not use the new version"
        );
        assert_eq!(seen.first(), Some(&1.0));
    }
    assert_eq!(registry.list()[0].version, "2.0.0");
    let err = registry.upgrade(v2.path(), None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "fixture 2.0.0 is not newer than the installed 2.0.0"
    );
}

/// Customers written together are validated with one call of each hook; a
/// call that fails as a whole (the fixture panics on customer PANIC) is
/// made again for each customer alone, so only that customer is refused.
#[test]
fn customers_written_together_are_validated_in_one_call_and_refused_alone() {
    let dir = tempfile::tempdir().unwrap();
    let registry = registry(dir.path());
    let rules = app::plugins::FieldRules::of(&registry);
    let customer = |id: &str, attributes: &str| model::Customer {
        customer_id: model::CustomerId::parse(id).unwrap(),
        name: format!("Customer {id}"),
        gender: model::Gender::Unknown,
        birth_date: None,
        region: "North".into(),
        city: "Northfield".into(),
        channel: model::AcquisitionChannel::Store,
        joined_at: model::Date::parse("2020-01-01").unwrap(),
        tier: "gold".into(),
        attributes: model::Attributes::parse(attributes).unwrap(),
    };
    let calls = |registry: &Registry| {
        registry
            .call_totals()
            .into_iter()
            .map(|(_, calls, _)| calls)
            .sum::<u64>()
    };

    let together = vec![
        customer("A", "{}"),
        customer("B", r#"{"fixture_reject":true}"#),
        customer("C", r#"{"fixture_seen":"yes"}"#),
        customer("D", "{}"),
    ];
    let outcomes =
        app::plugins::validate_writes(&registry, &rules, together.into_iter().map(Ok).collect());
    assert_eq!(calls(&registry), 1, "one call for the four");
    let seen = |c: &model::Customer| c.attributes.to_value()["fixture_seen"].clone();
    assert_eq!(seen(outcomes[0].as_ref().unwrap()), serde_json::json!(true));
    let refused = format!("{:#}", outcomes[1].as_ref().unwrap_err());
    assert!(
        refused.contains("attributes.fixture_reject: the fixture rejects this customer"),
        "{refused}"
    );
    // The hook's patch makes C's field valid again.
    assert_eq!(seen(outcomes[2].as_ref().unwrap()), serde_json::json!(true));
    assert_eq!(seen(outcomes[3].as_ref().unwrap()), serde_json::json!(true));

    let with_panic = vec![
        customer("A", "{}"),
        customer("PANIC", "{}"),
        customer("D", "{}"),
    ];
    let outcomes =
        app::plugins::validate_writes(&registry, &rules, with_panic.into_iter().map(Ok).collect());
    assert_eq!(
        calls(&registry),
        1 + 1 + 3,
        "the failed call is made again per customer"
    );
    assert!(outcomes[0].is_ok() && outcomes[2].is_ok());
    let failed = format!("{:#}", outcomes[1].as_ref().unwrap_err());
    assert!(
        failed.contains("the fixture panics for customer PANIC"),
        "{failed}"
    );
}
