//! Helpers shared by the `cardvault-cli` package's integration tests.
// Each test binary uses a subset (rustc lints, not test allowances).
#![allow(dead_code, unreachable_pub, unused_imports)]

use rand::RngExt;

/// The `cardvault` binary with every `CARDVAULT_*` variable a developer's shell might set removed,
/// the test-only fast KDF on, and stdin closed (so nothing can prompt).
pub fn bin() -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_cardvault"));
    for var in [
        "CARDVAULT_PASSPHRASE",
        "CARDVAULT_PASSPHRASE_FILE",
        "CARDVAULT_KEY_FILE",
        "CARDVAULT_DATA",
        "CARDVAULT_DATABASE_URL",
        "CARDVAULT_SOCKET",
        "CARDVAULT_API_KEY",
        "CARDVAULT_API_KEY_FILE",
        "CARDVAULT_LISTEN",
        "CARDVAULT_LOG",
        "CARDVAULT_LOG_FORMAT",
    ] {
        c.env_remove(var);
    }
    c.env("CARDVAULT_TEST_FAST_KDF", "1")
        .stdin(std::process::Stdio::null());
    c
}

/// Runs `cardvault` with `args`, which must succeed; its standard output.
pub fn ok(args: &[&str]) -> String {
    let out = bin().args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A tokio runtime with two workers, for many client tasks at once.
pub fn multi_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// A daemon process (`cardvault serve`), killed (`SIGKILL`) and reaped when dropped.
pub struct Daemon {
    child: std::process::Child,
    /// Its Unix socket.
    pub socket: std::path::PathBuf,
}

impl Daemon {
    /// Starts `cardvault serve` on `store` (`["--data", DIR]` or `["--database", URL]`) with
    /// the vault key in `key_file`, listening on `socket`, and waits until it answers `/health`
    /// (30 s at most; a daemon that exits meanwhile fails the test).
    pub fn start(store: [&str; 2], socket: &std::path::Path, key_file: &str) -> Self {
        let child = bin()
            .args(["serve", store[0], store[1], "--socket"])
            .arg(socket)
            .args(["--key-file", key_file])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut d = Self {
            child,
            socket: socket.to_owned(),
        };
        d.wait_ready();
        d
    }

    fn wait_ready(&mut self) {
        let rt = runtime();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let up = rt.block_on(async {
                match vault_client::Client::connect(&self.socket, None).await {
                    Ok(c) => c.health().await.is_ok(),
                    Err(_) => false,
                }
            });
            if up {
                return;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("daemon exited at start (a prompt or an open error?): {status}");
            }
            assert!(
                std::time::Instant::now() < deadline,
                "daemon did not start in 30 s"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// `kill -9`, and waits for the process to be gone.
    pub fn kill9(mut self) {
        self.child.kill().unwrap(); // SIGKILL
        self.child.wait().unwrap();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request (`Connection: close`) over the daemon's Unix socket, waiting at most
/// `read_timeout` for the answer: the status (0 when the daemon closed the connection without
/// answering, or refused it while the request was written), the head in lower case, the body.
pub fn unix_http(
    sock: &std::path::Path,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: Option<&str>,
    read_timeout: std::time::Duration,
) -> (u16, String, String) {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(sock).expect("connect to the daemon");
    s.set_read_timeout(Some(read_timeout)).unwrap();
    let req = vault_testkit::daemon::request(method, path, key, body);
    // A refused peer may see the connection reset before or while it writes.
    if s.write_all(&req).is_err() {
        return (0, String::new(), String::new());
    }
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|r| r.get(..3))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (status, head.to_ascii_lowercase(), body.to_owned())
}

/// A single-threaded tokio runtime for driving the client.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// A random Luhn-valid PAN of `len` digits starting with `prefix`.
pub use vault_testkit::cards::random_pan as luhn_pan;

/// A fresh random 32-byte vault key file (hex) at `path` with permissions `mode`; returns the
/// path as a string for the CLI's `--key-file`.
pub fn random_key_file(path: &std::path::Path, mode: u32) -> String {
    let key_hex: String = (0..32)
        .map(|_| format!("{:02x}", rand::rng().random::<u8>()))
        .collect();
    std::fs::write(path, key_hex + "\n").unwrap();
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(mode)).unwrap();
    path.to_str().unwrap().to_owned()
}

/// Whether the tests run as root (tests that change file owners or run a command as another
/// user need it).
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}
