//! Files crossing the relay by path: a client of browserd's own user on
//! this host uploads and downloads as Playwright does; any other client
//! names no host path: not browserd's database for an upload, not another
//! session's profile for its downloads.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use browserd::pb;
use futures_util::SinkExt;
use serde_json::{Value, json};
use tokio_stream::StreamExt;
use tokio_tungstenite::tungstenite::Message;

use crate::on_both_backends;
use crate::support::*;

type Socket = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// A raw CDP client that keeps the events it reads past.
struct Client {
    socket: Socket,
    next_id: u64,
    events: VecDeque<Value>,
}

impl Client {
    /// Connects to `connect_url` from a socket made as user `uid`.
    async fn connect(connect_url: &str, uid: Option<u32>) -> Self {
        let stream = relay_socket(connect_url, uid);
        let (socket, _) = tokio_tungstenite::client_async(connect_url, stream)
            .await
            .expect("a WebSocket through the relay");
        Self {
            socket,
            next_id: 0,
            events: VecDeque::new(),
        }
    }

    async fn read(&mut self) -> Value {
        loop {
            let frame = tokio::time::timeout(EVENT_WAIT, self.socket.next())
                .await
                .expect("a message through the relay")
                .expect("socket open")
                .expect("frame");
            if let Message::Text(text) = frame {
                return serde_json::from_str(&text).expect("CDP sends JSON");
            }
        }
    }

    /// The whole reply to one call (`result` or `error`).
    async fn send(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut call = json!({"id": id, "method": method, "params": params});
        if let Some(session) = session {
            call["sessionId"] = json!(session);
        }
        self.socket
            .send(Message::text(call.to_string()))
            .await
            .expect("send through the relay");
        loop {
            let message = self.read().await;
            if message["id"] == id {
                return message;
            }
            self.events.push_back(message);
        }
    }

    async fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        let reply = self.send(session, method, params).await;
        assert!(reply["error"].is_null(), "{method}: {reply}");
        reply["result"].clone()
    }

    /// The first event of `method` whose params satisfy `wanted`.
    async fn event(&mut self, method: &str, wanted: impl Fn(&Value) -> bool) -> Value {
        let matches = |m: &Value| m["method"] == method && wanted(&m["params"]);
        if let Some(at) = self.events.iter().position(matches) {
            return self.events.remove(at).expect("found").clone()["params"].clone();
        }
        loop {
            let message = self.read().await;
            if matches(&message) {
                return message["params"].clone();
            }
        }
    }

    /// A new blank page, attached flat; returns its session id.
    async fn page(&mut self) -> String {
        let target = self
            .call(None, "Target.createTarget", json!({"url": "about:blank"}))
            .await;
        let attached = self
            .call(
                None,
                "Target.attachToTarget",
                json!({"targetId": target["targetId"], "flatten": true}),
            )
            .await;
        attached["sessionId"]
            .as_str()
            .expect("a session")
            .to_owned()
    }

    async fn evaluate(&mut self, page: &str, expression: &str) -> Value {
        let result = self
            .call(
                Some(page),
                "Runtime.evaluate",
                json!({"expression": expression, "awaitPromise": true, "returnByValue": true,
                       "userGesture": true}),
            )
            .await;
        assert!(result["exceptionDetails"].is_null(), "{result}");
        result["result"]["value"].clone()
    }

    /// Sets a file input of the page to `files` by path; the raw reply.
    async fn set_input_files(&mut self, page: &str, files: &[&Path]) -> Value {
        let input = self
            .call(
                Some(page),
                "Runtime.evaluate",
                json!({"expression": "document.body.innerHTML = '<input type=file multiple>'; \
                                     document.querySelector('input')"}),
            )
            .await;
        self.send(
            Some(page),
            "DOM.setFileInputFiles",
            json!({"files": files, "objectId": input["result"]["objectId"]}),
        )
        .await
    }

    /// Starts a download of `content` named `name` in the page; returns
    /// its guid once it completed.
    async fn download(&mut self, page: &str, name: &str, content: &str) -> String {
        self.evaluate(
            page,
            &format!(
                "const a = document.createElement('a'); \
                 a.href = URL.createObjectURL(new Blob([{content:?}])); a.download = {name:?}; \
                 document.body.append(a); a.click(); true"
            ),
        )
        .await;
        let done = self
            .event("Browser.downloadProgress", |p| p["state"] == "completed")
            .await;
        done["guid"].as_str().expect("a guid").to_owned()
    }
}

/// Every regular file under `dir` holding `content`.
fn files_holding(dir: &Path, content: &str) -> Vec<PathBuf> {
    files_under(dir)
        .into_iter()
        .filter(|path| std::fs::read(path).is_ok_and(|bytes| bytes == content.as_bytes()))
        .collect()
}

