//! Persistent contexts with real Chromium and a real site: a login made in
//! one session (a server-set session cookie, localStorage, an IndexedDB
//! record) is there in the next; a crash keeps the previous version; a save
//! over the size limit fails visibly and keeps it too.

use browserd::pb;
use browserd::pb::context_service_client::ContextServiceClient;
use chromiumoxide::Page;

use crate::on_both_backends;
use crate::support::*;

on_both_backends!(
    a_login_survives_into_the_next_session,
    a_crash_keeps_the_previous_version,
    a_save_over_the_size_limit_fails_and_keeps_the_version,
);

/// A site with a login: `/login` sets a session cookie (no expiry) and
/// serves a page whose script stores the user in localStorage and in
/// IndexedDB; `/whoami` answers with the user its cookie names.
async fn serve_site() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind((browserd::harness::PAGE_HOST, 0))
        .await
        .expect("bind the site");
    let addr = listener.local_addr().expect("site address");
    tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Some(request) = read_head(&mut socket).await else {
                    return;
                };
                let path = request.split_whitespace().nth(1).unwrap_or("/").to_owned();
                let logged_in = request.lines().any(|l| {
                    l.to_ascii_lowercase().starts_with("cookie:") && l.contains("sid=alice-")
                });
                let (headers, body) = match path.as_str() {
                    "/login" => (
                        "set-cookie: sid=alice-7f3a; Path=/; HttpOnly\r\n",
                        "<html><body>welcome</body></html>".to_owned(),
                    ),
                    "/whoami" => ("", if logged_in { "alice" } else { "anonymous" }.to_owned()),
                    _ => ("", "<html><body>home</body></html>".to_owned()),
                };
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\n{headers}content-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
            });
        }
    });
    addr
}

/// Logs in on `site` in a session's browser: the cookie, then
/// localStorage and an IndexedDB record, committed.
async fn log_in(connect_url: &str, site: std::net::SocketAddr) {
    let browser = connect_cdp(connect_url).await;
    let page = browser
        .new_page(format!("http://{site}/login"))
        .await
        .expect("open the login page");
    let stored: String = page
        .evaluate(
            r#"new Promise((resolve, reject) => {
                localStorage.setItem('user', 'alice');
                const open = indexedDB.open('app', 1);
                open.onupgradeneeded = () => open.result.createObjectStore('profile');
                open.onerror = () => reject(open.error);
                open.onsuccess = () => {
                    const tx = open.result.transaction('profile', 'readwrite');
                    tx.objectStore('profile').put({name: 'alice', plan: 'pro'}, 'me');
                    tx.oncomplete = () => resolve('stored');
                    tx.onerror = () => reject(tx.error);
                };
            })"#,
        )
        .await
        .expect("store the login")
        .into_value()
        .expect("a string");
    assert_eq!(stored, "stored");
    assert_eq!(whoami(&page, site).await, "alice");
}

async fn whoami(page: &Page, site: std::net::SocketAddr) -> String {
    page.evaluate(format!(
        "fetch('http://{site}/whoami', {{credentials: 'include'}}).then(r => r.text())"
    ))
    .await
    .expect("ask the site")
    .into_value()
    .expect("a string")
}

/// What a new session's browser knows of the login: (who the site says,
/// localStorage's user, the IndexedDB record's plan).
async fn what_is_remembered(
    connect_url: &str,
    site: std::net::SocketAddr,
) -> (String, String, String) {
    let browser = connect_cdp(connect_url).await;
    let page = browser
        .new_page(format!("http://{site}/"))
        .await
        .expect("open the site");
    let user: Option<String> = page
        .evaluate("localStorage.getItem('user')")
        .await
        .expect("read localStorage")
        .into_value()
        .unwrap_or(None);
    let plan: String = page
        .evaluate(
            r#"new Promise((resolve) => {
                const open = indexedDB.open('app', 1);
                open.onupgradeneeded = () => open.result.createObjectStore('profile');
                open.onsuccess = () => {
                    const db = open.result;
                    if (!db.objectStoreNames.contains('profile')) { resolve('none'); return; }
                    const get = db.transaction('profile').objectStore('profile').get('me');
                    get.onsuccess = () => resolve(get.result ? get.result.plan : 'none');
                    get.onerror = () => resolve('none');
                };
                open.onerror = () => resolve('none');
            })"#,
        )
        .await
        .expect("read IndexedDB")
        .into_value()
        .expect("a string");
    (whoami(&page, site).await, user.unwrap_or_default(), plan)
}

async fn create_context(app: &TestApp, name: &str) -> pb::Context {
    ContextServiceClient::new(app.channel())
        .create_context(pb::CreateContextRequest {
            name: name.into(),
            metadata: Default::default(),
        })
        .await
        .expect("CreateContext")
        .into_inner()
        .context
        .expect("context")
}

