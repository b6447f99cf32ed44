//! vBET's gRPC services, generated at build time from the `.proto` files in
//! `proto/vbet/` (compiled by protox, so no system `protoc` is needed).
//!
//! Each package is a module: `vbet::switch::v1` holds the `Switch` service
//! that switchd and hubd serve.
#![allow(missing_docs, clippy::all, clippy::pedantic)]

include!(concat!(env!("OUT_DIR"), "/services.rs"));

pub mod reflection;

/// The encoded `FileDescriptorSet` of every vBET service, for the gRPC
/// reflection service (so `grpcurl` can list and call them).
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/descriptor.bin"));

/// Connects a gRPC channel to a server listening on the Unix socket
/// `path` (all vBET daemons serve their APIs on Unix sockets).
pub async fn connect_unix(
    path: impl AsRef<std::path::Path>,
) -> Result<tonic::transport::Channel, tonic::transport::Error> {
    let path = path.as_ref().to_owned();
    // The URI is required by the API but never used: the connector below
    // decides where the connection goes.
    tonic::transport::Endpoint::from_static("http://localhost")
        .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
            let path = path.clone();
            async move {
                let stream = tokio::net::UnixStream::connect(path).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
            }
        }))
        .await
}
