//! The `browserd` binary: `serve` enters a user namespace of its own when
//! it is not root (see `browser::subids`), starts telemetry, binds, and
//! runs until SIGTERM or SIGINT; `sessions`, `contexts`, `projects`, `keys` and
//! `nodes` are clients of a running server (`keys create` can also write to
//! its database directly).

use std::process::ExitCode;

use clap::Parser;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};

use browserd::browser::subids;
use browserd::cli::{Cli, Command};

fn main() -> ExitCode {
    let Cli { command } = Cli::parse();
    if let Command::Serve(config) = &command
        && config.isolation == browserd::config::Isolation::Jail
        && subids::needed()
    {
        // Before the runtime's threads exist: a process with more than
        // one cannot enter a user namespace.
        if let Err(e) = subids::enter() {
            eprintln!("browserd: cannot give browsers ids of their own: {e}");
            return ExitCode::FAILURE;
        }
    }
    match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime.block_on(dispatch(command)),
        Err(e) => {
            eprintln!("browserd: cannot start the runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(command: Command) -> ExitCode {
    match command {
        Command::Serve(config) => serve(*config).await,
        Command::Sessions(args) => client(browserd::cli::run(args).await),
        Command::Contexts(args) => client(browserd::cli::contexts(args).await),
        Command::Projects(args) => client(browserd::cli::projects(args).await),
        Command::Keys(args) => client(browserd::cli::keys(args).await),
        Command::Nodes(args) => client(browserd::cli::nodes(args).await),
    }
}

/// A client command's exit: its error, if any, on stderr.
fn client(outcome: Result<(), browserd::cli::CliError>) -> ExitCode {
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("browserd: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: browserd::config::Config) -> ExitCode {
    let telemetry = match browserd::telemetry::init(&config.node_id()) {
        Ok(telemetry) => telemetry,
        Err(e) => {
            eprintln!("browserd: cannot start telemetry: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = browserd::front::raise_descriptor_limit() {
        tracing::warn!(error = %e, "cannot raise the descriptor limit");
    }
    let outcome = run(config).await;
    telemetry.shutdown();
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("browserd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: browserd::config::Config) -> anyhow::Result<()> {
    use anyhow::Context;
    let grpc = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let cdp = TcpListener::bind(config.cdp_listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.cdp_listen))?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let shutdown = async move {
        tokio::select! {
            _ = terminate.recv() => tracing::info!("SIGTERM received"),
            _ = interrupt.recv() => tracing::info!("SIGINT received"),
        }
    };
    browserd::run(config, grpc, cdp, shutdown).await?;
    Ok(())
}
