//! A stream's history as it travels on a link: the owner's [`History`] as
//! a [`HistoryAnswer`], cut to fit one frame, and back again at the node
//! that asked.

use slip_proto::link_pb::{HistoryAnswer, HistoryEntry};

use super::{History, Publication, payload_bytes};

/// About how many bytes of publications one history answer on a link holds
/// (at least one publication): well under the link's largest frame. An edge
/// asks on from the last one it got.
pub const HISTORY_ANSWER_BYTES: usize = 256 * 1024;
/// What an answer's entry costs besides its payload, in that count.
const HISTORY_ENTRY_OVERHEAD: usize = 32;

impl History {
    /// The answer an owner under view `view` sends: the oldest publications
    /// up to [`HISTORY_ANSWER_BYTES`]; the asker asks on from the last one.
    pub fn into_answer(self, view: u64) -> HistoryAnswer {
        let mut used = 0;
        let publications = self
            .publications
            .into_iter()
            .take_while(|p| {
                let fits = used < HISTORY_ANSWER_BYTES;
                used += payload_bytes(&p.event) + HISTORY_ENTRY_OVERHEAD;
                fits
            })
            .map(|p| HistoryEntry { offset: p.offset, event: Some(p.event) })
            .collect();
        HistoryAnswer {
            epoch: self.epoch.to_string(),
            top_offset: self.top_offset,
            publications,
            complete: self.complete,
            view,
            not_owner: false,
        }
    }
}

impl From<HistoryAnswer> for History {
    fn from(answer: HistoryAnswer) -> Self {
        History {
            epoch: answer.epoch.into(),
            top_offset: answer.top_offset,
            publications: answer
                .publications
                .into_iter()
                .map(|p| Publication { offset: p.offset, event: p.event.unwrap_or_default() })
                .collect(),
            complete: answer.complete,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use slip_proto::link_pb::{ChannelEvent, channel_event};

    use super::{HISTORY_ANSWER_BYTES, History, Publication};

    fn history(count: u64, bytes: usize) -> History {
        let publications = (1..=count)
            .map(|offset| Publication {
                offset,
                event: ChannelEvent { body: Some(channel_event::Body::Text("x".repeat(bytes))) },
            })
            .collect();
        History { epoch: Arc::from("e1"), top_offset: count, publications, complete: true }
    }

    #[test]
    fn an_answer_comes_back_as_the_history_it_was() {
        let small = history(3, 10);
        let answer = small.clone().into_answer(7);
        assert_eq!(answer.view, 7);
        assert_eq!(History::from(answer), small);
    }

    #[test]
    fn a_long_history_is_cut_to_fit_a_frame_and_keeps_its_oldest() {
        let answer = history(100, HISTORY_ANSWER_BYTES / 10).into_answer(1);
        let offsets: Vec<u64> = answer.publications.iter().map(|p| p.offset).collect();
        assert!(offsets.len() < 100 && offsets.len() >= 10, "{offsets:?}");
        assert_eq!(offsets[0], 1);
        assert_eq!(answer.top_offset, 100, "the top tells the asker there is more");
        let huge = history(2, HISTORY_ANSWER_BYTES * 2).into_answer(1);
        assert_eq!(huge.publications.len(), 1, "at least one, however large");
    }
}
