//! A test daemon: a vault with merchants and keys, the daemon on a Unix socket in a temp dir,
//! and a tiny HTTP/1.1 client writing raw bytes. The vault is on the engine
//! `CARDVAULT_TEST_ENGINE` names ([`crate::engine`]): in the temp dir on sled (the default), in
//! a database of its own on PostgreSQL, dropped with the daemon.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::UnixStream,
    sync::oneshot,
    task::JoinHandle,
};
use vault_daemon::{DaemonConfig, DaemonError, bind_unix, serve};
use vault_gateway::Gateway;
use vault_service::{KeySource, Location, ManualClock, MerchantId, Scope, Scopes, Vault};

pub use crate::clock::T0;
use crate::engine::{Engine, VaultHome};

/// A tokenize body (the seed's example 003).
pub const SEED_003: &str = r#"{"type":"card","card":{"pan":"4242424242424242","expiration_date":"2802"},"metadata":{"description":"Card description - optional value"}}"#;

pub use crate::vault::options;

/// The test daemon's vault passphrase.
pub fn passphrase() -> KeySource {
    crate::vault::passphrase("daemon test passphrase")
}

/// API keys of the test merchants.
pub struct Keys {
    /// Merchant 890490: tokenize only.
    pub tokenize: String,
    /// Merchant 890490: reveal only.
    pub reveal: String,
    /// Merchant 890490: tokenize and reveal.
    pub both: String,
    /// Merchant 890490: admin only.
    pub admin: String,
    /// Merchant 777: tokenize and reveal.
    pub other: String,
}

/// A daemon serving a test vault on a Unix socket; stopped when dropped (told to stop, its task
/// aborted) or by [`TestDaemon::stop`].
///
/// Fields drop in order: the server and the vault before the vault's home (on PostgreSQL, its
/// database is dropped last).
pub struct TestDaemon {
    /// The temp dir holding the socket (and, on sled, the vault).
    pub dir: tempfile::TempDir,
    /// The socket.
    pub sock: PathBuf,
    /// The vault the daemon serves, with the gateway it serves over it (the one holding the
    /// pending payments' CVVs).
    pub vault: Gateway,
    /// The vault's clock.
    pub clock: Arc<ManualClock>,
    /// The test merchants' API keys.
    pub keys: Keys,
    server: Server,
    /// Where the vault lives: `dir/vault` on sled, a test database on PostgreSQL.
    pub home: VaultHome,
}

/// `vault_daemon::serve` on a Unix socket in a task, until [`Server::stop`].
pub struct Server {
    stop: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<Result<(), DaemonError>>>,
}

impl Server {
    /// Binds `sock` (mode `0600`) and serves `vault` on it with `config`.
    pub async fn start(vault: &Gateway, sock: &Path, config: DaemonConfig) -> Self {
        let listener = bind_unix(sock, 0o600).await.expect("bind the test socket");
        let (stop, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(serve(listener, vault.clone(), config, async {
            let _ = rx.await;
        }));
        Self {
            stop: Some(stop),
            handle: Some(handle),
        }
    }

    /// Stops the daemon and waits for `serve` to return.
    pub async fn stop(&mut self) -> Result<(), DaemonError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.handle.take() {
            Some(h) => h.await.expect("the daemon task"),
            None => Ok(()),
        }
    }
}

impl Drop for Server {
    /// Tells `serve` to stop and aborts its task, so its handle on the vault goes soon (it would
    /// otherwise live until the runtime shuts down, past the end of the test's vault home).
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(h) = self.handle.take() {
            h.abort();
        }
    }
}

impl TestDaemon {
    /// Starts a daemon with the default config.
    pub async fn start() -> Self {
        Self::start_with(DaemonConfig::default()).await
    }

    /// Starts a daemon with `config`, its vault on the engine `CARDVAULT_TEST_ENGINE` names.
    ///
    /// # Panics
    ///
    /// On an unknown engine, or on PostgreSQL if the test server cannot be reached.
    pub async fn start_with(config: DaemonConfig) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(T0));
        let home = VaultHome::new(dir.path());
        let vault = create_vault(&home, clock.clone());
        let keys = setup(&vault);
        let vault = Gateway::new(vault);
        let sock = dir.path().join("run").join("cardvault.sock");
        let server = Server::start(&vault, &sock, config).await;
        Self {
            dir,
            sock,
            vault,
            clock,
            keys,
            server,
            home,
        }
    }

    /// Stops the daemon and waits for `serve` to return.
    pub async fn stop(&mut self) -> Result<(), DaemonError> {
        self.server.stop().await
    }

    /// Where the vault lives (to open it again after [`TestDaemon::stop`]).
    pub fn location(&self) -> &Location {
        self.home.location()
    }

    /// The engine the vault is on.
    pub fn engine(&self) -> Engine {
        self.home.engine()
    }

    /// One request on a fresh connection (`Connection: close`), a JSON body if any.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<&str>,
    ) -> Resp {
        raw(&self.sock, &request(method, path, key, body))
            .await
            .expect("a response")
    }

    /// `POST /v2/tokens` with `key` and `body`.
    pub async fn tokenize(&self, key: &str, body: &str) -> Resp {
        self.send("POST", "/v2/tokens", Some(key), Some(body)).await
    }
}

