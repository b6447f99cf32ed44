//! Turning a validated topology into a plan: which switch and hub daemons
//! to start, the spec of every VM monitor, and how every cable is wired.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use vbet_proto::vbet::port::v1 as port_pb;
use vbet_topology::model::{self, Cable, Endpoint, Impair, Node, Topology};
use vm_monitor::spec::{
    self as vm, FileSpec, NicSpec, Resources, RestartPolicy, RouteSpec, Share, ShareMode, VmSpec,
    Wiring,
};

use crate::layout::Layout;

/// Where vBET's own programs appear inside every VM (on its PATH).
pub const TOOLS_IN_VM: &str = "/opt/vbet/bin";

/// A switch or hub to start.
#[derive(Debug, Clone)]
pub struct SwitchPlan {
    /// Its name.
    pub name: String,
    /// Switch or hub.
    pub kind: model::SwitchKind,
    /// Its directory: `ctl` and `api` inside.
    pub dir: PathBuf,
    /// The most ports it may have.
    pub max_ports: Option<u32>,
    /// Control sockets of the switches it plugs into (switch-to-switch
    /// cables; the later switch of each pair plugs into the earlier).
    pub uplinks: Vec<PathBuf>,
    /// Trunks to switches on other hosts, as `switchd --vxlan`
    /// arguments ("LOCAL,REMOTE,VNI").
    pub vxlan: Vec<String>,
}

impl SwitchPlan {
    /// The binary that runs it: "switchd" or "hubd".
    pub fn binary(&self) -> &'static str {
        match self.kind {
            model::SwitchKind::Switch => "switchd",
            model::SwitchKind::Hub => "hubd",
        }
    }

    /// "switch" or "hub".
    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            model::SwitchKind::Switch => "switch",
            model::SwitchKind::Hub => "hub",
        }
    }

    /// Its control socket.
    pub fn ctl(&self) -> PathBuf {
        self.dir.join("ctl")
    }

    /// Its API socket.
    pub fn api(&self) -> PathBuf {
        self.dir.join("api")
    }
}

/// A service whose readiness the orchestrator checks after boot.
#[derive(Debug, Clone)]
pub struct Readiness {
    /// The service's name.
    pub service: String,
    /// The check.
    pub ready: model::Ready,
}

/// A VM to start.
#[derive(Debug, Clone)]
pub struct VmPlan {
    /// Its node kind.
    pub kind: String,
    /// The monitor's spec.
    pub spec: VmSpec,
    /// The monitor's API socket.
    pub api: PathBuf,
    /// Services to wait for.
    pub readiness: Vec<Readiness>,
    /// The image's name in the store, unless it is the host's root.
    pub image: Option<String>,
}

/// A cable's state and impairments to apply once everything is up.
#[derive(Debug, Clone)]
pub struct CablePlan {
    /// Its label.
    pub label: String,
    /// One end.
    pub a: Endpoint,
    /// The other end.
    pub b: Endpoint,
    /// Initial state.
    pub state: port_pb::LinkState,
    /// Impairments, both directions.
    pub impairment: port_pb::Impairment,
}

/// Everything a lab is made of.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The lab's name.
    pub lab: String,
    /// Switches and hubs, started first.
    pub switches: Vec<SwitchPlan>,
    /// VMs.
    pub vms: Vec<VmPlan>,
    /// Cables.
    pub cables: Vec<CablePlan>,
}

/// The two UDP ends and the VNI of a cable between two hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VxlanCable {
    /// The VXLAN network identifier.
    pub vni: u32,
    /// The UDP address of the cable's end `a` (on a's host).
    pub a: SocketAddr,
    /// The UDP address of end `b`.
    pub b: SocketAddr,
}

/// Which devices of a topology a plan covers: a whole single-host lab, or
/// the part of a multi-host lab placed on one host.
#[derive(Debug, Clone, Default)]
pub struct Part {
    /// The `host` attributes of the devices planned here; `None` stands for
    /// devices without one. Empty: every device (a single-host lab).
    pub hosts: Vec<Option<String>>,
    /// Cables between hosts, by label.
    pub vxlan: BTreeMap<String, VxlanCable>,
}

impl Part {
    /// Every device, on this host.
    pub fn whole() -> Part {
        Part::default()
    }

    /// Whether a device placed at `host` is planned here.
    pub fn here(&self, host: Option<&str>) -> bool {
        self.hosts.is_empty() || self.hosts.iter().any(|h| h.as_deref() == host)
    }
}

