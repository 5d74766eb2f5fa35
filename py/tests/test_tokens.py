"""Tokens: signed as the gateway expects, and refused for every reason the gateway refuses them."""

import jwt

from slip_sockets import tokens

SECRET = b"test-secret-of-at-least-32-bytes!"


def test_a_signed_token_verifies_for_its_audience_only():
    token = tokens.sign(SECRET, tokens.CONTROL_AUDIENCE)
    assert tokens.verify(SECRET, token, tokens.CONTROL_AUDIENCE) == (True, "")
    assert tokens.verify(SECRET, token, tokens.CALLBACK_AUDIENCE) == (False, "audience")
    claims = jwt.decode(token, SECRET, algorithms=["HS256"], audience="ControlEvent")
    assert claims["iss"] == "slip-sockets" and claims["exp"] - claims["iat"] == 60


def test_every_bad_token_names_its_problem():
    now = 2_000_000_000
    good = {"iss": "slip-sockets", "aud": "WebSocketEvent", "iat": now, "exp": now + 60}
    cases = {
        "missing": None,
        "malformed": "a.b",
        "signature": jwt.encode(good, b"another-secret-of-at-least-32-byte", algorithm="HS256"),
        "algorithm": jwt.encode(good, None, algorithm="none"),
        "issuer": jwt.encode({**good, "iss": "someone"}, SECRET, algorithm="HS256"),
        "expired": jwt.encode({**good, "exp": now}, SECRET, algorithm="HS256"),
        "future": jwt.encode({**good, "iat": now + 61, "exp": now + 100}, SECRET, algorithm="HS256"),
        "lifetime": jwt.encode({**good, "exp": now + 3601}, SECRET, algorithm="HS256"),
    }
    for problem, token in cases.items():
        assert tokens.verify(SECRET, token, "WebSocketEvent", now=now) == (False, problem), problem
    assert tokens.verify(SECRET, "x" * 9000, "WebSocketEvent") == (False, "malformed")
    for garbage in ["..", "a.b.c", "\x00.\x01.\x02", "e30.e30.", "W10.W10.AA"]:
        ok, _ = tokens.verify(SECRET, garbage, "WebSocketEvent")
        assert not ok


def test_a_short_secret_is_refused():
    try:
        tokens.secret_bytes("short")
    except ValueError as e:
        assert "32 bytes" in str(e)
    else:
        raise AssertionError("a short secret was taken")
