//! Files that cross between a relayed client and its session's browser by
//! path: uploads (`DOM.setFileInputFiles`, `Input.dispatchDragEvent`) and
//! downloads (`Browser.`/`Page.setDownloadBehavior`).
//!
//! A path a client names is a path on the client's host, which means
//! nothing to a jailed browser and, unchecked, lets any client read or
//! write any file browserd's browsers can. So the browser only ever sees
//! paths inside its own profile:
//! - a download path is always rewritten to a directory of the profile;
//! - a client of browserd's own user on this host (its socket, found in
//!   `/proc/net/tcp`, belongs to browserd's uid, and no process of a
//!   browser holds it: a page's own connection to the relay is never one,
//!   whatever uid its browser has) can already read and write
//!   everything browserd can, so browserd copies for it: named uploads into
//!   the profile, finished downloads out to the directory it asked for,
//!   before the browser's `downloadProgress` "completed" reaches it (what
//!   Playwright's `save_as` waits for);
//! - anyone else gets a CDP error for uploads by path (send contents
//!   instead) and finds its downloads only in the session's directory.
//!
//! Everything it makes in a profile belongs to the profile's owner (the
//! browser's user) and is reached without following symlinks, since the
//! browser may have replaced any of it; a copy out is written only as a
//! plain name inside the requested directory.
//!
//! It judges and rewrites messages and copies files; the pump sends them.

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::{Value, json};

mod profile;

use super::policy::{self, Verdict};
use crate::browser::Sockets;
use profile::{copy_in, copy_out, make_download_dir, plain_name};

/// Calls whose parameters name files on the client's host.
const UPLOADS: [&str; 2] = ["DOM.setFileInputFiles", "Input.dispatchDragEvent"];
const DOWNLOADS: [&str; 2] = ["Browser.setDownloadBehavior", "Page.setDownloadBehavior"];
/// The non-flattened way to talk to a target: a whole call inside a string.
const NESTED: &str = "Target.sendMessageToTarget";

/// One relayed connection's file exchange.
pub(super) struct Files {
    profile: PathBuf,
    /// The connection, when a client of browserd's own user may name
    /// paths (`--cdp-own-user-paths`).
    connection: Option<LocalClient>,
    /// Decided on the first call that needs it: most clients never do.
    trusted: Option<bool>,
    /// Per download scope (a browserContextId, `""` for the default
    /// context, `page:<sessionId>` for `Page.setDownloadBehavior`).
    scopes: HashMap<String, Scope>,
    /// `suggestedFilename` by download guid, for a browser that does not
    /// say where it put a finished file.
    names: HashMap<String, String>,
    /// Downloads already copied out (Browser. and Page.downloadProgress
    /// both report a completion).
    delivered: HashSet<String>,
    /// browserd turned download events on for its copies; the client did
    /// not ask for them, so they are not relayed.
    hide_events: bool,
    /// The client asked for download events itself.
    wants_events: bool,
}

/// A relayed connection as the host sees it: who may have made it.
pub(super) struct LocalClient {
    /// The relay's end, before TLS hides it.
    pub relay: SocketAddr,
    /// The client's end.
    pub peer: SocketAddr,
    pub sockets: Sockets,
}

struct Scope {
    /// The profile directory the browser writes this scope's files to.
    dir: String,
    /// Where a trusted client asked for them.
    requested: Option<PathBuf>,
}

/// What is needed of a client call. Unknown fields are dropped; a
/// duplicated known one makes the call unreadable, and it is refused.
#[derive(Deserialize)]
struct Call {
    id: Option<u64>,
    method: Option<String>,
    #[serde(rename = "sessionId")]
    session_id: Option<String>,
    params: Option<Value>,
}

/// A client call's head alone, its params skipped.
#[derive(Deserialize)]
struct Head {
    method: Option<String>,
    // Read so that a duplicate is an error here as in [`Call`].
    #[serde(rename = "id")]
    _id: Option<u64>,
    #[serde(rename = "sessionId")]
    _session_id: Option<String>,
    #[serde(rename = "params")]
    _params: Option<IgnoredAny>,
}

/// The reply to a message that may name a guarded call but cannot be read
/// as one JSON object: Chromium might read it as that call.
fn unreadable() -> Verdict {
    Verdict::Refuse(policy::error_reply(
        None,
        None,
        "a message that names a file or download call must be one JSON object without \
         duplicate keys",
    ))
}

impl Call {
    fn refuse(&self, rule: &str) -> Verdict {
        Verdict::Refuse(policy::error_reply(
            self.id,
            self.session_id.as_deref(),
            rule,
        ))
    }

