//! The `cardvault` binary end to end: help, init, offline admin, key errors, serve + client +
//! SIGTERM, admin through the daemon. Vaults use the test-only fast KDF
//! (`CARDVAULT_TEST_FAST_KDF=1`).

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use vault_client::{ApiKey, Client};
use vault_wire::{CardInput, RevealRequest, TokenizeRequest};

use crate::common::{bin, runtime};

const PASS: &str = "correct horse battery staple";

fn run(args: &[&str], passphrase: Option<&str>) -> Output {
    let mut c = bin();
    c.args(args);
    if let Some(p) = passphrase {
        c.env("CARDVAULT_PASSPHRASE", p);
    }
    c.output().unwrap()
}

fn ok(args: &[&str]) -> String {
    let out = run(args, Some(PASS));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn init(dir: &Path) -> String {
    let data = dir.join("data");
    let data = data.to_str().unwrap().to_owned();
    ok(&["init", "--data", &data]);
    ok(&[
        "merchant",
        "add",
        "890490",
        "--name",
        "Test merchant",
        "--data",
        &data,
    ]);
    data
}

#[test]
fn help_everywhere() {
    let commands: &[&[&str]] = &[
        &[],
        &["init"],
        &["serve"],
        &["merchant"],
        &["merchant", "add"],
        &["merchant", "list"],
        &["merchant", "password"],
        &["apikey"],
        &["apikey", "create"],
        &["apikey", "list"],
        &["apikey", "revoke"],
        &["terminal"],
        &["terminal", "add"],
        &["terminal", "list"],
        &["keys"],
        &["keys", "status"],
        &["keys", "rotate"],
        &["keys", "rewrap"],
        &["keys", "retire"],
        &["keys", "rekey"],
        &["sweep"],
        &["stats"],
        &["bench"],
    ];
    for cmd in commands {
        let mut args = cmd.to_vec();
        args.push("--help");
        let out = run(&args, None);
        assert!(out.status.success(), "{args:?}");
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.contains("Usage: cardvault"), "{args:?}: {text}");
    }
}

#[test]
fn no_arguments_is_a_usage_error() {
    assert_eq!(run(&[], None).status.code(), Some(2));
    assert_eq!(run(&["merchant", "list"], None).status.code(), Some(2));
}

#[test]
fn offline_admin() {
    let dir = tempfile::tempdir().unwrap();
    let data = init(dir.path());
    let d = data.as_str();

    assert!(ok(&["merchant", "list", "--data", d]).contains("Test merchant"));

    let key_file = dir.path().join("key");
    let kf = key_file.to_str().unwrap();
    ok(&[
        "apikey",
        "create",
        "--merchant",
        "890490",
        "--scopes",
        "tokenize,reveal",
        "--label",
        "shop",
        "--out",
        kf,
        "--data",
        d,
    ]);
    let key = std::fs::read_to_string(&key_file).unwrap();
    assert!(key.starts_with("cvk_"));
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&key_file).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    // Printed on stdout when there is no --out.
    let printed = ok(&[
        "apikey",
        "create",
        "--operator",
        "--scopes",
        "admin",
        "--data",
        d,
    ]);
    assert!(printed.trim().starts_with("cvk_"));
    // A merchant key cannot hold admin: a clear refusal, and no key is created.
    let out = bin()
        .args([
            "apikey",
            "create",
            "--merchant",
            "890490",
            "--scopes",
            "tokenize,admin",
            "--data",
            d,
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--operator"), "{}", stderr(&out));

    let list = ok(&["apikey", "list", "--data", d]);
    assert!(list.contains("tokenize,reveal") && list.contains("shop"));
    assert!(list.contains("KIND") && list.contains("operator"), "{list}");
    assert_eq!(list.lines().count(), 3, "{list}");
    assert!(!list.contains(key.trim()), "the secret is never listed");
    let id = key.trim().split('_').nth(1).unwrap();
    ok(&["apikey", "revoke", id, "--data", d]);
    assert!(ok(&["apikey", "list", "--data", d]).contains("revoked"));

    ok(&[
        "terminal",
        "add",
        "term-0001",
        "--merchant",
        "890490",
        "--data",
        d,
    ]);
    assert!(ok(&["terminal", "list", "--data", d]).contains("term-0001"));

    assert!(ok(&["keys", "rotate", "--data", d]).contains("data key 2 is now current"));
    let status = ok(&["keys", "status", "--data", d]);
    assert!(status.contains("decrypt-only") && status.contains("current"));
    ok(&["keys", "rewrap", "--retire", "--data", d]);
    ok(&["sweep", "--data", d]);
    let stats = ok(&["stats", "--json", "--data", d]);
    let v: serde_json::Value = serde_json::from_str(&stats).unwrap();
    assert_eq!(v["current_dek"], 2);
    assert!(ok(&["stats", "--data", d]).contains("records"));
}

#[test]
fn invalid_admin_input_is_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = init(dir.path());
    let out = run(
        &["merchant", "add", "12ab", "--name", "x", "--data", &data],
        Some(PASS),
    );
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.starts_with("error: ") && err.lines().count() == 1,
        "{err}"
    );
    let out = run(
        &[
            "apikey",
            "create",
            "--merchant",
            "890490",
            "--scopes",
            "everything",
            "--data",
            &data,
        ],
        Some(PASS),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("scopes"));
}

