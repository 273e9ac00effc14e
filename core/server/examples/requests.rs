//! The CPU cost of API requests in process, without the network: requests
//! go through the whole router (the front layer with its id, body limit,
//! caller, metrics and log line; the extractors, the handler, the
//! response), as `crm serve` runs them once hyper has read them. For the
//! HTTP benchmark (tests/bench/http.sh), which adds the network and the
//! load generator.
//!
//! It times, on customers drawn at random (a fixed seed, so runs and
//! `valgrind --tool=callgrind` counts compare):
//! - `GET /healthz`: a fixed answer behind the front layer;
//! - the customer 360 alone (`view_from_memory`, the JSON bytes);
//! - `GET /api/v1/customers/{id}/view?timeline=20` through the router,
//!   on one thread, then on two at once.
//!
//! It creates an admin token in the store: run it on a copy.
//!
//! Usage: cargo run --release --example requests -- STORE [REQUESTS]

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use app::tokens::Role;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode, header};
use server::http::AppState;
use tower::Service;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let db = std::path::PathBuf::from(args.next().context("give the store: STORE [REQUESTS]")?);
    let n: usize = match args.next() {
        Some(n) => n.parse().context("REQUESTS is a number")?,
        None => 200_000,
    };
    let _log = server::http::logging(Box::new(std::io::sink()), false);
    let crm = app::Crm::open(&db, false, app::Config::default())?;
    let ids: Vec<String> = {
        let data = crm.read();
        let customers = &data.base.snapshot.customers;
        (0..customers.len())
            .map(|i| customers.ids.get(i).to_owned())
            .collect()
    };
    if ids.is_empty() {
        bail!("the store has no customers");
    }
    let token = crm.tokens.create("requests-bench", Role::Admin)?;
    let state = AppState::new(crm, server::http::HttpConfig::default());
    // As the benchmark measures a server that has settled: scores worked
    // out ahead and segment memberships built.
    let deadline = Instant::now() + Duration::from_secs(600);
    while !(server::http::scores_are_current(&state) && server::http::memberships_built(&state)) {
        if Instant::now() > deadline {
            bail!("the scores and memberships were not ready within 10 minutes");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("scores and memberships ready; measuring");
    let mut router = server::http::router(Arc::clone(&state));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;

    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let drawn: Vec<&str> = (0..n)
        .map(|_| ids[(splitmix(&mut seed) % ids.len() as u64) as usize].as_str())
        .collect();
    let request = |uri: &str, token: Option<&str>| {
        let mut request = Request::builder().uri(uri);
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let mut request = request.body(Body::empty()).expect("a request");
        request
            .extensions_mut()
            .insert(ConnectInfo(std::net::SocketAddr::from((
                [127, 0, 0, 1],
                40_000,
            ))));
        request
    };

    let fixed = (0..n).map(|_| request("/healthz", None)).collect();
    eprintln!("phase: /healthz");
    let (fixed, _) = fixed_requests(&runtime, &mut router, fixed)?;
    eprintln!("phase: 360 alone");
    let (alone, bytes) = alone(&state, &drawn)?;
    let views = drawn
        .iter()
        .map(|id| {
            request(
                &format!("/api/v1/customers/{id}/view?timeline=20"),
                Some(&token),
            )
        })
        .collect();
    // (On standard error as each phase starts, for a profiler to attach.)
    eprintln!("phase: 360 through the router");
    let (through, through_bytes) = view_requests(&runtime, &mut router, views)?;

    // The same on two threads at once, as the server's two workers: what
    // they share (locks, counters) costs more when both use it.
    let halves: Vec<Vec<Request<Body>>> = drawn
        .chunks(n.div_ceil(2))
        .map(|half| {
            half.iter()
                .map(|id| {
                    request(
                        &format!("/api/v1/customers/{id}/view?timeline=20"),
                        Some(&token),
                    )
                })
                .collect()
        })
        .collect();
    eprintln!("phase: 360 through the router on two threads");
    let started = Instant::now();
    std::thread::scope(|scope| -> Result<()> {
        let threads: Vec<_> = halves
            .into_iter()
            .map(|half| {
                let mut router = router.clone();
                scope.spawn(move || -> Result<()> {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()?;
                    routed(&runtime, &mut router, half).map(|_| ())
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("a measuring thread")?;
        }
        Ok(())
    })?;
    let both = started.elapsed() * 2;

    let per = |d: Duration| d.as_nanos() as f64 / n as f64 / 1000.0;
    println!(
        "{n} requests on {} customers, one thread; CPU time a request",
        ids.len()
    );
    println!(
        "GET /healthz (fixed, behind the front layer)      {:7.2} µs",
        per(fixed)
    );
    println!(
        "the customer 360 alone ({:.0} bytes)                {:7.2} µs",
        bytes as f64 / n as f64,
        per(alone)
    );
    println!(
        "GET /api/v1/customers/{{id}}/view?timeline=20      {:7.2} µs ({:.0} bytes)",
        per(through),
        through_bytes as f64 / n as f64
    );
    println!(
        "the same on two threads at once                   {:7.2} µs",
        per(both)
    );
    Ok(())
}

/// The fixed requests, then the 360s, through the router; each a function
/// of its own, as `alone`, so that `valgrind --tool=callgrind
/// --toggle-collect='requests::view_requests'` counts one alone.
#[inline(never)]
fn fixed_requests(
    runtime: &tokio::runtime::Runtime,
    router: &mut axum::Router,
    requests: Vec<Request<Body>>,
) -> Result<(Duration, usize)> {
    routed(runtime, router, requests)
}

#[inline(never)]
fn view_requests(
    runtime: &tokio::runtime::Runtime,
    router: &mut axum::Router,
    requests: Vec<Request<Body>>,
) -> Result<(Duration, usize)> {
    routed(runtime, router, requests)
}

/// Sends `requests` through the router one after the other: the time and
/// the bytes answered.
fn routed(
    runtime: &tokio::runtime::Runtime,
    router: &mut axum::Router,
    requests: Vec<Request<Body>>,
) -> Result<(Duration, usize)> {
    runtime.block_on(async {
        let mut bytes = 0;
        let started = Instant::now();
        for request in requests {
            let response = <axum::Router as Service<Request<Body>>>::call(router, request).await?;
            if response.status() != StatusCode::OK {
                bail!("answered {}", response.status());
            }
            bytes += axum::body::to_bytes(response.into_body(), usize::MAX)
                .await?
                .len();
        }
        Ok((started.elapsed(), bytes))
    })
}

/// The 360 of each of `ids` from the snapshot: the time and the bytes.
#[inline(never)]
fn alone(state: &AppState, ids: &[&str]) -> Result<(Duration, usize)> {
    let started = Instant::now();
    let mut bytes = 0;
    for id in ids {
        bytes += server::http::customer_360_json(state, id, 20)
            .context("the 360 from the snapshot")?
            .len();
    }
    Ok((started.elapsed(), bytes))
}

/// A step of splitmix64: a fixed stream of well-spread numbers.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
