//! browserd's one connection to a browser: CDP over
//! `--remote-debugging-pipe` (NUL-terminated JSON on the browser's fds 3
//! and 4), shared by browserd's own calls and every relayed client.
//!
//! With a pipe the browser opens no DevTools port, so nothing else on the
//! host — no page of another session, no process of another user — can
//! reach it. Each relayed client gets a browser-level CDP session of its
//! own (`Target.attachToBrowserTarget`), with its own auto-attach and
//! discovery state, as on a connection of its own:
//! - a client message without a `sessionId` is sent on the client's
//!   browser session; one naming a session the client does not own is
//!   refused, so a client cannot act through browserd's or another
//!   client's sessions;
//! - replies and events are routed back by `sessionId`: the sessions a
//!   client attaches (`Target.attachedToTarget` on a session it owns) are
//!   its own, and its browser session's id is taken out again, so the
//!   client sees what a WebSocket to the browser would show it.
//!
//! Command ids are never rewritten: Chromium answers each command on the
//! session it came on, and ids only need to be unique per session.
//!
//! Flow control is per browser: a client that stops reading holds up its
//! own session's browser (every client of it, and browserd's own calls,
//! which time out), never another session.
//!
//! This file routes messages; the bytes on the pipe (framing, the size
//! limit, the descriptors) are [`framing`]'s.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::unix::pipe;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::CdpError;
pub use framing::Ends;
use framing::{read, write};

mod framing;

/// Messages waiting for each client (and for the writer) before the
/// browser's pipe is held up.
const QUEUE: usize = 256;

/// One browser's CDP pipe. Cheap to clone; the tasks behind it end when the
/// browser closes its end (it exited or was killed).
#[derive(Clone)]
pub struct Pipe {
    shared: Arc<Shared>,
}

struct Shared {
    outgoing: mpsc::Sender<Vec<u8>>,
    routes: Mutex<Routes>,
    closed: CancellationToken,
}

#[derive(Default)]
struct Routes {
    next_id: u64,
    /// browserd's own calls, sent without a session.
    pending: HashMap<u64, (String, oneshot::Sender<Result<Value, CdpError>>)>,
    next_client: u64,
    clients: HashMap<u64, Client>,
    /// Every session a client owns, its browser session included.
    owners: HashMap<String, u64>,
}

struct Client {
    browser_session: String,
    deliveries: mpsc::Sender<Delivery>,
}

/// What the browser sent one client.
#[derive(Debug)]
pub enum Delivery {
    /// A reply or event, as the client would see it on a connection of
    /// its own.
    Message(String),
    /// A reply or event over the size limit, which was discarded.
    TooLarge,
}

/// Why a client's message was not sent to the browser.
#[derive(Debug)]
pub enum Refusal {
    /// Answer the client with this CDP error instead.
    Reply(String),
    /// The browser is gone.
    Closed,
}

/// One relayed client's view of the browser. Dropping it detaches its
/// browser session, which detaches every session attached through it.
pub struct PipeClient {
    key: u64,
    session: String,
    deliveries: mpsc::Receiver<Delivery>,
    pipe: Pipe,
}

/// The fields the routing needs. Everything else is skipped unparsed.
#[derive(Deserialize)]
struct Header<'a> {
    id: Option<u64>,
    #[serde(borrow)]
    method: Option<Cow<'a, str>>,
    #[serde(borrow, rename = "sessionId")]
    session_id: Option<Cow<'a, str>>,
}

/// A client's header. A `sessionId` that is present but null is told
/// apart from a missing one: given one of its own as well, the browser
/// would take the later one and run the call on browserd's own connection.
#[derive(Deserialize)]
struct ClientHeader {
    id: Option<u64>,
    #[serde(default, rename = "sessionId", deserialize_with = "present")]
    session_id: Option<Option<String>>,
}

fn present<'de, D: serde::Deserializer<'de>>(field: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(field).map(Some)
}

/// `Target.attachedToTarget` and `Target.detachedFromTarget` name the
/// session they are about in their params.
#[derive(Deserialize)]
struct AttachEvent<'a> {
    #[serde(borrow)]
    params: AttachParams<'a>,
}

#[derive(Deserialize)]
struct AttachParams<'a> {
    #[serde(borrow, rename = "sessionId")]
    session_id: Cow<'a, str>,
}

impl std::fmt::Debug for Pipe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipe")
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

