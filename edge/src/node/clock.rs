//! The edge's one clock: a task that sleeps until the node's earliest
//! deadline (a gap fetch asked again or given up, a parked session's resume
//! window), does what fell due, and sleeps again. Whoever brings a deadline
//! forward wakes it; nothing else in the node sleeps. The deadlines
//! themselves live in pure code (`cursor.rs`, `expiry.rs`).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::time::Instant;

use super::Edge;

impl Edge {
    /// A deadline may have come earlier: the clock looks again (started
    /// the first time it is needed).
    pub(super) fn wake_clock(self: &Arc<Self>) {
        if self.clock_started.swap(true, Ordering::AcqRel) {
            self.clock.notify_one();
        } else {
            let edge = self.clone();
            self.tasks.spawn(self.stopping.clone().run_until_cancelled_owned(edge.run_clock()));
        }
    }

    async fn run_clock(self: Arc<Self>) {
        loop {
            let next = self.state.lock().next_deadline();
            match next {
                Some(at) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(at) => {}
                        () = self.clock.notified() => {}
                    }
                }
                None => self.clock.notified().await,
            }
            self.on_clock(Instant::now());
        }
    }

    /// Does what fell due by `now`: fetches past their time are asked again
    /// or given up; sessions whose window passed end.
    fn on_clock(self: &Arc<Self>, now: Instant) {
        {
            let mut state = self.state.lock();
            if state.cursors.next_deadline().is_some_and(|at| at <= now) {
                let steps = state.cursors.expire(now);
                self.carry_out(&mut state.cursors, steps);
            }
        }
        self.end_expired_sessions(now);
    }
}
