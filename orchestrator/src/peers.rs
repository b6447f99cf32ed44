//! Other hosts' orchestrators, for multi-host labs: who they are, how to
//! reach them (TLS and a bearer token, always), and the VXLAN ends of the
//! cables that cross between hosts.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use crate::plan::VxlanCable;

/// The default UDP ports VXLAN cable ends are given from.
pub const DEFAULT_VXLAN_PORTS: (u16, u16) = (47000, 48999);

/// A peer orchestrator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// Its name: the `host` attribute of the nodes it runs.
    pub name: String,
    /// Its API: `https://HOST:PORT`.
    pub url: String,
}

impl std::str::FromStr for Peer {
    type Err = String;

    /// `NAME=https://HOST:PORT`.
    fn from_str(s: &str) -> Result<Peer, String> {
        let (name, url) = s
            .split_once('=')
            .ok_or_else(|| format!("{s:?} is not NAME=https://HOST:PORT"))?;
        if name.is_empty() || !url.starts_with("https://") {
            return Err(format!(
                "{s:?} is not NAME=https://HOST:PORT (peers are reached with TLS only)"
            ));
        }
        Ok(Peer {
            name: name.to_owned(),
            url: url.to_owned(),
        })
    }
}

/// This orchestrator's view of the other hosts.
#[derive(Debug, Clone)]
pub struct Peers {
    /// This host's own name in topologies: nodes with `host` set to it
    /// (or with no `host`) run here.
    pub own_name: Option<String>,
    /// The peers, by name.
    pub peers: BTreeMap<String, Peer>,
    /// The CA certificate the peers' certificates are checked against.
    pub ca: Option<PathBuf>,
    /// A file with the token presented to the peers.
    pub token_file: Option<PathBuf>,
    /// The address peers send this host's VXLAN traffic to (default: the
    /// address this host would use to reach the peer).
    pub vxlan_address: Option<IpAddr>,
    /// The UDP ports VXLAN ends are given from, both included.
    pub vxlan_ports: (u16, u16),
}

impl Default for Peers {
    fn default() -> Self {
        Peers {
            own_name: None,
            peers: BTreeMap::new(),
            ca: None,
            token_file: None,
            vxlan_address: None,
            vxlan_ports: DEFAULT_VXLAN_PORTS,
        }
    }
}

/// Parses `LOW-HIGH`.
pub fn parse_port_range(s: &str) -> Result<(u16, u16), String> {
    let bad = || format!("{s:?} is not a port range such as 47000-48999");
    let (lo, hi) = s.split_once('-').ok_or_else(bad)?;
    let (lo, hi): (u16, u16) = (
        lo.trim().parse().map_err(|_| bad())?,
        hi.trim().parse().map_err(|_| bad())?,
    );
    if lo == 0 || hi < lo {
        return Err(bad());
    }
    Ok((lo, hi))
}

impl Peers {
    /// Whether a device placed at `host` runs on this host.
    pub fn is_here(&self, host: Option<&str>) -> bool {
        host.is_none() || host == self.own_name.as_deref()
    }

    /// The peer named `name`.
    pub fn get(&self, name: &str) -> Result<&Peer, String> {
        self.peers.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.peers.keys().map(String::as_str).collect();
            format!(
                "no peer named {name:?} (this orchestrator knows {}); start it with --peer {name}=https://HOST:PORT",
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            )
        })
    }

    /// A client of peer `name`'s API, over TLS with the token.
    pub async fn connect(&self, name: &str) -> anyhow::Result<crate::client::Client> {
        use anyhow::Context;
        let peer = self.get(name).map_err(anyhow::Error::msg)?;
        let ca = self
            .ca
            .as_deref()
            .context("peers need --peer-ca FILE (the CA of their certificates)")?;
        let token = self
            .token_file
            .as_deref()
            .context("peers need --peer-token-file FILE")?;
        crate::client::connect_remote(&peer.url, ca, token)
            .await
            .with_context(|| format!("peer {name}"))
    }

    /// The IP address of peer `name`, from its URL.
    pub async fn address(&self, name: &str) -> Result<IpAddr, String> {
        let peer = self.get(name)?;
        let authority = peer
            .url
            .trim_start_matches("https://")
            .split('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        let authority = if authority
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok() && !authority.ends_with(']'))
        {
            authority
        } else {
            format!("{authority}:443")
        };
        tokio::net::lookup_host(&authority)
            .await
            .map_err(|e| format!("peer {name}: cannot resolve {authority}: {e}"))?
            .next()
            .map(|a| a.ip())
            .ok_or_else(|| format!("peer {name}: {authority} has no address"))
    }

    /// The address peers reach this host's VXLAN ends at: the configured
    /// one, or the one this host would send from towards `towards` (a UDP
    /// socket is connected, nothing is sent).
    pub fn own_address(&self, towards: IpAddr) -> Result<IpAddr, String> {
        if let Some(a) = self.vxlan_address {
            return Ok(a);
        }
        let any: IpAddr = match towards {
            IpAddr::V4(_) => std::net::Ipv4Addr::UNSPECIFIED.into(),
            IpAddr::V6(_) => std::net::Ipv6Addr::UNSPECIFIED.into(),
        };
        let probe = std::net::UdpSocket::bind((any, 0))
            .and_then(|s| s.connect((towards, 4789)).map(|()| s))
            .and_then(|s| s.local_addr())
            .map_err(|e| {
                format!(
                    "cannot tell this host's address towards {towards}: {e}; give --vxlan-address"
                )
            })?;
        Ok(probe.ip())
    }
}

