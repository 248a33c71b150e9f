//! `cardvault serve`: open the vault and run the daemon until SIGTERM or SIGINT.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
};

use anyhow::{Context, bail};
use cardvault::{DatabaseUrl, Vault, VaultOptions, gateway::Gateway};
use clap::{Args, ValueEnum};
use tokio::sync::watch;
use vault_daemon::{DaemonConfig, LogFormat};

use super::{
    database::{self, DatabaseUrlParser},
    dev, hardening,
    key::KeyArgs,
    runtime,
};

/// File in the data directory naming the socket of the daemon serving it, so admin commands
/// given `--data` find the daemon. Written at start, removed at exit. A database vault has no
/// directory, so none is written for it.
pub(crate) const SOCKET_POINTER: &str = "daemon.socket";

/// The vault is named by exactly one of --data and --database, unless --dev makes its own (it
/// ignores --data, and refuses --database).
#[derive(Args, Debug)]
#[command(group(
    clap::ArgGroup::new("serve_vault")
        .args(["data", "database", "dev"])
        .required(true)
        .multiple(true)
))]
pub(crate) struct ServeArgs {
    /// The vault directory (created with `cardvault init`).
    #[arg(long, env = "CARDVAULT_DATA", value_name = "DIR")]
    pub(crate) data: Option<PathBuf>,

