//! Asking a running peer from outside the ring: resolve keys, report its
//! state, walk the ring along successors. Used by `chord-peer lookup`,
//! `status` and `check`, and by the tests.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use thiserror::Error;
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

use crate::id::Id;
use crate::rpc::{Rpc, RpcConfig, RpcError, response_name};
use crate::wire::{Body, MAX_MESSAGE, Message, Node, Request, Response, Status};

/// Why the client could not get an answer.
#[derive(Debug, Error)]
pub enum ClientError {
    /// The client's own socket could not be bound.
    #[error("cannot bind a client UDP socket")]
    Bind(#[source] std::io::Error),
    /// The request failed.
    #[error(transparent)]
    Rpc(#[from] RpcError),
}

/// Why a walk along successors does not show a consistent ring.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum RingFault {
    /// A peer on the walk did not answer.
    #[error("peer {addr} (successor of {after}) does not answer")]
    Unreachable {
        /// The silent peer.
        addr: SocketAddr,
        /// The peer that named it as successor.
        after: SocketAddr,
    },
    /// The walk came back to a peer other than the first.
    #[error("the walk loops back to {addr} instead of to its start after {len} peers")]
    Loop {
        /// The peer met twice.
        addr: SocketAddr,
        /// Peers walked.
        len: usize,
    },
    /// The walk did not return within the limit.
    #[error("the walk has not returned to its start after {0} peers")]
    TooLong(usize),
    /// The ring has the wrong number of peers.
    #[error("the ring has {found} peers, expected {expected}")]
    Count {
        /// Peers found.
        found: usize,
        /// Peers expected.
        expected: usize,
    },
    /// The ids do not increase around the ring: successors skip round it
    /// more than once.
    #[error("ids are out of ring order: the successors go {turns} times round the ring")]
    Order {
        /// Full turns of the identifier circle the walk makes.
        turns: u64,
    },
}

/// The answer to one lookup.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Found {
    /// The key's owner.
    pub owner: Node,
    /// Peers contacted along the lookup path.
    pub hops: u16,
    /// Time from sending the request to receiving the answer.
    pub elapsed: Duration,
}

/// A UDP socket for asking peers, with its own receive loop.
pub struct Client {
    rpc: Arc<Rpc>,
    receiver: JoinHandle<()>,
}

impl Drop for Client {
    fn drop(&mut self) {
        self.receiver.abort();
    }
}

