//! `galaxyd top`: a live table of a running cluster, given one node's client API.
//!
//! Three parts, so the numbers are tested without a terminal:
//! - gathering ([`Poller`]): every interval, the given node's `GET /v1/peers` says who is
//!   on the ring; each node's `/v1/stats`, `/v1/peers` and `/metrics` are read at once,
//!   into a [`NodeSample`];
//! - arithmetic ([`rates`]): two samples of a node and the time between them give its
//!   rates (gets/s, hit ratio by level, backend loads/s, p99);
//! - drawing (ratatui): one row per node, redrawn when new rows come, until `q`, `Esc` or
//!   Ctrl-C.
//!
//! The ring lists peer URLs, not client APIs: a node's client API is taken to be on its
//! peer URL's host, at its peer port plus the offset seen on the given node (its client
//! API port minus its peer port). That holds when every node runs with the same ports (one
//! node per host or pod, as in `deploy/`) or with ports a fixed step apart (as in
//! `benches/cluster/run.sh`); a node whose client API is elsewhere shows as down. A peer
//! entry that gives an `api` URL is taken at its word.

// Nothing a node answers may panic the dashboard: outside tests, every unwrap, expect and
// index is an error.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)
)]

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use http::Uri;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Cell, Row, Table};
use ratatui::{DefaultTerminal, Frame};
use serde::Deserialize;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};

use crate::client::HttpClient;
use crate::units::{human_size, parse_duration};

/// Flags of `galaxyd top`.
#[derive(Debug, Args)]
pub struct TopArgs {
    /// Client API base URL of one node, e.g. http://127.0.0.1:8080; the other nodes are
    /// found through its /v1/peers (each at its peer host, at the same distance between
    /// peer port and client API port as this node).
    #[arg(long, value_name = "URL")]
    pub node: String,
    /// How often to read every node and redraw.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "1s")]
    pub interval: Duration,
}

/// What one node said at one instant, summed over its galaxies.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeSample {
    /// Gets by this node's callers (`gets`).
    pub gets: u64,
    /// Gets answered from the maincache.
    pub main_hits: u64,
    /// Gets answered from the hotcache.
    pub hot_hits: u64,
    /// Gets answered NotFound from a cached miss.
    pub not_found_hits: u64,
    /// Gets that found nothing fresh in either cache.
    pub misses: u64,
    /// Keys loaded from the backend.
    pub backend_loads: u64,
    /// Bytes held by maincache and hotcache.
    pub bytes: u64,
    /// The byte budget; `None` from a node that does not say.
    pub budget: Option<u64>,
    /// Client get latency: cumulative counts by bucket upper bound in seconds, in
    /// increasing order, the last bound infinite.
    pub latency: Vec<(f64, u64)>,
    /// This node's view of each peer's circuit: `up`, `open` or `probing`, by peer URL
    /// (itself included).
    pub circuits: Vec<(String, String)>,
}

/// A node's rates over the time between two of its samples.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeRates {
    /// Gets per second.
    pub gets_per_sec: f64,
    /// Shares of the interval's gets answered by the maincache, the hotcache, a cached
    /// NotFound, and neither (misses); `None` when there was no get.
    pub levels: Option<Levels>,
    /// Backend loads per second.
    pub backend_loads_per_sec: f64,
    /// Upper bound of the latency bucket that holds the 99th percentile of the
    /// interval's client gets, in seconds (infinite past the last bound); `None` when
    /// there was no client get.
    pub p99_seconds: Option<f64>,
}

/// Hit ratio by level: each a share of the gets, 0 to 1.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Levels {
    /// Maincache hits.
    pub main: f64,
    /// Hotcache hits.
    pub hot: f64,
    /// Cached NotFound answers.
    pub not_found: f64,
    /// Misses: loaded from the owner or the backend.
    pub miss: f64,
}

/// How much a counter grew from `prev` to `cur`; a counter that went back (the node
/// restarted) grew by its whole new value.
fn grew(prev: u64, cur: u64) -> u64 {
    cur.checked_sub(prev).unwrap_or(cur)
}

