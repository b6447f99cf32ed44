//! Identifiers on the Chord ring: `M`-bit numbers, SHA-1 of an address
//! truncated to its first `M` bits, and the ring intervals the protocol
//! reasons with.

use std::fmt;
use std::net::SocketAddr;

use sha1::{Digest, Sha1};

/// Bits in an identifier; the ring has `2^M` points.
pub const M: usize = 32;

/// A point on the identifier ring (a node id or a key).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Id(pub u32);

impl Id {
    /// The id of a string: the first `M` bits of its SHA-1 digest, big-endian.
    pub fn hash(data: &[u8]) -> Id {
        let digest = Sha1::digest(data);
        Id(u32::from_be_bytes([
            digest[0], digest[1], digest[2], digest[3],
        ]))
    }

    /// The id of a peer: the hash of its address written as `ip:port`
    /// (`[ip]:port` for IPv6), as `SocketAddr` displays it.
    pub fn of_addr(addr: SocketAddr) -> Id {
        Id::hash(addr.to_string().as_bytes())
    }

    /// Parses a key given on the command line: `0x` followed by up to eight
    /// hex digits is taken as the id itself; anything else is hashed.
    pub fn of_key(key: &str) -> Id {
        match key.strip_prefix("0x") {
            Some(hex) if !hex.is_empty() && hex.len() <= M / 4 => {
                u32::from_str_radix(hex, 16).map_or_else(|_| Id::hash(key.as_bytes()), Id)
            }
            _ => Id::hash(key.as_bytes()),
        }
    }

    /// This id plus `delta`, modulo `2^M`.
    pub fn plus(self, delta: u32) -> Id {
        Id(self.0.wrapping_add(delta))
    }

    /// The clockwise distance from `self` to `to`, modulo `2^M`.
    pub fn distance_to(self, to: Id) -> u32 {
        to.0.wrapping_sub(self.0)
    }

    /// Whether `self` lies in the ring interval `(a, b]`. When `a == b` the
    /// interval is the whole ring, as in Chord's `find_successor` on a node
    /// that is its own successor.
    pub fn in_open_closed(self, a: Id, b: Id) -> bool {
        a == b || (a.distance_to(self) != 0 && a.distance_to(self) <= a.distance_to(b))
    }

    /// Whether `self` lies in the ring interval `(a, b)`. When `a == b` the
    /// interval is the whole ring except `a`.
    pub fn in_open(self, a: Id, b: Id) -> bool {
        let d = a.distance_to(self);
        if a == b {
            d != 0
        } else {
            d != 0 && d < a.distance_to(b)
        }
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08x}", self.0)
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Id({:08x})", self.0)
    }
}

/// The start of finger `i` (0-based) of node `n`: `n + 2^i mod 2^M`.
/// Finger `i` is the first node that succeeds this point.
///
/// # Panics
/// If `i >= M`.
pub fn finger_start(n: Id, i: usize) -> Id {
    assert!(i < M, "finger index {i} out of range 0..{M}");
    n.plus(1u32 << i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_closed_without_wraparound() {
        let (a, b) = (Id(10), Id(20));
        assert!(!Id(10).in_open_closed(a, b));
        assert!(Id(11).in_open_closed(a, b));
        assert!(Id(20).in_open_closed(a, b));
        assert!(!Id(21).in_open_closed(a, b));
        assert!(!Id(5).in_open_closed(a, b));
    }

    #[test]
    fn open_closed_with_wraparound() {
        let (a, b) = (Id(u32::MAX - 5), Id(3));
        assert!(!Id(u32::MAX - 5).in_open_closed(a, b));
        assert!(Id(u32::MAX).in_open_closed(a, b));
        assert!(Id(0).in_open_closed(a, b));
        assert!(Id(3).in_open_closed(a, b));
        assert!(!Id(4).in_open_closed(a, b));
        assert!(!Id(100).in_open_closed(a, b));
    }

    #[test]
    fn open_closed_degenerate_is_whole_ring() {
        let a = Id(7);
        for x in [0, 6, 7, 8, u32::MAX] {
            assert!(Id(x).in_open_closed(a, a), "{x}");
        }
    }

    #[test]
    fn open_interval() {
        assert!(!Id(10).in_open(Id(10), Id(20)));
        assert!(Id(15).in_open(Id(10), Id(20)));
        assert!(!Id(20).in_open(Id(10), Id(20)));
        // Wraparound.
        assert!(Id(0).in_open(Id(u32::MAX), Id(1)));
        assert!(!Id(1).in_open(Id(u32::MAX), Id(1)));
        assert!(!Id(u32::MAX).in_open(Id(u32::MAX), Id(1)));
        // Degenerate: everything but the end point.
        assert!(Id(8).in_open(Id(7), Id(7)));
        assert!(!Id(7).in_open(Id(7), Id(7)));
    }

    #[test]
    fn finger_starts() {
        let n = Id(0xfffffff0);
        assert_eq!(finger_start(n, 0), Id(0xfffffff1));
        assert_eq!(finger_start(n, 3), Id(0xfffffff8));
        assert_eq!(finger_start(n, 4), Id(0x00000000));
        assert_eq!(finger_start(n, 31), Id(0x7ffffff0));
        assert_eq!(finger_start(Id(0), 31), Id(0x80000000));
    }

    #[test]
    #[should_panic(expected = "out of range")]
    fn finger_start_rejects_index_m() {
        finger_start(Id(0), M);
    }

    #[test]
    fn hash_is_sha1_prefix() {
        // SHA-1("abc") = a9993e36 4706816a ba3e2571 7850c26c 9cd0d89d
        assert_eq!(Id::hash(b"abc"), Id(0xa9993e36));
        let addr: SocketAddr = "10.43.0.1:4000".parse().unwrap();
        assert_eq!(Id::of_addr(addr), Id::hash(b"10.43.0.1:4000"));
    }

    #[test]
    fn keys_in_hex_are_taken_literally() {
        assert_eq!(Id::of_key("0xdeadbeef"), Id(0xdeadbeef));
        assert_eq!(Id::of_key("0x1"), Id(1));
        assert_eq!(Id::of_key("abc"), Id(0xa9993e36));
        // Not hex, or too long: hashed.
        assert_eq!(Id::of_key("0xzz"), Id::hash(b"0xzz"));
        assert_eq!(Id::of_key("0x123456789"), Id::hash(b"0x123456789"));
    }
}
