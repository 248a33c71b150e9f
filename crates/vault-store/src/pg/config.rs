//! The database URL, read once: what tokio-postgres understands goes to its `Config`; the TLS mode,
//! the root certificate file, the pool's size and wait bound and the statement timeout are
//! cardvault's own and are taken out first (tokio-postgres refuses options it does not know, and
//! knows neither `verify-ca` nor `verify-full`).
//!
//! Both forms are read: a URL (`postgres://user@host:5432/db?sslmode=verify-full&...`, query
//! values percent-decoded) and a key-value string (`host=db user=vault sslmode=require ...`,
//! values without spaces or quotes).

use std::{path::PathBuf, str::FromStr, time::Duration};

use tokio_postgres::config::SslMode;

use crate::{DatabaseUrl, StoreError};

/// Connections in the pool unless `pool_max_size` says otherwise.
pub(crate) const DEFAULT_POOL_MAX_SIZE: usize = 16;
/// How long a caller waits for a free pooled connection unless `pool_timeout_ms` says otherwise.
pub(crate) const DEFAULT_POOL_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a connection attempt may take unless `connect_timeout` (seconds) says otherwise.
pub(crate) const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The server-side `statement_timeout` of every connection unless `statement_timeout_ms` says
/// otherwise.
pub(crate) const DEFAULT_STATEMENT_TIMEOUT: Duration = Duration::from_secs(5);

const MAX_POOL: usize = 1024;
const MAX_MILLIS: u64 = 3_600_000;

/// How the connection is encrypted (`sslmode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TlsMode {
    /// `disable`: plain TCP.
    Disable,
    /// `prefer` (tokio-postgres's and libpq's default): TLS without certificate verification if
    /// the server offers it, plain TCP otherwise.
    Prefer,
    /// `require`: TLS or no connection; the certificate is not verified (as libpq does).
    Require,
    /// `verify-ca`: TLS, the certificate chain verified against the roots, any host name.
    VerifyCa,
    /// `verify-full`: TLS, the chain verified and the certificate valid for the host name.
    VerifyFull,
}

/// Everything the engine is configured with.
pub(crate) struct Settings {
    /// What tokio-postgres connects with (host, user, password, database, ...).
    pub(crate) pg: tokio_postgres::Config,
    pub(crate) tls: TlsMode,
    /// `sslrootcert`: PEM file of the roots for `verify-ca` / `verify-full` (system roots if
    /// absent).
    pub(crate) root_cert: Option<PathBuf>,
    pub(crate) pool_max_size: usize,
    pub(crate) pool_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) statement_timeout: Duration,
}

