//! A browser's local hop to an authenticating proxy. Chromium ignores
//! credentials in `--proxy-server` (the proxy answers 407), so a browser
//! whose proxy needs them is pointed at this hop instead, on 127.0.0.1,
//! which forwards its CONNECT and absolute-form requests to the real proxy
//! with `Proxy-Authorization` added. The credentials stay in browserd: not
//! on the browser's command line, not in its profile.
//!
//! The hop serves its own browser only. Any local process can connect to
//! a loopback port, and another session's client can point its own browser
//! at one (`Target.createBrowserContext {proxyServer}`): a connection
//! whose peer socket no process of this browser's process group holds is
//! closed unanswered. It lives as long as its browser: [`ProxyHop`]
//! stops its listener and every connection when stopped or dropped.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::{CancellationToken, DropGuard};
use tokio_util::task::TaskTracker;

use super::process_table;
use crate::domain::launch::Proxy;

/// Longest request head the hop reads from its browser: far above what
/// Chromium sends to a proxy (a request line and a few headers).
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// How long the browser has to send a request head, and the upstream
/// proxy to accept a connection.
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);

/// The hop of one browser.
pub struct ProxyHop {
    addr: SocketAddr,
    /// The browser's process group, once it is spawned; connections wait
    /// for it.
    owner: watch::Sender<Option<i32>>,
    stop: CancellationToken,
    _stop_on_drop: DropGuard,
}

impl ProxyHop {
    /// Listens on an ephemeral loopback port, forwarding to `upstream`
    /// (an `http://host:port` proxy) with `authorization` added.
    pub async fn start(
        upstream: &Proxy,
        authorization: String,
        tracker: &TaskTracker,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let upstream = upstream
            .server
            .strip_prefix("http://")
            .unwrap_or(&upstream.server)
            .to_owned();
        let (owner, owner_rx) = watch::channel(None);
        let stop = CancellationToken::new();
        let forward = Forward {
            hop: addr,
            upstream,
            authorization,
            owner: owner_rx,
            stop: stop.clone(),
        };
        tracker.spawn(accept(listener, forward, tracker.clone()));
        Ok(Self {
            addr,
            owner,
            _stop_on_drop: stop.clone().drop_guard(),
            stop,
        })
    }

    /// The hop for a browser of `proxy`, if it needs one: only a proxy
    /// with credentials does.
    pub async fn for_proxy(
        proxy: Option<&Proxy>,
        tracker: &TaskTracker,
    ) -> std::io::Result<Option<Self>> {
        match proxy {
            Some(
                proxy @ Proxy {
                    credentials: Some(credentials),
                    ..
                },
            ) => Ok(Some(
                Self::start(proxy, credentials.basic(), tracker).await?,
            )),
            _ => Ok(None),
        }
    }

