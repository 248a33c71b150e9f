//! Prometheus counters kept in atomics (no lock, no allocation per request) and rendered as text
//! on `GET /metrics`. Labels are route templates and status codes only: never a token or a PAN.

use std::{
    fmt::Write as _,
    sync::atomic::{AtomicU64, Ordering::Relaxed},
    time::Duration,
};

use vault_service::Vault;

use crate::http::router::{TABLE, UNMATCHED};

/// Status codes counted by name; anything else is counted as `other`.
const STATUSES: [u16; 16] = [
    200, 201, 204, 400, 401, 403, 404, 405, 406, 408, 409, 413, 415, 500, 503, 431,
];
/// Latency bucket upper bounds, in microseconds.
const LATENCY_US: [u64; 14] = [
    100, 250, 500, 1_000, 2_000, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 5_000_000,
];

#[derive(Default)]
struct RouteMetrics {
    /// By `STATUSES` index; the last slot is `other`.
    statuses: [AtomicU64; STATUSES.len() + 1],
    /// By `LATENCY_US` index; the last slot is `+Inf`.
    latency: [AtomicU64; LATENCY_US.len() + 1],
    latency_sum_us: AtomicU64,
}

/// Request and connection counters of one daemon.
pub(crate) struct Metrics {
    routes: [RouteMetrics; UNMATCHED + 1],
    pub(crate) connections_accepted: AtomicU64,
    pub(crate) connections_refused: AtomicU64,
    pub(crate) connections_over_peer_limit: AtomicU64,
    pub(crate) connections_open: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            routes: std::array::from_fn(|_| RouteMetrics::default()),
            connections_accepted: AtomicU64::new(0),
            connections_refused: AtomicU64::new(0),
            connections_over_peer_limit: AtomicU64::new(0),
            connections_open: AtomicU64::new(0),
        }
    }
}

