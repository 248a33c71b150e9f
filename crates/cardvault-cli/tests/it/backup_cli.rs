//! `cardvault backup` / `cardvault restore` end to end: offline and through a running daemon,
//! refusal of damaged files and of existing targets. Vaults use the test-only fast KDF.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use vault_client::{ApiKey, Client};
use vault_wire::{BackupRequest, CardInput, RevealRequest, TokenizeRequest};

use crate::common::{bin, runtime};

const PASS: &str = "correct horse battery staple";

fn run(args: &[&str]) -> Output {
    bin()
        .args(args)
        .env("CARDVAULT_PASSPHRASE", PASS)
        .output()
        .unwrap()
}

fn ok(args: &[&str]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn fails(args: &[&str]) -> String {
    let out = run(args);
    assert!(!out.status.success(), "{args:?} succeeded");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(err.starts_with("error: "), "unclear error: {err}");
    err
}

struct Daemon {
    child: Child,
}

impl Daemon {
    fn start(data: &str, socket: &Path) -> Self {
        let child = bin()
            .args([
                "serve",
                "--data",
                data,
                "--socket",
                socket.to_str().unwrap(),
            ])
            .env("CARDVAULT_PASSPHRASE", PASS)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // From here on `Drop` stops and reaps the child, whatever happens.
        let daemon = Self { child };
        let rt = runtime();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let up = rt.block_on(async {
                match Client::connect(socket, None).await {
                    Ok(c) => c.health().await.is_ok(),
                    Err(_) => false,
                }
            });
            if up {
                return daemon;
            }
            assert!(Instant::now() < deadline, "daemon did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let _ = self.child.wait();
    }
}

fn s(p: &Path) -> String {
    p.to_str().unwrap().to_owned()
}

#[test]
fn backup_through_the_daemon_then_restore_and_serve() {
    let dir = tempfile::tempdir().unwrap();
    let data = s(&dir.path().join("data"));
    ok(&["init", "--data", &data]);
    ok(&["merchant", "add", "890490", "--name", "M", "--data", &data]);
    let mkf = s(&dir.path().join("merchant-key"));
    ok(&[
        "apikey",
        "create",
        "--merchant",
        "890490",
        "--scopes",
        "tokenize,reveal",
        "--out",
        &mkf,
        "--data",
        &data,
    ]);
    let kf = s(&dir.path().join("admin-key"));
    ok(&[
        "apikey",
        "create",
        "--operator",
        "--scopes",
        "admin",
        "--out",
        &kf,
        "--data",
        &data,
    ]);
    let socket = dir.path().join("run").join("cardvault.sock");
    let key = ApiKey::from_file(Path::new(&mkf)).unwrap().unwrap();
    let operator = ApiKey::from_file(Path::new(&kf)).unwrap().unwrap();
    let rt = runtime();
    let backup = dir.path().join("vault.cvbk");
    let token = {
        let _daemon = Daemon::start(&data, &socket);
        let client = rt.block_on(Client::connect(&socket, Some(&key))).unwrap();
        let token = rt
            .block_on(client.tokenize(&TokenizeRequest::card(CardInput::new(
                "4242424242424242",
                "2802",
            ))))
            .unwrap()
            .token;
        // The route refuses relative paths and existing files.
        let client = rt
            .block_on(Client::connect(&socket, Some(&operator)))
            .unwrap();
        let rel = rt.block_on(client.backup(&BackupRequest {
            path: "relative.cvbk".into(),
        }));
        assert!(rel.is_err());
        let existing = rt.block_on(client.backup(&BackupRequest { path: kf.clone() }));
        assert!(existing.is_err());
        // The daemon holds the directory: `--data` goes through its socket.
        let out = ok(&[
            "backup",
            "--out",
            &s(&backup),
            "--data",
            &data,
            "--api-key-file",
            &kf,
        ]);
        assert!(out.contains("written by the daemon"), "{out}");
        assert!(out.contains("1 records"), "{out}");
        token
    };
    assert!(backup.exists());

    let restored = s(&dir.path().join("restored"));
    let out = ok(&["restore", "--from", &s(&backup), "--data", &restored]);
    assert!(out.contains("restored 1 records"), "{out}");
    // A second restore into the now non-empty directory is refused.
    let err = fails(&["restore", "--from", &s(&backup), "--data", &restored]);
    assert!(err.contains("already exists"), "{err}");

    // The restored vault serves the card, with the original passphrase and API key.
    let socket2 = dir.path().join("run2").join("cardvault.sock");
    let _daemon = Daemon::start(&restored, &socket2);
    let client = rt.block_on(Client::connect(&socket2, Some(&key))).unwrap();
    let card = rt
        .block_on(client.reveal(&token, &RevealRequest::default()))
        .unwrap();
    assert_eq!(card.pan, "4242424242424242");
}

#[test]
fn offline_backup_and_damaged_files() {
    let dir = tempfile::tempdir().unwrap();
    let data = s(&dir.path().join("data"));
    ok(&["init", "--data", &data]);
    ok(&["merchant", "add", "890490", "--name", "M", "--data", &data]);
    let backup: PathBuf = dir.path().join("b.cvbk");
    let out = ok(&["backup", "--out", &s(&backup), "--data", &data]);
    assert!(out.contains("sha256"), "{out}");
    // Never overwrites.
    let err = fails(&["backup", "--out", &s(&backup), "--data", &data]);
    assert!(err.contains("exists"), "{err}");

    let good = std::fs::read(&backup).unwrap();
    let target = dir.path().join("r");
    for (name, bytes) in [
        ("truncated", good[..good.len() - 10].to_vec()),
        ("flipped", {
            let mut b = good.clone();
            let i = b.len() / 2;
            b[i] ^= 1;
            b
        }),
        ("garbage", b"garbage".to_vec()),
    ] {
        let f = dir.path().join(name);
        std::fs::write(&f, bytes).unwrap();
        let err = fails(&["restore", "--from", &s(&f), "--data", &s(&target)]);
        assert!(err.contains("backup file"), "{name}: {err}");
        assert!(!target.exists(), "{name}: left {target:?} behind");
    }
    ok(&["restore", "--from", &s(&backup), "--data", &s(&target)]);
    let list = ok(&["merchant", "list", "--data", &s(&target)]);
    assert!(list.contains("890490"), "{list}");

    // Into a vault: says so. Into a non-empty directory that is no vault: says that instead.
    let err = fails(&["restore", "--from", &s(&backup), "--data", &s(&target)]);
    assert!(err.contains("a vault already exists"), "{err}");
    let other = dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("notes.txt"), "x").unwrap();
    let err = fails(&["restore", "--from", &s(&backup), "--data", &s(&other)]);
    assert!(err.contains("is not empty and holds no vault"), "{err}");
    assert!(!err.contains("vault already exists"), "{err}");
}
