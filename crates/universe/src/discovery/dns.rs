//! The peers behind a DNS name: its A and AAAA records.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::config::{
    ConnectionConfig, LookupIpStrategy, NameServerConfig, ResolveHosts, ResolverConfig,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::{Resolver, ResolverBuilder, TokioResolver};
use tokio::time::{Interval, MissedTickBehavior};

use crate::{BoxFuture, Discovery, Error, ErrorKind};

/// How often a [`DnsPeers`] resolves its name unless told otherwise: every 5 s.
pub const DEFAULT_DNS_INTERVAL: Duration = Duration::from_secs(5);

/// The peers behind a DNS name, e.g. a Kubernetes headless service
/// (`cache.default.svc.cluster.local`), whose A and AAAA records are the pods' addresses.
///
/// Each address becomes the peer URL `{scheme}://{ip}:{port}` (an IPv6 address in
/// brackets), sorted. The name is resolved when first asked, then every
/// [`interval`](Self::interval), past any cached answer; a list is yielded only when it
/// changed. A failed lookup, or one without addresses, is an error item: the ring keeps
/// its last good list. It never ends.
///
/// This node's own URL must be spelled as DNS spells it (its IP and the peer port, e.g.
/// `http://$(POD_IP):9001`), or it would be on its ring twice: no reverse lookups are made.
pub struct DnsPeers {
    name: String,
    port: u16,
    scheme: String,
    interval: Duration,
    resolver: TokioResolver,
    ticker: Option<Interval>,
    last: Option<Vec<String>>,
}

impl fmt::Debug for DnsPeers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DnsPeers")
            .field("name", &self.name)
            .field("port", &self.port)
            .field("scheme", &self.scheme)
            .field("interval", &self.interval)
            .field("last", &self.last)
            .finish_non_exhaustive()
    }
}

impl DnsPeers {
    /// The peers behind `name`, at `port` each. `nameserver`: ask only the DNS server at
    /// that address (UDP, then TCP), without the hosts file; `None`: the system's
    /// configuration (`/etc/resolv.conf`, and its search domains for a name without a
    /// final dot). A [`ErrorKind::Config`] error when that configuration cannot be read.
    pub fn new(
        name: impl Into<String>,
        port: u16,
        nameserver: Option<SocketAddr>,
    ) -> Result<Self, Error> {
        let mut builder = match nameserver {
            Some(addr) => only(addr),
            None => Resolver::builder_tokio().map_err(|e| {
                Error::new(
                    ErrorKind::Config,
                    format!("cannot read the system's DNS configuration: {e}"),
                )
            })?,
        };
        builder.options_mut().ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
        let resolver = builder.build().map_err(|e| {
            Error::new(
                ErrorKind::Config,
                format!("cannot build a DNS resolver: {e}"),
            )
        })?;
        Ok(DnsPeers {
            name: name.into(),
            port,
            scheme: "http".to_owned(),
            interval: DEFAULT_DNS_INTERVAL,
            resolver,
            ticker: None,
            last: None,
        })
    }

    /// The scheme of the peer URLs, as the peer protocol wants it. Default: `http`.
    pub fn scheme(mut self, scheme: impl Into<String>) -> Self {
        self.scheme = scheme.into();
        self
    }

    /// How often to resolve the name. Default: [`DEFAULT_DNS_INTERVAL`], 5 s; at least
    /// 1 ms.
    pub fn interval(mut self, every: Duration) -> Self {
        self.interval = every.max(Duration::from_millis(1));
        self
    }

    /// The next list that differs from the last one yielded, or the next failure.
    async fn next_change(&mut self) -> Result<Vec<String>, Error> {
        let every = self.interval;
        let ticker = self.ticker.get_or_insert_with(|| {
            let mut ticker = tokio::time::interval(every);
            ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
            ticker
        });
        loop {
            ticker.tick().await;
            let peers = lookup(&self.resolver, &self.name, &self.scheme, self.port).await?;
            if self.last.as_ref() != Some(&peers) {
                self.last = Some(peers.clone());
                return Ok(peers);
            }
        }
    }
}

impl Discovery for DnsPeers {
    fn next(&mut self) -> BoxFuture<'_, Option<Result<Vec<String>, Error>>> {
        Box::pin(async move { Some(self.next_change().await) })
    }
}

/// A resolver that asks the server at `addr` alone.
fn only(addr: SocketAddr) -> ResolverBuilder<TokioRuntimeProvider> {
    let connections = [ConnectionConfig::udp(), ConnectionConfig::tcp()].map(|mut c| {
        c.port = addr.port();
        c
    });
    let server = NameServerConfig::new(addr.ip(), true, connections.into());
    let config = ResolverConfig::from_name_servers(vec![server]);
    let mut builder = Resolver::builder_with_config(config, TokioRuntimeProvider::default());
    builder.options_mut().use_hosts_file = ResolveHosts::Never;
    builder
}

/// The peer URLs of `name`'s addresses, sorted; an error when there are none.
async fn lookup(
    resolver: &TokioResolver,
    name: &str,
    scheme: &str,
    port: u16,
) -> Result<Vec<String>, Error> {
    let failed = |why: String| {
        Error::new(
            ErrorKind::Unavailable,
            format!("DNS lookup of {name:?}: {why}"),
        )
    };
    resolver.clear_cache();
    let found = resolver
        .lookup_ip(name)
        .await
        .map_err(|e| failed(e.to_string()))?;
    let mut ips: Vec<IpAddr> = found.iter().collect();
    if ips.is_empty() {
        return Err(failed("no addresses".to_owned()));
    }
    ips.sort_unstable();
    ips.dedup();
    Ok(ips
        .into_iter()
        .map(|ip| format!("{scheme}://{}", SocketAddr::new(ip, port)))
        .collect())
}

#[cfg(test)]
mod tests;
