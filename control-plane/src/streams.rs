//! Channel streams at their owner, as pure code (docs/streams.md): per channel an
//! epoch, the last offset given, the newest publications, and the
//! idempotency keys seen. The clock is passed in; so is the source of new
//! epochs, so tests can name them.
//!
//! Bounds: history per channel by count and age, history per node by bytes
//! (the oldest publication anywhere goes first), keys per channel by age and
//! count, keys per node by bytes (the oldest anywhere goes first), and
//! streams remembered by age and count. A stream whose history is
//! empty keeps its epoch and offset for `meta_ttl` after its last publish,
//! so offsets do not start over because nobody published for a while.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use slip_proto::link_pb::{ChannelEvent, CopyEntry, CopyKey, Head, StreamCopy, TermStart, channel_event};
// A plain value passed in: tokio's, so a paused test clock drives it.
use tokio::time::Instant;

mod answer;
mod keys;
mod oldest;
pub use answer::HISTORY_ANSWER_BYTES;
use keys::Keys;
use oldest::Oldest;

/// Default publications kept per channel (`SLIP_HISTORY_SIZE`).
pub const DEFAULT_HISTORY_SIZE: usize = 100;
/// Default age after which a publication leaves history (`SLIP_HISTORY_TTL_SECS`).
pub const DEFAULT_HISTORY_TTL: Duration = Duration::from_secs(300);
/// Default window in which a repeated idempotency key is recognized (`SLIP_IDEMPOTENCY_SECS`).
pub const DEFAULT_IDEMPOTENCY_TTL: Duration = Duration::from_secs(300);
/// How long an idle stream's epoch and offset are kept after its last publish.
pub const DEFAULT_META_TTL: Duration = Duration::from_secs(86_400);
/// Streams remembered at most; past it the longest idle ones are forgotten first.
pub const MAX_STREAMS: usize = 1_000_000;
/// Idempotency keys remembered per channel at most; past it the oldest go.
pub const MAX_KEYS_PER_STREAM: usize = 100_000;
/// Default bound on what the idempotency keys of a node cost
/// (`SLIP_IDEMPOTENCY_MAX_BYTES`): about 300,000 keys of 128 bytes.
pub const DEFAULT_MAX_KEY_BYTES: usize = 128 << 20;
/// Terms remembered per stream (see [`Streams::set_term`]); older ones are
/// forgotten, and two copies are compared only where both remember.
pub const MAX_TERMS_PER_STREAM: usize = 64;
/// Longest idempotency key taken, in bytes (the same on every API).
pub use slip_proto::command::MAX_IDEMPOTENCY_KEY_BYTES;
/// How often idle streams are looked for.
const SWEEP_EVERY: Duration = Duration::from_secs(10);
/// What a publication costs beyond its payload (its entry, its place in the
/// age queue), counted against the byte bound.
const ENTRY_OVERHEAD: usize = 96;

#[derive(Debug, Clone, PartialEq)]
pub struct StreamLimits {
    /// Publications kept per channel; 0 keeps none (offsets are still given).
    pub history_size: usize,
    pub history_ttl: Duration,
    /// History bytes on this node in all.
    pub max_bytes: usize,
    pub idempotency_ttl: Duration,
    /// Idempotency keys on this node in all, in bytes (`keys::cost`): past
    /// it the oldest anywhere are forgotten.
    pub max_key_bytes: usize,
    pub meta_ttl: Duration,
    pub max_streams: usize,
    /// Largest message published or sent to a connection through this
    /// node's control APIs, in bytes (`SLIP_MAX_OUTBOUND_BYTES`).
    pub max_message_bytes: usize,
    /// Copies of each stream beyond its owner's, on the next control nodes
    /// of the ring (`SLIP_STREAM_REPLICAS`).
    pub replicas: usize,
    /// How long a `slip.v1` session whose edge is gone may resume on
    /// another (`SLIP_RESUME_SECS`): its presence in channels this node
    /// owns stays that long.
    pub resume_window: Duration,
}

/// Default copies of each stream beyond the owner's.
pub const DEFAULT_REPLICAS: usize = 1;

impl Default for StreamLimits {
    fn default() -> Self {
        Self {
            history_size: DEFAULT_HISTORY_SIZE,
            history_ttl: DEFAULT_HISTORY_TTL,
            max_bytes: default_max_bytes(),
            idempotency_ttl: DEFAULT_IDEMPOTENCY_TTL,
            max_key_bytes: DEFAULT_MAX_KEY_BYTES,
            meta_ttl: DEFAULT_META_TTL,
            max_streams: MAX_STREAMS,
            max_message_bytes: slip_proto::limits::MAX_MESSAGE_BYTES,
            replicas: DEFAULT_REPLICAS,
            resume_window: slip_proto::session::DEFAULT_RESUME_WINDOW,
        }
    }
}

