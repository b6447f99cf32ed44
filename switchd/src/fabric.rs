//! The fabric of one switch or hub: its ports, its MAC table and the
//! forwarding of frames between ports.
//!
//! Inside the fabric every frame travels as a *packet*: a virtio-net
//! header ([`vnet::HEADER_LEN`] bytes) and the frame. Frames from plain
//! ports get a plain (zero) header; fast ports send and receive packets
//! as they are; a packet leaving by a plain port whose header still asks
//! for a checksum or segmentation is turned into ordinary frames there
//! ([`vnet::for_each_plain`]).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use tokio::net::UnixStream;
use tokio::task::AbortHandle;
use vbet_port::capture::{CaptureTap, Direction};
use vbet_port::counters::{Counters, DropReason, accumulate};
use vbet_port::egress::{DEFAULT_BACKLOG, Egress};
use vbet_port::forward::{Destination, Forwarding, decide};
use vbet_port::frame::{Frame, HEADER_LEN, tag_into, untag_into};
use vbet_port::link::{Delivery, PortLink, Sink};
use vbet_port::mac_table::{MacTable, PortId};
use vbet_port::protocol::{DataMode, RawSockAddr, Request};
use vbet_port::server::{bind_private, reclaim_stale};
use vbet_port::snoop::{self, Control, Queriers};
use vbet_port::socket::{DATA_BUFFER_BYTES, DataSocket, PeerCred, size_buffers};
use vbet_port::vlan::{Tagging, VlanConfig};
use vbet_port::vnet::{self, VnetHeader};
use vbet_proto::vbet::port::v1 as pb;

/// Limits and behaviour of a fabric.
#[derive(Debug, Clone)]
pub struct FabricConfig {
    /// Switch or hub.
    pub mode: Forwarding,
    /// Most ports at once.
    pub max_ports: u32,
    /// Largest frame accepted, bytes.
    pub max_frame: usize,
    /// Bound on learned MACs.
    pub mac_capacity: usize,
    /// MAC aging time.
    pub mac_aging: Duration,
    /// Where per-port data sockets are created, as `<prefix>.<port>`.
    pub data_prefix: PathBuf,
    /// Permissions of the data socket files.
    pub socket_mode: u32,
}

/// Counts of misbehaving peers.
#[derive(Debug, Default)]
pub struct ProtocolErrors {
    /// Closed or stalled before a whole request.
    pub short_request: AtomicU64,
    /// Wrong magic.
    pub bad_magic: AtomicU64,
    /// Wrong version.
    pub bad_version: AtomicU64,
    /// Not a "new port" request.
    pub bad_request_type: AtomicU64,
    /// The client's data socket could not be reached.
    pub unreachable_peer: AtomicU64,
    /// Every port taken.
    pub ports_exhausted: AtomicU64,
}

/// One connected port.
#[derive(Debug)]
pub struct SwitchPort {
    /// Its number.
    pub id: PortId,
    /// Who connected (SO_PEERCRED).
    pub peer: PeerCred,
    /// The client's description, if it sent one.
    pub description: String,
    /// The client's data socket address.
    pub peer_addr: RawSockAddr,
    /// Plain version 3, or fast mode with a client of ours.
    pub mode: DataMode,
    /// When it connected.
    pub connected: Instant,
    /// State, impairments, counters.
    pub link: PortLink,
    /// 802.1Q configuration.
    pub vlan: RwLock<VlanConfig>,
    data_path: Option<PathBuf>,
    tasks: Mutex<Vec<AbortHandle>>,
}

/// Who is at the other end of a new port.
struct Client {
    cred: PeerCred,
    description: String,
    addr: RawSockAddr,
    mode: DataMode,
}

