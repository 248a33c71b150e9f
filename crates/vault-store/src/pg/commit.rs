//! One group, one statement, one round trip: the writes of every table (one part per table and
//! kind of write, whatever the number of rows: arrays through `unnest`), the checks and the
//! writer's counts are the parts of one `WITH` statement, and its final `SELECT` divides by zero
//! unless every check held. A statement is atomic on its own (its implicit transaction commits
//! when it succeeds and rolls back when it fails), so the group needs no `BEGIN` and no `COMMIT`
//! and the server answers once: acknowledged means the statement returned, i.e. committed as
//! durably as the server's `synchronous_commit` makes it. All parts read one snapshot; each key
//! is in at most one part.
//!
//! **Checks** (the conditions the group's jobs read, see [`Check`]) are verified inside the
//! transaction, where another daemon may have written since the jobs read:
//!
//! - a key expected absent that the group inserts is inserted without `ON CONFLICT`: if another
//!   writer inserted it meanwhile (committed, or committing: the insert waits for it), the
//!   statement fails with a unique violation;
//! - a key expected absent that the group deletes or only read must still be absent;
//! - a key expected to hold a value is updated, deleted or share-locked with `WHERE value =
//!   expected`, and the statement fails unless that touched every such key (under READ
//!   COMMITTED an `UPDATE` re-reads a row another transaction changed before it got the lock).
//!
//! A failed check is told apart from a missing writer row (below) by one more read, on the
//! failure path only.
//!
//! **Guards** ([`RecordGuard`](crate::RecordGuard)): token records the group reads as it
//! commits. One more part selects them, keeping the rows whose fields at their offsets in the
//! record layout (version byte, merchant and token, customer) and whose keep-until column are as
//! the guard expects; the final `SELECT` takes the logarithm of zero (a different error from the
//! checks') unless it kept one row per guard, and returns their values. A reveal's read and its
//! audit entry's commit are so one round trip. A guard that fails rolls the group back as
//! [`ConflictKind::Guard`].
//!
//! A failed check, a unique violation, a serialisation failure or a deadlock rolls the group back
//! as [`ConflictKind::Raced`]: the committer runs it again on fresh reads.
//!
//! The counters are not rows the group rewrites: the writer's own row in `cardvault_writers`
//! gets `groups + 1` and `records + records_delta` (checked: the row must be there); the `G` and
//! `C` values of the ops are ignored.
//!
//! A connection lost once the statement was sent leaves its outcome unknown (it may have
//! committed): the group is then reported failed, not run again. One found closed before it was
//! sent is retried on another connection.

use std::{collections::HashMap, fmt::Write};

use deadpool_postgres::ClientWrapper;
use tokio_postgres::{error::SqlState, types::ToSql};

use super::{
    errors::{Fail, from_pg},
    sql::{self, TableSql},
    tables::{Derived, OTHER, Route, TableId, route, tables},
};
use crate::{
    ConflictKind, StoreError, StoredRecord, Structure, Unavailable,
    engine::{Group, RecordGuard},
    record::guard_layout,
};

/// What one group does to one table.
#[derive(Default)]
struct TableWrites {
    upsert: Rows,
    insert: Rows,
    delete: Vec<Vec<u8>>,
    update_if: Conditional,
    delete_if: Conditional,
    lock_if: Conditional,
    present: Vec<Vec<u8>>,
}

/// Keys, values and (token records) keep-untils, column-wise.
#[derive(Default)]
struct Rows {
    keys: Vec<Vec<u8>>,
    values: Vec<Vec<u8>>,
    keep_until: Vec<Option<i64>>,
}

impl Rows {
    /// A row; `dated`: its table has a keep-until column.
    fn push(&mut self, key: Vec<u8>, value: Vec<u8>, dated: bool) {
        self.keep_until.push(keep_until(dated, &value));
        self.keys.push(key);
        self.values.push(value);
    }
}

/// Rows that must hold `expected` values.
#[derive(Default)]
struct Conditional {
    keys: Vec<Vec<u8>>,
    expected: Vec<Vec<u8>>,
    values: Vec<Vec<u8>>,
    keep_until: Vec<Option<i64>>,
}

/// The keep-until column of a row whose table has one (`dated`: token records), from its value;
/// `None` for the rows of other tables (nothing is decoded) and for a value that does not decode
/// (the sweep skips it).
fn keep_until(dated: bool, value: &[u8]) -> Option<i64> {
    if !dated {
        return None;
    }
    StoredRecord::decode(value).ok().map(|r| r.keep_until)
}

