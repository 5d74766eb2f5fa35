//! The edge's cursors: in order, duplicates dropped, gaps fetched and filled,
//! what history lost counted, epochs changing, bounds and timeouts.

use slip_proto::link_pb::{ChannelEvent, Deliver, HistoryAnswer, HistoryEntry, channel_event};
use tokio::time::Instant;

use super::*;

fn event(data: &str) -> ChannelEvent {
    ChannelEvent { body: Some(channel_event::Body::Text(data.into())) }
}

fn d(offset: u64) -> Deliver {
    Deliver {
        channel: "room".into(),
        offset,
        event: Some(event(&format!("m{offset}"))),
        ack: 0,
        epoch: "e1".into(),
        view: 1,
    }
}

fn offsets(steps: &Steps) -> Vec<u64> {
    steps.deliver.iter().map(|d| d.offset).collect()
}

fn history(offsets: &[u64]) -> HistoryAnswer {
    HistoryAnswer {
        epoch: "e1".into(),
        top_offset: 0,
        publications: offsets
            .iter()
            .map(|&o| HistoryEntry { offset: o, event: Some(event(&format!("m{o}"))) })
            .collect(),
        complete: true,
        view: 1,
        not_owner: false,
    }
}

#[test]
fn in_order_goes_out_at_once_and_a_repeat_is_dropped() {
    let (mut c, now) = (Cursors::default(), Instant::now());
    assert_eq!(offsets(&c.deliver(d(7), now)), [7], "the first one starts the cursor");
    assert_eq!(offsets(&c.deliver(d(8), now)), [8]);
    assert_eq!(c.deliver(d(8), now), Steps::default(), "delivered already");
    assert_eq!(c.deliver(d(3), now), Steps::default());
}

#[test]
fn a_gap_is_fetched_and_filled_before_what_came_after_it() {
    let (mut c, now) = (Cursors::default(), Instant::now());
    c.deliver(d(1), now);
    let steps = c.deliver(d(4), now);
    assert_eq!(offsets(&steps), Vec::<u64>::new(), "4 waits for 2 and 3");
    let (id, query) = steps.fetch[0].clone();
    assert_eq!(
        (query.channel.as_str(), query.since_epoch.as_str(), query.since_offset, query.limit),
        ("room", "e1", 1, 2)
    );
    assert_eq!(offsets(&c.deliver(d(5), now)), Vec::<u64>::new(), "later ones wait too");
    assert_eq!(c.deliver(d(5), now), Steps::default(), "and are not held twice");
    let filled = c.answered(id, Some(history(&[2, 3])), now);
    assert_eq!(offsets(&filled), [2, 3, 4, 5]);
    assert_eq!(filled.lost, 0);
    assert_eq!(filled.deliver[0].event, Some(event("m2")));
    assert_eq!(offsets(&c.deliver(d(6), now)), [6]);
}

#[test]
fn what_history_no_longer_holds_is_counted_and_skipped() {
    let (mut c, now) = (Cursors::default(), Instant::now());
    c.deliver(d(1), now);
    let (id, _) = c.deliver(d(5), now).fetch[0].clone();
    let filled = c.answered(id, Some(history(&[4])), now);
    assert_eq!(offsets(&filled), [4, 5]);
    assert_eq!(filled.lost, 2, "2 and 3 are gone");
}

#[test]
fn a_fetch_nobody_answers_is_asked_again_until_it_is_given_up() {
    let (mut c, t0) = (Cursors::default(), Instant::now());
    c.deliver(d(1), t0);
    let (first, _) = c.deliver(d(3), t0).fetch[0].clone();
    assert_eq!(c.next_deadline(), Some(t0 + FETCH_TIMEOUT));
    assert_eq!(c.expire(t0 + FETCH_TIMEOUT - Duration::from_millis(1)), Steps::default());
    // No answer in time: the same gap is asked again, nothing is lost yet.
    let mut now = t0 + FETCH_TIMEOUT;
    let again = c.expire(now);
    assert_eq!((offsets(&again), again.lost), (vec![], 0));
    let (second, query) = again.fetch[0].clone();
    assert_ne!(second, first);
    assert_eq!((query.since_offset, query.limit), (1, 1));
    // The first question's late answer is not taken for the second's.
    assert_eq!(c.answered(first, Some(history(&[2])), now), Steps::default());
    while now < t0 + FETCH_GIVE_UP {
        now += FETCH_TIMEOUT;
        let steps = c.expire(now);
        if now < t0 + FETCH_GIVE_UP {
            assert_eq!((steps.fetch.len(), steps.lost), (1, 0), "asked again at {:?}", now - t0);
        } else {
            assert_eq!((offsets(&steps), steps.lost), (vec![3], 1), "given up");
        }
    }
    assert_eq!(c.next_deadline(), None);
    assert_eq!(offsets(&c.deliver(d(4), now)), [4]);
}

