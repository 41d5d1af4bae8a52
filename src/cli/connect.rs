//! How every client command reaches browserd: the address, TLS (system
//! roots, or `--ca-cert`, and a client certificate for mutual TLS), and the
//! API key added to each call.

use std::path::{Path, PathBuf};

use clap::Args;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};

use super::CliError;

/// How every client command reaches browserd and prints what it gets.
#[derive(Debug, Args)]
pub struct ClientArgs {
    /// browserd's gRPC address: `host:port`, or an `http://` or `https://`
    /// (TLS) URL.
    #[arg(
        long,
        global = true,
        env = "BROWSERD_SERVER",
        default_value = "127.0.0.1:50051"
    )]
    pub server: String,
    /// API key sent with every call (`authorization: Bearer <key>`); a
    /// server that has keys refuses calls without one.
    #[arg(long, global = true, env = "BROWSERD_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// PEM CA certificate(s) to trust for the server's certificate instead
    /// of the system's roots; implies TLS.
    #[arg(long, global = true, env = "BROWSERD_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
    /// PEM certificate to present to a server that asks for one
    /// (--tls-client-ca); implies TLS. Needs --client-key.
    #[arg(
        long,
        global = true,
        env = "BROWSERD_CLIENT_CERT",
        requires = "client_key"
    )]
    pub client_cert: Option<PathBuf>,
    /// PEM private key of --client-cert.
    #[arg(
        long,
        global = true,
        env = "BROWSERD_CLIENT_KEY",
        requires = "client_cert"
    )]
    pub client_key: Option<PathBuf>,
    /// Print JSON (protobuf JSON mapping) instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
}

/// A channel whose every call carries the API key.
pub(super) type Connection = InterceptedService<Channel, Bearer>;

/// Adds `authorization: Bearer <key>` to every call, when a key was given.
#[derive(Clone)]
pub(super) struct Bearer(Option<MetadataValue<Ascii>>);

impl Bearer {
    fn new(api_key: Option<&str>) -> Result<Self, CliError> {
        let Some(key) = api_key.map(str::trim).filter(|k| !k.is_empty()) else {
            return Ok(Self(None));
        };
        if !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(CliError::ApiKey);
        }
        let mut value =
            MetadataValue::try_from(format!("Bearer {key}")).map_err(|_| CliError::ApiKey)?;
        // HTTP/2 then never puts it in a header compression table, and the
        // value's `Debug` prints `Sensitive` instead of the key.
        value.set_sensitive(true);
        Ok(Self(Some(value)))
    }
}

impl Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// Connects to browserd at `--server` (over TLS for `https://`, or when
/// a certificate flag is given); every call then carries the key.
pub(super) async fn connect(args: &ClientArgs) -> Result<Connection, CliError> {
    let bearer = Bearer::new(args.api_key.as_deref())?;
    let server = args.server.clone();
    let tls = client_tls(
        args.ca_cert.as_deref(),
        args.client_cert.as_deref().zip(args.client_key.as_deref()),
    )?;
    let endpoint = match (server.split_once("://"), &tls) {
        (Some(("http", _)), Some(_)) => {
            return Err(CliError::Server {
                server,
                reason: "--ca-cert and --client-cert need TLS: use https://".into(),
            });
        }
        (Some(_), _) => server.clone(),
        (None, Some(_)) => format!("https://{server}"),
        (None, None) => format!("http://{server}"),
    };
    let invalid = |e: &dyn std::fmt::Display| CliError::Server {
        server: server.clone(),
        reason: e.to_string(),
    };
    let mut endpoint = Channel::from_shared(endpoint).map_err(|e| invalid(&e))?;
    if endpoint.uri().scheme_str() == Some("https") {
        let tls = tls.unwrap_or_else(|| ClientTlsConfig::new().with_native_roots());
        endpoint = endpoint.tls_config(tls).map_err(|e| invalid(&e))?;
    }
    let channel = endpoint.connect().await.map_err(|e| CliError::Connect {
        reason: causes(&e),
        server,
    })?;
    Ok(InterceptedService::new(channel, bearer))
}

/// The TLS the flags ask for: `None` when they name no file.
fn client_tls(
    ca_cert: Option<&Path>,
    identity: Option<(&Path, &Path)>,
) -> Result<Option<ClientTlsConfig>, CliError> {
    if ca_cert.is_none() && identity.is_none() {
        return Ok(None);
    }
    let read = |flag, path: &Path| {
        std::fs::read(path).map_err(|source| CliError::ReadFile {
            flag,
            path: path.to_owned(),
            source,
        })
    };
    let mut tls = ClientTlsConfig::new();
    tls = match ca_cert {
        Some(path) => tls.ca_certificate(Certificate::from_pem(read("--ca-cert", path)?)),
        None => tls.with_native_roots(),
    };
    if let Some((cert, key)) = identity {
        let cert = read("--client-cert", cert)?;
        let key = read("--client-key", key)?;
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    Ok(Some(tls))
}

/// An error and its causes, which is where a transport error says what
/// went wrong (refused, or which certificate check failed).
fn causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        text.push_str(": ");
        text.push_str(&e.to_string());
        cause = e.source();
    }
    text
}
