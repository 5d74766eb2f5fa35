//! A session's resume as plain data (docs/sessions.md): from
//! the client's resume frame and the places the edge kept, which histories
//! to ask the channels' owners for; from their answers, what the client is
//! replayed, where it stands after, and which channels it is told it lost.
//! The node asks every question at once and carries the outcome out
//! (`node/resume.rs`); this decides.

use std::collections::HashMap;

use slip_proto::link_pb::{HistoryAnswer, channel_event};
use slip_proto::session::Resume;

use crate::session::{Placed, payload_of, publication};

/// One history question a resume asks: `channel` after `offset` of `epoch`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ask {
    pub channel: String,
    pub epoch: String,
    pub offset: u64,
    /// What the answer is for.
    why: Why,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Why {
    /// The client stood at the place asked from: what came after is replayed.
    Replay,
    /// No place is known and the session's edge died with its places: only
    /// a stream that never had a publication is surely not missed.
    Check,
}

/// What the resume comes to.
#[derive(Debug, Default, PartialEq)]
pub struct Outcome {
    /// Where the client stood in each channel it named (or the edge kept).
    pub positions: Vec<(String, String, u64)>,
    /// What it missed, channel by channel in the session's order, each in
    /// offset order.
    pub replay: Vec<Placed>,
    /// Channels it may have missed publications of.
    pub lost: Vec<String>,
}

/// A resume in progress: its questions, and the answers in so far.
#[derive(Debug)]
pub struct Resuming {
    asks: Vec<Ask>,
    answers: Vec<Option<HistoryAnswer>>,
}

impl Resuming {
    /// The resume of a session subscribed to `channels`, whose client sent
    /// `client`; `kept` is where the edge last knew it stood. A `fresh`
    /// session (its old one is gone) starts live where its client names no
    /// place; one whose edge died (`home_lost`) kept no places.
    pub fn new(
        channels: Vec<String>,
        client: &Resume,
        kept: &HashMap<String, (String, u64)>,
        fresh: bool,
        home_lost: bool,
    ) -> Self {
        let mut asks = Vec::new();
        for channel in channels {
            let place = match client.channels.get(&channel) {
                Some(p) => Some((p.epoch.clone(), p.offset)),
                None => kept.get(&channel).cloned(),
            };
            match place {
                Some((epoch, offset)) => asks.push(Ask { channel, epoch, offset, why: Why::Replay }),
                // New to the channel: it starts live.
                None if fresh => {}
                None if home_lost => asks.push(Ask { channel, epoch: String::new(), offset: 0, why: Why::Check }),
                // Nothing to go by, and nothing was lost: it goes on live.
                None => {}
            }
        }
        let answers = vec![None; asks.len()];
        Self { asks, answers }
    }

    /// The history questions to ask, in order; answer each by its index.
    pub fn asks(&self) -> &[Ask] {
        &self.asks
    }

    /// The owner's answer to question `index` (`None`: no answer came).
    pub fn answered(&mut self, index: usize, answer: Option<HistoryAnswer>) {
        if let Some(slot) = self.answers.get_mut(index) {
            *slot = answer;
        }
    }

    /// What the resume comes to, given the answers in.
    pub fn finish(self) -> Outcome {
        let mut outcome = Outcome::default();
        for (ask, answer) in self.asks.into_iter().zip(self.answers) {
            match ask.why {
                Why::Check => {
                    if answer.is_none_or(|a| a.top_offset > 0) {
                        outcome.lost.push(ask.channel);
                    }
                }
                Why::Replay => {
                    match answer {
                        Some(answer) => {
                            if !answer.complete {
                                outcome.lost.push(ask.channel.clone());
                            }
                            outcome.replay.extend(
                                answer
                                    .publications
                                    .into_iter()
                                    .filter_map(|p| placed(&ask.channel, &answer.epoch, p.offset, &p.event?.body?)),
                            );
                        }
                        None => outcome.lost.push(ask.channel.clone()),
                    }
                    outcome.positions.push((ask.channel, ask.epoch, ask.offset));
                }
            }
        }
        outcome
    }
}

