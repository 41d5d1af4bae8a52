//! Logs, traces and metrics: `tracing` filtered by `RUST_LOG`, and
//! OpenTelemetry OTLP export of traces and metrics, switched on by the
//! standard `OTEL_EXPORTER_OTLP_ENDPOINT` (and configured by the other
//! `OTEL_*` variables). Export is batched in the background, so a collector
//! that is down never blocks a request.

use std::io::IsTerminal;
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram, ObservableGauge};
use opentelemetry::propagation::Extractor;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// sqlx logs every statement at INFO; tungstenite every frame at TRACE.
const DEFAULT_FILTER: &str = "info,sqlx=warn,sea_orm=warn,sea_orm_migration=warn,tungstenite=warn";

pub struct Telemetry {
    exporters: Option<(SdkTracerProvider, SdkMeterProvider)>,
}

/// Installs the global subscriber, and the OTLP exporters when configured.
/// Call inside the tokio runtime (the exporters need it) and before the
/// server starts (metrics instruments bind to the provider at creation).
/// `node_id` is the resource's `service.instance.id` (unless
/// `OTEL_RESOURCE_ATTRIBUTES` names one), so every node's metrics stay
/// apart.
pub fn init(node_id: &str) -> Result<Telemetry, opentelemetry_otlp::ExporterBuildError> {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let exporters = match std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT") {
        Some(_) => {
            let mut resource = Resource::builder();
            if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
                resource = resource.with_service_name("browserd");
            }
            let attributes = std::env::var("OTEL_RESOURCE_ATTRIBUTES").unwrap_or_default();
            if !attributes.contains("service.instance.id") {
                resource = resource.with_attribute(opentelemetry::KeyValue::new(
                    "service.instance.id",
                    node_id.to_owned(),
                ));
            }
            let resource = resource.build();
            let spans = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .build()?;
            let metrics = opentelemetry_otlp::MetricExporter::builder()
                .with_tonic()
                .build()?;
            let tracer = SdkTracerProvider::builder()
                .with_batch_exporter(spans)
                .with_resource(resource.clone())
                .build();
            let meter = SdkMeterProvider::builder()
                .with_periodic_exporter(metrics)
                .with_resource(resource)
                .build();
            opentelemetry::global::set_meter_provider(meter.clone());
            Some((tracer, meter))
        }
        None => None,
    };
    // Clients' W3C `traceparent` is honoured whether or not spans leave
    // this process: logs still carry the caller's trace.
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let otel = exporters
        .as_ref()
        .map(|(tracer, _)| tracing_opentelemetry::layer().with_tracer(tracer.tracer("browserd")));
    tracing_subscriber::registry()
        .with(filter)
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(
                    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
                ),
        )
        .with(otel)
        .init();
    Ok(Telemetry { exporters })
}

impl Telemetry {
    /// Flushes spans and metrics still buffered. Bounded: the SDK gives up
    /// on a collector that does not answer.
    pub fn shutdown(self) {
        let Some((tracer, meter)) = self.exporters else {
            return;
        };
        if let Err(e) = tracer.shutdown() {
            tracing::warn!(error = %e, "trace flush failed");
        }
        if let Err(e) = meter.shutdown() {
            tracing::warn!(error = %e, "metrics flush failed");
        }
    }
}

/// The span of one gRPC call, named `<service>/<method>` as OpenTelemetry's
/// RPC conventions ask, and parented to the caller's `traceparent` if any.
pub fn rpc_span(request: &http::Request<()>) -> tracing::Span {
    let path = request.uri().path().trim_start_matches('/');
    let (service, method) = path.split_once('/').unwrap_or((path, ""));
    let span = tracing::info_span!(
        "rpc",
        otel.name = path,
        otel.kind = "server",
        rpc.system = "grpc",
        rpc.service = service,
        rpc.method = method,
    );
    let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&Headers(request.headers()))
    });
    // Fails only when no OpenTelemetry layer is installed: nothing to link.
    let _ = span.set_parent(parent);
    span
}

struct Headers<'a>(&'a http::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// The engine's metrics. Without an exporter they cost next to nothing.
pub struct Metrics {
    create_duration: Histogram<f64>,
    ended: Counter<u64>,
    _gauges: [ObservableGauge<u64>; 2],
}

impl Metrics {
    /// `live` and `subscribers` are read at each collection; `None` means
    /// the engine is gone and nothing is reported.
    pub fn new(
        live: impl Fn() -> Option<u64> + Send + Sync + 'static,
        subscribers: impl Fn() -> Option<u64> + Send + Sync + 'static,
    ) -> Self {
        let meter = opentelemetry::global::meter("browserd");
        let gauge = |name: &'static str,
                     unit: &'static str,
                     description: &'static str,
                     read: Box<dyn Fn() -> Option<u64> + Send + Sync>| {
            meter
                .u64_observable_gauge(name)
                .with_description(description)
                .with_unit(unit)
                .with_callback(move |observer| {
                    if let Some(value) = read() {
                        observer.observe(value, &[]);
                    }
                })
                .build()
        };
        Self {
            create_duration: meter
                .f64_histogram("browserd.session.create.duration")
                .with_description("CreateSession until the session is LIVE")
                .with_unit("s")
                .with_boundaries(vec![
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                    30.0,
                ])
                .build(),
            ended: meter
                .u64_counter("browserd.sessions.ended")
                .with_description("Sessions ended, by end reason")
                .with_unit("{session}")
                .build(),
            _gauges: [
                gauge(
                    "browserd.sessions.live",
                    "{session}",
                    "Sessions LIVE on this node",
                    Box::new(live),
                ),
                gauge(
                    "browserd.watch.subscribers",
                    "{stream}",
                    "Open WatchSessions streams",
                    Box::new(subscribers),
                ),
            ],
        }
    }

    /// A session went LIVE `took` after its CreateSession began; `warm`:
    /// from the warm pool.
    pub fn session_created(&self, took: Duration, warm: bool) {
        self.create_duration.record(
            took.as_secs_f64(),
            &[KeyValue::new("browserd.session.warm", warm)],
        );
    }

    pub fn session_ended(&self, end_reason: &'static str) {
        self.ended.add(
            1,
            &[KeyValue::new("browserd.session.end_reason", end_reason)],
        );
    }
}
