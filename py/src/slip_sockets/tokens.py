"""The tokens of the SLIP v4 contract: HS256 over the shared secret,
``iss: "slip-sockets"``, ``aud: "WebSocketEvent"`` on callbacks and
``"ControlEvent"`` on control requests, ``exp = iat + 60``, verified with no
leeway on ``exp``. Signed and checked with PyJWT; the rules beyond its own
(the lifetime bound, ``iat`` from the future) are checked here, the same
as the gateway and the TypeScript library check them."""

import time
from typing import Optional, Tuple, Union

import jwt

ISSUER = "slip-sockets"
CALLBACK_AUDIENCE = "WebSocketEvent"
CONTROL_AUDIENCE = "ControlEvent"
#: Lifetime of the tokens this library signs, in seconds.
TOKEN_LIFETIME_SECONDS = 60
#: Longest token looked at; anything longer is refused unread.
MAX_TOKEN_BYTES = 8 * 1024
#: Shortest secret taken, in bytes (as the gateway): HS256's own key size.
MIN_SECRET_BYTES = 32
#: Default for the longest a token may live (``exp - iat``), as the gateway's ``SLIP_MAX_TOKEN_SECS``.
MAX_TOKEN_SECONDS = 3600
#: How far ahead of this clock a token's ``iat`` may be, in seconds (clock skew).
IAT_LEEWAY_SECONDS = 60


def secret_bytes(secret: Union[str, bytes]) -> bytes:
    """The shared secret as bytes; a ``ValueError`` if it is too short to be one."""
    key = secret.encode() if isinstance(secret, str) else bytes(secret)
    if len(key) < MIN_SECRET_BYTES:
        raise ValueError(f"the JWT secret must be at least {MIN_SECRET_BYTES} bytes; got {len(key)}")
    return key


def sign(secret: bytes, audience: str, now: Optional[float] = None, lifetime: int = TOKEN_LIFETIME_SECONDS) -> str:
    """A token for ``audience``, good for ``lifetime`` seconds from ``now``."""
    iat = int(time.time() if now is None else now)
    claims = {"iss": ISSUER, "aud": audience, "iat": iat, "exp": iat + lifetime}
    return jwt.encode(claims, secret, algorithm="HS256")


def bearer(authorization: Optional[str]) -> Optional[str]:
    """The token of an ``Authorization: Bearer <token>`` header."""
    if not authorization or not authorization.startswith("Bearer "):
        return None
    return authorization[len("Bearer "):] or None


def verify(
    secret: bytes,
    token: Optional[str],
    audience: str,
    now: Optional[float] = None,
    max_token_seconds: int = MAX_TOKEN_SECONDS,
) -> Tuple[bool, str]:
    """``(True, "")`` for a good token, else ``(False, problem)`` naming what was wrong:
    missing, malformed, algorithm, signature, issuer, audience, expired, future or lifetime."""
    if not token:
        return False, "missing"
    if len(token) > MAX_TOKEN_BYTES or token.count(".") != 2:
        return False, "malformed"
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        return False, "malformed"
    # Only HS256: a token naming "none" or another algorithm is never tried.
    if header.get("alg") != "HS256":
        return False, "algorithm"
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=["HS256"],
            options={"verify_exp": False, "verify_iat": False, "verify_nbf": False, "verify_aud": False,
                     "verify_iss": False},
        )
    except jwt.InvalidSignatureError:
        return False, "signature"
    except jwt.PyJWTError:
        return False, "malformed"
    if not isinstance(claims, dict):
        return False, "malformed"
    if claims.get("iss") != ISSUER:
        return False, "issuer"
    aud = claims.get("aud")
    if audience not in (aud if isinstance(aud, list) else [aud]):
        return False, "audience"
    seconds = time.time() if now is None else now
    exp = claims.get("exp")
    if not isinstance(exp, (int, float)) or isinstance(exp, bool) or seconds >= exp:
        return False, "expired"
    nbf = claims.get("nbf")
    if isinstance(nbf, (int, float)) and seconds < nbf:
        return False, "expired"
    iat = claims.get("iat")
    iat = iat if isinstance(iat, (int, float)) and not isinstance(iat, bool) else None
    if iat is not None and iat > seconds + IAT_LEEWAY_SECONDS:
        return False, "future"
    if exp - (seconds if iat is None else iat) > max_token_seconds:
        return False, "lifetime"
    return True, ""
