//! Gap-free delivery at the edge, as pure code (docs/streams.md, "Delivery at the edge"): per
//! channel, the stream's epoch and the last offset delivered here. A Deliver
//! right after it goes out; one already delivered is dropped; one past a gap
//! waits (bounded) while the gap is fetched from the owner's history, and
//! then everything goes out in offset order. What history no longer holds is
//! counted as lost and skipped. The clock is passed in.
//!
//! Fencing: every Deliver, history answer and head carries the view term
//! its owner sent it under. One older than the newest this edge has seen
//! for the channel comes from an owner that was paused or cut off while
//! another took over: it is ignored (the gap it leaves is fetched from the
//! owner now), and so is an answer from a node that says it is not the
//! owner.
//!
//! A fetch nobody answers is asked again, of whoever owns the channel then,
//! until [`FETCH_GIVE_UP`]: a gap opens exactly when an owner dies (the
//! Deliver it sent last never came), and the edge may still name the dead
//! owner for the seconds it takes to notice, while the next owner, which
//! holds the gap, is already sending.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use slip_proto::link_pb::{Deliver, HistoryAnswer, HistoryQuery};
use tokio::time::Instant;

/// Delivers held per channel while a gap is fetched; past it the gap is given up.
pub const MAX_HELD: usize = 1024;
/// Wait for one answer from the owner's history before asking again.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(2);
/// Wait before asking again when the question could not be sent at all.
pub const FETCH_RETRY: Duration = Duration::from_millis(250);
/// Set in every fetch's question id: the cursors number their own questions
/// (they are pure and keep their own deadlines), and the edge's other
/// questions come from the link's registry, which counts from 1 and never
/// reaches this bit. An answer is routed by it.
pub const FETCH_ID_BIT: u64 = 1 << 63;
/// Longest a gap is fetched, over every attempt, before it is given up:
/// beyond the link's loss detection (3 s) and a new owner's catch-up (10 s).
pub const FETCH_GIVE_UP: Duration = Duration::from_secs(20);

/// What to do after a Deliver, an answer or a timeout.
#[derive(Debug, Default, PartialEq)]
pub struct Steps {
    /// Fan these out here, in this order.
    pub deliver: Vec<Deliver>,
    /// Ask each channel's owner these, as questions `id`.
    pub fetch: Vec<(u64, HistoryQuery)>,
    /// Publications missed for good (the sum of `gaps`).
    pub lost: u64,
    /// Each run of them: where, and why.
    pub gaps: Vec<Gap>,
    /// The `ack` of a Deliver dropped as one delivered already: whoever
    /// waits for it may go on.
    pub repeat_ack: u64,
    /// Frames ignored as from an owner under an older view (or not the owner).
    pub stale: u64,
}

/// Publications of a channel an edge missed for good.
#[derive(Debug, Clone, PartialEq)]
pub struct Gap {
    pub channel: String,
    /// The last offset delivered before it.
    pub after: u64,
    pub count: u64,
    pub cause: GapCause,
}

/// Why publications were missed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GapCause {
    /// The owner's history no longer held them.
    NotInHistory,
    /// No owner answered for them in [`FETCH_GIVE_UP`].
    NoAnswer,
    /// The owner's history is of another epoch.
    OtherEpoch,
    /// More than [`MAX_HELD`] Delivers waited behind the gap.
    TooFarBehind,
    /// The stream moved to a new epoch (every copy was lost, or two met).
    NewEpoch,
}

impl GapCause {
    pub fn as_str(self) -> &'static str {
        match self {
            GapCause::NotInHistory => "not_in_history",
            GapCause::NoAnswer => "no_answer",
            GapCause::OtherEpoch => "other_epoch",
            GapCause::TooFarBehind => "too_far_behind",
            GapCause::NewEpoch => "new_epoch",
        }
    }
}