#[test]
fn root_on_the_service_users_vault_leaves_every_file_to_that_user() {
    use std::os::unix::fs::MetadataExt;
    if !crate::common::is_root() {
        eprintln!("SKIPPED: needs root, to give the vault to another user");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = init(dir.path());
    // The vault given to the service user (here nobody), as operations.md sets it up.
    let nobody = 65534;
    let owned_by = |uid: u32| {
        let mut all = vault_testkit::files::walk_with_dirs(Path::new(&data));
        all.push(Path::new(&data).to_path_buf());
        for f in &all {
            assert_eq!(
                std::fs::symlink_metadata(f).unwrap().uid(),
                uid,
                "{}",
                f.display()
            );
        }
        all.len()
    };
    for f in vault_testkit::files::walk_with_dirs(Path::new(&data)) {
        std::os::unix::fs::lchown(&f, Some(nobody), Some(nobody)).unwrap();
    }
    std::os::unix::fs::lchown(&data, Some(nobody), Some(nobody)).unwrap();
    let before = owned_by(nobody);
    // Root's files the vault's owner links into the vault (a hard link, a symbolic link) must
    // never be handed to that owner.
    let outside = dir.path().join("root-owned");
    std::fs::write(&outside, "root's").unwrap();
    let planted_hard = Path::new(&data).join("planted-hard");
    let planted_soft = Path::new(&data).join("planted-soft");
    std::fs::hard_link(&outside, &planted_hard).unwrap();
    std::os::unix::fs::symlink(&outside, &planted_soft).unwrap();
    // Offline commands as root (who holds the key file) work, and what they write goes to the
    // vault's owner.
    ok(&[
        "merchant", "add", "123456", "--name", "Second", "--data", &data,
    ]);
    let listed = ok(&["merchant", "list", "--data", &data]);
    assert!(listed.contains("123456"), "{listed}");
    // `--data` naming a symbolic link to the vault works as the vault's own path does.
    let link = dir.path().join("vault-link");
    std::os::unix::fs::symlink(&data, &link).unwrap();
    let listed = ok(&["merchant", "list", "--data", link.to_str().unwrap()]);
    assert!(listed.contains("123456"), "{listed}");
    let backup = dir.path().join("b.cvbk");
    ok(&["backup", "--out", backup.to_str().unwrap(), "--data", &data]);
    assert_eq!(
        std::fs::metadata(&outside).unwrap().uid(),
        0,
        "a linked file was given away"
    );
    std::fs::remove_file(&planted_hard).unwrap();
    std::fs::remove_file(&planted_soft).unwrap();
    assert!(owned_by(nobody) >= before);
    // A daemon runs as the vault's user: root is refused, with the way out.
    let out = run(
        &["serve", "--data", &data, "--socket", "/nonexistent/s.sock"],
        Some(PASS),
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let e = stderr(&out);
    assert!(
        e.contains("belongs to uid 65534") && e.contains("-- cardvault ..."),
        "{e}"
    );
    owned_by(nobody);
}

#[test]
fn init_refuses_an_existing_vault() {
    let dir = tempfile::tempdir().unwrap();
    let data = init(dir.path());
    let out = run(&["init", "--data", &data], Some(PASS));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("already exists"), "{}", stderr(&out));
}

#[test]
fn wrong_passphrase_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let data = init(dir.path());
    let out = run(&["stats", "--data", &data], Some("not the passphrase"));
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("wrong passphrase"), "{err}");
    assert!(!err.contains("not the passphrase"));
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn no_key_and_no_terminal_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = run(&["init", "--data", data.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("CARDVAULT_PASSPHRASE"));
}

