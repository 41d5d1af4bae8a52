//! The bench's sections, one file each.

mod cluster;
mod console;
mod contexts;
mod control;
mod crash;
mod egress;
mod events;
mod memory;
mod relay;
mod start;
mod warm;

use anyhow::Result;

use super::{Bench, Section};

/// Runs the wanted sections in order.
pub async fn run_all(bench: &mut Bench) -> Result<()> {
    if bench.wants(Section::Start) {
        start::run(bench).await?;
    }
    if bench.wants(Section::Warm) {
        warm::run(bench).await?;
    }
    if bench.wants(Section::Relay) {
        relay::run(bench).await?;
    }
    if bench.wants(Section::Crash) {
        crash::run(bench).await?;
    }
    if bench.wants(Section::Control) {
        control::run(bench).await?;
    }
    if bench.wants(Section::Contexts) {
        contexts::run(bench).await?;
    }
    if bench.wants(Section::Events) {
        events::run(bench).await?;
    }
    if bench.wants(Section::Console) {
        console::run(bench).await?;
    }
    if bench.wants(Section::Memory) {
        memory::run(bench).await?;
    }
    if bench.wants(Section::Egress) {
        egress::run(bench).await?;
    }
    if bench.wants(Section::Cluster) {
        cluster::run(bench).await?;
    }
    Ok(())
}
