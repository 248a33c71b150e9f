//! Multi-threaded throughput of the durable vault (default `VaultOptions`, `Durability::Sync`:
//! every group is appended to the write-ahead log and fdatasync'ed by the group committer before
//! its writes return),
//! each benchmark in a fresh temporary vault or store. `CARDVAULT_BENCH_DURABILITY=flush` runs
//! the same benchmarks with `Durability::Flush` (kill -9 safe, no fdatasync).
//!
//! - `floor/{8,32}_threads`: the bare store writes tokenize performs (one record: a token without
//!   `dedupe` writes nothing else) through the same group committer and flush cadence, nothing
//!   else; the figure tokenize is compared with.
//! - `tokenize/{8,32}_threads`: `Vault::tokenize` from 8 (32) threads, distinct random PANs.
//! - `tokenize_batch/100/{1,2}_threads`: `Vault::tokenize_batch` of 100 cards; elements = cards.
//! - `reveal/2_threads`, `get/2_threads`: reads of random tokens of a vault holding 20,000. Each
//!   reveal waits until its audit entry is durable (the default `RevealAudit::Durable`);
//!   `CARDVAULT_BENCH_REVEAL_AUDIT=queued` lets it return at once instead (the opt-in).
//!
//! Each figure is wall time over the whole run of `iters` operations split across the threads
//! (`iter_custom`). Run with `cargo bench --bench throughput`; see `docs/benchmarks.md`.
#![allow(clippy::print_stderr)]

use std::{
    path::Path,
    time::{Duration, Instant},
};

use cardvault::{
    Durability, Expiry, KeySource, MerchantId, NewCard, Pan, SecretKey, StoreError, Token,
    TokenizeOptions, TokenizeRequest, Vault, VaultOptions,
    core::{
        CardRecord, KdfParams, KeyHeader, Metadata, OffsetDateTime, RecordBinding, seal_record,
    },
};
use criterion::{
    BenchmarkGroup, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
    measurement::WallTime,
};
use rand::{Rng, RngExt};
use vault_store::{Store, StoreOptions};
use vault_testkit::{cards::luhn_check_digit, records::random_record};

const MERCHANT: u64 = 890_490;
const BATCH: usize = 100;
const PREFILL: usize = 20_000;
/// Concurrent single-token writers: 8 is the target's figure; 32 shows how group commit scales.
const WRITERS: [usize; 2] = [8, 32];

fn key() -> KeySource {
    KeySource::KeyFile(SecretKey::from_bytes([7; 32]))
}

fn merchant() -> MerchantId {
    MerchantId::new(MERCHANT).expect("valid merchant")
}

/// `Durability::Sync` unless `CARDVAULT_BENCH_DURABILITY=flush`.
fn durability() -> Durability {
    match std::env::var("CARDVAULT_BENCH_DURABILITY").as_deref() {
        Ok("flush") => Durability::Flush,
        _ => Durability::Sync,
    }
}

fn fresh_vault(dir: &Path) -> Vault {
    let options = VaultOptions {
        durability: durability(),
        ..VaultOptions::default()
    };
    Vault::create(dir.join("vault"), &key(), options).expect("create vault")
}

/// A random, Luhn-valid 16-digit Visa-like PAN and a random future expiry.
fn random_card(rng: &mut impl Rng) -> (String, Expiry) {
    let mut d = [0u8; 16];
    d[0] = 4;
    for x in &mut d[1..15] {
        *x = rng.random_range(0..10);
    }
    d[15] = luhn_check_digit(&d[..15]);
    let pan = d.iter().map(|x| char::from(b'0' + x)).collect();
    let expiry =
        Expiry::new(rng.random_range(2028..=2032), rng.random_range(1..=12)).expect("valid expiry");
    (pan, expiry)
}

fn new_card((pan, expiry): &(String, Expiry)) -> NewCard {
    NewCard::new(Pan::parse(pan).expect("generated PANs are valid"), *expiry)
}

/// Splits `iters` as evenly as possible between `threads`.
fn shares(iters: u64, threads: usize) -> Vec<usize> {
    let n = u64::try_from(threads).expect("thread count fits u64");
    (0..n)
        .map(|i| usize::try_from(iters / n + u64::from(i < iters % n)).expect("share fits usize"))
        .collect()
}

