//! `cardvault init`: create a vault.

use std::path::PathBuf;

use anyhow::{Context, bail};
use cardvault::{KdfParams, KeySource, Vault, VaultOptions};
use clap::Args;

use super::{key::KeyArgs, target_dir::check_new_vault_dir};

#[derive(Args, Debug)]
pub(crate) struct InitArgs {
    /// Directory of the new vault: must not exist, or be empty (it is created, or set, mode 0700).
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
    /// Also set by CARDVAULT_TEST_FAST_KDF=1. Without it, parameters below the floor
    /// (KdfArgs::FLOOR) are refused; with it, a warning banner is printed.
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
    /// The weakest Argon2id parameters accepted without the test-only flag: 19 MiB and 2 passes
    /// (OWASP's minimum for Argon2id).
    const FLOOR: KdfParams = KdfParams {
        m_cost_kib: 19_456,
        t_cost: 2,
        p_cost: 1,
    };

    pub(crate) fn params(&self) -> anyhow::Result<KdfParams> {
        let base = if self.insecure_fast_kdf {
            KdfParams::insecure_for_tests()
        } else {
            KdfParams::DEFAULT
        };
        let params = KdfParams::new(
            self.kdf_memory_kib.unwrap_or(base.m_cost_kib),
            self.kdf_time.unwrap_or(base.t_cost),
            self.kdf_lanes.unwrap_or(base.p_cost),
        )
        .context("--kdf-* options")?;
        if self.insecure_fast_kdf {
            eprintln!("{INSECURE_KDF_BANNER}");
        } else if params.m_cost_kib < Self::FLOOR.m_cost_kib || params.t_cost < Self::FLOOR.t_cost {
            bail!(
                "--kdf-memory-kib {} / --kdf-time {} are below the floor ({} KiB, {} passes): a passphrase would be cheap to guess",
                params.m_cost_kib,
                params.t_cost,
                Self::FLOOR.m_cost_kib,
                Self::FLOOR.t_cost
            );
        }
        Ok(params)
    }
}

/// Printed on stderr whenever the test-only KDF is used.
const INSECURE_KDF_BANNER: &str = "\
################################################################################
###  WARNING: TEST-ONLY KEY DERIVATION (CARDVAULT_TEST_FAST_KDF / --insecure-fast-kdf)
###  Argon2id with 64 KiB and 1 pass: this vault's passphrase is cheap to guess.
###  Never use this for a vault that will hold real card numbers.
################################################################################";

pub(crate) fn run(args: InitArgs) -> anyhow::Result<()> {
    // Refuse a wrong directory before asking for anything, and never touch it.
    check_new_vault_dir(&args.data)?;
    let kdf = args.kdf.params()?;
    let dir_words: Vec<&str> = args
        .data
        .iter()
        .filter_map(|c| c.to_str())
        .filter(|c| *c != "/")
        .collect();
    let key = args.key.resolve_new(&dir_words)?;
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