#[test]
fn an_unsent_fetch_and_a_ring_change_ask_again_and_the_answer_fills_the_gap() {
    let (mut c, t0) = (Cursors::default(), Instant::now());
    c.deliver(d(1), t0);
    let (first, _) = c.deliver(d(3), t0).fetch[0].clone();
    assert!(Cursors::is_fetch(first), "routed to the cursors by its id");
    assert_eq!(c.next_deadline(), Some(t0 + FETCH_TIMEOUT));
    // It could not be sent (no link to the owner): asked again soon, by the clock.
    c.unsent(first, t0);
    assert_eq!(c.next_deadline(), Some(t0 + FETCH_RETRY));
    assert_eq!(c.expire(t0 + FETCH_RETRY / 2), Steps::default(), "not yet");
    let (second, query) = c.expire(t0 + FETCH_RETRY).fetch[0].clone();
    assert_eq!((query.since_offset, query.limit), (1, 1));
    // The ring changed (the owner died): asked of the new owner at once.
    let (third, _) = c.ask_again(t0 + FETCH_RETRY * 2).fetch[0].clone();
    assert!(third != second && third != first);
    assert_eq!(c.answered(second, Some(history(&[2])), t0), Steps::default(), "a superseded question");
    let filled = c.answered(third, Some(history(&[2])), t0);
    assert_eq!((offsets(&filled), filled.lost), (vec![2, 3], 0));
    assert_eq!(c.ask_again(t0), Steps::default(), "nothing left to ask");
}

#[test]
fn a_new_epoch_starts_over_and_counts_a_loss() {
    let (mut c, now) = (Cursors::default(), Instant::now());
    c.deliver(d(10), now);
    let other = Deliver { epoch: "e2".into(), ..d(1) };
    let steps = c.deliver(other, now);
    assert_eq!((offsets(&steps), steps.lost), (vec![1], 1));
    assert_eq!(offsets(&c.deliver(Deliver { epoch: "e2".into(), ..d(2) }, now)), [2]);
    // Another epoch past its first offset: what came before it in that epoch is fetched first.
    let stale = c.deliver(d(11), now);
    assert_eq!(stale.lost, 1, "the old epoch again is a change too");
    let (id, query) = stale.fetch[0].clone();
    assert_eq!((query.since_epoch.as_str(), query.since_offset, query.limit), ("e1", 0, 10));
    let filled = c.answered(id, Some(history(&[9, 10])), now);
    assert_eq!((offsets(&filled), filled.lost), (vec![9, 10, 11], 8));
}

#[test]
fn too_much_waiting_gives_the_gap_up() {
    let (mut c, now) = (Cursors::default(), Instant::now());
    c.deliver(d(1), now);
    for offset in 3..3 + MAX_HELD as u64 {
        assert!(c.deliver(d(offset), now).deliver.is_empty());
    }
    let given_up = c.deliver(d(3 + MAX_HELD as u64), now);
    assert_eq!(given_up.deliver.len(), MAX_HELD + 1);
    assert_eq!(given_up.lost, 1);
}

#[test]
fn a_head_ahead_of_the_cursor_fetches_the_tail() {
    let (mut c, now) = (Cursors::default(), Instant::now());
    assert_eq!(c.head("room", "e1", 5, 1, now), Steps::default(), "no cursor: a new subscriber starts from now");
    c.deliver(d(1), now);
    assert_eq!(c.head("room", "e1", 1, 1, now), Steps::default(), "up to date");
    let steps = c.head("room", "e1", 3, 1, now);
    let (id, query) = steps.fetch[0].clone();
    assert_eq!((query.since_offset, query.limit), (1, 2));
    let filled = c.answered(id, Some(history(&[2, 3])), now);
    assert_eq!((offsets(&filled), filled.lost), (vec![2, 3], 0));
    assert_eq!(offsets(&c.deliver(d(4), now)), [4]);
    // Another epoch: all of it is new here, from its first offset.
    let other = c.head("room", "e2", 9, 1, now);
    let (_, query) = other.fetch[0].clone();
    assert_eq!((query.since_epoch.as_str(), query.since_offset, query.limit, other.lost), ("e2", 0, 9, 1));
}

