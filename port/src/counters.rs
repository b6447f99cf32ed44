//! Frame, byte and drop counters of a port, updated lock-free from the
//! data path and read as the API's `Counters` message.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use vbet_proto::vbet::port::v1 as pb;

/// Why a frame was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The port was down or a black hole.
    LinkDown,
    /// The loss impairment.
    Loss,
    /// The peer's socket was full.
    PeerBusy,
    /// Larger than the maximum frame.
    Oversize,
    /// Shorter than an Ethernet header.
    Runt,
    /// Over the impairment queue limit.
    QueueFull,
    /// Not carried by the port's VLAN configuration.
    Vlan,
    /// A fast-mode frame whose virtio-net header cannot be honoured.
    Offload,
}

/// The counters of one port.
#[derive(Debug, Default)]
pub struct Counters {
    rx_frames: AtomicU64,
    rx_bytes: AtomicU64,
    tx_frames: AtomicU64,
    tx_bytes: AtomicU64,
    duplicated: AtomicU64,
    corrupted: AtomicU64,
    drops: [AtomicU64; 8],
}

impl Counters {
    /// Counts a frame the port's client sent in.
    pub fn rx(&self, len: usize) {
        self.rx_frames.fetch_add(1, Relaxed);
        self.rx_bytes.fetch_add(len as u64, Relaxed);
    }

    /// Counts a frame delivered to the port's client.
    pub fn tx(&self, len: usize) {
        self.tx_frames.fetch_add(1, Relaxed);
        self.tx_bytes.fetch_add(len as u64, Relaxed);
    }

    /// Counts a dropped frame.
    pub fn dropped(&self, reason: DropReason) {
        self.drops[reason as usize].fetch_add(1, Relaxed);
    }

    /// Counts a duplicated frame.
    pub fn duplicated(&self) {
        self.duplicated.fetch_add(1, Relaxed);
    }

    /// Counts a corrupted frame.
    pub fn corrupted(&self) {
        self.corrupted.fetch_add(1, Relaxed);
    }

    /// Frames dropped for `reason`.
    pub fn drops(&self, reason: DropReason) -> u64 {
        self.drops[reason as usize].load(Relaxed)
    }

    /// A snapshot as the API's message.
    pub fn snapshot(&self) -> pb::Counters {
        let d = |r: DropReason| self.drops(r);
        pb::Counters {
            rx_frames: self.rx_frames.load(Relaxed),
            rx_bytes: self.rx_bytes.load(Relaxed),
            tx_frames: self.tx_frames.load(Relaxed),
            tx_bytes: self.tx_bytes.load(Relaxed),
            duplicated: self.duplicated.load(Relaxed),
            corrupted: self.corrupted.load(Relaxed),
            drops: Some(pb::Drops {
                link_down: d(DropReason::LinkDown),
                loss: d(DropReason::Loss),
                peer_busy: d(DropReason::PeerBusy),
                oversize: d(DropReason::Oversize),
                runt: d(DropReason::Runt),
                queue_full: d(DropReason::QueueFull),
                vlan: d(DropReason::Vlan),
                offload: d(DropReason::Offload),
            }),
        }
    }
}

/// Adds counter snapshot `b` into `a` (for totals over ports).
pub fn accumulate(a: &mut pb::Counters, b: &pb::Counters) {
    a.rx_frames += b.rx_frames;
    a.rx_bytes += b.rx_bytes;
    a.tx_frames += b.tx_frames;
    a.tx_bytes += b.tx_bytes;
    a.duplicated += b.duplicated;
    a.corrupted += b.corrupted;
    let ad = a.drops.get_or_insert_with(Default::default);
    if let Some(bd) = &b.drops {
        ad.link_down += bd.link_down;
        ad.loss += bd.loss;
        ad.peer_busy += bd.peer_busy;
        ad.oversize += bd.oversize;
        ad.runt += bd.runt;
        ad.queue_full += bd.queue_full;
        ad.vlan += bd.vlan;
        ad.offload += bd.offload;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_sums() {
        let c = Counters::default();
        c.rx(60);
        c.rx(40);
        c.tx(60);
        c.dropped(DropReason::PeerBusy);
        c.dropped(DropReason::PeerBusy);
        let s = c.snapshot();
        assert_eq!((s.rx_frames, s.rx_bytes, s.tx_frames), (2, 100, 1));
        assert_eq!(s.drops.as_ref().unwrap().peer_busy, 2);
        let mut total = pb::Counters::default();
        accumulate(&mut total, &s);
        accumulate(&mut total, &s);
        assert_eq!(total.rx_bytes, 200);
        assert_eq!(total.drops.unwrap().peer_busy, 4);
    }
}