/// `SLIP_HISTORY_MAX_BYTES` when not given: an eighth of the machine's
/// memory, at least 64 MiB (256 MiB when the memory cannot be read).
pub fn default_max_bytes() -> usize {
    const MIN: usize = 64 << 20;
    let total_kib = std::fs::read_to_string("/proc/meminfo").ok().and_then(|info| {
        info.lines().find(|l| l.starts_with("MemTotal:"))?.split_whitespace().nth(1)?.parse::<usize>().ok()
    });
    match total_kib {
        Some(kib) => (kib.saturating_mul(1024) / 8).max(MIN),
        None => 256 << 20,
    }
}

/// A message of a stream, as history holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct Publication {
    pub offset: u64,
    pub event: ChannelEvent,
}

/// What [`Streams::append`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum Appended {
    /// A new publication at `offset`.
    New { epoch: Arc<str>, offset: u64 },
    /// The key was seen within the window: the first publish's place; nothing new.
    Duplicate { epoch: Arc<str>, offset: u64 },
}

/// What history holds of a stream after a point.
#[derive(Debug, Clone, PartialEq)]
pub struct History {
    pub epoch: Arc<str>,
    pub top_offset: u64,
    pub publications: Vec<Publication>,
    /// False when the epoch asked about is not this one, or when history no
    /// longer holds every publication after the offset asked about.
    pub complete: bool,
}

/// Where a stream is: what another control node compares its copy with.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamHead {
    pub channel: Arc<str>,
    pub epoch: Arc<str>,
    pub top: u64,
    /// The oldest offset history holds (0: none).
    pub first: u64,
    /// The term of the last offset ("" if not known).
    pub term: Arc<str>,
}

/// A page of a stream's copy, as it travels between control nodes: entries
/// and keys with how long ago they were published.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CopyPage {
    pub epoch: Arc<str>,
    pub top: u64,
    pub entries: Vec<(Publication, Duration)>,
    pub keys: Vec<(String, u64, Duration)>,
    /// Offsets after the last one here remain.
    pub more: bool,
    /// `(start, term)`: from `start` on, offsets were given in `term`.
    pub terms: Vec<(u64, Arc<str>)>,
}

impl CopyPage {
    /// Keeps only what comes before offset `at`.
    fn cut(&mut self, at: u64) {
        self.entries.retain(|(p, _)| p.offset < at);
        self.keys.retain(|(_, offset, _)| *offset < at);
        self.terms.retain(|(start, _)| *start < at);
        self.top = self.top.min(at.saturating_sub(1));
        self.more = false;
    }
}

/// What [`Streams::import`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Imported {
    /// Taken in (merged with ours, or in place of ours of another epoch).
    /// `dropped_from`: ours from this offset on gave way (0: all of it, for
    /// another epoch); what waits to be confirmed there is not the stream.
    Taken { dropped_from: Option<u64> },
    /// Ours and the copy name different terms for one offset of the same
    /// epoch, and the terms cannot be ordered. Nothing was taken.
    Diverged,
}

/// What [`Streams::store`] did with a replicated publication.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// Kept, as the stream's newest.
    New,
    /// Here already, from the same term.
    Already,
    /// A newer term gave that offset here: not taken.
    Conflict,
    /// Offsets before it are missing here (they came by another way, or
    /// not yet): not taken, so that what is here stays whole. The copy
    /// after `top` is to be taken from the owner.
    Gap { top: u64 },
}

/// How one term stands to another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Order {
    Newer,
    Same,
    Older,
    Unordered,
}

/// Whether term `a` is newer than `b`; `None` when they cannot be ordered.
pub fn term_is_newer(a: &str, b: &str) -> Option<bool> {
    match newer(a, b) {
        Order::Newer => Some(true),
        Order::Same | Order::Older => Some(false),
        Order::Unordered => None,
    }
}

/// How term `a` stands to `b`. Terms are view terms (decimal); anything
/// else (a node of an older version gave it) is only ever the same or
/// unordered.
fn newer(a: &str, b: &str) -> Order {
    if a == b {
        return Order::Same;
    }
    match (a.parse::<u64>(), b.parse::<u64>()) {
        (Ok(a), Ok(b)) if a > b => Order::Newer,
        (Ok(a), Ok(b)) if a < b => Order::Older,
        _ => Order::Unordered,
    }
}

