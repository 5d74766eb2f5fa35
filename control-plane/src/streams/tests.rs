//! Streams' rules with a clock passed in: offsets that outlive idleness,
//! history by count, age and bytes, idempotency keys, and what History says.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use slip_proto::link_pb::{ChannelEvent, channel_event};
use tokio::time::Instant;

use super::*;

fn limits() -> StreamLimits {
    StreamLimits {
        history_size: 3,
        history_ttl: Duration::from_secs(60),
        max_bytes: 1 << 20,
        idempotency_ttl: Duration::from_secs(30),
        max_key_bytes: 1 << 20,
        meta_ttl: Duration::from_secs(600),
        max_streams: 1000,
        max_message_bytes: 128 * 1024,
        replicas: 1,
        resume_window: Duration::from_secs(120),
    }
}

/// Epochs named e1, e2, … in the order they are made.
fn streams(limits: StreamLimits, now: Instant) -> Streams {
    let made = AtomicU32::new(0);
    Streams::new(limits, move || format!("e{}", made.fetch_add(1, Ordering::Relaxed) + 1), now)
}

fn text(data: &str) -> ChannelEvent {
    ChannelEvent { body: Some(channel_event::Body::Text(data.into())) }
}

fn new(epoch: &str, offset: u64) -> Appended {
    Appended::New { epoch: Arc::from(epoch), offset }
}

fn offsets(history: &History) -> Vec<u64> {
    history.publications.iter().map(|p| p.offset).collect()
}

#[test]
fn offsets_count_up_per_channel_within_one_epoch() {
    let t0 = Instant::now();
    let mut s = streams(limits(), t0);
    assert_eq!(s.append("a", &text("1"), "", t0), new("e1", 1));
    assert_eq!(s.append("a", &text("2"), "", t0), new("e1", 2));
    assert_eq!(s.append("b", &text("1"), "", t0), new("e2", 1));
    assert_eq!(s.head("a"), Some((Arc::from("e1"), 2)));
    assert_eq!(s.head("c"), None);
}

#[test]
fn history_keeps_the_newest_by_count_and_says_what_it_no_longer_holds() {
    let t0 = Instant::now();
    let mut s = streams(limits(), t0);
    for i in 1..=5 {
        s.append("a", &text(&i.to_string()), "", t0);
    }
    let all = s.history("a", "", 0, 0, t0);
    assert_eq!(offsets(&all), [3, 4, 5]);
    assert_eq!(all.top_offset, 5);
    assert!(!all.complete, "1 and 2 are gone");
    let recent = s.history("a", "e1", 3, 0, t0);
    assert_eq!(offsets(&recent), [4, 5]);
    assert!(recent.complete);
    assert!(!s.history("a", "e1", 1, 0, t0).complete);
    let caught_up = s.history("a", "e1", 5, 0, t0);
    assert!(caught_up.publications.is_empty() && caught_up.complete);
    assert_eq!(offsets(&s.history("a", "e1", 2, 1, t0)), [3], "at most `limit`");
    let other = s.history("a", "e0", 4, 0, t0);
    assert_eq!(offsets(&other), [3, 4, 5], "another epoch: everything held");
    assert!(!other.complete);
}

#[test]
fn history_ages_out_but_the_offset_goes_on() {
    let t0 = Instant::now();
    let mut s = streams(limits(), t0);
    s.append("a", &text("old"), "", t0);
    let t1 = t0 + Duration::from_secs(30);
    s.append("a", &text("new"), "", t1);
    assert_eq!(s.next_deadline(), Some(t0 + Duration::from_secs(10)), "the sweep comes first");
    s.expire(t0 + Duration::from_secs(60));
    assert_eq!(offsets(&s.history("a", "", 0, 0, t0 + Duration::from_secs(60))), [2]);
    s.expire(t1 + Duration::from_secs(60));
    assert_eq!(s.bytes(), 0);
    assert_eq!(offsets(&s.history("a", "", 0, 0, t1 + Duration::from_secs(60))), Vec::<u64>::new());
    // Idle with no history, but within meta_ttl: the stream goes on where it was.
    assert_eq!(s.append("a", &text("again"), "", t1 + Duration::from_secs(500)), new("e1", 3));
}

