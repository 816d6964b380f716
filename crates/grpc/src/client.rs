//! The client side: [`GrpcProtocol`] and the fetcher it makes for each peer.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use galaxycache_h2::{Connector, MakeStream};
use galaxycache_universe::rustls::ClientConfig;
use galaxycache_universe::{
    BoxFuture, DEFAULT_MAX_RESPONSE_BYTES, Error, ErrorKind, FetchProtocol, FetchResult, GalaxyId,
    InFlight, PeerToken, RemoteFetcher, TRACEPARENT, TlsConfig, Value, WriteOp, current_trace,
};
use http::Uri;
use http::uri::InvalidUri;
use tokio::time::Instant;
use tonic::Code;
use tonic::metadata::AsciiMetadataValue;

use crate::pb::galaxy_cache_client::GalaxyCacheClient;
use crate::pb::key_answer::Answer;
use crate::pb::{
    FlushRequest, GetManyRequest, GetRequest, KeyAnswer, PeekRequest, RemoveRequest, SetRequest,
};
use crate::server::AUTHORIZATION;
use crate::status::{absent_from_status, error_from_status};
use crate::transport::{Deadline, Transport};
use crate::wire::{WireInstants, absent_from_wire, key_to_wire, value_from_wire};

/// Default bound on the time to open a connection to a peer: 1 second.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// The gRPC fetch protocol: give it to a universe and the universe reaches its peers by
/// calling their `galaxycachepb.GalaxyCache` service.
///
/// Each peer gets one HTTP/2 connection, opened on the first fetch and shared by all
/// fetches to that peer. The connection lives on the runtime of the fetch that opened it;
/// when that runtime ends, or the connection fails, the next fetch opens a new one. Every call carries the
/// caller's remaining time as its `grpc-timeout`, so the peer stops working on a request
/// nobody waits for; the caller enforces its deadline itself.
///
/// Every request carries the galaxy's [`GalaxyId::version`]: field 100 of `GetRequest` and
/// `PeekRequest` (a Go peer ignores it), a field of its own in each write message. Writes
/// ([`RemoteFetcher::write`]) are the `Remove`, `Set` and `Flush` RPCs; a set carries the
/// value's bytes and its instants.
///
/// How a peer's answer is read:
///
/// | peer answers | fetch or peek returns | write returns |
/// | --- | --- | --- |
/// | OK | `Ok(Some(value))`, with its expiry (which may have passed: a stale answer), refresh and stale limit | `Ok(())`: the peer applied it |
/// | NOT_FOUND with metadata `galaxycache-expires-ms: <unix ms>` | `Ok(Some(`[`Value::absent`]`(expiry)))`: a cached miss | [`ErrorKind::Protocol`] |
/// | NOT_FOUND without it (galaxycache in Go, an older peer) | `Ok(None)`: the owner has no such key | [`ErrorKind::Protocol`] |
/// | INVALID_ARGUMENT marking an unknown galaxy | [`ErrorKind::UnknownGalaxy`] | the same |
/// | other INVALID_ARGUMENT | [`ErrorKind::InvalidRequest`] | the same |
/// | FAILED_PRECONDITION: the peer's galaxy has another version | [`ErrorKind::VersionMismatch`] | the same |
/// | UNAUTHENTICATED: the peer wants credentials this node did not send | [`ErrorKind::Unauthenticated`] (a peer failure: the asking node loads the key itself) | the same |
/// | UNIMPLEMENTED: the peer lacks the verb (galaxycache in Go has no write verbs) | [`ErrorKind::Unsupported`] | the same |
/// | DEADLINE_EXCEEDED or CANCELLED, or the call's `grpc-timeout` runs out on this side | [`ErrorKind::Timeout`] | the same |
/// | UNAVAILABLE, or the connection fails | [`ErrorKind::Unavailable`] | the same |
/// | RESOURCE_EXHAUSTED, or no room for the answer under the node's bound on bytes in flight by the deadline | [`ErrorKind::Overloaded`] | the same |
/// | a response larger than [`max_response_bytes`](Self::max_response_bytes), or OUT_OF_RANGE: a request over the peer's bound (a set's value) | [`ErrorKind::TooLarge`] | the same |
/// | INTERNAL (ours) or UNKNOWN (galaxycache in Go): the load (or write) failed | [`ErrorKind::Remote`], its message the owner's error unchanged | the same |
/// | any other status; an instant outside `Timestamp`'s range; a malformed `galaxycache-expires-ms` | [`ErrorKind::Protocol`] | the same |
///
/// ```
/// use std::sync::Arc;
/// use galaxycache::grpc::GrpcProtocol;
/// use galaxycache::universe::Universe;
///
/// let universe = Universe::builder("http://127.0.0.1:7001")
///     .protocol(Arc::new(GrpcProtocol::new().max_response_bytes(1 << 20)))
///     .build();
/// universe.set_peers(["http://127.0.0.1:7001", "http://127.0.0.1:7002"]).unwrap();
/// ```
#[derive(Clone, Debug)]
pub struct GrpcProtocol {
    connect_timeout: Duration,
    max_response_bytes: usize,
    tls: Option<ClientConfig>,
    authorization: Option<AsciiMetadataValue>,
    connector: Option<Connector>,
}