/// A cable between two hosts, to be given VXLAN ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrossCable {
    /// Its label.
    pub label: String,
    /// The address of end a's host.
    pub a: IpAddr,
    /// The address of end b's host.
    pub b: IpAddr,
}

/// Gives every cable a VNI and a UDP port at each end: VNIs are
/// consecutive from `seed` (24 bits, never 0), ports are taken in turn
/// from `range` starting at an offset picked by `seed`, skipping those in
/// `used` (so that labs of this orchestrator never share one, and two
/// ends on one address never do).
pub fn allocate(
    cables: &[CrossCable],
    range: (u16, u16),
    used: &BTreeSet<u16>,
    seed: u32,
) -> Result<BTreeMap<String, VxlanCable>, String> {
    let size = u32::from(range.1 - range.0) + 1;
    let free = size as usize
        - used
            .iter()
            .filter(|p| (range.0..=range.1).contains(*p))
            .count();
    if free < cables.len() * 2 {
        return Err(format!(
            "{} cables between hosts need {} UDP ports, but only {free} of {}-{} are free; give a larger --vxlan-ports",
            cables.len(),
            cables.len() * 2,
            range.0,
            range.1
        ));
    }
    let mut next = seed % size;
    let mut take = || loop {
        let port = range.0 + (next % size) as u16;
        next = next.wrapping_add(1);
        if !used.contains(&port) {
            return port;
        }
    };
    let vni_base = seed % (vbet_port_max_vni() - cables.len() as u32).max(1) + 1;
    Ok(cables
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let (pa, pb) = (take(), take());
            (
                c.label.clone(),
                VxlanCable {
                    vni: vni_base + i as u32,
                    a: SocketAddr::new(c.a, pa),
                    b: SocketAddr::new(c.b, pb),
                },
            )
        })
        .collect())
}

/// The largest VNI (24 bits).
const fn vbet_port_max_vni() -> u32 {
    0x00ff_ffff
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_parse() {
        let p: Peer = "b=https://10.0.0.2:7443".parse().unwrap();
        assert_eq!(p.name, "b");
        assert!("b=http://10.0.0.2:7443".parse::<Peer>().is_err());
        assert!("https://x".parse::<Peer>().is_err());
        assert_eq!(parse_port_range("100-200"), Ok((100, 200)));
        assert!(parse_port_range("200-100").is_err());
    }

    #[test]
    fn allocation_gives_distinct_ports_and_vnis() {
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let cables: Vec<CrossCable> = (0..3)
            .map(|i| CrossCable {
                label: format!("c{i}"),
                a: lo,
                b: lo,
            })
            .collect();
        let used: BTreeSet<u16> = [101].into();
        let got = allocate(&cables, (100, 107), &used, 1).unwrap();
        let mut ports: Vec<u16> = got
            .values()
            .flat_map(|v| [v.a.port(), v.b.port()])
            .collect();
        assert!(!ports.contains(&101));
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), 6);
        let vnis: BTreeSet<u32> = got.values().map(|v| v.vni).collect();
        assert_eq!(vnis.len(), 3);
        assert!(vnis.iter().all(|v| *v > 0 && *v <= 0xff_ffff));
        assert!(allocate(&cables, (100, 104), &used, 1).is_err());
    }

    #[test]
    fn own_address_towards_loopback_is_loopback() {
        let p = Peers::default();
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(p.own_address(lo), Ok(lo));
    }
}
