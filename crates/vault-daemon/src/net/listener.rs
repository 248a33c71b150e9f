//! Where the daemon listens: a Unix socket in a private directory (the default) or a loopback
//! TCP port.

use std::{
    fs,
    io::{self, ErrorKind},
    net::SocketAddr,
    os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt},
    path::{Path, PathBuf},
};

use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};

use crate::DaemonError;

/// A bound listening socket, ready for [`serve`](crate::serve).
#[derive(Debug)]
pub struct Listener {
    inner: Inner,
}

#[derive(Debug)]
enum Inner {
    Unix {
        listener: UnixListener,
        /// Removed when serving ends, if it is still the socket we created.
        path: PathBuf,
        ino: u64,
        /// Owner of the socket file: the daemon's own uid.
        uid: u32,
    },
    Tcp(TcpListener),
}

/// An accepted connection.
pub(crate) enum Stream {
    Unix(UnixStream),
    Tcp(TcpStream),
}

/// Binds a Unix socket at `path` with permission bits `mode` (use `0o600`; `0o660` to let a
/// group in, together with [`DaemonConfig::allow_gids`](crate::DaemonConfig::allow_gids)).
///
/// The parent directory is created with mode 0700 when missing. An existing parent must be a
/// directory owned by the daemon's user and not writable by group or others (so nobody else can
/// swap the socket). A stale socket file (nobody answering) is removed; a live one is
/// [`DaemonError::SocketInUse`]; anything that is not a socket is refused.
pub async fn bind_unix(path: impl AsRef<Path>, mode: u32) -> Result<Listener, DaemonError> {
    let path = path.as_ref().to_path_buf();
    if mode & 0o007 != 0 {
        return Err(insecure(&path, "socket mode grants access to others"));
    }
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    check_parent(&path, &parent)?;
    match fs::symlink_metadata(&path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if UnixStream::connect(&path).await.is_ok() {
                return Err(DaemonError::SocketInUse(path));
            }
            fs::remove_file(&path)?;
        }
        Ok(_) => return Err(insecure(&path, "the path exists and is not a socket")),
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(e.into()),
    }
    let listener = UnixListener::bind(&path)?;
    // The directory is private, so nobody can reach the socket between bind and chmod.
    fs::set_permissions(&path, fs::Permissions::from_mode(mode))?;
    let meta = fs::symlink_metadata(&path)?;
    Ok(Listener {
        inner: Inner::Unix {
            listener,
            path,
            ino: meta.ino(),
            uid: meta.uid(),
        },
    })
}

/// Binds a Unix socket at `path` that exactly the daemon's own uid and the listed peers can
/// reach: with both lists empty this is [`bind_unix`] with mode 0600 in a 0700 directory.
///
/// With `allow_uids` other than root's (or more than one gid) the socket is made 0666; with a
/// single gid and no such uids the socket is given that group and mode 0660 (0666 if the group
/// cannot be set). Root (uid 0) needs no permission bits. The
/// parent directory gains the search bit that peers need (0711, or 0710 when it already has that
/// group): nobody else can list or write it. The permission bits only let peers knock:
/// `SO_PEERCRED` at accept still refuses every uid and gid not listed.
pub async fn bind_unix_for(
    path: impl AsRef<Path>,
    allow_uids: &[u32],
    allow_gids: &[u32],
) -> Result<Listener, DaemonError> {
    let path = path.as_ref();
    let listener = bind_unix(path, 0o600).await?;
    // Root passes permission bits anyway (CAP_DAC_OVERRIDE): `--allow-uid 0` is for the peer
    // check alone and opens no mode bits, so it does not let every local user knock.
    let allow_uids: Vec<u32> = allow_uids.iter().copied().filter(|&uid| uid != 0).collect();
    let allow_uids = allow_uids.as_slice();
    if allow_uids.is_empty() && allow_gids.is_empty() {
        return Ok(listener);
    }
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let group = match (allow_uids, allow_gids) {
        ([], [gid]) => Some(*gid),
        _ => None,
    };
    // The socket first, then the directory: until the directory opens nobody else can reach it.
    let socket_mode = match group {
        Some(gid) if std::os::unix::fs::chown(path, None, Some(gid)).is_ok() => 0o660,
        _ => 0o666,
    };
    fs::set_permissions(path, fs::Permissions::from_mode(socket_mode))?;
    let dir = fs::metadata(&parent)?;
    let dir_mode = dir.mode() & 0o7777;
    // Search (never read or write) for whoever must reach the socket; a directory that already
    // lets them through is left alone.
    let needed = match group {
        Some(gid) if dir.gid() == gid => 0o010,
        _ => 0o011,
    };
    if dir_mode & 0o001 == 0 && dir_mode & needed != needed {
        fs::set_permissions(&parent, fs::Permissions::from_mode(dir_mode | needed))?;
    }
    Ok(listener)
}