#[test]
fn an_idle_stream_is_forgotten_after_meta_ttl_and_starts_a_new_epoch() {
    let t0 = Instant::now();
    let mut s = streams(limits(), t0);
    s.append("a", &text("1"), "", t0);
    let later = t0 + Duration::from_secs(700);
    s.expire(later);
    assert_eq!(s.head("a"), None);
    assert_eq!(s.append("a", &text("1"), "", later), new("e2", 1));
}

#[test]
fn history_bytes_are_bounded_per_node_oldest_first() {
    let t0 = Instant::now();
    let per_entry = 1000 + ENTRY_OVERHEAD;
    let mut s = streams(StreamLimits { history_size: 100, max_bytes: 5 * per_entry, ..limits() }, t0);
    let big = "x".repeat(1000);
    for _ in 0..4 {
        s.append("a", &text(&big), "", t0);
    }
    for _ in 0..4 {
        s.append("b", &text(&big), "", t0);
    }
    assert!(s.bytes() <= 5 * per_entry);
    assert_eq!(offsets(&s.history("a", "", 0, 0, t0)), [4], "the three oldest, all a's, went");
    assert_eq!(offsets(&s.history("b", "", 0, 0, t0)), [1, 2, 3, 4]);
    for _ in 0..10_000 {
        s.append("c", &text(&big), "", t0);
    }
    assert!(s.bytes() <= 5 * per_entry, "a flood stays within the bound");
    assert_eq!(s.head("c"), Some((Arc::from("e3"), 10_000)));
}

#[test]
fn a_key_seen_within_the_window_gets_the_first_offset_and_nothing_new() {
    let t0 = Instant::now();
    let mut s = streams(limits(), t0);
    assert_eq!(s.append("a", &text("hi"), "k1", t0), new("e1", 1));
    assert_eq!(s.append("a", &text("hi"), "k1", t0), Appended::Duplicate { epoch: Arc::from("e1"), offset: 1 });
    assert_eq!(s.append("b", &text("hi"), "k1", t0), new("e2", 1), "keys are per channel");
    assert_eq!(s.append("a", &text("x"), "", t0), new("e1", 2));
    assert_eq!(s.append("a", &text("x"), "", t0), new("e1", 3), "no key, no deduplication");
    let after = t0 + Duration::from_secs(30);
    assert_eq!(s.append("a", &text("hi"), "k1", after), new("e1", 4), "the window has passed");
}

#[test]
fn no_history_still_gives_offsets() {
    let t0 = Instant::now();
    let mut s = streams(StreamLimits { history_size: 0, ..limits() }, t0);
    s.append("a", &text("1"), "", t0);
    assert_eq!(s.append("a", &text("2"), "", t0), new("e1", 2));
    assert!(s.history("a", "", 0, 0, t0).publications.is_empty());
    assert_eq!(s.bytes(), 0);
}

#[test]
fn streams_are_bounded_in_number() {
    let t0 = Instant::now();
    let mut s = streams(StreamLimits { max_streams: 2, ..limits() }, t0);
    s.append("a", &text("1"), "", t0);
    s.append("b", &text("1"), "", t0 + Duration::from_secs(1));
    s.append("c", &text("1"), "", t0 + Duration::from_secs(2));
    assert_eq!(s.head("a"), None, "the idlest went");
    assert!(s.head("b").is_some() && s.head("c").is_some());
}