/// The rates between two samples of one node taken `elapsed` apart.
pub fn rates(prev: &NodeSample, cur: &NodeSample, elapsed: Duration) -> NodeRates {
    let seconds = elapsed.as_secs_f64().max(f64::EPSILON);
    let gets = grew(prev.gets, cur.gets);
    let share = |p: u64, c: u64| grew(p, c) as f64 / gets as f64;
    let levels = (gets > 0).then(|| Levels {
        main: share(prev.main_hits, cur.main_hits),
        hot: share(prev.hot_hits, cur.hot_hits),
        not_found: share(prev.not_found_hits, cur.not_found_hits),
        miss: share(prev.misses, cur.misses),
    });
    NodeRates {
        gets_per_sec: gets as f64 / seconds,
        levels,
        backend_loads_per_sec: grew(prev.backend_loads, cur.backend_loads) as f64 / seconds,
        p99_seconds: quantile(&prev.latency, &cur.latency, 0.99),
    }
}

/// The upper bound of the bucket holding quantile `q` of the latencies recorded between
/// two cumulative histograms; `None` when none was. A bound missing from `prev` counts
/// as zero there.
fn quantile(prev: &[(f64, u64)], cur: &[(f64, u64)], q: f64) -> Option<f64> {
    let before = |le: f64| {
        prev.iter()
            .find(|(b, _)| *b == le)
            .map_or(0, |(_, count)| *count)
    };
    let counts: Vec<(f64, u64)> = cur
        .iter()
        .map(|&(le, count)| (le, grew(before(le), count)))
        .collect();
    let total = counts.last().map_or(0, |(_, n)| *n);
    if total == 0 {
        return None;
    }
    let rank = (q * total as f64).ceil() as u64;
    counts.iter().find(|(_, n)| *n >= rank).map(|(le, _)| *le)
}

/// One node as the dashboard shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeView {
    /// Its client API base URL.
    pub api: String,
    /// What it said, or why it did not.
    pub state: NodeState,
}

/// How a node answered the last time it was asked.
#[derive(Clone, Debug, PartialEq)]
pub enum NodeState {
    /// It answered.
    Up {
        /// Its rates since the sample before; `None` on its first answer.
        rates: Option<NodeRates>,
        /// Its latest sample.
        sample: NodeSample,
    },
    /// It did not answer; the error.
    Down(String),
}

/// Reads every node of a cluster, found through one node's client API.
#[derive(Debug)]
pub struct Poller {
    client: HttpClient,
    /// The client API given.
    entry: String,
    /// Client API port minus peer port, once seen on the given node.
    offset: Option<i64>,
    /// The client APIs of the nodes as last seen on a ring.
    members: Vec<String>,
    /// Each node's last sample and when it was read, by client API.
    last: HashMap<String, (Instant, NodeSample)>,
}

impl Poller {
    /// A poller of the cluster of the node whose client API is at `entry`; each request
    /// may take `timeout`.
    pub fn new(entry: &str, timeout: Duration) -> Self {
        Poller {
            client: HttpClient::new(2, timeout),
            entry: entry.trim_end_matches('/').to_owned(),
            offset: None,
            members: Vec::new(),
            last: HashMap::new(),
        }
    }

    /// Read every node once: who is on the ring (from the given node, else from any
    /// node known), then each node's numbers, all at once. A node that does not answer
    /// is [`NodeState::Down`].
    pub async fn poll(&mut self) -> Vec<NodeView> {
        self.discover().await;
        let mut reads = JoinSet::new();
        for (index, api) in self.members.iter().enumerate() {
            let (client, api) = (self.client.clone(), api.clone());
            reads.spawn(async move {
                let sample = read_node(&client, &api).await;
                (index, Instant::now(), sample)
            });
        }
        let mut answers: BTreeMap<usize, (Instant, Result<NodeSample, String>)> = BTreeMap::new();
        while let Some(joined) = reads.join_next().await {
            if let Ok((index, at, sample)) = joined {
                answers.insert(index, (at, sample));
            }
        }
        let mut views = Vec::with_capacity(self.members.len());
        for (index, api) in self.members.iter().enumerate() {
            let state = match answers.remove(&index) {
                Some((at, Ok(sample))) => {
                    let rates = self.last.get(api).map(|(then, prev)| {
                        rates(prev, &sample, at.saturating_duration_since(*then))
                    });
                    self.last.insert(api.clone(), (at, sample.clone()));
                    NodeState::Up { rates, sample }
                }
                Some((_, Err(e))) => {
                    self.last.remove(api);
                    NodeState::Down(e)
                }
                None => NodeState::Down("the read of this node failed".to_owned()),
            };
            views.push(NodeView {
                api: api.clone(),
                state,
            });
        }
        views
    }