/// Binds a TCP listener on a loopback address (`127.0.0.1:port`, `[::1]:port`). TCP peers are
/// not identified by uid: only the API key protects the routes, so prefer the Unix socket.
pub async fn bind_tcp(addr: SocketAddr) -> Result<Listener, DaemonError> {
    if !addr.ip().is_loopback() {
        return Err(DaemonError::NotLoopback(addr));
    }
    let listener = TcpListener::bind(addr).await?;
    Ok(Listener {
        inner: Inner::Tcp(listener),
    })
}

fn check_parent(path: &Path, parent: &Path) -> Result<(), DaemonError> {
    match fs::metadata(parent) {
        Ok(meta) => {
            if !meta.is_dir() {
                return Err(insecure(path, "the parent is not a directory"));
            }
            if meta.mode() & 0o022 != 0 {
                return Err(insecure(
                    path,
                    "the parent directory is writable by group or others",
                ));
            }
            if let Some(uid) = own_uid()
                && meta.uid() != uid
            {
                return Err(insecure(
                    path,
                    "the parent directory belongs to another user",
                ));
            }
            Ok(())
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)?;
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// The daemon's effective uid, read without `libc`: `/proc/self` belongs to it (Linux).
fn own_uid() -> Option<u32> {
    fs::metadata("/proc/self").ok().map(|m| m.uid())
}

fn insecure(path: &Path, reason: &'static str) -> DaemonError {
    DaemonError::InsecureSocketPath {
        path: path.to_path_buf(),
        reason,
    }
}

impl Listener {
    /// The local address, for logs (`unix:/run/cardvault/sock`, `tcp:127.0.0.1:8080`).
    pub fn describe(&self) -> String {
        match &self.inner {
            Inner::Unix { path, .. } => format!("unix:{}", path.display()),
            Inner::Tcp(l) => match l.local_addr() {
                Ok(a) => format!("tcp:{a}"),
                Err(_) => "tcp:?".to_owned(),
            },
        }
    }

    /// The TCP address (for a listener bound to port 0), `None` for a Unix socket.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        match &self.inner {
            Inner::Tcp(l) => l.local_addr().ok(),
            Inner::Unix { .. } => None,
        }
    }

    /// The daemon's uid (owner of the socket file); `None` for TCP.
    pub(crate) fn owner_uid(&self) -> Option<u32> {
        match &self.inner {
            Inner::Unix { uid, .. } => Some(*uid),
            Inner::Tcp(_) => None,
        }
    }

    pub(crate) async fn accept(&self) -> io::Result<Stream> {
        match &self.inner {
            Inner::Unix { listener, .. } => Ok(Stream::Unix(listener.accept().await?.0)),
            Inner::Tcp(listener) => {
                let (s, _) = listener.accept().await?;
                s.set_nodelay(true)?;
                Ok(Stream::Tcp(s))
            }
        }
    }

    /// Stops listening and removes the socket file if it is still the one we created.
    pub(crate) fn close(self) {
        if let Inner::Unix {
            listener,
            path,
            ino,
            ..
        } = self.inner
        {
            drop(listener);
            if fs::symlink_metadata(&path).is_ok_and(|m| m.ino() == ino) {
                let _ = fs::remove_file(&path);
            }
        }
    }
}
