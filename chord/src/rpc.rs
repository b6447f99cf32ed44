//! Requests and responses over one UDP socket: request ids, a timeout per
//! attempt, and retries. The socket's receive loop (the peer's, or a
//! client's) hands each response to [`Rpc::complete`], which wakes the call
//! waiting for it.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use thiserror::Error;
use tokio::net::UdpSocket;
use tokio::sync::oneshot;

use crate::wire::{Message, Request, Response, WireError};

/// How long to wait for an answer, and how often to ask again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RpcConfig {
    /// Time to wait for a response to one attempt.
    pub timeout: Duration,
    /// Attempts after the first before giving up.
    pub retries: u32,
}

impl Default for RpcConfig {
    fn default() -> Self {
        RpcConfig {
            timeout: Duration::from_millis(300),
            retries: 2,
        }
    }
}

/// Why a request got no usable answer.
#[derive(Debug, Error)]
pub enum RpcError {
    /// No response in time: the peer is taken to be dead.
    #[error("no answer from {to} after {attempts} attempts of {timeout:?}")]
    Timeout {
        /// The peer asked.
        to: SocketAddr,
        /// Attempts made.
        attempts: u32,
        /// Wait per attempt.
        timeout: Duration,
    },
    /// The datagram could not be sent (no route, for one).
    #[error("cannot send to {to}")]
    Send {
        /// The peer asked.
        to: SocketAddr,
        /// What the socket said.
        #[source]
        source: io::Error,
    },
    /// The request could not be encoded.
    #[error("cannot encode a request to {to}")]
    Encode {
        /// The peer asked.
        to: SocketAddr,
        /// What was wrong.
        #[source]
        source: WireError,
    },
    /// The peer answered with an error.
    #[error("{to} answered: {message}")]
    Remote {
        /// The peer asked.
        to: SocketAddr,
        /// Its error text.
        message: String,
    },
    /// The peer answered with a response of the wrong kind.
    #[error("{to} answered {got} to {asked}")]
    Unexpected {
        /// The peer asked.
        to: SocketAddr,
        /// The request sent.
        asked: &'static str,
        /// The kind of response received.
        got: &'static str,
    },
    /// The socket's receive loop has stopped.
    #[error("the socket's receive loop has stopped")]
    Closed,
}

impl RpcError {
    /// Whether the error means the peer is unreachable, so that it should be
    /// dropped from the routing state.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, RpcError::Timeout { .. } | RpcError::Send { .. })
    }
}

type Pending = HashMap<u64, (SocketAddr, oneshot::Sender<Response>)>;

/// One UDP socket used both to ask and (for a peer) to answer.
pub struct Rpc {
    socket: UdpSocket,
    pending: Mutex<Pending>,
    next_id: AtomicU64,
    config: RpcConfig,
}

impl Rpc {
    /// Wraps a bound socket.
    pub fn new(socket: UdpSocket, config: RpcConfig) -> Rpc {
        Rpc {
            socket,
            pending: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(rand::random()),
            config,
        }
    }

    /// The address the socket is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// The timeouts and retries calls use by default.
    pub fn config(&self) -> RpcConfig {
        self.config
    }

    /// Receives one datagram into `buf`.
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.socket.recv_from(buf).await
    }

    /// Sends a response; a failure is logged, since the requester will
    /// retry or time out anyway.
    pub async fn reply(&self, to: SocketAddr, id: u64, response: Response) {
        match Message::response(id, response).encode() {
            Ok(bytes) => {
                if let Err(e) = self.socket.send_to(&bytes, to).await {
                    tracing::debug!(%to, error = %e, "cannot send a response");
                }
            }
            Err(e) => tracing::warn!(%to, error = %e, "cannot encode a response"),
        }
    }

    /// Hands a received response to the call waiting for it; responses
    /// nobody waits for (late, duplicate, or from the wrong address) are
    /// dropped.
    pub fn complete(&self, from: SocketAddr, id: u64, response: Response) {
        let mut pending = self.pending.lock().expect("pending lock poisoned");
        match pending.get(&id) {
            Some((to, _)) if *to == from => {
                if let Some((_, tx)) = pending.remove(&id) {
                    let _ = tx.send(response);
                }
            }
            Some((to, _)) => {
                tracing::debug!(%from, expected = %to, id, "response from an unexpected address");
            }
            None => tracing::trace!(%from, id, "late or duplicate response"),
        }
    }

    /// Sends `request` to `to` and waits for its response, with the default
    /// timeout and retries.
    pub async fn call(&self, to: SocketAddr, request: Request) -> Result<Response, RpcError> {
        self.call_with(to, request, self.config).await
    }

    /// Sends `request` to `to` and waits for its response: each attempt
    /// waits `config.timeout`, and `config.retries` more attempts follow a
    /// silent one. An error response becomes [`RpcError::Remote`].
    pub async fn call_with(
        &self,
        to: SocketAddr,
        request: Request,
        config: RpcConfig,
    ) -> Result<Response, RpcError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let bytes = Message::request(id, request)
            .encode()
            .map_err(|source| RpcError::Encode { to, source })?;
        let (tx, mut rx) = oneshot::channel();
        self.pending
            .lock()
            .expect("pending lock poisoned")
            .insert(id, (to, tx));
        let _forget = ForgetOnDrop { rpc: self, id };
        for _ in 0..=config.retries {
            self.socket
                .send_to(&bytes, to)
                .await
                .map_err(|source| RpcError::Send { to, source })?;
            match tokio::time::timeout(config.timeout, &mut rx).await {
                Ok(Ok(Response::Error(message))) => return Err(RpcError::Remote { to, message }),
                Ok(Ok(response)) => return Ok(response),
                Ok(Err(_)) => return Err(RpcError::Closed),
                Err(_) => continue,
            }
        }
        Err(RpcError::Timeout {
            to,
            attempts: config.retries + 1,
            timeout: config.timeout,
        })
    }
}

/// Removes a call's pending entry however the call ends.
struct ForgetOnDrop<'a> {
    rpc: &'a Rpc,
    id: u64,
}

impl Drop for ForgetOnDrop<'_> {
    fn drop(&mut self) {
        if let Ok(mut pending) = self.rpc.pending.lock() {
            pending.remove(&self.id);
        }
    }
}

/// The name of a response's kind, for error messages.
pub fn response_name(response: &Response) -> &'static str {
    match response {
        Response::Pong(_) => "pong",
        Response::Neighbors { .. } => "neighbors",
        Response::Owner(_) => "owner",
        Response::Next(_) => "next",
        Response::Found { .. } => "found",
        Response::Status(_) => "status",
        Response::Error(_) => "error",
    }
}