impl Metrics {
    /// Counts one answered request.
    pub(crate) fn observe(&self, slot: usize, status: u16, elapsed: Duration) {
        let Some(m) = self.routes.get(slot) else {
            return;
        };
        let s = STATUSES
            .iter()
            .position(|&c| c == status)
            .unwrap_or(STATUSES.len());
        m.statuses[s].fetch_add(1, Relaxed);
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let b = LATENCY_US
            .iter()
            .position(|&le| us <= le)
            .unwrap_or(LATENCY_US.len());
        m.latency[b].fetch_add(1, Relaxed);
        m.latency_sum_us.fetch_add(us, Relaxed);
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub(crate) fn render(&self, gateway: &vault_gateway::Gateway) -> String {
        let vault = gateway.vault();
        let mut out = String::with_capacity(16 << 10);
        self.render_requests(&mut out);
        self.render_latency(&mut out);
        let conns = [
            ("accepted", &self.connections_accepted),
            ("refused", &self.connections_refused),
            ("over_peer_limit", &self.connections_over_peer_limit),
        ];
        out.push_str("# HELP cardvault_connections_total Connections accepted, refused by peer credentials, and closed because their peer held too many.\n# TYPE cardvault_connections_total counter\n");
        for (outcome, n) in conns {
            let _ = writeln!(
                out,
                "cardvault_connections_total{{outcome=\"{outcome}\"}} {}",
                n.load(Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP cardvault_connections_open Connections being served.\n# TYPE cardvault_connections_open gauge\ncardvault_connections_open {}",
            self.connections_open.load(Relaxed)
        );
        render_store(&mut out, vault);
        render_gateway(&mut out, gateway);
        out
    }

    fn render_requests(&self, out: &mut String) {
        out.push_str("# HELP cardvault_http_requests_total Requests answered, by route template and status.\n# TYPE cardvault_http_requests_total counter\n");
        for (slot, m) in self.routes.iter().enumerate() {
            let (method, route) = labels(slot);
            for (i, n) in m.statuses.iter().enumerate() {
                let n = n.load(Relaxed);
                if n == 0 {
                    continue;
                }
                let _ = match STATUSES.get(i) {
                    Some(code) => writeln!(
                        out,
                        "cardvault_http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"{code}\"}} {n}"
                    ),
                    None => writeln!(
                        out,
                        "cardvault_http_requests_total{{method=\"{method}\",route=\"{route}\",status=\"other\"}} {n}"
                    ),
                };
            }
        }
    }

    fn render_latency(&self, out: &mut String) {
        out.push_str("# HELP cardvault_http_request_duration_seconds Time to answer, by route template.\n# TYPE cardvault_http_request_duration_seconds histogram\n");
        for (slot, m) in self.routes.iter().enumerate() {
            let counts: Vec<u64> = m.latency.iter().map(|n| n.load(Relaxed)).collect();
            let total: u64 = counts.iter().sum();
            if total == 0 {
                continue;
            }
            let (method, route) = labels(slot);
            let mut cumulative = 0;
            for (i, n) in counts.iter().enumerate() {
                cumulative += n;
                let le = LATENCY_US
                    .get(i)
                    .map_or_else(|| "+Inf".to_owned(), |us| seconds(*us));
                let _ = writeln!(
                    out,
                    "cardvault_http_request_duration_seconds_bucket{{method=\"{method}\",route=\"{route}\",le=\"{le}\"}} {cumulative}"
                );
            }
            let sum = seconds(m.latency_sum_us.load(Relaxed));
            let _ = writeln!(
                out,
                "cardvault_http_request_duration_seconds_sum{{method=\"{method}\",route=\"{route}\"}} {sum}\ncardvault_http_request_duration_seconds_count{{method=\"{method}\",route=\"{route}\"}} {total}"
            );
        }
    }
}

fn render_store(out: &mut String, vault: &Vault) {
    let stats = vault.stats();
    let s = &stats.store;
    let _ = writeln!(
        out,
        "# HELP cardvault_tokens_stored Records stored (live, and expired ones not yet swept).\n# TYPE cardvault_tokens_stored gauge\ncardvault_tokens_stored {}",
        stats.records
    );
    let _ = writeln!(
        out,
        "# HELP cardvault_store_flushes_total fsyncs by group commits.\n# TYPE cardvault_store_flushes_total counter\ncardvault_store_flushes_total {}",
        s.flushes
    );
    let _ = writeln!(
        out,
        "# HELP cardvault_store_size_bytes Bytes on disk.\n# TYPE cardvault_store_size_bytes gauge\ncardvault_store_size_bytes {}",
        s.size_on_disk
    );
    let _ = writeln!(
        out,
        "# HELP cardvault_store_races_total Group commits run again because another daemon on the database changed what they read.\n# TYPE cardvault_store_races_total counter\ncardvault_store_races_total {}",
        s.races
    );
    let _ = writeln!(
        out,
        "# HELP cardvault_store_guarded_groups_total Group commits that read their reveals' records as they committed (one round trip; shared vaults).\n# TYPE cardvault_store_guarded_groups_total counter\ncardvault_store_guarded_groups_total {}",
        s.guarded
    );
    let _ = writeln!(
        out,
        "# HELP cardvault_store_guard_misses_total Guarded group commits refused (a reveal refused, or the statement failed) and run again reading first.\n# TYPE cardvault_store_guard_misses_total counter\ncardvault_store_guard_misses_total {}",
        s.guard_misses
    );
    out.push_str("# HELP cardvault_store_group_size Writes per group commit.\n# TYPE cardvault_store_group_size histogram\n");
    let mut cumulative = 0;
    for (i, n) in s.group_sizes.buckets.iter().enumerate() {
        cumulative += n;
        let le = if i + 1 == s.group_sizes.buckets.len() {
            "+Inf".to_owned()
        } else {
            (1u64 << i).to_string()
        };
        let _ = writeln!(
            out,
            "cardvault_store_group_size_bucket{{le=\"{le}\"}} {cumulative}"
        );
    }
    let _ = writeln!(
        out,
        "cardvault_store_group_size_sum {}\ncardvault_store_group_size_count {}",
        s.group_sizes.sum, s.group_sizes.count
    );
}

/// Merchant-password logins (the Argon2id memory bound is `hashing` x the policy's memory) and
/// the CVVs held in memory for pending payments.
fn render_gateway(out: &mut String, gateway: &vault_gateway::Gateway) {
    let login = gateway.login_stats();
    let _ = writeln!(
        out,
        "# HELP cardvault_login_hashing Argon2id password hashes running now.\n# TYPE cardvault_login_hashing gauge\ncardvault_login_hashing {}",
        login.hashing
    );
    let _ = writeln!(
        out,
        "# HELP cardvault_login_hashing_peak Most Argon2id hashes running at once since start.\n# TYPE cardvault_login_hashing_peak gauge\ncardvault_login_hashing_peak {}",
        login.peak_hashing
    );
    let _ = writeln!(
        out,
        "# HELP cardvault_login_busy_total Logins refused because every hashing slot and waiting place was taken.\n# TYPE cardvault_login_busy_total counter\ncardvault_login_busy_total {}",
        login.busy
    );
    let _ = writeln!(
        out,
        "# HELP cardvault_login_cache_hits_total Logins verified from the verification cache.\n# TYPE cardvault_login_cache_hits_total counter\ncardvault_login_cache_hits_total {}",
        login.cache_hits
    );
    let _ = writeln!(
        out,
        "# HELP cardvault_payment_cvvs_held CVVs held in memory (sealed) for pending payments.\n# TYPE cardvault_payment_cvvs_held gauge\ncardvault_payment_cvvs_held {}",
        gateway.held_cvvs()
    );
}

fn labels(slot: usize) -> (&'static str, &'static str) {
    TABLE
        .get(slot)
        .map_or(("", "unmatched"), |(r, _)| (r.method, r.path))
}

fn seconds(us: u64) -> String {
    format!("{}.{:06}", us / 1_000_000, us % 1_000_000)
}
