//! `cardvault backup` and `cardvault restore`: a consistent, still-encrypted, checksummed copy of
//! a vault (the `CVBK` file, docs/record-format.md) and its restoration into a new directory.

use std::path::PathBuf;

use anyhow::{Context, bail};
use cardvault::Vault;
use clap::Args;
use indicatif::ProgressBar;
use vault_wire::BackupRequest;

use super::admin::{Conn, Target};

#[derive(Args, Debug)]
pub(crate) struct BackupArgs {
    /// The backup file to create (mode 0600; an existing file is refused). Through a daemon, the
    /// daemon writes it, on its machine, as its user.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    #[command(flatten)]
    target: Target,
}

#[derive(Args, Debug)]
pub(crate) struct RestoreArgs {
    /// The backup file to restore.
    #[arg(long, value_name = "FILE")]
    from: PathBuf,
    /// The new vault directory: must not exist, or be empty.
    #[arg(long, value_name = "DIR")]
    data: PathBuf,
}

fn bar() -> ProgressBar {
    let bar = ProgressBar::new(0);
    bar.set_style(super::progress::style(
        "backup [{bar:40}] {pos}/~{len} entries ({rate}, eta {eta})",
    ));
    bar
}

fn hex32(b: &[u8; 32]) -> String {
    hex::encode(b)
}

pub(crate) fn backup(args: BackupArgs) -> anyhow::Result<()> {
    let out = if args.out.is_absolute() {
        args.out.clone()
    } else {
        std::env::current_dir()
            .context("current directory")?
            .join(&args.out)
    };
    if out.symlink_metadata().is_ok() {
        bail!("{} exists; not overwriting it", out.display());
    }
    match Conn::open(&args.target)? {
        Conn::Offline(v) => {
            let bar = bar();
            let r = v
                .backup_to_file(&out, |done, total| {
                    bar.set_length(total);
                    bar.set_position(done);
                })
                .with_context(|| format!("writing backup {}", out.display()))?;
            bar.finish_and_clear();
            println!(
                "backup {}: {} records ({} entries), {} bytes, sha256 {}; writes held at most {} ms at a time ({} ms in all)",
                out.display(),
                r.records,
                r.entries,
                r.bytes,
                hex32(&r.sha256),
                r.pause.as_millis(),
                r.held.as_millis()
            );
        }
        Conn::Remote { rt, client } => {
            let Some(path) = out.to_str() else {
                bail!("{} is not valid UTF-8", out.display());
            };
            let bar = ProgressBar::new_spinner();
            bar.set_message("backup running in the daemon...");
            bar.enable_steady_tick(std::time::Duration::from_millis(120));
            let r = rt.block_on(client.backup(&BackupRequest {
                path: path.to_owned(),
            }));
            bar.finish_and_clear();
            let r = r?;
            println!(
                "backup {} (written by the daemon): {} records ({} entries), {} bytes, sha256 {}; writes held at most {} ms at a time",
                r.path, r.records, r.entries, r.bytes, r.sha256, r.pause_ms
            );
        }
    }
    Ok(())
}

pub(crate) fn restore(args: RestoreArgs) -> anyhow::Result<()> {
    // Say what is in the way (a vault, or other files) before reading the backup.
    super::target_dir::check_new_vault_dir(&args.data)?;
    let file = std::fs::File::open(&args.from)
        .with_context(|| format!("opening backup {}", args.from.display()))?;
    let bar = ProgressBar::new_spinner();
    bar.set_style(super::progress::style(
        "restore {spinner} {pos} entries verified and imported ({rate})",
    ));
    let r = Vault::restore(file, &args.data, |done| bar.set_position(done));
    bar.finish_and_clear();
    let r = r.with_context(|| {
        format!(
            "restoring {} into {}",
            args.from.display(),
            args.data.display()
        )
    })?;
    println!(
        "restored {} records ({} entries, sha256 {}) into {}; vault id {}; it opens with the original vault's key",
        r.records,
        r.entries,
        hex32(&r.sha256),
        args.data.display(),
        hex::encode(r.vault_id)
    );
    Ok(())
}
