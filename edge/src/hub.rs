//! The local hub: this edge's connections, which channels each is subscribed
//! to, and local fan-out. No sockets and no clock: frames go into each
//! connection's [`Outbox`], the connection's own task writes them.
//!
//! The hub reports when a channel gains its first or loses its last local
//! subscriber, which is when the edge tells the channel's owner (interest).

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use slip_proto::close::CloseCode;
use tokio::sync::Notify;

use crate::outbox::{Outbox, Push};
use crate::session::{Message, Route, SessionState};

/// A `slip.v1` session's state, shared by its hub entry and its subscriptions.
pub type SessionCell = Arc<Mutex<SessionState>>;

/// Default bound on channels one connection may be subscribed to.
pub const DEFAULT_MAX_SUBSCRIPTIONS: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subscribed {
    /// The first local subscriber of this channel: announce interest.
    First,
    Added,
    Already,
    NoConnection,
    TooMany,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unsubscribed {
    /// The last local subscriber left: withdraw interest.
    Last,
    Removed,
    NotSubscribed,
    NoConnection,
}

/// What the hub knows about one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionView {
    pub metadata: Arc<str>,
    pub channels: Vec<String>,
}

struct Entry {
    key: u64,
    outbox: Arc<Outbox>,
    /// Serialized JSON, embedded as is in every callback body.
    metadata: Arc<str>,
    channels: Vec<Box<str>>,
    /// A `slip.v1` session's state; `None` for a plain connection.
    session: Option<SessionCell>,
}

/// A local subscriber of a channel, as fan-out sees it.
#[derive(Clone)]
struct Subscriber {
    outbox: Arc<Outbox>,
    /// A `slip.v1` session: it gets publications in their envelope, once each.
    session: Option<SessionCell>,
}

#[derive(Default)]
struct State {
    connections: HashMap<Box<str>, Entry>,
    /// channel → (connection key → subscriber): fan-out walks this map only.
    channels: HashMap<Box<str>, HashMap<u64, Subscriber>>,
    next_key: u64,
}

/// The edge's local connections: their outboxes, metadata, sessions and
/// subscriptions, and per channel its local subscribers, which fan-out walks.
pub struct Hub {
    state: RwLock<State>,
    max_subscriptions: usize,
    /// Signalled whenever a connection registers (for POLL_FOR_CONNECTION).
    registered: Notify,
}

/// What a delivery reached.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    pub queued: usize,
    /// Connections closed as slow consumers by this delivery.
    pub overflowed: usize,
}

impl Hub {
    /// Its entries by structure (`slip_entries`).
    pub fn sizes(&self, out: &mut slip_metrics::Sizes) {
        let state = self.state.read();
        out.push(("hub_connections", state.connections.len()));
        out.push(("hub_channels", state.channels.len()));
        out.push(("hub_subscriptions", state.channels.values().map(HashMap::len).sum()));
    }

    pub fn new(max_subscriptions: usize) -> Self {
        Self { state: RwLock::new(State::default()), max_subscriptions, registered: Notify::new() }
    }

    pub fn register(&self, id: &str, outbox: Arc<Outbox>, metadata: Arc<str>) {
        self.register_as(id, outbox, metadata, false);
    }

    /// Registers a connection; a `session` (`slip.v1`) gets publications and
    /// messages in their envelopes.
    pub fn register_as(&self, id: &str, outbox: Arc<Outbox>, metadata: Arc<str>, session: bool) {
        self.insert(id, outbox, metadata, session.then(SessionCell::default));
    }

    /// Registers a session taken over from another edge, with its state.
    pub fn register_session(&self, id: &str, outbox: Arc<Outbox>, metadata: Arc<str>, session: SessionState) {
        self.insert(id, outbox, metadata, Some(Arc::new(Mutex::new(session))));
    }

    fn insert(&self, id: &str, outbox: Arc<Outbox>, metadata: Arc<str>, session: Option<SessionCell>) {
        let mut state = self.state.write();
        state.next_key += 1;
        let key = state.next_key;
        if let Some(old) =
            state.connections.insert(id.into(), Entry { key, outbox, metadata, channels: Vec::new(), session })
        {
            // The same id again (a session coming back here): its old subscriptions go.
            for channel in old.channels {
                if let Some(subscribers) = state.channels.get_mut(&channel) {
                    subscribers.remove(&old.key);
                    if subscribers.is_empty() {
                        state.channels.remove(&channel);
                    }
                }
            }
        }
        drop(state);
        self.registered.notify_waiters();
    }

