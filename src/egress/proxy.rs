//! One browser's egress proxy. Chromium sends it every request
//! (`--proxy-server`, with `<-loopback>` so loopback goes through it too):
//! absolute-form `http://` requests and CONNECT for everything else
//! (HTTPS, WebSocket). Each is judged by the [`Policy`] on the name and
//! again on every address it resolves to, connected only to an address
//! that passed, directly or through the session's upstream proxy, and
//! counted. A refusal is a 403 whose text names the destination, the rule
//! and the flag that would allow it.
//!
//! Walled, the proxy listens inside the browser's own network namespace,
//! where nothing else can reach it and the browser can reach nothing
//! else. With `--egress open` there is no namespace; a browser whose
//! proxy needs credentials still gets this proxy, on the host's loopback,
//! serving only connections its own processes hold.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::body::Body;
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::{CancellationToken, DropGuard};
use tokio_util::task::TaskTracker;

use super::policy::{Policy, Refusal, Verdict};
use super::upstream::{Stream, Upstream};
use super::usage::{Counted, Usage};
use crate::domain::egress::{Destination, EgressRules, EgressUsage, literal, unbracketed};

/// How long the browser has to send a request head, a name to resolve
/// and a destination or upstream to accept a connection.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the proxy listens.
pub enum Placement {
    /// In the browser's own network namespace (a listener made there).
    Walled(std::net::TcpListener),
    /// On the host's loopback, for a browser that shares the host's
    /// network (`--egress open`): only connections `holds` says its
    /// processes hold (peer, proxy address; a blocking call) are served.
    Host { holds: PeerCheck },
}

/// Whether a process of the browser holds a connection's peer socket.
pub type PeerCheck = Arc<dyn Fn(SocketAddr, SocketAddr) -> bool + Send + Sync>;

/// A browser's proxy. Stopped, or dropped, it closes its listener and
/// every connection through it.
pub struct EgressProxy {
    shared: Arc<Shared>,
    addr: SocketAddr,
    _stop_on_drop: DropGuard,
}

struct Shared {
    policy: Arc<Policy>,
    upstream: Option<Upstream>,
    assignment: RwLock<Arc<Assignment>>,
    usage: Arc<Usage>,
    /// Host placement: who may connect, and the proxy's own address.
    holds: Option<(PeerCheck, SocketAddr)>,
    stop: CancellationToken,
    /// Where tunnels and connections to destinations run.
    tracker: TaskTracker,
}

/// Whose traffic this is: the session's id (for logs) and its rules.
#[derive(Default)]
struct Assignment {
    label: String,
    rules: EgressRules,
}

impl EgressProxy {
    pub async fn start(
        placement: Placement,
        policy: Arc<Policy>,
        upstream: Option<Upstream>,
        tracker: &TaskTracker,
    ) -> std::io::Result<Self> {
        let (listener, holds) = match placement {
            Placement::Walled(listener) => (TcpListener::from_std(listener)?, None),
            Placement::Host { holds } => (TcpListener::bind("127.0.0.1:0").await?, Some(holds)),
        };
        let addr = listener.local_addr()?;
        let stop = CancellationToken::new();
        let shared = Arc::new(Shared {
            policy,
            upstream,
            assignment: RwLock::new(Arc::new(Assignment {
                label: "(warm pool)".into(),
                rules: EgressRules::default(),
            })),
            usage: Arc::default(),
            holds: holds.map(|holds| (holds, addr)),
            stop: stop.clone(),
            tracker: tracker.clone(),
        });
        tracker.spawn(accept(listener, shared.clone(), tracker.clone()));
        Ok(Self {
            shared,
            addr,
            _stop_on_drop: stop.drop_guard(),
        })
    }

