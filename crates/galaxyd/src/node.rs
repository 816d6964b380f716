//! One node: a universe, its galaxies, a peer server in the configured protocol, and the
//! client API. The only module that knows the protocol crates.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use galaxycache_galaxy::Galaxy;
use galaxycache_grpc::{GrpcProtocol, GrpcServer};
use galaxycache_http::{Dialect, HttpProtocol, PeerService, ServerLimits};
use galaxycache_universe::{FetchProtocol, InFlight, Reload, Universe};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::api;
use crate::backend::{Backend, NotifyFeed, notify_feed};
use crate::config::{GalaxyConfig, NodeConfig, Protocol};
use crate::peers::{self, PeerSource};
use crate::preload;
use crate::readiness::Readiness;
use crate::security::PeerSecurity;

/// A running node. Stop it with [`Node::shutdown`]; dropping it stops nothing.
#[derive(Debug)]
pub struct Node {
    universe: Universe,
    galaxies: Vec<Galaxy>,
    api_addr: SocketAddr,
    peer_addr: SocketAddr,
    stop: watch::Sender<bool>,
    /// Stops the client API only: the first step of a graceful leave.
    stop_clients: watch::Sender<bool>,
    readiness: Readiness,
    /// The peer server, the client API and the start-up preload, each named, until they
    /// end (the preload, once done, waits for the stop signal like the servers).
    servers: JoinSet<(&'static str, anyhow::Result<()>)>,
    /// The change feeds (`notify_channel`) of the galaxies that have one, and the peer
    /// discovery (a peer file or DNS), until stopped.
    feeds: JoinSet<()>,
    /// Re-reads the peer file, when the peers come from one.
    reload_peers: Option<Reload>,
}

impl Node {
    /// Bind the listeners `config` names and start.
    pub async fn start(config: &NodeConfig) -> anyhow::Result<Node> {
        let peer = TcpListener::bind(config.peer_listen)
            .await
            .with_context(|| format!("cannot bind the peer listener to {}", config.peer_listen))?;
        let api = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot bind the client API to {}", config.listen))?;
        Self::start_on(config, peer, api).await
    }

