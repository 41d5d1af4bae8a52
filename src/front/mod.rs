//! The one HTTP listener in front of the relay and the console: accepting
//! (with a total connection cap and a backoff on failed accepts), TLS,
//! HTTP/1.1 by hyper within the handshake timeout, and routing by path:
//! `/console…` to the console's router, everything else (`/devtools/…`,
//! its `/json/…`) to the relay's. What both routers share of HTTP is in
//! [`http`]; neither knows of the other.
//!
//! Every client is untrusted: its TLS handshake and complete request head
//! must arrive within --cdp-handshake-timeout (else 408, or just a close
//! mid-TLS), heads are bounded in size (431), and every answer has a body
//! that says what to do, also the ones for a connection over the cap
//! (503) or a head that is not HTTP (400). Every answer but a 101 closes
//! its connection: a connection holds a slot of the cap, and an idle
//! kept-alive one would keep it from another client.

pub mod http;
mod io;
mod limits;
mod refuse;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ::http::header::{CACHE_CONTROL, CONNECTION, HeaderValue};
use ::http::{Request, StatusCode};
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_rustls::{TlsAcceptor, rustls, server::TlsStream};
use tokio_util::either::Either;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

pub use http::Client;
pub use limits::raise_descriptor_limit;
use limits::{AcceptBackoff, Connections, Slot};

/// Largest request head accepted (hyper's smallest buffer is 8 KiB). A
/// WebSocket handshake with a cookie or two fits many times over.
const MAX_HEAD: usize = 16 * 1024;
const MAX_HEADERS: usize = 64;

/// Connections over the total cap still get their 503 (the only way a
/// client learns why), but only this many at once, each for at most
/// [`REFUSAL_TIME`]; past that they are closed unanswered.
const MAX_REFUSALS: usize = 64;
const REFUSAL_TIME: Duration = Duration::from_secs(1);

/// A client's connection: plain, or TLS over TCP (boxed: a TLS session is
/// large, and lives as long as the WebSocket).
type ClientStream = Either<TcpStream, Box<TlsStream<TcpStream>>>;

/// How the listener is bounded.
#[derive(Debug, Clone)]
pub struct FrontConfig {
    /// Time a client has for its TLS handshake and request head.
    pub handshake_timeout: Duration,
    pub max_connections: usize,
    /// Serve every connection over TLS with this config.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

/// Where requests go.
#[derive(Debug, Clone)]
pub struct Routes {
    pub relay: Router,
    /// The web console and live view, served under `/console`; `None`:
    /// those paths go to the relay, which knows none of them.
    pub console: Option<Router>,
}

/// Whether a request for `path` goes to the console.
fn is_console_path(path: &str) -> bool {
    path == "/console" || path.starts_with("/console/")
}

struct Front {
    config: FrontConfig,
    routes: Routes,
    connections: Arc<Connections>,
    /// Permits for answering connections over the total cap.
    refusals: Arc<Semaphore>,
    stop: CancellationToken,
}

/// Accepts connections until `stop` is cancelled.
pub async fn serve(
    listener: TcpListener,
    config: FrontConfig,
    routes: Routes,
    stop: CancellationToken,
    tracker: TaskTracker,
) {
    limits::check_descriptor_budget(config.max_connections);
    let front = Arc::new(Front {
        connections: Connections::new(config.max_connections),
        config,
        routes,
        refusals: Arc::new(Semaphore::new(MAX_REFUSALS)),
        stop: stop.clone(),
    });
    let mut backoff = AcceptBackoff::default();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stop.cancelled() => return,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => {
                backoff.succeeded();
                accepted
            }
            Err(e) => {
                let pause = backoff.failed(&e);
                tokio::select! {
                    () = tokio::time::sleep(pause) => continue,
                    () = stop.cancelled() => return,
                }
            }
        };
        match front.connections.open() {
            Some(slot) => {
                tracker.spawn(front.clone().connection(stream, peer, slot));
            }
            None => front.refuse_busy(stream, peer, &tracker),
        }
    }
}

