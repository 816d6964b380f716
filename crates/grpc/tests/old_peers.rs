//! A peer that speaks only the RPCs of galaxycache (Go), `GetFromPeer` and `PeekPeer`:
//! fetches work, and a write is Unsupported (the peer was reached but cannot invalidate).

mod common;

use galaxycache_universe::InFlight;
use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use common::{Fake, later};
use galaxycache_grpc::GrpcProtocol;
use galaxycache_grpc::pb::galaxy_cache_server::GalaxyCacheServer;
use galaxycache_grpc::{GalaxyCacheService, service};
use galaxycache_universe::{ErrorKind, FetchProtocol, GalaxyHandler, Universe, Value, WriteOp};
use tonic::body::Body;
use tonic::codegen::{BoxFuture, Service, http};
use tonic::server::NamedService;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;

/// `galaxycachepb.GalaxyCache` as a Go server has it: our service for the two old RPCs,
/// UNIMPLEMENTED for every other method, as a generated server answers an unknown one.
#[derive(Clone)]
struct OldRpcsOnly(GalaxyCacheServer<GalaxyCacheService>);

impl NamedService for OldRpcsOnly {
    const NAME: &'static str = "galaxycachepb.GalaxyCache";
}

impl Service<http::Request<Body>> for OldRpcsOnly {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Infallible>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(())) // as the generated server: always ready
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        match request.uri().path() {
            "/galaxycachepb.GalaxyCache/GetFromPeer" | "/galaxycachepb.GalaxyCache/PeekPeer" => {
                self.0.call(request)
            }
            _ => Box::pin(async { Ok(tonic::Status::unimplemented("unknown method").into_http()) }),
        }
    }
}

#[tokio::test]
async fn a_peer_without_the_write_rpcs_or_batches_is_unsupported() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let universe = Universe::builder(url.clone()).build();
    let fake = Arc::new(Fake::default());
    let handler: Arc<dyn GalaxyHandler> = fake.clone();
    universe.register("g", Arc::downgrade(&handler)).unwrap();
    let old = OldRpcsOnly(service(universe));
    let server = tokio::spawn(
        Server::builder()
            .add_service(old)
            .serve_with_incoming(TcpIncoming::from(listener)),
    );

    let peer = GrpcProtocol::new()
        .connect(&url, &InFlight::unbounded())
        .unwrap();
    let v = peer.fetch("g".into(), "k", later()).await.unwrap().unwrap();
    assert_eq!(v.bytes().as_ref(), b"v:k", "the old RPCs answer");

    let value = Value::new("v");
    for op in [
        WriteOp::Remove("k"),
        WriteOp::Set("k", &value),
        WriteOp::Flush,
    ] {
        let e = peer.write("g".into(), op, later()).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unsupported, "{op:?}: {e}");
    }
    assert_eq!(fake.writes(), [], "nothing reached the galaxy");
    let keys: Vec<std::sync::Arc<str>> = vec!["a".into(), "b".into()];
    let e = peer
        .fetch_many("g".into(), &keys, later())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported, "no GetMany: {e}");
    server.abort();
}
