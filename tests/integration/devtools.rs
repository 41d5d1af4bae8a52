//! A session's browser is reachable through the relay and nowhere else:
//! browsers speak CDP on a pipe and listen on no port, so another
//! session's pages cannot find a DevTools endpoint to read or drive; and
//! each client of one session gets a browser session of its own, so one
//! client cannot act through another's.

use std::collections::BTreeSet;

use browserd::browser::process_table;
use browserd::pb;
use serde_json::json;

use crate::on_both_backends;
use crate::support::*;

/// The attack of the isolation issue: session A's page opens session B's
/// DevTools `/json/list` (B's pages, titles and URLs; `/json/close/<id>`
/// would close them), on every port B's browser listens on.
async fn another_sessions_browser_has_no_devtools_port(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let a = app.create(pb::CreateSessionRequest::default()).await;
    let b = app.create(pb::CreateSessionRequest::default()).await;
    let b_client = cdp_client(&b.connect_url).await;
    b_client
        .create_target(
            "data:text/html,<title>secret-of-b</title>",
            None,
            EVENT_WAIT,
        )
        .await
        .expect("B opens a page");
    let ports = listening_ports(&process_table::mentioning(&app.profiles_dir().join(&b.id)));
    let a_client = cdp_client(&a.connect_url).await;
    for port in &ports {
        let url = format!("http://127.0.0.1:{port}/json/list");
        let target = a_client
            .create_target(&url, None, EVENT_WAIT)
            .await
            .expect("A opens a page");
        let page = a_client.attach(&target, EVENT_WAIT).await.expect("attach");
        let loaded = "new Promise(r => document.readyState === 'complete' ? r() : \
                      addEventListener('load', r)).then(() => document.body.innerText)";
        let shown = a_client
            .call_in(
                &page,
                "Runtime.evaluate",
                json!({"expression": loaded, "awaitPromise": true, "returnByValue": true}),
                EVENT_WAIT,
            )
            .await
            .expect("evaluate");
        let text = shown["result"]["value"].as_str().unwrap_or_default();
        assert!(
            !text.contains("secret-of-b"),
            "session A's page read session B's DevTools on port {port}: {text}"
        );
    }
    assert_eq!(ports, BTreeSet::new(), "B's browser listens on TCP ports");
    app.release(&a.id).await;
    app.release(&b.id).await;
    app.stop().await;
}

/// Two clients of one session: neither can send on a session the other
/// attached, and each can attach on its own.
async fn a_client_cannot_use_another_clients_sessions(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let session = app.create(pb::CreateSessionRequest::default()).await;
    let first = cdp_client(&session.connect_url).await;
    let second = cdp_client(&session.connect_url).await;
    let target = first
        .create_target("about:blank", None, EVENT_WAIT)
        .await
        .expect("a page");
    let attached = first.attach(&target, EVENT_WAIT).await.expect("attach");
    one(&first, &attached)
        .await
        .expect("the client that attached uses its session");
    let refused = one(&second, &attached)
        .await
        .expect_err("another client's session");
    assert!(
        refused
            .to_string()
            .contains("Session with given id not found"),
        "{refused}"
    );
    // Its own attachment to the same page works, and both still answer.
    let own = second.attach(&target, EVENT_WAIT).await.expect("attach");
    one(&second, &own).await.expect("a session of its own");
    round_trip(&first).await;
    app.release(&session.id).await;
    app.stop().await;
}

/// `1` evaluated on `session`.
async fn one(
    client: &browserd::browser::cdp::CdpClient,
    session: &str,
) -> Result<serde_json::Value, browserd::browser::CdpError> {
    let expression = json!({"expression": "1"});
    client
        .call_in(session, "Runtime.evaluate", expression, EVENT_WAIT)
        .await
}

/// TCP ports in LISTEN state held by any of `pids`.
fn listening_ports(pids: &[i32]) -> BTreeSet<u16> {
    let inodes: BTreeSet<String> = pids
        .iter()
        .filter_map(|pid| std::fs::read_dir(format!("/proc/{pid}/fd")).ok())
        .flatten()
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter_map(|link| {
            let link = link.to_string_lossy().into_owned();
            Some(link.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned())
        })
        .collect();
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|table| std::fs::read_to_string(table).ok())
        .flat_map(|table| {
            table
                .lines()
                .skip(1)
                .filter_map(|line| {
                    let fields: Vec<&str> = line.split_whitespace().collect();
                    let listening = fields.get(3) == Some(&"0A");
                    let ours = fields.get(9).is_some_and(|inode| inodes.contains(*inode));
                    let port = fields.get(1)?.rsplit(':').next()?;
                    (listening && ours).then(|| u16::from_str_radix(port, 16).ok())?
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

on_both_backends!(
    another_sessions_browser_has_no_devtools_port,
    a_client_cannot_use_another_clients_sessions,
);