impl Steps {
    fn lose(&mut self, channel: &str, after: u64, count: u64, cause: GapCause) {
        if count == 0 {
            return;
        }
        self.lost += count;
        self.gaps.push(Gap { channel: channel.to_owned(), after, count, cause });
    }
}

struct Fetch {
    id: u64,
    /// When this attempt has had its time.
    until: Instant,
    /// When the gap is given up, over every attempt.
    give_up: Instant,
    /// The last offset asked for.
    through: u64,
}

struct Cursor {
    epoch: String,
    last: u64,
    /// The newest view term seen for the channel.
    view: u64,
    /// Delivers past a gap, by offset.
    held: BTreeMap<u64, Deliver>,
    fetch: Option<Fetch>,
    /// The stream's top as the owner last told it (a head): what is
    /// between the cursor and it is fetched even with nothing held.
    behind: u64,
}

/// Per channel delivered here, where the edge stands in its stream, and the
/// gaps being fetched.
#[derive(Default)]
pub struct Cursors {
    channels: HashMap<String, Cursor>,
    /// Which channel each fetch in flight is for.
    fetching: HashMap<u64, String>,
    next_fetch: u64,
}

impl Cursors {
    /// Its entries by structure (`slip_entries`).
    pub fn sizes(&self, out: &mut slip_metrics::Sizes) {
        out.push(("stream_cursors", self.channels.len()));
        out.push(("gap_fetches", self.fetching.len()));
    }

    /// A Deliver from the channel's owner.
    pub fn deliver(&mut self, deliver: Deliver, now: Instant) -> Steps {
        let mut steps = Steps::default();
        let channel = deliver.channel.clone();
        if let Some(cursor) = self.channels.get_mut(&channel) {
            if deliver.view < cursor.view {
                // From an owner under an older view: not the stream any more.
                steps.stale = 1;
                steps.repeat_ack = deliver.ack;
                return steps;
            }
            cursor.view = deliver.view;
        }
        // Closing orders are not publications: no place in the stream.
        if deliver.offset == 0 {
            steps.deliver.push(deliver);
            return steps;
        }
        let Some(cursor) = self.channels.get_mut(&channel) else {
            // The first since this edge joined: it starts here.
            let cursor = Cursor {
                epoch: deliver.epoch.clone(),
                last: deliver.offset,
                view: deliver.view,
                held: BTreeMap::new(),
                fetch: None,
                behind: 0,
            };
            self.channels.insert(channel, cursor);
            steps.deliver.push(deliver);
            return steps;
        };
        if cursor.epoch != deliver.epoch {
            // Continuity lost (every copy of the stream was, or two histories
            // met): the new epoch is new here from its first offset on.
            self.restart(&channel, &deliver.epoch.clone(), &mut steps);
            let cursor = self.channels.get_mut(&channel).expect("just restarted");
            cursor.held.insert(deliver.offset, deliver);
            self.settle(&channel, now, &mut steps);
            return steps;
        }
        if deliver.offset <= cursor.last || cursor.held.contains_key(&deliver.offset) {
            steps.repeat_ack = deliver.ack; // delivered already
            return steps;
        }
        if deliver.offset == cursor.last + 1 && cursor.fetch.is_none() {
            cursor.last = deliver.offset;
            steps.deliver.push(deliver);
            return steps;
        }
        cursor.held.insert(deliver.offset, deliver);
        if cursor.held.len() > MAX_HELD {
            // Too far behind to wait: give the gaps up.
            if let Some(fetch) = cursor.fetch.take() {
                self.fetching.remove(&fetch.id);
            }
            flush(&channel, cursor, GapCause::TooFarBehind, &mut steps);
            return steps;
        }
        self.settle(&channel, now, &mut steps);
        steps
    }

