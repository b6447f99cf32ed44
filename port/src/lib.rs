//! The frame-port machinery of vBET, shared by switchd, hubd and
//! vm-monitor: the uml_switch/VDE port protocol (both ends), a view of
//! Ethernet frames, MAC learning and the forwarding decision, 802.1Q,
//! impairments, capture and counters.
//!
//! The data path of a port is a [`link::PortLink`]: frames the client sends
//! are [`received`](link::PortLink::receive) and go inbound; frames for the
//! client are [`transmitted`](link::PortLink::transmit) outbound; each
//! direction may be impaired, and the link may be up, down or a black hole.
#![deny(unsafe_code)]

pub mod capture;
pub mod client;
pub mod counters;
pub mod egress;
pub mod fanout;
pub mod forward;
pub mod frame;
pub mod impair;
pub mod link;
pub mod mac_table;
pub mod protocol;
pub mod scratch;
pub mod server;
pub mod snoop;
pub mod socket;
mod sys;
pub mod vlan;
pub mod vnet;
pub mod vxlan;
