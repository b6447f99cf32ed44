//! A running Chord peer: the socket's receive loop answering requests, and
//! the maintenance loop that joins the ring and then, every period, runs
//! `stabilize`, `check_predecessor` and one `fix_fingers` step.

use std::collections::HashSet;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use thiserror::Error;
use tokio::net::UdpSocket;
use tokio::task::JoinSet;

use crate::id::{Id, M, finger_start};
use crate::rpc::{Rpc, RpcConfig, RpcError, response_name};
use crate::table::{RoutingTable, Step};
use crate::wire::{self, Body, MAX_MESSAGE, Message, Node, Request, Response, Status};

/// The most peers one lookup may contact before it is abandoned.
pub const MAX_HOPS: u16 = 64;
/// The most predecessors of the successor one stabilize step follows.
pub const MAX_CHASE: usize = 16;
/// The largest successor list a peer keeps (a status must fit a datagram).
pub const MAX_SUCCESSORS: usize = 16;

/// How to run a peer.
#[derive(Clone, Debug)]
pub struct PeerConfig {
    /// Address to receive on; port 0 picks a free port. Must be a specific
    /// address, since it is the address other peers are told.
    pub bind: SocketAddr,
    /// A peer of the ring to join through; none starts a new ring.
    pub join: Option<SocketAddr>,
    /// Address whose hash is the node id, instead of the bound address.
    pub id_from: Option<SocketAddr>,
    /// Period of stabilize, check_predecessor and fix_fingers.
    pub stabilize: Duration,
    /// Length `r` of the successor list.
    pub successors: usize,
    /// Timeouts and retries of requests to other peers.
    pub rpc: RpcConfig,
}

impl PeerConfig {
    /// A configuration with the defaults of `chord-peer serve`.
    pub fn new(bind: SocketAddr) -> PeerConfig {
        PeerConfig {
            bind,
            join: None,
            id_from: None,
            stabilize: Duration::from_millis(200),
            successors: 8,
            rpc: RpcConfig::default(),
        }
    }
}

/// Why a peer could not start.
#[derive(Debug, Error)]
pub enum PeerError {
    /// The UDP socket could not be bound.
    #[error("cannot bind UDP socket to {addr}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// What the system said.
        #[source]
        source: io::Error,
    },
    /// The bind address is a wildcard, which other peers cannot be told.
    #[error("bind address {0} is unspecified — give the peer's own address, e.g. 10.43.0.5:4000")]
    Unspecified(SocketAddr),
    /// A successor list length outside 1..=MAX_SUCCESSORS.
    #[error("successor list length {0} is outside 1..={MAX_SUCCESSORS}")]
    Successors(usize),
}

/// Why a lookup failed.
#[derive(Debug, Error)]
pub enum LookupError {
    /// Every peer that could take the lookup further failed to answer.
    #[error("lookup of {key} stuck after {hops} hops: no live peer closer to the key answers")]
    NoLivePeer {
        /// The key looked up.
        key: Id,
        /// Peers contacted before getting stuck.
        hops: u16,
    },
    /// The lookup went on too long (a routing loop).
    #[error("lookup of {key} abandoned after {MAX_HOPS} hops")]
    TooManyHops {
        /// The key looked up.
        key: Id,
    },
}

/// A peer's shared state: its socket and routing table.
struct Peer {
    rpc: Rpc,
    me: Node,
    table: Mutex<RoutingTable>,
    config: PeerConfig,
}

/// A started peer. Dropping it stops the peer abruptly (as a crash would:
/// other peers find it dead by timeout).
pub struct PeerHandle {
    peer: Arc<Peer>,
    tasks: JoinSet<()>,
}

impl PeerHandle {
    /// The peer's id and address.
    pub fn node(&self) -> Node {
        self.peer.me
    }

    /// The peer's routing state, read in process.
    pub fn status(&self) -> Status {
        self.peer.table().status()
    }

    /// Stops the peer's tasks and waits for them to end.
    pub async fn shutdown(mut self) {
        self.tasks.shutdown().await;
    }
}

