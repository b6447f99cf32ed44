//! What every port has, wherever it is (a switch port, a VM's NIC): a link
//! state, counters, and two directions that each pass frames either
//! straight through or through an impairment queue.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::mpsc;
use vbet_proto::vbet::port::v1 as pb;

use crate::counters::{Counters, DropReason};
use crate::impair::{Impairment, Shaper, Verdict, flip_payload_bit};
use crate::vnet;

/// Whether a port passes frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum LinkState {
    /// Frames pass.
    Up = 0,
    /// Unplugged: nothing passes, and the carrier is lost where that can
    /// be shown.
    Down = 1,
    /// Nothing passes but the carrier stays up.
    Blackhole = 2,
}

impl LinkState {
    fn from_u8(v: u8) -> LinkState {
        match v {
            1 => LinkState::Down,
            2 => LinkState::Blackhole,
            _ => LinkState::Up,
        }
    }

    /// The API's enum value.
    pub fn to_proto(self) -> pb::LinkState {
        match self {
            LinkState::Up => pb::LinkState::Up,
            LinkState::Down => pb::LinkState::Down,
            LinkState::Blackhole => pb::LinkState::Blackhole,
        }
    }

    /// From the API's enum value; "unspecified" means up.
    pub fn from_proto(state: pb::LinkState) -> LinkState {
        match state {
            pb::LinkState::Down => LinkState::Down,
            pb::LinkState::Blackhole => LinkState::Blackhole,
            pb::LinkState::Up | pb::LinkState::Unspecified => LinkState::Up,
        }
    }
}

/// What became of a frame handed to a sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Delivered.
    Sent,
    /// The receiver had no room (EAGAIN): dropped, nothing is queued.
    Busy,
    /// The receiver is gone or failed.
    Failed,
}

/// Where a direction delivers its frames.
pub type Sink = Arc<dyn Fn(&[u8]) -> Delivery + Send + Sync>;

struct Queue {
    shaper: Shaper,
    tx: mpsc::Sender<(Instant, Vec<u8>)>,
}

/// One direction of a port.
///
/// A lane carries frames, or *packets* (a virtio-net header of `header`
/// bytes, then a frame) on the fast path: the rate limit counts and the
/// corruption damages the frame, never the header.
pub struct Lane {
    sink: Sink,
    header: usize,
    counters: Arc<Counters>,
    impaired: AtomicBool,
    queue: Mutex<Option<Queue>>,
}

impl std::fmt::Debug for Lane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lane")
            .field("impaired", &self.impaired.load(Relaxed))
            .finish_non_exhaustive()
    }
}

impl Lane {
    /// A direction that delivers to `sink` and counts drops in `counters`.
    pub fn new(sink: Sink, counters: Arc<Counters>) -> Lane {
        Lane::with_header(sink, counters, 0)
    }

    /// A direction whose packets start with a `header`-byte virtio-net
    /// header ([`vnet::HEADER_LEN`]) before the frame.
    pub fn with_header(sink: Sink, counters: Arc<Counters>, header: usize) -> Lane {
        Lane {
            sink,
            header,
            counters,
            impaired: AtomicBool::new(false),
            queue: Mutex::new(None),
        }
    }

    /// The impairment applied now.
    pub fn impairment(&self) -> Impairment {
        self.queue
            .lock()
            .expect("lane poisoned")
            .as_ref()
            .map(|q| q.shaper.impairment().clone())
            .unwrap_or_default()
    }

    /// Applies `impairment` from now on. Frames already queued still
    /// leave as they were scheduled. Must run inside a tokio runtime.
    pub fn set_impairment(&self, impairment: Impairment) {
        let mut queue = self.queue.lock().expect("lane poisoned");
        if impairment.is_none() {
            *queue = None;
            self.impaired.store(false, Relaxed);
            return;
        }
        let (tx, rx) = mpsc::channel(impairment.queue_limit());
        tokio::spawn(release(rx, self.sink.clone(), self.counters.clone()));
        *queue = Some(Queue {
            shaper: Shaper::new(impairment),
            tx,
        });
        self.impaired.store(true, Relaxed);
    }

    /// Passes a frame on, now or when its impairments say.
    pub fn send(&self, frame: &[u8]) {
        if !self.impaired.load(Relaxed) {
            return deliver(&self.sink, &self.counters, frame);
        }
        let mut guard = self.queue.lock().expect("lane poisoned");
        let Some(queue) = guard.as_mut() else {
            drop(guard);
            return deliver(&self.sink, &self.counters, frame);
        };
        let now = Instant::now();
        let len = frame.len().saturating_sub(self.header);
        match queue.shaper.schedule(len, now, &mut rand::rng()) {
            Verdict::Lost => self.counters.dropped(DropReason::Loss),
            Verdict::Send {
                at,
                twice,
                flip_bit,
            } => {
                let copies = match flip_bit {
                    None => vec![frame.to_vec()],
                    Some(bit) => {
                        self.counters.corrupted();
                        corrupt(frame, self.header, bit)
                    }
                };
                if twice {
                    self.counters.duplicated();
                }
                for copy in copies {
                    if twice && queue.tx.try_send((at, copy.clone())).is_err() {
                        self.counters.dropped(DropReason::QueueFull);
                    }
                    if queue.tx.try_send((at, copy)).is_err() {
                        self.counters.dropped(DropReason::QueueFull);
                    }
                }
            }
        }
    }
}

