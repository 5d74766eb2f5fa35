//! Every rule of docs/protocol.md a connection keeps, in milliseconds: bytes,
//! answers and the clock in, outputs checked.

use std::time::{Duration, Instant};

use bytes::Bytes;
use slip_proto::callback::Event;
use slip_proto::close::{self, CloseCode};
use slip_proto::command::{Command, encode_binary};
use slip_proto::woh::{self, WsEvent};

use super::*;
use crate::callback::CallbackError;
use crate::effect::Effect;
use crate::frame::{self, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, client_frame};
use crate::over_http::{Reply, Session};

const ID: &str = "n.0123456789abcdef0123";

fn settings() -> Settings {
    Settings {
        max_message_bytes: 1024,
        max_pending_events: 4,
        message_rate: 0.0,
        message_burst: 1.0,
        ping_interval: Duration::from_secs(25),
        dead_peer_timeout: Duration::from_secs(60),
        binary_events: false,
    }
}

fn slip(settings: &Settings, t0: Instant) -> Core {
    Core::new(ID.into(), Format::Slip, settings, &[], t0)
}

fn over_http(t0: Instant) -> Core {
    let session = Session::new(&[], "http://backend", "/ws", "10.0.0.1");
    Core::new(ID.into(), Format::OverHttp(session), &settings(), &[], t0)
}

/// The client sends these bytes and the socket read them in one go.
fn receive(core: &mut Core, bytes: &[u8], now: Instant) {
    core.buffer().extend_from_slice(bytes);
    core.read(Ok(bytes.len()), now);
}

fn text(data: &str) -> Vec<u8> {
    client_frame(true, OP_TEXT, data.as_bytes())
}

fn close_frame(code: u16, reason: &str) -> Vec<u8> {
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(reason.as_bytes());
    client_frame(true, OP_CLOSE, &payload)
}

fn event(data: &str) -> Event {
    Event::Text { connection_id: ID.into(), data: data.into() }
}

fn outputs(core: &mut Core) -> Vec<Output> {
    std::iter::from_fn(|| core.poll_output()).collect()
}

fn sent(events: &[&str]) -> Output {
    Output::Send(Outgoing::Slip(events.iter().map(|e| event(e)).collect()))
}

fn closing(code: CloseCode, reason: &str) -> Output {
    Output::Close { code, reason: reason.into() }
}

fn close_event(code: Option<u16>, reason: Option<&str>) -> Output {
    Output::Send(Outgoing::Slip(vec![Event::close(ID, code, reason.map(Into::into))]))
}

fn answer(commands: Vec<Command>) -> Result<Answer, CallbackError> {
    Ok(Answer::Slip(commands))
}

fn publish(data: &str) -> Command {
    Command::PublishText { channel_id: "room".into(), data: data.into(), idempotency_key: None }
}

fn woh_reply(events: &[WsEvent]) -> Result<Answer, CallbackError> {
    let headers = vec![("content-type".to_owned(), woh::CONTENT_TYPE.to_owned())];
    Ok(Answer::OverHttp(Reply { status: 200, headers, body: woh::encode(events).into() }))
}

/// The events of a WebSocket-over-HTTP request the core asked to send.
fn woh_events(output: Output) -> Vec<WsEvent> {
    let Output::Send(Outgoing::OverHttp(request)) = output else { panic!("not a request: {output:?}") };
    woh::decode(&request.body).unwrap()
}

#[test]
fn one_callback_in_flight_and_what_arrives_meanwhile_goes_in_the_next() {
    let t0 = Instant::now();
    let mut core = slip(&settings(), t0);
    receive(&mut core, &[text("a"), text("b"), text("c")].concat(), t0);
    assert_eq!(outputs(&mut core), [sent(&["a"])]);
    receive(&mut core, &text("d"), t0);
    assert_eq!(outputs(&mut core), []);
    core.answered(answer(vec![]), t0);
    assert_eq!(outputs(&mut core), [sent(&["b", "c", "d"])]);
    core.answered(answer(vec![]), t0);
    assert_eq!(outputs(&mut core), []);
}

#[test]
fn a_reply_is_carried_out_before_the_next_callback_goes() {
    let t0 = Instant::now();
    let mut core = slip(&settings(), t0);
    receive(&mut core, &[text("a"), text("b")].concat(), t0);
    assert_eq!(outputs(&mut core), [sent(&["a"])]);
    let welcome = Command::Text { connection_id: ID.into(), data: "welcome".into() };
    core.answered(answer(vec![publish("joined"), welcome.clone()]), t0);
    assert_eq!(
        outputs(&mut core),
        [Output::Apply(vec![Effect::Command(publish("joined")), Effect::Command(welcome)]), sent(&["b"])]
    );
}