/// Why a port could not be added.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    /// Every port is taken.
    #[error("all {0} ports are in use")]
    Exhausted(u32),
    /// The data socket could not be created.
    #[error("cannot create data socket {path}")]
    DataSocket {
        /// Its path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The client's data socket could not be reached.
    #[error("cannot reach the client's data socket {addr}")]
    Unreachable {
        /// The client's address.
        addr: RawSockAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// A switch or hub.
#[derive(Debug)]
pub struct Fabric {
    config: FabricConfig,
    ports: RwLock<BTreeMap<PortId, Arc<SwitchPort>>>,
    table: Mutex<MacTable>,
    queriers: Mutex<Queriers>,
    capture: CaptureTap,
    retired: Mutex<pb::Counters>,
    /// Handshake and peer errors, by kind.
    pub errors: ProtocolErrors,
    started: Instant,
}

impl Fabric {
    /// An empty fabric.
    pub fn new(config: FabricConfig) -> Arc<Fabric> {
        Arc::new(Fabric {
            table: Mutex::new(MacTable::new(config.mac_capacity, config.mac_aging)),
            queriers: Mutex::default(),
            config,
            ports: RwLock::default(),
            capture: CaptureTap::default(),
            retired: Mutex::default(),
            errors: ProtocolErrors::default(),
            started: Instant::now(),
        })
    }

    /// Its configuration.
    pub fn config(&self) -> &FabricConfig {
        &self.config
    }

    /// Time since it started.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// The capture fan-out of every port.
    pub fn capture(&self) -> &CaptureTap {
        &self.capture
    }

    /// The connected ports, by number.
    pub fn ports(&self) -> Vec<Arc<SwitchPort>> {
        self.ports
            .read()
            .expect("ports poisoned")
            .values()
            .cloned()
            .collect()
    }

    /// One port.
    pub fn port(&self, id: PortId) -> Option<Arc<SwitchPort>> {
        self.ports.read().expect("ports poisoned").get(&id).cloned()
    }

    /// The MAC table, locked.
    pub fn mac_table(&self) -> std::sync::MutexGuard<'_, MacTable> {
        self.table.lock().expect("MAC table poisoned")
    }

    /// Counters summed over every port, including ports that are gone.
    pub fn totals(&self) -> pb::Counters {
        let mut total = *self.retired.lock().expect("totals poisoned");
        for port in self.ports() {
            accumulate(&mut total, &port.link.counters().snapshot());
        }
        total
    }

    fn data_path(&self, id: PortId) -> PathBuf {
        let mut path = self.config.data_prefix.clone().into_os_string();
        path.push(format!(".{id}"));
        path.into()
    }

    fn free_id(&self, requested: Option<u32>) -> Option<PortId> {
        let ports = self.ports.read().expect("ports poisoned");
        let in_range = |id: &u32| (1..=self.config.max_ports).contains(id);
        requested
            .filter(|id| in_range(id) && !ports.contains_key(id))
            .or_else(|| (1..=self.config.max_ports).find(|id| !ports.contains_key(id)))
    }

    /// Makes a port for a client that sent `request`: binds its data
    /// socket, connects it to the client, and starts moving frames.
    /// Returns the port and the address to reply with; hand the control
    /// connection to [`Fabric::watch_control`] once the reply is sent.
    pub fn add_port(
        self: &Arc<Self>,
        request: &Request,
        peer: PeerCred,
    ) -> Result<(Arc<SwitchPort>, RawSockAddr), PortError> {
        let id = self
            .free_id(request.requested_port)
            .ok_or(PortError::Exhausted(self.config.max_ports))?;
        let data_path = self.data_path(id);
        let data_err = |source| PortError::DataSocket {
            path: data_path.clone(),
            source,
        };
        if reclaim_stale(&data_path).is_err() {
            let _ = std::fs::remove_file(&data_path);
        }
        let data = bind_private(&data_path, self.config.socket_mode, |p| {
            std::os::unix::net::UnixDatagram::bind(p)
        })
        .map_err(data_err)?;
        let reply = RawSockAddr::pathname(&data_path).map_err(|e| {
            let _ = std::fs::remove_file(&data_path);
            data_err(std::io::Error::new(std::io::ErrorKind::InvalidInput, e))
        })?;
        // Fast mode when the client offers it and the path leaves room
        // for the marker in the reply.
        let (reply, mode) = match reply.with_fast_marker() {
            Some(marked) if request.data_addr.offers_fast() => (marked, DataMode::Fast),
            _ => (reply, DataMode::Plain),
        };
        let connected = request
            .data_addr
            .to_socket_addr()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))
            .and_then(|addr| data.connect_addr(&addr))
            .and_then(|()| data.set_nonblocking(true));
        if let Err(source) = connected {
            let _ = std::fs::remove_file(&data_path);
            return Err(PortError::Unreachable {
                addr: request.data_addr,
                source,
            });
        }
        size_buffers(&data, DATA_BUFFER_BYTES);
        let data = Arc::new(DataSocket::new(data).map_err(data_err)?);

        let client = Client {
            cred: peer,
            description: request.description.clone(),
            addr: request.data_addr,
            mode,
        };
        let port = self.attach(id, client, data, Some(data_path));
        Ok((port, reply))
    }

    /// Makes port `id` of a connected data socket and starts moving its
    /// frames.
    fn attach(
        self: &Arc<Self>,
        id: PortId,
        client: Client,
        data: Arc<DataSocket>,
        data_path: Option<PathBuf>,
    ) -> Arc<SwitchPort> {
        let Client {
            cred: peer,
            description,
            addr: peer_addr,
            mode,
        } = client;
        let counters: Arc<Counters> = Arc::default();
        let inbound: Sink = {
            let fabric = Arc::downgrade(self);
            Arc::new(move |frame: &[u8]| {
                if let Some(fabric) = Weak::upgrade(&fabric) {
                    fabric.forward(id, frame);
                }
                Delivery::Sent
            })
        };
        let outbound: Sink = match mode {
            DataMode::Fast => {
                let egress = Egress::with_header(
                    data.clone(),
                    counters.clone(),
                    DEFAULT_BACKLOG,
                    vnet::HEADER_LEN,
                );
                Arc::new(move |packet: &[u8]| egress.send(packet))
            }
            DataMode::Plain => {
                let egress = Egress::new(data.clone(), counters.clone(), DEFAULT_BACKLOG);
                let counters = counters.clone();
                Arc::new(move |packet: &[u8]| send_plain(&egress, &counters, packet))
            }
        };
        let port = Arc::new(SwitchPort {
            id,
            peer,
            description,
            peer_addr,
            connected: Instant::now(),
            mode,
            link: PortLink::with_header(counters, inbound, outbound, vnet::HEADER_LEN),
            vlan: RwLock::default(),
            data_path,
            tasks: Mutex::default(),
        });
        self.ports
            .write()
            .expect("ports poisoned")
            .insert(id, port.clone());
        let receive = tokio::spawn(receive_frames(Arc::downgrade(self), port.clone(), data));
        port.tasks
            .lock()
            .expect("tasks poisoned")
            .push(receive.abort_handle());
        port
    }

    /// Plugs this switch into another one as a client (a switch-to-switch
    /// cable, "uplink"): the other switch's port becomes a port here.
    pub fn add_uplink(
        self: &Arc<Self>,
        client: vbet_port::client::ClientPort,
    ) -> Result<(Arc<SwitchPort>, UnixStream), PortError> {
        let id = self
            .free_id(None)
            .ok_or(PortError::Exhausted(self.config.max_ports))?;
        let data_err = |source| PortError::DataSocket {
            path: client.ctl_path.clone(),
            source,
        };
        client.data.set_nonblocking(true).map_err(data_err)?;
        client.ctl.set_nonblocking(true).map_err(data_err)?;
        size_buffers(&client.data, DATA_BUFFER_BYTES);
        let data = Arc::new(DataSocket::new(client.data).map_err(data_err)?);
        let ctl = UnixStream::from_std(client.ctl).map_err(data_err)?;
        let description = format!("uplink to {}", client.ctl_path.display());
        let peer = Client {
            cred: PeerCred::default(),
            description,
            addr: client.switch_addr,
            mode: client.mode,
        };
        let port = self.attach(id, peer, data, None);
        Ok((port, ctl))
    }

    /// Adds a trunk to another host over VXLAN: a port whose frames go to
    /// the socket's remote end and come from it.
    pub fn add_vxlan(
        self: &Arc<Self>,
        vxlan: vbet_port::vxlan::VxlanSocket,
    ) -> Result<Arc<SwitchPort>, PortError> {
        let id = self
            .free_id(None)
            .ok_or(PortError::Exhausted(self.config.max_ports))?;
        let endpoint = vxlan.endpoint();
        let vxlan = Arc::new(vxlan);
        let counters: Arc<Counters> = Arc::default();
        let inbound: Sink = {
            let fabric = Arc::downgrade(self);
            Arc::new(move |frame: &[u8]| {
                if let Some(fabric) = Weak::upgrade(&fabric) {
                    fabric.forward(id, frame);
                }
                Delivery::Sent
            })
        };
        // A VXLAN trunk carries plain frames: a superframe leaves it
        // segmented.
        let outbound: Sink = {
            let (vxlan, counters) = (vxlan.clone(), counters.clone());
            Arc::new(move |packet: &[u8]| {
                deliver_plain(packet, &counters, |frame| {
                    let sent = vxlan.send(frame);
                    if sent == Delivery::Sent {
                        counters.tx(frame.len());
                    }
                    sent
                })
            })
        };
        let port = Arc::new(SwitchPort {
            id,
            peer: PeerCred::default(),
            description: format!("vxlan to {} vni {}", endpoint.remote, endpoint.vni),
            peer_addr: RawSockAddr::abstract_name(format!("vxlan:{}", endpoint.remote).as_bytes()),
            mode: DataMode::Plain,
            connected: Instant::now(),
            link: PortLink::with_header(counters, inbound, outbound, vnet::HEADER_LEN),
            vlan: RwLock::default(),
            data_path: None,
            tasks: Mutex::default(),
        });
        self.ports
            .write()
            .expect("ports poisoned")
            .insert(id, port.clone());
        let receive = tokio::spawn(receive_vxlan(Arc::downgrade(self), port.clone(), vxlan));
        port.tasks
            .lock()
            .expect("tasks poisoned")
            .push(receive.abort_handle());
        Ok(port)
    }

    /// Keeps port `id` as long as its control connection stays open.
    pub fn watch_control(self: &Arc<Self>, id: PortId, ctl: UnixStream) {
        let Some(port) = self.port(id) else { return };
        let watch = tokio::spawn(watch_control(Arc::downgrade(self), id, ctl));
        port.tasks
            .lock()
            .expect("tasks poisoned")
            .push(watch.abort_handle());
    }

    /// Removes a port: its frames stop, its MACs are forgotten, its data
    /// socket file is removed.
    pub fn remove_port(&self, id: PortId) {
        let Some(port) = self.ports.write().expect("ports poisoned").remove(&id) else {
            return;
        };
        self.mac_table().remove_port(id);
        self.queriers
            .lock()
            .expect("queriers poisoned")
            .remove_port(id);
        for task in port.tasks.lock().expect("tasks poisoned").drain(..) {
            task.abort();
        }
        accumulate(
            &mut self.retired.lock().expect("totals poisoned"),
            &port.link.counters().snapshot(),
        );
        if let Some(path) = &port.data_path {
            let _ = std::fs::remove_file(path);
        }
        tracing::info!(port = id, "port closed");
    }

    /// Removes every port (at shutdown).
    pub fn remove_all(&self) {
        let ids: Vec<PortId> = self.ports().iter().map(|p| p.id).collect();
        for id in ids {
            self.remove_port(id);
        }
    }

    /// Forwards a packet (virtio-net header and frame) that came in on
    /// port `ingress` (and passed its inbound impairments).
    pub fn forward(&self, ingress: PortId, packet: &[u8]) {
        let Some(header) = VnetHeader::parse(packet) else {
            return;
        };
        let Ok(frame) = Frame::new_checked(&packet[vnet::HEADER_LEN..]) else {
            return;
        };
        let ports = self.ports.read().expect("ports poisoned");
        let Some(in_port) = ports.get(&ingress) else {
            return;
        };
        let Some(vlan) = in_port.vlan.read().expect("vlan poisoned").classify(&frame) else {
            return in_port.link.counters().dropped(DropReason::Vlan);
        };
        let now = Instant::now();
        let destination = decide(
            self.config.mode,
            &mut self.mac_table(),
            ingress,
            vlan,
            &frame,
            now,
        );
        // A switch steers membership reports to querier ports (a hub
        // repeats everything).
        let control = match self.config.mode {
            Forwarding::Switch => snoop::classify(&frame),
            Forwarding::Hub => None,
        };
        let solicitation =
            self.config.mode == Forwarding::Switch && frame.dst().0 == snoop::ALL_ROUTERS_MAC;
        let queriers = match control {
            Some(Control::Query) => {
                let mut q = self.queriers.lock().expect("queriers poisoned");
                q.heard(vlan, ingress, now);
                None
            }
            Some(Control::Report(said)) => {
                let mut q = self.queriers.lock().expect("queriers poisoned");
                if let Some(said) = said {
                    q.all_routers(vlan, ingress, said);
                }
                Some(q)
            }
            None if solicitation => Some(self.queriers.lock().expect("queriers poisoned")),
            None => None,
        };
        match destination {
            Destination::Filter => {}
            Destination::Port(id) => {
                if let Some(out) = ports.get(&id) {
                    self.emit(out, vlan, packet, &header, &frame);
                }
            }
            Destination::Flood => {
                for out in ports.values().filter(|p| p.id != ingress) {
                    let wanted = match &queriers {
                        None => true,
                        Some(q) if solicitation => q.wants_all_routers(vlan, out.id, now),
                        Some(q) => q.leads_to_querier(vlan, out.id, now),
                    };
                    if !wanted {
                        continue;
                    }
                    self.emit(out, vlan, packet, &header, &frame);
                }
            }
        }
    }

    fn emit(
        &self,
        out: &SwitchPort,
        vlan: u16,
        packet: &[u8],
        header: &VnetHeader,
        frame: &Frame<'_>,
    ) {
        let egress = out.vlan.read().expect("vlan poisoned").egress(vlan);
        let mut scratch = Vec::new();
        let mut retag = |header: VnetHeader, write: &dyn Fn(&mut Vec<u8>)| {
            let mut body = Vec::with_capacity(frame.as_bytes().len() + 4);
            write(&mut body);
            scratch.clear();
            scratch.extend_from_slice(&header.encode());
            scratch.extend_from_slice(&body);
        };
        let bytes = match egress {
            Tagging::Blocked => return,
            Tagging::Untagged if frame.vlan().is_none() => packet,
            Tagging::Untagged => {
                retag(header.shifted(-4), &|out| untag_into(frame, out));
                &scratch
            }
            Tagging::Tagged => {
                let delta = if frame.vlan().is_some() { 0 } else { 4 };
                retag(header.shifted(delta), &|out| tag_into(frame, vlan, out));
                &scratch
            }
        };
        self.capture
            .record(out.id, Direction::Out, &bytes[vnet::HEADER_LEN..]);
        let tagged_gso = VnetHeader::parse(bytes).is_some_and(|h| h.gso_type != vnet::GSO_NONE)
            && Frame::new_checked(&bytes[vnet::HEADER_LEN..]).is_ok_and(|f| f.vlan().is_some());
        if tagged_gso && out.mode == DataMode::Fast {
            // A TAP refuses a GSO frame behind an 802.1Q tag: segment it
            // here and send the pieces with plain headers.
            let plain = VnetHeader::PLAIN.encode();
            let mut piece = Vec::new();
            let done = vnet::for_each_plain(bytes, &mut Vec::new(), |frame| {
                piece.clear();
                piece.extend_from_slice(&plain);
                piece.extend_from_slice(frame);
                out.link.transmit(&piece);
            });
            if done.is_err() {
                out.link.counters().dropped(DropReason::Offload);
            }
            return;
        }
        out.link.transmit(bytes);
    }
}

