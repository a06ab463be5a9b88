"""The token endpoint's logic (UAA's form protocol) and bearer-token authentication."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from overcast.auth.identity import ADMIN_SCOPE, USER_SCOPES, Identity
from overcast.auth.passwords import verify_password
from overcast.auth.tokens import ACCESS, REFRESH, TokenIssuer, new_signing_key
from overcast.core.clock import Clock
from overcast.models.errors import InvalidAuthToken, NotAuthenticated, OAuthError
from overcast.models.resources import SigningKey, User
from overcast.store.base import Store

# The public client every cf-style CLI uses: no secret, password and refresh grants only.
PUBLIC_CLIENT = "cf"
PUBLIC_GRANTS = frozenset({"password", "refresh_token"})


@dataclass(frozen=True)
class TokenRequest:
    grant_type: str
    client_id: str = ""
    client_secret: str = ""
    username: str = ""
    password: str = ""
    refresh_token: str = ""


def user_identity(user: User) -> Identity:
    scopes = (*USER_SCOPES, ADMIN_SCOPE) if user.admin else USER_SCOPES
    return Identity(guid=user.guid, name=user.username, kind="user", scopes=scopes)


async def load_or_create_signing_keys(store: Store, clock: Clock) -> list[SigningKey]:
    async with store.write() as tx:
        keys = await tx.keys.all()
        if not keys:
            keys = [await tx.keys.add(new_signing_key(clock))]
    return keys


class AuthService:
    def __init__(self, store: Store, issuer: TokenIssuer) -> None:
        self.store = store
        self.issuer = issuer

    # --- POST /oauth/token ------------------------------------------------------------------

    async def token(self, request: TokenRequest) -> dict[str, Any]:
        if request.grant_type == "password":
            return await self._password_grant(request)
        if request.grant_type == "refresh_token":
            return await self._refresh_grant(request)
        if request.grant_type == "client_credentials":
            return await self._client_credentials_grant(request)
        if not request.grant_type:
            raise OAuthError("invalid_request", "Missing grant_type", 400)
        raise OAuthError("unsupported_grant_type", "Unsupported grant type", 400)

    async def _check_client(self, request: TokenRequest, grant: str) -> None:
        if request.client_id == PUBLIC_CLIENT and not request.client_secret:
            if grant in PUBLIC_GRANTS:
                return
            raise OAuthError("unauthorized_client", f"Client may not use grant {grant}", 401)
        async with self.store.read() as tx:
            client = await tx.clients.get(request.client_id)
        if client is None or not await verify_password(client.secret_hash, request.client_secret):
            raise OAuthError("invalid_client", "Bad client credentials", 401)
        if grant not in client.authorized_grant_types:
            raise OAuthError("unauthorized_client", f"Client may not use grant {grant}", 401)

    def _response(
        self, identity: Identity, client_id: str, grant: str, refresh: str | None
    ) -> dict[str, Any]:
        access = self.issuer.issue(identity, client_id=client_id, grant_type=grant, kind=ACCESS)
        body: dict[str, Any] = {
            "access_token": access.token,
            "token_type": "bearer",
            "expires_in": access.expires_in,
            "scope": " ".join(identity.scopes),
            "jti": access.jti,
        }
        if refresh is not None:
            body["refresh_token"] = refresh
        return body

    async def _password_grant(self, request: TokenRequest) -> dict[str, Any]:
        await self._check_client(request, "password")
        if not request.username or not request.password:
            raise OAuthError("invalid_request", "Missing username or password", 400)
        async with self.store.read() as tx:
            user = await tx.users.by_username(request.username)
        stored_hash = user.password_hash if user else None
        if not await verify_password(stored_hash, request.password) or user is None:
            raise OAuthError("unauthorized", "Bad credentials", 401)
        identity = user_identity(user)
        refresh = self.issuer.issue(
            identity, client_id=request.client_id, grant_type="password", kind=REFRESH
        )
        return self._response(identity, request.client_id, "password", refresh.token)

    async def _refresh_grant(self, request: TokenRequest) -> dict[str, Any]:
        await self._check_client(request, "refresh_token")
        if not request.refresh_token:
            raise OAuthError("invalid_request", "Missing refresh_token", 400)
        try:
            verified = self.issuer.verify(request.refresh_token, kind=REFRESH)
        except InvalidAuthToken:
            raise OAuthError("invalid_token", "Invalid refresh token", 401) from None
        if verified.client_id != request.client_id:
            raise OAuthError("invalid_grant", "Refresh token was issued to another client", 401)
        async with self.store.read() as tx:
            user = await tx.users.get(verified.identity.guid)
        if user is None:
            raise OAuthError("invalid_token", "Invalid refresh token", 401)
        # Non-rotating (UAA's default): the same refresh token stays valid until it expires.
        return self._response(
            user_identity(user), request.client_id, "refresh_token", request.refresh_token
        )

    async def _client_credentials_grant(self, request: TokenRequest) -> dict[str, Any]:
        if not request.client_id:
            raise OAuthError("invalid_client", "Missing client credentials", 401)
        await self._check_client(request, "client_credentials")
        async with self.store.read() as tx:
            client = await tx.clients.get(request.client_id)
        assert client is not None  # _check_client verified it
        identity = Identity(
            guid=client.client_id, name=client.client_id, kind="client", scopes=client.authorities
        )
        return self._response(identity, client.client_id, "client_credentials", None)

    # --- bearer tokens on API calls ---------------------------------------------------------

    async def authenticate(self, authorization: str | None) -> Identity:
        if not authorization:
            raise NotAuthenticated("Authentication error")
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise InvalidAuthToken("Invalid Auth Token")
        verified = self.issuer.verify(token.strip(), kind=ACCESS)
        async with self.store.read() as tx:
            if verified.identity.kind == "user":
                exists = await tx.users.get(verified.identity.guid) is not None
            else:
                exists = await tx.clients.get(verified.identity.guid) is not None
        if not exists:
            raise InvalidAuthToken("Invalid Auth Token")
        return verified.identity
