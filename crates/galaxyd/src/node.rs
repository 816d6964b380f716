//! One node: a universe, its galaxies, a peer server in the configured protocol, and the
//! client API. The only module that knows the protocol crates.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use galaxycache_galaxy::Galaxy;
use galaxycache_grpc::{GrpcProtocol, GrpcServer};
use galaxycache_http::{Dialect, HttpProtocol, PeerService};
use galaxycache_universe::{FetchProtocol, Universe};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::api;
use crate::backend::Backend;
use crate::config::{GalaxyConfig, NodeConfig, Protocol};

/// A running node. Stop it with [`Node::shutdown`]; dropping it stops nothing.
#[derive(Debug)]
pub struct Node {
    universe: Universe,
    galaxies: Vec<Galaxy>,
    api_addr: SocketAddr,
    peer_addr: SocketAddr,
    stop: watch::Sender<bool>,
    peer_server: JoinHandle<anyhow::Result<()>>,
    api_server: JoinHandle<std::io::Result<()>>,
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
    pub async fn start_on(
        config: &NodeConfig,
        peer_listener: TcpListener,
        api_listener: TcpListener,
    ) -> anyhow::Result<Node> {
        let universe = Universe::builder(&config.self_url)
            .replicas(config.replicas)
            .max_key_len(config.max_key_len)
            .protocol(protocol(config.protocol))
            .build();
        universe
            .set_peers(&config.peers)
            .context("invalid peer list")?;
        let galaxies = config
            .galaxies
            .iter()
            .map(|g| build_galaxy(&universe, g))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let peer_addr = peer_listener.local_addr()?;
        let api_addr = api_listener.local_addr()?;
        let (stop, stopped) = watch::channel(false);
        let peer_server = tokio::spawn(serve_peers(
            config.protocol,
            universe.clone(),
            peer_listener,
            stopped.clone(),
        ));
        let router = api::router(&config.self_url, &galaxies, config.request_timeout);
        let api_server = tokio::spawn(
            axum::serve(api_listener, router)
                .with_graceful_shutdown(until_stopped(stopped))
                .into_future(),
        );
        tracing::info!(
            self_url = %config.self_url,
            peers = ?config.peers,
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
            peer_server,
            api_server,
        })
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

    /// Stop accepting on both listeners, let requests in progress finish, and return once
    /// both servers have stopped.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let _ = self.stop.send(true);
        let peer = self.peer_server.await.context("peer server task failed")?;
        let api = self.api_server.await.context("client API task failed")?;
        peer.context("peer server failed")?;
        api.context("client API failed")?;
        tracing::info!(self_url = %self.universe.self_url(), "node stopped");
        Ok(())
    }
}

fn protocol(protocol: Protocol) -> Arc<dyn FetchProtocol> {
    match protocol {
        Protocol::Http => Arc::new(
            HttpProtocol::builder()
                .dialect(Dialect::Galaxycache)
                .build(),
        ),
        Protocol::Groupcache => {
            Arc::new(HttpProtocol::builder().dialect(Dialect::Groupcache).build())
        }
        Protocol::Grpc => Arc::new(GrpcProtocol::new()),
    }
}

fn build_galaxy(universe: &Universe, config: &GalaxyConfig) -> anyhow::Result<Galaxy> {
    let backend = Backend::open(&config.backend, &config.backend_options)
        .map_err(anyhow::Error::msg)
        .with_context(|| format!("galaxy {:?}: backend {}", config.name, config.backend))?;
    let mut builder = Galaxy::builder(universe, &config.name, config.cache_bytes, backend);
    if let Some(timeout) = config.peer_timeout {
        builder = builder.peer_timeout(timeout);
    }
    if let Some(ratio) = config.hot_ratio {
        builder = builder.hot_ratio(ratio);
    }
    builder
        .build()
        .with_context(|| format!("galaxy {:?}", config.name))
}

async fn until_stopped(mut stopped: watch::Receiver<bool>) {
    // An error means the sender is gone: stop then too.
    let _ = stopped.wait_for(|stop| *stop).await;
}

async fn serve_peers(
    protocol: Protocol,
    universe: Universe,
    listener: TcpListener,
    stopped: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    match protocol {
        Protocol::Http => {
            PeerService::new(universe, Dialect::Galaxycache)
                .serve(listener, until_stopped(stopped))
                .await;
        }
        Protocol::Groupcache => {
            PeerService::new(universe, Dialect::Groupcache)
                .serve(listener, until_stopped(stopped))
                .await;
        }
        Protocol::Grpc => GrpcServer::new(universe)
            .serve(listener, until_stopped(stopped))
            .await
            .context("gRPC peer server")?,
    }
    Ok(())
}
