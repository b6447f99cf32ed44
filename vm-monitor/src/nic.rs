//! The VM's NICs: TAP devices created inside its network namespace (the
//! monitor keeps each TAP's fd), their addresses and routes (rtnetlink),
//! carrier control, and the relay that moves frames between a TAP and
//! what its cable plugs into.

use std::net::IpAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::TryStreamExt;
use tokio::io::unix::AsyncFd;
use vbet_port::capture::{CaptureTap, Direction};
use vbet_port::client;
use vbet_port::counters::Counters;
use vbet_port::link::{Delivery, LinkState, PortLink, Sink};
use vbet_port::mac_table::PortId;
use vbet_port::protocol::DataMode;
use vbet_port::socket::{DATA_BUFFER_BYTES, DataSocket, register_readable, size_buffers};
use vbet_port::vnet;

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
    /// Plugging into the switch failed.
    #[error("eth{nic}: plugging into the switch")]
    Switch {
        /// NIC index.
        nic: u32,
        /// Why.
        #[source]
        source: client::ClientError,
    },
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
    /// Frames read from and written to the TAP carry a virtio-net header,
    /// so the TAP can take TCP segmentation and checksum offload: the fast
    /// mode between two of our processes (always on a direct wire; on a
    /// switch port when the switch is switchd and agrees), where 64 KiB
    /// segments travel as one datagram. The offloads themselves are turned
    /// on only while the cable's far end is fast.
    pub offload: bool,
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
            offload: matches!(n.wiring, Wiring::Wire { .. } | Wiring::Switch { .. }),
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
/// `/proc/PID/ns/net`), sets the VM's network kernel parameters, and
/// configures loopback, MACs, addresses and routes. Runs on a thread of
/// its own that enters the namespace and ends: no runtime thread ever
/// changes namespace.
pub fn create(
    netns: OwnedFd,
    nics: Vec<NicPlan>,
    routes: Vec<RouteSpec>,
    sysctls: Vec<(String, String)>,
) -> Result<Vec<Tap>, NicError> {
    std::thread::spawn(move || {
        nix::sched::setns(netns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(NicError::Setns)?;
        let mut taps = Vec::new();
        for plan in nics {
            let tap_err = |source| NicError::Tap {
                name: plan.name.clone(),
                source,
            };
            let fd = sys::tap_open(&plan.name, plan.offload).map_err(tap_err)?;
            // A wire is fast from the start; a switch port once its switch
            // agrees (see `start`).
            if matches!(plan.wiring, Wiring::Wire { .. }) {
                sys::tap_set_offload(&fd, sys::TAP_OFFLOADS).map_err(tap_err)?;
            }
            taps.push(Tap { plan, fd });
        }
        // /proc/sys/net is the namespace of the thread that opens it: this
        // one's. The NICs exist (per-NIC keys work) and are still down.
        // No duplicate address detection for their IPv6 link-local
        // addresses, as for the configured ones: MACs are unique in a lab,
        // and a thousand VMs probing at once flood every switch. The spec's
        // own parameters come after, so they may turn it back on.
        for tap in &taps {
            // (A host without IPv6 has no such file: nothing to turn off.)
            let key = format!("net.ipv6.conf.{}.accept_dad", tap.plan.name);
            let _ = std::fs::write(crate::spec::sysctl_path(&key), "0");
        }
        for (key, value) in &sysctls {
            std::fs::write(crate::spec::sysctl_path(key), value).map_err(|source| {
                NicError::Io {
                    what: format!("sysctl {key} = {value}"),
                    source,
                }
            })?;
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
            let mut add = handle.address().add(idx, a.addr, a.prefix);
            if a.addr.is_ipv6() {
                // No duplicate address detection: an emulated link's
                // addresses are usable at once (as in Mininet).
                add.message_mut().header.flags |=
                    rtnetlink::packet_route::address::AddressHeaderFlags::Nodad;
            }
            add.execute()
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

/// Where a NIC's frames go: the datagram socket of its cable (a switch
/// port's, or a direct wire's), while there is one.
#[derive(Debug, Default)]
struct Fabric {
    sock: Mutex<Option<Arc<DataSocket>>>,
    /// For a direct wire: the far end, connected to lazily (it may not
    /// exist yet, or restart).
    remote: Option<PathBuf>,
    connected: AtomicBool,
    /// The TAP's frames carry a virtio-net header.
    vnet_hdr: bool,
    /// The cable's far end takes packets (header and frame) as they are;
    /// else it is a plain version-3 peer.
    fast: AtomicBool,
}

impl Fabric {
    /// Sends a packet from the TAP: as it is to a fast peer; to a plain
    /// one, the ordinary frames it stands for.
    fn send(&self, packet: &[u8]) -> Delivery {
        if !self.vnet_hdr || self.fast.load(Ordering::Relaxed) {
            return self.send_datagram(packet);
        }
        match vnet::VnetHeader::parse(packet) {
            Some(h) if h.is_plain() => self.send_datagram(&packet[vnet::HEADER_LEN..]),
            _ => {
                // Sent just before the offloads were turned off, or a
                // guest that forces them: segment here.
                let mut delivery = Delivery::Sent;
                let done = vnet::for_each_plain(packet, &mut Vec::new(), |frame| {
                    let d = self.send_datagram(frame);
                    if d != Delivery::Sent {
                        delivery = d;
                    }
                });
                if done.is_err() {
                    return Delivery::Failed;
                }
                delivery
            }
        }
    }

    fn send_datagram(&self, frame: &[u8]) -> Delivery {
        let Some(sock) = self.sock.lock().expect("not poisoned").clone() else {
            return Delivery::Failed;
        };
        if let Some(remote) = &self.remote {
            if !self.connected.load(Ordering::Relaxed) {
                if sock.get_ref().connect(remote).is_err() {
                    return Delivery::Failed;
                }
                self.connected.store(true, Ordering::Relaxed);
            }
        }
        match sock.try_send(frame) {
            Ok(_) => Delivery::Sent,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Delivery::Busy,
            Err(_) => {
                self.connected.store(false, Ordering::Relaxed);
                Delivery::Failed
            }
        }
    }
}

/// The run-time state of one NIC, shared by its relay tasks and the API:
/// the port library's link (state, counters, impairments per direction)
/// and capture point.
#[derive(Debug)]
pub struct NicState {
    /// The plan.
    pub plan: NicPlan,
    /// State, counters and impairments. "Inbound" is what the guest sends
    /// (egress of the VM), "outbound" what is delivered to the guest.
    pub port: PortLink,
    /// Frames seen, for Capture.
    pub capture: CaptureTap,
    tap: Arc<AsyncFd<OwnedFd>>,
    fabric: Arc<Fabric>,
    events: tokio::sync::broadcast::Sender<vbet_proto::vbet::vm::v1::Event>,
}

impl NicState {
    /// The capture id of this NIC (index + 1; 0 means "all" to the port
    /// library).
    pub fn capture_id(&self) -> PortId {
        self.plan.index + 1
    }

    /// Sets the link state; the guest's carrier follows (see
    /// [`NicState::sync_carrier`]).
    pub fn set_link(&self, state: LinkState) -> Result<(), NicError> {
        self.port.set_state(state);
        self.sync_carrier()
    }

    /// Makes the guest's carrier follow the cable: off when the link is
    /// down, when the NIC has no cable, and while a switch NIC is
    /// unplugged (its switch went away); on otherwise (a black hole keeps
    /// it on).
    pub fn sync_carrier(&self) -> Result<(), NicError> {
        let cable = match self.plan.wiring {
            Wiring::None => false,
            Wiring::Wire { .. } | Wiring::Vxlan { .. } => true,
            Wiring::Switch { .. } => self.attached(),
        };
        let on = cable && self.port.state() != LinkState::Down;
        sys::tap_set_carrier(self.tap.get_ref(), on).map_err(|source| NicError::Io {
            what: format!("setting the carrier of {}", self.plan.name),
            source,
        })
    }

    /// Tells the event stream that the link changed (a switch went away
    /// or came back).
    fn link_event(&self, state: LinkState) {
        use vbet_proto::vbet::vm::v1 as pb;
        let _ = self.events.send(pb::Event {
            time_ms: crate::exec::now_ms(),
            kind: Some(pb::event::Kind::LinkChanged(pb::LinkChanged {
                nic: self.plan.index,
                state: state.to_proto() as i32,
            })),
        });
    }

    /// Whether the cable currently reaches its peer.
    pub fn attached(&self) -> bool {
        matches!(self.plan.wiring, Wiring::Vxlan { .. })
            || self.fabric.sock.lock().expect("not poisoned").is_some()
    }
}

/// Starts the relay of a TAP (in the current runtime) and returns its
/// state. For `Wire`, binds the local datagram socket (removing a stale
/// one); for `Switch`, plugs into the switch (and plugs in again whenever
/// the switch goes away and comes back).
pub async fn start(
    tap: Tap,
    events: tokio::sync::broadcast::Sender<vbet_proto::vbet::vm::v1::Event>,
) -> Result<Arc<NicState>, NicError> {
    let io = |what: String| move |source| NicError::Io { what, source };
    let name = tap.plan.name.clone();
    let fd = Arc::new(register_readable(tap.fd).map_err(io(format!("registering {name}")))?);
    let fabric = Arc::new(Fabric {
        remote: match &tap.plan.wiring {
            Wiring::Wire { remote, .. } => Some(remote.clone()),
            _ => None,
        },
        vnet_hdr: tap.plan.offload,
        fast: AtomicBool::new(matches!(tap.plan.wiring, Wiring::Wire { .. })),
        ..Fabric::default()
    });
    let counters: Arc<Counters> = Arc::default();
    let capture = CaptureTap::default();
    let id = tap.plan.index + 1;
    let hdr = if tap.plan.offload {
        sys::VNET_HDR_LEN
    } else {
        0
    };
    let vxlan = match &tap.plan.wiring {
        Wiring::Vxlan { local, remote, vni } => {
            let endpoint = vbet_port::vxlan::Endpoint {
                local: *local,
                remote: *remote,
                vni: *vni,
            };
            let sock = vbet_port::vxlan::VxlanSocket::bind(endpoint)
                .await
                .map_err(io(format!("{name}: binding VXLAN port {local}")))?;
            Some(Arc::new(sock))
        }
        _ => None,
    };
    let inbound: Sink = match &vxlan {
        Some(vxlan) => {
            let vxlan = vxlan.clone();
            Arc::new(move |frame: &[u8]| vxlan.send(frame))
        }
        None => {
            let fabric = fabric.clone();
            Arc::new(move |frame: &[u8]| fabric.send(frame))
        }
    };
    let outbound: Sink = {
        let (tap, counters, capture) = (fd.clone(), counters.clone(), capture.clone());
        Arc::new(
            move |frame: &[u8]| match nix::unistd::write(tap.get_ref(), frame) {
                Ok(_) => {
                    counters.tx(frame.len() - hdr);
                    capture.record(id, Direction::Out, frame.get(hdr..).unwrap_or_default());
                    Delivery::Sent
                }
                Err(nix::errno::Errno::EAGAIN) => Delivery::Busy,
                Err(_) => Delivery::Failed,
            },
        )
    };
    let state = Arc::new(NicState {
        plan: tap.plan,
        port: PortLink::with_header(counters, inbound, outbound, hdr),
        capture,
        tap: fd.clone(),
        fabric: fabric.clone(),
        events,
    });
    match state.plan.wiring.clone() {
        Wiring::None => {}
        Wiring::Wire { local, .. } => {
            let _ = std::fs::remove_file(&local);
            let sock = std::os::unix::net::UnixDatagram::bind(&local)
                .and_then(|sock| {
                    size_buffers(&sock, DATA_BUFFER_BYTES);
                    DataSocket::new(sock)
                })
                .map_err(io(format!("binding wire socket {}", local.display())))?;
            let sock = Arc::new(sock);
            *fabric.sock.lock().expect("not poisoned") = Some(sock.clone());
            tokio::spawn(fabric_to_tap(state.clone(), sock));
        }
        Wiring::Vxlan { .. } => {
            if let Some(vxlan) = vxlan {
                tokio::spawn(vxlan_to_tap(state.clone(), vxlan));
            }
        }
        Wiring::Switch { ctl } => {
            let path = ctl.clone();
            let port =
                tokio::task::spawn_blocking(move || client::connect_as(&path, DataMode::Fast))
                    .await
                    .map_err(|e| NicError::Io {
                        what: "switch connection".into(),
                        source: std::io::Error::other(e),
                    })?
                    .map_err(|source| NicError::Switch {
                        nic: state.plan.index,
                        source,
                    })?;
            let attached = attach(&state, port).map_err(io(format!("{name}: switch port")))?;
            tokio::spawn(switch_port(state.clone(), ctl, attached));
        }
    }
    state.sync_carrier()?;
    tokio::spawn(tap_to_fabric(state.clone(), fd));
    Ok(state)
}

/// Serves one switch port, and plugs in again when the switch goes away.
async fn switch_port(
    state: Arc<NicState>,
    ctl: PathBuf,
    mut attached: (Arc<DataSocket>, tokio::net::UnixStream),
) {
    let name = state.plan.name.clone();
    let mut first = true;
    loop {
        let (data, mut ctl_stream) = attached;
        let _ = state.sync_carrier();
        if !first {
            state.link_event(state.port.state());
        }
        first = false;
        tracing::info!(nic = %name, switch = %ctl.display(), "plugged into the switch");
        let mut byte = [0u8; 1];
        tokio::select! {
            _ = fabric_to_tap(state.clone(), data) => {}
            // Nothing is ever sent on the control connection: EOF (or an
            // error) means the switch is gone.
            _ = tokio::io::AsyncReadExt::read(&mut ctl_stream, &mut byte) => {}
        }
        *state.fabric.sock.lock().expect("not poisoned") = None;
        let _ = state.sync_carrier();
        state.link_event(LinkState::Down);
        tracing::warn!(nic = %name, switch = %ctl.display(), "the switch went away; reconnecting");
        // Plug in again, backing off up to a second between tries.
        let mut wait = Duration::from_millis(50);
        attached = loop {
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(1));
            let path = ctl.clone();
            if let Ok(Ok(port)) =
                tokio::task::spawn_blocking(move || client::connect_as(&path, DataMode::Fast)).await
            {
                match attach(&state, port) {
                    Ok(a) => break a,
                    Err(e) => tracing::warn!(nic = %name, "switch port: {e}"),
                }
            }
        };
    }
}

fn attach(
    state: &NicState,
    port: client::ClientPort,
) -> std::io::Result<(Arc<DataSocket>, tokio::net::UnixStream)> {
    port.ctl.set_nonblocking(true)?;
    let data = Arc::new(DataSocket::new(port.data)?);
    let ctl = tokio::net::UnixStream::from_std(port.ctl)?;
    // The guest hands over 64 KiB TCP segments only while the switch
    // takes them; a plain switch gets what the guest's own stack
    // segmented and checksummed.
    let fast = state.plan.offload && port.mode == DataMode::Fast;
    if state.plan.offload {
        let offloads = if fast { sys::TAP_OFFLOADS } else { 0 };
        sys::tap_set_offload(state.tap.get_ref(), offloads)?;
    }
    state.fabric.fast.store(fast, Ordering::Relaxed);
    tracing::info!(nic = %state.plan.name, fast, "switch port mode");
    *state.fabric.sock.lock().expect("not poisoned") = Some(data.clone());
    Ok((data, ctl))
}

/// The socket paths a NIC creates (removed at teardown).
pub fn socket_paths(plan: &NicPlan) -> Vec<PathBuf> {
    match &plan.wiring {
        Wiring::Wire { local, .. } => vec![local.clone()],
        _ => Vec::new(),
    }
}

/// Reads one packet from the TAP into the thread's receive buffer (shared
/// by every NIC; see [`vbet_port::scratch`]) and runs `f` on it.
async fn read_frame<R>(tap: &AsyncFd<OwnedFd>, f: impl FnOnce(&[u8]) -> R) -> std::io::Result<R> {
    let mut f = Some(f);
    loop {
        let mut guard = tap.readable().await?;
        let done = vbet_port::scratch::with(|buf| {
            match guard.try_io(|fd| nix::unistd::read(fd.get_ref(), buf).map_err(Into::into)) {
                Ok(Ok(n)) => Some(Ok(f.take().expect("runs once")(&buf[..n]))),
                Ok(Err(e)) => Some(Err(e)),
                Err(_would_block) => None,
            }
        });
        if let Some(result) = done {
            return result;
        }
    }
}

/// Frames the guest sends: captured, counted, passed to the port's
/// inbound lane (link state, impairments, then the fabric).
async fn tap_to_fabric(state: Arc<NicState>, tap: Arc<AsyncFd<OwnedFd>>) {
    let id = state.capture_id();
    let hdr = if state.plan.offload {
        sys::VNET_HDR_LEN
    } else {
        0
    };
    loop {
        let read = read_frame(&tap, |packet| {
            state
                .capture
                .record(id, Direction::In, packet.get(hdr..).unwrap_or_default());
            state.port.receive(packet);
        })
        .await;
        match read {
            Ok(()) => {}
            // The TAP is gone: the VM is being torn down.
            Err(e) if e.raw_os_error() == Some(libc::EBADF) => return,
            Err(e) => {
                // A NIC that stops reading its TAP fills the guest's queue
                // (ENOBUFS): log and keep going.
                tracing::warn!(nic = %state.plan.name, error = %e, "reading the TAP failed");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
        }
    }
}

/// Frames from the cable: through the port's outbound lane to the TAP.
/// A fast peer's datagrams are packets already; a plain peer's frames get
/// a plain virtio-net header when the TAP has one.
async fn fabric_to_tap(state: Arc<NicState>, sock: Arc<DataSocket>) {
    let at = if state.plan.offload && !state.fabric.fast.load(Ordering::Relaxed) {
        vnet::HEADER_LEN
    } else {
        0
    };
    let deliver = |buf: &mut [u8], len: usize| {
        buf[..at].fill(0);
        state.port.transmit(&buf[..len]);
    };
    while sock.recv_with(at, deliver).await.is_ok() {}
}

/// Frames from a VXLAN cable: through the port's outbound lane to the TAP.
async fn vxlan_to_tap(state: Arc<NicState>, vxlan: Arc<vbet_port::vxlan::VxlanSocket>) {
    let mut buf = vec![0u8; 65536];
    loop {
        match vxlan.recv(&mut buf).await {
            Ok(Some(frame)) => state.port.transmit(&buf[frame]),
            Ok(None) => {}
            Err(e) => {
                tracing::debug!(nic = %state.plan.name, error = %e, "VXLAN socket error");
                tokio::time::sleep(Duration::from_millis(10)).await;
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
