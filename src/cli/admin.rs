//! `browserd projects …`, `browserd keys …` and `browserd nodes …`:
//! AdminService of a running browserd; and `keys create` offline, on the database itself, which is
//! how the first key of a server that refuses to run without one is made.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::output::Output;
use super::{CliError, ClientArgs, connect};
use crate::access;
use crate::domain::{Error, validate};
use crate::pb;
use crate::pb::admin_service_client::AdminServiceClient;
use crate::store::Store;
use crate::wire::proto::to_pb_key;

#[derive(Debug, Args)]
pub struct ProjectsArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(subcommand)]
    pub command: ProjectsCommand,
}

#[derive(Debug, Subcommand)]
pub enum ProjectsCommand {
    /// Create a project.
    Create {
        /// 1 to 63 lowercase letters, digits and hyphens.
        name: String,
        /// Most PENDING or LIVE sessions it may have at once (0: no limit
        /// of its own).
        #[arg(long, default_value_t = 0)]
        max_sessions: u32,
    },
    /// List every project.
    List,
    /// Change a project's session quota; running sessions are not ended.
    Update {
        name: String,
        /// Most PENDING or LIVE sessions at once (0: no limit of its own).
        #[arg(long)]
        max_sessions: u32,
    },
}

#[derive(Debug, Args)]
pub struct NodesArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Default: `list`.
    #[command(subcommand)]
    pub command: Option<NodesCommand>,
}

#[derive(Debug, Subcommand)]
pub enum NodesCommand {
    /// List the cluster's nodes: address, sessions, warm browsers, lease
    /// age, and whether each serves, drains or was lost.
    List,
    /// Stop placing new sessions on a node while its sessions run to
    /// their end (--undo: place on it again).
    Drain {
        node_id: String,
        #[arg(long)]
        undo: bool,
    },
}

#[derive(Debug, Args)]
pub struct KeysArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(subcommand)]
    pub command: KeysCommand,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create an API key and print it: it is shown this once.
    ///
    /// The key alone goes to stdout (`KEY=$(browserd keys create …)`), what
    /// it is to stderr. With --data-dir or --database-url (or
    /// BROWSERD_DATA_DIR / BROWSERD_DATABASE_URL) set, the key is written
    /// straight into that database, with no server and no --api-key: how
    /// the first admin key is made. The project is created if missing. A
    /// server running open on loopback refuses calls without a key from
    /// the next one on. With neither set, the running server at --server
    /// creates it (AdminService, needs an admin key).
    Create(CreateKeyArgs),
    /// List API keys (never the keys themselves), newest first.
    List {
        /// Only this project's keys.
        #[arg(long)]
        project: Option<String>,
    },
    /// Revoke an API key: calls with it are refused from now on.
    Revoke {
        /// The key's id (`browserd_<id>_…`).
        id: String,
    },
}

#[derive(Debug, Args)]
pub struct CreateKeyArgs {
    /// The project the key belongs to.
    #[arg(long)]
    project: String,
    /// An admin key: sees every project's sessions and manages projects
    /// and keys.
    #[arg(long)]
    admin: bool,
    /// What the key is for.
    #[arg(long)]
    description: Option<String>,
    /// Offline: the data directory of `browserd serve`, whose SQLite
    /// database (`<dir>/browserd.db`) gets the key; made (mode 0700) when
    /// missing.
    #[arg(long, env = "BROWSERD_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Offline: the database of `browserd serve` (`sqlite://…` or
    /// `postgres://…`) that gets the key; wins over --data-dir.
    #[arg(long, env = "BROWSERD_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
}

pub async fn projects(args: ProjectsArgs) -> Result<(), CliError> {
    let ProjectsArgs { client, command } = args;
    let out = Output { json: client.json };
    let mut admin = AdminServiceClient::new(connect(&client).await?);
    match command {
        ProjectsCommand::Create { name, max_sessions } => {
            let request = pb::CreateProjectRequest { name, max_sessions };
            out.project(admin.create_project(request).await?.into_inner().project)
        }
        ProjectsCommand::List => {
            let request = pb::ListProjectsRequest {};
            out.projects(&admin.list_projects(request).await?.into_inner().projects)
        }
        ProjectsCommand::Update { name, max_sessions } => {
            let request = pb::UpdateProjectRequest { name, max_sessions };
            out.project(admin.update_project(request).await?.into_inner().project)
        }
    }
}

