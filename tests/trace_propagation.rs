//! W3C trace context across nodes, over real loopback sockets: a get made on node 0 within
//! a trace context fetches its key from node 1, and node 1's serve span (and the backend
//! load under it) records the same trace id; over HTTP and over gRPC. Spans carry the key's
//! length, never the key, and a hit makes no span.
#![cfg(all(feature = "http", feature = "grpc"))]

#[path = "support/loopback.rs"]
mod loopback;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex};

use galaxycache::grpc::{GrpcProtocol, GrpcServer};
use galaxycache::http::{Dialect, HttpProtocol, PeerService};
use galaxycache::universe::{FetchProtocol, TraceContext, with_trace};
use galaxycache::{Error, Galaxy, Universe, Value};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::{Layer, Registry};

/// A span as the test layer saw it: its name and its fields, as text.
#[derive(Clone, Debug)]
struct SeenSpan {
    name: &'static str,
    fields: BTreeMap<String, String>,
}

impl SeenSpan {
    fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }
}

/// Records every span's fields, as they are set and recorded.
#[derive(Clone, Default)]
struct SpanLog {
    open: Arc<Mutex<HashMap<u64, SeenSpan>>>,
    closed: Arc<Mutex<Vec<SeenSpan>>>,
}

impl SpanLog {
    fn closed(&self, name: &str) -> Vec<SeenSpan> {
        let closed = self.closed.lock().unwrap();
        closed.iter().filter(|s| s.name == name).cloned().collect()
    }
}

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

impl<S: tracing::Subscriber> Layer<S> for SpanLog {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, _: Context<'_, S>) {
        let mut span = SeenSpan {
            name: attrs.metadata().name(),
            fields: BTreeMap::new(),
        };
        attrs.record(&mut Fields(&mut span.fields));
        self.open.lock().unwrap().insert(id.into_u64(), span);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, _: Context<'_, S>) {
        if let Some(span) = self.open.lock().unwrap().get_mut(&id.into_u64()) {
            values.record(&mut Fields(&mut span.fields));
        }
    }

    fn on_close(&self, id: Id, _: Context<'_, S>) {
        if let Some(span) = self.open.lock().unwrap().remove(&id.into_u64()) {
            self.closed.lock().unwrap().push(span);
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Wire {
    Http,
    Grpc,
}

/// Two nodes speaking `wire` on loopback: node 0's galaxy, and node 1's URL.
async fn two_nodes(wire: Wire) -> (Galaxy, Galaxy, String) {
    let (listeners, urls) = loopback::listeners(2).await;
    let mut galaxies = Vec::new();
    for (listener, url) in listeners.into_iter().zip(&urls) {
        let protocol: Arc<dyn FetchProtocol> = match wire {
            Wire::Http => Arc::new(HttpProtocol::builder().build()),
            Wire::Grpc => Arc::new(GrpcProtocol::new()),
        };
        let universe = Universe::builder(url).protocol(protocol).build();
        universe.set_peers(&urls).unwrap();
        let backend = |key: String| async move { Ok::<_, Error>(Some(Value::new(key))) };
        let galaxy = Galaxy::builder(&universe, "g", 1 << 20, backend)
            .build()
            .unwrap();
        match wire {
            Wire::Http => {
                let service = PeerService::new(universe, Dialect::Galaxycache);
                tokio::spawn(service.serve(listener, std::future::pending()));
            }
            Wire::Grpc => {
                let server = GrpcServer::new(universe);
                tokio::spawn(server.serve(listener, std::future::pending()));
            }
        }
        galaxies.push(galaxy);
    }
    let node1 = galaxies.pop().unwrap();
    let node0 = galaxies.pop().unwrap();
    (node0, node1, urls[1].clone())
}

async fn a_trace_id_sent_to_node_0_arrives_on_node_1s_serve_span(wire: Wire) {
    let log = SpanLog::default();
    // A current-thread runtime: every task, servers' included, runs on this thread.
    let _guard = tracing::subscriber::set_default(Registry::default().with(log.clone()));
    let (node0, _node1, owner) = two_nodes(wire).await;
    let key = (0..)
        .map(|i| format!("secret-key-{i}"))
        .find(|k| node0.universe().owner_url(k) == owner)
        .unwrap();
    let context: TraceContext = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        .parse()
        .unwrap();
    let trace_id = "0af7651916cd43dd8448eb211c80319c";

    let value = with_trace(Some(context), node0.get(&key)).await.unwrap();
    assert_eq!(value.bytes().as_ref(), key.as_bytes());

    let serves = log.closed("galaxycache.serve");
    assert_eq!(serves.len(), 1, "{wire:?}: {serves:?}");
    let serve = &serves[0];
    assert_eq!(
        serve.field("trace_id"),
        Some(trace_id),
        "{wire:?}: {serve:?}"
    );
    assert_eq!(serve.field("galaxy"), Some("g"));
    assert_eq!(serve.field("key_len"), Some(key.len().to_string().as_str()));
    assert_eq!(serve.field("outcome"), Some("ok"));
    // The owner's backend load continues the trace too.
    let loads = log.closed("galaxycache.load");
    assert_eq!(loads.len(), 1, "{wire:?}: {loads:?}");
    assert_eq!(loads[0].field("trace_id"), Some(trace_id));
    // On node 0: the get (a miss) and its fetch, naming the peer.
    let fetch = &log.closed("galaxycache.fetch")[0];
    assert_eq!(fetch.field("trace_id"), Some(trace_id));
    assert_eq!(fetch.field("peer"), Some(owner.as_str()));
    assert_eq!(fetch.field("outcome"), Some("ok"));
    let gets = log.closed("galaxycache.get");
    assert_eq!(gets.len(), 1);
    assert_eq!(gets[0].field("trace_id"), Some(trace_id));
    assert_eq!(gets[0].field("outcome"), Some("ok"));

    // A get without a context sends none: the serve span has no trace id.
    let other = (0..)
        .map(|i| format!("other-key-{i}"))
        .find(|k| node0.universe().owner_url(k) == owner)
        .unwrap();
    node0.get(&other).await.unwrap();
    let serves = log.closed("galaxycache.serve");
    assert_eq!(serves.len(), 2);
    assert_eq!(
        serves[1].field("trace_id"),
        None,
        "{wire:?}: {:?}",
        serves[1]
    );

    // A hit makes no span.
    let mine = (0..)
        .map(|i| format!("mine-{i}"))
        .find(|k| node0.universe().owner_url(k) != owner)
        .unwrap();
    node0.get(&mine).await.unwrap();
    let spans = log.closed.lock().unwrap().len();
    with_trace(Some(context), node0.get(&mine)).await.unwrap();
    assert_eq!(log.closed.lock().unwrap().len(), spans, "a hit made a span");

    // No span holds a key.
    for span in log.closed.lock().unwrap().iter() {
        for value in span.fields.values() {
            assert!(!value.contains("key-"), "{span:?}");
        }
    }
}

#[tokio::test]
async fn over_http() {
    a_trace_id_sent_to_node_0_arrives_on_node_1s_serve_span(Wire::Http).await;
}

#[tokio::test]
async fn over_grpc() {
    a_trace_id_sent_to_node_0_arrives_on_node_1s_serve_span(Wire::Grpc).await;
}
