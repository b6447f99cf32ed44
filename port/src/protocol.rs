//! The uml_switch / VDE "daemon transport" handshake, version 3.
//!
//! A client opens one stream connection to the switch's control socket per
//! port and writes a [`Request`]: magic, version, request type and the
//! 110-byte `sockaddr_un` of its own datagram socket, optionally followed
//! by a free-text description (libvdeplug) or two bytes of padding (UML).
//! The switch answers with exactly one 110-byte `sockaddr_un`: where the
//! client must send its frames. See `shared/PORT-PROTOCOL.md`.

use std::ffi::OsStr;
use std::fmt;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::SocketAddr;
use std::path::Path;

/// The magic number that starts every request.
pub const MAGIC: u32 = 0xFEED_FACE;
/// The only protocol version spoken.
pub const VERSION: u32 = 3;
/// Size of a `struct sockaddr_un` on Linux: `sa_family` + 108 path bytes.
pub const SOCKADDR_LEN: usize = 110;
/// Size of a request without description: magic, version, type, address.
pub const REQUEST_LEN: usize = 12 + SOCKADDR_LEN;
/// Longest description kept from a request.
pub const MAX_DESCRIPTION: usize = 256;

const AF_UNIX: u16 = 1;

/// A raw `struct sockaddr_un`, kept byte for byte as a peer sent it.
///
/// UML's addresses are abstract and their tail is uninitialised memory:
/// all 108 path bytes are part of the name, so they must be used exactly.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct RawSockAddr(pub [u8; SOCKADDR_LEN]);

impl RawSockAddr {
    /// An abstract address: `\0` then `name`, padded with zeros to the full
    /// 108 bytes (the length UML and we bind with).
    pub fn abstract_name(name: &[u8]) -> RawSockAddr {
        let mut raw = [0u8; SOCKADDR_LEN];
        raw[..2].copy_from_slice(&AF_UNIX.to_ne_bytes());
        let len = name.len().min(SOCKADDR_LEN - 3);
        raw[3..3 + len].copy_from_slice(&name[..len]);
        RawSockAddr(raw)
    }

    /// A filesystem address. Fails if the path does not fit in 107 bytes.
    pub fn pathname(path: &Path) -> Result<RawSockAddr, AddressError> {
        let bytes = path.as_os_str().as_encoded_bytes();
        if bytes.is_empty() || bytes.len() > SOCKADDR_LEN - 3 || bytes.contains(&0) {
            return Err(AddressError::BadPath(path.display().to_string()));
        }
        let mut raw = [0u8; SOCKADDR_LEN];
        raw[..2].copy_from_slice(&AF_UNIX.to_ne_bytes());
        raw[2..2 + bytes.len()].copy_from_slice(bytes);
        Ok(RawSockAddr(raw))
    }

    /// The address family field (1 = `AF_UNIX` for every valid address).
    pub fn family(&self) -> u16 {
        u16::from_ne_bytes([self.0[0], self.0[1]])
    }

    /// True when the address is in the abstract namespace (first path byte
    /// is zero).
    pub fn is_abstract(&self) -> bool {
        self.0[2] == 0
    }

    /// The address as a std socket address: abstract addresses keep all
    /// 107 name bytes; paths stop at the first zero byte.
    pub fn to_socket_addr(&self) -> Result<SocketAddr, AddressError> {
        if self.family() != AF_UNIX {
            return Err(AddressError::NotUnix(self.family()));
        }
        let path = &self.0[2..];
        if self.is_abstract() {
            SocketAddr::from_abstract_name(&path[1..]).map_err(|_| AddressError::Unusable)
        } else {
            let end = path.iter().position(|b| *b == 0).unwrap_or(path.len());
            SocketAddr::from_pathname(Path::new(OsStr::from_bytes(&path[..end])))
                .map_err(|_| AddressError::Unusable)
        }
    }
}