#[test]
fn closing_orders_and_forgotten_channels() {
    let (mut c, now) = (Cursors::default(), Instant::now());
    let close = Deliver { offset: 0, event: None, ..d(0) };
    assert_eq!(offsets(&c.deliver(close, now)), [0]);
    c.deliver(d(5), now);
    c.forget("room");
    assert_eq!(offsets(&c.deliver(d(9), now)), [9], "a channel joined again starts where it is");
}

/// Many runs of a stream whose Delivers are dropped at random, answered from
/// a history that holds everything or has lost some: whatever happens, the
/// subscriber sees strictly increasing offsets, each once, and every offset
/// is either delivered or counted lost.
#[test]
fn random_drops_are_filled_or_counted_never_doubled_or_reordered() {
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    let mut random = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    for run in 0..200 {
        let (mut c, now) = (Cursors::default(), Instant::now());
        let history_lost: Vec<bool> = (0..=300).map(|_| run % 2 == 1 && random() % 10 == 0).collect();
        let mut delivered = Vec::new();
        let mut lost = 0;
        let mut take = |steps: Steps, delivered: &mut Vec<u64>, pending: &mut Vec<_>| {
            delivered.extend(offsets(&steps));
            lost += steps.lost;
            pending.extend(steps.fetch);
        };
        let answer = |query: &slip_proto::link_pb::HistoryQuery| {
            let range = query.since_offset + 1..=query.since_offset + u64::from(query.limit);
            history(&range.filter(|o| !history_lost[*o as usize]).collect::<Vec<_>>())
        };
        let mut pending = Vec::new();
        for offset in 1..=300u64 {
            if offset > 1 && random() % 5 == 0 {
                continue; // this Deliver never arrived
            }
            take(c.deliver(d(offset), now), &mut delivered, &mut pending);
            // Answers come back some time later.
            if random() % 3 == 0 {
                for (id, query) in std::mem::take(&mut pending) {
                    take(c.answered(id, Some(answer(&query)), now), &mut delivered, &mut pending);
                }
            }
        }
        while !pending.is_empty() {
            for (id, query) in std::mem::take(&mut pending) {
                take(c.answered(id, Some(answer(&query)), now), &mut delivered, &mut pending);
            }
        }
        assert!(delivered.windows(2).all(|w| w[0] < w[1]), "run {run}: {delivered:?}");
        let last = *delivered.last().unwrap();
        assert_eq!(delivered.len() as u64 + lost, last, "run {run}: each offset delivered or counted");
        if run % 2 == 0 {
            assert_eq!(lost, 0, "run {run}: a history that lost nothing fills every gap");
        }
    }
}

#[test]
fn an_owner_under_an_older_view_is_not_the_stream_any_more() {
    let (mut c, now) = (Cursors::default(), Instant::now());
    let at = |offset, view| Deliver { view, ..d(offset) };
    assert_eq!(offsets(&c.deliver(at(1, 5), now)), [1]);
    // A paused owner wakes and delivers under its old view: ignored.
    let stale = c.deliver(Deliver { ack: 4, ..at(2, 4) }, now);
    assert_eq!((offsets(&stale), stale.stale, stale.repeat_ack), (vec![], 1, 4));
    assert_eq!(offsets(&c.deliver(at(2, 5), now)), [2], "the owner now gives 2");
    // A gap is fetched; an answer from a node that is not the owner (or
    // under an older view) is no answer: nothing is lost, it is asked again.
    let steps = c.deliver(at(4, 6), now);
    let (id, _) = steps.fetch[0].clone();
    let not_owner = HistoryAnswer { not_owner: true, view: 6, ..history(&[]) };
    assert_eq!(c.answered(id, Some(not_owner), now).stale, 1);
    let old = HistoryAnswer { view: 5, ..history(&[]) };
    let ignored = c.answered(id, Some(old), now);
    assert_eq!((ignored.lost, ignored.stale), (0, 1));
    let later = c.expire(now + FETCH_TIMEOUT);
    let (again, _) = later.fetch[0].clone();
    let answer = HistoryAnswer { view: 6, ..history(&[3]) };
    assert_eq!(offsets(&c.answered(again, Some(answer), now)), [3, 4]);
    // A head from the old owner is ignored too.
    assert_eq!(c.head("room", "e1", 9, 5, now).stale, 1);
}