/// The group sorted by table and kind of write.
pub(crate) struct Plan {
    tables: Vec<(TableId, TableWrites)>,
    /// A new store format version (never in a group today; kept for completeness).
    version: Option<Vec<u8>>,
    records_delta: i64,
    guards: Guards,
}

/// The group's [`RecordGuard`]s, column-wise: the keys in the record table, the bytes expected at
/// the identity and customer offsets, and the times the records must outlive.
#[derive(Default)]
struct Guards {
    /// The token records' table (`None` without guards).
    table: Option<TableId>,
    keys: Vec<Vec<u8>>,
    identity: Vec<Vec<u8>>,
    customer: Vec<Vec<u8>>,
    now: Vec<i64>,
}

impl Guards {
    fn new(guards: &[RecordGuard]) -> Result<Self, StoreError> {
        let mut out = Self::default();
        for g in guards {
            let (Route::Table(t), k) = route(&g.key) else {
                return Err(StoreError::Corrupt(Structure::ReservedKey));
            };
            if !tables()[t.0].keep_until {
                // Only token records (the table with a keep-until column) are guarded.
                return Err(StoreError::Corrupt(Structure::ReservedKey));
            }
            out.table = Some(t);
            out.keys.push(k.to_vec());
            out.identity
                .push(guard_layout::identity(g.merchant, &g.token));
            // A customer id no record can hold: a length byte no record has, so the guard fails.
            out.customer.push(
                guard_layout::customer(g.customer.as_deref()).unwrap_or_else(|| vec![u8::MAX]),
            );
            out.now.push(g.now);
        }
        Ok(out)
    }
}

impl Plan {
    pub(crate) fn new(group: Group) -> Result<Self, StoreError> {
        let guards = Guards::new(&group.guards)?;
        let mut checks: HashMap<Vec<u8>, Option<Vec<u8>>> = group
            .checks
            .into_iter()
            .map(|c| (c.key, c.expected))
            .collect();
        let mut by_table: HashMap<TableId, TableWrites> = HashMap::new();
        let mut version = None;
        for (key, value) in group.ops {
            let check = checks.remove(&key);
            let (t, k) = match route(&key) {
                (Route::Derived(Derived::Version), _) => {
                    version = value;
                    continue;
                }
                // The counters come from the writers' rows.
                (Route::Derived(_), _) => continue,
                (Route::Table(t), k) => (t, k.to_vec()),
            };
            if t == OTHER && is_stray(&key) {
                return Err(StoreError::Corrupt(Structure::ReservedKey));
            }
            let dated = tables()[t.0].keep_until;
            let w = by_table.entry(t).or_default();
            match (check, value) {
                (None, Some(v)) => w.upsert.push(k, v, dated),
                (None, None) => w.delete.push(k),
                (Some(None), Some(v)) => w.insert.push(k, v, dated),
                (Some(None), None) => w.present.push(k),
                (Some(Some(e)), Some(v)) => {
                    w.update_if.keep_until.push(keep_until(dated, &v));
                    w.update_if.keys.push(k);
                    w.update_if.expected.push(e);
                    w.update_if.values.push(v);
                }
                (Some(Some(e)), None) => {
                    w.delete_if.keys.push(k);
                    w.delete_if.expected.push(e);
                }
            }
        }
        // Conditions on keys the group does not write.
        for (key, expected) in checks {
            let (t, k) = match route(&key) {
                (Route::Table(t), k) => (t, k.to_vec()),
                (Route::Derived(_), _) => continue,
            };
            let w = by_table.entry(t).or_default();
            match expected {
                None => w.present.push(k),
                Some(e) => {
                    w.lock_if.keys.push(k);
                    w.lock_if.expected.push(e);
                }
            }
        }
        let mut tables: Vec<(TableId, TableWrites)> = by_table.into_iter().collect();
        // A fixed order of tables (and of keys within a statement) makes two groups lock rows in
        // the same order, which keeps deadlocks rare.
        tables.sort_by_key(|(t, _)| *t);
        for (_, w) in &mut tables {
            w.delete.sort();
            w.present.sort();
        }
        Ok(Self {
            tables,
            version,
            records_delta: group.records_delta,
            guards,
        })
    }
}

/// A key under a derived prefix (`G`, `C`, `V`) longer than the prefix: no layer writes one.
fn is_stray(key: &[u8]) -> bool {
    key.len() > 1 && matches!(route(&key[..1]).0, Route::Derived(_))
}

