//! Multicast-listener snooping, the part a lab needs: membership reports
//! (IGMP for IPv4, MLD for IPv6) go only to the ports a querier was heard
//! on, as a snooping Ethernet switch sends them to its router ports.
//!
//! Reports are for queriers (multicast routers); hosts ignore the reports
//! of others. Flooding them costs a lab of N VMs on one switch N² frames
//! while its VMs boot (each new NIC reports its groups a few times), which
//! is what kept a thousand VMs from coming up quickly. Multicast data —
//! OSPF hellos, neighbour solicitations, router advertisements — is
//! flooded as before: only the reports are steered.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use crate::frame::Frame;
use crate::mac_table::PortId;

/// How long a port stays a querier port after its last query: MLD's and
/// IGMP's "other querier present interval" with default timers (255 s),
/// rounded up.
pub const QUERIER_TIMEOUT: Duration = Duration::from_secs(260);

/// A multicast-listener control message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// A query (IGMP 0x11, MLD 130): its port leads to a querier.
    Query,
    /// A membership report or leave (IGMP 0x12/0x16/0x17/0x22, MLD
    /// 131/132/143): for queriers only. For MLD, what it says of the
    /// all-routers group ff02::2, which IPv6 routers join.
    Report(Option<AllRouters>),
}

/// What a report says of the all-routers group ff02::2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllRouters {
    /// Its sender listens (a router).
    Joined,
    /// Its sender left.
    Left,
}