/// The `host` attribute of a node or switch named `device`.
pub fn placement<'t>(topo: &'t Topology, device: &str) -> Option<&'t str> {
    topo.nodes
        .iter()
        .find(|n| n.name == device)
        .and_then(|n| n.host.as_deref())
        .or_else(|| topo.switch(device).and_then(|s| s.host.as_deref()))
}

/// Why a topology cannot be deployed as it is.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// Switches joined in a loop (no spanning tree: frames would circle).
    #[error(
        "cable {0} closes a loop of switches; vBET switches run no spanning tree, so frames would circle forever — remove one cable of the loop"
    )]
    SwitchLoop(String),
    /// An image that is neither `host` nor in the image store.
    #[error(
        "node {node}: image {image:?} is not in the image store ({reason}); build it with `rootfs-tool build {image} --from busybox` or use image \"host\""
    )]
    UnknownImage {
        /// The node.
        node: String,
        /// The image.
        image: String,
        /// What the store said.
        reason: String,
    },
    /// A file source could not be read.
    #[error("node {node}: cannot read file {source_path} for {guest_path}")]
    FileSource {
        /// The node.
        node: String,
        /// Where it goes in the guest.
        guest_path: String,
        /// The host path.
        source_path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file mode that is not octal.
    #[error("node {node}: file {path} has mode {mode:?}, which is not octal permissions")]
    FileMode {
        /// The node.
        node: String,
        /// The guest path.
        path: String,
        /// The mode given.
        mode: String,
    },
}

/// Plans lab `lab` from `topo` (already validated by the topology crate).
pub fn plan(topo: &Topology, lab: &str, layout: &Layout) -> Result<Plan, PlanError> {
    plan_part(topo, lab, layout, &Part::whole())
}

/// Plans the part `part` of lab `lab`: the switches and VMs placed here,
/// with cables to other hosts as VXLAN ends; cables are all the lab's.
pub fn plan_part(
    topo: &Topology,
    lab: &str,
    layout: &Layout,
    part: &Part,
) -> Result<Plan, PlanError> {
    let mut switches: Vec<SwitchPlan> = topo
        .switches
        .iter()
        .map(|s| SwitchPlan {
            name: s.name.clone(),
            kind: s.kind,
            dir: layout.switch_dir(lab, &s.name),
            max_ports: s.max_ports,
            uplinks: Vec::new(),
            vxlan: Vec::new(),
        })
        .collect();
    // Switch-to-switch cables: the later switch plugs into the earlier;
    // a cable that joins two switches already joined closes a loop.
    let index = |name: &str| topo.switches.iter().position(|s| s.name == name);
    let mut group: Vec<usize> = (0..topo.switches.len()).collect();
    fn root(group: &mut [usize], mut i: usize) -> usize {
        while group[i] != i {
            group[i] = group[group[i]];
            i = group[i];
        }
        i
    }
    for cable in &topo.cables {
        let (Some(a), Some(b)) = (index(&cable.a.device), index(&cable.b.device)) else {
            continue;
        };
        let (ra, rb) = (root(&mut group, a), root(&mut group, b));
        if ra == rb {
            return Err(PlanError::SwitchLoop(cable.label()));
        }
        group[ra] = rb;
        if let Some(v) = part.vxlan.get(&cable.label()) {
            // On two hosts: each side's switch gets a VXLAN trunk.
            for (here, mine, theirs) in [(a, v.a, v.b), (b, v.b, v.a)] {
                switches[here]
                    .vxlan
                    .push(format!("{},{theirs},{}", bind_address(mine), v.vni));
            }
            continue;
        }
        let (first, later) = (a.min(b), a.max(b));
        let ctl = switches[first].ctl();
        switches[later].uplinks.push(ctl);
    }
    // A node's cable to a switch on another host: a VXLAN port on the
    // switch (the node's NIC is the other end).
    for cable in &topo.cables {
        let Some(v) = part.vxlan.get(&cable.label()) else {
            continue;
        };
        match (index(&cable.a.device), index(&cable.b.device)) {
            (Some(a), None) => {
                switches[a]
                    .vxlan
                    .push(format!("{},{},{}", bind_address(v.a), v.b, v.vni))
            }
            (None, Some(b)) => {
                switches[b]
                    .vxlan
                    .push(format!("{},{},{}", bind_address(v.b), v.a, v.vni))
            }
            _ => {}
        }
    }
    let switches = switches
        .into_iter()
        .zip(&topo.switches)
        .filter(|(_, s)| part.here(s.host.as_deref()))
        .map(|(plan, _)| plan)
        .collect();
    let vms = topo
        .nodes
        .iter()
        .filter(|node| part.here(node.host.as_deref()))
        .map(|node| plan_vm(topo, node, lab, layout, part))
        .collect::<Result<Vec<_>, _>>()?;
    let cables = topo.cables.iter().map(plan_cable).collect();
    Ok(Plan {
        lab: lab.to_owned(),
        switches,
        vms,
        cables,
    })
}