    /// What the browser's `--proxy-server` is.
    pub fn proxy_server(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Serves the processes of group `pgid`, the browser's, from now on.
    pub fn serve_group(&self, pgid: i32) {
        self.owner.send_replace(Some(pgid));
    }

    /// Closes the listener and every connection through it.
    pub fn stop(&self) {
        self.stop.cancel();
    }
}

#[derive(Clone)]
struct Forward {
    hop: SocketAddr,
    /// `host:port` of the upstream proxy.
    upstream: String,
    /// The `Proxy-Authorization` value.
    authorization: String,
    owner: watch::Receiver<Option<i32>>,
    stop: CancellationToken,
}

async fn accept(listener: TcpListener, forward: Forward, tracker: TaskTracker) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = forward.stop.cancelled() => return,
        };
        match accepted {
            Ok((socket, peer)) => {
                let forward = forward.clone();
                tracker.spawn(async move {
                    let stop = forward.stop.clone();
                    tokio::select! {
                        () = serve(socket, peer, forward) => {}
                        () = stop.cancelled() => {}
                    }
                });
            }
            Err(e) => {
                // Out of descriptors, typically: back off rather than spin.
                tracing::warn!(error = %e, "proxy hop cannot accept");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn serve(mut browser: TcpStream, peer: SocketAddr, mut forward: Forward) {
    let Ok(Some(pgid)) = forward
        .owner
        .wait_for(Option::is_some)
        .await
        .map(|owner| *owner)
    else {
        return;
    };
    let hop = forward.hop;
    let owned = tokio::task::spawn_blocking(move || {
        process_table::tcp_peer_holder(peer, hop, &[pgid]) == process_table::Holder::Browser
    })
    .await
    .unwrap_or(false);
    if !owned {
        // Not a warning: any session's client can cause these at will.
        tracing::debug!(%peer, "proxy hop refused a connection from outside its browser");
        return;
    }
    let Ok(Ok((head, rest))) = tokio::time::timeout(HEAD_TIMEOUT, read_head(&mut browser)).await
    else {
        return;
    };
    let Some(head) = rewrite_head(&head, &forward.authorization) else {
        let _ = browser
            .write_all(
                b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
            )
            .await;
        return;
    };
    let connected = tokio::time::timeout(HEAD_TIMEOUT, TcpStream::connect(&forward.upstream)).await;
    let mut upstream = match connected {
        Ok(Ok(upstream)) => upstream,
        _ => {
            let _ = browser
                .write_all(
                    b"HTTP/1.1 502 Bad Gateway\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
                )
                .await;
            return;
        }
    };
    let _ = upstream.set_nodelay(true);
    let _ = browser.set_nodelay(true);
    if upstream.write_all(&head).await.is_err() || upstream.write_all(&rest).await.is_err() {
        return;
    }
    let _ = tokio::io::copy_bidirectional(&mut browser, &mut upstream).await;
}

/// The request head (through its blank line) and whatever followed it.
async fn read_head(socket: &mut TcpStream) -> std::io::Result<(Vec<u8>, Vec<u8>)> {
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

/// The head to send upstream: the browser's, with the hop's credentials
/// in place of any it sent. A request other than CONNECT carries one
/// request per connection (`Connection: close`): the hop reads no bodies,
/// so it could not find where a second request on the connection starts
/// to authorise it too. `None` for anything but a CONNECT or an
/// absolute-form `http://` request, which is all a browser sends a proxy.
fn rewrite_head(head: &[u8], authorization: &str) -> Option<Vec<u8>> {
    let head = std::str::from_utf8(head).ok()?;
    let mut lines = head.split("\r\n");
    let request_line = lines.next()?;
    let mut parts = request_line.split(' ');
    let (method, target) = (parts.next()?, parts.next()?);
    let connect = method == "CONNECT";
    if !connect && !target.starts_with("http://") {
        return None;
    }
    let mut out = String::with_capacity(head.len() + authorization.len() + 64);
    out.push_str(request_line);
    out.push_str("\r\n");
    for line in lines.filter(|line| !line.is_empty()) {
        let name = line.split(':').next().unwrap_or_default().trim();
        let dropped: &[&str] = if connect {
            &["proxy-authorization"]
        } else {
            &[
                "proxy-authorization",
                "connection",
                "proxy-connection",
                "keep-alive",
            ]
        };
        if dropped.iter().any(|d| name.eq_ignore_ascii_case(d)) {
            continue;
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    if !connect {
        out.push_str("Connection: close\r\n");
    }
    out.push_str("Proxy-Authorization: ");
    out.push_str(authorization);
    out.push_str("\r\n\r\n");
    Some(out.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::rewrite_head;

    #[test]
    fn heads_get_the_hops_credentials_and_only_those() {
        let connect = rewrite_head(
            b"CONNECT t.test:443 HTTP/1.1\r\nHost: t.test:443\r\nProxy-Authorization: Basic eA==\r\n\r\n",
            "Basic dTpw",
        )
        .expect("a CONNECT");
        assert_eq!(
            String::from_utf8(connect).expect("text"),
            "CONNECT t.test:443 HTTP/1.1\r\nHost: t.test:443\r\nProxy-Authorization: Basic dTpw\r\n\r\n"
        );
        let get = rewrite_head(
            b"GET http://t.test/ HTTP/1.1\r\nHost: t.test\r\nProxy-Connection: keep-alive\r\n\r\n",
            "Basic dTpw",
        )
        .expect("an absolute-form GET");
        assert_eq!(
            String::from_utf8(get).expect("text"),
            "GET http://t.test/ HTTP/1.1\r\nHost: t.test\r\nConnection: close\r\nProxy-Authorization: Basic dTpw\r\n\r\n"
        );
        assert!(rewrite_head(b"GET / HTTP/1.1\r\n\r\n", "Basic dTpw").is_none());
        assert!(rewrite_head(b"\xff\r\n\r\n", "Basic dTpw").is_none());
    }
}