/// Sends a packet to a plain port: the frame as it is when its header is
/// plain, else the ordinary frames it stands for (checksum completed, TCP
/// segmented).
fn send_plain(egress: &Egress, counters: &Counters, packet: &[u8]) -> Delivery {
    deliver_plain(packet, counters, |frame| egress.send(frame))
}

/// Hands `send` the plain frames a packet stands for (see [`send_plain`]).
fn deliver_plain(
    packet: &[u8],
    counters: &Counters,
    mut send: impl FnMut(&[u8]) -> Delivery,
) -> Delivery {
    match VnetHeader::parse(packet) {
        Some(header) if header.is_plain() => send(&packet[vnet::HEADER_LEN..]),
        _ => {
            let mut delivery = Delivery::Sent;
            let done = vnet::for_each_plain(packet, &mut Vec::new(), |frame| {
                if send(frame) != Delivery::Sent {
                    delivery = Delivery::Busy;
                }
            });
            match done {
                Ok(_) => delivery,
                Err(e) => {
                    tracing::debug!(error = %e, "dropped a packet a plain port cannot take");
                    counters.dropped(DropReason::Offload);
                    Delivery::Sent
                }
            }
        }
    }
}

/// The largest datagram a fast port may send: a virtio-net header, an
/// Ethernet header with two tags and a 64 KiB IP packet.
const FAST_MAX: usize = vnet::HEADER_LEN + 22 + 65535;