#[test]
fn passphrase_is_never_a_plain_argument() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = data.to_str().unwrap();
    for flag in ["--passphrase", "--key", "--password"] {
        let out = run(&["init", "--data", d, flag, PASS], None);
        assert_eq!(out.status.code(), Some(2), "{flag} must be refused");
        assert!(!data.exists());
    }
}

#[test]
fn key_file_and_passphrase_file() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("vault.key");
    std::fs::write(&key, "ab".repeat(32) + "\n").unwrap();
    let data = dir.path().join("a");
    let (kf, d) = (key.to_str().unwrap(), data.to_str().unwrap());
    let out = run(&["init", "--data", d, "--key-file", kf], None);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(&["stats", "--data", d, "--key-file", kf], None);
    assert!(out.status.success(), "{}", stderr(&out));

    let pass = dir.path().join("pass");
    std::fs::write(&pass, format!("{PASS}\n")).unwrap();
    let data = dir.path().join("b");
    let (pf, d) = (pass.to_str().unwrap(), data.to_str().unwrap());
    let out = run(&["init", "--data", d, "--passphrase-file", pf], None);
    assert!(out.status.success(), "{}", stderr(&out));
    // The same passphrase through the environment opens it.
    ok(&["stats", "--data", d]);
    // Two sources at once are refused.
    let out = run(&["stats", "--data", d, "--passphrase-file", pf], Some(PASS));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("more than one key source"));
}

/// A running `cardvault serve`, stopped with SIGTERM.
struct Daemon {
    child: Child,
    socket: PathBuf,
}

impl Daemon {
    fn start(data: &str, socket: &Path) -> Self {
        let mut c = bin();
        c.args([
            "serve",
            "--data",
            data,
            "--socket",
            socket.to_str().unwrap(),
        ])
        .env("CARDVAULT_PASSPHRASE", PASS)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
        let child = c.spawn().unwrap();
        let d = Self {
            child,
            socket: socket.to_path_buf(),
        };
        d.wait_ready();
        d
    }

