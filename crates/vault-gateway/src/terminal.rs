//! Processing terminals: each belongs to one merchant; a hosted-fields session is created for one.
//!
//! Records: `T` + terminal id, MAC'd by the vault (kind `record-mac:terminal`), body
//! `{ v: 2, merchant, created_at }` in postcard (the on-disk format the vault wrote them in).

use std::fmt;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use vault_core::MerchantId;
use vault_service::{AuditOutcome, KeySpace, RecordKind, Table, Versioned};

use crate::{Gateway, GatewayError, VaultError};

/// Terminal records: `T` + terminal id, MAC'd ([`TERMINAL_MAC`]).
const TERMINALS: Table<str, TerminalRec> = Table::new(KeySpace::Terminal);
/// Their MAC kind.
const TERMINAL_MAC: RecordKind = RecordKind::new(KeySpace::Terminal.byte(), "record-mac:terminal");
/// The layout version of terminal records (MAC'd).
const MAC_VERSION: u8 = 2;

/// A processing terminal: 4-50 characters of `[A-Za-z0-9_-]`, owned by one merchant.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TerminalId(String);

impl TerminalId {
    /// Parses and validates.
    pub fn parse(s: &str) -> Result<Self, GatewayError> {
        let ok = (4..=50).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(GatewayError::field(
                "processingTerminalId",
                "invalid",
                "terminal id must be 4-50 characters of [A-Za-z0-9_-]",
            ))
        }
    }
    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TerminalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A terminal and its merchant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Terminal {
    /// Its id.
    pub id: TerminalId,
    /// Its merchant.
    pub merchant: MerchantId,
    /// When it was added.
    pub created_at: OffsetDateTime,
}

#[derive(Serialize, Deserialize)]
struct TerminalRec {
    v: u8,
    merchant: u64,
    created_at: i64,
}

impl Versioned for TerminalRec {
    const VERSION: u8 = MAC_VERSION;
}

/// A stored terminal's merchant and creation time (its record already MAC-checked and decoded).
fn fields(r: TerminalRec) -> Result<(MerchantId, OffsetDateTime), GatewayError> {
    let merchant = MerchantId::new(r.merchant).map_err(|_| VaultError::Integrity)?;
    let created_at =
        OffsetDateTime::from_unix_timestamp(r.created_at).map_err(|_| VaultError::Integrity)?;
    Ok((merchant, created_at))
}

impl Gateway {
    /// Adds a terminal for an existing merchant. Refused if the id exists. Audited
    /// (`admin.terminal.add`; the entry commits with the record, a refusal's is alone).
    pub fn add_terminal(
        &self,
        merchant: MerchantId,
        id: TerminalId,
    ) -> Result<Terminal, GatewayError> {
        let result = self.add_terminal_with(merchant, id);
        if result.is_err() {
            let outcome = GatewayError::outcome(&result);
            self.vault
                .audit(crate::audit::ADMIN_TERMINAL_ADD, None, outcome)?;
        }
        result
    }

    fn add_terminal_with(
        &self,
        merchant: MerchantId,
        id: TerminalId,
    ) -> Result<Terminal, GatewayError> {
        if self.vault.merchant(merchant)?.is_none() {
            return Err(GatewayError::field(
                "merchant_id",
                "unknown",
                "no merchant with this id",
            ));
        }
        let now = self.vault.now();
        let created_at = now.unix_timestamp();
        let rec = TerminalRec {
            v: MAC_VERSION,
            merchant: merchant.get(),
            created_at,
        };
        let mac = self.vault.record_mac(TERMINAL_MAC);
        let key = id.clone();
        let detail = Some(format!("merchant={merchant},terminal={id}"));
        let actor = self.vault.actor().clone();
        self.vault
            .transact(move |txn| -> Result<(), GatewayError> {
                // Any record under the id counts, even one that would not verify. Conditional:
                // on a shared vault another daemon may be adding the same id.
                let sealed = mac.seal_in(&TERMINALS, key.as_str(), &rec);
                if !txn.put_if_absent(&TERMINALS.key(key.as_str()), sealed)? {
                    return Err(GatewayError::field(
                        "terminal_id",
                        "exists",
                        "a terminal with this id exists",
                    ));
                }
                let ok = AuditOutcome::Ok;
                txn.audit(
                    &actor,
                    crate::audit::ADMIN_TERMINAL_ADD,
                    None,
                    detail.clone(),
                    ok,
                )?;
                Ok(())
            })?;
        Ok(Terminal {
            id,
            merchant,
            created_at: OffsetDateTime::from_unix_timestamp(created_at)
                .map_err(|_| VaultError::Integrity)?,
        })
    }

    /// The terminal with this id.
    pub fn terminal(&self, id: &TerminalId) -> Result<Option<Terminal>, GatewayError> {
        let mac = self.vault.record_mac(TERMINAL_MAC);
        let Some(rec) = self.vault.read_sealed_in(&TERMINALS, &mac, id.as_str())? else {
            return Ok(None);
        };
        let (merchant, created_at) = fields(rec)?;
        Ok(Some(Terminal {
            id: id.clone(),
            merchant,
            created_at,
        }))
    }

    /// Terminals, of one merchant or all.
    pub fn terminals(&self, merchant: Option<MerchantId>) -> Result<Vec<Terminal>, GatewayError> {
        let mac = self.vault.record_mac(TERMINAL_MAC);
        let mut out = Vec::new();
        for (k, v) in self.vault.scan(&[TERMINALS.space().byte()], usize::MAX)? {
            let id = std::str::from_utf8(k.get(1..).unwrap_or_default())
                .map_err(|_| VaultError::Integrity)?;
            let (m, created_at) = fields(mac.open_in(&TERMINALS, id, &v)?)?;
            if merchant.is_none_or(|want| want == m) {
                out.push(Terminal {
                    id: TerminalId(id.to_owned()),
                    merchant: m,
                    created_at,
                });
            }
        }
        Ok(out)
    }
}
