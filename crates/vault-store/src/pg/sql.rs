//! The statements of each table, written once (prepared and cached per connection by the pool).
//! Multi-row writes take arrays (`unnest`), so a group costs one statement per table and kind of
//! write, whatever its size; a group commit joins them into one statement (`commit.rs`).

use std::{fmt::Write, ops::Bound, sync::OnceLock};

use super::tables::{TableId, tables};
use crate::record::guard_layout;

/// One table's statements.
#[derive(Debug)]
pub(crate) struct TableSql {
    /// `$1` key -> value.
    pub(crate) get: String,
    /// `$1` keys -> the (key, value) rows of those present.
    pub(crate) get_many: String,
    /// Insert or replace: `$1` keys, `$2` values (`$3` keep-untils).
    pub(crate) upsert: String,
    /// Insert keys expected absent, without `ON CONFLICT`: a key another writer inserted
    /// meanwhile fails the statement with a unique violation.
    pub(crate) insert: String,
    /// `$1` keys.
    pub(crate) delete: String,
    /// Replace where the value is still the expected one: `$1` keys, `$2` expected, `$3` new
    /// (`$4` keep-untils); a row per key that held.
    pub(crate) update_if: String,
    /// Delete where the value is still the expected one: `$1` keys, `$2` expected; a row per key
    /// that held.
    pub(crate) delete_if: String,
    /// Lock (share) the rows still holding the expected values: `$1` keys, `$2` expected; a row
    /// per key that held.
    pub(crate) lock_if: String,
    /// A row per key of `$1` that is present (a group expects them absent).
    pub(crate) present: String,
    /// Token records only (the table with a keep-until column): the records a group reads as it
    /// commits ([`RecordGuard`](crate::RecordGuard)). `$1` keys, `$2` the merchant and token
    /// expected, `$3` the customer field expected, `$4` the times the records must outlive; a row
    /// (the guard's position from 1, the stored value) per guard that holds, compared at the
    /// fields' offsets in the record layout.
    pub(crate) guarded: Option<String>,
}

/// The statements of `table`.
pub(crate) fn of(table: TableId) -> &'static TableSql {
    static ALL: OnceLock<Vec<TableSql>> = OnceLock::new();
    let all = ALL.get_or_init(|| {
        tables()
            .iter()
            .map(|t| build(t.name, t.keep_until))
            .collect()
    });
    &all[table.0]
}

fn build(t: &str, keep_until: bool) -> TableSql {
    let (cols, arrays, set) = if keep_until {
        (
            "key, value, keep_until",
            "$1::bytea[], $2::bytea[], $3::int8[]",
            "value = EXCLUDED.value, keep_until = EXCLUDED.keep_until",
        )
    } else {
        (
            "key, value",
            "$1::bytea[], $2::bytea[]",
            "value = EXCLUDED.value",
        )
    };
    let insert = format!("INSERT INTO {t} ({cols}) SELECT * FROM unnest({arrays})");
    let update_if = if keep_until {
        format!(
            "UPDATE {t} SET value = u.v, keep_until = u.ku \
             FROM unnest($1::bytea[], $2::bytea[], $3::bytea[], $4::int8[]) AS u(k, e, v, ku) \
             WHERE {t}.key = u.k AND {t}.value = u.e RETURNING 1"
        )
    } else {
        format!(
            "UPDATE {t} SET value = u.v \
             FROM unnest($1::bytea[], $2::bytea[], $3::bytea[]) AS u(k, e, v) \
             WHERE {t}.key = u.k AND {t}.value = u.e RETURNING 1"
        )
    };
    TableSql {
        get: format!("SELECT value FROM {t} WHERE key = $1"),
        get_many: format!("SELECT key, value FROM {t} WHERE key = ANY($1::bytea[])"),
        upsert: format!("{insert} ON CONFLICT (key) DO UPDATE SET {set}"),
        insert,
        delete: format!("DELETE FROM {t} WHERE key = ANY($1::bytea[])"),
        update_if,
        delete_if: format!(
            "DELETE FROM {t} USING unnest($1::bytea[], $2::bytea[]) AS u(k, e) \
             WHERE {t}.key = u.k AND {t}.value = u.e RETURNING 1"
        ),
        lock_if: format!(
            "SELECT 1 FROM {t} JOIN unnest($1::bytea[], $2::bytea[]) AS u(k, e) \
             ON {t}.key = u.k AND {t}.value = u.e FOR SHARE OF {t}"
        ),
        present: format!("SELECT 1 FROM {t} WHERE key = ANY($1::bytea[])"),
        guarded: keep_until.then(|| guarded(t)),
    }
}