    /// Refresh the members from the given node's ring; when it does not answer, from the
    /// first known node that does; when none does, keep them (or, knowing none, the given
    /// node alone, so it shows as down).
    async fn discover(&mut self) {
        let mut asked = vec![self.entry.clone()];
        asked.extend(
            self.members
                .iter()
                .filter(|api| **api != self.entry)
                .cloned(),
        );
        for api in asked {
            let Ok(ring) = read_peers(&self.client, &api).await else {
                continue;
            };
            if api == self.entry {
                // Both URLs parse (the entry was checked, the node's own URL is
                // normalised); were one not to, only the given node would show.
                self.offset = port_offset(&self.entry, &ring.self_url).ok();
            }
            let members: Vec<String> = ring
                .peers
                .iter()
                .filter_map(|p| self.member(p, &api, &ring.self_url))
                .collect();
            if !members.is_empty() {
                self.members = members;
                return;
            }
        }
        if self.members.is_empty() {
            self.members = vec![self.entry.clone()];
        }
    }

    /// The client API of `peer`, seen on the ring of the node whose client API is
    /// `asked` and whose peer URL is `asked_peer`: the one its entry gives, else the one
    /// the port offset gives.
    fn member(&self, peer: &PeerBody, asked: &str, asked_peer: &str) -> Option<String> {
        if peer.url == asked_peer {
            return Some(asked.to_owned());
        }
        if let Some(api) = &peer.api {
            return Some(api.trim_end_matches('/').to_owned());
        }
        client_api(&peer.url, &self.entry, self.offset?).ok()
    }
}

/// The scheme (`http`), host and port of `url`.
fn host_port(url: &str) -> Result<(String, String, u16), String> {
    let uri: Uri = url.parse().map_err(|e| format!("{url:?}: {e}"))?;
    let scheme = uri.scheme_str().unwrap_or("http").to_owned();
    let authority = uri
        .authority()
        .ok_or_else(|| format!("{url:?} has no host"))?;
    let port = authority.port_u16().unwrap_or(match scheme.as_str() {
        "https" => 443,
        _ => 80,
    });
    Ok((scheme, authority.host().to_owned(), port))
}

/// The client API port of the node at `entry` minus the port of its peer URL `peer`.
fn port_offset(entry: &str, peer: &str) -> Result<i64, String> {
    let (_, _, api_port) = host_port(entry)?;
    let (_, _, peer_port) = host_port(peer)?;
    Ok(i64::from(api_port) - i64::from(peer_port))
}

/// The client API of the node with peer URL `peer`: its peer host, with the scheme of
/// `entry`, at its peer port plus `offset`.
fn client_api(peer: &str, entry: &str, offset: i64) -> Result<String, String> {
    let (scheme, _, _) = host_port(entry)?;
    let (_, host, port) = host_port(peer)?;
    let port = u16::try_from(i64::from(port) + offset)
        .map_err(|_| format!("peer {peer}: port {port} + {offset} is no port"))?;
    Ok(format!("{scheme}://{host}:{port}"))
}

/// `GET /v1/peers`, as much of it as top reads.
#[derive(Debug, Deserialize)]
struct PeersBody {
    #[serde(rename = "self")]
    self_url: String,
    peers: Vec<PeerBody>,
}

#[derive(Debug, Deserialize)]
struct PeerBody {
    url: String,
    state: String,
    /// The peer's client API, should a node ever say it (as `galaxyd bench` reads it too);
    /// none says it today.
    #[serde(default)]
    api: Option<String>,
}