/// What a group commit fails with when one of its checks does not hold: the statement divides
/// by zero, so it fails and its transaction is rolled back.
const CHECK_FAILED: SqlState = SqlState::DIVISION_BY_ZERO;

/// What a group commit fails with when one of its guards does not hold: the logarithm of zero.
const GUARD_FAILED: SqlState = SqlState::INVALID_ARGUMENT_FOR_LOG;

/// The group's one statement being built: each write or check is a `WITH` part, the parts'
/// parameters numbered one after the other, and the checks joined in the final `SELECT`.
#[derive(Default)]
struct Statement<'a> {
    parts: Vec<String>,
    params: Params<'a>,
    checks: Vec<String>,
    /// The part reading guarded records, and the check that it read one row per guard.
    guarded: Option<(String, String)>,
}

impl<'a> Statement<'a> {
    /// Adds `sql` (numbering its parameters from `$1`) as a part; returns the part's name.
    fn part(&mut self, sql: &str, params: Params<'a>) -> String {
        let name = format!("p{}", self.parts.len());
        let sql = renumber(sql, self.params.len());
        self.parts.push(format!("{name} AS ({sql})"));
        self.params.extend(params);
        name
    }

    /// A write whose row count is not checked.
    fn write(&mut self, sql: &str, params: Params<'a>) {
        self.part(sql, params);
    }

    /// A part returning a row per key of its first parameter that held: all must have.
    fn all_of(&mut self, sql: &str, params: Params<'a>) {
        let (_, check) = self.counted(sql, params);
        self.checks.push(check);
    }

    /// Adds `sql` as a part; returns its name and the check that it returned a row per key of
    /// its first parameter.
    fn counted(&mut self, sql: &str, params: Params<'a>) -> (String, String) {
        let first = self.params.len() + 1;
        let name = self.part(sql, params);
        let check = format!("(SELECT count(*) FROM {name}) = cardinality(${first}::bytea[])");
        (name, check)
    }

    /// A part returning a row per key present: none may be.
    fn none_of(&mut self, sql: &str, params: Params<'a>) {
        let name = self.part(sql, params);
        self.checks.push(format!("NOT EXISTS (SELECT FROM {name})"));
    }

    /// A part that must return exactly one row.
    fn one(&mut self, sql: &str, params: Params<'a>) {
        let name = self.part(sql, params);
        self.checks
            .push(format!("(SELECT count(*) FROM {name}) = 1"));
    }

    /// The part reading the guarded records (`$1` keys first); returned by the statement.
    fn guarded(&mut self, sql: &str, params: Params<'a>) {
        self.guarded = Some(self.counted(sql, params));
    }

    /// `WITH` the parts, `SELECT` 1 if every check holds and a division by zero if not. With
    /// guards, also the logarithm of zero unless every guard held, and a row per guarded record
    /// (its position, its value). Both columns of the checks are named in the outer `SELECT`, so
    /// the planner cannot drop them unevaluated.
    fn text(&self) -> String {
        let parts = self.parts.join(", ");
        let checks = self.checks.join(" AND ");
        match &self.guarded {
            None => format!("WITH {parts} SELECT 1 / ({checks})::int"),
            Some((name, held)) => format!(
                "WITH {parts} SELECT c.ok, c.held, g.i, g.value FROM \
                 (SELECT 1 / ({checks})::int AS ok, ln(({held})::int) AS held) c \
                 LEFT JOIN {name} g ON true"
            ),
        }
    }
}

/// `sql` with its parameters `$n` renamed `$(n + by)`.
fn renumber(sql: &str, by: usize) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut rest = sql;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..=at]);
        rest = &rest[at + 1..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        match rest[..digits].parse::<usize>() {
            Ok(n) => {
                let _ = write!(out, "{}", n + by);
            }
            Err(_) => out.push_str(&rest[..digits]),
        }
        rest = &rest[digits..];
    }
    out.push_str(rest);
    out
}

