//! Packet capture: frames seen by ports, fanned out to any number of pcap
//! streams and files. Capturing costs one atomic load per frame while
//! nobody listens.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use pcap_file::Endianness;
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use tokio::sync::broadcast;

use crate::fanout::Fanout;
use crate::mac_table::PortId;

/// Frames buffered per listener before a slow one starts missing frames.
const LISTENER_BACKLOG: usize = 4096;

/// Which way a captured frame was going through its port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Sent in by the port's client.
    In,
    /// Delivered to the port's client.
    Out,
}

/// One captured frame.
#[derive(Debug, Clone)]
pub struct Captured {
    /// The port it passed.
    pub port: PortId,
    /// Which way.
    pub direction: Direction,
    /// When, as time since the Unix epoch.
    pub at: Duration,
    /// The frame.
    pub data: Arc<[u8]>,
}

impl Captured {
    /// Whether a capture of `port` (0 = every port) wants this frame. A
    /// capture of every port takes each frame once, where it came in; a
    /// capture of one port takes both directions.
    pub fn matches(&self, port: PortId) -> bool {
        if port == 0 {
            self.direction == Direction::In
        } else {
            self.port == port
        }
    }
}

/// The fan-out point of captured frames (its buffers made on the first
/// capture).
#[derive(Debug, Clone)]
pub struct CaptureTap {
    tx: Arc<Fanout<Captured>>,
}

impl Default for CaptureTap {
    fn default() -> Self {
        CaptureTap {
            tx: Arc::new(Fanout::new(LISTENER_BACKLOG)),
        }
    }
}

impl CaptureTap {
    /// True while at least one capture listens.
    pub fn active(&self) -> bool {
        self.tx.receiver_count() > 0
    }

    /// Offers a frame to the listeners (a no-op when nobody listens).
    pub fn record(&self, port: PortId, direction: Direction, frame: &[u8]) {
        if self.active() {
            let at = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default();
            self.tx.send(Captured {
                port,
                direction,
                at,
                data: Arc::from(frame),
            });
        }
    }

    /// A new listener.
    pub fn subscribe(&self) -> broadcast::Receiver<Captured> {
        self.tx.subscribe()
    }
}

/// A `Write` whose bytes can be taken out while a `PcapWriter` owns it.
#[derive(Debug, Clone, Default)]
struct SharedBuf(Arc<Mutex<Vec<u8>>>);

impl Write for SharedBuf {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .expect("capture buffer poisoned")
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Encodes frames as a pcap byte stream, chunk by chunk.
#[derive(Debug)]
pub struct PcapEncoder {
    buf: SharedBuf,
    writer: PcapWriter<SharedBuf>,
    snaplen: u32,
}

impl PcapEncoder {
    /// An encoder keeping at most `snaplen` bytes of each frame (0 = all).
    /// The first chunk taken starts with the pcap global header.
    pub fn new(snaplen: u32) -> PcapEncoder {
        let snaplen = if snaplen == 0 { 65535 } else { snaplen };
        let buf = SharedBuf::default();
        let header = PcapHeader {
            snaplen,
            endianness: if cfg!(target_endian = "little") {
                Endianness::Little
            } else {
                Endianness::Big
            },
            ..Default::default()
        };
        let writer = PcapWriter::with_header(buf.clone(), header).expect("writing to memory");
        PcapEncoder {
            buf,
            writer,
            snaplen,
        }
    }

    /// Appends one frame.
    pub fn push(&mut self, frame: &Captured) {
        let keep = frame.data.len().min(self.snaplen as usize);
        let packet = PcapPacket::new(frame.at, frame.data.len() as u32, &frame.data[..keep]);
        self.writer
            .write_packet(&packet)
            .expect("writing to memory");
    }

    /// Takes the bytes encoded so far.
    pub fn take(&mut self) -> Vec<u8> {
        std::mem::take(&mut *self.buf.0.lock().expect("capture buffer poisoned"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pcap_file::pcap::PcapReader;

    #[test]
    fn encodes_a_readable_pcap() {
        let tap = CaptureTap::default();
        assert!(!tap.active());
        let mut rx = tap.subscribe();
        assert!(tap.active());
        tap.record(3, Direction::In, &[1u8; 60]);
        tap.record(4, Direction::Out, &[2u8; 100]);
        let mut enc = PcapEncoder::new(64);
        let mut bytes = enc.take();
        for _ in 0..2 {
            enc.push(&rx.try_recv().unwrap());
            bytes.extend(enc.take());
        }
        // Global header, then (record header + kept bytes) per frame.
        assert_eq!(bytes.len(), 24 + (16 + 60) + (16 + 64));
        let mut reader = PcapReader::new(&bytes[..100]).unwrap();
        let first = reader.next_packet().unwrap().unwrap();
        assert_eq!(first.data.len(), 60);
        let second_header = &bytes[100..116];
        let incl = u32::from_ne_bytes(second_header[8..12].try_into().unwrap());
        let orig = u32::from_ne_bytes(second_header[12..16].try_into().unwrap());
        assert_eq!((incl, orig), (64, 100));
    }

    #[test]
    fn all_port_capture_takes_each_frame_once() {
        let frame = |port, direction| Captured {
            port,
            direction,
            at: Duration::ZERO,
            data: Arc::from(&[0u8; 14][..]),
        };
        assert!(frame(1, Direction::In).matches(0));
        assert!(!frame(2, Direction::Out).matches(0));
        assert!(frame(2, Direction::Out).matches(2));
        assert!(!frame(2, Direction::Out).matches(1));
    }
}