struct Entry {
    offset: u64,
    event: ChannelEvent,
    at: Instant,
    bytes: usize,
}

struct Stream {
    epoch: Arc<str>,
    top: u64,
    history: VecDeque<Entry>,
    keys: Keys,
    /// The last publish.
    touched: Instant,
    /// From which offset on which term gave the offsets, oldest first.
    terms: VecDeque<(u64, Arc<str>)>,
}

/// Every channel stream this node owns or copies: epochs, offsets, recent
/// publications and idempotency keys, bounded in bytes.
pub struct Streams {
    limits: StreamLimits,
    streams: HashMap<Arc<str>, Stream>,
    /// Each stream that holds publications, by when the oldest it holds was
    /// published: for the age bound and the per-node byte bound. One entry a
    /// stream, kept in step with its history: a queue of every publication
    /// kept each one for the whole age bound, long after the count bound had
    /// dropped it (~56 bytes a publication, so ~110 a chat connection's join
    /// and leave, for `SLIP_HISTORY_TTL_SECS`, and the queue's capacity never
    /// came back).
    oldest: Oldest,
    bytes: usize,
    /// What every stream's idempotency keys cost (`keys::cost`), and each
    /// stream that holds keys by when its oldest was seen: for the key window
    /// and the per-node byte bound, one entry a stream (as `oldest`).
    key_bytes: usize,
    oldest_key: Oldest,
    next_sweep: Instant,
    new_epoch: Box<dyn Fn() -> String + Send>,
    /// The term this node gives offsets in now.
    term: Arc<str>,
}

/// `channel`'s stream and its name as the map holds it (the indexes keep
/// that `Arc`, not a new one).
fn named_mut<'a>(streams: &'a mut HashMap<Arc<str>, Stream>, channel: &str) -> Option<(Arc<str>, &'a mut Stream)> {
    let (name, _) = streams.get_key_value(channel)?;
    let name = name.clone();
    streams.get_mut(channel).map(|stream| (name, stream))
}

/// When the oldest publication `stream` holds was published.
fn front_at(stream: &Stream) -> Option<Instant> {
    stream.history.front().map(|e| e.at)
}

/// A fresh random epoch: 64 bits in hex.
pub fn random_epoch() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// Only messages belong to a stream; closing a channel is an order, not a publication.
pub fn is_message(event: &ChannelEvent) -> bool {
    matches!(event.body, Some(channel_event::Body::Text(_) | channel_event::Body::Binary(_)))
}

pub(crate) fn payload_bytes(event: &ChannelEvent) -> usize {
    match &event.body {
        Some(channel_event::Body::Text(t)) => t.len(),
        Some(channel_event::Body::Binary(b)) => b.len(),
        _ => 0,
    }
}

impl Streams {
    /// Its entries by structure (`slip_entries`).
    pub fn sizes(&self, out: &mut slip_metrics::Sizes) {
        out.push(("streams", self.streams.len()));
        out.push(("history_publications", self.streams.values().map(|s| s.history.len()).sum()));
        out.push(("idempotency_keys", self.streams.values().map(|s| s.keys.len()).sum()));
        out.push(("stream_age_index", self.oldest.len()));
        out.push(("stream_key_index", self.oldest_key.len()));
    }

    pub fn new(limits: StreamLimits, new_epoch: impl Fn() -> String + Send + 'static, now: Instant) -> Self {
        Self {
            limits,
            streams: HashMap::new(),
            oldest: Oldest::default(),
            bytes: 0,
            key_bytes: 0,
            oldest_key: Oldest::default(),
            next_sweep: now + SWEEP_EVERY,
            new_epoch: Box::new(new_epoch),
            term: Arc::from(random_epoch()),
        }
    }

    pub fn limits(&self) -> &StreamLimits {
        &self.limits
    }

    /// History bytes held on this node.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// What the idempotency keys held on this node cost, in bytes.
    pub fn key_bytes(&self) -> usize {
        self.key_bytes
    }

    /// The stream's epoch and last offset, if it is remembered.
    pub fn head(&self, channel: &str) -> Option<(Arc<str>, u64)> {
        self.streams.get(channel).map(|s| (s.epoch.clone(), s.top))
    }

    /// Offsets given from now on are of `term`. A node takes a new term at
    /// each change of its ring, so that two nodes that each thought they
    /// owned a channel (a partition) never give offsets in the same term.
    pub fn set_term(&mut self, term: &str) {
        self.term = Arc::from(term);
    }

