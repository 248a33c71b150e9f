//! `cardvault bench`: a load tool in the spirit of `redis-benchmark`.
//!
//! Drives a running daemon over its Unix socket with N keep-alive connections (one
//! [`vault_client::Client`] each), or, with `--inprocess`, the library directly with N threads on
//! a throwaway vault, so the two can be compared on the same machine. Cards are distinct, random
//! and Luhn-valid (see `cards.rs`); `reveal`, `get` and `mixed` first tokenize a pool to read.

use std::{
    collections::BTreeMap,
    io::{IsTerminal, Write},
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use hdrhistogram::Histogram;
use serde::Serialize;
use vault_client::ApiKey;

use super::{cards::PanSource, runtime};

mod inprocess;
mod remote;

/// Expiry of generated cards (YYMM): far enough ahead to stay valid for years.
const EXPIRY: &str = "3012";

#[derive(Args, Debug)]
pub(crate) struct BenchArgs {
    /// The daemon's socket.
    #[arg(
        long,
        env = "CARDVAULT_SOCKET",
        value_name = "PATH",
        required_unless_present = "inprocess"
    )]
    socket: Option<PathBuf>,

    /// File holding an API key (tokenize scope; reveal too for --op reveal/mixed). The key itself
    /// may be given in CARDVAULT_API_KEY. Default: `api-key` next to the socket (serve --dev).
    #[arg(long, env = "CARDVAULT_API_KEY_FILE", value_name = "FILE")]
    api_key_file: Option<PathBuf>,

    /// What each request does.
    #[arg(long, value_enum, default_value_t = Op::Tokenize)]
    op: Op,

    /// Concurrent connections (threads with --inprocess).
    #[arg(long, short = 'c', default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    connections: u32,

    /// How long to run (`10s`, `500ms`, `2m`). Default 10s unless --requests is given.
    #[arg(long, short = 'd', value_parser = parse_duration, conflicts_with = "requests")]
    duration: Option<Duration>,

    /// Stop after this many requests instead.
    #[arg(long, short = 'n', value_parser = clap::value_parser!(u64).range(1..))]
    requests: Option<u64>,

    /// Cards per request for --op batch (1-1000).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1000))]
    batch_size: u32,

    /// Cards tokenized up front for reveal, get and mixed.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    pool: u32,

    /// Print the report as JSON.
    #[arg(long)]
    json: bool,

    /// Drive the library in this process instead of a daemon (N threads, a throwaway vault).
    #[arg(long)]
    inprocess: bool,

    /// With --inprocess: create the throwaway vault under this directory (default: the system
    /// temporary directory). Put it on the same file system as the daemon's vault to compare.
    #[arg(long, value_name = "DIR", requires = "inprocess")]
    tmp_dir: Option<PathBuf>,
}

/// The operation measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Op {
    /// `POST /v2/tokens`, one new card per request.
    Tokenize,
    /// `POST /v2/tokens/batch`, --batch-size new cards per request.
    Batch,
    /// `POST /v2/tokens/{token}/reveal` on the pool.
    Reveal,
    /// `GET /v2/tokens/{token}` on the pool.
    Get,
    /// 20% tokenize, 60% get, 20% reveal.
    Mixed,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Self::Tokenize => "tokenize",
            Self::Batch => "batch",
            Self::Reveal => "reveal",
            Self::Get => "get",
            Self::Mixed => "mixed",
        }
    }

    fn needs_pool(self) -> bool {
        matches!(self, Self::Reveal | Self::Get | Self::Mixed)
    }
}

/// One concrete request kind (what `mixed` picks from).
#[derive(Clone, Copy, Debug)]
enum Step {
    Tokenize,
    Batch,
    Reveal,
    Get,
}

impl Step {
    /// The request kind for the `i`-th request of a worker.
    fn pick(op: Op, i: u64) -> Self {
        match op {
            Op::Tokenize => Self::Tokenize,
            Op::Batch => Self::Batch,
            Op::Reveal => Self::Reveal,
            Op::Get => Self::Get,
            Op::Mixed => match i % 5 {
                0 => Self::Tokenize,
                1 => Self::Reveal,
                _ => Self::Get,
            },
        }
    }
}

/// When workers stop: a deadline or a request budget.
#[derive(Debug)]
pub(crate) struct Plan {
    deadline: Option<Instant>,
    budget: Option<u64>,
    issued: AtomicU64,
    stop: AtomicBool,
}

