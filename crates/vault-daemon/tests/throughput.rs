//! A quick throughput probe (ignored by default; the load tool is the real measure):
//! `cargo test --release -p vault-daemon --test throughput -- --ignored --nocapture`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr,
    clippy::cast_possible_truncation
)]

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{SEED_003, TestDaemon};
use http_body_util::{BodyExt, Full};
use hyper::{Request, client::conn::http1};
use hyper_util::rt::TokioIo;

async fn run(
    d: &TestDaemon,
    conns: usize,
    secs: u64,
    reveal_path: Option<String>,
) -> (u64, Vec<u128>) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let sock = d.sock.clone();
        let key = d.keys.both.clone();
        let path = reveal_path.clone();
        tasks.push(tokio::spawn(async move {
            let stream = tokio::net::UnixStream::connect(&sock).await.unwrap();
            let (mut tx, conn) = http1::handshake(TokioIo::new(stream)).await.unwrap();
            tokio::spawn(conn);
            let mut lat = Vec::new();
            while Instant::now() < deadline {
                let (uri, body) = match &path {
                    Some(p) => (p.clone(), ""),
                    None => ("/v2/tokens".to_owned(), SEED_003),
                };
                let req = Request::post(uri)
                    .header("host", "x")
                    .header("authorization", format!("Bearer {key}"))
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from_static(body.as_bytes())))
                    .unwrap();
                let t = Instant::now();
                let resp = tx.send_request(req).await.unwrap();
                let status = resp.status().as_u16();
                resp.into_body().collect().await.unwrap();
                assert!(status == 200 || status == 201, "{status}");
                lat.push(t.elapsed().as_micros());
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort_unstable();
    (all.len() as u64, all)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "performance probe"]
async fn throughput_probe() {
    let d = TestDaemon::start().await;
    for (name, reveal) in [("tokenize", false), ("reveal", true)] {
        let path = if reveal {
            let t = d.tokenize(&d.keys.both, SEED_003).await.json()["token"]
                .as_str()
                .unwrap()
                .to_owned();
            Some(format!("/v2/tokens/{t}/reveal"))
        } else {
            None
        };
        let (n, lat) = run(&d, 32, 3, path).await;
        let p = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)];
        eprintln!(
            "{name}: {:.0}/s p50 {} us p99 {} us",
            n as f64 / 3.0,
            p(0.5),
            p(0.99)
        );
    }
}
