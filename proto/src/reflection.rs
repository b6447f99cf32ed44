//! The gRPC reflection service, built on its first request. Building it
//! decodes every vBET descriptor (with its comments): about 0.3 MiB of
//! heap that each of a lab's thousand monitors would otherwise hold
//! without `grpcurl` ever asking.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use tonic::body::Body;
use tonic::codegen::http;
use tonic::server::NamedService;
use tower::Service;
use tower::util::BoxCloneSyncService;

type Inner = BoxCloneSyncService<http::Request<Body>, http::Response<Body>, Infallible>;

/// `grpc.reflection.v1.ServerReflection` over [`crate::FILE_DESCRIPTOR_SET`],
/// made when first called; add it to a server with `add_service`.
#[derive(Clone, Default)]
pub struct Reflection {
    inner: Arc<OnceLock<Result<Inner, String>>>,
}

impl Reflection {
    /// The service (nothing is decoded yet).
    pub fn new() -> Reflection {
        Reflection::default()
    }
}

/// Builds the real reflection service.
fn build() -> Result<Inner, String> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(crate::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map(BoxCloneSyncService::new)
        .map_err(|e| format!("cannot build the reflection service: {e}"))
}

impl NamedService for Reflection {
    const NAME: &'static str = "grpc.reflection.v1.ServerReflection";
}

impl Service<http::Request<Body>> for Reflection {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        match self.inner.get_or_init(build) {
            Ok(inner) => {
                let mut inner = inner.clone();
                Box::pin(async move { inner.call(request).await })
            }
            Err(e) => {
                let response = tonic::Status::internal(e.clone()).into_http();
                Box::pin(async move { Ok(response) })
            }
        }
    }
}

impl std::fmt::Debug for Reflection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reflection")
            .field("built", &self.inner.get().is_some())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_descriptor_set_builds() {
        assert!(super::build().is_ok());
    }
}