    /// The term that gave `offset` of the channel's stream, if remembered.
    pub fn term_at(&self, channel: &str, offset: u64) -> String {
        self.streams.get(channel).and_then(|s| term_at(&s.terms, offset)).map(ToString::to_string).unwrap_or_default()
    }

    /// A new epoch for the stream, empty: its copies were found to differ.
    pub fn restart(&mut self, channel: &str, now: Instant) {
        let epoch = (self.new_epoch)();
        self.start(channel, &epoch, now);
    }

    /// Forgets one stream.
    pub fn forget(&mut self, channel: &str) {
        self.retain(|name| name != channel);
    }

    /// How many publications the stream's history holds.
    pub fn held(&self, channel: &str) -> u64 {
        self.streams.get(channel).map_or(0, |s| s.history.len() as u64)
    }

    /// The oldest offset the stream's history holds (0: none).
    pub fn first(&self, channel: &str) -> u64 {
        self.streams.get(channel).and_then(|s| s.history.front()).map_or(0, |e| e.offset)
    }

    /// Gives a message the stream's next offset and keeps it in history; a
    /// key seen within the window gets the first publish's offset instead.
    /// An empty key is no key.
    pub fn append(&mut self, channel: &str, event: &ChannelEvent, key: &str, now: Instant) -> Appended {
        if !self.streams.contains_key(channel) {
            let epoch = (self.new_epoch)();
            self.start(channel, &epoch, now);
        }
        self.expire_keys_of(channel, now);
        let stream = self.streams.get_mut(channel).expect("just made sure");
        if !key.is_empty()
            && let Some(offset) = stream.keys.get(key)
        {
            return Appended::Duplicate { epoch: stream.epoch.clone(), offset };
        }
        let (epoch, offset) = (stream.epoch.clone(), stream.top + 1);
        let term = self.term.clone();
        self.record(channel, offset, event, key, &term, now);
        Appended::New { epoch, offset }
    }

    /// A publication the channel's owner replicated here, at its offset in
    /// the owner's epoch and term. The owner's copy is the stream: a copy
    /// here of another epoch gives way to it, and so does what a copy here
    /// holds from that offset on under an older term (an owner that was cut
    /// off gave it, unconfirmed). One under a newer term than the owner's
    /// is not replaced: [`Stored::Conflict`]. One past a hole is not taken
    /// ([`Stored::Gap`]): the terms here tell who gave each offset held
    /// only while what is held has no holes (copies may arrive out of
    /// order, over a link that replaced another).
    #[allow(clippy::too_many_arguments)]
    pub fn store(
        &mut self,
        channel: &str,
        epoch: &str,
        offset: u64,
        event: &ChannelEvent,
        key: &str,
        term: &str,
        now: Instant,
    ) -> Stored {
        match self.streams.get(channel) {
            Some(stream) if &*stream.epoch == epoch && offset <= stream.top => {
                match term_at(&stream.terms, offset).map(|ours| newer(term, ours)) {
                    None | Some(Order::Same) => return Stored::Already,
                    Some(Order::Older | Order::Unordered) => return Stored::Conflict,
                    Some(Order::Newer) => self.truncate(channel, offset),
                }
            }
            Some(stream) if &*stream.epoch == epoch && offset > stream.top + 1 => {
                return Stored::Gap { top: stream.top };
            }
            Some(stream) if &*stream.epoch == epoch => {}
            _ => self.start(channel, epoch, now),
        }
        self.expire_keys_of(channel, now);
        self.record(channel, offset, event, key, &Arc::from(term), now);
        Stored::New
    }

    /// Drops what the stream holds from `offset` on: publications, keys and
    /// terms; its top goes back to just before it.
    fn truncate(&mut self, channel: &str, offset: u64) {
        let Some((name, stream)) = named_mut(&mut self.streams, channel) else { return };
        let oldest_before = front_at(stream);
        while let Some(last) = stream.history.back()
            && last.offset >= offset
        {
            let entry = stream.history.pop_back().expect("just looked");
            self.bytes -= entry.bytes;
        }
        let (before, key_before) = (stream.keys.bytes(), stream.keys.oldest());
        stream.keys.retain_below(offset);
        self.key_bytes -= before - stream.keys.bytes();
        self.oldest_key.moved(&name, key_before, stream.keys.oldest());
        while stream.terms.back().is_some_and(|(start, _)| *start >= offset) {
            stream.terms.pop_back();
        }
        stream.top = stream.top.min(offset.saturating_sub(1));
        self.oldest.moved(&name, oldest_before, front_at(stream));
    }