/// Where a VXLAN end listening at `advertised` binds: every address, at
/// its port (the advertised address may be one the host does not hold,
/// behind NAT).
fn bind_address(advertised: SocketAddr) -> SocketAddr {
    let any: std::net::IpAddr = match advertised {
        SocketAddr::V4(_) => std::net::Ipv4Addr::UNSPECIFIED.into(),
        SocketAddr::V6(_) => std::net::Ipv6Addr::UNSPECIFIED.into(),
    };
    SocketAddr::new(any, advertised.port())
}

fn plan_vm(
    topo: &Topology,
    node: &Node,
    lab: &str,
    layout: &Layout,
    part: &Part,
) -> Result<VmPlan, PlanError> {
    let mut spec = VmSpec::named(&node.name);
    spec.lab = lab.to_owned();
    spec.run_dir = Some(layout.lab_dir(lab));
    spec.image = image_root(node)?;
    spec.resources = Resources {
        memory: node.memory.map(|m| vm::ByteSize(m.0)),
        cpus: node.cpus,
        pids: None,
    };
    spec.faults = node.faults;
    // The orchestrator reaps its labs' VMs itself (`Labs::watch`, tear
    // down): one process less per VM than a reaper of each VM's own.
    spec.reaper = false;
    if let Some(clock) = node.clock {
        // The virtual clock, settable at run time (`vbet clock`).
        spec.clock.realtime = clock.offset;
        spec.clock.rate = clock.rate;
        spec.clock.settable = true;
    }
    spec.restart = match node.restart {
        None | Some(model::Restart::No) => RestartPolicy::Never,
        Some(model::Restart::OnFailure) => RestartPolicy::OnFailure,
        Some(model::Restart::Always) => RestartPolicy::Always,
    };
    spec.hostfs = node
        .hostfs
        .iter()
        .map(|h| Share {
            src: PathBuf::from(&h.host),
            dst: PathBuf::from(&h.guest),
            mode: if h.readonly {
                ShareMode::Ro
            } else {
                ShareMode::Rw
            },
        })
        .collect();
    spec.files = node
        .files
        .iter()
        .map(|f| file_spec(topo, node, f))
        .collect::<Result<_, _>>()?;
    spec.nics = node
        .nics
        .iter()
        .enumerate()
        .map(|(i, nic)| {
            let number = i as u32 + 1;
            NicSpec {
                index: i as u32,
                mac: nic.mac.map(|m| m.to_string()),
                addresses: nic.addrs.iter().map(ToString::to_string).collect(),
                wiring: wiring(topo, node, number, lab, layout, part),
            }
        })
        .collect();
    spec.routes = node
        .gateway
        .iter()
        .map(|gw| RouteSpec {
            dst: "default".into(),
            via: Some(*gw),
            nic: None,
        })
        .chain(node.routes.iter().map(|r| RouteSpec {
            dst: r.to.to_string(),
            via: r.via,
            nic: r.nic.map(|n| n.saturating_sub(1)),
        }))
        .collect();
    // Network kernel parameters are the monitor's to set, before the NICs
    // come up; others (rare: they are mostly the host's) run as commands
    // first, then the services in order.
    let (net, other): (Vec<_>, Vec<_>) = node
        .sysctls
        .iter()
        .partition(|(key, _)| key.starts_with("net."));
    spec.sysctls = net
        .into_iter()
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    spec.commands = other
        .into_iter()
        .map(|(key, value)| format!("sysctl -qw {key}={value}"))
        .chain(node.services.iter().map(|s| match &layout.tools {
            // vBET's own programs (chord-peer, …) are on every service's PATH.
            Some(_) => format!("PATH={TOOLS_IN_VM}:\"$PATH\"; export PATH; {}", s.command),
            None => s.command.clone(),
        }))
        .collect();
    // …shared read-only from the host at a fixed place (the host's own
    // path may be hidden, e.g. under the VM's private /tmp).
    if let Some(dir) = &layout.tools {
        spec.hostfs.push(Share {
            src: dir.clone(),
            dst: PathBuf::from(TOOLS_IN_VM),
            mode: ShareMode::Ro,
        });
    }
    let readiness = node
        .services
        .iter()
        .filter_map(|s| {
            s.ready.clone().map(|ready| Readiness {
                service: s.name.clone(),
                ready,
            })
        })
        .collect();
    Ok(VmPlan {
        image: node
            .image
            .clone()
            .filter(|i| i != rootfs_tool::store::HOST_IMAGE),
        kind: node.kind.clone(),
        api: layout.vm_api(lab, &node.name),
        spec,
        readiness,
    })
}

