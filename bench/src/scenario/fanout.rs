//! `fanout`: N subscribers of one channel, publishes closed-loop (never more
//! than `window` ahead of what subscriber 0 has received), each stamped with
//! its send time; deliveries per second and publish→receive latency.

use std::time::Duration;

use serde::Serialize;

use crate::stats::{self, Latency};
use crate::swarm::{Report, Swarm};
use crate::target::Target;

/// The parent gives up when no worker reported for this long. Workers end
/// themselves after [`crate::swarm::QUIET_TIMEOUT`] without a delivery, so
/// this only guards against a worker that hangs: a backlogged gateway may take
/// minutes between the last publish and its last delivery, with no report.
const REPORT_TIMEOUT: Duration = Duration::from_secs(900);

#[derive(Clone, Copy, Debug, Serialize)]
pub struct Plan {
    pub subscribers: usize,
    pub messages: usize,
    pub window: usize,
    pub payload: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct Fanout {
    pub subscribers: usize,
    pub failed: usize,
    pub delivered: usize,
    pub expected: usize,
    pub secs: f64,
    pub deliveries_per_sec: f64,
    pub latency: Latency,
}

pub async fn run(target: &Target, plan: Plan) -> anyhow::Result<Fanout> {
    let mut swarm = Swarm::connect(&target.ws_urls(), plan.subscribers).await?;
    // Let subscriptions settle (Pushpin subscribes after the OPEN round trip).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut reports = swarm.fanout(plan.messages).await?;
    let mut publisher = target.publisher().await?;
    let filler = "x".repeat(plan.payload);
    let started = stats::now_nanos();
    let (mut sent, mut checked_up_to, mut done) = (0, 0, 0);
    let (mut latencies, mut last_nanos) = (Vec::new(), started);
    while done < swarm.workers() {
        while sent < plan.messages && sent < checked_up_to + plan.window {
            publisher.publish(stats::stamped(sent, &filler)).await?;
            sent += 1;
        }
        match tokio::time::timeout(REPORT_TIMEOUT, reports.recv()).await {
            Ok(Some(Report::Seen(index))) => checked_up_to = checked_up_to.max(index + 1),
            Ok(Some(Report::Done { last_nanos: last, latencies: mut more })) => {
                done += 1;
                last_nanos = last_nanos.max(last);
                latencies.append(&mut more);
            }
            Ok(None) | Err(_) => break,
        }
        // Client 0 may have failed to connect, or lost messages: keep publishing anyway.
        if done > 0 {
            checked_up_to = plan.messages;
        }
    }
    let secs = (last_nanos.saturating_sub(started) as f64 / 1e9).max(1e-9);
    Ok(Fanout {
        subscribers: swarm.connected,
        failed: swarm.failed,
        delivered: latencies.len(),
        expected: swarm.connected * plan.messages,
        secs,
        deliveries_per_sec: latencies.len() as f64 / secs,
        latency: Latency::of(&mut latencies),
    })
}

impl std::fmt::Display for Fanout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "  delivered {} of {} in {:.2} s: {:.0} deliveries/s",
            self.delivered, self.expected, self.secs, self.deliveries_per_sec
        )?;
        if self.failed > 0 {
            writeln!(f, "  {} subscribers failed to connect", self.failed)?;
        }
        write!(f, "  publish→receive latency: {}", self.latency)
    }
}