    /// A new, empty stream for `channel` in `epoch` (replacing any other).
    fn start(&mut self, channel: &str, epoch: &str, now: Instant) {
        if !self.streams.contains_key(channel) && self.streams.len() >= self.limits.max_streams {
            self.forget_idlest();
        }
        let stream = Stream {
            epoch: Arc::from(epoch),
            top: 0,
            history: VecDeque::new(),
            keys: Keys::default(),
            touched: now,
            terms: VecDeque::new(),
        };
        let name: Arc<str> = Arc::from(channel);
        if let Some(old) = self.streams.insert(name.clone(), stream) {
            self.forgotten(&name, &old);
        }
    }

    /// Keeps publication `offset` as the stream's newest, with its key.
    fn record(&mut self, channel: &str, offset: u64, event: &ChannelEvent, key: &str, term: &Arc<str>, now: Instant) {
        let limits = &self.limits;
        let Some((name, stream)) = named_mut(&mut self.streams, channel) else { return };
        stream.top = offset;
        stream.touched = now;
        if !term.is_empty() && stream.terms.back().is_none_or(|(_, last)| last != term) {
            if stream.terms.len() >= MAX_TERMS_PER_STREAM {
                stream.terms.pop_front();
            }
            stream.terms.push_back((offset, term.clone()));
        }
        if !key.is_empty() {
            let (before, key_before) = (stream.keys.bytes(), stream.keys.oldest());
            stream.keys.insert(key.to_owned(), offset, now);
            self.key_bytes = self.key_bytes + stream.keys.bytes() - before;
            self.oldest_key.moved(&name, key_before, stream.keys.oldest());
        }
        if limits.history_size == 0 {
            self.shed_keys();
            return;
        }
        let before = front_at(stream);
        let bytes = payload_bytes(event) + ENTRY_OVERHEAD;
        stream.history.push_back(Entry { offset, event: event.clone(), at: now, bytes });
        self.bytes += bytes;
        if stream.history.len() > limits.history_size
            && let Some(old) = stream.history.pop_front()
        {
            self.bytes -= old.bytes;
        }
        self.oldest.moved(&name, before, front_at(stream));
        self.shed_bytes();
        self.shed_keys();
    }

    /// The publications after `since_offset` (all it holds when 0), oldest
    /// first, at most `limit` (0: the history size). With `since_epoch` set
    /// and not the stream's epoch, everything held, marked incomplete.
    pub fn history(&self, channel: &str, since_epoch: &str, since_offset: u64, limit: usize, now: Instant) -> History {
        let Some(stream) = self.streams.get(channel) else {
            // Never published, or forgotten: a stream with nothing in it yet.
            return History {
                epoch: Arc::from(""),
                top_offset: 0,
                publications: Vec::new(),
                complete: since_epoch.is_empty() && since_offset == 0,
            };
        };
        let same_epoch = since_epoch.is_empty() || since_epoch == &*stream.epoch;
        let after = if same_epoch { since_offset } else { 0 };
        let limit = if limit == 0 { self.limits.history_size.max(1) } else { limit };
        let live = stream.history.iter().filter(|e| now < e.at + self.limits.history_ttl);
        let publications: Vec<Publication> = live
            .clone()
            .filter(|e| e.offset > after)
            .take(limit)
            .map(|e| Publication { offset: e.offset, event: e.event.clone() })
            .collect();
        // Everything after `after` is held when the oldest held is right after it
        // (or nothing was published after it).
        let oldest = live.map(|e| e.offset).next();
        let holds_all = after >= stream.top || oldest.is_some_and(|o| o <= after + 1);
        History { epoch: stream.epoch.clone(), top_offset: stream.top, publications, complete: same_epoch && holds_all }
    }

