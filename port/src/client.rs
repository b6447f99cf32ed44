//! The client side of the port protocol: plugging a NIC into a switch
//! (ours, Debian's `uml_switch` or `vde_switch`).

use std::io::{self, Read, Write};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime};

use crate::protocol::{DataMode, FAST_MARKER, RawSockAddr, Request, SOCKADDR_LEN};
use crate::socket::{DATA_BUFFER_BYTES, size_buffers};

/// How long the switch may take to answer. Generous: a dead switch refuses
/// the connection at once, but a live one on a host booting a thousand VMs
/// on two cores can wait seconds for its turn on a CPU (5 s was too short
/// for 1000 VMs on one switch).
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// Why plugging into a switch failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The control socket could not be reached.
    #[error("cannot connect to switch control socket {path} (is the switch running?)")]
    Connect {
        /// The control socket.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Our data socket could not be created.
    #[error("cannot create the data socket for a port on {path}")]
    DataSocket {
        /// The control socket.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The switch closed the connection instead of answering.
    #[error("switch at {path} refused the port (closed the connection without a reply)")]
    Refused {
        /// The control socket.
        path: PathBuf,
    },
    /// The exchange failed midway.
    #[error("port handshake with {path} failed")]
    Handshake {
        /// The control socket.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// A port on a switch: the control connection (the port lives as long as
/// it is open) and a datagram socket connected to the switch's data socket.
#[derive(Debug)]
pub struct ClientPort {
    /// The control connection; EOF on it means the switch went away.
    pub ctl: UnixStream,
    /// Frames to and from the switch, one per datagram.
    pub data: UnixDatagram,
    /// Where the switch told us to send frames.
    pub switch_addr: RawSockAddr,
    /// The control socket path used.
    pub ctl_path: PathBuf,
    /// What the two ends agreed: fast only if we offered it and the switch
    /// is ours and accepted.
    pub mode: DataMode,
}

/// The control socket of a switch given either the socket itself or its
/// directory (VDE style: `DIR/ctl`).
pub fn control_path(path: &Path) -> PathBuf {
    if path.is_dir() {
        path.join("ctl")
    } else {
        path.to_owned()
    }
}

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A fresh abstract address for one of our data sockets, full length as
/// UML binds them; its name starts with [`FAST_MARKER`] to offer fast
/// mode.
fn fresh_data_addr(mode: DataMode) -> RawSockAddr {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let name = format!(
        "{}port-{}-{}-{nanos}",
        match mode {
            DataMode::Plain => "vbet-".to_owned(),
            DataMode::Fast => format!("{}-", String::from_utf8_lossy(FAST_MARKER)),
        },
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    RawSockAddr::abstract_name(name.as_bytes())
}

/// Plugs a new port into the switch at `ctl` (socket or directory).
///
/// The request has UML's shape (124 bytes: header and two zero bytes of
/// padding, no description), the one form every switch accepts:
/// `uml_switch` reads a trailing description as a broken second request
/// and drops the port. Frames are plain; see [`connect_as`] for fast mode.
pub fn connect(ctl: &Path) -> Result<ClientPort, ClientError> {
    connect_as(ctl, DataMode::Plain)
}

/// Plugs a new port into the switch at `ctl`, offering `mode`. Fast mode
/// is offered in the data socket's name and taken only if the reply
/// carries the marker (see [`FAST_MARKER`]); any other switch gets a
/// request it cannot tell from a plain one, and the port is plain.
pub fn connect_as(ctl: &Path, offer: DataMode) -> Result<ClientPort, ClientError> {
    let path = control_path(ctl);
    let mut stream = UnixStream::connect(&path).map_err(|source| ClientError::Connect {
        path: path.clone(),
        source,
    })?;
    let data_err = |source| ClientError::DataSocket {
        path: path.clone(),
        source,
    };
    let local = fresh_data_addr(offer);
    let local_sa = SocketAddr::from_abstract_name(&local.0[3..]).map_err(data_err)?;
    let data = UnixDatagram::bind_addr(&local_sa).map_err(data_err)?;
    size_buffers(&data, DATA_BUFFER_BYTES);

    let hs_err = |source| ClientError::Handshake {
        path: path.clone(),
        source,
    };
    let mut request = Request::new_port(local, "").encode();
    request.extend_from_slice(&[0, 0]);
    stream.write_all(&request).map_err(hs_err)?;
    stream
        .set_read_timeout(Some(REPLY_TIMEOUT))
        .map_err(hs_err)?;
    let mut reply = [0u8; SOCKADDR_LEN];
    match stream.read_exact(&mut reply) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
            return Err(ClientError::Refused { path });
        }
        Err(e) => return Err(hs_err(e)),
    }
    stream.set_read_timeout(None).map_err(hs_err)?;
    let switch_addr = RawSockAddr(reply);
    let mode = match offer {
        DataMode::Fast if switch_addr.accepts_fast() => DataMode::Fast,
        _ => DataMode::Plain,
    };
    let target = switch_addr
        .to_socket_addr()
        .map_err(|e| hs_err(io::Error::new(io::ErrorKind::InvalidData, e)))?;
    data.connect_addr(&target).map_err(hs_err)?;
    Ok(ClientPort {
        ctl: stream,
        data,
        switch_addr,
        ctl_path: path,
        mode,
    })
}