/// `GET /v1/stats`, as much of it as top reads.
#[derive(Debug, Deserialize)]
struct StatsBody {
    galaxies: BTreeMap<String, BTreeMap<String, u64>>,
}

/// GET `api` + `path`: the body of a 200, else an error that names the URL.
async fn fetch(client: &HttpClient, api: &str, path: &str) -> Result<bytes::Bytes, String> {
    let url = format!("{api}{path}");
    let uri: Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
    let r = client.get(uri).await?;
    if r.status != http::StatusCode::OK {
        return Err(format!("GET {url}: status {}", r.status));
    }
    Ok(r.body)
}

async fn read_peers(client: &HttpClient, api: &str) -> Result<PeersBody, String> {
    let body = fetch(client, api, "/v1/peers").await?;
    serde_json::from_slice(&body).map_err(|e| format!("{api}/v1/peers: {e}"))
}

/// One node's sample: its stats, its peers' circuits and its client latency.
async fn read_node(client: &HttpClient, api: &str) -> Result<NodeSample, String> {
    let (stats, peers, metrics) = tokio::join!(
        fetch(client, api, "/v1/stats"),
        read_peers(client, api),
        fetch(client, api, "/metrics"),
    );
    let stats: StatsBody =
        serde_json::from_slice(&stats?).map_err(|e| format!("{api}/v1/stats: {e}"))?;
    let mut sample = sample_of(&stats);
    sample.circuits = peers?.peers.into_iter().map(|p| (p.url, p.state)).collect();
    sample.latency = client_latency(&String::from_utf8_lossy(&metrics?));
    Ok(sample)
}

/// A sample's counters and bytes from `/v1/stats`, summed over the galaxies.
fn sample_of(stats: &StatsBody) -> NodeSample {
    let sum = |stat: &str| -> u64 {
        stats
            .galaxies
            .values()
            .map(|g| g.get(stat).copied().unwrap_or(0))
            .fold(0, u64::saturating_add)
    };
    let budget_known = stats
        .galaxies
        .values()
        .all(|g| g.contains_key("budget_bytes"));
    NodeSample {
        gets: sum("gets"),
        main_hits: sum("main_hits"),
        hot_hits: sum("hot_hits"),
        not_found_hits: sum("not_found_hits"),
        misses: sum("misses"),
        backend_loads: sum("backend_loads"),
        bytes: sum("main_bytes").saturating_add(sum("hot_bytes")),
        budget: budget_known.then(|| sum("budget_bytes")),
        ..NodeSample::default()
    }
}

/// The histogram of client gets in a `/metrics` text, summed over the galaxies:
/// cumulative counts by bound, in increasing order.
fn client_latency(metrics: &str) -> Vec<(f64, u64)> {
    const FAMILY: &str = "galaxycache_client_get_duration_seconds_bucket{";
    let mut buckets: BTreeMap<u64, (f64, u64)> = BTreeMap::new();
    for line in metrics.lines() {
        let Some(rest) = line.strip_prefix(FAMILY) else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let le = labels
            .split(',')
            .find_map(|l| l.strip_prefix("le=\""))
            .and_then(|l| l.strip_suffix('"'))
            .and_then(|l| match l {
                "+Inf" => Some(f64::INFINITY),
                _ => l.parse::<f64>().ok(),
            });
        let (Some(le), Ok(count)) = (le, value.trim().parse::<u64>()) else {
            continue;
        };
        // f64's bits order like the numbers for non-negative bounds.
        let entry = buckets.entry(le.to_bits()).or_insert((le, 0));
        entry.1 = entry.1.saturating_add(count);
    }
    buckets.into_values().collect()
}

/// `galaxyd top`: draw the cluster of `args.node` every `args.interval` until `q`, `Esc`
/// or Ctrl-C; the terminal is restored on the way out, whatever the outcome. The
/// gathering runs on `runtime`.
pub fn run_top(runtime: &tokio::runtime::Runtime, args: &TopArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        !args.interval.is_zero(),
        "--interval must be longer than zero"
    );
    let entry = args.node.trim_end_matches('/').to_owned();
    host_port(&entry).map_err(|e| anyhow::anyhow!("--node: {e}"))?;
    let (tx, rx) = watch::channel(Vec::new());
    let gathering = runtime.spawn(gather(entry.clone(), args.interval, tx));
    let mut terminal = ratatui::try_init().context("cannot take over the terminal")?;
    let shown = show(&mut terminal, rx, &entry, args.interval);
    let restored = ratatui::try_restore().context("cannot restore the terminal");
    gathering.abort();
    shown.and(restored)
}

