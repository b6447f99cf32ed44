//! A broadcast channel made on its first subscriber. A tokio broadcast
//! channel allocates and initialises every slot up front (a capture's 4096
//! slots are 0.7 MiB); most ports and VMs are never captured or traced, so
//! theirs are never made.

use std::sync::OnceLock;

use tokio::sync::broadcast;

/// One sender to any number of subscribers, each with `capacity` values
/// of backlog; nothing is allocated until the first [`Fanout::subscribe`].
#[derive(Debug)]
pub struct Fanout<T> {
    capacity: usize,
    tx: OnceLock<broadcast::Sender<T>>,
}

impl<T: Clone> Fanout<T> {
    /// A fan-out giving each subscriber `capacity` values of backlog.
    pub const fn new(capacity: usize) -> Fanout<T> {
        Fanout {
            capacity,
            tx: OnceLock::new(),
        }
    }

    /// How many subscribers listen now (one atomic load when none ever
    /// did).
    pub fn receiver_count(&self) -> usize {
        self.tx.get().map_or(0, broadcast::Sender::receiver_count)
    }

    /// Sends `value` to the current subscribers; dropped when there are
    /// none.
    pub fn send(&self, value: T) {
        if let Some(tx) = self.tx.get() {
            let _ = tx.send(value);
        }
    }

    /// A new subscriber: it sees the values sent from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<T> {
        self.tx
            .get_or_init(|| broadcast::channel(self.capacity).0)
            .subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_only_to_subscribers_made_before() {
        let fanout = Fanout::new(4);
        assert_eq!(fanout.receiver_count(), 0);
        fanout.send(1);
        let mut first = fanout.subscribe();
        fanout.send(2);
        let mut second = fanout.subscribe();
        fanout.send(3);
        assert_eq!(fanout.receiver_count(), 2);
        assert_eq!(first.try_recv().unwrap(), 2);
        assert_eq!(first.try_recv().unwrap(), 3);
        assert_eq!(second.try_recv().unwrap(), 3);
        assert!(second.try_recv().is_err());
        drop((first, second));
        assert_eq!(fanout.receiver_count(), 0);
    }
}
