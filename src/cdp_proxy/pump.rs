//! The frame pump: one relayed client, both ways, until either side closes
//! or the session ends. Client messages pass the [`policy`](super::policy)
//! and [`files`](super::files) first, and browser messages `files`; that is
//! the only work per frame beyond relaying it.

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message, Utf8Bytes};

use super::files::Files;
use super::policy::{self, Verdict};
use super::{READ_CHUNK, Relay};
use crate::sessions::Route;
use crate::sessions::model::{EndReason, SessionId};

impl Relay {
    /// Relays frames both ways until either side closes or the session ends.
    pub(super) async fn pump(
        &self,
        client: WebSocketStream<TcpStream>,
        id: SessionId,
        route: Route,
        mut files: Files,
    ) {
        let upstream = tokio_tungstenite::connect_async_with_config(
            &route.upstream,
            Some(ws_config(self.config.max_message_size)),
            true,
        )
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
                        let verdict = match verdict(&message) {
                            Verdict::Forward => files.judge(&message).await,
                            verdict => verdict,
                        };
                        match verdict {
                            Verdict::Forward => {
                                if browser_tx.send(message).await.is_err() {
                                    break;
                                }
                            }
                            Verdict::Replace(call) => {
                                if browser_tx.send(Message::text(call)).await.is_err() {
                                    break;
                                }
                            }
                            Verdict::Refuse(reply) => {
                                if client_tx.send(Message::text(reply)).await.is_err() {
                                    break;
                                }
                            }
                            Verdict::CloseSession(reply) => {
                                // Ended before the reply, so a client whose
                                // close() returned finds the session RELEASED;
                                // and while this client is still counted as
                                // connected, so its leaving cannot be taken
                                // for a disconnect first.
                                tracing::info!("a client closed the browser: releasing the session");
                                if let Err(e) = self.engine.end(id, EndReason::ClientClosed, None).await {
                                    tracing::warn!(error = %e, "cannot end the session a client closed");
                                }
                                let _ = client_tx.send(Message::text(reply)).await;
                                let _ = client_tx.send(session_ended()).await;
                                break;
                            }
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
                frame = browser_rx.next() => match frame {
                    Some(Ok(message @ (Message::Text(_) | Message::Binary(_)))) => {
                        if files.relays(&message).await && client_tx.send(message).await.is_err() {
                            break;
                        }
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                    Some(Err(tungstenite::Error::Capacity(e))) => {
                        // The browser is fine; this client asked it for more
                        // than the relay carries.
                        tracing::debug!(error = %e, "the browser sent an oversized message");
                        let _ = client_tx
                            .send(close(
                                CloseCode::Size,
                                "the browser's answer is larger than --cdp-max-message-size",
                            ))
                            .await;
                        break;
                    }
                    Some(Ok(Message::Close(_)) | Err(_)) | None => {
                        browser_closed = true;
                        // Ending a session kills its browser right after
                        // closing the route: a relay that sees both at once
                        // says why.
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
                () = self.stop.cancelled() => {
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
}

/// The policy's verdict on one client message. CDP is text; a binary
/// message is judged as the text it holds.
fn verdict(message: &Message) -> Verdict {
    match message {
        Message::Text(text) => policy::inspect(text.as_str()),
        Message::Binary(bytes) => match std::str::from_utf8(bytes) {
            Ok(text) => policy::inspect(text),
            Err(_) => Verdict::Forward,
        },
        _ => Verdict::Forward,
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
