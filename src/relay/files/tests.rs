//! The file rules as a client meets them: which calls are read, what an
//! untrusted client is refused, where downloads land.

use super::profile::DOWNLOAD_DIR;
use super::*;

#[test]
fn escapes_and_nested_calls_are_read() {
    for text in [
        r#"{"id":1,"method":"DOM.setFileInput\u0046iles","params":{"files":["/x"]}}"#,
        r#"{"id":1,"method":"Target.sendMessageToTarget","params":{"message":"{}"}}"#,
        r#"{"id":1,"method":"Browser.setDownloadBehavior"}"#,
    ] {
        assert!(may_name_files(text), "{text}");
    }
    assert!(!may_name_files(
        r#"{"id":1,"method":"Runtime.evaluate","params":{"expression":"1"}}"#
    ));
}

fn untrusted() -> Files {
    Files::new(std::env::temp_dir(), None)
}

fn reply(verdict: Option<Verdict>) -> Value {
    match verdict {
        Some(Verdict::Refuse(reply)) => serde_json::from_str(&reply).expect("JSON"),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn uploads_by_path_are_refused_to_others_however_spelled() {
    let mut files = untrusted();
    for text in [
        r#"{"id":4,"sessionId":"S","method":"DOM.setFileInputFiles","params":{"files":["/etc/shadow"],"nodeId":3}}"#,
        r#"{"id":4,"sessionId":"S","method":"DOM.setFileInput\u0046iles","params":{"files":["/etc/shadow"]}}"#,
        r#"{"id":4,"sessionId":"S","method":"Input.dispatchDragEvent","params":{"type":"drop","x":1,"y":1,"data":{"items":[],"files":["/etc/shadow"],"dragOperationsMask":1}}}"#,
    ] {
        let reply = reply(files.on_client(text).await);
        assert_eq!(reply["id"], 4, "{text}");
        assert_eq!(reply["sessionId"], "S", "{text}");
        assert!(
            reply["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("by contents")),
            "{reply}"
        );
    }
    let duplicated = r#"{"id":4,"method":"Runtime.evaluate","method":"DOM.setFileInputFiles","params":{"files":["/etc/shadow"]}}"#;
    assert!(reply(files.on_client(duplicated).await)["error"].is_object());
    let nested = json!({"id": 5, "method": NESTED, "params": {"sessionId": "T", "message":
        r#"{"id":1,"method":"DOM.setFileInputFiles","params":{"files":["/etc/shadow"]}}"#}});
    assert!(reply(files.on_client(&nested.to_string()).await)["error"].is_object());
}

#[tokio::test]
async fn calls_without_files_pass() {
    let mut files = untrusted();
    assert!(
        files
            .on_client(r#"{"id":1,"method":"Page.navigate","params":{"url":"about:blank"}}"#)
            .await
            .is_none()
    );
    let Some(Verdict::Replace(text)) = files
        .on_client(r#"{"id":2,"method":"DOM.setFileInputFiles","params":{"files":[],"nodeId":1}}"#)
        .await
    else {
        panic!("clearing a file input is relayed");
    };
    let call: Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(call["params"], json!({"files": [], "nodeId": 1}));
}

#[tokio::test]
async fn download_paths_always_land_in_the_profile() {
    let profile = tempfile::tempdir().expect("a profile");
    let mut files = Files::new(profile.path().to_owned(), None);
    let text = r#"{"id":3,"method":"Browser.setDownloadBehavior","params":{"behavior":"allow","downloadPath":"/etc"}}"#;
    let Some(Verdict::Replace(text)) = files.on_client(text).await else {
        panic!("the call is relayed, rewritten");
    };
    let call: Value = serde_json::from_str(&text).expect("JSON");
    let path = PathBuf::from(call["params"]["downloadPath"].as_str().expect("a path"));
    assert!(
        path.starts_with(profile.path().join(DOWNLOAD_DIR)),
        "{path:?}"
    );
    assert!(path.is_dir());
    assert_eq!(call["params"]["behavior"], "allow");
}
