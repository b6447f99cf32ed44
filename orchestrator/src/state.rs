//! A lab's record on disk: what was started, with which PIDs and sockets,
//! so that a restarted orchestrator can adopt it and `vbet down` can
//! remove it all.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Where a lab is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LabState {
    /// Being brought up.
    Deploying,
    /// Up.
    Running,
    /// Some component died.
    Degraded,
    /// Being removed.
    Destroying,
}

impl LabState {
    /// The state's name.
    pub fn name(self) -> &'static str {
        match self {
            LabState::Deploying => "deploying",
            LabState::Running => "running",
            LabState::Degraded => "degraded",
            LabState::Destroying => "destroying",
        }
    }
}

/// A started switch or hub.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SwitchRecord {
    /// Its name.
    pub name: String,
    /// "switch" or "hub".
    pub kind: String,
    /// Its process.
    pub pid: u32,
    /// Its directory (ctl and api inside).
    pub dir: PathBuf,
    /// Its log.
    pub log: PathBuf,
}

/// A started VM.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VmRecord {
    /// Its name.
    pub name: String,
    /// Its node kind.
    pub kind: String,
    /// Its monitor's process.
    pub pid: u32,
    /// Its monitor's API socket.
    pub api: PathBuf,
    /// Its monitor's log.
    pub log: PathBuf,
    /// Guest interface addresses, per NIC, for inspect.
    pub addresses: Vec<Vec<String>>,
    /// Whether the node asks to be started again when its monitor dies.
    #[serde(default)]
    pub restart: bool,
    /// Times its monitor was started again.
    #[serde(default)]
    pub restarts: u32,
    /// Its image in the store (None: the host's root).
    #[serde(default)]
    pub image: Option<String>,
}

/// A cable and what was last set on it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CableRecord {
    /// Its label.
    pub label: String,
    /// One end, `device:nic`.
    pub a: String,
    /// The other end.
    pub b: String,
    /// Link state (the API's enum value).
    pub state: i32,
    /// Impairment in both directions, as the API's fields.
    pub delay_us: u64,
    /// Jitter.
    pub jitter_us: u64,
    /// Loss.
    pub loss_percent: f64,
    /// Duplication.
    pub duplicate_percent: f64,
    /// Corruption.
    pub corrupt_percent: f64,
    /// Rate limit.
    pub rate_bps: u64,
}

/// Everything recorded about one lab.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabRecord {
    /// Its name.
    pub name: String,
    /// Where it is in its life.
    pub state: LabState,
    /// The topology it was deployed from.
    pub topology_path: PathBuf,
    /// When it was deployed (seconds since the Unix epoch).
    pub created_unix: u64,
    /// Switches and hubs.
    pub switches: Vec<SwitchRecord>,
    /// VMs.
    pub vms: Vec<VmRecord>,
    /// Cables.
    pub cables: Vec<CableRecord>,
    /// Host neighbour-table entries the lab may need (see `hostnet`).
    #[serde(default)]
    pub neighbours: u64,
    /// Multi-host labs: where the devices that are not on this host run.
    #[serde(default, skip_serializing_if = "Placement::is_empty")]
    pub placement: Placement,
}

/// Where the devices of a multi-host lab that are not here run.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Placement {
    /// This record is the part of a lab driven by another orchestrator
    /// (its name); such a part never drives other hosts itself.
    #[serde(default)]
    pub part_of: Option<String>,
    /// The hosts holding the other parts, for the driving orchestrator.
    #[serde(default)]
    pub peers: Vec<String>,
    /// Nodes on other hosts: node → host.
    #[serde(default)]
    pub nodes: std::collections::BTreeMap<String, String>,
    /// Switches and hubs on other hosts: name → host.
    #[serde(default)]
    pub switches: std::collections::BTreeMap<String, String>,
    /// Cables between hosts: label → (VNI, UDP end a, UDP end b).
    #[serde(default)]
    pub vxlan: std::collections::BTreeMap<String, (u32, String, String)>,
}

impl Placement {
    /// A single-host lab.
    pub fn is_empty(&self) -> bool {
        self.part_of.is_none()
            && self.peers.is_empty()
            && self.nodes.is_empty()
            && self.switches.is_empty()
    }

    /// The host of a device that is not here.
    pub fn host_of(&self, device: &str) -> Option<&str> {
        self.nodes
            .get(device)
            .or_else(|| self.switches.get(device))
            .map(String::as_str)
    }
}

impl LabRecord {
    /// Writes the record atomically (a temporary file renamed over it).
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, path)
    }

    /// Reads a record.
    pub fn load(path: &Path) -> std::io::Result<LabRecord> {
        let text = std::fs::read(path)?;
        serde_json::from_slice(&text).map_err(std::io::Error::other)
    }
}