    /// The vault's PostgreSQL database (postgres://USER@HOST:PORT/DATABASE, created with `cardvault
    /// init --database`), instead of --data. Other daemons may serve the same database at the
    /// same time. Needs --socket; refused with --dev (the dev vault is a throwaway directory),
    /// which ignores CARDVAULT_DATABASE_URL. A URL holding a password only in
    /// CARDVAULT_DATABASE_URL (never on the command line).
    #[arg(
        long,
        env = "CARDVAULT_DATABASE_URL",
        value_name = "URL",
        hide_env_values = true,
        value_parser = DatabaseUrlParser,
        conflicts_with = "data"
    )]
    pub(crate) database: Option<DatabaseUrl>,

    /// The Unix socket to listen on (required, except with --dev). Its directory is created
    /// (mode 0700) if missing and must not be writable by others. Default with --dev:
    /// /tmp/cardvault-dev/cardvault.sock.
    #[arg(
        long,
        env = "CARDVAULT_SOCKET",
        value_name = "PATH",
        required_unless_present = "dev"
    )]
    pub(crate) socket: Option<PathBuf>,

    /// Also listen on this loopback TCP address (127.0.0.1:PORT or [::1]:PORT). TCP peers are
    /// identified by API key only.
    #[arg(long, env = "CARDVAULT_LISTEN", value_name = "ADDR")]
    pub(crate) listen: Option<SocketAddr>,

    /// Let this uid connect to the socket (repeatable). The daemon's own uid always may. Makes
    /// the socket 0666 and its directory searchable (0711); the peer check still refuses
    /// every uid and gid not listed.
    #[arg(long = "allow-uid", value_name = "UID")]
    pub(crate) allow_uids: Vec<u32>,

    /// Let processes whose primary gid is this one connect (repeatable). One gid alone: the
    /// socket and its directory get that group (socket 0660); otherwise as --allow-uid.
    #[arg(long = "allow-gid", value_name = "GID")]
    pub(crate) allow_gids: Vec<u32>,

    /// Log line format.
    #[arg(long, env = "CARDVAULT_LOG_FORMAT", value_enum, default_value_t = LogFormatArg::Text)]
    pub(crate) log_format: LogFormatArg,

    /// Log filter: error, warn, info, debug, trace, or a tracing directive list.
    #[arg(
        long,
        env = "CARDVAULT_LOG",
        default_value = "info",
        value_name = "LEVEL"
    )]
    pub(crate) log_level: String,

    /// Connections served at once.
    #[arg(long, value_name = "N", default_value_t = DaemonConfig::default().max_connections)]
    pub(crate) max_connections: usize,

    /// Connections one peer may hold at once (per uid on the socket, per address on --listen);
    /// beyond it new connections are closed unanswered.
    #[arg(long, value_name = "N", default_value_t = DaemonConfig::default().max_connections_per_peer)]
    pub(crate) max_connections_per_peer: usize,

    /// Seconds a response may wait for the client to read it before the connection is closed.
    #[arg(long, value_name = "SECONDS", default_value_t = DaemonConfig::default().write_timeout.as_secs(),
        value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub(crate) write_timeout: u64,

    /// Seconds a client has to send a request head; also how long an idle keep-alive
    /// connection stays open.
    #[arg(long, value_name = "SECONDS", default_value_t = DaemonConfig::default().header_read_timeout.as_secs(),
        value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub(crate) idle_timeout: u64,

    /// When writes are acknowledged: `sync` survives kill -9 and power loss (one write-ahead log
    /// append + fdatasync per group commit); `flush` survives kill -9 only (see
    /// docs/durability.md).
    #[arg(long, env = "CARDVAULT_DURABILITY", value_enum, default_value_t = DurabilityArg::Sync)]
    pub(crate) durability: DurabilityArg,

    /// When a reveal is answered relative to its audit entry: `durable` (the default) only once the
    /// entry is durable; `queued` at once, the entry joining the next group commit (a crash can
    /// lose the entries of up to 1,024 answered reveals; see SECURITY.md).
    #[arg(long, env = "CARDVAULT_REVEAL_AUDIT", value_enum, default_value_t = RevealAuditArg::Durable)]
    pub(crate) reveal_audit: RevealAuditArg,

    /// Merchant-password logins (POST /token) hashed at once; each Argon2id hash holds 19 MiB.
    /// Default: the number of CPUs (at most 8).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=64))]
    pub(crate) login_hashes: Option<u16>,

    /// Development mode: a throwaway vault in a fresh temporary directory, a merchant, its API
    /// key (`api-key`: tokenize, reveal, fingerprint, sessions) and an operator key
    /// (`operator-key`: admin) next to the socket, and a curl line to try. NOT FOR PRODUCTION.
    /// --data, CARDVAULT_DATABASE_URL and the key options are ignored in this mode; --database
    /// is refused.
    #[arg(long)]
    pub(crate) dev: bool,

    #[command(flatten)]
    pub(crate) key: KeyArgs,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub(crate) enum DurabilityArg {
    /// Write-ahead log append + fdatasync per group commit.
    Sync,
    /// sled's flush (write + sync_file_range) per group commit.
    Flush,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub(crate) enum RevealAuditArg {
    /// The card is returned once its audit entry is durable.
    Durable,
    /// The card is returned at once; the entry joins the next group commit.
    Queued,
}

impl ServeArgs {
    /// The vault options these arguments ask for.
    pub(crate) fn vault_options(&self) -> VaultOptions {
        VaultOptions {
            durability: match self.durability {
                DurabilityArg::Sync => cardvault::Durability::Sync,
                DurabilityArg::Flush => cardvault::Durability::Flush,
            },
            ..VaultOptions::default()
        }
    }

    /// Applies the settings that live on an open vault and its gateway.
    pub(crate) fn tune(&self, vault: &Gateway) {
        vault.set_reveal_audit(match self.reveal_audit {
            RevealAuditArg::Durable => cardvault::RevealAudit::Durable,
            RevealAuditArg::Queued => cardvault::RevealAudit::Queued,
        });
        if let Some(n) = self.login_hashes {
            vault.set_login_policy(cardvault::gateway::LoginPolicy {
                max_concurrent_hashes: usize::from(n),
                ..vault.login_policy()
            });
        }
    }
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub(crate) enum LogFormatArg {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

pub(crate) fn run(args: ServeArgs) -> anyhow::Result<()> {
    hardening::disable_core_dumps().context("disabling core dumps")?;
    init_logging(args.log_format, &args.log_level)?;
    if let Some(addr) = args.listen
        && !addr.ip().is_loopback()
    {
        bail!("--listen {addr}: only loopback addresses (127.0.0.0/8, ::1) are allowed");
    }
    let config = DaemonConfig {
        max_connections: args.max_connections,
        max_connections_per_peer: args.max_connections_per_peer,
        write_timeout: std::time::Duration::from_secs(args.write_timeout),
        header_read_timeout: std::time::Duration::from_secs(args.idle_timeout),
        allow_uids: args.allow_uids.clone(),
        allow_gids: args.allow_gids.clone(),
        log_format: match args.log_format {
            LogFormatArg::Text => LogFormat::Text,
            LogFormatArg::Json => LogFormat::Json,
        },
        ..DaemonConfig::default()
    };
    if args.dev {
        if args.database.is_some() {
            if database::given_on_the_command_line() {
                bail!(
                    "--dev makes a throwaway directory vault and takes no --database; for a daemon \
                     on PostgreSQL run `serve --database URL --socket PATH` (nothing was started)"
                );
            }
            say("note: --dev ignores CARDVAULT_DATABASE_URL (its vault is a throwaway directory)");
        }
        return dev::run(&args, config);
    }
    let (Some(location), Some(socket)) = (
        database::location(args.data.as_deref(), args.database.as_ref()),
        &args.socket,
    ) else {
        bail!("--data DIR (or --database URL) and --socket PATH are required (or use --dev)");
    };
    if let Some(dir) = location.dir() {
        super::owner::check_for_serve(dir)?;
    }
    // A database URL this build cannot open is refused before the key is asked for.
    let opening = || format!("opening the vault {}", database::at(&location));
    Vault::check_supported(&location).with_context(opening)?;
    let key = args.key.resolve(false)?;
    // One gateway for every listener: it holds the pending payments' CVVs and the login limits.
    let vault =
        Gateway::new(Vault::open_at(&location, &key, args.vault_options()).with_context(opening)?);
    drop(key);
    args.tune(&vault);
    let socket = absolute(socket)?;
    // Best effort: only a convenience for admin commands given `--data`. A database vault has
    // no directory to hold it: admin commands given `--database` open the database themselves
    // (it is shared), or take `--socket`.
    let pointer = location.dir().map(|dir| dir.join(SOCKET_POINTER));
    if let Some(pointer) = &pointer {
        let _ = std::fs::write(pointer, format!("{}\n", socket.display()));
    }
    let result = runtime()?.block_on(serve(vault, config, &socket, args.listen, || {
        // The URL's password masked (`Location`'s Display).
        tracing::info!(vault = %location, "serving the vault");
    }));
    if let Some(pointer) = &pointer {
        let _ = std::fs::remove_file(pointer);
    }
    result
}

/// Binds the socket (and the TCP address), calls `ready` once listening, and serves until
/// SIGTERM or SIGINT; returns after the drain.
pub(crate) async fn serve(
    vault: Gateway,
    config: DaemonConfig,
    socket: &Path,
    listen: Option<SocketAddr>,
    ready: impl FnOnce(),
) -> anyhow::Result<()> {
    let unix = vault_daemon::bind_unix_for(socket, &config.allow_uids, &config.allow_gids)
        .await
        .with_context(|| format!("binding {}", socket.display()))?;
    let tcp = match listen {
        Some(addr) => Some(
            vault_daemon::bind_tcp(addr)
                .await
                .with_context(|| format!("binding {addr}"))?,
        ),
        None => None,
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    for listener in std::iter::once(unix).chain(tcp) {
        tracing::info!(listen = %listener.describe(), "listening");
        let mut rx = stop_rx.clone();
        let shutdown = async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        tasks.spawn(vault_daemon::serve(
            listener,
            vault.clone(),
            config.clone(),
            shutdown,
        ));
    }
    drop(vault);
    ready();

    let signal = shutdown_signal();
    tokio::pin!(signal);
    let mut first_error: Option<anyhow::Error> = None;
    let mut stopping = false;
    loop {
        tokio::select! {
            name = &mut signal, if !stopping => {
                tracing::info!(signal = name?, "shutting down: draining in-flight requests");
                stopping = true;
                let _ = stop_tx.send(true);
            }
            done = tasks.join_next() => match done {
                None => break,
                Some(Ok(Ok(()))) => {}
                Some(Ok(Err(e))) => {
                    first_error.get_or_insert(anyhow::Error::new(e).context("daemon"));
                    let _ = stop_tx.send(true);
                }
                Some(Err(e)) => {
                    first_error.get_or_insert(anyhow::anyhow!("daemon task failed: {e}"));
                    let _ = stop_tx.send(true);
                }
            },
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => {
            tracing::info!("stopped");
            Ok(())
        }
    }
}

/// Resolves on SIGTERM or SIGINT with the signal's name.
async fn shutdown_signal() -> anyhow::Result<&'static str> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    Ok(tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    })
}

fn init_logging(format: LogFormatArg, level: &str) -> anyhow::Result<()> {
    use tracing_subscriber::{EnvFilter, fmt};
    let directives = log_directives(level);
    let filter =
        EnvFilter::try_new(&directives).with_context(|| format!("--log-level {level:?}"))?;
    let builder = fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(QuietStderr);
    let result = match format {
        LogFormatArg::Text => builder.try_init(),
        LogFormatArg::Json => builder.json().try_init(),
    };
    result.map_err(|e| anyhow::anyhow!("installing the logger: {e}"))
}

/// The filter's directives for `--log-level level`.
///
/// - sled's own trace lines (page ids, sizes) say nothing about requests and drown the log: they
///   stay at warn unless the filter names sled itself.
/// - tokio-postgres logs every statement's parameters at debug (sealed records, password hashes,
///   customer ids): it stays at warn whatever the filter says, a directive naming it included.
fn log_directives(level: &str) -> String {
    let kept: Vec<&str> = level
        .split(',')
        .filter(|d| !d.trim_start().starts_with("tokio_postgres"))
        .collect();
    let mut directives = kept.join(",");
    if !level.contains("sled") {
        directives.push_str(",sled=warn");
    }
    directives.push_str(",tokio_postgres=warn");
    directives
}

/// The log writer: standard error, where a failed write (a closed pipe, a full disk) drops the
/// line instead of failing or panicking. Logging never takes the daemon or a request down.
#[derive(Clone, Copy, Debug)]
pub(crate) struct QuietStderr;

impl std::io::Write for QuietStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = std::io::stderr().write_all(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let _ = std::io::stderr().flush();
        Ok(())
    }
}

impl tracing_subscriber::fmt::MakeWriter<'_> for QuietStderr {
    type Writer = Self;

    fn make_writer(&self) -> Self {
        *self
    }
}

/// Prints `text` and a newline on standard error, ignoring a closed pipe (`eprintln!` panics).
pub(crate) fn say(text: &str) {
    use std::io::Write;
    let _ = writeln!(QuietStderr, "{text}");
}

fn absolute(p: &Path) -> anyhow::Result<PathBuf> {
    std::path::absolute(p).with_context(|| format!("resolving {}", p.display()))
}

#[cfg(test)]
mod tests {
    use super::log_directives;

    #[test]
    fn sled_is_quiet_and_tokio_postgres_stays_at_warn() {
        assert_eq!(log_directives("info"), "info,sled=warn,tokio_postgres=warn");
        assert_eq!(
            log_directives("debug,sled=trace"),
            "debug,sled=trace,tokio_postgres=warn"
        );
        assert_eq!(
            log_directives("trace,tokio_postgres=trace"),
            "trace,sled=warn,tokio_postgres=warn"
        );
        assert!(tracing_subscriber::EnvFilter::try_new(log_directives("trace")).is_ok());
    }
}
