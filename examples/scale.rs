//! Fills a fresh, durable vault with many tokens and reports what it costs.
//!
//! ```text
//! cargo run --release --example scale -- [--tokens N] [--threads T] [--dir PATH] [--floor]
//! ```
//!
//! - `--tokens N` (default 1,000,000): how many cards to tokenize, in `tokenize_batch` calls of 1000;
//! - `--threads T` (default 2): how many threads call `tokenize_batch` concurrently;
//! - `--dir PATH`: where to create the vault (must not hold one); default: a temporary directory
//!   (removed at exit);
//! - `--floor`: instead of the vault, write the same bytes straight into a `vault_store::Store`
//!   (per token one record of a real sealed card's size, its expiry entry and a de-duplication
//!   entry; 1000 tokens per committer job), to tell the vault's costs from the store's.
//!
//! It prints the fill rate, then closes the vault and measures the bytes on disk per token (sum of
//! the data directory's file sizes after a clean close), the time `Vault::open` takes with a key
//! file (no KDF), and reveals a random sample of 1000 tokens, checking each card number.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::{
    error::Error,
    path::{Path, PathBuf},
    process::ExitCode,
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use cardvault::{
    Expiry, KeySource, MerchantId, NewCard, Pan, SecretKey, StoreError, StoreStats, Token,
    TokenizeOptions, TokenizeRequest, Vault, VaultOptions,
    core::{
        CardRecord, KdfParams, KeyHeader, Metadata, OffsetDateTime, RecordBinding, seal_record,
    },
};
use rand::RngExt;
use vault_store::{LookupId, Store, StoreOptions};
use vault_testkit::{cards::luhn_check_digit, records::random_record};

const BATCH: usize = 1000;
const SAMPLE: usize = 1000;
const MERCHANT: u64 = 890_490;

struct Args {
    tokens: usize,
    threads: usize,
    dir: Option<PathBuf>,
    floor: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        tokens: 1_000_000,
        threads: 2,
        dir: None,
        floor: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--tokens" => {
                args.tokens = value()?
                    .replace('_', "")
                    .parse()
                    .map_err(|e| format!("--tokens: {e}"))?;
            }
            "--threads" => {
                args.threads = value()?.parse().map_err(|e| format!("--threads: {e}"))?
            }
            "--dir" => args.dir = Some(PathBuf::from(value()?)),
            "--floor" => args.floor = true,
            "-h" | "--help" => {
                return Err(
                    "usage: scale [--tokens N] [--threads T] [--dir PATH] [--floor]".to_owned(),
                );
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if args.tokens == 0 || args.threads == 0 {
        return Err("--tokens and --threads must be positive".to_owned());
    }
    Ok(args)
}

/// The card number of token `i`: a deterministic function of `i` (so the example can check what
/// it reveals without keeping a million PANs around), 16 digits, Luhn-valid.
fn pan_for(i: u64) -> String {
    let mut x = splitmix64(i);
    let mut d = [0u8; 16];
    d[0] = 4;
    for slot in &mut d[1..15] {
        *slot = u8::try_from(x % 10).expect("a digit");
        x /= 10;
    }
    d[15] = luhn_check_digit(&d[..15]);
    d.iter().map(|x| char::from(b'0' + x)).collect()
}

fn expiry_for(i: u64) -> Expiry {
    let m = u8::try_from(i % 12).expect("fits") + 1;
    let y = 2028 + u16::try_from(i % 5).expect("fits");
    Expiry::new(y, m).expect("valid expiry")
}

fn splitmix64(i: u64) -> u64 {
    let mut z = i.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// (apparent bytes, allocated bytes, files) of every file under `dir`.
fn disk_usage(dir: &Path) -> std::io::Result<(u64, u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let mut total = (0, 0, 0);
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        if meta.is_dir() {
            let (a, b, n) = disk_usage(&entry.path())?;
            total = (total.0 + a, total.1 + b, total.2 + n);
        } else {
            total = (
                total.0 + meta.len(),
                total.1 + meta.blocks() * 512,
                total.2 + 1,
            );
        }
    }
    Ok(total)
}

fn per_sec(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64()
}

/// Every item's output with its index, and the wall time of the fill.
type Filled<T> = (Vec<(usize, T)>, Duration);