impl fmt::Display for RawSockAddr {
    /// Paths print as they are; abstract names as `@` and their printable
    /// prefix (UML's name is `\0`, pid, microseconds, then garbage).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = &self.0[2..];
        if self.is_abstract() {
            write!(f, "@")?;
            for b in path[1..].iter().take(16) {
                write!(f, "{b:02x}")?;
            }
            Ok(())
        } else {
            let end = path.iter().position(|b| *b == 0).unwrap_or(path.len());
            write!(f, "{}", String::from_utf8_lossy(&path[..end]))
        }
    }
}

impl fmt::Debug for RawSockAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RawSockAddr({self})")
    }
}

/// How frames travel on a port's data path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DataMode {
    /// Version 3: one datagram is one Ethernet frame of at most 1518
    /// bytes, as every peer sends it.
    #[default]
    Plain,
    /// vBET's fast mode: one datagram is a 10-byte virtio-net header and a
    /// frame, which may be a TCP segment of up to 64 KiB still to be
    /// segmented, or have its checksum still to complete (see
    /// [`crate::vnet`]). Only between two of our processes that both
    /// offered it in the handshake.
    Fast,
}

/// The marker of fast mode in the handshake (version 1 of it: a 10-byte
/// `virtio_net_hdr` in host byte order before every frame).
///
/// - A client offers fast mode by naming its abstract data socket
///   `\0vbet-fast1…`. Every switch takes the name as an opaque address:
///   only ours looks at it. UML's names are binary (pid, time) and
///   libvdeplug's are paths, so no other client carries it.
/// - Our switch accepts by replying with a path whose `sun_path` ends
///   (its last [`FAST_MARKER`] bytes, after the path's terminating zero)
///   with the marker. Every client reads a path reply up to its first
///   zero byte (the kernel does too), so a plain client never sees it;
///   `uml_switch` replies with an abstract address and `vde_switch` with
///   a short path and nothing of ours after it.
pub const FAST_MARKER: &[u8; 10] = b"vbet-fast1";

impl RawSockAddr {
    /// True when this (a client's data address) offers fast mode.
    pub fn offers_fast(&self) -> bool {
        self.family() == AF_UNIX && self.is_abstract() && self.0[3..].starts_with(FAST_MARKER)
    }

    /// This path address with the fast-mode marker after its end, if the
    /// path leaves room for it (at most 97 bytes).
    pub fn with_fast_marker(&self) -> Option<RawSockAddr> {
        let end = 2 + self.0[2..].iter().position(|b| *b == 0)?;
        let at = SOCKADDR_LEN - FAST_MARKER.len();
        if self.is_abstract() || end >= at {
            return None;
        }
        let mut raw = self.0;
        raw[end..at].fill(0);
        raw[at..].copy_from_slice(FAST_MARKER);
        Some(RawSockAddr(raw))
    }

    /// True when this (a switch's reply) accepts fast mode: a path, its
    /// terminating zero, and the marker in the last bytes.
    pub fn accepts_fast(&self) -> bool {
        let at = SOCKADDR_LEN - FAST_MARKER.len();
        self.family() == AF_UNIX
            && !self.is_abstract()
            && self.0[2..at].contains(&0)
            && &self.0[at..] == FAST_MARKER
    }
}

/// A socket address that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AddressError {
    /// The family field is not `AF_UNIX`.
    #[error("address family {0} is not AF_UNIX")]
    NotUnix(u16),
    /// The path is empty, too long for `sockaddr_un`, or holds a zero byte.
    #[error("{0:?} cannot be a Unix socket address (empty, over 107 bytes or has a NUL byte)")]
    BadPath(String),
    /// The address cannot be expressed as a std socket address.
    #[error("the address cannot be used")]
    Unusable,
}

