//! The client side: [`GrpcProtocol`] and the fetcher it makes for each peer.

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use galaxycache_universe::{
    BoxFuture, DEFAULT_MAX_KEY_LEN, Error, ErrorKind, FetchProtocol, FetchResult, RemoteFetcher,
};
use tokio::time::Instant;
use tonic::transport::{Channel, Endpoint};

use crate::pb::galaxy_cache_client::GalaxyCacheClient;
use crate::pb::{GetRequest, PeekRequest};
use crate::status::error_from_status;
use crate::wire::value_from_wire;

/// Default bound on the time to open a connection to a peer: 1 second.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Default bound on the size of one response message from a peer: 16 MiB.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 16 << 20;

/// The gRPC fetch protocol: give it to a universe and the universe reaches its peers by
/// calling their `galaxycachepb.GalaxyCache` service.
///
/// Each peer gets one HTTP/2 channel, opened on the first fetch and shared by all fetches
/// to that peer. Every call carries the caller's remaining time as its `grpc-timeout`, so
/// the peer stops working on a request nobody waits for.
///
/// How a peer's answer is read:
///
/// | peer answers | fetch returns |
/// | --- | --- |
/// | a value | `Ok(Some(value))`, with its expiry |
/// | NOT_FOUND | `Ok(None)`: the owner has no such key |
/// | INVALID_ARGUMENT marking an unknown galaxy | [`ErrorKind::UnknownGalaxy`] |
/// | other INVALID_ARGUMENT | [`ErrorKind::InvalidRequest`] |
/// | DEADLINE_EXCEEDED or CANCELLED, or nothing before the deadline | [`ErrorKind::Timeout`] |
/// | UNAVAILABLE, or the connection fails | [`ErrorKind::Unavailable`] |
/// | RESOURCE_EXHAUSTED | [`ErrorKind::Overloaded`] |
/// | a response larger than [`max_response_bytes`](Self::max_response_bytes) | [`ErrorKind::TooLarge`] |
/// | any other status (INTERNAL: the load failed) | [`ErrorKind::Remote`] |
///
/// ```
/// use std::sync::Arc;
/// use galaxycache_grpc::GrpcProtocol;
/// use galaxycache_universe::Universe;
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
    max_key_len: usize,
}

impl Default for GrpcProtocol {
    fn default() -> Self {
        GrpcProtocol {
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            max_key_len: DEFAULT_MAX_KEY_LEN,
        }
    }
}

impl GrpcProtocol {
    /// The protocol with its defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bound on the time to open a connection to a peer. Default: 1 second
    /// ([`DEFAULT_CONNECT_TIMEOUT`]). A fetch's deadline bounds it too.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Largest response message accepted from a peer; a larger one fails the fetch with
    /// [`ErrorKind::TooLarge`] before its body is read. Default: 16 MiB
    /// ([`DEFAULT_MAX_RESPONSE_BYTES`]).
    pub fn max_response_bytes(mut self, bytes: usize) -> Self {
        self.max_response_bytes = bytes;
        self
    }

    /// Longest key sent to a peer; a longer one fails with [`ErrorKind::InvalidRequest`]
    /// without being sent. Default: 64 KiB, the servers' default bound
    /// ([`DEFAULT_MAX_KEY_LEN`]).
    pub fn max_key_len(mut self, bytes: usize) -> Self {
        self.max_key_len = bytes;
        self
    }
}

impl FetchProtocol for GrpcProtocol {
    /// A fetcher for the peer at `url`: `http://host:port` (a URL without a scheme is taken
    /// as `http://`). Nothing is connected until the first fetch. `https` is refused: this
    /// build has no TLS.
    fn connect(&self, url: &str) -> Result<Arc<dyn RemoteFetcher>, Error> {
        let target = if url.contains("://") {
            url.to_owned()
        } else {
            format!("http://{url}")
        };
        let endpoint = Endpoint::from_shared(target)
            .map_err(|e| config_error(url, &e.to_string()))?
            .connect_timeout(self.connect_timeout)
            .tcp_nodelay(true);
        if endpoint.uri().scheme_str() != Some("http") {
            return Err(config_error(url, "only http:// peers are supported"));
        }
        Ok(Arc::new(GrpcFetcher {
            url: url.to_owned(),
            endpoint,
            channel: OnceLock::new(),
            max_response_bytes: self.max_response_bytes,
            max_key_len: self.max_key_len,
        }))
    }
}

fn config_error(url: &str, why: &str) -> Error {
    Error::new(
        ErrorKind::Config,
        format!("unusable gRPC peer URL {url:?}: {why}"),
    )
}

