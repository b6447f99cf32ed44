//! Small socket helpers: peer credentials, buffer sizes, and the data
//! socket of a port.

use std::io;

use std::os::fd::AsFd;

use nix::sys::socket::{getsockopt, setsockopt, sockopt};

/// Socket buffer size for data sockets: room for a burst of full frames.
pub const DATA_BUFFER_BYTES: usize = 4 << 20;

/// Credentials of the process at the other end of a Unix socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PeerCred {
    /// Process id (as seen from our PID namespace; 0 if unknown).
    pub pid: i32,
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

/// The credentials of a connected Unix socket's peer (SO_PEERCRED).
pub fn peer_credentials(socket: &impl AsFd) -> Option<PeerCred> {
    getsockopt(socket, sockopt::PeerCredentials)
        .ok()
        .map(|c| PeerCred {
            pid: c.pid(),
            uid: c.uid(),
            gid: c.gid(),
        })
}

/// Sets send and receive buffers to `bytes`, past the system maximum when
/// we may (as root), else as large as allowed. Best effort.
pub fn size_buffers(socket: &impl AsFd, bytes: usize) {
    if setsockopt(socket, sockopt::SndBufForce, &bytes).is_err() {
        let _ = setsockopt(socket, sockopt::SndBuf, &bytes);
    }
    if setsockopt(socket, sockopt::RcvBufForce, &bytes).is_err() {
        let _ = setsockopt(socket, sockopt::RcvBuf, &bytes);
    }
}

/// A non-blocking Unix datagram socket of a port's data path, watched for
/// reading only.
///
/// A socket registered for both directions (as `tokio::net::UnixDatagram`
/// is) wakes its process each time the peer consumes a datagram it sent:
/// the freed buffer space raises `EPOLLOUT`, edge-triggered, although
/// nobody waits to write. On a data path that is one needless wake-up per
/// frame in each process. Sends here never wait: they either go or fail
/// with `WouldBlock`; [`DataSocket::writable`] registers for writing only
/// for as long as a sender actually waits.
#[derive(Debug)]
pub struct DataSocket {
    io: tokio::io::unix::AsyncFd<std::os::unix::net::UnixDatagram>,
}

impl DataSocket {
    /// Makes `socket` non-blocking and registers it, for reading, with the
    /// current tokio runtime.
    pub fn new(socket: std::os::unix::net::UnixDatagram) -> io::Result<DataSocket> {
        socket.set_nonblocking(true)?;
        let io = crate::sys::register(socket, tokio::io::Interest::READABLE)?;
        Ok(DataSocket { io })
    }

    /// The socket.
    pub fn get_ref(&self) -> &std::os::unix::net::UnixDatagram {
        self.io.get_ref()
    }

    /// Receives one datagram, waiting for it.
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let mut ready = self.io.readable().await?;
            match ready.try_io(|s| s.get_ref().recv(buf)) {
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }

    /// Receives one datagram into this thread's receive buffer (see
    /// [`crate::scratch`]), `at` bytes in, waiting for it; then runs `f` on
    /// the buffer and the datagram's end (`at` + its length).
    pub async fn recv_with<R>(
        &self,
        at: usize,
        f: impl FnOnce(&mut [u8], usize) -> R,
    ) -> io::Result<R> {
        let mut f = Some(f);
        loop {
            let mut ready = self.io.readable().await?;
            let done = crate::scratch::with(|buf| {
                match ready.try_io(|s| s.get_ref().recv(&mut buf[at..])) {
                    Ok(Ok(n)) => Some(Ok(f.take().expect("runs once")(buf, at + n))),
                    Ok(Err(e)) => Some(Err(e)),
                    Err(_would_block) => None,
                }
            });
            if let Some(result) = done {
                return result;
            }
        }
    }

    /// Sends one datagram to the connected peer now, or fails (with
    /// `WouldBlock` when the peer has no room).
    pub fn try_send(&self, buf: &[u8]) -> io::Result<usize> {
        self.get_ref().send(buf)
    }

    /// Waits until the socket may be written again.
    pub async fn writable(&self) -> io::Result<()> {
        let watch =
            crate::sys::register(self.get_ref().try_clone()?, tokio::io::Interest::WRITABLE)?;
        let _ready = watch.writable().await?;
        Ok(())
    }
}

/// Registers a descriptor (a TAP) with the current runtime for reading
/// only: writes to it never wait, and a registration for writing would
/// wake the process each time the kernel frees what it wrote (see
/// [`DataSocket`]).
pub fn register_readable(
    fd: std::os::fd::OwnedFd,
) -> io::Result<tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>> {
    crate::sys::register(fd, tokio::io::Interest::READABLE)
}

/// Raises this process's soft limit on open files to its hard limit, and
/// returns the new soft limit.
///
/// A switch holds two descriptors per port (control stream and data
/// socket) and an orchestrator a few per VM: the usual soft limit of 1024
/// (systemd's default) would stop a switch near 500 ports. Children
/// inherit the raised limit.
pub fn raise_open_file_limit() -> std::io::Result<u64> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    }
    Ok(hard.max(soft))
}

/// Lowers this process's nice value to `nice` (root only): a switch runs
/// ahead of the guests it carries, as a kernel bridge forwards in softirq
/// ahead of processes.
pub fn raise_priority(nice: i32) -> std::io::Result<()> {
    crate::sys::set_nice(nice)
}
