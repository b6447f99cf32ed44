//! Small socket helpers: peer credentials and buffer sizes.

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