/// Splits `items` into `threads` consecutive chunks sized by [`shares`].
fn split<T>(mut items: Vec<T>, threads: usize) -> Vec<Vec<T>> {
    let sizes = shares(u64::try_from(items.len()).expect("len fits u64"), threads);
    let mut out = Vec::with_capacity(threads);
    for size in sizes.into_iter().rev() {
        out.push(items.split_off(items.len() - size));
    }
    out
}

/// Runs `f` once per chunk, each on its own thread; returns the wall time of the whole run.
fn timed_parallel<T: Send, F: Fn(T) + Sync>(chunks: Vec<T>, f: F) -> Duration {
    let f = &f;
    let start = Instant::now();
    std::thread::scope(|s| {
        for chunk in chunks {
            s.spawn(move || f(chunk));
        }
    });
    start.elapsed()
}

fn configure(g: &mut BenchmarkGroup<'_, WallTime>) {
    g.sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(6));
}

fn report(name: &str, stats: &cardvault::StoreStats) {
    let avg = if stats.groups == 0 {
        0.0
    } else {
        stats.jobs as f64 / stats.groups as f64
    };
    eprintln!(
        "  [{name}] groups={} jobs={} flushes={} avg jobs/group={avg:.1} records={}",
        stats.groups, stats.jobs, stats.flushes, stats.records
    );
}

/// The bare store writes of `tokenize` (one record, its expiry entry, one de-duplication entry),
/// through the same group committer and flush cadence, from `threads` threads; a fresh store each.
fn floor(c: &mut Criterion) {
    let now = OffsetDateTime::now_utc();
    let (header, keyring) = KeyHeader::create(
        &key(),
        KdfParams::insecure_for_tests(),
        &mut rand::rng(),
        now,
    )
    .expect("create keys");

    // The size of a real sealed card (16-digit PAN, no name, no metadata), as tokenize writes it.
    let (pan, expiry) = random_card(&mut rand::rng());
    let card = CardRecord {
        pan: Pan::parse(&pan).expect("valid"),
        expiry,
        name: None,
        metadata: Metadata::default(),
    };
    let token = Token::mint(&mut rand::rng());
    let binding = RecordBinding {
        merchant: merchant(),
        token: &token,
        customer: None,
        keep_until: expiry.keep_until(),
    };
    let sealed_len = seal_record(&keyring, &binding, &card, &mut rand::rng()).len();
    eprintln!(
        "  [floor] sealed card = {sealed_len} bytes, stored record = {} bytes",
        75 + sealed_len
    );

    let make_record = |rng: &mut rand::rngs::ThreadRng| {
        let keep_until = Expiry::new(rng.random_range(2028..=2032), rng.random_range(1..=12))
            .expect("valid expiry")
            .keep_until()
            .unix_timestamp();
        random_record(rng, MERCHANT, sealed_len, now.unix_timestamp(), keep_until)
    };

    let mut g = c.benchmark_group("floor");
    configure(&mut g);
    g.throughput(Throughput::Elements(1));
    for threads in WRITERS {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::create(
            &dir.path().join("store"),
            &header.encode(),
            StoreOptions {
                durability: durability(),
                ..StoreOptions::default()
            },
        )
        .expect("create store");
        g.bench_function(format!("{threads}_threads"), |b| {
            b.iter_custom(|iters| {
                let mut rng = rand::rng();
                let records: Vec<_> = (0..iters).map(|_| make_record(&mut rng)).collect();
                timed_parallel(split(records, threads), |chunk| {
                    for (id, record) in chunk {
                        store
                            .write(move |tx| {
                                // What tokenize writes for a token without `dedupe`: one record.
                                tx.insert_new_record(&id, &record)?;
                                Ok::<_, StoreError>(())
                            })
                            .expect("write");
                    }
                })
            });
        });
        report(&format!("floor/{threads}_threads"), &store.stats());
    }
    g.finish();
}