impl Settings {
    /// Reads `url`. Errors name the part that is wrong, never a value.
    pub(crate) fn parse(url: &DatabaseUrl) -> Result<Self, StoreError> {
        let raw = url.expose();
        let mut ours = Ours::default();
        let rest = if raw.contains("://") {
            let (base, query) = match raw.split_once('?') {
                Some((b, q)) => (b, q),
                None => (raw, ""),
            };
            let mut kept = Vec::new();
            for pair in query.split('&').filter(|p| !p.is_empty()) {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                if !ours.take(k, || percent_decode(v))? {
                    kept.push(pair);
                }
            }
            if kept.is_empty() {
                base.to_owned()
            } else {
                format!("{base}?{}", kept.join("&"))
            }
        } else {
            let mut kept = Vec::new();
            for token in raw.split_whitespace() {
                let (k, v) = token.split_once('=').unwrap_or((token, ""));
                if !ours.take(k, || Ok(v.to_owned()))? {
                    kept.push(token);
                }
            }
            kept.join(" ")
        };
        let mut pg = tokio_postgres::Config::from_str(&rest).map_err(|_| {
            StoreError::InvalidDatabaseUrl("not a PostgreSQL connection URL tokio-postgres reads")
        })?;
        let tls = ours.tls.unwrap_or(TlsMode::Prefer);
        pg.ssl_mode(match tls {
            TlsMode::Disable => SslMode::Disable,
            TlsMode::Prefer => SslMode::Prefer,
            TlsMode::Require | TlsMode::VerifyCa | TlsMode::VerifyFull => SslMode::Require,
        });
        let connect_timeout = pg
            .get_connect_timeout()
            .copied()
            .unwrap_or(DEFAULT_CONNECT_TIMEOUT);
        pg.connect_timeout(connect_timeout);
        let statement_timeout = ours.statement_timeout.unwrap_or(DEFAULT_STATEMENT_TIMEOUT);
        // A transaction left open by a client that went away (network partition) is ended by the
        // server after this long, so it cannot hold row locks for ever.
        let idle_in_transaction = statement_timeout * 4 + Duration::from_secs(10);
        let options = format!(
            "{} -c statement_timeout={} -c idle_in_transaction_session_timeout={}",
            pg.get_options().unwrap_or(""),
            statement_timeout.as_millis(),
            idle_in_transaction.as_millis(),
        );
        pg.options(options.trim_start());
        if pg.get_application_name().is_none() {
            pg.application_name("cardvault");
        }
        // A peer that stopped answering is noticed within this long while data is unacknowledged.
        pg.tcp_user_timeout(statement_timeout + connect_timeout);
        pg.keepalives_idle(Duration::from_secs(30));
        Ok(Self {
            pg,
            tls,
            root_cert: ours.root_cert,
            pool_max_size: ours.pool_max_size.unwrap_or(DEFAULT_POOL_MAX_SIZE),
            pool_timeout: ours.pool_timeout.unwrap_or(DEFAULT_POOL_TIMEOUT),
            connect_timeout,
            statement_timeout,
        })
    }

    /// The longest one operation's database work may take before the engine gives up on its
    /// connection (the server's statement timeout for a round trip or two, plus slack): a server
    /// that stopped answering cannot hold a caller longer.
    pub(crate) fn op_limit(&self) -> Duration {
        self.statement_timeout * 2 + Duration::from_secs(1)
    }

    /// The longest a caller waits for one operation, retries and connection included.
    pub(crate) fn call_limit(&self) -> Duration {
        (self.pool_timeout + self.connect_timeout + self.op_limit()) * 2 + Duration::from_secs(1)
    }
}

/// The parameters cardvault takes out of the URL.
#[derive(Default)]
struct Ours {
    tls: Option<TlsMode>,
    root_cert: Option<PathBuf>,
    pool_max_size: Option<usize>,
    pool_timeout: Option<Duration>,
    statement_timeout: Option<Duration>,
}

impl Ours {
    /// Takes `key` if it is one of ours (its value read by `value`); `false`: not ours.
    fn take(
        &mut self,
        key: &str,
        value: impl FnOnce() -> Result<String, StoreError>,
    ) -> Result<bool, StoreError> {
        match key {
            "sslmode" => {
                self.tls = Some(match value()?.as_str() {
                    "disable" => TlsMode::Disable,
                    "allow" | "prefer" => TlsMode::Prefer,
                    "require" => TlsMode::Require,
                    "verify-ca" => TlsMode::VerifyCa,
                    "verify-full" => TlsMode::VerifyFull,
                    _ => return Err(StoreError::InvalidDatabaseUrl("unknown sslmode")),
                })
            }
            "sslrootcert" => self.root_cert = Some(PathBuf::from(value()?)),
            "pool_max_size" => {
                let n = value()?
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_POOL).contains(n))
                    .ok_or(StoreError::InvalidDatabaseUrl(
                        "pool_max_size must be a number from 1 to 1024",
                    ))?;
                self.pool_max_size = Some(n);
            }
            "pool_timeout_ms" => {
                self.pool_timeout = Some(millis(
                    &value()?,
                    "pool_timeout_ms must be a number of milliseconds from 1 to 3600000",
                )?)
            }
            "statement_timeout_ms" => {
                self.statement_timeout = Some(millis(
                    &value()?,
                    "statement_timeout_ms must be a number of milliseconds from 1 to 3600000",
                )?)
            }
            _ => return Ok(false),
        }
        Ok(true)
    }
}

