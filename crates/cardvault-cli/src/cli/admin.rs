//! Admin commands: merchants, API keys, terminals, data keys, sweeps, statistics.
//!
//! Each works offline on `--data DIR` (opening the vault with the key options) or, when a daemon
//! holds the directory or `--socket` is given, through the daemon's socket with an admin API key.
//! Both paths produce the wire types of the HTTP API, so the output is the same either way.

use std::{
    fs::{File, TryLockError},
    io::ErrorKind,
    path::{Path, PathBuf},
};

use anyhow::{Context, bail};
use cardvault::{
    ApiKeyInfo, DekState, MerchantId, Scopes, StoreError, TerminalId, Vault, VaultError,
    VaultOptions, VaultStats,
};
use clap::{Args, Subcommand};
use indicatif::ProgressBar;
use time::{OffsetDateTime, format_description::well_known::Rfc3339};
use vault_client::{ApiKey, Client};
use vault_wire::{
    ApiKeyCreateRequest, ApiKeyKind, ApiKeyResponse, DekStatus, KeyStatusResponse,
    MerchantAddRequest, MerchantResponse, RewrapResponse, StatsResponse, TerminalAddRequest,
    TerminalResponse,
};

use super::{key::KeyArgs, runtime, secret_file::PendingSecretFile, serve::SOCKET_POINTER};

/// Where the vault is: a data directory, a daemon socket, or both.
#[derive(Args, Debug, Clone)]
#[group(id = "location", required = true, multiple = true)]
pub(crate) struct Location {
    /// The vault directory. Opened directly, unless a running daemon holds it; then the command
    /// goes through that daemon's socket.
    #[arg(long, env = "CARDVAULT_DATA", value_name = "DIR")]
    data: Option<PathBuf>,

    /// Go through the daemon listening on this socket (needs an admin API key).
    #[arg(long, env = "CARDVAULT_SOCKET", value_name = "PATH")]
    socket: Option<PathBuf>,
}

/// Options shared by every admin command.
#[derive(Args, Debug, Clone)]
pub(crate) struct Target {
    #[command(flatten)]
    location: Location,

    /// File holding an API key with the `admin` scope, for the daemon path. The key itself may
    /// be given in CARDVAULT_API_KEY. Default: `api-key` next to the socket, if present
    /// (what `serve --dev` writes).
    #[arg(long, env = "CARDVAULT_API_KEY_FILE", value_name = "FILE")]
    api_key_file: Option<PathBuf>,

