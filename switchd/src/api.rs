//! The `Switch` gRPC service over a [`Fabric`].

use std::collections::HashMap;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use vbet_port::capture::{Captured, PcapEncoder};
use vbet_port::impair::Impairment;
use vbet_port::link::LinkState;
use vbet_port::mac_table::PortId;
use vbet_port::vlan::VlanConfig;
use vbet_proto::vbet::port::v1 as port_pb;
use vbet_proto::vbet::switch::v1 as pb;
use vbet_proto::vbet::switch::v1::switch_server::Switch;

use crate::fabric::{Fabric, SwitchPort};

/// Frames encoded into one chunk of a capture stream at most.
const FRAMES_PER_CHUNK: usize = 64;

struct FileCapture {
    path: PathBuf,
    port: PortId,
    frames: Arc<AtomicU64>,
    stop: oneshot::Sender<()>,
    done: tokio::task::JoinHandle<()>,
}

/// The gRPC face of one switch or hub.
pub struct SwitchService {
    fabric: Arc<Fabric>,
    ctl_path: PathBuf,
    next_capture: AtomicU64,
    file_captures: Mutex<HashMap<u64, FileCapture>>,
}

impl SwitchService {
    /// Serves `fabric`, whose control socket is `ctl_path`.
    pub fn new(fabric: Arc<Fabric>, ctl_path: PathBuf) -> SwitchService {
        SwitchService {
            fabric,
            ctl_path,
            next_capture: AtomicU64::new(1),
            file_captures: Mutex::default(),
        }
    }

    /// Stops every file capture, flushing its file (at shutdown).
    pub async fn stop_file_captures(&self) {
        let captures: Vec<FileCapture> = self
            .file_captures
            .lock()
            .expect("captures poisoned")
            .drain()
            .map(|(_, c)| c)
            .collect();
        for capture in captures {
            let _ = capture.stop.send(());
            let _ = capture.done.await;
        }
    }

    fn port_message(&self, port: &SwitchPort, now: Instant) -> pb::Port {
        let vlan = port.vlan.read().expect("vlan poisoned").clone();
        pb::Port {
            id: port.id,
            peer_pid: port.peer.pid,
            peer_uid: port.peer.uid,
            peer_gid: port.peer.gid,
            description: port.description.clone(),
            peer_address: port.peer_addr.to_string(),
            state: port.link.state().to_proto() as i32,
            ingress: Some(port.link.inbound.impairment().to_proto()),
            egress: Some(port.link.outbound.impairment().to_proto()),
            vlan: Some(pb::Vlan {
                access: u32::from(vlan.access),
                trunk: vlan.trunk.iter().map(|v| u32::from(*v)).collect(),
            }),
            counters: Some(port.link.counters().snapshot()),
            macs: self
                .fabric
                .mac_table()
                .macs_of(port.id, now)
                .iter()
                .map(ToString::to_string)
                .collect(),
            age_ms: now.duration_since(port.connected).as_millis() as u64,
            fast: port.mode == vbet_port::protocol::DataMode::Fast,
        }
    }

    fn check_port(&self, port: PortId) -> Result<(), Status> {
        if port != 0 && self.fabric.port(port).is_none() {
            return Err(Status::not_found(format!("no port {port} on this switch")));
        }
        Ok(())
    }
}

/// Receives the next frame of a capture, skipping over frames a slow
/// listener missed. `None` when the fabric is gone.
async fn next_frame(rx: &mut broadcast::Receiver<Captured>) -> Option<Captured> {
    loop {
        match rx.recv().await {
            Ok(frame) => return Some(frame),
            Err(broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(missed = n, "capture listener fell behind");
            }
            Err(broadcast::error::RecvError::Closed) => return None,
        }
    }
}

type CaptureStream = Pin<Box<dyn Stream<Item = Result<port_pb::PcapChunk, Status>> + Send>>;

