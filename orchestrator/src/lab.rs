//! The labs an orchestrator holds, and what it does to them: deploy
//! (validate, plan, start, wait for readiness, roll back on failure),
//! destroy, inspect, and link control.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use futures::future::join_all;
use tokio::sync::{Mutex, mpsc};
use vbet_proto::vbet::orchestrator::v1 as pb;
use vbet_proto::vbet::port::v1 as port_pb;
use vbet_proto::vbet::switch::v1 as sw_pb;
use vbet_proto::vbet::switch::v1::switch_client::SwitchClient;
use vbet_proto::vbet::vm::v1 as vm_pb;
use vbet_proto::vbet::vm::v1::vm_monitor_client::VmMonitorClient;

use crate::layout::{Layout, check_lab_name};
use crate::plan::{CablePlan, Plan, PlanError, Readiness, SwitchPlan, VmPlan, plan_part};
use crate::process::{
    is_alive, is_ours, log_tail, spawn_detached, spawn_detached_with, terminate, wait_gone,
};
use crate::state::{CableRecord, LabRecord, LabState, SwitchRecord, VmRecord};

/// How long a switch may take to serve its API.
const SWITCH_START: Duration = Duration::from_secs(10);
/// How long a VM may take to boot.
const VM_START: Duration = Duration::from_secs(60);
/// How long a service may take to be ready.
const SERVICE_READY: Duration = Duration::from_secs(60);
/// How often the components of running labs are checked.
const WATCH_INTERVAL: Duration = Duration::from_millis(250);
/// How many times a node's monitor is started again at most.
const MAX_RESTARTS: u32 = 20;
/// How long a VM gets to shut down before it is killed.
const VM_STOP: Duration = Duration::from_secs(5);

/// Why a lab operation failed. Messages are for the user.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// The topology is not valid (the rendered diagnostics).
    #[error("{0}")]
    Invalid(String),
    /// The topology cannot be planned.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// A lab of that name exists.
    #[error(
        "lab {0} already exists; remove it with `vbet down {0}` or choose another name with --name"
    )]
    Exists(String),
    /// No lab of that name.
    #[error("no lab named {0} (see `vbet ls`)")]
    NotFound(String),
    /// A bad lab name.
    #[error("{0}")]
    BadName(String),
    /// A component failed to start or become ready; the lab was rolled back.
    #[error("{component}: {reason}")]
    Component {
        /// The switch or node.
        component: String,
        /// What went wrong.
        reason: String,
    },
    /// A link target that names nothing.
    #[error("lab {lab}: {reason}")]
    Target {
        /// The lab.
        lab: String,
        /// What is wrong with the target.
        reason: String,
    },
    /// Files of the lab could not be written.
    #[error("cannot write {path}")]
    Io {
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Destroy finished, but some things could not be removed.
    #[error("lab {lab} was removed, but: {problems}")]
    Teardown {
        /// The lab.
        lab: String,
        /// What could not be removed.
        problems: String,
    },
}

mod multihost;

pub use multihost::HostPart;
use multihost::part_placement;

/// Where a node runs.
#[derive(Debug, Clone)]
pub enum Located {
    /// Here: its monitor's API socket.
    Here(PathBuf),
    /// On the peer of that name.
    Peer(String),
}

/// Where a topology to deploy comes from.
#[derive(Debug, Clone)]
pub enum TopologySource {
    /// A file on this host.
    Path(PathBuf),
    /// Text sent with the files it uses.
    Bundle(vbet_topology::Bundle),
}

/// Progress reports of a deploy or destroy.
pub type ProgressTx = mpsc::Sender<pb::Progress>;

/// Holds labs and runs their components.
#[derive(Debug)]
pub struct Orchestrator {
    layout: Layout,
    bin_dir: PathBuf,
    labs: Mutex<BTreeMap<String, LabRecord>>,
    events: tokio::sync::broadcast::Sender<pb::LabEvent>,
    /// Leases on the store images the VMs of each lab run on, so that
    /// `rootfs-tool rm` refuses to remove an image in use.
    leases: std::sync::Mutex<BTreeMap<String, Vec<rootfs_tool::store::ImageLease>>>,
    /// Other hosts' orchestrators, for multi-host labs.
    peers: crate::peers::Peers,
}