    #[command(flatten)]
    key: KeyArgs,
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

/// An open vault, or a daemon client.
pub(crate) enum Conn {
    Offline(Vault),
    Remote {
        rt: tokio::runtime::Runtime,
        client: Client,
    },
}

impl Conn {
    pub(crate) fn open(target: &Target) -> anyhow::Result<Self> {
        if let Some(socket) = &target.location.socket {
            return remote(target, socket);
        }
        let Some(dir) = &target.location.data else {
            bail!("name the vault with --data DIR or a daemon with --socket PATH");
        };
        if held_by_daemon(dir) {
            return remote(target, &daemon_socket(dir)?);
        }
        let key = target.key.resolve(false)?;
        match Vault::open(dir, &key, VaultOptions::default()) {
            Ok(v) => Ok(Self::Offline(v)),
            // The daemon started between the probe and the open.
            Err(VaultError::Store(StoreError::InUse(_))) => remote(target, &daemon_socket(dir)?),
            Err(e) => Err(e).with_context(|| format!("opening the vault in {}", dir.display())),
        }
    }
}

/// Whether another process holds the vault's directory lock (without needing the key).
fn held_by_daemon(dir: &Path) -> bool {
    let Ok(file) = File::open(dir.join("cardvault.lock")) else {
        return false;
    };
    matches!(file.try_lock_shared(), Err(TryLockError::WouldBlock))
}

/// The socket a daemon serving `dir` listens on, as it recorded it in the directory (`serve` and
/// `serve --dev` both write it). No guess: a wrong socket would only confuse.
fn daemon_socket(dir: &Path) -> anyhow::Result<PathBuf> {
    std::fs::read_to_string(dir.join(SOCKET_POINTER))
        .ok()
        .map(|s| PathBuf::from(s.trim()))
        .filter(|p| p.is_absolute())
        .with_context(|| {
            format!(
                "a running daemon holds {} but recorded no socket in {}; name it with --socket PATH",
                dir.display(),
                dir.join(SOCKET_POINTER).display()
            )
        })
}

fn remote(target: &Target, socket: &Path) -> anyhow::Result<Conn> {
    let key = admin_key(target, socket)?;
    let rt = runtime()?;
    let client = rt.block_on(super::connect::connect(socket, Some(&key)))?;
    Ok(Conn::Remote { rt, client })
}

fn admin_key(target: &Target, socket: &Path) -> anyhow::Result<ApiKey> {
    if let Ok(k) = std::env::var("CARDVAULT_API_KEY")
        && !k.trim().is_empty()
    {
        return ApiKey::new(k).context("CARDVAULT_API_KEY");
    }
    let path = match &target.api_key_file {
        Some(p) => p.clone(),
        None => {
            // `serve --dev` writes its operator key there.
            let beside = socket
                .parent()
                .map(|d| d.join("operator-key"))
                .filter(|p| p.exists());
            match beside {
                Some(p) => p,
                None => bail!(
                    "going through the daemon at {} needs an operator key (admin): pass --api-key-file FILE or set CARDVAULT_API_KEY",
                    socket.display()
                ),
            }
        }
    };
    super::key::warn_if_readable_by_others(&path);
    ApiKey::from_file(&path)
        .with_context(|| format!("reading API key file {}", path.display()))?
        .with_context(|| format!("API key file {}", path.display()))
}

pub(crate) fn merchant(cmd: MerchantCmd) -> anyhow::Result<()> {
    match cmd {
        MerchantCmd::Add { id, name, target } => {
            let m = match Conn::open(&target)? {
                Conn::Offline(v) => {
                    let id = MerchantId::parse(&id).context("merchant id")?;
                    merchant_view(&v.add_merchant(id, &name)?)
                }
                Conn::Remote { rt, client } => {
                    rt.block_on(client.merchant_add(&MerchantAddRequest {
                        merchant_id: id,
                        name,
                    }))?
                }
            };
            println!("added merchant {} ({})", m.merchant_id, m.name);
        }
        MerchantCmd::Password(args) => super::merchant_password::run(args)?,
        MerchantCmd::Unlock { id, target } => {
            match Conn::open(&target)? {
                Conn::Offline(v) => {
                    let id = MerchantId::parse(&id).context("merchant id")?;
                    v.unlock_merchant(id)?;
                }
                Conn::Remote { rt, client } => rt.block_on(client.merchant_unlock(&id))?,
            }
            println!("cleared the login failures of merchant {id}");
        }
        MerchantCmd::List { target } => {
            let list = match Conn::open(&target)? {
                Conn::Offline(v) => v.merchants()?.iter().map(merchant_view).collect(),
                Conn::Remote { rt, client } => rt.block_on(client.merchants())?.merchants,
            };
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
            let conn = Conn::open(&target)?;
            let (info, key) = match &conn {
                Conn::Offline(v) => {
                    let k = match merchant.as_deref() {
                        Some(m) if !operator => {
                            let id = MerchantId::parse(m).context("merchant id")?;
                            v.create_api_key(id, parsed, &label)?
                        }
                        _ => v.create_operator_key(parsed, &label)?,
                    };
                    (
                        api_key_view(&k.info),
                        zeroize::Zeroizing::new(k.expose().to_owned()),
                    )
                }
                Conn::Remote { rt, client } => {
                    let req = ApiKeyCreateRequest {
                        merchant_id: merchant.filter(|_| !operator),
                        operator,
                        scopes: parsed.iter().map(|s| s.as_str().to_owned()).collect(),
                        label,
                    };
                    let created = rt.block_on(client.api_key_create(&req))?;
                    (
                        created.api_key.clone(),
                        zeroize::Zeroizing::new(created.key.clone()),
                    )
                }
            };
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
                        let revoked = match &conn {
                            Conn::Offline(v) => v.revoke_api_key(&info.id).is_ok(),
                            Conn::Remote { rt, client } => {
                                rt.block_on(client.api_key_revoke(&info.id)).is_ok()
                            }
                        };
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
            let list = match Conn::open(&target)? {
                Conn::Offline(v) => {
                    let m = merchant
                        .as_deref()
                        .map(MerchantId::parse)
                        .transpose()
                        .context("merchant id")?;
                    v.api_keys(m)?.iter().map(api_key_view).collect()
                }
                Conn::Remote { rt, client } => {
                    rt.block_on(client.api_keys(merchant.as_deref()))?.api_keys
                }
            };
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
            let unknown = || anyhow::anyhow!("no API key with id {id}");
            match Conn::open(&target)? {
                Conn::Offline(v) => v.revoke_api_key(&id).map_err(|e| match e {
                    VaultError::NotFound => unknown(),
                    e => e.into(),
                })?,
                Conn::Remote { rt, client } => {
                    rt.block_on(client.api_key_revoke(&id))
                        .map_err(|e| match e.status() {
                            Some(404) => unknown(),
                            _ => e.into(),
                        })?
                }
            }
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
            let t = match Conn::open(&target)? {
                Conn::Offline(v) => {
                    let m = MerchantId::parse(&merchant).context("merchant id")?;
                    terminal_view(&v.add_terminal(m, TerminalId::parse(&id)?)?)
                }
                Conn::Remote { rt, client } => {
                    rt.block_on(client.terminal_add(&TerminalAddRequest {
                        merchant_id: merchant,
                        terminal_id: id,
                    }))?
                }
            };
            println!(
                "added terminal {} for merchant {}",
                t.terminal_id, t.merchant_id
            );
        }
        TerminalCmd::List { merchant, target } => {
            let list = match Conn::open(&target)? {
                Conn::Offline(v) => {
                    let m = merchant
                        .as_deref()
                        .map(MerchantId::parse)
                        .transpose()
                        .context("merchant id")?;
                    v.terminals(m)?.iter().map(terminal_view).collect()
                }
                Conn::Remote { rt, client } => {
                    rt.block_on(client.terminals(merchant.as_deref()))?
                        .terminals
                }
            };
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
            let status = match Conn::open(&target)? {
                Conn::Offline(v) => key_status_view(&v.stats()),
                Conn::Remote { rt, client } => rt.block_on(client.key_status())?,
            };
            println!("{:<6} {:<14} CREATED", "DEK", "STATE");
            for d in status.deks {
                println!("{:<6} {:<14} {}", d.id, d.state, date(d.created_at));
            }
        }
        KeysCmd::Rotate { target } => {
            let id = match Conn::open(&target)? {
                Conn::Offline(v) => v.rotate_key()?.get(),
                Conn::Remote { rt, client } => rt.block_on(client.rotate_key())?.current_dek,
            };
            println!(
                "data key {id} is now current; run `cardvault keys rewrap` to re-seal older records"
            );
        }
        KeysCmd::Rewrap { retire, target } => {
            let conn = Conn::open(&target)?;
            let p = rewrap(&conn)?;
            println!(
                "rewrap: {} scanned, {} re-sealed, {} failed their integrity check",
                p.scanned, p.rewrapped, p.failed
            );
            if retire {
                print_retired(retire_keys(&conn)?);
            }
        }
        KeysCmd::Retire { target } => {
            let conn = Conn::open(&target)?;
            print_retired(retire_keys(&conn)?);
        }
        KeysCmd::Rekey(args) => super::rekey::run(*args)?,
    }
    Ok(())
}

fn rewrap(conn: &Conn) -> anyhow::Result<RewrapResponse> {
    match conn {
        Conn::Offline(v) => {
            let total = v.stats().records;
            let bar = ProgressBar::new(total);
            bar.set_style(super::progress::style(
                "rewrap [{bar:40}] {pos}/{len} records ({rate}, eta {eta})",
            ));
            let p = v.rewrap(|p| {
                bar.set_length(p.total.max(p.scanned));
                bar.set_position(p.scanned);
            })?;
            bar.finish_and_clear();
            Ok(RewrapResponse {
                scanned: p.scanned,
                rewrapped: p.rewrapped,
                failed: p.failed,
                total: p.total,
            })
        }
        Conn::Remote { rt, client } => {
            // The daemon answers when the pass is over; show that work is going on.
            let bar = ProgressBar::new_spinner();
            bar.set_message("rewrap running in the daemon...");
            bar.enable_steady_tick(std::time::Duration::from_millis(120));
            let r = rt.block_on(client.rewrap());
            bar.finish_and_clear();
            Ok(r?)
        }
    }
}

fn retire_keys(conn: &Conn) -> anyhow::Result<Vec<u32>> {
    Ok(match conn {
        Conn::Offline(v) => v.retire_unused_keys()?.iter().map(|d| d.get()).collect(),
        Conn::Remote { rt, client } => rt.block_on(client.retire_keys())?.retired,
    })
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
    let removed = match Conn::open(&args.target)? {
        Conn::Offline(v) => v.sweep_expired(v.now())?,
        Conn::Remote { rt, client } => rt.block_on(client.sweep())?.removed,
    };
    println!("removed {removed} expired records");
    Ok(())
}

pub(crate) fn stats(args: StatsArgs) -> anyhow::Result<()> {
    let s = match Conn::open(&args.target)? {
        Conn::Offline(v) => stats_view(&v.stats()),
        Conn::Remote { rt, client } => rt.block_on(client.stats())?,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&s)?);
    } else {
        println!("records       {}", s.records);
        let held = if s.deks == 1 { "key" } else { "keys" };
        println!(
            "current DEK   {} ({} data {held} held)",
            s.current_dek, s.deks
        );
        println!("size on disk  {} bytes", s.size_on_disk);
        println!(
            "commits       {} groups, {} jobs, {} flushes since open",
            s.groups, s.jobs, s.flushes
        );
    }
    Ok(())
}

