//! Reads: one prepared statement per point read; range scans visit the tables of the prefixes they
//! span in prefix-byte order (`tables::segments`), inside one read-only repeatable-read
//! transaction when they span more than one, so they see whole groups.

use std::ops::Bound;

use deadpool_postgres::ClientWrapper;
use tokio_postgres::types::ToSql;

use super::{
    errors::{Fail, from_pg},
    sql,
    tables::{Derived, OTHER, Route, TableId, route, segments},
};
use crate::{KeySpace, LookupId, StoreError, Structure, Unavailable};

/// Pairs of a scan.
pub(crate) type Pairs = Vec<(Vec<u8>, Vec<u8>)>;

/// A failed statement outside a transaction: a lost connection is retried (reads change
/// nothing), anything else is the answer.
pub(crate) fn fail(e: &tokio_postgres::Error) -> Fail {
    match from_pg(e) {
        StoreError::Unavailable(Unavailable::ConnectionLost) => Fail::Retry,
        error => Fail::stop(error),
    }
}

/// The committed value of `key`.
pub(crate) async fn get(c: &ClientWrapper, key: &[u8]) -> Result<Option<Vec<u8>>, Fail> {
    match route(key) {
        (Route::Table(t), k) => {
            let stmt = c
                .prepare_cached(&sql::of(t).get)
                .await
                .map_err(|e| fail(&e))?;
            let row = c.query_opt(&stmt, &[&k]).await.map_err(|e| fail(&e))?;
            match row {
                Some(r) => Ok(Some(r.try_get::<_, Vec<u8>>(0).map_err(|e| fail(&e))?)),
                None => Ok(None),
            }
        }
        (Route::Derived(d), _) => derived(c, d).await,
    }
}

/// The value of a key that is not a row: the store format, or a counter summed over writers.
async fn derived(c: &ClientWrapper, d: Derived) -> Result<Option<Vec<u8>>, Fail> {
    match d {
        Derived::Version => meta(c, sql::STORE_FORMAT).await,
        Derived::Generation | Derived::Count => {
            let (groups, records) = counters(c).await?;
            let (n, what) = match d {
                Derived::Generation => (groups, Structure::Generation),
                _ => (records, Structure::RecordCount),
            };
            let n = u64::try_from(n).map_err(|_| Fail::stop(StoreError::Corrupt(what)))?;
            Ok(Some(n.to_be_bytes().to_vec()))
        }
    }
}

/// Group commits and live records, summed over every writer.
pub(crate) async fn counters(c: &ClientWrapper) -> Result<(i64, i64), Fail> {
    let stmt = c
        .prepare_cached(sql::COUNTERS)
        .await
        .map_err(|e| fail(&e))?;
    let row = c.query_one(&stmt, &[]).await.map_err(|e| fail(&e))?;
    let groups: i64 = row.try_get(0).map_err(|e| fail(&e))?;
    let records: i64 = row.try_get(1).map_err(|e| fail(&e))?;
    Ok((groups, records))
}

/// One row of `cardvault_meta`.
pub(crate) async fn meta(c: &ClientWrapper, name: &str) -> Result<Option<Vec<u8>>, Fail> {
    let stmt = c
        .prepare_cached(sql::META_GET)
        .await
        .map_err(|e| fail(&e))?;
    let row = c.query_opt(&stmt, &[&name]).await.map_err(|e| fail(&e))?;
    match row {
        Some(r) => Ok(Some(r.try_get::<_, Vec<u8>>(0).map_err(|e| fail(&e))?)),
        None => Ok(None),
    }
}

/// The key header.
pub(crate) async fn header(c: &ClientWrapper) -> Result<Vec<u8>, Fail> {
    meta(c, sql::HEADER)
        .await?
        .ok_or(Fail::stop(StoreError::Corrupt(Structure::KeyHeaderFile)))
}

/// Up to `limit` pairs in `(start, end)` in key order. `in_snapshot`: the connection is already
/// in a repeatable-read transaction (a backup's snapshot); otherwise a scan over more than one
/// table opens one of its own.
pub(crate) async fn scan(
    c: &ClientWrapper,
    start: Bound<&[u8]>,
    end: Bound<&[u8]>,
    limit: usize,
    in_snapshot: bool,
) -> Result<Pairs, Fail> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let parts = plan(start, end);
    let own_tx = !in_snapshot && parts.len() > 1;
    if !own_tx {
        return scan_parts(c, &parts, limit).await;
    }
    c.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await
        .map_err(|e| in_tx(fail(&e)))?;
    let out = scan_parts(c, &parts, limit).await.map_err(in_tx)?;
    c.batch_execute("COMMIT")
        .await
        .map_err(|e| in_tx(fail(&e)))?;
    Ok(out)
}