#[test]
fn a_replica_stores_what_its_owner_sends_under_the_owners_epoch() {
    let t0 = Instant::now();
    let mut s = streams(limits(), t0);
    assert_eq!(s.store("a", "owner-1", 1, &text("1"), "k1", "t", t0), Stored::New);
    assert_eq!(s.store("a", "owner-1", 2, &text("2"), "", "t", t0), Stored::New);
    assert_eq!(s.store("a", "owner-1", 2, &text("2"), "", "t", t0), Stored::Already, "sent again: here already");
    assert_eq!(s.head("a"), Some((Arc::from("owner-1"), 2)));
    // Taking over, it goes on in the same epoch; the keys came along.
    assert_eq!(s.append("a", &text("3"), "", t0), new("owner-1", 3));
    assert_eq!(s.append("a", &text("1"), "k1", t0), Appended::Duplicate { epoch: Arc::from("owner-1"), offset: 1 });
    // Another epoch from an owner replaces what was here.
    assert_eq!(s.store("a", "owner-2", 7, &text("7"), "", "t", t0), Stored::New);
    let history = s.history("a", "", 0, 0, t0);
    assert_eq!((history.epoch.as_ref(), offsets(&history)), ("owner-2", vec![7]));
    assert!(!history.complete, "1 to 6 of that epoch were never here");
}

/// Every page of `from`'s copy of `channel`, taken in by `to`.
fn copy_all(from: &Streams, to: &mut Streams, channel: &str, budget: usize, now: Instant) -> usize {
    let (mut after, mut pages) = (0, 0);
    loop {
        let page = from.export(channel, after, budget, now).unwrap();
        pages += 1;
        let last = page.entries.iter().map(|(p, _)| p.offset).chain(page.keys.iter().map(|k| k.1)).max();
        let more = page.more;
        to.import(channel, page, now);
        match last {
            Some(last) if more => after = last,
            _ => return pages,
        }
    }
}

#[test]
fn a_copy_travels_in_pages_and_merges_with_what_was_stored_meanwhile() {
    let t0 = Instant::now();
    let mut owner = streams(StreamLimits { history_size: 10, ..limits() }, t0);
    for i in 1..=8 {
        owner.append("a", &text(&format!("m{i}")), &format!("k{i}"), t0 + Duration::from_secs(i));
    }
    let now = t0 + Duration::from_secs(10);
    // The copy's page for a publication the new holder already got live.
    let mut holder = streams(StreamLimits { history_size: 10, ..limits() }, now);
    assert_eq!(holder.store("a", "e1", 9, &text("m9"), "k9", "t", now), Stored::New);
    let pages = copy_all(&owner, &mut holder, "a", 200, now);
    assert!(pages > 2, "{pages} pages of at most about 200 bytes");
    let history = holder.history("a", "e1", 0, 0, now);
    assert_eq!(offsets(&history), (1..=9).collect::<Vec<_>>());
    assert!(history.complete);
    assert_eq!(holder.head("a"), Some((Arc::from("e1"), 9)));
    // Keys came along, with their age: k1 (seen at t0+1) is past the 30 s window at t0+31.
    assert_eq!(holder.append("a", &text("again"), "k2", now), Appended::Duplicate { epoch: "e1".into(), offset: 2 });
    assert_eq!(holder.append("a", &text("late"), "k1", t0 + Duration::from_secs(31)), new("e1", 10));
    // So did the publications' ages: m1 leaves history 60 s after it was published, not after it was copied.
    let later = t0 + Duration::from_millis(61_500);
    assert_eq!(holder.history("a", "e1", 0, 0, later).publications[0].offset, 2);
}

#[test]
fn a_copy_of_another_epoch_replaces_ours_and_forgotten_copies_free_their_bytes() {
    let t0 = Instant::now();
    let mut owner = streams(limits(), t0);
    owner.append("a", &text("fresh"), "", t0);
    let mut stale = streams(limits(), t0);
    assert_eq!(stale.store("a", "old", 7, &text("stale"), "", "t", t0), Stored::New);
    copy_all(&owner, &mut stale, "a", 1 << 20, t0);
    assert_eq!(stale.head("a"), Some((Arc::from("e1"), 1)));
    assert_eq!(offsets(&stale.history("a", "e1", 0, 0, t0)), [1]);
    assert_eq!(stale.retain(|channel| channel != "a"), 1);
    assert_eq!((stale.bytes(), stale.head("a")), (0, None));
    assert_eq!(owner.export("nothing", 0, 100, t0), None);
}

