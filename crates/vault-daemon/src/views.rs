//! The domain-to-wire mapping, written once: what the `/admin` routes answer and what the
//! `cardvault` CLI prints when it works on a vault in process. Both go through these functions,
//! so a command gives the same output offline and through the daemon by construction.

use time::format_description::well_known::Rfc3339;
use vault_gateway::Terminal;
use vault_service::{
    ApiKeyInfo, AuditArchived, AuditEntry, AuditReport, BackupReport, DekId, DekState, Merchant,
    RewrapProgress, VaultStats,
};
use vault_wire::{
    ApiKeyKind, ApiKeyResponse, ArchivedChainView, AuditArchiveResponse, AuditEntryView,
    AuditVerifyResponse, BackupResponse, DekStatus, KeyStatusResponse, MerchantResponse,
    RetireResponse, RewrapResponse, StatsResponse, TerminalResponse,
};

/// A merchant (`POST /admin/merchants`, `GET /admin/merchants`).
pub fn merchant(m: &Merchant) -> MerchantResponse {
    MerchantResponse {
        merchant_id: m.id.to_string(),
        name: m.name.clone(),
        created_at: m.created_at,
    }
}

/// An API key's public part, never its secret (`/admin/api-keys`).
pub fn api_key(k: &ApiKeyInfo) -> ApiKeyResponse {
    ApiKeyResponse {
        id: k.id.clone(),
        merchant_id: k.merchant.map(|m| m.to_string()),
        kind: if k.merchant.is_some() {
            ApiKeyKind::Merchant
        } else {
            ApiKeyKind::Operator
        },
        scopes: k.scopes.iter().map(|s| s.as_str().to_owned()).collect(),
        label: k.label.clone(),
        created_at: k.created_at,
        revoked: k.revoked,
    }
}

/// A processing terminal (`/admin/terminals`).
pub fn terminal(t: &Terminal) -> TerminalResponse {
    TerminalResponse {
        terminal_id: t.id.as_str().to_owned(),
        merchant_id: t.merchant.to_string(),
        created_at: t.created_at,
    }
}

/// The data keys and which one is current (`GET /admin/keys`).
pub fn key_status(s: &VaultStats) -> KeyStatusResponse {
    KeyStatusResponse {
        current_dek: s.current_dek.get(),
        deks: s
            .deks
            .iter()
            .map(|(id, state, created_at)| DekStatus {
                id: id.get(),
                state: match state {
                    DekState::Current => "current",
                    DekState::DecryptOnly => "decrypt-only",
                }
                .to_owned(),
                created_at: *created_at,
            })
            .collect(),
    }
}

/// The result of a re-wrap pass (`POST /admin/keys/rewrap`).
pub fn rewrap(p: &RewrapProgress) -> RewrapResponse {
    RewrapResponse {
        scanned: p.scanned,
        rewrapped: p.rewrapped,
        failed: p.failed,
        total: p.total,
    }
}

/// The data keys retired (`POST /admin/keys/retire`).
pub fn retired(ids: &[DekId]) -> RetireResponse {
    RetireResponse {
        retired: ids.iter().map(|id| id.get()).collect(),
    }
}

/// Vault counters and key state (`GET /admin/stats`).
pub fn stats(s: &VaultStats) -> StatsResponse {
    StatsResponse {
        records: s.records,
        current_dek: s.current_dek.get(),
        deks: u32::try_from(s.deks.len()).unwrap_or(u32::MAX),
        groups: s.store.groups,
        jobs: s.store.jobs,
        flushes: s.store.flushes,
        size_on_disk: s.store.size_on_disk,
        group_size_buckets: s.store.group_sizes.buckets.to_vec(),
    }
}

/// A written backup (`POST /admin/backup`); `path` as the caller named it.
pub fn backup(path: String, r: &BackupReport) -> BackupResponse {
    BackupResponse {
        path,
        records: r.records,
        entries: r.entries,
        bytes: r.bytes,
        sha256: r.sha256.iter().map(|b| format!("{b:02x}")).collect(),
        pause_ms: u64::try_from(r.pause.as_millis()).unwrap_or(u64::MAX),
    }
}

/// An audit entry (`GET /admin/audit`, `cardvault audit tail --json`).
pub fn audit_entry(e: &AuditEntry) -> AuditEntryView {
    // The CLI reads the log offline through a bare vault: the gateway's actions need their names.
    vault_gateway::register();
    let hex = |b: &[u8; 32]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    AuditEntryView {
        seq: e.seq,
        at: e
            .at
            .format(&Rfc3339)
            .unwrap_or_else(|_| e.at.unix_timestamp().to_string()),
        action: e.action.as_str().to_owned(),
        outcome: e.outcome.to_string(),
        merchant_id: e.actor.merchant.map(|m| m.to_string()),
        key_id: e.actor.key_id.clone(),
        peer_uid: e.actor.peer_uid,
        token: e.token.map(|t| t.to_string()),
        detail: e.detail.clone(),
        prev_hash: hex(&e.prev_hash),
        hash: hex(&e.hash),
        chain: e.chain.clone(),
    }
}

/// What an archive moved (`POST /admin/audit/archive`, `cardvault audit archive`); `path` as
/// the caller named it.
pub fn audit_archived(path: String, a: &AuditArchived) -> AuditArchiveResponse {
    AuditArchiveResponse {
        path,
        entries: a.entries,
        chains: a
            .chains
            .iter()
            .map(|c| ArchivedChainView {
                chain: c.chain.clone(),
                first_seq: c.first_seq,
                last_seq: c.last_seq,
            })
            .collect(),
        more: a.more,
    }
}

/// The result of checking the audit chain (`POST /admin/audit/verify`).
pub fn audit_verify(r: AuditReport) -> AuditVerifyResponse {
    AuditVerifyResponse {
        ok: r.is_ok(),
        entries: r.entries,
        first_bad: r.first_bad,
        problem: r.problem,
    }
}
