//! Crash detection: kill -9 of a session's browser -> FAILED event.

use std::time::Instant;

use anyhow::{Context, Result};
use browserd::browser::process_table;
use browserd::pb;

use crate::report::Series;
use crate::{Bench, create};

pub async fn run(bench: &mut Bench) -> Result<()> {
    let mut crash = Series::default();
    for _ in 0..bench.args.crashes {
        let session = create(&bench.cold).await?;
        let mut events = bench
            .cold
            .client
            .clone()
            .watch_sessions(pb::WatchSessionsRequest {
                session_ids: vec![session.id.clone()],
                statuses: vec![pb::SessionStatus::Failed as i32],
                ..Default::default()
            })
            .await?
            .into_inner();
        let pid = *process_table::browser_mains(&bench.cold.profiles_dir.join(&session.id))
            .first()
            .context("the session's browser is not in the process table")?;
        let killed = Instant::now();
        // SAFETY: killing the browser this bench's server launched.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        events
            .message()
            .await?
            .context("stream ended before FAILED")?;
        crash.0.push(killed.elapsed());
    }
    bench.report.section("lifecycle");
    bench
        .report
        .latency("crash", "kill -9 browser -> FAILED event", &crash, None);
    Ok(())
}
