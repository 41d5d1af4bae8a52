//! The `browserd` binary: parse flags, start telemetry, bind, run until
//! SIGTERM or SIGINT.

use std::process::ExitCode;

use clap::Parser;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};

use browserd::config::{Cli, Command};

#[tokio::main]
async fn main() -> ExitCode {
    let Cli { command } = Cli::parse();
    let telemetry = match browserd::telemetry::init() {
        Ok(telemetry) => telemetry,
        Err(e) => {
            eprintln!("browserd: cannot start telemetry: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = match command {
        Command::Serve(config) => serve(config).await,
    };
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

async fn serve(config: browserd::config::Config) -> anyhow::Result<()> {
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
