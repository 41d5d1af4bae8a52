//! Several `browserd serve` processes on one PostgreSQL database, as a
//! cluster is run: each node with its own data directory, node id and
//! ephemeral ports, all with one secret file (any node's connect_url
//! must be good on the node that runs the session).

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::process::Command;
use tonic::transport::Channel;

use super::ChildServer;
use crate::pb::session_service_client::SessionServiceClient;

/// How a node is started.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    pub max_sessions: usize,
    pub lease: Duration,
    pub drain_timeout: Duration,
    pub warm_pool: usize,
    /// `--chrome-path`; `None`: the browser `browserd serve` finds.
    pub chrome_path: Option<PathBuf>,
}

impl Default for NodeOptions {
    fn default() -> Self {
        Self {
            max_sessions: 4,
            // Short, so that a lost node is found in seconds.
            lease: Duration::from_secs(2),
            drain_timeout: Duration::ZERO,
            warm_pool: 0,
            chrome_path: None,
        }
    }
}

/// One node of a test cluster. Killed if dropped.
pub struct Node {
    pub id: String,
    pub server: ChildServer,
    /// Every line it logged after its listening line.
    pub log: tokio::sync::mpsc::UnboundedReceiver<String>,
    data_dir: PathBuf,
}

impl Node {
    /// Starts node `id` with `browserd`, the binary, in `data_dir`, on
    /// `database_url`.
    pub async fn start(
        browserd: &Path,
        data_dir: &Path,
        id: &str,
        database_url: &str,
        secret_file: &Path,
        options: &NodeOptions,
    ) -> Self {
        let mut command = Command::new(browserd);
        command
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--cdp-listen",
                "127.0.0.1:0",
            ])
            .arg("--node-id")
            .arg(id)
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--database-url")
            .arg(database_url)
            .arg("--secret-file")
            .arg(secret_file)
            .arg("--max-sessions")
            .arg(options.max_sessions.to_string())
            .arg("--warm-pool")
            .arg(options.warm_pool.to_string())
            .arg("--lease")
            .arg(humantime::format_duration(options.lease).to_string())
            .arg("--drain-timeout")
            .arg(humantime::format_duration(options.drain_timeout).to_string())
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .env("RUST_LOG", "info");
        if let Some(chrome) = &options.chrome_path {
            command.arg("--chrome-path").arg(chrome);
        }
        let (server, log) = ChildServer::spawn_logged(command).await;
        Self {
            id: id.to_owned(),
            server,
            log,
            data_dir: data_dir.to_owned(),
        }
    }

    pub fn client(&self) -> SessionServiceClient<Channel> {
        self.server.client.clone()
    }

    /// Where its browsers' profiles are.
    pub fn profiles(&self) -> PathBuf {
        self.data_dir.join("profiles")
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }
}
