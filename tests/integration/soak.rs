//! Soak: hundreds of create/connect/release cycles, a few at a time, then
//! browsers, open descriptors and data-dir entries must be back where they
//! started. Ignored by default (about a minute per backend); `.ci/run` runs it.

use browserd::pb;

use crate::support::*;

const CYCLES: usize = 200;
const CONCURRENCY: usize = 4;

/// Open descriptors, as what each points at (so a failure says what leaked).
fn open_fds() -> Vec<String> {
    let mut fds: Vec<String> = std::fs::read_dir("/proc/self/fd")
        .expect("read fds")
        .flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        // Open only while the reaper or teardown scans the process table.
        .filter(|target| !target.starts_with("/proc"))
        // Pipe and socket inodes differ run to run; their kind is what counts.
        .map(|target| {
            target
                .display()
                .to_string()
                .split('[')
                .next()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    fds.sort();
    fds
}

fn data_entries(app: &TestApp) -> (usize, usize) {
    (
        entries(app.data_dir.path()).len(),
        entries(&app.profiles_dir()).len(),
    )
}

/// One session: create, talk CDP through the relay, end it (by release, or
/// by disconnecting, every other cycle).
async fn cycle(app: &TestApp, n: usize) {
    let mut client = app.client.clone();
    let session = create_on(&mut client, pb::CreateSessionRequest::default()).await;
    let socket = cdp_client(&session.connect_url).await;
    round_trip(&socket).await;
    if n.is_multiple_of(2) {
        socket.close().await;
    }
    client
        .release_session(pb::ReleaseSessionRequest {
            session_id: session.id,
        })
        .await
        .expect("release");
}

async fn soak(backend: Backend) {
    let app = spawn_app_with(backend, |c| c.max_sessions = CONCURRENCY).await;
    // Warm up at full concurrency, so connection pools are at their size.
    for round in 0..2 {
        futures_util::future::join_all(
            (0..CONCURRENCY).map(|n| cycle(&app, round * CONCURRENCY + n)),
        )
        .await;
    }
    let before = (
        browser_processes(&app.profiles_dir()).len(),
        open_fds(),
        data_entries(&app),
    );

    let next = std::sync::atomic::AtomicUsize::new(0);
    futures_util::future::join_all((0..CONCURRENCY).map(|_| async {
        loop {
            let n = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if n >= CYCLES {
                break;
            }
            cycle(&app, n).await;
        }
    }))
    .await;

    let after = (
        browser_processes(&app.profiles_dir()).len(),
        open_fds(),
        data_entries(&app),
    );
    println!(
        "soak {backend:?}: {CYCLES} cycles, {CONCURRENCY} at a time: browser processes {} -> {}, open fds {} -> {}, data dir entries {} -> {}, profiles {} -> {}",
        before.0,
        after.0,
        before.1.len(),
        after.1.len(),
        before.2.0,
        after.2.0,
        before.2.1,
        after.2.1,
    );
    assert_eq!(after, before);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "soak: about a minute; run by .ci/run"]
async fn soak_sqlite() {
    soak(Backend::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "soak: about a minute; run by .ci/run"]
async fn soak_postgres() {
    soak(Backend::Postgres).await
}