/// The root directory of a node's image: "host", or the image's tree in
/// the image store.
fn image_root(node: &Node) -> Result<String, PlanError> {
    let image = node.image.clone().unwrap_or_else(|| "host".into());
    if image == rootfs_tool::store::HOST_IMAGE {
        return Ok(image);
    }
    let unknown = |reason: String| PlanError::UnknownImage {
        node: node.name.clone(),
        image: image.clone(),
        reason,
    };
    let store =
        rootfs_tool::store::ImageStore::open(rootfs_tool::store::ImageStore::default_root())
            .map_err(|e| unknown(e.to_string()))?;
    let found = store.get(&image).map_err(|e| unknown(e.to_string()))?;
    Ok(found.rootfs.display().to_string())
}

fn file_spec(topo: &Topology, node: &Node, f: &model::FileSpec) -> Result<FileSpec, PlanError> {
    let content = match (&f.content, &f.source) {
        (Some(content), _) => content.clone(),
        (None, Some(source)) => {
            vbet_topology::read_source(topo, source).map_err(|e| PlanError::FileSource {
                node: node.name.clone(),
                guest_path: f.path.clone(),
                source_path: vbet_topology::source_path(topo, source),
                source: e,
            })?
        }
        (None, None) => String::new(),
    };
    let mode = match &f.mode {
        None => 0o644,
        Some(m) => {
            u32::from_str_radix(m.trim_start_matches("0o"), 8).map_err(|_| PlanError::FileMode {
                node: node.name.clone(),
                path: f.path.clone(),
                mode: m.clone(),
            })?
        }
    };
    Ok(FileSpec {
        path: PathBuf::from(&f.path),
        content,
        mode,
    })
}

/// What NIC `number` (from 1) of `node` plugs into.
fn wiring(
    topo: &Topology,
    node: &Node,
    number: u32,
    lab: &str,
    layout: &Layout,
    part: &Part,
) -> Wiring {
    let Some(cable) = topo.cable_at(&node.name, number) else {
        return Wiring::None;
    };
    let is_a = cable.a.device == node.name && cable.a.nic == number;
    let far = if is_a { &cable.b } else { &cable.a };
    if let Some(v) = part.vxlan.get(&cable.label()) {
        let (mine, theirs) = if is_a { (v.a, v.b) } else { (v.b, v.a) };
        return Wiring::Vxlan {
            local: bind_address(mine),
            remote: theirs,
            vni: v.vni,
        };
    }
    if topo.switch(&far.device).is_some() {
        Wiring::Switch {
            ctl: layout.switch_dir(lab, &far.device).join("ctl"),
        }
    } else {
        Wiring::Wire {
            local: layout.wire(lab, &node.name, number),
            remote: layout.wire(lab, &far.device, far.nic),
        }
    }
}

fn plan_cable(cable: &Cable) -> CablePlan {
    CablePlan {
        label: cable.label(),
        a: cable.a.clone(),
        b: cable.b.clone(),
        state: link_state(cable.state),
        impairment: impairment(&cable.impair),
    }
}

/// The API's link state for a topology's.
pub fn link_state(state: model::LinkState) -> port_pb::LinkState {
    match state {
        model::LinkState::Up => port_pb::LinkState::Up,
        model::LinkState::Down => port_pb::LinkState::Down,
        model::LinkState::Blackhole => port_pb::LinkState::Blackhole,
    }
}