    fn wait_ready(&self) {
        let rt = runtime();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let up = rt.block_on(async {
                match Client::connect(&self.socket, None).await {
                    Ok(c) => c.health().await.is_ok(),
                    Err(_) => false,
                }
            });
            if up {
                return;
            }
            assert!(Instant::now() < deadline, "daemon did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn terminate(mut self) -> (Option<i32>, String) {
        let pid = self.child.id().to_string();
        let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(killed.success());
        let mut log = String::new();
        if let Some(mut err) = self.child.stderr.take() {
            // Reads until the daemon exits and closes its end.
            std::io::Read::read_to_string(&mut err, &mut log).unwrap();
        }
        let status = self.child.wait().unwrap();
        (status.code(), log)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn serve_client_admin_and_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let data = init(dir.path());
    let key_file = dir.path().join("merchant-key");
    let mkf = key_file.to_str().unwrap().to_owned();
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
    let kf = dir.path().join("admin-key").to_str().unwrap().to_owned();
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
    let daemon = Daemon::start(&data, &socket);

    // A request through the client.
    let rt = runtime();
    let token = rt.block_on(async {
        let key = ApiKey::from_file(&key_file).unwrap().unwrap();
        let client = Client::connect(&socket, Some(&key)).await.unwrap();
        let t = client
            .tokenize(&TokenizeRequest::card(CardInput::new(
                "4242424242424242",
                "2802",
            )))
            .await
            .unwrap();
        assert_eq!(t.card.masked_pan, "424242****4242");
        let card = client
            .reveal(&t.token, &RevealRequest::default())
            .await
            .unwrap();
        assert_eq!(card.pan, "4242424242424242");
        t.token
    });

    // Admin through the daemon: found from --data (the daemon holds the directory) ...
    let via_data = ok(&[
        "merchant",
        "add",
        "123456",
        "--name",
        "Second",
        "--data",
        &data,
        "--api-key-file",
        &kf,
    ]);
    assert!(via_data.contains("added merchant 123456"), "{via_data}");
    // ... or named with --socket; no passphrase needed either way.
    let sock = socket.to_str().unwrap();
    let out = bin()
        .args(["merchant", "list", "--socket", sock, "--api-key-file", &kf])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let list = String::from_utf8(out.stdout).unwrap();
    assert!(
        list.contains("Second") && list.contains("Test merchant"),
        "{list}"
    );
    let stats = ok(&["stats", "--json", "--socket", sock, "--api-key-file", &kf]);
    let v: serde_json::Value = serde_json::from_str(&stats).unwrap();
    assert_eq!(v["records"], 1);
    ok(&[
        "terminal",
        "add",
        "term-0002",
        "--merchant",
        "123456",
        "--socket",
        sock,
        "--api-key-file",
        &kf,
    ]);
    ok(&["keys", "rotate", "--socket", sock, "--api-key-file", &kf]);
    ok(&["keys", "rewrap", "--socket", sock, "--api-key-file", &kf]);
    let created = ok(&[
        "apikey",
        "create",
        "--merchant",
        "123456",
        "--scopes",
        "tokenize",
        "--socket",
        sock,
        "--api-key-file",
        &kf,
    ]);
    let id = created.trim().split('_').nth(1).unwrap().to_owned();
    ok(&[
        "apikey",
        "revoke",
        &id,
        "--socket",
        sock,
        "--api-key-file",
        &kf,
    ]);
    assert!(ok(&["apikey", "list", "--socket", sock, "--api-key-file", &kf]).contains("revoked"));

    // Without an admin key, a clear refusal.
    let out = bin().args(["stats", "--socket", sock]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("operator key"), "{}", stderr(&out));
    // A merchant key is refused on admin routes.
    let out = bin()
        .args(["stats", "--socket", sock, "--api-key-file", &mkf])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));

