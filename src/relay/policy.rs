//! Per-session rules on what a client may ask its browser, applied to each
//! client message before it is relayed.
//!
//! The relay does not parse CDP: a rule names the bytes it cares about (a
//! quoted method name), and only a message that contains them is parsed,
//! and then only for `id`, `method` and `sessionId`. Every other message
//! costs one substring search. A refused call gets a CDP error reply naming
//! the rule; the connection stays open.
//!
//! It decides; it does not act: the relay sends replies and asks the engine
//! to end sessions.

use std::borrow::Cow;

use serde::Deserialize;

/// What the relay does with one client message.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Relay it to the browser unchanged.
    Forward,
    /// Relay this instead (the same call, with paths the browser can use).
    Replace(String),
    /// Do not relay it; send this reply (a CDP error) to the client.
    Refuse(String),
    /// Do not relay it; send this reply to the client, then end the session
    /// as the client asked (`Browser.close`).
    CloseSession(String),
}

/// The part of a CDP call the rules need. Everything else is skipped.
#[derive(Debug, Deserialize)]
pub struct Call<'a> {
    id: Option<u64>,
    #[serde(borrow)]
    method: Option<Cow<'a, str>>,
    #[serde(borrow, rename = "sessionId")]
    session_id: Option<Cow<'a, str>>,
}

struct Rule {
    /// Bytes every message this rule may act on contains. Messages without
    /// them are not parsed.
    needle: &'static str,
    decide: fn(&Call<'_>) -> Option<Verdict>,
}

/// The rules, checked in order; the first verdict wins. Calls that name
/// files need the connection's state: [`files`](super::files) judges them.
const RULES: &[Rule] = &[Rule {
    needle: "\"Browser.close\"",
    decide: browser_close,
}];

/// The verdict on one client text message.
pub fn inspect(text: &str) -> Verdict {
    inspect_with(RULES, text)
}

fn inspect_with(rules: &[Rule], text: &str) -> Verdict {
    let mut matching = rules.iter().filter(|rule| text.contains(rule.needle));
    let Some(first) = matching.next() else {
        return Verdict::Forward;
    };
    // Not a call the rules understand: the browser answers it as it would.
    let Ok(call) = serde_json::from_str::<Call<'_>>(text) else {
        return Verdict::Forward;
    };
    if call.id.is_none() {
        return Verdict::Forward;
    }
    std::iter::once(first)
        .chain(matching)
        .find_map(|rule| (rule.decide)(&call))
        .unwrap_or(Verdict::Forward)
}

/// `Browser.close` would make the browser exit on its own, which looks like
/// a crash; the engine releases the session instead.
fn browser_close(call: &Call<'_>) -> Option<Verdict> {
    (call.method.as_deref() == Some("Browser.close")).then(|| Verdict::CloseSession(success(call)))
}

/// The empty result a call gets when browserd answers it itself.
fn success(call: &Call<'_>) -> String {
    reply(
        call.id,
        call.session_id.as_deref(),
        "result",
        serde_json::json!({}),
    )
}

/// The CDP error a refused call gets; `rule` says which rule refused it and
/// what the client may do instead.
#[cfg(test)]
fn refusal(call: &Call<'_>, rule: &str) -> String {
    error_reply(call.id, call.session_id.as_deref(), rule)
}

/// The CDP error for call `id` (on `session_id`); `rule` says which rule
/// refused it and what the client may do instead.
pub(super) fn error_reply(id: Option<u64>, session_id: Option<&str>, rule: &str) -> String {
    let error = serde_json::json!({ "code": -32000, "message": format!("browserd: {rule}") });
    reply(id, session_id, "error", error)
}

fn reply(id: Option<u64>, session_id: Option<&str>, key: &str, value: serde_json::Value) -> String {
    let mut reply = serde_json::Map::new();
    reply.insert("id".into(), id.into());
    reply.insert(key.into(), value);
    if let Some(session_id) = session_id {
        reply.insert("sessionId".into(), session_id.into());
    }
    serde_json::Value::Object(reply).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(text: &str) -> serde_json::Value {
        serde_json::from_str(text).expect("replies are JSON")
    }

    #[test]
    fn ordinary_calls_are_forwarded_unparsed() {
        for text in [
            r#"{"id":1,"method":"Browser.getVersion"}"#,
            r#"{"id":2,"method":"Runtime.evaluate","params":{"expression":"1"}}"#,
            "not json at all",
        ] {
            assert_eq!(inspect(text), Verdict::Forward, "{text}");
        }
    }

    #[test]
    fn browser_close_is_answered_and_closes_the_session() {
        let Verdict::CloseSession(reply) = inspect(r#"{"id":7,"method":"Browser.close"}"#) else {
            panic!("Browser.close must close the session");
        };
        assert_eq!(json(&reply), serde_json::json!({"id": 7, "result": {}}));
    }

    #[test]
    fn browser_close_on_a_flattened_session_is_answered_on_that_session() {
        let text = r#"{"sessionId":"AB\"C","method" : "Browser.close","id":3,"params":{}}"#;
        let Verdict::CloseSession(reply) = inspect(text) else {
            panic!("Browser.close must close the session");
        };
        assert_eq!(
            json(&reply),
            serde_json::json!({"id": 3, "result": {}, "sessionId": "AB\"C"})
        );
    }

    #[test]
    fn the_method_name_elsewhere_in_a_message_changes_nothing() {
        for text in [
            r#"{"id":1,"method":"Runtime.evaluate","params":{"expression":"\"Browser.close\""}}"#,
            r#"{"method":"Browser.close"}"#,
            r#"{"id":1,"method":"Browser.close""#,
        ] {
            assert_eq!(inspect(text), Verdict::Forward, "{text}");
        }
    }

    #[test]
    fn a_refused_call_gets_a_cdp_error_naming_the_rule() {
        fn no_downloads(call: &Call<'_>) -> Option<Verdict> {
            (call.method.as_deref() == Some("Browser.setDownloadBehavior"))
                .then(|| Verdict::Refuse(refusal(call, "downloads go to the session's directory")))
        }
        let rules = [Rule {
            needle: "\"Browser.setDownloadBehavior\"",
            decide: no_downloads,
        }];
        let text = r#"{"id":9,"sessionId":"S1","method":"Browser.setDownloadBehavior","params":{"behavior":"allow","downloadPath":"/etc"}}"#;
        let Verdict::Refuse(reply) = inspect_with(&rules, text) else {
            panic!("the rule must refuse");
        };
        assert_eq!(
            json(&reply),
            serde_json::json!({
                "id": 9,
                "sessionId": "S1",
                "error": {"code": -32000, "message": "browserd: downloads go to the session's directory"},
            })
        );
        assert_eq!(
            inspect_with(&rules, r#"{"id":1,"method":"Page.navigate"}"#),
            Verdict::Forward
        );
    }
}
