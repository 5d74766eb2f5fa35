//! A connection's outbound queue: encoded frames waiting for the writer.
//!
//! Bounded in frames and in bytes. A consumer too slow to keep up is not
//! allowed to grow memory: the first push past a bound drops what is queued
//! and closes the connection with 1013, and every other connection goes on.
//! An empty queue holds no allocation, so idle connections cost nothing here.

use std::collections::VecDeque;

use bytes::Bytes;
use parking_lot::Mutex;
use slip_proto::close::{self, CloseCode};
use tokio::sync::Notify;

use crate::effect::KeepAlive;

/// Close code for a consumer that could not keep up ("try again later").
pub const SLOW_CONSUMER_CODE: CloseCode = CloseCode::TRY_AGAIN_LATER;

/// How much one client's outbox may hold.
#[derive(Debug, Clone, Copy)]
pub struct OutboxLimits {
    pub max_frames: usize,
    pub max_bytes: usize,
}

/// Default bound on queued frames per connection.
pub const DEFAULT_OUTBOX_FRAMES: usize = 1024;
/// Default bound on queued bytes per connection.
pub const DEFAULT_OUTBOX_BYTES: usize = 4 * 1024 * 1024;

impl Default for OutboxLimits {
    fn default() -> Self {
        Self { max_frames: DEFAULT_OUTBOX_FRAMES, max_bytes: DEFAULT_OUTBOX_BYTES }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseOrder {
    /// The close frame's code; `None` drops the connection without a close
    /// frame (a backend's DISCONNECT, a failed write).
    pub code: Option<CloseCode>,
    pub reason: String,
}

impl CloseOrder {
    /// The code a backend is told in the CLOSE event.
    pub fn reported_code(&self) -> u16 {
        self.code.map_or(close::ABNORMAL, CloseCode::get)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Push {
    Queued,
    /// This push overflowed the queue; the connection is now closing with 1013.
    Overflowed,
    /// The connection is closing; the frame was dropped.
    Closing,
}

/// Largest buffer kept for reuse once written: a burst's memory is given back.
const RECYCLE_MAX_CAPACITY: usize = 64;

#[derive(Default)]
struct State {
    frames: VecDeque<Bytes>,
    /// An emptied buffer handed back by the writer ([`Outbox::recycle`]), to
    /// take the place of the next one it takes: a busy connection ping-pongs
    /// between two buffers instead of allocating one per write.
    spare: VecDeque<Bytes>,
    bytes: usize,
    close: Option<CloseOrder>,
    /// Boxed: most connections never have one, and an idle one costs a pointer.
    keep_alive: Option<Box<KeepAlive>>,
}

/// What waits to be written to one client: frames bounded in count and
/// bytes (a slow consumer is closed, never allowed to grow memory), a close
/// order, the keep-alive. Filled by anyone, drained by the connection's writer.
pub struct Outbox {
    state: Mutex<State>,
    limits: OutboxLimits,
    /// Wakes the writer: frames were queued or a close was ordered.
    wake: Notify,
    /// Wakes the reader: a close was ordered.
    closing: Notify,
}

/// What the writer takes on one wakeup.
pub struct Batch {
    pub frames: VecDeque<Bytes>,
    /// The keep-alive to send when quiet, if one is set (taken under the same lock).
    pub keep_alive: Option<KeepAlive>,
    pub close: Option<CloseOrder>,
}

impl Outbox {
    pub fn new(limits: OutboxLimits) -> Self {
        Self { state: Mutex::new(State::default()), limits, wake: Notify::new(), closing: Notify::new() }
    }

    pub fn push(&self, frame: Bytes) -> Push {
        let mut state = self.state.lock();
        if state.close.is_some() {
            return Push::Closing;
        }
        if state.frames.len() >= self.limits.max_frames || state.bytes + frame.len() > self.limits.max_bytes {
            state.frames = VecDeque::new();
            state.bytes = 0;
            state.close = Some(CloseOrder { code: Some(SLOW_CONSUMER_CODE), reason: "slow consumer".into() });
            drop(state);
            self.wake.notify_one();
            self.closing.notify_one();
            return Push::Overflowed;
        }
        state.bytes += frame.len();
        state.frames.push_back(frame);
        drop(state);
        self.wake.notify_one();
        Push::Queued
    }

    /// Orders the connection closed with a close frame once what is queued
    /// has been written. The first order wins. Returns false if a close was
    /// already ordered.
    pub fn close(&self, code: CloseCode, reason: &str) -> bool {
        self.order(CloseOrder { code: Some(code), reason: reason.to_owned() })
    }

    /// Orders the connection dropped without a close frame; see [`Outbox::close`].
    pub fn abort(&self, reason: &str) -> bool {
        self.order(CloseOrder { code: None, reason: reason.to_owned() })
    }

    fn order(&self, order: CloseOrder) -> bool {
        let mut state = self.state.lock();
        if state.close.is_some() {
            return false;
        }
        state.close = Some(order);
        drop(state);
        self.wake.notify_one();
        self.closing.notify_one();
        true
    }

    pub fn close_order(&self) -> Option<CloseOrder> {
        self.state.lock().close.clone()
    }

    /// Takes up to `max` queued frames, and the close order once the queue is empty.
    pub fn take(&self, max: usize) -> Batch {
        let mut state = self.state.lock();
        let frames = if state.frames.len() <= max {
            // The whole queue, moved out without copying or allocating.
            let spare = std::mem::take(&mut state.spare);
            std::mem::replace(&mut state.frames, spare)
        } else {
            // A backlog longer than one write: rare, so a copy is fine.
            state.frames.drain(..max).collect()
        };
        state.bytes -= frames.iter().map(Bytes::len).sum::<usize>();
        let close = if state.frames.is_empty() { state.close.clone() } else { None };
        Batch { frames, close, keep_alive: state.keep_alive.as_deref().cloned() }
    }

    /// Sets (or with `None` stops) the keep-alive frame the writer sends on its own.
    pub fn set_keep_alive(&self, keep_alive: Option<KeepAlive>) {
        self.state.lock().keep_alive = keep_alive.map(Box::new);
        self.wake.notify_one();
    }

    /// Takes back a written batch's buffer for reuse (see `State::spare`).
    pub fn recycle(&self, mut frames: VecDeque<Bytes>) {
        frames.clear();
        if frames.capacity() == 0 || frames.capacity() > RECYCLE_MAX_CAPACITY {
            return;
        }
        let mut state = self.state.lock();
        if state.spare.capacity() == 0 && state.close.is_none() {
            state.spare = frames;
        }
    }

    /// Waits until there is something for the writer.
    pub async fn ready(&self) {
        self.wake.notified().await
    }

    /// Waits until a close is ordered (returns at once if one was).
    pub async fn closed(&self) {
        loop {
            let notified = self.closing.notified();
            if self.state.lock().close.is_some() {
                return;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queues_in_order_then_closes_after_draining() {
        let outbox = Outbox::new(OutboxLimits::default());
        assert_eq!(outbox.push(Bytes::from_static(b"a")), Push::Queued);
        assert_eq!(outbox.push(Bytes::from_static(b"b")), Push::Queued);
        assert!(outbox.close(CloseCode::NORMAL, "bye"));
        assert!(!outbox.close(CloseCode::GOING_AWAY, "again"));
        assert!(!outbox.abort("and again"));
        assert_eq!(outbox.push(Bytes::from_static(b"c")), Push::Closing);
        let first = outbox.take(1);
        assert_eq!(first.frames, vec![Bytes::from_static(b"a")]);
        assert_eq!(first.close, None);
        let second = outbox.take(10);
        assert_eq!(second.frames, vec![Bytes::from_static(b"b")]);
        assert_eq!(second.close, Some(CloseOrder { code: Some(CloseCode::NORMAL), reason: "bye".into() }));
    }

    #[test]
    fn a_recycled_buffer_is_reused_and_a_large_one_is_not() {
        let outbox = Outbox::new(OutboxLimits::default());
        outbox.push(Bytes::from_static(b"a"));
        let batch = outbox.take(10);
        let buffer = batch.frames.as_slices().0.as_ptr();
        outbox.recycle(batch.frames);
        outbox.push(Bytes::from_static(b"b"));
        let next = outbox.take(10);
        assert_eq!(next.frames, vec![Bytes::from_static(b"b")]);
        // The second take handed out the first buffer again: no allocation.
        outbox.push(Bytes::from_static(b"c"));
        outbox.recycle(next.frames);
        let third = outbox.take(10);
        assert_eq!(third.frames.as_slices().0.as_ptr(), buffer);

        let big: VecDeque<Bytes> = VecDeque::with_capacity(RECYCLE_MAX_CAPACITY + 1);
        outbox.recycle(big);
        assert_eq!(outbox.state.lock().spare.capacity(), 0, "a burst's buffer is dropped");
    }

    #[test]
    fn a_backlog_longer_than_one_write_comes_out_in_order() {
        let outbox = Outbox::new(OutboxLimits::default());
        for i in 0..5u8 {
            outbox.push(Bytes::from(vec![i]));
        }
        let first = outbox.take(3);
        assert_eq!(first.frames.iter().map(|f| f[0]).collect::<Vec<_>>(), [0, 1, 2]);
        let rest = outbox.take(3);
        assert_eq!(rest.frames.iter().map(|f| f[0]).collect::<Vec<_>>(), [3, 4]);
    }

    #[test]
    fn overflow_in_frames_or_bytes_closes_with_1013() {
        let outbox = Outbox::new(OutboxLimits { max_frames: 2, max_bytes: 100 });
        outbox.push(Bytes::from_static(b"1"));
        outbox.push(Bytes::from_static(b"2"));
        assert_eq!(outbox.push(Bytes::from_static(b"3")), Push::Overflowed);
        let batch = outbox.take(10);
        assert!(batch.frames.is_empty());
        assert_eq!(batch.close.map(|c| c.reported_code()), Some(1013));

        let outbox = Outbox::new(OutboxLimits { max_frames: 100, max_bytes: 10 });
        assert_eq!(outbox.push(Bytes::from(vec![0; 8])), Push::Queued);
        assert_eq!(outbox.push(Bytes::from(vec![0; 8])), Push::Overflowed);
    }
}
