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

use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};

use super::screencast::Cast;
use super::{Console, text};
use crate::browser::PageInfo;
use crate::relay::http::{self as relay_http, Head};
use crate::sessions::Route;
use crate::sessions::viewers::{LinkRefusal, LiveViewLink};

/// The viewer socket's path.
pub const SOCKET_PATH: &str = "/console/api/live";
/// How often a viewer's link is checked again, and its pages listed.
const RECHECK: Duration = Duration::from_secs(1);
/// Largest message a viewer may send: input is small.
const MAX_VIEWER_MESSAGE: usize = 16 * 1024;
/// Largest coordinate or delta taken, in CSS pixels.
const MAX_COORDINATE: f64 = 100_000.0;
/// Longest `text` input, and longest key name.
const MAX_TEXT_CHARS: usize = 1024;
const MAX_KEY_CHARS: usize = 32;

/// Upgrades a viewer's request, once its link checks out.
pub async fn serve<S>(console: &Console, mut stream: S, head: Head, early: Vec<u8>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let key = head
        .query
        .split('&')
        .find_map(|pair| pair.strip_prefix("key="))
        .unwrap_or_default()
        .to_owned();
    let refuse = |status, body: &str| text(status, body);
    let response = if !head.upgrade || head.method != "GET" || head.ws_key.is_none() {
        Some(refuse(
            http::StatusCode::BAD_REQUEST,
            "the live view is a WebSocket: open the live view link in a browser",
        ))
    } else if head.ws_version.as_deref() != Some("13") {
        Some(relay_http::upgrade_required(
            "this server speaks WebSocket version 13",
        ))
    } else {
        None
    };
    if let Some(response) = response {
        return console.respond(stream, &response).await;
    }
    let (link, route) = match console.engine.open_live_view(&key).await {
        Ok(opened) => opened,
        Err(refusal) => {
            let status = match refusal {
                LinkRefusal::Unknown => http::StatusCode::NOT_FOUND,
                LinkRefusal::Expired | LinkRefusal::Revoked | LinkRefusal::Ended => {
                    http::StatusCode::GONE
                }
                LinkRefusal::Unavailable(_) => http::StatusCode::SERVICE_UNAVAILABLE,
            };
            return console
                .respond(stream, &refuse(status, &refusal.to_string()))
                .await;
        }
    };
    let Some(_slot) = console.viewer_slot(link.session_id) else {
        let body = format!(
            "this session has {} viewers, or the server its most: close one first",
            super::MAX_VIEWERS_PER_SESSION
        );
        return console
            .respond(stream, &refuse(http::StatusCode::TOO_MANY_REQUESTS, &body))
            .await;
    };
    let Some(ws_key) = head.ws_key.as_deref() else {
        return;
    };
    let switched = relay_http::switching_protocols(ws_key);
    match tokio::time::timeout(console.body_timeout, stream.write_all(&switched)).await {
        Ok(Ok(())) => {}
        _ => return,
    }
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_VIEWER_MESSAGE))
        .max_frame_size(Some(MAX_VIEWER_MESSAGE));
    let socket =
        WebSocketStream::from_partially_read(stream, early, Role::Server, Some(config)).await;
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
        console,
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

struct Viewer<'a, S> {
    console: &'a Console,
    /// The link's key, checked again every [`RECHECK`].
    key: String,
    link: LiveViewLink,
    route: Route,
    socket: WebSocketStream<S>,
    cast: Option<Arc<Cast>>,
    /// The shown cast's frames and end, as this viewer has seen them.
    frames: Option<tokio::sync::watch::Receiver<Option<Arc<str>>>>,
    ended: Option<tokio::sync::watch::Receiver<Option<String>>>,
    /// The page shown.
    shown: Option<String>,
    /// The pages the link may show, as last sent.
    pages: Vec<PageInfo>,
}