/// Takes a lease on every store image `images` names (node, image) for
/// lab `lab`.
fn lease_images<'a>(
    lab: &str,
    images: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<Vec<rootfs_tool::store::ImageLease>, String> {
    let mut leases = Vec::new();
    let mut store = None;
    for (node, image) in images {
        let store =
            match &mut store {
                Some(s) => s,
                None => store.insert(
                    rootfs_tool::store::ImageStore::open(
                        rootfs_tool::store::ImageStore::default_root(),
                    )
                    .map_err(|e| format!("node {node}: {e}"))?,
                ),
            };
        let lease = store
            .acquire(image, &format!("{lab}.{node}"))
            .map_err(|e| format!("node {node}: image {image}: {e}"))?;
        leases.push(lease);
    }
    Ok(leases)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

async fn report(tx: &ProgressTx, component: &str, kind: &str, phase: pb::Phase, message: &str) {
    let _ = tx
        .send(pb::Progress {
            component: component.to_owned(),
            kind: kind.to_owned(),
            phase: phase as i32,
            message: message.to_owned(),
            total: 0,
            ready: 0,
        })
        .await;
}

impl Orchestrator {
    /// An orchestrator with labs under `layout`, starting the daemons found
    /// in `bin_dir`. Labs already on disk are adopted.
    pub fn new(mut layout: Layout, bin_dir: PathBuf) -> Orchestrator {
        layout.tools.get_or_insert_with(|| bin_dir.clone());
        let labs = adopt(&layout);
        let mut leases = BTreeMap::new();
        for record in labs.values() {
            let images = record
                .vms
                .iter()
                .filter_map(|v| v.image.as_deref().map(|i| (v.name.as_str(), i)));
            match lease_images(&record.name, images) {
                Ok(l) => {
                    leases.insert(record.name.clone(), l);
                }
                Err(e) => {
                    tracing::warn!(lab = %record.name, error = %e, "cannot lease the lab's images")
                }
            }
        }
        Orchestrator {
            layout,
            bin_dir,
            labs: Mutex::new(labs),
            events: tokio::sync::broadcast::channel(1024).0,
            leases: std::sync::Mutex::new(leases),
            peers: crate::peers::Peers::default(),
        }
    }

    /// The same orchestrator, driving `peers` for multi-host labs.
    pub fn with_peers(mut self, peers: crate::peers::Peers) -> Orchestrator {
        self.peers = peers;
        self
    }

    /// The peers.
    pub fn peers(&self) -> &crate::peers::Peers {
        &self.peers
    }

    /// Watches every running lab's components until the process ends: a
    /// VM monitor or switch that died is reported as an event, the lab is
    /// marked degraded, and a VM whose node asks for it (restart
    /// `on-failure` or `always`) is started again from its spec; its NICs
    /// plug back in by themselves.
    pub async fn watch(self: std::sync::Arc<Self>) {
        let mut tick = tokio::time::interval(WATCH_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.check_components().await;
        }
    }

    async fn check_components(self: &std::sync::Arc<Self>) {
        let mut labs = self.labs.lock().await;
        for record in labs.values_mut() {
            if !matches!(record.state, LabState::Running | LabState::Degraded) {
                continue;
            }
            let lab = record.name.clone();
            let mut changed = false;
            for vm in &mut record.vms {
                let marker = self.layout.spec_file(&lab, &vm.name).display().to_string();
                if vm.pid == 0 && !vm.restart || vm.pid != 0 && is_ours(vm.pid, &marker) {
                    continue;
                }
                changed = true;
                if vm.pid != 0 {
                    self.emit(&lab, &vm.name, "node", "crashed: its monitor is gone");
                    // Its VMs have no reaper of their own (see plan).
                    if let Err(e) = reap_vm(&marker).await {
                        tracing::warn!(lab = %lab, node = %vm.name, error = %e, "cannot reap the node");
                    }
                }
                if !vm.restart || vm.restarts >= MAX_RESTARTS {
                    vm.pid = 0;
                    continue;
                }
                let args = vec!["run".to_owned(), "--spec".to_owned(), marker.clone()];
                match spawn_detached(&self.binary("vm-monitor"), &args, &vm.log) {
                    Ok(pid) => {
                        vm.pid = pid;
                        vm.restarts += 1;
                        self.emit(&lab, &vm.name, "node", "restarting");
                        let (this, lab, name, api) =
                            (self.clone(), lab.clone(), vm.name.clone(), vm.api.clone());
                        tokio::spawn(async move {
                            let deadline = Instant::now() + VM_START;
                            while Instant::now() < deadline {
                                if let Ok(status) = vm_status(&api).await
                                    && status.state == vm_pb::VmState::Running as i32
                                {
                                    this.emit(&lab, &name, "node", "restarted");
                                    return;
                                }
                                tokio::time::sleep(Duration::from_millis(50)).await;
                            }
                        });
                    }
                    Err(e) => {
                        tracing::warn!(lab = %lab, node = %vm.name, error = %e, "cannot restart the node");
                        vm.pid = 0;
                    }
                }
            }
            for s in &mut record.switches {
                if s.pid != 0 && !is_ours(s.pid, &s.dir.display().to_string()) {
                    self.emit(&lab, &s.name, &s.kind, "crashed: the daemon is gone");
                    s.pid = 0;
                    changed = true;
                }
            }
            if changed {
                let whole = record.vms.iter().all(|v| v.pid != 0)
                    && record.switches.iter().all(|s| s.pid != 0);
                record.state = if whole {
                    LabState::Running
                } else {
                    LabState::Degraded
                };
                let _ = record.save(&self.layout.state_file(&lab));
            }
        }
    }

    /// Announces something that happened to a lab.
    pub fn emit(&self, lab: &str, component: &str, kind: &str, message: &str) {
        let _ = self.events.send(pb::LabEvent {
            time_ms: now_ms(),
            lab: lab.to_owned(),
            component: component.to_owned(),
            kind: kind.to_owned(),
            message: message.to_owned(),
        });
    }

    /// Events of lab `lab` (every lab when None): the orchestrator's own,
    /// and those of every VM monitor of the lab as it is now.
    pub async fn events(&self, lab: Option<&str>) -> mpsc::Receiver<pb::LabEvent> {
        let (tx, rx) = mpsc::channel(256);
        let mut own = self.events.subscribe();
        let wanted = lab.map(str::to_owned);
        {
            let tx = tx.clone();
            let wanted = wanted.clone();
            tokio::spawn(async move {
                loop {
                    match own.recv().await {
                        Ok(e) if wanted.as_ref().is_none_or(|w| *w == e.lab) => {
                            if tx.send(e).await.is_err() {
                                return;
                            }
                        }
                        Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                        Err(_) => return,
                    }
                }
            });
        }
        let records: Vec<LabRecord> = self
            .labs
            .lock()
            .await
            .values()
            .filter(|r| wanted.as_ref().is_none_or(|w| *w == r.name))
            .cloned()
            .collect();
        for record in records {
            // The parts on other hosts: their orchestrators' events.
            if record.placement.part_of.is_none() {
                for host in record.placement.peers.clone() {
                    let (tx, peers, lab) = (tx.clone(), self.peers.clone(), record.name.clone());
                    tokio::spawn(async move {
                        let Ok(mut client) = peers.connect(&host).await else {
                            return;
                        };
                        let Ok(stream) = client.events(pb::EventsRequest { lab }).await else {
                            return;
                        };
                        let mut stream = stream.into_inner();
                        while let Ok(Some(mut event)) = stream.message().await {
                            // Its "lab" events are about its part only.
                            if event.component.is_empty() {
                                event.component = format!("host {host}");
                            }
                            if tx.send(event).await.is_err() {
                                return;
                            }
                        }
                    });
                }
            }
            for vm in record.vms {
                let tx = tx.clone();
                let lab = record.name.clone();
                tokio::spawn(async move {
                    let Ok(mut client) = vm_monitor::client::connect(&vm.api).await else {
                        return;
                    };
                    let Ok(stream) = client.events(vm_pb::EventsRequest {}).await else {
                        return;
                    };
                    let mut stream = stream.into_inner();
                    while let Ok(Some(event)) = stream.message().await {
                        if let Some(e) = vm_event(&lab, &vm.name, event)
                            && tx.send(e).await.is_err()
                        {
                            return;
                        }
                    }
                });
            }
        }
        rx
    }

    /// The file layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    fn binary(&self, name: &str) -> PathBuf {
        self.bin_dir.join(name)
    }

    /// Every lab, by name.
    pub async fn labs(&self) -> Vec<LabRecord> {
        self.labs.lock().await.values().cloned().collect()
    }

    /// One lab.
    pub async fn lab(&self, name: &str) -> Result<LabRecord, LabError> {
        self.labs
            .lock()
            .await
            .get(name)
            .cloned()
            .ok_or_else(|| LabError::NotFound(name.to_owned()))
    }

    /// Validates, plans and brings up a topology as lab `name` (default:
    /// the file's stem), reporting progress. On failure everything started
    /// is removed again.
    pub async fn deploy(
        &self,
        name: Option<&str>,
        source: &TopologySource,
        progress: &ProgressTx,
    ) -> Result<LabRecord, LabError> {
        self.deploy_part(name, source, None, progress).await
    }

    /// Like [`Orchestrator::deploy`]; with `part`, only the part of a
    /// multi-host lab placed on this host (another orchestrator drives
    /// the lab). Without it, devices placed on peers are deployed there
    /// through their API, and cables between hosts become VXLAN pairs.
    pub async fn deploy_part(
        &self,
        name: Option<&str>,
        source: &TopologySource,
        part: Option<HostPart>,
        progress: &ProgressTx,
    ) -> Result<LabRecord, LabError> {
        let (topo, path) = match source {
            TopologySource::Path(path) => (vbet_topology::load(path), path.clone()),
            TopologySource::Bundle(b) => (vbet_topology::load_bundle(b), PathBuf::from(&b.name)),
        };
        let topo = topo.map_err(|e| LabError::Invalid(e.render(false)))?;
        let path = path.as_path();
        let name = match name {
            Some(n) if !n.is_empty() => n.to_owned(),
            _ => default_lab_name(path),
        };
        check_lab_name(&name).map_err(LabError::BadName)?;
        let (here, placement) = match &part {
            Some(part) => part_placement(&topo, part),
            None => self.placement(&topo, &name).await?,
        };
        let plan = plan_part(&topo, &name, &self.layout, &here)?;
        // What the peers are sent: the topology as it came, with its files.
        let bundle = match (source, placement.peers.is_empty()) {
            (_, true) => None,
            (TopologySource::Bundle(b), false) => Some(b.clone()),
            (TopologySource::Path(p), false) => Some(
                vbet_topology::bundle(p)
                    .map_err(|e| LabError::Invalid(e.render(false)))?
                    .1,
            ),
        };
        let mut record = {
            let mut labs = self.labs.lock().await;
            if labs.contains_key(&name) || self.layout.lab_dir(&name).exists() {
                return Err(LabError::Exists(name));
            }
            let images = plan
                .vms
                .iter()
                .filter_map(|v| v.image.as_deref().map(|i| (v.spec.name.as_str(), i)));
            let leases = lease_images(&name, images).map_err(LabError::Invalid)?;
            self.leases
                .lock()
                .expect("leases poisoned")
                .insert(name.clone(), leases);
            let existing: u64 = labs.values().map(|r| r.neighbours).sum();
            let need = crate::hostnet::need(&topo);
            match crate::hostnet::ensure(
                Path::new(crate::hostnet::STATE_DIR),
                &self.layout.lab_dir(&name),
                existing,
                need,
            ) {
                Ok(Some(message)) => {
                    report(progress, "", "lab", pb::Phase::Planned, &message).await
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "cannot raise the host's neighbour-table limits")
                }
            }
            let record = LabRecord {
                name: name.clone(),
                state: LabState::Deploying,
                topology_path: match source {
                    TopologySource::Path(_) => {
                        path.canonicalize().unwrap_or_else(|_| path.to_owned())
                    }
                    TopologySource::Bundle(_) => path.to_owned(),
                },
                created_unix: now_unix(),
                switches: Vec::new(),
                vms: Vec::new(),
                cables: plan.cables.iter().map(cable_record).collect(),
                neighbours: crate::hostnet::need(&topo),
                placement: placement.clone(),
            };
            labs.insert(name.clone(), record.clone());
            record
        };
        let mut deployed = Vec::new();
        let peers = async {
            match &bundle {
                Some(bundle) => {
                    self.deploy_peers(&name, bundle, &here, &placement, &mut deployed, progress)
                        .await
                }
                None => Ok(()),
            }
        };
        // This host's part and the peers' at once.
        let (there, here_result) = tokio::join!(peers, self.bring_up(&plan, &mut record, progress));
        let result = there.and(here_result);
        match result {
            Ok(()) => {
                record.state = LabState::Running;
                self.store(&record).await;
                report(
                    progress,
                    "",
                    "lab",
                    pb::Phase::Ready,
                    &format!("lab {name} is up"),
                )
                .await;
                self.emit(&name, "", "lab", "up");
                Ok(record)
            }
            Err(e) => {
                report(
                    progress,
                    "",
                    "lab",
                    pb::Phase::Failed,
                    &format!("rolling back: {e}"),
                )
                .await;
                self.emit(&name, "", "lab", &format!("failed and rolled back: {e}"));
                let _ = self.tear_down(&record, progress).await;
                // Only the parts this deploy made (a peer may hold a lab of
                // the same name of its own).
                let mut made = record.clone();
                made.placement.peers = deployed;
                let _ = self.destroy_peers(&made, progress).await;
                self.leases.lock().expect("leases poisoned").remove(&name);
                self.labs.lock().await.remove(&name);
                let _ = crate::hostnet::release(
                    Path::new(crate::hostnet::STATE_DIR),
                    &self.layout.lab_dir(&name),
                );
                Err(e)
            }
        }
    }

    async fn store(&self, record: &LabRecord) {
        let _ = record.save(&self.layout.state_file(&record.name));
        self.labs
            .lock()
            .await
            .insert(record.name.clone(), record.clone());
    }

    async fn bring_up(
        &self,
        plan: &Plan,
        record: &mut LabRecord,
        progress: &ProgressTx,
    ) -> Result<(), LabError> {
        let lab = &plan.lab;
        let lab_dir = self.layout.lab_dir(lab);
        for dir in [
            lab_dir.clone(),
            lab_dir.join("specs"),
            lab_dir.join("logs"),
            lab_dir.join("wire"),
            lab_dir.join("sw"),
        ] {
            std::fs::create_dir_all(&dir).map_err(|source| LabError::Io { path: dir, source })?;
        }
        record
            .save(&self.layout.state_file(lab))
            .map_err(|source| LabError::Io {
                path: self.layout.state_file(lab),
                source,
            })?;
        for s in &plan.switches {
            report(progress, &s.name, s.kind_name(), pb::Phase::Planned, "").await;
        }
        for v in &plan.vms {
            report(progress, &v.spec.name, "vm", pb::Phase::Planned, "").await;
        }

        // Switches first: the VMs plug into them.
        let started = join_all(
            plan.switches
                .iter()
                .map(|s| self.start_switch(lab, s, progress)),
        )
        .await;
        let failure = keep_started(started, &mut record.switches);
        self.store(record).await;
        if let Some(e) = failure {
            return Err(e);
        }
        // Switch-to-switch cables are up when every uplink is plugged in.
        for s in plan.switches.iter().filter(|s| !s.uplinks.is_empty()) {
            let deadline = Instant::now() + SWITCH_START;
            loop {
                let plugged = switch_ports(&s.api())
                    .await
                    .map(|ports| {
                        ports
                            .iter()
                            .filter(|p| p.description.starts_with("uplink to"))
                            .count()
                    })
                    .unwrap_or(0);
                if plugged >= s.uplinks.len() {
                    break;
                }
                if Instant::now() >= deadline {
                    return Err(LabError::Component {
                        component: format!("{} {}", s.kind_name(), s.name),
                        reason: format!("its uplinks did not plug in within {SWITCH_START:?}"),
                    });
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }

        let started = join_all(plan.vms.iter().map(|v| self.start_vm(lab, v, progress))).await;
        let failure = keep_started(started, &mut record.vms);
        self.store(record).await;
        if let Some(e) = failure {
            return Err(e);
        }

        for cable in &plan.cables {
            let default_state = cable.state == port_pb::LinkState::Up;
            let no_impairment = cable.impairment == port_pb::Impairment::default();
            if !(default_state && no_impairment) {
                let state = (!default_state).then_some(cable.state);
                let imp = (!no_impairment).then_some(cable.impairment);
                self.apply_to_cable(record, cable_index(record, &cable.label), state, imp)
                    .await?;
            }
        }
        Ok(())
    }

    async fn start_switch(
        &self,
        lab: &str,
        s: &SwitchPlan,
        progress: &ProgressTx,
    ) -> Result<SwitchRecord, (Option<SwitchRecord>, LabError)> {
        report(progress, &s.name, s.kind_name(), pb::Phase::Starting, "").await;
        let fail = |reason: String| LabError::Component {
            component: format!("{} {}", s.kind_name(), s.name),
            reason,
        };
        let log = self.layout.log(lab, &s.name);
        let mut args = vec![
            "--dir".to_owned(),
            s.dir.display().to_string(),
            "--api".to_owned(),
            s.api().display().to_string(),
        ];
        if let Some(max) = s.max_ports {
            args.extend(["--max-ports".to_owned(), max.to_string()]);
        }
        for uplink in &s.uplinks {
            args.extend(["--uplink".to_owned(), uplink.display().to_string()]);
        }
        for trunk in &s.vxlan {
            args.extend(["--vxlan".to_owned(), trunk.clone()]);
        }
        let pid = spawn_detached(&self.binary(s.binary()), &args, &log)
            .map_err(|e| (None, fail(format!("cannot start {}: {e}", s.binary()))))?;
        let rec = SwitchRecord {
            name: s.name.clone(),
            kind: s.kind_name().to_owned(),
            pid,
            dir: s.dir.clone(),
            log: log.clone(),
        };
        let deadline = Instant::now() + SWITCH_START;
        loop {
            if let Ok(channel) = vbet_proto::connect_unix(s.api()).await
                && SwitchClient::new(channel)
                    .get_info(sw_pb::GetInfoRequest {})
                    .await
                    .is_ok()
            {
                break;
            }
            if !is_alive(pid) {
                let e = fail(format!("exited during start:\n{}", log_tail(&log, 5)));
                report(
                    progress,
                    &s.name,
                    s.kind_name(),
                    pb::Phase::Failed,
                    &e.to_string(),
                )
                .await;
                return Err((Some(rec), e));
            }
            if Instant::now() >= deadline {
                let e = fail(format!("did not serve within {SWITCH_START:?}"));
                report(
                    progress,
                    &s.name,
                    s.kind_name(),
                    pb::Phase::Failed,
                    &e.to_string(),
                )
                .await;
                return Err((Some(rec), e));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        report(progress, &s.name, s.kind_name(), pb::Phase::Ready, "").await;
        Ok(rec)
    }

    async fn start_vm(
        &self,
        lab: &str,
        v: &VmPlan,
        progress: &ProgressTx,
    ) -> Result<VmRecord, (Option<VmRecord>, LabError)> {
        let name = &v.spec.name;
        report(progress, name, "vm", pb::Phase::Starting, "").await;
        let fail = |reason: String| LabError::Component {
            component: format!("node {name}"),
            reason,
        };
        let spec_path = self.layout.spec_file(lab, name);
        let text = toml::to_string(&v.spec)
            .map_err(|e| (None, fail(format!("cannot write its spec: {e}"))))?;
        std::fs::write(&spec_path, text).map_err(|e| {
            (
                None,
                fail(format!("cannot write {}: {e}", spec_path.display())),
            )
        })?;
        let log = self.layout.log(lab, name);
        let args = vec![
            "run".to_owned(),
            "--spec".to_owned(),
            spec_path.display().to_string(),
        ];
        // The monitor says READY=1 (sd_notify) once the VM is up: wait for
        // that on a socket of our own rather than polling its API.
        let notify_path = self
            .layout
            .lab_dir(lab)
            .join("specs")
            .join(format!("{name}.notify"));
        let _ = std::fs::remove_file(&notify_path);
        let notify = tokio::net::UnixDatagram::bind(&notify_path).ok();
        let env = [("NOTIFY_SOCKET", notify_path.display().to_string())];
        let pid = spawn_detached_with(&self.binary("vm-monitor"), &args, &log, &env)
            .map_err(|e| (None, fail(format!("cannot start vm-monitor: {e}"))))?;
        let rec = VmRecord {
            name: name.clone(),
            kind: v.kind.clone(),
            pid,
            api: v.api.clone(),
            log: log.clone(),
            addresses: v.spec.nics.iter().map(|n| n.addresses.clone()).collect(),
            restart: v.spec.restart != vm_monitor::spec::RestartPolicy::Never,
            restarts: 0,
            image: v.image.clone(),
        };
        let result = async {
            let deadline = Instant::now() + VM_START;
            let mut buf = [0u8; 256];
            let mut polls = 0u32;
            loop {
                let ready = match &notify {
                    Some(sock) => tokio::select! {
                        got = sock.recv(&mut buf) => got.is_ok_and(|n| {
                            String::from_utf8_lossy(&buf[..n]).lines().any(|l| l == "READY=1")
                        }),
                        () = tokio::time::sleep(Duration::from_millis(100)) => false,
                    },
                    None => {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        false
                    }
                };
                if ready {
                    break;
                }
                // Without a notify socket, ask the monitor itself; with one,
                // only as a rare safety net (every 2 s): a thousand VMs
                // booting at once must not each take API calls meanwhile.
                polls += 1;
                if (notify.is_none() || polls % 20 == 0)
                    && let Ok(status) = vm_status(&v.api).await
                    && status.state == vm_pb::VmState::Running as i32
                {
                    break;
                }
                if !is_alive(pid) {
                    return Err(fail(format!("its monitor exited:\n{}", log_tail(&log, 8))));
                }
                if Instant::now() >= deadline {
                    return Err(fail(format!("did not boot within {VM_START:?}")));
                }
            }
            drop(notify);
            let _ = std::fs::remove_file(&notify_path);
            for check in &v.readiness {
                wait_ready(&v.api, check)
                    .await
                    .map_err(|reason| fail(format!("service {}: {reason}", check.service)))?;
            }
            Ok(())
        }
        .await;
        match result {
            Ok(()) => {
                report(progress, name, "vm", pb::Phase::Ready, "").await;
                Ok(rec)
            }
            Err(e) => {
                report(progress, name, "vm", pb::Phase::Failed, &e.to_string()).await;
                Err((Some(rec), e))
            }
        }
    }

    /// Removes everything of lab `name`.
    pub async fn destroy(&self, name: &str, progress: &ProgressTx) -> Result<(), LabError> {
        let mut record = self.lab(name).await?;
        record.state = LabState::Destroying;
        self.store(&record).await;
        let here = self.tear_down(&record, progress).await;
        let there = self.destroy_peers(&record, progress).await;
        let result = match (here, there) {
            (Ok(()), Ok(())) => Ok(()),
            (Err(LabError::Teardown { problems, .. }), Ok(())) | (Ok(()), Err(problems)) => {
                Err(LabError::Teardown {
                    lab: name.to_owned(),
                    problems,
                })
            }
            (Err(e), Ok(())) => Err(e),
            (Err(e), Err(problems)) => Err(LabError::Teardown {
                lab: name.to_owned(),
                problems: format!("{e}; {problems}"),
            }),
        };
        self.leases.lock().expect("leases poisoned").remove(name);
        self.labs.lock().await.remove(name);
        if let Err(e) = crate::hostnet::release(
            Path::new(crate::hostnet::STATE_DIR),
            &self.layout.lab_dir(name),
        ) {
            tracing::warn!(error = %e, "cannot restore the host's neighbour-table limits");
        }
        report(
            progress,
            "",
            "lab",
            pb::Phase::Stopped,
            &format!("lab {name} removed"),
        )
        .await;
        self.emit(name, "", "lab", "removed");
        result
    }

    /// Stops every component of `record` (VMs first, then switches) and
    /// removes the lab's run directory; best effort, keeping every problem.
    async fn tear_down(&self, record: &LabRecord, progress: &ProgressTx) -> Result<(), LabError> {
        let lab = &record.name;
        let vm_results = join_all(record.vms.iter().map(|vm| async move {
            report(progress, &vm.name, "vm", pb::Phase::Stopping, "").await;
            let marker = self.layout.spec_file(lab, &vm.name).display().to_string();
            if let Ok(mut client) = vm_monitor::client::connect(&vm.api).await {
                let _ = client
                    .shutdown(vm_pb::ShutdownRequest {
                        timeout_ms: VM_STOP.as_millis() as u32,
                    })
                    .await;
            }
            let killed = if wait_gone(vm.pid, &marker, VM_STOP + Duration::from_secs(2)).await {
                false
            } else {
                terminate(vm.pid, &marker, Duration::from_secs(3)).await
            };
            // A monitor that stopped cleaned up after itself; one that was
            // killed (now or before) left its remains to us.
            let reaped = reap_vm(&marker).await.err();
            report(progress, &vm.name, "vm", pb::Phase::Stopped, "").await;
            let killed = killed.then(|| format!("node {} had to be killed", vm.name));
            let reaped = reaped.map(|e| format!("node {}: {e}", vm.name));
            killed.into_iter().chain(reaped).collect::<Vec<_>>()
        }))
        .await;
        let switch_results = join_all(record.switches.iter().map(|s| async move {
            report(progress, &s.name, &s.kind, pb::Phase::Stopping, "").await;
            let killed =
                terminate(s.pid, &s.dir.display().to_string(), Duration::from_secs(5)).await;
            report(progress, &s.name, &s.kind, pb::Phase::Stopped, "").await;
            killed.then(|| format!("{} {} had to be killed", s.kind, s.name))
        }))
        .await;
        let mut problems: Vec<String> = vm_results
            .into_iter()
            .flatten()
            .chain(switch_results.into_iter().flatten())
            .collect();
        let dir = self.layout.lab_dir(lab);
        if dir.exists()
            && let Err(e) = std::fs::remove_dir_all(&dir)
        {
            problems.push(format!("cannot remove {}: {e}", dir.display()));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(LabError::Teardown {
                lab: lab.clone(),
                problems: problems.join("; "),
            })
        }
    }

    /// A lab with the live state of every component.
    pub async fn inspect(&self, name: &str) -> Result<pb::Lab, LabError> {
        let record = self.lab(name).await?;
        let record_ref = &record;
        let nodes = join_all(record.vms.iter().map(|vm| async move {
            let status = vm_status(&vm.api).await.ok();
            node_info(record_ref, vm, status.as_ref())
        }))
        .await;
        let switches = join_all(record.switches.iter().map(|s| async move {
            let info = switch_info(&s.dir.join("api")).await.ok();
            pb::SwitchInfo {
                name: s.name.clone(),
                kind: s.kind.clone(),
                state: if info.is_some() {
                    "running"
                } else {
                    "unreachable"
                }
                .into(),
                pid: s.pid,
                ctl_socket: s.dir.join("ctl").display().to_string(),
                api_socket: s.dir.join("api").display().to_string(),
                ports: info.map_or(0, |i| i.ports),
                host: String::new(),
            }
        }))
        .await;
        let (mut nodes, mut switches) = (nodes, switches);
        if record.placement.part_of.is_none() {
            for host in &record.placement.peers {
                let remote = match self.peers.connect(host).await {
                    Ok(mut client) => client
                        .inspect_lab(pb::InspectLabRequest {
                            lab: name.to_owned(),
                        })
                        .await
                        .map(tonic::Response::into_inner)
                        .ok(),
                    Err(_) => None,
                };
                match remote {
                    Some(lab) => {
                        nodes.extend(lab.nodes.into_iter().map(|n| pb::Node {
                            host: host.clone(),
                            ..n
                        }));
                        switches.extend(lab.switches.into_iter().map(|s| pb::SwitchInfo {
                            host: host.clone(),
                            ..s
                        }));
                    }
                    None => nodes.extend(
                        record
                            .placement
                            .nodes
                            .iter()
                            .filter(|(_, h)| *h == host)
                            .map(|(node, _)| pb::Node {
                                name: node.clone(),
                                host: host.clone(),
                                state: "unreachable".to_owned(),
                                ..pb::Node::default()
                            }),
                    ),
                }
            }
        }
        Ok(pb::Lab {
            summary: Some(summary(&record)),
            nodes,
            switches,
            cables: record.cables.iter().map(cable_message).collect(),
            run_dir: self.layout.lab_dir(name).display().to_string(),
        })
    }

    /// Sets the state and/or impairments of a cable or NIC of lab `lab`.
    pub async fn set_link(
        &self,
        lab: &str,
        target: &str,
        state: Option<port_pb::LinkState>,
        impairment: Option<port_pb::Impairment>,
    ) -> Result<pb::Cable, LabError> {
        let mut record = self.lab(lab).await?;
        let index = resolve_cable(&record, target).map_err(|reason| LabError::Target {
            lab: lab.to_owned(),
            reason,
        })?;
        self.apply_to_cable(&mut record, index, state, impairment)
            .await?;
        if record.placement.part_of.is_none() {
            self.set_link_on_peers(&record, index, state, impairment)
                .await?;
        }
        let message = cable_message(&record.cables[index]);
        if let Some(state) = state {
            let word = match state {
                port_pb::LinkState::Down => "down (unplugged)",
                port_pb::LinkState::Blackhole => "black hole",
                _ => "up",
            };
            self.emit(lab, &message.label, "link", word);
        }
        if let Some(i) = impairment {
            let text = format!(
                "impaired: delay {} us, jitter {} us, loss {}%, duplicate {}%, corrupt {}%, rate {} bit/s",
                i.delay_us,
                i.jitter_us,
                i.loss_percent,
                i.duplicate_percent,
                i.corrupt_percent,
                i.rate_bps
            );
            self.emit(lab, &message.label, "link", &text);
        }
        self.store(&record).await;
        Ok(message)
    }

    /// Applies a state and impairments to both VM ends of cable `index`.
    async fn apply_to_cable(
        &self,
        record: &mut LabRecord,
        index: usize,
        state: Option<port_pb::LinkState>,
        impairment: Option<port_pb::Impairment>,
    ) -> Result<(), LabError> {
        let cable = record.cables[index].clone();
        let ends: Vec<(&VmRecord, u32)> = [&cable.a, &cable.b]
            .into_iter()
            .filter_map(|end| {
                let (device, nic) = split_end(end)?;
                record
                    .vms
                    .iter()
                    .find(|v| v.name == device)
                    .map(|v| (v, nic))
            })
            .collect();
        // VM ends on other hosts (their orchestrators set those).
        let remote_vms = [&cable.a, &cable.b]
            .into_iter()
            .filter(|end| {
                split_end(end).is_some_and(|(d, _)| record.placement.nodes.contains_key(d))
            })
            .count();
        if ends.is_empty() && remote_vms == 0 {
            self.apply_to_trunk(record, &cable, state, impairment)
                .await?;
        }
        // A cable between two VMs is impaired once per direction, at each
        // sender; a cable to a switch at the VM end, both ways.
        let both_ways = ends.len() + remote_vms == 1;
        for (vm, nic) in &ends {
            let request = vm_pb::SetLinkRequest {
                nic: nic - 1,
                state: state.map_or(0, |s| s as i32),
                egress: impairment,
                ingress: impairment.filter(|_| both_ways),
            };
            let mut client =
                vm_monitor::client::connect(&vm.api)
                    .await
                    .map_err(|e| LabError::Component {
                        component: format!("node {}", vm.name),
                        reason: format!("its monitor does not answer: {e}"),
                    })?;
            client
                .set_link(request)
                .await
                .map_err(|e| LabError::Component {
                    component: format!("node {}", vm.name),
                    reason: e.message().to_owned(),
                })?;
        }
        let stored = &mut record.cables[index];
        if let Some(s) = state {
            stored.state = s as i32;
        }
        if let Some(i) = impairment {
            stored.delay_us = i.delay_us;
            stored.jitter_us = i.jitter_us;
            stored.loss_percent = i.loss_percent;
            stored.duplicate_percent = i.duplicate_percent;
            stored.corrupt_percent = i.corrupt_percent;
            stored.rate_bps = i.rate_bps;
        }
        Ok(())
    }

    /// Applies a state and impairments to a switch-to-switch cable: on the
    /// uplink port of the switch that plugs into the other, both ways.
    async fn apply_to_trunk(
        &self,
        record: &LabRecord,
        cable: &CableRecord,
        state: Option<port_pb::LinkState>,
        impairment: Option<port_pb::Impairment>,
    ) -> Result<(), LabError> {
        let device = |end: &str| {
            end.rsplit_once(':')
                .map(|(d, _)| d.to_owned())
                .unwrap_or_default()
        };
        let (a, b) = (device(&cable.a), device(&cable.b));
        let find = |name: &str| record.switches.iter().find(|s| s.name == name);
        let fail = |reason: String| LabError::Component {
            component: format!("cable {}", cable.label),
            reason,
        };
        let (Some(sa), Some(sb)) = (find(&a), find(&b)) else {
            // A trunk between two hosts is set, both ways, at the VXLAN
            // port of end a's switch.
            if let (Some(sa), Some((vni, _, far))) =
                (find(&a), record.placement.vxlan.get(&cable.label))
            {
                let wanted = format!("vxlan to {far} vni {vni}");
                let api = sa.dir.join("api");
                let ports = switch_ports(&api)
                    .await
                    .map_err(|e| fail(e.message().to_owned()))?;
                let port = ports
                    .iter()
                    .find(|p| p.description == wanted)
                    .ok_or_else(|| fail(format!("switch {a} has no port {wanted:?}")))?;
                set_port_both_ways(&api, port.id, state, impairment)
                    .await
                    .map_err(fail)?;
            }
            return Ok(());
        };
        for (from, to) in [(sa, sb), (sb, sa)] {
            let wanted = format!("uplink to {}", to.dir.join("ctl").display());
            let api = from.dir.join("api");
            let Ok(ports) = switch_ports(&api).await else {
                continue;
            };
            let Some(port) = ports.iter().find(|p| p.description == wanted) else {
                continue;
            };
            set_port_both_ways(&api, port.id, state, impairment)
                .await
                .map_err(fail)?;
            return Ok(());
        }
        Err(fail("no uplink port found for it".into()))
    }

    /// Where node `node` of lab `lab` runs: here (its monitor's API
    /// socket), or on a peer that this orchestrator drives.
    pub async fn locate(&self, lab: &str, node: &str) -> Result<Located, LabError> {
        let record = self.lab(lab).await?;
        if let Some(vm) = record.vms.iter().find(|v| v.name == node) {
            return Ok(Located::Here(vm.api.clone()));
        }
        match record.placement.nodes.get(node) {
            Some(host) if record.placement.part_of.is_none() => Ok(Located::Peer(host.clone())),
            Some(host) => Err(LabError::Target {
                lab: lab.to_owned(),
                reason: format!(
                    "node {node} runs on host {host}; ask the orchestrator that drives the lab"
                ),
            }),
            None => Err(LabError::Target {
                lab: lab.to_owned(),
                reason: format!("no node named {node}"),
            }),
        }
    }

    /// The API socket of node `node` of lab `lab`, and the NIC a target
    /// like "r1:eth1" names (0-based), if any.
    pub async fn node_api(&self, lab: &str, node: &str) -> Result<PathBuf, LabError> {
        let record = self.lab(lab).await?;
        record
            .vms
            .iter()
            .find(|v| v.name == node)
            .map(|v| v.api.clone())
            .ok_or_else(|| LabError::Target {
                lab: lab.to_owned(),
                reason: format!("no node named {node}"),
            })
    }
}

/// Records every component that was started (even one that then failed,
/// so that a rollback stops it) and returns the first failure.
fn keep_started<T>(
    started: Vec<Result<T, (Option<T>, LabError)>>,
    into: &mut Vec<T>,
) -> Option<LabError> {
    let mut failure = None;
    for result in started {
        match result {
            Ok(r) => into.push(r),
            Err((r, e)) => {
                into.extend(r);
                failure.get_or_insert(e);
            }
        }
    }
    failure
}

fn default_lab_name(path: &Path) -> String {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "lab".into());
    let clean: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .take(crate::layout::MAX_LAB_NAME)
        .collect();
    clean.trim_start_matches(['-', '_']).to_owned()
}

/// Does a reaper's work for the VM of spec file `spec`, whose monitor is
/// gone: waits for its processes to end, then removes its cgroups,
/// sockets, staging dir and lock. Nothing to do when the monitor cleaned up
/// after itself (or the spec is gone with the lab).
async fn reap_vm(spec: &str) -> Result<(), String> {
    let spec = PathBuf::from(spec);
    if !spec.exists() {
        return Ok(());
    }
    tokio::task::spawn_blocking(move || {
        let spec = vm_monitor::spec::VmSpec::from_toml_file(&spec).map_err(|e| e.to_string())?;
        vm_monitor::vm::reap(&spec).map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())?
}

/// Labs found on disk: their records, marked degraded if a component died.
fn adopt(layout: &Layout) -> BTreeMap<String, LabRecord> {
    let mut labs = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(&layout.run_root) else {
        return labs;
    };
    for entry in entries.flatten() {
        let state = entry.path().join("lab.json");
        let Ok(mut record) = LabRecord::load(&state) else {
            continue;
        };
        let alive = record.vms.iter().all(|v| {
            is_ours(
                v.pid,
                &layout
                    .spec_file(&record.name, &v.name)
                    .display()
                    .to_string(),
            )
        }) && record
            .switches
            .iter()
            .all(|s| is_ours(s.pid, &s.dir.display().to_string()));
        if !alive && record.state == LabState::Running {
            record.state = LabState::Degraded;
        }
        tracing::info!(lab = %record.name, state = record.state.name(), "adopted lab");
        labs.insert(record.name.clone(), record);
    }
    labs
}

fn cable_record(c: &CablePlan) -> CableRecord {
    CableRecord {
        label: c.label.clone(),
        a: c.a.to_string(),
        b: c.b.to_string(),
        state: port_pb::LinkState::Up as i32,
        delay_us: 0,
        jitter_us: 0,
        loss_percent: 0.0,
        duplicate_percent: 0.0,
        corrupt_percent: 0.0,
        rate_bps: 0,
    }
}

fn cable_index(record: &LabRecord, label: &str) -> usize {
    record
        .cables
        .iter()
        .position(|c| c.label == label)
        .expect("planned cables are recorded")
}

fn cable_message(c: &CableRecord) -> pb::Cable {
    pb::Cable {
        label: c.label.clone(),
        a: c.a.clone(),
        b: c.b.clone(),
        state: c.state,
        impairment: Some(port_pb::Impairment {
            delay_us: c.delay_us,
            jitter_us: c.jitter_us,
            loss_percent: c.loss_percent,
            duplicate_percent: c.duplicate_percent,
            corrupt_percent: c.corrupt_percent,
            rate_bps: c.rate_bps,
            queue_frames: 0,
        }),
    }
}

/// Splits "r1:2" into ("r1", 2).
fn split_end(end: &str) -> Option<(&str, u32)> {
    let (device, nic) = end.rsplit_once(':')?;
    Some((device, nic.parse().ok()?))
}

/// Finds the cable a target names: a cable label or name, two devices
/// ("r2 r3" or "r2--r3"), or a NIC ("r1:eth1", "r1:2").
pub fn resolve_cable(record: &LabRecord, target: &str) -> Result<usize, String> {
    let target = target.trim();
    if let Some(i) = record.cables.iter().position(|c| c.label == target) {
        return Ok(i);
    }
    if let Some((device, nic)) = target.rsplit_once(':') {
        let number = match nic.strip_prefix("eth") {
            Some(k) => k.parse::<u32>().ok().map(|k| k + 1),
            None => nic.parse::<u32>().ok(),
        }
        .ok_or_else(|| format!("{target:?} is not a NIC; write NODE:ethN or NODE:N"))?;
        let end = format!("{device}:{number}");
        return record
            .cables
            .iter()
            .position(|c| c.a == end || c.b == end)
            .ok_or_else(|| format!("no cable is plugged into {target}"));
    }
    let pair: Vec<&str> = target
        .split(|c: char| c.is_whitespace() || c == '-')
        .filter(|s| !s.is_empty())
        .collect();
    if let [x, y] = pair[..] {
        let device = |end: &str| end.rsplit_once(':').map(|(d, _)| d.to_owned());
        let matches: Vec<usize> = record
            .cables
            .iter()
            .enumerate()
            .filter(|(_, c)| {
                let (a, b) = (device(&c.a), device(&c.b));
                (a.as_deref() == Some(x) && b.as_deref() == Some(y))
                    || (a.as_deref() == Some(y) && b.as_deref() == Some(x))
            })
            .map(|(i, _)| i)
            .collect();
        return match matches[..] {
            [i] => Ok(i),
            [] => Err(format!("no cable joins {x} and {y}")),
            _ => Err(format!(
                "several cables join {x} and {y}; name a NIC such as {x}:eth0"
            )),
        };
    }
    Err(format!(
        "{target:?} names no cable; give a cable name, two devices (\"r2 r3\") or a NIC (\"r1:eth1\")"
    ))
}

fn summary(record: &LabRecord) -> pb::LabSummary {
    // The driving orchestrator counts every host's devices; a part, its own.
    let (remote_nodes, remote_switches) = match record.placement.part_of {
        None => (
            record.placement.nodes.len(),
            record.placement.switches.len(),
        ),
        Some(_) => (0, 0),
    };
    pb::LabSummary {
        name: record.name.clone(),
        state: record.state.name().to_owned(),
        nodes: (record.vms.len() + remote_nodes) as u32,
        switches: (record.switches.len() + remote_switches) as u32,
        cables: record.cables.len() as u32,
        topology_path: record.topology_path.display().to_string(),
        created_unix: record.created_unix,
    }
}

/// A short summary of every lab.
pub fn summaries(records: &[LabRecord]) -> Vec<pb::LabSummary> {
    records.iter().map(summary).collect()
}

fn node_info(record: &LabRecord, vm: &VmRecord, status: Option<&vm_pb::VmStatus>) -> pb::Node {
    let state = match status.map(|s| vm_pb::VmState::try_from(s.state)) {
        Some(Ok(vm_pb::VmState::Running)) => "running",
        Some(Ok(vm_pb::VmState::Frozen)) => "frozen",
        Some(Ok(vm_pb::VmState::Booting)) => "booting",
        Some(Ok(vm_pb::VmState::Stopping)) => "stopping",
        Some(Ok(vm_pb::VmState::Stopped)) => "stopped",
        Some(_) => "unknown",
        None => "unreachable",
    };
    let nics = status.map_or_else(Vec::new, |s| {
        s.nics
            .iter()
            .map(|n| {
                let number = n.index + 1;
                let here = format!("{}:{number}", vm.name);
                let peer = record
                    .cables
                    .iter()
                    .find_map(|c| {
                        if c.a == here {
                            Some(c.b.clone())
                        } else if c.b == here {
                            Some(c.a.clone())
                        } else {
                            None
                        }
                    })
                    .unwrap_or_default();
                pb::NicInfo {
                    name: n.name.clone(),
                    mac: n.mac.clone(),
                    addresses: vm
                        .addresses
                        .get(n.index as usize)
                        .cloned()
                        .unwrap_or_default(),
                    peer,
                    state: n.link_state,
                    counters: n.counters,
                }
            })
            .collect()
    });
    pb::Node {
        name: vm.name.clone(),
        kind: vm.kind.clone(),
        state: state.into(),
        monitor_pid: vm.pid,
        init_pid: status.map_or(0, |s| s.init_pid),
        api_socket: vm.api.display().to_string(),
        nics,
        uptime_ms: status.map_or(0, |s| s.uptime_ms),
        host: String::new(),
    }
}

async fn vm_status(api: &Path) -> Result<vm_pb::VmStatus, tonic::Status> {
    let mut client: VmMonitorClient<_> = vm_monitor::client::connect(api)
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    Ok(client.status(vm_pb::StatusRequest {}).await?.into_inner())
}

/// Sets port `id` of the switch whose API is `api`: its state, and the
/// same impairment both ways (a cable between switches).
async fn set_port_both_ways(
    api: &Path,
    id: u32,
    state: Option<port_pb::LinkState>,
    impairment: Option<port_pb::Impairment>,
) -> Result<(), String> {
    let channel = vbet_proto::connect_unix(api)
        .await
        .map_err(|e| e.to_string())?;
    SwitchClient::new(channel)
        .set_port(sw_pb::SetPortRequest {
            id,
            state: state.map(|s| s as i32),
            ingress: impairment,
            egress: impairment,
            vlan: None,
        })
        .await
        .map_err(|e| e.message().to_owned())?;
    Ok(())
}

async fn switch_ports(api: &Path) -> Result<Vec<sw_pb::Port>, tonic::Status> {
    let channel = vbet_proto::connect_unix(api)
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    Ok(SwitchClient::new(channel)
        .list_ports(sw_pb::ListPortsRequest {})
        .await?
        .into_inner()
        .ports)
}

async fn switch_info(api: &Path) -> Result<sw_pb::SwitchInfo, tonic::Status> {
    let channel = vbet_proto::connect_unix(api)
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    Ok(SwitchClient::new(channel)
        .get_info(sw_pb::GetInfoRequest {})
        .await?
        .into_inner())
}

/// The shell command that checks a readiness condition inside the VM.
fn check_command(ready: &vbet_topology::model::Ready) -> Option<String> {
    use vbet_topology::model::Ready;
    match ready {
        // A listening socket (state 0A) on the port, IPv4 or IPv6.
        Ready::Tcp(port) => Some(format!(
            "grep -qiE '^ *[0-9]+: [0-9A-F]+:{port:04X} [0-9A-F]+:[0-9A-F]+ 0A' /proc/net/tcp /proc/net/tcp6"
        )),
        Ready::Command(cmd) => Some(cmd.clone()),
        Ready::File(path) => Some(format!("test -e '{}'", path.replace('\'', "'\\''"))),
        Ready::Delay(_) => None,
    }
}

/// Waits until a service's readiness check passes inside the VM.
async fn wait_ready(api: &Path, check: &Readiness) -> Result<(), String> {
    if let vbet_topology::model::Ready::Delay(d) = &check.ready {
        tokio::time::sleep(Duration::from_micros(d.0)).await;
        return Ok(());
    }
    let command = check_command(&check.ready).unwrap_or_default();
    let deadline = Instant::now() + SERVICE_READY;
    let mut last = String::new();
    loop {
        if let Ok(mut client) = vm_monitor::client::connect(api).await {
            match vm_monitor::client::exec(&mut client, &["/bin/sh", "-c", &command], b"").await {
                Ok(out) if out.status.code == 0 && out.status.signal == 0 => return Ok(()),
                Ok(out) => last = String::from_utf8_lossy(&out.stderr).trim().to_owned(),
                Err(e) => last = e.message().to_owned(),
            }
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "not ready within {SERVICE_READY:?} (check `{}` {})",
                check.ready,
                if last.is_empty() {
                    "kept failing".to_owned()
                } else {
                    format!("said: {last}")
                }
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A VM monitor's event as a lab event.
fn vm_event(lab: &str, node: &str, event: vm_pb::Event) -> Option<pb::LabEvent> {
    let (kind, message) = match event.kind? {
        vm_pb::event::Kind::State(state) => {
            let state = vm_pb::VmState::try_from(state).unwrap_or(vm_pb::VmState::Unspecified);
            ("node", format!("{state:?}").to_lowercase())
        }
        vm_pb::event::Kind::ProcessExited(p) => {
            let status = p.status.unwrap_or_default();
            let how = if status.signal != 0 {
                format!("killed by signal {}", status.signal)
            } else {
                format!("exited with code {}", status.code)
            };
            let what = if p.crashed { "crashed" } else { "ended" };
            (
                "process",
                format!("{} (pid {}) {what}: {how}", p.command, p.pid),
            )
        }
        vm_pb::event::Kind::LinkChanged(l) => {
            let state =
                port_pb::LinkState::try_from(l.state).unwrap_or(port_pb::LinkState::Unspecified);
            (
                "link",
                format!("eth{} {}", l.nic, format!("{state:?}").to_lowercase()),
            )
        }
    };
    Some(pb::LabEvent {
        time_ms: event.time_ms,
        lab: lab.to_owned(),
        component: node.to_owned(),
        kind: kind.to_owned(),
        message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> LabRecord {
        let cable = |label: &str, a: &str, b: &str| CableRecord {
            label: label.into(),
            a: a.into(),
            b: b.into(),
            state: 1,
            delay_us: 0,
            jitter_us: 0,
            loss_percent: 0.0,
            duplicate_percent: 0.0,
            corrupt_percent: 0.0,
            rate_bps: 0,
        };
        LabRecord {
            name: "t".into(),
            state: LabState::Running,
            topology_path: "/x".into(),
            created_unix: 0,
            switches: vec![],
            vms: vec![],
            cables: vec![
                cable("r1:2--r2:1", "r1:2", "r2:1"),
                cable("uplink", "r2:2", "r3:1"),
            ],
            neighbours: 0,
            placement: crate::state::Placement::default(),
        }
    }

    #[test]
    fn resolves_cables_by_label_pair_and_nic() {
        let r = record();
        assert_eq!(resolve_cable(&r, "uplink"), Ok(1));
        assert_eq!(resolve_cable(&r, "r1:2--r2:1"), Ok(0));
        assert_eq!(resolve_cable(&r, "r2 r3"), Ok(1));
        assert_eq!(resolve_cable(&r, "r3 r2"), Ok(1));
        assert_eq!(resolve_cable(&r, "r1:eth1"), Ok(0));
        assert_eq!(resolve_cable(&r, "r3:1"), Ok(1));
        assert!(
            resolve_cable(&r, "r1 r3")
                .unwrap_err()
                .contains("no cable joins")
        );
        assert!(
            resolve_cable(&r, "r1:eth5")
                .unwrap_err()
                .contains("no cable")
        );
        assert!(resolve_cable(&r, "nothing").is_err());
    }

    #[test]
    fn tcp_readiness_matches_proc_net_tcp() {
        let cmd = check_command(&vbet_topology::model::Ready::Tcp(2601)).unwrap();
        assert!(cmd.contains(":0A29 "), "{cmd}");
    }

    #[test]
    fn lab_names_default_to_the_file_stem() {
        assert_eq!(
            default_lab_name(Path::new("/x/paper-4.1-ospf.vbet")),
            "paper-4-1-ospf"
        );
    }
}
