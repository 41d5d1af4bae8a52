//! A persistent context's browser state, with real Chromium and the
//! browser layer alone (no server, no database): a browser logs in to a
//! local site, its state is saved (graceful close), sealed and opened, and
//! a new browser restored from it is still logged in. Jailed and not.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use browserd::browser::jail::Jail;
use browserd::browser::pipe::{Delivery, PipeClient};
use browserd::browser::{Browser, LaunchOptions, Launcher, find_chrome};
use browserd::contexts::{self, SealKey};
use browserd::secret::ServerSecret;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use crate::support::read_head;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Every wait on the browser: far above what each step takes.
const WAIT: Duration = Duration::from_secs(30);

/// Stores a login three ways: the server sets a session cookie (no
/// Max-Age, HttpOnly) and a persistent one, and the page's script writes
/// localStorage and an IndexedDB record, and registers a service worker.
/// `window.done` settles when all are written.
const LOGIN: &str = r#"<html><body><script>
const opened = () => new Promise((ok, fail) => {
  const open = indexedDB.open('app', 1);
  open.onupgradeneeded = () => open.result.createObjectStore('auth');
  open.onsuccess = () => ok(open.result);
  open.onerror = () => fail(open.error);
});
window.done = (async () => {
  localStorage.setItem('user', 'alice');
  const db = await opened();
  await new Promise((ok, fail) => {
    const tx = db.transaction('auth', 'readwrite');
    tx.objectStore('auth').put('token-123', 'token');
    tx.oncomplete = ok;
    tx.onerror = () => fail(tx.error);
  });
  await navigator.serviceWorker.register('/sw.js');
  await navigator.serviceWorker.ready;
  return 'saved';
})();
</script></body></html>"#;

/// Reads back what [`LOGIN`] stored that a page can see.
const CHECK: &str = r#"<html><body><script>
const opened = () => new Promise((ok, fail) => {
  const open = indexedDB.open('app', 1);
  open.onupgradeneeded = () => open.result.createObjectStore('auth');
  open.onsuccess = () => ok(open.result);
  open.onerror = () => fail(open.error);
});
window.done = (async () => {
  const db = await opened();
  const token = await new Promise((ok, fail) => {
    const get = db.transaction('auth').objectStore('auth').get('token');
    get.onsuccess = () => ok(get.result ?? null);
    get.onerror = () => fail(get.error);
  });
  const workers = (await navigator.serviceWorker.getRegistrations()).length;
  return JSON.stringify({user: localStorage.getItem('user'), token, workers, cookies: document.cookie});
})();
</script></body></html>"#;

/// The site on 127.0.0.1, and the `Cookie` header of each `/check` it was
/// sent ("" for none).
struct Site {
    addr: std::net::SocketAddr,
    checks: Arc<Mutex<Vec<String>>>,
}

async fn serve_site(session_id: &'static str) -> Site {
    let listener = tokio::net::TcpListener::bind((browserd::harness::PAGE_HOST, 0))
        .await
        .expect("bind the site");
    let addr = listener.local_addr().expect("site addr");
    let checks = Arc::new(Mutex::new(Vec::new()));
    let seen = checks.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let Some(head) = read_head(&mut socket).await else {
                    return;
                };
                let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
                let (body, cookies) = match path.as_str() {
                    "/login" => (
                        LOGIN,
                        format!(
                            "set-cookie: sid={session_id}; Path=/; HttpOnly\r\n\
                             set-cookie: remember=yes; Path=/; Max-Age=86400\r\n"
                        ),
                    ),
                    "/check" => {
                        let sent = head
                            .lines()
                            .find_map(|l| l.strip_prefix("Cookie: ").or(l.strip_prefix("cookie: ")))
                            .unwrap_or_default();
                        seen.lock().expect("checks").push(sent.to_owned());
                        (CHECK, String::new())
                    }
                    "/sw.js" => ("self.addEventListener('fetch', () => {});", String::new()),
                    _ => ("", String::new()),
                };
                let kind = if path.ends_with(".js") {
                    "text/javascript"
                } else {
                    "text/html"
                };
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: {kind}\r\ncontent-length: {}\r\n{cookies}connection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
            });
        }
    });
    Site { addr, checks }
}

