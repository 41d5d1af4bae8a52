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

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::metrics::Counter;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::{CancellationToken, DropGuard};
use tokio_util::task::TaskTracker;

use super::policy::{Policy, Refusal, Verdict};
use super::upstream::{Stream, Upstream};
use crate::domain::egress::{Destination, EgressRules, EgressUsage};

/// Longest request head read from the browser: far above what Chromium
/// sends a proxy (a request line and a few headers).
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// How long the browser has to send a request head, a name to resolve
/// and a destination or upstream to accept a connection.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);
/// Most headers a request head may carry.
const MAX_HEADERS: usize = 128;

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
    usage: Usage,
    /// Host placement: who may connect, and the proxy's own address.
    holds: Option<(PeerCheck, SocketAddr)>,
    stop: CancellationToken,
}

/// Whose traffic this is: the session's id (for logs) and its rules.
#[derive(Default)]
struct Assignment {
    label: String,
    rules: EgressRules,
}

#[derive(Default)]
struct Usage {
    sent: AtomicU64,
    received: AtomicU64,
    requests: AtomicU64,
    refused: AtomicU64,
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
            usage: Usage::default(),
            holds: holds.map(|holds| (holds, addr)),
            stop: stop.clone(),
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
        let usage = &self.shared.usage;
        EgressUsage {
            bytes_sent: usage.sent.load(Ordering::Relaxed),
            bytes_received: usage.received.load(Ordering::Relaxed),
            requests: usage.requests.load(Ordering::Relaxed),
            refused: usage.refused.load(Ordering::Relaxed),
        }
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

/// A request as the browser sent it to its proxy.
struct Request {
    connect: bool,
    host: String,
    port: u16,
    /// The head for the destination itself (origin-form, one request per
    /// connection) and for an HTTP upstream (absolute-form).
    origin_head: Vec<u8>,
    absolute_head: Vec<u8>,
}

async fn serve(mut browser: TcpStream, peer: SocketAddr, shared: Arc<Shared>) {
    if let Some((holds, addr)) = &shared.holds
        && !held(holds.clone(), peer, *addr).await
    {
        // Not a warning: any session's client can cause these at will.
        tracing::debug!(%peer, "egress proxy refused a connection from outside its browser");
        return;
    }
    let Ok(Ok((head, rest))) = tokio::time::timeout(STEP_TIMEOUT, read_head(&mut browser)).await
    else {
        return;
    };
    let assignment = shared
        .assignment
        .read()
        .expect("assignment poisoned")
        .clone();
    let authorization = shared.upstream.as_ref().and_then(Upstream::authorization);
    let Some(request) = parse(&head, authorization) else {
        answer(&mut browser, 400, "Bad Request", "not a proxy request").await;
        return;
    };
    let literal = request
        .host
        .parse::<IpAddr>()
        .ok()
        .map(|ip| ip.to_canonical());
    let named = Destination {
        host: &request.host,
        port: request.port,
        ip: literal,
    };
    if let Verdict::Refuse(refusal) = shared.policy.judge(&assignment.rules, &named) {
        return refuse(
            &mut browser,
            &shared,
            &assignment,
            &refusal,
            request.connect,
        )
        .await;
    }
    let connected = match &shared.upstream {
        None => connect_direct(&shared, &assignment.rules, &request, literal).await,
        Some(upstream) => connect_upstream(&shared, upstream, &request).await,
    };
    let mut destination = match connected {
        Ok(destination) => destination,
        Err(Failure::Refused(refusal)) => {
            return refuse(
                &mut browser,
                &shared,
                &assignment,
                &refusal,
                request.connect,
            )
            .await;
        }
        Err(Failure::Unreachable(cause)) => {
            tracing::debug!(session.id = %assignment.label, %cause, "egress connection failed");
            answer(&mut browser, 502, "Bad Gateway", &cause).await;
            return;
        }
    };
    shared.usage.requests.fetch_add(1, Ordering::Relaxed);
    let first = if request.connect {
        if browser
            .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
            .await
            .is_err()
        {
            return;
        }
        rest
    } else {
        let head = match &shared.upstream {
            Some(upstream) if upstream.speaks_http() => request.absolute_head,
            _ => request.origin_head,
        };
        [head, rest].concat()
    };
    if destination.write_all(&first).await.is_err() {
        return;
    }
    add_sent(&shared, first.len() as u64);
    let _ = browser.set_nodelay(true);
    let mut browser = Counted {
        inner: browser,
        count: Count::Sent(&shared),
    };
    let mut destination = Counted {
        inner: destination,
        count: Count::Received(&shared),
    };
    let _ = tokio::io::copy_bidirectional(&mut browser, &mut destination).await;
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
    request: &Request,
    literal: Option<IpAddr>,
) -> Result<Box<dyn Stream>, Failure> {
    let addresses = match literal {
        Some(ip) => vec![SocketAddr::new(ip, request.port)],
        None => resolve(&request.host, request.port).await?,
    };
    let mut refused = None;
    let mut failed = None;
    for address in addresses {
        let to = Destination {
            host: &request.host,
            port: request.port,
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
        (None, None) => Failure::Unreachable(format!("{} has no address", request.host)),
    })
}

/// Connects to the session's proxy (judged like any destination, by the
/// server's rules) and, for a tunnel or a SOCKS proxy, opens the tunnel.
async fn connect_upstream(
    shared: &Shared,
    upstream: &Upstream,
    request: &Request,
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
    let mut stream = upstream.wrap(tcp).await.map_err(unreachable)?;
    if request.connect || !upstream.speaks_http() {
        let opened = tokio::time::timeout(
            STEP_TIMEOUT,
            upstream.tunnel(&mut stream, &request.host, request.port),
        )
        .await;
        match opened {
            Ok(Ok(())) => {}
            Ok(Err(cause)) => return Err(Failure::Unreachable(cause)),
            Err(_) => {
                return Err(Failure::Unreachable(
                    "the session's proxy did not open the tunnel in time".into(),
                ));
            }
        }
    }
    Ok(stream)
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

async fn refuse(
    browser: &mut TcpStream,
    shared: &Shared,
    assignment: &Assignment,
    refusal: &Refusal,
    connect: bool,
) {
    shared.usage.refused.fetch_add(1, Ordering::Relaxed);
    instruments().refused.add(1, &[]);
    // INFO, not ERROR: a page asking for what it may not have is the
    // policy working.
    tracing::info!(
        session.id = %assignment.label,
        destination = %refusal.destination,
        rule = %refusal.rule,
        "egress refused"
    );
    let text = refusal.to_string();
    if connect {
        answer(browser, 403, "Forbidden", &text).await;
    } else {
        let page = format!(
            "<!doctype html><meta charset=utf-8><title>Refused by browserd</title>\
             <h1>Refused by browserd's egress policy</h1><p>{}</p>",
            escape_html(&text)
        );
        respond(browser, 403, "Forbidden", "text/html; charset=utf-8", &page).await;
    }
}

async fn answer(browser: &mut TcpStream, code: u16, reason: &str, text: &str) {
    respond(browser, code, reason, "text/plain; charset=utf-8", text).await;
}

async fn respond(browser: &mut TcpStream, code: u16, reason: &str, kind: &str, body: &str) {
    let response = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = browser.write_all(response.as_bytes()).await;
    let _ = browser.shutdown().await;
}

fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The request head (through its blank line) and whatever followed it.
pub(super) async fn read_head<S: AsyncRead + Unpin + ?Sized>(
    socket: &mut S,
) -> std::io::Result<(Vec<u8>, Vec<u8>)> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        let n = socket.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let searched_from = buf.len().saturating_sub(3);
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf[searched_from..]
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
        {
            let rest = buf.split_off(searched_from + end + 4);
            return Ok((buf, rest));
        }
        if buf.len() > MAX_HEAD_BYTES {
            return Err(std::io::ErrorKind::InvalidData.into());
        }
    }
}

