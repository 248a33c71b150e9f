//! A TCP proxy between the daemon and the PostgreSQL server, which the test can cut and restore:
//! the network between them failing, without touching the server.
//!
//! Plain threads: one accepting, two per proxied connection (one each way). [`Proxy::cut`]
//! shuts down every proxied connection (both sides) and then either refuses new ones (accepted
//! and closed at once: the client reads end-of-file) or blackholes them (accepted and never
//! answered: the client waits for its own timeout); [`Proxy::restore`] forwards new connections
//! again.
#![allow(dead_code, unreachable_pub)]

use std::{
    io::{Read, Write},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

/// What a cut does to new connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cut {
    /// Accepted and closed at once.
    Refuse,
    /// Accepted and held, never forwarded nor answered, until [`Proxy::restore`].
    Blackhole,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Forward,
    Cut(Cut),
}

/// One proxied connection: both sockets (clones), and whether its pumps have ended.
struct Link {
    client: TcpStream,
    server: TcpStream,
    done: Arc<AtomicBool>,
}

impl Link {
    fn close(&self) {
        let _ = self.client.shutdown(Shutdown::Both);
        let _ = self.server.shutdown(Shutdown::Both);
    }
}

#[derive(Default)]
struct Links {
    live: Vec<Link>,
    /// Connections accepted while blackholed.
    held: Vec<TcpStream>,
}

struct Shared {
    upstream: SocketAddr,
    mode: Mutex<Mode>,
    links: Mutex<Links>,
    stop: AtomicBool,
}

/// The proxy; stops (and closes everything) when dropped.
pub struct Proxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl Proxy {
    /// Listens on an ephemeral port of 127.0.0.1 and forwards to `upstream`.
    pub fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            upstream,
            mode: Mutex::new(Mode::Forward),
            links: Mutex::default(),
            stop: AtomicBool::new(false),
        });
        let acceptor = std::thread::spawn({
            let shared = shared.clone();
            move || accept_loop(&listener, &shared)
        });
        Self {
            addr,
            shared,
            acceptor: Some(acceptor),
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Closes every proxied connection and treats new ones as `how` says; returns how many
    /// connections were closed.
    pub fn cut(&self, how: Cut) -> usize {
        *self.shared.mode.lock().unwrap() = Mode::Cut(how);
        let mut links = self.shared.links.lock().unwrap();
        let n = links
            .live
            .iter()
            .filter(|l| !l.done.load(Ordering::Acquire))
            .count();
        for l in links.live.drain(..) {
            l.close();
        }
        n
    }

    /// Forwards new connections again (and closes the ones held by a blackhole).
    pub fn restore(&self) {
        *self.shared.mode.lock().unwrap() = Mode::Forward;
        let mut links = self.shared.links.lock().unwrap();
        for s in links.held.drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    /// Proxied connections open now.
    pub fn open_connections(&self) -> usize {
        let links = self.shared.links.lock().unwrap();
        links
            .live
            .iter()
            .filter(|l| !l.done.load(Ordering::Acquire))
            .count()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        // Wake the acceptor.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(a) = self.acceptor.take() {
            let _ = a.join();
        }
        let mut links = self.shared.links.lock().unwrap();
        for l in links.live.drain(..) {
            l.close();
        }
        for s in links.held.drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    for conn in listener.incoming() {
        if shared.stop.load(Ordering::Acquire) {
            return;
        }
        let Ok(client) = conn else { continue };
        let mode = *shared.mode.lock().unwrap();
        match mode {
            Mode::Cut(Cut::Refuse) => drop(client),
            Mode::Cut(Cut::Blackhole) => shared.links.lock().unwrap().held.push(client),
            Mode::Forward => forward(client, shared),
        }
    }
}

fn forward(client: TcpStream, shared: &Arc<Shared>) {
    let Ok(server) = TcpStream::connect_timeout(&shared.upstream, Duration::from_secs(2)) else {
        return; // The client sees its connection closed.
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let done = Arc::new(AtomicBool::new(false));
    let (Ok(c2), Ok(s2), Ok(c3), Ok(s3)) = (
        client.try_clone(),
        server.try_clone(),
        client.try_clone(),
        server.try_clone(),
    ) else {
        return;
    };
    {
        let mut links = shared.links.lock().unwrap();
        links.live.retain(|l| !l.done.load(Ordering::Acquire));
        // A cut that came in while connecting: this connection is closed too.
        if *shared.mode.lock().unwrap() != Mode::Forward {
            return;
        }
        links.live.push(Link {
            client,
            server,
            done: done.clone(),
        });
    }
    std::thread::spawn({
        let done = done.clone();
        move || pump(c2, s2, &done)
    });
    std::thread::spawn(move || pump(s3, c3, &done));
}

/// Copies `from` to `to` until either ends, then closes both.
fn pump(mut from: TcpStream, mut to: TcpStream, done: &AtomicBool) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    done.store(true, Ordering::Release);
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}
