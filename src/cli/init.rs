//! `cardvault init`: create a vault.

use std::path::PathBuf;

use anyhow::Context;
use cardvault::{KdfParams, KeySource, Vault, VaultOptions};
use clap::Args;

use super::key::KeyArgs;

#[derive(Args, Debug)]
pub(crate) struct InitArgs {
    /// Directory of the new vault (created with mode 0700; must not hold a vault).
    #[arg(long, env = "CARDVAULT_DATA", value_name = "DIR")]
    data: PathBuf,

    #[command(flatten)]
    key: KeyArgs,

    #[command(flatten)]
    kdf: KdfArgs,
}

/// Argon2id parameters for a passphrase-protected vault (ignored with a key file).
#[derive(Args, Debug)]
pub(crate) struct KdfArgs {
    /// Argon2id memory in KiB (default 65536 = 64 MiB; at most 1 GiB).
    #[arg(long, value_name = "KIB")]
    kdf_memory_kib: Option<u32>,

    /// Argon2id passes over memory (default 3; at most 16).
    #[arg(long, value_name = "N")]
    kdf_time: Option<u32>,

    /// Argon2id lanes (default 1; at most 8).
    #[arg(long, value_name = "N")]
    kdf_lanes: Option<u32>,

    /// TEST ONLY: 64 KiB, 1 pass. Offers almost no protection against passphrase guessing.
    /// Also set by CARDVAULT_TEST_FAST_KDF=1.
    #[arg(
        long,
        hide = true,
        env = "CARDVAULT_TEST_FAST_KDF",
        value_parser = clap::builder::BoolishValueParser::new(),
        default_value_t = false
    )]
    insecure_fast_kdf: bool,
}

impl KdfArgs {
    fn params(&self) -> anyhow::Result<KdfParams> {
        let base = if self.insecure_fast_kdf {
            KdfParams::insecure_for_tests()
        } else {
            KdfParams::DEFAULT
        };
        KdfParams::new(
            self.kdf_memory_kib.unwrap_or(base.m_cost_kib),
            self.kdf_time.unwrap_or(base.t_cost),
            self.kdf_lanes.unwrap_or(base.p_cost),
        )
        .context("--kdf-* options")
    }
}

pub(crate) fn run(args: InitArgs) -> anyhow::Result<()> {
    let kdf = args.kdf.params()?;
    let key = args.key.resolve(true)?;
    let kind = match &key {
        KeySource::Passphrase(_) => format!(
            "passphrase, argon2id m={} KiB t={} p={}",
            kdf.m_cost_kib, kdf.t_cost, kdf.p_cost
        ),
        KeySource::KeyFile(_) => "key file".to_owned(),
    };
    let options = VaultOptions {
        kdf,
        ..VaultOptions::default()
    };
    let vault = Vault::create(&args.data, &key, options)
        .with_context(|| format!("creating a vault in {}", args.data.display()))?;
    let stats = vault.stats();
    vault.flush().context("flushing the new vault")?;
    drop(vault);
    println!(
        "created vault in {} ({kind}); current data key {}",
        args.data.display(),
        stats.current_dek
    );
    println!(
        "next: cardvault merchant add --data {} ID --name NAME",
        args.data.display()
    );
    Ok(())
}
