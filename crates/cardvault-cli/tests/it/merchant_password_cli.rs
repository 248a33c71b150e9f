//! `cardvault merchant password <id>` end to end: the password from a file, from
//! CARDVAULT_MERCHANT_PASSWORD, never from argv; offline on --data and through a running daemon;
//! refusals are one clear line without the password. Checked by logging in on the vault itself.

use std::{
    path::Path,
    process::{Child, Output, Stdio},
    time::{Duration, Instant},
};

use cardvault::{
    KeySource, MerchantId, Passphrase, Vault, VaultError, VaultOptions,
    gateway::{Gateway, GatewayError, MerchantPassword},
};
use vault_client::Client;

use crate::common::{bin, runtime};

const PASS: &str = "correct horse battery staple";
const SECRET: &str = "u16q9rZ02bW0jqTjxH8t";

fn run(args: &[&str], env_password: Option<&str>) -> Output {
    let mut c = bin();
    c.env_remove("CARDVAULT_MERCHANT_PASSWORD")
        .env("CARDVAULT_PASSPHRASE", PASS)
        .args(args);
    if let Some(p) = env_password {
        c.env("CARDVAULT_MERCHANT_PASSWORD", p);
    }
    c.output().unwrap()
}

fn ok(args: &[&str], env_password: Option<&str>) -> String {
    let out = run(args, env_password);
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The refusal's stderr; the command must have failed.
fn refused(args: &[&str], env_password: Option<&str>) -> String {
    let out = run(args, env_password);
    assert!(!out.status.success(), "{args:?} succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A refusal past argument parsing: one line on stderr.
fn refused_line(args: &[&str], env_password: Option<&str>) -> String {
    let e = refused(args, env_password);
    assert_eq!(e.trim().lines().count(), 1, "one line: {e}");
    e
}

fn init(dir: &Path) -> String {
    let data = dir.join("data").to_str().unwrap().to_owned();
    ok(&["init", "--data", &data], None);
    ok(
        &[
            "merchant", "add", "890490", "--name", "Shop", "--data", &data,
        ],
        None,
    );
    data
}

/// Logs in on the (closed) vault directly: `Ok` when `password` is the merchant's.
fn login(data: &str, password: &str) -> Result<(), VaultError> {
    let key = KeySource::Passphrase(Passphrase::new(PASS.into()).unwrap());
    let vault = Gateway::new(Vault::open(data, &key, VaultOptions::default()).unwrap());
    vault
        .login(
            MerchantId::new(890_490).unwrap(),
            &MerchantPassword::new(password.into()).unwrap(),
        )
        .map_err(|e| match e {
            GatewayError::Vault(e) => e,
            other => panic!("unexpected {other:?}"),
        })
}

fn write_file(path: &Path, text: &str) -> String {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn offline_from_a_file_or_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let data = init(dir.path());
    let file = write_file(&dir.path().join("pw"), &format!("{SECRET}\n"));

    let out = ok(
        &[
            "merchant",
            "password",
            "890490",
            "--password-file",
            &file,
            "--data",
            &data,
        ],
        None,
    );
    assert!(out.contains("merchant 890490"), "{out}");
    assert!(!out.contains(SECRET));
    login(&data, SECRET).unwrap();
    assert!(matches!(
        login(&data, &format!("{SECRET}\n")),
        Err(VaultError::Unauthorized)
    ));

    ok(
        &["merchant", "password", "890490", "--data", &data],
        Some("from-the-env"),
    );
    login(&data, "from-the-env").unwrap();
    assert!(matches!(
        login(&data, SECRET),
        Err(VaultError::Unauthorized)
    ));

    // Audited, without the password.
    let tail = ok(&["audit", "tail", "--data", &data], None);
    assert!(tail.contains("admin.merchant.password"), "{tail}");
    assert!(!tail.contains("from-the-env"));

    // An operator clears a lockout (offline here; through the daemon when one runs). Audited.
    let out = ok(&["merchant", "unlock", "890490", "--data", &data], None);
    assert!(out.contains("890490"), "{out}");
    let tail = ok(&["audit", "tail", "--data", &data], None);
    assert!(tail.contains("admin.merchant.unlock"), "{tail}");
}

#[test]
fn refusals_are_clear_and_never_echo_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let data = init(dir.path());
    let file = write_file(&dir.path().join("pw"), SECRET);

    // Never a plain argument: no positional password, no --password option.
    let e = refused(
        &["merchant", "password", "890490", SECRET, "--data", &data],
        None,
    );
    assert!(e.contains("unexpected argument"), "{e}");
    let e = refused(
        &[
            "merchant",
            "password",
            "890490",
            "--password",
            SECRET,
            "--data",
            &data,
        ],
        None,
    );
    assert!(e.contains("unexpected argument"), "{e}");

    // No source and no terminal.
    let e = refused_line(&["merchant", "password", "890490", "--data", &data], None);
    assert!(
        e.contains("--password-file") && e.contains("CARDVAULT_MERCHANT_PASSWORD"),
        "{e}"
    );

    // Two sources.
    let e = refused_line(
        &[
            "merchant",
            "password",
            "890490",
            "--password-file",
            &file,
            "--data",
            &data,
        ],
        Some(SECRET),
    );
    assert!(e.contains("exactly one"), "{e}");

    // Too long, empty.
    let long = "L".repeat(65);
    let e = refused_line(
        &["merchant", "password", "890490", "--data", &data],
        Some(&long),
    );
    assert!(e.contains("at most 64"), "{e}");
    assert!(!e.contains(&long));
    let empty = write_file(&dir.path().join("empty"), "\n");
    let e = refused_line(
        &[
            "merchant",
            "password",
            "890490",
            "--password-file",
            &empty,
            "--data",
            &data,
        ],
        None,
    );
    assert!(e.contains("required"), "{e}");

    // Unknown and malformed merchants.
    let e = refused_line(
        &["merchant", "password", "777", "--data", &data],
        Some(SECRET),
    );
    assert!(e.contains("merchantId") && !e.contains(SECRET), "{e}");
    let e = refused_line(
        &["merchant", "password", "12ab", "--data", &data],
        Some(SECRET),
    );
    assert!(e.contains("merchant id"), "{e}");

    // Nothing was set.
    assert!(matches!(
        login(&data, SECRET),
        Err(VaultError::Unauthorized)
    ));
}

/// A running `cardvault serve` (killed on drop).
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn through_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let data = init(dir.path());
    let kf = dir.path().join("admin-key").to_str().unwrap().to_owned();
    ok(
        &[
            "apikey",
            "create",
            "--operator",
            "--scopes",
            "admin",
            "--out",
            &kf,
            "--data",
            &data,
        ],
        None,
    );
    let socket = dir.path().join("run").join("cardvault.sock");
    let daemon = Daemon(
        bin()
            .args([
                "serve",
                "--data",
                &data,
                "--socket",
                socket.to_str().unwrap(),
                // Exercised here: accepted and applied at start.
                "--durability",
                "flush",
                "--login-hashes",
                "1",
            ])
            .env("CARDVAULT_PASSPHRASE", PASS)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let rt = runtime();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !rt.block_on(async {
        match Client::connect(&socket, None).await {
            Ok(c) => c.health().await.is_ok(),
            Err(_) => false,
        }
    }) {
        assert!(Instant::now() < deadline, "daemon did not start");
        std::thread::sleep(Duration::from_millis(50));
    }

    // Found through --data (the daemon holds the directory); no vault passphrase needed.
    let file = write_file(&dir.path().join("pw"), SECRET);
    let out = bin()
        .args([
            "merchant",
            "password",
            "890490",
            "--password-file",
            &file,
            "--data",
            &data,
            "--api-key-file",
            &kf,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The daemon's refusals come back as one clear line.
    let out = bin()
        .env("CARDVAULT_MERCHANT_PASSWORD", SECRET)
        .args([
            "merchant",
            "password",
            "777",
            "--socket",
            socket.to_str().unwrap(),
            "--api-key-file",
            &kf,
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("merchantId") && !e.contains(SECRET), "{e}");

    drop(daemon);
    login(&data, SECRET).unwrap();
}
