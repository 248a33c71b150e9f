//! A vault in a fresh PostgreSQL database (one merchant, a merchant API key, an operator key),
//! and `cardvault serve --database` processes on it.
#![allow(dead_code, unreachable_pub)]

use std::{
    fs::File,
    path::{Path, PathBuf},
    process::Child,
    time::{Duration, Instant},
};

use vault_testkit::postgres::TestDatabase;

use crate::{
    common::{bin, random_key_file},
    http::{self, Body},
};

pub const MERCHANT: &str = "890490";

pub use crate::common::ok;

/// A vault on its own database.
pub struct Setup {
    pub db: TestDatabase,
    pub dir: tempfile::TempDir,
    pub key_file: String,
    /// The merchant key (`cvk_...`) and its scopes.
    pub api_key: String,
    pub operator_key: String,
}

impl Setup {
    pub fn new(scopes: &str) -> Self {
        let db = TestDatabase::new();
        let url = db.url();
        let dir = tempfile::tempdir().unwrap();
        let key_file = random_key_file(&dir.path().join("vault.key"), 0o600);
        let with_vault = |args: &[&str]| {
            let mut all = args.to_vec();
            all.extend(["--database", &url, "--key-file", &key_file]);
            ok(&all)
        };
        with_vault(&["init"]);
        with_vault(&["merchant", "add", MERCHANT, "--name", "Faults"]);
        let api_path = dir.path().join("api-key");
        with_vault(&[
            "apikey",
            "create",
            "--merchant",
            MERCHANT,
            "--scopes",
            scopes,
            "--out",
            api_path.to_str().unwrap(),
        ]);
        let operator_path = dir.path().join("operator-key");
        with_vault(&[
            "apikey",
            "create",
            "--operator",
            "--scopes",
            "admin",
            "--out",
            operator_path.to_str().unwrap(),
        ]);
        let read = |p: &Path| std::fs::read_to_string(p).unwrap().trim().to_owned();
        Self {
            api_key: read(&api_path),
            operator_key: read(&operator_path),
            db,
            dir,
            key_file,
        }
    }

    /// `cardvault serve --database url` on a socket named `name` in the test's directory.
    pub fn daemon(&self, name: &str, url: &str) -> Daemon {
        Daemon::start(url, self.dir.path(), name, &self.key_file)
    }
}

/// A `cardvault serve` process, killed when dropped; its standard error goes to a file shown
/// when a test fails.
pub struct Daemon {
    child: Child,
    pub socket: PathBuf,
    log: PathBuf,
}

impl Daemon {
    fn start(url: &str, dir: &Path, name: &str, key_file: &str) -> Self {
        let socket = dir.join(format!("{name}.sock"));
        let log = dir.join(format!("{name}.log"));
        let child = bin()
            .args([
                "serve",
                "--database",
                url,
                "--socket",
                socket.to_str().unwrap(),
                "--key-file",
                key_file,
                "--log-level",
                "warn",
            ])
            .stdout(File::create(dir.join(format!("{name}.stdout"))).unwrap())
            .stderr(File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut d = Self { child, socket, log };
        d.wait_ready();
        d
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = http::send(&self.socket, "GET", "/health", None, &[], Body::None)
                && r.status == 200
            {
                return;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("daemon exited at start: {status}: {}", self.log_text());
            }
            assert!(Instant::now() < deadline, "daemon did not start in 30 s");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// What the daemon wrote on standard error so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// SIGTERM, and the exit status once drained.
    pub fn stop(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            assert!(Instant::now() < deadline, "the daemon did not stop in 30 s");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