fn answer(offsets: &[u64], top: u64) -> HistoryAnswer {
    HistoryAnswer { top_offset: top, ..history(offsets) }
}

#[test]
fn a_gap_that_grows_while_it_is_fetched_is_fetched_whole() {
    // The owner changed: a head says the stream is at 5, then (its catch-up
    // done) at 9, while the first question is out; then live ones come.
    let (mut c, now) = (Cursors::default(), Instant::now());
    c.deliver(d(4), now);
    let (first, query) = c.head("room", "e1", 5, 1, now).fetch[0].clone();
    assert_eq!((query.since_offset, query.limit), (4, 1));
    assert_eq!(c.head("room", "e1", 9, 1, now), Steps::default(), "asked once the first answer is in");
    assert_eq!(offsets(&c.deliver(d(10), now)), Vec::<u64>::new(), "10 waits");
    let steps = c.answered(first, Some(answer(&[5], 10)), now);
    assert_eq!((offsets(&steps), steps.lost), (vec![5], 0), "6 to 9 were not asked for: not lost");
    let (second, query) = steps.fetch[0].clone();
    assert_eq!((query.since_offset, query.limit), (5, 4));
    let filled = c.answered(second, Some(answer(&[6, 7, 8, 9], 10)), now);
    assert_eq!((offsets(&filled), filled.lost), (vec![6, 7, 8, 9, 10], 0));
}

#[test]
fn an_answer_cut_short_is_asked_on_and_what_history_lacks_is_lost() {
    let (mut c, now) = (Cursors::default(), Instant::now());
    c.deliver(d(1), now);
    let (id, _) = c.deliver(d(8), now).fetch[0].clone();
    // Cut by its size: 2 and 3 of 2..=7.
    let steps = c.answered(id, Some(answer(&[2, 3], 8)), now);
    assert_eq!((offsets(&steps), steps.lost), (vec![2, 3], 0));
    let (id, query) = steps.fetch[0].clone();
    assert_eq!((query.since_offset, query.limit), (3, 4));
    // Whole, from 6 on: 4 and 5 are gone.
    let steps = c.answered(id, Some(answer(&[6, 7], 8)), now);
    assert_eq!((offsets(&steps), steps.lost), (vec![6, 7, 8], 2));
    assert_eq!(steps.gaps[0], Gap { channel: "room".into(), after: 3, count: 2, cause: GapCause::NotInHistory });
}

#[test]
fn a_head_of_another_epoch_fetches_the_new_one_from_its_start() {
    let (mut c, now) = (Cursors::default(), Instant::now());
    c.deliver(d(4), now);
    let steps = c.head("room", "e2", 3, 1, now);
    assert_eq!(steps.gaps[0].cause, GapCause::NewEpoch);
    let (id, query) = steps.fetch[0].clone();
    assert_eq!((query.since_epoch.as_str(), query.since_offset, query.limit), ("e2", 0, 3));
    let e2 = HistoryAnswer { epoch: "e2".into(), ..answer(&[1, 2, 3], 3) };
    assert_eq!(offsets(&c.answered(id, Some(e2), now)), [1, 2, 3]);
}

#[test]
fn a_cursor_started_at_a_sessions_place_fetches_what_came_before_the_owner_knew_of_this_edge() {
    let (mut c, now) = (Cursors::default(), Instant::now());
    c.start_at("room", "e1", 3);
    c.start_at("room", "e1", 1);
    assert_eq!(c.position("room"), Some(("e1".to_owned(), 3)), "one already followed is left as it is");
    let (id, query) = c.head("room", "e1", 4, 1, now).fetch[0].clone();
    assert_eq!((query.since_offset, query.limit), (3, 1));
    assert_eq!(offsets(&c.answered(id, Some(answer(&[4], 4)), now)), [4]);
}

#[test]
fn a_deliver_after_the_last_subscriber_left_starts_no_cursor() {
    let (mut c, now) = (Cursors::default(), Instant::now());
    assert_eq!(offsets(&c.deliver(d(7), now)), [7]);
    // The last subscriber leaves; 8 was on its way and reaches nobody.
    c.forget("room");
    assert_eq!(offsets(&c.deliver_unread(d(8), now)), [8], "it goes on, for its ack");
    assert_eq!(c.position("room"), None, "no cursor from it");
    // Interest comes back: the owner's next is 20, which is where it starts.
    let steps = c.deliver(d(20), now);
    assert_eq!((offsets(&steps), steps.fetch.len(), steps.lost), (vec![20], 0, 0), "not a gap from 8");
}