#[tonic::async_trait]
impl Switch for SwitchService {
    async fn get_info(
        &self,
        _: Request<pb::GetInfoRequest>,
    ) -> Result<Response<pb::SwitchInfo>, Status> {
        let e = &self.fabric.errors;
        let (entries, capacity) = {
            let table = self.fabric.mac_table();
            (table.len() as u32, table.capacity() as u32)
        };
        let config = self.fabric.config();
        Ok(Response::new(pb::SwitchInfo {
            kind: config.mode.name().to_owned(),
            ctl_path: self.ctl_path.display().to_string(),
            uptime_ms: self.fabric.uptime().as_millis() as u64,
            ports: self.fabric.ports().len() as u32,
            max_ports: config.max_ports,
            mac_entries: entries,
            mac_capacity: capacity,
            totals: Some(self.fabric.totals()),
            protocol_errors: Some(pb::ProtocolErrors {
                short_request: e.short_request.load(Relaxed),
                bad_magic: e.bad_magic.load(Relaxed),
                bad_version: e.bad_version.load(Relaxed),
                bad_request_type: e.bad_request_type.load(Relaxed),
                unreachable_peer: e.unreachable_peer.load(Relaxed),
                ports_exhausted: e.ports_exhausted.load(Relaxed),
                stray_datagrams: 0,
            }),
            pid: std::process::id(),
        }))
    }

    async fn list_ports(
        &self,
        _: Request<pb::ListPortsRequest>,
    ) -> Result<Response<pb::ListPortsResponse>, Status> {
        let now = Instant::now();
        let ports = self
            .fabric
            .ports()
            .iter()
            .map(|p| self.port_message(p, now))
            .collect();
        Ok(Response::new(pb::ListPortsResponse { ports }))
    }

    async fn get_mac_table(
        &self,
        _: Request<pb::GetMacTableRequest>,
    ) -> Result<Response<pb::MacTable>, Status> {
        let table = self.fabric.mac_table();
        let entries = table
            .entries(Instant::now())
            .into_iter()
            .map(|e| pb::MacEntry {
                mac: e.mac.to_string(),
                vlan: u32::from(e.vlan),
                port: e.port,
                idle_ms: e.idle.as_millis() as u64,
            })
            .collect();
        Ok(Response::new(pb::MacTable {
            entries,
            capacity: table.capacity() as u32,
            aging_ms: table.aging().as_millis() as u64,
        }))
    }

    async fn set_port(
        &self,
        request: Request<pb::SetPortRequest>,
    ) -> Result<Response<pb::Port>, Status> {
        let req = request.into_inner();
        let port = self
            .fabric
            .port(req.id)
            .ok_or_else(|| Status::not_found(format!("no port {} on this switch", req.id)))?;
        // Check everything before changing anything.
        let bad = |what: &str, e: &dyn std::fmt::Display| {
            Status::invalid_argument(format!("port {}: {what}: {e}", req.id))
        };
        let ingress = req
            .ingress
            .as_ref()
            .map(Impairment::from_proto)
            .transpose()
            .map_err(|e| bad("ingress impairment", &e))?;
        let egress = req
            .egress
            .as_ref()
            .map(Impairment::from_proto)
            .transpose()
            .map_err(|e| bad("egress impairment", &e))?;
        let vlan = req
            .vlan
            .as_ref()
            .map(|v| VlanConfig::new(v.access, &v.trunk))
            .transpose()
            .map_err(|e| bad("vlan", &e))?;
        let state = req
            .state
            .map(|s| {
                port_pb::LinkState::try_from(s)
                    .map_err(|_| bad("state", &format!("unknown link state {s}")))
            })
            .transpose()?;

        if let Some(state) = state {
            let state = LinkState::from_proto(state);
            port.link.set_state(state);
            tracing::info!(port = req.id, ?state, "link state set");
        }
        if let Some(imp) = ingress {
            tracing::info!(port = req.id, ?imp, "ingress impairment set");
            port.link.inbound.set_impairment(imp);
        }
        if let Some(imp) = egress {
            tracing::info!(port = req.id, ?imp, "egress impairment set");
            port.link.outbound.set_impairment(imp);
        }
        if let Some(vlan) = vlan {
            *port.vlan.write().expect("vlan poisoned") = vlan;
            self.fabric.mac_table().remove_port(port.id);
        }
        Ok(Response::new(self.port_message(&port, Instant::now())))
    }