/// Runs `fill(index_range)` for every batch of [`BATCH`] tokens out of `n`, on `threads` threads
/// pulling batches from a shared counter; returns every item's output and the wall time.
fn fill_in_batches<T: Send>(
    n: usize,
    threads: usize,
    fill: impl Fn(std::ops::Range<usize>) -> Result<Vec<T>, String> + Sync,
) -> Result<Filled<T>, Box<dyn Error>> {
    let batches = n.div_ceil(BATCH);
    let next = AtomicUsize::new(0);
    let start = Instant::now();
    let parts: Vec<Vec<(usize, T)>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| -> Result<Vec<(usize, T)>, String> {
                    let mut out = Vec::new();
                    loop {
                        let b = next.fetch_add(1, Ordering::Relaxed);
                        if b >= batches {
                            return Ok(out);
                        }
                        let range = b * BATCH..((b + 1) * BATCH).min(n);
                        out.extend(range.clone().zip(fill(range)?));
                        if b % 100 == 99 {
                            eprint!("\r  {} / {n} tokens", (b + 1) * BATCH);
                        }
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("worker thread"))
            .collect::<Result<_, _>>()
    })?;
    let elapsed = start.elapsed();
    eprintln!();
    Ok((parts.into_iter().flatten().collect(), elapsed))
}

/// Puts `items` (index, value) back in index order, checking none is missing.
fn in_order<T: Clone>(n: usize, items: Vec<(usize, T)>) -> Result<Vec<T>, Box<dyn Error>> {
    let mut slots: Vec<Option<T>> = vec![None; n];
    for (i, t) in items {
        slots[i] = Some(t);
    }
    Ok(slots
        .into_iter()
        .map(|t| t.ok_or("a token is missing"))
        .collect::<Result<_, _>>()?)
}

struct Report {
    rows: Vec<(String, String)>,
}

impl Report {
    fn row(&mut self, metric: impl Into<String>, value: impl Into<String>) {
        self.rows.push((metric.into(), value.into()));
    }

    fn print(&self) {
        let w = self
            .rows
            .iter()
            .map(|(m, _)| m.len())
            .max()
            .unwrap_or(6)
            .max(6);
        println!();
        println!("| {:w$} | value |", "metric");
        println!("|{}|-------|", "-".repeat(w + 2));
        for (m, v) in &self.rows {
            println!("| {m:w$} | {v} |");
        }
    }

    fn fill(
        &mut self,
        what: &str,
        n: usize,
        threads: usize,
        fill_time: Duration,
        stats: &StoreStats,
    ) {
        self.row("tokens", n.to_string());
        self.row(
            format!("fill: {what} of {BATCH}, {threads} threads"),
            format!("{:.2} s", fill_time.as_secs_f64()),
        );
        self.row(
            "fill rate",
            format!("{:.0} tokens/s", per_sec(n, fill_time)),
        );
        self.row(
            "group commits / flushes during fill",
            format!(
                "{} / {} (avg {:.2} jobs per group)",
                stats.groups,
                stats.flushes,
                stats.jobs as f64 / stats.groups.max(1) as f64
            ),
        );
        self.row(
            "sled size_on_disk before close",
            format!(
                "{} B ({:.0} B/token)",
                stats.size_on_disk,
                stats.size_on_disk as f64 / n as f64
            ),
        );
    }

    fn disk(&mut self, n: usize, close_time: Duration, dir: &Path) -> std::io::Result<()> {
        let (apparent, allocated, files) = disk_usage(dir)?;
        let tok = n as f64;
        self.row(
            "close (drop) time",
            format!("{:.3} s", close_time.as_secs_f64()),
        );
        self.row("files in data dir after close", files.to_string());
        self.row(
            "bytes on disk (sum of file sizes)",
            format!("{apparent} B = {:.1} B/token", apparent as f64 / tok),
        );
        self.row(
            "bytes on disk (allocated blocks)",
            format!("{allocated} B = {:.1} B/token", allocated as f64 / tok),
        );
        Ok(())
    }
}

