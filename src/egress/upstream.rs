//! The proxy a session asked for (`proxy_url`), as the egress proxy's
//! next hop: HTTP or HTTPS (CONNECT, and absolute-form requests with
//! `Proxy-Authorization`), SOCKS5 (RFC 1928, with RFC 1929 user and
//! password) and SOCKS4a. The credentials never reach the browser: it
//! talks to browserd's proxy, which adds them here.

use std::sync::{Arc, OnceLock};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::domain::egress::{authority, unbracketed};
use crate::domain::launch::Proxy;

/// A byte stream to a destination or through a proxy.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
    Socks4,
    Socks5,
}

/// A session's upstream proxy.
#[derive(Clone)]
pub struct Upstream {
    pub scheme: Scheme,
    pub host: String,
    pub port: u16,
    /// Decoded user name and password.
    credentials: Option<(Vec<u8>, Vec<u8>)>,
    /// `Basic …`, for the HTTP schemes.
    authorization: Option<String>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("scheme", &self.scheme)
            .field("host", &self.host)
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl Upstream {
    /// The upstream of a validated proxy URL (`scheme://host:port`).
    pub fn of(proxy: &Proxy) -> Option<Self> {
        let (scheme, authority) = proxy.server.split_once("://")?;
        let scheme = match scheme {
            "http" => Scheme::Http,
            "https" => Scheme::Https,
            "socks4" => Scheme::Socks4,
            "socks5" => Scheme::Socks5,
            _ => return None,
        };
        let (host, port) = authority.rsplit_once(':')?;
        Some(Self {
            scheme,
            host: unbracketed(host).to_owned(),
            port: port.parse().ok()?,
            credentials: proxy.credentials.as_ref().map(|c| c.decoded()),
            authorization: proxy.credentials.as_ref().map(|c| c.basic()),
        })
    }

    /// Whether requests go to it as a proxy speaks HTTP (absolute-form),
    /// rather than through a tunnel it opens.
    pub fn speaks_http(&self) -> bool {
        matches!(self.scheme, Scheme::Http | Scheme::Https)
    }

    pub fn authorization(&self) -> Option<&str> {
        self.authorization.as_deref()
    }

    /// The connection to the proxy itself, over TLS for `https://`.
    pub async fn wrap(&self, tcp: tokio::net::TcpStream) -> std::io::Result<Box<dyn Stream>> {
        if self.scheme != Scheme::Https {
            return Ok(Box::new(tcp));
        }
        let name = tokio_rustls::rustls::pki_types::ServerName::try_from(self.host.clone())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let tls = tokio_rustls::TlsConnector::from(client_config()?)
            .connect(name, tcp)
            .await?;
        Ok(Box::new(tls))
    }

    /// Asks the proxy, over `stream`, for a tunnel to `host:port`, and
    /// returns it. `Err` carries what to tell the browser.
    pub async fn tunnel(
        &self,
        mut stream: Box<dyn Stream>,
        host: &str,
        port: u16,
    ) -> Result<Box<dyn Stream>, String> {
        match self.scheme {
            Scheme::Http | Scheme::Https => {
                http_connect(stream, host, port, self.authorization()).await
            }
            Scheme::Socks5 => socks5(&mut stream, host, port, self.credentials.as_ref())
                .await
                .map(|()| stream)
                .map_err(|e| format!("the SOCKS5 proxy refused the tunnel: {e}")),
            Scheme::Socks4 => socks4a(&mut stream, host, port)
                .await
                .map(|()| stream)
                .map_err(|e| format!("the SOCKS4 proxy refused the tunnel: {e}")),
        }
    }
}

/// CONNECT through an HTTP proxy (hyper's client, then its upgrade).
async fn http_connect(
    stream: Box<dyn Stream>,
    host: &str,
    port: u16,
    authorization: Option<&str>,
) -> Result<Box<dyn Stream>, String> {
    let authority = authority(host, port);
    let failed = |e: hyper::Error| format!("the upstream proxy failed: {e}");
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(failed)?;
    tokio::spawn(connection.with_upgrades());
    let mut request =
        http::Request::connect(authority.as_str()).header(http::header::HOST, &authority);
    if let Some(authorization) = authorization {
        request = request.header(http::header::PROXY_AUTHORIZATION, authorization);
    }
    let request = request
        .body(axum::body::Body::empty())
        .map_err(|e| e.to_string())?;
    let response = sender.send_request(request).await.map_err(failed)?;
    if !response.status().is_success() {
        return Err(format!(
            "the upstream proxy answered {} to CONNECT",
            response.status().as_u16()
        ));
    }
    let upgraded = hyper::upgrade::on(response).await.map_err(failed)?;
    Ok(Box::new(hyper_util::rt::TokioIo::new(upgraded)))
}

async fn socks5(
    stream: &mut Box<dyn Stream>,
    host: &str,
    port: u16,
    credentials: Option<&(Vec<u8>, Vec<u8>)>,
) -> std::io::Result<()> {
    let method = if credentials.is_some() { 0x02 } else { 0x00 };
    stream.write_all(&[0x05, 0x01, method]).await?;
    let mut chosen = [0u8; 2];
    stream.read_exact(&mut chosen).await?;
    if chosen[0] != 0x05 || chosen[1] != method {
        return Err(std::io::Error::other(match chosen[1] {
            0xff => "it accepts none of the offered authentication methods",
            _ => "it chose an authentication method that was not offered",
        }));
    }
    if let Some((user, password)) = credentials {
        let (Ok(user_len), Ok(password_len)) =
            (u8::try_from(user.len()), u8::try_from(password.len()))
        else {
            return Err(std::io::Error::other(
                "user name or password is over 255 bytes",
            ));
        };
        let mut auth = vec![0x01, user_len];
        auth.extend_from_slice(user);
        auth.push(password_len);
        auth.extend_from_slice(password);
        stream.write_all(&auth).await?;
        let mut status = [0u8; 2];
        stream.read_exact(&mut status).await?;
        if status[1] != 0x00 {
            return Err(std::io::Error::other(
                "it refused the user name and password",
            ));
        }
    }
    let mut request = vec![0x05, 0x01, 0x00];
    match host.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(ip)) => {
            request.push(0x01);
            request.extend_from_slice(&ip.octets());
        }
        Ok(std::net::IpAddr::V6(ip)) => {
            request.push(0x04);
            request.extend_from_slice(&ip.octets());
        }
        Err(_) => {
            let name = u8::try_from(host.len())
                .map_err(|_| std::io::Error::other("the host name is over 255 bytes"))?;
            request.extend_from_slice(&[0x03, name]);
            request.extend_from_slice(host.as_bytes());
        }
    }
    request.extend_from_slice(&port.to_be_bytes());
    stream.write_all(&request).await?;
    let mut reply = [0u8; 4];
    stream.read_exact(&mut reply).await?;
    if reply[1] != 0x00 {
        return Err(std::io::Error::other(format!(
            "reply code {} ({})",
            reply[1],
            match reply[1] {
                0x02 => "not allowed by its rules",
                0x03 => "network unreachable",
                0x04 => "host unreachable",
                0x05 => "connection refused",
                0x06 => "TTL expired",
                _ => "general failure",
            }
        )));
    }
    // The bound address, which nothing here needs.
    let skip = match reply[3] {
        0x01 => 4,
        0x04 => 16,
        0x03 => usize::from(stream.read_u8().await?),
        _ => return Err(std::io::Error::other("an unknown address type")),
    };
    let mut bound = vec![0u8; skip + 2];
    stream.read_exact(&mut bound).await?;
    Ok(())
}

