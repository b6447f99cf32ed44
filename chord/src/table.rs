//! A peer's routing state — predecessor, successor list and finger table —
//! and the decisions Chord makes from it alone, with no sockets: which peer
//! owns a key or is closer to it, what a notify changes, what a dead peer
//! leaves behind.

use std::net::SocketAddr;

use crate::id::{Id, M, finger_start};
use crate::wire::{Node, Status};

/// Peers offered by one lookup step, so that the asker can skip dead ones.
pub const CANDIDATES: usize = 3;

/// The outcome of one lookup step at a peer.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Step {
    /// The key's owner is known.
    Owner(Node),
    /// Ask one of these peers, preceding the key, the closest to it first.
    Next(Vec<Node>),
}

/// One peer's view of the ring.
#[derive(Clone, Debug)]
pub struct RoutingTable {
    me: Node,
    pred: Option<Node>,
    succs: Vec<Node>,
    fingers: [Option<Node>; M],
    r: usize,
}

impl RoutingTable {
    /// The table of a peer alone on its ring, keeping `r` successors.
    pub fn new(me: Node, r: usize) -> RoutingTable {
        RoutingTable {
            me,
            pred: None,
            succs: Vec::new(),
            fingers: [None; M],
            r: r.max(1),
        }
    }

    /// This peer.
    pub fn me(&self) -> Node {
        self.me
    }

    /// The predecessor, if known.
    pub fn pred(&self) -> Option<Node> {
        self.pred
    }

    /// The successor list, nearest first; empty when the peer knows no
    /// other peer.
    pub fn successors(&self) -> &[Node] {
        &self.succs
    }

    /// The nearest successor; the peer itself when it is alone.
    pub fn successor(&self) -> Node {
        self.succs.first().copied().unwrap_or(self.me)
    }

    /// Finger `i`, if known.
    pub fn finger(&self, i: usize) -> Option<Node> {
        self.fingers[i]
    }

    /// The state as reported to `status`.
    pub fn status(&self) -> Status {
        Status {
            me: self.me,
            pred: self.pred,
            succs: self.succs.clone(),
            fingers: self.fingers.to_vec(),
        }
    }

    /// Sets the successor list to `first` followed by `first`'s own list,
    /// leaving out this peer and repeats, cut to `r` entries. Finger 0 is
    /// the successor.
    pub fn set_successors(&mut self, first: Node, rest: &[Node]) {
        let mut list: Vec<Node> = Vec::with_capacity(self.r);
        for n in std::iter::once(&first).chain(rest) {
            if list.len() == self.r {
                break;
            }
            if n.addr != self.me.addr && !list.iter().any(|m| m.addr == n.addr) {
                list.push(*n);
            }
        }
        self.fingers[0] = list.first().copied();
        self.succs = list;
    }

    /// Chord's `notify`: `n` thinks it might be our predecessor. Returns
    /// whether it became our predecessor.
    pub fn notified(&mut self, n: Node) -> bool {
        if n.addr == self.me.addr {
            return false;
        }
        let adopt = match self.pred {
            None => true,
            Some(p) => n.id.in_open(p.id, self.me.id),
        };
        if adopt {
            self.pred = Some(n);
        }
        adopt
    }

    /// Forgets the predecessor (found dead).
    pub fn clear_pred(&mut self) {
        self.pred = None;
    }

    /// Drops a peer found dead from every place it appears. When that
    /// empties the successor list, the nearest remaining finger becomes the
    /// successor.
    pub fn forget(&mut self, addr: SocketAddr) {
        self.succs.retain(|n| n.addr != addr);
        for f in &mut self.fingers {
            if f.is_some_and(|n| n.addr == addr) {
                *f = None;
            }
        }
        if self.pred.is_some_and(|n| n.addr == addr) {
            self.pred = None;
        }
        if self.succs.is_empty() {
            let me = self.me.id;
            if let Some(n) = self
                .fingers
                .iter()
                .flatten()
                .min_by_key(|n| me.distance_to(n.id))
            {
                self.succs.push(*n);
            }
        }
        self.fingers[0] = self.succs.first().copied();
    }

    /// Records `owner` as the successor of finger `from`'s start, and of the
    /// following fingers' starts as long as they also fall in
    /// `(me, owner]`. Returns the index of the next finger to look up
    /// (wrapping to 0).
    pub fn set_finger_run(&mut self, from: usize, owner: Node) -> usize {
        if owner.addr == self.me.addr {
            // Only this peer follows the start: a finger to ourselves routes
            // nowhere.
            self.fingers[from] = None;
            return (from + 1) % M;
        }
        let mut i = from;
        while i < M
            && (i == from || finger_start(self.me.id, i).in_open_closed(self.me.id, owner.id))
        {
            self.fingers[i] = Some(owner);
            i += 1;
        }
        if from == 0 || self.succs.is_empty() {
            // Keep finger 0 and the successor list agreeing.
            self.fingers[0] = self.succs.first().copied().or(self.fingers[0]);
        }
        i % M
    }