    /// The call as the browser gets it: re-serialized from what was
    /// judged, so that no duplicate key or escape reads differently there.
    fn forward(&self) -> Verdict {
        let mut call = json!({ "id": self.id, "method": self.method });
        if let Some(session_id) = &self.session_id {
            call["sessionId"] = json!(session_id);
        }
        if let Some(params) = &self.params {
            call["params"] = params.clone();
        }
        Verdict::Replace(call.to_string())
    }
}

impl Files {
    pub(super) fn new(profile: PathBuf, connection: Option<LocalClient>) -> Self {
        Self {
            profile,
            connection,
            trusted: None,
            scopes: HashMap::new(),
            names: HashMap::new(),
            delivered: HashSet::new(),
            hide_events: false,
            wants_events: false,
        }
    }

    /// The verdict on one client message: [`Verdict::Forward`] unless it
    /// names files.
    pub(super) async fn judge(&mut self, text: &str) -> Verdict {
        self.on_client(text).await.unwrap_or(Verdict::Forward)
    }

    /// Whether one browser message goes on to the client; a finished
    /// download is copied out first.
    pub(super) async fn relays(&mut self, text: &str) -> bool {
        self.on_browser(text).await
    }

    /// The verdict on a client message that names files; `None` for every
    /// other message, which costs a few substring searches.
    async fn on_client(&mut self, text: &str) -> Option<Verdict> {
        if !may_name_files(text) {
            return None;
        }
        // Most messages that get here only hold an escape: their params
        // are skipped, not built.
        let method = match serde_json::from_str::<Head>(text) {
            Ok(head) => head.method?,
            Err(_) => return Some(unreadable()),
        };
        if !UPLOADS.contains(&method.as_str())
            && !DOWNLOADS.contains(&method.as_str())
            && method != NESTED
        {
            return None;
        }
        let Ok(mut call) = serde_json::from_str::<Call>(text) else {
            return Some(unreadable());
        };
        if UPLOADS.contains(&method.as_str()) {
            return Some(self.upload(call).await);
        }
        if DOWNLOADS.contains(&method.as_str()) {
            return Some(self.download_behavior(&mut call).await);
        }
        if method == NESTED {
            let inner = call
                .params
                .as_ref()
                .and_then(|p| p.get("message"))
                .and_then(Value::as_str)
                .unwrap_or_default();
            let guarded = may_name_files(inner)
                && serde_json::from_str::<Call>(inner).map_or(true, |inner| {
                    inner.method.is_some_and(|m| {
                        UPLOADS.contains(&m.as_str())
                            || DOWNLOADS.contains(&m.as_str())
                            || m == NESTED
                    })
                });
            if guarded {
                return Some(call.refuse(
                    "file and download calls go on a flattened session (Target.attachToTarget \
                     with flatten: true), not inside Target.sendMessageToTarget",
                ));
            }
        }
        None
    }

    async fn on_browser(&mut self, text: &str) -> bool {
        // Replies, the large messages (screenshots, evaluate results), start
        // with their id and are never download events.
        if self.scopes.is_empty()
            || text.starts_with("{\"id\":")
            || !(text.contains("\"Browser.download") || text.contains("\"Page.download"))
        {
            return true;
        }
        let Ok(event) = serde_json::from_str::<Value>(text) else {
            return true;
        };
        let method = event["method"].as_str().unwrap_or_default();
        let params = &event["params"];
        let guid = params["guid"].as_str().unwrap_or_default();
        match method {
            "Browser.downloadWillBegin" | "Page.downloadWillBegin" => {
                if let Some(name) = params["suggestedFilename"].as_str() {
                    self.names.insert(guid.to_owned(), name.to_owned());
                }
            }
            "Browser.downloadProgress" | "Page.downloadProgress" => {
                if params["state"] == "completed" && self.delivered.insert(guid.to_owned()) {
                    self.deliver(guid, params["filePath"].as_str()).await;
                }
            }
            _ => return true,
        }
        !(self.hide_events && !self.wants_events && method.starts_with("Browser."))
    }

    async fn trusted(&mut self) -> bool {
        if let Some(trusted) = self.trusted {
            return trusted;
        }
        let trusted = match &self.connection {
            Some(client) => client.sockets.of_own_user(client.peer, client.relay).await,
            None => false,
        };
        tracing::debug!(trusted, "cdp client: may it exchange files by path");
        self.trusted = Some(trusted);
        trusted
    }

