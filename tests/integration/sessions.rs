//! Session lifecycle through the public API, with real browsers.

use std::time::{Duration, SystemTime};

use browserd::browser::cdp::CdpClient;
use browserd::pb;
use serde_json::json;
use tonic::Code;

use crate::on_both_backends;
use crate::support::*;

fn time(ts: &Option<prost_types::Timestamp>) -> SystemTime {
    let ts = ts.as_ref().expect("timestamp set");
    SystemTime::UNIX_EPOCH + Duration::new(ts.seconds as u64, ts.nanos as u32)
}

fn lifetime(session: &pb::Session) -> Duration {
    time(&session.ended_at)
        .duration_since(time(&session.created_at))
        .expect("ended after created")
}

async fn create_connect_navigate_inspect_release(backend: Backend) {
    let page = serve_page("browserd relay test").await;
    let mut app = spawn_app(backend).await;
    let mut events = app.watch(pb::WatchSessionsRequest::default()).await;
    let session = app
        .create(pb::CreateSessionRequest {
            metadata: [("team".to_owned(), "qa".to_owned())].into(),
            viewport: Some(pb::Viewport {
                width: 800,
                height: 600,
            }),
            ..Default::default()
        })
        .await;
    assert_eq!(status_of(&session), pb::SessionStatus::Live);
    assert!(session.browser_version.contains("Chrome/"), "{session:?}");
    let relay_path = format!("/devtools/browser/{}?token=", session.id);
    assert!(
        session.connect_url.starts_with("ws://127.0.0.1:")
            && session.connect_url.contains(&relay_path),
        "connect_url must point at browserd's relay: {}",
        session.connect_url
    );
    assert!(!browser_processes(&app.profiles_dir()).is_empty());

    let browser = connect_cdp(&session.connect_url).await;
    let second_client = cdp_client(&session.connect_url).await;
    let tab = browser
        .new_page(format!("http://{page}/"))
        .await
        .expect("open a page through the relay");
    let title = tab.get_title().await.expect("read title");
    assert_eq!(title.as_deref(), Some("browserd relay test"));
    let sum: i64 = tab
        .evaluate("6 * 7")
        .await
        .expect("evaluate through the relay")
        .into_value()
        .expect("a number");
    assert_eq!(sum, 42);
    let width: i64 = tab
        .evaluate("window.outerWidth")
        .await
        .expect("evaluate")
        .into_value()
        .expect("a number");
    assert_eq!(width, 800, "the viewport option sizes the window");

    let details = app
        .client
        .get_live_details(pb::GetLiveDetailsRequest {
            session_id: session.id.clone(),
        })
        .await
        .expect("GetLiveDetails")
        .into_inner();
    assert_eq!(details.connect_url, session.connect_url);
    assert!(
        details
            .pages
            .iter()
            .any(|p| p.url == format!("http://{page}/") && p.title == "browserd relay test"),
        "live details read from the browser: {:?}",
        details.pages
    );

    let released = app.release(&session.id).await;
    assert_eq!(status_of(&released), pb::SessionStatus::Released);
    assert_eq!(reason_of(&released), pb::EndReason::Requested);
    assert!(released.connect_url.is_empty());
    let usage = released.usage.expect("usage recorded");
    assert!(
        usage.seconds > 0 || usage.nanos > 0,
        "browser time recorded"
    );
    assert_eq!(browser_processes(&app.profiles_dir()), Vec::<i32>::new());
    assert_eq!(entries(&app.profiles_dir()), Vec::<String>::new());
    assert_eq!(
        closed_reason(&second_client).await,
        "the session has ended",
        "the relay disconnects CDP clients when the session ends"
    );

    let pending = events.next().await;
    let live = events.next().await;
    let ended = events.next().await;
    let transitions: Vec<_> = [&pending, &live, &ended]
        .iter()
        .map(|e| (e.from_status, e.to_status, e.end_reason))
        .collect();
    use pb::EndReason as R;
    use pb::SessionStatus as S;
    assert_eq!(
        transitions,
        vec![
            (
                S::Unspecified as i32,
                S::Pending as i32,
                R::Unspecified as i32
            ),
            (S::Pending as i32, S::Live as i32, R::Unspecified as i32),
            (S::Live as i32, S::Released as i32, R::Requested as i32),
        ]
    );
    assert!(pending.sequence < live.sequence && live.sequence < ended.sequence);
    assert_eq!(
        ended.session.as_ref(),
        Some(&released),
        "the event carries the session as released"
    );
    app.stop().await;
}

