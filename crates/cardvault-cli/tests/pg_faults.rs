//! The daemon on a PostgreSQL vault when the database fails: `cardvault serve --database` (a
//! separate process, small bounds in its URL) under load while the network to the server is cut
//! (a TCP proxy in the test), while the server ends every session of the database, while a lock
//! held from another connection exhausts the daemon's pool, and while it makes statements run
//! into their timeout. Each time: every request is answered within a bound derived from the URL's
//! bounds, either as it would be or as 503 `database_unavailable` with `Retry-After` (never a
//! hang, never a 500); `/health` says when the database cannot be reached; the same daemon serves
//! again by itself once the fault ends; and every token acknowledged before, during or after the
//! fault reveals its card.
//!
//! Needs the PostgreSQL server of `CARDVAULT_TEST_PG_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`); each test creates its own database and drops
//! it. A server that cannot be reached fails the test: it never skips.
#![cfg(test)]

#[path = "it/common.rs"]
mod common;
#[path = "pg/http.rs"]
mod http;
#[path = "pg/proxy.rs"]
mod proxy;
#[path = "pg/setup.rs"]
mod setup;

use std::{
    net::{SocketAddr, ToSocketAddrs},
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use common::luhn_pan;
use http::{Body, Reply};
use proxy::{Cut, Proxy};
use setup::{Daemon, Setup};

/// The bounds every daemon here is started with (URL parameters).
#[derive(Clone, Copy)]
struct Bounds {
    pool_max_size: u32,
    pool_timeout: Duration,
    statement_timeout: Duration,
    /// Whole seconds (`connect_timeout` is in seconds).
    connect_timeout: Duration,
}

impl Bounds {
    const SMALL: Self = Self {
        pool_max_size: 4,
        pool_timeout: Duration::from_millis(500),
        statement_timeout: Duration::from_millis(500),
        connect_timeout: Duration::from_secs(1),
    };

    fn params(&self) -> String {
        format!(
            "pool_max_size={}&pool_timeout_ms={}&statement_timeout_ms={}&connect_timeout={}",
            self.pool_max_size,
            self.pool_timeout.as_millis(),
            self.statement_timeout.as_millis(),
            self.connect_timeout.as_secs()
        )
    }

    /// The longest one engine operation may wait: for a pooled connection, for a connection
    /// attempt, and for its statements (the engine gives up on a statement's connection at twice
    /// the statement timeout plus a second).
    fn operation_bound(&self) -> Duration {
        self.pool_timeout
            + self.connect_timeout
            + self.statement_timeout * 2
            + Duration::from_secs(1)
    }

    /// The longest one request may take while the database fails: two operations (a write waits
    /// for the group commit ahead of it to fail first; a tokenize may re-read the key header
    /// before it), plus 2 s of slack for a busy machine.
    fn request_bound(&self) -> Duration {
        self.operation_bound() * 2 + Duration::from_secs(2)
    }
}

/// How long the daemon may take to serve again once the database is back.
const RECOVERY: Duration = Duration::from_secs(5);

/// The PostgreSQL server's address (from `CARDVAULT_TEST_PG_URL`'s host and port).
fn server_addr() -> SocketAddr {
    let url = vault_testkit::postgres::server_url();
    let rest = url.split_once("://").map_or(url.as_str(), |(_, r)| r);
    let authority = rest.split(['/', '?']).next().unwrap();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host_port = if host_port.contains(':') {
        host_port.to_owned()
    } else {
        format!("{host_port}:5432")
    };
    host_port
        .to_socket_addrs()
        .unwrap_or_else(|e| panic!("the test server's address {host_port}: {e}"))
        .next()
        .unwrap()
}

/// The database's URL with its host and port replaced by the proxy's, and `params` added.
fn url_through(db_url: &str, port: u16, params: &str) -> String {
    let (scheme, rest) = db_url.split_once("://").unwrap();
    let (authority, path) = rest.split_at(rest.find('/').unwrap());
    let user = authority
        .rsplit_once('@')
        .map_or(String::new(), |(u, _)| format!("{u}@"));
    let sep = if path.contains('?') { '&' } else { '?' };
    format!("{scheme}://{user}127.0.0.1:{port}{path}{sep}{params}")
}

fn card_json(pan: &str) -> String {
    format!(r#"{{"type":"card","card":{{"pan":"{pan}","expiration_date":"3012"}}}}"#)
}

/// One tokenize of the load: when it was sent (since the test's start), its card, and its
/// answer (`Err`: none within [`http::HANG`]).
struct Sample {
    sent: Duration,
    pan: String,
    answer: Result<Reply, String>,
}

/// Threads tokenizing fresh cards back to back until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    workers: Vec<JoinHandle<Vec<Sample>>>,
}

impl Load {
    fn start(socket: &Path, key: &str, workers: usize, t0: Instant) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let workers = (0..workers)
            .map(|_| {
                let (socket, key, stop) = (socket.to_path_buf(), key.to_owned(), stop.clone());
                std::thread::spawn(move || {
                    let mut samples = Vec::new();
                    while !stop.load(Ordering::Acquire) {
                        let pan = luhn_pan(&mut rand::rng(), "4", 16);
                        let sent = t0.elapsed();
                        let answer = http::send(
                            &socket,
                            "POST",
                            "/v2/tokens",
                            Some(&key),
                            &[],
                            Body::Json(&card_json(&pan)),
                        )
                        .map_err(|e| e.to_string());
                        // A refused request is answered at once: do not spin.
                        if !matches!(&answer, Ok(r) if r.status == 201) {
                            std::thread::sleep(Duration::from_millis(20));
                        }
                        samples.push(Sample { sent, pan, answer });
                    }
                    samples
                })
            })
            .collect();
        Self { stop, workers }
    }

    fn finish(self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Release);
        self.workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    }
}

