//! `--database URL`: a vault in a PostgreSQL database, the alternative to `--data DIR` on every
//! command that opens a vault (exactly one of the two; clap refuses both, and neither).
//!
//! The URL may hold a password, so it is a [`DatabaseUrl`] from the moment it is parsed: `--help`
//! shows no value taken from `CARDVAULT_DATABASE_URL` (`hide_env_values`), a malformed one is
//! refused without being echoed, and every message shows it through `DatabaseUrl`'s `Display`,
//! which masks the password. A URL holding a password is taken from `CARDVAULT_DATABASE_URL`
//! only, never from the command line: the arguments of every process are readable by every user
//! through `/proc/<pid>/cmdline` (the rule the vault passphrase follows). A database vault has
//! no directory: nothing is written beside it (no `daemon.socket` pointer, no lock file), and
//! several processes may open it at once.

use std::{ffi::OsStr, path::Path};

use cardvault::{DatabaseUrl, Location};
use clap::{builder::TypedValueParser, error::ErrorKind, parser::ValueSource};

/// Parses `--database`: a `postgres://` or `postgresql://` URL. Anything else is refused with a
/// message that does not repeat it (a typo may still hold a password), and so is a URL with a
/// password given on the command line rather than in `CARDVAULT_DATABASE_URL`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct DatabaseUrlParser;

impl TypedValueParser for DatabaseUrlParser {
    type Value = DatabaseUrl;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<DatabaseUrl, clap::Error> {
        self.parse_ref_(cmd, arg, value, ValueSource::CommandLine)
    }

    fn parse_ref_(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &OsStr,
        source: ValueSource,
    ) -> Result<DatabaseUrl, clap::Error> {
        let refuse = |why: &str| {
            let name = arg.map_or_else(|| "--database".to_owned(), ToString::to_string);
            clap::Error::raw(
                ErrorKind::InvalidValue,
                format!(
                    "invalid value for '{name}': {why} (the value is not shown: it may hold a password)\n"
                ),
            )
            .with_cmd(cmd)
        };
        let Some(url) = value.to_str() else {
            return Err(refuse("not valid UTF-8"));
        };
        let scheme = url.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
        if !matches!(scheme.as_deref(), Some("postgres" | "postgresql")) {
            return Err(refuse(
                "expected a PostgreSQL URL, postgres://USER@HOST:PORT/DATABASE (a vault directory goes in --data)",
            ));
        }
        if source == ValueSource::CommandLine && has_password(url) {
            return Err(refuse(
                "a password on the command line is readable by every user of this machine (/proc/PID/cmdline): set the URL in CARDVAULT_DATABASE_URL instead",
            ));
        }
        Ok(DatabaseUrl::new(url))
    }
}

/// Whether `url` carries a password: in its user information (`user:password@`) or as a
/// `password=` query parameter.
fn has_password(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = &rest[..rest.find(['/', '?']).unwrap_or(rest.len())];
    let in_userinfo = authority
        .rfind('@')
        .is_some_and(|at| authority[..at].contains(':'));
    let in_query = url.split_once('?').is_some_and(|(_, query)| {
        query
            .split('&')
            .any(|kv| kv.to_ascii_lowercase().starts_with("password="))
    });
    in_userinfo || in_query
}

/// The vault `--data` or `--database` names, if either (clap has refused both at once).
pub(crate) fn location(data: Option<&Path>, database: Option<&DatabaseUrl>) -> Option<Location> {
    match (data, database) {
        (_, Some(url)) => Some(Location::Database(url.clone())),
        (Some(dir), None) => Some(Location::Dir(dir.to_path_buf())),
        (None, None) => None,
    }
}

/// Whether `--database` was given on the command line, rather than taken from
/// `CARDVAULT_DATABASE_URL` (which `serve --dev` ignores, and `init`'s hint need not repeat).
/// Exact for this CLI: `--database` has no alias or short form, and no flag takes a value that
/// starts with `--`.
pub(crate) fn given_on_the_command_line() -> bool {
    std::env::args_os().skip(1).any(|a| {
        a.to_str()
            .is_some_and(|a| a == "--database" || a.starts_with("--database="))
    })
}

/// `in DIR` or `at URL` (password masked), for messages.
pub(crate) fn at(location: &Location) -> String {
    match location {
        Location::Dir(dir) => format!("in {}", dir.display()),
        Location::Database(url) => format!("at {url}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_from(s: &str, source: ValueSource) -> Result<DatabaseUrl, clap::Error> {
        let cmd = clap::Command::new("cardvault");
        DatabaseUrlParser.parse_ref_(&cmd, None, OsStr::new(s), source)
    }

    fn parse(s: &str) -> Result<DatabaseUrl, clap::Error> {
        parse_from(s, ValueSource::EnvVariable)
    }

    #[test]
    fn postgres_urls_only_and_never_echoed() {
        for good in [
            "postgres://root@127.0.0.1:5432/cardvault",
            "postgresql://vault:pw@db.example/cv?sslmode=verify-full",
            "POSTGRES://root@localhost/cv",
            "postgres://root@[::1]:5432/cv",
        ] {
            assert!(parse(good).is_ok(), "{good}");
        }
        for bad in [
            "/var/lib/cardvault",
            "mysql://vault:hunter2-pw@db/cv",
            "host=db password=hunter2-pw",
            "",
        ] {
            let e = parse(bad).expect_err(bad).to_string();
            assert!(e.contains("expected a PostgreSQL URL"), "{e}");
            assert!(!e.contains("hunter2-pw"), "{e}");
        }
    }

    #[test]
    fn a_password_comes_from_the_environment_only() {
        for with_password in [
            "postgres://vault:hunter2-pw@db/cv",
            "postgres://vault@db/cv?sslmode=require&Password=hunter2-pw",
        ] {
            assert!(parse(with_password).is_ok(), "{with_password}");
            let e = parse_from(with_password, ValueSource::CommandLine)
                .expect_err(with_password)
                .to_string();
            assert!(e.contains("CARDVAULT_DATABASE_URL"), "{e}");
            assert!(!e.contains("hunter2-pw"), "{e}");
        }
        for without in [
            "postgres://root@127.0.0.1:5432/cardvault",
            "postgres://root@[::1]:5432/cv?sslmode=disable",
            "postgres://db.example/cv",
        ] {
            assert!(
                parse_from(without, ValueSource::CommandLine).is_ok(),
                "{without}"
            );
        }
    }

    #[test]
    fn messages_mask_the_password() {
        let url = DatabaseUrl::new("postgres://vault:hunter2-pw@db.example:5432/cv");
        let at_db = at(&location(None, Some(&url)).expect("a location"));
        assert_eq!(at_db, "at postgres://vault:***@db.example:5432/cv");
        let dir = Path::new("/var/lib/cardvault");
        assert_eq!(
            at(&location(Some(dir), None).expect("a location")),
            "in /var/lib/cardvault"
        );
        assert!(location(None, None).is_none());
    }
}
