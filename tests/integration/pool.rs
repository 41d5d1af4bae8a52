//! The warm pool, observed from outside: its readiness through gRPC health,
//! its browsers through the process table.

use browserd::pb;

use crate::on_both_backends;
use crate::support::*;

async fn sessions_start_on_browsers_launched_beforehand(backend: Backend) {
    let mut app = spawn_app_with(backend, |c| {
        c.warm_pool = 2;
        c.max_sessions = 4;
    })
    .await;
    let profiles = app.profiles_dir();
    app.pool_health(ServingStatus::Serving).await;
    let warm = browser_mains(&profiles);
    assert_eq!(warm.len(), 2, "two browsers wait in the pool");

    let session = app.create(pb::CreateSessionRequest::default()).await;
    let pid = browser_main_pid(&profiles, &session.id);
    assert!(warm.contains(&pid), "the session got a pooled browser");
    let client = cdp_client(&session.connect_url).await;
    round_trip(&client).await;

    // Options a pooled browser was not launched with need a cold launch.
    let custom = app
        .create(pb::CreateSessionRequest {
            user_agent: "browserd-test/1.0".into(),
            ..Default::default()
        })
        .await;
    let custom_pid = browser_main_pid(&profiles, &custom.id);
    assert!(
        !warm.contains(&custom_pid),
        "a custom session gets its own launch"
    );
    let browser = connect_cdp(&custom.connect_url).await;
    let page = browser.new_page("about:blank").await.expect("page");
    let agent: String = page
        .evaluate("navigator.userAgent")
        .await
        .expect("evaluate")
        .into_value()
        .expect("a string");
    assert_eq!(agent, "browserd-test/1.0");

    // The pool refills, and a released pooled browser is never reused.
    app.pool_health(ServingStatus::Serving).await;
    app.release(&session.id).await;
    assert!(!browser_mains(&profiles).contains(&pid));
    assert_eq!(
        browser_processes(&profiles.join(&session.id)),
        Vec::<i32>::new()
    );
    app.stop().await;
    assert_eq!(
        browser_processes(&profiles),
        Vec::<i32>::new(),
        "shutdown tears the pool down"
    );
}

async fn a_pooled_browser_that_dies_is_replaced(backend: Backend) {
    let mut app = spawn_app_with(backend, |c| c.warm_pool = 1).await;
    let profiles = app.profiles_dir();
    app.pool_health(ServingStatus::Serving).await;
    let dead: i32 = *browser_mains(&profiles).first().expect("a pooled browser");
    // SAFETY: killing a browser this test's server launched.
    unsafe { libc::kill(dead, libc::SIGKILL) };
    app.pool_health(ServingStatus::NotServing).await;
    app.pool_health(ServingStatus::Serving).await;
    let replacement = browser_mains(&profiles);
    assert!(!replacement.contains(&dead));

    let session = app.create(pb::CreateSessionRequest::default()).await;
    assert!(replacement.contains(&browser_main_pid(&profiles, &session.id)));
    let client = cdp_client(&session.connect_url).await;
    round_trip(&client).await;
    app.stop().await;
}

async fn at_capacity_an_idle_pooled_browser_makes_room(backend: Backend) {
    let mut app = spawn_app_with(backend, |c| {
        c.warm_pool = 1;
        c.max_sessions = 1;
    })
    .await;
    let profiles = app.profiles_dir();
    app.pool_health(ServingStatus::Serving).await;
    let pooled = browser_mains(&profiles);
    let custom = app
        .create(pb::CreateSessionRequest {
            viewport: Some(pb::Viewport {
                width: 640,
                height: 480,
            }),
            ..Default::default()
        })
        .await;
    assert_eq!(status_of(&custom), pb::SessionStatus::Live);
    assert!(!pooled.contains(&browser_main_pid(&profiles, &custom.id)));
    let (code, message) = code_and_message(
        app.client
            .create_session(pb::CreateSessionRequest::default())
            .await,
    );
    assert_eq!(code, tonic::Code::ResourceExhausted, "{message}");
    app.stop().await;
}

/// A refill launch still running when shutdown begins is waited for and
/// torn down: no browser, profile or /tmp directory outlives browserd.
async fn shutdown_waits_for_a_refill_in_flight(backend: Backend) {
    let mut app = spawn_app_with(backend, |c| c.warm_pool = 1).await;
    let profiles = app.profiles_dir();
    app.pool_health(ServingStatus::Serving).await;
    let session = app.create(pb::CreateSessionRequest::default()).await;
    // The pooled browser went to the session: its replacement is starting.
    // Chromium links its /tmp socket directory from the profile early on.
    let refill = || {
        entries(&profiles)
            .into_iter()
            .find(|name| *name != session.id)
    };
    eventually("the pool's refill launch", async || {
        refill().is_some_and(|name| {
            std::fs::read_link(profiles.join(name).join("SingletonSocket")).is_ok()
        })
    })
    .await;
    let refill = refill().expect("the refill's profile");
    let sockets = [
        singleton_dir(&profiles.join(&session.id)),
        singleton_dir(&profiles.join(&refill)),
    ];
    app.stop().await;
    assert_eq!(browser_processes(&profiles), Vec::<i32>::new());
    assert_eq!(entries(&profiles), Vec::<String>::new(), "{refill} remains");
    for dir in sockets {
        assert!(!dir.exists(), "{dir:?} remains");
    }
}

on_both_backends!(
    shutdown_waits_for_a_refill_in_flight,
    sessions_start_on_browsers_launched_beforehand,
    a_pooled_browser_that_dies_is_replaced,
    at_capacity_an_idle_pooled_browser_makes_room,
);