fn millis(v: &str, problem: &'static str) -> Result<Duration, StoreError> {
    v.parse::<u64>()
        .ok()
        .filter(|n| (1..=MAX_MILLIS).contains(n))
        .map(Duration::from_millis)
        .ok_or(StoreError::InvalidDatabaseUrl(problem))
}

/// `%XX` escapes and `+` (space) of a URL query value.
fn percent_decode(v: &str) -> Result<String, StoreError> {
    const BAD: StoreError = StoreError::InvalidDatabaseUrl("a query value has a bad % escape");
    let bytes = v.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).ok_or(BAD)?;
                let hex = std::str::from_utf8(hex).map_err(|_| BAD)?;
                out.push(u8::from_str_radix(hex, 16).map_err(|_| BAD)?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| BAD)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{Settings, TlsMode};
    use crate::{DatabaseUrl, StoreError};

    fn parse(url: &str) -> Result<Settings, StoreError> {
        Settings::parse(&DatabaseUrl::new(url))
    }

    #[test]
    fn our_parameters_are_taken_out_and_the_rest_reaches_tokio_postgres() {
        let s = parse(
            "postgres://vault:pw@db.example:6543/cv?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem\
             &pool_max_size=32&pool_timeout_ms=250&statement_timeout_ms=1500&connect_timeout=3\
             &application_name=daemon-a",
        )
        .expect("parses");
        assert_eq!(s.tls, TlsMode::VerifyFull);
        assert_eq!(
            s.root_cert.as_deref(),
            Some(std::path::Path::new("/etc/ca.pem"))
        );
        assert_eq!(s.pool_max_size, 32);
        assert_eq!(s.pool_timeout, Duration::from_millis(250));
        assert_eq!(s.statement_timeout, Duration::from_millis(1500));
        assert_eq!(s.connect_timeout, Duration::from_secs(3));
        assert_eq!(s.pg.get_dbname(), Some("cv"));
        assert_eq!(s.pg.get_application_name(), Some("daemon-a"));
        let options = s.pg.get_options().expect("options");
        assert!(options.contains("-c statement_timeout=1500"), "{options}");
    }

    #[test]
    fn defaults_are_bounded() {
        let s = parse("postgres://root@127.0.0.1/cv").expect("parses");
        assert_eq!(s.tls, TlsMode::Prefer);
        assert_eq!(s.pool_max_size, super::DEFAULT_POOL_MAX_SIZE);
        assert_eq!(s.connect_timeout, super::DEFAULT_CONNECT_TIMEOUT);
        assert!(s.call_limit() < Duration::from_secs(120));
        let kv = parse("host=127.0.0.1 user=root dbname=cv sslmode=disable pool_max_size=2")
            .expect("parses");
        assert_eq!(kv.tls, TlsMode::Disable);
        assert_eq!(kv.pool_max_size, 2);
    }

    #[test]
    fn bad_values_are_refused_without_echoing_them() {
        for (url, what) in [
            ("postgres://u:s3cret@h/d?sslmode=s3cret", "sslmode"),
            ("postgres://u:s3cret@h/d?pool_max_size=0", "pool_max_size"),
            (
                "postgres://u:s3cret@h/d?statement_timeout_ms=s3cret",
                "statement_timeout_ms",
            ),
            ("postgres://u:s3cret@h/d?sslrootcert=%zz", "escape"),
            ("postgres://u:s3cret@h/d?s3cret=1", "tokio-postgres"),
        ] {
            let e = match parse(url) {
                Err(e) => e.to_string(),
                Ok(_) => panic!("{what} accepted"),
            };
            assert!(e.contains(what), "{e}");
            assert!(!e.contains("s3cret"), "{e}");
        }
    }
}
