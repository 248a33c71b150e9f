//! Fills a fresh, durable vault with many tokens and reports what it costs.
//!
//! ```text
//! cargo run --release --example scale -- [--tokens N] [--threads T] [--dir PATH]
//! ```
//!
//! - `--tokens N` (default 1,000,000): how many cards to tokenize, in `tokenize_batch` calls of 1000;
//! - `--threads T` (default 2): how many threads call `tokenize_batch` concurrently;
//! - `--dir PATH`: where to create the vault (must not hold one); default: a temporary directory
//!   (removed at exit).
//!
//! It prints the fill rate, then closes the vault and measures the bytes on disk per token (sum of
//! the data directory's file sizes after a clean close), the time `Vault::open` takes with a key
//! file (no KDF), and reveals a random sample of 1000 tokens, checking each card number.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
    time::{Duration, Instant},
};

use cardvault::{
    Expiry, KeySource, MerchantId, NewCard, Pan, SecretKey, Token, TokenizeOptions,
    TokenizeRequest, Vault, VaultOptions,
};
use rand::RngExt;

const BATCH: usize = 1000;
const SAMPLE: usize = 1000;

struct Args {
    tokens: usize,
    threads: usize,
    dir: Option<PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        tokens: 1_000_000,
        threads: 2,
        dir: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--tokens" => {
                args.tokens = value()?
                    .replace('_', "")
                    .parse()
                    .map_err(|e| format!("--tokens: {e}"))?
            }
            "--threads" => {
                args.threads = value()?.parse().map_err(|e| format!("--threads: {e}"))?
            }
            "--dir" => args.dir = Some(PathBuf::from(value()?)),
            "-h" | "--help" => {
                return Err("usage: scale [--tokens N] [--threads T] [--dir PATH]".to_owned());
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

fn luhn_check_digit(payload: &[u8]) -> u8 {
    let sum: u32 = payload
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &x)| {
            let x = u32::from(x);
            if i % 2 == 0 {
                let y = 2 * x;
                if y > 9 { y - 9 } else { y }
            } else {
                x
            }
        })
        .sum();
    u8::try_from((10 - sum % 10) % 10).expect("a digit")
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

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("scale: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args()?;
    let tmp = tempfile::tempdir()?;
    let dir = args.dir.clone().unwrap_or_else(|| tmp.path().join("vault"));
    let key = KeySource::KeyFile(SecretKey::from_bytes([7; 32]));
    let merchant = MerchantId::new(890_490)?;
    let n = args.tokens;
    println!(
        "cardvault scale: {n} tokens, batches of {BATCH}, {} threads, durable, in {}",
        args.threads,
        dir.display()
    );

    // Fill.
    let vault = Vault::create(&dir, &key, VaultOptions::default())?;
    let batches = n.div_ceil(BATCH);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut tokens: Vec<Option<Token>> = vec![None; n];
    let start = Instant::now();
    let filled: Vec<Vec<(usize, Token)>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..args.threads)
            .map(|_| {
                s.spawn(|| -> Result<Vec<(usize, Token)>, String> {
                    let mut out = Vec::new();
                    loop {
                        let b = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if b >= batches {
                            return Ok(out);
                        }
                        let range = b * BATCH..((b + 1) * BATCH).min(n);
                        let items = range
                            .clone()
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
                        for (i, r) in range.zip(results) {
                            out.push((i, r.map_err(|e| e.to_string())?.token));
                        }
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
    let fill_time = start.elapsed();
    eprintln!();
    for (i, t) in filled.into_iter().flatten() {
        tokens[i] = Some(t);
    }
    let tokens: Vec<Token> = tokens
        .into_iter()
        .map(|t| t.ok_or("a token is missing"))
        .collect::<Result<_, _>>()?;
    let stats = vault.stats();
    let in_flight_size = stats.store.size_on_disk;

    // Clean close, then measure the directory.
    let start = Instant::now();
    drop(vault);
    let close_time = start.elapsed();
    let (apparent, allocated, files) = disk_usage(&dir)?;

    // Re-open with the key file (no KDF).
    let start = Instant::now();
    let vault = Vault::open(&dir, &key, VaultOptions::default())?;
    let open_time = start.elapsed();
    let records_after_open = vault.stats().records;

    // Reveal a random sample and check every card number.
    let mut rng = rand::rng();
    let sample: Vec<usize> = (0..SAMPLE.min(n)).map(|_| rng.random_range(0..n)).collect();
    let start = Instant::now();
    for &i in &sample {
        let card = vault.reveal(merchant, &tokens[i], None)?;
        let want = pan_for(u64::try_from(i)?);
        if card.pan.expose_digits() != want || card.expiry != expiry_for(u64::try_from(i)?) {
            return Err(format!("token {i} revealed the wrong card").into());
        }
    }
    let reveal_time = start.elapsed();
    drop(vault);

    let tok = n as f64;
    println!();
    println!("| metric                                   | value |");
    println!("|------------------------------------------|-------|");
    println!("| tokens                                   | {n} |");
    println!(
        "| fill time (tokenize_batch of {BATCH}, {} thr) | {:.2} s |",
        args.threads,
        fill_time.as_secs_f64()
    );
    println!(
        "| fill rate                                | {:.0} tokens/s |",
        per_sec(n, fill_time)
    );
    println!(
        "| group commits / fsyncs during fill       | {} / {} (avg {:.1} jobs/group) |",
        stats.store.groups,
        stats.store.flushes,
        stats.store.jobs as f64 / stats.store.groups.max(1) as f64
    );
    println!(
        "| sled size_on_disk before close           | {in_flight_size} B ({:.0} B/token) |",
        in_flight_size as f64 / tok
    );
    println!(
        "| close (drop) time                        | {:.3} s |",
        close_time.as_secs_f64()
    );
    println!("| files in data dir after close            | {files} |");
    println!(
        "| bytes on disk (sum of file sizes)        | {apparent} B = {:.1} B/token |",
        apparent as f64 / tok
    );
    println!(
        "| bytes on disk (allocated blocks)         | {allocated} B = {:.1} B/token |",
        allocated as f64 / tok
    );
    println!(
        "| Vault::open (key file, no KDF)           | {:.3} s |",
        open_time.as_secs_f64()
    );
    println!("| records after open                       | {records_after_open} |");
    println!(
        "| reveal {} random tokens after open      | {:.3} s ({:.0}/s, 1 thread, all correct) |",
        sample.len(),
        reveal_time.as_secs_f64(),
        per_sec(sample.len(), reveal_time)
    );
    Ok(())
}
