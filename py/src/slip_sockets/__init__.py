"""SLIP Sockets for Python backends: verify a callback and answer it with
commands (``Publisher.parse_request``, ``Connection``), and publish through
the control API with idempotency keys and retries, read history and presence
(``Publisher``). The same API as the TypeScript library ``slip-sockets``."""

from .connection import CONTENT_TYPE, Connection, parse_events, subscribe_command
from .publisher import (
    PUBLISH_DEADLINE_SECONDS,
    REQUEST_TIMEOUT_SECONDS,
    ControlApiError,
    History,
    Member,
    Presence,
    Publication,
    Published,
    Publisher,
    new_idempotency_key,
)
from .tokens import ISSUER, MIN_SECRET_BYTES, TOKEN_LIFETIME_SECONDS, bearer, sign, verify

__all__ = [
    "CONTENT_TYPE", "Connection", "ControlApiError", "History", "ISSUER", "MIN_SECRET_BYTES", "Member",
    "PUBLISH_DEADLINE_SECONDS", "Presence", "Publication", "Published", "Publisher", "REQUEST_TIMEOUT_SECONDS",
    "TOKEN_LIFETIME_SECONDS", "bearer", "new_idempotency_key", "parse_events", "sign", "subscribe_command", "verify",
]
__version__ = "0.1.0"
