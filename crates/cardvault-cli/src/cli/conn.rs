//! How an admin command reaches the vault: [`Admin`], implemented by [`InProcess`] (the vault
//! opened in this process on `--data DIR` or `--database URL`) and [`Daemon`] (the daemon
//! holding it, over its Unix socket with an admin API key). Both answer with the HTTP API's wire
//! types, the in-process side through the daemon's own mapping (`vault_daemon::views`), so a
//! command prints the same whichever way it went.

use std::{
    fs::{File, TryLockError},
    path::{Path, PathBuf},
};

use anyhow::{Context, bail};
use cardvault::{
    MerchantId, Scopes, StoreError, Vault, VaultError, VaultOptions,
    gateway::{Gateway, MerchantPassword, TerminalId},
};
use indicatif::ProgressBar;
use time::{OffsetDateTime, format_description::well_known::Rfc3339};
use vault_client::{ApiKey, Client};
use vault_daemon::views;
use vault_wire::{
    ApiKeyCreateRequest, ApiKeyResponse, AuditArchiveRequest, AuditArchiveResponse, AuditEntryView,
    AuditVerifyResponse, BackupRequest, BackupResponse, KeyStatusResponse, MerchantAddRequest,
    MerchantPasswordRequest, MerchantResponse, RewrapResponse, StatsResponse, TerminalAddRequest,
    TerminalResponse,
};
use zeroize::Zeroizing;

use super::{admin::Target, runtime, serve::SOCKET_POINTER};

/// Most audit entries one daemon request answers (the daemon's limit).
const AUDIT_PAGE: usize = 1000;

/// The admin operations, the same offline and through the daemon. Ids come as the user typed
/// them: each side checks them as it always has (the daemon answers a bad one with a 400).
/// `out`, a file a command is to create (a backup, an audit archive), made absolute (a daemon
/// writes it, from its own working directory); refused if something is there already.
pub(crate) fn new_file_path(out: &Path) -> anyhow::Result<PathBuf> {
    let out = if out.is_absolute() {
        out.to_path_buf()
    } else {
        std::env::current_dir()
            .context("current directory")?
            .join(out)
    };
    if out.symlink_metadata().is_ok() {
        bail!("{} exists; not overwriting it", out.display());
    }
    Ok(out)
}

pub(crate) trait Admin {
    /// The vault itself, for the commands that work offline only (`None` through a daemon).
    fn vault(&self) -> Option<&Vault>;
    fn merchant_add(&self, id: &str, name: &str) -> anyhow::Result<MerchantResponse>;
    fn merchant_unlock(&self, id: &str) -> anyhow::Result<()>;
    fn merchant_password(&self, id: MerchantId, password: &MerchantPassword) -> anyhow::Result<()>;
    fn merchants(&self) -> anyhow::Result<Vec<MerchantResponse>>;
    /// A new API key: a merchant key for `merchant`, or an operator key. The secret is returned
    /// once, with the key's public part.
    fn api_key_create(
        &self,
        merchant: Option<String>,
        operator: bool,
        scopes: Scopes,
        label: String,
    ) -> anyhow::Result<(ApiKeyResponse, Zeroizing<String>)>;
    fn api_keys(&self, merchant: Option<&str>) -> anyhow::Result<Vec<ApiKeyResponse>>;
    fn api_key_revoke(&self, id: &str) -> anyhow::Result<()>;
    fn terminal_add(&self, merchant: &str, id: &str) -> anyhow::Result<TerminalResponse>;
    fn terminals(&self, merchant: Option<&str>) -> anyhow::Result<Vec<TerminalResponse>>;
    fn key_status(&self) -> anyhow::Result<KeyStatusResponse>;
    /// Makes a fresh data key current; its id.
    fn rotate_key(&self) -> anyhow::Result<u32>;
    /// One re-wrap pass, with a progress display on stderr.
    fn rewrap(&self) -> anyhow::Result<RewrapResponse>;
    /// The ids of the data keys retired.
    fn retire_keys(&self) -> anyhow::Result<Vec<u32>>;
    /// Expired records removed.
    fn sweep(&self) -> anyhow::Result<u64>;
    fn stats(&self) -> anyhow::Result<StatsResponse>;
    /// The last `n` audit entries, oldest first.
    fn audit_tail(&self, n: usize) -> anyhow::Result<Vec<AuditEntryView>>;
    fn audit_verify(&self) -> anyhow::Result<AuditVerifyResponse>;
    /// Moves the entries written before `before` (whole blocks) into a new file at the
    /// absolute path `out`.
    fn audit_archive(
        &self,
        before: OffsetDateTime,
        out: &Path,
    ) -> anyhow::Result<AuditArchiveResponse>;
    /// Writes a backup to the absolute path `out` (with a progress display on stderr).
    fn backup(&self, out: &Path) -> anyhow::Result<BackupDone>;
}

