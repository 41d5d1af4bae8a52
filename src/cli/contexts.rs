//! `browserd contexts …`: ContextService of a running browserd. Sessions
//! start from a context with `browserd sessions create --context`.

use clap::{Args, Subcommand};

use super::output::Output;
use super::{CliError, ClientArgs, connect, label};
use crate::pb;
use crate::pb::context_service_client::ContextServiceClient;

#[derive(Debug, Args)]
pub struct ContextsArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(subcommand)]
    pub command: ContextsCommand,
}

#[derive(Debug, Subcommand)]
pub enum ContextsCommand {
    /// Create an empty context (version 0) in the key's project.
    Create {
        /// Unique within the project: 1 to 128 bytes.
        name: String,
        /// A label (repeatable).
        #[arg(long = "metadata", value_name = "KEY=VALUE", value_parser = label)]
        metadata: Vec<(String, String)>,
    },
    /// Print one context.
    Get { context_id: String },
    /// List contexts by project and name (every page).
    List {
        /// Only contexts with this label (repeatable: all must match).
        #[arg(long = "metadata", value_name = "KEY=VALUE", value_parser = label)]
        metadata: Vec<(String, String)>,
        /// Only this project's contexts (default: every project the key
        /// sees).
        #[arg(long)]
        project: Option<String>,
        /// Contexts per request; every page is fetched.
        #[arg(long, default_value_t = 100)]
        page_size: i32,
    },
    /// Delete a context and its saved state; refused while a session uses
    /// it.
    Delete { context_id: String },
}

pub async fn contexts(args: ContextsArgs) -> Result<(), CliError> {
    let ContextsArgs { client, command } = args;
    let out = Output { json: client.json };
    let mut client = ContextServiceClient::new(connect(&client).await?);
    match command {
        ContextsCommand::Create { name, metadata } => {
            let request = pb::CreateContextRequest {
                name,
                metadata: metadata.into_iter().collect(),
            };
            out.context(client.create_context(request).await?.into_inner().context)
        }
        ContextsCommand::Get { context_id } => {
            let request = pb::GetContextRequest { context_id };
            out.context(client.get_context(request).await?.into_inner().context)
        }
        ContextsCommand::List {
            metadata,
            project,
            page_size,
        } => {
            let mut contexts = Vec::new();
            let mut page_token = String::new();
            loop {
                let request = pb::ListContextsRequest {
                    metadata: metadata.iter().cloned().collect(),
                    page_size,
                    page_token,
                    project: project.clone().unwrap_or_default(),
                };
                let page = client.list_contexts(request).await?.into_inner();
                contexts.extend(page.contexts);
                if page.next_page_token.is_empty() {
                    break;
                }
                page_token = page.next_page_token;
            }
            out.contexts(&contexts)
        }
        ContextsCommand::Delete { context_id } => {
            let request = pb::DeleteContextRequest {
                context_id: context_id.clone(),
            };
            client.delete_context(request).await?;
            out.deleted_context(&context_id)
        }
    }
}