    /// Removes a connection; returns the channels it was the last local subscriber of.
    pub fn unregister(&self, id: &str) -> Vec<String> {
        let mut state = self.state.write();
        let Some(entry) = state.connections.remove(id) else {
            return Vec::new();
        };
        let mut emptied = Vec::new();
        for channel in entry.channels {
            if let Some(subscribers) = state.channels.get_mut(&channel) {
                subscribers.remove(&entry.key);
                if subscribers.is_empty() {
                    state.channels.remove(&channel);
                    emptied.push(channel.into());
                }
            }
        }
        emptied
    }

    pub fn subscribe(&self, id: &str, channel: &str) -> Subscribed {
        let mut guard = self.state.write();
        let state = &mut *guard;
        let Some(entry) = state.connections.get_mut(id) else {
            return Subscribed::NoConnection;
        };
        if entry.channels.iter().any(|c| &**c == channel) {
            return Subscribed::Already;
        }
        if entry.channels.len() >= self.max_subscriptions {
            return Subscribed::TooMany;
        }
        entry.channels.push(channel.into());
        let subscribers = state.channels.entry(channel.into()).or_default();
        let subscriber = Subscriber { outbox: entry.outbox.clone(), session: entry.session.clone() };
        subscribers.insert(entry.key, subscriber);
        if subscribers.len() == 1 { Subscribed::First } else { Subscribed::Added }
    }

    pub fn unsubscribe(&self, id: &str, channel: &str) -> Unsubscribed {
        let mut guard = self.state.write();
        let state = &mut *guard;
        let Some(entry) = state.connections.get_mut(id) else {
            return Unsubscribed::NoConnection;
        };
        let Some(at) = entry.channels.iter().position(|c| &**c == channel) else {
            return Unsubscribed::NotSubscribed;
        };
        entry.channels.swap_remove(at);
        let key = entry.key;
        let Some(subscribers) = state.channels.get_mut(channel) else {
            return Unsubscribed::Removed;
        };
        subscribers.remove(&key);
        if subscribers.is_empty() {
            state.channels.remove(channel);
            Unsubscribed::Last
        } else {
            Unsubscribed::Removed
        }
    }

    /// Queues publication `offset` of `channel`'s stream (in `epoch`) for
    /// every local subscriber: `frame` for plain connections, and for
    /// sessions the envelope `envelope` makes (once, if there is one), each
    /// at most once.
    pub fn deliver(
        &self,
        channel: &str,
        (epoch, offset): (&str, u64),
        frame: &Bytes,
        envelope: impl FnOnce() -> Bytes,
    ) -> Delivered {
        let state = self.state.read();
        let mut delivered = Delivered::default();
        let (mut envelope, mut enveloped) = (Some(envelope), None::<Bytes>);
        if let Some(subscribers) = state.channels.get(channel) {
            for subscriber in subscribers.values() {
                let frame = match &subscriber.session {
                    None => frame.clone(),
                    Some(session) => {
                        let frame =
                            enveloped.get_or_insert_with(|| envelope.take().map_or_else(Bytes::new, |make| make()));
                        match session.lock().publication(channel, epoch, offset, frame) {
                            Route::Send(frame) => frame,
                            Route::NewEpoch(frame) => {
                                subscriber.outbox.push(crate::session::lost_frame(channel, epoch));
                                frame
                            }
                            Route::Nothing => continue,
                            Route::Overflow => {
                                subscriber.outbox.close(crate::outbox::SLOW_CONSUMER_CODE, "too much to resume");
                                delivered.overflowed += 1;
                                continue;
                            }
                        }
                    }
                };
                match subscriber.outbox.push(frame) {
                    Push::Queued => delivered.queued += 1,
                    Push::Overflowed => delivered.overflowed += 1,
                    Push::Closing => {}
                }
            }
        }
        delivered
    }

    /// Orders every local subscriber of `channel` closed; returns how many.
    pub fn close_channel(&self, channel: &str, code: CloseCode, reason: &str) -> usize {
        let state = self.state.read();
        state
            .channels
            .get(channel)
            .map_or(0, |subscribers| subscribers.values().filter(|s| s.outbox.close(code, reason)).count())
    }

    /// Queues a message for one connection (a session's in its envelope,
    /// with its next number); `None` if it is not here.
    pub fn send(&self, id: &str, message: &impl Message) -> Option<Push> {
        let state = self.state.read();
        let entry = state.connections.get(id)?;
        let frame = match &entry.session {
            Some(session) => match session.lock().message(message) {
                Route::Send(frame) | Route::NewEpoch(frame) => frame,
                Route::Nothing | Route::Overflow => return Some(Push::Queued),
            },
            None => message.plain(),
        };
        Some(entry.outbox.push(frame))
    }