/// What a load saw, once every answer was checked.
#[derive(Default)]
struct Tally {
    /// (token, pan) of every 201.
    acked: Vec<(String, String)>,
    unavailable: usize,
    max_latency: Duration,
    /// Every answer that breaks the rules.
    wrong: Vec<String>,
}

/// Checks every answer: 201 with a token, or 503 `database_unavailable` with a `Retry-After` of
/// at least one second; within `bound`; never unanswered.
fn tally(samples: &[Sample], bound: Duration) -> Tally {
    let mut t = Tally::default();
    for s in samples {
        let r = match &s.answer {
            Ok(r) => r,
            Err(e) => {
                t.wrong.push(format!(
                    "tokenize sent at {:.2} s: no answer: {e}",
                    s.sent.as_secs_f64()
                ));
                continue;
            }
        };
        t.max_latency = t.max_latency.max(r.elapsed);
        if r.elapsed > bound {
            t.wrong.push(format!(
                "tokenize sent at {:.2} s took longer than {:.1} s: {}",
                s.sent.as_secs_f64(),
                bound.as_secs_f64(),
                r.describe()
            ));
        }
        match r.status {
            201 => {
                let token = r.json()["token"].as_str().unwrap().to_owned();
                t.acked.push((token, s.pan.clone()));
            }
            503 if is_database_unavailable(r) => t.unavailable += 1,
            _ => t.wrong.push(format!(
                "tokenize sent at {:.2} s: {}",
                s.sent.as_secs_f64(),
                r.describe()
            )),
        }
    }
    t
}

/// 503 `database_unavailable` with a `Retry-After` of at least one second.
fn is_database_unavailable(r: &Reply) -> bool {
    r.status == 503
        && r.code().as_deref() == Some("database_unavailable")
        && r.header("retry-after")
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|s| s >= 1)
}

