//! A zero-copy view of an Ethernet II frame, with its optional 802.1Q tag.
//!
//! Frames arrive from untrusted peers, so the only way to get a [`Frame`]
//! is [`Frame::new_checked`], which refuses anything shorter than a header.

use std::fmt;
use std::str::FromStr;

/// Length of an Ethernet header without a VLAN tag: destination, source,
/// EtherType.
pub const HEADER_LEN: usize = 14;
/// Length of an 802.1Q tag (TPID + TCI).
pub const VLAN_TAG_LEN: usize = 4;
/// The EtherType (TPID) that marks an 802.1Q tag.
pub const ETHERTYPE_VLAN: u16 = 0x8100;

const DST: std::ops::Range<usize> = 0..6;
const SRC: std::ops::Range<usize> = 6..12;
const ETHERTYPE: std::ops::Range<usize> = 12..14;
const TCI: std::ops::Range<usize> = 14..16;

/// A 48-bit Ethernet MAC address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// The broadcast address ff:ff:ff:ff:ff:ff.
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);

    /// True for group addresses (multicast, including broadcast).
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 0x01 != 0
    }

    /// True for ff:ff:ff:ff:ff:ff.
    pub fn is_broadcast(&self) -> bool {
        *self == Self::BROADCAST
    }

    /// A locally administered unicast address derived from a seed of
    /// bytes, so the same seed always gives the same MAC.
    pub fn local_from_seed(seed: &[u8]) -> MacAddr {
        // FNV-1a: stable across releases and platforms, unlike std's hasher.
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in seed {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
        let b = hash.to_be_bytes();
        MacAddr([(b[0] & 0xfc) | 0x02, b[1], b[2], b[3], b[4], b[5]])
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A string that is not a MAC address of the form `aa:bb:cc:dd:ee:ff`.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not a MAC address (expected six hex bytes such as 02:00:00:00:00:01)")]
pub struct BadMac(pub String);

impl FromStr for MacAddr {
    type Err = BadMac;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut bytes = [0u8; 6];
        let mut parts = s.split([':', '-']);
        for byte in &mut bytes {
            let part = parts.next().ok_or_else(|| BadMac(s.to_owned()))?;
            if part.len() != 2 {
                return Err(BadMac(s.to_owned()));
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| BadMac(s.to_owned()))?;
        }
        if parts.next().is_some() {
            return Err(BadMac(s.to_owned()));
        }
        Ok(MacAddr(bytes))
    }
}

/// A frame too short to hold an Ethernet header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("frame of {0} bytes is shorter than an Ethernet header")]
pub struct Runt(pub usize);

/// A read-only view of an Ethernet frame (destination MAC first, no FCS).
#[derive(Clone, Copy)]
pub struct Frame<'a> {
    bytes: &'a [u8],
}

impl<'a> Frame<'a> {
    /// Views `bytes` as a frame, refusing anything shorter than a header
    /// (and a tagged frame too short for its tag).
    pub fn new_checked(bytes: &'a [u8]) -> Result<Self, Runt> {
        if bytes.len() < HEADER_LEN {
            return Err(Runt(bytes.len()));
        }
        let frame = Frame { bytes };
        if frame.outer_ethertype() == ETHERTYPE_VLAN && bytes.len() < HEADER_LEN + VLAN_TAG_LEN {
            return Err(Runt(bytes.len()));
        }
        Ok(frame)
    }

    /// The whole frame.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The destination MAC.
    pub fn dst(&self) -> MacAddr {
        MacAddr(self.bytes[DST].try_into().expect("checked length"))
    }

    /// The source MAC.
    pub fn src(&self) -> MacAddr {
        MacAddr(self.bytes[SRC].try_into().expect("checked length"))
    }

    /// The EtherType field right after the MACs (0x8100 when tagged).
    pub fn outer_ethertype(&self) -> u16 {
        u16::from_be_bytes(self.bytes[ETHERTYPE].try_into().expect("checked length"))
    }

