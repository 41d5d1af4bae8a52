//! The routing of messages between browserd, its clients and a fake
//! browser at the other end of a real pipe.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

/// A browser played by the test: what browserd writes to it, and a way
/// to answer.
struct FakeBrowser {
    reads: pipe::Receiver,
    writes: pipe::Sender,
}

impl FakeBrowser {
    async fn next(&mut self) -> String {
        let mut message = Vec::new();
        loop {
            let byte = self.reads.read_u8().await.expect("browserd writes");
            if byte == 0 {
                return String::from_utf8(message).expect("UTF-8");
            }
            message.push(byte);
        }
    }

    async fn say(&mut self, message: &str) {
        self.writes.write_all(message.as_bytes()).await.unwrap();
        self.writes.write_all(&[0]).await.unwrap();
    }
}

async fn connected() -> (Pipe, PipeClient, FakeBrowser) {
    let (to_browser, reads) = pipe::pipe().unwrap();
    let (writes, from_browser) = pipe::pipe().unwrap();
    let pipe = Pipe::start(from_browser, to_browser, 1 << 20, &TaskTracker::new());
    let mut browser = FakeBrowser { reads, writes };
    let connecting = tokio::spawn({
        let pipe = pipe.clone();
        async move { pipe.connect(Duration::from_secs(5)).await }
    });
    let attach: Value = serde_json::from_str(&browser.next().await).unwrap();
    assert_eq!(attach["method"], "Target.attachToBrowserTarget");
    browser
        .say(&json!({"id": attach["id"], "result": {"sessionId": "S"}}).to_string())
        .await;
    let client = connecting.await.unwrap().expect("connected");
    (pipe, client, browser)
}

fn refused(outcome: Result<(), Refusal>) -> Value {
    match outcome {
        Err(Refusal::Reply(reply)) => serde_json::from_str(&reply).unwrap(),
        other => panic!("not refused: {other:?}"),
    }
}

#[tokio::test]
async fn clients_reach_only_their_own_sessions() {
    let (_pipe, mut client, mut browser) = connected().await;
    client
        .send(r#"{"id":6,"method":"Target.setAutoAttach"}"#)
        .await
        .unwrap();
    assert_eq!(
        browser.next().await,
        r#"{"sessionId":"S","id":6,"method":"Target.setAutoAttach"}"#
    );
    browser.say(r#"{"id":6,"result":{},"sessionId":"S"}"#).await;
    let Some(Delivery::Message(reply)) = client.recv().await else {
        panic!("the reply is the client's");
    };
    assert_eq!(reply, r#"{"id":6,"result":{}}"#);

    // A session attached through the client's is the client's.
    browser
        .say(r#"{"method":"Target.attachedToTarget","params":{"sessionId":"P","targetInfo":{}},"sessionId":"S"}"#)
        .await;
    let Some(Delivery::Message(_)) = client.recv().await else {
        panic!("the attach event is the client's");
    };
    client
        .send(r#"{"id":7,"sessionId":"P","method":"Runtime.evaluate"}"#)
        .await
        .unwrap();
    assert_eq!(
        browser.next().await,
        r#"{"id":7,"sessionId":"P","method":"Runtime.evaluate"}"#
    );

    // Anything else is refused: another session, and a null one, which
    // the browser would read as its browser-level connection.
    for (text, session) in [
        (
            r#"{"id":8,"sessionId":"Q","method":"Runtime.evaluate"}"#,
            "Q",
        ),
        (
            r#"{"id":8,"sessionId":null,"method":"Target.getTargets"}"#,
            "",
        ),
        (
            r#"{"id":8,"session\u0049d":null,"method":"Target.getTargets"}"#,
            "",
        ),
    ] {
        let reply = refused(client.send(text).await);
        assert_eq!(reply["error"]["code"], -32001, "{text}");
        assert_eq!(reply["sessionId"], session, "{text}");
    }
    for text in [
        "not json",
        "[8, \"Target.getTargets\"]",
        r#"{"method":"X"}"#,
    ] {
        let reply = refused(client.send(text).await);
        assert!(reply["error"]["code"].as_i64().is_some(), "{text}");
    }
}

#[tokio::test]
async fn a_dropped_client_is_detached_and_its_sessions_forgotten() {
    let (pipe, client, mut browser) = connected().await;
    browser
        .say(r#"{"method":"Target.attachedToTarget","params":{"sessionId":"P"},"sessionId":"S"}"#)
        .await;
    drop(client);
    let detach: Value = serde_json::from_str(&browser.next().await).unwrap();
    assert_eq!(detach["method"], "Target.detachFromTarget");
    assert_eq!(detach["params"]["sessionId"], "S");
    assert!(pipe.shared.routes().owners.is_empty());
    // The browser's exit ends every call.
    drop(browser);
    pipe.closed().await;
    let call = pipe.call("Browser.getVersion", json!({}), Duration::from_secs(5));
    assert!(matches!(call.await, Err(CdpError::Closed)));
}

#[test]
fn a_client_message_goes_on_its_browser_session() {
    assert_eq!(
        with_session(r#" {"id":1,"method":"Browser.getVersion"}"#, "S"),
        r#"{"sessionId":"S","id":1,"method":"Browser.getVersion"}"#
    );
    assert_eq!(with_session("{ }", "S"), r#"{"sessionId":"S" }"#);
}

#[test]
fn the_browser_session_is_taken_out_of_what_the_client_sees() {
    let cut = without_session(r#"{"id":1,"result":{},"sessionId":"S"}"#.into(), "S");
    assert_eq!(cut, r#"{"id":1,"result":{}}"#);
    // Elsewhere than last: parsed, and only the top-level key goes.
    let moved = r#"{"sessionId":"S","method":"X","params":{"sessionId":"S"}}"#;
    let cut: Value = serde_json::from_str(&without_session(moved.into(), "S")).unwrap();
    assert_eq!(cut, json!({"method": "X", "params": {"sessionId": "S"}}));
    // A nested key with the same text at the very end is not the
    // top-level one.
    let nested = r#"{"method":"X","params":{"sessionId":"S"}}"#;
    let cut: Value = serde_json::from_str(&without_session(nested.into(), "S")).unwrap();
    assert_eq!(cut, json!({"method": "X", "params": {"sessionId": "S"}}));
}
