//! The connection: one HTTP/1.1 keep-alive connection over a Unix socket, re-established
//! transparently when the daemon closed it while idle.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{
    Method, Request, StatusCode,
    client::conn::http1::{self, SendRequest},
    header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue},
};
use hyper_util::rt::TokioIo;
use serde::{Serialize, de::DeserializeOwned};
use tokio::{net::UnixStream, sync::Mutex};
use vault_wire::{ErrorBody, JSON_CONTENT_TYPE};

use crate::{ApiKey, ClientError};

/// A client of the cardvault daemon.
///
/// Each `Client` owns one HTTP/1.1 connection; clones share it (requests from clones take turns,
/// as HTTP/1.1 allows one request at a time per connection). For parallel requests create several
/// clients with [`connect`](Self::connect): connecting is one `connect(2)` on the socket.
#[derive(Clone)]
pub struct Client {
    shared: Arc<Shared>,
}

struct Shared {
    socket: PathBuf,
    auth: Option<HeaderValue>,
    conn: Mutex<Option<SendRequest<Full<Bytes>>>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("socket", &self.shared.socket)
            .field("authenticated", &self.shared.auth.is_some())
            .finish()
    }
}

impl Client {
    /// Connects to the daemon's socket. `key` authenticates every request (`None` is enough for
    /// [`health`](Self::health) only).
    pub async fn connect(
        socket: impl AsRef<Path>,
        key: Option<&ApiKey>,
    ) -> Result<Self, ClientError> {
        let auth = match key {
            Some(k) => {
                let mut v = HeaderValue::try_from(format!("Bearer {}", k.expose()))
                    .map_err(|_| ClientError::InvalidInput("api key is not a valid header"))?;
                v.set_sensitive(true);
                Some(v)
            }
            None => None,
        };
        let socket = socket.as_ref().to_path_buf();
        let sender = open(&socket).await?;
        Ok(Self {
            shared: Arc::new(Shared {
                socket,
                auth,
                conn: Mutex::new(Some(sender)),
            }),
        })
    }

    /// The socket this client talks to.
    pub fn socket(&self) -> &Path {
        &self.shared.socket
    }

    /// Sends one request and returns the status and the whole body.
    pub(crate) async fn exchange(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        extra: Option<(&'static str, HeaderValue)>,
    ) -> Result<(StatusCode, Bytes), ClientError> {
        let mut guard = self.shared.conn.lock().await;
        // The daemon closes idle connections; reconnect before sending rather than after a
        // failure, so a request is never sent twice.
        let stale = match guard.as_mut() {
            Some(s) => s.is_closed() || s.ready().await.is_err(),
            None => true,
        };
        if stale {
            *guard = None;
            *guard = Some(open(&self.shared.socket).await?);
        }
        let Some(sender) = guard.as_mut() else {
            return Err(ClientError::InvalidInput("no connection"));
        };

        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, "localhost")
            .header(ACCEPT, JSON_CONTENT_TYPE);
        if let Some(auth) = &self.shared.auth {
            req = req.header(AUTHORIZATION, auth.clone());
        }
        if let Some((name, value)) = extra {
            req = req.header(name, value);
        }
        let body = match body {
            Some(b) => {
                req = req.header(CONTENT_TYPE, JSON_CONTENT_TYPE);
                Full::new(Bytes::from(b))
            }
            None => Full::new(Bytes::new()),
        };
        let req = req
            .body(body)
            .map_err(|_| ClientError::InvalidInput("request does not form a valid URI"))?;
        let resp = match sender.send_request(req).await {
            Ok(r) => r,
            Err(e) => {
                *guard = None;
                return Err(e.into());
            }
        };
        let status = resp.status();
        let bytes = resp.into_body().collect().await?.to_bytes();
        Ok((status, bytes))
    }

    /// Sends a JSON request and decodes a JSON success response.
    pub(crate) async fn call<B: Serialize, R: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        what: &'static str,
    ) -> Result<R, ClientError> {
        let bytes = self.call_raw(method, path, body).await?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::decode(what, &e))
    }

    /// Sends a JSON request; returns the body of a success response undecoded.
    pub(crate) async fn call_raw<B: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<Bytes, ClientError> {
        self.call_raw_with(method, path, body, None).await
    }

    /// [`call_raw`](Self::call_raw) with one more request header.
    pub(crate) async fn call_raw_with<B: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        extra: Option<(&'static str, HeaderValue)>,
    ) -> Result<Bytes, ClientError> {
        let body = match body {
            Some(b) => Some(
                serde_json::to_vec(b)
                    .map_err(|_| ClientError::InvalidInput("request does not serialize"))?,
            ),
            None => None,
        };
        let (status, bytes) = self.exchange(method, path, body, extra).await?;
        if status.is_success() {
            Ok(bytes)
        } else {
            Err(ClientError::Http {
                status: status.as_u16(),
                body: serde_json::from_slice::<ErrorBody>(&bytes).ok(),
            })
        }
    }
}

async fn open(socket: &Path) -> Result<SendRequest<Full<Bytes>>, ClientError> {
    let stream = UnixStream::connect(socket)
        .await
        .map_err(ClientError::Connect)?;
    let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
    // The connection task ends when the daemon or every sender closes the connection; its
    // errors surface through the next request on `sender`.
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// Escapes a path segment: unreserved characters pass, everything else is percent-encoded, so a
/// caller-supplied token or id can never change the route.
pub(crate) fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_cannot_escape() {
        assert_eq!(segment("abc123"), "abc123");
        assert_eq!(segment("../admin"), "%2E%2E%2Fadmin");
        assert_eq!(segment("a b?c"), "a%20b%3Fc");
    }
}
