//! Labs on several hosts: where each device runs, the VXLAN ends of the
//! cables between hosts, and the parts deployed, operated and removed
//! through the peers' orchestrators.

use std::collections::BTreeMap;

use futures::future::join_all;
use vbet_proto::vbet::orchestrator::v1 as pb;
use vbet_proto::vbet::port::v1 as port_pb;
use vbet_topology::Topology;

use super::{LabError, Orchestrator, ProgressTx, report, split_end};
use crate::plan::Part;
use crate::state::{LabRecord, Placement};

/// The part of a multi-host lab another orchestrator asks this one to
/// run.
#[derive(Debug, Clone)]
pub struct HostPart {
    /// This host's name in the topology.
    pub host: String,
    /// The orchestrator driving the lab.
    pub leader: String,
    /// Cables between hosts.
    pub vxlan: BTreeMap<String, crate::plan::VxlanCable>,
}

/// The part planned here and the placement of the rest, for a part
/// another orchestrator drives.
pub(super) fn part_placement(topo: &Topology, part: &HostPart) -> (Part, Placement) {
    let mut placement = Placement {
        part_of: Some(part.leader.clone()),
        ..Placement::default()
    };
    let elsewhere = |host: &Option<String>| {
        (host.as_deref() != Some(part.host.as_str()))
            .then(|| host.clone().unwrap_or_else(|| part.leader.clone()))
    };
    for node in &topo.nodes {
        if let Some(h) = elsewhere(&node.host) {
            placement.nodes.insert(node.name.clone(), h);
        }
    }
    for switch in &topo.switches {
        if let Some(h) = elsewhere(&switch.host) {
            placement.switches.insert(switch.name.clone(), h);
        }
    }
    placement.vxlan = part
        .vxlan
        .iter()
        .map(|(label, v)| (label.clone(), (v.vni, v.a.to_string(), v.b.to_string())))
        .collect();
    let here = Part {
        hosts: vec![Some(part.host.clone())],
        vxlan: part.vxlan.clone(),
    };
    (here, placement)
}

impl Orchestrator {
    /// Where the devices of `topo` run, for a lab this orchestrator
    /// receives: the part planned here and the placement of the rest,
    /// with VXLAN ends for every cable between hosts.
    pub(super) async fn placement(
        &self,
        topo: &Topology,
        lab: &str,
    ) -> Result<(Part, Placement), LabError> {
        let peers = &self.peers;
        let mut placement = Placement::default();
        for node in &topo.nodes {
            if !peers.is_here(node.host.as_deref()) {
                let host = node.host.clone().unwrap_or_default();
                placement.nodes.insert(node.name.clone(), host);
            }
        }
        for switch in &topo.switches {
            if !peers.is_here(switch.host.as_deref()) {
                let host = switch.host.clone().unwrap_or_default();
                placement.switches.insert(switch.name.clone(), host);
            }
        }
        let hosts: std::collections::BTreeSet<String> = placement
            .nodes
            .values()
            .chain(placement.switches.values())
            .cloned()
            .collect();
        if hosts.is_empty() {
            return Ok((Part::whole(), placement));
        }
        let invalid = |reason: String| LabError::Target {
            lab: lab.to_owned(),
            reason,
        };
        let mut addresses = BTreeMap::new();
        for host in &hosts {
            let address = peers.address(host).await.map_err(invalid)?;
            addresses.insert(host.clone(), address);
        }
        // This host's end of a cable is at the address it reaches the
        // other end's host from (or --vxlan-address).
        let mut cross = Vec::new();
        for c in &topo.cables {
            let (ha, hb) = (
                placement.host_of(&c.a.device),
                placement.host_of(&c.b.device),
            );
            if ha == hb {
                continue;
            }
            let (a, b) = match (ha, hb) {
                (Some(ha), Some(hb)) => (addresses[ha], addresses[hb]),
                (None, Some(hb)) => {
                    let b = addresses[hb];
                    (peers.own_address(b).map_err(invalid)?, b)
                }
                (Some(ha), None) => {
                    let a = addresses[ha];
                    (a, peers.own_address(a).map_err(invalid)?)
                }
                (None, None) => unreachable!("the two ends are on different hosts"),
            };
            cross.push(crate::peers::CrossCable {
                label: c.label(),
                a,
                b,
            });
        }
        let used: std::collections::BTreeSet<u16> = self
            .labs
            .lock()
            .await
            .values()
            .flat_map(|r| r.placement.vxlan.values())
            .flat_map(|(_, a, b)| [a, b])
            .filter_map(|a| a.parse::<std::net::SocketAddr>().ok().map(|a| a.port()))
            .collect();
        let vxlan = crate::peers::allocate(&cross, peers.vxlan_ports, &used, rand::random())
            .map_err(invalid)?;
        placement.peers = hosts.into_iter().collect();
        placement.vxlan = vxlan
            .iter()
            .map(|(label, v)| (label.clone(), (v.vni, v.a.to_string(), v.b.to_string())))
            .collect();
        let part = Part {
            hosts: vec![None, peers.own_name.clone()],
            vxlan,
        };
        Ok((part, placement))
    }