    /// Queues `frame` as it is for session `id`, unless it is resuming
    /// (the frame is not one a resume replays: a join or a leave).
    pub fn notify(&self, id: &str, frame: Bytes) -> Option<Push> {
        let state = self.state.read();
        let entry = state.connections.get(id)?;
        if !entry.session.as_ref()?.lock().is_live() {
            return None;
        }
        Some(entry.outbox.push(frame))
    }

    /// Every `slip.v1` session here.
    pub fn session_ids(&self) -> Vec<String> {
        self.state
            .read()
            .connections
            .iter()
            .filter(|(_, e)| e.session.is_some())
            .map(|(id, _)| id.to_string())
            .collect()
    }

    /// The session state of a `slip.v1` connection here.
    pub fn session(&self, id: &str) -> Option<SessionCell> {
        self.state.read().connections.get(id)?.session.clone()
    }

    /// Gives a connection another outbox (a session resumed on a new
    /// socket); returns the one it had.
    pub fn replace_outbox(&self, id: &str, outbox: Arc<Outbox>) -> Option<Arc<Outbox>> {
        swap_outbox(&mut self.state.write(), id, outbox)
    }

    /// Gives session `id` the outbox of parked sessions, if it is still of
    /// `generation` (a resume that took it meanwhile has given it its new
    /// connection's outbox, which must stay). Returns the one it had.
    pub fn park_outbox(&self, id: &str, generation: u64, outbox: Arc<Outbox>) -> Option<Arc<Outbox>> {
        let mut state = self.state.write();
        // The hub's lock, then the session's: the one order.
        let session = state.connections.get(id)?.session.as_ref()?;
        if session.lock().generation != generation {
            return None;
        }
        swap_outbox(&mut state, id, outbox)
    }

    /// Orders one connection closed; false if it is not here.
    pub fn close(&self, id: &str, code: CloseCode, reason: &str) -> bool {
        let outbox = self.state.read().connections.get(id).map(|e| e.outbox.clone());
        outbox.map(|o| o.close(code, reason)).is_some()
    }

    pub fn metadata(&self, id: &str) -> Option<Arc<str>> {
        self.state.read().connections.get(id).map(|e| e.metadata.clone())
    }

    pub fn set_metadata(&self, id: &str, metadata: Arc<str>) -> bool {
        match self.state.write().connections.get_mut(id) {
            Some(entry) => {
                entry.metadata = metadata;
                true
            }
            None => false,
        }
    }

    pub fn view(&self, id: &str) -> Option<ConnectionView> {
        self.state.read().connections.get(id).map(|e| ConnectionView {
            metadata: e.metadata.clone(),
            channels: e.channels.iter().map(|c| c.to_string()).collect(),
        })
    }

    pub fn contains(&self, id: &str) -> bool {
        self.state.read().connections.contains_key(id)
    }

    /// Local subscribers of a channel.
    pub fn subscribers(&self, channel: &str) -> usize {
        self.state.read().channels.get(channel).map_or(0, HashMap::len)
    }

    /// Channels with local subscribers.
    pub fn channel_count(&self) -> usize {
        self.state.read().channels.len()
    }

    /// Every connection here.
    pub fn connection_ids(&self) -> Vec<String> {
        self.state.read().connections.keys().map(|c| c.to_string()).collect()
    }

    /// The `limit` channels with the most local subscribers, most first.
    pub fn channel_counts(&self, limit: usize) -> Vec<(String, usize)> {
        let mut counts: Vec<(String, usize)> =
            self.state.read().channels.iter().map(|(c, subscribers)| (c.to_string(), subscribers.len())).collect();
        counts.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        counts.truncate(limit);
        counts
    }

    /// Channels with at least one local subscriber.
    pub fn channels(&self) -> Vec<String> {
        self.state.read().channels.keys().map(|c| c.to_string()).collect()
    }

    pub fn connections(&self) -> usize {
        self.state.read().connections.len()
    }

    /// Waits until the connection is registered, up to `timeout`.
    pub async fn wait_for(&self, id: &str, timeout: std::time::Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let registered = self.registered.notified();
            if self.contains(id) {
                return true;
            }
            if tokio::time::timeout_at(deadline, registered).await.is_err() {
                return self.contains(id);
            }
        }
    }
}