    /// Start on listeners bound already (the addresses in `config` are then unused).
    ///
    /// The galaxies with a preload query are preloaded in the background, one after the
    /// other; the node serves meanwhile, and is [ready](Node::is_ready) once every preload
    /// has ended. A preload that fails without `first_update_fail_ok` ends the node:
    /// [`Node::wait`] returns its error.
    pub async fn start_on(
        config: &NodeConfig,
        peer_listener: TcpListener,
        api_listener: TcpListener,
    ) -> anyhow::Result<Node> {
        // Half the bytes in flight for values being received (from peers and origins),
        // half for values being sent to clients.
        let in_flight = config.in_flight_bytes();
        let universe = Universe::builder(&config.self_url)
            .replicas(config.replicas)
            .max_key_len(config.max_key_len)
            .protocol(protocol(config.protocol, &config.security)?)
            .batch_fetches(config.peer_batching)
            .max_in_flight_bytes(in_flight / 2)
            .build();
        let sending = InFlight::new(in_flight / 2);
        if let PeerSource::Static(list) = &config.peers {
            universe.set_peers(list).context("invalid peer list")?;
        }
        let discovery = peers::discovery(&config.peers).context("peer discovery")?;
        let galaxies = config
            .galaxies
            .iter()
            .map(|g| build_galaxy(&universe, g))
            .collect::<anyhow::Result<Vec<_>>>()?;
        tracing::info!(
            receiving = universe.in_flight().limit_bytes(),
            sending = sending.limit_bytes(),
            "bounds on value bytes in flight"
        );
        let feeds = change_feeds(&config.galaxies)?;
        let peer_addr = peer_listener.local_addr()?;
        let api_addr = api_listener.local_addr()?;
        let (stop, stopped) = watch::channel(false);
        let (stop_clients, clients_stopped) = watch::channel(false);
        let mut following = JoinSet::new();
        for (index, feed) in feeds {
            let galaxy = galaxies[index].clone();
            following.spawn(feed.run(galaxy, until_stopped(stopped.clone())));
        }
        let mut reload_peers = None;
        if let Some((source, reload)) = discovery {
            let (universe, stopped) = (universe.clone(), stopped.clone());
            following.spawn(async move {
                tokio::select! {
                    () = universe.follow(source) => {}
                    () = until_stopped(stopped) => {}
                }
            });
            reload_peers = reload;
        }
        let mut servers = JoinSet::new();
        config.security.warn_if_open(peer_addr);
        let peers = serve_peers(
            config.protocol,
            &config.security,
            universe.clone(),
            peer_listener,
            config.server_limits,
            stopped.clone(),
        )?;
        servers.spawn(async move { ("peer server", peers.await) });
        let (ready, readiness) = Readiness::pending();
        let startup = start_up(
            galaxies.clone(),
            config.galaxies.clone(),
            ready,
            stopped.clone(),
        );
        servers.spawn(async move { ("start-up preload", startup.await) });
        let router = api::router(
            &config.self_url,
            &galaxies,
            config.request_timeout,
            readiness.clone(),
            sending,
        )
        .route_layer(axum::middleware::from_fn(request_span));
        let api_stopped = async move {
            tokio::select! {
                () = until_stopped(stopped) => {}
                () = until_stopped(clients_stopped) => {}
            }
        };
        let limits = config.server_limits;
        config.security.warn_if_api_open(api_addr);
        let api_tls = match config.security.api_tls_config() {
            Some(tls) => Some(tls.acceptor().context("client API TLS")?),
            None => None,
        };
        servers.spawn(async move {
            match api_tls {
                Some(tls) => {
                    let serve = galaxycache_http::serve_tls_with_limits;
                    serve(api_listener, router, limits, tls, api_stopped).await;
                }
                None => {
                    let serve = galaxycache_http::serve_with_limits;
                    serve(api_listener, router, limits, api_stopped).await;
                }
            }
            ("client API", Ok(()))
        });
        tracing::info!(
            self_url = %config.self_url,
            peers = ?universe.peers(),
            peer_source = ?config.peers,
            protocol = %config.protocol,
            %peer_addr,
            %api_addr,
            galaxies = ?config.galaxies.iter().map(|g| &g.name).collect::<Vec<_>>(),
            "node started"
        );
        Ok(Node {
            universe,
            galaxies,
            api_addr,
            peer_addr,
            stop,
            stop_clients,
            readiness,
            servers,
            feeds: following,
            reload_peers,
        })
    }

    /// Re-read the peer file now, when the peers come from one (galaxyd does on SIGHUP);
    /// nothing otherwise.
    pub fn reload_peers(&self) {
        if let Some(reload) = &self.reload_peers {
            reload.reload();
        }
    }

    /// Where the client API listens.
    pub fn api_addr(&self) -> SocketAddr {
        self.api_addr
    }

    /// Where the peer server listens.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer_addr
    }

    /// This node's universe.
    pub fn universe(&self) -> &Universe {
        &self.universe
    }

    /// This node's galaxies.
    pub fn galaxies(&self) -> &[Galaxy] {
        &self.galaxies
    }

    /// Whether every start-up preload has ended (what `/readyz` says).
    pub fn is_ready(&self) -> bool {
        self.readiness.is_ready()
    }

    /// Resolve when the peer server or the client API ends by itself, or the start-up
    /// preload fails, none of which happens before [`Node::shutdown`] otherwise: the error
    /// says which one and why.
    ///
    /// Cancel-safe, so it can be raced against a shutdown signal; `shutdown` still works
    /// after it returned.
    pub async fn wait(&mut self) -> anyhow::Error {
        match self.servers.join_next().await {
            Some(Ok((server, Ok(())))) => anyhow::anyhow!("the {server} stopped unexpectedly"),
            Some(Ok((server, Err(e)))) => e.context(format!("the {server} failed")),
            Some(Err(e)) => anyhow::Error::new(e).context("a server task failed"),
            None => anyhow::anyhow!("no server is running"),
        }
    }