    /// Uploads by path: copied into the profile for a trusted client,
    /// refused for anyone else.
    async fn upload(&mut self, mut call: Call) -> Verdict {
        let drag = call.method.as_deref() == Some("Input.dispatchDragEvent");
        let files = call.params.as_mut().and_then(|params| {
            let params = if drag {
                params.get_mut("data")?
            } else {
                params
            };
            params.get_mut("files")
        });
        let Some(Value::Array(files)) = files else {
            return call.forward();
        };
        if files.is_empty() {
            return call.forward();
        }
        if !self.trusted().await {
            return call.refuse(
                "files are uploaded by contents, not by path, except by a client of browserd's \
                 own user on its host (Playwright: set_input_files with {name, mimeType, buffer})",
            );
        }
        for file in files.iter_mut() {
            let Some(source) = file.as_str().map(PathBuf::from) else {
                return call.refuse("files must be paths");
            };
            let profile = self.profile.clone();
            let copied = tokio::task::spawn_blocking(move || copy_in(&profile, &source))
                .await
                .unwrap_or_else(|e| Err(e.to_string()));
            match copied {
                Ok(path) => *file = Value::String(path),
                Err(e) => return call.refuse(&e),
            }
        }
        call.forward()
    }

    /// A download path becomes a directory of the profile; a trusted
    /// client's own is remembered for the copy out.
    async fn download_behavior(&mut self, call: &mut Call) -> Verdict {
        let page = call.method.as_deref() == Some("Page.setDownloadBehavior");
        let scope = match (&call.params, page) {
            (_, true) => format!("page:{}", call.session_id.as_deref().unwrap_or_default()),
            (Some(params), false) => params["browserContextId"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            (None, false) => String::new(),
        };
        let Some(requested) = call
            .params
            .as_ref()
            .and_then(|p| p.get("downloadPath"))
            .cloned()
        else {
            return call.forward();
        };
        let Some(requested) = requested.as_str().map(PathBuf::from) else {
            return call.refuse("downloadPath must be a string");
        };
        if !requested.is_absolute() {
            return call.refuse("downloadPath must be an absolute path");
        }
        let trusted = self.trusted().await;
        let dir = match self.scopes.get(&scope) {
            Some(known) => known.dir.clone(),
            None => match make_download_dir(&self.profile) {
                Ok(dir) => dir,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot make a download directory in the profile");
                    return call.refuse("the session cannot take downloads now");
                }
            },
        };
        let params = call.params.get_or_insert_with(|| json!({}));
        params["downloadPath"] = json!(dir);
        if trusted && !page {
            if params["eventsEnabled"] == true {
                self.wants_events = true;
            } else {
                // Completions are what browserd copies on.
                params["eventsEnabled"] = json!(true);
                self.hide_events = true;
            }
        }
        self.scopes.insert(
            scope,
            Scope {
                dir,
                requested: trusted.then_some(requested),
            },
        );
        call.forward()
    }

    /// Copies a finished download of a trusted client's scope to the
    /// directory it asked for, under the name the browser gave it.
    async fn deliver(&self, guid: &str, reported: Option<&str>) {
        let candidates: Vec<(&Scope, String)> = self
            .scopes
            .values()
            .filter(|scope| scope.requested.is_some())
            .flat_map(|scope| {
                let names: Vec<String> = match reported.map(Path::new) {
                    Some(path) => path
                        .parent()
                        .filter(|parent| *parent == Path::new(&scope.dir))
                        .and_then(|_| path.file_name()?.to_str())
                        .map(str::to_owned)
                        .into_iter()
                        .collect(),
                    None => [Some(guid), self.names.get(guid).map(String::as_str)]
                        .into_iter()
                        .flatten()
                        .map(str::to_owned)
                        .collect(),
                };
                names.into_iter().map(move |name| (scope, name))
            })
            .filter(|(_, name)| plain_name(name))
            .collect();
        for (scope, name) in candidates {
            let (profile, dir, requested) = (
                self.profile.clone(),
                scope.dir.clone(),
                scope.requested.clone().unwrap_or_default(),
            );
            let copy = name.clone();
            let copied = tokio::task::spawn_blocking(move || {
                copy_out(&profile, Path::new(&dir), &copy, &requested)
            })
            .await;
            match copied {
                Ok(Ok(())) => return,
                Ok(Err(e)) if e.kind() == io::ErrorKind::NotFound => {}
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "cannot copy a finished download to the client's directory");
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "the download copy did not finish");
                    return;
                }
            }
        }
        tracing::debug!(guid, "a finished download was not found to copy");
    }
}

/// Whether a message may be one of the guarded calls. A JSON escape can
/// spell a method name without its bytes, so any message with one is read.
fn may_name_files(text: &str) -> bool {
    text.contains("setFileInputFiles")
        || text.contains("dispatchDragEvent")
        || text.contains("DownloadBehavior")
        || text.contains(NESTED)
        || text.contains("\\u")
}

#[cfg(test)]
mod tests;