/// Binds the peer's socket and starts its receive and maintenance loops.
pub async fn start(config: PeerConfig) -> Result<PeerHandle, PeerError> {
    if config.bind.ip().is_unspecified() {
        return Err(PeerError::Unspecified(config.bind));
    }
    if !(1..=MAX_SUCCESSORS).contains(&config.successors) {
        return Err(PeerError::Successors(config.successors));
    }
    let bind_err = |source| PeerError::Bind {
        addr: config.bind,
        source,
    };
    let socket = UdpSocket::bind(config.bind).await.map_err(bind_err)?;
    let addr = socket.local_addr().map_err(bind_err)?;
    let me = Node {
        id: Id::of_addr(config.id_from.unwrap_or(addr)),
        addr,
    };
    tracing::info!(id = %me.id, %addr, "peer started");
    let peer = Arc::new(Peer {
        rpc: Rpc::new(socket, config.rpc),
        me,
        table: Mutex::new(RoutingTable::new(me, config.successors)),
        config,
    });
    let mut tasks = JoinSet::new();
    tasks.spawn(Arc::clone(&peer).serve());
    tasks.spawn(Arc::clone(&peer).maintain());
    Ok(PeerHandle { peer, tasks })
}

/// Runs a peer until `shutdown` completes.
pub async fn run(config: PeerConfig, shutdown: impl Future<Output = ()>) -> Result<(), PeerError> {
    let handle = start(config).await?;
    shutdown.await;
    tracing::info!(id = %handle.node().id, "peer stopping");
    handle.shutdown().await;
    Ok(())
}

