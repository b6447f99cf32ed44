//! The lab model: what a topology means once parsed, whatever it was
//! written in (`.vbet`, TOML or YAML). The orchestrator deploys this.
//!
//! After [`crate::load`] the model is *resolved*: every node carries the
//! defaults of its kind (image, sysctls, files, services), so a consumer
//! never walks the profile chain itself. Resolving twice changes nothing.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::net::{IfAddr, Mac, Prefix};
use crate::units::{ByteSize, Micros, Percent, Rate, string_serde};

/// A whole topology: kinds, nodes, switches and hubs, and the cables between them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Topology {
    /// User-defined node kinds (profiles).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kinds: Vec<Kind>,
    /// Hosts, routers, firewalls and nodes of user kinds, in the order made.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<Node>,
    /// Virtual switches and hubs, in the order made.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub switches: Vec<Switch>,
    /// Cables, each joining exactly two NICs or ports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cables: Vec<Cable>,
    /// The directory that relative file sources are read from (the
    /// topology file's directory); not part of the serialized model.
    #[serde(skip)]
    pub base_dir: PathBuf,
    /// The files sent with the topology, when it was loaded from a
    /// [`crate::Bundle`]: file sources are read from them, not from disk.
    #[serde(skip)]
    pub files: Option<std::sync::Arc<crate::files::FileSet>>,
}

/// The built-in roles every node kind derives from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// An end host: no forwarding.
    #[default]
    Host,
    /// A router: IPv4 and IPv6 forwarding on by default.
    Router,
    /// A firewall: forwards like a router; its rules come as files.
    Firewall,
}

impl Role {
    /// The role named `name`, if it is a built-in kind.
    pub fn from_name(name: &str) -> Option<Role> {
        match name {
            "host" => Some(Role::Host),
            "router" => Some(Role::Router),
            "firewall" => Some(Role::Firewall),
            _ => None,
        }
    }

    /// The kind name of this role.
    pub fn name(self) -> &'static str {
        match self {
            Role::Host => "host",
            Role::Router => "router",
            Role::Firewall => "firewall",
        }
    }

    /// The sysctls a node of this role gets unless it says otherwise.
    pub fn default_sysctls(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Role::Host => &[],
            Role::Router | Role::Firewall => &[
                ("net.ipv4.ip_forward", "1"),
                ("net.ipv6.conf.all.forwarding", "1"),
            ],
        }
    }
}

/// A user-defined node kind: a named profile of image, packages and defaults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Kind {
    /// Its name, used as `alloc(NAME)`.
    pub name: String,
    /// The kind it extends: `host`, `router`, `firewall` or another user kind.
    pub base: String,
    /// Root file system image (default: the host's own root, read-only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Packages the image is expected to hold (checked or installed by rootfs-tool).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub packages: Vec<String>,
    /// Memory limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<ByteSize>,
    /// CPU limit in CPUs (0.5 = half a CPU).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
    /// What to do when the VM stops or hangs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart: Option<Restart>,
    /// Kernel parameters set at boot (`net.ipv4.ip_forward = "1"`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sysctls: BTreeMap<String, String>,
    /// Files placed in the node before its services start.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileSpec>,
    /// Commands started at boot, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<Service>,
}

/// A node's virtual clock at boot (DESIGN.md, "Time"): what its guest's
/// CLOCK_REALTIME is ahead of the host's, and how fast its clocks run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VirtualClock {
    /// Seconds added to CLOCK_REALTIME (negative: behind the host).
    #[serde(default)]
    pub offset: f64,
    /// Guest seconds per host second (0.001 to 1000).
    #[serde(default = "VirtualClock::host_rate")]
    pub rate: f64,
}

impl VirtualClock {
    fn host_rate() -> f64 {
        1.0
    }
}

impl Default for VirtualClock {
    fn default() -> Self {
        VirtualClock {
            offset: 0.0,
            rate: 1.0,
        }
    }
}

