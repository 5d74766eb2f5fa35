//! What the backend heard while the faults happened, checked as pure code
//! against what the clients lived through:
//!
//! - every connection the backend accepted got its CLOSE, with `eventId`
//!   `close:<id>` (repeats on the wire are counted, not faults: a backend
//!   drops them by that id), and no connection went on after its CLOSE (a
//!   session resumed under its id, a plain client still connected at the
//!   end);
//! - at the end, each channel's presence lists every subscriber still
//!   connected once, and nobody else;
//! - each channel's lifecycle events, repeats dropped by id and put in the
//!   order their owners decided them, alternate `CHANNEL_OCCUPIED` and
//!   `CHANNEL_VACATED`, from an OCCUPIED to a VACATED once everyone left: a
//!   backend following them is never told twice the same. More than one
//!   pair (a flap) is counted, not a fault: when a partition cuts every
//!   subscriber's edge off from the majority, the channel is empty as far
//!   as the cluster can tell.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use serde::Serialize;

use super::checker::SubscriberLog;

/// A connection the backend accepted.
#[derive(Debug, Clone)]
pub struct Accepted {
    /// The subscriber that opened it (its `who` query parameter).
    pub tag: String,
}

/// One CLOSE event as it came.
#[derive(Debug, Clone)]
pub struct Closed {
    pub connection_id: String,
    pub event_id: Option<String>,
    pub at: Instant,
}

/// One lifecycle event as it came.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LifecycleEvent {
    pub id: String,
    pub kind: String,
    pub channel: String,
    /// When its owner decided it (unix ms).
    pub at: u64,
}

#[derive(Debug, Default)]
pub struct Ledger {
    pub accepted: BTreeMap<String, Accepted>,
    pub closes: Vec<Closed>,
    pub lifecycle: Vec<LifecycleEvent>,
}

impl Ledger {
    /// Accepted connections with no CLOSE yet.
    pub fn unclosed(&self) -> usize {
        let closed: BTreeSet<&str> = self.closes.iter().map(|c| c.connection_id.as_str()).collect();
        self.accepted.keys().filter(|id| !closed.contains(id.as_str())).count()
    }

    /// Whether every channel's last lifecycle event is a VACATED.
    pub fn all_vacated(&self, channels: &[String]) -> bool {
        channels.iter().all(|channel| {
            let last = self.lifecycle.iter().filter(|e| &e.channel == channel).max_by_key(|e| e.at);
            last.is_some_and(|e| e.kind == "CHANNEL_VACATED")
        })
    }
}

/// What presence said of one channel at the end, against who was there.
#[derive(Debug, Clone, Default)]
pub struct PresenceSeen {
    pub channel: String,
    /// The `who` of every member listed (its count is the reply's count).
    pub members: Vec<String>,
    pub count: u64,
    /// The subscribers connected then.
    pub connected: Vec<String>,
}

/// What was found, beyond the streams' invariants.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Findings {
    pub accepted: usize,
    /// Accepted connections that never got a CLOSE.
    pub unclosed: usize,
    /// CLOSEs past the first of a connection: at least once on the wire.
    pub close_repeats: usize,
    /// CLOSEs of connections never accepted, or with another eventId.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub bad_closes: Vec<String>,
    /// Connections that went on after their CLOSE.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub outlived: Vec<String>,
    /// Members no connected subscriber accounts for, and connected
    /// subscribers presence lacked, over all channels.
    pub presence_ghosts: usize,
    pub presence_missing: usize,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub presence_detail: Vec<String>,
    /// Each channel's lifecycle, repeats dropped: `O` occupied, `V` vacated.
    pub lifecycle: BTreeMap<String, String>,
    /// OCCUPIEDs past each channel's first.
    pub lifecycle_flaps: usize,
    /// Lifecycle events past the first of an id.
    pub lifecycle_repeats: usize,
    /// Two events under one id that differ.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub lifecycle_bad: Vec<String>,
}

impl Findings {
    pub fn hold(&self) -> bool {
        self.unclosed == 0
            && self.bad_closes.is_empty()
            && self.outlived.is_empty()
            && self.presence_ghosts == 0
            && self.presence_missing == 0
            && self.lifecycle_bad.is_empty()
    }
}

