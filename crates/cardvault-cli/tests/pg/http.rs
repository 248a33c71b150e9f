//! One HTTP/1.1 exchange with the daemon over its Unix socket (`Connection: close`), blocking,
//! with the whole response: status, headers, body and how long it took. Raw rather than through
//! `vault_client`, so that the tests see every header (`Retry-After`) and every status, and so
//! that any number of threads can send at once.
// Each test binary uses a subset (rustc lints, not test allowances).
#![allow(dead_code, unreachable_pub)]

use std::{
    io::{Read, Write},
    os::unix::net::UnixStream,
    path::Path,
    time::{Duration, Instant},
};

/// How long a request may go unanswered before the exchange counts as a hang (far above every
/// bound the daemon is configured with in these tests).
pub const HANG: Duration = Duration::from_secs(45);

/// A request's body and its content type.
pub enum Body<'a> {
    None,
    Json(&'a str),
    Form(&'a str),
}

/// A whole response.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// From sending the request to the end of the response.
    pub elapsed: Duration,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|_| {
            panic!(
                "a {} answer that is not JSON: {:?}",
                self.status,
                String::from_utf8_lossy(&self.body[..self.body.len().min(200)])
            )
        })
    }

    /// The `code` of an error answer: the first `errors[].code` of the token and admin APIs, or
    /// `/health`'s `code`.
    pub fn code(&self) -> Option<String> {
        let v: serde_json::Value = serde_json::from_slice(&self.body).ok()?;
        v["errors"][0]["code"]
            .as_str()
            .or_else(|| v["code"].as_str())
            .map(str::to_owned)
    }

    /// A one-line description for failure messages (the body only for errors: a success may
    /// hold a card).
    pub fn describe(&self) -> String {
        let body = if self.status >= 400 {
            String::from_utf8_lossy(&self.body[..self.body.len().min(300)]).into_owned()
        } else {
            String::from("<success body not shown>")
        };
        format!(
            "{} in {:.2} s (retry-after {:?}): {body}",
            self.status,
            self.elapsed.as_secs_f64(),
            self.header("retry-after")
        )
    }
}

/// Sends one request; an error means no complete answer within [`HANG`] (or no daemon).
pub fn send(
    socket: &Path,
    method: &str,
    path: &str,
    auth: Option<&str>,
    extra_headers: &[(&str, &str)],
    body: Body<'_>,
) -> std::io::Result<Reply> {
    let started = Instant::now();
    let mut s = UnixStream::connect(socket)?;
    s.set_read_timeout(Some(HANG))?;
    s.set_write_timeout(Some(HANG))?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    if let Some(a) = auth {
        req.push_str(&format!("Authorization: Bearer {a}\r\n"));
    }
    for (n, v) in extra_headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    let (content_type, text) = match body {
        Body::None => (None, ""),
        Body::Json(t) => (Some("application/json"), t),
        Body::Form(t) => (Some("application/x-www-form-urlencoded"), t),
    };
    if let Some(ct) = content_type {
        req.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    if content_type.is_some() || method != "GET" {
        req.push_str(&format!("Content-Length: {}\r\n", text.len()));
    }
    req.push_str("\r\n");
    req.push_str(text);
    s.write_all(req.as_bytes())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let elapsed = started.elapsed();
    parse(&raw, elapsed).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("not an HTTP response ({} bytes)", raw.len()),
        )
    })
}

/// [`send`] that must get an answer.
pub fn call(socket: &Path, method: &str, path: &str, auth: Option<&str>, body: Body<'_>) -> Reply {
    send(socket, method, path, auth, &[], body)
        .unwrap_or_else(|e| panic!("{method} {path}: no answer: {e}"))
}

fn parse(raw: &[u8], elapsed: Duration) -> Option<Reply> {
    let head_end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..head_end]).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = raw[head_end + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    if chunked {
        body = dechunk(&body)?;
    }
    Some(Reply {
        status,
        headers,
        body,
        elapsed,
    })
}

fn dechunk(mut b: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = b.windows(2).position(|w| w == b"\r\n")?;
        let size = usize::from_str_radix(std::str::from_utf8(&b[..eol]).ok()?.trim(), 16).ok()?;
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(b.get(eol + 2..eol + 2 + size)?);
        b = b.get(eol + 4 + size..)?;
    }
}
