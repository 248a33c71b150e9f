//! `cardvault keys rekey`: change the vault key (passphrase or key file), offline. The new key
//! is read and checked (a new passphrase must pass the same strength check as at `init`) before
//! the vault is unlocked with the current one.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;

use super::{
    admin::Target,
    conn,
    init::KdfArgs,
    key::{KeyArgs, NEW_PASSPHRASE_ENV},
};

#[derive(Args, Debug)]
pub(crate) struct RekeyArgs {
    /// The new key file: exactly 32 raw bytes or 64 hex characters.
    #[arg(long, value_name = "FILE", conflicts_with = "new_passphrase_file")]
    new_key_file: Option<PathBuf>,

    /// Read the new passphrase from this file (one trailing newline is ignored). It may instead
    /// be given in CARDVAULT_NEW_PASSPHRASE, or typed (twice) at a prompt.
    #[arg(long, value_name = "FILE")]
    new_passphrase_file: Option<PathBuf>,

    #[command(flatten)]
    kdf: KdfArgs,

    /// The vault, and its current key.
    #[command(flatten)]
    target: Target,
}

pub(crate) fn run(args: RekeyArgs) -> anyhow::Result<()> {
    let kdf = args.kdf.params()?;
    let new = KeyArgs {
        passphrase_file: args.new_passphrase_file.clone(),
        key_file: args.new_key_file.clone(),
    };
    let new_key = new
        .resolve_new_from(NEW_PASSPHRASE_ENV, "New vault passphrase: ", &[])
        .context("the new key")?;
    let admin = conn::open(&args.target)?;
    let Some(vault) = admin.vault() else {
        bail!(
            "`keys rekey` works offline only: stop the daemon that holds the vault, then run it again"
        );
    };
    vault
        .rekey(&new_key, kdf)
        .context("changing the vault key")?;
    vault.flush().context("flushing the vault")?;
    println!(
        "the vault key is changed: the old key no longer opens this vault (copies of the old key header, e.g. in backups, still open with the old key)"
    );
    Ok(())
}
