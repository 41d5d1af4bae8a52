//! The relay's HTTP/1.1 side: reading a request head (bounded in size; the
//! caller bounds it in time), what a path names, the WebSocket handshake
//! answer, CDP discovery bodies, and plain-text error responses that say
//! what to do.
//!
//! It knows nothing of sessions beyond their ids, and never logs a request
//! line or header (they carry tokens).

use std::io;
use std::time::Duration;

use http::StatusCode;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use crate::sessions::model::SessionId;

/// The path of a session's relay URL, followed by its id.
pub const PATH_PREFIX: &str = "/devtools/browser/";

/// Largest request head accepted. A WebSocket handshake with a cookie or
/// two fits many times over.
const MAX_HEAD: usize = 16 * 1024;
const MAX_HEADERS: usize = 64;

/// The parts of a request head the relay acts on.
#[derive(Debug)]
pub struct Head {
    pub method: String,
    pub path: String,
    pub query: String,
    /// `Upgrade: websocket` with `Connection: upgrade`.
    pub upgrade: bool,
    pub ws_key: Option<String>,
    pub ws_version: Option<String>,
    /// The token of `Authorization: Bearer <token>`.
    pub bearer: Option<String>,
    /// `Content-Length`, when given and a number (the console's POSTs).
    pub content_length: Option<usize>,
    /// `Host` and `Origin`, which the console checks (DNS rebinding,
    /// cross-site requests).
    pub host: Option<String>,
    pub origin: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum HeadError {
    #[error("request head larger than {MAX_HEAD} bytes")]
    TooLarge,
    #[error("malformed request head: {0}")]
    Malformed(httparse::Error),
    #[error("connection closed before a complete request head")]
    Closed,
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Reads one request head. Returns it and any bytes the client sent after
/// it (the start of its first WebSocket frame, if it did not wait).
pub async fn read_head(
    stream: &mut (impl AsyncRead + Unpin),
) -> Result<(Head, Vec<u8>), HeadError> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 2048];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(HeadError::Closed);
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut request = httparse::Request::new(&mut headers);
        match request.parse(&buf) {
            Ok(httparse::Status::Complete(len)) => {
                let head = Head::from_request(&request);
                return Ok((head, buf[len..].to_vec()));
            }
            Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => {
                return Err(HeadError::TooLarge);
            }
            Ok(httparse::Status::Partial) => {}
            Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
            Err(e) => return Err(HeadError::Malformed(e)),
        }
    }
}

impl Head {
    fn from_request(request: &httparse::Request<'_, '_>) -> Self {
        let target = request.path.unwrap_or("/");
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let header = |name: &str| {
            request
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .and_then(|h| std::str::from_utf8(h.value).ok())
                .map(str::trim)
        };
        let has_token = |name: &str, token: &str| {
            header(name).is_some_and(|value| {
                value
                    .split(',')
                    .any(|part| part.trim().eq_ignore_ascii_case(token))
            })
        };
        let bearer = header("authorization").and_then(|value| {
            let (scheme, token) = value.split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| token.trim().to_owned())
        });
        Self {
            method: request.method.unwrap_or_default().to_owned(),
            path: path.to_owned(),
            query: query.to_owned(),
            upgrade: has_token("upgrade", "websocket") && has_token("connection", "upgrade"),
            ws_key: header("sec-websocket-key").map(str::to_owned),
            ws_version: header("sec-websocket-version").map(str::to_owned),
            bearer,
            content_length: header("content-length").and_then(|v| v.parse().ok()),
            host: header("host").map(str::to_owned),
            origin: header("origin").map(str::to_owned),
        }
    }

    /// The session token, from `?token=` or else `Authorization: Bearer`,
    /// and whether it came in the URL.
    pub fn token(&self) -> Option<(&str, bool)> {
        let in_query = self
            .query
            .split('&')
            .find_map(|pair| pair.strip_prefix("token="))
            .filter(|token| !token.is_empty());
        match (in_query, &self.bearer) {
            (Some(token), _) => Some((token, true)),
            (None, Some(token)) => Some((token.as_str(), false)),
            (None, None) => None,
        }
    }
}

/// What a request path names.
#[derive(Debug, PartialEq, Eq)]
pub enum Target {
    /// `/devtools/browser/<id>`: the session's WebSocket.
    Socket(SessionId),
    /// `/devtools/browser/<id>/json/version`: discovery of the browser
    /// endpoint (what Playwright's `connect_over_cdp("http://…")` asks).
    Version(SessionId),
    /// `/devtools/browser/<id>/json/list` (or `/json`): the session's pages.
    List(SessionId),
    Unknown,
}

pub fn target(path: &str) -> Target {
    let Some(rest) = path.strip_prefix(PATH_PREFIX) else {
        return Target::Unknown;
    };
    let (id, rest) = rest.split_once('/').unwrap_or((rest, ""));
    let Some(id) = SessionId::parse(id) else {
        return Target::Unknown;
    };
    match rest.trim_end_matches('/') {
        "" => Target::Socket(id),
        "json/version" => Target::Version(id),
        "json" | "json/list" => Target::List(id),
        _ => Target::Unknown,
    }
}

/// The `101 Switching Protocols` answer to a valid WebSocket handshake.
pub fn switching_protocols(ws_key: &str) -> Vec<u8> {
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(ws_key.as_bytes());
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-accept: {accept}\r\n\r\n"
    )
    .into_bytes()
}