/// A publication from history as a session gets it.
fn placed(channel: &str, epoch: &str, offset: u64, body: &channel_event::Body) -> Option<Placed> {
    let frame = publication(channel, epoch, offset, payload_of(body)?);
    Some(Placed { channel: channel.to_owned(), epoch: epoch.to_owned(), offset, frame })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::HashMap;

    use slip_proto::link_pb::{ChannelEvent, HistoryAnswer, HistoryEntry, channel_event};
    use slip_proto::session::{Position, Resume};

    use super::{Outcome, Resuming};

    fn client(places: &[(&str, &str, u64)]) -> Resume {
        Resume {
            seq: 0,
            channels: places
                .iter()
                .map(|(c, e, o)| ((*c).to_owned(), Position { epoch: (*e).to_owned(), offset: *o }))
                .collect(),
        }
    }

    fn history(epoch: &str, offsets: std::ops::RangeInclusive<u64>, complete: bool) -> HistoryAnswer {
        let top_offset = *offsets.end();
        let publications = offsets
            .map(|offset| HistoryEntry {
                offset,
                event: Some(ChannelEvent { body: Some(channel_event::Body::Text(format!("p{offset}"))) }),
            })
            .collect();
        HistoryAnswer { epoch: epoch.into(), publications, complete, top_offset, ..Default::default() }
    }

    fn channels(names: &[&str]) -> Vec<String> {
        names.iter().map(|c| (*c).to_owned()).collect()
    }

    fn replayed(outcome: &Outcome) -> Vec<(String, u64)> {
        outcome.replay.iter().map(|p| (p.channel.clone(), p.offset)).collect()
    }

    #[test]
    fn the_clients_places_come_first_then_the_kept_ones() {
        let kept = HashMap::from([("a".to_owned(), ("e".to_owned(), 9)), ("b".to_owned(), ("e".to_owned(), 4))]);
        let resuming = Resuming::new(channels(&["a", "b", "c"]), &client(&[("a", "e", 2)]), &kept, false, false);
        let asks: Vec<_> = resuming.asks().iter().map(|a| (a.channel.as_str(), a.offset)).collect();
        assert_eq!(asks, [("a", 2), ("b", 4)], "c has no place: it goes on live");
    }

    #[test]
    fn answers_arriving_in_any_order_replay_in_the_sessions_order() {
        let mut resuming = Resuming::new(
            channels(&["a", "b"]),
            &client(&[("a", "e", 1), ("b", "e", 5)]),
            &HashMap::new(),
            false,
            false,
        );
        resuming.answered(1, Some(history("e", 6..=7, true)));
        resuming.answered(0, Some(history("e", 2..=3, true)));
        let outcome = resuming.finish();
        assert_eq!(replayed(&outcome), [("a".into(), 2), ("a".into(), 3), ("b".into(), 6), ("b".into(), 7)]);
        assert!(outcome.lost.is_empty());
        assert_eq!(outcome.positions, [("a".into(), "e".into(), 1), ("b".into(), "e".into(), 5)]);
    }

    #[test]
    fn what_history_no_longer_holds_or_nobody_answered_is_lost() {
        let places = client(&[("a", "e", 1), ("b", "e", 1)]);
        let mut resuming = Resuming::new(channels(&["a", "b"]), &places, &HashMap::new(), false, false);
        resuming.answered(0, Some(history("e", 5..=6, false)));
        let outcome = resuming.finish();
        assert_eq!(outcome.lost, ["a", "b"]);
        assert_eq!(replayed(&outcome), [("a".into(), 5), ("a".into(), 6)], "what it holds still goes");
    }

    #[test]
    fn with_its_edge_dead_a_channel_without_a_place_is_lost_unless_it_never_published() {
        let mut resuming = Resuming::new(channels(&["quiet", "busy"]), &client(&[]), &HashMap::new(), false, true);
        assert_eq!(resuming.asks().len(), 2, "both are checked");
        let never_published = HistoryAnswer { epoch: "e".into(), complete: true, ..Default::default() };
        resuming.answered(0, Some(never_published));
        resuming.answered(1, Some(history("e", 1..=3, true)));
        let outcome = resuming.finish();
        assert_eq!(outcome.lost, ["busy"]);
        assert!(outcome.replay.is_empty() && outcome.positions.is_empty(), "a check replays nothing");
    }

    #[test]
    fn a_fresh_session_starts_live_where_its_client_names_no_place() {
        let resuming = Resuming::new(channels(&["a", "b"]), &client(&[("b", "e", 3)]), &HashMap::new(), true, true);
        let asks: Vec<_> = resuming.asks().iter().map(|a| a.channel.as_str()).collect();
        assert_eq!(asks, ["b"]);
        assert_eq!(resuming.finish().lost, ["b"], "unanswered");
    }
}