/// A CONNECT or an absolute-form `http://` request, which is all a
/// browser sends a proxy; `None` for anything else. A request other than
/// CONNECT carries one request per connection (`Connection: close`): the
/// proxy reads no bodies, so it could not find where a second request on
/// the connection starts to judge it too.
fn parse(head: &[u8], authorization: Option<&str>) -> Option<Request> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    if !parsed.parse(head).ok()?.is_complete() {
        return None;
    }
    let method = parsed.method?;
    let target = parsed.path?;
    let connect = method == "CONNECT";
    let (authority, path) = if connect {
        (target, "")
    } else {
        let rest = target.strip_prefix("http://")?;
        match rest.find(['/', '?']) {
            Some(at) => (&rest[..at], &rest[at..]),
            None => (rest, "/"),
        }
    };
    let authority = authority.rsplit('@').next()?;
    let (host, port) = split_authority(authority, if connect { None } else { Some(80) })?;
    let path = if path.starts_with('?') {
        format!("/{path}")
    } else {
        path.to_owned()
    };
    let hop_by_hop = [
        "proxy-authorization",
        "proxy-connection",
        "connection",
        "keep-alive",
    ];
    let mut kept = Vec::new();
    for header in parsed.headers.iter() {
        if hop_by_hop
            .iter()
            .any(|h| header.name.eq_ignore_ascii_case(h))
        {
            continue;
        }
        kept.extend_from_slice(header.name.as_bytes());
        kept.extend_from_slice(b": ");
        kept.extend_from_slice(header.value);
        kept.extend_from_slice(b"\r\n");
    }
    let build = |line: String, credentials: bool| {
        let mut out = line.into_bytes();
        out.extend_from_slice(&kept);
        out.extend_from_slice(b"Connection: close\r\n");
        if let (true, Some(authorization)) = (credentials, authorization) {
            out.extend_from_slice(format!("Proxy-Authorization: {authorization}\r\n").as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        out
    };
    Some(Request {
        connect,
        origin_head: build(format!("{method} {path} HTTP/1.1\r\n"), false),
        absolute_head: build(format!("{method} {target} HTTP/1.1\r\n"), true),
        host,
        port,
    })
}

/// `host:port`, `[v6]:port`, or a host alone where a default port exists.
fn split_authority(authority: &str, default_port: Option<u16>) -> Option<(String, u16)> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(port) => Some(port),
            None if after.is_empty() => None,
            None => return None,
        };
        (host, port)
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let port = match port {
        Some(port) => port.parse::<u16>().ok().filter(|p| *p > 0)?,
        None => default_port?,
    };
    if host.is_empty() || host.contains(['/', ' ', '@']) {
        return None;
    }
    Some((host.to_ascii_lowercase(), port))
}