    /// When [`Streams::expire`] next has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        let oldest = self.oldest.first().map(|at| at + self.limits.history_ttl);
        let sweep = (!self.streams.is_empty()).then_some(self.next_sweep);
        oldest.into_iter().chain(sweep).min()
    }

    /// Drops publications past their age, and (every few seconds) streams
    /// idle past `meta_ttl` whose history is empty.
    pub fn expire(&mut self, now: Instant) {
        let ttl = self.limits.history_ttl;
        while self.oldest.first().is_some_and(|at| at + ttl <= now) {
            let (_, name) = self.oldest.pop_first().expect("just looked");
            let Some(stream) = self.streams.get_mut(&name) else { continue };
            while let Some(front) = stream.history.front()
                && front.at + ttl <= now
            {
                let entry = stream.history.pop_front().expect("just looked");
                self.bytes -= entry.bytes;
            }
            self.oldest.moved(&name, None, front_at(stream));
        }
        let key_ttl = self.limits.idempotency_ttl;
        while self.oldest_key.first().is_some_and(|at| at + key_ttl <= now) {
            let (_, name) = self.oldest_key.pop_first().expect("just looked");
            let Some(stream) = self.streams.get_mut(&name) else { continue };
            let before = stream.keys.bytes();
            stream.keys.expire(key_ttl, now);
            self.key_bytes -= before - stream.keys.bytes();
            self.oldest_key.moved(&name, None, stream.keys.oldest());
        }
        if now >= self.next_sweep {
            self.next_sweep = now + SWEEP_EVERY;
            let meta_ttl = self.limits.meta_ttl;
            // Only streams with no history go; their keys, if any, with them.
            let idle: Vec<_> =
                self.streams.extract_if(|_, s| s.history.is_empty() && now >= s.touched + meta_ttl).collect();
            for (name, stream) in idle {
                self.forgotten(&name, &stream);
            }
        }
    }

    /// Forgets a stream's keys past their window.
    fn expire_keys_of(&mut self, channel: &str, now: Instant) {
        let Some((name, stream)) = named_mut(&mut self.streams, channel) else { return };
        let (before, key_before) = (stream.keys.bytes(), stream.keys.oldest());
        stream.keys.expire(self.limits.idempotency_ttl, now);
        self.key_bytes -= before - stream.keys.bytes();
        self.oldest_key.moved(&name, key_before, stream.keys.oldest());
    }

    /// Forgets the oldest keys anywhere until the keys fit their bytes.
    fn shed_keys(&mut self) {
        while self.key_bytes > self.limits.max_key_bytes {
            let Some((_, name)) = self.oldest_key.pop_first() else { return };
            let Some(stream) = self.streams.get_mut(&name) else { continue };
            let before = stream.keys.bytes();
            if stream.keys.pop_oldest() {
                slip_metrics::metrics().idempotency_keys_shed.inc();
            }
            self.key_bytes -= before - stream.keys.bytes();
            self.oldest_key.moved(&name, None, stream.keys.oldest());
        }
    }

    /// Drops the oldest publications anywhere until history fits its bytes.
    fn shed_bytes(&mut self) {
        while self.bytes > self.limits.max_bytes {
            let Some((_, name)) = self.oldest.pop_first() else { return };
            let Some(stream) = self.streams.get_mut(&name) else { continue };
            if let Some(entry) = stream.history.pop_front() {
                self.bytes -= entry.bytes;
            }
            self.oldest.moved(&name, None, front_at(stream));
        }
    }

    /// Streams indexed by their oldest publication, and by their oldest
    /// key: at most one entry a stream in each.
    pub fn indexed(&self) -> (usize, usize) {
        (self.oldest.len(), self.oldest_key.len())
    }

    /// The streams held here that `keep` picks, by channel name after
    /// `after`, at most `max`: `(channel, epoch, top)`, and whether more remain.
    pub fn heads(&self, after: &str, max: usize, keep: impl Fn(&str) -> bool) -> (Vec<StreamHead>, bool) {
        let mut names: Vec<&Arc<str>> = self.streams.keys().filter(|name| &***name > after && keep(name)).collect();
        names.sort_unstable();
        let more = names.len() > max;
        let heads = names
            .into_iter()
            .take(max)
            .map(|name| {
                let stream = &self.streams[name];
                let first = stream.history.front().map_or(0, |e| e.offset);
                let term = stream.terms.back().map_or_else(|| Arc::from(""), |(_, t)| t.clone());
                StreamHead { channel: name.clone(), epoch: stream.epoch.clone(), top: stream.top, first, term }
            })
            .collect();
        (heads, more)
    }

    /// A page of the stream's copy for another control node: its
    /// publications and keys after offset `after`, in offset order, about
    /// `budget` bytes (always at least one offset's worth).
    pub fn export(&self, channel: &str, after: u64, budget: usize, now: Instant) -> Option<CopyPage> {
        let stream = self.streams.get(channel)?;
        let ttl = self.limits.history_ttl;
        let mut entries = stream.history.iter().filter(|e| e.offset > after && now < e.at + ttl).peekable();
        let mut keys = stream.keys.after(after).peekable();
        let terms = stream.terms.iter().cloned().collect();
        let mut page = CopyPage { epoch: stream.epoch.clone(), top: stream.top, terms, ..CopyPage::default() };
        let mut used = 0;
        loop {
            let entry_offset = entries.peek().map(|e| e.offset);
            let key_offset = keys.peek().map(|&(_, _, offset)| offset);
            let Some(offset) = entry_offset.into_iter().chain(key_offset).min() else { break };
            if used >= budget {
                page.more = true;
                break;
            }
            // Everything at this offset goes in one page.
            while let Some(entry) = entries.next_if(|e| e.offset == offset) {
                used += entry.bytes;
                page.entries.push((
                    Publication { offset, event: entry.event.clone() },
                    now.saturating_duration_since(entry.at),
                ));
            }
            while let Some((at, key, _)) = keys.next_if(|&(_, _, o)| o == offset) {
                used += key.len() + ENTRY_OVERHEAD;
                page.keys.push((key.clone(), offset, now.saturating_duration_since(at)));
            }
        }
        Some(page)
    }

    /// Takes in a page of another node's copy of a stream. The same epoch
    /// merges (what is here stays, what is new is added); another epoch
    /// replaces the copy here. Entries are aged as they were there. Where
    /// two copies of one epoch part (different terms for one offset), the
    /// newer term's is the stream from there on; terms that cannot be
    /// ordered are [`Imported::Diverged`], and nothing is taken.
    pub fn import(&mut self, channel: &str, mut page: CopyPage, now: Instant) -> Imported {
        let mut dropped_from = None;
        match self.streams.get(channel) {
            Some(ours) if ours.epoch == page.epoch => {
                let theirs: VecDeque<(u64, Arc<str>)> = page.terms.iter().cloned().collect();
                if let Some(at) = parting(&ours.terms, ours.top, &theirs, page.top) {
                    let (mine, their) = (term_at(&ours.terms, at), term_at(&theirs, at));
                    tracing::debug!(
                        channel,
                        at,
                        ours = ?ours.terms,
                        our_top = ours.top,
                        theirs = ?theirs,
                        their_top = page.top,
                        "two copies part"
                    );
                    match (mine, their) {
                        (Some(mine), Some(their)) => match newer(their, mine) {
                            // Theirs is the stream from `at` on.
                            Order::Newer => {
                                self.truncate(channel, at);
                                dropped_from = Some(at);
                            }
                            // Ours is: theirs counts up to just before.
                            Order::Older => page.cut(at),
                            Order::Same | Order::Unordered => return Imported::Diverged,
                        },
                        _ => return Imported::Diverged,
                    }
                }
            }
            Some(_) => {
                dropped_from = Some(0);
                self.start(channel, &page.epoch, now);
            }
            None => self.start(channel, &page.epoch, now),
        }
        let (limits, ttl) = (&self.limits, self.limits.history_ttl);
        let Some((name, stream)) = named_mut(&mut self.streams, channel) else {
            return Imported::Taken { dropped_from };
        };
        if page.top > stream.top {
            // Theirs goes further and agrees with ours: its terms are ours, extended.
            stream.terms = page.terms.into_iter().collect();
        }
        while stream.terms.len() > MAX_TERMS_PER_STREAM {
            stream.terms.pop_front();
        }
        stream.top = stream.top.max(page.top);
        stream.touched = now;
        let (keys_before, key_before) = (stream.keys.bytes(), stream.keys.oldest());
        for (key, offset, age) in page.keys {
            if age >= limits.idempotency_ttl {
                continue;
            }
            stream.keys.insert(key, offset, now.checked_sub(age).unwrap_or(now));
        }
        self.key_bytes = self.key_bytes + stream.keys.bytes() - keys_before;
        self.oldest_key.moved(&name, key_before, stream.keys.oldest());
        if limits.history_size == 0 {
            self.shed_keys();
            return Imported::Taken { dropped_from };
        }
        let before = front_at(stream);
        for (publication, age) in page.entries {
            if age >= ttl {
                continue;
            }
            let Publication { offset, event } = publication;
            let place = stream.history.partition_point(|e| e.offset < offset);
            if stream.history.get(place).is_some_and(|e| e.offset == offset) {
                continue;
            }
            let at = now.checked_sub(age).unwrap_or(now);
            let bytes = payload_bytes(&event) + ENTRY_OVERHEAD;
            // Older than one behind it, it leaves history once it is the
            // stream's oldest: at most one TTL late, and reads never show it
            // past its age.
            stream.history.insert(place, Entry { offset, event, at, bytes });
            self.bytes += bytes;
        }
        while stream.history.len() > limits.history_size
            && let Some(old) = stream.history.pop_front()
        {
            self.bytes -= old.bytes;
        }
        self.oldest.moved(&name, before, front_at(stream));
        self.shed_bytes();
        self.shed_keys();
        Imported::Taken { dropped_from }
    }

    /// Forgets the streams `keep` does not pick: copies this node no longer holds.
    pub fn retain(&mut self, keep: impl Fn(&str) -> bool) -> usize {
        let gone: Vec<_> = self.streams.extract_if(|name, _| !keep(name)).collect();
        for (name, stream) in &gone {
            self.forgotten(name, stream);
        }
        gone.len()
    }

    /// Makes room for a new stream: the one idle longest goes.
    fn forget_idlest(&mut self) {
        let idlest = self.streams.iter().min_by_key(|(_, s)| s.touched).map(|(name, _)| name.clone());
        if let Some(name) = idlest
            && let Some(stream) = self.streams.remove(&name)
        {
            self.forgotten(&name, &stream);
        }
    }

    /// What a stream no longer here held leaves the node's counts and indexes.
    fn forgotten(&mut self, name: &Arc<str>, stream: &Stream) {
        self.bytes -= stream.history.iter().map(|e| e.bytes).sum::<usize>();
        self.key_bytes -= stream.keys.bytes();
        self.oldest.moved(name, front_at(stream), None);
        self.oldest_key.moved(name, stream.keys.oldest(), None);
    }
}