    // A short bench run against the daemon.
    let out = bin()
        .args([
            "bench",
            "--socket",
            sock,
            "--api-key-file",
            &mkf,
            "--op",
            "mixed",
            "-c",
            "4",
            "-n",
            "200",
            "--pool",
            "50",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ok"], 200, "{report}");
    assert_eq!(report["errors"], 0, "{report}");

    // A group/world-readable API key file is used, with a warning.
    let loose = dir.path().join("loose-key");
    std::fs::copy(&kf, &loose).unwrap();
    std::fs::set_permissions(&loose, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let out = bin()
        .args(["merchant", "list", "--socket", sock])
        .args(["--api-key-file", loose.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("readable by group or others"),
        "{}",
        stderr(&out)
    );

    // Revoking an unknown key through the daemon names an API key too.
    let out = bin()
        .args(["apikey", "revoke", "0123456789abcdef", "--socket", sock])
        .args(["--api-key-file", &kf])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no API key with id 0123456789abcdef"),
        "{}",
        stderr(&out)
    );

    let (code, log) = daemon.terminate();
    assert_eq!(code, Some(0), "{log}");
    assert!(!socket.exists(), "socket removed at exit");
    assert!(!log.contains("4242424242424242"));
    // Successful reveals are in the audit log, not one info line each.
    assert!(
        !log.lines().any(|l| l.contains("revealed")),
        "a successful reveal was logged at info: {log}"
    );

    // Offline again: the token survived the restart.
    let out = ok(&["stats", "--json", "--data", &data]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(v["records"].as_u64().unwrap() >= 51, "{out}");
    drop(token);
}

#[test]
fn listen_refuses_non_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let data = init(dir.path());
    let socket = dir.path().join("s").join("sock");
    let out = run(
        &[
            "serve",
            "--data",
            &data,
            "--socket",
            socket.to_str().unwrap(),
            "--listen",
            "0.0.0.0:8080",
        ],
        Some(PASS),
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("loopback"), "{}", stderr(&out));
}

#[test]
fn bench_inprocess() {
    let out = bin()
        .args([
            "bench",
            "--inprocess",
            "--op",
            "batch",
            "-c",
            "2",
            "-n",
            "4",
            "--batch-size",
            "10",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["mode"], "library");
    assert_eq!(report["ok"], 4);
    assert!(report["cards_per_sec"].as_f64().unwrap() > 0.0);
}

/// Every command runs with core dumps off (it may hold a vault key, a password or an API key),
/// checked through the test hook and, for an offline command blocked reading its passphrase from
/// a pipe, through /proc/<pid>/limits.
#[test]
fn every_command_runs_with_core_dumps_off() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = data.to_str().unwrap();
    for args in [
        &["init", "--data", d][..],
        &["stats", "--data", d],
        &["merchant", "password", "890490", "--data", d],
        &["audit", "verify", "--data", d],
        &["restore", "--from", "/nonexistent", "--data", d],
    ] {
        let out = bin()
            .args(args)
            .env("CARDVAULT_TEST_PRINT_HARDENING", "1")
            .output()
            .unwrap();
        let err = stderr(&out);
        assert!(
            err.contains("hardening: core-limit=0/0 dumpable=false"),
            "{args:?}: {err}"
        );
    }

    let data = init(dir.path());
    let fifo = dir.path().join("passphrase.fifo");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    // Start with a core limit the command must lower (the soft limit up to the hard one).
    let mut child = Command::new("sh")
        .args([
            "-c",
            r#"ulimit -S -c "$(ulimit -H -c)" 2>/dev/null; exec "$0" "$@""#,
            env!("CARGO_BIN_EXE_cardvault"),
            "stats",
            "--data",
            &data,
            "--passphrase-file",
            fifo.to_str().unwrap(),
        ])
        .env("CARDVAULT_TEST_FAST_KDF", "1")
        .env_remove("CARDVAULT_PASSPHRASE")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let limits = format!("/proc/{}/limits", child.id());
    let deadline = Instant::now() + Duration::from_secs(20);
    let (hardened, last) = loop {
        let last = std::fs::read_to_string(&limits).unwrap_or_default();
        let core = last
            .lines()
            .find(|l| l.starts_with("Max core file size"))
            .map(|l| l.split_whitespace().skip(4).take(2).collect::<Vec<_>>());
        if core.as_deref() == Some(&["0", "0"][..]) {
            break (true, last);
        }
        if Instant::now() > deadline {
            break (false, last);
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    if !hardened || child.try_wait().unwrap().is_some() {
        let _ = child.kill();
        let _ = child.wait();
        panic!("core dumps still allowed while unlocking (or the command ended early): {last}");
    }
    // The child is blocked opening the pipe: give it the passphrase and let it finish.
    std::fs::write(&fifo, format!("{PASS}\n")).unwrap();
    assert!(child.wait().unwrap().success());
}

#[test]
fn init_refuses_a_non_empty_directory_and_touches_nothing() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("lib");
    std::fs::create_dir(&target).unwrap();
    std::fs::write(target.join("someone-elses-file"), "x").unwrap();
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = run(&["init", "--data", target.to_str().unwrap()], Some(PASS));
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("is not empty and holds no vault"), "{err}");
    let mode = std::fs::metadata(&target).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o755, "init changed the directory's mode");
    let names: Vec<_> = std::fs::read_dir(&target)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["someone-elses-file"]);
}

#[test]
fn init_refuses_a_weak_passphrase() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = data.to_str().unwrap();
    for (weak, why) in [
        ("hunter2", "too short"),
        ("password1234", "too easy to guess"),
        ("qwertyuiop123", "too easy to guess"),
    ] {
        let out = run(&["init", "--data", d], Some(weak));
        assert_eq!(out.status.code(), Some(1), "{weak} accepted");
        let err = stderr(&out);
        assert!(err.contains(why), "{weak}: {err}");
        assert!(
            !err.contains(weak),
            "the message quotes the passphrase: {err}"
        );
        assert!(!data.exists(), "a refused init created the directory");
    }
    // A key file needs no strength check; a strong passphrase passes.
    ok(&["init", "--data", d]);
}