pub async fn nodes(args: NodesArgs) -> Result<(), CliError> {
    let NodesArgs { client, command } = args;
    let out = Output { json: client.json };
    let mut admin = AdminServiceClient::new(connect(&client).await?);
    if let Some(NodesCommand::Drain { node_id, undo }) = command {
        let request = pb::DrainNodeRequest {
            node_id,
            draining: !undo,
        };
        admin.drain_node(request).await?;
    }
    let request = pb::ListNodesRequest {};
    out.nodes(&admin.list_nodes(request).await?.into_inner().nodes)
}

pub async fn keys(args: KeysArgs) -> Result<(), CliError> {
    let KeysArgs { client, command } = args;
    let out = Output { json: client.json };
    match command {
        KeysCommand::Create(create) => {
            let CreateKeyArgs {
                project,
                admin,
                description,
                data_dir,
                database_url,
            } = create;
            let request = pb::CreateApiKeyRequest {
                project,
                admin,
                description: description.unwrap_or_default(),
            };
            let database = match (database_url, data_dir) {
                (Some(url), _) => Database::Url(url),
                (None, Some(dir)) => Database::DataDir(dir),
                (None, None) => {
                    let mut admin = AdminServiceClient::new(connect(&client).await?);
                    let created = admin.create_api_key(request).await?.into_inner();
                    return out.created_key(&created);
                }
            };
            let created = create_offline(database, request).await?;
            out.created_key(&created)
        }
        KeysCommand::List { project } => {
            let request = pb::ListApiKeysRequest {
                project: project.unwrap_or_default(),
            };
            let mut admin = AdminServiceClient::new(connect(&client).await?);
            out.keys(&admin.list_api_keys(request).await?.into_inner().api_keys)
        }
        KeysCommand::Revoke { id } => {
            let request = pb::RevokeApiKeyRequest { id };
            let mut admin = AdminServiceClient::new(connect(&client).await?);
            out.key(admin.revoke_api_key(request).await?.into_inner().api_key)
        }
    }
}

/// Which database `keys create` writes to without a server, as `serve`
/// finds it: --database-url wins over --data-dir.
enum Database {
    Url(String),
    DataDir(PathBuf),
}

/// Creates the project when missing, then the key, as AdminService would.
/// The request is checked first, so a refused one leaves no project,
/// directory or database behind.
async fn create_offline(
    database: Database,
    request: pb::CreateApiKeyRequest,
) -> Result<pb::CreateApiKeyResponse, CliError> {
    let pb::CreateApiKeyRequest {
        project,
        admin,
        description,
    } = request;
    crate::domain::access::project_name("project", &project)?;
    validate::text(
        "description",
        description.clone(),
        crate::domain::access::DESCRIPTION_MAX_BYTES,
    )?;
    let url = match database {
        Database::Url(url) => url,
        Database::DataDir(dir) => {
            // Made as `serve` makes it: this may be the first write there.
            let dir = std::path::absolute(&dir)
                .and_then(|abs| crate::server::private_dir(&abs).map(|()| abs))
                .map_err(|source| crate::StartError::DataDir { dir, source })?;
            crate::config::default_database_url(&dir)
        }
    };
    let store = Store::connect(&url)
        .await
        .map_err(crate::StartError::from)?;
    crate::server::private_database(&url)?;
    match access::create_project(&store, &project, 0).await {
        Ok(_) => eprintln!("created project {project}"),
        Err(Error::AlreadyExists { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    let (record, key) = access::create_key(&store, &project, admin, description).await?;
    Ok(pb::CreateApiKeyResponse {
        api_key: Some(to_pb_key(&record)),
        key,
    })
}