/// The all-routers group ff02::2.
const ALL_ROUTERS: [u8; 16] = [0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

/// The Ethernet address of ff02::2: router solicitations go there.
pub const ALL_ROUTERS_MAC: [u8; 6] = [0x33, 0x33, 0, 0, 0, 2];

/// What `frame` is, if it is an IGMP or MLD message (tagged or not).
pub fn classify(frame: &Frame<'_>) -> Option<Control> {
    if !frame.dst().is_multicast() {
        return None;
    }
    let bytes = frame.as_bytes();
    let (ethertype, l3) = match frame.vlan() {
        Some(_) => (u16::from_be_bytes([*bytes.get(16)?, *bytes.get(17)?]), 18),
        None => (frame.outer_ethertype(), 14),
    };
    match ethertype {
        0x0800 => igmp(bytes.get(l3..)?),
        0x86dd => mld(bytes.get(l3..)?),
        _ => None,
    }
}

fn igmp(ip: &[u8]) -> Option<Control> {
    let header_len = usize::from(ip.first()? & 0x0f) * 4;
    if *ip.get(9)? != 2 {
        return None;
    }
    match *ip.get(header_len)? {
        0x11 => Some(Control::Query),
        0x12 | 0x16 | 0x17 | 0x22 => Some(Control::Report(None)),
        _ => None,
    }
}

fn mld(ip: &[u8]) -> Option<Control> {
    let mut next = *ip.get(6)?;
    let mut at = 40;
    // MLD rides behind a hop-by-hop header (router alert); walk the
    // extension headers that may come first.
    for _ in 0..4 {
        match next {
            0 | 43 | 60 => {
                next = *ip.get(at)?;
                at += (usize::from(*ip.get(at + 1)?) + 1) * 8;
            }
            _ => break,
        }
    }
    if next != 58 {
        return None;
    }
    let icmp = ip.get(at..)?;
    match *icmp.first()? {
        130 => Some(Control::Query),
        // MLDv1: the group at byte 8.
        131 | 132 => {
            let about = icmp.get(8..24).is_some_and(|g| g == ALL_ROUTERS);
            let what = if icmp[0] == 131 {
                AllRouters::Joined
            } else {
                AllRouters::Left
            };
            Some(Control::Report(about.then_some(what)))
        }
        143 => Some(Control::Report(mldv2_all_routers(icmp))),
        _ => None,
    }
}

/// What an MLDv2 report's records say of ff02::2: a record of mode
/// EXCLUDE (2, 4) joins it, INCLUDE with no sources (1, 3) leaves it.
fn mldv2_all_routers(icmp: &[u8]) -> Option<AllRouters> {
    let records = u16::from_be_bytes([*icmp.get(6)?, *icmp.get(7)?]);
    let mut at = 8;
    let mut said = None;
    for _ in 0..records {
        let kind = *icmp.get(at)?;
        let aux = usize::from(*icmp.get(at + 1)?) * 4;
        let sources = usize::from(u16::from_be_bytes([*icmp.get(at + 2)?, *icmp.get(at + 3)?]));
        if icmp.get(at + 4..at + 20)? == ALL_ROUTERS {
            said = match (kind, sources) {
                (2 | 4, _) => Some(AllRouters::Joined),
                (1 | 3, 0) => Some(AllRouters::Left),
                _ => said,
            };
        }
        at += 20 + 16 * sources + aux;
    }
    said
}

/// The ports queriers were heard on, and the ports IPv6 routers reported
/// the all-routers group on, per VLAN.
#[derive(Debug, Default)]
pub struct Queriers {
    heard: HashMap<(u16, PortId), Instant>,
    routers: HashSet<(u16, PortId)>,
}

impl Queriers {
    /// A query came in on `port` in `vlan`.
    pub fn heard(&mut self, vlan: u16, port: PortId, now: Instant) {
        self.heard.insert((vlan, port), now);
    }

    /// Whether `port` leads to a querier of `vlan` (heard within
    /// [`QUERIER_TIMEOUT`]).
    pub fn leads_to_querier(&self, vlan: u16, port: PortId, now: Instant) -> bool {
        self.heard
            .get(&(vlan, port))
            .is_some_and(|at| now.saturating_duration_since(*at) < QUERIER_TIMEOUT)
    }

    /// Notes what a report from `port` said of the all-routers group.
    pub fn all_routers(&mut self, vlan: u16, port: PortId, said: AllRouters) {
        match said {
            AllRouters::Joined => self.routers.insert((vlan, port)),
            AllRouters::Left => self.routers.remove(&(vlan, port)),
        };
    }

    /// Whether a frame to the all-routers group (a router solicitation)
    /// should go out of `port`: a router reported the group there, or a
    /// querier is behind it (it may stand for more routers).
    pub fn wants_all_routers(&self, vlan: u16, port: PortId, now: Instant) -> bool {
        self.routers.contains(&(vlan, port)) || self.leads_to_querier(vlan, port, now)
    }

    /// Forgets a port that went away.
    pub fn remove_port(&mut self, port: PortId) {
        self.heard.retain(|(_, p), _| *p != port);
        self.routers.retain(|(_, p)| *p != port);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ether(dst: [u8; 6], ethertype: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = dst.to_vec();
        f.extend_from_slice(&[2, 0, 0, 0, 0, 1]);
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    /// An IPv6 packet with a hop-by-hop header, then ICMPv6 `kind`.
    fn mld_packet(kind: u8) -> Vec<u8> {
        let mut ip = vec![0x60, 0, 0, 0, 0, 32, 0, 1];
        ip.extend_from_slice(&[0; 32]);
        ip.extend_from_slice(&[58, 0, 5, 2, 0, 0, 1, 0]);
        ip.extend_from_slice(&[kind, 0, 0, 0, 0, 0, 0, 0]);
        ip
    }

    fn classify_bytes(bytes: &[u8]) -> Option<Control> {
        classify(&Frame::new_checked(bytes).unwrap())
    }

    #[test]
    fn mld_and_igmp_messages_are_told_apart() {
        let all_mld_routers = [0x33, 0x33, 0, 0, 0, 0x16];
        for (kind, want) in [
            (143, Some(Control::Report(None))),
            (131, Some(Control::Report(None))),
            (132, Some(Control::Report(None))),
            (130, Some(Control::Query)),
            (135, None), // a neighbour solicitation is data, flooded
        ] {
            let f = ether(all_mld_routers, 0x86dd, &mld_packet(kind));
            assert_eq!(classify_bytes(&f), want, "ICMPv6 type {kind}");
        }
        // Tagged.
        let mut tagged = ether(all_mld_routers, 0x8100, &[0, 10, 0x86, 0xdd]);
        tagged.extend_from_slice(&mld_packet(143));
        assert_eq!(classify_bytes(&tagged), Some(Control::Report(None)));
        // IGMPv3 report and a query, with IPv4 options (router alert).
        let igmp = |kind: u8| {
            let mut ip = vec![0x46, 0, 0, 32, 0, 0, 0, 0, 1, 2, 0, 0];
            ip.extend_from_slice(&[10, 0, 0, 1, 224, 0, 0, 22, 0x94, 4, 0, 0]);
            ip.extend_from_slice(&[kind, 0, 0, 0, 0, 0, 0, 0]);
            ether([1, 0, 0x5e, 0, 0, 0x16], 0x0800, &ip)
        };
        assert_eq!(classify_bytes(&igmp(0x22)), Some(Control::Report(None)));
        assert_eq!(classify_bytes(&igmp(0x11)), Some(Control::Query));
        // Not multicast, cut short, or not IGMP/MLD at all.
        let unicast = ether([2, 0, 0, 0, 0, 9], 0x86dd, &mld_packet(143));
        assert_eq!(classify_bytes(&unicast), None);
        let short = ether(all_mld_routers, 0x86dd, &mld_packet(143)[..44]);
        assert_eq!(classify_bytes(&short), None);
        let arp = ether([0xff; 6], 0x0806, &[0; 28]);
        assert_eq!(classify_bytes(&arp), None);
    }

    /// An MLDv2 report with one record of `kind` for `group`.
    fn mldv2(kind: u8, group: [u8; 16]) -> Vec<u8> {
        let mut ip = vec![0x60, 0, 0, 0, 0, 36, 0, 1];
        ip.extend_from_slice(&[0; 32]);
        ip.extend_from_slice(&[58, 0, 5, 2, 0, 0, 1, 0]);
        ip.extend_from_slice(&[143, 0, 0, 0, 0, 0, 0, 1]);
        ip.extend_from_slice(&[kind, 0, 0, 0]);
        ip.extend_from_slice(&group);
        ether([0x33, 0x33, 0, 0, 0, 0x16], 0x86dd, &ip)
    }

    #[test]
    fn reports_of_the_all_routers_group_are_read() {
        let mut other = ALL_ROUTERS;
        other[15] = 0xfb;
        for (kind, group, want) in [
            (4, ALL_ROUTERS, Some(AllRouters::Joined)),
            (2, ALL_ROUTERS, Some(AllRouters::Joined)),
            (3, ALL_ROUTERS, Some(AllRouters::Left)),
            (4, other, None),
        ] {
            assert_eq!(
                classify_bytes(&mldv2(kind, group)),
                Some(Control::Report(want)),
                "record type {kind}"
            );
        }
        let mut q = Queriers::default();
        let now = Instant::now();
        q.all_routers(1, 4, AllRouters::Joined);
        assert!(q.wants_all_routers(1, 4, now));
        assert!(!q.wants_all_routers(1, 5, now));
        q.all_routers(1, 4, AllRouters::Left);
        assert!(!q.wants_all_routers(1, 4, now));
        q.heard(1, 5, now);
        assert!(q.wants_all_routers(1, 5, now));
    }

    #[test]
    fn querier_ports_expire_and_go_with_their_port() {
        let mut q = Queriers::default();
        let t0 = Instant::now();
        q.heard(1, 7, t0);
        assert!(q.leads_to_querier(1, 7, t0 + Duration::from_secs(100)));
        assert!(!q.leads_to_querier(2, 7, t0));
        assert!(!q.leads_to_querier(1, 7, t0 + QUERIER_TIMEOUT));
        q.remove_port(7);
        assert!(!q.leads_to_querier(1, 7, t0));
    }
}