impl Pipe {
    /// Starts reading from and writing to the browser's ends of the pipe.
    /// Messages over `max_message_size` are discarded and reported to the
    /// client they were for.
    pub fn start(
        from_browser: pipe::Receiver,
        to_browser: pipe::Sender,
        max_message_size: usize,
        tracker: &TaskTracker,
    ) -> Self {
        let (outgoing, queued) = mpsc::channel(QUEUE);
        let shared = Arc::new(Shared {
            outgoing,
            routes: Mutex::new(Routes::default()),
            closed: CancellationToken::new(),
        });
        tracker.spawn(write(to_browser, queued, shared.closed.clone()));
        tracker.spawn(read(from_browser, shared.clone(), max_message_size));
        Self { shared }
    }

    /// A browser-level command of browserd's own.
    pub async fn call(
        &self,
        method: &str,
        params: Value,
        timeout: Duration,
    ) -> Result<Value, CdpError> {
        let (reply, answer) = oneshot::channel();
        let id = {
            let mut routes = self.shared.routes();
            routes.next_id += 1;
            let id = routes.next_id;
            routes.pending.insert(id, (method.to_owned(), reply));
            id
        };
        let message = json!({"id": id, "method": method, "params": params});
        let sent = self.shared.outgoing.send(message.to_string().into_bytes());
        let outcome = tokio::time::timeout(timeout, async {
            sent.await.map_err(|_| CdpError::Closed)?;
            answer.await.unwrap_or(Err(CdpError::Closed))
        })
        .await;
        self.shared.routes().pending.remove(&id);
        outcome.unwrap_or_else(|_| {
            Err(CdpError::Timeout {
                method: method.to_owned(),
                timeout,
            })
        })
    }

    /// A browser session for one relayed client.
    pub async fn connect(&self, timeout: Duration) -> Result<PipeClient, CdpError> {
        let attached = self
            .call("Target.attachToBrowserTarget", json!({}), timeout)
            .await?;
        let session = attached["sessionId"]
            .as_str()
            .ok_or(CdpError::Closed)?
            .to_owned();
        let (deliveries, receiver) = mpsc::channel(QUEUE);
        let mut routes = self.shared.routes();
        if self.shared.closed.is_cancelled() {
            return Err(CdpError::Closed);
        }
        routes.next_client += 1;
        let key = routes.next_client;
        routes.owners.insert(session.clone(), key);
        routes.clients.insert(
            key,
            Client {
                browser_session: session.clone(),
                deliveries,
            },
        );
        Ok(PipeClient {
            key,
            session,
            deliveries: receiver,
            pipe: self.clone(),
        })
    }

    pub fn is_closed(&self) -> bool {
        self.shared.closed.is_cancelled()
    }

    /// Resolves when the browser has closed its end of the pipe.
    pub async fn closed(&self) {
        self.shared.closed.cancelled().await
    }
}

impl Shared {
    fn routes(&self) -> std::sync::MutexGuard<'_, Routes> {
        self.routes.lock().expect("pipe routes poisoned")
    }

    /// Sends one message from the browser where it belongs.
    async fn dispatch(&self, text: String) {
        let Ok(header) = serde_json::from_str::<Header<'_>>(&text) else {
            tracing::debug!("the browser sent a message that is not CDP");
            return;
        };
        let Some(session) = header.session_id.as_deref() else {
            if let Some(id) = header.id {
                let pending = self.routes().pending.remove(&id);
                if let Some((method, reply)) = pending {
                    let _ = reply.send(own_reply(method, &text));
                }
            }
            // Browser-level events: browserd subscribes to none.
            return;
        };
        let (deliveries, strip) = {
            let mut routes = self.routes();
            let Some(&key) = routes.owners.get(session) else {
                return;
            };
            match header.method.as_deref() {
                Some("Target.attachedToTarget") => {
                    if let Ok(event) = serde_json::from_str::<AttachEvent<'_>>(&text) {
                        routes
                            .owners
                            .insert(event.params.session_id.into_owned(), key);
                    }
                }
                Some("Target.detachedFromTarget") => {
                    if let Ok(event) = serde_json::from_str::<AttachEvent<'_>>(&text) {
                        routes.owners.remove(event.params.session_id.as_ref());
                    }
                }
                _ => {}
            }
            let Some(client) = routes.clients.get(&key) else {
                return;
            };
            let strip = (client.browser_session == session).then(|| session.to_owned());
            (client.deliveries.clone(), strip)
        };
        let text = match strip {
            Some(session) => without_session(text, &session),
            None => text,
        };
        let _ = deliveries.send(Delivery::Message(text)).await;
    }

    /// A message over the limit was discarded: tells its client, found by
    /// the `sessionId` at its end.
    async fn dispatch_oversized(&self, tail: &[u8]) {
        let tail = String::from_utf8_lossy(tail);
        let deliveries = {
            let routes = self.routes();
            routes
                .owners
                .iter()
                .find(|(session, _)| tail.contains(&format!("\"sessionId\":\"{session}\"")))
                .and_then(|(_, key)| routes.clients.get(key))
                .map(|client| client.deliveries.clone())
        };
        match deliveries {
            Some(deliveries) => {
                let _ = deliveries.send(Delivery::TooLarge).await;
            }
            None => tracing::warn!("the browser sent browserd a message over the size limit"),
        }
    }

    /// The browser is gone: every call fails, every client's deliveries end.
    fn close(&self) {
        self.closed.cancel();
        let mut routes = self.routes();
        for (_, (_, reply)) in routes.pending.drain() {
            let _ = reply.send(Err(CdpError::Closed));
        }
        routes.clients.clear();
        routes.owners.clear();
    }
}

