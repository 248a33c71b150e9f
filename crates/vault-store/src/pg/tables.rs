//! Where each key lives: one table per key space of the [`KeySpace`] registry (`bytea` primary
//! key = the key without its prefix byte, `bytea` value), one table for keys whose prefix byte no
//! key space claims (full keys), and three keys that are not rows of their own:
//!
//! | key | read as |
//! |-----|---------|
//! | `V` (store format) | the `store_format` row of `cardvault_meta` |
//! | `G` (group commits) | the sum of `groups` over `cardvault_writers` |
//! | `C` (live records) | the sum of `records` over `cardvault_writers` |
//!
//! The counters are kept per writer (one row per engine instance) so that the groups of several
//! daemons never update one row (which would serialise them); the values the committer puts
//! under `G` and `C` are ignored. Token records (`R`) also carry their keep-until in an indexed
//! column, for the expiry sweep.
//!
//! `bytea` compares bytewise, so each table's primary-key order is the key order within its
//! prefix; a scan over several prefixes visits the tables in prefix-byte order ([`segments`]).

use std::sync::OnceLock;

use crate::KeySpace;

/// Where one key is stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Route {
    /// A row of a table.
    Table(TableId),
    /// A value made from other rows.
    Derived(Derived),
}

/// The keys that are not rows of their own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Derived {
    /// `V`: the store format version (u16 BE).
    Version,
    /// `G`: group commits made by every writer (u64 BE).
    Generation,
    /// `C`: live records (u64 BE).
    Count,
}

/// One of [`TABLES`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct TableId(pub(crate) usize);

/// A key-value table.
#[derive(Debug)]
pub(crate) struct Table {
    pub(crate) name: &'static str,
    /// The prefix byte its keys are stored without; `None`: the table of unclaimed prefixes,
    /// which stores full keys.
    pub(crate) prefix: Option<u8>,
    /// Whether it has the `keep_until` column (token records).
    pub(crate) keep_until: bool,
}

/// The table of keys whose prefix byte no key space claims.
pub(crate) const OTHER: TableId = TableId(0);

/// The table of each key space that is stored as rows; `None`: the key is derived.
const fn table_name(kind: KeySpace) -> Option<&'static str> {
    Some(match kind {
        KeySpace::Version | KeySpace::Count | KeySpace::Generation => return None,
        KeySpace::Record => "cardvault_record",
        KeySpace::Expiry => "cardvault_expiry",
        KeySpace::Dedupe => "cardvault_dedupe",
        KeySpace::AuditEntry => "cardvault_audit_entry",
        KeySpace::AuditHead => "cardvault_audit_head",
        KeySpace::AuditChainEntry => "cardvault_audit_chain_entry",
        KeySpace::AuditChainHead => "cardvault_audit_chain_head",
        KeySpace::IdempotencyRecord => "cardvault_idempotency",
        KeySpace::IdempotencyIndex => "cardvault_idempotency_index",
        KeySpace::Merchant => "cardvault_merchant",
        KeySpace::ApiKey => "cardvault_api_key",
        KeySpace::OneClick => "cardvault_one_click",
        KeySpace::Marker => "cardvault_marker",
        KeySpace::Password => "cardvault_password",
        KeySpace::Terminal => "cardvault_terminal",
        KeySpace::Session => "cardvault_session",
        KeySpace::SessionDue => "cardvault_session_due",
        KeySpace::Payment => "cardvault_payment",
        KeySpace::PaymentDue => "cardvault_payment_due",
        KeySpace::LoginFailures => "cardvault_login_failures",
        KeySpace::HeldCvv => "cardvault_held_cvv",
    })
}

const fn derived(kind: KeySpace) -> Option<Derived> {
    match kind {
        KeySpace::Version => Some(Derived::Version),
        KeySpace::Count => Some(Derived::Count),
        KeySpace::Generation => Some(Derived::Generation),
        _ => None,
    }
}

