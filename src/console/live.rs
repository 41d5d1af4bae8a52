//! The live view's WebSocket: one viewer of one live view link. The link's
//! key comes in the query (`/console/api/live?key=…`, which the live view
//! page takes from its URL's fragment); the link is checked when the
//! viewer connects and again every [`RECHECK`], so a revocation, the
//! link's expiry and the session's end all close the viewer.
//!
//! Server to viewer (text messages, JSON): `hello` (the link's mode and
//! scope), `tabs` (the pages it may show, and the one shown), `frame` (a
//! JPEG, base64, with the page's size in CSS pixels), `refused` (input on
//! a view-only link, a page out of scope) and `bye` (why it ends, before
//! the close frame).
//!
//! Viewer to server: `mouse`, `wheel`, `key`, `text` (input, forwarded
//! only on a control link, each field checked and bounded) and `tab` (show
//! another page the link allows).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::extract::{RawQuery, Request, State};
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use http::StatusCode;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};

use super::input::{FromViewer, input};
use super::screencast::Cast;
use super::{Console, ViewerSlot};
use crate::browser::PageInfo;
use crate::domain::live_view::{LinkRefusal, LiveViewLink};
use crate::front::http::{self as front_http, Socket, text};
use crate::sessions::Route;

/// The viewer socket's path.
pub const SOCKET_PATH: &str = "/console/api/live";
/// How often a viewer's link is checked again, and its pages listed.
const RECHECK: Duration = Duration::from_secs(1);
/// Largest message a viewer may send: input is small.
const MAX_VIEWER_MESSAGE: usize = 16 * 1024;

/// Upgrades a viewer's request, once its link checks out.
pub(super) async fn serve(
    State(console): State<Arc<Console>>,
    RawQuery(query): RawQuery,
    mut request: Request,
) -> Response {
    let key = query
        .unwrap_or_default()
        .split('&')
        .find_map(|pair| pair.strip_prefix("key=").map(str::to_owned))
        .unwrap_or_default();
    let accept = match front_http::handshake(
        &request,
        "the live view is a WebSocket: open the live view link in a browser",
    ) {
        Ok(accept) => accept,
        Err(refused) => return *refused,
    };
    let (link, route) = match console.engine.open_live_view(&key).await {
        Ok(opened) => opened,
        Err(refusal) => {
            let status = match refusal {
                LinkRefusal::Unknown => StatusCode::NOT_FOUND,
                LinkRefusal::Expired | LinkRefusal::Revoked | LinkRefusal::Ended => {
                    StatusCode::GONE
                }
                LinkRefusal::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            };
            return text(status, &refusal.to_string());
        }
    };
    let Some(slot) = console.viewer_slot(link.session_id) else {
        let body = format!(
            "this session has {} viewers, or the server its most: close one first",
            super::MAX_VIEWERS_PER_SESSION
        );
        return text(StatusCode::TOO_MANY_REQUESTS, &body);
    };
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_VIEWER_MESSAGE))
        .max_frame_size(Some(MAX_VIEWER_MESSAGE));
    let (response, socket) =
        front_http::upgrade(&mut request, accept, config, console.body_timeout);
    let tracker = console.tracker.clone();
    tracker.spawn(async move {
        if let Some(socket) = socket.await {
            view(console, key, link, route, socket, slot).await;
        }
    });
    response
}

/// Serves one viewer, its joining and leaving recorded.
async fn view(
    console: Arc<Console>,
    key: String,
    link: LiveViewLink,
    route: Route,
    socket: Socket,
    _slot: ViewerSlot,
) {
    let session = link.session_id;
    let actor = link.actor();
    if let Err(e) = console
        .engine
        .viewer_changed(session, true, actor.clone())
        .await
    {
        tracing::debug!(session.id = %session, error = %e, "cannot record a viewer joining");
    }
    let why = Viewer {
        console: &console,
        key,
        link,
        route,
        socket,
        cast: None,
        frames: None,
        ended: None,
        shown: None,
        pages: Vec::new(),
    }
    .run()
    .await;
    tracing::debug!(session.id = %session, %why, "live viewer left");
    if let Err(e) = console.engine.viewer_changed(session, false, actor).await {
        tracing::debug!(session.id = %session, error = %e, "cannot record a viewer leaving");
    }
}

