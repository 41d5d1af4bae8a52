//! browserd's own CDP connection to a browser: a few browser-level commands
//! (version, targets) and the signal that the connection is gone.
//!
//! Deliberately minimal: a full client such as chromiumoxide attaches to
//! every page and enables domains on it, which would make browserd a hidden
//! second client inside every user's pages.

use std::collections::HashMap;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Debug, thiserror::Error)]
pub enum CdpError {
    #[error("cannot connect to the browser's DevTools socket: {0}")]
    Connect(#[from] tokio_tungstenite::tungstenite::Error),
    #[error("the browser's CDP connection is closed")]
    Closed,
    #[error("the browser did not answer {method} within {timeout:?}")]
    Timeout { method: String, timeout: Duration },
    #[error("the browser refused {method}: {message}")]
    Refused { method: String, message: String },
}

type Reply = oneshot::Sender<Result<Value, CdpError>>;

#[derive(Clone)]
pub struct CdpClient {
    commands: mpsc::Sender<(String, Value, Reply)>,
    closed: CancellationToken,
}

impl CdpClient {
    pub async fn connect(ws_url: &str, tracker: &TaskTracker) -> Result<Self, CdpError> {
        let (socket, _) = tokio_tungstenite::connect_async_with_config(ws_url, None, true).await?;
        let (commands, mut rx) = mpsc::channel::<(String, Value, Reply)>(64);
        let closed = CancellationToken::new();
        let done = closed.clone();
        tracker.spawn(async move {
            let (mut sink, mut stream) = socket.split();
            let mut pending: HashMap<u64, (String, Reply)> = HashMap::new();
            let mut next_id = 0u64;
            loop {
                tokio::select! {
                    command = rx.recv() => {
                        // Every handle dropped: browserd is done with this browser.
                        let Some((method, params, reply)) = command else { break };
                        next_id += 1;
                        let frame = json!({"id": next_id, "method": method, "params": params});
                        if sink.send(Message::text(frame.to_string())).await.is_err() {
                            let _ = reply.send(Err(CdpError::Closed));
                            break;
                        }
                        pending.insert(next_id, (method, reply));
                    }
                    frame = stream.next() => {
                        let Some(Ok(frame)) = frame else { break };
                        let Message::Text(text) = frame else { continue };
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
        Ok(Self { commands, closed })
    }

    pub async fn call(
        &self,
        method: &str,
        params: Value,
        timeout: Duration,
    ) -> Result<Value, CdpError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send((method.to_owned(), params, reply))
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

    pub fn is_closed(&self) -> bool {
        self.closed.is_cancelled()
    }

    /// Resolves when the connection to the browser is gone.
    pub async fn closed(&self) {
        self.closed.cancelled().await
    }
}
