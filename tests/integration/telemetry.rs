//! Telemetry as an operator's collector receives it: the real binary
//! exporting OTLP/gRPC to a real OTLP receiver in this test.

use std::sync::{Arc, Mutex};

use browserd::pb;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{Metric, metric, number_data_point};
use opentelemetry_proto::tonic::trace::v1::{Span, span};
use tokio::sync::Notify;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status};

use crate::binary::serve_with;
use crate::support::*;

/// What the collector has received, flattened.
#[derive(Default)]
struct Collector {
    spans: Mutex<Vec<Span>>,
    metrics: Mutex<Vec<Metric>>,
    arrived: Notify,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let spans = request
            .into_inner()
            .resource_spans
            .into_iter()
            .flat_map(|r| r.scope_spans)
            .flat_map(|s| s.spans);
        self.spans.lock().unwrap().extend(spans);
        self.arrived.notify_waiters();
        Ok(Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Collector {
    async fn export(
        &self,
        request: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        let metrics = request
            .into_inner()
            .resource_metrics
            .into_iter()
            .flat_map(|r| r.scope_metrics)
            .flat_map(|s| s.metrics);
        self.metrics.lock().unwrap().extend(metrics);
        self.arrived.notify_waiters();
        Ok(Response::new(ExportMetricsServiceResponse::default()))
    }
}

impl Collector {
    /// Waits until `found` sees what it looks for in what has arrived.
    async fn until<T>(&self, what: &str, found: impl Fn(&Self) -> Option<T>) -> T {
        tokio::time::timeout(EVENT_WAIT, async {
            loop {
                let arrived = self.arrived.notified();
                if let Some(found) = found(self) {
                    return found;
                }
                arrived.await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("the collector never received {what}"))
    }

    fn span(&self, name: &str, attribute: (&str, &str)) -> Option<Span> {
        let spans = self.spans.lock().unwrap();
        spans
            .iter()
            .find(|s| {
                s.name == name && string_attr(&s.attributes, attribute.0) == Some(attribute.1)
            })
            .cloned()
    }

    /// Every data point of the gauge `name`.
    fn gauge(&self, name: &str) -> Vec<i64> {
        let metrics = self.metrics.lock().unwrap();
        metrics
            .iter()
            .filter(|m| m.name == name)
            .flat_map(|m| match &m.data {
                Some(metric::Data::Gauge(gauge)) => gauge.data_points.clone(),
                _ => Vec::new(),
            })
            .filter_map(|p| match p.value {
                Some(number_data_point::Value::AsInt(v)) => Some(v),
                _ => None,
            })
            .collect()
    }
}

/// The string attribute `key`, which must not be given twice.
fn string_attr<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a str> {
    let mut found = attributes.iter().filter(|kv| kv.key == key);
    let first = found.next();
    assert!(
        found.next().is_none(),
        "{key} is given twice: {attributes:?}"
    );
    first.and_then(|kv| match &kv.value {
        Some(AnyValue {
            value: Some(any_value::Value::StringValue(s)),
        }) => Some(s.as_str()),
        _ => None,
    })
}

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_SPAN_ID: &str = "00f067aa0ba902b7";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn spans_and_metrics_reach_an_otlp_collector() {
    let collector = Arc::new(Collector::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the collector");
    let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::from_arc(collector.clone()))
            .add_service(MetricsServiceServer::from_arc(collector.clone()))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );

    let data = tempfile::tempdir().expect("temp dir");
    let database = TestDatabase::new(Backend::Sqlite, data.path()).await;
    let mut served = serve_with(
        data.path(),
        &database.url,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            // Frequent exports, so the gauges are seen while a session lives.
            ("OTEL_METRIC_EXPORT_INTERVAL", "100"),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    )
    .await;

    let mut watch = served
        .client
        .watch_sessions(pb::WatchSessionsRequest::default())
        .await
        .expect("watch")
        .into_inner();
    let mut create = Request::new(pb::CreateSessionRequest::default());
    create.metadata_mut().insert(
        "traceparent",
        format!("00-{TRACE_ID}-{PARENT_SPAN_ID}-01")
            .parse()
            .expect("header"),
    );
    let session = served
        .client
        .create_session(create)
        .await
        .expect("create")
        .into_inner()
        .session
        .expect("session");
    let id = session.id.clone();

    collector
        .until("one live session and one subscriber", |c| {
            (c.gauge("browserd.sessions.live").contains(&1)
                && c.gauge("browserd.watch.subscribers").contains(&1))
            .then_some(())
        })
        .await;

    served
        .client
        .release_session(pb::ReleaseSessionRequest {
            session_id: id.clone(),
        })
        .await
        .expect("release");
    while let Some(response) = watch.message().await.expect("stream") {
        let event = response.event.expect("event");
        if event.to_status == pb::SessionStatus::Released as i32 {
            break;
        }
    }
    drop(watch);
    served.signal(libc::SIGTERM);
    assert!(served.exit_status().await.success());

    // The caller's traceparent is the parent of the RPC's server span...
    let rpc = collector
        .until("the CreateSession span", |c| {
            c.span(
                "browserd.v1.SessionService/CreateSession",
                ("rpc.system", "grpc"),
            )
        })
        .await;
    assert_eq!(hex(&rpc.trace_id), TRACE_ID);
    assert_eq!(hex(&rpc.parent_span_id), PARENT_SPAN_ID);
    assert_eq!(rpc.kind, span::SpanKind::Server as i32);
    // ...the handler's span names the session...
    let handler = collector
        .until("the create_session span", |c| {
            c.span("create_session", ("session.id", id.as_str()))
        })
        .await;
    assert_eq!(hex(&handler.trace_id), TRACE_ID);
    // ...and who called (an open server: no key)...
    assert_eq!(
        string_attr(&handler.attributes, "browserd.actor"),
        Some("anonymous")
    );
    // ...and the session's lifetime span, in the caller's trace, says how
    // it ended.
    let lifetime = collector
        .until("the session span", |c| {
            c.span("session", ("session.id", id.as_str()))
        })
        .await;
    assert_eq!(hex(&lifetime.trace_id), TRACE_ID);
    assert_eq!(
        string_attr(&lifetime.attributes, "session.status"),
        Some("RELEASED")
    );
    assert_eq!(
        string_attr(&lifetime.attributes, "session.end_reason"),
        Some("REQUESTED")
    );
    assert_eq!(
        string_attr(&lifetime.attributes, "session.ended_by"),
        Some("anonymous")
    );
    assert_eq!(
        string_attr(&lifetime.attributes, "session.project"),
        Some("default")
    );
    collector
        .until("the ReleaseSession span", |c| {
            c.span(
                "browserd.v1.SessionService/ReleaseSession",
                ("rpc.system", "grpc"),
            )
        })
        .await;

    // Counters are cumulative: the final export has the whole run.
    let (created, ended) = collector
        .until("the create histogram and the ended counter", |c| {
            let metrics = c.metrics.lock().unwrap();
            let last = |name: &str| metrics.iter().rev().find(|m| m.name == name).cloned();
            Some((
                last("browserd.session.create.duration")?,
                last("browserd.sessions.ended")?,
            ))
        })
        .await;
    let Some(metric::Data::Histogram(histogram)) = created.data else {
        panic!("create duration is a histogram: {created:?}");
    };
    assert_eq!(
        histogram.data_points.iter().map(|p| p.count).sum::<u64>(),
        1
    );
    assert_eq!(created.unit, "s");
    let Some(metric::Data::Sum(ended)) = ended.data else {
        panic!("sessions ended is a counter: {ended:?}");
    };
    assert!(ended.is_monotonic);
    let by_reason: Vec<(Option<&str>, i64)> = ended
        .data_points
        .iter()
        .map(|p| {
            let count = match p.value {
                Some(number_data_point::Value::AsInt(v)) => v,
                _ => panic!("an integer count: {p:?}"),
            };
            (
                string_attr(&p.attributes, "browserd.session.end_reason"),
                count,
            )
        })
        .collect();
    assert_eq!(by_reason, [(Some("REQUESTED"), 1)]);
    database.remove().await;
}
