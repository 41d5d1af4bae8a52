//! The CDP WebSocket relay: clients connect to
//! `ws://<cdp listen>/devtools/browser/<session id>?token=<secret>` and are
//! relayed frame by frame to that session's browser. The browser's own port
//! stays on 127.0.0.1 and is never handed out.
//!
//! It asks the engine for a route and relays; it never changes a session.
//! When a session ends, its route's token is cancelled and every relayed
//! connection is closed.

use std::net::SocketAddr;

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::sessions::Engine;
use crate::sessions::model::SessionId;

const PATH_PREFIX: &str = "/devtools/browser/";

/// Bytes read from a socket at a time. tungstenite zero-fills this much
/// before every read, including the one that finds the socket empty, so its
/// default (128 KiB) cost two 128 KiB memsets per relayed frame, most of the
/// relay's own CPU on small CDP messages. Large ones take more reads.
const READ_CHUNK: usize = 16 * 1024;

/// CDP messages carry screenshots and PDFs: no frame size limit beyond the
/// browser's own.
fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(None)
        .max_frame_size(None)
        .read_buffer_size(READ_CHUNK)
}

/// Accepts relay connections until `stop` is cancelled.
pub async fn serve(
    listener: TcpListener,
    engine: Engine,
    stop: CancellationToken,
    tracker: TaskTracker,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stop.cancelled() => return,
        };
        match accepted {
            Ok((stream, peer)) => {
                tracker.spawn(relay(stream, peer, engine.clone(), stop.clone()));
            }
            Err(e) => tracing::warn!(error = %e, "cdp relay: accept failed"),
        }
    }
}

// The handshake callback's error type is tungstenite's HTTP response.
#[allow(clippy::result_large_err)]
async fn relay(stream: TcpStream, peer: SocketAddr, engine: Engine, stop: CancellationToken) {
    let _ = stream.set_nodelay(true);
    let mut route = None;
    let handshake = tokio_tungstenite::accept_hdr_async_with_config(
        stream,
        |request: &Request, response: Response| match authorize(&engine, request) {
            Ok((id, found)) => {
                route = Some((id, found));
                Ok(response)
            }
            Err((status, why)) => Err(reject(status, why)),
        },
        Some(ws_config()),
    )
    .await;
    let (client, Some((id, route))) = (
        match handshake {
            Ok(client) => client,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "cdp relay: handshake refused");
                return;
            }
        },
        route,
    ) else {
        return;
    };
    let span = tracing::info_span!("cdp_client", session.id = %id, %peer);
    pump(client, route, stop).instrument(span).await;
}

/// Relays frames both ways until either side closes or the session ends.
async fn pump(
    client: tokio_tungstenite::WebSocketStream<TcpStream>,
    route: crate::sessions::Route,
    stop: CancellationToken,
) {
    let upstream =
        tokio_tungstenite::connect_async_with_config(&route.upstream, Some(ws_config()), true)
            .await;
    let (mut client_tx, mut client_rx) = client.split();
    let Ok((browser, _)) = upstream else {
        let _ = client_tx
            .send(close(
                CloseCode::Error,
                "the session's browser is unreachable",
            ))
            .await;
        return;
    };
    let (mut browser_tx, mut browser_rx) = browser.split();
    let client = route.presence.connect();
    let mut browser_closed = false;
    tracing::debug!("cdp client connected");
    loop {
        tokio::select! {
            frame = client_rx.next() => match frame {
                Some(Ok(message @ (Message::Text(_) | Message::Binary(_)))) => {
                    route.presence.touch();
                    if browser_tx.send(message).await.is_err() {
                        break;
                    }
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Ok(Message::Close(_)) | Err(_)) | None => break,
            },
            frame = browser_rx.next() => match frame {
                Some(Ok(message @ (Message::Text(_) | Message::Binary(_)))) => {
                    if client_tx.send(message).await.is_err() {
                        break;
                    }
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Ok(Message::Close(_)) | Err(_)) | None => {
                    browser_closed = true;
                    // Ending a session kills its browser right after closing
                    // the route: a relay that sees both at once says why.
                    let why = if route.closed.is_cancelled() {
                        session_ended()
                    } else {
                        close(CloseCode::Away, "the browser closed the connection")
                    };
                    let _ = client_tx.send(why).await;
                    break;
                }
            },
            () = route.closed.cancelled() => {
                let _ = client_tx.send(session_ended()).await;
                break;
            }
            () = stop.cancelled() => {
                let _ = client_tx.send(close(CloseCode::Away, "browserd is shutting down")).await;
                break;
            }
        }
    }
    let _ = browser_tx.close().await;
    if browser_closed {
        client.browser_gone();
    } else {
        drop(client);
    }
    tracing::debug!(browser_closed, "cdp client disconnected");
}

/// Finds the live session the request names and checks its token.
fn authorize(
    engine: &Engine,
    request: &Request,
) -> Result<(SessionId, crate::sessions::Route), (StatusCode, &'static str)> {
    let uri = request.uri();
    let id = uri
        .path()
        .strip_prefix(PATH_PREFIX)
        .and_then(SessionId::parse)
        .ok_or((
            StatusCode::NOT_FOUND,
            "unknown path: expected /devtools/browser/<session id>",
        ))?;
    let token = uri
        .query()
        .unwrap_or_default()
        .split('&')
        .find_map(|pair| pair.strip_prefix("token="))
        .ok_or((StatusCode::UNAUTHORIZED, "missing token"))?;
    // One answer for "no such live session" and "wrong token", so the relay
    // does not tell which session ids exist.
    let route = engine.route(id, token).ok_or((
        StatusCode::NOT_FOUND,
        "no live session with this id and token",
    ))?;
    Ok((id, route))
}

fn reject(status: StatusCode, why: &str) -> ErrorResponse {
    let mut response = ErrorResponse::new(Some(why.to_owned()));
    *response.status_mut() = status;
    response
}

fn session_ended() -> Message {
    close(CloseCode::Normal, "the session has ended")
}

fn close(code: CloseCode, reason: &'static str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason),
    }))
}