/// A VM: a host, router, firewall or a node of a user kind.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Node {
    /// Its name, unique among nodes and switches; also the guest hostname.
    pub name: String,
    /// Its kind: `host`, `router`, `firewall` or a user kind's name.
    pub kind: String,
    /// The built-in role its kind derives from (computed on load).
    #[serde(skip)]
    pub role: Role,
    /// Which physical host runs it (multi-host labs); `None` = this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Directories shared with the physical host.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hostfs: Vec<Hostfs>,
    /// Default gateways, at most one per address family.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gateway: Vec<IpAddr>,
    /// Static routes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
    /// Root file system image (default: the host's own root, read-only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Packages the image is expected to hold (checked or installed by rootfs-tool).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub packages: Vec<String>,
    /// Memory limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<ByteSize>,
    /// CPU limit in CPUs (0.5 = half a CPU).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
    /// What to do when the VM stops or hangs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart: Option<Restart>,
    /// Whether syscall fault rules may be set on the node at run time
    /// (`faults = "on"`; its monitor then traps the faultable syscalls).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub faults: bool,
    /// The node's virtual clock, if it has one (`clock = "virtual"`,
    /// `clock_offset`, `clock_rate`): its CLOCK_REALTIME may be offset and
    /// all its clocks run at another rate, at boot and with `vbet clock`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock: Option<VirtualClock>,
    /// Kernel parameters set at boot (`net.ipv4.ip_forward = "1"`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sysctls: BTreeMap<String, String>,
    /// Files placed in the node before its services start.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileSpec>,
    /// Commands started at boot, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<Service>,
    /// NICs in order: the first is `NIC(node,1)`, guest `eth0`. In TOML or
    /// YAML, a number stands for that many NICs with no settings.
    #[serde(default, skip_serializing_if = "Vec::is_empty", with = "count_or_list")]
    pub nics: Vec<Nic>,
}

/// A network interface of a node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Nic {
    /// Addresses, IPv4 and IPv6, several allowed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addrs: Vec<IfAddr>,
    /// A fixed MAC; by default the monitor derives a stable one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<Mac>,
    /// MTU; default 1500.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
}

/// The guest interface name of the `index`-th NIC (counted from 1): `eth{index-1}`.
pub fn ifname(index: u32) -> String {
    format!("eth{}", index.saturating_sub(1))
}

/// A static route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// Destination prefix.
    pub to: Prefix,
    /// Next hop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<IpAddr>,
    /// Outgoing NIC, counted from 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nic: Option<u32>,
    /// Route metric.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<u32>,
}

/// Restart policy of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Restart {
    /// Leave a stopped or hung VM down (reported).
    No,
    /// Restart it when it crashes or hangs, not when it powers off.
    OnFailure,
    /// Restart it whatever the reason.
    Always,
}

impl FromStr for Restart {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "no" => Ok(Restart::No),
            "on-failure" => Ok(Restart::OnFailure),
            "always" => Ok(Restart::Always),
            _ => Err(format!(
                "`{s}` is not a restart policy; use no, on-failure or always"
            )),
        }
    }
}

impl fmt::Display for Restart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Restart::No => "no",
            Restart::OnFailure => "on-failure",
            Restart::Always => "always",
        })
    }
}

/// A directory of the physical host shared into a node, written
/// `/host/dir:/guest/dir` with an optional `:ro`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Hostfs {
    /// Directory on the physical host.
    pub host: String,
    /// Mount point in the guest.
    pub guest: String,
    /// Mounted read-only.
    pub readonly: bool,
}

impl FromStr for Hostfs {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!("`{s}` is not a share; write /host/dir:/guest/dir or /host/dir:/guest/dir:ro")
        };
        let mut parts = s.split(':');
        let host = parts.next().filter(|p| !p.is_empty()).ok_or_else(bad)?;
        let guest = parts
            .next()
            .filter(|p| p.starts_with('/'))
            .ok_or_else(bad)?;
        let readonly = match parts.next() {
            None | Some("rw") => false,
            Some("ro") => true,
            Some(_) => return Err(bad()),
        };
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(Hostfs {
            host: host.into(),
            guest: guest.into(),
            readonly,
        })
    }
}