/// Every acknowledged token reveals its card (several threads at once).
fn assert_all_reveal(socket: &Path, key: &str, acked: &[(String, String)]) {
    let lost: Vec<String> = std::thread::scope(|scope| {
        let workers: Vec<_> = acked
            .chunks(acked.len().div_ceil(4).max(1))
            .map(|part| {
                scope.spawn(move || {
                    let mut lost = Vec::new();
                    for (token, pan) in part {
                        let r = http::call(
                            socket,
                            "POST",
                            &format!("/v2/tokens/{token}/reveal"),
                            Some(key),
                            Body::Json("{}"),
                        );
                        if r.status != 200 {
                            lost.push(format!("{token}: {}", r.describe()));
                        } else if r.json()["pan"].as_str() != Some(pan.as_str()) {
                            lost.push(format!("{token}: another card"));
                        }
                    }
                    lost
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged tokens do not reveal their card:\n{}",
        lost.len(),
        acked.len(),
        lost[..lost.len().min(20)].join("\n")
    );
}

/// Sends `request` every 100 ms until it answers `want`; returns how long after `since` that
/// was. Fails, saying `failing` and the last answer, once `within` has passed since `since`.
fn until_status(
    since: Instant,
    within: Duration,
    want: u16,
    failing: &str,
    mut request: impl FnMut() -> Reply,
) -> Duration {
    loop {
        let r = request();
        if r.status == want {
            return since.elapsed();
        }
        assert!(
            since.elapsed() < within,
            "{failing} within {:.1} s: {}",
            within.as_secs_f64(),
            r.describe()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Polls `/health` until it answers 200; returns how long that took.
fn wait_healthy(socket: &Path, within: Duration) -> Duration {
    until_status(Instant::now(), within, 200, "/health is not 200", || {
        http::call(socket, "GET", "/health", None, Body::None)
    })
}

/// Waits until a tokenize sent after `since` succeeds; returns how long after `since`.
fn wait_serving(socket: &Path, key: &str, since: Instant, within: Duration) -> Duration {
    let failing = "the daemon does not serve again after the fault ended";
    until_status(since, within, 201, failing, || {
        let pan = luhn_pan(&mut rand::rng(), "4", 16);
        http::call(
            socket,
            "POST",
            "/v2/tokens",
            Some(key),
            Body::Json(&card_json(&pan)),
        )
    })
}

fn fail_with_log(d: &Daemon, what: &str, wrong: &[String]) {
    assert!(
        wrong.is_empty(),
        "{what}: {} wrong answers:\n{}\n--- daemon log (last 3000 bytes) ---\n{}",
        wrong.len(),
        wrong[..wrong.len().min(20)].join("\n"),
        tail(&d.log_text(), 3000)
    );
}

fn tail(s: &str, n: usize) -> &str {
    let from = s.len().saturating_sub(n);
    &s[s.ceil_char_boundary(from)..]
}

/// The network to the database is cut (every connection closed, new ones blackholed, then, in
/// a second cut, refused) under a steady tokenize load, and restored.
#[test]
fn database_down_answers_503_in_bounded_time_and_the_daemon_recovers_by_itself() {
    let started = Instant::now();
    let s = Setup::new("tokenize,reveal");
    let proxy = Proxy::start(server_addr());
    let bounds = Bounds::SMALL;
    let url = url_through(&s.db.url(), proxy.port(), &bounds.params());
    let mut d = s.daemon("down", &url);
    let t0 = Instant::now();
    let load = Load::start(&d.socket, &s.api_key, 6, t0);
    std::thread::sleep(Duration::from_millis(1500));

    let mut windows = Vec::new();
    let mut health_down = Vec::new();
    let mut recoveries = Vec::new();
    for how in [Cut::Blackhole, Cut::Refuse] {
        let closed = proxy.cut(how);
        assert!(closed > 0, "{how:?}: the daemon had no connection to cut");
        let from = t0.elapsed();
        std::thread::sleep(Duration::from_millis(800));
        // `/health` says the database cannot be reached, within the bound too.
        let h = http::call(&d.socket, "GET", "/health", None, Body::None);
        assert_eq!(
            h.status,
            503,
            "/health during a {how:?} cut: {}",
            h.describe()
        );
        assert_eq!(h.json()["status"], "unavailable", "{}", h.describe());
        assert!(is_database_unavailable(&h), "{}", h.describe());
        assert!(
            h.elapsed <= bounds.request_bound(),
            "/health took {:.1} s",
            h.elapsed.as_secs_f64()
        );
        health_down.push(h.elapsed);
        std::thread::sleep(Duration::from_millis(2200));
        let to = t0.elapsed();
        let restored = Instant::now();
        proxy.restore();
        recoveries.push(wait_serving(&d.socket, &s.api_key, restored, RECOVERY));
        windows.push((how, from, to));
        std::thread::sleep(Duration::from_millis(1000));
    }
    let samples = load.finish();
    assert!(d.running(), "the daemon exited: {}", d.log_text());
    wait_healthy(&d.socket, RECOVERY);

    let t = tally(&samples, bounds.request_bound());
    fail_with_log(&d, "tokenize under a cut", &t.wrong);
    // The faults did happen (not a vacuous pass), and work went on around them.
    for (how, from, to) in &windows {
        let refused = samples
            .iter()
            .filter(|s| s.sent >= *from && s.sent < *to)
            .filter(|s| matches!(&s.answer, Ok(r) if r.status == 503))
            .count();
        assert!(refused > 0, "no 503 during the {how:?} cut");
        let ok_after = samples
            .iter()
            .filter(|s| s.sent > *to)
            .filter(|s| matches!(&s.answer, Ok(r) if r.status == 201))
            .count();
        assert!(ok_after > 0, "no success after the {how:?} cut");
    }
    assert!(
        t.acked.len() > 20,
        "too little load: {} tokens",
        t.acked.len()
    );
    assert_all_reveal(&d.socket, &s.api_key, &t.acked);
    // The outage is logged, at most once a second however many requests it refused.
    let warnings = d
        .log_text()
        .lines()
        .filter(|l| l.contains("the vault's database is unavailable"))
        .count();
    let seconds = t0.elapsed().as_secs() + 1;
    assert!(
        warnings >= 1 && u64::try_from(warnings).unwrap() <= seconds,
        "{warnings} database warnings in {seconds} s for {} refusals",
        t.unavailable
    );
    eprintln!(
        "database down: {} tokenizes, {} acknowledged, {} answered 503 database_unavailable \
         ({warnings} warnings logged); max latency {:.2} s (bound {:.1} s); /health during the \
         cuts {:.2?}; served again {:.2?} after each restore; {:.1} s",
        samples.len(),
        t.acked.len(),
        t.unavailable,
        t.max_latency.as_secs_f64(),
        bounds.request_bound().as_secs_f64(),
        health_down,
        recoveries,
        started.elapsed().as_secs_f64()
    );
}

/// The server ends every session of the database (`pg_terminate_backend`, as a restart or a
/// failover does) several times under load.
#[test]
fn sessions_ended_by_the_server_under_load_lose_no_acknowledged_token() {
    let started = Instant::now();
    let s = Setup::new("tokenize,reveal");
    let bounds = Bounds::SMALL;
    let mut d = s.daemon("restart", &s.db.url_with(&bounds.params()));
    let t0 = Instant::now();
    let load = Load::start(&d.socket, &s.api_key, 6, t0);
    std::thread::sleep(Duration::from_millis(1000));
    let mut ended = Vec::new();
    for _ in 0..5 {
        ended.push(s.db.terminate_sessions());
        std::thread::sleep(Duration::from_millis(600));
    }
    let last = t0.elapsed();
    std::thread::sleep(Duration::from_millis(1500));
    let samples = load.finish();
    assert!(d.running(), "the daemon exited: {}", d.log_text());
    wait_healthy(&d.socket, RECOVERY);
    // Served again by itself: the first acknowledged tokenize sent after the last round.
    let recovered = samples
        .iter()
        .filter(|s| s.sent >= last)
        .filter_map(|s| match &s.answer {
            Ok(r) if r.status == 201 => Some(s.sent + r.elapsed - last),
            _ => None,
        })
        .min()
        .expect("no tokenize succeeded after the last round");
    assert!(
        recovered <= RECOVERY,
        "served again only {recovered:?} after the last round"
    );

    assert!(
        ended.iter().all(|n| *n > 0),
        "some terminations found no session of the daemon: {ended:?}"
    );
    let t = tally(&samples, bounds.request_bound());
    fail_with_log(&d, "tokenize while sessions are ended", &t.wrong);
    assert!(
        t.acked.len() > 20,
        "too little load: {} tokens",
        t.acked.len()
    );
    assert_all_reveal(&d.socket, &s.api_key, &t.acked);
    eprintln!(
        "sessions ended: {ended:?} server sessions ended in 5 rounds; {} tokenizes, {} \
         acknowledged, {} answered 503 database_unavailable; max latency {:.2} s (bound {:.1} \
         s); serving {:.2?} after the last round; {:.1} s",
        samples.len(),
        t.acked.len(),
        t.unavailable,
        t.max_latency.as_secs_f64(),
        bounds.request_bound().as_secs_f64(),
        recovered,
        started.elapsed().as_secs_f64()
    );
}

/// Tokenizes `n` cards; returns (token, pan).
fn tokenize_some(socket: &Path, key: &str, n: usize) -> Vec<(String, String)> {
    (0..n)
        .map(|_| {
            let pan = luhn_pan(&mut rand::rng(), "4", 16);
            let r = http::call(
                socket,
                "POST",
                "/v2/tokens",
                Some(key),
                Body::Json(&card_json(&pan)),
            );
            assert_eq!(r.status, 201, "{}", r.describe());
            (r.json()["token"].as_str().unwrap().to_owned(), pan)
        })
        .collect()
}

/// `n` GETs of `token` at once; their answers.
fn concurrent_gets(socket: &Path, key: &str, token: &str, n: usize) -> Vec<Reply> {
    let socket: PathBuf = socket.to_path_buf();
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..n)
            .map(|_| {
                let socket = &socket;
                scope.spawn(move || {
                    http::call(
                        socket,
                        "GET",
                        &format!("/v2/tokens/{token}"),
                        Some(key),
                        Body::None,
                    )
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    })
}

/// Statements blocked on a lock hold the pooled connections: further reads wait at most the
/// pool timeout and answer 503 or share a waiting batch, `/health` answers at once, a write (on the committer's own
/// connection) waits for the lock within the statement timeout; once the lock is released
/// everything is served.
#[test]
fn an_exhausted_pool_answers_503_within_the_pool_timeout() {
    let s = Setup::new("tokenize,reveal");
    let bounds = Bounds {
        pool_max_size: 2,
        pool_timeout: Duration::from_millis(300),
        statement_timeout: Duration::from_secs(10),
        connect_timeout: Duration::from_secs(2),
    };
    let d = s.daemon("pool", &s.db.url_with(&bounds.params()));
    let tokens = tokenize_some(&d.socket, &s.api_key, 3);
    let token = &tokens[0].0;
    // Warm: the pool's connections exist, the API key is cached.
    assert!(
        concurrent_gets(&d.socket, &s.api_key, token, 4)
            .iter()
            .all(|r| r.status == 200)
    );

    let hold = Duration::from_secs(4);
    let holder = s.db.lock_table_for("cardvault_record", hold);
    let locked_at = Instant::now();
    const N: usize = 8;
    let fast_bound = bounds.pool_timeout + Duration::from_millis(1500);
    let (answers, health, write) = std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::channel();
        for _ in 0..N {
            let (tx, socket, key) = (tx.clone(), &d.socket, &s.api_key);
            scope.spawn(move || {
                let path = format!("/v2/tokens/{token}");
                let _ = tx.send(http::call(socket, "GET", &path, Some(key), Body::None));
            });
        }
        drop(tx);
        // The first answer comes once the pool is exhausted; then `/health` and a write must not
        // queue behind the blocked reads either.
        let first = rx.recv().unwrap();
        let health = scope.spawn(|| http::call(&d.socket, "GET", "/health", None, Body::None));
        let pan = luhn_pan(&mut rand::rng(), "4", 16);
        let write = http::call(
            &d.socket,
            "POST",
            "/v2/tokens",
            Some(&s.api_key),
            Body::Json(&card_json(&pan)),
        );
        let mut answers = vec![first];
        answers.extend(rx.iter());
        (answers, health.join().unwrap(), write)
    });
    holder.join().unwrap();
    let released = locked_at.elapsed();

    let mut wrong = Vec::new();
    let (mut fast_503, mut waited_200) = (0, 0);
    for r in &answers {
        match r.status {
            503 if is_database_unavailable(r) && r.elapsed <= fast_bound => fast_503 += 1,
            // Reads of one key share a batched statement (`pg/point_reads.rs`): those waiting on
            // the lock read once it is released, within the statement timeout.
            200 if r.elapsed <= hold + Duration::from_millis(1500) => waited_200 += 1,
            _ => wrong.push(format!("GET: {}", r.describe())),
        }
    }
    // `/health` must not queue behind the blocked reads. The write does not use the pool: the
    // committer commits on a connection of its own (`pg/direct.rs`), so it waits on the table
    // lock like any statement, bounded by the statement timeout, and commits once the lock is
    // released (or answers 503 in bounded time).
    let write_bound = fast_bound.max(hold + Duration::from_millis(1500));
    for (what, r, ok, bound) in [
        ("/health", &health, 200, fast_bound),
        ("tokenize", &write, 201, write_bound),
    ] {
        let answered = r.status == ok || is_database_unavailable(r);
        if !answered || r.elapsed > bound {
            wrong.push(format!(
                "{what} while the pool is exhausted (bound {bound:?}): {}",
                r.describe()
            ));
        }
    }
    fail_with_log(&d, "requests on an exhausted pool", &wrong);
    // Concurrent reads are coalesced into at most two batched statements, so how many of them
    // meet a full pool (503 within the pool timeout) and how many wait in a batch depends on
    // scheduling; every one is answered in bounded time either way. (The pool-exhausted 503 itself
    // is checked at the engine, `crates/vault-store/tests/it/pg.rs`.)
    assert_eq!(
        fast_503 + waited_200,
        N,
        "{fast_503} fast 503s and {waited_200} reads after the lock, of {N}"
    );
    assert!(waited_200 >= 1, "no request got a connection and waited");
    assert!(released >= hold, "the lock was not held throughout");

    // Released: everything is served again.
    let after = concurrent_gets(&d.socket, &s.api_key, token, N);
    let wrong: Vec<String> = after
        .iter()
        .filter(|r| r.status != 200)
        .map(Reply::describe)
        .collect();
    fail_with_log(&d, "GETs after the lock was released", &wrong);
    assert_all_reveal(&d.socket, &s.api_key, &tokens);
    eprintln!(
        "pool exhaustion: {fast_503} of {N} GETs answered 503 within {fast_bound:?}, {waited_200} \
         waited for the lock ({:.2} s) and read; latencies {:.2?}; meanwhile /health {} in {:.2?} \
         and tokenize {} in {:.2?}",
        released.as_secs_f64(),
        answers.iter().map(|r| r.elapsed).collect::<Vec<_>>(),
        health.status,
        health.elapsed,
        write.status,
        write.elapsed
    );
}

/// A write blocked on a lock past `statement_timeout_ms` answers 503 at about that bound, and the
/// daemon serves on.
#[test]
fn a_statement_past_its_timeout_answers_503_and_the_daemon_serves_on() {
    let s = Setup::new("tokenize,reveal");
    let bounds = Bounds {
        pool_max_size: 4,
        pool_timeout: Duration::from_secs(2),
        statement_timeout: Duration::from_millis(300),
        connect_timeout: Duration::from_secs(2),
    };
    let d = s.daemon("statement", &s.db.url_with(&bounds.params()));
    let mut tokens = tokenize_some(&d.socket, &s.api_key, 2);

    let hold = Duration::from_secs(3);
    let locked_at = Instant::now();
    let holder = s.db.lock_table_for("cardvault_record", hold);
    let pan = luhn_pan(&mut rand::rng(), "4", 16);
    let write = http::call(
        &d.socket,
        "POST",
        "/v2/tokens",
        Some(&s.api_key),
        Body::Json(&card_json(&pan)),
    );
    let read = http::call(
        &d.socket,
        "GET",
        &format!("/v2/tokens/{}", tokens[0].0),
        Some(&s.api_key),
        Body::None,
    );
    // Other tables are not locked: the daemon answers `/health` meanwhile.
    let health = http::call(&d.socket, "GET", "/health", None, Body::None);
    let during = locked_at.elapsed();
    holder.join().unwrap();

    assert!(during < hold, "the lock ended before the requests did");
    let bound = bounds.statement_timeout + Duration::from_secs(2);
    for (what, r) in [("tokenize", &write), ("GET", &read)] {
        assert!(
            is_database_unavailable(r),
            "{what} blocked past the statement timeout: {}\n{}",
            r.describe(),
            tail(&d.log_text(), 3000)
        );
        assert!(
            r.elapsed <= bound,
            "{what} answered after {:.2} s (bound {bound:?})",
            r.elapsed.as_secs_f64()
        );
        // It did wait for the server's timeout: the 503 is the statement's.
        assert!(
            r.elapsed >= bounds.statement_timeout - Duration::from_millis(50),
            "{what} answered 503 after only {:.3} s",
            r.elapsed.as_secs_f64()
        );
    }
    assert_eq!(health.status, 200, "{}", health.describe());

    // The daemon serves on: a write, and reads of every token (the one refused was not written
    // or, if its outcome is unknown, is not counted).
    tokens.extend(tokenize_some(&d.socket, &s.api_key, 2));
    assert_all_reveal(&d.socket, &s.api_key, &tokens);
    eprintln!(
        "statement timeout: tokenize 503 after {:.2} s, GET 503 after {:.2} s (bound {bound:?}); \
         served on",
        write.elapsed.as_secs_f64(),
        read.elapsed.as_secs_f64()
    );
}

/// Probes `/health` every 100 ms while `during` runs; returns the slowest answer.
fn slowest_health_while(socket: &Path, during: impl FnOnce() + Send) -> Reply {
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let probe = scope.spawn(|| {
            let mut slowest: Option<Reply> = None;
            while !stop.load(Ordering::Acquire) {
                let r = http::call(socket, "GET", "/health", None, Body::None);
                if slowest.as_ref().is_none_or(|s| r.elapsed > s.elapsed) {
                    slowest = Some(r);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            slowest.unwrap()
        });
        during();
        stop.store(true, Ordering::Release);
        probe.join().unwrap()
    })
}

/// How long `/health` may take while other requests wait on a locked table it does not read.
const HEALTH_BOUND: Duration = Duration::from_millis(1500);

/// Authenticating an API key the daemon has not seen yet reads its record from the database
/// (`State::authorize` -> `Vault::authenticate`). With the `cardvault_api_key` table locked, more
/// such requests than the runtime has workers must not stall the other requests, `/health`
/// included (the read runs under `block_in_place` on a shared vault).
#[test]
fn unseen_api_keys_on_a_locked_table_do_not_stall_the_daemon() {
    let s = Setup::new("tokenize,reveal");
    let url = s.db.url();
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get()) + 1;
    let fresh: Vec<String> = (0..workers)
        .map(|i| {
            let out = s.dir.path().join(format!("fresh-{i}"));
            setup::ok(&[
                "apikey",
                "create",
                "--merchant",
                setup::MERCHANT,
                "--scopes",
                "tokenize",
                "--out",
                out.to_str().unwrap(),
                "--database",
                &url,
                "--key-file",
                &s.key_file,
            ]);
            std::fs::read_to_string(out).unwrap().trim().to_owned()
        })
        .collect();
    let bounds = Bounds {
        pool_max_size: 16,
        pool_timeout: Duration::from_secs(2),
        statement_timeout: Duration::from_secs(3),
        connect_timeout: Duration::from_secs(2),
    };
    let d = s.daemon("authstall", &s.db.url_with(&bounds.params()));
    let holder =
        s.db.lock_table_for("cardvault_api_key", Duration::from_secs(4));
    let slowest = slowest_health_while(&d.socket, || {
        std::thread::scope(|scope| {
            for key in &fresh {
                let socket = &d.socket;
                scope.spawn(move || {
                    http::call(socket, "GET", "/v2/tokens/00", Some(key), Body::None)
                });
            }
        });
    });
    holder.join().unwrap();
    assert!(
        slowest.elapsed <= HEALTH_BOUND,
        "/health stalled behind authentications waiting on the database: {}",
        slowest.describe()
    );
}

/// With `cardvault_meta` (the key header) locked, tokenizes and `/health` keep being answered:
/// the stored header is followed by a thread of its own, never on a request's path.
#[test]
fn tokenizes_on_a_locked_header_do_not_stall_the_daemon() {
    let s = Setup::new("tokenize,reveal");
    let bounds = Bounds {
        pool_max_size: 16,
        pool_timeout: Duration::from_secs(2),
        statement_timeout: Duration::from_secs(3),
        connect_timeout: Duration::from_secs(2),
    };
    let d = s.daemon("followstall", &s.db.url_with(&bounds.params()));
    let holder =
        s.db.lock_table_for("cardvault_meta", Duration::from_secs(5));
    let t0 = Instant::now();
    let slowest = slowest_health_while(&d.socket, || {
        let load = Load::start(&d.socket, &s.api_key, 3, t0);
        std::thread::sleep(Duration::from_secs(4));
        drop(load.finish());
    });
    holder.join().unwrap();
    assert!(
        slowest.elapsed <= HEALTH_BOUND,
        "/health stalled behind tokenizes waiting on the database: {}",
        slowest.describe()
    );
}