/// [`TableSql::guarded`] of the token records' table `t`.
fn guarded(t: &str) -> String {
    format!(
        "SELECT g.i, r.value FROM unnest($1::bytea[], $2::bytea[], $3::bytea[], $4::int8[]) \
         WITH ORDINALITY AS g(k, id, cu, t, i) JOIN {t} r ON r.key = g.k \
         WHERE substring(r.value FROM 1 FOR 1) = '\\x{:02x}'::bytea \
         AND substring(r.value FROM {} FOR 32) = g.id \
         AND substring(r.value FROM {} FOR length(g.cu)) = g.cu \
         AND length(r.value) > {} + length(g.cu) AND r.keep_until > g.t",
        guard_layout::VERSION,
        guard_layout::IDENTITY_AT + 1,
        guard_layout::CUSTOMER_AT + 1,
        guard_layout::CUSTOMER_AT,
    )
}

/// A range scan of `table` between the bounds (on its stored keys), `LIMIT` as the last
/// parameter. The parameters are the present bounds in order, then the limit.
pub(crate) fn scan(table: TableId, lower: Bound<()>, upper: Bound<()>) -> String {
    let t = tables()[table.0].name;
    let mut sql = format!("SELECT key, value FROM {t}");
    let mut n = 0;
    let mut conditions = Vec::new();
    for (bound, incl, excl) in [(lower, ">=", ">"), (upper, "<=", "<")] {
        match bound {
            Bound::Included(()) => {
                n += 1;
                conditions.push(format!("key {incl} ${n}"));
            }
            Bound::Excluded(()) => {
                n += 1;
                conditions.push(format!("key {excl} ${n}"));
            }
            Bound::Unbounded => {}
        }
    }
    if !conditions.is_empty() {
        let _ = write!(sql, " WHERE {}", conditions.join(" AND "));
    }
    let _ = write!(sql, " ORDER BY key LIMIT ${}", n + 1);
    sql
}

/// The group counter and the live-record count: sums over the writers.
pub(crate) const COUNTERS: &str =
    "SELECT coalesce(sum(groups), 0)::int8, coalesce(sum(records), 0)::int8 FROM cardvault_writers";
/// One meta row: `$1` name.
/// Replaces the meta row `$1` only if it still holds `$2` (the key header's compare-and-set).
pub(crate) const META_REPLACE: &str =
    "UPDATE cardvault_meta SET value = $3 WHERE name = $1 AND value = $2";
pub(crate) const META_GET: &str = "SELECT value FROM cardvault_meta WHERE name = $1";
/// Insert or replace a meta row: `$1` name, `$2` value.
pub(crate) const META_PUT: &str = "INSERT INTO cardvault_meta (name, value) VALUES ($1, $2) \
     ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value";
/// A writer's counts after one group: `$1` records delta, `$2` writer id.
/// One row if the writer's row is there.
pub(crate) const WRITER_ADD: &str = "UPDATE cardvault_writers \
     SET groups = groups + 1, records = records + $1 WHERE id = $2 RETURNING 1";
/// Whether writer `$1`'s row is there.
pub(crate) const WRITER_EXISTS: &str = "SELECT 1 FROM cardvault_writers WHERE id = $1";
/// A new writer's row.
pub(crate) const WRITER_NEW: &str = "INSERT INTO cardvault_writers DEFAULT VALUES RETURNING id";
/// A closing writer folds its counts into row 0: `$1` writer id.
pub(crate) const WRITER_FOLD: &str = "WITH mine AS (DELETE FROM cardvault_writers WHERE id = $1 \
     RETURNING groups, records) \
     UPDATE cardvault_writers AS w SET groups = w.groups + mine.groups, \
     records = w.records + mine.records FROM mine WHERE w.id = 0";
/// Due token records after a key: `$1` now, `$2` after, `$3` limit.
pub(crate) const EXPIRED_AFTER: &str = "SELECT key FROM cardvault_record \
     WHERE keep_until <= $1 AND key > $2 ORDER BY key LIMIT $3";
/// Due token records from the first: `$1` now, `$2` limit.
pub(crate) const EXPIRED: &str =
    "SELECT key FROM cardvault_record WHERE keep_until <= $1 ORDER BY key LIMIT $2";

/// The meta row of the key header.
pub(crate) const HEADER: &str = "header";
/// The meta row of the store format version.
pub(crate) const STORE_FORMAT: &str = "store_format";

#[cfg(test)]
mod tests {
    use std::ops::Bound;

    use super::scan;
    use crate::pg::tables::OTHER;

    #[test]
    fn scan_statements_number_their_parameters() {
        assert_eq!(
            scan(OTHER, Bound::Excluded(()), Bound::Included(())),
            "SELECT key, value FROM cardvault_other WHERE key > $1 AND key <= $2 ORDER BY key LIMIT $3"
        );
        assert_eq!(
            scan(OTHER, Bound::Unbounded, Bound::Excluded(())),
            "SELECT key, value FROM cardvault_other WHERE key < $1 ORDER BY key LIMIT $2"
        );
        assert_eq!(
            scan(OTHER, Bound::Unbounded, Bound::Unbounded),
            "SELECT key, value FROM cardvault_other ORDER BY key LIMIT $1"
        );
    }
}