/// A complete response with a plain-text body, after which the relay
/// closes the connection.
pub fn text(status: StatusCode, body: &str) -> Vec<u8> {
    response(
        status,
        "text/plain; charset=utf-8",
        "",
        &format!("{body}\n"),
    )
}

/// A 401 that names the two ways to give the token.
pub fn unauthorized(body: &str) -> Vec<u8> {
    response(
        StatusCode::UNAUTHORIZED,
        "text/plain; charset=utf-8",
        "www-authenticate: Bearer\r\n",
        &format!("{body}\n"),
    )
}

/// A 426 for a WebSocket version other than 13.
pub fn upgrade_required(body: &str) -> Vec<u8> {
    response(
        StatusCode::UPGRADE_REQUIRED,
        "text/plain; charset=utf-8",
        "sec-websocket-version: 13\r\n",
        &format!("{body}\n"),
    )
}

/// A complete response for the web console ([`crate::console`]).
pub fn console_response(status: StatusCode, content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\ncache-control: no-store\r\n{CONSOLE_HEADERS}\r\n",
        status.as_str(),
        status.canonical_reason().unwrap_or(""),
        body.len(),
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

/// The console's pages load only their own scripts and styles, images
/// only from themselves or `data:` (the screencast's frames), connect only
/// back to browserd, and may not be framed: a page that shows a live
/// browser and takes input must not be overlaid by another site.
pub const CONSOLE_HEADERS: &str = "content-security-policy: default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'\r\nx-content-type-options: nosniff\r\nreferrer-policy: no-referrer\r\nx-frame-options: DENY\r\n";

pub fn json(body: &serde_json::Value) -> Vec<u8> {
    response(StatusCode::OK, "application/json", "", &body.to_string())
}

fn response(status: StatusCode, content_type: &str, extra: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {} {}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\ncache-control: no-store\r\n{extra}\r\n{body}",
        status.as_str(),
        status.canonical_reason().unwrap_or(""),
        body.len(),
    )
    .into_bytes()
}

/// How long a closing connection is drained after its response.
const LINGER: Duration = Duration::from_secs(1);

/// Sends a final response within `within` and closes the connection,
/// reading (and discarding) what the client still sends for a moment, so
/// the close does not reset the connection before the client read it.
/// Gives up at once when `stop` is cancelled.
pub async fn respond_and_close(
    mut stream: impl AsyncRead + AsyncWrite + Unpin,
    response: &[u8],
    within: Duration,
    stop: &CancellationToken,
) {
    let answer = async {
        tokio::time::timeout(within, async {
            stream.write_all(response).await?;
            stream.shutdown().await
        })
        .await
        .map_err(io::Error::from)??;
        let mut sink = [0u8; 1024];
        let mut drained = 0;
        let _ = tokio::time::timeout(LINGER, async {
            while drained < MAX_HEAD {
                match stream.read(&mut sink).await? {
                    0 => break,
                    n => drained += n,
                }
            }
            Ok::<(), io::Error>(())
        })
        .await;
        Ok::<(), io::Error>(())
    };
    tokio::select! {
        _ = answer => {}
        () = stop.cancelled() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_paths_name_the_socket_and_its_discovery_endpoints() {
        let id = SessionId::new();
        let at = |rest: &str| target(&format!("{PATH_PREFIX}{id}{rest}"));
        assert_eq!(at(""), Target::Socket(id));
        assert_eq!(at("/"), Target::Socket(id));
        // What Playwright asks for given the session's http:// URL.
        assert_eq!(at("/json/version/"), Target::Version(id));
        assert_eq!(at("/json/version"), Target::Version(id));
        assert_eq!(at("/json/list"), Target::List(id));
        assert_eq!(at("/json"), Target::List(id));
        assert_eq!(at("/json/protocol"), Target::Unknown);
        assert_eq!(target("/json/version"), Target::Unknown);
        assert_eq!(target("/devtools/browser/not-an-id"), Target::Unknown);
    }

    #[test]
    fn the_token_comes_from_the_query_or_a_bearer_header() {
        let mut head = Head {
            method: "GET".into(),
            path: "/".into(),
            query: "a=1&token=abc".into(),
            upgrade: false,
            ws_key: None,
            ws_version: None,
            bearer: Some("def".into()),
            content_length: None,
            host: None,
            origin: None,
        };
        assert_eq!(head.token(), Some(("abc", true)));
        head.query = "token=".into();
        assert_eq!(head.token(), Some(("def", false)));
        head.bearer = None;
        assert_eq!(head.token(), None);
    }

    #[test]
    fn heads_are_parsed_case_insensitively() {
        let raw = b"GET /devtools/browser/x?token=t HTTP/1.1\r\nHost: h\r\nUPGRADE: WebSocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Key: k==\r\nSec-WebSocket-Version: 13\r\nauthorization: bearer  s3cret \r\n\r\n";
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut request = httparse::Request::new(&mut headers);
        assert!(request.parse(raw).unwrap().is_complete());
        let head = Head::from_request(&request);
        assert!(head.upgrade);
        assert_eq!(head.path, "/devtools/browser/x");
        assert_eq!(head.ws_key.as_deref(), Some("k=="));
        assert_eq!(head.ws_version.as_deref(), Some("13"));
        assert_eq!(head.bearer.as_deref(), Some("s3cret"));
    }
}
