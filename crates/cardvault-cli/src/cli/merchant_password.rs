//! `cardvault merchant password <id>`: sets a merchant's gateway password, offline on `--data` or
//! `--database`, or through the daemon, like the other admin commands.
//!
//! The password comes from `--password-file`, `CARDVAULT_MERCHANT_PASSWORD` or an interactive
//! prompt (typed twice), never from argv: that is visible to every user through `/proc`.

use std::{fs, io::IsTerminal, path::PathBuf};

use anyhow::{Context, bail};
use cardvault::{MerchantId, gateway::MerchantPassword};
use clap::Args;
use zeroize::Zeroizing;

use super::{
    admin::Target,
    conn,
    key::{strip_newline, warn_if_readable_by_others},
};

/// The environment variable holding the merchant password itself.
pub(crate) const PASSWORD_ENV: &str = "CARDVAULT_MERCHANT_PASSWORD";

#[derive(Args, Debug)]
pub(crate) struct PasswordArgs {
    /// Merchant id: 1-18 digits.
    id: String,

    /// Read the password (1-64 characters) from this file; one trailing newline is ignored.
    /// The password may instead be given in CARDVAULT_MERCHANT_PASSWORD, or typed at a prompt.
    #[arg(long, value_name = "FILE")]
    password_file: Option<PathBuf>,

    #[command(flatten)]
    target: Target,
}

pub(crate) fn run(args: PasswordArgs) -> anyhow::Result<()> {
    // Check what can be checked before any prompt or vault passphrase.
    let id = MerchantId::parse(&args.id).context("merchant id")?;
    let password = read_password(args.password_file.as_ref())?;
    conn::open(&args.target)?.merchant_password(id, &password)?;
    println!("set the gateway password of merchant {id}");
    Ok(())
}

fn read_password(file: Option<&PathBuf>) -> anyhow::Result<MerchantPassword> {
    let env = std::env::var(PASSWORD_ENV).ok().filter(|s| !s.is_empty());
    if file.is_some() && env.is_some() {
        bail!("both --password-file and {PASSWORD_ENV} are given; name exactly one");
    }
    if let Some(path) = file {
        warn_if_readable_by_others(path);
        let mut s = fs::read_to_string(path)
            .with_context(|| format!("reading password file {}", path.display()))?;
        strip_newline(&mut s);
        return MerchantPassword::new(s)
            .with_context(|| format!("password file {}", path.display()));
    }
    if let Some(s) = env {
        return MerchantPassword::new(s).context(PASSWORD_ENV);
    }
    if !std::io::stdin().is_terminal() {
        bail!("no password given: pass --password-file FILE or set {PASSWORD_ENV}");
    }
    let first = Zeroizing::new(
        rpassword::prompt_password("Merchant password: ").context("reading the password")?,
    );
    let second = Zeroizing::new(
        rpassword::prompt_password("Repeat password: ").context("reading the password")?,
    );
    if *first != *second {
        bail!("the two passwords differ");
    }
    MerchantPassword::new(first.to_string()).context("password")
}