impl Peer {
    fn table(&self) -> MutexGuard<'_, RoutingTable> {
        self.table.lock().expect("routing table lock poisoned")
    }

    /// The receive loop: answers requests and completes calls.
    async fn serve(self: Arc<Self>) {
        let mut buf = vec![0u8; MAX_MESSAGE + 1];
        loop {
            let (len, from) = match self.rpc.recv(&mut buf).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, "receive failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            };
            let datagram = &buf[..len];
            match Message::decode(datagram) {
                Ok(Message {
                    id,
                    body: Body::Response(response),
                }) => self.rpc.complete(from, id, response),
                Ok(Message {
                    id,
                    body: Body::Request(Request::Lookup(key)),
                }) => {
                    // A whole lookup waits on other peers: answer it aside.
                    let peer = Arc::clone(&self);
                    tokio::spawn(async move {
                        let response = match peer.find_successor(key).await {
                            Ok((owner, hops)) => Response::Found { owner, hops },
                            Err(e) => Response::Error(e.to_string()),
                        };
                        peer.rpc.reply(from, id, response).await;
                    });
                }
                Ok(Message {
                    id,
                    body: Body::Request(request),
                }) => {
                    let response = self.answer(request);
                    self.rpc.reply(from, id, response).await;
                }
                Err(e) => {
                    tracing::debug!(%from, error = %e, "undecodable datagram");
                    if let Some(id) = wire::request_id(datagram) {
                        self.rpc
                            .reply(from, id, Response::Error(e.to_string()))
                            .await;
                    }
                }
            }
        }
    }

    /// Answers a request from the routing table alone.
    fn answer(&self, request: Request) -> Response {
        let mut table = self.table();
        match request {
            Request::Ping => Response::Pong(self.me),
            Request::GetNeighbors => Response::Neighbors {
                me: self.me,
                pred: table.pred(),
                succs: table.successors().to_vec(),
            },
            Request::Notify(n) => {
                if table.notified(n) {
                    tracing::debug!(pred = %n.addr, "new predecessor");
                }
                Response::Neighbors {
                    me: self.me,
                    pred: table.pred(),
                    succs: table.successors().to_vec(),
                }
            }
            Request::FindStep(key) => match table.step(key) {
                Step::Owner(n) => Response::Owner(n),
                Step::Next(ns) => Response::Next(ns),
            },
            Request::GetStatus => Response::Status(table.status()),
            Request::Lookup(_) => Response::Error("lookup is answered asynchronously".into()),
        }
    }

    /// The maintenance loop: join, then stabilize, check_predecessor and
    /// fix_fingers every period.
    async fn maintain(self: Arc<Self>) {
        if let Some(known) = self.config.join {
            self.join(known).await;
        }
        let mut tick = tokio::time::interval(self.config.stabilize);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut next_finger = 0;
        loop {
            tick.tick().await;
            self.stabilize().await;
            self.check_predecessor().await;
            next_finger = self.fix_finger(next_finger).await;
        }
    }

    /// Chord's `join`: asks `known` for our successor, retrying until it
    /// answers. We ask for the successor of `id + 1`, so that a peer
    /// restarted before the ring noticed its death gets its real successor
    /// rather than itself.
    async fn join(&self, known: SocketAddr) {
        if known == self.me.addr {
            return;
        }
        let config = lookup_rpc_config(self.config.rpc);
        let mut delay = Duration::from_millis(200);
        loop {
            match self
                .rpc
                .call_with(known, Request::Lookup(self.me.id.plus(1)), config)
                .await
            {
                Ok(Response::Found { owner, .. }) => {
                    if owner.addr != self.me.addr {
                        self.table().set_successors(owner, &[]);
                    }
                    tracing::info!(via = %known, successor = %owner.addr, "joined the ring");
                    return;
                }
                Ok(other) => tracing::warn!(
                    via = %known,
                    "joining: {known} answered {} to a lookup; retrying",
                    response_name(&other)
                ),
                Err(e) => tracing::warn!(
                    via = %known,
                    "joining: {e} — is a chord peer running at {known}? retrying in {delay:?}"
                ),
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    }

    /// Chord's `stabilize`: asks the successor for its predecessor and
    /// successor list, adopts a closer successor if there is one, and
    /// notifies the successor. A successor that does not answer is dropped
    /// and the next in the list is tried.
    async fn stabilize(&self) {
        for _ in 0..=self.config.successors {
            let succ = self.table().successor();
            if succ.addr == self.me.addr {
                // Alone: a peer that notified us is our successor too.
                let pred = self.table().pred();
                if let Some(p) = pred {
                    self.table().set_successors(p, &[]);
                    let _ = self.notify(p).await;
                }
                return;
            }
            match self.neighbors(succ.addr).await {
                Ok((s, x, list)) => return self.settle(s, list, x).await,
                Err(e) if e.is_unreachable() => {
                    tracing::info!(dead = %succ.addr, "successor does not answer; dropping it");
                    self.table().forget(succ.addr);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "stabilize");
                    return;
                }
            }
        }
    }

    /// The rest of `stabilize`, given the successor `first`, its successor
    /// list and its predecessor: while that predecessor falls between us and
    /// `first`, it is the better successor — move to it and look again;
    /// then adopt `first` and notify it. A notify answer naming a
    /// predecessor between us and `first` sends us on backwards. Following
    /// these chains (up to [`MAX_CHASE`] steps a tick) lets a peer that
    /// joined among many others find its place in one tick, where Chord's
    /// single step per tick would take one tick per peer in the way.
    async fn settle(&self, mut first: Node, mut rest: Vec<Node>, mut between: Option<Node>) {
        let me = self.me;
        let is_between =
            |x: &Node, first: &Node| x.addr != me.addr && x.id.in_open(me.id, first.id);
        let mut steps = 0;
        loop {
            if let Some(x) = between.filter(|x| is_between(x, &first))
                && steps < MAX_CHASE
            {
                steps += 1;
                match self.neighbors(x.addr).await {
                    Ok((x, xpred, xlist)) => {
                        (first, rest, between) = (x, xlist, xpred);
                        continue;
                    }
                    Err(e) => tracing::debug!(error = %e, "closer successor candidate"),
                }
            }
            let changed = {
                let mut table = self.table();
                let before = table.successor();
                table.set_successors(first, &rest);
                before != first
            };
            if changed {
                tracing::debug!(successor = %first.addr, "new successor");
            }
            match self.notify(first).await {
                Some(pred) if steps < MAX_CHASE && pred.is_some_and(|p| is_between(&p, &first)) => {
                    between = pred;
                }
                _ => return,
            }
        }
    }

    async fn neighbors(&self, to: SocketAddr) -> Result<(Node, Option<Node>, Vec<Node>), RpcError> {
        match self.rpc.call(to, Request::GetNeighbors).await {
            Ok(Response::Neighbors { me, pred, succs }) => Ok((me, pred, succs)),
            Ok(other) => Err(RpcError::Unexpected {
                to,
                asked: "get-neighbors",
                got: response_name(&other),
            }),
            Err(e) => Err(e),
        }
    }

    /// Notifies `to` that we might be its predecessor; returns its
    /// predecessor after the notify, or `None` if it did not answer.
    async fn notify(&self, to: Node) -> Option<Option<Node>> {
        match self.rpc.call(to.addr, Request::Notify(self.me)).await {
            Ok(Response::Neighbors { pred, .. }) => Some(pred),
            Ok(other) => {
                tracing::debug!(got = response_name(&other), "odd answer to notify");
                None
            }
            Err(e) => {
                tracing::debug!(error = %e, "notify");
                if e.is_unreachable() {
                    self.table().forget(to.addr);
                }
                None
            }
        }
    }

    /// Chord's `check_predecessor`: forgets a predecessor that does not
    /// answer a ping.
    async fn check_predecessor(&self) {
        let Some(pred) = self.table().pred() else {
            return;
        };
        if let Err(e) = self.rpc.call(pred.addr, Request::Ping).await
            && e.is_unreachable()
        {
            tracing::info!(dead = %pred.addr, "predecessor does not answer; dropping it");
            self.table().forget(pred.addr);
        }
    }

    /// One step of Chord's `fix_fingers`: looks up the start of finger
    /// `next` and fills it and the following fingers that share its owner.
    /// Returns the next finger to fix.
    async fn fix_finger(&self, next: usize) -> usize {
        let start = finger_start(self.me.id, next);
        match self.find_successor(start).await {
            Ok((owner, _)) => self.table().set_finger_run(next, owner),
            Err(e) => {
                tracing::debug!(finger = next, error = %e, "fix_fingers");
                (next + 1) % M
            }
        }
    }

    /// Iterative lookup of `key`'s owner, starting from our own table.
    /// Returns the owner and the number of peers contacted. A peer that does
    /// not answer is dropped from our table and skipped; when every peer of
    /// a step fails, the lookup backs up to the previous step's other peers.
    async fn find_successor(&self, key: Id) -> Result<(Node, u16), LookupError> {
        let mut hops: u16 = 0;
        let mut failed: HashSet<SocketAddr> = HashSet::new();
        let mut stack: Vec<std::vec::IntoIter<Node>> = Vec::new();
        let first = self.table().step(key);
        match first {
            Step::Owner(owner) => return Ok((owner, 0)),
            Step::Next(cands) => stack.push(cands.into_iter()),
        }
        while let Some(level) = stack.last_mut() {
            let Some(c) = level.next() else {
                stack.pop();
                continue;
            };
            if c.addr == self.me.addr || failed.contains(&c.addr) {
                continue;
            }
            if hops >= MAX_HOPS {
                return Err(LookupError::TooManyHops { key });
            }
            match self.rpc.call(c.addr, Request::FindStep(key)).await {
                Ok(Response::Owner(owner)) => return Ok((owner, hops + 1)),
                Ok(Response::Next(cands)) => {
                    hops += 1;
                    stack.push(cands.into_iter());
                }
                Ok(other) => {
                    tracing::debug!(peer = %c.addr, got = response_name(&other), "odd lookup step");
                    failed.insert(c.addr);
                }
                Err(e) => {
                    tracing::debug!(error = %e, "lookup step");
                    if e.is_unreachable() {
                        self.table().forget(c.addr);
                    }
                    failed.insert(c.addr);
                }
            }
        }
        Err(LookupError::NoLivePeer { key, hops })
    }
}

/// Timeouts for a request that makes the answering peer run a whole lookup:
/// long enough for several of its own requests to time out.
pub fn lookup_rpc_config(rpc: RpcConfig) -> RpcConfig {
    RpcConfig {
        timeout: rpc.timeout * (rpc.retries + 1) * 8,
        retries: 0,
    }
}