/// A failure inside a transaction: the connection is not returned to the pool mid-transaction.
fn in_tx(f: Fail) -> Fail {
    match f {
        Fail::Retry => Fail::Retry,
        Fail::Stop { error, .. } => Fail::Stop {
            error,
            discard: true,
        },
    }
}

/// One table's part of a scan, or one derived key.
#[derive(Debug, PartialEq, Eq)]
enum Part {
    Rows {
        table: TableId,
        /// The prefix byte the table's keys are stored without (`None`: full keys).
        prefix: Option<u8>,
        lower: Bound<Vec<u8>>,
        upper: Bound<Vec<u8>>,
    },
    Derived(Derived, u8),
}

/// The parts of the key space `(start, end)` spans, in key order.
fn plan(start: Bound<&[u8]>, end: Bound<&[u8]>) -> Vec<Part> {
    let mut parts = Vec::new();
    for seg in segments() {
        let lo = [seg.lo];
        if let Bound::Included(s) | Bound::Excluded(s) = start
            && s.first().is_some_and(|&b| b > seg.hi)
        {
            continue;
        }
        match end {
            Bound::Included(e) if e < &lo[..] => break,
            Bound::Excluded(e) if e <= &lo[..] => break,
            _ => {}
        }
        match seg.route {
            Route::Derived(d) => {
                if in_range(&lo, start, end) {
                    parts.push(Part::Derived(d, seg.lo));
                }
            }
            Route::Table(table) if table == OTHER => {
                let lower = match start {
                    Bound::Included(s) if s >= &lo[..] => Bound::Included(s.to_vec()),
                    Bound::Excluded(s) if s >= &lo[..] => Bound::Excluded(s.to_vec()),
                    _ if seg.lo == 0 => Bound::Unbounded,
                    _ => Bound::Included(lo.to_vec()),
                };
                let upper = match seg.hi.checked_add(1) {
                    None => end.map(<[u8]>::to_vec),
                    Some(next) => match end {
                        Bound::Included(e) if e < &[next][..] => Bound::Included(e.to_vec()),
                        Bound::Excluded(e) if e < &[next][..] => Bound::Excluded(e.to_vec()),
                        _ => Bound::Excluded(vec![next]),
                    },
                };
                parts.push(Part::Rows {
                    table,
                    prefix: None,
                    lower,
                    upper,
                });
            }
            Route::Table(table) => {
                let within = |b: Bound<&[u8]>| match b {
                    Bound::Included(k) if k.first() == Some(&seg.lo) => {
                        Bound::Included(k[1..].to_vec())
                    }
                    Bound::Excluded(k) if k.first() == Some(&seg.lo) => {
                        Bound::Excluded(k[1..].to_vec())
                    }
                    _ => Bound::Unbounded,
                };
                parts.push(Part::Rows {
                    table,
                    prefix: Some(seg.lo),
                    lower: within(start),
                    upper: within(end),
                });
            }
        }
    }
    parts
}

fn in_range(key: &[u8], start: Bound<&[u8]>, end: Bound<&[u8]>) -> bool {
    let above = match start {
        Bound::Included(s) => key >= s,
        Bound::Excluded(s) => key > s,
        Bound::Unbounded => true,
    };
    let below = match end {
        Bound::Included(e) => key <= e,
        Bound::Excluded(e) => key < e,
        Bound::Unbounded => true,
    };
    above && below
}

async fn scan_parts(c: &ClientWrapper, parts: &[Part], limit: usize) -> Result<Pairs, Fail> {
    let mut out = Vec::new();
    for part in parts {
        match part {
            Part::Derived(d, byte) => {
                if let Some(v) = derived(c, *d).await? {
                    out.push((vec![*byte], v));
                }
            }
            Part::Rows {
                table,
                prefix,
                lower,
                upper,
            } => {
                let text = sql::scan(
                    *table,
                    lower.as_ref().map(|_| ()),
                    upper.as_ref().map(|_| ()),
                );
                let stmt = c.prepare_cached(&text).await.map_err(|e| fail(&e))?;
                let left = i64::try_from(limit - out.len()).unwrap_or(i64::MAX);
                let mut params: Vec<&(dyn ToSql + Sync)> = Vec::with_capacity(3);
                for b in [lower, upper] {
                    if let Bound::Included(k) | Bound::Excluded(k) = b {
                        params.push(k);
                    }
                }
                params.push(&left);
                let rows = c.query(&stmt, &params).await.map_err(|e| fail(&e))?;
                for row in rows {
                    let k: Vec<u8> = row.try_get(0).map_err(|e| fail(&e))?;
                    let v: Vec<u8> = row.try_get(1).map_err(|e| fail(&e))?;
                    let key = match prefix {
                        Some(p) => {
                            let mut full = Vec::with_capacity(k.len() + 1);
                            full.push(*p);
                            full.extend_from_slice(&k);
                            full
                        }
                        None => k,
                    };
                    out.push((key, v));
                }
            }
        }
        if out.len() >= limit {
            out.truncate(limit);
            break;
        }
    }
    Ok(out)
}