#[test]
fn a_full_batch_stops_reading_until_the_answer() {
    let t0 = Instant::now();
    let settings = Settings { max_pending_events: 2, ..settings() };
    let mut core = slip(&settings, t0);
    receive(&mut core, &[text("1"), text("2"), text("3"), text("4"), text("5")].concat(), t0);
    assert_eq!(outputs(&mut core), [sent(&["1"])]);
    assert!(!core.wants_read(), "two wait behind the one in flight: the socket is left alone");
    core.answered(answer(vec![]), t0);
    // 2 and 3 go; 4 and 5, still in the buffer, are decoded into the next batch.
    assert_eq!(outputs(&mut core), [sent(&["2", "3"])]);
    assert!(!core.wants_read());
    core.answered(answer(vec![]), t0);
    assert_eq!(outputs(&mut core), [sent(&["4", "5"])]);
    core.answered(answer(vec![]), t0);
    assert!(core.wants_read());
}

#[test]
fn bytes_behind_the_handshake_are_read_at_once() {
    let t0 = Instant::now();
    let mut core = Core::new(ID.into(), Format::Slip, &settings(), &text("early"), t0);
    assert_eq!(outputs(&mut core), [sent(&["early"])]);
}

#[test]
fn a_message_split_across_reads_waits_for_its_end() {
    let t0 = Instant::now();
    let mut core = slip(&settings(), t0);
    let frame = text("split in two");
    receive(&mut core, &frame[..5], t0);
    assert_eq!(outputs(&mut core), []);
    receive(&mut core, &frame[5..], t0);
    assert_eq!(outputs(&mut core), [sent(&["split in two"])]);
}

#[test]
fn an_idle_connection_holds_no_read_buffer() {
    let t0 = Instant::now();
    let mut core = slip(&settings(), t0);
    receive(&mut core, &text("a"), t0);
    assert_eq!(core.buf.capacity(), 0);
    core.buffer();
    core.read(Err(std::io::ErrorKind::WouldBlock.into()), t0);
    assert_eq!(core.buf.capacity(), 0, "a spurious wakeup gives the buffer back");
}

#[test]
fn the_close_event_goes_last_behind_what_is_in_flight() {
    let t0 = Instant::now();
    let mut core = slip(&settings(), t0);
    receive(&mut core, &[text("a"), text("b"), close_frame(4001, "bye"), text("after")].concat(), t0);
    assert_eq!(
        outputs(&mut core),
        [sent(&["a"]), closing(CloseCode::new(4001).unwrap(), "")],
        "the client's code is echoed; nothing after its close frame is read"
    );
    assert_eq!(core.ending(), Some(&Ending { code: 4001, reason: "bye".into() }));
    assert!(!core.wants_read());
    core.finish(t0);
    assert_eq!(outputs(&mut core), []);
    core.answered(answer(vec![]), t0);
    assert_eq!(
        outputs(&mut core),
        [Output::Send(Outgoing::Slip(vec![event("b"), Event::close(ID, Some(4001), Some("bye".into()))]))]
    );
}

#[test]
fn a_close_frame_without_a_code_is_answered_with_1000_and_reported_without_one() {
    let t0 = Instant::now();
    let mut core = slip(&settings(), t0);
    receive(&mut core, &client_frame(true, OP_CLOSE, &[]), t0);
    assert_eq!(outputs(&mut core), [closing(CloseCode::NORMAL, "")]);
    core.finish(t0);
    assert_eq!(outputs(&mut core), [close_event(None, None)]);
}

#[test]
fn a_vanished_client_is_reported_as_1006() {
    let t0 = Instant::now();
    let mut core = slip(&settings(), t0);
    core.read(Ok(0), t0);
    assert_eq!(outputs(&mut core), [], "no close frame to a socket that is gone");
    core.finish(t0);
    assert_eq!(outputs(&mut core), [close_event(Some(close::ABNORMAL), None)]);
}

#[test]
fn a_close_from_elsewhere_ends_the_connection_with_its_code() {
    let t0 = Instant::now();
    let mut core = slip(&settings(), t0);
    core.closed_elsewhere(1013, "slow consumer".into());
    assert!(!core.wants_read());
    assert_eq!(core.poll_timeout(), None);
    core.finish(t0);
    assert_eq!(outputs(&mut core), [close_event(Some(1013), Some("slow consumer"))]);
}

