//! VXLAN ports (RFC 7348): Ethernet frames carried in UDP between two
//! hosts, so that a cable or a trunk can cross machines — and a Linux
//! `vxlan` device or Open vSwitch can be the far end.
//!
//! A vBET VXLAN port is point to point: it binds one local UDP address,
//! sends every frame to one remote address with one VNI, and accepts
//! frames from the remote's IP address with that VNI. It learns nothing
//! (no flood-and-learn, no multicast groups): the orchestrator's planner
//! knows both ends.
//!
//! ```text
//!  0               1               2               3
//! |R|R|R|R|I|R|R|R|            Reserved                           |
//! |                VXLAN Network Identifier (VNI) |   Reserved    |
//! ```

use std::net::SocketAddr;
use std::str::FromStr;

use tokio::net::UdpSocket;

use crate::link::Delivery;

/// Bytes of the VXLAN header before the inner Ethernet frame.
pub const HEADER_LEN: usize = 8;
/// The "I" flag: the VNI is valid. The only flag RFC 7348 defines.
pub const FLAG_VNI: u8 = 0x08;
/// The largest VNI (24 bits).
pub const MAX_VNI: u32 = 0x00ff_ffff;
/// The IANA-assigned VXLAN UDP port.
pub const IANA_PORT: u16 = 4789;

/// Why a datagram is not a VXLAN frame of ours, or an endpoint is bad.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VxlanError {
    /// Shorter than the header.
    #[error("datagram of {0} bytes is shorter than a VXLAN header")]
    Short(usize),
    /// The I flag is not set.
    #[error("VXLAN header without the I flag (flags {0:#04x})")]
    NoVni(u8),
    /// A VNI above 24 bits.
    #[error("VNI {0} does not fit in 24 bits")]
    VniRange(u32),
    /// An endpoint that does not parse.
    #[error("{0:?} is not LOCAL,REMOTE,VNI (e.g. 0.0.0.0:4789,192.0.2.7:4789,42)")]
    Endpoint(String),
}

/// Writes the VXLAN header for `vni` and then `frame` into `out`
/// (cleared first).
pub fn encapsulate(vni: u32, frame: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.reserve(HEADER_LEN + frame.len());
    let v = (vni & MAX_VNI).to_be_bytes();
    out.extend_from_slice(&[FLAG_VNI, 0, 0, 0, v[1], v[2], v[3], 0]);
    out.extend_from_slice(frame);
}

/// The VNI and the inner frame of a VXLAN datagram. Reserved bits are
/// ignored on receipt, as RFC 7348 asks.
pub fn decapsulate(datagram: &[u8]) -> Result<(u32, &[u8]), VxlanError> {
    let Some((header, frame)) = datagram.split_first_chunk::<HEADER_LEN>() else {
        return Err(VxlanError::Short(datagram.len()));
    };
    if header[0] & FLAG_VNI == 0 {
        return Err(VxlanError::NoVni(header[0]));
    }
    let vni = u32::from_be_bytes([0, header[4], header[5], header[6]]);
    Ok((vni, frame))
}

/// The two ends and the VNI of a point-to-point VXLAN port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoint {
    /// The local UDP address bound (frames arrive here).
    pub local: SocketAddr,
    /// The far end's UDP address (frames are sent there).
    pub remote: SocketAddr,
    /// The VXLAN network identifier, both ways.
    pub vni: u32,
}

impl Endpoint {
    /// Checks the VNI.
    pub fn validate(&self) -> Result<(), VxlanError> {
        if self.vni > MAX_VNI {
            return Err(VxlanError::VniRange(self.vni));
        }
        Ok(())
    }
}

impl FromStr for Endpoint {
    type Err = VxlanError;

    /// `LOCAL,REMOTE,VNI`, e.g. `127.0.0.1:4790,127.0.0.1:4791,42`.
    fn from_str(s: &str) -> Result<Endpoint, VxlanError> {
        let bad = || VxlanError::Endpoint(s.to_owned());
        let mut parts = s.split(',').map(str::trim);
        let (Some(local), Some(remote), Some(vni), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        let endpoint = Endpoint {
            local: local.parse().map_err(|_| bad())?,
            remote: remote.parse().map_err(|_| bad())?,
            vni: vni.parse().map_err(|_| bad())?,
        };
        endpoint.validate()?;
        Ok(endpoint)
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{},{},{}", self.local, self.remote, self.vni)
    }
}

/// A bound VXLAN port: sends frames to the remote end, receives the
/// remote end's frames.
#[derive(Debug)]
pub struct VxlanSocket {
    /// Receives (through the runtime's reactor).
    socket: UdpSocket,
    /// The same socket, to send without waiting for the reactor to have
    /// seen it writable.
    sender: std::net::UdpSocket,
    endpoint: Endpoint,
}

impl VxlanSocket {
    /// Binds the local address (in the current tokio runtime).
    pub async fn bind(endpoint: Endpoint) -> std::io::Result<VxlanSocket> {
        endpoint
            .validate()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let sender = std::net::UdpSocket::bind(endpoint.local)?;
        sender.set_nonblocking(true)?;
        crate::socket::size_buffers(&sender, crate::socket::DATA_BUFFER_BYTES);
        let socket = UdpSocket::from_std(sender.try_clone()?)?;
        Ok(VxlanSocket {
            socket,
            sender,
            endpoint,
        })
    }