    /// Leave gracefully: stop taking client requests at once, go on answering peers for
    /// `drain` (their fetches in flight finish, and peers that follow a peer file or DNS
    /// drop this node from their rings meanwhile, instead of finding it gone), then
    /// [`shutdown`](Self::shutdown).
    pub async fn leave(self, drain: Duration) -> anyhow::Result<()> {
        let _ = self.stop_clients.send(true);
        if !drain.is_zero() {
            tracing::info!(
                ?drain,
                "client API closed; still answering peers while draining"
            );
            tokio::time::sleep(drain).await;
        }
        self.shutdown().await
    }

    /// Stop accepting on both listeners, let requests in progress finish, and return once
    /// both servers have stopped (the first failure of either, if any).
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        let mut result = Ok(());
        while let Some(joined) = self.servers.join_next().await {
            let failure = match joined {
                Ok((_, Ok(()))) => continue,
                Ok((server, Err(e))) => e.context(format!("{server} failed")),
                Err(e) => anyhow::Error::new(e).context("a server task failed"),
            };
            if result.is_ok() {
                result = Err(failure);
            }
        }
        // Each feed ends once it sees the stop signal.
        while self.feeds.join_next().await.is_some() {}
        result?;
        tracing::info!(self_url = %self.universe.self_url(), "node stopped");
        Ok(())
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // Dropping a node stops nothing: the servers run on, as spawned tasks do.
        self.servers.detach_all();
        self.feeds.detach_all();
    }
}

impl Protocol {
    /// The HTTP dialect of an HTTP protocol; `None` for gRPC.
    fn dialect(self) -> Option<Dialect> {
        match self {
            Protocol::Http => Some(Dialect::Galaxycache),
            Protocol::Groupcache => Some(Dialect::Groupcache),
            Protocol::Grpc => None,
        }
    }
}

/// The client side of the peer protocol, with this node's TLS and token when configured.
fn protocol(protocol: Protocol, security: &PeerSecurity) -> anyhow::Result<Arc<dyn FetchProtocol>> {
    let tls = security.tls_config();
    let token = security.token().context("peer token")?;
    Ok(match protocol.dialect() {
        Some(dialect) => {
            let mut builder = HttpProtocol::builder().dialect(dialect);
            if let Some(tls) = &tls {
                builder = builder.tls(tls).context("peer TLS")?;
            }
            if let Some(token) = token {
                builder = builder.token(token);
            }
            Arc::new(builder.build())
        }
        None => {
            let mut grpc = GrpcProtocol::new();
            if let Some(tls) = &tls {
                grpc = grpc.tls(tls).context("peer TLS")?;
            }
            if let Some(token) = token {
                grpc = grpc.token(token);
            }
            Arc::new(grpc)
        }
    })
}

fn build_galaxy(universe: &Universe, config: &GalaxyConfig) -> anyhow::Result<Galaxy> {
    let backend = Backend::open(
        &config.backend,
        &config.backend_options,
        universe.in_flight(),
    )
    .map_err(anyhow::Error::msg)
    .with_context(|| format!("galaxy {:?}: backend {}", config.name, config.backend))?;
    let builder = Galaxy::builder(universe, &config.name, config.cache_bytes, backend);
    config
        .tuning
        .apply(builder)
        .build()
        .with_context(|| format!("galaxy {:?}", config.name))
}

/// Preload the galaxies that have a preload query, one after the other, then say the node
/// is ready and wait for the stop signal. A stop meanwhile ends the preloads; a failed
/// preload (without `first_update_fail_ok`) is the error, and the node is never ready.
async fn start_up(
    galaxies: Vec<Galaxy>,
    configs: Vec<GalaxyConfig>,
    ready: watch::Sender<bool>,
    stopped: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let preloads = async {
        for (galaxy, config) in galaxies.iter().zip(&configs) {
            preload::start_up(galaxy, config).await?;
        }
        Ok::<_, String>(())
    };
    tokio::select! {
        done = preloads => done.map_err(anyhow::Error::msg)?,
        () = until_stopped(stopped.clone()) => return Ok(()),
    }
    ready.send_replace(true);
    if configs.iter().any(|g| g.preload.preload_query.is_some()) {
        tracing::info!("node ready: preloads done");
    }
    until_stopped(stopped).await;
    Ok(())
}