/// Poll the cluster every `interval` and send each round's rows.
async fn gather(entry: String, interval: Duration, rows: watch::Sender<Vec<NodeView>>) {
    let mut poller = Poller::new(&entry, interval);
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let views = poller.poll().await;
        if rows.send(views).is_err() {
            return;
        }
    }
}

/// Redraw when new rows come or the terminal is resized; return on `q`, `Esc` or
/// Ctrl-C.
fn show(
    terminal: &mut DefaultTerminal,
    mut rows: watch::Receiver<Vec<NodeView>>,
    entry: &str,
    interval: Duration,
) -> anyhow::Result<()> {
    let mut redraw = true;
    loop {
        if redraw || rows.has_changed().unwrap_or(false) {
            let views = rows.borrow_and_update().clone();
            terminal
                .draw(|frame| draw(frame, &views, entry, interval))
                .context("cannot draw")?;
            redraw = false;
        }
        // Wait for a key at most this long, then look for new rows.
        if event::poll(Duration::from_millis(100)).context("cannot read the terminal")? {
            match event::read().context("cannot read the terminal")? {
                Event::Key(key) if quits(key) => return Ok(()),
                Event::Resize(..) => redraw = true,
                _ => {}
            }
        }
    }
}

/// `q`, `Esc` or Ctrl-C, pressed.
fn quits(key: KeyEvent) -> bool {
    key.kind == KeyEventKind::Press
        && match key.code {
            KeyCode::Char('q') | KeyCode::Esc => true,
            KeyCode::Char('c') => key.modifiers.contains(KeyModifiers::CONTROL),
            _ => false,
        }
}

const HEADER: [&str; 10] = [
    "node",
    "req/s",
    "main",
    "hot",
    "404",
    "miss",
    "loads/s",
    "p99<=",
    "peers",
    "bytes/budget",
];

fn draw(frame: &mut Frame, views: &[NodeView], entry: &str, interval: Duration) {
    let [title, table, help] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(1),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    let up = views
        .iter()
        .filter(|v| matches!(v.state, NodeState::Up { .. }))
        .count();
    let heading = format!(
        "galaxyd top: {} nodes ({up} up) found through {entry}, every {interval:?}",
        views.len()
    );
    frame.render_widget(Line::from(heading), title);
    let node_width = views.iter().map(|v| v.api.len()).max().unwrap_or(0).max(4);
    let widths = [
        Constraint::Length(u16::try_from(node_width).unwrap_or(u16::MAX)),
        Constraint::Length(9),
        Constraint::Length(6),
        Constraint::Length(6),
        Constraint::Length(6),
        Constraint::Length(6),
        Constraint::Length(8),
        Constraint::Length(8),
        Constraint::Length(16),
        // The last column takes the rest: a down node's error is long.
        Constraint::Min(24),
    ];
    let rows = views.iter().map(|v| Row::new(cells(v)));
    let table_widget = Table::new(rows, widths)
        .header(Row::new(HEADER).style(Style::new().add_modifier(Modifier::BOLD)))
        .column_spacing(1);
    frame.render_widget(table_widget, table);
    let keys = "main/hot/404/miss: share of gets by level; p99: bucket bound; q quits";
    frame.render_widget(Line::from(keys), help);
}