/// What a client asks of the switch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The port number the client asked for (VDE), if any.
    pub requested_port: Option<u32>,
    /// The client's data socket address.
    pub data_addr: RawSockAddr,
    /// The client's free-text description, sanitised to printable text.
    pub description: String,
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// Fewer bytes than a request.
    #[error("request of {0} bytes is shorter than the {REQUEST_LEN} of a version 3 request")]
    Short(usize),
    /// The first word is not 0xFEEDFACE.
    #[error("bad magic {0:#010x} (expected 0xfeedface)")]
    BadMagic(u32),
    /// A version other than 3.
    #[error("protocol version {0} is not supported (only 3 is)")]
    BadVersion(u32),
    /// A request type other than "new port" (0 or 1).
    #[error("request type {0:#x} is not \"new port\"")]
    BadType(u32),
    /// The data address is not a Unix address.
    #[error("data socket address has family {0}, not AF_UNIX")]
    BadAddress(u16),
}

impl Request {
    /// A request for a new port whose frames come from `data_addr`.
    pub fn new_port(data_addr: RawSockAddr, description: &str) -> Request {
        Request {
            requested_port: None,
            data_addr,
            description: description.to_owned(),
        }
    }

    /// Parses a request: the 122-byte header and anything after it as the
    /// description.
    pub fn parse(bytes: &[u8]) -> Result<Request, RequestError> {
        if bytes.len() < REQUEST_LEN {
            return Err(RequestError::Short(bytes.len()));
        }
        let word = |i: usize| u32::from_ne_bytes(bytes[i..i + 4].try_into().expect("4 bytes"));
        let magic = word(0);
        if magic != MAGIC {
            return Err(RequestError::BadMagic(magic));
        }
        let version = word(4);
        if version != VERSION {
            return Err(RequestError::BadVersion(version));
        }
        let kind = word(8);
        if kind & 0xff > 1 {
            return Err(RequestError::BadType(kind));
        }
        let data_addr = RawSockAddr(bytes[12..REQUEST_LEN].try_into().expect("110 bytes"));
        if data_addr.family() != AF_UNIX {
            return Err(RequestError::BadAddress(data_addr.family()));
        }
        let requested_port = Some(kind >> 8).filter(|p| *p != 0);
        Ok(Request {
            requested_port,
            data_addr,
            description: sanitise(&bytes[REQUEST_LEN..]),
        })
    }

    /// Encodes the request as libvdeplug does: header then description.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(REQUEST_LEN + self.description.len());
        out.extend_from_slice(&MAGIC.to_ne_bytes());
        out.extend_from_slice(&VERSION.to_ne_bytes());
        let kind = self.requested_port.map_or(0, |p| (p << 8) | 1);
        out.extend_from_slice(&kind.to_ne_bytes());
        out.extend_from_slice(&self.data_addr.0);
        out.extend_from_slice(self.description.as_bytes());
        out
    }
}

