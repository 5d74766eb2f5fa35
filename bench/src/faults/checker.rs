//! The campaign's invariants, checked against what publishers were told and
//! what subscribers got, as pure code:
//!
//! - every acknowledged publish reaches every subscriber that stayed
//!   connected (or, a session, resumed) exactly once, and in order;
//! - never two different publications at one (channel, epoch, offset),
//!   whether in the acknowledgements or in what sessions were sent;
//! - what was never acknowledged may arrive, but at most once.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Instant;

use serde::Serialize;

/// A publish the control plane acknowledged, where it said it went.
#[derive(Debug, Clone)]
pub struct Acked {
    pub seq: u64,
    pub epoch: String,
    pub offset: u64,
    pub at: Instant,
}

/// One publisher's log.
#[derive(Debug, Default)]
pub struct ChannelLog {
    pub channel: String,
    pub acked: Vec<Acked>,
    /// Publishes that failed (after the SDK's retries), and when.
    pub unacked: Vec<(u64, Instant)>,
}

/// One message a subscriber got: its number, and for a session its place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub seq: u64,
    pub place: Option<(String, u64)>,
}

/// One subscriber's log.
#[derive(Debug, Default)]
pub struct SubscriberLog {
    pub name: String,
    /// The `who` it gives the backend, which makes it its presence.
    pub tag: String,
    pub channel: String,
    pub session: bool,
    pub received: Vec<Seen>,
    /// A plain subscriber whose connection ended (its edge died): it cannot
    /// be asked to have everything.
    pub broken: bool,
    /// A session: it had its first session frame.
    pub opened: bool,
    pub resumes: u32,
    /// Resumes that got a fresh session instead.
    pub fresh: u32,
    pub drops: u32,
    /// Times a resume said this channel's publications were lost.
    pub told_lost: u32,
    /// A session: every session frame, its connection id, whether it resumed, and when.
    pub session_frames: Vec<(String, bool, Instant)>,
}

/// What was found wrong with one subscriber.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Faults {
    pub name: String,
    /// Acknowledged publishes it never got (and was not told were lost).
    pub lost: usize,
    /// Acknowledged publishes it never got, but was told it lost.
    pub lost_told: usize,
    /// Messages it got more than once (extra copies).
    pub doubled: usize,
    /// Messages that came after a later one of the same publisher.
    pub reordered: usize,
    /// The first few acknowledged messages it never got.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub acknowledged: usize,
    pub refused: usize,
    /// Subscribers checked for completeness (the others were cut short).
    pub complete_subscribers: usize,
    pub subscribers: Vec<Faults>,
    /// (channel, epoch, offset) given to two different messages.
    pub collisions: Vec<String>,
    /// Epochs the acknowledgements named, per channel.
    pub epochs: BTreeMap<String, usize>,
}

impl Verdict {
    pub fn lost(&self) -> usize {
        self.subscribers.iter().map(|s| s.lost).sum()
    }

    pub fn doubled(&self) -> usize {
        self.subscribers.iter().map(|s| s.doubled).sum()
    }

    pub fn reordered(&self) -> usize {
        self.subscribers.iter().map(|s| s.reordered).sum()
    }

    /// Whether every invariant held.
    pub fn holds(&self) -> bool {
        self.lost() == 0 && self.doubled() == 0 && self.reordered() == 0 && self.collisions.is_empty()
    }
}