#[test]
fn where_two_copies_of_one_epoch_part_the_newer_views_is_the_stream() {
    let t0 = Instant::now();
    let mut a = streams(StreamLimits { history_size: 10, ..limits() }, t0);
    a.set_term("3");
    for i in 1..=3 {
        a.append("x", &text(&format!("a{i}")), &format!("k{i}"), t0);
    }
    // b took a's copy, then gave offsets under a newer view.
    let mut b = streams(StreamLimits { history_size: 10, ..limits() }, t0);
    copy_all(&a, &mut b, "x", 1 << 20, t0);
    b.set_term("5");
    b.append("x", &text("b4"), "kb", t0);
    assert_eq!((b.term_at("x", 3), b.term_at("x", 4)), ("3".to_owned(), "5".to_owned()));
    // Meanwhile a, cut off, gave offset 4 too (never confirmed: its lease had ended).
    a.append("x", &text("a4"), "ka", t0);
    let a_page = a.export("x", 0, 1 << 20, t0).unwrap();
    // a takes b's copy: from 4 on, b's is the stream; a's 4 and its key are gone.
    assert_eq!(a.import("x", b.export("x", 0, 1 << 20, t0).unwrap(), t0), Imported::Taken { dropped_from: Some(4) });
    let history = a.history("x", "e1", 0, 0, t0);
    assert_eq!(offsets(&history), [1, 2, 3, 4]);
    assert_eq!(history.publications[3].event, text("b4"));
    assert_eq!(a.append("x", &text("again"), "kb", t0), Appended::Duplicate { epoch: "e1".into(), offset: 4 });
    assert_eq!(a.append("x", &text("a4 again"), "ka", t0), new("e1", 5), "a's key went with its offset");
    // b takes a's old copy: nothing of a's 4 is taken.
    assert_eq!(b.import("x", a_page, t0), Imported::Taken { dropped_from: None });
    assert_eq!(b.history("x", "e1", 0, 0, t0).publications[3].event, text("b4"));
    assert_eq!(b.head("x"), Some((Arc::from("e1"), 4)));
    // Terms that cannot be ordered are still told apart, and nothing is taken.
    let mut c = streams(StreamLimits { history_size: 10, ..limits() }, t0);
    c.set_term("old-a");
    c.append("y", &text("c1"), "", t0);
    let mut d = streams(StreamLimits { history_size: 10, ..limits() }, t0);
    d.set_term("old-b");
    d.append("y", &text("d1"), "", t0);
    assert_eq!(c.import("y", d.export("y", 0, 1 << 20, t0).unwrap(), t0), Imported::Diverged);
    c.restart("y", t0);
    assert_eq!(c.append("y", &text("after"), "", t0), new("e2", 1));
}

#[test]
fn a_replica_takes_a_newer_terms_offset_and_refuses_an_older_ones() {
    let t0 = Instant::now();
    let mut s = streams(limits(), t0);
    assert_eq!(s.store("a", "e", 1, &text("1"), "", "3", t0), Stored::New);
    assert_eq!(s.store("a", "e", 2, &text("2 of 3"), "k", "3", t0), Stored::New);
    assert_eq!(s.store("a", "e", 2, &text("2 of 2"), "", "2", t0), Stored::Conflict);
    assert_eq!(s.store("a", "e", 2, &text("2 of 4"), "", "4", t0), Stored::New);
    let history = s.history("a", "e", 0, 0, t0);
    assert_eq!(offsets(&history), [1, 2]);
    assert_eq!(history.publications[1].event, text("2 of 4"));
    assert_eq!(s.term_at("a", 2), "4");
}

#[test]
fn a_copy_past_a_hole_is_not_taken_so_an_earlier_one_arriving_late_truncates_nothing() {
    // Over a link that replaced another, 3 came before 2. Taking 3 would
    // make 2 look like another term's offset, and taking 2 then would drop 3.
    let t0 = Instant::now();
    let mut s = streams(limits(), t0);
    assert_eq!(s.store("a", "e", 1, &text("1"), "", "4", t0), Stored::New);
    assert_eq!(s.store("a", "e", 3, &text("3"), "", "5", t0), Stored::Gap { top: 1 });
    assert_eq!(s.store("a", "e", 2, &text("2"), "", "5", t0), Stored::New);
    assert_eq!(s.store("a", "e", 3, &text("3"), "", "5", t0), Stored::New, "sent again, in its turn");
    assert_eq!(offsets(&s.history("a", "", 0, 0, t0)), [1, 2, 3]);
    assert_eq!(s.term_at("a", 1), "4");
    assert_eq!(s.term_at("a", 2), "5");
}

