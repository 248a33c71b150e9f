//! The `cardvault` command line: argument definitions and dispatch.

use anyhow::Context;
use clap::{Parser, Subcommand};

mod admin;
mod audit;
mod backup;
mod bench;
mod cards;
mod conn;
mod connect;
mod database;
mod dev;
mod hardening;
mod init;
mod key;
mod merchant_password;
mod owner;
mod progress;
mod rekey;
mod secret_file;
mod serve;
mod strength;
mod target_dir;

/// cardvault: a card tokenization vault.
///
/// Start with `cardvault serve --dev` for a throwaway vault and a working curl line. In
/// production: `cardvault init`, then `cardvault serve` (see docs/operations.md).
#[derive(Parser, Debug)]
#[command(
    name = "cardvault",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create a new vault in an empty directory or an empty PostgreSQL database.
    Init(init::InitArgs),
    /// Run the daemon: HTTP/1.1 + JSON over a Unix socket (and optionally loopback TCP).
    Serve(Box<serve::ServeArgs>),
    /// Add and list merchants; set their gateway passwords.
    #[command(subcommand)]
    Merchant(admin::MerchantCmd),
    /// Create, list and revoke merchants' API keys.
    #[command(subcommand)]
    Apikey(admin::ApiKeyCmd),
    /// Add and list processing terminals.
    #[command(subcommand)]
    Terminal(admin::TerminalCmd),
    /// Data keys: status, rotation, re-wrapping, retirement.
    #[command(subcommand)]
    Keys(admin::KeysCmd),
    /// Remove expired records now (reads already ignore them).
    Sweep(admin::SweepArgs),
    /// Vault counters and key state.
    Stats(admin::StatsArgs),
    /// Read and verify the hash-chained audit log (on --data or --database, or through a running
    /// daemon).
    #[command(subcommand)]
    Audit(audit::AuditCmd),
    /// Write a consistent, still-encrypted, checksummed backup while the vault keeps serving.
    Backup(backup::BackupArgs),
    /// Restore a backup into a new directory or an empty PostgreSQL database (verified before
    /// anything appears).
    Restore(backup::RestoreArgs),
    /// Load-test a running daemon (or the library in process) and report throughput and latency.
    Bench(Box<bench::BenchArgs>),
}

/// Runs the parsed command.
///
/// Every command may hold a vault key, passphrase, merchant password or API key (offline
/// commands unlock the vault in this process), so core dumps are disabled here, before any
/// command runs: one place that no unlocking path can bypass.
pub(crate) fn run(cli: Cli) -> anyhow::Result<()> {
    hardening::disable_core_dumps().context("disabling core dumps")?;
    if std::env::var_os(HARDENING_PROBE_ENV).is_some() {
        hardening::print_state();
    }
    match cli.command {
        Command::Init(a) => init::run(a),
        Command::Serve(a) => serve::run(*a),
        Command::Merchant(c) => admin::merchant(c),
        Command::Apikey(c) => admin::api_key(c),
        Command::Terminal(c) => admin::terminal(c),
        Command::Keys(c) => admin::keys(c),
        Command::Sweep(a) => admin::sweep(a),
        Command::Stats(a) => admin::stats(a),
        Command::Audit(c) => audit::run(c),
        Command::Backup(a) => backup::backup(a),
        Command::Restore(a) => backup::restore(a),
        Command::Bench(a) => bench::run(*a),
    }
}

/// Test hook: when set, print the process's core-dump state on stderr before the command runs.
const HARDENING_PROBE_ENV: &str = "CARDVAULT_TEST_PRINT_HARDENING";

/// Prints a runtime error as one line: the chain of causes, joined by `: `.
pub(crate) fn report_error(e: &anyhow::Error) {
    serve::say(&format!("error: {}", one_line(e)));
}

/// The causes of `e` joined by `: `, skipping a cause its parent's message already includes
/// (library errors such as `VaultError::Store` both show and return their source).
fn one_line(e: &anyhow::Error) -> String {
    let mut out = String::new();
    let mut last = String::new();
    for cause in e.chain() {
        let msg = cause.to_string();
        if last.contains(&msg) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&msg);
        last = msg;
    }
    out.replace('\n', " ")
}

/// A multi-threaded tokio runtime for the commands that talk to a socket.
pub(crate) fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_are_not_repeated() {
        let inner = std::io::Error::other("disk on fire");
        #[derive(Debug)]
        struct Wrap(std::io::Error);
        impl std::fmt::Display for Wrap {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "store error: {}", self.0)
            }
        }
        impl std::error::Error for Wrap {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let e = anyhow::Error::new(Wrap(inner)).context("opening the vault");
        assert_eq!(one_line(&e), "opening the vault: store error: disk on fire");
    }
}
