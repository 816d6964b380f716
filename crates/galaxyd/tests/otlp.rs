//! `galaxyd serve --otlp-endpoint`: built with the `otlp` feature, a real OTLP/gRPC
//! receiver on loopback (the TraceService a collector serves) gets the spans of a node's
//! requests, among them the ones still queued when the node is stopped with SIGTERM;
//! built without it, the flag is an error that says how to build galaxyd.

mod common;

#[cfg(not(feature = "otlp"))]
#[test]
fn without_the_feature_the_endpoint_is_an_error_that_says_how_to_build() {
    // galaxyd stops before it binds anything (its default ports too).
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_galaxyd"))
        .args(["serve", "--otlp-endpoint", "http://127.0.0.1:4317"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--features otlp"), "{stderr}");
}

#[cfg(feature = "otlp")]
mod export {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use galaxyd::HttpClient;
    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
        TraceService, TraceServiceServer,
    };
    use opentelemetry_proto::tonic::collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
    };
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
    use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
    use tokio::net::TcpListener;
    use tonic::transport::server::TcpIncoming;
    use tonic::{Request, Response, Status};

    /// A collector's trace service that keeps what it is sent.
    #[derive(Clone, Default)]
    struct Receiver {
        received: Arc<Mutex<Vec<ResourceSpans>>>,
    }

    #[tonic::async_trait]
    impl TraceService for Receiver {
        async fn export(
            &self,
            request: Request<ExportTraceServiceRequest>,
        ) -> Result<Response<ExportTraceServiceResponse>, Status> {
            let spans = request.into_inner().resource_spans;
            self.received.lock().unwrap().extend(spans);
            Ok(Response::new(ExportTraceServiceResponse::default()))
        }
    }

    /// A span as received: its service's name, its own name and its attributes.
    #[derive(Debug)]
    struct Received {
        service: Option<String>,
        name: String,
        attributes: Vec<(String, String)>,
        trace_id: Vec<u8>,
        span_id: Vec<u8>,
        parent_span_id: Vec<u8>,
    }

    impl Received {
        fn attribute(&self, key: &str) -> Option<&str> {
            let mut found = self.attributes.iter().filter(|(k, _)| k == key);
            found.next().map(|(_, v)| v.as_str())
        }
    }

    fn text(value: Option<&AnyValue>) -> String {
        match value.and_then(|v| v.value.as_ref()) {
            Some(Value::StringValue(s)) => s.clone(),
            Some(Value::IntValue(n)) => n.to_string(),
            Some(Value::BoolValue(b)) => b.to_string(),
            other => format!("{other:?}"),
        }
    }

    fn pairs(attributes: &[KeyValue]) -> Vec<(String, String)> {
        let pair = |kv: &KeyValue| (kv.key.clone(), text(kv.value.as_ref()));
        attributes.iter().map(pair).collect()
    }

    impl Receiver {
        /// Serve OTLP/gRPC on a loopback port; its URL.
        async fn start(&self) -> String {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let url = format!("http://{}", listener.local_addr().unwrap());
            let service = TraceServiceServer::new(self.clone());
            let server = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(TcpIncoming::from(listener));
            tokio::spawn(server);
            url
        }

        fn spans(&self) -> Vec<Received> {
            let received = self.received.lock().unwrap();
            let mut spans = Vec::new();
            for resource_spans in received.iter() {
                let resource = resource_spans.resource.as_ref();
                let resource = pairs(resource.map_or(&[][..], |r| &r.attributes));
                let service = resource.iter().find(|(k, _)| k == "service.name");
                for span in resource_spans.scope_spans.iter().flat_map(|s| &s.spans) {
                    spans.push(Received {
                        service: service.map(|(_, v)| v.clone()),
                        name: span.name.clone(),
                        attributes: pairs(&span.attributes),
                        trace_id: span.trace_id.clone(),
                        span_id: span.span_id.clone(),
                        parent_span_id: span.parent_span_id.clone(),
                    });
                }
            }
            spans
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn spans_reach_an_otlp_receiver_and_none_is_lost_on_sigterm() {
        let receiver = Receiver::default();
        let endpoint = receiver.start().await;
        // The library's spans and galaxyd's are DEBUG; the API address is read from an
        // INFO line. The batch processor's timer is set to an hour and the node has no
        // drain: only the flush on exit can deliver the spans.
        let env = [
            ("RUST_LOG", "info,galaxycache=debug,galaxyd=debug"),
            ("OTEL_BSP_SCHEDULE_DELAY", "3600000"),
        ];
        let (mut galaxyd, api) = super::common::Galaxyd::serve_with_env(
            &env,
            &[
                "--self",
                "http://127.0.0.1:0",
                "--listen",
                "127.0.0.1:0",
                "--otlp-endpoint",
                &endpoint,
                "--drain",
                "0s",
            ],
        );
        let client = HttpClient::new(1, Duration::from_secs(10));
        let keys = ["secret-key-1", "secret-key-2", "secret-key-3"];
        for key in keys {
            let uri = format!("http://{api}/v1/galaxies/default/keys/{key}");
            let response = client.get(uri.parse().unwrap()).await.unwrap();
            assert_eq!(response.status, 200, "{key}");
        }
        assert!(
            receiver.spans().is_empty(),
            "spans are sent in batches, not one by one"
        );

        let pid = rustix::process::Pid::from_raw(galaxyd.pid().try_into().unwrap()).unwrap();
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = galaxyd.try_wait() {
                break status;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "galaxyd did not exit"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        assert!(status.success(), "{status}");

        // Sent before galaxyd exited: nothing to wait for.
        let spans = receiver.spans();
        let requests: Vec<&Received> = spans
            .iter()
            .filter(|s| s.name == "galaxyd.request")
            .collect();
        assert_eq!(requests.len(), keys.len(), "{spans:#?}");
        for span in &requests {
            assert_eq!(span.service.as_deref(), Some("galaxyd"), "{span:?}");
            assert_eq!(span.attribute("method"), Some("GET"), "{span:?}");
            assert_eq!(
                span.attribute("route"),
                Some("/v1/galaxies/{galaxy}/keys/{*key}"),
                "{span:?}"
            );
            assert_eq!(span.attribute("status"), Some("200"), "{span:?}");
        }
        // The library's spans of each get that missed, which nest in the request's.
        for name in ["galaxycache.get", "galaxycache.load"] {
            let named: Vec<&Received> = spans.iter().filter(|s| s.name == name).collect();
            assert_eq!(named.len(), keys.len(), "{name}: {spans:#?}");
            for span in named {
                assert_eq!(span.service.as_deref(), Some("galaxyd"), "{span:?}");
                assert_eq!(span.attribute("galaxy"), Some("default"), "{span:?}");
                assert_eq!(span.attribute("key_len"), Some("12"), "{span:?}");
                assert_eq!(span.attribute("outcome"), Some("ok"), "{span:?}");
            }
        }
        // A get's span is a child of its request's, in the request's trace.
        for get in spans.iter().filter(|s| s.name == "galaxycache.get") {
            let parent = requests.iter().find(|r| r.span_id == get.parent_span_id);
            let parent = parent.unwrap_or_else(|| panic!("no request span above {get:?}"));
            assert_eq!(parent.trace_id, get.trace_id);
        }
        for span in &spans {
            for (key, value) in &span.attributes {
                assert!(!value.contains("secret-key"), "a key in {key}: {span:?}");
            }
        }
    }
}