async fn relay_refuses_wrong_tokens_and_ended_sessions(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let session = app.create(pb::CreateSessionRequest::default()).await;
    let (base, _) = session
        .connect_url
        .split_once("?token=")
        .expect("token in url");
    let wrong = format!("{base}?token=0000");
    assert!(tokio_tungstenite::connect_async(&wrong).await.is_err());
    assert!(tokio_tungstenite::connect_async(base).await.is_err());
    app.release(&session.id).await;
    assert!(
        tokio_tungstenite::connect_async(&session.connect_url)
            .await
            .is_err(),
        "an ended session's connect_url must stop working"
    );
    app.stop().await;
}

/// CDP messages run to megabytes (screenshots, PDFs, DOM snapshots): frames
/// many times the relay's read size cross it intact, both ways.
async fn large_frames_cross_the_relay_both_ways(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let session = app.create(pb::CreateSessionRequest::default()).await;
    let client = cdp_client(&session.connect_url).await;
    let target = client
        .create_target("about:blank", None, EVENT_WAIT)
        .await
        .expect("a page");
    let page = client.attach(&target, EVENT_WAIT).await.expect("attached");
    let text = "0123456789abcdef".repeat(1 << 16);
    let echoed = client
        .call_in(
            &page,
            "Runtime.evaluate",
            json!({"expression": format!("'{text}'"), "returnByValue": true}),
            EVENT_WAIT,
        )
        .await
        .expect("evaluate");
    assert!(
        echoed["result"]["value"] == text.as_str(),
        "1 MiB out, 1 MiB back"
    );
    app.release(&session.id).await;
    app.stop().await;
}

async fn release_is_idempotent_and_ends_once(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let a = app.create(pb::CreateSessionRequest::default()).await;
    let profile = app.profiles_dir().join(&a.id);
    let socket_dir = singleton_dir(&profile);
    assert!(socket_dir.is_dir(), "{socket_dir:?}");
    assert!(socket_dir.starts_with(browserd::browser::temp_dir(&profile)));
    let first = app.release(&a.id).await;
    assert!(
        !browserd::browser::temp_dir(&profile).exists(),
        "the browser's TMPDIR goes with the session"
    );
    let second = app.release(&a.id).await;
    assert_eq!(
        first, second,
        "releasing an ended session returns it unchanged"
    );

    // Racing enders on one session: one wins, one terminal event.
    let b = app.create(pb::CreateSessionRequest::default()).await;
    let mut c1 = app.client.clone();
    let mut c2 = app.client.clone();
    let mut c3 = app.client.clone();
    let (r1, r2, r3) = tokio::join!(
        c1.release_session(pb::ReleaseSessionRequest {
            session_id: b.id.clone()
        }),
        c2.release_all_sessions(pb::ReleaseAllSessionsRequest::default()),
        c3.release_session(pb::ReleaseSessionRequest {
            session_id: b.id.clone()
        }),
    );
    let (r1, r2, r3) = (
        r1.expect("release").into_inner().session.expect("session"),
        r2.expect("release all").into_inner(),
        r3.expect("release").into_inner().session.expect("session"),
    );
    assert_eq!(r1, r3);
    let ended_by_release_all = r2.released_ids == vec![b.id.clone()];
    let expected = if ended_by_release_all {
        pb::EndReason::ReleaseAll
    } else {
        assert!(r2.released_ids.is_empty(), "{r2:?}");
        pb::EndReason::Requested
    };
    assert_eq!(reason_of(&r1), expected);

    for id in [&a.id, &b.id] {
        let terminal: Vec<_> = app
            .events_of(id)
            .await
            .into_iter()
            .filter(|e| e.to_status == pb::SessionStatus::Released as i32)
            .collect();
        assert_eq!(
            terminal.len(),
            1,
            "exactly one terminal event: {terminal:?}"
        );
    }
    assert_eq!(browser_processes(&app.profiles_dir()), Vec::<i32>::new());
    app.stop().await;
}