impl Default for GrpcProtocol {
    fn default() -> Self {
        GrpcProtocol {
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            tls: None,
            authorization: None,
            connector: None,
        }
    }
}

impl GrpcProtocol {
    /// The protocol with its defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bound on the time to open a connection to a peer. Default: 1 second
    /// ([`DEFAULT_CONNECT_TIMEOUT`]). The caller's deadline bounds the whole fetch too.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Largest response message accepted from a peer; a larger one fails the fetch with
    /// [`ErrorKind::TooLarge`] before its body is read. Default: 64 MiB
    /// ([`DEFAULT_MAX_RESPONSE_BYTES`], the one default of every protocol).
    pub fn max_response_bytes(mut self, bytes: usize) -> Self {
        self.max_response_bytes = bytes;
        self
    }

    /// Reach `https://` peers over mTLS: present this node's certificate and accept a peer
    /// only with a certificate signed by the CA that names the host of its URL. Loads the
    /// files now (an [`ErrorKind::Config`] error when they do not load); the client keeps
    /// what it loaded. Default: none, `http://` peers only.
    pub fn tls(mut self, tls: &TlsConfig) -> Result<Self, Error> {
        self.tls = Some(tls.client_config(&[])?);
        Ok(self)
    }

    /// Send `token` with every call, as the metadata entry `authorization: Bearer <token>`,
    /// for peers that require it ([`GrpcServer::token`](crate::GrpcServer::token)).
    /// Default: none.
    pub fn token(mut self, token: PeerToken) -> Self {
        self.authorization = token.authorization().parse().ok();
        self
    }

    /// Open connections to peers with `connector` instead of TCP sockets: a
    /// [`tower::Service`] that takes a peer's origin (`http://host:port/`) and answers a
    /// byte stream to it, any tokio [`AsyncRead`](tokio::io::AsyncRead) +
    /// [`AsyncWrite`](tokio::io::AsyncWrite) (an in-memory pipe, a
    /// Unix socket, a simulated network's TCP stream), as the HTTP protocol's
    /// `HttpProtocolBuilder::connector`. Each connect is bounded by
    /// [`connect_timeout`](Self::connect_timeout); TLS ([`tls`](Self::tls)) applies to these
    /// streams as to sockets. Default: none, TCP sockets (with `TCP_NODELAY`).
    pub fn connector(mut self, connector: impl MakeStream) -> Self {
        self.connector = Some(Connector::new(connector));
        self
    }
}