    /// A Deliver for a channel nobody here subscribes to now: it was on its
    /// way when the last subscriber left. It goes on (its `ack` is answered;
    /// it reaches nobody) but starts no cursor: one started then would take
    /// the owner's next publication, once interest comes back, for a gap,
    /// fetch it, and report what was published meanwhile as lost.
    pub fn deliver_unread(&mut self, deliver: Deliver, now: Instant) -> Steps {
        if self.follows(&deliver.channel) {
            return self.deliver(deliver, now);
        }
        Steps { deliver: vec![deliver], ..Steps::default() }
    }

    /// The owner's answer to fetch `id` (`None`: it could not be asked, or
    /// gave no answer in time). What it holds of the gap goes out, then what
    /// waited behind it. What its history no longer holds is lost; what the
    /// answer did not reach (it was cut short, or the gap grew meanwhile) is
    /// asked for next, and so is a later gap among what waited.
    pub fn answered(&mut self, id: u64, answer: Option<HistoryAnswer>, now: Instant) -> Steps {
        let mut steps = Steps::default();
        let Some(channel) = self.fetching.get(&id) else { return steps };
        let Some(cursor) = self.channels.get_mut(channel) else { return steps };
        if let Some(answer) = &answer {
            if answer.not_owner || answer.view < cursor.view {
                // Not the owner's word: the fetch is asked again when its time is up.
                steps.stale = 1;
                return steps;
            }
            cursor.view = answer.view;
        }
        let Some(channel) = self.fetching.remove(&id) else { return steps };
        let Some(cursor) = self.channels.get_mut(&channel) else { return steps };
        let Some(fetch) = cursor.fetch.take() else { return steps };
        let first_held = cursor.held.keys().next().copied().unwrap_or(u64::MAX);
        // The last offset this question covers: past it the answer says nothing.
        let covers = fetch.through.min(first_held.saturating_sub(1));
        let before = cursor.last;
        let (gone_through, cause) = match answer {
            Some(answer) if answer.epoch == cursor.epoch => {
                let given_through = answer.publications.last().map(|p| p.offset);
                for entry in answer.publications {
                    if entry.offset <= cursor.last || entry.offset > covers {
                        continue;
                    }
                    // History starts past the cursor: the offsets before its first are gone.
                    steps.lose(&channel, cursor.last, entry.offset - cursor.last - 1, GapCause::NotInHistory);
                    cursor.last = entry.offset;
                    let (channel, epoch) = (channel.clone(), cursor.epoch.clone());
                    let view = cursor.view;
                    steps.deliver.push(Deliver {
                        channel,
                        offset: entry.offset,
                        event: entry.event,
                        ack: 0,
                        epoch,
                        view,
                    });
                }
                // Whole (not cut short by its size), the answer holds every
                // publication up to the owner's top: the rest of what it
                // covers, up to that top, is gone.
                let whole = given_through.is_none_or(|last| last >= answer.top_offset.min(covers));
                let gone = if whole { answer.top_offset.min(covers) } else { 0 };
                (gone, GapCause::NotInHistory)
            }
            Some(_) => (covers, GapCause::OtherEpoch),
            None => (covers, GapCause::NoAnswer),
        };
        if gone_through > cursor.last {
            steps.lose(&channel, cursor.last, gone_through - cursor.last, cause);
            cursor.last = gone_through;
        }
        if cursor.last == before && first_held != u64::MAX && first_held > cursor.last + 1 {
            // Nothing came of the gap before what waits (the owner's history
            // ends short of it): it will not come.
            steps.lose(&channel, cursor.last, first_held - cursor.last - 1, cause);
            cursor.last = first_held - 1;
        }
        if cursor.last == before {
            // No progress: the owner's top is not past the cursor after all.
            cursor.behind = cursor.behind.min(cursor.last);
        }
        self.settle(&channel, now, &mut steps);
        steps
    }

