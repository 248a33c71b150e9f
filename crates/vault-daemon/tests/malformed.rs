//! A sweep of malformed input (random bytes, truncated and mutated bodies, wrong JSON types, huge
//! numbers, invalid UTF-8, bad Content-Length): every answer is a 4xx or a closed connection (a
//! mutation may also happen to produce a valid request), never a 5xx, and the daemon keeps
//! serving afterwards, and its memory does not grow with the number of bad requests.
//!
//! The daemon runs in this test's process, so the memory measured is the process's resident set
//! (`VmRSS` in `/proc/self/status`): after a warm-up (the vault's cache, tokio's and hyper's
//! buffers and the allocator's arenas fill up), then after thousands more malformed requests.
//!
//! So it is its own test binary, outside `tests/it`: other tests running in the same process
//! would grow the resident set it measures.
#![cfg(test)]

use std::time::Duration;

use vault_daemon::DaemonConfig;
use vault_testkit::daemon::{SEED_003, TestDaemon};

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % n as u64).unwrap()
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next().to_le_bytes()[0]).collect()
    }
}

const WRONG_VALUES: &[&str] = &[
    "null",
    "true",
    "[]",
    "{}",
    "0",
    "-1",
    "1e999",
    "123456789012345678901234567890",
    "\"\"",
    "\"\\u0000\"",
    "[[[[[[[[]]]]]]]]",
    "\"\\ud800\"",
    "1.5",
    "{\"a\":[1,{\"b\":null}]}",
];