    /// The VLAN id of the 802.1Q tag, if the frame carries one.
    pub fn vlan(&self) -> Option<u16> {
        (self.outer_ethertype() == ETHERTYPE_VLAN).then(|| {
            u16::from_be_bytes(self.bytes[TCI].try_into().expect("checked length")) & 0x0fff
        })
    }
}

/// Writes `frame` without its 802.1Q tag into `out` (cleared first).
pub fn untag_into(frame: &Frame<'_>, out: &mut Vec<u8>) {
    out.clear();
    let bytes = frame.as_bytes();
    if frame.vlan().is_some() {
        out.extend_from_slice(&bytes[..12]);
        out.extend_from_slice(&bytes[HEADER_LEN + 2..]);
    } else {
        out.extend_from_slice(bytes);
    }
}

/// Writes `frame` (untagged) with an 802.1Q tag for `vlan` into `out`.
pub fn tag_into(frame: &Frame<'_>, vlan: u16, out: &mut Vec<u8>) {
    out.clear();
    let bytes = frame.as_bytes();
    out.extend_from_slice(&bytes[..12]);
    out.extend_from_slice(&ETHERTYPE_VLAN.to_be_bytes());
    out.extend_from_slice(&(vlan & 0x0fff).to_be_bytes());
    let rest = if frame.vlan().is_some() {
        &bytes[HEADER_LEN + 2..]
    } else {
        &bytes[12..]
    };
    out.extend_from_slice(rest);
}

#[cfg(test)]
mod tests {
    use super::*;

    // An ARP request as UML sends it: 42 bytes, no padding.
    static ARP: [u8; 42] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00,
        0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 10, 0, 0, 1,
        0, 0, 0, 0, 0, 0, 10, 0, 0, 2,
    ];

    #[test]
    fn parses_untagged_frame() {
        let frame = Frame::new_checked(&ARP).unwrap();
        assert!(frame.dst().is_broadcast());
        assert_eq!(frame.src().to_string(), "02:00:00:00:00:01");
        assert_eq!(frame.outer_ethertype(), 0x0806);
        assert_eq!(frame.vlan(), None);
    }

    #[test]
    fn refuses_runts() {
        assert_eq!(Frame::new_checked(&ARP[..13]).err(), Some(Runt(13)));
        let mut tagged = ARP[..14].to_vec();
        tagged[12..14].copy_from_slice(&[0x81, 0x00]);
        assert!(Frame::new_checked(&tagged).is_err());
    }

    #[test]
    fn tag_and_untag_round_trip() {
        let frame = Frame::new_checked(&ARP).unwrap();
        let mut tagged = Vec::new();
        tag_into(&frame, 42, &mut tagged);
        assert_eq!(tagged.len(), ARP.len() + VLAN_TAG_LEN);
        let tagged_frame = Frame::new_checked(&tagged).unwrap();
        assert_eq!(tagged_frame.vlan(), Some(42));
        assert_eq!(tagged_frame.src(), frame.src());
        let mut plain = Vec::new();
        untag_into(&tagged_frame, &mut plain);
        assert_eq!(plain, ARP);
    }

    #[test]
    fn mac_parse_and_print() {
        let mac: MacAddr = "02:AB:cd:00:11:ff".parse().unwrap();
        assert_eq!(mac.to_string(), "02:ab:cd:00:11:ff");
        assert!("02:ab:cd:00:11".parse::<MacAddr>().is_err());
        assert!("02:ab:cd:00:11:ff:00".parse::<MacAddr>().is_err());
        assert!("zz:ab:cd:00:11:ff".parse::<MacAddr>().is_err());
        assert!(MacAddr::BROADCAST.is_multicast());
    }

    #[test]
    fn seeded_macs_are_stable_local_unicast() {
        let a = MacAddr::local_from_seed(b"lab/r1/0");
        assert_eq!(a, MacAddr::local_from_seed(b"lab/r1/0"));
        assert_ne!(a, MacAddr::local_from_seed(b"lab/r1/1"));
        assert_eq!(a.0[0] & 0x03, 0x02);
    }
}