/// What a viewer sends.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
enum FromViewer {
    Mouse {
        event: MouseEvent,
        x: f64,
        y: f64,
        #[serde(default)]
        button: Button,
        #[serde(default)]
        clicks: u8,
        #[serde(default)]
        modifiers: u8,
    },
    Wheel {
        x: f64,
        y: f64,
        dx: f64,
        dy: f64,
        #[serde(default)]
        modifiers: u8,
    },
    Key {
        event: KeyEvent,
        key: String,
        #[serde(default)]
        code: String,
        #[serde(default)]
        text: String,
        #[serde(default)]
        key_code: u16,
        #[serde(default)]
        modifiers: u8,
    },
    Text {
        text: String,
    },
    Tab {
        target: String,
    },
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum MouseEvent {
    Move,
    Down,
    Up,
}

#[derive(Deserialize, Clone, Copy, Default)]
#[serde(rename_all = "lowercase")]
enum Button {
    #[default]
    None,
    Left,
    Middle,
    Right,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum KeyEvent {
    Down,
    Up,
}

impl<S> Viewer<'_, S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
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

/// The CDP command for one input message, its fields checked.
fn input(message: FromViewer) -> Result<(&'static str, Value), String> {
    let point = |field: &str, value: f64| {
        if value.is_finite() && (-MAX_COORDINATE..=MAX_COORDINATE).contains(&value) {
            Ok(value)
        } else {
            Err(format!(
                "{field}: must be a number within ±{MAX_COORDINATE}"
            ))
        }
    };
    let modifiers = |m: u8| {
        if m <= 15 {
            Ok(m)
        } else {
            Err("modifiers: a bit set of Alt=1, Ctrl=2, Meta=4, Shift=8".to_owned())
        }
    };
    match message {
        FromViewer::Mouse {
            event,
            x,
            y,
            button,
            clicks,
            modifiers: m,
        } => {
            let kind = match event {
                MouseEvent::Move => "mouseMoved",
                MouseEvent::Down => "mousePressed",
                MouseEvent::Up => "mouseReleased",
            };
            let button = match button {
                Button::None => "none",
                Button::Left => "left",
                Button::Middle => "middle",
                Button::Right => "right",
            };
            if clicks > 3 {
                return Err("clicks: 0 to 3".into());
            }
            Ok((
                "Input.dispatchMouseEvent",
                json!({
                    "type": kind,
                    "x": point("x", x)?,
                    "y": point("y", y)?,
                    "button": button,
                    "clickCount": clicks,
                    "modifiers": modifiers(m)?,
                }),
            ))
        }
        FromViewer::Wheel {
            x,
            y,
            dx,
            dy,
            modifiers: m,
        } => Ok((
            "Input.dispatchMouseEvent",
            json!({
                "type": "mouseWheel",
                "x": point("x", x)?,
                "y": point("y", y)?,
                "deltaX": point("dx", dx)?,
                "deltaY": point("dy", dy)?,
                "modifiers": modifiers(m)?,
            }),
        )),
        FromViewer::Key {
            event,
            key,
            code,
            text,
            key_code,
            modifiers: m,
        } => {
            for (field, value) in [("key", &key), ("code", &code), ("text", &text)] {
                if value.chars().count() > MAX_KEY_CHARS {
                    return Err(format!("{field}: at most {MAX_KEY_CHARS} characters"));
                }
            }
            let mut params = json!({
                "type": match event {
                    KeyEvent::Down if !text.is_empty() => "keyDown",
                    KeyEvent::Down => "rawKeyDown",
                    KeyEvent::Up => "keyUp",
                },
                "key": key,
                "code": code,
                "windowsVirtualKeyCode": key_code,
                "modifiers": modifiers(m)?,
            });
            if !text.is_empty() {
                params["text"] = json!(text);
            }
            Ok(("Input.dispatchKeyEvent", params))
        }
        FromViewer::Text { text } => {
            if text.chars().count() > MAX_TEXT_CHARS {
                return Err(format!("text: at most {MAX_TEXT_CHARS} characters"));
            }
            Ok(("Input.insertText", json!({"text": text})))
        }
        FromViewer::Tab { .. } => Err("not input".into()),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> Result<(&'static str, Value), String> {
        input(serde_json::from_str(text).map_err(|e| e.to_string())?)
    }

    #[test]
    fn input_is_checked_and_built_from_typed_fields() {
        let (method, params) =
            parsed(r#"{"type":"mouse","event":"down","x":10,"y":20,"button":"left","clicks":1}"#)
                .unwrap();
        assert_eq!(method, "Input.dispatchMouseEvent");
        assert_eq!(params["type"], "mousePressed");
        assert_eq!(params["button"], "left");
        // Fields a viewer adds are refused, not forwarded.
        assert!(parsed(r#"{"type":"text","text":"a","sessionId":"X"}"#).is_err());
        assert!(parsed(r#"{"type":"mouse","event":"down","x":1e300,"y":0}"#).is_err());
        assert!(parsed(r#"{"type":"mouse","event":"down","x":0,"y":0,"modifiers":99}"#).is_err());
        assert!(
            parsed(&format!(
                r#"{{"type":"text","text":"{}"}}"#,
                "a".repeat(2000)
            ))
            .is_err()
        );
        let (_, key) = parsed(r#"{"type":"key","event":"down","key":"a","text":"a"}"#).unwrap();
        assert_eq!(key["type"], "keyDown");
        assert_eq!(key["text"], "a");
    }
}