impl FetchProtocol for GrpcProtocol {
    /// A fetcher for the peer at `url`: `http://host:port` (a URL without a scheme is taken
    /// as `http://`), or `https://host:port` with [`tls`](GrpcProtocol::tls). Nothing is
    /// connected until the first fetch.
    ///
    /// Keys are bounded by the universe ([`Universe::check_key`]), not here: gRPC carries
    /// keys of any length.
    ///
    /// Answers are read against the node's bound on bytes in flight (`in_flight`): each
    /// chunk of an answer is held against it as it arrives, until tonic has decoded the
    /// message, waiting for room until the call's deadline (no room by then is
    /// [`ErrorKind::Overloaded`]). Each is bounded by
    /// [`max_response_bytes`](GrpcProtocol::max_response_bytes) too.
    ///
    /// [`Universe::check_key`]: galaxycache_universe::Universe::check_key
    fn connect(&self, url: &str, in_flight: &InFlight) -> Result<Arc<dyn RemoteFetcher>, Error> {
        let target = if url.contains("://") {
            url.to_owned()
        } else {
            format!("http://{url}")
        };
        let origin: Uri = target
            .parse()
            .map_err(|e: InvalidUri| config_error(url, &e.to_string()))?;
        if origin.authority().is_none() {
            return Err(config_error(url, "no host"));
        }
        let tls = match (origin.scheme_str(), &self.tls) {
            (Some("http"), _) => None,
            (Some("https"), Some(tls)) => Some(tls.clone()),
            (Some("https"), None) => {
                return Err(config_error(url, "https needs TLS (GrpcProtocol::tls)"));
            }
            _ => return Err(config_error(url, "only http:// and https:// peers")),
        };
        let connector = self.connector.clone();
        let transport =
            galaxycache_h2::Transport::new(&origin, tls, connector, self.connect_timeout)
                .map_err(|why| config_error(url, &why))?;
        let transport = Transport::new(transport, in_flight);
        let client = GalaxyCacheClient::with_origin(transport, origin)
            .max_decoding_message_size(self.max_response_bytes);
        Ok(Arc::new(GrpcFetcher {
            url: url.to_owned(),
            authorization: self.authorization.clone(),
            client,
        }))
    }
}

fn config_error(url: &str, why: &str) -> Error {
    Error::new(
        ErrorKind::Config,
        format!("unusable gRPC peer URL {url:?}: {why}"),
    )
}

/// What a call that did not fail brought back.
#[derive(Debug)]
enum Reply<R> {
    /// The response message.
    Message(R),
    /// NOT_FOUND: the owner has no such key; a cached miss when the peer said until when.
    NotFound(Option<Value>),
}

impl<R> Reply<R> {
    /// The fetch result this reply is, a message's value read by `value`.
    fn into_fetched(self, value: impl FnOnce(R) -> Result<Value, Error>) -> FetchResult {
        match self {
            Reply::Message(message) => value(message).map(Some),
            Reply::NotFound(absent) => Ok(absent),
        }
    }
}

/// One peer, reached over one HTTP/2 connection, opened on the first call.
#[derive(Debug)]
struct GrpcFetcher {
    url: String,
    /// `Bearer <token>`, sent with every call, when a token is configured.
    authorization: Option<AsciiMetadataValue>,
    client: GalaxyCacheClient<Transport>,
}

