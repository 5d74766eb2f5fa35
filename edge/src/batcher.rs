//! Per-connection callback ordering, as pure code.
//!
//! One callback request in flight per connection; events that arrive
//! meanwhile wait here and go, in order, in the next request's `events`.
//! The queue is bounded: when it is full the connection stops reading its
//! socket until the backend catches up, so TCP pushes back on the client.

use std::collections::VecDeque;

use slip_proto::callback::Event;

/// Default bound on events waiting behind an in-flight callback (and on
/// events in one request).
pub const DEFAULT_MAX_PENDING_EVENTS: usize = 64;

/// What a connection tells its backend: a SLIP event, a client's binary
/// message as it came (base64 only when a SLIP request is built, so a
/// WebSocket-over-HTTP target gets the bytes without a round trip through
/// base64), or (WebSocket-over-HTTP only, as Pushpin forwards them) a
/// client's ping.
#[derive(Debug, Clone, PartialEq)]
pub enum SocketEvent {
    Event(Event),
    Binary(bytes::Bytes),
    Ping(Vec<u8>),
}

impl From<Event> for SocketEvent {
    fn from(event: Event) -> Self {
        SocketEvent::Event(event)
    }
}

pub struct Batcher<E = Event> {
    pending: VecDeque<E>,
    in_flight: bool,
    max_pending: usize,
}

impl<E> Batcher<E> {
    pub fn new(max_pending: usize) -> Self {
        Self { pending: VecDeque::new(), in_flight: false, max_pending: max_pending.max(1) }
    }

    /// Adds an event; returns a batch to send now if nothing is in flight.
    pub fn push(&mut self, event: E) -> Option<Vec<E>> {
        self.pending.push_back(event);
        if self.in_flight { None } else { self.next() }
    }

    /// The in-flight request finished; returns the next batch, if any waits.
    pub fn complete(&mut self) -> Option<Vec<E>> {
        self.in_flight = false;
        self.next()
    }

    /// An empty batch, for a keep-alive request, if nothing is in flight or
    /// waiting; it counts as in flight like any other.
    pub fn empty(&mut self) -> Option<Vec<E>> {
        if self.in_flight || !self.pending.is_empty() {
            return None;
        }
        self.in_flight = true;
        Some(Vec::new())
    }

    /// No room for another event: stop reading until a request completes.
    pub fn is_full(&self) -> bool {
        self.pending.len() >= self.max_pending
    }

    pub fn is_idle(&self) -> bool {
        !self.in_flight && self.pending.is_empty()
    }

    fn next(&mut self) -> Option<Vec<E>> {
        if self.pending.is_empty() {
            return None;
        }
        self.in_flight = true;
        let n = self.pending.len().min(self.max_pending);
        let batch = self.pending.drain(..n).collect();
        if self.pending.is_empty() {
            self.pending = VecDeque::new();
        }
        Some(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(i: usize) -> Event {
        Event::Text { connection_id: "c".into(), data: i.to_string() }
    }

    fn data(batch: &[Event]) -> Vec<String> {
        batch
            .iter()
            .map(|e| match e {
                Event::Text { data, .. } => data.clone(),
                other => format!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn one_in_flight_and_the_rest_batched_in_order() {
        let mut b: Batcher = Batcher::new(3);
        assert_eq!(data(&b.push(text(0)).unwrap()), ["0"]);
        assert!(b.push(text(1)).is_none());
        assert!(b.push(text(2)).is_none());
        assert!(!b.is_full());
        assert!(b.push(text(3)).is_none());
        assert!(b.is_full());
        assert_eq!(data(&b.complete().unwrap()), ["1", "2", "3"]);
        assert!(!b.is_idle());
        assert!(b.complete().is_none());
        assert!(b.is_idle());
    }

    #[test]
    fn an_empty_batch_holds_back_what_arrives_meanwhile() {
        let mut b: Batcher = Batcher::new(3);
        assert_eq!(b.empty(), Some(vec![]));
        assert!(b.push(text(0)).is_none(), "the empty request is in flight");
        assert!(b.empty().is_none());
        assert_eq!(data(&b.complete().unwrap()), ["0"]);
    }

    #[test]
    fn every_event_goes_out_exactly_once_in_order() {
        let mut b: Batcher = Batcher::new(5);
        let mut sent = Vec::new();
        for i in 0..100 {
            if let Some(batch) = b.push(text(i)) {
                sent.extend(data(&batch));
            }
            if i % 7 == 0
                && let Some(batch) = b.complete()
            {
                sent.extend(data(&batch));
            }
        }
        while let Some(batch) = b.complete() {
            sent.extend(data(&batch));
        }
        let expected: Vec<String> = (0..100).map(|i| i.to_string()).collect();
        assert_eq!(sent, expected);
    }
}