/// The API's impairment for a topology's.
pub fn impairment(i: &Impair) -> port_pb::Impairment {
    port_pb::Impairment {
        delay_us: i.delay.map_or(0, |d| d.0),
        jitter_us: i.jitter.map_or(0, |d| d.0),
        loss_percent: i.loss.map_or(0.0, |p| p.0),
        duplicate_percent: i.duplicate.map_or(0.0, |p| p.0),
        corrupt_percent: i.corrupt.map_or(0.0, |p| p.0),
        rate_bps: i.rate.map_or(0, |r| r.0),
        queue_frames: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Topology {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.vbet");
        std::fs::write(&path, text).unwrap();
        vbet_topology::load(&path).unwrap_or_else(|e| panic!("{}", e.render(false)))
    }

    #[test]
    fn wires_nics_to_switches_and_to_each_other() {
        let topo = load(
            "sw = alloc(switch)\n\
             r1 = attach(alloc(router), alloc(NIC), alloc(NIC))\n\
             r2 = attach(alloc(router), alloc(NIC), alloc(NIC))\n\
             link(NIC(r1,2), NIC(r2,1))\n\
             link(sw, NIC(r1,1))\n",
        );
        let layout = Layout::default();
        let plan = plan(&topo, "lab1", &layout).unwrap();
        assert_eq!(plan.switches.len(), 1);
        let r1 = &plan.vms.iter().find(|v| v.spec.name == "r1").unwrap().spec;
        assert_eq!(
            r1.nics[0].wiring,
            Wiring::Switch {
                ctl: "/run/vbet/lab1/sw/sw/ctl".into()
            }
        );
        assert_eq!(
            r1.nics[1].wiring,
            Wiring::Wire {
                local: "/run/vbet/lab1/wire/r1.2".into(),
                remote: "/run/vbet/lab1/wire/r2.1".into()
            }
        );
        let r2 = &plan.vms.iter().find(|v| v.spec.name == "r2").unwrap().spec;
        assert_eq!(r2.nics[1].wiring, Wiring::None);
        assert_eq!(
            r1.sysctls.get("net.ipv4.ip_forward").map(String::as_str),
            Some("1")
        );
        assert!(!r1.commands.iter().any(|c| c.contains("sysctl")));
    }

    #[test]
    fn a_part_plans_its_own_devices_and_vxlan_ends() {
        let topo = load(
            "sw = alloc(switch, host = \"b\")\n\
             x = alloc(host, nics = 2)\n\
             y = alloc(host, nics = 1, host = \"b\")\n\
             link(sw, x, y)\n\
             link(NIC(x,2), alloc(host, nics = 1, host = \"b\"))\n",
        );
        let addr = |s: &str| s.parse::<SocketAddr>().unwrap();
        let mut vxlan = BTreeMap::new();
        let labels: Vec<String> = topo.cables.iter().map(Cable::label).collect();
        // sw--x and x--(third node) cross hosts; sw--y does not.
        let cross: Vec<&String> = labels.iter().filter(|l| l.contains("NIC(x,")).collect();
        assert_eq!(cross.len(), 2, "{labels:?}");
        for (i, label) in cross.iter().enumerate() {
            vxlan.insert(
                (*label).clone(),
                VxlanCable {
                    vni: 10 + i as u32,
                    a: addr(&format!("10.0.0.1:{}", 5000 + 2 * i)),
                    b: addr(&format!("10.0.0.2:{}", 5001 + 2 * i)),
                },
            );
        }
        let here = Part {
            hosts: vec![None],
            vxlan: vxlan.clone(),
        };
        let plan = plan_part(&topo, "l", &Layout::default(), &here).unwrap();
        assert!(plan.switches.is_empty());
        let names: Vec<&str> = plan.vms.iter().map(|v| v.spec.name.as_str()).collect();
        assert_eq!(names, ["x"]);
        assert!(matches!(
            plan.vms[0].spec.nics[0].wiring,
            Wiring::Vxlan { vni: 10 | 11, .. }
        ));
        assert!(matches!(
            plan.vms[0].spec.nics[1].wiring,
            Wiring::Vxlan { .. }
        ));
        assert_eq!(plan.cables.len(), 3);

        let there = Part {
            hosts: vec![Some("b".into())],
            vxlan,
        };
        let plan = plan_part(&topo, "l", &Layout::default(), &there).unwrap();
        assert_eq!(plan.switches.len(), 1);
        assert_eq!(plan.switches[0].vxlan.len(), 1);
        assert!(
            plan.switches[0].vxlan[0].starts_with("0.0.0.0:"),
            "{:?}",
            plan.switches[0].vxlan
        );
        assert_eq!(plan.vms.len(), 2);
    }

    #[test]
    fn paper_examples_plan() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
        for name in [
            "paper-2.2-switch.vbet",
            "paper-4.1-ospf.vbet",
            "paper-4.2-firewall.vbet",
        ] {
            let topo = vbet_topology::load(&root.join(name))
                .unwrap_or_else(|e| panic!("{name}: {}", e.render(false)));
            let plan =
                plan(&topo, "t", &Layout::default()).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(!plan.vms.is_empty(), "{name}");
        }
    }
}