/// SOCKS4a: the proxy resolves the name; no password exists in SOCKS4.
async fn socks4a(stream: &mut Box<dyn Stream>, host: &str, port: u16) -> std::io::Result<()> {
    let mut request = vec![0x04, 0x01];
    request.extend_from_slice(&port.to_be_bytes());
    match host.parse::<std::net::Ipv4Addr>() {
        Ok(ip) => {
            request.extend_from_slice(&ip.octets());
            request.push(0);
        }
        Err(_) => {
            request.extend_from_slice(&[0, 0, 0, 1, 0]);
            request.extend_from_slice(host.as_bytes());
            request.push(0);
        }
    }
    stream.write_all(&request).await?;
    let mut reply = [0u8; 8];
    stream.read_exact(&mut reply).await?;
    if reply[1] != 0x5a {
        return Err(std::io::Error::other(format!("reply code {}", reply[1])));
    }
    Ok(())
}

/// TLS to `https://` proxies, checked against the system's roots (where
/// an operator puts a private CA).
fn client_config() -> std::io::Result<Arc<tokio_rustls::rustls::ClientConfig>> {
    static CONFIG: OnceLock<Result<Arc<tokio_rustls::rustls::ClientConfig>, String>> =
        OnceLock::new();
    let made = CONFIG.get_or_init(|| {
        use tokio_rustls::rustls;
        let mut roots = rustls::RootCertStore::empty();
        let found = rustls_native_certs::load_native_certs();
        for cert in found.certs {
            let _ = roots.add(cert);
        }
        if roots.is_empty() {
            return Err("no system root certificates were found".into());
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map(|builder| Arc::new(builder.with_root_certificates(roots).with_no_client_auth()))
            .map_err(|e| e.to_string())
    });
    made.clone().map_err(std::io::Error::other)
}
