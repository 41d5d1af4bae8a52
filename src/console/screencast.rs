//! Screencasts of pages, one per (session, page) however many viewers
//! watch it: started when the first viewer joins, stopped when the last
//! one leaves (the [`Cast`] is dropped), each frame acknowledged as soon
//! as it arrives so the browser sends the next, and only the newest frame
//! kept: a slow viewer skips frames, it never holds up the browser or the
//! other viewers.
//!
//! browserd talks to the page on a CDP session of its own: a browser-level
//! session on the browser's pipe ([`Pipe::connect`], as a relayed client
//! gets), through which it attaches to the page target (flattened). The
//! user's automation client sees none of it: no message of this session
//! reaches a client, `Page.enable` is never sent (`Page.startScreencast`
//! does not need it), and input goes on this session too. What a client
//! can notice: `Target.getTargets` reports the page `attached: true` while
//! it is watched (it already is whenever a client attached to it), and
//! Chromium renders frames for the screencast, which costs CPU.
//!
//! Input reaches this module already checked: the CDP messages are built
//! here from typed fields, never copied from a viewer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::browser::pipe::{Delivery, Pipe, PipeClient};
use crate::domain::session::SessionId;

/// JPEG quality of frames: readable text at a fraction of PNG's size.
pub const QUALITY: u32 = 60;
/// Frames of an animated page sent: every second one, about 30 a second
/// at Chromium's 60. Encoding each frame costs the browser more CPU than
/// anything else here; 30 frames a second is smooth enough to operate a
/// page through.
const EVERY_NTH_FRAME: u32 = 2;
/// How long attaching to a page may take.
const ATTACH_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a page that sends no screencast frame is captured instead.
const STILL_EVERY: Duration = Duration::from_secs(1);
/// Input messages queued for one page before viewers wait.
const INPUT_QUEUE: usize = 64;

/// Every screencast running, by session and page.
#[derive(Default)]
pub struct Screencasts {
    casts: Mutex<HashMap<(SessionId, String), Weak<Cast>>>,
}

/// One page's screencast, shared by its viewers. Dropping the last
/// handle stops it.
pub struct Cast {
    /// The newest frame, as the message viewers are sent.
    frames: watch::Receiver<Option<Arc<str>>>,
    /// Input for the page.
    input: mpsc::Sender<Value>,
    /// Why it stopped on its own (the page closed, the browser went away).
    ended: watch::Receiver<Option<String>>,
    stop: CancellationToken,
}

impl Drop for Cast {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Cast {
    pub fn frames(&self) -> watch::Receiver<Option<Arc<str>>> {
        self.frames.clone()
    }

    pub fn ended(&self) -> watch::Receiver<Option<String>> {
        self.ended.clone()
    }

    /// Sends one input command (`Input.*`) to the page.
    pub async fn input(&self, method: &'static str, params: Value) {
        let _ = self
            .input
            .send(json!({"method": method, "params": params}))
            .await;
    }
}

impl Screencasts {
    /// The screencast of page `target` of `session`: the running one, or a
    /// new one on `pipe`, whose frames are at most `max` CSS pixels.
    pub fn join(
        &self,
        session: SessionId,
        target: &str,
        pipe: &Pipe,
        max: (u32, u32),
        tracker: &tokio_util::task::TaskTracker,
    ) -> Arc<Cast> {
        let mut casts = self.casts.lock().expect("screencasts poisoned");
        casts.retain(|_, cast| cast.strong_count() > 0);
        let key = (session, target.to_owned());
        if let Some(cast) = casts.get(&key).and_then(Weak::upgrade)
            && cast.ended.borrow().is_none()
        {
            return cast;
        }
        let (frames_tx, frames) = watch::channel(None);
        let (ended_tx, ended) = watch::channel(None);
        let (input, input_rx) = mpsc::channel(INPUT_QUEUE);
        let stop = CancellationToken::new();
        let cast = Arc::new(Cast {
            frames,
            input,
            ended,
            stop: stop.clone(),
        });
        casts.insert(key, Arc::downgrade(&cast));
        let pipe = pipe.clone();
        let target = target.to_owned();
        tracker.spawn(async move {
            let why = run(pipe, &target, max, frames_tx, input_rx, stop).await;
            tracing::debug!(session.id = %session, %why, "screencast stopped");
            ended_tx.send_replace(Some(why));
        });
        cast
    }