async fn idempotency_key_gives_one_session(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let request = pb::CreateSessionRequest {
        idempotency_key: "order-42".into(),
        ..Default::default()
    };
    let mut c1 = app.client.clone();
    let mut c2 = app.client.clone();
    let (a, b) = tokio::join!(
        create_on(&mut c1, request.clone()),
        create_on(&mut c2, request.clone())
    );
    assert_eq!(a.id, b.id, "same key, same session");
    assert_eq!(status_of(&a), pb::SessionStatus::Live);
    assert_eq!(status_of(&b), pb::SessionStatus::Live);
    assert_eq!(
        entries(&app.profiles_dir()).len(),
        1,
        "one browser, not two"
    );
    app.release(&a.id).await;
    let again = app.create(request).await;
    assert_eq!(again.id, a.id);
    assert_eq!(status_of(&again), pb::SessionStatus::Released);
    assert_eq!(
        app.events_of(&a.id).await.len(),
        3,
        "PENDING, LIVE, RELEASED"
    );
    app.stop().await;
}

async fn session_limit_is_resource_exhausted(backend: Backend) {
    let mut app = spawn_app_with(backend, |c| c.max_sessions = 1).await;
    let keyed = pb::CreateSessionRequest {
        idempotency_key: "retry-me".into(),
        ..Default::default()
    };
    let a = app.create(keyed.clone()).await;
    let (code, message) = code_and_message(
        app.client
            .create_session(pb::CreateSessionRequest::default())
            .await,
    );
    assert_eq!(code, Code::ResourceExhausted, "{message}");
    let retried = app.create(keyed).await;
    assert_eq!(
        retried.id, a.id,
        "a retry gets its session even at capacity"
    );
    let listed = app.list(pb::ListSessionsRequest::default()).await;
    assert_eq!(listed.len(), 1, "the refused request wrote nothing");
    app.release(&a.id).await;
    let b = app.create(pb::CreateSessionRequest::default()).await;
    assert_eq!(status_of(&b), pb::SessionStatus::Live);
    app.stop().await;
}