/// Runs `plan` for writer `writer` as one statement, so one transaction in one round trip: the
/// writes and checks of every table and the writer's counts are parts of one `WITH`, and the
/// final `SELECT` fails (a division by zero) unless every check held. A statement is atomic on
/// its own, so nothing else is needed to commit all of it or none. Returns the values of the
/// guarded records, in the order of the guards.
pub(crate) async fn run(c: &ClientWrapper, plan: &Plan, writer: i64) -> Result<Vec<Vec<u8>>, Fail> {
    let mut q = Statement::default();
    let g = &plan.guards;
    if let Some(guarded) = g.table.and_then(|t| sql::of(t).guarded.as_deref()) {
        q.guarded(guarded, vec![&g.keys, &g.identity, &g.customer, &g.now]);
    }
    for (t, w) in &plan.tables {
        let s: &TableSql = sql::of(*t);
        let ku = tables()[t.0].keep_until;
        if !w.upsert.keys.is_empty() {
            q.write(&s.upsert, rows(&w.upsert, ku));
        }
        if !w.insert.keys.is_empty() {
            // Inserts every row or fails: a key present is a unique violation.
            q.write(&s.insert, rows(&w.insert, ku));
        }
        if !w.delete.is_empty() {
            q.write(&s.delete, vec![&w.delete]);
        }
        if !w.update_if.keys.is_empty() {
            let u = &w.update_if;
            let mut p: Params<'_> = vec![&u.keys, &u.expected, &u.values];
            if ku {
                p.push(&u.keep_until);
            }
            q.all_of(&s.update_if, p);
        }
        if !w.delete_if.keys.is_empty() {
            let d = &w.delete_if;
            q.all_of(&s.delete_if, vec![&d.keys, &d.expected]);
        }
        if !w.lock_if.keys.is_empty() {
            let l = &w.lock_if;
            q.all_of(&s.lock_if, vec![&l.keys, &l.expected]);
        }
        if !w.present.is_empty() {
            q.none_of(&s.present, vec![&w.present]);
        }
    }
    let version_name = sql::STORE_FORMAT;
    if let Some(v) = &plan.version {
        q.write(sql::META_PUT, vec![&version_name, v]);
    }
    q.one(sql::WRITER_ADD, vec![&plan.records_delta, &writer]);
    let guarded = !g.keys.is_empty();
    // Prepared once per connection and shape of group.
    let stmt = match c.prepare_cached(&q.text()).await {
        Ok(stmt) => stmt,
        Err(e) if guarded && e.code().is_some() => return Err(Fail::stop(guard_refused())),
        Err(e) => return Err(super::reads::fail(&e)),
    };
    if c.is_closed() {
        // Found closed before the group was sent.
        return Err(Fail::Retry);
    }
    let e = match c.query(&stmt, &q.params).await {
        Ok(rows) => return Ok(guarded_values(&rows, g.keys.len())),
        Err(e) => e,
    };
    let error = match from_pg(&e) {
        // The statement may have been carried out before the connection was lost: the outcome
        // is unknown, so the group is not run again.
        StoreError::Unavailable(Unavailable::ConnectionLost) => {
            return Err(Fail::Stop {
                error: StoreError::Unavailable(Unavailable::ConnectionLost),
                discard: true,
            });
        }
        _ if e.code() == Some(&CHECK_FAILED) => failed_check(c, writer).await?,
        _ if e.code() == Some(&GUARD_FAILED) => guard_refused(),
        // Refused by the server (a table missing, ...): nothing was committed.
        StoreError::Engine(_) if guarded && e.code().is_some() => guard_refused(),
        error => error,
    };
    // The statement failed, so nothing of it was committed; the connection is idle.
    Err(Fail::stop(error))
}

/// What a guarded group fails with when a guard does not hold, or when the server refuses the
/// statement that reads the guarded records (nothing of it was committed): the committer runs it
/// again once, its jobs reading first, so that a read that fails fails only the jobs that made it,
/// as without guards.
fn guard_refused() -> StoreError {
    StoreError::Conflict(ConflictKind::Guard)
}

/// The values of `n` guarded records from the statement's rows (position from 1, value), in the
/// guards' order. The statement committed only with one row per guard; a position missing all
/// the same reads as an empty value, which no record decodes from.
fn guarded_values(rows: &[tokio_postgres::Row], n: usize) -> Vec<Vec<u8>> {
    let mut values = vec![Vec::new(); n];
    if n == 0 {
        return values;
    }
    for row in rows {
        let (Ok(Some(i)), Ok(Some(value))) = (
            row.try_get::<_, Option<i64>>(2),
            row.try_get::<_, Option<Vec<u8>>>(3),
        ) else {
            continue;
        };
        if let Some(slot) = usize::try_from(i)
            .ok()
            .and_then(|i| values.get_mut(i.wrapping_sub(1)))
        {
            *slot = value;
        }
    }
    values
}