/// Puts `outbox` in the place of connection `id`'s, in its entry and in
/// every channel it is subscribed to; returns the one it had.
fn swap_outbox(state: &mut State, id: &str, outbox: Arc<Outbox>) -> Option<Arc<Outbox>> {
    let entry = state.connections.get_mut(id)?;
    let old = std::mem::replace(&mut entry.outbox, outbox.clone());
    for channel in &entry.channels {
        if let Some(subscriber) = state.channels.get_mut(channel).and_then(|s| s.get_mut(&entry.key)) {
            subscriber.outbox = outbox.clone();
        }
    }
    Some(old)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbox::OutboxLimits;

    fn hub_with(ids: &[&str]) -> (Hub, Vec<Arc<Outbox>>) {
        let hub = Hub::new(2);
        let outboxes = ids
            .iter()
            .map(|id| {
                let outbox = Arc::new(Outbox::new(OutboxLimits::default()));
                hub.register(id, outbox.clone(), Arc::from("null"));
                outbox
            })
            .collect();
        (hub, outboxes)
    }

    #[test]
    fn first_and_last_subscriber_are_reported() {
        let (hub, _) = hub_with(&["a", "b"]);
        assert_eq!(hub.subscribe("a", "ch"), Subscribed::First);
        assert_eq!(hub.subscribe("b", "ch"), Subscribed::Added);
        assert_eq!(hub.subscribe("b", "ch"), Subscribed::Already);
        assert_eq!(hub.subscribe("zz", "ch"), Subscribed::NoConnection);
        assert_eq!(hub.unsubscribe("a", "ch"), Unsubscribed::Removed);
        assert_eq!(hub.unsubscribe("a", "ch"), Unsubscribed::NotSubscribed);
        assert_eq!(hub.unsubscribe("b", "ch"), Unsubscribed::Last);
        assert_eq!(hub.subscribers("ch"), 0);
    }

    #[test]
    fn unregister_reports_emptied_channels() {
        let (hub, _) = hub_with(&["a", "b"]);
        hub.subscribe("a", "solo");
        hub.subscribe("a", "shared");
        hub.subscribe("b", "shared");
        assert_eq!(hub.unregister("a"), vec!["solo".to_string()]);
        assert_eq!(hub.subscribers("shared"), 1);
        assert!(hub.unregister("a").is_empty());
    }

    #[test]
    fn subscriptions_per_connection_are_bounded() {
        let (hub, _) = hub_with(&["a"]);
        hub.subscribe("a", "1");
        hub.subscribe("a", "2");
        assert_eq!(hub.subscribe("a", "3"), Subscribed::TooMany);
    }

    #[test]
    fn deliver_reaches_exactly_the_subscribers() {
        let (hub, outboxes) = hub_with(&["a", "b", "c"]);
        hub.subscribe("a", "ch");
        hub.subscribe("c", "ch");
        let frame = Bytes::from_static(b"x");
        let delivered = hub.deliver("ch", ("e", 1), &frame, || unreachable!("no session here"));
        assert_eq!(delivered, Delivered { queued: 2, overflowed: 0 });
        let counts: Vec<usize> = outboxes.iter().map(|o| o.take(10).frames.len()).collect();
        assert_eq!(counts, vec![1, 0, 1]);
        assert_eq!(hub.close_channel("ch", CloseCode::NORMAL, ""), 2);
        assert!(outboxes[0].close_order().is_some());
        assert!(outboxes[1].close_order().is_none());
    }

    #[test]
    fn a_park_that_comes_after_a_resume_leaves_the_resumed_outbox_in_place() {
        let hub = Hub::new(2);
        let live = Arc::new(Outbox::new(OutboxLimits::default()));
        hub.register_as("s", live.clone(), Arc::from("null"), true);
        let nowhere = Arc::new(Outbox::new(OutboxLimits::default()));
        // A resume took the session (generation 0 → 1) before the park of generation 0 got here.
        hub.session("s").unwrap().lock().begin_resume();
        assert!(hub.park_outbox("s", 0, nowhere.clone()).is_none());
        let current = hub.replace_outbox("s", live.clone()).unwrap();
        assert!(Arc::ptr_eq(&current, &live), "the resumed connection's outbox stays");
        // Of its own generation, the park takes effect.
        let had = hub.park_outbox("s", 1, nowhere.clone()).unwrap();
        assert!(Arc::ptr_eq(&had, &live));
        assert!(Arc::ptr_eq(&hub.replace_outbox("s", live.clone()).unwrap(), &nowhere));
    }
}