/// `stopped`: when the clients were told to close at the end.
pub fn check(
    ledger: &Ledger,
    subscribers: &[SubscriberLog],
    presence: &[PresenceSeen],
    channels: &[String],
    stopped: Instant,
) -> Findings {
    let mut findings = Findings { accepted: ledger.accepted.len(), ..Findings::default() };
    let mut first_close: BTreeMap<&str, Instant> = BTreeMap::new();
    for close in &ledger.closes {
        let id = close.connection_id.as_str();
        if !ledger.accepted.contains_key(id) {
            findings.bad_closes.push(format!("{id}: never accepted"));
        } else if close.event_id.as_deref() != Some(&format!("close:{id}")) {
            findings.bad_closes.push(format!("{id}: eventId {:?}", close.event_id));
        }
        match first_close.get(id) {
            Some(_) => findings.close_repeats += 1,
            None => {
                first_close.insert(id, close.at);
            }
        }
    }
    findings.unclosed = ledger.accepted.keys().filter(|id| !first_close.contains_key(id.as_str())).count();

    for (id, closed_at) in &first_close {
        let Some(accepted) = ledger.accepted.get(*id) else { continue };
        let Some(sub) = subscribers.iter().find(|s| s.tag == accepted.tag) else { continue };
        if sub.session {
            if let Some((_, _, at)) =
                sub.session_frames.iter().find(|(sid, resumed, at)| sid == id && *resumed && at > closed_at)
            {
                findings.outlived.push(format!("{id} ({}): resumed {:?} after its CLOSE", sub.name, *at - *closed_at));
            }
        } else if *closed_at < stopped && !sub.broken {
            findings.outlived.push(format!("{id} ({}): connected to the end after its CLOSE", sub.name));
        }
    }

    for seen in presence {
        let mut members: BTreeMap<&str, usize> = BTreeMap::new();
        for who in &seen.members {
            *members.entry(who.as_str()).or_default() += 1;
        }
        let connected: BTreeSet<&str> = seen.connected.iter().map(String::as_str).collect();
        let ghosts: usize = members.iter().map(|(who, n)| if connected.contains(who) { n - 1 } else { *n }).sum();
        let ghosts = ghosts + (seen.count as usize).saturating_sub(seen.members.len());
        let missing = connected.iter().filter(|who| !members.contains_key(*who)).count();
        if ghosts + missing > 0 {
            findings.presence_detail.push(format!(
                "{}: {} members {:?}, connected {:?}",
                seen.channel, seen.count, seen.members, seen.connected
            ));
        }
        findings.presence_ghosts += ghosts;
        findings.presence_missing += missing;
    }

    let mut by_id: BTreeMap<&str, &LifecycleEvent> = BTreeMap::new();
    for event in &ledger.lifecycle {
        match by_id.get(event.id.as_str()) {
            Some(first) if *first != event => findings.lifecycle_bad.push(format!("{first:?} and {event:?}")),
            Some(_) => findings.lifecycle_repeats += 1,
            None => {
                by_id.insert(&event.id, event);
            }
        }
    }
    for channel in channels {
        let mut events: Vec<&&LifecycleEvent> = by_id.values().filter(|e| &e.channel == channel).collect();
        events.sort_by_key(|e| e.at);
        let letters: String = events.iter().map(|e| if e.kind == "CHANNEL_OCCUPIED" { 'O' } else { 'V' }).collect();
        let alternates = letters.len().is_multiple_of(2)
            && letters.chars().enumerate().all(|(i, c)| c == if i.is_multiple_of(2) { 'O' } else { 'V' });
        if letters.is_empty() || !alternates {
            let told: Vec<String> = events.iter().map(|e| format!("{} {} at {}", e.kind, e.id, e.at)).collect();
            findings.lifecycle_bad.push(format!("{channel}: {letters}: {}", told.join(", ")));
        }
        findings.lifecycle_flaps += letters.matches('O').count().saturating_sub(1);
        findings.lifecycle.insert(channel.clone(), letters);
    }
    findings
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ledger(ids: &[(&str, &str)]) -> Ledger {
        let accepted = ids.iter().map(|(id, tag)| (id.to_string(), Accepted { tag: tag.to_string() })).collect();
        Ledger { accepted, ..Ledger::default() }
    }

    fn close(id: &str, at: Instant) -> Closed {
        Closed { connection_id: id.into(), event_id: Some(format!("close:{id}")), at }
    }

    fn event(id: &str, kind: &str, at: u64) -> LifecycleEvent {
        LifecycleEvent { id: id.into(), kind: kind.into(), channel: "c".into(), at }
    }

    fn subscriber(tag: &str, session: bool) -> SubscriberLog {
        SubscriberLog { name: tag.into(), tag: tag.into(), session, ..SubscriberLog::default() }
    }

    #[test]
    fn one_close_each_one_occupied_and_one_vacated_hold_and_repeats_are_only_counted() {
        let now = Instant::now();
        let mut l = ledger(&[("a", "p"), ("b", "s")]);
        l.closes = vec![close("a", now), close("b", now), close("b", now)];
        l.lifecycle =
            vec![event("1", "CHANNEL_OCCUPIED", 1), event("2", "CHANNEL_VACATED", 2), event("2", "CHANNEL_VACATED", 2)];
        let subs = [subscriber("p", false), subscriber("s", true)];
        let presence = [PresenceSeen {
            channel: "c".into(),
            members: vec!["p".into(), "s".into()],
            count: 2,
            connected: vec!["p".into(), "s".into()],
        }];
        let findings = check(&l, &subs, &presence, &["c".into()], now);
        assert!(findings.hold(), "{findings:?}");
        assert_eq!((findings.close_repeats, findings.lifecycle_repeats), (1, 1));
    }

    #[test]
    fn a_missing_or_wrong_close_and_a_connection_that_outlived_its_close_are_faults() {
        let now = Instant::now();
        let later = now + std::time::Duration::from_secs(1);
        let mut l = ledger(&[("a", "p"), ("b", "s"), ("c", "q")]);
        l.closes = vec![
            close("a", now),
            close("b", now),
            Closed { connection_id: "x".into(), event_id: Some("close:x".into()), at: now },
            Closed { connection_id: "c".into(), event_id: None, at: now },
        ];
        let mut session = subscriber("s", true);
        session.session_frames = vec![("b".into(), true, later)];
        let subs = [subscriber("p", false), session, subscriber("q", false)];
        let findings = check(&l, &subs, &[], &[], later);
        assert_eq!(findings.bad_closes.len(), 2, "{findings:?}");
        assert_eq!(findings.outlived.len(), 3, "p and q still connected, b resumed: {findings:?}");
        let l = ledger(&[("a", "p")]);
        assert_eq!(check(&l, &[], &[], &[], now).unclosed, 1);
    }

    #[test]
    fn ghosts_and_missing_members_and_a_channel_told_the_same_twice_are_faults() {
        let now = Instant::now();
        let presence = [PresenceSeen {
            channel: "c".into(),
            members: vec!["p".into(), "p".into(), "gone".into()],
            count: 4,
            connected: vec!["p".into(), "s".into()],
        }];
        let findings = check(&Ledger::default(), &[], &presence, &[], now);
        assert_eq!((findings.presence_ghosts, findings.presence_missing), (3, 1), "{findings:?}");

        let mut l = Ledger {
            lifecycle: vec![
                event("3", "CHANNEL_OCCUPIED", 3),
                event("1", "CHANNEL_OCCUPIED", 1),
                event("2", "CHANNEL_VACATED", 2),
                event("4", "CHANNEL_VACATED", 4),
            ],
            ..Ledger::default()
        };
        let findings = check(&l, &[], &[], &["c".into()], now);
        assert_eq!(findings.lifecycle["c"], "OVOV", "in the order decided");
        assert!(findings.hold(), "a flap is counted, not a fault: {findings:?}");
        assert_eq!(findings.lifecycle_flaps, 1);
        l.lifecycle.push(event("5", "CHANNEL_VACATED", 5));
        assert!(!check(&l, &[], &[], &["c".into()], now).hold(), "told vacated twice running");
        l.lifecycle.push(event("4", "CHANNEL_OCCUPIED", 4));
        let bad = check(&l, &[], &[], &["c".into()], now).lifecycle_bad;
        assert_eq!(bad.iter().filter(|b| b.contains(" and ")).count(), 1, "one id, two events: {bad:?}");
        assert!(!check(&Ledger::default(), &[], &[], &["c".into()], now).hold(), "never occupied");
    }
}