fn request(key: &str, path: &str, extra: &str, body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\n{extra}\r\n"
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

fn case(rng: &mut Rng, key: &str) -> (Vec<u8>, bool) {
    let seed = SEED_003.as_bytes();
    let cl = |b: &[u8]| format!("Content-Length: {}\r\n", b.len());
    match rng.below(10) {
        0 => {
            let n = rng.below(600);
            (rng.bytes(n), true)
        }
        1 => {
            let n = rng.below(300);
            let b = rng.bytes(n);
            (request(key, "/v2/tokens", &cl(&b), &b), true)
        }
        2 => {
            // Claims the full length, sends less.
            let b = &seed[..rng.below(seed.len())];
            (request(key, "/v2/tokens", &cl(seed), b), true)
        }
        3 => {
            let b = &seed[..rng.below(seed.len())];
            (request(key, "/v2/tokens", &cl(b), b), true)
        }
        4 => {
            let mut b = seed.to_vec();
            for _ in 0..=rng.below(3) {
                let i = rng.below(b.len());
                b[i] = rng.next().to_le_bytes()[0];
            }
            (request(key, "/v2/tokens", &cl(&b), &b), false)
        }
        5 => {
            let v = WRONG_VALUES[rng.below(WRONG_VALUES.len())];
            let body = match rng.below(5) {
                0 => format!(
                    r#"{{"type":{v},"card":{{"pan":"4242424242424242","expiration_date":"2802"}}}}"#
                ),
                1 => format!(r#"{{"type":"card","card":{{"pan":{v},"expiration_date":"2802"}}}}"#),
                2 => format!(
                    r#"{{"type":"card","card":{{"pan":"4242424242424242","expiration_date":{v}}}}}"#
                ),
                3 => format!(r#"{{"type":"card","card":{v}}}"#),
                _ => format!(r#"{{"items":[{v}]}}"#),
            };
            // A batch answers 200 with a 400 per refused item.
            let batch = body.starts_with(r#"{"items""#);
            let path = if batch {
                "/v2/tokens/batch"
            } else {
                "/v2/tokens"
            };
            (
                request(key, path, &cl(body.as_bytes()), body.as_bytes()),
                !batch,
            )
        }
        6 => {
            let n = "9".repeat(1 + rng.below(5000));
            let body = format!(
                r#"{{"type":"card","card":{{"pan":{n},"expiration_date":{n}}},"keep_until":{n}}}"#
            );
            (
                request(key, "/v2/tokens", &cl(body.as_bytes()), body.as_bytes()),
                true,
            )
        }
        7 => {
            let mut b = seed.to_vec();
            let i = rng.below(b.len());
            b.splice(i..i, [0xff, 0xc3, 0x28, 0xed, 0xa0, 0x80]);
            let mut r = request(key, "/v2/tokens", &cl(&b), &b);
            if rng.below(2) == 0 {
                // Invalid UTF-8 in a header value and the path too.
                r.splice(5..5, [0xff, 0xfe]);
            }
            (r, true)
        }
        8 => {
            let extra = match rng.below(6) {
                0 => "Content-Length: abc\r\n".to_owned(),
                1 => "Content-Length: -1\r\n".to_owned(),
                2 => "Content-Length: 99999999999999999999999\r\n".to_owned(),
                3 => format!("Content-Length: {}\r\nContent-Length: 3\r\n", seed.len()),
                4 => format!(
                    "Content-Length: {}\r\nTransfer-Encoding: chunked\r\n",
                    seed.len()
                ),
                _ => "Transfer-Encoding: chunked\r\n".to_owned(),
            };
            (request(key, "/v2/tokens", &extra, seed), true)
        }
        _ => {
            let methods = [
                "GET", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "BREW", "G\0T",
            ];
            let paths = [
                "/",
                "/v2",
                "/v2/tokens/",
                "/v2/tokens/..%2f",
                "/admin/keys/rotate",
                "*",
                "/v2/tokens/batch/x",
                "//v2//tokens",
            ];
            let r = format!(
                "{} {} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                methods[rng.below(methods.len())],
                paths[rng.below(paths.len())]
            );
            (r.into_bytes(), false)
        }
    }
}

/// Rounds of 32 concurrent requests before the baseline memory reading.
const WARM_UP_ROUNDS: usize = 10;
/// Rounds measured.
const ROUNDS: usize = 100;
/// Largest resident-set growth allowed over the measured rounds (3,200 requests). Generous: the
/// growth seen is a few hundred kB; a leak of about 5 KB per request (a request buffer or a
/// response kept each time) would exceed it.
const MAX_GROWTH_KB: u64 = 16 * 1024;

/// A `kB` value of `/proc/self/status` (`VmRSS`, `VmHWM`).
fn proc_status_kb(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_input_sweep() {
    let config = DaemonConfig {
        header_read_timeout: Duration::from_secs(1),
        request_timeout: Duration::from_secs(2),
        ..DaemonConfig::default()
    };
    let d = TestDaemon::start_with(config).await;
    let mut rng = Rng(0x5eed_0003_8735_ad32);
    let mut closed = 0;
    let mut answered = 0;
    let mut baseline_kb = 0;
    for round in 0..WARM_UP_ROUNDS + ROUNDS {
        if round == WARM_UP_ROUNDS {
            baseline_kb = proc_status_kb("VmRSS");
        }
        let mut batch = Vec::new();
        for _ in 0..32 {
            let (bytes, must_be_4xx) = case(&mut rng, &d.keys.tokenize);
            let sock = d.sock.clone();
            batch.push(tokio::spawn(async move {
                (
                    vault_testkit::daemon::raw(&sock, &bytes).await,
                    must_be_4xx,
                    bytes,
                )
            }));
        }
        for t in batch {
            let (resp, must_be_4xx, bytes) = t.await.unwrap();
            match resp {
                None => closed += 1,
                Some(r) => {
                    answered += 1;
                    let ok = if must_be_4xx {
                        (400..500).contains(&r.status)
                    } else {
                        r.status < 500
                    };
                    assert!(
                        ok,
                        "{} for {:?}: {}",
                        r.status,
                        String::from_utf8_lossy(&bytes),
                        r.text()
                    );
                    if r.status >= 400 && !r.body.is_empty() {
                        // Every error we write is JSON and echoes no card digits.
                        let text = r.text();
                        assert!(!text.contains("42424242"), "{text}");
                        if r.header("content-type") == Some("application/json") {
                            r.json();
                        }
                    }
                }
            }
        }
    }
    let after_kb = proc_status_kb("VmRSS");
    let growth_kb = after_kb.saturating_sub(baseline_kb);
    eprintln!(
        "{answered} answered, {closed} closed; RSS {baseline_kb} kB after {} warm-up requests, \
         {after_kb} kB after {} more (+{growth_kb} kB), peak {} kB",
        WARM_UP_ROUNDS * 32,
        ROUNDS * 32,
        proc_status_kb("VmHWM"),
    );
    assert!(
        growth_kb < MAX_GROWTH_KB,
        "resident set grew by {growth_kb} kB over {} malformed requests",
        ROUNDS * 32
    );
    assert_eq!(d.send("GET", "/health", None, None).await.status, 200);
    assert_eq!(d.tokenize(&d.keys.tokenize, SEED_003).await.status, 201);
}