// Heads and copies as the link carries them between control nodes,
// converted here once.
impl From<StreamHead> for Head {
    fn from(h: StreamHead) -> Self {
        Self {
            channel: h.channel.to_string(),
            epoch: h.epoch.to_string(),
            top: h.top,
            first: h.first,
            term: h.term.to_string(),
            view: 0,
        }
    }
}

impl From<Head> for StreamHead {
    fn from(h: Head) -> Self {
        Self { channel: h.channel.into(), epoch: h.epoch.into(), top: h.top, first: h.first, term: h.term.into() }
    }
}

fn millis(age: Duration) -> u64 {
    u64::try_from(age.as_millis()).unwrap_or(u64::MAX)
}

impl From<CopyPage> for StreamCopy {
    fn from(page: CopyPage) -> Self {
        Self {
            epoch: page.epoch.to_string(),
            top: page.top,
            entries: page
                .entries
                .into_iter()
                .map(|(p, age)| CopyEntry { offset: p.offset, event: Some(p.event), age_ms: millis(age) })
                .collect(),
            keys: page
                .keys
                .into_iter()
                .map(|(key, offset, age)| CopyKey { key, offset, age_ms: millis(age) })
                .collect(),
            more: page.more,
            terms: page.terms.into_iter().map(|(start, term)| TermStart { start, term: term.to_string() }).collect(),
        }
    }
}