/// A "browser" that is a real process failing the way a broken install
/// does: it prints a cause and exits, or hangs without opening DevTools.
fn broken_browser(dir: &std::path::Path, body: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    // The browser's uid, in its jail, must be able to run it.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).expect("chmod dir");
    let path = dir.join("broken-chrome");
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

async fn launch_failure_fails_the_session(backend: Backend) {
    let scripts = tempfile::tempdir().expect("temp dir");
    let crashing = broken_browser(
        scripts.path(),
        "echo 'simulated: missing libnss3.so' >&2; exit 3",
    );
    let mut app = spawn_app_with(backend, |c| c.chrome_path = Some(crashing)).await;
    let (code, message) = code_and_message(
        app.client
            .create_session(pb::CreateSessionRequest::default())
            .await,
    );
    assert_eq!(code, Code::Unavailable, "{message}");
    assert!(
        message.contains("simulated: missing libnss3.so"),
        "{message}"
    );
    let listed = app.list(pb::ListSessionsRequest::default()).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(status_of(&listed[0]), pb::SessionStatus::Failed);
    assert_eq!(reason_of(&listed[0]), pb::EndReason::LaunchFailed);
    assert!(
        listed[0].error.contains("simulated"),
        "{:?}",
        listed[0].error
    );
    assert_eq!(entries(&app.profiles_dir()), Vec::<String>::new());
    assert_eq!(
        app.events_of(&listed[0].id).await.len(),
        2,
        "PENDING, FAILED"
    );
    app.stop().await;
}

async fn launch_timeout_leaves_nothing_behind(backend: Backend) {
    let scripts = tempfile::tempdir().expect("temp dir");
    let hanging = broken_browser(scripts.path(), "sleep 600");
    let mut app = spawn_app_with(backend, |c| {
        c.chrome_path = Some(hanging);
        c.launch_timeout = Duration::from_secs(1);
    })
    .await;
    let (code, message) = code_and_message(
        app.client
            .create_session(pb::CreateSessionRequest::default())
            .await,
    );
    assert_eq!(code, Code::Unavailable, "{message}");
    assert!(message.contains("within"), "{message}");
    assert_eq!(browser_processes(&app.profiles_dir()), Vec::<i32>::new());
    assert_eq!(entries(&app.profiles_dir()), Vec::<String>::new());
    app.stop().await;
}

async fn hard_timeout_releases_the_session(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let mut events = app.watch(pb::WatchSessionsRequest::default()).await;
    let session = app
        .create(pb::CreateSessionRequest {
            timeout: seconds(2),
            ..Default::default()
        })
        .await;
    let ended = events.until(&session.id, pb::SessionStatus::Released).await;
    assert_eq!(ended.end_reason, pb::EndReason::Timeout as i32);
    let ended = ended.session.expect("snapshot");
    assert!(lifetime(&ended) >= Duration::from_secs(2), "{ended:?}");
    assert_eq!(browser_processes(&app.profiles_dir()), Vec::<i32>::new());
    app.stop().await;
}

async fn extend_moves_the_deadline(backend: Backend) {
    let mut app = spawn_app_with(backend, |c| c.max_timeout = Duration::from_secs(3600)).await;
    let mut events = app.watch(pb::WatchSessionsRequest::default()).await;
    // Long enough that a slow launch on a loaded machine cannot use it up:
    // the deadline is then moved nearer, which the supervisor must notice.
    let session = app
        .create(pb::CreateSessionRequest {
            timeout: seconds(600),
            ..Default::default()
        })
        .await;
    let extended = app
        .client
        .extend_session(pb::ExtendSessionRequest {
            session_id: session.id.clone(),
            timeout: seconds(4),
        })
        .await
        .expect("extend")
        .into_inner()
        .session
        .expect("session");
    assert_eq!(extended.timeout, seconds(4));
    assert_eq!(
        time(&extended.expires_at),
        time(&extended.created_at) + Duration::from_secs(4)
    );
    let (code, message) = code_and_message(
        app.client
            .extend_session(pb::ExtendSessionRequest {
                session_id: session.id.clone(),
                timeout: seconds(7200),
            })
            .await,
    );
    assert_eq!(code, Code::InvalidArgument);
    assert!(message.starts_with("timeout"), "{message}");

    let ended = events.until(&session.id, pb::SessionStatus::Released).await;
    assert_eq!(ended.end_reason, pb::EndReason::Timeout as i32);
    assert!(lifetime(ended.session.as_ref().expect("snapshot")) >= Duration::from_secs(4));
    let (code, _) = code_and_message(
        app.client
            .extend_session(pb::ExtendSessionRequest {
                session_id: session.id.clone(),
                timeout: seconds(60),
            })
            .await,
    );
    assert_eq!(
        code,
        Code::FailedPrecondition,
        "an ended session cannot be extended"
    );
    app.stop().await;
}

async fn list_filters_pages_and_release_all(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let labelled = |team: &str| pb::CreateSessionRequest {
        metadata: [("team".to_owned(), team.to_owned())].into(),
        ..Default::default()
    };
    let a = app.create(labelled("x")).await;
    let b = app.create(labelled("x")).await;
    let c = app.create(labelled("y")).await;
    app.release(&c.id).await;

    let list = |request: pb::ListSessionsRequest| {
        let mut client = app.client.clone();
        async move {
            let page = client
                .list_sessions(request)
                .await
                .expect("list")
                .into_inner();
            let ids: Vec<String> = page.sessions.into_iter().map(|s| s.id).collect();
            (ids, page.next_page_token)
        }
    };
    let (first, token) = list(pb::ListSessionsRequest {
        page_size: 2,
        ..Default::default()
    })
    .await;
    assert_eq!(first.len(), 2);
    assert!(!token.is_empty());
    let (second, last_token) = list(pb::ListSessionsRequest {
        page_size: 2,
        page_token: token,
        ..Default::default()
    })
    .await;
    assert_eq!(second.len(), 1);
    assert!(last_token.is_empty());
    let mut all: Vec<String> = first.into_iter().chain(second).collect();
    all.sort();
    let mut expected = vec![a.id.clone(), b.id.clone(), c.id.clone()];
    expected.sort();
    assert_eq!(all, expected, "pages cover every session exactly once");

    let (mut team_x, _) = list(pb::ListSessionsRequest {
        metadata: [("team".to_owned(), "x".to_owned())].into(),
        ..Default::default()
    })
    .await;
    team_x.sort();
    let mut ab = vec![a.id.clone(), b.id.clone()];
    ab.sort();
    assert_eq!(team_x, ab);
    let (released, _) = list(pb::ListSessionsRequest {
        statuses: vec![pb::SessionStatus::Released as i32],
        ..Default::default()
    })
    .await;
    assert_eq!(released, vec![c.id.clone()]);
    let (none, _) = list(pb::ListSessionsRequest {
        statuses: vec![pb::SessionStatus::Live as i32],
        metadata: [("team".to_owned(), "y".to_owned())].into(),
        ..Default::default()
    })
    .await;
    assert!(none.is_empty());

    let mut released_ids = app
        .client
        .release_all_sessions(pb::ReleaseAllSessionsRequest {
            metadata: [("team".to_owned(), "x".to_owned())].into(),
            project: String::new(),
        })
        .await
        .expect("release all")
        .into_inner()
        .released_ids;
    released_ids.sort();
    assert_eq!(released_ids, ab);
    let again = app
        .client
        .release_all_sessions(pb::ReleaseAllSessionsRequest::default())
        .await
        .expect("release all")
        .into_inner()
        .released_ids;
    assert!(again.is_empty(), "nothing left to release: {again:?}");
    assert_eq!(reason_of(&app.get(&a.id).await), pb::EndReason::ReleaseAll);
    assert_eq!(browser_processes(&app.profiles_dir()), Vec::<i32>::new());
    app.stop().await;
}

async fn shutdown_releases_sessions_and_ends_streams(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let session = app.create(pb::CreateSessionRequest::default()).await;
    let mut events = app.watch(pb::WatchSessionsRequest::default()).await;
    let profiles = app.profiles_dir();
    let restarted = tokio::spawn(app.restart());
    let ended = events.until(&session.id, pb::SessionStatus::Released).await;
    assert_eq!(ended.end_reason, pb::EndReason::Shutdown as i32);
    assert!(
        events.next_raw().await.is_none(),
        "the stream ends cleanly on shutdown"
    );
    let mut app = restarted.await.expect("restart");
    assert_eq!(browser_processes(&profiles), Vec::<i32>::new());
    let stored = app.get(&session.id).await;
    assert_eq!(status_of(&stored), pb::SessionStatus::Released);
    assert_eq!(reason_of(&stored), pb::EndReason::Shutdown);
    app.stop().await;
}

/// A page's `innerWidth` × `innerHeight`, measured from inside: browserd
/// never attaches to pages, so measuring one takes a client.
async fn inner_size(cdp: &CdpClient, target_id: &str) -> (u64, u64) {
    let page = cdp.attach(target_id, EVENT_WAIT).await.expect("attached");
    let evaluated = cdp
        .call_in(
            &page,
            "Runtime.evaluate",
            json!({"expression": "[innerWidth, innerHeight]", "returnByValue": true}),
            EVENT_WAIT,
        )
        .await
        .expect("evaluate");
    let size = &evaluated["result"]["value"];
    (
        size[0].as_u64().expect("innerWidth"),
        size[1].as_u64().expect("innerHeight"),
    )
}

/// The first tab, a new page, and a page in a new browser context (what
/// Playwright's new_context and Puppeteer's createBrowserContext make) all
/// measure `width` × `height` from inside.
async fn assert_pages_sized(connect_url: &str, width: u64, height: u64) {
    let cdp = cdp_client(connect_url).await;
    let targets = cdp
        .call("Target.getTargets", json!({}), EVENT_WAIT)
        .await
        .expect("targets");
    let first = targets["targetInfos"]
        .as_array()
        .expect("target list")
        .iter()
        .find(|t| t["type"] == "page" && t["url"] == "about:blank")
        .and_then(|t| t["targetId"].as_str())
        .expect("the browser's first tab")
        .to_owned();
    assert_eq!(
        inner_size(&cdp, &first).await,
        (width, height),
        "the first tab"
    );
    let page = cdp
        .create_target("about:blank", None, EVENT_WAIT)
        .await
        .expect("a page");
    assert_eq!(inner_size(&cdp, &page).await, (width, height), "a new page");
    let created = cdp
        .call("Target.createBrowserContext", json!({}), EVENT_WAIT)
        .await
        .expect("a context");
    let context = created["browserContextId"].as_str().expect("a context id");
    let page = cdp
        .create_target("about:blank", Some(context), EVENT_WAIT)
        .await
        .expect("a page in the context");
    assert_eq!(
        inner_size(&cdp, &page).await,
        (width, height),
        "a page in a new browser context"
    );
}

async fn viewport_sizes_every_new_page(backend: Backend) {
    let mut app = spawn_app_with(backend, |c| c.warm_pool = 1).await;
    let profiles = app.profiles_dir();
    let sized = app
        .create(pb::CreateSessionRequest {
            viewport: Some(pb::Viewport {
                width: 1024,
                height: 700,
            }),
            ..Default::default()
        })
        .await;
    assert_pages_sized(&sized.connect_url, 1024, 700).await;

    // Default options take a pooled browser, launched before the request: one
    // that has been up a while, as Chromium adds its startup infobars to the
    // first tab some time after it answers CDP.
    app.pool_health(ServingStatus::Serving).await;
    let warm = browser_mains(&profiles);
    let default = app.create(pb::CreateSessionRequest::default()).await;
    assert!(
        warm.contains(&browser_main_pid(&profiles, &default.id)),
        "the default session got a pooled browser"
    );
    assert_pages_sized(&default.connect_url, 1280, 720).await;

    app.release(&sized.id).await;
    app.release(&default.id).await;
    app.stop().await;
}

on_both_backends!(
    create_connect_navigate_inspect_release,
    relay_refuses_wrong_tokens_and_ended_sessions,
    large_frames_cross_the_relay_both_ways,
    release_is_idempotent_and_ends_once,
    idempotency_key_gives_one_session,
    session_limit_is_resource_exhausted,
    launch_failure_fails_the_session,
    launch_timeout_leaves_nothing_behind,
    hard_timeout_releases_the_session,
    extend_moves_the_deadline,
    list_filters_pages_and_release_all,
    shutdown_releases_sessions_and_ends_streams,
    viewport_sizes_every_new_page,
);