    /// Screencasts running now (for tests and the bench).
    pub fn running(&self) -> usize {
        let casts = self.casts.lock().expect("screencasts poisoned");
        casts
            .values()
            .filter(|cast| cast.strong_count() > 0)
            .count()
    }
}

/// Runs one screencast until `stop` (the last viewer left) or until it
/// cannot go on; says why it stopped.
async fn run(
    pipe: Pipe,
    target: &str,
    max: (u32, u32),
    frames: watch::Sender<Option<Arc<str>>>,
    mut input: mpsc::Receiver<Value>,
    stop: CancellationToken,
) -> String {
    // Dropped on return: its browser session detaches, which detaches the
    // page session and ends the screencast in the browser.
    let mut client = match pipe.connect(ATTACH_TIMEOUT).await {
        Ok(client) => client,
        Err(e) => return format!("cannot reach the browser: {e}"),
    };
    let attach = tokio::select! {
        attached = tokio::time::timeout(ATTACH_TIMEOUT, attach(&mut client, target)) => attached,
        () = stop.cancelled() => return "no viewer left".into(),
    };
    let session = match attach {
        Ok(Ok(session)) => session,
        Ok(Err(why)) => return why,
        Err(_) => return "the page did not answer in time".into(),
    };
    let mut next_id: u64 = 10;
    let start = json!({
        "id": 2,
        "sessionId": session,
        "method": "Page.startScreencast",
        "params": {
            "format": "jpeg",
            "quality": QUALITY,
            "maxWidth": max.0,
            "maxHeight": max.1,
            "everyNthFrame": EVERY_NTH_FRAME,
        },
    });
    if client.send(&start.to_string()).await.is_err() {
        return "the browser is gone".into();
    }
    // Chromium sends screencast frames only when the page paints, and
    // none at all for a tab that is not the front one (headless too): a
    // page silent for a [`STILL_EVERY`] is captured instead, so a viewer
    // always sees it, at worst that often.
    let mut still = tokio::time::interval(STILL_EVERY);
    let mut last_frame = tokio::time::Instant::now();
    let mut capture: Option<u64> = None;
    loop {
        tokio::select! {
            _ = still.tick() => {
                if capture.is_none() && last_frame.elapsed() >= STILL_EVERY {
                    next_id += 1;
                    capture = Some(next_id);
                    let shot = json!({
                        "id": next_id,
                        "sessionId": session,
                        "method": "Page.captureScreenshot",
                        "params": {"format": "jpeg", "quality": QUALITY},
                    });
                    if client.send(&shot.to_string()).await.is_err() {
                        return "the browser is gone".into();
                    }
                }
            }
            () = stop.cancelled() => {
                let stop = json!({"id": 3, "sessionId": session, "method": "Page.stopScreencast"});
                let _ = client.send(&stop.to_string()).await;
                return "no viewer left".into();
            }
            command = input.recv() => {
                let Some(mut command) = command else { return "no viewer left".into() };
                next_id += 1;
                command["id"] = json!(next_id);
                command["sessionId"] = json!(session);
                if client.send(&command.to_string()).await.is_err() {
                    return "the browser is gone".into();
                }
            }
            delivery = client.recv() => {
                let text = match delivery {
                    Some(Delivery::Message(text)) => text,
                    // Frames are far below the message limit; an oversized
                    // one is skipped (the browser then waits for its ack,
                    // and the viewers see the last frame).
                    Some(Delivery::TooLarge) => continue,
                    None => return "the browser is gone".into(),
                };
                let Ok(message) = serde_json::from_str::<Value>(&text) else { continue };
                match message["method"].as_str() {
                    Some("Page.screencastFrame") if message["sessionId"] == session => {
                        let params = &message["params"];
                        let ack = json!({
                            "id": 4,
                            "sessionId": session,
                            "method": "Page.screencastFrameAck",
                            "params": {"sessionId": params["sessionId"]},
                        });
                        if client.send(&ack.to_string()).await.is_err() {
                            return "the browser is gone".into();
                        }
                        let meta = &params["metadata"];
                        let frame = json!({
                            "type": "frame",
                            "target": target,
                            "width": meta["deviceWidth"],
                            "height": meta["deviceHeight"],
                            "data": params["data"],
                        });
                        frames.send_replace(Some(frame.to_string().into()));
                        last_frame = tokio::time::Instant::now();
                    }
                    _ if capture.is_some() && message["id"].as_u64() == capture => {
                        capture = None;
                        last_frame = tokio::time::Instant::now();
                        if let Some(data) = message["result"]["data"].as_str() {
                            let frame = json!({
                                "type": "frame",
                                "target": target,
                                "width": max.0,
                                "height": max.1,
                                "data": data,
                            });
                            frames.send_replace(Some(frame.to_string().into()));
                        }
                    }
                    Some("Target.detachedFromTarget") if message["params"]["sessionId"] == session => {
                        return "the page was closed".into();
                    }
                    _ if message["id"] == 2 && message.get("error").is_some() => {
                        return format!("the page refused the screencast: {}", message["error"]["message"]);
                    }
                    _ => {}
                }
            }
        }
    }
}

/// Attaches browserd's session to page `target` and returns the page
/// session's id, once the pipe knows it as this client's (it learns that
/// from `Target.attachedToTarget`, which may come before or after the
/// reply).
async fn attach(client: &mut PipeClient, target: &str) -> Result<String, String> {
    let request = json!({
        "id": 1,
        "method": "Target.attachToTarget",
        "params": {"targetId": target, "flatten": true},
    });
    client
        .send(&request.to_string())
        .await
        .map_err(|_| "the browser is gone".to_owned())?;
    let (mut replied, mut announced) = (None::<String>, Vec::<String>::new());
    loop {
        let Some(Delivery::Message(text)) = client.recv().await else {
            return Err("the browser is gone".into());
        };
        let Ok(message) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        if message["id"] == 1 {
            if let Some(error) = message.get("error") {
                return Err(format!("no such page: {}", error["message"]));
            }
            replied = message["result"]["sessionId"].as_str().map(str::to_owned);
        } else if message["method"] == "Target.attachedToTarget"
            && let Some(id) = message["params"]["sessionId"].as_str()
        {
            announced.push(id.to_owned());
        }
        if let Some(session) = &replied
            && announced.contains(session)
        {
            return Ok(session.clone());
        }
    }
}
