//! `--database URL` (or `CARDVAULT_DATABASE_URL`) beside `--data DIR`: every command that takes
//! one takes the other, exactly one of the two is accepted, and the URL's password never shows
//! (errors, `--help`) nor is taken from the command line. Then the commands on real throw-away
//! databases of the local PostgreSQL server (`vault_testkit::postgres::TestDatabase`; a server
//! that cannot be reached fails these tests): `init`, two daemons on one database, offline admin
//! while they serve, backup and restore into another database, and a database that stops
//! accepting connections (503 `database_unavailable` with `Retry-After`, `/health` says so, and
//! the daemon recovers by itself).

use std::process::Output;

use crate::common::{bin, random_key_file};

/// A URL whose password must never be printed (from `CARDVAULT_DATABASE_URL`: a password on
/// the command line is refused).
const URL: &str = "postgres://vault:Hunter2-db-secret@127.0.0.1:1/cardvault_cli_test";
const PASSWORD: &str = "Hunter2-db-secret";
/// How it is shown.
const MASKED: &str = "postgres://vault:***@127.0.0.1:1/cardvault_cli_test";
/// A URL without a password, for the command line.
const PLAIN_URL: &str = "postgres://vault@127.0.0.1:1/cardvault_cli_test";

fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = bin();
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The commands that open a vault by `--data`: the subcommand, and what else it needs to parse.
const VAULT_COMMANDS: &[(&[&str], &[&str])] = &[
    (&["merchant", "list"], &[]),
    (&["merchant", "add"], &["890490", "--name", "Shop"]),
    (&["merchant", "unlock"], &["890490"]),
    (&["merchant", "password"], &["890490"]),
    (&["apikey", "list"], &[]),
    (
        &["apikey", "create"],
        &["--merchant", "890490", "--scopes", "tokenize"],
    ),
    (&["apikey", "revoke"], &["0123456789abcdef"]),
    (&["terminal", "list"], &[]),
    (&["terminal", "add"], &["term-0001", "--merchant", "890490"]),
    (&["keys", "status"], &[]),
    (&["keys", "rotate"], &[]),
    (&["keys", "rewrap"], &[]),
    (&["keys", "retire"], &[]),
    (
        &["keys", "rekey"],
        &["--new-key-file", "/nonexistent/new.key"],
    ),
    (&["sweep"], &[]),
    (&["stats"], &[]),
    (&["audit", "tail"], &[]),
    (&["audit", "verify"], &[]),
    (
        &["audit", "archive"],
        &["--before", "2026-01-01", "--out", "/nonexistent/a"],
    ),
    (&["backup"], &["--out", "/nonexistent/b.cvbk"]),
    (&["init"], &[]),
    (&["serve"], &["--socket", "/nonexistent/s.sock"]),
    (&["restore"], &["--from", "/nonexistent/b.cvbk"]),
];