impl PipeClient {
    /// Sends one client message to the browser, on the client's browser
    /// session unless it names one of the client's other sessions.
    pub async fn send(&self, text: &str) -> Result<(), Refusal> {
        let Ok(header) = serde_json::from_str::<ClientHeader>(text) else {
            return Err(Refusal::Reply(
                json!({"error": {"code": -32700, "message": "Message must be a valid JSON"}})
                    .to_string(),
            ));
        };
        let object = text.trim_start().starts_with('{');
        let Some(id) = header.id.filter(|_| object) else {
            return Err(Refusal::Reply(
                json!({"error": {"code": -32600, "message": "Message must have integer 'id' property"}})
                    .to_string(),
            ));
        };
        let message = match header.session_id {
            None => with_session(text, &self.session),
            Some(session) => {
                let session = session.unwrap_or_default();
                let owner = self.pipe.shared.routes().owners.get(&session).copied();
                if owner != Some(self.key) {
                    let reply = json!({
                        "id": id,
                        "sessionId": session,
                        "error": {"code": -32001, "message": "Session with given id not found."},
                    });
                    return Err(Refusal::Reply(reply.to_string()));
                }
                text.to_owned()
            }
        };
        self.pipe
            .shared
            .outgoing
            .send(message.into_bytes())
            .await
            .map_err(|_| Refusal::Closed)
    }

    /// The next reply or event for this client; `None` once the browser is
    /// gone.
    pub async fn recv(&mut self) -> Option<Delivery> {
        self.deliveries.recv().await
    }
}

impl Drop for PipeClient {
    fn drop(&mut self) {
        let shared = &self.pipe.shared;
        {
            let mut routes = shared.routes();
            routes.clients.remove(&self.key);
            routes.owners.retain(|_, key| *key != self.key);
        }
        // Detaching the browser session detaches what the client attached
        // through it, and drops its overrides, as a closed WebSocket would.
        // Its reply is nobody's: an id browserd's own calls never use.
        let detach = json!({
            "id": 0,
            "method": "Target.detachFromTarget",
            "params": {"sessionId": self.session},
        });
        let _ = shared.outgoing.try_send(detach.to_string().into_bytes());
    }
}

/// browserd's own reply: its result, or the browser's refusal.
fn own_reply(method: String, text: &str) -> Result<Value, CdpError> {
    let message: Value = serde_json::from_str(text).map_err(|_| CdpError::Closed)?;
    match message.get("error") {
        Some(error) => Err(CdpError::Refused {
            method,
            message: error["message"]
                .as_str()
                .unwrap_or("unknown error")
                .to_owned(),
        }),
        None => Ok(message.get("result").cloned().unwrap_or(Value::Null)),
    }
}

/// `text` (a JSON object without a `sessionId`) sent on `session`.
fn with_session(text: &str, session: &str) -> String {
    let body = text.trim_start().strip_prefix('{').unwrap_or_default();
    let separator = if body.trim_start().starts_with('}') {
        ""
    } else {
        ","
    };
    format!("{{\"sessionId\":\"{session}\"{separator}{body}")
}

/// `text` with its top-level `sessionId` (which is `session`) taken out.
/// Chromium writes it as the last key, which is found and cut without
/// parsing the message (replies can be hundreds of megabytes); any other
/// layout is parsed and written again.
fn without_session(text: String, session: &str) -> String {
    let field = format!("\"sessionId\":\"{session}\"");
    if let Some(at) = text.rfind(&field) {
        let (before, after) = (&text[..at], &text[at + field.len()..]);
        if after.trim() == "}"
            && let Some(before) = before.trim_end().strip_suffix(',')
        {
            return format!("{before}{after}");
        }
    }
    match serde_json::from_str::<serde_json::Map<String, Value>>(&text) {
        Ok(mut message) => {
            message.remove("sessionId");
            Value::Object(message).to_string()
        }
        Err(_) => text,
    }
}

#[cfg(test)]
mod tests;