#[test]
fn keys_are_bounded_in_bytes_per_node_the_oldest_anywhere_going_first() {
    let t0 = Instant::now();
    let key = |i: usize| format!("{i:0>100}");
    let per_key = keys::cost(&key(0));
    let mut s = streams(StreamLimits { max_key_bytes: 10 * per_key, ..limits() }, t0);
    for i in 0..30 {
        // Ten channels, three keys each, a millisecond apart.
        let now = t0 + Duration::from_millis(i as u64);
        s.append(&format!("c{}", i % 10), &text("m"), &key(i), now);
    }
    assert_eq!(s.key_bytes(), 10 * per_key, "the bound holds");
    let now = t0 + Duration::from_millis(30);
    // The newest ten are remembered; the oldest were forgotten first.
    assert!(matches!(s.append("c9", &text("again"), &key(29), now), Appended::Duplicate { .. }));
    assert!(matches!(s.append("c0", &text("again"), &key(20), now), Appended::Duplicate { .. }));
    assert!(
        matches!(s.append("c9", &text("again"), &key(19), now), Appended::New { .. }),
        "forgotten early: a new offset"
    );
    // Key 19 came back and pushed out the oldest, 20 (c0's). Forgetting a
    // stream gives its keys back: c1 had 21.
    s.retain(|c| c != "c1");
    assert_eq!(s.key_bytes(), 9 * per_key);
}

/// The age and byte bounds find the oldest publication (and key) through one
/// entry a stream, not one a publication: publications the count bound
/// dropped leave nothing behind (a queue of every publication kept ~56 bytes
/// of each for the whole age bound, and its capacity never came back).
#[test]
fn the_age_index_holds_one_entry_a_stream_however_many_publications_went_by() {
    let t0 = Instant::now();
    let mut s = streams(limits(), t0);
    for i in 0..10_000u64 {
        let at = t0 + Duration::from_millis(i);
        s.append("busy", &text("x"), &format!("key-{i}"), at);
        s.append(&format!("quiet-{}", i % 10), &text("y"), "", at);
    }
    assert_eq!(s.indexed(), (11, 1), "one entry a stream that holds publications, one a stream with keys");
    assert_eq!(s.held("busy"), 3);
    // The oldest still held of a stream is what its entry says: the age bound
    // drops each publication on time (60 s after it was published).
    let expire_at = t0 + Duration::from_millis(9_998) + Duration::from_secs(60);
    s.expire(expire_at - Duration::from_millis(1));
    assert_eq!(s.held("busy"), 2, "the publications of 9,997 and 9,998 ms are gone, 9,999 is not");
    s.expire(expire_at + Duration::from_millis(1));
    assert_eq!((s.held("busy"), s.indexed()), (0, (0, 0)), "nothing held, nothing indexed");
}

#[test]
fn forgotten_and_replaced_streams_leave_no_index_entry() {
    let t0 = Instant::now();
    let mut s = streams(limits(), t0);
    for c in ["a", "b", "c"] {
        s.append(c, &text("1"), "", t0);
    }
    assert_eq!(s.indexed(), (3, 0));
    // A copy of another epoch replaces "a"'s history; "b" is no longer held here.
    let page = CopyPage { epoch: "other".into(), top: 5, ..CopyPage::default() };
    assert!(matches!(s.import("a", page, t0), Imported::Taken { .. }));
    s.retain(|name| name != "b");
    assert_eq!(s.indexed(), (1, 0), "only c holds publications");
    // Past the age bound every stream is empty and the index with them.
    s.expire(t0 + Duration::from_secs(61));
    assert_eq!(s.indexed(), (0, 0));
}
