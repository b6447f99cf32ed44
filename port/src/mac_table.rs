//! The learning table of a switch: (VLAN, MAC) → port, with aging and a
//! hard bound so a MAC flood cannot blow up memory.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::frame::MacAddr;

/// A port number on a switch or hub (1-based, as VDE counts).
pub type PortId = u32;

/// Default time after which an entry not refreshed is forgotten (as
/// uml_switch and vde_switch).
pub const DEFAULT_AGING: Duration = Duration::from_secs(100);
/// Default bound on the number of entries.
pub const DEFAULT_CAPACITY: usize = 4096;
/// A MAC won't move to another port until its entry is this old (as
/// vde_switch), which stops a looped or spoofed frame from stealing it.
pub const MOVE_HOLD: Duration = Duration::from_secs(3);

#[derive(Debug, Clone, Copy)]
struct Entry {
    port: PortId,
    learned: Instant,
    seen: Instant,
}

/// One learned address, as listed by [`MacTable::entries`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LearnedMac {
    /// The VLAN it was learned on.
    pub vlan: u16,
    /// The address.
    pub mac: MacAddr,
    /// The port it was last seen on.
    pub port: PortId,
    /// Time since it was last seen.
    pub idle: Duration,
}

/// What learning a source address did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Learned {
    /// A new entry.
    New,
    /// An existing entry refreshed.
    Refreshed,
    /// The MAC moved here from another port.
    Moved,
    /// Not learned: the table is full of live entries.
    TableFull,
    /// Not learned: the MAC was learned elsewhere less than 3 s ago.
    Held,
    /// Group addresses are never learned.
    Ignored,
}

/// The bounded, aging MAC learning table.
#[derive(Debug)]
pub struct MacTable {
    entries: HashMap<(u16, MacAddr), Entry>,
    capacity: usize,
    aging: Duration,
}

impl Default for MacTable {
    fn default() -> Self {
        MacTable::new(DEFAULT_CAPACITY, DEFAULT_AGING)
    }
}

impl MacTable {
    /// A table of at most `capacity` entries that forgets entries idle for
    /// `aging`.
    pub fn new(capacity: usize, aging: Duration) -> MacTable {
        MacTable {
            entries: HashMap::with_capacity(capacity.min(1024)),
            capacity: capacity.max(1),
            aging,
        }
    }

    /// The bound on entries.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The aging time.
    pub fn aging(&self) -> Duration {
        self.aging
    }

    /// Entries currently held (some may be expired but not yet swept).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is learned.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Learns that `mac` on `vlan` lives behind `port`.
    pub fn learn(&mut self, vlan: u16, mac: MacAddr, port: PortId, now: Instant) -> Learned {
        if mac.is_multicast() {
            return Learned::Ignored;
        }
        if let Some(entry) = self.entries.get_mut(&(vlan, mac)) {
            if entry.port == port {
                entry.seen = now;
                return Learned::Refreshed;
            }
            let expired = now.saturating_duration_since(entry.seen) >= self.aging;
            if !expired && now.saturating_duration_since(entry.learned) < MOVE_HOLD {
                return Learned::Held;
            }
            *entry = Entry {
                port,
                learned: now,
                seen: now,
            };
            return Learned::Moved;
        }
        if self.entries.len() >= self.capacity {
            self.sweep(now);
            if self.entries.len() >= self.capacity {
                return Learned::TableFull;
            }
        }
        self.entries.insert(
            (vlan, mac),
            Entry {
                port,
                learned: now,
                seen: now,
            },
        );
        Learned::New
    }

    /// The port `mac` on `vlan` lives behind, unless unknown or aged out.
    pub fn lookup(&self, vlan: u16, mac: MacAddr, now: Instant) -> Option<PortId> {
        self.entries
            .get(&(vlan, mac))
            .filter(|e| now.saturating_duration_since(e.seen) < self.aging)
            .map(|e| e.port)
    }