/// Every table: [`OTHER`] first, then one per stored key space in prefix-byte order.
pub(crate) fn tables() -> &'static [Table] {
    static TABLES: OnceLock<Vec<Table>> = OnceLock::new();
    TABLES.get_or_init(|| {
        let mut all = vec![Table {
            name: "cardvault_other",
            prefix: None,
            keep_until: false,
        }];
        for kind in KeySpace::ALL {
            if let Some(name) = table_name(kind) {
                all.push(Table {
                    name,
                    prefix: Some(kind.byte()),
                    keep_until: kind == KeySpace::Record,
                });
            }
        }
        all
    })
}

fn route_of_byte(byte: u8) -> Option<Route> {
    let kind = KeySpace::from_byte(byte)?;
    if let Some(d) = derived(kind) {
        return Some(Route::Derived(d));
    }
    tables()
        .iter()
        .position(|t| t.prefix == Some(byte))
        .map(|i| Route::Table(TableId(i)))
}

/// Where `key` lives, and its primary key there.
pub(crate) fn route(key: &[u8]) -> (Route, &[u8]) {
    match key.split_first() {
        Some((&first, rest)) => match route_of_byte(first) {
            // A derived key is exactly its prefix byte; anything longer under it is stored as a
            // full key among the unclaimed ones (no layer writes such keys).
            Some(Route::Derived(d)) if rest.is_empty() => (Route::Derived(d), rest),
            Some(Route::Table(t)) => (Route::Table(t), rest),
            _ => (Route::Table(OTHER), key),
        },
        None => (Route::Table(OTHER), key),
    }
}

/// One stretch of the key space in prefix-byte order: keys whose first byte is in `lo..=hi`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Segment {
    pub(crate) lo: u8,
    pub(crate) hi: u8,
    pub(crate) route: Route,
}

/// The whole key space as segments in order: one per claimed prefix byte, one per run of
/// unclaimed bytes (all in [`OTHER`], full keys).
pub(crate) fn segments() -> &'static [Segment] {
    static SEGMENTS: OnceLock<Vec<Segment>> = OnceLock::new();
    SEGMENTS.get_or_init(|| {
        let mut out: Vec<Segment> = Vec::new();
        for byte in 0..=u8::MAX {
            let route = route_of_byte(byte).unwrap_or(Route::Table(OTHER));
            match out.last_mut() {
                Some(last) if route == Route::Table(OTHER) && last.route == route => {
                    last.hi = byte;
                }
                _ => out.push(Segment {
                    lo: byte,
                    hi: byte,
                    route,
                }),
            }
        }
        out
    })
}

#[cfg(test)]
mod tests {
    use super::{Derived, OTHER, Route, route, segments, tables};
    use crate::KeySpace;

    #[test]
    fn every_stored_key_space_has_a_table_and_keys_route_to_it() {
        for kind in KeySpace::ALL {
            let key = [kind.byte(), 1, 2];
            let (r, rest) = route(&key);
            match r {
                Route::Table(t) if t != OTHER => {
                    assert_eq!(tables()[t.0].prefix, Some(kind.byte()));
                    assert_eq!(rest, &[1, 2]);
                }
                Route::Table(_) => {
                    // A derived kind's longer keys are kept whole with the unclaimed ones.
                    assert!(matches!(
                        kind,
                        KeySpace::Version | KeySpace::Count | KeySpace::Generation
                    ));
                    assert_eq!(rest, &key);
                }
                Route::Derived(_) => panic!("{kind:?}: a three-byte key is not derived"),
            }
        }
        assert_eq!(route(b"G"), (Route::Derived(Derived::Generation), &b""[..]));
        assert_eq!(route(b"C"), (Route::Derived(Derived::Count), &b""[..]));
        assert_eq!(route(b"V"), (Route::Derived(Derived::Version), &b""[..]));
        assert_eq!(route(b"Uxyz"), (Route::Table(OTHER), &b"Uxyz"[..]));
        let names: std::collections::HashSet<_> = tables().iter().map(|t| t.name).collect();
        assert_eq!(names.len(), tables().len(), "table names are unique");
    }

    #[test]
    fn segments_cover_every_byte_once_in_order() {
        let s = segments();
        assert_eq!(s.first().map(|s| s.lo), Some(0));
        assert_eq!(s.last().map(|s| s.hi), Some(u8::MAX));
        for w in s.windows(2) {
            assert_eq!(u16::from(w[0].hi) + 1, u16::from(w[1].lo));
        }
    }
}
