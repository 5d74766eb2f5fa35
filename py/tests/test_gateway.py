"""The library against a real ``slip dev``: a backend written on it answers callbacks, and the
publisher publishes with keys, reads history and presence, as a real WebSocket client sees."""

import urllib.request

import pytest
from websockets.sync.client import connect

from conftest import SECRET
from slip_sockets import ControlApiError, Publisher, sign

#: Longest wait for one frame at the client.
FRAME_SECONDS = 10


def test_callbacks_publishes_history_and_presence(gateway):
    publisher = Publisher(gateway.control, SECRET)
    with connect(gateway.ws + "/", open_timeout=FRAME_SECONDS) as client:
        assert client.recv(timeout=FRAME_SECONDS) == "welcome"

        first = publisher.publish("room", "one", key="key-one")
        assert client.recv(timeout=FRAME_SECONDS) == "one"
        assert first.channel == "room" and first.epoch and first.offset >= 1

        # The same key again (a retry after a lost answer): the first publish's place, not delivered twice.
        again = publisher.publish("room", "one", key="key-one")
        assert again == first
        second = publisher.publish("room", b"\x01\x02")
        assert client.recv(timeout=FRAME_SECONDS) == b"\x01\x02", "the repeated key was not delivered again"
        assert (second.epoch, second.offset) == (first.epoch, first.offset + 1)

        client.send("from the client")
        assert client.recv(timeout=FRAME_SECONDS) == "from the client"

        history = publisher.history("room")
        assert history.epoch == first.epoch and history.complete
        assert [(p.offset, p.text, p.binary) for p in history.publications[-3:]] == [
            (first.offset, "one", None),
            (second.offset, None, b"\x01\x02"),
            (second.offset + 1, "from the client", None),
        ]
        assert history.top_offset == second.offset + 1
        since = publisher.history("room", since_epoch=first.epoch, since_offset=second.offset, limit=10)
        assert [p.text for p in since.publications] == ["from the client"] and since.complete
        stale = publisher.history("room", since_epoch="not-the-epoch", since_offset=1)
        assert not stale.complete

        presence = publisher.presence("room")
        assert presence.count == 1 and [m.info for m in presence.members] == [{"name": "py"}]


def test_the_control_api_refuses_a_wrong_secret_and_a_bad_command(gateway):
    wrong = Publisher(gateway.control, "another-secret-of-at-least-32-bytes")
    with pytest.raises(ControlApiError) as refused:
        wrong.publish("room", "x")
    assert refused.value.status == 403
    with pytest.raises(ControlApiError) as refused:
        Publisher(gateway.control, SECRET).send([{"type": "PUBLISH_TEXT", "channelId": "", "data": "x"}])
    assert refused.value.status == 400


def test_the_backend_refuses_callbacks_not_from_the_gateway(backend):
    url = f"http://127.0.0.1:{backend.server_port}/ws"
    forged = sign(b"another-secret-of-at-least-32-bytes", "WebSocketEvent")
    for authorization in [f"Bearer {forged}", f"Bearer {sign(SECRET.encode(), 'ControlEvent')}", None]:
        request = urllib.request.Request(url, data=b"{}", method="POST")
        if authorization:
            request.add_header("Authorization", authorization)
        try:
            urllib.request.urlopen(request, timeout=FRAME_SECONDS)
        except urllib.error.HTTPError as e:
            assert e.code == 403
        else:
            raise AssertionError("a forged callback was answered")
    assert backend.refused == ["bad token (signature)", "bad token (audience)", "bad token (missing)"]