    /// Has every peer of `placement` deploy its part of lab `lab`,
    /// passing their progress on.
    pub(super) async fn deploy_peers(
        &self,
        lab: &str,
        bundle: &vbet_topology::Bundle,
        here: &Part,
        placement: &Placement,
        deployed: &mut Vec<String>,
        progress: &ProgressTx,
    ) -> Result<(), LabError> {
        let cables: std::collections::HashMap<String, pb::VxlanCable> = here
            .vxlan
            .iter()
            .map(|(label, v)| {
                (
                    label.clone(),
                    pb::VxlanCable {
                        vni: v.vni,
                        a: v.a.to_string(),
                        b: v.b.to_string(),
                    },
                )
            })
            .collect();
        let leader = self
            .peers
            .own_name
            .clone()
            .unwrap_or_else(|| "the receiving host".to_owned());
        // Every host at once: VXLAN needs no order between them.
        let results = join_all(placement.peers.iter().map(|host| {
            let request = pb::DeployRequest {
                lab: lab.to_owned(),
                topology_path: String::new(),
                topology: Some(pb::TopologyBundle {
                    name: bundle.name.clone(),
                    text: bundle.text.clone(),
                    files: bundle.files.clone().into_iter().collect(),
                }),
                part: Some(pb::HostPart {
                    host: host.clone(),
                    leader: leader.clone(),
                    cables: cables.clone(),
                }),
            };
            self.deploy_peer(host, request, progress)
        }))
        .await;
        let mut failure = None;
        for (host, result) in placement.peers.iter().zip(results) {
            match result {
                Ok(()) => deployed.push(host.clone()),
                Err(e) => {
                    failure.get_or_insert(e);
                }
            }
        }
        failure.map_or(Ok(()), Err)
    }

    /// Has peer `host` deploy its part, passing its progress on. The peer
    /// rolls its own part back if it fails.
    async fn deploy_peer(
        &self,
        host: &str,
        request: pb::DeployRequest,
        progress: &ProgressTx,
    ) -> Result<(), LabError> {
        use tokio_stream::StreamExt;
        let fail = |reason: String| LabError::Component {
            component: format!("host {host}"),
            reason,
        };
        report(progress, host, "host", pb::Phase::Planned, "").await;
        report(progress, host, "host", pb::Phase::Starting, "").await;
        let mut client = self
            .peers
            .connect(host)
            .await
            .map_err(|e| fail(format!("{e:#}")))?;
        let mut stream = client
            .deploy(request)
            .await
            .map_err(|e| fail(e.message().to_owned()))?
            .into_inner();
        while let Some(p) = stream.next().await {
            let mut p = p.map_err(|e| fail(e.message().to_owned()))?;
            if !p.component.is_empty() {
                p.component = format!("{host}/{}", p.component);
                let _ = progress.send(p).await;
            }
        }
        report(progress, host, "host", pb::Phase::Ready, "").await;
        Ok(())
    }

    /// Destroys the parts of lab `record` on its peers; best effort.
    pub(super) async fn destroy_peers(
        &self,
        record: &LabRecord,
        progress: &ProgressTx,
    ) -> Result<(), String> {
        use tokio_stream::StreamExt;
        let mut problems = Vec::new();
        for host in &record.placement.peers {
            report(progress, host, "host", pb::Phase::Stopping, "").await;
            let result = async {
                let mut client = self
                    .peers
                    .connect(host)
                    .await
                    .map_err(|e| format!("{e:#}"))?;
                let stream = client
                    .destroy(pb::DestroyRequest {
                        lab: record.name.clone(),
                        keep_layers: false,
                    })
                    .await;
                let mut stream = match stream {
                    Ok(s) => s.into_inner(),
                    // Nothing there (a deploy that failed before it).
                    Err(e) if e.code() == tonic::Code::NotFound => return Ok(()),
                    Err(e) => return Err(e.message().to_owned()),
                };
                while let Some(p) = stream.next().await {
                    p.map_err(|e| e.message().to_owned())?;
                }
                Ok::<(), String>(())
            }
            .await;
            if let Err(e) = result {
                problems.push(format!("host {host}: {e}"));
            }
            report(progress, host, "host", pb::Phase::Stopped, "").await;
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }

    /// Has the peers holding an end of cable `index` set it too.
    pub(super) async fn set_link_on_peers(
        &self,
        record: &LabRecord,
        index: usize,
        state: Option<port_pb::LinkState>,
        impairment: Option<port_pb::Impairment>,
    ) -> Result<(), LabError> {
        let cable = &record.cables[index];
        let hosts: std::collections::BTreeSet<&str> = [&cable.a, &cable.b]
            .into_iter()
            .filter_map(|end| split_end(end).and_then(|(d, _)| record.placement.host_of(d)))
            .collect();
        for host in hosts {
            let fail = |reason: String| LabError::Component {
                component: format!("cable {} on host {host}", cable.label),
                reason,
            };
            let mut client = self
                .peers
                .connect(host)
                .await
                .map_err(|e| fail(format!("{e:#}")))?;
            client
                .set_link(pb::SetLinkRequest {
                    lab: record.name.clone(),
                    target: cable.label.clone(),
                    state: state.map(|s| s as i32),
                    impairment,
                })
                .await
                .map_err(|e| fail(e.message().to_owned()))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_part_knows_where_the_rest_runs() {
        let topo = vbet_topology::load_bundle(&vbet_topology::Bundle {
            name: "t.vbet".into(),
            text: "sw = alloc(switch, host = \"c\")\n\
                   x = alloc(host, nics = 1)\n\
                   y = alloc(host, nics = 1, host = \"b\")\n\
                   link(sw, x, y)\n"
                .into(),
            ..Default::default()
        })
        .unwrap_or_else(|e| panic!("{}", e.render(false)));
        let part = HostPart {
            host: "b".into(),
            leader: "a".into(),
            vxlan: BTreeMap::new(),
        };
        let (here, placement) = part_placement(&topo, &part);
        assert!(here.here(Some("b")) && !here.here(None) && !here.here(Some("c")));
        assert_eq!(placement.part_of.as_deref(), Some("a"));
        assert_eq!(placement.host_of("x"), Some("a"));
        assert_eq!(placement.host_of("sw"), Some("c"));
        assert_eq!(placement.host_of("y"), None);
    }
}