/// A command of [`VAULT_COMMANDS`] with its arguments, and `more`.
fn command(c: &(&[&'static str], &[&'static str]), more: &[&'static str]) -> Vec<&'static str> {
    c.0.iter().chain(c.1).chain(more).copied().collect()
}

#[test]
fn every_command_that_takes_data_takes_database() {
    for (path, _) in VAULT_COMMANDS {
        let mut args = path.to_vec();
        args.push("--help");
        let out = run(&args, &[]);
        assert!(out.status.success(), "{args:?}: {}", text(&out));
        let help = String::from_utf8_lossy(&out.stdout);
        assert!(help.contains("--data <DIR>"), "{path:?}: {help}");
        assert!(
            help.contains("--database <URL>"),
            "{path:?} has no --database: {help}"
        );
    }
}

#[test]
fn data_and_database_together_are_refused() {
    for c in VAULT_COMMANDS {
        let args = command(
            c,
            &["--data", "/nonexistent/vault", "--database", PLAIN_URL],
        );
        let out = run(&args, &[]);
        let all = text(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {all}");
        assert!(
            all.contains("'--data <DIR>' cannot be used with '--database <URL>'")
                || all.contains("'--database <URL>' cannot be used with '--data <DIR>'"),
            "{args:?}: {all}"
        );
        assert!(!all.contains(PASSWORD), "{args:?}: {all}");
    }
    // The same from the environment (restore takes neither from it).
    for c in VAULT_COMMANDS.iter().filter(|c| c.0 != ["restore"]) {
        let cmd = command(c, &[]);
        let out = run(
            &cmd,
            &[
                ("CARDVAULT_DATA", "/nonexistent/vault"),
                ("CARDVAULT_DATABASE_URL", URL),
            ],
        );
        let all = text(&out);
        assert_eq!(out.status.code(), Some(2), "{cmd:?}: {all}");
        assert!(all.contains("cannot be used with"), "{cmd:?}: {all}");
        assert!(!all.contains(PASSWORD), "{cmd:?}: {all}");
    }
}

#[test]
fn neither_is_refused() {
    for cmd in [
        &["init"][..],
        &["stats"],
        &["merchant", "list"],
        &["restore", "--from", "/b"],
    ] {
        let out = run(cmd, &[]);
        let all = text(&out);
        assert_eq!(out.status.code(), Some(2), "{cmd:?}: {all}");
        assert!(all.contains("required"), "{cmd:?}: {all}");
        assert!(all.contains("--database <URL>"), "{cmd:?}: {all}");
    }
    let out = run(&["serve"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("--database"), "{}", text(&out));
}

/// A key file, so that nothing prompts.
fn key_file(dir: &std::path::Path) -> String {
    random_key_file(&dir.join("vault.key"), 0o600)
}

#[test]
fn the_environment_variable_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let kf = key_file(dir.path());
    for cmd in [
        &["stats", "--key-file", kf.as_str()][..],
        &["merchant", "list", "--key-file", kf.as_str()],
        &["init", "--key-file", kf.as_str()],
        &[
            "serve",
            "--socket",
            "/nonexistent/s.sock",
            "--key-file",
            kf.as_str(),
        ],
    ] {
        let out = run(cmd, &[("CARDVAULT_DATABASE_URL", URL)]);
        let all = text(&out);
        // Parsed (not a usage error): the command ran, and the vault said what it could not do.
        assert_eq!(out.status.code(), Some(1), "{cmd:?}: {all}");
        assert!(!all.contains(PASSWORD), "{cmd:?}: {all}");
        assert!(all.contains(MASKED), "{cmd:?}: {all}");
        // The URL names a port nothing listens on.
        #[cfg(feature = "postgres")]
        assert!(
            all.contains("the database is unavailable: cannot connect to the database server"),
            "{cmd:?}: {all}"
        );
        // One error line, naming the vault with its password masked (`init` may print the
        // test-KDF banner before it).
        let errors: Vec<&str> = all.lines().filter(|l| l.starts_with("error: ")).collect();
        assert_eq!(errors.len(), 1, "{cmd:?}: {all}");
        assert!(errors[0].contains(MASKED), "{cmd:?}: {all}");
    }
}

#[test]
fn help_never_shows_the_url_from_the_environment() {
    for cmd in [
        &["init"][..],
        &["serve"],
        &["stats"],
        &["backup"],
        &["audit", "tail"],
    ] {
        let mut args = cmd.to_vec();
        args.push("--help");
        let out = run(&args, &[("CARDVAULT_DATABASE_URL", URL)]);
        assert!(out.status.success(), "{args:?}");
        let help = text(&out);
        assert!(
            help.contains("[env: CARDVAULT_DATABASE_URL]"),
            "{args:?}: {help}"
        );
        assert!(!help.contains(PASSWORD), "{args:?}: {help}");
        assert!(!help.contains("127.0.0.1:1"), "{args:?}: {help}");
    }
}

#[test]
fn a_malformed_url_is_refused_without_being_echoed() {
    for bad in [
        "/var/lib/cardvault",
        "mysql://vault:Hunter2-db-secret@db/cv",
        "host=db password=Hunter2-db-secret",
    ] {
        let out = run(&["stats", "--database", bad], &[]);
        let all = text(&out);
        assert_eq!(out.status.code(), Some(2), "{bad}: {all}");
        assert!(all.contains("expected a PostgreSQL URL"), "{bad}: {all}");
        assert!(
            !all.contains(PASSWORD) && !all.contains(bad),
            "{bad}: {all}"
        );
    }
}

#[test]
fn serve_on_a_database_needs_a_socket_and_dev_stays_on_a_directory() {
    let out = run(&["serve"], &[("CARDVAULT_DATABASE_URL", URL)]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(2), "{all}");
    assert!(all.contains("--socket <PATH>"), "{all}");
    assert!(!all.contains(PASSWORD), "{all}");

    // `--database` given with `--dev` is refused, and nothing starts.
    let explicit = "postgres://vault@127.0.0.1:1/cardvault_cli_test";
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("dev").join("cardvault.sock");
    let out = run(
        &[
            "serve",
            "--dev",
            "--database",
            explicit,
            "--socket",
            socket.to_str().unwrap(),
        ],
        &[],
    );
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains("takes no --database"), "{all}");
    assert!(!socket.exists(), "{all}");

    // CARDVAULT_DATABASE_URL, as left exported after following the PostgreSQL examples, is
    // ignored by `--dev` (said once, the URL not shown): the dev daemon starts on its directory.
    let d = crate::cli::DevDaemon::start_with_env(&socket, &[("CARDVAULT_DATABASE_URL", URL)]);
    let log = d.log();
    assert!(
        log.contains("--dev ignores CARDVAULT_DATABASE_URL"),
        "{log}"
    );
    assert!(
        !log.contains(PASSWORD) && !log.contains("127.0.0.1:1"),
        "{log}"
    );
    assert!(socket.exists());
}

#[test]
fn a_password_on_the_command_line_is_refused_and_not_echoed() {
    for cmd in [
        &["stats", "--database", URL][..],
        &["init", "--database", URL],
        &["serve", "--database", URL, "--socket", "/s.sock"],
        &["restore", "--from", "/b.cvbk", "--database", URL],
    ] {
        let out = run(cmd, &[]);
        let all = text(&out);
        assert_eq!(out.status.code(), Some(2), "{cmd:?}: {all}");
        assert!(
            all.contains("set the URL in CARDVAULT_DATABASE_URL instead"),
            "{cmd:?}: {all}"
        );
        assert!(!all.contains(PASSWORD), "{cmd:?}: {all}");
    }
}

/// On real databases of the local server.
#[cfg(feature = "postgres")]
mod on_postgres {
    use std::{
        io::Read,
        os::unix::net::UnixStream,
        path::Path,
        process::{Child, Command, Stdio},
        time::{Duration, Instant},
    };

    use vault_testkit::postgres::TestDatabase;

    use super::{PASSWORD, bin, key_file, run, text};
    use crate::common::unix_http;

    /// `args` with the vault in `url` (given in `CARDVAULT_DATABASE_URL`, where a password may be)
    /// and the key file `kf`; panics unless it succeeds; its stdout.
    fn ok_on(url: &str, kf: &str, args: &[&str]) -> String {
        let mut all = args.to_vec();
        all.extend(["--key-file", kf]);
        let out = run(&all, &[("CARDVAULT_DATABASE_URL", url)]);
        assert!(out.status.success(), "{args:?} failed: {}", text(&out));
        String::from_utf8(out.stdout).unwrap()
    }

    /// `apikey create` for `holder` (`["--merchant", id]` or `["--operator"]`) with `scopes`,
    /// written to `out`; returns the key.
    fn apikey_on(url: &str, kf: &str, holder: &[&str], scopes: &str, out: &Path) -> String {
        let mut args = vec!["apikey", "create"];
        args.extend_from_slice(holder);
        args.extend(["--scopes", scopes, "--out", out.to_str().unwrap()]);
        ok_on(url, kf, &args);
        std::fs::read_to_string(out).unwrap()
    }

    /// Merchant 890490 ("Shop") and a key of it with `scopes`, written to `dir/merchant.key`;
    /// returns the key.
    fn merchant_with_key(url: &str, kf: &str, dir: &Path, scopes: &str) -> String {
        ok_on(url, kf, &["merchant", "add", "890490", "--name", "Shop"]);
        let out = dir.join("merchant.key");
        apikey_on(url, kf, &["--merchant", "890490"], scopes, &out)
    }

    /// One HTTP/1.1 request over the socket: the status, the head and the body.
    fn http(
        sock: &Path,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<&str>,
    ) -> (u16, String, String) {
        unix_http(sock, method, path, key, body, Duration::from_secs(60))
    }

    /// Polls `GET /health` until `want` says yes (a bounded wait for a state, not a timing assert).
    fn health_until(
        sock: &Path,
        what: &str,
        want: impl Fn(u16, &str, &str) -> bool,
    ) -> (u16, String, String) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if UnixStream::connect(sock).is_ok() {
                let (status, head, body) = http(sock, "GET", "/health", None, None);
                if want(status, &head, &body) {
                    return (status, head, body);
                }
            }
            assert!(Instant::now() < deadline, "/health never became {what}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `cardvault serve` on a database.
    struct Daemon {
        child: Child,
    }

    impl Daemon {
        fn start(url: &str, kf: &str, socket: &Path) -> Self {
            Self::start_with(url, kf, socket, &[])
        }

        /// [`start`](Self::start) with more arguments for `serve`.
        fn start_with(url: &str, kf: &str, socket: &Path, more: &[&str]) -> Self {
            let child = bin()
                .args([
                    "serve",
                    "--socket",
                    socket.to_str().unwrap(),
                    "--key-file",
                    kf,
                ])
                .args(more)
                .env("CARDVAULT_DATABASE_URL", url)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let d = Self { child };
            health_until(socket, "ok", |status, _, _| status == 200);
            d
        }

        /// SIGTERM; the exit code and everything it logged.
        fn terminate(mut self) -> (Option<i32>, String) {
            let pid = self.child.id().to_string();
            assert!(
                Command::new("kill")
                    .args(["-TERM", &pid])
                    .status()
                    .unwrap()
                    .success()
            );
            let mut log = String::new();
            if let Some(mut err) = self.child.stderr.take() {
                err.read_to_string(&mut log).unwrap();
            }
            (self.child.wait().unwrap().code(), log)
        }
    }

    impl Drop for Daemon {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    const CARD: &str =
        r#"{"type":"card","card":{"pan":"4242424242424242","expiration_date":"2802"}}"#;

    /// The token of a tokenize answer.
    fn token_of(body: &str) -> String {
        let v: serde_json::Value = serde_json::from_str(body).expect(body);
        v["token"].as_str().expect(body).to_owned()
    }

    /// A vault in a new database: merchant 890490 and a key of its with `tokenize`.
    struct TokenizeVault {
        db: TestDatabase,
        url: String,
        dir: tempfile::TempDir,
        kf: String,
        key: String,
    }

    fn tokenize_vault() -> TokenizeVault {
        let db = TestDatabase::new();
        let url = db.url();
        let dir = tempfile::tempdir().unwrap();
        let kf = key_file(dir.path());
        ok_on(&url, &kf, &["init"]);
        let key = merchant_with_key(&url, &kf, dir.path(), "tokenize");
        TokenizeVault {
            db,
            url,
            dir,
            kf,
            key,
        }
    }

    /// `POST /v2/tokens` of [`CARD`] on `sock` with `key`: the status and body.
    fn tokenize(sock: &Path, key: &str) -> (u16, String) {
        let (status, _, body) = http(sock, "POST", "/v2/tokens", Some(key.trim()), Some(CARD));
        (status, body)
    }

    /// `POST /v2/tokens/{token}/reveal` (no customer) on `sock` with `key`: the status and body.
    fn reveal(sock: &Path, key: &str, token: &str) -> (u16, String) {
        let path = format!("/v2/tokens/{token}/reveal");
        let (status, _, body) = http(sock, "POST", &path, Some(key.trim()), Some("{}"));
        (status, body)
    }

    #[test]
    fn init_two_daemons_offline_admin_backup_and_restore_on_a_database() {
        let db = TestDatabase::new();
        let url = db.url();
        let dir = tempfile::tempdir().unwrap();
        let kf = key_file(dir.path());
        let shown = {
            let out = run(
                &["init", "--key-file", &kf],
                &[("CARDVAULT_DATABASE_URL", &url)],
            );
            assert!(out.status.success(), "init: {}", text(&out));
            String::from_utf8(out.stdout).unwrap()
        };
        assert!(shown.contains("created vault at postgres://"), "{shown}");
        // Given on the command line, the hint says to give it again.
        let other = TestDatabase::new();
        let out = run(
            &["init", "--database", &other.url(), "--key-file", &kf],
            &[],
        );
        assert!(out.status.success(), "init: {}", text(&out));
        let hint = String::from_utf8(out.stdout).unwrap();
        assert!(
            hint.contains("next: cardvault merchant add --database URL ID --name NAME"),
            "{hint}"
        );
        // The URL came from CARDVAULT_DATABASE_URL: the next command needs no --database.
        assert!(
            shown.contains("next: cardvault merchant add ID --name NAME (the database in CARDVAULT_DATABASE_URL)"),
            "{shown}"
        );
        // A database that holds a vault is refused, and keeps it.
        let again = run(
            &["init", "--key-file", &kf],
            &[("CARDVAULT_DATABASE_URL", &url)],
        );
        assert_eq!(again.status.code(), Some(1), "{}", text(&again));

        // Offline, before any daemon: a merchant, its key, an operator key.
        let merchant_key = merchant_with_key(&url, &kf, dir.path(), "tokenize,reveal");
        let okey = dir.path().join("operator.key");
        apikey_on(&url, &kf, &["--operator"], "admin", &okey);

        // Two daemons on the one database, each on its own socket.
        let (sock_a, sock_b) = (
            dir.path().join("a/cardvault.sock"),
            dir.path().join("b/cardvault.sock"),
        );
        let a = Daemon::start(&url, &kf, &sock_a);
        let b = Daemon::start(&url, &kf, &sock_b);
        let (status, body) = tokenize(&sock_a, &merchant_key);
        assert_eq!(status, 201, "{body}");
        let token = token_of(&body);
        let (status, body) = reveal(&sock_b, &merchant_key, &token);
        assert_eq!(status, 200, "daemon B reveals what A stored: {body}");
        assert!(body.contains("4242424242424242"), "{body}");
        let (_, _, health) = http(&sock_b, "GET", "/health", None, None);
        assert!(
            health.contains(r#""status":"ok""#) && !health.contains("code"),
            "{health}"
        );

        // Offline commands while the daemons serve: no lock on a database.
        ok_on(
            &url,
            &kf,
            &["merchant", "add", "123456", "--name", "Second"],
        );
        let listed = ok_on(&url, &kf, &["merchant", "list"]);
        assert!(
            listed.contains("Shop") && listed.contains("Second"),
            "{listed}"
        );
        // ... and seen through a daemon.
        let through = run(
            &[
                "merchant",
                "list",
                "--socket",
                sock_b.to_str().unwrap(),
                "--api-key-file",
                okey.to_str().unwrap(),
            ],
            &[],
        );
        assert!(text(&through).contains("Second"), "{}", text(&through));
        let stats = ok_on(&url, &kf, &["stats"]);
        assert!(stats.contains("records       1"), "{stats}");

        // The audit log archived while the daemons serve: every process's chain that has a
        // whole block behind its newest, and the remaining log and the file both verify.
        let archive = dir.path().join("audit.bin");
        let archive = archive.to_str().unwrap();
        let moved = ok_on(
            &url,
            &kf,
            &[
                "audit",
                "archive",
                "--before",
                "2999-01-01",
                "--out",
                archive,
            ],
        );
        assert!(
            moved.contains("chain ") && moved.contains("archived entries 1..="),
            "{moved}"
        );
        let checked = ok_on(&url, &kf, &["audit", "verify", "--archive", archive]);
        assert!(checked.contains("archive OK"), "{checked}");
        let verify = ok_on(&url, &kf, &["audit", "verify"]);
        assert!(verify.contains("chain intact"), "{verify}");
        let (status, body) = reveal(&sock_a, &merchant_key, &token);
        assert_eq!(status, 200, "the daemons append after the archive: {body}");
        let verify = ok_on(&url, &kf, &["audit", "verify"]);
        assert!(verify.contains("chain intact"), "{verify}");

        // A backup of the database, offline, restored into another (empty) database.
        let backup = dir.path().join("vault.cvbk");
        ok_on(&url, &kf, &["backup", "--out", backup.to_str().unwrap()]);
        let other = TestDatabase::new();
        let out = run(
            &["restore", "--from", backup.to_str().unwrap()],
            &[("CARDVAULT_DATABASE_URL", &other.url())],
        );
        assert!(out.status.success(), "restore: {}", text(&out));
        assert!(text(&out).contains("restored 1 records"), "{}", text(&out));
        let restored = ok_on(&other.url(), &kf, &["merchant", "list"]);
        assert!(
            restored.contains("Shop") && restored.contains("Second"),
            "{restored}"
        );
        // Restoring into a database that holds a vault is refused.
        let out = run(
            &["restore", "--from", backup.to_str().unwrap()],
            &[("CARDVAULT_DATABASE_URL", &url)],
        );
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));

        for d in [a, b] {
            let (code, log) = d.terminate();
            assert_eq!(code, Some(0), "{log}");
            assert!(log.contains("serving the vault"), "{log}");
        }
    }

    #[test]
    fn a_database_that_stops_answering_is_a_503_and_health_says_so() {
        let TokenizeVault {
            db,
            url,
            dir,
            kf,
            key,
        } = tokenize_vault();
        let sock = dir.path().join("run/cardvault.sock");
        let daemon = Daemon::start(&url, &kf, &sock);
        let (status, body) = tokenize(&sock, &key);
        assert_eq!(status, 201, "{body}");

        // The database stops accepting connections, and the daemon's are ended (from another
        // database: PostgreSQL refuses that statement on the database itself).
        let admin = TestDatabase::new();
        admin.execute(&format!(
            "ALTER DATABASE {} ALLOW_CONNECTIONS false",
            db.name()
        ));
        db.terminate_sessions();
        let (_, head, body) = health_until(&sock, "503", |status, _, _| status == 503);
        assert!(
            body.contains(r#""status":"unavailable""#)
                && body.contains(r#""code":"database_unavailable""#),
            "{body}"
        );
        assert!(head.contains("retry-after: "), "{head}");
        let (status, head, body) = http(&sock, "POST", "/v2/tokens", Some(key.trim()), Some(CARD));
        assert_eq!(status, 503, "{body}");
        assert!(body.contains(r#""code":"database_unavailable""#), "{body}");
        assert!(head.contains("retry-after: "), "{head}");

        // Back again: the daemon reconnects by itself, no restart.
        admin.execute(&format!(
            "ALTER DATABASE {} ALLOW_CONNECTIONS true",
            db.name()
        ));
        health_until(&sock, "ok again", |status, _, _| status == 200);
        let (status, body) = tokenize(&sock, &key);
        assert_eq!(status, 201, "{body}");
        let (code, log) = daemon.terminate();
        assert_eq!(code, Some(0), "{log}");
        // The log says the database was unavailable (what failed, never where: no URL, host or
        // database name on those lines).
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("database is unavailable"))
            .collect();
        assert!(!lines.is_empty(), "{log}");
        for l in lines {
            assert!(!l.contains("127.0.0.1") && !l.contains(db.name()), "{l}");
        }
    }

    /// Roles made for one test, dropped after its database (declare before the database).
    struct Roles(Vec<String>);

    impl Drop for Roles {
        fn drop(&mut self) {
            for r in &self.0 {
                let dropped = vault_testkit::postgres::try_execute_on_server(&format!(
                    "DROP ROLE IF EXISTS {r}"
                ));
                if let Err(e) = dropped
                    && !std::thread::panicking()
                {
                    panic!("cannot drop role {r}: {e}");
                }
            }
        }
    }

    /// The grants of docs/operations.md, "Roles and grants" (the statements after `init`), for
    /// `owner`, `app` and database `db`.
    fn documented_grants(owner: &str, app: &str, db: &str) -> String {
        let page = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../docs/operations.md"
        ))
        .unwrap();
        let section = page.split("### Roles and grants").nth(1).unwrap();
        let block = section.split("```").nth(1).unwrap();
        let after_init = block
            .split_once("cardvault init")
            .unwrap()
            .1
            .split_once('\n')
            .unwrap()
            .1;
        let grants = after_init
            .replace("cardvault_owner", owner)
            .replace("cardvault_app", app)
            .replace("DATABASE cardvault ", &format!("DATABASE {db} "));
        assert!(
            grants.contains("GRANT SELECT, INSERT, UPDATE, DELETE"),
            "{grants}"
        );
        grants
    }

    #[test]
    fn the_documented_roles_and_grants_let_a_data_only_role_run_the_vault() {
        use vault_testkit::postgres::execute_on_server;
        let db = TestDatabase::new();
        let (owner, app) = (format!("{}_owner", db.name()), format!("{}_app", db.name()));
        let roles = Roles(vec![owner.clone(), app.clone()]);
        let db = db; // dropped before `roles`
        execute_on_server(&format!(
            "CREATE ROLE {owner} LOGIN; CREATE ROLE {app} LOGIN; \
             ALTER DATABASE {} OWNER TO {owner}",
            db.name()
        ));
        let dir = tempfile::tempdir().unwrap();
        let kf = key_file(dir.path());
        let (owner_url, app_url) = (db.url_as(&owner), db.url_as(&app));
        let out = run(
            &["init", "--key-file", &kf],
            &[("CARDVAULT_DATABASE_URL", &owner_url)],
        );
        assert!(out.status.success(), "init as the owner: {}", text(&out));

        // Before the grants the app role can read nothing, and the error says what to do.
        let refused = run(
            &["merchant", "list", "--key-file", &kf],
            &[("CARDVAULT_DATABASE_URL", &app_url)],
        );
        assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
        let shown = text(&refused);
        assert!(
            shown.contains("SQLSTATE 42501") && shown.contains("Roles and grants"),
            "{shown}"
        );

        db.execute_as(&owner, &documented_grants(&owner, &app, db.name()));

        // The app role runs every offline command and the daemon: no DDL at open (PostgreSQL
        // 15 refuses even `CREATE TABLE IF NOT EXISTS` without CREATE on the schema).
        let key = merchant_with_key(&app_url, &kf, dir.path(), "tokenize,reveal");
        let sock = dir.path().join("d/cardvault.sock");
        let daemon = Daemon::start(&app_url, &kf, &sock);
        let (status, body) = tokenize(&sock, &key);
        assert_eq!(status, 201, "{body}");
        let token = token_of(&body);
        let (status, body) = reveal(&sock, &key, &token);
        assert_eq!(status, 200, "{body}");
        let (code, log) = daemon.terminate();
        assert_eq!(code, Some(0), "{log}");
        ok_on(&app_url, &kf, &["audit", "verify"]);
        ok_on(&app_url, &kf, &["sweep"]);
        ok_on(&app_url, &kf, &["stats"]);
        let backup = dir.path().join("vault.cvbk");
        ok_on(
            &app_url,
            &kf,
            &["backup", "--out", backup.to_str().unwrap()],
        );
        drop(db);
        drop(roles);
    }

    #[test]
    fn the_postgres_client_never_logs_statement_parameters() {
        let TokenizeVault {
            db: _db, // dropped (the database with it) at the end
            url,
            dir,
            kf,
            key,
        } = tokenize_vault();
        let sock = dir.path().join("d/cardvault.sock");
        // tokio-postgres logs each statement with its parameters at debug: even a filter that
        // names it keeps it at warn.
        let daemon = Daemon::start_with(
            &url,
            &kf,
            &sock,
            &["--log-level", "trace,tokio_postgres=trace"],
        );
        let (status, body) = tokenize(&sock, &key);
        assert_eq!(status, 201, "{body}");
        let (code, log) = daemon.terminate();
        assert_eq!(code, Some(0), "{log}");
        assert!(log.contains("TRACE"), "the filter was not at trace: {log}");
        assert!(
            !log.contains("tokio_postgres") && !log.contains("parameters"),
            "{log}"
        );
    }

    #[test]
    fn a_vault_on_a_database_shows_its_location_without_the_password() {
        use vault_service::{
            Health, KdfParams, KeySource, Location, SecretKey, Vault, VaultOptions,
        };
        let db = TestDatabase::new();
        // The test server trusts its clients, so a password in the URL is accepted and ignored:
        // enough to see that it is never shown.
        let url = db
            .url()
            .replacen("://postgres@", "://postgres:Hunter2-db-secret@", 1);
        assert!(url.contains(PASSWORD), "{url}");
        let at = Location::Database(vault_service::DatabaseUrl::new(url.as_str()));
        let key = || KeySource::KeyFile(SecretKey::from_bytes([7; 32]));
        let options = || VaultOptions {
            kdf: KdfParams::insecure_for_tests(),
            ..VaultOptions::default()
        };
        let vault = Vault::create_at(&at, &key(), options()).unwrap();
        let shown = format!("{vault:?} {} {}", vault.location(), at);
        assert!(!shown.contains(PASSWORD), "{shown}");
        assert!(shown.contains("postgres:***@127.0.0.1"), "{shown}");
        assert_eq!(vault.health(), Health::Ok);
        drop(vault);
        // `open_at` on it, and the refusals name it masked too.
        let vault = Vault::open_at(&at, &key(), options()).unwrap();
        assert!(matches!(vault.location(), Location::Database(_)));
        drop(vault);
        let again = Vault::create_at(&at, &key(), options()).unwrap_err();
        let shown = format!("{again} {again:?}");
        assert!(!shown.contains(PASSWORD), "{shown}");
    }
}