impl fmt::Display for Hostfs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}{}",
            self.host,
            self.guest,
            if self.readonly { ":ro" } else { "" }
        )
    }
}

/// A file placed in a node: inline content or a file read from the
/// topology's directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSpec {
    /// Absolute path in the guest.
    pub path: String,
    /// Inline content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// Path on the host, relative to the topology file's directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Permission bits in octal, e.g. `"0755"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
}

/// A command started at boot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    /// Its name, unique in the node.
    pub name: String,
    /// The command line, run by `/bin/sh -c`.
    pub command: String,
    /// How to tell that it is ready; `None` = as soon as it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<Ready>,
}

/// A readiness check, written `tcp:PORT`, `cmd:COMMAND`, `file:/PATH` or
/// `delay:DURATION`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Ready {
    /// Something listens on this TCP port in the node.
    Tcp(u16),
    /// This command exits 0.
    Command(String),
    /// This file exists.
    File(String),
    /// This long has passed.
    Delay(Micros),
}

impl FromStr for Ready {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "`{s}` is not a readiness check; write tcp:PORT, cmd:COMMAND, file:/PATH or delay:2s"
            )
        };
        let (how, what) = s.split_once(':').ok_or_else(bad)?;
        match how {
            "tcp" => what.trim().parse().map(Ready::Tcp).map_err(|_| bad()),
            "cmd" if !what.trim().is_empty() => Ok(Ready::Command(what.into())),
            "file" if what.starts_with('/') => Ok(Ready::File(what.into())),
            "delay" => what.parse().map(Ready::Delay),
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for Ready {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ready::Tcp(p) => write!(f, "tcp:{p}"),
            Ready::Command(c) => write!(f, "cmd:{c}"),
            Ready::File(p) => write!(f, "file:{p}"),
            Ready::Delay(d) => write!(f, "delay:{d}"),
        }
    }
}

impl FromStr for Endpoint {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("`{s}` is not a cable end; write DEVICE:N (N from 1) or DEVICE:ethK");
        let (device, nic) = s.rsplit_once(':').ok_or_else(bad)?;
        let nic = match nic.strip_prefix("eth") {
            Some(k) => k.parse::<u32>().ok().and_then(|k| k.checked_add(1)),
            None => nic.parse::<u32>().ok().filter(|n| *n >= 1),
        }
        .ok_or_else(bad)?;
        if device.is_empty() {
            return Err(bad());
        }
        Ok(Endpoint {
            device: device.into(),
            nic,
        })
    }
}

string_serde!(Restart, Hostfs, Ready, Endpoint);

/// Whether a switch learns or a hub repeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SwitchKind {
    /// A learning Ethernet switch (switchd).
    #[default]
    Switch,
    /// A hub repeating every frame to every other port (hubd).
    Hub,
}

/// A virtual switch or hub. Its ports are its NICs: `NIC(sw,1)` is port 1.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Switch {
    /// Its name, unique among nodes and switches.
    pub name: String,
    /// Switch or hub.
    #[serde(default)]
    pub kind: SwitchKind,
    /// The most ports it may have; `None` = no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_ports: Option<u32>,
    /// Which physical host runs it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Its ports in order. In TOML or YAML, a number stands for that many
    /// ports with no settings.
    #[serde(default, skip_serializing_if = "Vec::is_empty", with = "count_or_list")]
    pub ports: Vec<Port>,
}

/// A port of a switch or hub.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Port {
    /// Untagged (access) VLAN; `None` = the default VLAN 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vlan: Option<u16>,
    /// Tagged VLANs carried on this port (a trunk).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trunk: Vec<u16>,
}

/// One end of a cable: a device (node, switch or hub) and its NIC or port,
/// counted from 1. Written `"r1:2"` (the paper's `NIC(r1,2)`) or `"r1:eth1"`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Endpoint {
    /// Node, switch or hub name.
    pub device: String,
    /// NIC or port number, from 1.
    pub nic: u32,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.device, self.nic)
    }
}

