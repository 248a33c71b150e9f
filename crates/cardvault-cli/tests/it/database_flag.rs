//! `--database URL` (or `CARDVAULT_DATABASE_URL`) beside `--data DIR`: every command that takes
//! one takes the other, exactly one of the two is accepted, and the URL's password never shows
//! (errors, `--help`). The PostgreSQL engine itself is not in this build's tests: a database URL
//! is parsed and handed to the vault, which refuses it clearly without the `postgres` feature.

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
        #[cfg(not(feature = "postgres"))]
        assert!(
            all.contains("not supported by this build: a PostgreSQL vault (build with the `postgres` feature)"),
            "{cmd:?}: {all}"
        );
        // One error line, naming the vault with its password masked (`init` may print the
        // test-KDF banner before it).
        let errors: Vec<&str> = all.lines().filter(|l| l.starts_with("error: ")).collect();
        assert_eq!(errors.len(), 1, "{cmd:?}: {all}");
        assert!(errors[0].contains(MASKED), "{cmd:?}: {all}");
    }
}

#[cfg(not(feature = "postgres"))]
#[test]
fn a_build_without_postgres_refuses_before_asking_for_a_key() {
    // No key source and no terminal: asking for the key would fail with another message.
    for cmd in [
        &["init", "--database", PLAIN_URL][..],
        &["stats", "--database", PLAIN_URL],
        &["serve", "--database", PLAIN_URL, "--socket", "/s.sock"],
    ] {
        let out = run(cmd, &[]);
        let all = text(&out);
        assert_eq!(out.status.code(), Some(1), "{cmd:?}: {all}");
        assert!(
            all.contains("not supported by this build"),
            "{cmd:?}: {all}"
        );
        assert!(!all.contains("passphrase"), "{cmd:?}: {all}");
        assert!(!all.contains(PASSWORD), "{cmd:?}: {all}");
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

    let out = run(&["serve", "--dev"], &[("CARDVAULT_DATABASE_URL", URL)]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(2), "{all}");
    assert!(
        all.contains("'--dev' cannot be used with '--database <URL>'"),
        "{all}"
    );
    assert!(!all.contains(PASSWORD), "{all}");
}

#[test]
fn restore_into_a_database_is_not_there_yet() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("b.cvbk");
    std::fs::write(&file, b"CVBK").unwrap();
    let out = run(
        &[
            "restore",
            "--from",
            file.to_str().unwrap(),
            "--database",
            PLAIN_URL,
        ],
        &[],
    );
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(
        all.contains("restoring a backup into a PostgreSQL database (not implemented yet: restore into a directory)"),
        "{all}"
    );
    assert!(all.contains(PLAIN_URL), "{all}");
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
