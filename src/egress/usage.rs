//! What went through a browser's egress proxy: the session's counters,
//! and the node's OpenTelemetry instruments.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use opentelemetry::KeyValue;
use opentelemetry::metrics::Counter;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::domain::egress::EgressUsage;

/// One browser's counters, read while it runs and once it is gone.
#[derive(Default)]
pub(super) struct Usage {
    sent: AtomicU64,
    received: AtomicU64,
    requests: AtomicU64,
    refused: AtomicU64,
}

impl Usage {
    pub fn sent(&self, n: u64) {
        self.sent.fetch_add(n, Ordering::Relaxed);
        instruments()
            .bytes
            .add(n, &[KeyValue::new("browserd.egress.direction", "sent")]);
    }

    pub fn received(&self, n: u64) {
        self.received.fetch_add(n, Ordering::Relaxed);
        instruments()
            .bytes
            .add(n, &[KeyValue::new("browserd.egress.direction", "received")]);
    }

    pub fn request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    pub fn refused(&self) {
        self.refused.fetch_add(1, Ordering::Relaxed);
        instruments().refused.add(1, &[]);
    }

    pub fn now(&self) -> EgressUsage {
        EgressUsage {
            bytes_sent: self.sent.load(Ordering::Relaxed),
            bytes_received: self.received.load(Ordering::Relaxed),
            requests: self.requests.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
        }
    }
}

/// The stream to a destination (or through an upstream), counted: what
/// is written to it was sent, what is read from it received.
pub(super) struct Counted<S> {
    pub inner: S,
    pub usage: Arc<Usage>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = (buf.filled().len() - before) as u64;
        if n > 0 {
            self.usage.received(n);
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &polled {
            self.usage.sent(*n as u64);
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

struct Instruments {
    bytes: Counter<u64>,
    refused: Counter<u64>,
}

fn instruments() -> &'static Instruments {
    static INSTRUMENTS: OnceLock<Instruments> = OnceLock::new();
    INSTRUMENTS.get_or_init(|| {
        let meter = opentelemetry::global::meter("browserd");
        Instruments {
            bytes: meter
                .u64_counter("browserd.egress.bytes")
                .with_description("Bytes through the egress proxies, by direction")
                .with_unit("By")
                .build(),
            refused: meter
                .u64_counter("browserd.egress.refused")
                .with_description("Connections and requests the egress policy refused")
                .with_unit("{request}")
                .build(),
        }
    })
}