pub fn check(channels: &[ChannelLog], subscribers: &[SubscriberLog]) -> Verdict {
    let mut verdict = Verdict::default();
    // Who is at each place, by what publishers were told and sessions were sent.
    let mut places: HashMap<(String, String, u64), BTreeSet<u64>> = HashMap::new();
    for log in channels {
        verdict.acknowledged += log.acked.len();
        verdict.refused += log.unacked.len();
        let epochs: BTreeSet<&str> = log.acked.iter().map(|a| a.epoch.as_str()).collect();
        verdict.epochs.insert(log.channel.clone(), epochs.len());
        for a in &log.acked {
            places.entry((log.channel.clone(), a.epoch.clone(), a.offset)).or_default().insert(a.seq);
        }
    }
    for sub in subscribers {
        for seen in &sub.received {
            if let Some((epoch, offset)) = &seen.place {
                places.entry((sub.channel.clone(), epoch.clone(), *offset)).or_default().insert(seen.seq);
            }
        }
    }
    let mut collisions: Vec<String> = places
        .into_iter()
        .filter(|(_, seqs)| seqs.len() > 1)
        .map(|((channel, epoch, offset), seqs)| format!("{channel} {epoch}/{offset}: {seqs:?}"))
        .collect();
    collisions.sort();
    verdict.collisions = collisions;

    for sub in subscribers {
        let Some(log) = channels.iter().find(|c| c.channel == sub.channel) else { continue };
        let mut faults = Faults { name: sub.name.clone(), ..Faults::default() };
        let mut count: HashMap<u64, usize> = HashMap::new();
        let mut highest = 0;
        for seen in &sub.received {
            *count.entry(seen.seq).or_default() += 1;
            if seen.seq < highest {
                faults.reordered += 1;
            }
            highest = highest.max(seen.seq);
        }
        faults.doubled = count.values().map(|n| n - 1).sum();
        if !sub.broken {
            verdict.complete_subscribers += 1;
            let missing: Vec<u64> = log.acked.iter().filter(|a| !count.contains_key(&a.seq)).map(|a| a.seq).collect();
            faults.missing = missing.iter().take(5).copied().collect();
            if sub.told_lost > 0 {
                faults.lost_told = missing.len();
            } else {
                faults.lost = missing.len();
            }
        }
        verdict.subscribers.push(faults);
    }
    verdict
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acked(seqs: &[(u64, &str, u64)]) -> ChannelLog {
        let at = Instant::now();
        ChannelLog {
            channel: "c".into(),
            acked: seqs.iter().map(|(seq, e, o)| Acked { seq: *seq, epoch: (*e).into(), offset: *o, at }).collect(),
            unacked: Vec::new(),
        }
    }

    fn sub(name: &str, seqs: &[u64]) -> SubscriberLog {
        SubscriberLog {
            name: name.into(),
            channel: "c".into(),
            received: seqs.iter().map(|s| Seen { seq: *s, place: None }).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn everything_once_in_order_holds() {
        let log = acked(&[(1, "e", 1), (2, "e", 2), (3, "e", 3)]);
        // An unacknowledged publish (4) may arrive, once.
        let verdict = check(&[log], &[sub("a", &[1, 2, 3, 4])]);
        assert!(verdict.holds(), "{verdict:?}");
        assert_eq!(verdict.epochs["c"], 1);
    }

    #[test]
    fn loss_doubles_and_reordering_are_counted_per_subscriber() {
        let log = acked(&[(1, "e", 1), (2, "e", 2), (3, "e", 3)]);
        let verdict = check(&[log], &[sub("a", &[1, 3]), sub("b", &[1, 2, 2, 3]), sub("c", &[2, 1, 3])]);
        assert_eq!(
            verdict.subscribers.iter().map(|f| (f.lost, f.doubled, f.reordered)).collect::<Vec<_>>(),
            [(1, 0, 0), (0, 1, 0), (0, 0, 1)]
        );
        assert!(!verdict.holds());
    }

    #[test]
    fn a_broken_subscriber_is_not_asked_for_everything_and_a_told_loss_is_apart() {
        let log = acked(&[(1, "e", 1), (2, "e", 2)]);
        let broken = SubscriberLog { broken: true, ..sub("a", &[1]) };
        let told = SubscriberLog { told_lost: 1, ..sub("b", &[1]) };
        let verdict = check(&[log], &[broken, told]);
        assert!(verdict.holds(), "{verdict:?}");
        assert_eq!((verdict.complete_subscribers, verdict.subscribers[1].lost_told), (1, 1));
    }

    #[test]
    fn two_messages_at_one_place_collide_wherever_seen() {
        let log = acked(&[(1, "e", 1), (2, "e", 2)]);
        let mut session = sub("s", &[]);
        session.received =
            vec![Seen { seq: 1, place: Some(("e".into(), 1)) }, Seen { seq: 3, place: Some(("e".into(), 2)) }];
        let verdict = check(&[log], &[session]);
        assert_eq!(verdict.collisions, ["c e/2: {2, 3}"]);
        let twice = acked(&[(1, "e", 1), (2, "e", 1)]);
        assert_eq!(check(&[twice], &[]).collisions.len(), 1);
    }
}