/// One page of a browser, driven over browserd's own CDP pipe.
struct Tab {
    client: PipeClient,
    session: String,
    next_id: u64,
    /// Events read while waiting for a reply.
    events: Vec<Value>,
}

impl Tab {
    async fn open(browser: &Browser) -> Tab {
        let client = browser.pipe().connect(WAIT).await.expect("pipe client");
        let mut tab = Tab {
            client,
            session: String::new(),
            next_id: 0,
            events: Vec::new(),
        };
        let target = tab
            .call("Target.createTarget", json!({"url": "about:blank"}), false)
            .await;
        let attached = tab
            .call(
                "Target.attachToTarget",
                json!({"targetId": target["targetId"], "flatten": true}),
                false,
            )
            .await;
        tab.session = attached["sessionId"].as_str().expect("session").to_owned();
        tab.call("Page.enable", json!({}), true).await;
        tab.call(
            "Page.setLifecycleEventsEnabled",
            json!({"enabled": true}),
            true,
        )
        .await;
        tab
    }

    async fn next(&mut self) -> Value {
        let delivery = tokio::time::timeout(WAIT, self.client.recv())
            .await
            .expect("the browser answers in time")
            .expect("the browser is still there");
        match delivery {
            Delivery::Message(text) => serde_json::from_str(&text).expect("CDP is JSON"),
            Delivery::TooLarge => panic!("a CDP message over the size limit"),
        }
    }

    async fn call(&mut self, method: &str, params: Value, on_page: bool) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({"id": id, "method": method, "params": params});
        if on_page {
            message["sessionId"] = json!(self.session);
        }
        if self.client.send(&message.to_string()).await.is_err() {
            panic!("{method} was not sent");
        }
        loop {
            let message = self.next().await;
            if message["id"] == id {
                assert!(message.get("error").is_none(), "{method}: {message}");
                return message["result"].clone();
            }
            if message.get("method").is_some() {
                self.events.push(message);
            }
        }
    }

    /// Navigates and waits for that document's load event.
    async fn load(&mut self, url: &str) {
        self.events.clear();
        let navigated = self.call("Page.navigate", json!({"url": url}), true).await;
        let loader = navigated["loaderId"].clone();
        let is_load = |e: &Value| {
            e["method"] == "Page.lifecycleEvent"
                && e["params"]["name"] == "load"
                && e["params"]["loaderId"] == loader
        };
        if self.events.iter().any(is_load) {
            return;
        }
        while !is_load(&self.next().await) {}
    }

    /// `window.done`, settled.
    async fn done(&mut self) -> Value {
        let params =
            json!({"expression": "window.done", "awaitPromise": true, "returnByValue": true});
        let result = self.call("Runtime.evaluate", params, true).await;
        assert!(result.get("exceptionDetails").is_none(), "{result}");
        result["result"]["value"].clone()
    }
}

/// What `/check` reads in a browser: the page's view, and the cookies the
/// site was sent.
async fn check(browser: &Browser, site: &Site) -> (Value, String) {
    let mut tab = Tab::open(browser).await;
    tab.load(&format!("http://{}/check", site.addr)).await;
    let seen = tab.done().await;
    let page = serde_json::from_str(seen.as_str().expect("a JSON string")).expect("JSON");
    let sent = site.checks.lock().expect("checks").last().cloned();
    (page, sent.expect("the site was asked for /check"))
}

fn profile(parent: &tempfile::TempDir) -> std::path::PathBuf {
    // Unique: a browser's TMPDIR is named after its profile.
    parent
        .path()
        .join(format!("snapshot-{}", uuid::Uuid::new_v4().simple()))
}