/// `Vault::tokenize` from `threads` threads, distinct random PANs; a fresh vault each.
fn tokenize(c: &mut Criterion) {
    let merchant = merchant();
    let mut g = c.benchmark_group("tokenize");
    configure(&mut g);
    g.throughput(Throughput::Elements(1));
    for threads in WRITERS {
        let dir = tempfile::tempdir().expect("tempdir");
        let vault = fresh_vault(dir.path());
        g.bench_function(format!("{threads}_threads"), |b| {
            b.iter_custom(|iters| {
                let mut rng = rand::rng();
                let cards: Vec<_> = (0..iters).map(|_| random_card(&mut rng)).collect();
                timed_parallel(split(cards, threads), |chunk| {
                    for card in &chunk {
                        vault
                            .tokenize(merchant, new_card(card), TokenizeOptions::default())
                            .expect("tokenize");
                    }
                })
            });
        });
        report(&format!("tokenize/{threads}_threads"), &vault.stats().store);
    }
    g.finish();
}

fn batch_of(cards: &[(String, Expiry)]) -> Vec<TokenizeRequest> {
    cards
        .iter()
        .map(|c| TokenizeRequest {
            card: new_card(c),
            options: TokenizeOptions::default(),
        })
        .collect()
}

fn tokenize_batch(c: &mut Criterion) {
    let merchant = merchant();
    let mut g = c.benchmark_group(format!("tokenize_batch/{BATCH}"));
    configure(&mut g);
    g.throughput(Throughput::Elements(u64::try_from(BATCH).expect("fits")));
    for threads in [1usize, 2] {
        let dir = tempfile::tempdir().expect("tempdir");
        let vault = fresh_vault(dir.path());
        g.bench_function(format!("{threads}_threads"), |b| {
            b.iter_custom(|iters| {
                let mut rng = rand::rng();
                let batches: Vec<Vec<_>> = (0..iters)
                    .map(|_| (0..BATCH).map(|_| random_card(&mut rng)).collect())
                    .collect();
                timed_parallel(split(batches, threads), |chunk| {
                    for cards in &chunk {
                        let results = vault
                            .tokenize_batch(merchant, batch_of(cards))
                            .expect("batch commits");
                        assert!(results.iter().all(Result::is_ok), "every item tokenized");
                    }
                })
            });
        });
        report(
            &format!("tokenize_batch/{BATCH}/{threads}_threads"),
            &vault.stats().store,
        );
    }
    g.finish();
}

fn reads(c: &mut Criterion) {
    const THREADS: usize = 2;
    let dir = tempfile::tempdir().expect("tempdir");
    let vault = fresh_vault(dir.path());
    if std::env::var("CARDVAULT_BENCH_REVEAL_AUDIT").as_deref() == Ok("queued") {
        vault.set_reveal_audit(cardvault::RevealAudit::Queued);
    }
    let merchant = merchant();
    let mut rng = rand::rng();
    let mut tokens = Vec::with_capacity(PREFILL);
    while tokens.len() < PREFILL {
        let cards: Vec<_> = (0..BATCH).map(|_| random_card(&mut rng)).collect();
        for r in vault
            .tokenize_batch(merchant, batch_of(&cards))
            .expect("prefill")
        {
            tokens.push(r.expect("prefill item").token);
        }
    }
    let tokens = &tokens;

    let mut g = c.benchmark_group("reveal");
    configure(&mut g);
    g.throughput(Throughput::Elements(1));
    g.bench_function(format!("{THREADS}_threads"), |b| {
        b.iter_custom(|iters| {
            timed_parallel(shares(iters, THREADS), |n| {
                let mut rng = rand::rng();
                for _ in 0..n {
                    let t = &tokens[rng.random_range(0..tokens.len())];
                    std::hint::black_box(vault.reveal(merchant, t, None).expect("reveal"));
                }
            })
        });
    });
    g.finish();

    let mut g = c.benchmark_group("get");
    configure(&mut g);
    g.throughput(Throughput::Elements(1));
    g.bench_function(format!("{THREADS}_threads"), |b| {
        b.iter_custom(|iters| {
            timed_parallel(shares(iters, THREADS), |n| {
                let mut rng = rand::rng();
                for _ in 0..n {
                    let t = &tokens[rng.random_range(0..tokens.len())];
                    std::hint::black_box(vault.get(merchant, t).expect("get"));
                }
            })
        });
    });
    g.finish();
}

criterion_group!(benches, floor, tokenize, tokenize_batch, reads);
criterion_main!(benches);