    /// Delivers what waited and now follows on; asks for the next gap if one is left.
    fn settle(&mut self, channel: &str, now: Instant, steps: &mut Steps) {
        let Some(cursor) = self.channels.get_mut(channel) else { return };
        while let Some(entry) = cursor.held.first_entry() {
            let offset = *entry.key();
            if offset <= cursor.last {
                entry.remove();
            } else if offset == cursor.last + 1 && cursor.fetch.is_none() {
                cursor.last = offset;
                steps.deliver.push(entry.remove());
            } else {
                break;
            }
        }
        if cursor.fetch.is_some() {
            return;
        }
        let through = match cursor.held.keys().next() {
            Some(&first_held) => first_held - 1,
            None if cursor.behind > cursor.last => cursor.behind,
            None => return,
        };
        self.ask(channel, through, now + FETCH_GIVE_UP, now, steps);
    }

    /// Asks the owner's history for what follows the cursor, through offset
    /// `through`, as a new question (an answer to an earlier one is ignored).
    fn ask(&mut self, channel: &str, through: u64, give_up: Instant, now: Instant, steps: &mut Steps) {
        let Some(cursor) = self.channels.get_mut(channel) else { return };
        let id = FETCH_ID_BIT | self.next_fetch;
        self.next_fetch += 1;
        let query = HistoryQuery {
            channel: channel.to_owned(),
            since_epoch: cursor.epoch.clone(),
            since_offset: cursor.last,
            limit: u32::try_from(through - cursor.last).unwrap_or(u32::MAX),
        };
        if let Some(old) = cursor.fetch.replace(Fetch { id, until: now + FETCH_TIMEOUT, give_up, through }) {
            self.fetching.remove(&old.id);
        }
        self.fetching.insert(id, channel.to_owned());
        steps.fetch.push((id, query));
    }

    /// Whether question `id` is one of the cursors' fetches.
    pub fn is_fetch(id: u64) -> bool {
        id & FETCH_ID_BIT != 0
    }

    /// Fetch `id` could not be sent (no owner known, no link up): it is
    /// asked again after [`FETCH_RETRY`], not [`FETCH_TIMEOUT`].
    pub fn unsent(&mut self, id: u64, now: Instant) {
        let Some(channel) = self.fetching.get(&id) else { return };
        if let Some(fetch) = self.channels.get_mut(channel).and_then(|c| c.fetch.as_mut())
            && fetch.id == id
        {
            fetch.until = fetch.until.min(now + FETCH_RETRY);
        }
    }

    /// Fetch `id` got no answer in its time ([`Cursors::expire`] calls
    /// this). Asked again, of the owner then, until [`FETCH_GIVE_UP`]; then
    /// given up.
    fn unanswered(&mut self, id: u64, now: Instant) -> Steps {
        let mut steps = Steps::default();
        let Some(channel) = self.fetching.get(&id).cloned() else { return steps };
        let Some(fetch) = self.channels.get(&channel).and_then(|c| c.fetch.as_ref()) else { return steps };
        if now >= fetch.give_up {
            return self.answered(id, None, now);
        }
        let (through, give_up) = (fetch.through, fetch.give_up);
        self.ask(&channel, through, give_up, now, &mut steps);
        steps
    }

    /// The ring changed: every gap being fetched is asked again at once, of
    /// the channel's owner now.
    pub fn ask_again(&mut self, now: Instant) -> Steps {
        let mut steps = Steps::default();
        let asking: Vec<(String, u64, Instant)> = self
            .channels
            .iter()
            .filter_map(|(channel, c)| c.fetch.as_ref().map(|f| (channel.clone(), f.through, f.give_up)))
            .collect();
        for (channel, through, give_up) in asking {
            self.ask(&channel, through, give_up, now, &mut steps);
        }
        steps
    }

    /// Follows a new epoch of `channel`'s stream from its start: what was
    /// held of the old one goes out, and the break is counted.
    fn restart(&mut self, channel: &str, epoch: &str, steps: &mut Steps) {
        let Some(cursor) = self.channels.get_mut(channel) else { return };
        steps.lose(channel, cursor.last, 1, GapCause::NewEpoch);
        if let Some(fetch) = cursor.fetch.take() {
            self.fetching.remove(&fetch.id);
        }
        flush(channel, cursor, GapCause::NewEpoch, steps);
        epoch.clone_into(&mut cursor.epoch);
        cursor.last = 0;
        cursor.behind = 0;
    }