/// Token records due at `now` after `after`, from the keep-until index: up to `max` of them
/// (0: all), and where to continue.
#[allow(clippy::type_complexity)]
pub(crate) async fn expired(
    c: &ClientWrapper,
    after: Option<LookupId>,
    now: i64,
    max: usize,
) -> Result<(Vec<LookupId>, Option<LookupId>), Fail> {
    let limit = if max == 0 {
        i64::MAX
    } else {
        i64::try_from(max).unwrap_or(i64::MAX)
    };
    let rows = match after {
        Some(id) => {
            let stmt = c
                .prepare_cached(sql::EXPIRED_AFTER)
                .await
                .map_err(|e| fail(&e))?;
            let after = &id.0[..];
            c.query(&stmt, &[&now, &after, &limit])
                .await
                .map_err(|e| fail(&e))?
        }
        None => {
            let stmt = c.prepare_cached(sql::EXPIRED).await.map_err(|e| fail(&e))?;
            c.query(&stmt, &[&now, &limit])
                .await
                .map_err(|e| fail(&e))?
        }
    };
    let mut due = Vec::with_capacity(rows.len());
    for row in rows {
        let k: Vec<u8> = row.try_get(0).map_err(|e| fail(&e))?;
        let id: [u8; 16] = k
            .as_slice()
            .try_into()
            .map_err(|_| Fail::stop(StoreError::Corrupt(Structure::Key(KeySpace::Record))))?;
        due.push(LookupId(id));
    }
    let next = if max != 0 && due.len() == max {
        due.last().copied()
    } else {
        None
    };
    Ok((due, next))
}

/// The table stored under `prefix` (for tests of the plan).
#[cfg(test)]
fn table_of(prefix: u8) -> TableId {
    match route(&[prefix, 0]) {
        (Route::Table(t), _) => t,
        (Route::Derived(_), _) => OTHER,
    }
}

#[cfg(test)]
mod tests {
    use std::ops::Bound;

    use super::{Part, plan, table_of};
    use crate::pg::tables::{Derived, OTHER};

    #[test]
    fn a_scan_within_one_prefix_is_one_statement_on_its_table() {
        let parts = plan(Bound::Included(b"T"), Bound::Excluded(b"U"));
        assert_eq!(
            parts,
            vec![Part::Rows {
                table: table_of(b'T'),
                prefix: Some(b'T'),
                lower: Bound::Included(Vec::new()),
                upper: Bound::Unbounded,
            }]
        );
        let parts = plan(Bound::Excluded(b"Rabc"), Bound::Excluded(b"S"));
        assert_eq!(
            parts,
            vec![Part::Rows {
                table: table_of(b'R'),
                prefix: Some(b'R'),
                lower: Bound::Excluded(b"abc".to_vec()),
                upper: Bound::Unbounded,
            }]
        );
    }

    #[test]
    fn a_scan_across_prefixes_visits_them_in_byte_order() {
        let parts = plan(Bound::Included(b"S\xff"), Bound::Included(b"U\0"));
        assert_eq!(
            parts,
            vec![
                Part::Rows {
                    table: table_of(b'S'),
                    prefix: Some(b'S'),
                    lower: Bound::Included(vec![0xff]),
                    upper: Bound::Unbounded,
                },
                Part::Rows {
                    table: table_of(b'T'),
                    prefix: Some(b'T'),
                    lower: Bound::Unbounded,
                    upper: Bound::Unbounded,
                },
                Part::Rows {
                    table: OTHER,
                    prefix: None,
                    lower: Bound::Included(b"U".to_vec()),
                    upper: Bound::Included(b"U\0".to_vec()),
                },
            ]
        );
        let everything = plan(Bound::Unbounded, Bound::Unbounded);
        assert!(everything.contains(&Part::Derived(Derived::Generation, b'G')));
        assert!(everything.contains(&Part::Derived(Derived::Count, b'C')));
        assert!(everything.contains(&Part::Derived(Derived::Version, b'V')));
        let from_g = plan(Bound::Excluded(b"G"), Bound::Excluded(b"I"));
        assert!(!from_g.contains(&Part::Derived(Derived::Generation, b'G')));
    }
}
