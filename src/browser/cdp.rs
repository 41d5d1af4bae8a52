//! A minimal CDP client over one WebSocket: commands (browser-level, or on
//! a flattened target session) and their replies, and the signal that the
//! connection is gone, with the peer's close reason. The tests and the
//! bench use it as a user's client through the relay; browserd itself
//! speaks to its browsers over their pipes ([`super::pipe`]).
//!
//! Deliberately minimal: commands and replies only, events are skipped.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::CdpError;

type Reply = oneshot::Sender<Result<Value, CdpError>>;

enum Command {
    Call {
        method: String,
        params: Value,
        /// A flattened target session (`Target.attachToTarget`), or the
        /// browser itself.
        session: Option<String>,
        reply: Reply,
    },
    /// Send a close frame and stop.
    Close,
}

#[derive(Clone)]
pub struct CdpClient {
    commands: mpsc::Sender<Command>,
    closed: CancellationToken,
    /// The reason in the peer's close frame, if it sent one.
    close_reason: Arc<OnceLock<String>>,
}

impl CdpClient {
    pub async fn connect(ws_url: &str, tracker: &TaskTracker) -> Result<Self, CdpError> {
        let (socket, _) = tokio_tungstenite::connect_async_with_config(ws_url, None, true).await?;
        Ok(Self::over(socket, tracker))
    }

    /// Connects to `ws_url` over a connection the caller made, e.g. from a
    /// socket of another user, or TLS for a `wss://` URL.
    pub async fn connect_on<S>(
        stream: S,
        ws_url: &str,
        tracker: &TaskTracker,
    ) -> Result<Self, CdpError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (socket, _) = tokio_tungstenite::client_async_with_config(ws_url, stream, None).await?;
        Ok(Self::over(socket, tracker))
    }

    fn over<S>(socket: WebSocketStream<S>, tracker: &TaskTracker) -> Self
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (commands, mut rx) = mpsc::channel::<Command>(64);
        let closed = CancellationToken::new();
        let close_reason = Arc::new(OnceLock::new());
        let (done, reason) = (closed.clone(), close_reason.clone());
        tracker.spawn(async move {
            let (mut sink, mut stream) = socket.split();
            let mut pending: HashMap<u64, (String, Reply)> = HashMap::new();
            let mut next_id = 0u64;
            loop {
                tokio::select! {
                    command = rx.recv() => {
                        // Every handle dropped: the owner is done with it.
                        let Some(Command::Call { method, params, session, reply }) = command else {
                            let _ = sink.close().await;
                            break;
                        };
                        next_id += 1;
                        let mut frame = json!({"id": next_id, "method": method, "params": params});
                        if let Some(session) = session {
                            frame["sessionId"] = json!(session);
                        }
                        if sink.send(Message::text(frame.to_string())).await.is_err() {
                            let _ = reply.send(Err(CdpError::Closed));
                            break;
                        }
                        pending.insert(next_id, (method, reply));
                    }
                    frame = stream.next() => {
                        let text = match frame {
                            Some(Ok(Message::Text(text))) => text,
                            Some(Ok(Message::Close(frame))) => {
                                let _ = reason.set(frame.map(|f| f.reason.to_string()).unwrap_or_default());
                                break;
                            }
                            Some(Ok(_)) => continue,
                            Some(Err(_)) | None => break,
                        };
                        let Ok(message) = serde_json::from_str::<Value>(&text) else { continue };
                        let Some(id) = message.get("id").and_then(Value::as_u64) else { continue };
                        let Some((method, reply)) = pending.remove(&id) else { continue };
                        let outcome = match message.get("error") {
                            Some(error) => Err(CdpError::Refused {
                                method,
                                message: error.get("message").and_then(Value::as_str)
                                    .unwrap_or("unknown error").to_owned(),
                            }),
                            None => Ok(message.get("result").cloned().unwrap_or(Value::Null)),
                        };
                        let _ = reply.send(outcome);
                    }
                }
            }
            for (_, (_, reply)) in pending {
                let _ = reply.send(Err(CdpError::Closed));
            }
            done.cancel();
        });
        Self {
            commands,
            closed,
            close_reason,
        }
    }

    /// A browser-level command.
    pub async fn call(
        &self,
        method: &str,
        params: Value,
        timeout: Duration,
    ) -> Result<Value, CdpError> {
        self.send(method, params, None, timeout).await
    }

    /// A command to the target attached as `session`.
    pub async fn call_in(
        &self,
        session: &str,
        method: &str,
        params: Value,
        timeout: Duration,
    ) -> Result<Value, CdpError> {
        self.send(method, params, Some(session.to_owned()), timeout)
            .await
    }

    async fn send(
        &self,
        method: &str,
        params: Value,
        session: Option<String>,
        timeout: Duration,
    ) -> Result<Value, CdpError> {
        let (reply, answer) = oneshot::channel();
        let command = Command::Call {
            method: method.to_owned(),
            params,
            session,
            reply,
        };
        self.commands
            .send(command)
            .await
            .map_err(|_| CdpError::Closed)?;
        match tokio::time::timeout(timeout, answer).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_)) => Err(CdpError::Closed),
            Err(_) => Err(CdpError::Timeout {
                method: method.to_owned(),
                timeout,
            }),
        }
    }

    /// Opens a page (in `context`, or the default browser context) and
    /// returns its target id.
    pub async fn create_target(
        &self,
        url: &str,
        context: Option<&str>,
        timeout: Duration,
    ) -> Result<String, CdpError> {
        let mut params = json!({"url": url});
        if let Some(context) = context {
            params["browserContextId"] = json!(context);
        }
        let created = self.call("Target.createTarget", params, timeout).await?;
        Ok(created["targetId"].as_str().unwrap_or_default().to_owned())
    }

    /// Attaches to a target in flat mode; returns the session id for
    /// [`CdpClient::call_in`].
    pub async fn attach(&self, target_id: &str, timeout: Duration) -> Result<String, CdpError> {
        let params = json!({"targetId": target_id, "flatten": true});
        let attached = self.call("Target.attachToTarget", params, timeout).await?;
        Ok(attached["sessionId"]
            .as_str()
            .unwrap_or_default()
            .to_owned())
    }

    /// Sends a close frame and lets the connection go.
    pub async fn close(&self) {
        let _ = self.commands.send(Command::Close).await;
        self.closed().await;
    }

    pub fn is_closed(&self) -> bool {
        self.closed.is_cancelled()
    }

    /// Resolves when the connection is gone.
    pub async fn closed(&self) {
        self.closed.cancelled().await
    }

    /// Waits until the peer closes the connection; returns the reason of
    /// its close frame (empty when it sent none).
    pub async fn close_reason(&self) -> String {
        self.closed().await;
        self.close_reason.get().cloned().unwrap_or_default()
    }
}
