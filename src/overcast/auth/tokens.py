"""Signed JWTs in UAA's shape (claims user_id, user_name, scope, client_id/cid, grant_type,
exp, iat, iss, zid, jti), so cf-style clients can decode them. HS256 with a key id; keys live
in the database so every controller of a cluster signs and verifies alike."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import jwt

from overcast.auth.identity import Identity
from overcast.core.clock import Clock
from overcast.core.ids import new_guid
from overcast.models.errors import InvalidAuthToken
from overcast.models.resources import SigningKey

ALGORITHM = "HS256"
ACCESS = "access"
REFRESH = "refresh"


def new_signing_key(clock: Clock) -> SigningKey:
    return SigningKey(
        kid=f"key-{new_guid()[:8]}", secret=secrets.token_urlsafe(48), created_at=clock.now()
    )


@dataclass(frozen=True)
class IssuedToken:
    token: str
    jti: str
    expires_in: int


@dataclass(frozen=True)
class VerifiedToken:
    identity: Identity
    grant_type: str
    client_id: str
    claims: dict[str, Any]


class TokenIssuer:
    def __init__(
        self,
        keys: Sequence[SigningKey],
        clock: Clock,
        *,
        issuer: str,
        access_ttl_seconds: int,
        refresh_ttl_seconds: int,
    ) -> None:
        if not keys:
            raise ValueError("at least one signing key is needed")
        self._keys = {key.kid: key for key in keys}
        self._current = keys[0]
        self._clock = clock
        self.issuer = issuer
        self.access_ttl = access_ttl_seconds
        self.refresh_ttl = refresh_ttl_seconds

    def _encode(self, claims: dict[str, Any]) -> str:
        return jwt.encode(
            claims, self._current.secret, algorithm=ALGORITHM, headers={"kid": self._current.kid}
        )

    def _claims(
        self, identity: Identity, *, client_id: str, grant_type: str, kind: str, ttl: int
    ) -> dict[str, Any]:
        now = int(self._clock.now().timestamp())
        claims: dict[str, Any] = {
            "jti": new_guid().replace("-", ""),
            "sub": identity.guid,
            "scope": list(identity.scopes),
            "client_id": client_id,
            "cid": client_id,
            "azp": client_id,
            "grant_type": grant_type,
            "iat": now,
            "exp": now + ttl,
            "iss": self.issuer,
            "zid": "uaa",
            "aud": sorted({client_id, "cloud_controller", "openid"}),
            "token_use": kind,
        }
        if identity.kind == "user":
            claims.update(
                user_id=identity.guid, user_name=identity.name, origin="uaa", email=identity.name
            )
        return claims

    def issue(
        self, identity: Identity, *, client_id: str, grant_type: str, kind: str = ACCESS
    ) -> IssuedToken:
        ttl = self.access_ttl if kind == ACCESS else self.refresh_ttl
        claims = self._claims(
            identity, client_id=client_id, grant_type=grant_type, kind=kind, ttl=ttl
        )
        return IssuedToken(token=self._encode(claims), jti=claims["jti"], expires_in=ttl)

    def verify(self, token: str, *, kind: str = ACCESS) -> VerifiedToken:
        """Raises InvalidAuthToken for anything but a well-signed, unexpired token of `kind`."""
        try:
            header = jwt.get_unverified_header(token)
            key = self._keys.get(str(header.get("kid", "")))
            if key is None:
                raise InvalidAuthToken("Invalid Auth Token")
            claims = jwt.decode(
                token,
                key.secret,
                algorithms=[ALGORITHM],
                # Expiry is checked below against our clock, which tests can move.
                options={
                    "verify_aud": False,
                    "verify_exp": False,
                    "verify_iat": False,
                    "require": ["exp", "iat", "sub"],
                },
                issuer=self.issuer,
            )
        except jwt.PyJWTError:
            raise InvalidAuthToken("Invalid Auth Token") from None
        if claims.get("token_use") != kind:
            raise InvalidAuthToken("Invalid Auth Token")
        if int(claims["exp"]) <= int(self._clock.now().timestamp()):
            raise InvalidAuthToken("Invalid Auth Token: the token has expired")
        is_user = "user_id" in claims
        identity = Identity(
            guid=str(claims["sub"]),
            name=str(claims.get("user_name") or claims.get("client_id") or ""),
            kind="user" if is_user else "client",
            scopes=tuple(str(scope) for scope in claims.get("scope", [])),
        )
        return VerifiedToken(
            identity=identity,
            grant_type=str(claims.get("grant_type", "")),
            client_id=str(claims.get("client_id", "")),
            claims=claims,
        )