impl From<StreamCopy> for CopyPage {
    fn from(copy: StreamCopy) -> Self {
        Self {
            epoch: copy.epoch.into(),
            top: copy.top,
            entries: copy
                .entries
                .into_iter()
                .map(|e| {
                    let publication = Publication { offset: e.offset, event: e.event.unwrap_or_default() };
                    (publication, Duration::from_millis(e.age_ms))
                })
                .collect(),
            keys: copy.keys.into_iter().map(|k| (k.key, k.offset, Duration::from_millis(k.age_ms))).collect(),
            more: copy.more,
            terms: copy.terms.into_iter().map(|t| (t.start, t.term.into())).collect(),
        }
    }
}

/// The term that gave `offset`, if `terms` remembers that far back.
fn term_at(terms: &VecDeque<(u64, Arc<str>)>, offset: u64) -> Option<&Arc<str>> {
    let after = terms.partition_point(|(start, _)| *start <= offset);
    after.checked_sub(1).map(|i| &terms[i].1)
}

/// The first offset both copies of one epoch hold (up to the lower top)
/// that they say different terms gave, as far as both remember; `None`
/// when they agree.
fn parting(
    ours: &VecDeque<(u64, Arc<str>)>,
    our_top: u64,
    theirs: &VecDeque<(u64, Arc<str>)>,
    their_top: u64,
) -> Option<u64> {
    let common = our_top.min(their_top);
    let mut points: Vec<u64> =
        ours.iter().chain(theirs.iter()).map(|(start, _)| *start).filter(|p| (1..=common).contains(p)).collect();
    points.sort_unstable();
    points.into_iter().find(|&p| match (term_at(ours, p), term_at(theirs, p)) {
        (Some(a), Some(b)) => a != b,
        _ => false,
    })
}

#[cfg(test)]
mod tests;