/// A copy of `packet` with bit `bit` of its payload (after the Ethernet
/// header) flipped. A packet whose virtio-net header still asks for a
/// checksum or segmentation is first turned into plain frames (each with a
/// plain header): the receiver would trust a checksum it is told is not
/// done yet, so the damage would never show. One bit of one of them is
/// flipped, so exactly one segment arrives with a bad checksum, as on a
/// wire.
fn corrupt(packet: &[u8], header: usize, bit: usize) -> Vec<Vec<u8>> {
    let plain = header == 0 || vnet::VnetHeader::parse(packet).is_none_or(|h| h.is_plain());
    let mut pieces = Vec::new();
    if !plain {
        let plain_header = vnet::VnetHeader::PLAIN.encode();
        let converted = vnet::for_each_plain(packet, &mut Vec::new(), |frame| {
            let mut piece = Vec::with_capacity(header + frame.len());
            piece.extend_from_slice(&plain_header[..header]);
            piece.extend_from_slice(frame);
            pieces.push(piece);
        });
        if converted.is_err() {
            pieces.clear();
        }
    }
    if pieces.is_empty() {
        pieces.push(packet.to_vec());
    }
    // Find the piece that holds the bit (the last one if past the end).
    let mut bit = bit;
    let last = pieces.len() - 1;
    for (i, piece) in pieces.iter_mut().enumerate() {
        let bits = piece
            .len()
            .saturating_sub(header + crate::frame::HEADER_LEN)
            * 8;
        if bit < bits || i == last {
            flip_payload_bit(&mut piece[header..], bit.min(bits.saturating_sub(1)));
            break;
        }
        bit -= bits;
    }
    pieces
}

fn deliver(sink: &Sink, counters: &Counters, frame: &[u8]) {
    match sink(frame) {
        Delivery::Sent => {}
        Delivery::Busy | Delivery::Failed => counters.dropped(DropReason::PeerBusy),
    }
}

/// Releases queued frames at their scheduled times until the lane drops
/// its queue (then the rest still leave on time).
async fn release(mut rx: mpsc::Receiver<(Instant, Vec<u8>)>, sink: Sink, counters: Arc<Counters>) {
    while let Some((at, frame)) = rx.recv().await {
        tokio::time::sleep_until(at.into()).await;
        deliver(&sink, &counters, &frame);
    }
}

/// A port's state, counters and two directions: `inbound` carries what the
/// port's client sends in, `outbound` what is delivered to the client.
#[derive(Debug)]
pub struct PortLink {
    state: AtomicU8,
    counters: Arc<Counters>,
    header: usize,
    /// From the client into the fabric.
    pub inbound: Lane,
    /// From the fabric to the client.
    pub outbound: Lane,
}

impl PortLink {
    /// A port whose inbound frames go to `inbound` and outbound frames to
    /// `outbound`, both counted in `counters`.
    pub fn new(counters: Arc<Counters>, inbound: Sink, outbound: Sink) -> PortLink {
        PortLink::with_header(counters, inbound, outbound, 0)
    }

    /// A port whose packets, both ways, start with a `header`-byte
    /// virtio-net header: counters and impairments see only the frame.
    pub fn with_header(
        counters: Arc<Counters>,
        inbound: Sink,
        outbound: Sink,
        header: usize,
    ) -> PortLink {
        PortLink {
            state: AtomicU8::new(LinkState::Up as u8),
            inbound: Lane::with_header(inbound, counters.clone(), header),
            outbound: Lane::with_header(outbound, counters.clone(), header),
            counters,
            header,
        }
    }

    /// The link state.
    pub fn state(&self) -> LinkState {
        LinkState::from_u8(self.state.load(Relaxed))
    }

    /// Sets the link state.
    pub fn set_state(&self, state: LinkState) {
        self.state.store(state as u8, Relaxed);
    }

    /// The counters.
    pub fn counters(&self) -> &Arc<Counters> {
        &self.counters
    }

    /// Takes a frame the client sent: counts it, drops it if the link is
    /// not up, else passes it inbound.
    pub fn receive(&self, frame: &[u8]) {
        self.counters.rx(frame.len().saturating_sub(self.header));
        if self.state() != LinkState::Up {
            return self.counters.dropped(DropReason::LinkDown);
        }
        self.inbound.send(frame);
    }