impl Plan {
    /// Claims the next request number, or `None` when the run is over.
    fn next(&self) -> Option<u64> {
        if self.stop.load(Ordering::Relaxed) {
            return None;
        }
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            self.stop.store(true, Ordering::Relaxed);
            return None;
        }
        let n = self.issued.fetch_add(1, Ordering::Relaxed);
        if self.budget.is_some_and(|b| n >= b) {
            self.stop.store(true, Ordering::Relaxed);
            return None;
        }
        Some(n)
    }
}

/// What one worker measured.
#[derive(Debug)]
pub(crate) struct Tally {
    latency_us: Histogram<u64>,
    ok: u64,
    items: u64,
    errors: BTreeMap<String, u64>,
}

impl Tally {
    fn new() -> anyhow::Result<Self> {
        Ok(Self {
            latency_us: Histogram::new_with_bounds(1, 120_000_000, 3)
                .context("creating a latency histogram")?,
            ok: 0,
            items: 0,
            errors: BTreeMap::new(),
        })
    }

    fn success(&mut self, started: Instant, items: u64, live: &Live) {
        let us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.latency_us.saturating_record(us.max(1));
        self.ok += 1;
        self.items += items;
        live.done.fetch_add(1, Ordering::Relaxed);
    }

    fn failure(&mut self, label: String, live: &Live) {
        *self.errors.entry(label).or_default() += 1;
        live.done.fetch_add(1, Ordering::Relaxed);
        live.errors.fetch_add(1, Ordering::Relaxed);
    }

    fn merge(&mut self, other: Self) -> anyhow::Result<()> {
        self.latency_us
            .add(&other.latency_us)
            .context("merging latency histograms")?;
        self.ok += other.ok;
        self.items += other.items;
        for (k, v) in other.errors {
            *self.errors.entry(k).or_default() += v;
        }
        Ok(())
    }
}

/// Counters the progress line reads while the run goes on.
#[derive(Debug, Default)]
pub(crate) struct Live {
    done: AtomicU64,
    errors: AtomicU64,
}

/// The final report (the `--json` output).
#[derive(Debug, Serialize)]
struct Report {
    mode: &'static str,
    target: String,
    op: Op,
    connections: u32,
    batch_size: Option<u32>,
    seconds: f64,
    requests: u64,
    ok: u64,
    errors: u64,
    ops_per_sec: f64,
    cards_per_sec: f64,
    latency_ms: Latency,
    errors_by_status: BTreeMap<String, u64>,
}

#[derive(Debug, Serialize)]
struct Latency {
    p50: f64,
    p95: f64,
    p99: f64,
    max: f64,
    mean: f64,
}

pub(crate) fn run(args: BenchArgs) -> anyhow::Result<()> {
    let duration = match (args.duration, args.requests) {
        (Some(d), _) => Some(d),
        (None, Some(_)) => None,
        (None, None) => Some(Duration::from_secs(10)),
    };
    let make_plan = || Plan {
        deadline: duration.map(|d| Instant::now() + d),
        budget: args.requests,
        issued: AtomicU64::new(0),
        stop: AtomicBool::new(false),
    };
    let pans = Arc::new(PanSource::new());
    let live = Arc::new(Live::default());

    let (mode, target, tally, elapsed) = if args.inprocess {
        let run = inprocess::Run::new(&args, pans, live.clone())?;
        let target = run.describe();
        let plan = Arc::new(make_plan());
        let started = Instant::now();
        let progress = Progress::start(live.clone(), args.json);
        let tally = run.go(&plan)?;
        let elapsed = started.elapsed();
        progress.finish();
        // Dropping `run` closes the vault and deletes its directory: not part of the timing.
        drop(run);
        ("library", target, tally, elapsed)
    } else {
        let Some(socket) = args.socket.clone() else {
            bail!("--socket PATH is required (or --inprocess)");
        };
        let key = Arc::new(api_key(&args, &socket)?);
        let rt = runtime()?;
        let tally_and_time = rt.block_on(async {
            let run = remote::Run::new(&args, &socket, key, pans, live.clone()).await?;
            let plan = Arc::new(make_plan());
            let started = Instant::now();
            let progress = Progress::start(live.clone(), args.json);
            let tally = run.go(plan).await?;
            let elapsed = started.elapsed();
            progress.finish();
            anyhow::Ok((tally, elapsed))
        })?;
        (
            "daemon",
            format!("unix:{}", socket.display()),
            tally_and_time.0,
            tally_and_time.1,
        )
    };

    let report = report(&args, mode, target, &tally, elapsed);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    if report.ok == 0 {
        bail!("every request failed ({} errors)", report.errors);
    }
    Ok(())
}

