//! `cardvault audit tail|verify` end to end: offline admin actions show up, `verify` passes on an
//! intact log and exits 1 naming the first bad entry once an entry is edited on disk.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;

use std::process::Output;

use common::bin;

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
