//! Throw-away PostgreSQL databases for the PostgreSQL engine's tests (feature `postgres`).
//!
//! The server is `CARDVAULT_TEST_PG_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`,
//! trust authentication). Each [`TestDatabase`] creates a database of its own with a unique name
//! and drops it (`WITH (FORCE)`, ending any session still on it) when dropped. A server that
//! cannot be reached fails the test with a message saying so: these tests never skip.
//!
//! Tests may run inside a tokio runtime, so every administrative statement runs on a thread of
//! its own with a runtime of its own.

use std::{
    sync::atomic::{AtomicU32, Ordering},
    time::Duration,
};

use rand::RngExt;

/// The server's URL when `CARDVAULT_TEST_PG_URL` is not set.
pub const DEFAULT_SERVER_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A database created for one test and dropped with it.
#[derive(Debug)]
pub struct TestDatabase {
    server: String,
    name: String,
}

impl TestDatabase {
    /// Creates `cardvault_test_<pid>_<counter>_<random>` on the test server.
    ///
    /// # Panics
    ///
    /// If the server cannot be reached or the database cannot be created.
    pub fn new() -> Self {
        let server = server_url();
        let name = format!(
            "cardvault_test_{}_{}_{:08x}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            rand::rng().random::<u32>()
        );
        run_sql(&server, &format!("CREATE DATABASE {name}"));
        Self { server, name }
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The database's URL: the server's, with this database and any extra query `params`
    /// (`"pool_max_size=4&statement_timeout_ms=500"`; empty for none).
    pub fn url_with(&self, params: &str) -> String {
        let base = with_database(&self.server, &self.name);
        match (params.is_empty(), base.contains('?')) {
            (true, _) => base,
            (false, true) => format!("{base}&{params}"),
            (false, false) => format!("{base}?{params}"),
        }
    }

    /// The database's URL.
    pub fn url(&self) -> String {
        self.url_with("")
    }

    /// The database's URL for another role `user` (trust authentication: no password).
    pub fn url_as(&self, user: &str) -> String {
        let url = self.url();
        match (url.find("://"), url.rfind('@')) {
            (Some(s), Some(at)) if at > s => format!("{}{user}{}", &url[..s + 3], &url[at..]),
            _ => url,
        }
    }

    /// Runs `sql` in this database as role `user`.
    ///
    /// # Panics
    ///
    /// If it fails.
    pub fn execute_as(&self, user: &str, sql: &str) {
        run_sql(&self.url_as(user), sql);
    }

    /// Runs `sql` (one or more statements) in this database, as the test server's user.
    ///
    /// # Panics
    ///
    /// If it fails.
    pub fn execute(&self, sql: &str) {
        run_sql(&self.url(), sql);
    }

    /// The first column of the first row of `sql`, run from the server's administrative
    /// database (`None`: no row, or NULL).
    ///
    /// # Panics
    ///
    /// If the query fails.
    pub fn admin_value(&self, sql: &str) -> Option<String> {
        first_value(&self.server, sql)
    }

    /// The first column of the first row of `sql`, run in this database (`None`: no row, or
    /// NULL).
    ///
    /// # Panics
    ///
    /// If the query fails.
    pub fn value(&self, sql: &str) -> Option<String> {
        first_value(&self.url(), sql)
    }

    /// Takes `LOCK TABLE table IN ACCESS EXCLUSIVE MODE` in this database and holds it for
    /// `hold` on a thread of its own; returns once the lock is held, with the thread to join.
    ///
    /// # Panics
    ///
    /// If the lock cannot be taken.
    pub fn lock_table_for(&self, table: &str, hold: Duration) -> std::thread::JoinHandle<()> {
        let (url, table) = (self.url(), table.to_owned());
        let (locked_tx, locked_rx) = std::sync::mpsc::channel();
        let holder = std::thread::spawn(move || {
            with_client(&url, async |client| {
                client
                    .batch_execute(&format!(
                        "BEGIN; LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"
                    ))
                    .await
                    .expect("lock");
                let _ = locked_tx.send(());
                tokio::time::sleep(hold).await;
                client.batch_execute("COMMIT").await.expect("unlock");
            });
        });
        locked_rx.recv().expect("the lock holder failed");
        holder
    }

    /// Ends every session connected to this database (`pg_terminate_backend`), from the server's
    /// administrative database; returns how many were ended.
    ///
    /// # Panics
    ///
    /// If the statement fails.
    pub fn terminate_sessions(&self) -> u64 {
        let sql = format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = '{}' AND pid <> pg_backend_pid()",
            self.name
        );
        query_count(&self.server, &sql)
    }
}

impl Default for TestDatabase {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        if std::thread::panicking() {
            // Do not turn a failing test into an abort; the database is left for inspection.
            let _ = try_sql(&self.server, &sql);
        } else {
            run_sql(&self.server, &sql);
        }
    }
}

/// Runs `sql` in the test server's administrative database (roles, which belong to the whole
/// server).
///
/// # Panics
///
/// If it fails.
pub fn execute_on_server(sql: &str) {
    run_sql(&server_url(), sql);
}