/// One peer, reached over one lazily opened HTTP/2 channel.
#[derive(Debug)]
struct GrpcFetcher {
    url: String,
    endpoint: Endpoint,
    /// Opened on the first fetch, inside the runtime that makes it, so a universe can be
    /// built and given peers outside any runtime.
    channel: OnceLock<Channel>,
    max_response_bytes: usize,
    max_key_len: usize,
}

impl GrpcFetcher {
    fn client(&self) -> GalaxyCacheClient<Channel> {
        let channel = self.channel.get_or_init(|| self.endpoint.connect_lazy());
        GalaxyCacheClient::new(channel.clone()).max_decoding_message_size(self.max_response_bytes)
    }

    /// A request for `key` carrying the time left until `deadline` as its grpc-timeout.
    fn request<T>(
        &self,
        key: &str,
        deadline: Instant,
        make: impl FnOnce(Bytes) -> T,
    ) -> Result<tonic::Request<T>, Error> {
        if key.len() > self.max_key_len {
            return Err(Error::new(
                ErrorKind::InvalidRequest,
                format!(
                    "key of {} bytes exceeds the limit of {} bytes",
                    key.len(),
                    self.max_key_len
                ),
            ));
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(self.timeout());
        }
        let mut request = tonic::Request::new(make(Bytes::copy_from_slice(key.as_bytes())));
        request.set_timeout(remaining);
        Ok(request)
    }

    /// Run `call` until `deadline`: the peer's answer, `None` when it has no such key.
    async fn within<T>(
        &self,
        deadline: Instant,
        call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> Result<Option<T>, Error> {
        match tokio::time::timeout_at(deadline, call).await {
            Ok(Ok(response)) => Ok(Some(response.into_inner())),
            Ok(Err(status)) => error_from_status(&status, &self.url).map_or(Ok(None), Err),
            Err(_) => Err(self.timeout()),
        }
    }

    fn timeout(&self) -> Error {
        Error::new(
            ErrorKind::Timeout,
            format!("no answer from peer {} before the deadline", self.url),
        )
    }

    async fn get(&self, galaxy: &str, key: &str, deadline: Instant) -> FetchResult {
        let request = self.request(key, deadline, |key| GetRequest {
            galaxy: galaxy.to_owned(),
            key,
        })?;
        let mut client = self.client();
        match self.within(deadline, client.get_from_peer(request)).await? {
            Some(answer) => value_from_wire(answer.value, answer.expiry).map(Some),
            None => Ok(None),
        }
    }

    async fn peek(&self, galaxy: &str, key: &str, deadline: Instant) -> FetchResult {
        let request = self.request(key, deadline, |key| PeekRequest {
            galaxy: galaxy.to_owned(),
            key,
        })?;
        let mut client = self.client();
        match self.within(deadline, client.peek_peer(request)).await? {
            Some(answer) => value_from_wire(answer.value, answer.expiry).map(Some),
            None => Ok(None),
        }
    }
}

impl RemoteFetcher for GrpcFetcher {
    fn fetch<'a>(
        &'a self,
        galaxy: &'a str,
        key: &'a str,
        deadline: Instant,
    ) -> BoxFuture<'a, FetchResult> {
        Box::pin(self.get(galaxy, key, deadline))
    }

    fn peek<'a>(
        &'a self,
        galaxy: &'a str,
        key: &'a str,
        deadline: Instant,
    ) -> BoxFuture<'a, FetchResult> {
        Box::pin(GrpcFetcher::peek(self, galaxy, key, deadline))
    }

    fn url(&self) -> &str {
        &self.url
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_when_connecting() {
        let p = GrpcProtocol::new();
        assert_eq!(
            p.connect("http://127.0.0.1:1").unwrap().url(),
            "http://127.0.0.1:1"
        );
        assert_eq!(p.connect("127.0.0.1:1").unwrap().url(), "127.0.0.1:1");
        for bad in ["https://127.0.0.1:1", "http://", "ftp://x", "http://a b"] {
            let e = p.connect(bad).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Config, "{bad}: {e}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn oversized_keys_and_spent_deadlines_fail_without_a_call() {
        // Nothing listens on port 1: any call made would fail as Unavailable instead.
        let f = GrpcProtocol::new()
            .max_key_len(4)
            .connect("http://127.0.0.1:1")
            .unwrap();
        let later = Instant::now() + Duration::from_secs(5);
        let e = f.fetch("g", "12345", later).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidRequest);
        let e = f.fetch("g", "k", Instant::now()).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Timeout);
        let e = f.peek("g", "k", Instant::now()).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Timeout);
    }
}
