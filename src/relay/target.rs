//! What a relay request names: the session (by its path) and its token
//! (in the query or as a bearer header). It knows nothing of sessions
//! beyond their ids.

use http::Request;

use crate::domain::session::SessionId;
use crate::front::http::bearer;

/// The path of a session's relay URL, followed by its id.
pub const PATH_PREFIX: &str = "/devtools/browser/";

/// What a request path names.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum Target {
    /// `/devtools/browser/<id>`: the session's WebSocket.
    Socket(SessionId),
    /// `/devtools/browser/<id>/json/version`: discovery of the browser
    /// endpoint (what Playwright's `connect_over_cdp("http://…")` asks).
    Version(SessionId),
    /// `/devtools/browser/<id>/json/list` (or `/json`): the session's pages.
    List(SessionId),
    Unknown,
}

pub fn target(path: &str) -> Target {
    let Some(rest) = path.strip_prefix(PATH_PREFIX) else {
        return Target::Unknown;
    };
    let (id, rest) = rest.split_once('/').unwrap_or((rest, ""));
    let Some(id) = SessionId::parse(id) else {
        return Target::Unknown;
    };
    match rest.trim_end_matches('/') {
        "" => Target::Socket(id),
        "json/version" => Target::Version(id),
        "json" | "json/list" => Target::List(id),
        _ => Target::Unknown,
    }
}

/// The session token, from `?token=` or else `Authorization: Bearer`,
/// and whether it came in the URL.
pub fn token<B>(request: &Request<B>) -> Option<(&str, bool)> {
    let in_query = request
        .uri()
        .query()
        .unwrap_or_default()
        .split('&')
        .find_map(|pair| pair.strip_prefix("token="))
        .filter(|token| !token.is_empty());
    match (in_query, bearer(request.headers())) {
        (Some(token), _) => Some((token, true)),
        (None, Some(token)) => Some((token, false)),
        (None, None) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_paths_name_the_socket_and_its_discovery_endpoints() {
        let id = SessionId::new();
        let at = |rest: &str| target(&format!("{PATH_PREFIX}{id}{rest}"));
        assert_eq!(at(""), Target::Socket(id));
        assert_eq!(at("/"), Target::Socket(id));
        // What Playwright asks for given the session's http:// URL.
        assert_eq!(at("/json/version/"), Target::Version(id));
        assert_eq!(at("/json/version"), Target::Version(id));
        assert_eq!(at("/json/list"), Target::List(id));
        assert_eq!(at("/json"), Target::List(id));
        assert_eq!(at("/json/protocol"), Target::Unknown);
        assert_eq!(target("/json/version"), Target::Unknown);
        assert_eq!(target("/devtools/browser/not-an-id"), Target::Unknown);
    }

    #[test]
    fn the_token_comes_from_the_query_or_a_bearer_header() {
        let request = |query: &str, bearer: Option<&str>| {
            let mut builder = Request::get(format!("/?{query}"));
            if let Some(bearer) = bearer {
                builder = builder.header("authorization", format!("Bearer {bearer}"));
            }
            builder.body(()).unwrap()
        };
        assert_eq!(
            token(&request("a=1&token=abc", Some("def"))),
            Some(("abc", true))
        );
        assert_eq!(token(&request("token=", Some("def"))), Some(("def", false)));
        assert_eq!(token(&request("token=", None)), None);
    }
}
