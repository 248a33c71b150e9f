//! `cardvault audit tail|verify|archive`: read, check and archive the vault's audit log.
//!
//! Like the admin commands, they open `--data DIR` or `--database URL` with the key options, or,
//! when a daemon holds the directory or `--socket` is given, go through the daemon (`GET
//! /admin/audit`, `POST /admin/audit/verify`, `POST /admin/audit/archive`) with an admin API key.
//! `audit verify --archive FILE` works in process only (it needs the vault key).

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Subcommand;
use time::{OffsetDateTime, format_description::well_known::Rfc3339};
use vault_wire::AuditEntryView;

use super::{admin::Target, conn};

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
        target: Target,
    },
    /// Check the whole hash chain; exits 1 and names the first bad entry if it is broken.
    Verify {
        /// Check this archive file (written by `audit archive`) instead of the log, with the
        /// vault's key (offline, on --data or --database).
        #[arg(long, value_name = "FILE")]
        archive: Option<PathBuf>,
        #[command(flatten)]
        target: Target,
    },
    /// Move the entries written before DATE (whole blocks, never the newest) into a new file,
    /// verifiable on its own with `audit verify --archive FILE`; the remaining log starts from a
    /// keyed anchor and still verifies. Runs while the vault serves: through the daemon that
    /// holds --data (or --socket, with an admin API key; the daemon writes FILE on its machine),
    /// or on --database beside the daemons (every daemon's chain is archived).
    Archive {
        /// RFC 3339 time (`2026-01-01T00:00:00Z`) or a date (`2026-01-01`, midnight UTC).
        #[arg(long, value_name = "DATE")]
        before: String,
        /// The archive file to write (must not exist).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        #[command(flatten)]
        target: Target,
    },
}

