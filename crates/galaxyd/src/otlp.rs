//! `galaxyd serve --otlp-endpoint URL`: the spans that RUST_LOG enables, exported to an
//! OpenTelemetry collector over OTLP/gRPC. Built with the `otlp` feature; without it, asking
//! for the export is an error that says how to build galaxyd with it.

#[cfg(feature = "otlp")]
pub(crate) use enabled::Export;

#[cfg(not(feature = "otlp"))]
pub(crate) use disabled::Export;

/// The service name of the exported spans unless `OTEL_SERVICE_NAME` names another.
#[cfg_attr(not(feature = "otlp"), allow(dead_code))]
const SERVICE_NAME: &str = "galaxyd";

#[cfg(feature = "otlp")]
mod enabled {
    use anyhow::Context;
    use opentelemetry::KeyValue;
    use opentelemetry::trace::TracerProvider;
    use opentelemetry_otlp::{SpanExporter, WithExportConfig};
    use opentelemetry_sdk::Resource;
    use opentelemetry_sdk::runtime::Tokio;
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;
    use tracing::Subscriber;
    use tracing_subscriber::Layer;
    use tracing_subscriber::registry::LookupSpan;

    /// Spans on their way to a collector: a subscriber layer that hands each closed span to
    /// a batch processor on the tokio runtime, which sends a batch every few seconds.
    #[derive(Debug)]
    pub(crate) struct Export {
        provider: SdkTracerProvider,
    }

    impl Export {
        /// Export to `endpoint` (an `http://` URL of an OTLP/gRPC receiver), the spans
        /// labelled with the service name and `service.instance.id` = `instance` (the
        /// node's peer URL). Call it inside the tokio runtime that serves the node: the
        /// batch processor and the gRPC channel run on it. Nothing connects yet: a
        /// collector that is down costs the spans of the batches it missed, never the node.
        pub(crate) fn start(endpoint: &str, instance: &str) -> anyhow::Result<Export> {
            let exporter = SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint)
                .build()
                .with_context(|| format!("cannot export spans to {endpoint}"))?;
            let processor = BatchSpanProcessor::builder(exporter, Tokio).build();
            let provider = SdkTracerProvider::builder()
                .with_span_processor(processor)
                .with_resource(resource(instance))
                .build();
            Ok(Export { provider })
        }

        /// The layer to add to the subscriber: every span it sees (those the filter
        /// lets through) is exported when it closes.
        pub(crate) fn layer<S>(&self) -> impl Layer<S> + use<S>
        where
            S: Subscriber + for<'a> LookupSpan<'a>,
        {
            let tracer = self.provider.tracer(super::SERVICE_NAME);
            tracing_opentelemetry::layer().with_tracer(tracer)
        }

        /// Send the spans still queued, then stop. Blocks until the last batch is sent or
        /// has failed, so call it outside the runtime's tasks while the runtime still runs.
        pub(crate) fn shutdown(self) -> anyhow::Result<()> {
            self.provider
                .shutdown()
                .context("cannot send the last spans to the collector")
        }
    }

    /// The resource the spans come from: `galaxyd` unless `OTEL_SERVICE_NAME` says
    /// otherwise (the SDK reads it and `OTEL_RESOURCE_ATTRIBUTES`), and this node.
    fn resource(instance: &str) -> Resource {
        let mut builder = Resource::builder();
        if std::env::var_os("OTEL_SERVICE_NAME").is_none_or(|name| name.is_empty()) {
            builder = builder.with_service_name(super::SERVICE_NAME);
        }
        builder
            .with_attribute(KeyValue::new("service.instance.id", instance.to_owned()))
            .build()
    }
}

#[cfg(not(feature = "otlp"))]
mod disabled {
    use tracing::Subscriber;
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::Identity;

    /// No export can exist in a galaxyd built without the `otlp` feature.
    #[derive(Debug)]
    pub(crate) enum Export {}

    impl Export {
        /// Always an error: how to build a galaxyd that exports.
        pub(crate) fn start(_endpoint: &str, _instance: &str) -> anyhow::Result<Export> {
            anyhow::bail!(
                "otlp_endpoint (--otlp-endpoint) is set, but this galaxyd was built without \
                 OpenTelemetry export: build it with `cargo build --release -p galaxyd \
                 --features otlp`"
            )
        }

        /// Never called: there is no export.
        pub(crate) fn layer<S: Subscriber>(&self) -> impl Layer<S> + use<S> {
            self.none()
        }

        fn none(&self) -> Identity {
            match *self {}
        }

        /// Never called: there is no export.
        pub(crate) fn shutdown(self) -> anyhow::Result<()> {
            match self {}
        }
    }
}
