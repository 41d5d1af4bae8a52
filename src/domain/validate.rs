//! Bounds on what callers may ask for. Each check names the request field,
//! so a client learns which value to fix. Untrusted text that a refusal
//! quotes goes through [`untrusted`], so no message or log line carries it
//! raw or unbounded.

use std::time::Duration;

use super::egress::{EgressRules, MAX_SESSION_RULES, Rule};
use super::error::{Error, Result, is_forbidden, untrusted};
use super::launch::{Proxy, ProxyCredentials, Viewport};
use super::session::{
    METADATA_MAX_ENTRIES, METADATA_MAX_KEY_BYTES, METADATA_MAX_VALUE_BYTES, Metadata,
};

pub const USER_AGENT_MAX_BYTES: usize = 512;
pub const PROXY_URL_MAX_BYTES: usize = 2048;
pub const IDEMPOTENCY_KEY_MAX_BYTES: usize = 128;

const FORBIDDEN: &str = "must not contain control or bidirectional-control characters";

pub fn timeout(field: &str, value: Duration, max: Duration) -> Result<Duration> {
    if value.is_zero() {
        return Err(Error::invalid(field, "must be positive"));
    }
    if value > max {
        return Err(Error::invalid(
            field,
            format!(
                "{} is above the server maximum of {}",
                humantime::format_duration(value),
                humantime::format_duration(max)
            ),
        ));
    }
    Ok(value)
}

pub fn metadata(field: &str, metadata: &Metadata) -> Result<()> {
    if metadata.len() > METADATA_MAX_ENTRIES {
        return Err(Error::invalid(
            field,
            format!("at most {METADATA_MAX_ENTRIES} entries"),
        ));
    }
    for (key, value) in metadata {
        if key.is_empty() || key.len() > METADATA_MAX_KEY_BYTES {
            return Err(Error::invalid(
                field,
                format!("keys must be 1 to {METADATA_MAX_KEY_BYTES} bytes"),
            ));
        }
        let entry = || format!("{field}[{}]", untrusted(key));
        if key.chars().any(is_forbidden) {
            return Err(Error::invalid(entry(), format!("the key {FORBIDDEN}")));
        }
        if value.len() > METADATA_MAX_VALUE_BYTES {
            return Err(Error::invalid(
                entry(),
                format!("values must be at most {METADATA_MAX_VALUE_BYTES} bytes"),
            ));
        }
        if value.chars().any(is_forbidden) {
            return Err(Error::invalid(entry(), format!("the value {FORBIDDEN}")));
        }
    }
    Ok(())
}

pub fn viewport(viewport: Viewport) -> Result<Viewport> {
    let (min, max) = (Viewport::MIN, Viewport::MAX);
    if !(min.width..=max.width).contains(&viewport.width) {
        return Err(Error::invalid(
            "viewport.width",
            format!(
                "must be {} to {}; for a narrower screen, emulate it from the client (e.g. Playwright's viewport option)",
                min.width, max.width
            ),
        ));
    }
    if !(min.height..=max.height).contains(&viewport.height) {
        return Err(Error::invalid(
            "viewport.height",
            format!("must be {} to {}", min.height, max.height),
        ));
    }
    Ok(viewport)
}

/// Optional free text: empty means unset. Control and bidi characters are
/// refused: the value becomes a browser command-line flag, and operators
/// read it in lists and logs.
pub fn text(field: &str, value: String, max_bytes: usize) -> Result<Option<String>> {
    if value.is_empty() {
        return Ok(None);
    }
    if value.len() > max_bytes {
        return Err(Error::invalid(
            field,
            format!("must be at most {max_bytes} bytes"),
        ));
    }
    if value.chars().any(is_forbidden) {
        return Err(Error::invalid(field, FORBIDDEN));
    }
    Ok(Some(value))
}

/// A session's egress rules, each list at most [`MAX_SESSION_RULES`]
/// long; a bad rule is named by its place (`egress.allow[2]`).
pub fn egress(allow: Vec<String>, deny: Vec<String>) -> Result<EgressRules> {
    let parse = |list: &str, rules: Vec<String>| -> Result<Vec<Rule>> {
        if rules.len() > MAX_SESSION_RULES {
            return Err(Error::invalid(
                format!("egress.{list}"),
                format!("has more than {MAX_SESSION_RULES} rules"),
            ));
        }
        rules
            .iter()
            .enumerate()
            .map(|(i, rule)| {
                Rule::parse(rule).map_err(|why| Error::invalid(format!("egress.{list}[{i}]"), why))
            })
            .collect()
    };
    Ok(EgressRules {
        allow: parse("allow", allow)?,
        deny: parse("deny", deny)?,
    })
}