    /// What the browser's `--proxy-server` is.
    pub fn proxy_server(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Makes the browser's traffic a session's, with its narrowing, from
    /// the next connection on.
    pub fn assign(&self, label: String, rules: EgressRules) {
        *self.shared.assignment.write().expect("assignment poisoned") =
            Arc::new(Assignment { label, rules });
    }

    pub fn usage(&self) -> EgressUsage {
        self.shared.usage.now()
    }

    /// Closes the listener and every connection through it.
    pub fn stop(&self) {
        self.shared.stop.cancel();
    }
}

async fn accept(listener: TcpListener, shared: Arc<Shared>, tracker: TaskTracker) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shared.stop.cancelled() => return,
        };
        match accepted {
            Ok((socket, peer)) => {
                let shared = shared.clone();
                tracker.spawn(async move {
                    let stop = shared.stop.clone();
                    tokio::select! {
                        () = serve(socket, peer, shared) => {}
                        () = stop.cancelled() => {}
                    }
                });
            }
            Err(e) => {
                // Out of descriptors, typically: back off rather than spin.
                tracing::warn!(error = %e, "egress proxy cannot accept");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn serve(browser: TcpStream, peer: SocketAddr, shared: Arc<Shared>) {
    if let Some((holds, addr)) = &shared.holds
        && !held(holds.clone(), peer, *addr).await
    {
        // Not a warning: any session's client can cause these at will.
        tracing::debug!(%peer, "egress proxy refused a connection from outside its browser");
        return;
    }
    let _ = browser.set_nodelay(true);
    let service = service_fn(move |request| {
        let shared = shared.clone();
        async move { Ok::<_, Infallible>(handle(shared, request).await) }
    });
    // Keep-alive with the browser: each request on the connection is
    // judged by itself.
    let _ = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(STEP_TIMEOUT)
        .serve_connection(TokioIo::new(browser), service)
        .with_upgrades()
        .await;
}

/// One request of the browser's: a CONNECT, answered 200 and then
/// tunnelled, or an absolute-form `http://` request, forwarded and its
/// response streamed back.
async fn handle(shared: Arc<Shared>, request: Request<Incoming>) -> Response<Body> {
    let assignment = shared
        .assignment
        .read()
        .expect("assignment poisoned")
        .clone();
    let connect = request.method() == Method::CONNECT;
    let Some((host, port)) = destination_of(&request) else {
        return text(
            StatusCode::BAD_REQUEST,
            "browserd's egress proxy takes CONNECT host:port and absolute http:// requests only",
        );
    };
    let literal = literal(&host);
    let named = Destination {
        host: &host,
        port,
        ip: literal,
    };
    if let Verdict::Refuse(refusal) = shared.policy.judge(&assignment.rules, &named) {
        return refuse(&shared, &assignment, &refusal, connect);
    }
    let connected = match &shared.upstream {
        None => connect_direct(&shared, &assignment.rules, &host, port, literal).await,
        Some(upstream) => connect_upstream(&shared, upstream, &host, port, connect).await,
    };
    let stream = match connected {
        Ok(stream) => stream,
        Err(Failure::Refused(refusal)) => return refuse(&shared, &assignment, &refusal, connect),
        Err(Failure::Unreachable(cause)) => {
            tracing::debug!(session.id = %assignment.label, %cause, "egress connection failed");
            return text(StatusCode::BAD_GATEWAY, &cause);
        }
    };
    shared.usage.request();
    let mut destination = Counted {
        inner: stream,
        usage: shared.usage.clone(),
    };
    let stop = shared.stop.clone();
    if connect {
        shared.tracker.spawn(async move {
            let tunnel = async {
                if let Ok(upgraded) = hyper::upgrade::on(request).await {
                    let mut browser = TokioIo::new(upgraded);
                    let _ = tokio::io::copy_bidirectional(&mut browser, &mut destination).await;
                }
            };
            tokio::select! {
                () = tunnel => {}
                () = stop.cancelled() => {}
            }
        });
        return Response::new(Body::empty());
    }
    let absolute = shared.upstream.as_ref().is_some_and(Upstream::speaks_http);
    let authorization = shared.upstream.as_ref().and_then(Upstream::authorization);
    let Some(request) = outgoing(request, absolute, authorization) else {
        return text(StatusCode::BAD_REQUEST, "the request's URL has no path");
    };
    let (mut sender, connection) =
        match hyper::client::conn::http1::handshake(TokioIo::new(destination)).await {
            Ok(handshake) => handshake,
            Err(e) => return text(StatusCode::BAD_GATEWAY, &e.to_string()),
        };
    shared.tracker.spawn(async move {
        tokio::select! {
            _ = connection => {}
            () = stop.cancelled() => {}
        }
    });
    match sender.send_request(request).await {
        Ok(response) => {
            let (mut parts, body) = response.into_parts();
            strip_hop_by_hop(&mut parts.headers);
            Response::from_parts(parts, Body::new(body))
        }
        Err(e) => text(
            StatusCode::BAD_GATEWAY,
            &format!("{host}:{port} did not answer: {e}"),
        ),
    }
}

/// Where a proxy request goes: CONNECT's authority, or the host and port
/// (default 80) of an absolute `http://` URL.
fn destination_of(request: &Request<Incoming>) -> Option<(String, u16)> {
    let uri = request.uri();
    let default_port = if request.method() == Method::CONNECT {
        None
    } else if uri.scheme() == Some(&http::uri::Scheme::HTTP) {
        Some(80)
    } else {
        return None;
    };
    let authority = uri.authority()?;
    let host = unbracketed(authority.host());
    let port = authority.port_u16().or(default_port)?;
    (!host.is_empty() && port > 0).then(|| (host.to_ascii_lowercase(), port))
}

/// The request for the destination (origin-form) or for an HTTP
/// upstream (absolute-form, with the upstream's credentials), without
/// the hop-by-hop headers the browser meant for its proxy.
fn outgoing(
    request: Request<Incoming>,
    absolute: bool,
    authorization: Option<&str>,
) -> Option<Request<Incoming>> {
    let (mut parts, body) = request.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    if absolute {
        if let Some(authorization) = authorization {
            parts.headers.insert(
                http::header::PROXY_AUTHORIZATION,
                http::HeaderValue::from_str(authorization).ok()?,
            );
        }
    } else {
        let path = parts.uri.path_and_query()?.as_str().to_owned();
        parts.uri = path.parse().ok()?;
    }
    Some(Request::from_parts(parts, body))
}

fn strip_hop_by_hop(headers: &mut http::HeaderMap) {
    for name in [
        "proxy-authorization",
        "proxy-connection",
        "connection",
        "keep-alive",
    ] {
        headers.remove(name);
    }
}

/// Host placement: whether a process of the browser holds `peer`.
async fn held(holds: PeerCheck, peer: SocketAddr, addr: SocketAddr) -> bool {
    tokio::task::spawn_blocking(move || holds(peer, addr))
        .await
        .unwrap_or(false)
}

enum Failure {
    Refused(Refusal),
    Unreachable(String),
}

/// Resolves the destination, judges every address, and connects to the
/// first one allowed; an address refused is never connected to.
async fn connect_direct(
    shared: &Shared,
    rules: &EgressRules,
    host: &str,
    port: u16,
    literal: Option<IpAddr>,
) -> Result<Box<dyn Stream>, Failure> {
    let addresses = match literal {
        Some(ip) => vec![SocketAddr::new(ip, port)],
        None => resolve(host, port).await?,
    };
    let mut refused = None;
    let mut failed = None;
    for address in addresses {
        let to = Destination {
            host,
            port,
            ip: Some(address.ip().to_canonical()),
        };
        match shared.policy.judge(rules, &to) {
            Verdict::Refuse(refusal) => {
                refused.get_or_insert(refusal);
            }
            Verdict::Allow => match connect(address).await {
                Ok(stream) => return Ok(Box::new(stream)),
                Err(e) => failed = Some(format!("cannot connect to {address}: {e}")),
            },
        }
    }
    Err(match (failed, refused) {
        (Some(cause), _) => Failure::Unreachable(cause),
        (None, Some(refusal)) => Failure::Refused(refusal),
        (None, None) => Failure::Unreachable(format!("{host} has no address")),
    })
}

/// Connects to the session's proxy (judged like any destination, by the
/// server's rules) and, for a CONNECT (`tunnel`) or a SOCKS proxy, opens
/// the tunnel.
async fn connect_upstream(
    shared: &Shared,
    upstream: &Upstream,
    host: &str,
    port: u16,
    tunnel: bool,
) -> Result<Box<dyn Stream>, Failure> {
    let mut refused = None;
    let mut tcp = None;
    for address in resolve(&upstream.host, upstream.port).await? {
        let to = Destination {
            host: &upstream.host,
            port: upstream.port,
            ip: Some(address.ip().to_canonical()),
        };
        match shared.policy.judge_upstream(&to) {
            Verdict::Refuse(refusal) => {
                refused.get_or_insert(refusal);
            }
            Verdict::Allow => {
                if let Ok(stream) = connect(address).await {
                    tcp = Some(stream);
                    break;
                }
            }
        }
    }
    let Some(tcp) = tcp else {
        return Err(match refused {
            Some(refusal) => Failure::Refused(refusal),
            None => Failure::Unreachable(format!(
                "cannot connect to the session's proxy {}:{}",
                upstream.host, upstream.port
            )),
        });
    };
    let unreachable = |e: std::io::Error| Failure::Unreachable(format!("the session's proxy: {e}"));
    let stream = upstream.wrap(tcp).await.map_err(unreachable)?;
    if !tunnel && upstream.speaks_http() {
        return Ok(stream);
    }
    match tokio::time::timeout(STEP_TIMEOUT, upstream.tunnel(stream, host, port)).await {
        Ok(Ok(tunnel)) => Ok(tunnel),
        Ok(Err(cause)) => Err(Failure::Unreachable(cause)),
        Err(_) => Err(Failure::Unreachable(
            "the session's proxy did not open the tunnel in time".into(),
        )),
    }
}

async fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>, Failure> {
    let lookup = tokio::net::lookup_host((host, port));
    match tokio::time::timeout(STEP_TIMEOUT, lookup).await {
        Ok(Ok(addresses)) => Ok(addresses.collect()),
        Ok(Err(e)) => Err(Failure::Unreachable(format!("cannot resolve {host}: {e}"))),
        Err(_) => Err(Failure::Unreachable(format!(
            "resolving {host} took too long"
        ))),
    }
}

async fn connect(address: SocketAddr) -> std::io::Result<TcpStream> {
    let stream = tokio::time::timeout(STEP_TIMEOUT, TcpStream::connect(address))
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

fn refuse(
    shared: &Shared,
    assignment: &Assignment,
    refusal: &Refusal,
    connect: bool,
) -> Response<Body> {
    shared.usage.refused();
    // INFO, not ERROR: a page asking for what it may not have is the
    // policy working.
    tracing::info!(
        session.id = %assignment.label,
        destination = %refusal.destination,
        rule = %refusal.rule,
        "egress refused"
    );
    let said = refusal.to_string();
    if connect {
        // Chromium shows its own tunnel error; the text is for logs and
        // for clients that read proxy answers.
        return text(StatusCode::FORBIDDEN, &said);
    }
    let page = format!(
        "<!doctype html><meta charset=utf-8><title>Refused by browserd</title>\
         <h1>Refused by browserd's egress policy</h1><p>{}</p>",
        escape_html(&said)
    );
    respond(StatusCode::FORBIDDEN, "text/html; charset=utf-8", page)
}

fn text(status: StatusCode, said: &str) -> Response<Body> {
    respond(status, "text/plain; charset=utf-8", format!("{said}\n"))
}

fn respond(status: StatusCode, kind: &'static str, body: String) -> Response<Body> {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(kind),
    );
    headers.insert(
        http::header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    response
}

fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
