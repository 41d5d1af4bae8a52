//! What the relay and the console share of HTTP: who a request came from,
//! plain-text answers, the bearer token, and WebSocket handshakes
//! (checked here, completed by hyper's upgrade, framed by tungstenite).
//! Nothing here logs a request line or header: they carry tokens.

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, StatusCode};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

/// The TCP connection a request came on, in every request's extensions:
/// the client's address and the listener's address it reached.
#[derive(Debug, Clone, Copy)]
pub struct Client {
    pub peer: SocketAddr,
    pub local: SocketAddr,
}

/// An answer instead of the one a caller hoped for (boxed: a response is
/// large, and the hoped-for one is small).
pub type Refusal = Box<Response>;

/// A WebSocket a request was upgraded to.
pub type Socket = WebSocketStream<TokioIo<Upgraded>>;

/// An answer with a plain-text body.
pub fn text(status: StatusCode, body: &str) -> Response {
    let mut response = Response::new(Body::from(format!("{body}\n")));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// An answer with a JSON body.
pub fn json(status: StatusCode, body: &serde_json::Value) -> Response {
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// The token of `Authorization: Bearer <token>`.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Whether header `name` lists `token` (`Connection: keep-alive, Upgrade`).
fn lists(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|part| part.trim().eq_ignore_ascii_case(token))
}

/// The `Sec-WebSocket-Accept` for a WebSocket handshake, or the answer to
/// a request that is not one (`not_websocket` says what to do instead).
pub fn handshake<B>(request: &Request<B>, not_websocket: &str) -> Result<HeaderValue, Refusal> {
    let headers = request.headers();
    let upgrade = lists(headers, header::UPGRADE, "websocket")
        && lists(headers, header::CONNECTION, "upgrade");
    if !upgrade || request.method() != Method::GET {
        return Err(Box::new(text(StatusCode::BAD_REQUEST, not_websocket)));
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_none_or(|v| v != "13")
    {
        let mut response = text(
            StatusCode::UPGRADE_REQUIRED,
            "browserd speaks WebSocket version 13",
        );
        response.headers_mut().insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        return Err(Box::new(response));
    }
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY) else {
        return Err(Box::new(text(
            StatusCode::BAD_REQUEST,
            "missing Sec-WebSocket-Key",
        )));
    };
    let accept = derive_accept_key(key.as_bytes());
    HeaderValue::from_str(&accept).map_err(|_| Box::new(text(StatusCode::BAD_REQUEST, "bad key")))
}

/// Completes a handshake [`handshake`] accepted: the 101 to answer, and
/// the socket it becomes once hyper has sent it (`None`: not within
/// `within`, or the client left).
pub fn upgrade<B>(
    request: &mut Request<B>,
    accept: HeaderValue,
    config: WebSocketConfig,
    within: Duration,
) -> (
    Response,
    impl Future<Output = Option<Socket>> + Send + 'static,
) {
    let upgraded = hyper::upgrade::on(request);
    let socket = async move {
        let upgraded = tokio::time::timeout(within, upgraded).await.ok()?.ok()?;
        let io = TokioIo::new(upgraded);
        Some(WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await)
    };
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    (response, socket)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshakes_are_read_case_insensitively() {
        let request = Request::get("/devtools/browser/x?token=t")
            .header("UPGRADE", "WebSocket")
            .header("Connection", "keep-alive, Upgrade")
            .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
            .header("Sec-WebSocket-Version", "13")
            .header("authorization", "bearer  s3cret ")
            .body(())
            .unwrap();
        let accept = handshake(&request, "").expect("a WebSocket handshake");
        assert_eq!(accept, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert_eq!(bearer(request.headers()), Some("s3cret"));
        let plain = Request::get("/").body(()).unwrap();
        let refused = handshake(&plain, "").expect_err("not a handshake");
        assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    }
}