impl Client {
    /// Binds an ephemeral socket of `peer`'s address family.
    pub async fn new(peer: SocketAddr, config: RpcConfig) -> Result<Client, ClientError> {
        let any: SocketAddr = if peer.is_ipv4() {
            (Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let socket = UdpSocket::bind(any).await.map_err(ClientError::Bind)?;
        let rpc = Arc::new(Rpc::new(socket, config));
        let receiver = tokio::spawn(receive(Arc::clone(&rpc)));
        Ok(Client { rpc, receiver })
    }

    /// Asks `via` to resolve `key`.
    pub async fn lookup(&self, via: SocketAddr, key: Id) -> Result<Found, ClientError> {
        let started = Instant::now();
        match self.rpc.call(via, Request::Lookup(key)).await? {
            Response::Found { owner, hops } => Ok(Found {
                owner,
                hops,
                elapsed: started.elapsed(),
            }),
            other => Err(unexpected(via, "lookup", &other)),
        }
    }

    /// Asks `via` for its routing state.
    pub async fn status(&self, via: SocketAddr) -> Result<Status, ClientError> {
        match self.rpc.call(via, Request::GetStatus).await? {
            Response::Status(s) => Ok(s),
            other => Err(unexpected(via, "get-status", &other)),
        }
    }

    /// Asks `via` for itself and its successor list.
    pub async fn neighbors(&self, via: SocketAddr) -> Result<(Node, Vec<Node>), ClientError> {
        match self.rpc.call(via, Request::GetNeighbors).await? {
            Response::Neighbors { me, succs, .. } => Ok((me, succs)),
            other => Err(unexpected(via, "get-neighbors", &other)),
        }
    }

    /// Walks the ring from `via` along first successors until it returns to
    /// `via`, at most `limit` peers. Returns the peers in walk order.
    pub async fn walk(&self, via: SocketAddr, limit: usize) -> Result<Vec<Node>, RingFault> {
        let unreachable = |addr, after| RingFault::Unreachable { addr, after };
        let (start, mut succs) = self
            .neighbors(via)
            .await
            .map_err(|_| unreachable(via, via))?;
        let mut ring = vec![start];
        loop {
            let Some(next) = succs.first().copied() else {
                // Alone: its own successor.
                return Ok(ring);
            };
            if next.addr == start.addr {
                return Ok(ring);
            }
            if ring.iter().any(|n| n.addr == next.addr) {
                return Err(RingFault::Loop {
                    addr: next.addr,
                    len: ring.len(),
                });
            }
            if ring.len() >= limit {
                return Err(RingFault::TooLong(ring.len()));
            }
            let after = ring.last().map_or(via, |n| n.addr);
            let (node, list) = self
                .neighbors(next.addr)
                .await
                .map_err(|_| unreachable(next.addr, after))?;
            ring.push(node);
            succs = list;
        }
    }
}

/// Checks a walk that returned to its start: `expected` peers whose ids
/// increase around the ring, i.e. the successor steps add up to exactly one
/// turn of the identifier circle.
pub fn check_ring(ring: &[Node], expected: usize) -> Result<(), RingFault> {
    if ring.len() != expected {
        return Err(RingFault::Count {
            found: ring.len(),
            expected,
        });
    }
    if ring.len() <= 1 {
        return Ok(());
    }
    let total: u64 = ring
        .iter()
        .zip(ring.iter().cycle().skip(1))
        .map(|(a, b)| match a.id.distance_to(b.id) {
            // Two peers on one id: a whole turn apart is wrong, so count 0.
            0 => 0,
            d => u64::from(d),
        })
        .sum();
    let turn = 1u64 << crate::id::M;
    if total != turn {
        return Err(RingFault::Order {
            turns: total.div_ceil(turn),
        });
    }
    Ok(())
}

fn unexpected(to: SocketAddr, asked: &'static str, got: &Response) -> ClientError {
    ClientError::Rpc(RpcError::Unexpected {
        to,
        asked,
        got: response_name(got),
    })
}

async fn receive(rpc: Arc<Rpc>) {
    let mut buf = vec![0u8; MAX_MESSAGE + 1];
    loop {
        match rpc.recv(&mut buf).await {
            Ok((len, from)) => match Message::decode(&buf[..len]) {
                Ok(Message {
                    id,
                    body: Body::Response(r),
                }) => rpc.complete(from, id, r),
                Ok(_) => tracing::debug!(%from, "client ignores a request"),
                Err(e) => tracing::debug!(%from, error = %e, "undecodable datagram"),
            },
            Err(e) => {
                tracing::debug!(error = %e, "client receive failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(ids: &[u32]) -> Vec<Node> {
        ids.iter()
            .enumerate()
            .map(|(i, id)| Node {
                id: Id(*id),
                addr: SocketAddr::from(([127, 0, 0, 1], 1000 + i as u16)),
            })
            .collect()
    }

    #[test]
    fn ring_order() {
        assert_eq!(check_ring(&ring(&[5]), 1), Ok(()));
        assert_eq!(check_ring(&ring(&[5, 10, 20]), 3), Ok(()));
        assert_eq!(check_ring(&ring(&[20, u32::MAX, 5, 10]), 4), Ok(()));
        assert_eq!(
            check_ring(&ring(&[5, 20, 10]), 3),
            Err(RingFault::Order { turns: 2 })
        );
        assert_eq!(
            check_ring(&ring(&[5, 10]), 3),
            Err(RingFault::Count {
                found: 2,
                expected: 3
            })
        );
        assert!(check_ring(&ring(&[5, 5]), 2).is_err());
    }
}
