//! The forwarding decision: where a frame goes. A pure function of the
//! MAC table and the frame, so switch and hub differ only here.

use std::time::Instant;

use crate::frame::Frame;
use crate::mac_table::{MacTable, PortId};

/// How a daemon forwards frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forwarding {
    /// A learning switch.
    Switch,
    /// A hub: every frame to every other port.
    Hub,
}

impl Forwarding {
    /// The name the API and logs use: "switch" or "hub".
    pub fn name(self) -> &'static str {
        match self {
            Forwarding::Switch => "switch",
            Forwarding::Hub => "hub",
        }
    }
}

/// Where one frame goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// To every port of the VLAN but the one it came in on.
    Flood,
    /// To one port.
    Port(PortId),
    /// Nowhere (addressed to a MAC behind the port it came from).
    Filter,
}

/// Decides where `frame`, arriving on `ingress` in `vlan`, goes; a switch
/// learns its source address on the way.
pub fn decide(
    mode: Forwarding,
    table: &mut MacTable,
    ingress: PortId,
    vlan: u16,
    frame: &Frame<'_>,
    now: Instant,
) -> Destination {
    if mode == Forwarding::Hub {
        return Destination::Flood;
    }
    table.learn(vlan, frame.src(), ingress, now);
    let dst = frame.dst();
    if dst.is_multicast() {
        return Destination::Flood;
    }
    match table.lookup(vlan, dst, now) {
        Some(port) if port == ingress => Destination::Filter,
        Some(port) => Destination::Port(port),
        None => Destination::Flood,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(dst: u8, src: u8) -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, dst, 2, 0, 0, 0, 0, src, 0x08, 0x00];
        f.extend_from_slice(&[0; 46]);
        f
    }

    #[test]
    fn switch_floods_unknown_then_forwards_known() {
        let mut table = MacTable::default();
        let now = Instant::now();
        let a_to_b = frame(2, 1);
        let b_to_a = frame(1, 2);
        let f = Frame::new_checked(&a_to_b).unwrap();
        assert_eq!(
            decide(Forwarding::Switch, &mut table, 1, 1, &f, now),
            Destination::Flood
        );
        let f = Frame::new_checked(&b_to_a).unwrap();
        assert_eq!(
            decide(Forwarding::Switch, &mut table, 2, 1, &f, now),
            Destination::Port(1)
        );
        let f = Frame::new_checked(&a_to_b).unwrap();
        assert_eq!(
            decide(Forwarding::Switch, &mut table, 1, 1, &f, now),
            Destination::Port(2)
        );
    }

    #[test]
    fn switch_filters_frames_for_the_sender_side() {
        let mut table = MacTable::default();
        let now = Instant::now();
        let from_a = frame(9, 1);
        decide(
            Forwarding::Switch,
            &mut table,
            1,
            1,
            &Frame::new_checked(&from_a).unwrap(),
            now,
        );
        let to_a_from_a_side = frame(1, 3);
        let f = Frame::new_checked(&to_a_from_a_side).unwrap();
        assert_eq!(
            decide(Forwarding::Switch, &mut table, 1, 1, &f, now),
            Destination::Filter
        );
    }

    #[test]
    fn hub_floods_everything_and_learns_nothing() {
        let mut table = MacTable::default();
        let now = Instant::now();
        let f = frame(2, 1);
        let f = Frame::new_checked(&f).unwrap();
        assert_eq!(
            decide(Forwarding::Hub, &mut table, 1, 1, &f, now),
            Destination::Flood
        );
        assert!(table.is_empty());
    }
}