/// A new test vault (passphrase [`passphrase`], options [`options`]) in `home`.
///
/// # Panics
///
/// If it cannot be created.
pub fn create_vault(home: &VaultHome, clock: Arc<ManualClock>) -> Vault {
    Vault::create_at(home.location(), &passphrase(), options(clock))
        .unwrap_or_else(|e| panic!("create the test vault at {}: {e}", home.location()))
}

/// The vault of [`create_vault`] opened again.
///
/// # Panics
///
/// If it cannot be opened.
pub fn open_vault(location: &Location, clock: Arc<ManualClock>) -> Vault {
    Vault::open_at(location, &passphrase(), options(clock))
        .unwrap_or_else(|e| panic!("open the test vault at {location}: {e}"))
}

/// Merchants 890490 and 777 and their keys.
pub fn setup(vault: &Vault) -> Keys {
    let m = MerchantId::new(890_490).unwrap();
    let o = MerchantId::new(777).unwrap();
    vault.add_merchant(m, "Test merchant").unwrap();
    vault.add_merchant(o, "Other merchant").unwrap();
    let key = |mid, scopes: &[Scope]| {
        vault
            .create_api_key(mid, Scopes::of(scopes), "test")
            .unwrap()
            .expose()
            .to_owned()
    };
    Keys {
        tokenize: key(m, &[Scope::Tokenize]),
        reveal: key(m, &[Scope::Reveal]),
        both: key(m, &[Scope::Tokenize, Scope::Reveal]),
        admin: vault
            .create_operator_key(Scopes::of(&[Scope::Admin]), "test")
            .unwrap()
            .expose()
            .to_owned(),
        other: key(o, &[Scope::Tokenize, Scope::Reveal]),
    }
}

/// A parsed response.
#[derive(Debug)]
pub struct Resp {
    /// The status code.
    pub status: u16,
    /// The headers, in order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Resp {
    /// The body as JSON (panics if it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    /// The first header named `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The `(field, code)` pairs of an error body.
    pub fn error_fields(&self) -> Vec<(String, String)> {
        let v = self.json();
        v["errors"]
            .as_array()
            .unwrap_or_else(|| panic!("no errors in {v}"))
            .iter()
            .map(|e| {
                (
                    e["field"].as_str().unwrap().to_owned(),
                    e["code"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }
}

/// The bytes of one HTTP/1.1 request on a fresh connection (`Connection: close`), with a bearer
/// `key` and a JSON `body` if given.
pub fn request(method: &str, path: &str, key: Option<&str>, body: Option<&str>) -> Vec<u8> {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: cardvault\r\nConnection: close\r\n");
    if let Some(k) = key {
        head.push_str(&format!("Authorization: Bearer {k}\r\n"));
    }
    if let Some(b) = body {
        head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body.unwrap_or("").as_bytes());
    bytes
}

/// Writes `bytes` on a fresh connection, half-closes, and reads the whole answer. `None` when
/// the daemon closed the connection without a parsable response.
pub async fn raw(sock: &Path, bytes: &[u8]) -> Option<Resp> {
    exchange(UnixStream::connect(sock).await.expect("connect"), bytes).await
}

async fn exchange(mut s: UnixStream, bytes: &[u8]) -> Option<Resp> {
    // The daemon may close early (413, bad framing): ignore write errors.
    let _ = s.write_all(bytes).await;
    let _ = s.shutdown().await;
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut out)).await;
    match read {
        Ok(Ok(_)) => {}
        // Reset after a partial answer: keep what arrived.
        Ok(Err(_)) => {}
        Err(_) => panic!("no answer within 20 s"),
    }
    parse(&out)
}

/// Parses one HTTP/1.1 response (Content-Length or to the end).
pub fn parse(out: &[u8]) -> Option<Resp> {
    let end = out.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&out[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let rest = &out[end + 4..];
    let len = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(rest.len());
    Some(Resp {
        status,
        headers,
        body: rest.get(..len)?.to_vec(),
    })
}

/// Like [`raw`], `None` also when the connection is refused (daemon stopped).
pub async fn try_raw(sock: &Path, bytes: &[u8]) -> Option<Resp> {
    exchange(UnixStream::connect(sock).await.ok()?, bytes).await
}

/// A full tokenize request, `Connection: close`.
pub fn tokenize_request(key: &str, body: &str) -> Vec<u8> {
    format!(
        "POST /v2/tokens HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}