impl GrpcFetcher {
    /// Send `message` to the peer with `rpc`, the request carrying the time left until
    /// `deadline` as its grpc-timeout: the answer, or what its NOT_FOUND says.
    async fn call<Req, Resp, Fut>(
        &self,
        message: Req,
        deadline: Instant,
        rpc: impl FnOnce(GalaxyCacheClient<Transport>, tonic::Request<Req>) -> Fut,
    ) -> Result<Reply<Resp>, Error>
    where
        Fut: Future<Output = Result<tonic::Response<Resp>, tonic::Status>>,
    {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(Error::new(
                ErrorKind::Timeout,
                format!("the deadline passed before peer {} was asked", self.url),
            ));
        }
        let mut request = tonic::Request::new(message);
        request.set_timeout(remaining);
        request.extensions_mut().insert(Deadline(deadline));
        if let Some(authorization) = &self.authorization {
            request
                .metadata_mut()
                .insert(AUTHORIZATION, authorization.clone());
        }
        if let Some(context) = current_trace()
            && let Ok(value) = AsciiMetadataValue::try_from(context.to_string())
        {
            request.metadata_mut().insert(TRACEPARENT, value);
        }
        let answer = tokio::time::timeout_at(deadline, rpc(self.client.clone(), request)).await;
        let Ok(answer) = answer else {
            return Err(Error::new(
                ErrorKind::Timeout,
                format!("peer {}: no answer before the deadline", self.url),
            ));
        };
        match answer {
            Ok(response) => Ok(Reply::Message(response.into_inner())),
            Err(status) => match error_from_status(&status, &self.url) {
                Some(e) => Err(e),
                None => absent_from_status(&status, &self.url).map(Reply::NotFound),
            },
        }
    }

    /// Send a write's `message` with `rpc`: `Ok(())` once the peer has applied it.
    async fn call_write<Req, Resp, Fut>(
        &self,
        op: WriteOp<'_>,
        message: Req,
        deadline: Instant,
        rpc: impl FnOnce(GalaxyCacheClient<Transport>, tonic::Request<Req>) -> Fut,
    ) -> Result<(), Error>
    where
        Fut: Future<Output = Result<tonic::Response<Resp>, tonic::Status>>,
    {
        match self.call(message, deadline, rpc).await? {
            Reply::Message(_) => Ok(()),
            // Our servers apply a write whether or not the key is there.
            Reply::NotFound(_) => Err(Error::new(
                ErrorKind::Protocol,
                format!(
                    "peer {}: NOT_FOUND is no answer to a {}",
                    self.url,
                    op.verb()
                ),
            )),
        }
    }
}

impl GrpcFetcher {
    /// What one key's answer in a `GetMany` means, as the same answer to a `GetFromPeer`
    /// would.
    fn key_result(&self, answer: KeyAnswer) -> FetchResult {
        match answer.answer {
            Some(Answer::Value(a)) => {
                let instants = WireInstants {
                    expiry: a.expiry,
                    refresh: a.refresh,
                    stale_until: a.stale_until,
                };
                value_from_wire(&a.value, instants).map(Some)
            }
            Some(Answer::NotFound(miss)) => absent_from_wire(miss.expiry),
            Some(Answer::Error(e)) => {
                let status = tonic::Status::new(Code::from(e.code), e.message);
                Err(error_from_status(&status, &self.url).unwrap_or_else(|| {
                    Error::new(ErrorKind::Protocol, "NOT_FOUND as a key's error")
                }))
            }
            None => Err(Error::new(
                ErrorKind::Protocol,
                format!("peer {}: a batch answer without an answer", self.url),
            )),
        }
    }
}

