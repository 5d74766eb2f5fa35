"""One callback: the events it carried, and the reply being built. Commands
queue in the order they are called; ``end_response()`` puts ACCEPT first
(the gateway accepts an opening connection only when its first command for
it is ACCEPT), then the queue, then the metadata change and the close asked
for. Pure: no I/O."""

import base64
import binascii
import json
from typing import Any, Dict, List, Optional, Tuple

#: The content type of callbacks and of control requests.
CONTENT_TYPE = "application/websocket-events"

#: ``new_metadata`` when the reply leaves the metadata as it is.
UNCHANGED: Any = object()


def subscribe_command(
    connection_id: str,
    channel: str,
    presence: Optional[Dict[str, Any]] = None,
    join_leave: bool = False,
) -> Dict[str, Any]:
    """A SUBSCRIBE with only the options given (an old gateway sees the command it knows):
    ``presence`` makes the connection a member of the channel's presence with that info
    (a JSON object, at most 1 KiB); ``join_leave`` sends a ``slip.v1`` client join and leave frames."""
    command: Dict[str, Any] = {"type": "SUBSCRIBE", "connectionId": connection_id, "channel": channel}
    if presence is not None:
        command["presence"] = presence
    if join_leave:
        command["joinLeave"] = True
    return command


def parse_events(body: Any, binary_events: bool = False) -> Optional[Tuple[str, Any, List[Dict[str, Any]]]]:
    """``(connection_id, metadata, events)`` of a callback body, or ``None`` when it is not one.
    Events are dicts as the gateway sends them; a BINARY event's ``data`` is decoded to bytes,
    and BINARY is taken only with ``binary_events``."""
    if not isinstance(body, dict) or not isinstance(body.get("connectionId"), str):
        return None
    raw_events = body.get("events")
    if not isinstance(raw_events, list):
        return None
    events = []
    for raw in raw_events:
        event = _parse_event(raw, binary_events)
        if event is None:
            return None
        events.append(event)
    return body["connectionId"], body.get("metadata"), events


def _parse_event(raw: Any, binary_events: bool) -> Optional[Dict[str, Any]]:
    if not isinstance(raw, dict) or not isinstance(raw.get("connectionId"), str):
        return None
    kind, connection_id = raw.get("type"), raw["connectionId"]
    if kind == "OPEN":
        return {"type": "OPEN", "connectionId": connection_id}
    if kind == "TEXT":
        data = raw.get("data")
        return {"type": "TEXT", "connectionId": connection_id, "data": data} if isinstance(data, str) else None
    if kind == "CLOSE":
        event: Dict[str, Any] = {"type": "CLOSE", "connectionId": connection_id}
        code, reason = raw.get("code"), raw.get("reason")
        if code is not None:
            if not isinstance(code, int) or isinstance(code, bool):
                return None
            event["code"] = code
        if reason is not None:
            if not isinstance(reason, str):
                return None
            event["reason"] = reason
        if isinstance(raw.get("eventId"), str):
            event["eventId"] = raw["eventId"]
        return event
    if kind == "BINARY" and binary_events and isinstance(raw.get("data"), str):
        try:
            data = base64.b64decode(raw["data"], validate=True)
        except (binascii.Error, ValueError):
            return None
        return {"type": "BINARY", "connectionId": connection_id, "data": data}
    return None


class Connection:
    """The connection a callback is about, and the commands of the reply to it."""

    def __init__(self, connection_id: str, metadata: Any, events: List[Dict[str, Any]]):
        self.connection_id = connection_id
        #: The connection's metadata as the gateway sent it (``None`` if none).
        self.metadata = metadata
        self.in_events = events
        #: Commands queued for the reply, in order.
        self.out_events: List[Dict[str, Any]] = []
        self.accepted = False
        #: Set by ``accept(protocol=...)``: the subprotocol to answer the client with.
        self.protocol: Optional[str] = None
        self.closed = False
        self.close_code: Optional[int] = None
        self.close_reason: Optional[str] = None
        #: ``UNCHANGED``, ``None`` (cleared) or the new metadata.
        self.new_metadata: Any = UNCHANGED

    def is_opening(self) -> bool:
        """Whether this callback opens the connection: its reply must ``accept()`` it, or it is refused."""
        return bool(self.in_events) and self.in_events[0]["type"] == "OPEN"

    def accept(self, protocol: Optional[str] = None) -> None:
        """Accepts the opening connection, optionally answering with a subprotocol."""
        self.accepted = True
        self.protocol = protocol

    def close(self, code: Optional[int] = None, reason: Optional[str] = None) -> None:
        """Closes the connection once the reply's other commands ran (code 1000 by default)."""
        self.closed, self.close_code, self.close_reason = True, code, reason

    def subscribe(self, channel: str, presence: Optional[Dict[str, Any]] = None, join_leave: bool = False) -> None:
        self.queue_event(subscribe_command(self.connection_id, channel, presence, join_leave))

    def unsubscribe(self, channel: str) -> None:
        self.queue_event({"type": "UNSUBSCRIBE", "connectionId": self.connection_id, "channel": channel})

    def send_text(self, data: str) -> None:
        self.queue_event({"type": "TEXT", "connectionId": self.connection_id, "data": data})

    def send_binary(self, data: bytes) -> None:
        self.queue_event({"type": "BINARY", "connectionId": self.connection_id, "data": _b64(data)})

    def publish_text(self, channel: str, data: str) -> None:
        self.queue_event({"type": "PUBLISH_TEXT", "channelId": channel, "data": data})

    def publish_binary(self, channel: str, data: bytes) -> None:
        self.queue_event({"type": "PUBLISH_BINARY", "channelId": channel, "data": _b64(data)})

    def publish(self, channel: str, data: Any) -> None:
        """Text publishes as text, bytes as binary."""
        if isinstance(data, str):
            self.publish_text(channel, data)
        else:
            self.publish_binary(channel, bytes(data))

    def close_channel(self, channel: str) -> None:
        self.queue_event({"type": "CLOSE_CHANNEL", "channelId": channel})

    def set_metadata(self, metadata: Any) -> None:
        """Replaces the connection's metadata (``None`` clears it); the last call wins."""
        self.new_metadata = metadata

    def queue_event(self, event: Dict[str, Any]) -> None:
        """Queues any command, for this connection or another."""
        self.out_events.append(event)

    def response_events(self) -> List[Dict[str, Any]]:
        """The commands the reply carries, in the order the gateway runs them."""
        events: List[Dict[str, Any]] = []
        if self.accepted:
            accept: Dict[str, Any] = {"type": "ACCEPT", "connectionId": self.connection_id}
            if self.protocol is not None:
                accept["protocol"] = self.protocol
            events.append(accept)
        events.extend(self.out_events)
        if self.new_metadata is not UNCHANGED:
            events.append({"type": "SET_METADATA", "connectionId": self.connection_id, "metadata": self.new_metadata})
        if self.closed:
            close: Dict[str, Any] = {"type": "CLOSE", "connectionId": self.connection_id}
            if self.close_code is not None:
                close["code"] = self.close_code
            if self.close_reason is not None:
                close["reason"] = self.close_reason
            events.append(close)
        return events

    def end_response(self) -> Tuple[int, Dict[str, str], bytes]:
        """The reply to the callback: ``(200, headers, b'{"events": [...]}')``, for any web framework."""
        body = json.dumps({"events": self.response_events()}).encode()
        return 200, {"Content-Type": CONTENT_TYPE, "Content-Length": str(len(body))}, body


def _b64(data: bytes) -> str:
    return base64.b64encode(bytes(data)).decode("ascii")
