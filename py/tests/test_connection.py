"""Parsing a callback and building the reply: pure, no gateway."""

import json

from slip_sockets import Connection, parse_events

ID = "edge-1.0123456789abcdef0123"


def test_the_reply_puts_accept_first_and_close_last():
    connection = Connection(ID, None, [{"type": "OPEN", "connectionId": ID}])
    assert connection.is_opening()
    connection.subscribe("room", presence={"name": "ann"}, join_leave=True)
    connection.close(4000, "bye")
    connection.set_metadata({"vip": True})
    connection.publish("room", "hi")
    connection.publish("room", b"\x01\x02")
    connection.send_text("you")
    connection.accept(protocol="chat")
    status, headers, body = connection.end_response()
    assert status == 200 and headers["Content-Type"] == "application/websocket-events"
    assert json.loads(body)["events"] == [
        {"type": "ACCEPT", "connectionId": ID, "protocol": "chat"},
        {"type": "SUBSCRIBE", "connectionId": ID, "channel": "room", "presence": {"name": "ann"}, "joinLeave": True},
        {"type": "PUBLISH_TEXT", "channelId": "room", "data": "hi"},
        {"type": "PUBLISH_BINARY", "channelId": "room", "data": "AQI="},
        {"type": "TEXT", "connectionId": ID, "data": "you"},
        {"type": "SET_METADATA", "connectionId": ID, "metadata": {"vip": True}},
        {"type": "CLOSE", "connectionId": ID, "code": 4000, "reason": "bye"},
    ]


def test_metadata_cleared_is_not_metadata_unchanged():
    connection = Connection(ID, {"a": 1}, [])
    assert connection.response_events() == []
    connection.set_metadata(None)
    assert connection.response_events() == [{"type": "SET_METADATA", "connectionId": ID, "metadata": None}]


def test_callbacks_parse_and_garbage_does_not():
    body = {"connectionId": ID, "metadata": {"a": 1}, "events": [
        {"type": "TEXT", "connectionId": ID, "data": "hi"},
        {"type": "CLOSE", "connectionId": ID, "code": 1000, "reason": "done", "eventId": "e1"},
    ]}
    assert parse_events(body) == (ID, {"a": 1}, body["events"])
    binary = {"connectionId": ID, "events": [{"type": "BINARY", "connectionId": ID, "data": "AQI="}]}
    assert parse_events(binary) is None, "BINARY only when asked for"
    assert parse_events(binary, binary_events=True)[2] == [{"type": "BINARY", "connectionId": ID, "data": b"\x01\x02"}]
    for garbage in [None, [], "x", {"connectionId": 1, "events": []}, {"connectionId": ID},
                    {"connectionId": ID, "events": [{"type": "NOPE", "connectionId": ID}]},
                    {"connectionId": ID, "events": [{"type": "TEXT", "connectionId": ID, "data": 5}]},
                    {"connectionId": ID, "events": [{"type": "CLOSE", "connectionId": ID, "code": "x"}]},
                    {"connectionId": ID, "events": [{"type": "BINARY", "connectionId": ID, "data": "%%"}]}]:
        assert parse_events(garbage, binary_events=True) is None, garbage