    type CaptureStream = CaptureStream;

    async fn capture(
        &self,
        request: Request<pb::CaptureRequest>,
    ) -> Result<Response<Self::CaptureStream>, Status> {
        let req = request.into_inner();
        self.check_port(req.port)?;
        let mut rx = self.fabric.capture().subscribe();
        let (tx, out) = mpsc::channel(16);
        tokio::spawn(async move {
            let mut encoder = PcapEncoder::new(req.snaplen);
            let header = port_pb::PcapChunk {
                data: encoder.take(),
            };
            if tx.send(Ok(header)).await.is_err() {
                return;
            }
            loop {
                tokio::select! {
                    frame = next_frame(&mut rx) => {
                        let Some(frame) = frame else { return };
                        if frame.matches(req.port) {
                            encoder.push(&frame);
                        }
                        for _ in 1..FRAMES_PER_CHUNK {
                            match rx.try_recv() {
                                Ok(frame) if frame.matches(req.port) => encoder.push(&frame),
                                Ok(_) | Err(broadcast::error::TryRecvError::Lagged(_)) => {}
                                Err(_) => break,
                            }
                        }
                        let data = encoder.take();
                        if !data.is_empty() && tx.send(Ok(port_pb::PcapChunk { data })).await.is_err() {
                            return;
                        }
                    }
                    () = tx.closed() => return,
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(out))))
    }

    async fn start_file_capture(
        &self,
        request: Request<pb::StartFileCaptureRequest>,
    ) -> Result<Response<pb::FileCapture>, Status> {
        let req = request.into_inner();
        self.check_port(req.port)?;
        let path = PathBuf::from(&req.path);
        let file = std::fs::File::create(&path).map_err(|e| {
            Status::failed_precondition(format!(
                "cannot create capture file {}: {e}",
                path.display()
            ))
        })?;
        let mut rx = self.fabric.capture().subscribe();
        let (stop, mut stopped) = oneshot::channel();
        let frames = Arc::new(AtomicU64::new(0));
        let counted = frames.clone();
        let port = req.port;
        let done = tokio::spawn(async move {
            let mut out = BufWriter::new(file);
            let mut encoder = PcapEncoder::new(req.snaplen);
            let _ = out.write_all(&encoder.take());
            let _ = out.flush();
            loop {
                tokio::select! {
                    frame = next_frame(&mut rx) => {
                        let Some(frame) = frame else { break };
                        if frame.matches(port) {
                            encoder.push(&frame);
                            counted.fetch_add(1, Relaxed);
                            if out.write_all(&encoder.take()).is_err() {
                                break;
                            }
                        }
                        if rx.is_empty() {
                            let _ = out.flush();
                        }
                    }
                    _ = &mut stopped => break,
                }
            }
            let _ = out.flush();
        });
        let id = self.next_capture.fetch_add(1, Relaxed);
        tracing::info!(id, port, path = %path.display(), "file capture started");
        self.file_captures
            .lock()
            .expect("captures poisoned")
            .insert(
                id,
                FileCapture {
                    path: path.clone(),
                    port,
                    frames,
                    stop,
                    done,
                },
            );
        Ok(Response::new(pb::FileCapture {
            id,
            path: req.path,
            port,
            frames: 0,
        }))
    }

    async fn stop_file_capture(
        &self,
        request: Request<pb::StopFileCaptureRequest>,
    ) -> Result<Response<pb::FileCapture>, Status> {
        let id = request.into_inner().id;
        let capture = self
            .file_captures
            .lock()
            .expect("captures poisoned")
            .remove(&id)
            .ok_or_else(|| Status::not_found(format!("no file capture {id}")))?;
        let _ = capture.stop.send(());
        let _ = capture.done.await;
        Ok(Response::new(pb::FileCapture {
            id,
            path: capture.path.display().to_string(),
            port: capture.port,
            frames: capture.frames.load(Relaxed),
        }))
    }
}
