//! `cardvault audit tail|verify|archive` end to end: offline admin actions show up, `verify` passes on an
//! intact log and exits 1 naming the first bad entry once an entry is edited on disk.

use std::{
    os::unix::net::UnixStream,
    process::{Child, Output, Stdio},
    time::{Duration, Instant},
};

use crate::common::bin;

const PASS: &str = "correct horse battery staple";

fn run(args: &[&str]) -> Output {
    bin()
        .env("CARDVAULT_PASSPHRASE", PASS)
        .args(args)
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

#[test]
fn tail_and_verify_detect_an_edited_entry() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    ok(&["init", "--data", data]);
    ok(&[
        "merchant", "add", "890490", "--name", "Shop", "--data", data,
    ]);
    ok(&[
        "terminal",
        "add",
        "term-1",
        "--merchant",
        "890490",
        "--data",
        data,
    ]);
    ok(&["keys", "rotate", "--data", data]);

    let tail = ok(&["audit", "tail", "--data", data]);
    assert!(tail.contains("admin.merchant.add"), "{tail}");
    assert!(tail.contains("key.rotate"), "{tail}");
    let json = ok(&["audit", "tail", "-n", "2", "--json", "--data", data]);
    let lines: Vec<&str> = json.lines().collect();
    assert_eq!(lines.len(), 2, "{json}");
    assert!(lines[0].contains(r#""seq":2"#), "{json}");
    assert!(lines[1].contains(r#""action":"key.rotate""#), "{json}");

    let verify = ok(&["audit", "verify", "--data", data]);
    assert!(verify.contains("3 entries"), "{verify}");

    {
        let db = sled::open(dir.path().join("data").join("sled")).unwrap();
        let k = [b'A', 0, 0, 0, 0, 0, 0, 0, 2];
        let mut v = db.get(k).unwrap().unwrap().to_vec();
        v[20] ^= 0x40;
        db.insert(k, v).unwrap();
        db.flush().unwrap();
    }
    let out = run(&["audit", "verify", "--data", data]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stdout.contains("BROKEN at entry 2"), "{stdout}");
    assert!(stderr.contains("entry 2"), "{stderr}");
}

/// `audit archive` of every entry but the newest block of `data` into `file`, with `extra`.
fn archive_args<'a>(file: &'a str, data: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "audit",
        "archive",
        "--before",
        "2999-01-01",
        "--out",
        file,
        "--data",
        data,
    ];
    args.extend_from_slice(extra);
    args
}

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// While a daemon holds the vault, `audit tail` and `audit verify` go through it (with an operator
/// key) and print the same thing as offline: a header row, then fixed-width columns; `audit
/// archive` goes through it too.
#[test]
fn tail_and_verify_through_a_running_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    ok(&["init", "--data", data]);
    ok(&[
        "merchant", "add", "890490", "--name", "Shop", "--data", data,
    ]);
    let kf = dir.path().join("admin-key");
    let kf = kf.to_str().unwrap();
    ok(&[
        "apikey",
        "create",
        "--operator",
        "--scopes",
        "admin",
        "--out",
        kf,
        "--data",
        data,
    ]);
    let offline = ok(&["audit", "tail", "--data", data]);
    let header = offline.lines().next().unwrap();
    assert!(
        header.trim_start().starts_with("SEQ") && header.contains("ACTION"),
        "{offline}"
    );
    let socket = dir.path().join("run").join("cardvault.sock");
    let daemon = Daemon(
        bin()
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
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while UnixStream::connect(&socket).is_err() {
        assert!(Instant::now() < deadline, "daemon did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Found through --data (the daemon holds the directory).
    let online = ok(&["audit", "tail", "--data", data, "--api-key-file", kf]);
    assert_eq!(online, offline, "the same table through the daemon");
    let lines: Vec<&str> = online.lines().collect();
    assert_eq!(lines.len(), 3, "{online}");
    // Fixed-width columns: the action column starts at the same place on every row.
    let at = header.find("ACTION").unwrap();
    assert!(lines[1][at..].starts_with("admin.merchant.add"), "{online}");
    assert!(
        lines[2][at..].starts_with("admin.apikey.create"),
        "{online}"
    );
    let json = ok(&[
        "audit",
        "tail",
        "-n",
        "1",
        "--json",
        "--socket",
        socket.to_str().unwrap(),
        "--api-key-file",
        kf,
    ]);
    assert!(json.contains(r#""seq":2"#), "{json}");
    let verify = ok(&[
        "audit",
        "verify",
        "--socket",
        socket.to_str().unwrap(),
        "--api-key-file",
        kf,
    ]);
    assert!(verify.contains("2 entries, chain intact"), "{verify}");

    // `audit archive` too goes through the daemon, which writes the file while it serves.
    let file = dir.path().join("audit-archive.bin");
    let file = file.to_str().unwrap();
    let archived = ok(&archive_args(file, data, &["--api-key-file", kf]));
    assert!(archived.contains("archived entries 1..=1"), "{archived}");
    let verify = ok(&["audit", "verify", "--data", data, "--api-key-file", kf]);
    assert!(verify.contains("chain intact"), "{verify}");
    drop(daemon);
    let archive = ok(&["audit", "verify", "--archive", file, "--data", data]);
    assert!(archive.contains("archive OK: 1 entries"), "{archive}");
}

/// `audit archive` moves old entries into a file: the remaining log and the archive both verify,
/// and a tampered archive is detected.
#[test]
fn archive_then_verify_both_and_detect_a_tampered_archive() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    ok(&["init", "--data", data]);
    ok(&[
        "merchant", "add", "890490", "--name", "Shop", "--data", data,
    ]);
    ok(&["keys", "rotate", "--data", data]);
    ok(&["keys", "rotate", "--data", data]);
    ok(&["keys", "rotate", "--data", data]);
    let file = dir.path().join("audit-archive.bin");
    let file = file.to_str().unwrap();
    let out = ok(&archive_args(file, data, &[]));
    assert!(out.contains("archived entries 1..="), "{out}");
    let verify = ok(&["audit", "verify", "--data", data]);
    assert!(verify.contains("chain intact"), "{verify}");
    let archive = ok(&["audit", "verify", "--archive", file, "--data", data]);
    assert!(archive.contains("archive OK"), "{archive}");
    let tail = ok(&["audit", "tail", "--data", data]);
    assert!(!tail.contains("admin.merchant.add"), "{tail}");
    assert!(tail.contains("key.rotate"), "{tail}");
    // A second archive file may not overwrite the first.
    assert!(!run(&archive_args(file, data, &[])).status.success());

    let mut bytes = std::fs::read(file).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x01;
    std::fs::write(file, &bytes).unwrap();
    let out = run(&["audit", "verify", "--archive", file, "--data", data]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("archive BROKEN"));
}
