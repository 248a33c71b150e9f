//! Admin commands: merchants, API keys, terminals, data keys, sweeps, statistics.
//!
//! Each works offline on `--data DIR` or `--database URL` (opening the vault with the key
//! options) or, when a daemon holds the directory or `--socket` is given, through the daemon's
//! socket with an admin API key. Both go through [`conn::Admin`], which answers with the wire
//! types of the HTTP API, so the output is the same either way.

use std::path::PathBuf;

use anyhow::Context;
use cardvault::{DatabaseUrl, Scopes};
use clap::{Args, Subcommand};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};
use vault_wire::ApiKeyKind;

use super::{
    conn,
    database::{self, DatabaseUrlParser},
    key::KeyArgs,
    secret_file::PendingSecretFile,
};

/// Where the vault is: a data directory or a database (not both), a daemon socket, or a socket
/// with either.
#[derive(Args, Debug, Clone)]
#[group(id = "location", required = true, multiple = true)]
pub(crate) struct Location {
    /// The vault directory. Opened directly, unless a running daemon holds it; then the command
    /// goes through that daemon's socket.
    #[arg(long, env = "CARDVAULT_DATA", value_name = "DIR")]
    pub(crate) data: Option<PathBuf>,

    /// The vault's PostgreSQL database (postgres://USER@HOST:PORT/DATABASE), instead of --data.
    /// Opened directly, even while daemons serve it (a database is shared: no lock). A URL
    /// holding a password only in CARDVAULT_DATABASE_URL (never on the command line).
    #[arg(
        long,
        env = "CARDVAULT_DATABASE_URL",
        value_name = "URL",
        hide_env_values = true,
        value_parser = DatabaseUrlParser,
        conflicts_with = "data"
    )]
    pub(crate) database: Option<DatabaseUrl>,

    /// Go through the daemon listening on this socket (needs an admin API key).
    #[arg(long, env = "CARDVAULT_SOCKET", value_name = "PATH")]
    pub(crate) socket: Option<PathBuf>,
}

impl Location {
    /// The vault `--data` or `--database` names, if either.
    pub(crate) fn vault(&self) -> Option<cardvault::Location> {
        database::location(self.data.as_deref(), self.database.as_ref())
    }
}

/// Options shared by every admin command.
#[derive(Args, Debug, Clone)]
pub(crate) struct Target {
    #[command(flatten)]
    pub(crate) location: Location,

    /// File holding an API key with the `admin` scope, for the daemon path. The key itself may
    /// be given in CARDVAULT_API_KEY. Default: `operator-key` next to the socket, if present
    /// (the operator key `serve --dev` writes).
    #[arg(long, env = "CARDVAULT_API_KEY_FILE", value_name = "FILE")]
    pub(crate) api_key_file: Option<PathBuf>,

    #[command(flatten)]
    pub(crate) key: KeyArgs,
}

#[derive(Subcommand, Debug)]
pub(crate) enum MerchantCmd {
    /// Add a merchant.
    Add {
        /// Merchant id: 1-18 digits.
        id: String,
        /// Display name.
        #[arg(long)]
        name: String,
        #[command(flatten)]
        target: Target,
    },
    /// List merchants.
    List {
        #[command(flatten)]
        target: Target,
    },
    /// Set or replace a merchant's gateway password (what `POST /token` checks).
    ///
    /// The password is read from --password-file, CARDVAULT_MERCHANT_PASSWORD or a prompt; never
    /// from the command line, where every user of the machine could read it.
    Password(super::merchant_password::PasswordArgs),
    /// Clear a merchant's login lockout (its counted failed `POST /token` logins). Audited.
    Unlock {
        /// Merchant id.
        id: String,
        #[command(flatten)]
        target: Target,
    },
}

#[derive(Subcommand, Debug)]
pub(crate) enum ApiKeyCmd {
    /// Create an API key; the key is printed once, on stdout, and cannot be shown again.
    Create {
        /// The merchant the key acts for (merchant keys).
        #[arg(
            long,
            value_name = "ID",
            required_unless_present = "operator",
            conflicts_with = "operator"
        )]
        merchant: Option<String>,
        /// An operator key: belongs to no merchant, holds only `admin`.
        #[arg(long)]
        operator: bool,
        /// Comma-separated. Merchant keys: tokenize, reveal, fingerprint, sessions. Operator
        /// keys: admin.
        #[arg(long, value_name = "LIST")]
        scopes: String,
        /// A label for humans.
        #[arg(long, default_value = "")]
        label: String,
        /// Write the key to this new file (mode 0600) instead of printing it.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        #[command(flatten)]
        target: Target,
    },
    /// List API keys (never their secrets).
    List {
        /// Only this merchant's keys.
        #[arg(long, value_name = "ID")]
        merchant: Option<String>,
        #[command(flatten)]
        target: Target,
    },
    /// Revoke an API key by id; it stops working at once.
    Revoke {
        /// The key id (16 hex characters; the part after `cvk_`).
        id: String,
        #[command(flatten)]
        target: Target,
    },
}