#[test]
fn after_a_backend_failure_only_the_close_event_goes() {
    let t0 = Instant::now();
    let mut core = slip(&settings(), t0);
    receive(&mut core, &[text("a"), text("b")].concat(), t0);
    assert_eq!(outputs(&mut core), [sent(&["a"])]);
    core.answered(Err(CallbackError::Timeout), t0);
    assert_eq!(outputs(&mut core), [closing(CloseCode::INTERNAL_ERROR, "backend unavailable")]);
    core.finish(t0);
    assert_eq!(outputs(&mut core), [close_event(Some(1011), Some("backend unavailable"))]);
}

#[test]
fn a_reply_not_understood_is_dropped_and_the_connection_stays() {
    let t0 = Instant::now();
    let mut core = slip(&settings(), t0);
    receive(&mut core, &text("a"), t0);
    outputs(&mut core);
    core.answered(Err(CallbackError::Status(400)), t0);
    assert_eq!(outputs(&mut core), []);
    assert_eq!(core.ending(), None);
    receive(&mut core, &text("b"), t0);
    assert_eq!(outputs(&mut core), [sent(&["b"])]);
}

#[test]
fn bad_frames_close_with_their_codes() {
    let t0 = Instant::now();
    let cases: [(Vec<u8>, CloseCode); 4] = [
        (client_frame(true, OP_TEXT, &[0xff, 0xfe]), CloseCode::INVALID_DATA),
        (client_frame(true, OP_TEXT, &[b'x'; 2000]), CloseCode::TOO_BIG),
        (client_frame(true, 0xB, b""), CloseCode::PROTOCOL_ERROR),
        (vec![0x81, 0x01, b'x'], CloseCode::PROTOCOL_ERROR),
    ];
    for (bytes, code) in cases {
        let mut core = slip(&settings(), t0);
        receive(&mut core, &bytes, t0);
        let out = outputs(&mut core);
        assert!(matches!(&out[..], [Output::Close { code: c, .. }] if *c == code), "{code:?}: {out:?}");
        assert_eq!(core.ending().map(|e| e.code), Some(code.get()));
        core.finish(t0);
        let Some(Output::Send(Outgoing::Slip(events))) = core.poll_output() else { panic!("no CLOSE event") };
        assert!(matches!(&events[..], [Event::Close { code: Some(c), .. }] if *c == code.get()));
    }
}

#[test]
fn a_client_over_its_rate_is_closed_with_1008() {
    let t0 = Instant::now();
    let settings = Settings { message_rate: 1.0, message_burst: 2.0, ..settings() };
    let mut core = slip(&settings, t0);
    receive(&mut core, &[text("1"), text("2"), text("3")].concat(), t0);
    assert_eq!(outputs(&mut core), [sent(&["1"]), closing(CloseCode::POLICY_VIOLATION, "message rate limit exceeded")]);
    let mut core = slip(&settings, t0);
    receive(&mut core, &[text("1"), text("2")].concat(), t0);
    receive(&mut core, &text("3"), t0 + Duration::from_secs(1));
    assert_eq!(core.ending(), None, "the bucket refills at the rate");
}

#[test]
fn binary_messages_only_where_the_target_takes_them() {
    let t0 = Instant::now();
    let binary = client_frame(true, OP_BINARY, &[0, 1, 255]);
    let mut core = slip(&settings(), t0);
    receive(&mut core, &binary, t0);
    assert_eq!(outputs(&mut core), [closing(CloseCode::UNSUPPORTED_DATA, "binary messages are not accepted")]);

    let mut core = slip(&Settings { binary_events: true, ..settings() }, t0);
    receive(&mut core, &binary, t0);
    let data = encode_binary(&[0, 1, 255]);
    assert_eq!(
        outputs(&mut core),
        [Output::Send(Outgoing::Slip(vec![Event::Binary { connection_id: ID.into(), data }]))]
    );

    let mut core = over_http(t0);
    receive(&mut core, &binary, t0);
    let out = core.poll_output().unwrap();
    assert_eq!(woh_events(out), [WsEvent::Binary(vec![0, 1, 255])], "bytes as they came");
}

#[test]
fn pings_are_answered_and_only_websocket_over_http_backends_hear_of_them() {
    let t0 = Instant::now();
    let ping = client_frame(true, OP_PING, b"hb");
    let pong = client_frame(true, OP_PONG, b"");
    let mut core = slip(&settings(), t0);
    receive(&mut core, &[ping.clone(), pong.clone()].concat(), t0);
    assert_eq!(outputs(&mut core), [Output::Frame(frame::pong(b"hb").unwrap())]);

    let mut core = over_http(t0);
    receive(&mut core, &[ping, pong].concat(), t0);
    let out = outputs(&mut core);
    assert_eq!(out[0], Output::Frame(frame::pong(b"hb").unwrap()));
    assert_eq!(woh_events(out.into_iter().nth(1).unwrap()), [WsEvent::Ping(b"hb".to_vec())]);
}