/// Keeps the printable text of a description (UML's two padding bytes and
/// any garbage vanish).
fn sanitise(bytes: &[u8]) -> String {
    let bytes = &bytes[..bytes.len().min(MAX_DESCRIPTION)];
    String::from_utf8_lossy(bytes)
        .chars()
        .filter(|c| !c.is_control() && *c != '\u{fffd}')
        .collect::<String>()
        .trim()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uml_request() -> Vec<u8> {
        // As UML writes it: header, abstract address with garbage after
        // pid and time, two bytes of struct padding.
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&MAGIC.to_ne_bytes());
        bytes.extend_from_slice(&3u32.to_ne_bytes());
        bytes.extend_from_slice(&0u32.to_ne_bytes());
        let mut addr = [0xa5u8; SOCKADDR_LEN];
        addr[..2].copy_from_slice(&1u16.to_ne_bytes());
        addr[2] = 0;
        bytes.extend_from_slice(&addr);
        bytes.extend_from_slice(&[0, 0]);
        assert_eq!(bytes.len(), 124);
        bytes
    }

    #[test]
    fn parses_uml_request_keeping_every_address_byte() {
        let req = Request::parse(&uml_request()).unwrap();
        assert!(req.data_addr.is_abstract());
        assert_eq!(req.data_addr.0[SOCKADDR_LEN - 1], 0xa5);
        assert_eq!(req.description, "");
        assert_eq!(req.requested_port, None);
        req.data_addr.to_socket_addr().unwrap();
    }

    #[test]
    fn parses_vde_request_with_description() {
        let addr = RawSockAddr::pathname(Path::new("/tmp/vde.1234-0")).unwrap();
        let mut req = Request::new_port(addr, "vde_plug2tap: user=root PID=42");
        let parsed = Request::parse(&req.encode()).unwrap();
        assert_eq!(parsed, req);
        req.requested_port = Some(7);
        assert_eq!(
            Request::parse(&req.encode()).unwrap().requested_port,
            Some(7)
        );
        let sa = parsed.data_addr.to_socket_addr().unwrap();
        assert_eq!(sa.as_pathname(), Some(Path::new("/tmp/vde.1234-0")));
    }

    #[test]
    fn refuses_bad_requests() {
        let good = uml_request();
        assert_eq!(Request::parse(&good[..50]), Err(RequestError::Short(50)));
        let mut bad = good.clone();
        bad[0] = 0;
        assert!(matches!(
            Request::parse(&bad),
            Err(RequestError::BadMagic(_))
        ));
        let mut bad = good.clone();
        bad[4..8].copy_from_slice(&2u32.to_ne_bytes());
        assert_eq!(Request::parse(&bad), Err(RequestError::BadVersion(2)));
        let mut bad = good.clone();
        bad[8..12].copy_from_slice(&5u32.to_ne_bytes());
        assert_eq!(Request::parse(&bad), Err(RequestError::BadType(5)));
        let mut bad = good;
        bad[12..14].copy_from_slice(&2u16.to_ne_bytes());
        assert_eq!(Request::parse(&bad), Err(RequestError::BadAddress(2)));
    }

    #[test]
    fn fast_mode_is_offered_by_name_and_accepted_after_the_path() {
        let mut name = FAST_MARKER.to_vec();
        name.extend_from_slice(b"-port-1-2-3");
        let offer = RawSockAddr::abstract_name(&name);
        assert!(offer.offers_fast());
        assert!(!RawSockAddr::abstract_name(b"vbet-port-1-2-3").offers_fast());
        // UML's binary name and a libvdeplug path offer nothing.
        let mut uml = [0xa5u8; SOCKADDR_LEN];
        uml[..3].copy_from_slice(&[1, 0, 0]);
        assert!(!RawSockAddr(uml).offers_fast());
        let path = RawSockAddr::pathname(Path::new("/run/vbet/lab/sw1/ctl.3")).unwrap();
        assert!(!path.offers_fast());
        assert!(!path.accepts_fast());

        let reply = path.with_fast_marker().unwrap();
        assert!(reply.accepts_fast());
        // Plain clients (and the kernel) read the same path.
        let sa = reply.to_socket_addr().unwrap();
        assert_eq!(sa.as_pathname(), Some(Path::new("/run/vbet/lab/sw1/ctl.3")));
        // uml_switch's abstract reply and a path too long for the marker.
        assert!(!RawSockAddr(uml).accepts_fast());
        assert!(RawSockAddr(uml).with_fast_marker().is_none());
        let long = format!("/{}", "x".repeat(97));
        let long = RawSockAddr::pathname(Path::new(&long)).unwrap();
        assert!(long.with_fast_marker().is_none());
        let fits = format!("/{}", "x".repeat(96));
        let fits = RawSockAddr::pathname(Path::new(&fits)).unwrap();
        assert!(fits.with_fast_marker().unwrap().accepts_fast());
        // A full-length path has no terminator: never a marker.
        let mut full = [b'/'; SOCKADDR_LEN];
        full[..2].copy_from_slice(&1u16.to_ne_bytes());
        full[SOCKADDR_LEN - FAST_MARKER.len()..].copy_from_slice(FAST_MARKER);
        assert!(!RawSockAddr(full).accepts_fast());
    }

    #[test]
    fn long_paths_are_refused() {
        let long = "/".repeat(200);
        assert!(RawSockAddr::pathname(Path::new(&long)).is_err());
    }
}
