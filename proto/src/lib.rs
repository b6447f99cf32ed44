//! vBET's gRPC services, generated at build time from the `.proto` files in
//! `proto/vbet/` (compiled by protox, so no system `protoc` is needed).
//!
//! Each package is a module: `vbet::switch::v1` holds the `Switch` service
//! that switchd and hubd serve.
#![allow(missing_docs, clippy::all, clippy::pedantic)]

include!(concat!(env!("OUT_DIR"), "/services.rs"));

/// The encoded `FileDescriptorSet` of every vBET service, for the gRPC
/// reflection service (so `grpcurl` can list and call them).
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/descriptor.bin"));