async fn get_context(app: &TestApp, id: &str) -> pb::Context {
    ContextServiceClient::new(app.channel())
        .get_context(pb::GetContextRequest {
            context_id: id.into(),
        })
        .await
        .expect("GetContext")
        .into_inner()
        .context
        .expect("context")
}

fn with_context(context: &pb::Context, persist: bool) -> pb::CreateSessionRequest {
    pb::CreateSessionRequest {
        keep_alive: true,
        context: Some(pb::SessionContext {
            context_id: context.id.clone(),
            persist,
        }),
        ..Default::default()
    }
}

/// The events of one session with `kind`.
async fn events_of_kind(
    app: &mut TestApp,
    session_id: &str,
    kind: pb::EventKind,
) -> Vec<pb::SessionEvent> {
    let mut events = app.events_of(session_id).await;
    events.retain(|e| e.kind == kind as i32);
    events
}

async fn a_login_survives_into_the_next_session(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let site = serve_site().await;
    let context = create_context(&app, "shop login").await;
    assert_eq!(context.version, 0);

    let first = app.create(with_context(&context, true)).await;
    assert_eq!(
        get_context(&app, &context.id).await.writer_session_id,
        first.id
    );
    log_in(&first.connect_url, site).await;
    app.release(&first.id).await;

    let saved = events_of_kind(&mut app, &first.id, pb::EventKind::ContextSaved).await;
    let save = saved
        .first()
        .and_then(|e| e.context_save.clone())
        .expect("a CONTEXT_SAVED event with its save");
    assert_eq!((save.version, save.error.as_str()), (1, ""));
    assert!(save.size_bytes > 0);
    let after = get_context(&app, &context.id).await;
    assert_eq!(after.version, 1);
    assert_eq!(after.saved_by_session_id, first.id);
    assert_eq!(after.writer_session_id, "");

    // Two read-only sessions at once, both logged in.
    let second = app.create(with_context(&context, false)).await;
    let third = app.create(with_context(&context, false)).await;
    for session in [&second, &third] {
        assert_eq!(
            what_is_remembered(&session.connect_url, site).await,
            ("alice".into(), "alice".into(), "pro".into()),
            "session {}",
            session.id
        );
    }
    // A session without the context starts logged out.
    let stranger = app.create(Default::default()).await;
    assert_eq!(
        what_is_remembered(&stranger.connect_url, site).await,
        ("anonymous".into(), String::new(), "none".into())
    );
    // Read-only sessions save nothing.
    app.release(&second.id).await;
    assert!(
        events_of_kind(&mut app, &second.id, pb::EventKind::ContextSaved)
            .await
            .is_empty()
    );
    assert_eq!(get_context(&app, &context.id).await.version, 1);
    app.stop().await;
}

async fn a_crash_keeps_the_previous_version(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let site = serve_site().await;
    let context = create_context(&app, "crashy").await;
    let session = app.create(with_context(&context, true)).await;
    log_in(&session.connect_url, site).await;
    let pid = browser_main_pid(&app.profiles_dir(), &session.id);
    let mut events = app
        .watch(pb::WatchSessionsRequest {
            session_ids: vec![session.id.clone()],
            ..Default::default()
        })
        .await;
    // SAFETY: killing a browser this test's server launched.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let failed = events.until(&session.id, pb::SessionStatus::Failed).await;
    assert_eq!(failed.end_reason, pb::EndReason::BrowserCrashed as i32);
    let context = get_context(&app, &context.id).await;
    assert_eq!(context.version, 0, "a crash saves nothing");
    assert_eq!(context.writer_session_id, "", "the lease died with it");
    let kinds: Vec<i32> = app
        .events_of(&session.id)
        .await
        .iter()
        .map(|e| e.kind)
        .collect();
    assert!(
        !kinds.contains(&(pb::EventKind::ContextSaved as i32)),
        "{kinds:?}"
    );
    app.stop().await;
}

async fn a_save_over_the_size_limit_fails_and_keeps_the_version(backend: Backend) {
    let mut app = spawn_app_with(backend, |config| config.context_max_size = 1024).await;
    let site = serve_site().await;
    let context = create_context(&app, "too big").await;
    let session = app.create(with_context(&context, true)).await;
    log_in(&session.connect_url, site).await;
    app.release(&session.id).await;
    let failed = events_of_kind(&mut app, &session.id, pb::EventKind::ContextSaveFailed).await;
    let save = failed
        .first()
        .and_then(|e| e.context_save.clone())
        .expect("a CONTEXT_SAVE_FAILED event");
    assert!(save.error.contains("1024"), "{}", save.error);
    assert_eq!(save.version, 0);
    let context = get_context(&app, &context.id).await;
    assert_eq!(context.version, 0);
    assert!(
        context.last_save_error.contains("1024"),
        "{}",
        context.last_save_error
    );
    // The session still ended normally.
    let ended = app.get(&session.id).await;
    assert_eq!(status_of(&ended), pb::SessionStatus::Released);
    app.stop().await;
}