fn main() -> ExitCode {
    let result = parse_args()
        .map_err(Box::<dyn Error>::from)
        .and_then(|args| {
            let tmp = tempfile::tempdir()?;
            let dir = args.dir.clone().unwrap_or_else(|| tmp.path().join("vault"));
            println!(
                "cardvault scale{}: {} tokens, batches of {BATCH}, {} threads, durable, in {}",
                if args.floor {
                    " --floor (bare store)"
                } else {
                    ""
                },
                args.tokens,
                args.threads,
                dir.display()
            );
            if args.floor {
                run_floor(&args, &dir)
            } else {
                run_vault(&args, &dir)
            }
        });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("scale: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run_vault(args: &Args, dir: &Path) -> Result<(), Box<dyn Error>> {
    let key = KeySource::KeyFile(SecretKey::from_bytes([7; 32]));
    let merchant = MerchantId::new(MERCHANT)?;
    let n = args.tokens;
    let mut report = Report { rows: Vec::new() };

    let vault = Vault::create(dir, &key, VaultOptions::default())?;
    let (filled, fill_time) = fill_in_batches(n, args.threads, |range| {
        let items = range
            .map(|i| {
                let i = u64::try_from(i).expect("fits");
                let pan = Pan::parse(&pan_for(i)).map_err(|e| e.to_string())?;
                Ok(TokenizeRequest {
                    card: NewCard::new(pan, expiry_for(i)),
                    options: TokenizeOptions::default(),
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        let results = vault
            .tokenize_batch(merchant, items)
            .map_err(|e| e.to_string())?;
        results
            .into_iter()
            .map(|r| r.map(|info| info.token).map_err(|e| e.to_string()))
            .collect()
    })?;
    let tokens: Vec<Token> = in_order(n, filled)?;
    report.fill(
        "tokenize_batch",
        n,
        args.threads,
        fill_time,
        &vault.stats().store,
    );

    // Clean close, then measure the directory.
    let start = Instant::now();
    drop(vault);
    report.disk(n, start.elapsed(), dir)?;

    // Re-open with the key file (no KDF).
    let start = Instant::now();
    let vault = Vault::open(dir, &key, VaultOptions::default())?;
    report.row(
        "Vault::open (key file, no KDF)",
        format!("{:.3} s", start.elapsed().as_secs_f64()),
    );
    report.row("records after open", vault.stats().records.to_string());

    // Reveal a random sample and check every card number.
    let mut rng = rand::rng();
    let sample: Vec<usize> = (0..SAMPLE.min(n)).map(|_| rng.random_range(0..n)).collect();
    let start = Instant::now();
    for &i in &sample {
        let card = vault.reveal(merchant, &tokens[i], None)?;
        let i = u64::try_from(i)?;
        if card.pan.expose_digits() != pan_for(i) || card.expiry != expiry_for(i) {
            return Err(format!("token {i} revealed the wrong card").into());
        }
    }
    let reveal_time = start.elapsed();
    report.row(
        format!(
            "reveal {} random tokens right after open, 1 thread",
            sample.len()
        ),
        format!(
            "{:.3} s ({:.0}/s), every card correct",
            reveal_time.as_secs_f64(),
            per_sec(sample.len(), reveal_time)
        ),
    );
    drop(vault);
    report.print();
    Ok(())
}

fn run_floor(args: &Args, dir: &Path) -> Result<(), Box<dyn Error>> {
    let n = args.tokens;
    let mut report = Report { rows: Vec::new() };
    let now = OffsetDateTime::now_utc();
    let key = KeySource::KeyFile(SecretKey::from_bytes([7; 32]));
    let (header, keyring) =
        KeyHeader::create(&key, KdfParams::insecure_for_tests(), &mut rand::rng(), now)?;
    // The size of a real sealed card, as tokenize writes it.
    let card = CardRecord {
        pan: Pan::parse(&pan_for(0))?,
        expiry: expiry_for(0),
        name: None,
        metadata: Metadata::default(),
    };
    let token = Token::mint(&mut rand::rng());
    let binding = RecordBinding {
        merchant: MerchantId::new(MERCHANT)?,
        token: &token,
        customer: None,
        keep_until: card.expiry.keep_until(),
    };
    let sealed_len = seal_record(&keyring, &binding, &card, &mut rand::rng()).len();

    let store = Store::create(dir, &header.encode(), StoreOptions::default())?;
    let (filled, fill_time) = fill_in_batches(n, args.threads, |range| {
        let mut rng = rand::rng();
        let records: Vec<_> = range
            .map(|i| {
                let keep_until = expiry_for(u64::try_from(i).expect("fits"))
                    .keep_until()
                    .unix_timestamp();
                random_record(
                    &mut rng,
                    MERCHANT,
                    sealed_len,
                    now.unix_timestamp(),
                    keep_until,
                )
            })
            .collect();
        let ids: Vec<LookupId> = records.iter().map(|(id, _)| *id).collect();
        store
            .write(move |tx| {
                for (id, record) in &records {
                    // What tokenize writes for a token without `dedupe`: one record.
                    tx.insert_new_record(id, record)?;
                }
                Ok::<_, StoreError>(())
            })
            .map_err(|e| e.to_string())?;
        Ok(ids)
    })?;
    let ids: Vec<LookupId> = in_order(n, filled)?;
    report.fill("Store::write", n, args.threads, fill_time, &store.stats());

    let start = Instant::now();
    drop(store);
    report.disk(n, start.elapsed(), dir)?;

    let start = Instant::now();
    let store = Store::open(dir, StoreOptions::default())?;
    report.row(
        "Store::open",
        format!("{:.3} s", start.elapsed().as_secs_f64()),
    );
    report.row("records after open", store.stats().records.to_string());
    let mut rng = rand::rng();
    for _ in 0..SAMPLE.min(n) {
        if store.record(&ids[rng.random_range(0..n)])?.is_none() {
            return Err("a record is missing".into());
        }
    }
    report.row(
        format!("{} random records read back after open", SAMPLE.min(n)),
        "all present",
    );
    drop(store);
    report.print();
    Ok(())
}