    /// One step of a lookup of `key` at this peer: the owner if this peer
    /// knows it — itself when `key` is in `(pred, me]`, its successor when
    /// `key` is in `(me, successor]` — else the peers it knows that precede
    /// `key`: the fingers closest to `key` first (Chord's
    /// `closest_preceding_node`), then the successor list's, as fallbacks.
    /// Routing on fingers alone keeps path lengths those of the paper.
    pub fn step(&self, key: Id) -> Step {
        let me = self.me.id;
        if let Some(p) = self.pred
            && p.id != me
            && key.in_open_closed(p.id, me)
        {
            return Step::Owner(self.me);
        }
        let succ = self.successor();
        if succ.addr == self.me.addr || key.in_open_closed(me, succ.id) {
            return Step::Owner(succ);
        }
        let preceding = |nodes: &mut dyn Iterator<Item = &Node>| {
            let mut found: Vec<Node> = Vec::new();
            for n in nodes {
                if n.id.in_open(me, key) && !found.iter().any(|c| c.addr == n.addr) {
                    found.push(*n);
                }
            }
            found.sort_by_key(|n| std::cmp::Reverse(me.distance_to(n.id)));
            found
        };
        let mut cands = preceding(&mut self.fingers.iter().flatten());
        for n in preceding(&mut self.succs.iter()) {
            if !cands.iter().any(|c| c.addr == n.addr) {
                cands.push(n);
            }
        }
        cands.truncate(CANDIDATES);
        if cands.is_empty() {
            cands.push(succ);
        }
        Step::Next(cands)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: u32) -> Node {
        Node {
            id: Id(id),
            addr: SocketAddr::from(([127, 0, 0, 1], (id % 60000) as u16 + 1)),
        }
    }

    #[test]
    fn alone_owns_everything() {
        let t = RoutingTable::new(node(100), 4);
        assert_eq!(t.step(Id(5)), Step::Owner(node(100)));
        assert_eq!(t.step(Id(100)), Step::Owner(node(100)));
    }

    #[test]
    fn successor_list_skips_self_and_repeats() {
        let mut t = RoutingTable::new(node(100), 3);
        t.set_successors(
            node(200),
            &[node(300), node(100), node(300), node(400), node(500)],
        );
        assert_eq!(t.successors(), &[node(200), node(300), node(400)]);
        assert_eq!(t.finger(0), Some(node(200)));
    }

    #[test]
    fn step_owner_and_next() {
        let mut t = RoutingTable::new(node(100), 4);
        t.set_successors(node(200), &[node(300)]);
        t.notified(node(50));
        assert_eq!(t.step(Id(150)), Step::Owner(node(200)));
        assert_eq!(t.step(Id(200)), Step::Owner(node(200)));
        assert_eq!(t.step(Id(60)), Step::Owner(node(100)));
        assert_eq!(t.step(Id(100)), Step::Owner(node(100)));
        let far = node((1 << 20) + 200);
        assert_eq!(t.set_finger_run(20, far), 21);
        // Closest preceding fingers first, then the successor list.
        assert_eq!(
            t.step(Id(2 << 20)),
            Step::Next(vec![far, node(200), node(300)])
        );
        // Wrapping past zero: everything we know precedes 40.
        assert_eq!(t.step(Id(40)), Step::Next(vec![far, node(200), node(300)]));
        // Only the successors precede 250.
        assert_eq!(t.step(Id(250)), Step::Next(vec![node(200)]));
    }

    #[test]
    fn notify_keeps_the_closest_predecessor() {
        let mut t = RoutingTable::new(node(100), 4);
        assert!(t.notified(node(10)));
        assert!(t.notified(node(50)));
        assert!(!t.notified(node(20)));
        assert!(!t.notified(node(150)));
        assert!(!t.notified(node(100)));
        assert_eq!(t.pred(), Some(node(50)));
    }

    #[test]
    fn forgetting_a_successor_falls_back() {
        let mut t = RoutingTable::new(node(100), 4);
        t.set_successors(node(200), &[node(300)]);
        t.set_finger_run(10, node(5000));
        t.forget(node(200).addr);
        assert_eq!(t.successor(), node(300));
        t.forget(node(300).addr);
        assert_eq!(t.successor(), node(5000));
        t.forget(node(5000).addr);
        assert_eq!(t.successor(), node(100));
        assert_eq!(t.finger(10), None);
    }

    #[test]
    fn finger_runs_cover_the_starts_up_to_the_owner() {
        let me = node(0);
        let mut t = RoutingTable::new(me, 4);
        // Starts 1, 2, 4, …, 1024 fall in (0, 1500]; 2048 does not.
        assert_eq!(t.set_finger_run(0, node(1500)), 11);
        assert_eq!(t.finger(10), Some(node(1500)));
        assert_eq!(t.finger(11), None);
        // A run ending at the last finger wraps to 0.
        assert_eq!(t.set_finger_run(31, node(u32::MAX)), 0);
        // An owner equal to ourselves clears the finger.
        assert_eq!(t.set_finger_run(5, me), 6);
        assert_eq!(t.finger(5), None);
    }
}