impl RemoteFetcher for GrpcFetcher {
    fn fetch<'a>(
        &'a self,
        galaxy: GalaxyId<'a>,
        key: &'a str,
        deadline: Instant,
    ) -> BoxFuture<'a, FetchResult> {
        Box::pin(async move {
            let request = GetRequest {
                galaxy: galaxy.name.to_owned(),
                key: key_to_wire(key),
                version: galaxy.version,
            };
            let rpc = |mut client: GalaxyCacheClient<Transport>, request| async move {
                client.get_from_peer(request).await
            };
            let reply = self.call(request, deadline, rpc).await?;
            reply.into_fetched(|a| {
                let instants = WireInstants {
                    expiry: a.expiry,
                    refresh: a.refresh,
                    stale_until: a.stale_until,
                };
                value_from_wire(&a.value, instants)
            })
        })
    }

    /// One `GetMany` call. A server without it (galaxycache in Go, an older build)
    /// answers UNIMPLEMENTED: [`ErrorKind::Unsupported`].
    fn fetch_many<'a>(
        &'a self,
        galaxy: GalaxyId<'a>,
        keys: &'a [Arc<str>],
        deadline: Instant,
    ) -> BoxFuture<'a, Result<Vec<FetchResult>, Error>> {
        Box::pin(async move {
            let request = GetManyRequest {
                galaxy: galaxy.name.to_owned(),
                keys: keys.iter().map(|key| key_to_wire(key)).collect(),
                version: galaxy.version,
            };
            let rpc = |mut client: GalaxyCacheClient<Transport>, request| async move {
                client.get_many(request).await
            };
            let protocol_error =
                |why: String| Error::new(ErrorKind::Protocol, format!("peer {}: {why}", self.url));
            let answers = match self.call(request, deadline, rpc).await? {
                Reply::Message(response) => response.answers,
                Reply::NotFound(_) => {
                    return Err(protocol_error("NOT_FOUND is no answer to a batch".into()));
                }
            };
            if answers.len() != keys.len() {
                let why = format!("{} answers to {} keys", answers.len(), keys.len());
                return Err(protocol_error(why));
            }
            Ok(answers.into_iter().map(|a| self.key_result(a)).collect())
        })
    }

    fn peek<'a>(
        &'a self,
        galaxy: GalaxyId<'a>,
        key: &'a str,
        deadline: Instant,
    ) -> BoxFuture<'a, FetchResult> {
        Box::pin(async move {
            let request = PeekRequest {
                galaxy: galaxy.name.to_owned(),
                key: key_to_wire(key),
                version: galaxy.version,
            };
            let rpc = |mut client: GalaxyCacheClient<Transport>, request| async move {
                client.peek_peer(request).await
            };
            let reply = self.call(request, deadline, rpc).await?;
            reply.into_fetched(|a| {
                let instants = WireInstants {
                    expiry: a.expiry,
                    refresh: a.refresh,
                    stale_until: a.stale_until,
                };
                value_from_wire(&a.value, instants)
            })
        })
    }

    /// Remove, Set or Flush on the peer. A Set sends the value's bytes without copying them,
    /// and its instants (expiry, refresh, stale limit) to the nanosecond.
    fn write<'a>(
        &'a self,
        galaxy: GalaxyId<'a>,
        op: WriteOp<'a>,
        deadline: Instant,
    ) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            let (name, version) = (galaxy.name.to_owned(), galaxy.version);
            match op {
                WriteOp::Remove(key) => {
                    let request = RemoveRequest {
                        galaxy: name,
                        key: key_to_wire(key),
                        version,
                    };
                    let rpc = |mut client: GalaxyCacheClient<Transport>, request| async move {
                        client.remove(request).await
                    };
                    self.call_write(op, request, deadline, rpc).await
                }
                WriteOp::Set(key, value) => {
                    let WireInstants {
                        expiry,
                        refresh,
                        stale_until,
                    } = WireInstants::of(value);
                    let request = SetRequest {
                        galaxy: name,
                        key: key_to_wire(key),
                        value: value.bytes().clone(),
                        expiry,
                        version,
                        refresh,
                        stale_until,
                    };
                    let rpc = |mut client: GalaxyCacheClient<Transport>, request| async move {
                        client.set(request).await
                    };
                    self.call_write(op, request, deadline, rpc).await
                }
                WriteOp::Flush => {
                    let request = FlushRequest {
                        galaxy: name,
                        version,
                    };
                    let rpc = |mut client: GalaxyCacheClient<Transport>, request| async move {
                        client.flush(request).await
                    };
                    self.call_write(op, request, deadline, rpc).await
                }
            }
        })
    }

    fn url(&self) -> &str {
        &self.url
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use galaxycache_universe::{GalaxyHandler, Universe};
    use tokio_stream::StreamExt;

    use super::*;

    #[test]
    fn urls_are_checked_when_connecting() {
        let p = GrpcProtocol::new();
        assert_eq!(
            p.connect("http://127.0.0.1:1", &InFlight::unbounded())
                .unwrap()
                .url(),
            "http://127.0.0.1:1"
        );
        assert_eq!(
            p.connect("127.0.0.1:1", &InFlight::unbounded())
                .unwrap()
                .url(),
            "127.0.0.1:1"
        );
        for bad in ["https://127.0.0.1:1", "http://", "ftp://x", "http://a b"] {
            let e = p.connect(bad, &InFlight::unbounded()).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Config, "{bad}: {e}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn spent_deadlines_fail_without_a_call() {
        // Nothing listens on port 1: any call made would fail as Unavailable instead.
        let f = GrpcProtocol::new()
            .connect("http://127.0.0.1:1", &InFlight::unbounded())
            .unwrap();
        let e = f.fetch("g".into(), "k", Instant::now()).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Timeout);
        let e = f.peek("g".into(), "k", Instant::now()).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Timeout);
    }

    /// The size of every value [`Big`] answers: more than the bound of the test below.
    const BIG: usize = 128 * 1024;

    /// A galaxy whose every key is [`BIG`] bytes.
    #[derive(Debug)]
    struct Big;

    impl GalaxyHandler for Big {
        fn serve_get<'a>(&'a self, _: &'a str, _: Option<Instant>) -> BoxFuture<'a, FetchResult> {
            Box::pin(async { Ok(Some(Value::new(vec![b'v'; BIG]))) })
        }

        fn serve_peek(&self, _: &str) -> Option<Value> {
            None
        }

        fn serve_write(&self, _: WriteOp<'_>) -> Result<(), Error> {
            Ok(())
        }
    }

    /// A fetcher over in-memory pipes to a server of [`Big`] (so the paused clock moves
    /// only when every task waits), its answers read against `bound`.
    fn big_peer(bound: &InFlight) -> (Arc<dyn RemoteFetcher>, Arc<dyn GalaxyHandler>) {
        let universe = Universe::builder("http://server").build();
        let galaxy: Arc<dyn GalaxyHandler> = Arc::new(Big);
        universe.register("g", Arc::downgrade(&galaxy)).unwrap();
        let pipes = tower::service_fn(move |_: Uri| {
            let (client, server) = tokio::io::duplex(1 << 20);
            let incoming = tokio_stream::iter([Ok::<_, std::io::Error>(server)])
                .chain(tokio_stream::pending());
            let router =
                tonic::transport::Server::builder().add_service(crate::service(universe.clone()));
            tokio::spawn(router.serve_with_incoming(incoming));
            std::future::ready(Ok::<_, Infallible>(client))
        });
        let protocol = GrpcProtocol::new().connector(pipes);
        (protocol.connect("http://server", bound).unwrap(), galaxy)
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    /// As HTTP's answers: an answer is held against the node's bound on bytes in flight
    /// as it arrives; one larger than the whole bound takes all of it, so it waits for
    /// every other byte in flight, and fails as overloaded when they stay until the
    /// deadline. Whatever it held is released once the value is decoded, or at the
    /// failure.
    #[tokio::test(start_paused = true)]
    async fn answers_are_read_against_the_bound_on_bytes_in_flight() {
        let bound = InFlight::new(64 * 1024);
        let (peer, _galaxy) = big_peer(&bound);
        let value = peer.fetch("g".into(), "k", soon()).await.unwrap().unwrap();
        assert_eq!(value.len(), BIG, "alone, it takes the whole bound");
        assert_eq!(bound.reserved_bytes(), 0, "released once decoded");

        let held = bound.reserve(1024, soon()).await.unwrap();
        let waiting = tokio::spawn({
            let peer = Arc::clone(&peer);
            async move { peer.fetch("g".into(), "k", soon()).await }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!waiting.is_finished(), "it waits for the bytes held");
        assert!(bound.reserved_bytes() > 1024, "what arrived so far is held");
        drop(held);
        let value = waiting.await.unwrap().unwrap().unwrap();
        assert_eq!(value.len(), BIG);
        assert_eq!(bound.reserved_bytes(), 0);

        let held = bound.reserve(1024, soon()).await.unwrap();
        let e = peer.fetch("g".into(), "k", soon()).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Overloaded, "{e}");
        assert_eq!(
            bound.reserved_bytes(),
            1024,
            "the failed answer released its bytes"
        );
        drop(held);
        assert_eq!(bound.reserved_bytes(), 0);
    }
}