/// A node's row, as text.
fn cells(view: &NodeView) -> Vec<Cell<'static>> {
    let mut row = vec![view.api.clone()];
    match &view.state {
        NodeState::Down(error) => {
            row.push("down".to_owned());
            row.extend(std::iter::repeat_n(String::new(), HEADER.len() - 3));
            row.push(error.clone());
        }
        NodeState::Up { rates, sample } => {
            let percent = |share: f64| format!("{:.0}%", share * 100.0);
            match rates {
                Some(r) => {
                    row.push(format!("{:.1}", r.gets_per_sec));
                    match r.levels {
                        Some(l) => row.extend([l.main, l.hot, l.not_found, l.miss].map(percent)),
                        None => row.extend(std::iter::repeat_n("-".to_owned(), 4)),
                    }
                    row.push(format!("{:.1}", r.backend_loads_per_sec));
                    row.push(r.p99_seconds.map_or("-".to_owned(), seconds));
                }
                None => row.extend(std::iter::repeat_n("..".to_owned(), 7)),
            }
            row.push(circuits(&sample.circuits));
            row.push(match sample.budget {
                Some(budget) if budget > 0 => format!(
                    "{} / {} {}",
                    human_size(sample.bytes),
                    human_size(budget),
                    percent(sample.bytes as f64 / budget as f64)
                ),
                _ => human_size(sample.bytes),
            });
        }
    }
    row.into_iter().map(Cell::from).collect()
}

/// A latency bound for people: `2.5ms`, `1s`, `>10s`.
fn seconds(bound: f64) -> String {
    if bound.is_infinite() {
        ">10s".to_owned()
    } else if bound < 1.0 {
        format!("{}ms", bound * 1000.0)
    } else {
        format!("{bound}s")
    }
}

