//! `cardvault init`: create a vault, in a directory or a PostgreSQL database.

use std::path::PathBuf;

use anyhow::{Context, bail};
use cardvault::{DatabaseUrl, KdfParams, KeySource, Location, Vault, VaultOptions};
use clap::Args;

use super::{
    database::{self, DatabaseUrlParser},
    key::KeyArgs,
    target_dir::check_new_vault_dir,
};

#[derive(Args, Debug)]
pub(crate) struct InitArgs {
    #[command(flatten)]
    at: NewVaultAt,

    #[command(flatten)]
    key: KeyArgs,

    #[command(flatten)]
    kdf: KdfArgs,
}

/// Where the new vault goes: exactly one of a directory and a database.
#[derive(Args, Debug)]
#[group(id = "new_vault", required = true, multiple = false)]
pub(crate) struct NewVaultAt {
    /// Directory of the new vault: must not exist, or be empty (it is created, or set, mode 0700).
    #[arg(long, env = "CARDVAULT_DATA", value_name = "DIR")]
    data: Option<PathBuf>,

    /// PostgreSQL database of the new vault (postgres://USER@HOST:PORT/DATABASE), instead of
    /// --data: its tables and key header are created; a database holding a vault is refused.
    /// Any number of daemons can then serve it. A URL holding a password only in
    /// CARDVAULT_DATABASE_URL (never on the command line).
    #[arg(
        long,
        env = "CARDVAULT_DATABASE_URL",
        value_name = "URL",
        hide_env_values = true,
        value_parser = DatabaseUrlParser
    )]
    database: Option<DatabaseUrl>,
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
    let Some(location) = database::location(args.at.data.as_deref(), args.at.database.as_ref())
    else {
        bail!("name the new vault with --data DIR or --database URL");
    };
    // Refuse a wrong place before asking for anything, and never touch it: a directory that is
    // not new, or a database URL this build cannot open.
    match &location {
        Location::Dir(dir) => check_new_vault_dir(dir)?,
        Location::Database(_) => Vault::check_supported(&location)
            .with_context(|| format!("creating a vault {}", database::at(&location)))?,
    }
    let kdf = args.kdf.params()?;
    // Words a guesser would try first: the directory's names, or the database URL's (user,
    // host, database; the masked password is `***`).
    let shown = location.to_string();
    let place_words: Vec<&str> = match &location {
        Location::Dir(dir) => dir
            .iter()
            .filter_map(|c| c.to_str())
            .filter(|c| *c != "/")
            .collect(),
        Location::Database(_) => shown
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .collect(),
    };
    let key = args.key.resolve_new(&place_words)?;
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
    let vault = Vault::create_at(&location, &key, options)
        .with_context(|| format!("creating a vault {}", database::at(&location)))?;
    let stats = vault.stats();
    vault.flush().context("flushing the new vault")?;
    drop(vault);
    println!(
        "created vault {} ({kind}); current data key {}",
        database::at(&location),
        stats.current_dek
    );
    match &location {
        Location::Dir(dir) => println!(
            "next: cardvault merchant add --data {} ID --name NAME",
            dir.display()
        ),
        // Not the URL itself: it may hold a password, which would then land in a terminal's
        // scrollback (and a copy of the masked one would not connect).
        // With the URL in CARDVAULT_DATABASE_URL, the next command needs nothing more.
        Location::Database(_) if !database::given_on_the_command_line() => {
            println!(
                "next: cardvault merchant add ID --name NAME (the database in CARDVAULT_DATABASE_URL)"
            )
        }
        Location::Database(_) => {
            println!("next: cardvault merchant add --database URL ID --name NAME")
        }
    }
    Ok(())
}