    /// The endpoint it was bound with.
    pub fn endpoint(&self) -> Endpoint {
        self.endpoint
    }

    /// The local address actually bound (with the port the kernel chose
    /// when asked for port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Sends one frame to the remote end without blocking.
    pub fn send(&self, frame: &[u8]) -> Delivery {
        let mut datagram = Vec::new();
        encapsulate(self.endpoint.vni, frame, &mut datagram);
        match self.sender.send_to(&datagram, self.endpoint.remote) {
            Ok(_) => Delivery::Sent,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Delivery::Busy,
            Err(_) => Delivery::Failed,
        }
    }

    /// Waits for the next datagram and returns the range of `buf` that
    /// holds its inner frame, or None for a datagram that is not the
    /// remote end's (another source IP, another VNI, not VXLAN): those are
    /// dropped. The source port is not checked: a Linux `vxlan` device
    /// sends from a port of its own choosing per flow.
    pub async fn recv(&self, buf: &mut [u8]) -> std::io::Result<Option<std::ops::Range<usize>>> {
        let (n, from) = self.socket.recv_from(buf).await?;
        if from.ip() != self.endpoint.remote.ip() {
            return Ok(None);
        }
        match decapsulate(&buf[..n]) {
            Ok((vni, _)) if vni == self.endpoint.vni => Ok(Some(HEADER_LEN..n)),
            _ => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7348 §5: flags 0x08, VNI in bytes 4..7.
    const DATAGRAM: [u8; 22] = [
        0x08, 0, 0, 0, 0x00, 0x00, 0x2a, 0, // VNI 42
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // destination
        0x02, 0, 0, 0, 0, 1, // source
        0x08, 0x06, // ARP
    ];

    #[test]
    fn encapsulation_is_rfc_7348() {
        let mut out = Vec::new();
        encapsulate(42, &DATAGRAM[8..], &mut out);
        assert_eq!(out, DATAGRAM);
        assert_eq!(decapsulate(&DATAGRAM), Ok((42, &DATAGRAM[8..])));
        encapsulate(0xabcdef, b"", &mut out);
        assert_eq!(out, [0x08, 0, 0, 0, 0xab, 0xcd, 0xef, 0]);
    }

    #[test]
    fn foreign_datagrams_are_refused() {
        assert_eq!(decapsulate(&DATAGRAM[..7]), Err(VxlanError::Short(7)));
        let mut no_flag = DATAGRAM;
        no_flag[0] = 0;
        assert_eq!(decapsulate(&no_flag), Err(VxlanError::NoVni(0)));
        // Reserved bits are ignored.
        let mut reserved = DATAGRAM;
        reserved[1] = 0xff;
        reserved[7] = 0xff;
        assert_eq!(decapsulate(&reserved).unwrap().0, 42);
    }

    #[test]
    fn endpoints_parse() {
        let e: Endpoint = "127.0.0.1:4790, 127.0.0.1:4791,42".parse().unwrap();
        assert_eq!(e.local.port(), 4790);
        assert_eq!(e.remote.port(), 4791);
        assert_eq!(e.vni, 42);
        assert_eq!(e.to_string().parse::<Endpoint>(), Ok(e));
        assert!("127.0.0.1:1,127.0.0.1:2".parse::<Endpoint>().is_err());
        assert_eq!(
            "127.0.0.1:1,127.0.0.1:2,16777216".parse::<Endpoint>(),
            Err(VxlanError::VniRange(16_777_216))
        );
    }

    #[tokio::test]
    async fn two_ports_carry_frames_and_drop_other_vnis() {
        let a = VxlanSocket::bind("127.0.0.1:0,127.0.0.1:9,7".parse().unwrap())
            .await
            .unwrap();
        let a_addr = a.local_addr().unwrap();
        let b = VxlanSocket::bind(Endpoint {
            local: "127.0.0.1:0".parse().unwrap(),
            remote: a_addr,
            vni: 7,
        })
        .await
        .unwrap();
        let other = VxlanSocket::bind(Endpoint {
            local: "127.0.0.1:0".parse().unwrap(),
            remote: a_addr,
            vni: 8,
        })
        .await
        .unwrap();
        assert_eq!(other.send(b"wrong vni"), Delivery::Sent);
        assert_eq!(b.send(b"hello"), Delivery::Sent);
        let mut buf = [0u8; 64];
        assert_eq!(a.recv(&mut buf).await.unwrap(), None);
        let got = a.recv(&mut buf).await.unwrap().unwrap();
        assert_eq!(&buf[got], b"hello");
    }
}