struct Viewer<'a> {
    console: &'a Console,
    /// The link's key, checked again every [`RECHECK`].
    key: String,
    link: LiveViewLink,
    route: Route,
    socket: Socket,
    cast: Option<Arc<Cast>>,
    /// The shown cast's frames and end, as this viewer has seen them.
    frames: Option<tokio::sync::watch::Receiver<Option<Arc<str>>>>,
    ended: Option<tokio::sync::watch::Receiver<Option<String>>>,
    /// The page shown.
    shown: Option<String>,
    /// The pages the link may show, as last sent.
    pages: Vec<PageInfo>,
}

impl Viewer<'_> {
    /// Serves the viewer until it leaves or its link stops working; says
    /// why it ended.
    async fn run(mut self) -> String {
        let hello = json!({
            "type": "hello",
            "session_id": self.link.session_id.to_string(),
            "control": self.link.control,
            "all_pages": self.link.target_id.is_none(),
            "expires_at_ms": self.link.expires_at.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_millis() as u64,
        });
        if self.send(hello.to_string()).await.is_err() {
            return "the viewer went away".into();
        }
        let expiry = tokio::time::sleep(
            self.link
                .expires_at
                .duration_since(SystemTime::now())
                .unwrap_or_default(),
        );
        tokio::pin!(expiry);
        let mut recheck = tokio::time::interval(RECHECK);
        let closed = self.route.closed.clone();
        let stop = self.console.stop.clone();
        loop {
            let why = tokio::select! {
                () = &mut expiry => Some((CloseCode::Normal, LinkRefusal::Expired.to_string())),
                () = closed.cancelled() => Some((CloseCode::Normal, LinkRefusal::Ended.to_string())),
                () = stop.cancelled() => Some((CloseCode::Away, "browserd is shutting down".into())),
                _ = recheck.tick() => self.recheck().await.err(),
                changed = changed(&mut self.frames) => {
                    if changed {
                        let frame = self.frames.as_mut().and_then(|f| f.borrow_and_update().clone());
                        match frame {
                            Some(frame) if self.send(frame.to_string()).await.is_err() => {
                                return "the viewer went away".into();
                            }
                            _ => None,
                        }
                    } else {
                        None
                    }
                }
                why = cast_ended(&mut self.ended) => {
                    // The page closed: the next recheck shows another one.
                    tracing::debug!(session.id = %self.link.session_id, %why, "screencast ended");
                    self.cast = None;
                    self.frames = None;
                    self.ended = None;
                    self.shown = None;
                    self.pages.clear();
                    None
                }
                message = self.socket.next() => match message {
                    Some(Ok(Message::Text(text))) => self.on_message(&text).await.err(),
                    Some(Ok(Message::Close(_))) | None => return "the viewer closed".into(),
                    Some(Ok(_)) => None,
                    Some(Err(e)) => return format!("the viewer's connection failed: {e}"),
                },
            };
            if let Some((code, why)) = why {
                let _ = self
                    .send(json!({"type": "bye", "reason": why}).to_string())
                    .await;
                let frame = CloseFrame {
                    code,
                    reason: why.chars().take(100).collect::<String>().into(),
                };
                let _ = tokio::time::timeout(
                    Duration::from_secs(1),
                    self.socket.send(Message::Close(Some(frame))),
                )
                .await;
                return why;
            }
        }
    }

    async fn send(&mut self, text: String) -> Result<(), ()> {
        self.socket
            .send(Message::Text(text.into()))
            .await
            .map_err(drop)
    }

    /// Checks the link again and refreshes the pages; Err: the viewer must
    /// go, and why.
    async fn recheck(&mut self) -> Result<(), (CloseCode, String)> {
        match self.console.engine.open_live_view(&self.key).await {
            Ok(_) => {}
            // A database hiccup does not close a viewer: the next check
            // decides.
            Err(LinkRefusal::Unavailable(_)) => return Ok(()),
            Err(refusal) => return Err((CloseCode::Policy, refusal.to_string())),
        }
        let pages = match self.console.engine.pages(self.link.session_id).await {
            Ok((pages, _)) => pages,
            Err(_) => return Ok(()),
        };
        let pages: Vec<PageInfo> = pages
            .into_iter()
            .filter(|page| self.link.shows(&page.target_id))
            .collect();
        if self.shown.is_none()
            && let Some(first) = pages.first()
        {
            let target = first.target_id.clone();
            self.show(&target).await;
        }
        if pages != self.pages {
            self.pages = pages;
            self.send_tabs().await;
        }
        if self.pages.is_empty() && self.link.target_id.is_some() {
            return Err((CloseCode::Normal, "the page was closed".into()));
        }
        Ok(())
    }

    async fn send_tabs(&mut self) {
        let tabs: Vec<Value> = self
            .pages
            .iter()
            .map(|page| json!({"target": page.target_id, "title": page.title, "url": page.url}))
            .collect();
        let message = json!({"type": "tabs", "tabs": tabs, "shown": self.shown});
        let _ = self.send(message.to_string()).await;
    }

    /// Shows page `target` (which the link allows): joins its screencast.
    async fn show(&mut self, target: &str) {
        let session = match self.console.engine.read(self.link.session_id).await {
            Ok(session) => session,
            Err(_) => return,
        };
        let max = (session.viewport.width, session.viewport.height);
        let cast = self.console.screencasts.join(
            self.link.session_id,
            target,
            &self.route.browser,
            max,
            &self.console.tracker,
        );
        let mut frames = cast.frames();
        // A page that is not changing sends no new frame: the newest one
        // is shown at once.
        frames.mark_changed();
        self.frames = Some(frames);
        self.ended = Some(cast.ended());
        self.cast = Some(cast);
        self.shown = Some(target.to_owned());
    }

    async fn on_message(&mut self, text: &str) -> Result<(), (CloseCode, String)> {
        let message: FromViewer = match serde_json::from_str(text) {
            Ok(message) => message,
            Err(e) => {
                let reply =
                    json!({"type": "refused", "reason": format!("not a viewer message: {e}")});
                let _ = self.send(reply.to_string()).await;
                return Ok(());
            }
        };
        if let FromViewer::Tab { target } = &message {
            if self.link.shows(target) && self.pages.iter().any(|p| &p.target_id == target) {
                let target = target.clone();
                self.show(&target).await;
                self.send_tabs().await;
            } else {
                let reply =
                    json!({"type": "refused", "reason": "this link does not show that page"});
                let _ = self.send(reply.to_string()).await;
            }
            return Ok(());
        }
        if !self.link.control {
            let reply = json!({"type": "refused", "reason": "this is a view-only link: input is not forwarded"});
            let _ = self.send(reply.to_string()).await;
            return Ok(());
        }
        let Some(cast) = self.cast.clone() else {
            return Ok(());
        };
        match input(message) {
            Ok((method, params)) => cast.input(method, params).await,
            Err(reason) => {
                let reply = json!({"type": "refused", "reason": reason});
                let _ = self.send(reply.to_string()).await;
            }
        }
        Ok(())
    }
}

/// Resolves with `true` when a new frame is there; pends without a cast.
async fn changed(frames: &mut Option<tokio::sync::watch::Receiver<Option<Arc<str>>>>) -> bool {
    match frames {
        Some(frames) => {
            if frames.changed().await.is_err() {
                // The cast is gone; its end is reported separately.
                std::future::pending::<()>().await;
            }
            true
        }
        None => std::future::pending().await,
    }
}

/// Resolves once the screencast has ended on its own, with why.
async fn cast_ended(ended: &mut Option<tokio::sync::watch::Receiver<Option<String>>>) -> String {
    let Some(ended) = ended else {
        return std::future::pending().await;
    };
    let why = ended
        .wait_for(Option::is_some)
        .await
        .map(|why| why.clone().unwrap_or_default());
    match why {
        Ok(why) => why,
        Err(_) => std::future::pending().await,
    }
}