/// The change feed of each galaxy that has a notify channel, by the galaxy's index.
fn change_feeds(galaxies: &[GalaxyConfig]) -> anyhow::Result<Vec<(usize, NotifyFeed)>> {
    let mut feeds = Vec::new();
    for (index, g) in galaxies.iter().enumerate() {
        if let Some(channel) = &g.notify_channel {
            let feed = notify_feed(&g.backend, channel, &g.backend_options)
                .map_err(anyhow::Error::msg)
                .with_context(|| format!("galaxy {:?}", g.name))?;
            feeds.push((index, feed));
        }
    }
    Ok(feeds)
}

async fn until_stopped(mut stopped: watch::Receiver<bool>) {
    // An error means the sender is gone: stop then too.
    let _ = stopped.wait_for(|stop| *stop).await;
}

/// The peer server, with this node's TLS and token when configured (loaded now, so a bad
/// file fails the start), to run until `stopped`.
fn serve_peers(
    protocol: Protocol,
    security: &PeerSecurity,
    universe: Universe,
    listener: TcpListener,
    limits: ServerLimits,
    stopped: watch::Receiver<bool>,
) -> anyhow::Result<impl Future<Output = anyhow::Result<()>> + use<>> {
    let acceptor = match security.tls_config() {
        Some(tls) => Some(tls.acceptor().context("peer TLS")?),
        None => None,
    };
    let token = security.token().context("peer token")?;
    let http = protocol.dialect().map(|dialect| {
        let mut service = PeerService::new(universe.clone(), dialect);
        if let Some(acceptor) = acceptor.clone() {
            service = service.tls(acceptor);
        }
        if let Some(token) = token.clone() {
            service = service.token(token);
        }
        service
    });
    let mut grpc = GrpcServer::new(universe)
        .max_concurrent_streams(limits.h2_max_concurrent_streams)
        .max_header_list_bytes(limits.max_header_list_bytes)
        .concurrency_limit_per_connection(limits.max_requests_in_flight);
    if let Some(acceptor) = acceptor {
        grpc = grpc.tls(acceptor);
    }
    if let Some(token) = token {
        grpc = grpc.token(token);
    }
    Ok(async move {
        match http {
            Some(service) => {
                service
                    .serve_limited(listener, limits, until_stopped(stopped))
                    .await
            }
            None => grpc
                .serve(listener, until_stopped(stopped))
                .await
                .context("gRPC peer server")?,
        }
        Ok(())
    })
}

/// Serve a client request in a span of its own, `galaxyd.request` (DEBUG, target
/// `galaxyd`), with its method, its route (`/v1/galaxies/{galaxy}/keys/{*key}`: never the
/// key) and the status answered; the library's spans of a get nest inside it.
async fn request_span(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use tracing::Instrument;
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(axum::extract::MatchedPath::as_str);
    let span = tracing::debug_span!(
        target: "galaxyd",
        "galaxyd.request",
        method = %request.method(),
        route,
        status = tracing::field::Empty,
    );
    let response = next.run(request).instrument(span.clone()).await;
    span.record("status", response.status().as_u16());
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::BackendSpec;

    #[tokio::test]
    async fn wait_reports_a_server_that_ends_by_itself() {
        let peer = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let api = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let config = NodeConfig::local(
            peer.local_addr().unwrap(),
            api.local_addr().unwrap(),
            vec![GalaxyConfig::new("g", BackendSpec::Synthetic)],
        );
        let mut node = Node::start_on(&config, peer, api).await.unwrap();
        // Both servers stop as if by themselves: `wait` does not know it was asked.
        node.stop.send(true).unwrap();
        let e = node.wait().await.to_string();
        assert!(e.contains("stopped unexpectedly"), "{e}");
        node.shutdown().await.unwrap();
    }
}