/// The state a cable starts in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LinkState {
    /// Carrying frames.
    #[default]
    Up,
    /// Unplugged: carrier lost on both ends.
    Down,
    /// Carrier up, every frame silently dropped.
    Blackhole,
}

impl FromStr for LinkState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "up" => Ok(LinkState::Up),
            "down" => Ok(LinkState::Down),
            "blackhole" => Ok(LinkState::Blackhole),
            _ => Err(format!(
                "`{s}` is not a link state; use up, down or blackhole"
            )),
        }
    }
}

impl fmt::Display for LinkState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LinkState::Up => "up",
            LinkState::Down => "down",
            LinkState::Blackhole => "blackhole",
        })
    }
}

/// Impairments of a cable, applied in both directions.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Impair {
    /// Added one-way delay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<Micros>,
    /// Random variation of the delay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter: Option<Micros>,
    /// Frames lost, in percent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss: Option<Percent>,
    /// Frames duplicated, in percent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duplicate: Option<Percent>,
    /// Frames with a flipped bit, in percent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub corrupt: Option<Percent>,
    /// Rate limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<Rate>,
}

impl Impair {
    /// Whether no impairment is set.
    pub fn is_none(&self) -> bool {
        *self == Impair::default()
    }
}

/// A cable joining two NICs or ports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cable {
    /// Its name, if the topology gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// One end.
    pub a: Endpoint,
    /// The other end.
    pub b: Endpoint,
    /// State at bring-up.
    #[serde(default, skip_serializing_if = "is_up")]
    pub state: LinkState,
    /// Impairments, both directions.
    #[serde(default, skip_serializing_if = "Impair::is_none")]
    pub impair: Impair,
}

fn is_up(s: &LinkState) -> bool {
    *s == LinkState::Up
}

impl Cable {
    /// A name for messages: its own or `NIC(a,i)--NIC(b,j)`.
    pub fn label(&self) -> String {
        match &self.name {
            Some(n) => n.clone(),
            None => format!(
                "NIC({},{})--NIC({},{})",
                self.a.device, self.a.nic, self.b.device, self.b.nic
            ),
        }
    }
}

impl Topology {
    /// The node named `name`.
    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// The switch or hub named `name`.
    pub fn switch(&self, name: &str) -> Option<&Switch> {
        self.switches.iter().find(|s| s.name == name)
    }

    /// How many NICs or ports the device named `name` has, if it exists.
    pub fn nic_count(&self, name: &str) -> Option<usize> {
        self.node(name)
            .map(|n| n.nics.len())
            .or_else(|| self.switch(name).map(|s| s.ports.len()))
    }

    /// The cable plugged into `NIC(device, nic)`, if any.
    pub fn cable_at(&self, device: &str, nic: u32) -> Option<&Cable> {
        self.cables.iter().find(|c| {
            (c.a.device == device && c.a.nic == nic) || (c.b.device == device && c.b.nic == nic)
        })
    }
}

/// Serde for a list of NICs or ports: written as a count when none has a
/// setting (`ports = 3`), else as the list.
mod count_or_list {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    /// The most NICs or ports a count may ask for.
    const MAX: u64 = 65_535;

    pub fn serialize<T, S>(items: &[T], s: S) -> Result<S::Ok, S::Error>
    where
        T: Default + PartialEq + Serialize,
        S: Serializer,
    {
        let plain = T::default();
        if items.iter().all(|i| *i == plain) {
            s.serialize_u64(items.len() as u64)
        } else {
            items.serialize(s)
        }
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Repr<T> {
        Count(u64),
        List(Vec<T>),
    }

    pub fn deserialize<'de, T, D>(d: D) -> Result<Vec<T>, D::Error>
    where
        T: Default + Deserialize<'de>,
        D: Deserializer<'de>,
    {
        match Repr::<T>::deserialize(d)? {
            Repr::Count(n) if n <= MAX => Ok((0..n).map(|_| T::default()).collect()),
            Repr::Count(n) => Err(serde::de::Error::custom(format!(
                "{n} NICs or ports is more than {MAX}"
            ))),
            Repr::List(items) => Ok(items),
        }
    }
}
