//! The VM's NICs: TAP devices created inside its network namespace (the
//! monitor keeps each TAP's fd), their addresses and routes (rtnetlink),
//! carrier control, and the relay that moves frames between a TAP and
//! what its cable plugs into.

use std::net::IpAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use futures::TryStreamExt;
use tokio::io::unix::AsyncFd;

use crate::spec::{Cidr, RouteSpec, VmSpec, Wiring, parse_mac};
use crate::sys;

/// A failed NIC operation.
#[derive(Debug, thiserror::Error)]
pub enum NicError {
    /// Entering the VM's network namespace failed.
    #[error("entering the VM's network namespace")]
    Setns(#[source] nix::Error),
    /// The TAP device could not be created.
    #[error("creating TAP device {name}")]
    Tap {
        /// Device name.
        name: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A netlink request failed.
    #[error("{what}")]
    Netlink {
        /// What was being configured.
        what: String,
        /// Why.
        #[source]
        source: rtnetlink::Error,
    },
    /// Other I/O (runtime, sockets, carrier).
    #[error("{what}")]
    Io {
        /// What was being done.
        what: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The wiring is not available yet.
    #[error("eth{0}: switch wiring needs the vbet-port client, which this build lacks")]
    SwitchUnsupported(u32),
}

/// A stable, locally administered unicast MAC for (lab, VM, index):
/// FNV-1a over the three, first octet `x2`.
pub fn derive_mac(lab: &str, vm: &str, index: u32) -> [u8; 6] {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in lab
        .bytes()
        .chain([0])
        .chain(vm.bytes())
        .chain([0])
        .chain(index.to_le_bytes())
    {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let b = h.to_be_bytes();
    [(b[0] & 0xfc) | 0x02, b[1], b[2], b[3], b[4], b[5]]
}

/// Formats a MAC as "02:ab:…".
pub fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// One NIC as planned from the spec.
#[derive(Debug, Clone, PartialEq)]
pub struct NicPlan {
    /// Index (eth{index}).
    pub index: u32,
    /// Device name.
    pub name: String,
    /// MAC address.
    pub mac: [u8; 6],
    /// Addresses.
    pub addresses: Vec<Cidr>,
    /// Wiring.
    pub wiring: Wiring,
}

/// Plans the NICs of a validated spec.
pub fn plan(spec: &VmSpec) -> Vec<NicPlan> {
    spec.nics
        .iter()
        .map(|n| NicPlan {
            index: n.index,
            name: format!("eth{}", n.index),
            mac: n
                .mac
                .as_deref()
                .and_then(|m| parse_mac(m).ok())
                .unwrap_or_else(|| derive_mac(&spec.lab, &spec.name, n.index)),
            addresses: n.addresses.iter().filter_map(|a| a.parse().ok()).collect(),
            wiring: n.wiring.clone(),
        })
        .collect()
}

/// A TAP device in the VM, held by the monitor.
#[derive(Debug)]
pub struct Tap {
    /// The plan it was made from.
    pub plan: NicPlan,
    /// The TAP fd (non-blocking).
    pub fd: OwnedFd,
}

/// Creates the TAPs in the network namespace `netns` (an fd of
/// `/proc/PID/ns/net`) and configures loopback, MACs, addresses and
/// routes. Runs on a thread of its own that enters the namespace and ends:
/// no runtime thread ever changes namespace.
pub fn create(
    netns: OwnedFd,
    nics: Vec<NicPlan>,
    routes: Vec<RouteSpec>,
) -> Result<Vec<Tap>, NicError> {
    std::thread::spawn(move || {
        nix::sched::setns(netns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(NicError::Setns)?;
        let mut taps = Vec::new();
        for plan in nics {
            let fd = sys::tap_open(&plan.name).map_err(|source| NicError::Tap {
                name: plan.name.clone(),
                source,
            })?;
            taps.push(Tap { plan, fd });
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|source| NicError::Io {
                what: "netlink runtime".into(),
                source,
            })?;
        rt.block_on(configure(&taps, &routes))?;
        Ok(taps)
    })
    .join()
    .unwrap_or_else(|_| {
        Err(NicError::Io {
            what: "NIC setup thread panicked".into(),
            source: std::io::Error::other("panic"),
        })
    })
}

async fn configure(taps: &[Tap], routes: &[RouteSpec]) -> Result<(), NicError> {
    let nl = |what: String| move |source| NicError::Netlink { what, source };
    let (conn, handle, _) = rtnetlink::new_connection().map_err(|source| NicError::Io {
        what: "netlink socket".into(),
        source,
    })?;
    let conn = tokio::spawn(conn);
    let index_of = |name: String| {
        let handle = handle.clone();
        async move {
            let link = handle
                .link()
                .get()
                .match_name(name.clone())
                .execute()
                .try_next()
                .await
                .map_err(nl(format!("looking up {name}")))?;
            link.map(|l| l.header.index).ok_or_else(|| NicError::Io {
                what: format!("link {name}"),
                source: std::io::Error::from(std::io::ErrorKind::NotFound),
            })
        }
    };
    let lo = index_of("lo".into()).await?;
    handle
        .link()
        .set(rtnetlink::LinkUnspec::new_with_index(lo).up().build())
        .execute()
        .await
        .map_err(nl("setting lo up".into()))?;
    let mut indexes = std::collections::HashMap::new();
    for tap in taps {
        let p = &tap.plan;
        let idx = index_of(p.name.clone()).await?;
        indexes.insert(p.index, idx);
        handle
            .link()
            .set(
                rtnetlink::LinkUnspec::new_with_index(idx)
                    .address(p.mac.to_vec())
                    .up()
                    .build(),
            )
            .execute()
            .await
            .map_err(nl(format!("setting {} up", p.name)))?;
        for a in &p.addresses {
            handle
                .address()
                .add(idx, a.addr, a.prefix)
                .execute()
                .await
                .map_err(nl(format!("adding {}/{} to {}", a.addr, a.prefix, p.name)))?;
        }
    }
    for r in routes {
        let (dst, prefix) = match r.dst.as_str() {
            "default" => (None, 0),
            other => {
                let c: Cidr = other.parse().map_err(|e: String| NicError::Io {
                    what: format!("route {other}"),
                    source: std::io::Error::other(e),
                })?;
                (Some(c.addr), c.prefix)
            }
        };
        let v6 = matches!(dst, Some(IpAddr::V6(_))) || matches!(r.via, Some(IpAddr::V6(_)));
        let mut b = rtnetlink::RouteMessageBuilder::<IpAddr>::new();
        let bad = bad_route(&r.dst);
        let dst = dst.unwrap_or(if v6 {
            IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
        } else {
            IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)
        });
        b = b.destination_prefix(dst, prefix).map_err(&bad)?;
        if let Some(via) = r.via {
            b = b.gateway(via).map_err(&bad)?;
        }
        if let Some(n) = r.nic {
            if let Some(idx) = indexes.get(&n) {
                b = b.output_interface(*idx);
            }
        }
        handle
            .route()
            .add(b.build())
            .execute()
            .await
            .map_err(nl(format!("adding route {}", r.dst)))?;
    }
    conn.abort();
    Ok(())
}

fn bad_route<E: std::fmt::Display>(dst: &str) -> impl Fn(E) -> NicError + '_ {
    move |e| NicError::Io {
        what: format!("route {dst}"),
        source: std::io::Error::other(e.to_string()),
    }
}

/// Link state values, as in `vbet.port.v1.LinkState`.
pub mod link {
    /// Frames pass.
    pub const UP: u8 = 1;
    /// Unplugged: carrier off, nothing passes.
    pub const DOWN: u8 = 2;
    /// Carrier on, nothing passes.
    pub const BLACKHOLE: u8 = 3;
}

/// The run-time state of one NIC, shared by its relay and the API.
#[derive(Debug)]
pub struct NicState {
    /// The plan.
    pub plan: NicPlan,
    /// One of [`link`].
    pub link: AtomicU8,
    /// Frames from the guest.
    pub rx_frames: AtomicU64,
    /// Bytes from the guest.
    pub rx_bytes: AtomicU64,
    /// Frames to the guest.
    pub tx_frames: AtomicU64,
    /// Bytes to the guest.
    pub tx_bytes: AtomicU64,
    /// Frames dropped because the link was down or a black hole.
    pub drops_link_down: AtomicU64,
    /// Frames dropped because the peer was busy or absent.
    pub drops_peer_busy: AtomicU64,
    tap: Arc<AsyncFd<OwnedFd>>,
}

impl NicState {
    /// Sets the link state; carrier follows (off only when down).
    pub fn set_link(&self, state: u8) -> Result<(), NicError> {
        sys::tap_set_carrier(self.tap.get_ref(), state != link::DOWN).map_err(|source| {
            NicError::Io {
                what: format!("setting the carrier of {}", self.plan.name),
                source,
            }
        })?;
        self.link.store(state, Ordering::SeqCst);
        Ok(())
    }

    fn passes(&self) -> bool {
        self.link.load(Ordering::Relaxed) == link::UP
    }
}

/// Starts the relay of a TAP (in the current runtime) and returns its state.
/// For `Wire`, binds the local datagram socket (removing a stale one).
pub fn start(tap: Tap) -> Result<Arc<NicState>, NicError> {
    let io = |what: String| move |source| NicError::Io { what, source };
    let name = tap.plan.name.clone();
    let fd = Arc::new(sys::async_fd(tap.fd).map_err(io(format!("registering {name}")))?);
    let state = Arc::new(NicState {
        plan: tap.plan,
        link: AtomicU8::new(link::UP),
        rx_frames: AtomicU64::new(0),
        rx_bytes: AtomicU64::new(0),
        tx_frames: AtomicU64::new(0),
        tx_bytes: AtomicU64::new(0),
        drops_link_down: AtomicU64::new(0),
        drops_peer_busy: AtomicU64::new(0),
        tap: fd.clone(),
    });
    match state.plan.wiring.clone() {
        Wiring::None => {
            tokio::spawn(drain(state.clone(), fd));
        }
        Wiring::Wire { local, remote } => {
            let _ = std::fs::remove_file(&local);
            let sock = tokio::net::UnixDatagram::bind(&local)
                .map_err(io(format!("binding wire socket {}", local.display())))?;
            let sock = Arc::new(sock);
            tokio::spawn(tap_to_wire(state.clone(), fd.clone(), sock.clone(), remote));
            tokio::spawn(wire_to_tap(state.clone(), fd, sock));
        }
        Wiring::Switch { .. } => return Err(NicError::SwitchUnsupported(state.plan.index)),
    }
    Ok(state)
}

/// The socket paths a NIC creates (removed at teardown).
pub fn socket_paths(plan: &NicPlan) -> Vec<PathBuf> {
    match &plan.wiring {
        Wiring::Wire { local, .. } => vec![local.clone()],
        _ => Vec::new(),
    }
}

const FRAME_MAX: usize = 65_536;

async fn read_frame(tap: &AsyncFd<OwnedFd>, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        let mut guard = tap.readable().await?;
        match guard.try_io(|fd| nix::unistd::read(fd.get_ref(), buf).map_err(std::io::Error::from))
        {
            Ok(r) => return r,
            Err(_would_block) => continue,
        }
    }
}

fn write_frame(tap: &AsyncFd<OwnedFd>, frame: &[u8]) -> std::io::Result<usize> {
    // A TAP write never blocks for long: the frame enters the guest's
    // stack or is dropped; EAGAIN counts as a drop.
    nix::unistd::write(tap.get_ref(), frame).map_err(std::io::Error::from)
}

async fn drain(state: Arc<NicState>, tap: Arc<AsyncFd<OwnedFd>>) {
    let mut buf = vec![0u8; FRAME_MAX];
    while let Ok(n) = read_frame(&tap, &mut buf).await {
        state.rx_frames.fetch_add(1, Ordering::Relaxed);
        state.rx_bytes.fetch_add(n as u64, Ordering::Relaxed);
        state.drops_peer_busy.fetch_add(1, Ordering::Relaxed);
    }
}

async fn tap_to_wire(
    state: Arc<NicState>,
    tap: Arc<AsyncFd<OwnedFd>>,
    sock: Arc<tokio::net::UnixDatagram>,
    remote: PathBuf,
) {
    let mut buf = vec![0u8; FRAME_MAX];
    while let Ok(n) = read_frame(&tap, &mut buf).await {
        state.rx_frames.fetch_add(1, Ordering::Relaxed);
        state.rx_bytes.fetch_add(n as u64, Ordering::Relaxed);
        if !state.passes() {
            state.drops_link_down.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        // Never wait for the peer: a full or absent peer drops the frame,
        // as a cable would.
        if sock.try_send_to(&buf[..n], &remote).is_err() {
            state.drops_peer_busy.fetch_add(1, Ordering::Relaxed);
        }
    }
}

async fn wire_to_tap(
    state: Arc<NicState>,
    tap: Arc<AsyncFd<OwnedFd>>,
    sock: Arc<tokio::net::UnixDatagram>,
) {
    let mut buf = vec![0u8; FRAME_MAX];
    while let Ok(n) = sock.recv(&mut buf).await {
        if !state.passes() {
            state.drops_link_down.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        match write_frame(&tap, &buf[..n]) {
            Ok(_) => {
                state.tx_frames.fetch_add(1, Ordering::Relaxed);
                state.tx_bytes.fetch_add(n as u64, Ordering::Relaxed);
            }
            Err(_) => {
                state.drops_peer_busy.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_are_stable_local_unicast_and_distinct() {
        let a = derive_mac("lab", "r1", 0);
        assert_eq!(a, derive_mac("lab", "r1", 0));
        assert_eq!(a[0] & 0x03, 0x02);
        assert_ne!(a, derive_mac("lab", "r1", 1));
        assert_ne!(a, derive_mac("lab", "r2", 0));
        assert_ne!(derive_mac("ab", "c", 0), derive_mac("a", "bc", 0));
        assert_eq!(format_mac(&[2, 0, 0, 0, 0, 0xff]), "02:00:00:00:00:ff");
    }
}
