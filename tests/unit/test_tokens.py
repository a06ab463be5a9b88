"""JWT issue and verification against a fake clock."""

from __future__ import annotations

import jwt
import pytest

from overcast.auth.identity import ADMIN_SCOPE, Identity
from overcast.auth.tokens import ACCESS, REFRESH, TokenIssuer, new_signing_key
from overcast.models.errors import InvalidAuthToken
from overcast.testing.clock import FakeClock

ALICE = Identity(guid="u1", name="alice", kind="user", scopes=("openid", ADMIN_SCOPE))


def _issuer(clock: FakeClock) -> TokenIssuer:
    return TokenIssuer(
        [new_signing_key(clock)],
        clock,
        issuer="overcast",
        access_ttl_seconds=60,
        refresh_ttl_seconds=3600,
    )


def test_round_trip(clock: FakeClock) -> None:
    issuer = _issuer(clock)
    token = issuer.issue(ALICE, client_id="cf", grant_type="password")
    verified = issuer.verify(token.token)
    assert verified.identity == ALICE and verified.client_id == "cf"
    assert verified.claims["user_name"] == "alice" and verified.claims["zid"] == "uaa"
    assert verified.identity.admin


def test_expiry_follows_the_clock(clock: FakeClock) -> None:
    issuer = _issuer(clock)
    token = issuer.issue(ALICE, client_id="cf", grant_type="password").token
    clock.advance(59)
    issuer.verify(token)
    clock.advance(1)
    with pytest.raises(InvalidAuthToken, match="expired"):
        issuer.verify(token)


def test_kinds_do_not_mix(clock: FakeClock) -> None:
    issuer = _issuer(clock)
    refresh = issuer.issue(ALICE, client_id="cf", grant_type="password", kind=REFRESH).token
    with pytest.raises(InvalidAuthToken):
        issuer.verify(refresh, kind=ACCESS)
    assert issuer.verify(refresh, kind=REFRESH).identity.guid == "u1"


def test_tampering_and_foreign_keys(clock: FakeClock) -> None:
    issuer = _issuer(clock)
    other = _issuer(clock)
    token = issuer.issue(ALICE, client_id="cf", grant_type="password").token
    with pytest.raises(InvalidAuthToken):
        other.verify(token)
    header, payload, signature = token.split(".")
    with pytest.raises(InvalidAuthToken):
        issuer.verify(f"{header}.{payload}.{signature[::-1]}")
    claims = jwt.decode(token, options={"verify_signature": False})
    unsigned = jwt.encode({**claims, "scope": [ADMIN_SCOPE]}, key="", algorithm="none")
    with pytest.raises(InvalidAuthToken):
        issuer.verify(unsigned)
    for garbage in ("", "abc", "a.b.c"):
        with pytest.raises(InvalidAuthToken):
            issuer.verify(garbage)


def test_client_identity(clock: FakeClock) -> None:
    issuer = _issuer(clock)
    bot = Identity(guid="ci", name="ci", kind="client", scopes=("cloud_controller.read",))
    verified = issuer.verify(
        issuer.issue(bot, client_id="ci", grant_type="client_credentials").token
    )
    assert verified.identity == bot and not verified.identity.admin