    /// Forgets every entry of `port` (the port is gone or went down).
    pub fn remove_port(&mut self, port: PortId) {
        self.entries.retain(|_, e| e.port != port);
    }

    /// Forgets entries idle for longer than the aging time.
    pub fn sweep(&mut self, now: Instant) {
        let aging = self.aging;
        self.entries
            .retain(|_, e| now.saturating_duration_since(e.seen) < aging);
    }

    /// Every live entry, sorted by VLAN then MAC.
    pub fn entries(&self, now: Instant) -> Vec<LearnedMac> {
        let mut out: Vec<LearnedMac> = self
            .entries
            .iter()
            .filter(|(_, e)| now.saturating_duration_since(e.seen) < self.aging)
            .map(|((vlan, mac), e)| LearnedMac {
                vlan: *vlan,
                mac: *mac,
                port: e.port,
                idle: now.saturating_duration_since(e.seen),
            })
            .collect();
        out.sort_by_key(|e| (e.vlan, e.mac));
        out
    }

    /// The MACs learned on `port`.
    pub fn macs_of(&self, port: PortId, now: Instant) -> Vec<MacAddr> {
        self.entries(now)
            .into_iter()
            .filter(|e| e.port == port)
            .map(|e| e.mac)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac(n: u8) -> MacAddr {
        MacAddr([2, 0, 0, 0, 0, n])
    }

    #[test]
    fn learns_refreshes_and_ages() {
        let t0 = Instant::now();
        let mut table = MacTable::new(8, Duration::from_secs(100));
        assert_eq!(table.learn(1, mac(1), 1, t0), Learned::New);
        assert_eq!(table.learn(1, mac(1), 1, t0), Learned::Refreshed);
        assert_eq!(table.lookup(1, mac(1), t0), Some(1));
        assert_eq!(table.lookup(2, mac(1), t0), None, "VLANs are separate");
        assert_eq!(table.lookup(1, mac(1), t0 + Duration::from_secs(101)), None);
    }

    #[test]
    fn group_addresses_are_not_learned() {
        let mut table = MacTable::default();
        let now = Instant::now();
        assert_eq!(table.learn(1, MacAddr::BROADCAST, 1, now), Learned::Ignored);
        assert!(table.is_empty());
    }

    #[test]
    fn moves_only_after_hold_time() {
        let t0 = Instant::now();
        let mut table = MacTable::default();
        table.learn(1, mac(1), 1, t0);
        assert_eq!(
            table.learn(1, mac(1), 2, t0 + Duration::from_secs(1)),
            Learned::Held
        );
        assert_eq!(table.lookup(1, mac(1), t0), Some(1));
        assert_eq!(table.learn(1, mac(1), 2, t0 + MOVE_HOLD), Learned::Moved);
        assert_eq!(table.lookup(1, mac(1), t0 + MOVE_HOLD), Some(2));
    }

    #[test]
    fn a_flood_cannot_grow_the_table_past_its_bound() {
        let now = Instant::now();
        let mut table = MacTable::new(16, DEFAULT_AGING);
        let mut full = 0;
        for n in 0..=255u8 {
            if table.learn(1, mac(n), 1, now) == Learned::TableFull {
                full += 1;
            }
        }
        assert_eq!(table.len(), 16);
        assert_eq!(full, 256 - 16);
        // Once entries age out, new ones are learned again.
        let later = now + DEFAULT_AGING;
        assert_eq!(
            table.learn(1, MacAddr([4, 0, 0, 0, 0, 1]), 2, later),
            Learned::New
        );
    }

    #[test]
    fn removing_a_port_forgets_its_macs() {
        let now = Instant::now();
        let mut table = MacTable::default();
        table.learn(1, mac(1), 1, now);
        table.learn(1, mac(2), 2, now);
        table.remove_port(1);
        assert_eq!(table.lookup(1, mac(1), now), None);
        assert_eq!(table.macs_of(2, now), vec![mac(2)]);
    }
}
