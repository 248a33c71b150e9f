//! One group, one transaction: `BEGIN` and every statement of the group pipelined in one round
//! trip (tokio-postgres pipelines the queries of one connection that are polled together), their
//! row counts checked, then `COMMIT` (or `ROLLBACK`). Each table gets at most one statement per
//! kind of write, whatever the number of rows (arrays through `unnest`), so a group costs two
//! round trips.
//!
//! **Checks** (the conditions the group's jobs read, see [`Check`]) are verified inside the
//! transaction, where another daemon may have written since the jobs read:
//!
//! - a key expected absent that the group inserts is inserted without `ON CONFLICT`: if another
//!   writer inserted it meanwhile (committed, or committing: the insert waits for it), the
//!   statement fails with a unique violation;
//! - a key expected absent that the group deletes or only read must still be absent;
//! - a key expected to hold a value is updated, deleted or share-locked with `WHERE value =
//!   expected`, and the row count must be the number of such keys (under READ COMMITTED an
//!   `UPDATE` re-reads a row another transaction changed before it got the lock).
//!
//! A failed check, a unique violation, a serialisation failure or a deadlock rolls the group back
//! as [`ConflictKind::Raced`]: the committer runs it again on fresh reads.
//!
//! The counters are not rows the group rewrites: the writer's own row in `cardvault_writers`
//! gets `groups + 1` and `records + records_delta`; the `G` and `C` values of the ops are ignored.

use std::{collections::HashMap, future::Future, pin::Pin};

use deadpool_postgres::ClientWrapper;
use futures_util::future::join_all;
use tokio_postgres::{Statement, types::ToSql};