    /// The owner says where the stream is: a cursor behind it fetches the
    /// rest (the Delivers it missed while the owner changed); one in another
    /// epoch follows the new one from its start.
    pub fn head(&mut self, channel: &str, epoch: &str, top: u64, view: u64, now: Instant) -> Steps {
        let mut steps = Steps::default();
        let Some(cursor) = self.channels.get_mut(channel) else { return steps };
        if view < cursor.view {
            steps.stale = 1;
            return steps;
        }
        cursor.view = view;
        if cursor.epoch == epoch {
            // Fetched once what is being fetched, or waits, is in.
            cursor.behind = cursor.behind.max(top);
        }
        if cursor.fetch.is_some() || !cursor.held.is_empty() {
            return steps;
        }
        if cursor.epoch != epoch {
            self.restart(channel, epoch, &mut steps);
            let cursor = self.channels.get_mut(channel).expect("just restarted");
            cursor.behind = top;
        } else if top <= cursor.last {
            return steps;
        }
        self.settle(channel, now, &mut steps);
        steps
    }

    /// When the next fetch gives up.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.channels.values().filter_map(|c| c.fetch.as_ref().map(|f| f.until)).min()
    }

    /// Fetches past their time: asked again, or given up past [`FETCH_GIVE_UP`].
    pub fn expire(&mut self, now: Instant) -> Steps {
        let due: Vec<(u64, String)> = self
            .channels
            .iter()
            .filter_map(|(channel, c)| c.fetch.as_ref().filter(|f| f.until <= now).map(|f| (f.id, channel.clone())))
            .collect();
        let mut steps = Steps::default();
        for (id, channel) in due {
            // Every fetch past its time moves on here (asked again or given
            // up): the clock must never find the same deadline past twice.
            self.fetching.entry(id).or_insert(channel);
            let more = self.unanswered(id, now);
            steps.deliver.extend(more.deliver);
            steps.lost += more.lost;
            steps.gaps.extend(more.gaps);
            // A gap found behind the one given up is asked for like any other.
            steps.fetch.extend(more.fetch);
        }
        steps
    }

    /// Follows `channel` from `offset` of `epoch` on, if it is not followed
    /// yet: a session taken over from another edge stood there.
    pub fn start_at(&mut self, channel: &str, epoch: &str, offset: u64) {
        self.channels.entry(channel.to_owned()).or_insert_with(|| Cursor {
            epoch: epoch.to_owned(),
            last: offset,
            view: 0,
            held: BTreeMap::new(),
            fetch: None,
            behind: 0,
        });
    }

    /// Whether a cursor follows `channel`'s stream here.
    pub fn follows(&self, channel: &str) -> bool {
        self.channels.contains_key(channel)
    }

    /// The epoch and last offset delivered here of `channel`, if known.
    pub fn position(&self, channel: &str) -> Option<(String, u64)> {
        self.channels.get(channel).map(|c| (c.epoch.clone(), c.last))
    }

    /// The edge no longer has subscribers of `channel`: it starts afresh if
    /// they come back (whatever was published meanwhile is not theirs).
    pub fn forget(&mut self, channel: &str) {
        self.channels.remove(channel);
        self.fetching.retain(|_, c| c != channel);
    }
}

/// Delivers everything held, in order, counting the holes as lost.
fn flush(channel: &str, cursor: &mut Cursor, cause: GapCause, steps: &mut Steps) {
    for (offset, deliver) in std::mem::take(&mut cursor.held) {
        if offset <= cursor.last {
            continue;
        }
        steps.lose(channel, cursor.last, offset - cursor.last - 1, cause);
        cursor.last = offset;
        steps.deliver.push(deliver);
    }
}

#[cfg(test)]
mod tests;