#[derive(Subcommand, Debug)]
pub(crate) enum TerminalCmd {
    /// Add a processing terminal for a merchant.
    Add {
        /// Terminal id: 4-50 characters of [A-Za-z0-9_-].
        id: String,
        /// Its merchant.
        #[arg(long, value_name = "ID")]
        merchant: String,
        #[command(flatten)]
        target: Target,
    },
    /// List terminals.
    List {
        /// Only this merchant's terminals.
        #[arg(long, value_name = "ID")]
        merchant: Option<String>,
        #[command(flatten)]
        target: Target,
    },
}

#[derive(Subcommand, Debug)]
pub(crate) enum KeysCmd {
    /// Show the data keys and which one is current.
    Status {
        #[command(flatten)]
        target: Target,
    },
    /// Make a fresh data key current (older keys keep decrypting).
    Rotate {
        #[command(flatten)]
        target: Target,
    },
    /// Re-seal every record under the current data key, online.
    Rewrap {
        /// Afterwards, drop decrypt-only keys that no record uses any more.
        #[arg(long)]
        retire: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Drop decrypt-only data keys that no record uses.
    Retire {
        #[command(flatten)]
        target: Target,
    },
    /// Change the vault key (passphrase or key file); offline, while no daemon holds the vault.
    Rekey(Box<super::rekey::RekeyArgs>),
}

#[derive(Args, Debug)]
pub(crate) struct SweepArgs {
    #[command(flatten)]
    target: Target,
}

#[derive(Args, Debug)]
pub(crate) struct StatsArgs {
    /// Print JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    target: Target,
}

pub(crate) fn merchant(cmd: MerchantCmd) -> anyhow::Result<()> {
    match cmd {
        MerchantCmd::Add { id, name, target } => {
            let m = conn::open(&target)?.merchant_add(&id, &name)?;
            println!("added merchant {} ({})", m.merchant_id, m.name);
        }
        MerchantCmd::Password(args) => super::merchant_password::run(args)?,
        MerchantCmd::Unlock { id, target } => {
            conn::open(&target)?.merchant_unlock(&id)?;
            println!("cleared the login failures of merchant {id}");
        }
        MerchantCmd::List { target } => {
            let list = conn::open(&target)?.merchants()?;
            println!("{:<20} {:<22} NAME", "ID", "CREATED");
            for m in list {
                println!(
                    "{:<20} {:<22} {}",
                    m.merchant_id,
                    date(m.created_at),
                    m.name
                );
            }
        }
    }
    Ok(())
}

pub(crate) fn api_key(cmd: ApiKeyCmd) -> anyhow::Result<()> {
    match cmd {
        ApiKeyCmd::Create {
            merchant,
            operator,
            scopes,
            label,
            out,
            target,
        } => {
            // Validate locally first, so a typo fails before a passphrase prompt.
            let parsed = Scopes::parse(&scopes).context("--scopes")?;
            if !operator && parsed.contains(cardvault::Scope::Admin) {
                anyhow::bail!(
                    "--scopes: admin is for operator keys only: use `apikey create --operator --scopes admin`"
                );
            }
            if operator && parsed != Scopes::of(&[cardvault::Scope::Admin]) {
                anyhow::bail!("--scopes: operator keys hold only the admin scope (--scopes admin)");
            }
            // Create the output file before the key: a bad path must not leave an active key.
            let out = out.as_deref().map(PendingSecretFile::create).transpose()?;
            let admin = conn::open(&target)?;
            let (info, key) = admin.api_key_create(merchant, operator, parsed, label)?;
            match &info.merchant_id {
                Some(m) => eprintln!(
                    "created API key {} for merchant {m} (scopes {})",
                    info.id,
                    info.scopes.join(",")
                ),
                None => eprintln!(
                    "created operator key {} (scopes {})",
                    info.id,
                    info.scopes.join(",")
                ),
            }
            match out {
                Some(file) => {
                    let path = file.path().to_path_buf();
                    if let Err(e) = file.write(key.as_bytes()) {
                        // Nobody will ever see this key: take it back.
                        let revoked = admin.api_key_revoke(&info.id).is_ok();
                        let what = if revoked {
                            "revoked it again"
                        } else {
                            "could NOT revoke it: run `cardvault apikey revoke` on it"
                        };
                        return Err(e.context(format!("API key {} created, {what}", info.id)));
                    }
                    eprintln!("the key is in {} (mode 0600)", path.display());
                }
                None => {
                    eprintln!("this is the only time the key is shown; store it now:");
                    println!("{}", key.as_str());
                }
            }
        }
        ApiKeyCmd::List { merchant, target } => {
            let list = conn::open(&target)?.api_keys(merchant.as_deref())?;
            println!(
                "{:<18} {:<9} {:<20} {:<32} {:<8} LABEL",
                "ID", "KIND", "MERCHANT", "SCOPES", "STATE"
            );
            for k in list {
                let state = if k.revoked { "revoked" } else { "active" };
                let kind = match k.kind {
                    ApiKeyKind::Merchant => "merchant",
                    ApiKeyKind::Operator => "operator",
                };
                println!(
                    "{:<18} {:<9} {:<20} {:<32} {:<8} {}",
                    k.id,
                    kind,
                    k.merchant_id.as_deref().unwrap_or("-"),
                    k.scopes.join(","),
                    state,
                    k.label
                );
            }
        }
        ApiKeyCmd::Revoke { id, target } => {
            conn::open(&target)?.api_key_revoke(&id)?;
            println!("revoked API key {id}");
        }
    }
    Ok(())
}

pub(crate) fn terminal(cmd: TerminalCmd) -> anyhow::Result<()> {
    match cmd {
        TerminalCmd::Add {
            id,
            merchant,
            target,
        } => {
            let t = conn::open(&target)?.terminal_add(&merchant, &id)?;
            println!(
                "added terminal {} for merchant {}",
                t.terminal_id, t.merchant_id
            );
        }
        TerminalCmd::List { merchant, target } => {
            let list = conn::open(&target)?.terminals(merchant.as_deref())?;
            println!("{:<52} {:<20} CREATED", "ID", "MERCHANT");
            for t in list {
                println!(
                    "{:<52} {:<20} {}",
                    t.terminal_id,
                    t.merchant_id,
                    date(t.created_at)
                );
            }
        }
    }
    Ok(())
}

pub(crate) fn keys(cmd: KeysCmd) -> anyhow::Result<()> {
    match cmd {
        KeysCmd::Status { target } => {
            let status = conn::open(&target)?.key_status()?;
            println!("{:<6} {:<14} CREATED", "DEK", "STATE");
            for d in status.deks {
                println!("{:<6} {:<14} {}", d.id, d.state, date(d.created_at));
            }
        }
        KeysCmd::Rotate { target } => {
            let id = conn::open(&target)?.rotate_key()?;
            println!(
                "data key {id} is now current; run `cardvault keys rewrap` to re-seal older records"
            );
        }
        KeysCmd::Rewrap { retire, target } => {
            let admin = conn::open(&target)?;
            let p = admin.rewrap()?;
            println!(
                "rewrap: {} scanned, {} re-sealed, {} failed their integrity check",
                p.scanned, p.rewrapped, p.failed
            );
            if retire {
                print_retired(admin.retire_keys()?);
            }
        }
        KeysCmd::Retire { target } => {
            print_retired(conn::open(&target)?.retire_keys()?);
        }
        KeysCmd::Rekey(args) => super::rekey::run(*args)?,
    }
    Ok(())
}

fn print_retired(ids: Vec<u32>) {
    if ids.is_empty() {
        println!("no data key to retire");
    } else {
        let ids: Vec<String> = ids.iter().map(u32::to_string).collect();
        println!("retired data keys {}", ids.join(", "));
    }
}

pub(crate) fn sweep(args: SweepArgs) -> anyhow::Result<()> {
    let removed = conn::open(&args.target)?.sweep()?;
    println!("removed {removed} expired records");
    Ok(())
}

pub(crate) fn stats(args: StatsArgs) -> anyhow::Result<()> {
    let s = conn::open(&args.target)?.stats()?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&s)?);
    } else {
        println!("records       {}", s.records);
        let held = if s.deks == 1 { "key" } else { "keys" };
        println!(
            "current DEK   {} ({} data {held} held)",
            s.current_dek, s.deks
        );
        if s.size_on_disk == 0 {
            // A vault in PostgreSQL: its files are the server's, out of cardvault's sight (a
            // vault directory is never empty).
            println!("size on disk  not known here (PostgreSQL: ask the server, pg_database_size)");
        } else {
            println!("size on disk  {} bytes", s.size_on_disk);
        }
        println!(
            "commits       {} groups, {} jobs, {} flushes since open",
            s.groups, s.jobs, s.flushes
        );
    }
    Ok(())
}

fn date(t: OffsetDateTime) -> String {
    t.format(&Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}