fn add_sent(shared: &Shared, n: u64) {
    shared.usage.sent.fetch_add(n, Ordering::Relaxed);
    instruments()
        .bytes
        .add(n, &[KeyValue::new("browserd.egress.direction", "sent")]);
}

fn add_received(shared: &Shared, n: u64) {
    shared.usage.received.fetch_add(n, Ordering::Relaxed);
    instruments()
        .bytes
        .add(n, &[KeyValue::new("browserd.egress.direction", "received")]);
}

/// A stream whose reads are counted: the browser's as sent, the
/// destination's as received.
struct Counted<'a, S> {
    inner: S,
    count: Count<'a>,
}

enum Count<'a> {
    Sent(&'a Shared),
    Received(&'a Shared),
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<'_, S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = (buf.filled().len() - before) as u64;
        if n > 0 {
            match self.count {
                Count::Sent(shared) => add_sent(shared, n),
                Count::Received(shared) => add_received(shared, n),
            }
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<'_, S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_read_as_a_browser_sends_them_to_its_proxy() {
        let connect = parse(
            b"CONNECT Example.com:443 HTTP/1.1\r\nHost: example.com:443\r\nProxy-Authorization: Basic eA==\r\n\r\n",
            Some("Basic dTpw"),
        )
        .expect("a CONNECT");
        assert!(connect.connect);
        assert_eq!((connect.host.as_str(), connect.port), ("example.com", 443));

        let get = parse(
            b"GET http://127.0.0.1:3000/a?b HTTP/1.1\r\nHost: 127.0.0.1:3000\r\nProxy-Connection: keep-alive\r\n\r\n",
            Some("Basic dTpw"),
        )
        .expect("an absolute-form GET");
        assert_eq!((get.host.as_str(), get.port), ("127.0.0.1", 3000));
        assert_eq!(
            String::from_utf8(get.origin_head).expect("text"),
            "GET /a?b HTTP/1.1\r\nHost: 127.0.0.1:3000\r\nConnection: close\r\n\r\n"
        );
        assert_eq!(
            String::from_utf8(get.absolute_head).expect("text"),
            "GET http://127.0.0.1:3000/a?b HTTP/1.1\r\nHost: 127.0.0.1:3000\r\nConnection: close\r\nProxy-Authorization: Basic dTpw\r\n\r\n"
        );
        let v6 = parse(b"GET http://[::1]/ HTTP/1.1\r\n\r\n", None).expect("IPv6");
        assert_eq!((v6.host.as_str(), v6.port), ("::1", 80));
        let bare = parse(b"GET http://h.test?x HTTP/1.1\r\n\r\n", None).expect("no path");
        assert!(bare.origin_head.starts_with(b"GET /?x HTTP/1.1\r\n"));

        assert!(parse(b"GET / HTTP/1.1\r\n\r\n", None).is_none());
        assert!(parse(b"CONNECT example.com HTTP/1.1\r\n\r\n", None).is_none());
        assert!(parse(b"CONNECT :443 HTTP/1.1\r\n\r\n", None).is_none());
        assert!(parse(b"\xff\r\n\r\n", None).is_none());
    }
}