/// Creates `path` with mode 0600 (refusing to overwrite) and writes `bytes`.
pub(crate) fn write_secret_file(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::{io::Write, os::unix::fs::OpenOptionsExt};
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| match e.kind() {
            ErrorKind::AlreadyExists => {
                anyhow::anyhow!("{} exists; not overwriting it", path.display())
            }
            _ => anyhow::Error::new(e).context(format!("creating {}", path.display())),
        })?;
    f.write_all(bytes)
        .and_then(|()| f.write_all(b"\n"))
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

fn date(t: OffsetDateTime) -> String {
    t.format(&Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

pub(crate) fn merchant_view(m: &cardvault::Merchant) -> MerchantResponse {
    MerchantResponse {
        merchant_id: m.id.to_string(),
        name: m.name.clone(),
        created_at: m.created_at,
    }
}

fn api_key_view(k: &ApiKeyInfo) -> ApiKeyResponse {
    ApiKeyResponse {
        id: k.id.clone(),
        merchant_id: k.merchant.map(|m| m.to_string()),
        kind: if k.merchant.is_some() {
            ApiKeyKind::Merchant
        } else {
            ApiKeyKind::Operator
        },
        scopes: k.scopes.iter().map(|s| s.as_str().to_owned()).collect(),
        label: k.label.clone(),
        created_at: k.created_at,
        revoked: k.revoked,
    }
}

fn terminal_view(t: &cardvault::Terminal) -> TerminalResponse {
    TerminalResponse {
        terminal_id: t.id.to_string(),
        merchant_id: t.merchant.to_string(),
        created_at: t.created_at,
    }
}

fn key_status_view(s: &VaultStats) -> KeyStatusResponse {
    KeyStatusResponse {
        current_dek: s.current_dek.get(),
        deks: s
            .deks
            .iter()
            .map(|(id, state, created_at)| DekStatus {
                id: id.get(),
                state: match state {
                    DekState::Current => "current",
                    DekState::DecryptOnly => "decrypt-only",
                }
                .to_owned(),
                created_at: *created_at,
            })
            .collect(),
    }
}

fn stats_view(s: &VaultStats) -> StatsResponse {
    StatsResponse {
        records: s.records,
        current_dek: s.current_dek.get(),
        deks: u32::try_from(s.deks.len()).unwrap_or(u32::MAX),
        groups: s.store.groups,
        jobs: s.store.jobs,
        flushes: s.store.flushes,
        size_on_disk: s.store.size_on_disk,
        group_size_buckets: s.store.group_sizes.buckets.to_vec(),
    }
}