/// Reads the frames a port's client sends until the port is removed. A
/// plain frame is read behind room for a plain header; a fast port's
/// datagram is a packet already. Reads go to the thread's one receive
/// buffer, shared by every port.
async fn receive_frames(fabric: Weak<Fabric>, port: Arc<SwitchPort>, data: Arc<DataSocket>) {
    let Some(max_frame) = fabric.upgrade().map(|f| f.config.max_frame) else {
        return;
    };
    let fast = port.mode == DataMode::Fast;
    let at = if fast { 0 } else { vnet::HEADER_LEN };
    loop {
        let received = data
            .recv_with(at, |buf, len| {
                let Some(fabric) = fabric.upgrade() else {
                    return false;
                };
                if let Some(packet) = admit(&port, fast, max_frame, &mut buf[..len]) {
                    fabric
                        .capture
                        .record(port.id, Direction::In, &packet[vnet::HEADER_LEN..]);
                    port.link.receive(packet);
                }
                true
            })
            .await;
        match received {
            Ok(true) => {}
            // The fabric is gone.
            Ok(false) => return,
            Err(e) => {
                tracing::debug!(port = port.id, error = %e, "data socket error");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Checks a packet read from a port (virtio-net header and frame): runts
/// and oversize frames are counted and dropped; a plain frame gets its
/// plain header. Returns the packet to forward.
fn admit<'a>(
    port: &SwitchPort,
    fast: bool,
    max_frame: usize,
    packet: &'a mut [u8],
) -> Option<&'a [u8]> {
    let counters = port.link.counters();
    let len = packet.len();
    let frame_len = len.saturating_sub(vnet::HEADER_LEN);
    let dropped = |reason| {
        counters.rx(frame_len);
        counters.dropped(reason);
        None
    };
    if len < vnet::HEADER_LEN + HEADER_LEN {
        return dropped(DropReason::Runt);
    }
    if fast {
        let gso = packet[1] != vnet::GSO_NONE;
        if (gso && len > FAST_MAX) || (!gso && frame_len > max_frame) {
            return dropped(DropReason::Oversize);
        }
    } else {
        if frame_len > max_frame {
            return dropped(DropReason::Oversize);
        }
        packet[..vnet::HEADER_LEN].fill(0);
    }
    Some(packet)
}

/// Moves the frames of a VXLAN trunk into the fabric, as
/// [`receive_frames`] does for a datagram port.
async fn receive_vxlan(
    fabric: Weak<Fabric>,
    port: Arc<SwitchPort>,
    vxlan: Arc<vbet_port::vxlan::VxlanSocket>,
) {
    let mut buf = vec![0u8; 65536];
    let mut packet = Vec::with_capacity(vnet::HEADER_LEN + 2048);
    let counters = port.link.counters().clone();
    let Some(max_frame) = fabric.upgrade().map(|f| f.config.max_frame) else {
        return;
    };
    loop {
        let frame = match vxlan.recv(&mut buf).await {
            Ok(Some(frame)) => frame,
            Ok(None) => continue,
            Err(e) => {
                tracing::debug!(port = port.id, error = %e, "VXLAN socket error");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let frame = &buf[frame];
        if frame.len() < HEADER_LEN || frame.len() > max_frame {
            counters.rx(frame.len());
            counters.dropped(if frame.len() < HEADER_LEN {
                DropReason::Runt
            } else {
                DropReason::Oversize
            });
            continue;
        }
        let Some(fabric) = fabric.upgrade() else {
            return;
        };
        fabric.capture.record(port.id, Direction::In, frame);
        // Inside the fabric a frame travels behind a (plain) virtio-net
        // header.
        packet.clear();
        packet.extend_from_slice(&VnetHeader::PLAIN.encode());
        packet.extend_from_slice(frame);
        port.link.receive(&packet);
    }
}

/// Waits for the client to close its control connection, then removes
/// its port. Nothing else is ever read from it.
async fn watch_control(fabric: Weak<Fabric>, id: PortId, ctl: UnixStream) {
    let mut buf = [0u8; 256];
    loop {
        if ctl.readable().await.is_err() {
            break;
        }
        match ctl.try_read(&mut buf) {
            Ok(0) => break,
            Ok(n) => tracing::debug!(
                port = id,
                bytes = n,
                "ignored bytes on a control connection"
            ),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(_) => break,
        }
    }
    if let Some(fabric) = fabric.upgrade() {
        fabric.remove_port(id);
    }
}
