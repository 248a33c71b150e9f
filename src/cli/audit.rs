//! `cardvault audit tail|verify`: read and check the vault's audit log.
//!
//! Offline only: they open `--data DIR` with the key options, so the daemon must not be holding
//! the directory (the audit key derives from the vault key; the daemon has no audit route yet).

use std::path::PathBuf;

use anyhow::{Context, bail};
use cardvault::{AuditEntry, StoreError, Vault, VaultError, VaultOptions};
use clap::{Args, Subcommand};
use time::format_description::well_known::Rfc3339;

use super::key::KeyArgs;

#[derive(Subcommand, Debug)]
pub(crate) enum AuditCmd {
    /// Print the last entries of the audit log, oldest first.
    Tail {
        /// How many entries.
        #[arg(short = 'n', long = "lines", default_value_t = 20, value_name = "N")]
        n: usize,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        target: AuditTarget,
    },
    /// Check the whole hash chain; exits 1 and names the first bad entry if it is broken.
    Verify {
        #[command(flatten)]
        target: AuditTarget,
    },
}

/// The vault to read (offline).
#[derive(Args, Debug)]
pub(crate) struct AuditTarget {
    /// The vault directory (not while a daemon serves it).
    #[arg(long, env = "CARDVAULT_DATA", value_name = "DIR")]
    data: PathBuf,

    #[command(flatten)]
    key: KeyArgs,
}

fn open(target: &AuditTarget) -> anyhow::Result<Vault> {
    let key = target.key.resolve(false)?;
    match Vault::open(&target.data, &key, VaultOptions::default()) {
        Ok(v) => Ok(v),
        Err(VaultError::Store(StoreError::InUse(_))) => bail!(
            "a running daemon holds {}; `cardvault audit` works offline only: stop the daemon (or read a backup)",
            target.data.display()
        ),
        Err(e) => Err(e).with_context(|| format!("opening the vault in {}", target.data.display())),
    }
}

pub(crate) fn run(cmd: AuditCmd) -> anyhow::Result<()> {
    match cmd {
        AuditCmd::Tail { n, json, target } => {
            let vault = open(&target)?;
            for e in vault.audit_tail(n)? {
                if json {
                    println!("{}", serde_json::to_string(&entry_json(&e))?);
                } else {
                    println!(
                        "{:>8} {} {:<20} {:<24} {:<28} {}{}",
                        e.seq,
                        at(&e),
                        e.action.as_str(),
                        e.outcome.to_string(),
                        e.actor.to_string(),
                        e.token.map(|t| format!("token={t} ")).unwrap_or_default(),
                        e.detail.as_deref().unwrap_or("")
                    );
                }
            }
        }
        AuditCmd::Verify { target } => {
            let vault = open(&target)?;
            let report = vault.audit_verify()?;
            match report.first_bad {
                None => println!("audit log OK: {} entries, chain intact", report.entries),
                Some(seq) => {
                    println!(
                        "audit log BROKEN at entry {seq} ({} entries verified before it)",
                        report.entries
                    );
                    bail!(
                        "audit chain broken at entry {seq}: {}",
                        report.problem.as_deref().unwrap_or("verification failed")
                    );
                }
            }
        }
    }
    Ok(())
}

fn at(e: &AuditEntry) -> String {
    e.at.format(&Rfc3339)
        .unwrap_or_else(|_| e.at.unix_timestamp().to_string())
}

fn entry_json(e: &AuditEntry) -> serde_json::Value {
    serde_json::json!({
        "seq": e.seq,
        "at": at(e),
        "action": e.action.as_str(),
        "outcome": e.outcome.to_string(),
        "merchant_id": e.actor.merchant.map(|m| m.to_string()),
        "key_id": e.actor.key_id,
        "peer_uid": e.actor.peer_uid,
        "token": e.token.map(|t| t.to_string()),
        "detail": e.detail,
        "prev_hash": hex::encode(e.prev_hash),
        "hash": hex::encode(e.hash),
    })
}
