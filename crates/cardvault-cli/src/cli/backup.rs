//! `cardvault backup` and `cardvault restore`: a consistent, still-encrypted, checksummed copy of
//! a vault (the `CVBK` file, docs/record-format.md) and its restoration into a new directory.
//! A vault in a database is backed up like one in a directory (to the `--out` file), and a backup
//! restores into an empty database as into a new directory.

use std::path::PathBuf;

use anyhow::{Context, bail};
use cardvault::{DatabaseUrl, Location, Vault};
use clap::Args;
use indicatif::ProgressBar;

use super::{
    admin::Target,
    conn,
    database::{self, DatabaseUrlParser},
};

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
    #[command(flatten)]
    into: RestoreInto,
}

/// Where a backup is restored: exactly one of a new directory and an empty database.
#[derive(Args, Debug)]
#[group(id = "restore_into", required = true, multiple = false)]
pub(crate) struct RestoreInto {
    /// The new vault directory: must not exist, or be empty. Never taken from the environment
    /// (CARDVAULT_DATA names the vault in service).
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// The PostgreSQL database to restore into (postgres://USER@HOST:PORT/DATABASE), instead of
    /// --data: it must hold no vault (nothing is committed unless the whole file verifies). A URL
    /// holding a password only in CARDVAULT_DATABASE_URL (never on the command line).
    #[arg(
        long,
        env = "CARDVAULT_DATABASE_URL",
        value_name = "URL",
        hide_env_values = true,
        value_parser = DatabaseUrlParser
    )]
    database: Option<DatabaseUrl>,
}

fn hex32(b: &[u8; 32]) -> String {
    hex::encode(b)
}

pub(crate) fn backup(args: BackupArgs) -> anyhow::Result<()> {
    let out = conn::new_file_path(&args.out)?;
    let done = conn::open(&args.target)?.backup(&out)?;
    let r = &done.response;
    match done.held_ms {
        Some(held) => println!(
            "backup {}: {} records ({} entries), {} bytes, sha256 {}; writes held at most {} ms at a time ({held} ms in all)",
            r.path, r.records, r.entries, r.bytes, r.sha256, r.pause_ms
        ),
        None => println!(
            "backup {} (written by the daemon): {} records ({} entries), {} bytes, sha256 {}; writes held at most {} ms at a time",
            r.path, r.records, r.entries, r.bytes, r.sha256, r.pause_ms
        ),
    }
    Ok(())
}

pub(crate) fn restore(args: RestoreArgs) -> anyhow::Result<()> {
    let Some(location) = database::location(args.into.data.as_deref(), args.into.database.as_ref())
    else {
        bail!("name the new vault with --data DIR or --database URL");
    };
    // Say what is in the way (a vault, or other files) before reading the backup.
    if let Location::Dir(dir) = &location {
        super::target_dir::check_new_vault_dir(dir)?;
    }
    // `Location`'s Display masks a database URL's password.
    let restoring = || format!("restoring {} into {location}", args.from.display());
    let file = std::fs::File::open(&args.from)
        .with_context(|| format!("opening backup {}", args.from.display()))?;
    let bar = ProgressBar::new_spinner();
    bar.set_style(super::progress::style(
        "restore {spinner} {pos} entries verified and imported ({rate})",
    ));
    let r = Vault::restore_at(file, &location, |done| bar.set_position(done));
    bar.finish_and_clear();
    let r = r.with_context(restoring)?;
    println!(
        "restored {} records ({} entries, sha256 {}) into {location}; vault id {}; it opens with the original vault's key",
        r.records,
        r.entries,
        hex32(&r.sha256),
        hex::encode(r.vault_id)
    );
    Ok(())
}