async fn a_client_of_browserds_user_uploads_and_downloads_by_path(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let session = app.create(pb::CreateSessionRequest::default()).await;
    let mut client = Client::connect(&session.connect_url, None).await;
    let page = client.page().await;

    // Two files of the same name from different directories, as a client
    // names them on its own host.
    let host = tempfile::tempdir().expect("the client's files");
    let (one, two) = (host.path().join("one"), host.path().join("two"));
    for (dir, content) in [(&one, "first upload"), (&two, "second upload")] {
        std::fs::create_dir(dir).expect("a dir");
        std::fs::write(dir.join("report.txt"), content).expect("a file");
    }
    let reply = client
        .set_input_files(&page, &[&one.join("report.txt"), &two.join("report.txt")])
        .await;
    assert!(reply["error"].is_null(), "{reply}");
    let read = client
        .evaluate(
            &page,
            "Promise.all([...document.querySelector('input').files] \
               .map(async f => f.name + ': ' + await f.text()))",
        )
        .await;
    assert_eq!(
        read,
        json!(["report.txt: first upload", "report.txt: second upload"])
    );

    // Playwright's way: named by guid in its own directory, found there
    // when the completion event arrives.
    let downloads = tempfile::tempdir().expect("the client's download dir");
    client
        .call(
            None,
            "Browser.setDownloadBehavior",
            json!({"behavior": "allowAndName", "downloadPath": downloads.path(),
                   "eventsEnabled": true}),
        )
        .await;
    let guid = client.download(&page, "a.txt", "downloaded once").await;
    assert_eq!(
        std::fs::read_to_string(downloads.path().join(&guid)).expect("the download, by guid"),
        "downloaded once"
    );

    // Puppeteer's way, from a second client: by name, and no events
    // asked for (browserd turns them on for its copy and keeps them from
    // the client).
    let mut second = Client::connect(&session.connect_url, None).await;
    let page = second.page().await;
    let named = tempfile::tempdir().expect("another download dir");
    second
        .call(
            None,
            "Browser.setDownloadBehavior",
            json!({"behavior": "allow", "downloadPath": named.path()}),
        )
        .await;
    second
        .evaluate(
            &page,
            "const b = document.createElement('a'); \
             b.href = URL.createObjectURL(new Blob(['downloaded twice'])); b.download = 'b.txt'; \
             document.body.append(b); b.click(); true",
        )
        .await;
    let file = named.path().join("b.txt");
    eventually("the download copied by its name", async || {
        std::fs::read_to_string(&file).is_ok_and(|text| text == "downloaded twice")
    })
    .await;
    // A reply comes after every event the browser sent before it.
    second.call(None, "Browser.getVersion", json!({})).await;
    let unasked: Vec<&Value> = second
        .events
        .iter()
        .filter(|e| {
            e["method"]
                .as_str()
                .is_some_and(|m| m.starts_with("Browser.download"))
        })
        .collect();
    assert!(
        unasked.is_empty(),
        "events the client did not ask for: {unasked:?}"
    );
    app.release(&session.id).await;
    app.stop().await;
}

async fn other_clients_name_no_host_path(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let a = app.create(pb::CreateSessionRequest::default()).await;
    let b = app.create(pb::CreateSessionRequest::default()).await;
    let (profile_a, profile_b) = (
        app.profiles_dir().join(&a.id),
        app.profiles_dir().join(&b.id),
    );
    let mut client = Client::connect(&a.connect_url, Some(FOREIGN_UID)).await;
    let page = client.page().await;

    // The database (SQLite's file; a file of the data dir either way).
    let canary = app.data_dir.path().join("canary");
    std::fs::write(&canary, "browserd's own").expect("a canary");
    let mut named = vec![canary.as_path()];
    let database = app.data_dir.path().join("browserd.db");
    if database.exists() {
        named.push(&database);
    }
    let reply = client.set_input_files(&page, &named).await;
    let message = reply["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("by contents"),
        "an upload by path was not refused: {reply}"
    );
    assert_eq!(
        client
            .evaluate(&page, "document.querySelector('input').files.length")
            .await,
        0
    );

    // Its downloads go to its own profile, whatever it names.
    client
        .call(
            None,
            "Browser.setDownloadBehavior",
            json!({"behavior": "allowAndName", "downloadPath": &profile_b,
                   "eventsEnabled": true}),
        )
        .await;
    client.download(&page, "planted", "planted by A").await;
    assert_eq!(
        files_holding(&profile_b, "planted by A"),
        Vec::<PathBuf>::new(),
        "A wrote into B's profile"
    );
    let landed = files_holding(&profile_a, "planted by A");
    assert_eq!(
        landed.len(),
        1,
        "the download stays in A's profile: {landed:?}"
    );
    app.release(&a.id).await;
    app.release(&b.id).await;
    app.stop().await;
}

/// Behind a proxy that runs as browserd's user, every client would look
/// local: the operator turns paths off for everyone.
async fn paths_can_be_refused_to_browserds_own_user(backend: Backend) {
    let mut app = spawn_app_with(backend, |c| c.cdp_own_user_paths = false).await;
    let session = app.create(pb::CreateSessionRequest::default()).await;
    let mut client = Client::connect(&session.connect_url, None).await;
    let page = client.page().await;
    let host = tempfile::tempdir().expect("the client's files");
    let file = host.path().join("report.txt");
    std::fs::write(&file, "by path").expect("a file");
    let reply = client.set_input_files(&page, &[&file]).await;
    assert!(
        reply["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("by contents")),
        "{reply}"
    );
    app.release(&session.id).await;
    app.stop().await;
}

on_both_backends!(
    a_client_of_browserds_user_uploads_and_downloads_by_path,
    other_clients_name_no_host_path,
    paths_can_be_refused_to_browserds_own_user,
);
