//! `crm serve` on a loopback socket: acknowledged writes survive a kill,
//! and SIGTERM stops it cleanly.

use std::io::Read;
use std::process::Command;
use std::sync::Arc;

use crate::support::api::*;
use crate::support::serving::*;

/// Writers answered together share a flush (group commit): every customer
/// the API answered 201 for is in the store after `crm serve` is killed
/// with SIGKILL while writers are still sending, and the flushes made count
/// fewer than the writes.
#[test]
fn acknowledged_api_writes_survive_a_kill() {
    for kill_after in [1, 150] {
        let (dir, token) = store_with_token(20, "agent");
        let db = dir.path().join("store");
        let (mut child, _stderr, addr) = serve(db.to_str().unwrap());
        let acked = Arc::new(std::sync::Mutex::new(Vec::new()));
        let writers: Vec<_> = (0..6)
            .map(|w| {
                let (addr, token, acked) = (addr.clone(), token.clone(), Arc::clone(&acked));
                std::thread::spawn(move || {
                    for i in 0..400 {
                        let id = format!("K{w}{i:05}");
                        let mut body = customer(&id, "Kill test");
                        body.as_object_mut().unwrap().remove("attributes");
                        match post(&addr, "/api/v1/customers", &token, &body.to_string()) {
                            201 => acked.lock().unwrap().push(id),
                            0 => return,
                            other => panic!("POST {id}: status {other}"),
                        }
                    }
                })
            })
            .collect();
        while acked.lock().unwrap().len() < kill_after {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        if kill_after > 1 {
            let (status, metrics) = get(&addr, "/metrics", Some(&token));
            assert_eq!(status, "HTTP/1.1 200 OK");
            let count = |name: &str| -> u64 {
                metrics
                    .lines()
                    .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
                    .unwrap_or_else(|| panic!("{name} in {metrics}"))
            };
            let (flushes, flushed) = (
                count("crm_store_flushes_total "),
                count("crm_store_flushed_writes_total "),
            );
            assert!(flushed >= kill_after as u64, "{flushed} writes flushed");
            assert!(flushes < flushed, "{flushes} flushes for {flushed} writes");
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        for writer in writers {
            writer.join().unwrap();
        }
        let acked = acked.lock().unwrap().clone();
        assert!(acked.len() >= kill_after);
        crate::support::assert_acknowledged_kept(&db, model::EntityKind::Customer, &acked);
    }
}

#[test]
fn crm_serve_answers_on_a_loopback_socket_and_stops_cleanly() {
    let (dir, token) = store_with_token(50, "viewer");
    let db = dir.path().join("store");
    let (mut child, mut stderr, addr) = serve(db.to_str().unwrap());
    assert_eq!(get(&addr, "/healthz", None).0, "HTTP/1.1 200 OK");
    let (status, body) = get(&addr, "/api/v1/customers/C0000001", Some(&token));
    assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
    assert!(body.contains("\"customer_id\":\"C0000001\""), "{body}");
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    let mut rest = String::new();
    stderr.read_to_string(&mut rest).unwrap();
    assert!(status.success(), "{rest}");
    assert!(rest.contains("the store is flushed"), "{rest}");
    assert!(
        rest.contains("route=/api/v1/customers/{id} status=200"),
        "{rest}"
    );
    // The request's line, as `tracing`'s formatter writes an event:
    // `2026-12-05T00:05:39.100048Z  INFO server::http: request
    // request_id=… method=GET route=… status=200 ms=0.123`.
    let line = rest
        .lines()
        .find(|l| l.contains("route=/api/v1/customers/{id}"))
        .unwrap();
    let (time, fields) = line
        .split_once("Z  INFO server::http: request request_id=")
        .unwrap_or_else(|| panic!("{line}"));
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let (seconds, micros) = time.split_once('.').unwrap();
    assert!(
        model::Timestamp::parse(&format!("{seconds}Z")).is_ok(),
        "{line}"
    );
    assert!(micros.len() == 6 && digits(micros), "{line}");
    let fields: Vec<&str> = fields.split(' ').collect();
    let (prefix, n) = fields[0].split_once('-').unwrap();
    assert!(prefix.len() == 16 && n.len() >= 12 && digits(n), "{line}");
    assert_eq!(
        fields[1..4],
        ["method=GET", "route=/api/v1/customers/{id}", "status=200"],
        "{line}"
    );
    let (whole, fraction) = fields[4]
        .strip_prefix("ms=")
        .unwrap()
        .split_once('.')
        .unwrap();
    assert!(
        digits(whole) && fraction.len() == 3 && digits(fraction),
        "{line}"
    );
    assert_eq!(fields.len(), 5, "{line}");
}
