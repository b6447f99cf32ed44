//! The switch side of the port protocol: the control socket and the
//! handshake that turns a connection into a port.

use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::stat::{Mode, umask};
use tokio::io::AsyncReadExt;
use tokio::io::AsyncWriteExt;
use tokio::net::{UnixListener, UnixStream};

use crate::protocol::{MAX_DESCRIPTION, REQUEST_LEN, RawSockAddr, Request, RequestError};

/// How long a client may take to send its request.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the control socket could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// Another live daemon answers on the path.
    #[error("{0} is in use by a running daemon; stop it or choose another path")]
    InUse(PathBuf),
    /// The path exists and is not a socket.
    #[error("{0} exists and is not a socket; refusing to replace it")]
    NotASocket(PathBuf),
    /// Creating the socket's directory failed.
    #[error("cannot create directory {path}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Any other failure on the path.
    #[error("cannot bind control socket {path}")]
    Bind {
        /// The socket path.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// A Unix stream socket that clients connect to, removed when dropped.
#[derive(Debug)]
pub struct ControlSocket {
    listener: UnixListener,
    path: PathBuf,
}

/// Removes a stale socket file at `path` (one nobody listens on), and
/// refuses if a live daemon answers there or the path is not a socket.
/// Returns whether a stale file was reclaimed.
pub fn reclaim_stale(path: &Path) -> Result<bool, BindError> {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(false);
    };
    if !meta.file_type().is_socket() {
        return Err(BindError::NotASocket(path.to_owned()));
    }
    let live = match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => true,
        Err(e) => e.kind() != io::ErrorKind::ConnectionRefused,
    };
    if live {
        return Err(BindError::InUse(path.to_owned()));
    }
    std::fs::remove_file(path).map_err(|source| BindError::Bind {
        path: path.to_owned(),
        source,
    })?;
    Ok(true)
}

/// Binds a Unix socket with `bind` under umask 077, then sets `mode`.
pub fn bind_private<T>(
    path: &Path,
    mode: u32,
    bind: impl FnOnce(&Path) -> io::Result<T>,
) -> io::Result<T> {
    let old = umask(Mode::from_bits_truncate(0o077));
    let bound = bind(path);
    umask(old);
    let bound = bound?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    Ok(bound)
}

impl ControlSocket {
    /// Listens on `path` with permissions `mode` (0600 or 0660), creating
    /// its directory and reclaiming a stale socket file from a crashed run.
    pub fn bind(path: &Path, mode: u32) -> Result<ControlSocket, BindError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| BindError::CreateDir {
                path: dir.to_owned(),
                source,
            })?;
        }
        if reclaim_stale(path)? {
            tracing::warn!(path = %path.display(), "reclaimed a stale control socket");
        }
        let listener = bind_private(path, mode, |p| UnixListener::bind(p)).map_err(|source| {
            BindError::Bind {
                path: path.to_owned(),
                source,
            }
        })?;
        Ok(ControlSocket {
            listener,
            path: path.to_owned(),
        })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Waits for the next client connection.
    pub async fn accept(&self) -> io::Result<UnixStream> {
        self.listener.accept().await.map(|(stream, _)| stream)
    }
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Why a handshake failed.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// The client closed or stalled before a whole request.
    #[error("client sent {0} bytes and then closed or stalled")]
    Short(usize),
    /// The request is malformed.
    #[error(transparent)]
    Request(#[from] RequestError),
    /// Reading or replying failed.
    #[error("control connection failed")]
    Io(#[source] io::Error),
}

/// Reads one request from a new control connection: the 122-byte header
/// within [`HANDSHAKE_TIMEOUT`], then whatever description came with it.
pub async fn read_request(stream: &mut UnixStream) -> Result<Request, HandshakeError> {
    let mut buf = vec![0u8; REQUEST_LEN + MAX_DESCRIPTION];
    let mut got = 0;
    let deadline = tokio::time::Instant::now() + HANDSHAKE_TIMEOUT;
    while got < REQUEST_LEN {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf[got..])).await {
            Err(_) | Ok(Ok(0)) => return Err(HandshakeError::Short(got)),
            Ok(Ok(n)) => got += n,
            Ok(Err(e)) => return Err(HandshakeError::Io(e)),
        }
    }
    // A description is written together with the header; take what is
    // already there without waiting for more.
    while got < buf.len() {
        match stream.try_read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(HandshakeError::Io(e)),
        }
    }
    Ok(Request::parse(&buf[..got])?)
}

/// Sends the reply: the address the client must send its frames to.
pub async fn reply(stream: &mut UnixStream, addr: &RawSockAddr) -> Result<(), HandshakeError> {
    stream.write_all(&addr.0).await.map_err(HandshakeError::Io)
}