#[test]
fn a_silent_client_is_taken_for_dead_and_any_bytes_keep_it_alive() {
    let t0 = Instant::now();
    let settings = Settings { ping_interval: Duration::ZERO, ..settings() };
    let mut core = slip(&settings, t0);
    assert_eq!(core.poll_timeout(), Some(t0 + Duration::from_secs(60)));
    let t1 = t0 + Duration::from_secs(59);
    receive(&mut core, &client_frame(true, OP_PONG, b""), t1);
    assert_eq!(core.poll_timeout(), Some(t1 + Duration::from_secs(60)));
    core.handle_timeout(t0 + Duration::from_secs(60));
    assert_eq!(core.ending(), None);
    core.handle_timeout(t1 + Duration::from_secs(60));
    assert_eq!(core.ending(), Some(&Ending { code: close::ABNORMAL, reason: "no data from client".into() }));
}

#[test]
fn the_server_pings_on_its_interval() {
    let t0 = Instant::now();
    let mut core = slip(&settings(), t0);
    let first = t0 + Duration::from_secs(25);
    assert_eq!(core.poll_timeout(), Some(first));
    core.handle_timeout(first);
    assert_eq!(outputs(&mut core), [Output::Frame(frame::empty_ping())]);
    assert_eq!(core.poll_timeout(), Some(first + Duration::from_secs(25)));
}

#[test]
fn a_websocket_over_http_backend_hears_from_us_on_its_keep_alive_interval() {
    let t0 = Instant::now();
    let mut core = over_http(t0);
    let Format::OverHttp(session) = &mut core.format else { unreachable!() };
    session.keep_alive_interval = Some(Duration::from_secs(20));
    let due = t0 + Duration::from_secs(20);
    assert_eq!(core.poll_timeout(), Some(due));
    core.handle_timeout(due);
    assert_eq!(woh_events(core.poll_output().unwrap()), [], "a request with no events");
    assert_eq!(
        core.poll_timeout(),
        Some(t0 + Duration::from_secs(25)),
        "none while one is in flight: the ping is next"
    );
    core.answered(woh_reply(&[]), due);
    assert_eq!(core.poll_timeout(), Some(t0 + Duration::from_secs(25)));
    core.handle_timeout(t0 + Duration::from_secs(25));
    assert_eq!(core.poll_timeout(), Some(due + Duration::from_secs(20)));
}

#[test]
fn a_detached_connection_tells_its_backend_nothing_more() {
    let t0 = Instant::now();
    let mut core = over_http(t0);
    let Format::OverHttp(session) = &mut core.format else { unreachable!() };
    // Grip mode on, as an opening reply with the grip extension turns it.
    let opening = woh_reply(&[WsEvent::Open]).unwrap();
    let Answer::OverHttp(mut opening) = opening else { unreachable!() };
    opening.headers.push(("sec-websocket-extensions".into(), "grip; message-prefix=\"\"".into()));
    session.open(&opening, ID).unwrap();
    receive(&mut core, &text("a"), t0);
    assert_eq!(woh_events(core.poll_output().unwrap()), [WsEvent::Text(b"a".to_vec())]);
    receive(&mut core, &text("waits"), t0);
    core.answered(woh_reply(&[WsEvent::Text(br#"c:{"type":"detach"}"#.to_vec())]), t0);
    assert_eq!(outputs(&mut core), [Output::Apply(vec![Effect::Detach])], "what waited is dropped");
    receive(&mut core, &[text("b"), client_frame(true, OP_PING, b"")].concat(), t0);
    assert_eq!(outputs(&mut core), [Output::Frame(frame::pong(b"").unwrap())]);
}

#[test]
fn a_websocket_over_http_failure_ends_the_connection() {
    let t0 = Instant::now();
    let mut core = over_http(t0);
    receive(&mut core, &text("a"), t0);
    outputs(&mut core);
    let bad = Reply { status: 500, headers: vec![], body: Bytes::new() };
    core.answered(Ok(Answer::OverHttp(bad)), t0);
    assert_eq!(outputs(&mut core), [closing(CloseCode::INTERNAL_ERROR, "backend unavailable")]);
    core.finish(t0);
    let out = core.poll_output().unwrap();
    assert_eq!(woh_events(out), [WsEvent::Close { code: Some(1011), reason: "backend unavailable".into() }]);
}
