//! Sending frames to a datagram socket without blocking, with a small
//! backlog for the moments the receiver is full.
//!
//! uml_switch and vde_switch drop a frame whenever a send would block; a
//! UML guest's unconnected socket holds only `net.unix.max_dgram_qlen`
//! (10) datagrams, so TCP through them loses segments in every burst and
//! retransmits thousands of times a second. We hold up to `limit` frames
//! instead and send them, in order, as soon as the socket is writable.

use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::Notify;

use crate::counters::Counters;
use crate::link::Delivery;
use crate::socket::DataSocket;

/// Default number of frames held while a receiver is full.
pub const DEFAULT_BACKLOG: usize = 256;

/// The sending side of a data socket.
#[derive(Debug)]
pub struct Egress {
    socket: Arc<DataSocket>,
    counters: Arc<Counters>,
    backlog: Mutex<VecDeque<Vec<u8>>>,
    limit: usize,
    header: usize,
    wake: Arc<Notify>,
}

impl Egress {
    /// Sends on `socket`, counting delivered frames as `tx` in `counters`,
    /// holding at most `limit` frames while the receiver is full. Starts
    /// a task (in the current tokio runtime) that drains the backlog; it
    /// ends when the `Egress` is dropped.
    pub fn new(socket: Arc<DataSocket>, counters: Arc<Counters>, limit: usize) -> Arc<Egress> {
        Egress::with_header(socket, counters, limit, 0)
    }

    /// As [`Egress::new`], for datagrams that start with a `header`-byte
    /// virtio-net header (not counted as frame bytes).
    pub fn with_header(
        socket: Arc<DataSocket>,
        counters: Arc<Counters>,
        limit: usize,
        header: usize,
    ) -> Arc<Egress> {
        let egress = Arc::new(Egress {
            socket,
            counters,
            backlog: Mutex::default(),
            limit,
            header,
            wake: Arc::default(),
        });
        tokio::spawn(drain(Arc::downgrade(&egress)));
        egress
    }

    /// Sends a frame now, or queues it behind frames already waiting.
    pub fn send(&self, frame: &[u8]) -> Delivery {
        let mut backlog = self.backlog.lock().expect("backlog poisoned");
        if backlog.is_empty() {
            match self.socket.try_send(frame) {
                Ok(_) => {
                    self.counters.tx(frame.len().saturating_sub(self.header));
                    return Delivery::Sent;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => return Delivery::Failed,
            }
        }
        if backlog.len() >= self.limit {
            return Delivery::Busy;
        }
        backlog.push_back(frame.to_vec());
        drop(backlog);
        self.wake.notify_one();
        Delivery::Sent
    }

    /// Frames waiting for the receiver.
    pub fn backlog(&self) -> usize {
        self.backlog.lock().expect("backlog poisoned").len()
    }

    /// Sends queued frames until the socket would block again; returns
    /// whether the backlog is now empty.
    fn flush(&self) -> bool {
        let mut backlog = self.backlog.lock().expect("backlog poisoned");
        while let Some(frame) = backlog.front() {
            match self.socket.try_send(frame) {
                Ok(_) => self.counters.tx(frame.len().saturating_sub(self.header)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
                // The receiver is gone: what is queued can never leave.
                Err(_) => {}
            }
            backlog.pop_front();
        }
        true
    }
}

impl Drop for Egress {
    fn drop(&mut self) {
        // Wakes the drain task so it sees the Egress is gone and ends.
        self.wake.notify_one();
    }
}

async fn drain(egress: Weak<Egress>) {
    loop {
        let Some(strong) = egress.upgrade() else {
            return;
        };
        let socket = strong.socket.clone();
        if strong.flush() {
            // A frame queued after the flush leaves a permit, so this
            // wakes at once.
            let wake = strong.wake.clone();
            drop(strong);
            wake.notified().await;
        } else {
            let wake = strong.wake.clone();
            drop(strong);
            tokio::select! {
                writable = socket.writable() => if writable.is_err() { return },
                () = wake.notified() => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn holds_frames_while_the_receiver_is_full_and_delivers_them_in_order() {
        let (tx, rx) = std::os::unix::net::UnixDatagram::pair().unwrap();
        crate::socket::size_buffers(&tx, 4096);
        let rx = DataSocket::new(rx).unwrap();
        let counters: Arc<Counters> = Arc::default();
        let egress = Egress::new(Arc::new(DataSocket::new(tx).unwrap()), counters.clone(), 64);
        let mut sent = 0u32;
        for n in 0..200u32 {
            let mut frame = vec![0u8; 1000];
            frame[..4].copy_from_slice(&n.to_be_bytes());
            if egress.send(&frame) == Delivery::Sent {
                sent += 1;
            }
        }
        assert!(egress.backlog() > 0, "the receiver never filled up");
        assert!(sent < 200, "more held than the limit allows");
        let mut got = Vec::new();
        let mut buf = [0u8; 2048];
        while got.len() < sent as usize {
            let n = tokio::time::timeout(Duration::from_secs(5), rx.recv(&mut buf))
                .await
                .expect("backlog drained")
                .unwrap();
            assert_eq!(n, 1000);
            got.push(u32::from_be_bytes(buf[..4].try_into().unwrap()));
        }
        assert!(got.windows(2).all(|w| w[0] < w[1]), "out of order: {got:?}");
        assert_eq!(counters.snapshot().tx_frames, u64::from(sent));
    }
}