#[test]
fn the_test_kdf_is_loud_and_weak_kdf_parameters_need_it() {
    let dir = tempfile::tempdir().unwrap();
    let fast = dir.path().join("fast");
    let out = run(&["init", "--data", fast.to_str().unwrap()], Some(PASS));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("WARNING: TEST-ONLY KEY DERIVATION"),
        "{}",
        stderr(&out)
    );

    let weak = dir.path().join("weak");
    let out = bin()
        .env_remove("CARDVAULT_TEST_FAST_KDF")
        .env("CARDVAULT_PASSPHRASE", PASS)
        .args(["init", "--data", weak.to_str().unwrap()])
        .args(["--kdf-memory-kib", "64", "--kdf-time", "1"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("below the floor"), "{}", stderr(&out));
    assert!(!weak.exists());
}

#[test]
fn an_empty_passphrase_variable_is_named_as_empty() {
    let dir = tempfile::tempdir().unwrap();
    let data = init(dir.path());
    let out = run(&["stats", "--data", &data], Some(""));
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("CARDVAULT_PASSPHRASE is set but empty"),
        "{err}"
    );
}

/// Lines of `apikey list` after its header.
fn api_key_rows(data: &str) -> Vec<String> {
    ok(&["apikey", "list", "--data", data])
        .lines()
        .skip(1)
        .map(str::to_owned)
        .collect()
}

#[test]
fn apikey_out_is_checked_before_the_key_exists() {
    let dir = tempfile::tempdir().unwrap();
    let data = init(dir.path());
    let existing = dir.path().join("existing");
    std::fs::write(&existing, "keep").unwrap();
    let missing = dir.path().join("no-such-dir").join("key");
    for (out_file, why) in [
        (&existing, "not overwriting"),
        (&missing, "directory does not exist"),
    ] {
        let out = run(
            &[
                "apikey",
                "create",
                "--merchant",
                "890490",
                "--scopes",
                "tokenize",
                "--out",
                out_file.to_str().unwrap(),
                "--data",
                &data,
            ],
            Some(PASS),
        );
        assert_eq!(out.status.code(), Some(1));
        assert!(stderr(&out).contains(why), "{}", stderr(&out));
        assert_eq!(
            api_key_rows(&data),
            Vec::<String>::new(),
            "a key was left behind"
        );
    }
    assert_eq!(std::fs::read_to_string(&existing).unwrap(), "keep");
}

#[test]
fn admin_messages_say_what_is_true() {
    let dir = tempfile::tempdir().unwrap();
    let data = init(dir.path());

    // Revoking an unknown API key names an API key, not a token.
    let out = run(
        &["apikey", "revoke", "0123456789abcdef", "--data", &data],
        Some(PASS),
    );
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("no API key with id 0123456789abcdef"), "{err}");
    assert!(!err.contains("token"), "{err}");

    // stats: the current key's id and how many keys are held, not "5 (of 1)".
    ok(&["keys", "rotate", "--data", &data]);
    ok(&["keys", "rewrap", "--retire", "--data", &data]);
    let stats = ok(&["stats", "--data", &data]);
    assert!(
        stats.contains("current DEK   2 (1 data key held)"),
        "{stats}"
    );
    assert!(!stats.contains("(of"), "{stats}");

    // No daemon at the socket: say it may not be running.
    let key = dir.path().join("key");
    std::fs::write(&key, "cvk_0123456789abcdef_x\n").unwrap();
    let out = run(
        &[
            "stats",
            "--socket",
            dir.path().join("absent.sock").to_str().unwrap(),
            "--api-key-file",
            key.to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("is the daemon running?"), "{err}");
}

