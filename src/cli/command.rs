//! The `browserd` command line: `serve` (whose flags are
//! [`crate::config::Config`]) and the client commands of this module.

use clap::{Parser, Subcommand};

use super::{ContextsArgs, KeysArgs, NodesArgs, ProjectsArgs, SessionsArgs};
use crate::config::Config;

#[derive(Debug, Parser)]
#[command(
    name = "browserd",
    version,
    about = "Self-hosted browser sessions over gRPC"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the session service.
    Serve(Box<Config>),
    /// Manage the sessions of a running browserd (a gRPC client).
    Sessions(SessionsArgs),
    /// Manage the saved browser contexts of a running browserd.
    Contexts(ContextsArgs),
    /// Manage the projects of a running browserd (needs an admin key).
    Projects(ProjectsArgs),
    /// Manage API keys: on a running browserd (needs an admin key), or
    /// offline in its database to make the first one.
    Keys(KeysArgs),
    /// The nodes of a cluster: list them, drain one (needs an admin key).
    Nodes(NodesArgs),
}