fn api_key(args: &BenchArgs, socket: &std::path::Path) -> anyhow::Result<ApiKey> {
    if let Ok(k) = std::env::var("CARDVAULT_API_KEY")
        && !k.trim().is_empty()
    {
        return ApiKey::new(k).context("CARDVAULT_API_KEY");
    }
    let path = match &args.api_key_file {
        Some(p) => p.clone(),
        None => match socket.parent().map(|d| d.join("api-key")) {
            Some(p) if p.exists() => p,
            _ => bail!("an API key is needed: pass --api-key-file FILE or set CARDVAULT_API_KEY"),
        },
    };
    super::key::warn_if_readable_by_others(&path);
    ApiKey::from_file(&path)
        .with_context(|| format!("reading API key file {}", path.display()))?
        .with_context(|| format!("API key file {}", path.display()))
}

fn report(
    args: &BenchArgs,
    mode: &'static str,
    target: String,
    t: &Tally,
    elapsed: Duration,
) -> Report {
    let secs = elapsed.as_secs_f64().max(1e-9);
    let errors: u64 = t.errors.values().sum();
    let h = &t.latency_us;
    let ms = |us: u64| us as f64 / 1000.0;
    Report {
        mode,
        target,
        op: args.op,
        connections: args.connections,
        batch_size: (args.op == Op::Batch).then_some(args.batch_size),
        seconds: secs,
        requests: t.ok + errors,
        ok: t.ok,
        errors,
        ops_per_sec: t.ok as f64 / secs,
        cards_per_sec: t.items as f64 / secs,
        latency_ms: Latency {
            p50: ms(h.value_at_quantile(0.50)),
            p95: ms(h.value_at_quantile(0.95)),
            p99: ms(h.value_at_quantile(0.99)),
            max: ms(h.max()),
            mean: h.mean() / 1000.0,
        },
        errors_by_status: t.errors.clone(),
    }
}

fn print_table(r: &Report) {
    let batch = r
        .batch_size
        .map(|b| format!(", {b} cards per request"))
        .unwrap_or_default();
    let workers = if r.mode == "library" {
        "threads"
    } else {
        "connections"
    };
    // Milliseconds show for a short run (`--requests`).
    let places = if r.seconds < 10.0 { 3 } else { 1 };
    println!(
        "cardvault bench: {} via {} ({}), {} {workers}{batch}, {:.places$} s",
        r.op.name(),
        r.mode,
        r.target,
        r.connections,
        r.seconds
    );
    println!(
        "  requests    {:>12}   ok {}  errors {}",
        r.requests, r.ok, r.errors
    );
    println!("  throughput  {:>12.1} ops/s", r.ops_per_sec);
    if r.op != Op::Reveal && r.op != Op::Get {
        println!("              {:>12.1} new cards/s", r.cards_per_sec);
    }
    let l = &r.latency_ms;
    println!(
        "  latency ms  p50 {:.3}  p95 {:.3}  p99 {:.3}  max {:.3}  mean {:.3}",
        l.p50, l.p95, l.p99, l.max, l.mean
    );
    if !r.errors_by_status.is_empty() {
        let list: Vec<String> = r
            .errors_by_status
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        println!("  errors      {}", list.join(", "));
    }
}

/// A once-a-second progress line on a terminal's stderr.
struct Progress {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Progress {
    fn start(live: Arc<Live>, quiet: bool) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let started = Instant::now();
                let mut last = 0;
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(250));
                    let secs = started.elapsed().as_secs();
                    if secs == last {
                        continue;
                    }
                    last = secs;
                    let done = live.done.load(Ordering::Relaxed);
                    let errors = live.errors.load(Ordering::Relaxed);
                    let mut err = std::io::stderr().lock();
                    let _ = write!(
                        err,
                        "\r[{secs:>4}s] {done} requests, {:.0} req/s, {errors} errors   ",
                        done as f64 / started.elapsed().as_secs_f64()
                    );
                    let _ = err.flush();
                }
                eprint!("\r{:60}\r", "");
            })
        });
        Self { stop, thread }
    }

    fn finish(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Parses `10s`, `500ms`, `2m`, `1h` or a plain number of seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 10s, 500ms or 2m"))?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("unknown unit {unit:?} (use ms, s, m or h)")),
    };
    if !(secs > 0.0 && secs < 1e7) {
        return Err("duration must be positive".to_owned());
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("5 parsecs").is_err());
    }

    #[test]
    fn plan_budget() {
        let plan = Plan {
            deadline: None,
            budget: Some(3),
            issued: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        };
        let got: Vec<u64> = std::iter::from_fn(|| plan.next()).collect();
        assert_eq!(got, vec![0, 1, 2]);
    }
}
