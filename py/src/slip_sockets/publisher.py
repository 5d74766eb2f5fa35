"""The backend's side of SLIP Sockets: reads a callback (``parse_request``)
and talks to the control API over HTTP JSON (``send``, one-liners on top of
it, ``publish`` with idempotency keys and retries, ``history``,
``presence``). Standard library HTTP (``urllib``); PyJWT for the tokens."""

import base64
import binascii
import json
import random
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

from . import tokens
from .connection import CONTENT_TYPE, Connection, parse_events, subscribe_command

#: How long a publish is retried by default, in seconds.
PUBLISH_DEADLINE_SECONDS = 10.0
#: Longest wait for one answer of the control API, in seconds: a node that is
#: paused or cut off answers nothing, and the next one is tried.
REQUEST_TIMEOUT_SECONDS = 5.0
#: Largest answer read from the control API.
MAX_REPLY_BYTES = 16 * 1024 * 1024
_RETRY_FIRST = 0.05
_RETRY_MAX = 1.0
#: Statuses that mean the gateway could not take the request just now.
RETRYABLE_STATUSES = (502, 503, 504)


def new_idempotency_key() -> str:
    """A fresh idempotency key."""
    return str(uuid.uuid4())


@dataclass(frozen=True)
class Published:
    """Where a publish went in: the channel's stream ``epoch`` and the ``offset`` it got there.
    A publish retried with the same key reports the offset its first attempt got
    (``epoch`` "" and ``offset`` 0: the gateway is older and did not say)."""

    channel: str
    epoch: str
    offset: int


@dataclass(frozen=True)
class Publication:
    """One publication of a channel's stream: ``text`` or ``binary``, and its offset."""

    offset: int
    text: Optional[str] = None
    binary: Optional[bytes] = None


@dataclass(frozen=True)
class History:
    """A channel's stream as its owner holds it: its epoch, its last offset, the publications
    asked for, oldest first, and whether they are all there (``complete`` is false when
    ``since_epoch`` is not the stream's epoch or history no longer holds everything after
    ``since_offset``)."""

    channel: str
    epoch: str
    top_offset: int
    complete: bool
    publications: List[Publication] = field(default_factory=list)


@dataclass(frozen=True)
class Member:
    connection_id: str
    info: Dict[str, Any]


@dataclass(frozen=True)
class Presence:
    """A channel's presence: members with their info, and how many there are in all."""

    members: List[Member]
    count: int


class ControlApiError(Exception):
    """The control API refused a request, or could not be reached."""

    def __init__(self, message: str, status: Optional[int], body: str, command: Optional[Dict[str, Any]] = None):
        super().__init__(message)
        #: The HTTP status; ``None`` when the API could not be reached.
        self.status = status
        #: The API's reply, as it sent it.
        self.body = body
        #: The command the API named as the one it refused, when it named one.
        self.command = command

    @property
    def retryable(self) -> bool:
        """Worth sending the same keyed publish again: the gateway could not take it just now."""
        return self.status is None or self.status in RETRYABLE_STATUSES


# (method, url, body, headers, timeout) -> (status, body); raises OSError when unreachable.
Transport = Callable[[str, str, Optional[bytes], Dict[str, str], float], "tuple[int, bytes]"]


