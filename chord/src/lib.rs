//! A small Chord peer-to-peer lookup service (Stoica et al., SIGCOMM 2001)
//! for vBET's §4.3 experiment: consistent hashing on a 2^32 identifier ring,
//! successor lists, finger tables, periodic stabilization, and iterative
//! lookups over UDP.
//!
//! - [`id`]: identifiers, hashing and ring intervals.
//! - [`wire`]: the datagram format.
//! - [`rpc`]: request ids, timeouts and retries over a UDP socket.
//! - [`table`]: a peer's routing state and the decisions made from it.
//! - [`peer`]: a running peer (receive loop and maintenance loop).
//! - [`client`]: asking peers from outside: lookup, status, ring walk.
//! - [`commands`]: the `chord-peer` subcommands and their output.

#![deny(unsafe_code)]

pub mod client;
pub mod commands;
pub mod id;
pub mod peer;
pub mod rpc;
pub mod table;
pub mod wire;

pub use id::Id;
pub use peer::{PeerConfig, PeerHandle, run, start};
pub use wire::Node;
