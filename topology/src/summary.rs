//! A short human summary of a topology, as `vbet-topology check` prints it.

use std::collections::{HashMap, HashSet};
use std::fmt::Write;

use crate::model::{Endpoint, Topology, ifname};

/// Nodes, NICs, cables and each node's addresses, one line each.
pub fn summary(topo: &Topology) -> String {
    let nics: usize = topo.nodes.iter().map(|n| n.nics.len()).sum();
    let ports: usize = topo.switches.iter().map(|s| s.ports.len()).sum();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} nodes, {} switches/hubs, {} NICs, {} switch ports, {} cables, {} kinds",
        topo.nodes.len(),
        topo.switches.len(),
        nics,
        ports,
        topo.cables.len(),
        topo.kinds.len()
    );
    let mut peers: HashMap<(&str, u32), &Endpoint> = HashMap::new();
    for c in &topo.cables {
        peers.insert((c.a.device.as_str(), c.a.nic), &c.b);
        peers.insert((c.b.device.as_str(), c.b.nic), &c.a);
    }
    let node_names: HashSet<&str> = topo.nodes.iter().map(|n| n.name.as_str()).collect();
    for n in &topo.nodes {
        let _ = write!(out, "  {} ({})", n.name, n.kind);
        for (i, nic) in n.nics.iter().enumerate() {
            let idx = i as u32 + 1;
            let peer = match peers.get(&(n.name.as_str(), idx)) {
                None => "unplugged".to_string(),
                Some(e) if node_names.contains(e.device.as_str()) => {
                    format!("-> {} {}", e.device, ifname(e.nic))
                }
                Some(e) => format!("-> {} port {}", e.device, e.nic),
            };
            let addrs: Vec<String> = nic.addrs.iter().map(ToString::to_string).collect();
            let addrs = if addrs.is_empty() {
                String::new()
            } else {
                format!(" {}", addrs.join(" "))
            };
            let _ = write!(out, "\n    {}{addrs} {peer}", ifname(idx));
        }
        out.push('\n');
    }
    for s in &topo.switches {
        let kind = match s.kind {
            crate::model::SwitchKind::Switch => "switch",
            crate::model::SwitchKind::Hub => "hub",
        };
        let _ = writeln!(out, "  {} ({kind}, {} ports)", s.name, s.ports.len());
    }
    out
}