/// What a failed check means: raced by another writer, unless this writer's own row is gone (the
/// database was changed under it).
async fn failed_check(c: &ClientWrapper, writer: i64) -> Result<StoreError, Fail> {
    let stmt = c
        .prepare_cached(sql::WRITER_EXISTS)
        .await
        .map_err(|e| super::reads::fail(&e))?;
    let row = c
        .query_opt(&stmt, &[&writer])
        .await
        .map_err(|e| super::reads::fail(&e))?;
    Ok(match row {
        Some(_) => StoreError::Conflict(ConflictKind::Raced),
        None => StoreError::Corrupt(Structure::Generation),
    })
}

type Params<'a> = Vec<&'a (dyn ToSql + Sync)>;

fn rows(r: &Rows, keep_until: bool) -> Params<'_> {
    let mut p: Params<'_> = vec![&r.keys, &r.values];
    if keep_until {
        p.push(&r.keep_until);
    }
    p
}

#[cfg(test)]
mod tests {
    use super::{Statement, renumber};
    use crate::pg::{sql, tables::tables};

    #[test]
    fn parts_number_their_parameters_one_after_the_other() {
        assert_eq!(
            renumber("a = $1 AND b = $2::int8[]", 3),
            "a = $4 AND b = $5::int8[]"
        );
        assert_eq!(renumber("$10, $1, $ and $x", 1), "$11, $2, $ and $x");
        let (a, b, c) = (vec![vec![1u8]], 7i64, 8i64);
        let mut q = Statement::default();
        q.write("INSERT x ($1, $2)", vec![&a, &a]);
        q.all_of("UPDATE y ($1, $2) RETURNING 1", vec![&a, &a]);
        q.none_of("SELECT 1 FROM z WHERE k = ANY($1)", vec![&a]);
        q.one(
            "UPDATE w SET n = $1 WHERE id = $2 RETURNING 1",
            vec![&b, &c],
        );
        assert_eq!(q.params.len(), 7);
        assert_eq!(
            q.text(),
            "WITH p0 AS (INSERT x ($1, $2)), p1 AS (UPDATE y ($3, $4) RETURNING 1), \
             p2 AS (SELECT 1 FROM z WHERE k = ANY($5)), \
             p3 AS (UPDATE w SET n = $6 WHERE id = $7 RETURNING 1) \
             SELECT 1 / ((SELECT count(*) FROM p1) = cardinality($3::bytea[]) \
             AND NOT EXISTS (SELECT FROM p2) AND (SELECT count(*) FROM p3) = 1)::int"
        );
    }

    #[test]
    fn a_guarded_statement_returns_the_records_and_names_both_checks_so_neither_is_dropped() {
        let (a, t) = (vec![vec![1u8]], vec![1i64]);
        let mut q = Statement::default();
        let record = tables().iter().position(|t| t.keep_until).expect("records");
        let part = sql::of(crate::pg::tables::TableId(record))
            .guarded
            .clone()
            .expect("the records' table is guarded");
        q.guarded(&part, vec![&a, &a, &a, &t]);
        q.write("INSERT x ($1, $2)", vec![&a, &a]);
        q.one("UPDATE w SET n = 1 WHERE id = $1 RETURNING 1", vec![&t]);
        let text = q.text();
        assert!(
            text.ends_with(
                "SELECT c.ok, c.held, g.i, g.value FROM \
                 (SELECT 1 / ((SELECT count(*) FROM p2) = 1)::int AS ok, \
                 ln(((SELECT count(*) FROM p0) = cardinality($1::bytea[]))::int) AS held) c \
                 LEFT JOIN p0 g ON true"
            ),
            "{text}"
        );
        // The layout offsets, 1-based in SQL: version byte, merchant and token, customer.
        assert!(
            part.contains("JOIN cardvault_record r ON r.key = g.k"),
            "{part}"
        );
        assert!(
            part.contains(r"substring(r.value FROM 1 FOR 1) = '\x01'::bytea"),
            "{part}"
        );
        assert!(
            part.contains("substring(r.value FROM 3 FOR 32) = g.id"),
            "{part}"
        );
        assert!(
            part.contains("substring(r.value FROM 75 FOR length(g.cu)) = g.cu"),
            "{part}"
        );
        assert!(
            part.contains("length(r.value) > 74 + length(g.cu)"),
            "{part}"
        );
    }
}