use super::{
    errors::{Fail, from_pg},
    sql::{self, TableSql},
    tables::{Derived, OTHER, Route, TableId, route, tables},
};
use crate::{ConflictKind, StoreError, StoredRecord, Structure, Unavailable, engine::Group};

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
    fn push(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.keep_until.push(keep_until(&value));
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

/// The keep-until of a token record's value (`None`: it does not decode; the sweep skips it).
fn keep_until(value: &[u8]) -> Option<i64> {
    StoredRecord::decode(value).ok().map(|r| r.keep_until)
}

/// The group sorted by table and kind of write.
pub(crate) struct Plan {
    tables: Vec<(TableId, TableWrites)>,
    /// A new store format version (never in a group today; kept for completeness).
    version: Option<Vec<u8>>,
    records_delta: i64,
}

impl Plan {
    pub(crate) fn new(group: Group) -> Result<Self, StoreError> {
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
            let w = by_table.entry(t).or_default();
            match (check, value) {
                (None, Some(v)) => w.upsert.push(k, v),
                (None, None) => w.delete.push(k),
                (Some(None), Some(v)) => w.insert.push(k, v),
                (Some(None), None) => w.present.push(k),
                (Some(Some(e)), Some(v)) => {
                    w.update_if.keep_until.push(keep_until(&v));
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
        })
    }
}

/// A key under a derived prefix (`G`, `C`, `V`) longer than the prefix: no layer writes one.
fn is_stray(key: &[u8]) -> bool {
    key.len() > 1 && matches!(route(&key[..1]).0, Route::Derived(_))
}

/// How a statement's row count is judged.
#[derive(Clone, Copy)]
enum Expect {
    Any,
    Exactly(u64),
}

type Pending<'a> = Pin<Box<dyn Future<Output = Result<u64, tokio_postgres::Error>> + Send + 'a>>;

/// Runs `plan` as one transaction on `c` for writer `writer`.
pub(crate) async fn run(c: &ClientWrapper, plan: &Plan, writer: i64) -> Result<(), Fail> {
    // The statements, prepared (cached per connection; a fresh connection prepares them all in
    // one pipelined round trip).
    let mut texts: Vec<(&str, Expect, Params<'_>)> = Vec::new();
    for (t, w) in &plan.tables {
        let s: &TableSql = sql::of(*t);
        let ku = tables()[t.0].keep_until;
        if !w.upsert.keys.is_empty() {
            texts.push((&s.upsert, Expect::Any, rows(&w.upsert, ku)));
        }
        if !w.insert.keys.is_empty() {
            let n = w.insert.keys.len() as u64;
            texts.push((&s.insert, Expect::Exactly(n), rows(&w.insert, ku)));
        }
        if !w.delete.is_empty() {
            texts.push((&s.delete, Expect::Any, vec![&w.delete]));
        }
        if !w.update_if.keys.is_empty() {
            let u = &w.update_if;
            let mut p: Params<'_> = vec![&u.keys, &u.expected, &u.values];
            if ku {
                p.push(&u.keep_until);
            }
            texts.push((&s.update_if, Expect::Exactly(u.keys.len() as u64), p));
        }
        if !w.delete_if.keys.is_empty() {
            let d = &w.delete_if;
            texts.push((
                &s.delete_if,
                Expect::Exactly(d.keys.len() as u64),
                vec![&d.keys, &d.expected],
            ));
        }
        if !w.lock_if.keys.is_empty() {
            let l = &w.lock_if;
            texts.push((
                &s.lock_if,
                Expect::Exactly(l.keys.len() as u64),
                vec![&l.keys, &l.expected],
            ));
        }
        if !w.present.is_empty() {
            texts.push((&s.present, Expect::Exactly(0), vec![&w.present]));
        }
    }
    let version_name = sql::STORE_FORMAT;
    if let Some(v) = &plan.version {
        texts.push((sql::META_PUT, Expect::Any, vec![&version_name, v]));
    }
    texts.push((
        sql::WRITER_ADD,
        Expect::Exactly(1),
        vec![&plan.records_delta, &writer],
    ));
    let prepared = join_all(texts.iter().map(|(text, _, _)| c.prepare_cached(text))).await;
    let mut statements: Vec<Statement> = Vec::with_capacity(prepared.len());
    for p in prepared {
        // Nothing was sent but `PREPARE`s: a lost connection is retried.
        statements.push(p.map_err(|e| super::reads::fail(&e))?);
    }

    // BEGIN and every statement, pipelined.
    let mut pending: Vec<Pending<'_>> = Vec::with_capacity(statements.len() + 1);
    pending.push(Box::pin(async {
        c.batch_execute("BEGIN").await.map(|()| 0)
    }));
    for (stmt, (_, _, params)) in statements.iter().zip(&texts) {
        pending.push(Box::pin(c.execute(stmt, params)));
    }
    let results = join_all(pending).await;
    let mut refused = None;
    for (i, r) in results.iter().enumerate() {
        let expect = match i.checked_sub(1) {
            Some(j) => texts[j].1,
            None => Expect::Any,
        };
        match (r, expect) {
            (Err(e), _) => {
                refused = Some(match from_pg(e) {
                    // Nothing was committed (no COMMIT was sent): safe to run again elsewhere.
                    StoreError::Unavailable(Unavailable::ConnectionLost) => Fail::Retry,
                    error => Fail::Stop {
                        error,
                        discard: false,
                    },
                });
                break;
            }
            (Ok(n), Expect::Exactly(want)) if *n != want => {
                refused = Some(Fail::Stop {
                    error: if i == texts.len() {
                        // The writer's own row is gone: the database was changed under us.
                        StoreError::Corrupt(Structure::Generation)
                    } else {
                        StoreError::Conflict(ConflictKind::Raced)
                    },
                    discard: false,
                });
                break;
            }
            _ => {}
        }
    }
    if let Some(fail) = refused {
        if let Fail::Retry = fail {
            return Err(Fail::Retry);
        }
        return match c.batch_execute("ROLLBACK").await {
            Ok(()) => Err(fail),
            Err(e) => Err(match from_pg(&e) {
                StoreError::Unavailable(Unavailable::ConnectionLost) => Fail::Retry,
                error => Fail::Stop {
                    error,
                    discard: true,
                },
            }),
        };
    }
    match c.batch_execute("COMMIT").await {
        Ok(()) => Ok(()),
        // Lost while committing: the outcome is unknown, so it is not run again.
        Err(e) => Err(Fail::Stop {
            error: from_pg(&e),
            discard: true,
        }),
    }
}

type Params<'a> = Vec<&'a (dyn ToSql + Sync)>;

fn rows(r: &Rows, keep_until: bool) -> Params<'_> {
    let mut p: Params<'_> = vec![&r.keys, &r.values];
    if keep_until {
        p.push(&r.keep_until);
    }
    p
}