def urllib_transport(method: str, url: str, body: Optional[bytes], headers: Dict[str, str], timeout: float):
    """One HTTP request with the standard library: ``(status, body)``."""
    request = urllib.request.Request(url, data=body, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read(MAX_REPLY_BYTES)
    except urllib.error.HTTPError as refused:
        with refused:
            return refused.code, refused.read(MAX_REPLY_BYTES)
    except urllib.error.URLError as unreachable:
        raise OSError(str(unreachable.reason)) from unreachable


class Publisher:
    """Verifies callbacks and talks to the control API.

    ``control_api`` is the gateway's HTTP control API, e.g. ``http://127.0.0.1:7070/``, or the
    control APIs of several control nodes: a request one of them cannot answer (it is down,
    paused, or cut off from the others) is tried on the next."""

    def __init__(
        self,
        control_api: Union[str, Sequence[str]],
        jwt_secret: Union[str, bytes],
        binary_events: bool = False,
        on_invalid_request: Optional[Callable[[str], None]] = None,
        transport: Transport = urllib_transport,
        request_timeout: float = REQUEST_TIMEOUT_SECONDS,
    ):
        apis = [control_api] if isinstance(control_api, str) else list(control_api)
        if not apis or not all(apis):
            raise ValueError('"control_api" is required')
        self.control_apis = apis
        self._current = 0
        self._secret = tokens.secret_bytes(jwt_secret)
        self.binary_events = binary_events
        self.on_invalid_request = on_invalid_request or (lambda reason: None)
        self._transport = transport
        self.request_timeout = request_timeout

    @property
    def control_api(self) -> str:
        """The control API requests go to now."""
        return self.control_apis[self._current % len(self.control_apis)]

    # Callbacks

    def parse_request(self, authorization: Optional[str], body: Union[bytes, str]) -> Optional[Connection]:
        """The connection a callback is about, or ``None`` when the request is not a callback
        from the gateway: a token that fails (signature, issuer, audience, expiry) or a body
        that is not a callback. ``authorization`` is the request's ``Authorization`` header;
        the token is checked before the body is parsed."""
        ok, problem = tokens.verify(self._secret, tokens.bearer(authorization), tokens.CALLBACK_AUDIENCE)
        if not ok:
            self.on_invalid_request(f"bad token ({problem})")
            return None
        try:
            parsed_body = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            self.on_invalid_request("body is not JSON")
            return None
        parsed = parse_events(parsed_body, self.binary_events)
        if parsed is None:
            self.on_invalid_request("body is not a callback")
            return None
        return Connection(*parsed)

    # The control API

    def send(self, events: List[Dict[str, Any]]) -> List[Published]:
        """Runs commands through the control API, in order; raises a ``ControlApiError`` naming
        what failed. Gives where each publish among them went in, in order."""
        body = json.dumps({"events": events}).encode()
        headers = {"Authorization": f"Bearer {self._token()}", "Content-Type": CONTENT_TYPE}
        try:
            status, reply = self._transport("POST", self.control_api, body, headers, self.request_timeout)
        except OSError as unreachable:
            raise ControlApiError(f"control API unreachable at {self.control_api}: {unreachable}", None, "") from None
        text = reply.decode("utf-8", "replace")
        if 200 <= status < 300:
            return _publishes(text)
        raise _refused(status, text, events)

    def publish(self, channel: str, data: Union[str, bytes], key: Optional[str] = None,
                deadline: float = PUBLISH_DEADLINE_SECONDS) -> Published:
        """Publishes text, or bytes as binary, with an idempotency key (a fresh one unless
        ``key`` gives one), retrying while the gateway answers 502, 503 or 504 or cannot be
        reached, for up to ``deadline`` seconds, on the next control API each time: the message
        gets into the channel's stream once. Gives its epoch and offset there."""
        key = key or new_idempotency_key()
        if isinstance(data, str):
            command = {"type": "PUBLISH_TEXT", "channelId": channel, "data": data, "idempotencyKey": key}
        else:
            command = {"type": "PUBLISH_BINARY", "channelId": channel,
                       "data": base64.b64encode(bytes(data)).decode("ascii"), "idempotencyKey": key}
        return self._retried(command, channel, deadline)

    def publish_text(self, channel: str, data: str, key: Optional[str] = None,
                     deadline: float = PUBLISH_DEADLINE_SECONDS) -> Published:
        return self.publish(channel, data, key, deadline)

    def publish_binary(self, channel: str, data: bytes, key: Optional[str] = None,
                       deadline: float = PUBLISH_DEADLINE_SECONDS) -> Published:
        return self.publish(channel, bytes(data), key, deadline)

    def _retried(self, command: Dict[str, Any], channel: str, deadline: float) -> Published:
        ends = time.monotonic() + deadline
        wait = _RETRY_FIRST
        tried = 0
        while True:
            tried += 1
            try:
                published = self.send([command])
                return published[0] if published else Published(channel, "", 0)
            except ControlApiError as refused:
                if not refused.retryable or time.monotonic() + wait >= ends:
                    raise
            # The next control API; a pause (with jitter) once each has said no.
            self._current += 1
            if tried % len(self.control_apis) == 0:
                time.sleep(wait * random.uniform(0.5, 1.0))
                wait = min(wait * 2, _RETRY_MAX)

    def history(self, channel: str, since_epoch: str = "", since_offset: int = 0, limit: int = 0) -> History:
        """A channel's history from its owner: the publications after ``since_offset`` of
        ``since_epoch`` (everything held when not given), oldest first, at most ``limit``
        (0: as many as history holds)."""
        query = {"channel": channel, "sinceEpoch": since_epoch, "sinceOffset": str(since_offset),
                 "limit": str(limit)}
        body = _object(self._read("history", query, channel))
        publications = []
        for p in body.get("publications") or []:
            if not isinstance(p, dict) or not _is_int(p.get("offset")):
                continue
            if isinstance(p.get("text"), str):
                publications.append(Publication(p["offset"], text=p["text"]))
            elif isinstance(p.get("binary"), str):
                try:
                    publications.append(Publication(p["offset"], binary=base64.b64decode(p["binary"], validate=True)))
                except (binascii.Error, ValueError):
                    continue
        return History(
            channel=body.get("channel") if isinstance(body.get("channel"), str) else channel,
            epoch=body.get("epoch") if isinstance(body.get("epoch"), str) else "",
            top_offset=body["topOffset"] if _is_int(body.get("topOffset")) else 0,
            complete=body.get("complete") is True,
            publications=publications,
        )

    def presence(self, channel: str, limit: int = 0) -> Presence:
        """Who is in a channel's presence, from its owner: at most ``limit`` members
        (0: 1,000) with their info, and how many there are in all."""
        body = _object(self._read("presence", {"channel": channel, "limit": str(limit)}, channel))
        members = [
            Member(m["connectionId"], m["info"])
            for m in body.get("members") or []
            if isinstance(m, dict) and isinstance(m.get("connectionId"), str) and isinstance(m.get("info"), dict)
        ]
        count = body["count"] if _is_int(body.get("count")) else len(members)
        return Presence(members, count)

    def _read(self, path: str, query: Dict[str, str], channel: str) -> str:
        """A GET of the control API, tried on each control API in turn while one cannot answer."""
        headers = {"Authorization": f"Bearer {self._token()}"}
        last: Optional[ControlApiError] = None
        for _ in self.control_apis:
            url = urllib.parse.urljoin(self.control_api.rstrip("/") + "/", path) + "?" + urllib.parse.urlencode(query)
            try:
                status, reply = self._transport("GET", url, None, headers, self.request_timeout)
            except OSError as unreachable:
                last = ControlApiError(f"control API unreachable at {self.control_api}: {unreachable}", None, "")
                self._current += 1
                continue
            text = reply.decode("utf-8", "replace")
            if 200 <= status < 300:
                return text
            last = ControlApiError(f"{path} of {channel} refused: {status} {text}", status, text)
            if not last.retryable:
                raise last
            self._current += 1
        raise last or ControlApiError("no control API", None, "")

    def send_text(self, connection_id: str, data: str) -> None:
        self.send([{"type": "TEXT", "connectionId": connection_id, "data": data}])

    def send_binary(self, connection_id: str, data: bytes) -> None:
        self.send([{"type": "BINARY", "connectionId": connection_id,
                    "data": base64.b64encode(bytes(data)).decode("ascii")}])

    def subscribe(self, connection_id: str, channel: str, presence: Optional[Dict[str, Any]] = None,
                  join_leave: bool = False) -> None:
        self.send([subscribe_command(connection_id, channel, presence, join_leave)])

    def unsubscribe(self, connection_id: str, channel: str) -> None:
        self.send([{"type": "UNSUBSCRIBE", "connectionId": connection_id, "channel": channel}])

    def set_metadata(self, connection_id: str, metadata: Any) -> None:
        self.send([{"type": "SET_METADATA", "connectionId": connection_id, "metadata": metadata}])

    def close(self, connection_id: str, code: Optional[int] = None, reason: Optional[str] = None) -> None:
        command: Dict[str, Any] = {"type": "CLOSE", "connectionId": connection_id}
        if code is not None:
            command["code"] = code
        if reason is not None:
            command["reason"] = reason
        self.send([command])

    def close_channel(self, channel: str) -> None:
        self.send([{"type": "CLOSE_CHANNEL", "channelId": channel}])

    def poll_for_connection(self, connection_id: str, timeout_ms: int) -> None:
        """Waits up to ``timeout_ms`` (at most 30,000) for the connection to exist."""
        self.send([{"type": "POLL_FOR_CONNECTION", "connectionId": connection_id, "timeout": timeout_ms}])

    def _token(self) -> str:
        return tokens.sign(self._secret, tokens.CONTROL_AUDIENCE)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _object(text: str) -> Dict[str, Any]:
    try:
        body = json.loads(text)
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _publishes(text: str) -> List[Published]:
    """The ``publishes`` of a control API reply (none from an older gateway, or a reply that is not JSON)."""
    publishes = []
    for p in _object(text).get("publishes") or []:
        if isinstance(p, dict) and isinstance(p.get("channel"), str) and isinstance(p.get("epoch"), str) \
                and _is_int(p.get("offset")):
            publishes.append(Published(p["channel"], p["epoch"], p["offset"]))
    return publishes


def _refused(status: int, text: str, events: List[Dict[str, Any]]) -> ControlApiError:
    """The error for a refusal, naming the command at fault when the control API names one."""
    body = _object(text)
    detail = ": ".join(part for part in (body.get("message"), body.get("error")) if isinstance(part, str)) or text.strip()
    index = body.get("index") if _is_int(body.get("index")) else None
    if index is None and detail.startswith("invalid commands: command "):
        number = detail[len("invalid commands: command "):].split(":", 1)[0]
        index = int(number) if number.isdigit() else None
    command = events[index] if index is not None and 0 <= index < len(events) else None
    which = f" ({command['type']} at index {index})" if command else ""
    return ControlApiError(f"control API refused the request with {status}{which}: {detail}", status, text, command)
