//! The pump: one relayed client, both ways, until either side closes or the
//! session ends. Client messages pass the [`policy`](super::policy) and
//! [`files`](super::files), then go to the client's own session on the browser's pipe
//! ([`crate::browser::pipe`]), which routes the browser's answers back; those pass `files` too (a
//! finished download is copied out before the client hears of it).

use std::borrow::Cow;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message, Utf8Bytes};

use super::files::Files;
use super::policy::{self, Verdict};
use super::{READ_CHUNK, Relay};
use crate::browser::pipe::{Delivery, Refusal};
use crate::domain::session::{Actor, EndReason, SessionId};
use crate::front::http::Socket;
use crate::sessions::Route;

impl Relay {
    /// Relays messages both ways until either side closes or the session
    /// ends.
    pub(super) async fn pump(&self, client: Socket, id: SessionId, route: Route, mut files: Files) {
        let (mut client_tx, mut client_rx) = client.split();
        let mut browser = match route.browser.connect(self.config.handshake_timeout).await {
            Ok(browser) => browser,
            Err(e) => {
                tracing::debug!(error = %e, "cannot open a browser session for a client");
                let _ = client_tx
                    .send(close(
                        CloseCode::Error,
                        "the session's browser is unreachable",
                    ))
                    .await;
                return;
            }
        };
        let client = route.presence.connect();
        let mut browser_closed = false;
        tracing::debug!("cdp client connected");
        loop {
            tokio::select! {
                frame = client_rx.next() => match frame {
                    Some(Ok(message @ (Message::Text(_) | Message::Binary(_)))) => {
                        route.presence.touch();
                        let Some(text) = as_text(&message) else {
                            let reply = r#"{"error":{"code":-32700,"message":"Message must be a valid JSON"}}"#;
                            if client_tx.send(Message::text(reply)).await.is_err() {
                                break;
                            }
                            continue;
                        };
                        let verdict = match policy::inspect(text) {
                            Verdict::Forward => files.judge(text).await,
                            verdict => verdict,
                        };
                        let outgoing = match verdict {
                            Verdict::Forward => Ok(Cow::Borrowed(text)),
                            Verdict::Replace(call) => Ok(Cow::Owned(call)),
                            Verdict::Refuse(reply) => Err(reply),
                            Verdict::CloseSession(reply) => {
                                // Ended before the reply, so a client whose
                                // close() returned finds the session RELEASED;
                                // and while this client is still counted as
                                // connected, so its leaving cannot be taken
                                // for a disconnect first.
                                tracing::info!("a client closed the browser: releasing the session");
                                if let Err(e) = self.engine.end(id, EndReason::ClientClosed, None, Actor::CdpClient).await {
                                    tracing::warn!(error = %e, "cannot end the session a client closed");
                                }
                                let _ = client_tx.send(Message::text(reply)).await;
                                let _ = client_tx.send(session_ended()).await;
                                break;
                            }
                        };
                        let refusal = match outgoing {
                            Ok(text) => match browser.send(&text).await {
                                Ok(()) => None,
                                Err(Refusal::Reply(reply)) => Some(reply),
                                Err(Refusal::Closed) => {
                                    browser_closed = true;
                                    let _ = client_tx.send(browser_gone(&route)).await;
                                    break;
                                }
                            },
                            Err(reply) => Some(reply),
                        };
                        if let Some(reply) = refusal
                            && client_tx.send(Message::text(reply)).await.is_err()
                        {
                            break;
                        }
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                    Some(Err(tungstenite::Error::Capacity(e))) => {
                        tracing::debug!(error = %e, "cdp client sent an oversized message");
                        let _ = client_tx
                            .send(close(CloseCode::Size, "message larger than --cdp-max-message-size"))
                            .await;
                        break;
                    }
                    Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                },
                delivery = browser.recv() => match delivery {
                    Some(Delivery::Message(text)) => {
                        if files.relays(&text).await && client_tx.send(Message::text(text)).await.is_err() {
                            break;
                        }
                    }
                    Some(Delivery::TooLarge) => {
                        // The browser is fine; this client asked it for more
                        // than the relay carries.
                        tracing::debug!("the browser sent an oversized message");
                        let _ = client_tx
                            .send(close(
                                CloseCode::Size,
                                "the browser's answer is larger than --cdp-max-message-size",
                            ))
                            .await;
                        break;
                    }
                    None => {
                        browser_closed = true;
                        let _ = client_tx.send(browser_gone(&route)).await;
                        break;
                    }
                },
                () = route.closed.cancelled() => {
                    let _ = client_tx.send(session_ended()).await;
                    break;
                }
                () = self.stop.cancelled() => {
                    let _ = client_tx.send(close(CloseCode::Away, "browserd is shutting down")).await;
                    break;
                }
            }
        }
        drop(browser);
        if browser_closed {
            client.browser_gone();
        } else {
            drop(client);
        }
        tracing::debug!(browser_closed, "cdp client disconnected");
    }
}

/// Why the relay closes a client whose browser went away. Ending a session
/// kills its browser right after closing the route: a relay that sees both
/// at once says the session ended.
fn browser_gone(route: &Route) -> Message {
    if route.closed.is_cancelled() {
        session_ended()
    } else {
        close(CloseCode::Away, "the browser closed the connection")
    }
}

/// A client message as text. CDP is JSON text; a binary message is read as
/// the text it holds.
fn as_text(message: &Message) -> Option<&str> {
    match message {
        Message::Text(text) => Some(text.as_str()),
        Message::Binary(bytes) => std::str::from_utf8(bytes).ok(),
        _ => None,
    }
}

/// Messages and frames are bounded by the same limit: a frame header that
/// announces more is refused before anything is allocated for it.
pub(super) fn ws_config(max_message_size: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(max_message_size))
        .max_frame_size(Some(max_message_size))
        .read_buffer_size(READ_CHUNK)
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
