//! A bare axum handler, for comparison in the HTTP benchmark
//! (tests/bench/http.sh): the same axum and tokio as `crm serve`, one route
//! that answers a small JSON body, nothing else.
//!
//! Usage: cargo run --release --example bare -- 127.0.0.1:8090

use axum::Router;
use axum::routing::get;

fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8090".into());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let app = Router::new().route(
            "/",
            get(|| async { axum::Json(serde_json::json!({"ok": true})) }),
        );
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .expect("the address is free");
        eprintln!(
            "bare handler on http://{}",
            listener.local_addr().expect("bound")
        );
        axum::serve(listener, app).await.expect("serving");
    });
}