#[test]
fn a_socket_this_user_may_not_reach_says_how_to_be_let_in() {
    use std::os::unix::{fs::PermissionsExt, process::CommandExt};
    if !crate::common::is_root() {
        eprintln!("SKIPPED: needs root, to run the command as another user");
        return;
    }
    // A listening socket in a directory only root may enter, and a key file anyone may read.
    let private = tempfile::tempdir().unwrap();
    let socket = private.path().join("cardvault.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let open = tempfile::tempdir().unwrap();
    std::fs::set_permissions(open.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let key = open.path().join("key");
    std::fs::write(&key, "cvk_0123456789abcdef_x\n").unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = bin()
        .args(["stats", "--socket", socket.to_str().unwrap()])
        .args(["--api-key-file", key.to_str().unwrap()])
        .current_dir(open.path())
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("not open to this user") && err.contains("--allow-uid"),
        "{err}"
    );
}

/// A `serve --dev` child whose stderr is collected by a thread.
pub(crate) struct DevDaemon {
    child: Child,
    log: std::sync::Arc<std::sync::Mutex<String>>,
}

impl DevDaemon {
    fn start(socket: &Path) -> Self {
        Self::start_with_env(socket, &[])
    }

    /// `serve --dev --socket SOCKET` with `env` set, once its banner is out.
    pub(crate) fn start_with_env(socket: &Path, env: &[(&str, &str)]) -> Self {
        let mut child = bin()
            .args(["serve", "--dev", "--socket", socket.to_str().unwrap()])
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let mut err = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = std::io::Read::read(&mut err, &mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let d = Self { child, log };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !d.log().contains("Stop with Ctrl-C") {
            assert!(Instant::now() < deadline, "dev daemon did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        d
    }

    pub(crate) fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// The throwaway vault's data directory, from the banner.
    fn data_dir(&self) -> String {
        let log = self.log();
        let rest = log.split("throwaway vault in ").nth(1).unwrap();
        rest.split(" (deleted on exit)").next().unwrap().to_owned()
    }
}

impl Drop for DevDaemon {
    /// SIGTERM first, so the daemon deletes its throwaway vault (a killed one leaves it, key
    /// included, in the temporary directory); SIGKILL if it has not exited within 10 s.
    fn drop(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_second_dev_daemon_refuses_first_and_touches_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("dev").join("cardvault.sock");
    let first = DevDaemon::start(&socket);
    let key_file = socket.with_file_name("api-key");
    let password_file = socket.with_file_name("merchant-password");
    let key = std::fs::read_to_string(&key_file).unwrap();
    let password = std::fs::read_to_string(&password_file).unwrap();

    let out = bin()
        .args(["serve", "--dev", "--socket", socket.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("already listening"), "{err}");
    assert_eq!(std::fs::read_to_string(&key_file).unwrap(), key);
    assert_eq!(std::fs::read_to_string(&password_file).unwrap(), password);

    // The first one still serves, and `--data` on its vault finds its socket (not a guess).
    let operator_file = socket.with_file_name("operator-key");
    let kf = operator_file.to_str().unwrap();
    let stats = ok(&[
        "stats",
        "--json",
        "--data",
        &first.data_dir(),
        "--api-key-file",
        kf,
    ]);
    assert!(stats.contains("records"), "{stats}");

    // Stopped (SIGTERM), it deletes its throwaway vault, key file included.
    let vault = PathBuf::from(first.data_dir());
    let throwaway = vault.parent().unwrap().to_owned();
    assert!(vault.exists());
    drop(first);
    assert!(
        !throwaway.exists(),
        "{} is left behind",
        throwaway.display()
    );
}

#[test]
fn keys_rekey_checks_the_new_passphrase_first() {
    let dir = tempfile::tempdir().unwrap();
    let data = init(dir.path());
    let rekey = |new: &str| {
        bin()
            .args(["keys", "rekey", "--data", &data])
            .env("CARDVAULT_PASSPHRASE", PASS)
            .env("CARDVAULT_NEW_PASSPHRASE", new)
            .output()
            .unwrap()
    };
    let out = rekey("hunter2");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("too short"), "{}", stderr(&out));
    ok(&["stats", "--data", &data]);

    let new = "plume ferry quartz lantern velvet";
    let out = rekey(new);
    assert!(out.status.success(), "{}", stderr(&out));
    let old = run(&["stats", "--data", &data], Some(PASS));
    assert!(
        stderr(&old).contains("wrong passphrase"),
        "{}",
        stderr(&old)
    );
    let out = run(&["stats", "--data", &data], Some(new));
    assert!(out.status.success(), "{}", stderr(&out));
}

/// `serve --dev` writes a merchant key (no `admin`) and an operator key next to the socket; the
/// merchant key tokenizes and sees fingerprints, the operator key administers, and admin
/// commands find the operator key on their own.
#[test]
fn dev_mode_writes_a_merchant_key_and_an_operator_key() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("dev").join("cardvault.sock");
    let child = bin()
        .args(["serve", "--dev", "--socket", socket.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let d = Daemon {
        child,
        socket: socket.clone(),
    };
    d.wait_ready();
    let merchant_key = ApiKey::from_file(dir.path().join("dev").join("api-key"))
        .unwrap()
        .unwrap();
    let operator_file = dir.path().join("dev").join("operator-key");
    assert!(operator_file.exists());
    let rt = runtime();
    rt.block_on(async {
        let c = Client::connect(&socket, Some(&merchant_key)).await.unwrap();
        let t = c
            .tokenize(&TokenizeRequest::card(CardInput::new(
                "4242424242424242",
                "2802",
            )))
            .await
            .unwrap();
        assert!(t.fingerprint.is_some(), "the dev key holds `fingerprint`");
        assert!(
            c.merchants().await.is_err(),
            "a merchant key cannot administer"
        );
    });
    // Admin through the daemon without naming a key: the operator key next to the socket.
    let list = ok(&["apikey", "list", "--socket", socket.to_str().unwrap()]);
    assert!(
        list.contains("operator") && list.contains("merchant"),
        "{list}"
    );
    assert!(!list.contains("admin,"), "{list}");
    let (_code, log) = d.terminate();
    assert!(log.contains("operator-key"), "{log}");
}

/// The admin listings print the same bytes offline and through a daemon holding the same vault
/// (both sides answer with the wire types through one mapping, `vault_daemon::views`).
#[test]
fn listings_are_the_same_offline_and_through_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let data = init(dir.path());
    let kf = dir.path().join("admin-key").to_str().unwrap().to_owned();
    ok(&[
        "apikey",
        "create",
        "--operator",
        "--scopes",
        "admin",
        "--label",
        "ops",
        "--out",
        &kf,
        "--data",
        &data,
    ]);
    ok(&[
        "terminal",
        "add",
        "term-0001",
        "--merchant",
        "890490",
        "--data",
        &data,
    ]);
    ok(&["keys", "rotate", "--data", &data]);
    let listings: [&[&str]; 5] = [
        &["merchant", "list"],
        &["apikey", "list"],
        &["apikey", "list", "--merchant", "890490"],
        &["terminal", "list"],
        &["keys", "status"],
    ];
    let offline: Vec<String> = listings
        .iter()
        .map(|cmd| ok(&[cmd, &["--data", &data][..]].concat()))
        .collect();
    assert!(offline[0].contains("Test merchant"), "{}", offline[0]);
    assert!(
        offline[1].contains("operator") && offline[1].contains("ops"),
        "{}",
        offline[1]
    );
    assert!(offline[3].contains("term-0001"), "{}", offline[3]);
    assert!(offline[4].contains("decrypt-only"), "{}", offline[4]);

    let socket = dir.path().join("run").join("cardvault.sock");
    let daemon = Daemon::start(&data, &socket);
    for (cmd, offline) in listings.iter().zip(&offline) {
        // Without a passphrase: only the daemon can answer.
        let out = run(
            &[cmd, &["--data", &data, "--api-key-file", &kf][..]].concat(),
            None,
        );
        assert!(out.status.success(), "{cmd:?}: {}", stderr(&out));
        assert_eq!(&String::from_utf8(out.stdout).unwrap(), offline, "{cmd:?}");
    }
    let (code, _) = daemon.terminate();
    assert_eq!(code, Some(0));
}

#[test]
fn a_reader_that_goes_away_stops_the_command_without_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let data = init(dir.path());
    // `stats` opens the vault before it prints: by then its stdout has no reader.
    let mut child = bin()
        .args(["stats", "--data", &data])
        .env("CARDVAULT_PASSPHRASE", PASS)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(1), "{stderr}");
}
