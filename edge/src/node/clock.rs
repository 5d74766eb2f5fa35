//! The edge's one clock: a task that sleeps until the node's earliest
//! deadline (a gap fetch asked again or given up, a parked session's resume
//! window), does what fell due, and sleeps again. Whoever brings a deadline
//! forward wakes it; no other task of the node is spawned to sleep (a
//! resume waits between its own attempts, in its connection's task). The deadlines
//! themselves live in pure code (`cursor.rs`, `parking.rs`), and the state
//! (`state.rs`) says what fell due.

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

    /// Carries out what fell due by `now` (`EdgeState::on_clock` says
    /// what): fetches past their time asked again or given up, sessions
    /// whose window passed ended.
    fn on_clock(self: &Arc<Self>, now: Instant) {
        let expired = {
            let mut state = self.state.lock();
            let due = state.on_clock(now);
            super::resume::parking_gauges(&state.parking);
            self.carry_out(&mut state.cursors, due.steps);
            due.expired
        };
        self.end_expired_sessions(expired);
    }
}