/// [`execute_on_server`], the failure returned (for clean-ups that must not panic).
///
/// # Errors
///
/// What the server said, or why it could not be reached.
pub fn try_execute_on_server(sql: &str) -> Result<(), String> {
    try_sql(&server_url(), sql)
}

/// The test server's URL.
pub fn server_url() -> String {
    std::env::var("CARDVAULT_TEST_PG_URL").unwrap_or_else(|_| DEFAULT_SERVER_URL.to_owned())
}

/// `url` with its database replaced by `db`.
fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let path = base[authority_start..]
        .find('/')
        .map_or(base.len(), |i| authority_start + i);
    let mut out = format!("{}/{db}", &base[..path]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// The first column of the first row of `sql` on `url` (`None`: no row, or NULL); panics if the
/// query fails.
fn first_value(url: &str, sql: &str) -> Option<String> {
    let (url, sql) = (url.to_owned(), sql.to_owned());
    std::thread::spawn(move || {
        with_client(&url, async |client| {
            let rows = client.simple_query(&sql).await.expect("query");
            rows.iter().find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => Some(r.get(0).map(str::to_owned)),
                _ => None,
            })?
        })
    })
    .join()
    .expect("the query's thread panicked")
}

/// Runs `f` with a client connected to `url` (without TLS), on a runtime of its own: call it on
/// a thread that runs none. Panics if the server cannot be reached.
fn with_client<T>(url: &str, f: impl AsyncFnOnce(&tokio_postgres::Client) -> T) -> T {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .expect("connect to the PostgreSQL test server");
        let task = tokio::spawn(connection);
        let out = f(&client).await;
        drop(client);
        let _ = task.await;
        out
    })
}

fn run_sql(url: &str, sql: &str) {
    if let Err(e) = try_sql(url, sql) {
        panic!(
            "the PostgreSQL test server ({}; set CARDVAULT_TEST_PG_URL) refused `{sql}`: {e}",
            redact(url)
        );
    }
}

fn query_count(url: &str, sql: &str) -> u64 {
    match on_own_thread(url, sql, true) {
        Ok(n) => n,
        Err(e) => panic!(
            "the PostgreSQL test server ({}) refused `{sql}`: {e}",
            redact(url)
        ),
    }
}

fn try_sql(url: &str, sql: &str) -> Result<(), String> {
    on_own_thread(url, sql, false).map(drop)
}

/// Connects to `url` and runs `sql` on a new thread with its own runtime; returns the rows of a
/// query (`rows`) or 0.
fn on_own_thread(url: &str, sql: &str, rows: bool) -> Result<u64, String> {
    let (url, sql) = (url.to_owned(), sql.to_owned());
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        rt.block_on(async move {
            let connect = tokio_postgres::connect(&url, tokio_postgres::NoTls);
            let (client, connection) = tokio::time::timeout(Duration::from_secs(10), connect)
                .await
                .map_err(|_| {
                    format!(
                        "cannot connect to the PostgreSQL test server at {} within 10 s",
                        redact(&url)
                    )
                })?
                .map_err(|e| {
                    format!(
                        "cannot connect to the PostgreSQL test server at {}: {}",
                        redact(&url),
                        describe(&e)
                    )
                })?;
            let task = tokio::spawn(connection);
            let n = if rows {
                client
                    .simple_query(&sql)
                    .await
                    .map_err(|e| describe(&e))?
                    .iter()
                    .filter(|m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(_)))
                    .count() as u64
            } else {
                client.batch_execute(&sql).await.map_err(|e| describe(&e))?;
                0
            };
            drop(client);
            let _ = task.await;
            Ok(n)
        })
    })
    .join()
    .unwrap_or_else(|_| Err("the administrative thread panicked".to_owned()))
}

/// `e` with what the server said (`tokio_postgres::Error` shows only "db error" for a refusal;
/// "could not extend file ...: No space left on device" is in its source).
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} {}: {}", db.severity(), db.code().code(), db.message()),
        None => match std::error::Error::source(e) {
            Some(source) => format!("{e}: {source}"),
            None => e.to_string(),
        },
    }
}

/// The URL without a password (for messages).
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let user = url[s + 3..at].split(':').next().unwrap_or("");
            format!("{}://{user}@{}", &url[..s], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::{TestDatabase, redact, with_database};

    #[test]
    #[should_panic(expected = "ERROR 22012: division by zero")]
    fn a_refusal_says_what_the_server_said() {
        TestDatabase::new().execute("SELECT 1/0");
    }

    #[test]
    fn the_database_is_replaced_and_passwords_are_not_shown() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "t1"),
            "postgres://postgres@127.0.0.1:5432/t1"
        );
        assert_eq!(
            with_database("postgres://u@h?sslmode=disable", "t1"),
            "postgres://u@h/t1?sslmode=disable"
        );
        assert_eq!(redact("postgres://u:pw@h/d"), "postgres://u@h/d");
    }
}