impl Front {
    /// Answers 503 to a connection over the total cap, if answering cannot
    /// itself exhaust anything (over TLS, after a handshake that shares the
    /// answer's time).
    fn refuse_busy(&self, stream: TcpStream, peer: SocketAddr, tracker: &TaskTracker) {
        tracing::debug!(%peer, "cdp relay: connection cap reached");
        let Ok(permit) = self.refusals.clone().try_acquire_owned() else {
            return;
        };
        let body = format!(
            "browserd's CDP relay has {} connections open, its --cdp-max-connections: try again later",
            self.connections.max()
        );
        let stop = self.stop.clone();
        let tls = self.config.tls.clone();
        tracker.spawn(async move {
            let deadline = Instant::now() + REFUSAL_TIME;
            if let Some(stream) = secure(stream, peer, tls, deadline, &stop).await {
                let response = refuse::text(StatusCode::SERVICE_UNAVAILABLE, &body);
                refuse::respond_and_close(stream, &response, REFUSAL_TIME, &stop).await;
            }
            drop(permit);
        });
    }

    /// One accepted connection: its TLS handshake, if any, and request head
    /// within the handshake timeout, then whatever its route answers.
    async fn connection(self: Arc<Self>, stream: TcpStream, peer: SocketAddr, slot: Slot) {
        let _ = stream.set_nodelay(true);
        // Taken from the TCP socket before TLS hides it: the relay finds a
        // client's socket owner by these two addresses, the console checks
        // `Host` against the second.
        let Ok(local) = stream.local_addr() else {
            return;
        };
        let within = self.config.handshake_timeout;
        let deadline = Instant::now() + within;
        let tls = self.config.tls.clone();
        let Some(stream) = secure(stream, peer, tls, deadline, &self.stop).await else {
            return;
        };
        let head_read = Arc::new(AtomicBool::new(false));
        let (conn, mut returned) = io::Conn::new(stream, slot, head_read.clone());
        let client = Client { peer, local };
        let routes = self.routes.clone();
        let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
            head_read.store(true, Ordering::Release);
            request.extensions_mut().insert(client);
            let router = match &routes.console {
                Some(console) if is_console_path(request.uri().path()) => console.clone(),
                _ => routes.relay.clone(),
            };
            async move {
                let Ok(mut response) = router.oneshot(request).await;
                if response.status() != StatusCode::SWITCHING_PROTOCOLS {
                    let headers = response.headers_mut();
                    headers.insert(CONNECTION, HeaderValue::from_static("close"));
                    // Answers name sessions, tokens and links.
                    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
                }
                Ok::<_, Infallible>(response)
            }
        });
        let served = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(deadline.saturating_duration_since(Instant::now()))
            .max_buf_size(MAX_HEAD)
            .max_headers(MAX_HEADERS)
            .serve_connection(TokioIo::new(conn), service)
            .with_upgrades();
        let served = tokio::select! {
            served = served => served,
            () = self.stop.cancelled() => return,
        };
        // Nothing comes back from a connection upgraded to a WebSocket.
        let Ok((stream, _slot)) = returned.try_recv() else {
            return;
        };
        let response = match served {
            Ok(()) => return refuse::linger(stream).await,
            Err(e) if e.is_timeout() => {
                tracing::debug!(%peer, "cdp relay: handshake timed out");
                let body = format!(
                    "no complete request within --cdp-handshake-timeout ({})",
                    humantime::format_duration(within)
                );
                refuse::text(StatusCode::REQUEST_TIMEOUT, &body)
            }
            Err(e) if e.is_parse_too_large() => refuse::text(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "request head too large",
            ),
            Err(e) if e.is_parse() => {
                tracing::debug!(%peer, error = %e, "cdp relay: bad request head");
                refuse::text(StatusCode::BAD_REQUEST, "malformed HTTP request")
            }
            Err(e) => {
                tracing::debug!(%peer, error = %e, "cdp relay: connection failed");
                return;
            }
        };
        refuse::respond_and_close(stream, &response, within, &self.stop).await;
    }
}

/// `stream` as it is served: as it is without `tls`, else once its TLS
/// handshake completes by `deadline`. `None`: the handshake failed, timed
/// out, or browserd is stopping.
async fn secure(
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<Arc<rustls::ServerConfig>>,
    deadline: Instant,
    stop: &CancellationToken,
) -> Option<ClientStream> {
    let Some(tls) = tls else {
        return Some(Either::Left(stream));
    };
    let handshake = tokio::time::timeout_at(deadline, TlsAcceptor::from(tls).accept(stream));
    let secured = tokio::select! {
        secured = handshake => secured,
        () = stop.cancelled() => return None,
    };
    match secured {
        Ok(Ok(stream)) => Some(Either::Right(Box::new(stream))),
        Ok(Err(e)) => {
            // A plain-text client, or one that does not trust the
            // certificate: its TLS library tells it why.
            tracing::debug!(%peer, error = %e, "cdp relay: TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(%peer, "cdp relay: TLS handshake timed out");
            None
        }
    }
}