/// A proxy URL, `scheme://[user[:password]@]host:port`. Credentials are
/// taken for every scheme but `socks4` (which has no password): the
/// egress proxy adds them. Never quoted back: it may hold a password.
pub fn proxy_url(value: String) -> Result<Option<Proxy>> {
    let Some(url) = text("proxy_url", value, PROXY_URL_MAX_BYTES)? else {
        return Ok(None);
    };
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| Error::invalid("proxy_url", "must look like scheme://host:port"))?;
    if !["http", "https", "socks4", "socks5"].contains(&scheme) {
        return Err(Error::invalid(
            "proxy_url",
            "scheme must be http, https, socks4 or socks5",
        ));
    }
    let authority = rest.trim_end_matches('/');
    let (userinfo, host_port) = match authority.rsplit_once('@') {
        Some((userinfo, host_port)) => (Some(userinfo), host_port),
        None => (None, authority),
    };
    let port_ok = host_port
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0));
    if !port_ok || host_port.contains(['/', ' ', ',', ';']) {
        return Err(Error::invalid(
            "proxy_url",
            "must look like scheme://host:port",
        ));
    }
    let credentials = match userinfo {
        None => None,
        Some(_) if scheme == "socks4" => {
            return Err(Error::invalid(
                "proxy_url",
                "socks4:// has no password: use socks5:// for a proxy with credentials",
            ));
        }
        Some(userinfo) => {
            let (username, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
            if username.is_empty() || userinfo.contains(['/', ' ', ',', ';']) {
                return Err(Error::invalid(
                    "proxy_url",
                    "credentials must look like user:password@, percent-encoded",
                ));
            }
            Some(ProxyCredentials {
                username: username.to_owned(),
                password: password.to_owned(),
            })
        }
    };
    Ok(Some(Proxy {
        server: format!("{scheme}://{host_port}"),
        credentials,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::error::UNTRUSTED_SHOWN_BYTES;

    #[test]
    fn proxy_urls_need_a_known_scheme_a_host_and_a_port() {
        assert!(proxy_url("http://127.0.0.1:3128".into()).unwrap().is_some());
        assert!(
            proxy_url("socks5://proxy.internal:1080/".into())
                .unwrap()
                .is_some()
        );
        assert!(proxy_url(String::new()).unwrap().is_none());
        let authenticated = proxy_url("http://us%40er:pa:ss@proxy:3128/".into())
            .unwrap()
            .expect("a proxy");
        assert_eq!(authenticated.server, "http://proxy:3128");
        let credentials = authenticated.credentials.expect("credentials");
        assert_eq!(
            (credentials.username.as_str(), credentials.password.as_str()),
            ("us%40er", "pa:ss")
        );
        for bad in [
            "ftp://h:1",
            "http://h",
            "http://:80",
            "h:80",
            "http://h:0",
            "http://h:80/x",
            "http://@h:80",
            "http://:pw@h:80",
            "socks4://u:p@h:1080",
        ] {
            assert!(proxy_url(bad.into()).is_err(), "{bad} must be refused");
        }
        for with_credentials in ["https://u:p@h:443", "socks5://u:p@h:1080"] {
            let proxy = proxy_url(with_credentials.into()).unwrap();
            assert!(proxy.and_then(|p| p.credentials).is_some());
        }
    }

    #[test]
    fn egress_rules_are_named_by_their_place_when_they_do_not_parse() {
        let rules = egress(vec!["example.com".into()], vec!["10.0.0.0/8".into()]).unwrap();
        assert_eq!((rules.allow.len(), rules.deny.len()), (1, 1));
        let refused = egress(vec!["a.test".into(), "bad rule".into()], vec![]).unwrap_err();
        assert!(refused.to_string().contains("egress.allow[1]"), "{refused}");
        let many = vec!["a.test".to_owned(); MAX_SESSION_RULES + 1];
        let refused = egress(vec![], many).unwrap_err();
        assert!(refused.to_string().contains("egress.deny"), "{refused}");
    }

    #[test]
    fn control_and_bidi_characters_are_refused_in_every_text_field() {
        let bad = [
            "\0", "\n", "\r", "\t", "\u{7f}", "\u{85}", "\u{061c}", "\u{200e}", "\u{200f}",
            "\u{202a}", "\u{202e}", "\u{2066}", "\u{2069}",
        ];
        for c in bad {
            let text_value = format!("a{c}b");
            assert!(
                text("user_agent", text_value.clone(), 512).is_err(),
                "{c:?}"
            );
            assert!(proxy_url(format!("http://h{c}:80")).is_err(), "{c:?}");
            let key: Metadata = [(text_value.clone(), "v".to_owned())].into_iter().collect();
            match metadata("metadata", &key) {
                Err(Error::InvalidArgument { field, .. }) => {
                    assert!(field.starts_with("metadata["), "{field}");
                    assert!(!field.contains(c), "the field name carries {c:?} raw");
                }
                other => panic!("key with {c:?}: {other:?}"),
            }
            let value: Metadata = [("k".to_owned(), text_value)].into_iter().collect();
            match metadata("metadata", &value) {
                Err(Error::InvalidArgument { field, .. }) => assert_eq!(field, "metadata[k]"),
                other => panic!("value with {c:?}: {other:?}"),
            }
        }
        // Other non-ASCII text is fine.
        assert!(text("user_agent", "Mozilla/5.0 (日本語; ü)".into(), 512).is_ok());
        let labels: Metadata = [("équipe".to_owned(), "données ✓".to_owned())]
            .into_iter()
            .collect();
        assert!(metadata("metadata", &labels).is_ok());
    }

    #[test]
    fn untrusted_text_is_escaped_and_bounded() {
        assert_eq!(untrusted("abc"), "abc");
        assert_eq!(untrusted("a\nb\"c"), "a\\nb\\\"c");
        assert_eq!(untrusted("x\u{202e}y"), "x\\u{202e}y");
        let long = untrusted(&"a".repeat(1 << 20));
        assert_eq!(long, format!("{}…", "a".repeat(UNTRUSTED_SHOWN_BYTES)));
        let escapes = untrusted(&"\u{202e}".repeat(1000));
        assert!(
            escapes.len() <= UNTRUSTED_SHOWN_BYTES + '…'.len_utf8(),
            "{escapes}"
        );
        assert!(!escapes.contains('\u{202e}'));
    }

    #[test]
    fn timeouts_must_be_positive_and_at_most_the_maximum() {
        let max = Duration::from_secs(60);
        assert!(timeout("timeout", Duration::ZERO, max).is_err());
        assert!(timeout("timeout", Duration::from_secs(61), max).is_err());
        assert_eq!(timeout("timeout", max, max).unwrap(), max);
    }
}