/// A written backup.
pub(crate) struct BackupDone {
    pub(crate) response: BackupResponse,
    /// The total time writes were held, in ms: known only in process (the daemon's answer has the
    /// longest single pause only).
    pub(crate) held_ms: Option<u128>,
}

/// Opens the vault the target names: through the daemon when `--socket` is given or a daemon
/// holds `--data`, else in this process with the key options (`--database` always in this
/// process: a database has no lock, and daemons serving it leave it open to others).
pub(crate) fn open(target: &Target) -> anyhow::Result<Box<dyn Admin>> {
    if let Some(socket) = &target.location.socket {
        return Ok(Box::new(Daemon::connect(target, socket)?));
    }
    let Some(location) = target.location.vault() else {
        bail!("name the vault with --data DIR or --database URL, or a daemon with --socket PATH");
    };
    let dir = location.dir().map(Path::to_path_buf);
    if let Some(dir) = &dir
        && held_by_daemon(dir)
    {
        return Ok(Box::new(Daemon::connect(target, &daemon_socket(dir)?)?));
    }
    // Root on the service user's vault: what this command writes goes back to that user.
    let owner = match &dir {
        Some(dir) => super::owner::adopt(dir)?,
        None => None,
    };
    let opening = || format!("opening the vault {}", super::database::at(&location));
    // A database URL this build cannot open is refused before the key is asked for.
    Vault::check_supported(&location).with_context(opening)?;
    let key = target.key.resolve(false)?;
    match (
        Vault::open_at(&location, &key, VaultOptions::default()),
        &dir,
    ) {
        (Ok(v), _) => Ok(Box::new(InProcess(Gateway::new(v), owner))),
        // The daemon started between the probe and the open.
        (Err(VaultError::Store(StoreError::InUse(_))), Some(dir)) => {
            Ok(Box::new(Daemon::connect(target, &daemon_socket(dir)?)?))
        }
        (Err(e), _) => Err(e).with_context(opening),
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

fn merchant_id(s: &str) -> anyhow::Result<MerchantId> {
    MerchantId::parse(s).context("merchant id")
}

fn no_such_key(id: &str) -> anyhow::Error {
    anyhow::anyhow!("no API key with id {id}")
}

/// A spinner on stderr while the daemon works on a long request.
fn spinner(message: &'static str) -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    bar.set_message(message);
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    bar
}

/// The vault opened in this process, with the gateway above it (merchant passwords, and the
/// sweep of the gateway's expired records).
/// The second field, dropped after the vault is closed, gives what this process wrote back to the
/// vault's owner (`owner.rs`).
pub(crate) struct InProcess(
    Gateway,
    #[expect(dead_code, reason = "held for its Drop, after the vault's")]
    Option<super::owner::GiveBack>,
);

impl Admin for InProcess {
    fn vault(&self) -> Option<&Vault> {
        Some(self.0.vault())
    }

    fn merchant_add(&self, id: &str, name: &str) -> anyhow::Result<MerchantResponse> {
        let id = merchant_id(id)?;
        Ok(views::merchant(&self.0.vault().add_merchant(id, name)?))
    }

    fn merchant_unlock(&self, id: &str) -> anyhow::Result<()> {
        Ok(self.0.unlock_merchant(merchant_id(id)?)?)
    }

    fn merchant_password(&self, id: MerchantId, password: &MerchantPassword) -> anyhow::Result<()> {
        Ok(self.0.set_merchant_password(id, password)?)
    }

    fn merchants(&self) -> anyhow::Result<Vec<MerchantResponse>> {
        Ok(self
            .0
            .vault()
            .merchants()?
            .iter()
            .map(views::merchant)
            .collect())
    }

    fn api_key_create(
        &self,
        merchant: Option<String>,
        operator: bool,
        scopes: Scopes,
        label: String,
    ) -> anyhow::Result<(ApiKeyResponse, Zeroizing<String>)> {
        let k = match merchant.as_deref() {
            Some(m) if !operator => {
                self.0
                    .vault()
                    .create_api_key(merchant_id(m)?, scopes, &label)?
            }
            _ => self.0.vault().create_operator_key(scopes, &label)?,
        };
        Ok((
            views::api_key(&k.info),
            Zeroizing::new(k.expose().to_owned()),
        ))
    }

    fn api_keys(&self, merchant: Option<&str>) -> anyhow::Result<Vec<ApiKeyResponse>> {
        let m = merchant.map(merchant_id).transpose()?;
        Ok(self
            .0
            .vault()
            .api_keys(m)?
            .iter()
            .map(views::api_key)
            .collect())
    }

    fn api_key_revoke(&self, id: &str) -> anyhow::Result<()> {
        self.0.vault().revoke_api_key(id).map_err(|e| match e {
            VaultError::NotFound => no_such_key(id),
            e => e.into(),
        })
    }

    fn terminal_add(&self, merchant: &str, id: &str) -> anyhow::Result<TerminalResponse> {
        let m = merchant_id(merchant)?;
        Ok(views::terminal(
            &self.0.add_terminal(m, TerminalId::parse(id)?)?,
        ))
    }

    fn terminals(&self, merchant: Option<&str>) -> anyhow::Result<Vec<TerminalResponse>> {
        let m = merchant.map(merchant_id).transpose()?;
        Ok(self.0.terminals(m)?.iter().map(views::terminal).collect())
    }

    fn key_status(&self) -> anyhow::Result<KeyStatusResponse> {
        Ok(views::key_status(&self.0.vault().stats()))
    }

    fn rotate_key(&self) -> anyhow::Result<u32> {
        Ok(self.0.vault().rotate_key()?.get())
    }

    fn rewrap(&self) -> anyhow::Result<RewrapResponse> {
        let bar = ProgressBar::new(self.0.vault().stats().records);
        bar.set_style(super::progress::style(
            "rewrap [{bar:40}] {pos}/{len} records ({rate}, eta {eta})",
        ));
        let p = self.0.vault().rewrap(|p| {
            bar.set_length(p.total.max(p.scanned));
            bar.set_position(p.scanned);
        })?;
        bar.finish_and_clear();
        Ok(views::rewrap(&p))
    }

    fn retire_keys(&self) -> anyhow::Result<Vec<u32>> {
        Ok(views::retired(&self.0.vault().retire_unused_keys()?).retired)
    }

    fn sweep(&self) -> anyhow::Result<u64> {
        Ok(self.0.sweep_expired(self.0.vault().now())?)
    }

    fn stats(&self) -> anyhow::Result<StatsResponse> {
        Ok(views::stats(&self.0.vault().stats()))
    }

    fn audit_tail(&self, n: usize) -> anyhow::Result<Vec<AuditEntryView>> {
        Ok(self
            .0
            .vault()
            .audit_tail(n)?
            .iter()
            .map(views::audit_entry)
            .collect())
    }

    fn audit_verify(&self) -> anyhow::Result<AuditVerifyResponse> {
        Ok(views::audit_verify(self.0.vault().audit_verify()?))
    }

    fn audit_archive(
        &self,
        before: OffsetDateTime,
        out: &Path,
    ) -> anyhow::Result<AuditArchiveResponse> {
        let a = self
            .0
            .vault()
            .audit_archive(before, out)
            .with_context(|| format!("archiving to {}", out.display()))?;
        Ok(views::audit_archived(out.display().to_string(), &a))
    }

    fn backup(&self, out: &Path) -> anyhow::Result<BackupDone> {
        let bar = ProgressBar::new(0);
        bar.set_style(super::progress::style(
            "backup [{bar:40}] {pos}/~{len} entries ({rate}, eta {eta})",
        ));
        let r = self
            .0
            .vault()
            .backup_to_file(out, |done, total| {
                bar.set_length(total);
                bar.set_position(done);
            })
            .with_context(|| format!("writing backup {}", out.display()))?;
        bar.finish_and_clear();
        Ok(BackupDone {
            response: views::backup(out.display().to_string(), &r),
            held_ms: Some(r.held.as_millis()),
        })
    }
}

/// A running daemon, reached over its socket with an admin API key.
pub(crate) struct Daemon {
    rt: tokio::runtime::Runtime,
    client: Client,
}

impl Daemon {
    fn connect(target: &Target, socket: &Path) -> anyhow::Result<Self> {
        let key = admin_key(target, socket)?;
        let rt = runtime()?;
        let client = rt.block_on(super::connect::connect(socket, Some(&key)))?;
        Ok(Self { rt, client })
    }
}

impl Admin for Daemon {
    fn vault(&self) -> Option<&Vault> {
        None
    }

    fn merchant_add(&self, id: &str, name: &str) -> anyhow::Result<MerchantResponse> {
        Ok(self
            .rt
            .block_on(self.client.merchant_add(&MerchantAddRequest {
                merchant_id: id.to_owned(),
                name: name.to_owned(),
            }))?)
    }

    fn merchant_unlock(&self, id: &str) -> anyhow::Result<()> {
        Ok(self.rt.block_on(self.client.merchant_unlock(id))?)
    }

    fn merchant_password(&self, id: MerchantId, password: &MerchantPassword) -> anyhow::Result<()> {
        let req = MerchantPasswordRequest {
            password: password.expose().to_owned(),
        };
        Ok(self
            .rt
            .block_on(self.client.merchant_password(&id.to_string(), &req))?)
    }

    fn merchants(&self) -> anyhow::Result<Vec<MerchantResponse>> {
        Ok(self.rt.block_on(self.client.merchants())?.merchants)
    }

    fn api_key_create(
        &self,
        merchant: Option<String>,
        operator: bool,
        scopes: Scopes,
        label: String,
    ) -> anyhow::Result<(ApiKeyResponse, Zeroizing<String>)> {
        let req = ApiKeyCreateRequest {
            merchant_id: merchant.filter(|_| !operator),
            operator,
            scopes: scopes.iter().map(|s| s.as_str().to_owned()).collect(),
            label,
        };
        let created = self.rt.block_on(self.client.api_key_create(&req))?;
        Ok((created.api_key.clone(), Zeroizing::new(created.key.clone())))
    }

    fn api_keys(&self, merchant: Option<&str>) -> anyhow::Result<Vec<ApiKeyResponse>> {
        Ok(self.rt.block_on(self.client.api_keys(merchant))?.api_keys)
    }

    fn api_key_revoke(&self, id: &str) -> anyhow::Result<()> {
        self.rt
            .block_on(self.client.api_key_revoke(id))
            .map_err(|e| match e.status() {
                Some(404) => no_such_key(id),
                _ => e.into(),
            })
    }

    fn terminal_add(&self, merchant: &str, id: &str) -> anyhow::Result<TerminalResponse> {
        Ok(self
            .rt
            .block_on(self.client.terminal_add(&TerminalAddRequest {
                merchant_id: merchant.to_owned(),
                terminal_id: id.to_owned(),
            }))?)
    }

    fn terminals(&self, merchant: Option<&str>) -> anyhow::Result<Vec<TerminalResponse>> {
        Ok(self.rt.block_on(self.client.terminals(merchant))?.terminals)
    }

    fn key_status(&self) -> anyhow::Result<KeyStatusResponse> {
        Ok(self.rt.block_on(self.client.key_status())?)
    }

    fn rotate_key(&self) -> anyhow::Result<u32> {
        Ok(self.rt.block_on(self.client.rotate_key())?.current_dek)
    }

    fn rewrap(&self) -> anyhow::Result<RewrapResponse> {
        // The daemon answers when the pass is over; show that work is going on.
        let bar = spinner("rewrap running in the daemon...");
        let r = self.rt.block_on(self.client.rewrap());
        bar.finish_and_clear();
        Ok(r?)
    }

    fn retire_keys(&self) -> anyhow::Result<Vec<u32>> {
        Ok(self.rt.block_on(self.client.retire_keys())?.retired)
    }

    fn sweep(&self) -> anyhow::Result<u64> {
        Ok(self.rt.block_on(self.client.sweep())?.removed)
    }

    fn stats(&self) -> anyhow::Result<StatsResponse> {
        Ok(self.rt.block_on(self.client.stats())?)
    }

    fn audit_tail(&self, n: usize) -> anyhow::Result<Vec<AuditEntryView>> {
        if n == 0 {
            return Ok(Vec::new());
        }
        // The last page first (it tells where the log ends), then forward to fill `n`.
        let last = self
            .rt
            .block_on(self.client.audit_entries(None, n.min(AUDIT_PAGE)))?
            .entries;
        if n <= AUDIT_PAGE || last.is_empty() {
            return Ok(last);
        }
        let end = last.last().map_or(0, |e| e.seq);
        let mut after = end.saturating_sub(u64::try_from(n).unwrap_or(u64::MAX));
        let mut out = Vec::new();
        while after < end {
            let page = self
                .rt
                .block_on(self.client.audit_entries(Some(after), AUDIT_PAGE))?
                .entries;
            let Some(tail) = page.last() else { break };
            after = tail.seq;
            out.extend(page.into_iter().filter(|e| e.seq <= end));
        }
        Ok(out)
    }

    fn audit_verify(&self) -> anyhow::Result<AuditVerifyResponse> {
        Ok(self.rt.block_on(self.client.audit_verify())?)
    }

    fn audit_archive(
        &self,
        before: OffsetDateTime,
        out: &Path,
    ) -> anyhow::Result<AuditArchiveResponse> {
        let Some(path) = out.to_str() else {
            bail!("{} is not valid UTF-8", out.display());
        };
        let bar = spinner("archive running in the daemon...");
        let r = self
            .rt
            .block_on(self.client.audit_archive(&AuditArchiveRequest {
                before: before.format(&Rfc3339)?,
                path: path.to_owned(),
            }));
        bar.finish_and_clear();
        r.with_context(|| format!("archiving to {}", out.display()))
    }

    fn backup(&self, out: &Path) -> anyhow::Result<BackupDone> {
        let Some(path) = out.to_str() else {
            bail!("{} is not valid UTF-8", out.display());
        };
        let bar = spinner("backup running in the daemon...");
        let r = self.rt.block_on(self.client.backup(&BackupRequest {
            path: path.to_owned(),
        }));
        bar.finish_and_clear();
        Ok(BackupDone {
            response: r?,
            held_ms: None,
        })
    }
}
