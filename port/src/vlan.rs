//! 802.1Q port configuration: which VLANs a port carries and how frames
//! are tagged on its wire.

use crate::frame::Frame;

/// The default VLAN of every port.
pub const DEFAULT_VLAN: u16 = 1;

/// How a switch port treats VLANs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VlanConfig {
    /// The VLAN of untagged frames (the access or native VLAN).
    pub access: u16,
    /// Tagged VLANs carried (a trunk); empty for an access port.
    pub trunk: Vec<u16>,
}

impl Default for VlanConfig {
    fn default() -> Self {
        VlanConfig {
            access: DEFAULT_VLAN,
            trunk: Vec::new(),
        }
    }
}

/// A VLAN id outside 1–4094.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("VLAN {0} is out of range (1-4094)")]
pub struct BadVlan(pub u32);

impl VlanConfig {
    /// Builds and checks a configuration: every id must be 1–4094.
    pub fn new(access: u32, trunk: &[u32]) -> Result<VlanConfig, BadVlan> {
        let check = |v: u32| {
            if (1..=4094).contains(&v) {
                Ok(v as u16)
            } else {
                Err(BadVlan(v))
            }
        };
        let access = if access == 0 {
            DEFAULT_VLAN
        } else {
            check(access)?
        };
        let mut trunk = trunk
            .iter()
            .map(|v| check(*v))
            .collect::<Result<Vec<_>, _>>()?;
        trunk.sort_unstable();
        trunk.dedup();
        Ok(VlanConfig { access, trunk })
    }

    /// The VLAN a frame arriving on this port belongs to, or `None` if the
    /// port does not carry the frame's tag.
    pub fn classify(&self, frame: &Frame<'_>) -> Option<u16> {
        match frame.vlan() {
            None => Some(self.access),
            Some(vid) if vid == self.access && !self.trunk.is_empty() => Some(vid),
            Some(vid) => self.trunk.binary_search(&vid).ok().map(|_| vid),
        }
    }

    /// How a frame of `vlan` leaves through this port: untagged, tagged, or
    /// not at all.
    pub fn egress(&self, vlan: u16) -> Tagging {
        if vlan == self.access {
            Tagging::Untagged
        } else if self.trunk.binary_search(&vlan).is_ok() {
            Tagging::Tagged
        } else {
            Tagging::Blocked
        }
    }
}

/// How a frame leaves through a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tagging {
    /// Without a tag.
    Untagged,
    /// With an 802.1Q tag of its VLAN.
    Tagged,
    /// Not at all: the port does not carry the VLAN.
    Blocked,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::tag_into;

    static FRAME: [u8; 20] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 1, 0x08, 0x00, 0, 0, 0, 0, 0, 0,
    ];

    #[test]
    fn access_port_takes_untagged_frames_only() {
        let port = VlanConfig::new(10, &[]).unwrap();
        let frame = Frame::new_checked(&FRAME).unwrap();
        assert_eq!(port.classify(&frame), Some(10));
        let mut tagged = Vec::new();
        tag_into(&frame, 20, &mut tagged);
        assert_eq!(port.classify(&Frame::new_checked(&tagged).unwrap()), None);
        assert_eq!(port.egress(10), Tagging::Untagged);
        assert_eq!(port.egress(20), Tagging::Blocked);
    }

    #[test]
    fn trunk_carries_its_vlans_tagged() {
        let port = VlanConfig::new(1, &[20, 30]).unwrap();
        let frame = Frame::new_checked(&FRAME).unwrap();
        let mut tagged = Vec::new();
        tag_into(&frame, 30, &mut tagged);
        assert_eq!(
            port.classify(&Frame::new_checked(&tagged).unwrap()),
            Some(30)
        );
        tag_into(&frame, 40, &mut tagged);
        assert_eq!(port.classify(&Frame::new_checked(&tagged).unwrap()), None);
        assert_eq!(port.classify(&frame), Some(1), "untagged = native VLAN");
        assert_eq!(port.egress(30), Tagging::Tagged);
        assert_eq!(port.egress(1), Tagging::Untagged);
    }

    #[test]
    fn refuses_out_of_range_ids() {
        assert_eq!(VlanConfig::new(4095, &[]), Err(BadVlan(4095)));
        assert_eq!(VlanConfig::new(1, &[0]), Err(BadVlan(0)));
        assert_eq!(VlanConfig::new(0, &[]).unwrap().access, DEFAULT_VLAN);
    }
}
