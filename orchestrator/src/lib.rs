//! The vBET orchestrator and the `vbet` CLI.
//!
//! The orchestrator holds labs (deployed topologies): it validates and
//! plans a topology ([`plan`]), starts switch/hub daemons and VM monitors
//! as separate, detached processes ([`process`]), waits for every node and
//! its services to be ready, and rolls everything back if anything fails
//! ([`lab`]). A lab's record is kept on disk ([`state`]) so a restarted
//! orchestrator adopts it. The gRPC API ([`api`]) is served on a Unix
//! socket ([`daemon`]); `vbet` ([`cli`]) is its client.
#![deny(unsafe_code)]

pub mod api;
pub mod cli;
pub mod client;
pub mod daemon;
pub mod experiment;
pub mod graph;
pub mod hostnet;
pub mod lab;
pub mod layout;
pub mod peers;
pub mod plan;
pub mod process;
pub mod shell;
pub mod state;
pub mod table;
