//! Daemon throughput over its Unix socket: tokenize and reveal, 32 connections at once (the load
//! tool, `cardvault bench`, is the full measure; docs/benchmarks.md).
//!
//! `cargo bench -p vault-daemon --bench throughput`. Each criterion iteration is one request;
//! the requests of a sample are spread over the connections, so the time per iteration is the
//! inverse of the daemon's throughput (criterion reports it as requests per second).
//!
//! This was an `#[ignore]`d test that only printed timings.

use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use http_body_util::{BodyExt, Full};
use hyper::{Request, client::conn::http1};
use hyper_util::rt::TokioIo;
use vault_testkit::daemon::{SEED_003, TestDaemon};

/// Connections open at once.
const CONNS: u64 = 32;

/// Sends `total` requests spread over [`CONNS`] connections (`POST /v2/tokens`, or the reveal
/// `path`); the wall time they took.
async fn run(d: &TestDaemon, total: u64, reveal_path: Option<&str>) -> Duration {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..CONNS {
        let n = total / CONNS + u64::from(c < total % CONNS);
        let sock = d.sock.clone();
        let key = d.keys.both.clone();
        let uri = reveal_path.unwrap_or("/v2/tokens").to_owned();
        let body = if reveal_path.is_some() { "" } else { SEED_003 };
        tasks.push(tokio::spawn(async move {
            let stream = tokio::net::UnixStream::connect(&sock)
                .await
                .expect("connect");
            let (mut tx, conn) = http1::handshake(TokioIo::new(stream))
                .await
                .expect("handshake");
            tokio::spawn(conn);
            for _ in 0..n {
                let req = Request::post(uri.as_str())
                    .header("host", "x")
                    .header("authorization", format!("Bearer {key}"))
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from_static(body.as_bytes())))
                    .expect("request");
                let resp = tx.send_request(req).await.expect("response");
                let status = resp.status().as_u16();
                resp.into_body().collect().await.expect("body");
                assert!(status == 200 || status == 201, "{status}");
            }
        }));
    }
    for t in tasks {
        t.await.expect("connection task");
    }
    start.elapsed()
}

fn throughput(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let d = rt.block_on(TestDaemon::start());
    let token = rt.block_on(d.tokenize(&d.keys.both, SEED_003)).json()["token"]
        .as_str()
        .expect("a token")
        .to_owned();
    let reveal = format!("/v2/tokens/{token}/reveal");

    let mut g = c.benchmark_group("daemon");
    g.throughput(Throughput::Elements(1));
    g.sample_size(10);
    g.bench_function("tokenize", |b| {
        b.iter_custom(|iters| rt.block_on(run(&d, iters, None)));
    });
    g.bench_function("reveal", |b| {
        b.iter_custom(|iters| rt.block_on(run(&d, iters, Some(&reveal))));
    });
    g.finish();
}

criterion_group!(benches, throughput);
criterion_main!(benches);
