//! Socket setup, graceful shutdown, slow clients.

use std::{
    os::unix::fs::{MetadataExt, PermissionsExt},
    time::{Duration, Instant},
};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vault_daemon::{DaemonConfig, DaemonError, bind_tcp, bind_unix, serve};
use vault_service::{MerchantId, Token};
use vault_testkit::{
    clock::manual_clock,
    daemon::{SEED_003, TestDaemon, create_vault, open_vault},
    engine::VaultHome,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_is_private() {
    let d = TestDaemon::start().await;
    let sock = std::fs::metadata(&d.sock).unwrap();
    assert_eq!(sock.mode() & 0o777, 0o600);
    let dir = std::fs::metadata(d.sock.parent().unwrap()).unwrap();
    assert_eq!(dir.mode() & 0o777, 0o700);
    // A live socket is not stolen.
    assert!(matches!(
        bind_unix(&d.sock, 0o600).await,
        Err(DaemonError::SocketInUse(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsafe_socket_paths_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let open = dir.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let r = bind_unix(open.join("s.sock"), 0o600).await;
    assert!(
        matches!(r, Err(DaemonError::InsecureSocketPath { .. })),
        "{r:?}"
    );
    let file = dir.path().join("file");
    std::fs::write(&file, b"not a socket").unwrap();
    assert!(matches!(
        bind_unix(&file, 0o600).await,
        Err(DaemonError::InsecureSocketPath { .. })
    ));
    assert!(matches!(
        bind_unix(dir.path().join("s"), 0o666).await,
        Err(DaemonError::InsecureSocketPath { .. })
    ));
    // A stale socket (nobody listening) is replaced.
    let stale = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    assert!(stale.exists());
    bind_unix(&stale, 0o600).await.unwrap();
    let addr = "0.0.0.0:0".parse().unwrap();
    assert!(matches!(
        bind_tcp(addr).await,
        Err(DaemonError::NotLoopback(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_tcp_serves_too() {
    let dir = tempfile::tempdir().unwrap();
    let home = VaultHome::new(dir.path());
    let vault = create_vault(&home, manual_clock());
    let listener = bind_tcp("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = listener.tcp_addr().unwrap();
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let h = tokio::spawn(serve(listener, vault, DaemonConfig::default(), async {
        let _ = rx.await;
    }));
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    assert_eq!(vault_testkit::daemon::parse(&out).unwrap().status, 200);
    stop.send(()).unwrap();
    h.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_loses_no_acknowledged_token() {
    let mut d = TestDaemon::start().await;
    let mut tasks = Vec::new();
    for i in 0..300 {
        let sock = d.sock.clone();
        let req = vault_testkit::daemon::tokenize_request(&d.keys.tokenize, SEED_003);
        tasks.push(tokio::spawn(async move {
            if i >= 100 {
                tokio::time::sleep(Duration::from_micros(200 * (i - 100))).await;
            }
            vault_testkit::daemon::try_raw(&sock, &req).await
        }));
    }
    tokio::time::sleep(Duration::from_millis(15)).await;
    d.stop().await.unwrap();
    let mut tokens = Vec::new();
    let mut refused = 0;
    for t in tasks {
        match t.await.unwrap() {
            Some(r) if r.status == 201 => {
                tokens.push(r.json()["token"].as_str().unwrap().to_owned());
            }
            Some(r) => panic!("unexpected {} {}", r.status, r.text()),
            None => refused += 1,
        }
    }
    assert!(!tokens.is_empty(), "no request completed before shutdown");
    assert!(!d.sock.exists(), "socket file left behind");
    // Reopen from the store: every acknowledged token is there.
    let location = d.location().clone();
    let TestDaemon {
        vault, clock, home, ..
    } = d;
    drop(vault);
    let vault = open_vault(&location, clock);
    let m = MerchantId::new(890_490).unwrap();
    for t in &tokens {
        vault.get(m, &Token::parse(t).unwrap()).unwrap();
    }
    eprintln!(
        "{} acknowledged and present, {refused} cut off by shutdown",
        tokens.len()
    );
    // The vault closes before its home (on PostgreSQL, its database) goes.
    drop(vault);
    drop(home);
}

fn slow_config() -> DaemonConfig {
    DaemonConfig {
        header_read_timeout: Duration::from_millis(300),
        request_timeout: Duration::from_millis(500),
        ..DaemonConfig::default()
    }
}

/// Reads until the daemon closes; returns what arrived and when.
async fn read_until_closed(s: &mut tokio::net::UnixStream) -> (Vec<u8>, Duration) {
    let start = Instant::now();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .expect("the daemon never closed the connection");
    (out, start.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_are_cut_off() {
    let d = TestDaemon::start_with(slow_config()).await;
    let mut s = tokio::net::UnixStream::connect(&d.sock).await.unwrap();
    s.write_all(b"POST /v2/tokens HTTP/1.1\r\n").await.unwrap();
    let (mut rd, mut wr) = s.into_split();
    let trickle = tokio::spawn(async move {
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if wr.write_all(b"X").await.is_err() {
                return true;
            }
        }
        false
    });
    let start = Instant::now();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), rd.read_to_end(&mut out))
        .await
        .expect("slow client not cut off");
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    trickle.abort();
    // The daemon still serves.
    assert_eq!(d.send("GET", "/health", None, None).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed() {
    let d = TestDaemon::start_with(slow_config()).await;
    let mut s = tokio::net::UnixStream::connect(&d.sock).await.unwrap();
    // One request on a keep-alive connection, then silence.
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let (out, took) = read_until_closed(&mut s).await;
    assert_eq!(vault_testkit::daemon::parse(&out).unwrap().status, 200);
    assert!(took < Duration::from_secs(2), "{took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_body_times_out() {
    let d = TestDaemon::start_with(slow_config()).await;
    let mut s = tokio::net::UnixStream::connect(&d.sock).await.unwrap();
    let head = format!(
        "POST /v2/tokens HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{",
        d.keys.tokenize
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let (out, took) = read_until_closed(&mut s).await;
    let r = vault_testkit::daemon::parse(&out).unwrap();
    assert_eq!(r.status, 408, "{}", r.text());
    assert!(took < Duration::from_secs(2));
}

/// A keep-alive connection that has been served once (so the daemon has accepted it).
async fn held_unix(sock: &std::path::Path) -> tokio::net::UnixStream {
    let mut s = tokio::net::UnixStream::connect(sock).await.unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
        .await
        .expect("an answer")
        .unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "served");
    s
}

const HEALTH_CLOSE: &[u8] = b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

/// `/health` on a new Unix connection until it answers 200 (a connection over the peer's cap is
/// closed unanswered); panics after `within`.
async fn health_eventually(sock: &std::path::Path, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        if let Some(r) = vault_testkit::daemon::raw(sock, HEALTH_CLOSE).await {
            assert_eq!(r.status, 200);
            return;
        }
        assert!(Instant::now() < deadline, "no connection slot came free");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The value of the metrics line starting with `line_start` (0 when there is none).
pub(crate) fn metric(text: &str, line_start: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(line_start))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_uid_cannot_hold_more_than_its_share() {
    let d = TestDaemon::start_with(DaemonConfig {
        max_connections_per_peer: 2,
        ..DaemonConfig::default()
    })
    .await;
    let a = held_unix(&d.sock).await;
    let _b = held_unix(&d.sock).await;
    // The third connection of the same uid is closed at once, unanswered.
    assert!(
        vault_testkit::daemon::raw(&d.sock, HEALTH_CLOSE)
            .await
            .is_none()
    );
    // Closing one gives its place back.
    drop(a);
    health_eventually(&d.sock, Duration::from_secs(10)).await;
    drop(_b);
    health_eventually(&d.sock, Duration::from_secs(10)).await;
    let m = d.send("GET", "/metrics", None, None).await;
    assert!(
        metric(
            &m.text(),
            "cardvault_connections_total{outcome=\"over_peer_limit\"} "
        ) >= 1,
        "{}",
        m.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_tcp_address_cannot_crowd_out_another() {
    let dir = tempfile::tempdir().unwrap();
    let home = VaultHome::new(dir.path());
    let vault = create_vault(&home, manual_clock());
    let listener = bind_tcp("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let addr = listener.tcp_addr().unwrap();
    let config = DaemonConfig {
        max_connections_per_peer: 1,
        ..DaemonConfig::default()
    };
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let h = tokio::spawn(serve(listener, vault, config, async {
        let _ = rx.await;
    }));
    let from = |ip: [u8; 4]| async move {
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind((std::net::Ipv4Addr::from(ip), 0).into()).unwrap();
        sock.connect(addr).await.unwrap()
    };
    let exchange = |mut s: tokio::net::TcpStream| async move {
        let _ = s.write_all(HEALTH_CLOSE).await;
        let mut out = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
        vault_testkit::daemon::parse(&out).map(|r| r.status)
    };
    // 127.0.0.1 holds its one place with a served keep-alive connection.
    let mut held = from([127, 0, 0, 1]).await;
    held.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 256];
    assert!(held.read(&mut buf).await.unwrap() > 0);
    assert_eq!(exchange(from([127, 0, 0, 1]).await).await, None, "refused");
    assert_eq!(
        exchange(from([127, 0, 0, 2]).await).await,
        Some(200),
        "another address still gets in"
    );
    drop(held);
    stop.send(()).unwrap();
    h.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_cut_and_its_slot_freed() {
    let d = TestDaemon::start_with(DaemonConfig {
        max_connections_per_peer: 1,
        write_timeout: Duration::from_millis(300),
        ..DaemonConfig::default()
    })
    .await;
    // Pipelines far more answers than the socket buffers hold, and never reads one.
    let s = tokio::net::UnixStream::connect(&d.sock).await.unwrap();
    let (mut rd, mut wr) = s.into_split();
    let flood = tokio::spawn(async move {
        let one = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
        for _ in 0..2000 {
            if wr.write_all(one).await.is_err() {
                return;
            }
        }
        // Keep the write side open: only the daemon may end this connection.
        std::future::pending::<()>().await;
    });
    // While the flood holds the uid's one place, others are refused; once its stalled write
    // times out, the place is free again.
    health_eventually(&d.sock, Duration::from_secs(20)).await;
    // The flooding connection was closed by the daemon: reading now ends (after what the
    // kernel buffered).
    let mut sink = vec![0u8; 1 << 16];
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match rd.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the never-reading connection is still open");
    flood.abort();
}