/// Circuits counted by state, e.g. `2 up 1 open`.
fn circuits(peers: &[(String, String)]) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, state) in peers {
        *counts.entry(state.as_str()).or_default() += 1;
    }
    let mut text = String::new();
    // `up` first: the usual case reads at a glance.
    let up = counts.remove("up");
    for (state, n) in up.map(|n| ("up", n)).into_iter().chain(counts) {
        if !text.is_empty() {
            text.push(' ');
        }
        let _ = write!(text, "{n} {state}");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(gets: u64, main: u64, hot: u64, nf: u64, miss: u64, loads: u64) -> NodeSample {
        NodeSample {
            gets,
            main_hits: main,
            hot_hits: hot,
            not_found_hits: nf,
            misses: miss,
            backend_loads: loads,
            ..NodeSample::default()
        }
    }

    #[test]
    fn rates_are_counter_deltas_over_the_time_between_samples() {
        let prev = sample(1_000, 600, 100, 50, 250, 200);
        let cur = sample(1_400, 800, 200, 50, 350, 260);
        let r = rates(&prev, &cur, Duration::from_millis(2_000));
        assert_eq!(r.gets_per_sec, 200.0);
        assert_eq!(r.backend_loads_per_sec, 30.0);
        let l = r.levels.unwrap();
        assert_eq!((l.main, l.hot, l.not_found, l.miss), (0.5, 0.25, 0.0, 0.25));
        assert_eq!(r.p99_seconds, None);
    }

    #[test]
    fn no_gets_is_no_ratio_and_a_restart_counts_from_zero() {
        let s = sample(10, 5, 0, 0, 5, 5);
        let r = rates(&s, &s, Duration::from_secs(1));
        assert_eq!((r.gets_per_sec, r.levels), (0.0, None));
        // The node restarted: its counters went back, so all it counts now is new.
        let r = rates(
            &sample(500, 400, 0, 0, 100, 100),
            &s,
            Duration::from_secs(1),
        );
        assert_eq!(r.gets_per_sec, 10.0);
        assert_eq!(r.levels.unwrap().main, 0.5);
    }

    #[test]
    fn p99_is_the_bucket_of_the_intervals_99th_percentile() {
        let prev = vec![(0.001, 1_000), (0.01, 1_000), (f64::INFINITY, 1_000)];
        // 100 new gets: 98 under 1 ms, one under 10 ms, one past: the 99th is under 10 ms.
        let cur = vec![(0.001, 1_098), (0.01, 1_099), (f64::INFINITY, 1_100)];
        assert_eq!(quantile(&prev, &cur, 0.99), Some(0.01));
        assert_eq!(quantile(&prev, &cur, 0.5), Some(0.001));
        assert_eq!(quantile(&prev, &cur, 1.0), Some(f64::INFINITY));
        assert_eq!(quantile(&cur, &cur, 0.99), None);
        // The first sample: everything so far is the interval.
        assert_eq!(quantile(&[], &prev, 0.99), Some(0.001));
    }

    #[test]
    fn latency_buckets_are_read_from_metrics_and_summed_over_galaxies() {
        let text = "\
# TYPE galaxycache_client_get_duration_seconds histogram
galaxycache_client_get_duration_seconds_bucket{galaxy=\"a\",le=\"0.001\"} 3
galaxycache_client_get_duration_seconds_bucket{galaxy=\"a\",le=\"+Inf\"} 5
galaxycache_client_get_duration_seconds_bucket{galaxy=\"b\",le=\"0.001\"} 1
galaxycache_client_get_duration_seconds_bucket{galaxy=\"b\",le=\"+Inf\"} 1
galaxycache_client_get_duration_seconds_sum{galaxy=\"a\"} 0.5
galaxycache_gets_total{galaxy=\"a\"} 9
";
        assert_eq!(client_latency(text), vec![(0.001, 4), (f64::INFINITY, 6)]);
        assert!(client_latency("").is_empty());
    }

    #[test]
    fn stats_are_summed_over_galaxies_with_the_budget() {
        let body = r#"{"node": "http://n:9001", "peers": [], "galaxies": {
            "a": {"gets": 10, "main_hits": 4, "main_bytes": 100, "hot_bytes": 20, "budget_bytes": 1000},
            "b": {"gets": 5, "misses": 5, "main_bytes": 1, "budget_bytes": 24}}}"#;
        let s = sample_of(&serde_json::from_str(body).unwrap());
        assert_eq!((s.gets, s.main_hits, s.misses), (15, 4, 5));
        assert_eq!((s.bytes, s.budget), (121, Some(1024)));
        // An older node that gives no budget: bytes alone.
        let body = r#"{"galaxies": {"a": {"gets": 1}}}"#;
        assert_eq!(sample_of(&serde_json::from_str(body).unwrap()).budget, None);
    }

    #[test]
    fn a_peers_client_api_is_its_host_at_the_given_nodes_port_offset() {
        let offset = port_offset("http://127.0.0.1:8080", "http://127.0.0.1:9001").unwrap();
        assert_eq!(offset, -921);
        assert_eq!(
            client_api("http://10.0.0.7:9001", "http://127.0.0.1:8080", offset).unwrap(),
            "http://10.0.0.7:8080"
        );
        assert_eq!(
            client_api("http://[::1]:9003", "http://[::1]:8080", offset).unwrap(),
            "http://[::1]:8082"
        );
        assert!(client_api("http://h:100", "http://h:8080", offset).is_err());
        assert!(port_offset("no url at all", "http://h:1").is_err());
    }

    #[test]
    fn circuits_count_states_up_first() {
        let peers = |states: &[&str]| -> Vec<(String, String)> {
            states
                .iter()
                .map(|s| ("http://p".to_owned(), (*s).to_owned()))
                .collect()
        };
        assert_eq!(circuits(&peers(&["up", "open", "up"])), "2 up 1 open");
        assert_eq!(circuits(&peers(&["probing"])), "1 probing");
        assert_eq!(circuits(&[]), "");
    }

    #[test]
    fn a_down_node_fills_every_column_and_says_why() {
        let view = NodeView {
            api: "http://n:8080".to_owned(),
            state: NodeState::Down("connection refused".to_owned()),
        };
        let row = cells(&view);
        assert_eq!(row.len(), HEADER.len());
    }

    #[test]
    fn q_esc_and_ctrl_c_quit_other_keys_do_not() {
        let key = |code, modifiers| KeyEvent::new(code, modifiers);
        assert!(quits(key(KeyCode::Char('q'), KeyModifiers::NONE)));
        assert!(quits(key(KeyCode::Esc, KeyModifiers::NONE)));
        assert!(quits(key(KeyCode::Char('c'), KeyModifiers::CONTROL)));
        assert!(!quits(key(KeyCode::Char('c'), KeyModifiers::NONE)));
        assert!(!quits(key(KeyCode::Char('x'), KeyModifiers::NONE)));
    }
}
