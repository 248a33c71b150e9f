//! Backup and restore of a full vault (100k records by default; `CARDVAULT_BACKUP_RECORDS=n`
//! for another size), with the production page-cache size:
//! `cargo bench -p vault-service --bench backup`.
//!
//! The longest writer pause and the lock-held time of the first backup are printed once (they
//! are what the steps of a backup exist to bound); criterion times whole backups and restores.
//! This was an `#[ignore]`d test that only printed timings.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use criterion::{Criterion, criterion_group, criterion_main};
use vault_service::{TokenizeOptions, TokenizeRequest, Vault, VaultOptions};
use vault_testkit::{
    cards::random_pan,
    clock::manual_clock,
    vault::{PASSPHRASE, card, merchant, options, passphrase},
};

/// A vault with `n` records (in batches of 1,000) in `dir`.
fn filled(dir: &Path, n: usize) -> Vault {
    let opts = VaultOptions {
        cache_capacity: VaultOptions::default().cache_capacity,
        ..options(manual_clock())
    };
    let vault = Vault::create(dir, &passphrase(PASSPHRASE), opts).expect("create");
    let m = merchant(1);
    let mut rng = rand::rng();
    for _ in 0..n / 1000 {
        let items = (0..1000)
            .map(|_| TokenizeRequest {
                card: card(&random_pan(&mut rng, "4", 16), "3012"),
                options: TokenizeOptions::default(),
            })
            .collect();
        vault.tokenize_batch(m, items).expect("tokenize");
    }
    vault
}

#[allow(clippy::print_stderr)] // the report of a bench
fn report(r: &vault_service::BackupReport, took: Duration) {
    eprintln!(
        "{} records: longest pause {:?}, held {:?} in {} steps, backup {:?} ({} bytes)",
        r.records, r.pause, r.held, r.steps, took, r.bytes
    );
}

fn backup(c: &mut Criterion) {
    let n: usize = std::env::var("CARDVAULT_BACKUP_RECORDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let vault = filled(&dir.path().join("v"), n);
    let file = dir.path().join("b.cvbk");
    let t = Instant::now();
    let r = vault.backup_to_file(&file, |_, _| {}).expect("backup");
    report(&r, t.elapsed());

    let mut g = c.benchmark_group("backup");
    g.sample_size(10);
    g.bench_function(format!("backup {n} records"), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for i in 0..iters {
                let out = dir.path().join(format!("bench-{i}.cvbk"));
                let t = Instant::now();
                vault.backup_to_file(&out, |_, _| {}).expect("backup");
                total += t.elapsed();
                std::fs::remove_file(&out).expect("remove");
            }
            total
        });
    });
    g.bench_function(format!("restore {n} records"), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for i in 0..iters {
                let target = dir.path().join(format!("restored-{i}"));
                let t = Instant::now();
                Vault::restore(std::fs::File::open(&file).expect("open"), &target, |_| {})
                    .expect("restore");
                total += t.elapsed();
                std::fs::remove_dir_all(&target).expect("remove");
            }
            total
        });
    });
    g.finish();
}

criterion_group!(benches, backup);
criterion_main!(benches);