async fn a_logged_in_state_survives_save_and_restore(jail: Jail, mode: &str) {
    let chrome = find_chrome(None).expect("Chromium is installed");
    let tracker = TaskTracker::new();
    let stop = CancellationToken::new();
    let launcher = Launcher::start(
        chrome,
        jail,
        WAIT,
        64 << 20,
        browserd::harness::egress_policy(),
        &tracker,
        stop.clone(),
    )
    .expect("launcher");
    let site = serve_site("s3ss10n").await;
    let parent = tempfile::tempdir().expect("temp dir");
    let key = SealKey::derive(&ServerSecret::from_bytes(vec![7; 32]));

    let first_profile = profile(&parent);
    let first = launcher
        .launch(&first_profile, &LaunchOptions::default())
        .await
        .expect("first browser");
    let mut tab = Tab::open(&first).await;
    tab.load(&format!("http://{}/login", site.addr)).await;
    assert_eq!(tab.done().await, "saved");
    drop(tab);

    let started = Instant::now();
    let state = first
        .save_state(WAIT, browserd::domain::context::MAX_UNPACKED)
        .await
        .expect("state saved");
    let save_time = started.elapsed();
    assert!(!first.is_alive(), "the browser was closed to save");
    let cookies = state.cookies.as_array().expect("cookies");
    let sid = cookies
        .iter()
        .find(|c| c["name"] == "sid")
        .expect("sid saved");
    assert_eq!(sid["session"], true, "{sid}");
    let has = |dir: &str| state.files.iter().any(|(p, _)| p.starts_with(dir));
    assert!(has("Default/Local Storage/leveldb"), "{state:?}");
    assert!(has("Default/IndexedDB"), "{state:?}");
    assert!(has("Default/Service Worker/Database"), "{state:?}");
    let started = Instant::now();
    let sealed = contexts::snapshot::seal(&state, &key, "ctx-1", 50 << 20).expect("sealed");
    let seal_time = started.elapsed();
    first.destroy().await;
    assert!(!first_profile.exists(), "destroy still removes the profile");

    let started = Instant::now();
    let opened = contexts::snapshot::open(&sealed, &key, "ctx-1").expect("opened");
    let open_time = started.elapsed();
    let options = LaunchOptions {
        restore: Some(Arc::new(opened)),
        ..LaunchOptions::default()
    };
    let started = Instant::now();
    let restored = launcher
        .launch(&profile(&parent), &options)
        .await
        .expect("restored browser");
    let restored_launch = started.elapsed();
    let (page, sent) = check(&restored, &site).await;
    assert_eq!(page["user"], "alice", "localStorage: {page}");
    assert_eq!(page["token"], "token-123", "IndexedDB: {page}");
    assert_eq!(page["workers"], 1, "service worker: {page}");
    assert_eq!(page["cookies"], "remember=yes", "{page}");
    assert!(sent.contains("sid=s3ss10n"), "session cookie: {sent:?}");
    restored.destroy().await;

    // The same check in a browser with nothing restored sees none of it.
    let started = Instant::now();
    let fresh = launcher
        .launch(&profile(&parent), &LaunchOptions::default())
        .await
        .expect("fresh browser");
    let plain_launch = started.elapsed();
    let (page, sent) = check(&fresh, &site).await;
    assert_eq!(
        page,
        json!({"user": null, "token": null, "workers": 0, "cookies": ""}),
        "a fresh browser"
    );
    assert!(!sent.contains("sid="), "{sent:?}");
    fresh.destroy().await;

    let file_bytes: usize = state.files.iter().map(|(_, d)| d.len()).sum();
    eprintln!(
        "snapshot [{mode}]: {} cookies, {} files ({file_bytes} bytes) sealed to {} bytes; \
         save_state {save_time:?}, seal {seal_time:?}, open {open_time:?}; \
         launch with restore {restored_launch:?}, without {plain_launch:?}",
        cookies.len(),
        state.files.len(),
        sealed.len(),
    );
    for (path, data) in &state.files {
        eprintln!("  {} ({} bytes)", path.display(), data.len());
    }
    stop.cancel();
    tracker.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logged_in_state_survives_save_and_restore_jailed() {
    let jail = Jail::build(None).expect("a jail can be made here");
    a_logged_in_state_survives_save_and_restore(jail, "jail").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logged_in_state_survives_save_and_restore_unjailed() {
    a_logged_in_state_survives_save_and_restore(Jail::none(), "none").await;
}