    /// Sends a frame to the client, unless the link is not up.
    pub fn transmit(&self, frame: &[u8]) {
        if self.state() != LinkState::Up {
            return self.counters.dropped(DropReason::LinkDown);
        }
        self.outbound.send(frame);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex as StdMutex;
    use std::time::Duration;

    fn recording_sink() -> (Sink, Arc<StdMutex<Vec<Vec<u8>>>>) {
        let seen = Arc::new(StdMutex::new(Vec::new()));
        let s = seen.clone();
        let sink: Sink = Arc::new(move |f: &[u8]| {
            s.lock().unwrap().push(f.to_vec());
            Delivery::Sent
        });
        (sink, seen)
    }

    #[tokio::test]
    async fn frames_pass_straight_through_without_impairment() {
        let (inbound, seen_in) = recording_sink();
        let (outbound, seen_out) = recording_sink();
        let link = PortLink::new(Arc::default(), inbound, outbound);
        link.receive(&[1; 60]);
        link.transmit(&[2; 60]);
        assert_eq!(seen_in.lock().unwrap().len(), 1);
        assert_eq!(seen_out.lock().unwrap().len(), 1);
        assert_eq!(link.counters().snapshot().rx_frames, 1);
    }

    #[tokio::test]
    async fn down_and_blackhole_drop_both_ways() {
        let (inbound, seen_in) = recording_sink();
        let (outbound, seen_out) = recording_sink();
        let link = PortLink::new(Arc::default(), inbound, outbound);
        for state in [LinkState::Down, LinkState::Blackhole] {
            link.set_state(state);
            link.receive(&[1; 60]);
            link.transmit(&[1; 60]);
        }
        assert!(seen_in.lock().unwrap().is_empty());
        assert!(seen_out.lock().unwrap().is_empty());
        assert_eq!(link.counters().drops(DropReason::LinkDown), 4);
        link.set_state(LinkState::Up);
        link.receive(&[1; 60]);
        assert_eq!(seen_in.lock().unwrap().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn delay_holds_frames_until_due() {
        let (sink, seen) = recording_sink();
        let lane = Lane::new(sink, Arc::default());
        lane.set_impairment(Impairment {
            delay: Duration::from_millis(50),
            ..Default::default()
        });
        lane.send(&[7; 60]);
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert!(seen.lock().unwrap().is_empty(), "released early");
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(seen.lock().unwrap().len(), 1);
        lane.set_impairment(Impairment::default());
        lane.send(&[8; 60]);
        assert_eq!(seen.lock().unwrap().len(), 2, "fast path again");
    }

    #[test]
    fn corrupting_a_superframe_damages_one_plain_segment() {
        let packet = vnet::tests::v4_packet(5000, 0x18, 1448, None);
        let pieces = corrupt(&packet, vnet::HEADER_LEN, 3000 * 8 + 3);
        assert_eq!(pieces.len(), 4);
        let mut bad = 0;
        for piece in &pieces {
            assert!(vnet::VnetHeader::parse(piece).unwrap().is_plain());
            let frame = piece[vnet::HEADER_LEN..].to_vec();
            if std::panic::catch_unwind(|| vnet::tests::verify(&frame)).is_err() {
                bad += 1;
            }
        }
        assert_eq!(bad, 1, "exactly one damaged segment");
        // A plain packet is flipped in place, its header untouched.
        let mut plain = vec![0u8; vnet::HEADER_LEN + 60];
        plain[vnet::HEADER_LEN + 20] = 0;
        let out = corrupt(&plain, vnet::HEADER_LEN, 6 * 8);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0][vnet::HEADER_LEN + 20], 1);
        assert!(out[0][..vnet::HEADER_LEN].iter().all(|b| *b == 0));
    }

    #[tokio::test]
    async fn header_bytes_are_not_counted() {
        let (inbound, seen_in) = recording_sink();
        let (outbound, _) = recording_sink();
        let link = PortLink::with_header(Arc::default(), inbound, outbound, vnet::HEADER_LEN);
        link.receive(&[0; vnet::HEADER_LEN + 60]);
        assert_eq!(link.counters().snapshot().rx_bytes, 60);
        assert_eq!(seen_in.lock().unwrap()[0].len(), vnet::HEADER_LEN + 60);
    }

    #[tokio::test]
    async fn full_queue_drops_and_counts() {
        let (sink, _seen) = recording_sink();
        let counters: Arc<Counters> = Arc::default();
        let lane = Lane::new(sink, counters.clone());
        lane.set_impairment(Impairment {
            delay: Duration::from_secs(10),
            queue_frames: 5,
            ..Default::default()
        });
        for _ in 0..20 {
            lane.send(&[0; 60]);
        }
        // The release task may have taken one frame off the queue already.
        let dropped = counters.drops(DropReason::QueueFull);
        assert!((14..=15).contains(&dropped), "dropped {dropped}");
    }
}
