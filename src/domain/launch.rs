//! What a session's browser is asked to look like and go through: its
//! viewport and its proxy. Values only; the browser module applies them.

/// Every page's `innerWidth` × `innerHeight`, not the window's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Viewport {
    pub width: u32,
    pub height: u32,
}

impl Viewport {
    pub const DEFAULT: Viewport = Viewport {
        width: 1280,
        height: 720,
    };
    /// Headless Chromium makes no window narrower than 500 px: a smaller
    /// width would be silently widened, so it is refused instead.
    pub const MIN: Viewport = Viewport {
        width: 500,
        height: 1,
    };
    /// 8K: anything larger is a typo, and costs the browser real memory.
    pub const MAX: Viewport = Viewport {
        width: 7680,
        height: 4320,
    };
}

/// The proxy a browser sends its traffic through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proxy {
    /// `scheme://host:port`, never with credentials: what Chromium's
    /// `--proxy-server` gets when there are none.
    pub server: String,
    /// Sent by browserd's egress proxy (`Proxy-Authorization`, or SOCKS5's
    /// user and password), since Chromium ignores them in
    /// `--proxy-server`.
    pub credentials: Option<ProxyCredentials>,
}

/// `user:password` as written in the proxy URL (percent-encoded). Its
/// `Debug` shows no password.
#[derive(Clone, PartialEq, Eq)]
pub struct ProxyCredentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for ProxyCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyCredentials")
            .field("username", &self.username)
            .field("password", &REDACTED)
            .finish()
    }
}

/// What stands for a password wherever a proxy URL is shown or stored.
pub const REDACTED: &str = "REDACTED";

impl Proxy {
    /// The URL as browserd stores, returns and logs it: the password
    /// replaced by [`REDACTED`], the user name kept so that an operator
    /// can tell which account a session used.
    pub fn shown(&self) -> String {
        match &self.credentials {
            None => self.server.clone(),
            Some(credentials) => {
                let (scheme, authority) = self
                    .server
                    .split_once("://")
                    .unwrap_or(("http", &self.server));
                format!("{scheme}://{}:{REDACTED}@{authority}", credentials.username)
            }
        }
    }
}

impl ProxyCredentials {
    /// The user name and password as the proxy takes them (SOCKS5 sends
    /// them as they are).
    pub fn decoded(&self) -> (Vec<u8>, Vec<u8>) {
        (
            percent_decode(&self.username),
            percent_decode(&self.password),
        )
    }

    /// The `Proxy-Authorization` value: Basic, over the decoded
    /// `user:password`.
    pub fn basic(&self) -> String {
        use base64::Engine as _;
        let mut plain = percent_decode(&self.username);
        plain.push(b':');
        plain.extend(percent_decode(&self.password));
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(plain)
        )
    }
}

/// `%XX` escapes decoded; anything else, a malformed escape included, kept
/// as it is.
fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_decoded_for_the_proxy_and_redacted_when_shown() {
        let proxy = Proxy {
            server: "http://proxy.example:3128".into(),
            credentials: Some(ProxyCredentials {
                username: "al%40ice".into(),
                password: "p%3Ass".into(),
            }),
        };
        // base64("al@ice:p:ss")
        assert_eq!(
            proxy.credentials.as_ref().map(ProxyCredentials::basic),
            Some("Basic YWxAaWNlOnA6c3M=".to_owned())
        );
        assert_eq!(proxy.shown(), "http://al%40ice:REDACTED@proxy.example:3128");
        assert!(!format!("{proxy:?}").contains("p%3Ass"));
        assert_eq!(percent_decode("%zz%4"), b"%zz%4");
    }
}
