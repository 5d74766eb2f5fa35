"""The publisher against a recording transport: retries with one key, which statuses end them,
what a refusal names. (Against a real gateway: test_gateway.py.)"""

import json

import pytest

from slip_sockets import ControlApiError, Publisher

SECRET = "test-secret-of-at-least-32-bytes!"


class Recorder:
    def __init__(self, answers):
        self.answers = list(answers)
        self.seen = []

    def __call__(self, method, url, body, headers, timeout):
        self.seen.append((method, url, json.loads(body) if body else None, headers))
        answer = self.answers.pop(0) if self.answers else (200, {"publishes": []})
        if answer is None:
            raise OSError("connection refused")
        status, reply = answer
        return status, json.dumps(reply).encode()


def test_a_publish_retries_with_one_key_on_the_next_control_api():
    ok = {"message": "processed successfully", "publishes": [{"channel": "news", "epoch": "e1", "offset": 7}]}
    transport = Recorder([(503, {"message": "command failed", "index": 0}), None, (200, ok)])
    publisher = Publisher(["http://c0/", "http://c1/", "http://c2/"], SECRET, transport=transport)
    published = publisher.publish("news", "hi")
    assert (published.epoch, published.offset) == ("e1", 7)
    assert [url for _, url, _, _ in transport.seen] == ["http://c0/", "http://c1/", "http://c2/"]
    keys = {body["events"][0]["idempotencyKey"] for _, _, body, _ in transport.seen}
    assert len(keys) == 1 and all(keys)


def test_a_final_refusal_is_not_retried_and_a_deadline_ends_the_retries():
    transport = Recorder([(400, {"message": "invalid commands", "error": "command 0: channel name is empty"})])
    publisher = Publisher("http://c0/", SECRET, transport=transport)
    with pytest.raises(ControlApiError) as refused:
        publisher.publish("", "x", key="k1")
    assert refused.value.status == 400 and refused.value.command["type"] == "PUBLISH_TEXT"
    assert len(transport.seen) == 1
    transport = Recorder([(503, {})] * 1000)
    publisher = Publisher("http://c0/", SECRET, transport=transport)
    with pytest.raises(ControlApiError):
        publisher.publish("news", b"\x01", key="k2", deadline=0.3)
    assert len(transport.seen) > 1
    assert all(body["events"][0] == {"type": "PUBLISH_BINARY", "channelId": "news", "data": "AQ==",
                                     "idempotencyKey": "k2"} for _, _, body, _ in transport.seen)


def test_an_older_gateway_that_says_no_offset_gives_offset_0():
    publisher = Publisher("http://c0/", SECRET, transport=Recorder([(200, {"message": "processed successfully"})]))
    assert publisher.publish("news", "hi").offset == 0


def test_a_refusal_mid_batch_names_its_command():
    reply = {"message": "command failed", "index": 1, "type": "PUBLISH_TEXT", "error": "no owner"}
    publisher = Publisher("http://c0/", SECRET, transport=Recorder([(503, reply)]))
    batch = [{"type": "SUBSCRIBE", "connectionId": "e.1", "channel": "a"},
             {"type": "PUBLISH_TEXT", "channelId": "a", "data": "x"}]
    with pytest.raises(ControlApiError) as refused:
        publisher.send(batch)
    assert refused.value.command == batch[1]
    assert "(PUBLISH_TEXT at index 1)" in str(refused.value)