pub(crate) fn run(cmd: AuditCmd) -> anyhow::Result<()> {
    match cmd {
        AuditCmd::Tail { n, json, target } => {
            let entries = conn::open(&target)?.audit_tail(n)?;
            if json {
                for e in &entries {
                    println!("{}", serde_json::to_string(e)?);
                }
            } else {
                print!("{}", table(&entries));
            }
        }
        AuditCmd::Archive {
            before,
            out,
            target,
        } => {
            let before = parse_date(&before)?;
            let out = conn::new_file_path(&out)?;
            let a = conn::open(&target)?.audit_archive(before, &out)?;
            if a.entries == 0 {
                println!("nothing to archive: no whole block of entries before {before}");
            }
            for c in &a.chains {
                let chain = c
                    .chain
                    .as_deref()
                    .map_or(String::new(), |id| format!("chain {id}: "));
                println!(
                    "{chain}archived entries {}..={} ({} entries) to {}; the log now starts at entry {}",
                    c.first_seq,
                    c.last_seq,
                    c.last_seq - c.first_seq + 1,
                    out.display(),
                    c.last_seq + 1
                );
            }
            if a.chains.len() > 1 {
                println!(
                    "{} entries of {} chains archived",
                    a.entries,
                    a.chains.len()
                );
            }
            if a.more {
                println!(
                    "older entries remain (one run moves at most {} blocks): run again with another --out",
                    cardvault::MAX_ARCHIVE_BLOCKS
                );
            }
        }
        AuditCmd::Verify {
            archive: Some(file),
            target,
        } => {
            let admin = conn::open(&target)?;
            let Some(v) = admin.vault() else {
                bail!("`audit verify --archive` works offline only (it needs the vault key)");
            };
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let r = v.audit_verify_archive(&bytes);
            match r.first_bad {
                None => println!("archive OK: {} entries, chain intact", r.entries),
                Some(seq) => {
                    println!("archive BROKEN at entry {seq}");
                    bail!(
                        "archive {} broken at entry {seq}: {}",
                        file.display(),
                        r.problem.as_deref().unwrap_or("verification failed")
                    );
                }
            }
        }
        AuditCmd::Verify {
            archive: None,
            target,
        } => {
            let report = conn::open(&target)?.audit_verify()?;
            match report.first_bad {
                // `entries` counts from seq 1: the archived ones are vouched for by the keyed
                // anchor the remaining log starts from.
                None => println!(
                    "audit log OK: {} entries, chain intact (the count includes archived entries, if any; on a database, each daemon's chain is checked)",
                    report.entries
                ),
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

/// A header row, then one row per entry in aligned columns (token and detail last, unpadded). On
/// a vault shared by several daemons each entry's chain comes first: every chain numbers its
/// entries from 1.
fn table(entries: &[AuditEntryView]) -> String {
    let chained = entries.iter().any(|e| e.chain.is_some());
    let actors: Vec<String> = entries.iter().map(actor).collect();
    let width = actors.iter().map(String::len).max().unwrap_or(0).max(5);
    let chain_cell = |c: &str| {
        if chained {
            format!("{c:<16}  ")
        } else {
            String::new()
        }
    };
    let mut out = format!(
        "{}{:>8}  {:<30}  {:<24}  {:<28}  {:<width$}  {}\n",
        chain_cell("CHAIN"),
        "SEQ",
        "AT",
        "ACTION",
        "OUTCOME",
        "ACTOR",
        "TOKEN / DETAIL"
    );
    for (e, actor) in entries.iter().zip(&actors) {
        let mut rest = Vec::new();
        if let Some(t) = &e.token {
            rest.push(format!("token={t}"));
        }
        if let Some(d) = &e.detail {
            rest.push(d.clone());
        }
        out.push_str(&format!(
            "{}{:>8}  {:<30}  {:<24}  {:<28}  {:<width$}  {}\n",
            chain_cell(e.chain.as_deref().unwrap_or("-")),
            e.seq,
            e.at,
            e.action,
            e.outcome,
            actor,
            rest.join(" ")
        ));
    }
    out
}

/// `merchant=..,key=..,uid=..`, or `local`.
fn actor(e: &AuditEntryView) -> String {
    let mut parts = Vec::new();
    if let Some(m) = &e.merchant_id {
        parts.push(format!("merchant={m}"));
    }
    if let Some(k) = &e.key_id {
        parts.push(format!("key={k}"));
    }
    if let Some(u) = e.peer_uid {
        parts.push(format!("uid={u}"));
    }
    if parts.is_empty() {
        "local".to_owned()
    } else {
        parts.join(",")
    }
}

/// An RFC 3339 time, or a date `YYYY-MM-DD` (midnight UTC).
fn parse_date(s: &str) -> anyhow::Result<OffsetDateTime> {
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Ok(t);
    }
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let d = time::Date::parse(s, &format)
        .with_context(|| format!("--before {s:?}: expected 2026-01-01 or 2026-01-01T00:00:00Z"))?;
    Ok(d.midnight().assume_utc())
}

#[cfg(test)]
mod tests {
    use vault_wire::AuditEntryView;

    use super::table;

    fn entry(chain: Option<&str>, seq: u64, key: &str) -> AuditEntryView {
        AuditEntryView {
            seq,
            at: "2026-12-07T12:00:00Z".to_owned(),
            action: "reveal".to_owned(),
            outcome: "ok".to_owned(),
            merchant_id: Some("890490".to_owned()),
            key_id: Some(key.to_owned()),
            peer_uid: Some(0),
            token: None,
            detail: None,
            prev_hash: String::new(),
            hash: String::new(),
            chain: chain.map(str::to_owned),
        }
    }

    #[test]
    fn columns_align_and_chains_are_named_when_there_are_several() {
        let one = table(&[entry(None, 1, "k1")]);
        assert!(one.trim_start().starts_with("SEQ"), "{one}");
        let shared = table(&[
            entry(Some("0000000000000001"), 1, "k1"),
            entry(
                Some("0000000000000002"),
                1,
                "a-much-longer-key-id-than-the-column",
            ),
        ]);
        let lines: Vec<&str> = shared.lines().collect();
        assert!(lines[0].starts_with("CHAIN"), "{shared}");
        assert!(
            lines[1].starts_with("0000000000000001") && lines[2].starts_with("0000000000000002")
        );
        // The last column starts at the same place on every line, however long the actor.
        let last = |l: &str, what: &str| l.find(what).unwrap();
        let header = last(lines[0], "TOKEN / DETAIL");
        for l in &lines[1..] {
            assert_eq!(l.len(), header, "{shared}");
        }
    }
}
